"""Questions to the history, answered from the history index where it reaches, by walking the
commits it has not indexed yet (a lagging index never gives a wrong or a short answer).

- :func:`history_page`: commits newest first matching filters (mission, path, caller, op,
  since/until), ``limit`` at a time with a cursor for the next page, never silently capped.
  A walk that the index cannot serve (a ``path`` filter, or no index yet) examines at most
  ``WALK_BUDGET`` commits per page and then hands back a cursor to go on from (``partial``).
- :func:`commit_at`: the newest commit at or before a moment (``at=DATE``).
- :func:`find_request`: the commit that carries a request id (idempotent replays).

Time filters follow the walk, as ``git log`` does: ``since`` stops at the first commit older than
it; ``until`` skips commits newer than it.
"""

from __future__ import annotations

from datetime import datetime

from ..domain.commit_message import parse_trailers
from ..errors import InvalidPayload
from ..gitrepo import CommitInfo, GitRepo
from .index import caller_of
from .reader import MISSIONS_PREFIX, HistoryFilters, HistoryPage, HistoryReader, indexed_page

__all__ = ["WALK_BUDGET", "HistoryFilters", "HistoryPage", "commit_at", "find_request", "history_page"]

WALK_BUDGET = 100_000


def _touches(repo: GitRepo, info: CommitInfo, prefix: str) -> bool:
    parent_tree = repo.commit_tree(info.parents[0]) if info.parents else None
    return bool(repo.entry_id(info.tree, prefix) != repo.entry_id(parent_tree, prefix))


def _matches(repo: GitRepo, info: CommitInfo, flt: HistoryFilters) -> bool:
    if flt.until is not None and info.commit_time > flt.until:
        return False
    if flt.caller is not None or flt.op is not None:
        trailers = parse_trailers(info.message)
        if flt.op is not None and trailers.get("Hcm-Op") != flt.op:
            return False
        if flt.caller is not None and caller_of(trailers, info.author_name, info.author_email) != flt.caller:
            return False
    if flt.mission is not None and not _touches(repo, info, MISSIONS_PREFIX + flt.mission):
        return False
    return not (flt.path is not None and not _touches(repo, info, flt.path))


def _check_cursor(repo: GitRepo, cursor: str) -> str:
    if len(cursor) != 40 or any(c not in "0123456789abcdef" for c in cursor):
        raise InvalidPayload("cursor is not one this service gave (a 40-hex commit id)", {"field": "cursor"})
    if repo.resolve_commit(cursor) != cursor:
        raise InvalidPayload(f"cursor {cursor} names no commit of this HCM", {"field": "cursor"})
    return cursor


def history_page(
    repo: GitRepo,
    index: HistoryReader | None,
    start: str,
    flt: HistoryFilters,
    limit: int,
    cursor: str | None = None,
) -> HistoryPage:
    page = HistoryPage()
    current: str | None = _check_cursor(repo, cursor) if cursor else start
    usable = index if flt.path is None else None  # paths are not indexed: walk
    examined = 0
    while current is not None:
        seq = usable.seq_of(current) if usable is not None else None
        if seq is not None:
            assert usable is not None
            return indexed_page(usable, seq, flt, limit, page)
        info = repo.commit_info(current)
        if flt.since is not None and info.commit_time < flt.since:
            return page
        if _matches(repo, info, flt):
            if len(page.commits) >= limit:
                page.next_cursor = current
                return page
            page.commits.append(current)
        current = info.parents[0] if info.parents else None
        examined += 1
        if current is not None and examined >= WALK_BUDGET and (usable is None or not usable.exists()):
            page.next_cursor, page.partial = current, True
            return page
    return page


def commit_at(repo: GitRepo, index: HistoryReader | None, tip: str | None, moment: datetime) -> str | None:
    """The newest first-parent commit from ``tip`` whose commit time is at or before ``moment``."""
    limit = moment.timestamp()
    current = tip
    while current is not None:
        seq = index.seq_of(current) if index is not None else None
        if seq is not None:
            assert index is not None
            found = index.newest_at_or_before(limit, seq)
            return found.id if found is not None else None
        info = repo.commit_info(current)
        if info.commit_time <= limit:
            return info.id
        current = info.parents[0] if info.parents else None
    return None


def find_request(repo: GitRepo, index: HistoryReader | None, tip: str | None, request_id: str) -> str | None:
    """The oldest commit on the branch's first-parent line carrying ``request_id``."""
    found: str | None = None
    current = tip
    while current is not None:
        seq = index.seq_of(current) if index is not None else None
        if seq is not None:
            assert index is not None
            row = index.request_seq(request_id)
            return row.id if row is not None and row.seq <= seq else found
        info = repo.commit_info(current)
        if parse_trailers(info.message).get("Hcm-Request-Id") == request_id:
            found = info.id  # keep walking: an older commit with the same id wins
        current = info.parents[0] if info.parents else None
    return found
