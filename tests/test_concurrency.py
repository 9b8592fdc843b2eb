"""Many writers at once, threads and real processes: no acknowledged write is lost or doubled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from arka_git_hcm.config import Settings
from arka_git_hcm.services.store import HcmStore

from .conftest import assert_clean, commit_count, create_mission, git, journal

WRITER = Path(__file__).with_name("writer_process.py")
FULL = os.environ.get("HCM_STRESS") == "full"


def journal_messages(hcm: Path) -> Counter[str]:
    lines = (hcm / "state/missions/m1/journal.jsonl").read_text().splitlines()
    return Counter(json.loads(line)["message"] for line in lines if line.strip())


def test_threads_in_one_process_never_lose_a_write(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    start = commit_count(hcm)
    threads, per_thread = 8, 15
    acked: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(per_thread):
            journal(store, f"t{t}-{i}", request_id=f"t{t}-{i}")
            with lock:
                acked.append(f"t{t}-{i}")

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()
    assert len(acked) == threads * per_thread
    messages = journal_messages(hcm)
    assert all(messages[m] == 1 for m in acked)
    assert commit_count(hcm) == start + len(acked)
    # every commit is one operation: each request id appears exactly once in history
    ids = [line for line in git(hcm, "log", "--format=%(trailers:key=Hcm-Request-Id,valueonly)").split()]
    assert Counter(ids)["t0-0"] == 1 and len(set(ids)) == len(ids)
    assert_clean(hcm)


@pytest.mark.slow
def test_processes_and_threads_together_never_lose_a_write(settings: Settings) -> None:
    """Several processes (as server workers and the CLI would be), each with threads."""
    store = HcmStore.open(settings)
    create_mission(store, "m1")
    store.close()
    hcm = settings.hcm_path
    start = commit_count(hcm)
    processes, per_process = (6, 60) if FULL else (4, 20)
    client = hcm.parent
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(client), f"p{p}", str(per_process), "3", "full"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for p in range(processes)
    ]
    acked: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        acked += [line.split()[1] for line in out.splitlines() if line.startswith("ACK ")]
        assert "ERR" not in out, out
    assert len(acked) == processes * per_process
    messages = journal_messages(hcm)
    assert all(messages[m] == 1 for m in acked)
    assert sum(messages.values()) == len(acked)
    assert commit_count(hcm) == start + len(acked)
    assert_clean(hcm)
