"""Ids of the HCM (missions, evidence, actions, decisions, members, snapshots) and request ids.

An id becomes a file or folder name, so the rules are those of a safe path component:
lower-case ``[a-z0-9._-]``, starting and ending with a letter or digit, at most 128 characters,
no ``..`` (parent traversal, and Windows' trailing-dot aliasing), and never a Windows device name
(``con``, ``nul``, ``com1``... open a device instead of a file on a Windows checkout).
"""

from __future__ import annotations

import os
import re
from typing import Literal, get_args

from .errors import InvalidPayload

__all__ = [
    "CALLER_TYPES",
    "ID_PATTERN",
    "ROLES",
    "CallerType",
    "Role",
    "is_request_id",
    "is_valid_id",
    "new_id",
    "validate_id",
    "validate_request_id",
]

# Who calls (the contract's caller.type) and the roles a token grants: defined here once, used by
# the config, the tokens, the envelope, access control and the front-ends.
CallerType = Literal["agent", "human", "system"]
Role = Literal["reader", "writer", "admin"]
CALLER_TYPES: tuple[CallerType, ...] = get_args(CallerType)
ROLES: tuple[Role, ...] = get_args(Role)

ID_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$"
# Matched with ``fullmatch``: with ``match``, ``$`` also matches before a final newline, so
# "m1\n" passed as an id and "req-1\n" could end a commit trailer early.
_ID_RE = re.compile(ID_PATTERN)
# Request ids are chosen by callers (uuids, "req-42", ...): printable, no spaces, one line,
# because they travel in a commit trailer.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$")

WINDOWS_DEVICE_NAMES = frozenset(
    {"con", "nul", "aux", "prn"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a string that may name a mission, evidence, action..."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value) or ".." in value:
        return False
    # "nul.json" opens the device on Windows just like "nul": the stem counts.
    return value.split(".", 1)[0] not in WINDOWS_DEVICE_NAMES


def validate_id(value: object, field: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise INVALID_PAYLOAD naming the field."""
    if not is_valid_id(value):
        raise InvalidPayload(
            f"{field} {value!r} is not a valid id: use 1-128 characters among a-z 0-9 . _ -, "
            "starting and ending with a letter or digit, without '..' or a Windows device name",
            {"field": field},
        )
    assert isinstance(value, str)
    return value


def is_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value) is not None


def validate_request_id(value: object) -> str:
    if not isinstance(value, str) or not _REQUEST_ID_RE.fullmatch(value):
        raise InvalidPayload(
            "request_id must be 1-128 printable characters (letters, digits, . _ : @ / + = -), "
            "starting with a letter or digit",
            {"field": "request_id"},
        )
    return value


def new_id(prefix: str, token: str | None = None) -> str:
    """A fresh id such as ``ev-3f9a0c12d4e5`` (``token`` injected by tests for determinism).

    The result is validated: a bad prefix or injected token must fail here, not as a path later.
    The random part is what ``secrets.token_hex(6)`` returns (os.urandom), without importing
    ``secrets`` (hashlib, random: ~10 ms of every command's start)."""
    return validate_id(f"{prefix}-{token or os.urandom(6).hex()}", f"new {prefix} id")
