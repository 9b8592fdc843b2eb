"""Lock files that tell whether their owner lives (lockfiles.py)."""

from __future__ import annotations

import os
from pathlib import Path

from arka_git_hcm.lockfiles import CREATION_GRACE_S, create_held, remove_if_abandoned


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
