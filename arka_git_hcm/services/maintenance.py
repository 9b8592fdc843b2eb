"""Repository maintenance: packing the loose objects every write leaves behind.

Each write adds a few loose objects (its blob, the trees on its path, its commit): ~70 KB a
commit at 10k files, ~680 KB at 100k where the missions tree is wide. `git gc` packs them
(delta-compressed: the successive missions trees differ by one entry). It runs under the store's
write lock, so no write lands while objects move.
"""

from __future__ import annotations

from typing import Any

from ..errors import IoError
from ..gitrepo.gitbin import count_objects, gc
from .store import HcmStore

__all__ = ["pack_objects"]


def pack_objects(store: HcmStore, *, dry_run: bool = False) -> dict[str, Any]:
    workdir = store.settings.hcm_path
    try:
        before = count_objects(workdir)
        if dry_run:
            return {"dry_run": True, "before": before, "after": None}
        with store.engine.lock.held(max(60.0, store.settings.file.store.lock_timeout_s)):
            gc(workdir)
        after = count_objects(workdir)
    except FileNotFoundError:
        raise IoError("the git binary is needed to pack the repository; install git") from None
    except OSError as exc:
        raise IoError(str(exc)) from None
    return {"dry_run": False, "before": before, "after": after}
