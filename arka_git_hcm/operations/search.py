"""HCM_SEARCH and HCM_MEMORY_QUERY: the operations, over a search index the front-end attaches.

The index lives in its own layer (``arka_git_hcm.search``), beside the services: it may not
import them nor they it. So the operations reach it through :class:`SearchPort`, the one
``OpContext.search`` field that the store fills from ``HcmStore.search``, which the server and
the CLI set with ``arka_git_hcm.search.attach_search(store)``.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..domain import envelope as p
from ..domain.envelope import Caller
from ..errors import InternalError
from .base import OpContext, OpSpec
from .missions import get_mission_context
from .views import TreeView

__all__ = ["SEARCH_OPS", "SearchPort"]

PACK_JOURNAL_ENTRIES = 20  # the most recent entries a context pack may hold (its budget decides)


class SearchPort(Protocol):
    def search(self, payload: p.Search, caller: Caller, view: TreeView) -> dict[str, Any]: ...

    def memory_pack(
        self, payload: p.MemoryQuery, caller: Caller, view: TreeView, context: dict[str, Any]
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _port(ctx: OpContext) -> SearchPort:
    if ctx.search is None:
        raise InternalError(
            "this process opened the HCM without its search index "
            "(arka_git_hcm.search.attach_search(store) gives it one)"
        )
    return ctx.search


def search(ctx: OpContext, view: TreeView, payload: p.Search) -> dict[str, Any]:
    return _port(ctx).search(payload, ctx.caller, view)


def memory_query(ctx: OpContext, view: TreeView, payload: p.MemoryQuery) -> dict[str, Any]:
    port = _port(ctx)
    options = p.ContextOptions(
        include_last_entries=min(PACK_JOURNAL_ENTRIES, ctx.limits.max_last_entries),
        include_decisions=True,
        include_next_actions=True,
    )
    context = get_mission_context(
        ctx, view, p.GetMissionContext(mission_id=payload.mission_id, options=options)
    )
    return port.memory_pack(payload, ctx.caller, view, context)


SEARCH_OPS = [
    OpSpec("HCM_SEARCH", "read", p.Search, search, zone="agent_ok", revision_from_data=True),
    OpSpec("HCM_MEMORY_QUERY", "read", p.MemoryQuery, memory_query, zone="agent_ok"),
]
