"""HCM_HISTORY and HCM_DIFF: the store's own history, read through its commit trailers."""

from __future__ import annotations

from typing import Any

from ..clock import OutOfRange, parse_iso
from ..domain import envelope as p
from ..domain.commit_message import parse_trailers, subject_of
from ..domain.layout import MissionPaths
from ..errors import InvalidPayload, NotFound
from ..gitrepo import GitRepo
from ..paths import check_relative
from .ops_base import OpContext, OpSpec
from .views import TreeView

__all__ = ["HISTORY_OPS", "commit_summary"]

_MAX_WALK = 200_000


def commit_summary(repo: GitRepo, commit_id: str) -> dict[str, Any]:
    info = repo.commit_info(commit_id)
    trailers = parse_trailers(info.message)
    subject = subject_of(info.message)
    _, _, summary = subject.partition(": ")
    return {
        "revision": info.id,
        "time": _iso(info.commit_time),
        "op": trailers.get("Hcm-Op"),
        "caller": trailers.get("Hcm-Caller") or f"{info.author_name} <{info.author_email}>",
        "request_id": trailers.get("Hcm-Request-Id"),
        "mission_id": trailers.get("Hcm-Mission"),
        "summary": summary or subject,
    }


def _iso(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _touches(repo: GitRepo, tree: str, parent_tree: str | None, prefix: str) -> bool:
    """Did this commit change anything under ``prefix``? Compares one tree entry, no scan."""
    return bool(repo.entry_id(tree, prefix) != repo.entry_id(parent_tree, prefix))


def history(ctx: OpContext, view: TreeView, payload: p.History) -> dict[str, Any]:
    if view.commit_id is None:
        return {"commits": []}
    prefix = None
    if payload.mission_id is not None:
        prefix = MissionPaths(payload.mission_id).root
    elif payload.path is not None:
        prefix = check_relative(payload.path.rstrip("/"))
    since = None
    if payload.since is not None:
        try:
            since = parse_iso(payload.since).timestamp()
        except OutOfRange as exc:
            raise InvalidPayload(f"since: {exc}", {"field": "since"}) from None
        except ValueError:
            raise InvalidPayload(
                f"since {payload.since!r} is not an ISO date/time", {"field": "since"}
            ) from None
    repo = view.repo
    commits: list[dict[str, Any]] = []
    for walked, info in enumerate(repo.walk(view.commit_id)):
        if since is not None and info.commit_time < since:
            break
        if walked > _MAX_WALK:
            break
        if prefix is not None:
            parent_tree = repo.commit_tree(info.parents[0]) if info.parents else None
            if not _touches(repo, info.tree, parent_tree, prefix):
                continue
        commits.append(commit_summary(repo, info.id))
        if len(commits) >= payload.limit:
            break
    return {"commits": commits}


def diff(ctx: OpContext, view: TreeView, payload: p.Diff) -> dict[str, Any]:
    resolve = ctx.resolve_at
    old, new = resolve(payload.from_), resolve(payload.to)
    if old is None or new is None:
        raise NotFound("the HCM has no history yet")
    repo = view.repo
    paths = [check_relative(payload.path.rstrip("/"))] if payload.path else None
    changes = repo.diff_trees(repo.commit_tree(old), repo.commit_tree(new), paths)
    return {
        "from": old,
        "to": new,
        "changes": [{"path": path, "change": change, "patch": patch} for path, change, patch in changes],
    }


HISTORY_OPS = [
    OpSpec("HCM_HISTORY", "read", p.History, history, zone="agent_ok"),
    OpSpec("HCM_DIFF", "read", p.Diff, diff, zone="agent_ok"),
]
