"""The contract's response shapes (section 3): ``ok`` and ``error``, and what of a refused
envelope may be echoed back or logged."""

from __future__ import annotations

import re
from typing import Any

from ..domain.envelope import Envelope
from ..errors import HcmError
from ..ids import is_request_id

__all__ = ["echoed", "error_response", "ok_response"]


def echoed(envelope: Any) -> tuple[str | None, str | None]:
    """(request_id, op) of an envelope as they may be echoed in an answer or a log record: only
    when they are well-formed. A refused envelope's fields are the caller's text, unbounded (a
    1,000,000-character request id rolled every log over in seconds): never repeated as they are."""
    if not isinstance(envelope, dict):
        return None, None
    request_id, op = envelope.get("request_id"), envelope.get("op")
    return (
        request_id if is_request_id(request_id) else None,
        op if isinstance(op, str) and _OP_NAME.fullmatch(op) else None,
    )


_OP_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def error_response(envelope: Any, error: HcmError, revision: str | None) -> dict[str, Any]:
    request_id, op = echoed(envelope)
    return {
        "request_id": request_id,
        "op": op,
        "status": "error",
        "data": None,
        "error": error.to_dict(),
        "revision": revision,
    }


def ok_response(envelope: Envelope, data: dict[str, Any], revision: str | None) -> dict[str, Any]:
    return {
        "request_id": envelope.request_id,
        "op": envelope.op,
        "status": "ok",
        "data": data,
        "error": None,
        "revision": revision,
    }
