"""Mission snapshots, day rollups, the day context and journal rotation."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..clock import OutOfRange, parse_day, parse_iso
from ..domain import envelope as p
from ..domain.layout import MissionPaths
from ..domain.models import OPEN_ACTION_STATUSES, DayRollup, MissionSnapshot, MissionStatus
from ..errors import InvalidPayload
from ..paths import join
from .base import OpContext, OpSpec, require_mission
from .outcome import WriteOutcome
from .records import _load_actions, _load_decisions
from .views import Draft, TreeView

__all__ = ["DAY_OPS"]


def _day_of(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        return parse_iso(timestamp).date().isoformat()
    except ValueError:
        return None


def _parse_day(text: str, field: str) -> date:
    try:
        return parse_day(text)
    except OutOfRange as exc:
        raise InvalidPayload(f"{field}: {exc}", {"field": field}) from None
    except ValueError:
        raise InvalidPayload(
            f"{field} {text!r} is not a calendar date (YYYY-MM-DD)", {"field": field}
        ) from None


def _last_journal_time(view: TreeView, paths: MissionPaths, entries: list[dict[str, Any]]) -> Any:
    """The last entry's time; after a rotation emptied the journal, the newest archive's."""
    if not entries:
        days = sorted(
            name
            for name, is_dir in view.list_dir(paths.archives_dir)
            if not is_dir and name.endswith(".jsonl")
        )
        entries = view.read_lines(join(paths.archives_dir, days[-1])) if days else []
    return entries[-1].get("timestamp") if entries else None


def snapshot_mission(ctx: OpContext, draft: Draft, payload: p.SnapshotMission) -> WriteOutcome:
    paths = require_mission(draft, payload.mission_id)
    moment = ctx.clock.now().astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dt%H%M%S") + f".{moment.microsecond // 1000:03d}z"
    path, suffix = paths.snapshot(stamp), 1
    while draft.exists(path):  # two snapshots in one millisecond: keep both
        suffix += 1
        path = paths.snapshot(f"{stamp}-{suffix}")
    entries = draft.read_lines(paths.journal)
    status = draft.load(paths.status, MissionStatus)
    actions = _load_actions(draft, paths).next_actions
    snapshot = MissionSnapshot(
        snapshot_id=f"snap-{stamp}" + (f"-{suffix}" if suffix > 1 else ""),
        timestamp=ctx.now(),
        mission_id=payload.mission_id,
        reason=payload.reason,
        status=status.to_json(),
        decisions_count=len(_load_decisions(draft, paths).decisions),
        open_actions_count=sum(1 for a in actions if a.status in OPEN_ACTION_STATUSES),
        evidence_count=sum(1 for _name, is_dir in draft.list_dir(paths.evidence_dir) if not is_dir),
        journal_entries_count=len(entries),
        last_journal_entry_at=_last_journal_time(draft, paths, entries),
    )
    draft.write_json(path, snapshot.to_json())
    data = {"snapshot_id": snapshot.snapshot_id, "path": path}
    return WriteOutcome(
        data,
        payload.mission_id,
        f"snapshot {snapshot.snapshot_id}",
        mission_id=payload.mission_id,
        stored_result=data,
        snapshot_tag=snapshot.snapshot_id,
    )


def _journal_of_day(view: TreeView, paths: MissionPaths, day: str) -> list[dict[str, Any]]:
    entries = view.read_lines(paths.archive(day)) + view.read_lines(paths.journal)
    return [e for e in entries if _day_of(e.get("timestamp")) == day]


def day_rollup(ctx: OpContext, draft: Draft, payload: p.DayPayload) -> WriteOutcome:
    """Key events from that day's journal; decisions and actions from that day's history: what
    changed between the state at the start of the day and the state at its end. Days before the
    history began (an adopted HCM) fall back to the records' own timestamps."""
    paths = require_mission(draft, payload.mission_id)
    the_day = _parse_day(payload.date, "date")
    start = datetime(the_day.year, the_day.month, the_day.day, tzinfo=UTC)
    before = ctx.state_at(start - timedelta(microseconds=1))
    after = ctx.state_at(start + timedelta(days=1) - timedelta(microseconds=1))
    day = payload.date
    events = _journal_of_day(draft, paths, day)
    if after is not None and after.exists(paths.meta):
        old_d = {d.decision_id: d.status for d in _load_decisions(before, paths).decisions} if before else {}
        old_a = {a.action_id: a.status for a in _load_actions(before, paths).next_actions} if before else {}
        new_d = _load_decisions(after, paths).decisions
        new_a = _load_actions(after, paths).next_actions
        decisions_made = [
            d.decision_id
            for d in new_d
            if d.decision_id not in old_d or (d.status == "validated" and old_d[d.decision_id] != "validated")
        ]
        created = [a.action_id for a in new_a if a.action_id not in old_a]
        closed = [
            a.action_id
            for a in new_a
            if a.status in ("done", "cancelled") and old_a.get(a.action_id) not in ("done", "cancelled")
        ]
        status_view = after
    else:
        decisions_made = [
            d.decision_id for d in _load_decisions(draft, paths).decisions if _day_of(d.timestamp) == day
        ]
        actions = _load_actions(draft, paths).next_actions
        created = [a.action_id for a in actions if _day_of(a.created_at) == day]
        closed = [
            a.action_id
            for a in actions
            if a.status in ("done", "cancelled") and _day_of(a.updated_at or a.created_at) == day
        ]
        status_view = draft
    status = status_view.load(paths.status, MissionStatus) if status_view.exists(paths.status) else None
    key_events = [str(e.get("message", "")) for e in events if e.get("entry_type") != "info"]
    rollup = DayRollup(
        snapshot_id=f"day-{day}",
        mission_id=payload.mission_id,
        date=day,
        summary=key_events[-1] if key_events else "",
        key_events=key_events,
        decisions_made=decisions_made,
        actions_created=created,
        actions_closed=closed,
        updated_status={
            k: v
            for k, v in (status.to_json() if status else {}).items()
            if k in ("phase", "status", "progress", "health")
        },
    )
    path = paths.day_rollup(day)
    draft.write_json(path, rollup.to_json())
    data = {"snapshot_id": rollup.snapshot_id, "path": path}
    return WriteOutcome(
        data, payload.mission_id, f"day rollup {day}", mission_id=payload.mission_id, stored_result=data
    )


