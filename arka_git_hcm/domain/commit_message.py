"""The commit message of one operation (contract section 5).

    <OP> <mission_id or path>: <short summary>

    Hcm-Op: <OP>
    Hcm-Request-Id: <request_id>
    Hcm-Caller: <type>/<id>
    Hcm-Mission: <mission_id>          (when there is one)
    Hcm-Payload-Sha256: <hex>          (idempotency: same request id, same payload)
    Hcm-Result: <compact JSON>         (what a replay of this request answers, when not derivable)

Trailers are the last paragraph, one ``Key: value`` a line, as `git interpret-trailers` reads them.
Values are single-line by construction (ids are validated; JSON is compact).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["OperationTrailers", "build_message", "parse_trailers"]

_SUMMARY_MAX = 72


@dataclass
class OperationTrailers:
    op: str
    request_id: str
    caller: str
    mission: str | None = None
    payload_sha256: str | None = None
    result: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def build_message(target: str, summary: str, trailers: OperationTrailers) -> str:
    subject = _one_line(f"{trailers.op} {target}: {summary}", 200)
    lines = [
        f"Hcm-Op: {trailers.op}",
        f"Hcm-Request-Id: {trailers.request_id}",
        f"Hcm-Caller: {trailers.caller}",
    ]
    if trailers.mission:
        lines.append(f"Hcm-Mission: {trailers.mission}")
    if trailers.payload_sha256:
        lines.append(f"Hcm-Payload-Sha256: {trailers.payload_sha256}")
    for key, value in trailers.extra.items():
        lines.append(f"{key}: {_one_line(value, 1000)}")
    if trailers.result is not None:
        lines.append(f"Hcm-Result: {trailers.result}")
    return subject + "\n\n" + "\n".join(lines) + "\n"


def parse_trailers(message: str) -> dict[str, str]:
    """The trailers of the last paragraph (empty if it is not a trailer block)."""
    paragraphs = message.strip().split("\n\n")
    if len(paragraphs) < 2:
        return {}
    result: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if not sep or not key or " " in key:
            return {}
        result[key] = value
    return result


def subject_of(message: str) -> str:
    return message.split("\n", 1)[0]
