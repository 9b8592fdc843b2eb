"""What a write operation returns once it has edited its draft: the answer, and what its commit
says (owned by the operations; the write path turns it into a commit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["WriteOutcome"]


@dataclass
class WriteOutcome:
    """What an operation returns after editing its draft."""

    data: dict[str, Any]
    target: str
    summary: str
    mission_id: str | None = None
    # What a replay answers. None: the operation's replay() rebuilds it from the commit's tree.
    stored_result: dict[str, Any] | None = None
    # An annotated tag ``snapshot/<name>`` to put on this operation's commit once it landed.
    snapshot_tag: str | None = None
