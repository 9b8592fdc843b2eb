"""The commit message of one operation (contract section 5).

    <OP> <mission_id or path>: <short summary>

    Hcm-Op: <OP>
    Hcm-Request-Id: <request_id>
    Hcm-Caller: <type>/<id>
    Hcm-Mission: <mission_id>          (when there is one)
    Hcm-Payload-Sha256: <hex>          (idempotency: same request id, same payload)
    Hcm-Result: <compact JSON>         (what a replay of this request answers, when not derivable)

Trailers are the last paragraph, one ``Key: value`` a line, as `git interpret-trailers` reads them.

The message is the store's record of who did what, and the request index (replays) is built from
it, so nothing a caller sends may create, end or override a trailer line (a member's display name
holding ``\\u2028Hcm-Request-Id: ...`` once did exactly that, through ``str.splitlines``):

- every value is made one line *before* it is written: JSON with every non-ASCII code point
  escaped (so U+2028, U+2029, U+0085 and the rest reach the message as ``\\uXXXX``), free text
  with every control, format and separator code point replaced by its ``\\uXXXX`` escape;
- messages are split on ``\\n`` only (git's own rule), never with ``str.splitlines``;
- a trailer block is accepted only in the exact shape this module writes: known keys, each once,
  in order; anything else (a hand-made commit, an edited message) has no trailers for the store.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OperationTrailers",
    "build_message",
    "one_line_text",
    "parse_result",
    "parse_trailers",
    "subject_of",
    "summary_of",
]

_SUBJECT_MAX = 200
_EXTRA_MAX = 1000
# The store's trailers, in the order it writes them; extra keys (Hcm-<Word>) sit before the result.
_ORDER = ("Hcm-Op", "Hcm-Request-Id", "Hcm-Caller", "Hcm-Mission", "Hcm-Payload-Sha256")
_RESULT = "Hcm-Result"
_REQUIRED = ("Hcm-Op", "Hcm-Request-Id", "Hcm-Caller")


@dataclass
class OperationTrailers:
    op: str
    request_id: str
    caller: str
    mission: str | None = None
    payload_sha256: str | None = None
    result: dict[str, Any] | None = None  # encoded here, ASCII-only JSON
    extra: dict[str, str] = field(default_factory=dict)


def _unsafe(ch: str) -> bool:
    """Code points that break, hide or reorder a line for some reader: controls (C0, DEL, C1 with
    NEL), format characters (bidi overrides, zero-width), line and paragraph separators."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def one_line_text(text: str, limit: int) -> str:
    """Free text as one printable line: whitespace runs (line breaks of every kind included:
    ``str.split`` knows them all) become one space, every other unsafe code point its
    ``\\uXXXX`` escape (visible, never interpreted), then cut at ``limit``."""
    flat = " ".join(text.split())
    out = "".join(f"\\u{ord(ch):04x}" if _unsafe(ch) else ch for ch in flat)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _json_value(value: Any) -> str:
    """ASCII-only compact JSON: no code point of it can end a line for any reader."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False)


def _checked(key: str, value: str) -> str:
    """Values the store itself builds from validated ids: refuse rather than write a broken one."""
    if not value or any(_unsafe(ch) or ch.isspace() for ch in value):
        raise ValueError(f"{key} value {value[:40]!r} is not a single printable token")
    return value


def build_message(target: str, summary: str, trailers: OperationTrailers) -> str:
    subject = one_line_text(f"{trailers.op} {target}: {summary}", _SUBJECT_MAX)
    lines = [
        f"Hcm-Op: {_checked('Hcm-Op', trailers.op)}",
        f"Hcm-Request-Id: {_checked('Hcm-Request-Id', trailers.request_id)}",
        f"Hcm-Caller: {_checked('Hcm-Caller', trailers.caller)}",
    ]
    if trailers.mission:
        lines.append(f"Hcm-Mission: {_checked('Hcm-Mission', trailers.mission)}")
    if trailers.payload_sha256:
        lines.append(f"Hcm-Payload-Sha256: {_checked('Hcm-Payload-Sha256', trailers.payload_sha256)}")
    for key, value in trailers.extra.items():
        if not _is_extra_key(key):
            raise ValueError(f"trailer key {key!r} is not Hcm-<Word>")
        lines.append(f"{key}: {one_line_text(value, _EXTRA_MAX)}")
    if trailers.result is not None:
        lines.append(f"{_RESULT}: {_json_value(trailers.result)}")
    return subject + "\n\n" + "\n".join(lines) + "\n"


def _is_extra_key(key: str) -> bool:
    word = key[len("Hcm-") :]
    return (
        key.startswith("Hcm-")
        and key not in _ORDER
        and key != _RESULT
        and word.replace("-", "").isalnum()
        and word.isascii()
    )


def parse_trailers(message: str) -> dict[str, str]:
    """The trailers of the last paragraph, only if it is a block this module wrote: required keys
    present, each key once, known keys in order, the result last and valid JSON, every other line
    printable ASCII. Anything else is no trailers at all (never half of them). Lines are split on
    ``\\n`` only: older versions wrote the result's JSON with raw non-ASCII, U+2028 included, and
    it must stay inside its line."""
    paragraphs = message.rstrip("\n").split("\n\n")
    if len(paragraphs) < 2:
        return {}
    result: dict[str, str] = {}
    position = -1
    for line in paragraphs[-1].split("\n"):
        key, sep, value = line.partition(": ")
        if key == _RESULT:
            if not _is_json(value):
                return {}
        elif not line.isascii() or not line.isprintable():
            return {}
        if not sep or not value or key in result:
            return {}
        if key in _ORDER:
            rank = _ORDER.index(key)
            if rank <= position:
                return {}
            position = rank
        elif key == _RESULT:
            position = len(_ORDER) + 1
        elif _is_extra_key(key) and position < len(_ORDER) + 1:
            position = max(position, len(_ORDER))
        else:
            return {}
        result[key] = value
    if _RESULT in result and next(reversed(result)) != _RESULT:
        return {}
    if not all(key in result for key in _REQUIRED):
        return {}
    return result


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def parse_result(trailers: dict[str, str]) -> dict[str, Any] | None:
    """The ``Hcm-Result`` trailer's value (None when absent or not a JSON object)."""
    raw = trailers.get(_RESULT)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def subject_of(message: str) -> str:
    return message.split("\n", 1)[0]


def summary_of(message: str) -> str:
    """What a history listing shows of a commit: its subject after ``<OP> <target>: ``, or the
    whole subject of a commit that has no such prefix (a hand-made one)."""
    subject = subject_of(message)
    _, _, summary = subject.partition(": ")
    return summary or subject
