"""What every operation handler shares: its context, its spec, and mission helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from ..clock import Clock, iso
from ..config import LimitsConfig
from ..domain.envelope import Caller
from ..domain.layout import MissionPaths, mission_paths
from ..errors import MissionNotFound
from ..history.index import HistoryIndex
from ..ids import new_id
from .outcome import WriteOutcome
from .views import Draft, TreeView

if TYPE_CHECKING:
    from .search import SearchPort

__all__ = ["OpContext", "OpSpec", "ReadHandler", "WriteHandler", "require_mission"]


@dataclass
class OpContext:
    caller: Caller
    clock: Clock
    limits: LimitsConfig
    # The state of the HCM at a moment (None before the first commit): day rollups read history.
    state_at: Callable[[datetime], TreeView | None]
    id_token: Callable[[], str | None] = lambda: None
    # a revision, snapshot name or ISO date/time as a commit id (HCM_DIFF's from/to)
    resolve_at: Callable[[str | None], str | None] = lambda at: None
    # the search index (HCM_SEARCH, HCM_MEMORY_QUERY), when the front-end attached one
    search: SearchPort | None = None
    # the history index (HCM_HISTORY reads it; None: walk the commits)
    history: HistoryIndex | None = None

    def now(self) -> str:
        return iso(self.clock.now())

    def new_id(self, prefix: str) -> str:
        return new_id(prefix, self.id_token())


ReadHandler = Callable[[OpContext, TreeView, Any], dict[str, Any]]
WriteHandler = Callable[[OpContext, Draft, Any], WriteOutcome]
Replay = Callable[[dict[str, Any] | None, TreeView], dict[str, Any]]


def stored(stored_result: dict[str, Any] | None, view: TreeView) -> dict[str, Any]:
    """Default replay: the answer was stored in the commit's Hcm-Result trailer."""
    return dict(stored_result or {})


@dataclass(frozen=True)
class OpSpec:
    name: str
    kind: Literal["read", "write"]
    payload: type[BaseModel]
    handler: Any  # ReadHandler | WriteHandler
    replay: Replay = stored
    # who may run it beyond the role check: "agent_ok" (agents may), "no_agent", "admin"
    zone: Literal["agent_ok", "no_agent", "admin"] = "no_agent"
    # a read bounded by one mission or one document: an asyncio server answers it on its event
    # loop, since handing it to a worker thread and back costs more than the read itself
    quick: bool = False
    # the answer reflects data["revision"], not the tip it read (a search index that lags)
    revision_from_data: bool = False
    # the snapshot tag a write makes (from its stored answer), re-made by a replay if missing
    tag_of: Callable[[dict[str, Any] | None], str | None] | None = None


def require_mission(view: TreeView, mission_id: str) -> MissionPaths:
    paths = mission_paths(mission_id)
    if not view.exists(paths.meta):
        raise MissionNotFound(
            f"mission {mission_id!r} does not exist; create it with HCM_CREATE_MISSION",
            {"mission_id": mission_id},
        )
    return paths