def prepare_day_context(ctx: OpContext, view: TreeView, payload: p.PrepareDayContext) -> dict[str, Any]:
    paths = require_mission(view, payload.mission_id)
    today = _parse_day(payload.date, "date")
    previous = view.read_json(paths.day_rollup((today - timedelta(days=1)).isoformat()))
    open_actions = [
        a.to_json() for a in _load_actions(view, paths).next_actions if a.status in OPEN_ACTION_STATUSES
    ]
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    hints = []
    for action in sorted(
        open_actions, key=lambda a: (rank.get(a.get("priority") or "medium", 2), a.get("due_date") or "9999")
    ):
        due = _day_of(action.get("due_date"))
        overdue = due is not None and due < today.isoformat()
        if action.get("priority") in ("critical", "high") or (due is not None and due <= today.isoformat()):
            hints.append(("overdue: " if overdue else "") + str(action.get("title", action["action_id"])))
    return {
        "day_context": {
            "previous_day_rollup": previous,
            "open_actions": open_actions,
            "today_date": today.isoformat(),
            "today_objectives_hint": hints[:10],
        }
    }


def rotate_journal(ctx: OpContext, draft: Draft, payload: p.RotateJournal) -> WriteOutcome:
    """Move entries dated before ``before`` to journal/archives/journal.<day>.jsonl. Each line
    moves exactly once and byte for byte (appended to its day's archive, removed from the journal);
    lines without a readable timestamp stay in the journal; blank lines (HCM v1) are dropped."""
    paths = require_mission(draft, payload.mission_id)
    limit = _parse_day(payload.before, "before").isoformat()
    keep: list[bytes] = []
    moved: dict[str, list[bytes]] = {}
    for raw in (draft.read(paths.journal) or b"").split(b"\n"):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            keep.append(raw)
            continue
        day = _day_of(entry.get("timestamp")) if isinstance(entry, dict) else None
        if day is not None and day < limit:
            moved.setdefault(day, []).append(raw)  # the line itself: nothing re-encoded, nothing lost
        else:
            keep.append(raw)
    for day, lines in sorted(moved.items()):
        archive = paths.archive(day)
        existing = draft.read(archive) or b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        draft.write(archive, existing + b"\n".join(lines) + b"\n")
    draft.write(paths.journal, b"".join(line + b"\n" for line in keep))
    days = sorted(moved)
    data = {"archived_days": days}
    return WriteOutcome(
        data,
        payload.mission_id,
        f"rotate {sum(map(len, moved.values()))} entries of {len(days)} day(s)",
        mission_id=payload.mission_id,
        stored_result=data,
    )


DAY_OPS = [
    OpSpec(
        "HCM_SNAPSHOT_MISSION",
        "write",
        p.SnapshotMission,
        snapshot_mission,
        tag_of=lambda stored: (stored or {}).get("snapshot_id"),
    ),
    OpSpec("HCM_DAY_ROLLUP", "write", p.DayPayload, day_rollup),
    OpSpec("HCM_PREPARE_DAY_CONTEXT", "read", p.PrepareDayContext, prepare_day_context, zone="agent_ok"),
    OpSpec("HCM_ROTATE_JOURNAL", "write", p.RotateJournal, rotate_journal),
]
