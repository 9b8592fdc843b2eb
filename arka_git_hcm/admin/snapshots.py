"""Named snapshots of the whole HCM: annotated tags ``snapshot/<name>`` (contract section 5).

A snapshot is a name for a commit, not a commit: taking one writes no file. Reads accept the
name as ``at``; ``HCM_ROLLBACK`` accepts it as a target.
"""

from __future__ import annotations

from typing import Any

from ..clock import iso_seconds
from ..errors import ConflictingUpdate, NotFound
from ..gitrepo import Signature
from ..ids import validate_id
from ..services.store import HcmStore

__all__ = ["create_snapshot", "list_snapshots"]


def create_snapshot(store: HcmStore, name: str, message: str = "", who: str | None = None) -> dict[str, Any]:
    """Tag the tip ``snapshot/<name>``; ``who`` (``type/id``) is the tagger, as commits name their
    caller (default: the service identity)."""
    validate_id(name, "snapshot name")
    tip = store.tip()
    if tip is None:
        raise NotFound("the HCM has no commit to snapshot")
    committer = store.settings.file.store.committer
    now = int(store.clock.now().timestamp())
    if who:
        kind, _, ident = who.partition("/")
        tagger = Signature(ident, f"{ident}@{kind}.arka", now)
    else:
        tagger = Signature(committer.name, committer.email, now)
    if store.repo.resolve_commit(f"refs/tags/snapshot/{name}") is not None:
        raise ConflictingUpdate(f"snapshot {name} already exists; choose another name", {"name": name})
    text = message or f"snapshot {name} by {who or 'arka-hcm'}"
    store.repo.create_tag(f"snapshot/{name}", tip, tagger, text)
    return {"name": name, "revision": tip, "tag": f"snapshot/{name}"}


def list_snapshots(store: HcmStore) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "revision": commit,
            "time": iso_seconds(when),
            "message": message,
        }
        for name, commit, when, message in store.repo.list_tags("snapshot/")
    ]
