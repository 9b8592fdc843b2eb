"""What a write is, to the write path: a request (the operation, its caller, how to apply and how
to replay it) and its result. The operations build requests; the engine commits them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import HcmError, IdempotencyMismatch
from ..operations.outcome import WriteOutcome
from ..operations.views import Draft, TreeView

__all__ = [
    "EXTERNAL_EDIT_OP",
    "WriteRequest",
    "WriteResult",
    "outcome_of",
    "payload_digest",
    "raise_mismatch",
]

EXTERNAL_EDIT_OP = "HCM_EXTERNAL_EDIT"  # the store's own commit of files edited by hand


def payload_digest(op: str, caller: str, payload: Any) -> str:
    """The digest a replay compares. Its serialisation never changes (older commits carry it):
    compact, sorted keys, raw UTF-8, exactly as the first versions wrote it."""
    text = json.dumps(
        {"op": op, "caller": caller, "payload": payload},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class WriteResult:
    data: dict[str, Any]
    revision: str
    replayed: bool = False


@dataclass
class WriteRequest:
    op: str
    request_id: str
    caller_type: str
    caller_id: str
    payload_sha256: str
    apply: Callable[[Draft], WriteOutcome]
    replay: Callable[[dict[str, Any] | None, TreeView], dict[str, Any]]
    # True only for the store's own adoption of hand edits: those paths differ from HEAD on purpose
    adopts_hand_edits: bool = False
    # filled in by the engine
    result: WriteResult | None = None
    error: HcmError | None = None
    done: bool = False
    # set by submit_async: called (from the committing thread) once the request is done
    on_done: Callable[[], None] | None = field(default=None, repr=False)
    # the snapshot tag a replay of this request makes sure of (from the stored answer)
    replay_tag: Callable[[dict[str, Any] | None], str | None] | None = None
    # an adoption's view of the disk: path -> the bytes it read there (what the disk holds)
    disk_read: dict[str, bytes | None] = field(default_factory=dict)


def outcome_of(request: WriteRequest) -> WriteResult:
    """The answer of a request that is done: its result, or its error raised."""
    if request.error is not None:
        raise request.error
    assert request.result is not None
    return request.result


def raise_mismatch(request_id: str, commit: str) -> None:
    raise IdempotencyMismatch(
        f"request_id {request_id!r} was already used for a different operation or payload "
        f"(commit {commit[:12]}); use a new request_id for a new write",
        {"request_id": request_id, "revision": commit},
    )
