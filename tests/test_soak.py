"""A long run must not exhaust the process (issue 11 §4), bounded for CI: sequential writes with a
CPU hog beside, as when folds of small packs once fell behind and descriptors to deleted packs
piled up to 2,309 (``Too many open files`` after 59,763 writes). The long version is
bench/bench_soak.py (200,000 writes in one process and over HTTP)."""

from __future__ import annotations

import multiprocessing
import os
import random
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.config import Settings
from arka_git_hcm.services.store import HcmStore
from arka_git_hcm.writepath import pack_folding

from .conftest import AGENT, create_mission, envelope

FULL = os.environ.get("HCM_STRESS") == "full"


def descriptors() -> tuple[int, int]:
    """(open descriptors of this process, of which to deleted files)."""
    total = deleted = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        total += 1
        deleted += target.endswith("(deleted)")
    return total, deleted


def _hog(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@pytest.mark.slow
def test_a_long_run_keeps_descriptors_and_packs_bounded(settings: Settings) -> None:
    writes = 20_000 if FULL else 1_500
    with HcmStore.open(settings) as store:
        for m in range(30):
            create_mission(store, f"m{m}")
        baseline, _ = descriptors()
        stop = multiprocessing.Event()
        hogs = [
            multiprocessing.Process(target=_hog, args=(stop,), daemon=True)
            for _ in range(os.cpu_count() or 2)
        ]
        for hog in hogs:
            hog.start()
        peak_fds = peak_deleted = peak_packs = 0
        rng = random.Random(5)
        try:
            for n in range(writes):
                entry = {"entry_type": "note", "message": f"soak {n}"}
                answer = store.execute(
                    envelope(
                        "HCM_APPEND_JOURNAL", {"mission_id": f"m{rng.randrange(30)}", "entry": entry}, AGENT
                    )
                )
                assert answer["status"] == "ok", answer
                if n % 50 == 0:
                    fds, deleted = descriptors()
                    packs = len(list(Path(settings.hcm_path, ".git/objects/pack").glob("pack-*.idx")))
                    peak_fds, peak_deleted, peak_packs = (
                        max(peak_fds, fds),
                        max(peak_deleted, deleted),
                        max(peak_packs, packs),
                    )
        finally:
            stop.set()
            for hog in hogs:
                hog.join(timeout=10)
    # bounded whatever the length: the pack files libgit2 keeps open are capped, old handles are
    # released when packs are folded, and writers wait for folding when it falls behind
    # (before: 1,199 descriptors after 2,000 writes, most of them to deleted packs)
    assert peak_deleted <= 40, f"{peak_deleted} descriptors to deleted files"
    assert peak_fds <= baseline + 64, f"{peak_fds} descriptors (baseline {baseline})"
    limit = pack_folding.PACKS_BACKPRESSURE + pack_folding.GIT_REPACK_ABOVE + 16
    assert peak_packs <= limit, f"{peak_packs} packs on disk"
