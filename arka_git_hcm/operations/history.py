"""HCM_HISTORY and HCM_DIFF: the store's own history, read through its commit trailers."""

from __future__ import annotations

from typing import Any

from ..clock import OutOfRange, iso_seconds, parse_iso
from ..domain import envelope as p
from ..domain.commit_message import parse_trailers, summary_of
from ..domain.layout import MissionPaths
from ..errors import InvalidPayload, NotFound
from ..gitrepo import GitRepo
from ..history.index import caller_of
from ..history.query import HistoryFilters, history_page
from ..paths import check_relative
from .base import OpContext, OpSpec
from .views import TreeView

__all__ = ["HISTORY_OPS", "commit_summary"]


def commit_summary(repo: GitRepo, commit_id: str) -> dict[str, Any]:
    """What HCM_HISTORY shows of one commit, read from the commit itself. The history index
    stores the same fields when it indexes a commit (history/index.py), and the command line's
    quick ``log`` answers from those (tests/test_quick_history.py holds the two together)."""
    info = repo.commit_info(commit_id)
    trailers = parse_trailers(info.message)
    return {
        "revision": info.id,
        "time": iso_seconds(info.commit_time),
        "op": trailers.get("Hcm-Op"),
        "caller": caller_of(trailers, info.author_name, info.author_email),
        "request_id": trailers.get("Hcm-Request-Id"),
        "mission_id": trailers.get("Hcm-Mission"),
        "summary": summary_of(info.message),
    }


def _moment(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso(value).timestamp()
    except OutOfRange as exc:
        raise InvalidPayload(f"{field}: {exc}", {"field": field}) from None
    except ValueError:
        raise InvalidPayload(f"{field} {value!r} is not an ISO date/time", {"field": field}) from None


def history(ctx: OpContext, view: TreeView, payload: p.History) -> dict[str, Any]:
    """Newest first, ``limit`` at a time; ``next_cursor`` (when not null) fetches the next page.
    Served by the history index where it reaches (see history_query); never silently capped."""
    if view.commit_id is None:
        return {"commits": [], "next_cursor": None}
    flt = HistoryFilters(
        mission=MissionPaths(payload.mission_id).mission_id if payload.mission_id is not None else None,
        path=check_relative(payload.path.rstrip("/")) if payload.path is not None else None,
        caller=payload.caller,
        op=payload.op,
        since=_moment(payload.since, "since"),
        until=_moment(payload.until, "until"),
    )
    page = history_page(view.repo, ctx.history, view.commit_id, flt, payload.limit, payload.cursor)
    answer: dict[str, Any] = {
        "commits": [commit_summary(view.repo, commit) for commit in page.commits],
        "next_cursor": page.next_cursor,
    }
    if page.partial:
        answer["partial"] = True  # the page is short because the walk paused: go on with the cursor
    return answer


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
