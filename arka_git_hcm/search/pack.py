"""An agent's context pack: a mission's context and the best hits for its question, in a budget.

``max_bytes`` bounds the pack as JSON without spaces (the way the HTTP service and the CLI's
``--json`` compact form write it, UTF-8): the pack is filled in order of use to an agent and
what does not fit is counted in ``omitted``, never cut in the middle of a value:

1. the mission's meta and status (long texts shortened if even they do not fit; if the bare
   mission names do not fit either, the budget is refused as too small);
2. the hits, best first;
3. the last journal entries, newest first (shown in their order);
4. the decisions, then the next actions.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidPayload
from ..jsonio import compact_dumps

__all__ = ["build_pack", "json_size"]

_SIZE_DIGITS = 8  # room kept for the "bytes" value itself
_SHORT_TEXT = 200


def json_size(value: Any) -> int:
    return len(compact_dumps(value).encode("utf-8"))


def build_pack(
    *,
    mission_id: str,
    revision: str | None,
    index_revision: str,
    context: dict[str, Any],
    hits: list[dict[str, Any]],
    matched: str,
    max_bytes: int,
) -> dict[str, Any]:
    entries = list(context.get("last_journal_entries") or [])
    decisions = list(context.get("decisions") or [])
    actions = list(context.get("next_actions") or [])
    pack: dict[str, Any] = {
        "mission_id": mission_id,
        "revision": revision,
        "index_revision": index_revision,
        "matched": matched,
        "context": {k: context[k] for k in ("meta", "status") if k in context},
        "hits": [],
        "last_journal_entries": [],
        "decisions": [],
        "next_actions": [],
        "omitted": {"hits": 0, "last_journal_entries": 0, "decisions": 0, "next_actions": 0, "shortened": []},
        "bytes": 0,
    }
    budget = max_bytes - _SIZE_DIGITS
    _fit_context(pack, budget)
    used = json_size(pack)
    used = _fill(pack, "hits", hits, used, budget)
    newest_first = list(reversed(entries))
    used = _fill(pack, "last_journal_entries", newest_first, used, budget)
    pack["last_journal_entries"].reverse()
    used = _fill(pack, "decisions", list(reversed(decisions)), used, budget)
    _fill(pack, "next_actions", actions, used, budget)
    without = json_size(pack)  # with "bytes": 0, one digit
    size = without
    while size != without - 1 + len(str(size)):
        size = without - 1 + len(str(size))
    pack["bytes"] = size
    return pack


def _fill(pack: dict[str, Any], key: str, items: list[Any], used: int, budget: int) -> int:
    """Append items while they fit; count the rest. ``used`` is the pack's exact size."""
    target: list[Any] = pack[key]
    for position, item in enumerate(items):
        cost = json_size(item) + (1 if target else 0)  # the comma before it
        if used + cost > budget:
            pack["omitted"][key] = len(items) - position
            # the count's digits replace a "0"
            used += len(str(pack["omitted"][key])) - 1
            break
        target.append(item)
        used += cost
    return used


def _fit_context(pack: dict[str, Any], budget: int) -> None:
    """Make the mission's meta and status fit: shorten long strings, then keep only the
    fields that name the mission and its state."""
    if json_size(pack) <= budget:
        return
    context = pack["context"]
    for part in ("status", "meta"):
        if part in context and isinstance(context[part], dict):
            shortened = [k for k, v in context[part].items() if isinstance(v, str) and len(v) > _SHORT_TEXT]
            context[part] = {
                k: (v[:_SHORT_TEXT] + "…" if k in shortened else v) for k, v in context[part].items()
            }
            pack["omitted"]["shortened"] += [f"{part}.{k}" for k in shortened]
    if json_size(pack) <= budget:
        return
    keep = {
        "meta": ("mission_id", "title", "mission_type"),
        "status": ("phase", "status", "health", "progress"),
    }
    for part, fields in keep.items():
        if part in context and isinstance(context[part], dict):
            dropped = [k for k in context[part] if k not in fields]
            context[part] = {k: v for k, v in context[part].items() if k in fields}
            pack["omitted"]["shortened"] += [f"{part}.{k}" for k in dropped]
    if json_size(pack) > budget:
        raise InvalidPayload(
            f"max_bytes {budget + _SIZE_DIGITS} cannot hold even the mission's names; give more",
            {"field": "max_bytes", "needed": json_size(pack) + _SIZE_DIGITS},
        )
