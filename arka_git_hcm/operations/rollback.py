"""HCM_ROLLBACK: bring the whole HCM, or one mission's folder, back to an earlier state.

Rollback never rewrites history: it is one new commit whose tree equals the target's (for the
whole HCM) or whose mission folder equals the target's. The history before it stays, so a
rollback can itself be rolled back.
"""

from __future__ import annotations

from typing import Any

from ..domain import envelope as p
from ..domain.layout import MissionPaths
from ..errors import NotFound
from .base import OpContext, OpSpec
from .outcome import WriteOutcome
from .views import Draft

__all__ = ["ROLLBACK_OPS"]


def rollback(ctx: OpContext, draft: Draft, payload: p.Rollback) -> WriteOutcome:
    target = ctx.resolve_at(payload.target)
    if target is None:
        raise NotFound(f"rollback target {payload.target!r} not found", {"target": payload.target})
    repo = draft.repo
    target_tree = repo.commit_tree(target)
    prefix = MissionPaths(payload.mission_id).root if payload.mission_id else None
    changed = repo.changed_paths(draft.tree_id, target_tree, prefix)
    for path in changed:
        data = repo.read_blob(target_tree, path)
        if data is None:
            draft.delete(path)
        else:
            draft.write(path, data)
    scope = payload.mission_id or "."
    reason = f" ({payload.reason})" if payload.reason else ""
    data_out: dict[str, Any] = {"target": target, "restored_files": len(changed), "paths": changed[:200]}
    return WriteOutcome(
        data_out,
        scope,
        f"roll back to {target[:12]}{reason}",
        mission_id=payload.mission_id,
        stored_result=data_out,
    )


ROLLBACK_OPS = [OpSpec("HCM_ROLLBACK", "write", p.Rollback, rollback, zone="admin")]
