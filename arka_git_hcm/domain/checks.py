"""Shape checks of one HCM file's bytes: what `arka-hcm verify` reports, and what decides
whether a hand edit may enter history (one that does not parse or breaks its model would make
every later read of the file fail).

Findings are *errors* (a file that is not JSON, a journal line that is not an entry, a required
field missing) or *warnings* (quirks of HCM folders written by earlier implementations:
non-canonical formatting, blank journal lines, an evidence file whose name differs from its id,
upper-case ids, files the layout does not name).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import HcmError
from ..ids import is_valid_id
from ..jsonio import canonical_bytes, parse_json
from .layout import LAYERS, META, model_for_path
from .models import JournalEntry

__all__ = ["Finding", "check_file"]

_ID_FIELDS = ("mission_id", "evidence_id", "action_id", "decision_id", "agent_id", "human_id")


@dataclass
class Finding:
    severity: Literal["error", "warning"]
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity, "path": self.path, "message": self.message}


def _ids_in(value: Any) -> Iterable[tuple[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if key in _ID_FIELDS:
                    yield key, sub
                elif isinstance(sub, (dict, list)):
                    stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def _is_mission_evidence(path: str) -> bool:
    """``state/missions/<id>/evidence/<evidence_id>.json``: the only files named after an evidence
    id (``stable/patterns/evidence/*.json`` are patterns, not evidence)."""
    parts = path.split("/")
    return (
        len(parts) == 5
        and parts[0] == "state"
        and parts[1] == "missions"
        and parts[3] == "evidence"
        and parts[4].endswith(".json")
    )


def check_file(path: str, data: bytes) -> list[Finding]:
    """Shape checks of one file's bytes."""
    found: list[Finding] = []
    if path.endswith(".jsonl"):
        lines = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                if number < len(lines):
                    found.append(Finding("warning", path, f"line {number} is blank"))
                continue
            try:
                entry = parse_json(line, what=f"line {number}")
                JournalEntry.model_validate(entry)
            except HcmError as exc:
                found.append(Finding("error", path, f"line {number}: {exc.message}"))
                continue
            except ValidationError as exc:
                err = exc.errors()[0]
                found.append(
                    Finding("error", path, f"line {number}: {'.'.join(map(str, err['loc']))}: {err['msg']}")
                )
                continue
        if data and not data.endswith(b"\n"):
            found.append(Finding("warning", path, "no newline after the last line"))
        return found
    if not path.endswith(".json"):
        found.append(Finding("warning", path, "not a JSON file; the HCM holds .json and .jsonl files"))
        return found
    try:
        value = parse_json(data, what=path, max_depth=512)
    except HcmError as exc:
        return [Finding("error", path, exc.message)]
    model = model_for_path(path)
    if model is not None:
        try:
            model.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors()[:5]:
                where = ".".join(str(p) for p in err["loc"])
                found.append(Finding("error", path, f"{where}: {err['msg']}"))
    if data != canonical_bytes(value):
        found.append(
            Finding("warning", path, "not in canonical form (2-space indent, sorted keys, final newline)")
        )
    for key, value_id in _ids_in(value):
        if not is_valid_id(value_id):
            found.append(Finding("warning", path, f"{key} {value_id!r} does not follow the id rules"))
    if _is_mission_evidence(path) and isinstance(value, dict):
        stem = path.rsplit("/", 1)[-1][: -len(".json")]
        if value.get("evidence_id") != stem:
            found.append(
                Finding(
                    "warning",
                    path,
                    f"file name {stem!r} differs from evidence_id {value.get('evidence_id')!r}",
                )
            )
    if path.split("/")[0] not in LAYERS and path != META:
        found.append(Finding("warning", path, "outside the HCM layers (stable, domain, state, hindex)"))
    return found
