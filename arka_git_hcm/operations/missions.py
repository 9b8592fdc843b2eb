"""Mission operations: create, context, list, status, journal."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..domain import envelope as p
from ..domain.envelope import describe_validation_error
from ..domain.layout import MISSIONS_DIR, MissionPaths
from ..domain.models import DecisionsFile, JournalEntry, MissionMeta, MissionStatus, NextActionsFile
from ..errors import AccessDenied, ConflictingUpdate, InvalidPayload, PayloadTooLarge
from ..jsonio import compact_dumps
from .base import OpContext, OpSpec, require_mission
from .outcome import WriteOutcome
from .views import Draft, TreeView

__all__ = ["MISSION_OPS"]


def create_mission(ctx: OpContext, draft: Draft, payload: p.CreateMission) -> WriteOutcome:
    paths = MissionPaths(payload.mission_id)
    if draft.exists(paths.root):
        raise ConflictingUpdate(
            f"mission {payload.mission_id!r} already exists", {"mission_id": payload.mission_id}
        )
    now = ctx.now()
    meta = MissionMeta(
        mission_id=payload.mission_id, created_at=now, updated_at=now, **payload.meta.model_dump()
    )
    status = MissionStatus(last_update=now)
    if payload.status is not None:
        status = _valid_status(status.to_json() | payload.status.model_dump(exclude_unset=True))
    draft.write_json(paths.meta, meta.to_json())
    draft.write_json(paths.status, status.to_json())
    draft.write(paths.journal, b"")
    draft.write_json(paths.decisions, DecisionsFile().to_json())
    draft.write_json(paths.next_actions, NextActionsFile().to_json())
    return WriteOutcome(
        {"mission_id": payload.mission_id},
        payload.mission_id,
        f"create '{payload.meta.title}'",
        mission_id=payload.mission_id,
        stored_result={"mission_id": payload.mission_id},
    )


def _valid_status(value: dict[str, Any]) -> MissionStatus:
    """The merged status, or INVALID_PAYLOAD naming the field (``{"health": null}`` passes the
    payload model, whose fields are optional, but not the file's)."""
    try:
        return MissionStatus.model_validate(value)
    except ValidationError as exc:
        raise describe_validation_error(exc, "payload.status") from None


def last_entries(view: TreeView, paths: MissionPaths, count: int) -> list[dict[str, Any]]:
    if count <= 0:
        return []
    return view.read_last_lines(paths.journal, count)


def get_mission_context(ctx: OpContext, view: TreeView, payload: p.GetMissionContext) -> dict[str, Any]:
    options = payload.options
    if options.include_last_entries > ctx.limits.max_last_entries:
        raise InvalidPayload(
            f"options.include_last_entries is at most {ctx.limits.max_last_entries}",
            {"field": "options.include_last_entries"},
        )
    paths = require_mission(view, payload.mission_id)
    data: dict[str, Any] = {
        "mission_id": payload.mission_id,
        "meta": view.load(paths.meta, MissionMeta).to_json(),
        "status": view.load(paths.status, MissionStatus).to_json(),
        "last_journal_entries": last_entries(view, paths, options.include_last_entries),
    }
    if options.include_decisions:
        data["decisions"] = _decisions(view, paths).to_json()["decisions"]
    if options.include_next_actions:
        data["next_actions"] = _actions(view, paths).to_json()["next_actions"]
    return data


def _decisions(view: TreeView, paths: MissionPaths) -> DecisionsFile:
    return view.load(paths.decisions, DecisionsFile) if view.exists(paths.decisions) else DecisionsFile()


def _actions(view: TreeView, paths: MissionPaths) -> NextActionsFile:
    if view.exists(paths.next_actions):
        return view.load(paths.next_actions, NextActionsFile)
    return NextActionsFile()


def list_missions(ctx: OpContext, view: TreeView, payload: p.ListMissions) -> dict[str, Any]:
    missions = []
    for name, is_dir in view.list_dir(MISSIONS_DIR):
        if not is_dir:
            continue
        try:
            paths = MissionPaths(name)
        except InvalidPayload:
            continue  # a folder that is not a mission id (verify reports it)
        if not view.exists(paths.meta):
            continue
        meta = view.load(paths.meta, MissionMeta)
        status = view.load(paths.status, MissionStatus) if view.exists(paths.status) else None
        row = {
            "mission_id": name,
            "title": meta.title,
            "status": status.status if status else None,
            "phase": status.phase if status else None,
            "health": status.health if status else None,
            "client_id": meta.client_id,
        }
        if payload.filters.status and row["status"] != payload.filters.status:
            continue
        if payload.filters.client_id and row["client_id"] != payload.filters.client_id:
            continue
        missions.append(row)
    return {"missions": missions}


def update_status(ctx: OpContext, draft: Draft, payload: p.UpdateStatus) -> WriteOutcome:
    paths = require_mission(draft, payload.mission_id)
    current = draft.load(paths.status, MissionStatus)
    patch = payload.status.model_dump(exclude_unset=True)
    if not patch:
        raise InvalidPayload("status must change at least one field", {"field": "status"})
    status = _valid_status(current.to_json() | patch | {"last_update": ctx.now()})
    draft.write_json(paths.status, status.to_json())
    fields = ", ".join(sorted(patch))
    return WriteOutcome(
        {"status": status.to_json()},
        payload.mission_id,
        f"update {fields}",
        mission_id=payload.mission_id,
        stored_result={"mission_id": payload.mission_id},
    )


def replay_status(stored: dict[str, Any] | None, view: TreeView) -> dict[str, Any]:
    assert stored is not None
    return {"status": view.load(MissionPaths(stored["mission_id"]).status, MissionStatus).to_json()}


def journal_author(ctx: OpContext, given: p.JournalEntryInput) -> tuple[str, str]:
    """Who an entry is by. Agents and people write only as themselves (the author is their token's
    identity: an agent once signed entries ``human/ceo``); the system caller, Arka OS itself,
    names whom it writes for."""
    caller = ctx.caller
    if caller.type == "system":
        if given.author_type is None or given.author_id is None:
            return caller.type, caller.id
        return given.author_type, given.author_id
    if given.author_type not in (None, caller.type) or given.author_id not in (None, caller.id):
        raise AccessDenied(
            f"{caller.label} writes journal entries only as itself: omit entry.author_type and "
            f"entry.author_id, or set them to {caller.type} and {caller.id}",
            {"field": "entry.author_id", "caller": caller.label},
        )
    return caller.type, caller.id


def append_journal(ctx: OpContext, draft: Draft, payload: p.AppendJournal) -> WriteOutcome:
    paths = require_mission(draft, payload.mission_id)
    author_type, author_id = journal_author(ctx, payload.entry)
    fields = payload.entry.model_dump(exclude_none=True)
    fields |= {"author_type": author_type, "author_id": author_id}
    entry = JournalEntry(timestamp=ctx.now(), **fields)
    try:
        line = compact_dumps(entry.model_dump(mode="json", exclude_none=True)).encode("utf-8")
    except (ValueError, TypeError) as exc:  # NaN/Infinity in context, from a Python caller
        raise InvalidPayload(f"entry is not valid JSON ({exc})", {"field": "entry.context"}) from None
    limit = ctx.limits.max_journal_line_bytes
    if len(line) > limit:
        raise PayloadTooLarge(
            f"the journal entry is {len(line)} bytes; one line holds at most {limit}",
            {"limit": limit, "size": len(line)},
        )
    existing = draft.read(paths.journal) or b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"  # HCM v1 files may lack the final newline: never glue two entries
    draft.write(paths.journal, existing + line + b"\n")
    return WriteOutcome(
        {"entry": entry.model_dump(mode="json", exclude_none=True)},
        payload.mission_id,
        f"{entry.entry_type} by {entry.author_type}/{entry.author_id}",
        mission_id=payload.mission_id,
        stored_result={"mission_id": payload.mission_id},
    )


def replay_journal(stored: dict[str, Any] | None, view: TreeView) -> dict[str, Any]:
    assert stored is not None
    entries = view.read_lines(MissionPaths(stored["mission_id"]).journal)
    return {"entry": entries[-1] if entries else None}


MISSION_OPS = [
    OpSpec("HCM_CREATE_MISSION", "write", p.CreateMission, create_mission),
    OpSpec(
        "HCM_GET_MISSION_CONTEXT",
        "read",
        p.GetMissionContext,
        get_mission_context,
        zone="agent_ok",
        quick=True,
    ),
    OpSpec("HCM_LIST_MISSIONS", "read", p.ListMissions, list_missions, zone="agent_ok"),
    OpSpec("HCM_UPDATE_STATUS", "write", p.UpdateStatus, update_status, replay=replay_status),
    OpSpec(
        "HCM_APPEND_JOURNAL", "write", p.AppendJournal, append_journal, replay=replay_journal, zone="agent_ok"
    ),
]
