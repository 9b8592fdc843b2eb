"""Locks (durable/locks.py): lock files that tell whether their owner lives."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from arka_git_hcm.durable import StoreLock, create_held, remove_if_abandoned
from arka_git_hcm.durable.locks import CREATION_GRACE_S
from arka_git_hcm.errors import Busy


def test_a_held_lock_file_stays_and_a_free_one_goes(tmp_path: Path) -> None:
    held = tmp_path / "marker"
    fd = create_held(held)
    assert not (tmp_path / "marker.tmp").exists()
    assert remove_if_abandoned(held) is False and held.exists()
    os.close(fd)  # its owner is gone
    assert remove_if_abandoned(held) is True and not held.exists()
    assert remove_if_abandoned(held) is None


def test_a_lock_file_being_created_is_not_taken_for_abandoned(tmp_path: Path) -> None:
    """create_held makes ``<name>.tmp``, locks it, then renames it: between the first two steps
    it is unlocked. Young, it counts as held; old, its creator died."""
    young = tmp_path / "marker.tmp"
    young.write_bytes(b"")
    assert remove_if_abandoned(young) is False and young.exists()
    os.utime(young, (0, os.stat(young).st_mtime - CREATION_GRACE_S - 1))
    assert remove_if_abandoned(young) is True and not young.exists()


# --- the lock the writer shares with the index-refresh timer -----------------------------------------


def test_store_lock_release_racing_another_threads_acquire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the writer thread and the index-refresh timer thread share the engine's
    StoreLock. When it kept only one ``_fd`` (no mutex between threads), release() unlocked,
    closed, then set ``self._fd = None``: another thread's acquire() landing in between had its fd
    overwritten, its release() became a no-op, and every later write of the process waited
    lock_timeout_s and failed BUSY (about once in 150 writes with conftest's
    index_refresh_delay_s=0). The slow close below widens that window so the race always happens."""
    lock = StoreLock(tmp_path / "write.lock")
    lock.acquire(1.0)
    first_fd = lock._fd
    real_close = os.close

    def slow_close(fd: int) -> None:
        if fd == first_fd:
            time.sleep(0.2)
        real_close(fd)

    waiter = threading.Thread(target=lambda: lock.acquire(5.0))
    waiter.start()
    time.sleep(0.05)
    monkeypatch.setattr(os, "close", slow_close)  # the os module durable/locks.py calls
    lock.release()  # the writer is done ...
    waiter.join()
    monkeypatch.undo()
    lock.release()  # ... and so is the timer thread
    try:
        StoreLock(tmp_path / "write.lock").acquire(0.3)
    except Busy:
        pytest.fail("the lock is still held after both holders released it")
