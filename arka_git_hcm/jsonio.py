"""Strict JSON in, canonical JSON out.

Input comes from agents and people over HTTP and stdin, so parsing refuses what Python's
``json`` module would quietly accept or crash on:

- bytes that are not UTF-8 (``json.loads`` would guess UTF-16/32) and a UTF-8 byte-order mark;
- ``NaN``, ``Infinity`` and numbers that overflow to infinity (not JSON; they break other parsers);
- duplicate keys (the last one silently wins in Python: a smuggling vector between parsers);
- nesting deeper than ``max_depth`` (Python would raise RecursionError deep in the parser);
- lone surrogates in strings (they cannot be written back as UTF-8);
- documents larger than ``max_bytes`` (checked before any parsing work).

Every refusal is an :class:`InvalidPayload` or :class:`PayloadTooLarge`, never another exception.
Output is canonical: UTF-8, 2-space indent, keys sorted, trailing newline, so git diffs stay small.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InvalidPayload, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "canonical_bytes",
    "canonical_dumps",
    "compact_dumps",
    "line_dumps",
    "parse_json",
]

DEFAULT_MAX_DEPTH = 64


def _reject_constant(name: str) -> Any:
    raise InvalidPayload(f"{name} is not valid JSON; send numbers as finite decimals")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidPayload(f"number {text[:40]} is too large to represent")
    return value


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidPayload(f"duplicate key {key[:80]!r} in a JSON object", {"key": key[:80]})
        result[key] = value
    return result


def _nesting_depth_exceeds(text: str, max_depth: int) -> bool:
    """Scan brackets outside strings; cheaper than recursing and immune to RecursionError."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cannot nest deeper than the brackets it has: skip the per-character scan
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(
    data: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "request",
) -> Any:
    """Parse one JSON document strictly (see module docstring) or raise INVALID_PAYLOAD."""
    if isinstance(data, bytearray | memoryview):
        # json.loads would take these as bytes and guess UTF-16/32, skipping the checks below.
        data = bytes(data)
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(
            f"{what} is {size} bytes; the limit is {max_bytes} bytes",
            {"limit": max_bytes, "size": size},
        )
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            raise InvalidPayload(f"{what} starts with a byte-order mark; send plain UTF-8 JSON")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPayload(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if _nesting_depth_exceeds(text, max_depth):
        raise InvalidPayload(f"{what} nests deeper than {max_depth} levels", {"max_depth": max_depth})
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs_without_duplicates,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
        )
    except InvalidPayload:
        raise
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "malformed"
        raise InvalidPayload(f"{what} is not valid JSON{where}: {message}") from None
    if _has_lone_surrogate(value):
        raise InvalidPayload(f"{what} contains a lone UTF-16 surrogate escape; it cannot be stored as UTF-8")
    return value


def canonical_dumps(value: Any) -> str:
    """The HCM's file format: 2-space indent, sorted keys, real UTF-8, trailing newline."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def canonical_bytes(value: Any) -> bytes:
    return canonical_dumps(value).encode("utf-8")


# JSON escapes control characters but leaves these raw: Python's str.splitlines, JavaScript's
# line terminators and several log shippers end a line on them, so one JSON value would read as
# two lines there (a forged journal entry, log record or answer). Inside a JSON string their
# \uXXXX escape is the same value.
_LINE_BREAKERS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"})


def compact_dumps(value: Any) -> str:
    """One line for every reader, sorted keys: journal lines, log records, JSON-lines answers.
    Real UTF-8, except the code points some readers take for a line end (escaped)."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    return text.translate(_LINE_BREAKERS)


def line_dumps(value: Any) -> str:
    """One JSON value on one line for every reader, keys in their given order (answers printed
    one per line by `arka-hcm exec`)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).translate(_LINE_BREAKERS)
