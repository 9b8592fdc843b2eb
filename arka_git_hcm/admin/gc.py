"""Repository maintenance: folding every pack into one.

Each batch of writes lands as one small pack, and the engine folds small packs in the background
(a geometric series, as `git repack --geometric` keeps), so packs stay few; `git gc` goes
further, one pack for everything (delta-compressed: the successive missions trees differ by one
entry), and packs any loose objects (a plain `git commit` by hand, libgit2's tags). It runs under
the store's write lock and git's maintenance lock, so no write lands and no repack runs while
objects move.
"""

from __future__ import annotations

from typing import Any

from ..errors import IoError
from ..gitrepo.gitbin import count_objects, gc
from ..services.store import HcmStore

__all__ = ["pack_objects"]


def pack_objects(store: HcmStore, *, dry_run: bool = False) -> dict[str, Any]:
    workdir = store.settings.hcm_path
    try:
        before = count_objects(workdir)
        if dry_run:
            return {"dry_run": True, "before": before, "after": None}
        with store.write_lock(max(60.0, store.settings.file.store.lock_timeout_s)):
            gc(workdir)
        store.repo.announce_repack()  # every process drops its handles on the deleted packs
        after = count_objects(workdir)
    except FileNotFoundError:
        raise IoError("the git binary is needed to pack the repository; install git") from None
    except OSError as exc:
        raise IoError(str(exc)) from None
    return {"dry_run": False, "before": before, "after": after}
