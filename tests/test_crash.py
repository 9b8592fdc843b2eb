"""Kill real writer processes at arbitrary moments: the repository must stay fsck-clean, the next
open must bring the work tree back to HEAD, and no acknowledged write may be missing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from arka_git_hcm.config import Settings
from arka_git_hcm.services.store import HcmStore

from .conftest import assert_clean, create_mission
from .test_concurrency import WRITER, journal_messages

FULL = os.environ.get("HCM_STRESS") == "full"


def run_and_kill(
    client: Path, prefix: str, delay: float, durability: str, threads: int = 2, batch_max: int = 32
) -> list[str]:
    """Start a writer, wait for its first acknowledged write (however long a busy machine takes
    to start it), then kill it ``delay`` seconds later: the kill always lands mid-run."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(client), prefix, "100000", str(threads), durability]
            + [str(batch_max)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        acked: list[str] = []
        first = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("ACK "):
                    acked.append(line.split()[1])
                    first.set()
            first.set()  # the writer ended (it failed): do not wait for an acknowledgement

        reader = threading.Thread(target=read)
        reader.start()
        first.wait(120)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        assert proc.stdout is not None
        proc.stdout.close()
        stderr.seek(0)
        errors = stderr.read().decode("utf-8", "replace")
    assert acked, f"the writer acknowledged nothing before it was killed; its stderr:\n{errors[-3000:]}"
    return acked


@pytest.mark.slow
def test_killed_writers_leave_a_consistent_repository(settings: Settings) -> None:
    store = HcmStore.open(settings)
    create_mission(store, "m1")
    store.close()
    client, hcm = settings.hcm_path.parent, settings.hcm_path
    rounds = 60 if FULL else 12
    rng = random.Random(20261126)
    all_acked: list[str] = []
    for round_ in range(rounds):
        # after the first acknowledgement: anywhere from at once to deep into the run
        delay = rng.uniform(0.0, 0.8)
        if round_ % 3 == 0:
            # durable, 4 threads in batches of 2: batches chain (one sync covers the landed
            # batch and the next one's objects), so kills also land between chained batches
            all_acked += run_and_kill(client, f"k{round_}", delay, "full", threads=4, batch_max=2)
        else:
            all_acked += run_and_kill(client, f"k{round_}", delay, "fast")
        reopened = HcmStore.open(settings)  # recovery happens here
        reopened.close()
        assert_clean(hcm)
        messages = journal_messages(hcm)
        missing = [rid for rid in all_acked if messages[rid] != 1]
        assert not missing, f"round {round_}: acknowledged writes lost or doubled: {missing[:5]}"
        assert not messages or max(messages.values()) == 1  # a kill may land before any write
    assert len(all_acked) >= rounds  # every kill landed mid-run, after real writes
    history = Counter(
        line
        for line in subprocess.run(
            ["git", "-c", "safe.directory=*", "log", "--format=%(trailers:key=Hcm-Request-Id,valueonly)"],
            cwd=hcm,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if line
    )
    assert all(history[rid] == 1 for rid in all_acked)
