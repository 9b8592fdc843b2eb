"""Evidence, next actions and decisions of a mission."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..domain import envelope as p
from ..domain.envelope import describe_validation_error
from ..domain.layout import MissionPaths
from ..domain.models import DECISION_ORDER, Decision, DecisionsFile, Evidence, NextAction, NextActionsFile
from ..errors import ConflictingUpdate, InvalidPayload
from ..ids import validate_id
from .base import OpContext, OpSpec, require_mission
from .outcome import WriteOutcome
from .views import Draft, TreeView

__all__ = ["RECORD_OPS"]

M = TypeVar("M", bound=BaseModel)
_ID_ATTEMPTS = 16


def _valid(model: type[M], value: dict[str, Any], where: str) -> M:
    """``value`` as ``model``, or INVALID_PAYLOAD naming the field: the payload models accept
    ``null`` for every optional input (``{"title": null}``), the file models do not."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise describe_validation_error(exc, where) from None


def _fresh_id(ctx: OpContext, prefix: str, taken: Callable[[str], bool]) -> str:
    """A new id not used yet in this mission. Ids are random (or injected by tests), and an HCM v1
    mission already holds ids such as ``act-0001``: a collision must never overwrite a record."""
    for _ in range(_ID_ATTEMPTS):
        candidate = ctx.new_id(prefix)
        if not taken(candidate):
            return candidate
    raise ConflictingUpdate(f"could not draw an unused {prefix} id; retry", {"prefix": prefix})


def add_evidence(ctx: OpContext, draft: Draft, payload: p.AddEvidence) -> WriteOutcome:
    paths = require_mission(draft, payload.mission_id)
    evidence_id = _fresh_id(ctx, "ev", lambda candidate: draft.exists(paths.evidence(candidate)))
    path = paths.evidence(evidence_id)
    evidence = Evidence(
        evidence_id=evidence_id,
        created_at=ctx.now(),
        created_by_type=ctx.caller.type,
        created_by_id=ctx.caller.id,
        **payload.evidence.model_dump(exclude_none=True),
    )
    draft.write_json(path, evidence.to_json())
    data = {"evidence_id": evidence_id, "path": path}
    return WriteOutcome(
        data,
        payload.mission_id,
        f"evidence {evidence_id} '{evidence.title}'",
        mission_id=payload.mission_id,
        stored_result=data,
    )


def _load_actions(view: TreeView, paths: MissionPaths) -> NextActionsFile:
    if view.exists(paths.next_actions):
        return view.load(paths.next_actions, NextActionsFile)
    return NextActionsFile()


def update_next_actions(ctx: OpContext, draft: Draft, payload: p.UpdateNextActions) -> WriteOutcome:
    paths = require_mission(draft, payload.mission_id)
    current = _load_actions(draft, paths)
    by_id = {a.action_id: i for i, a in enumerate(current.next_actions)}
    actions = list(current.next_actions)
    now = ctx.now()
    created, updated = 0, 0
    for index, item in enumerate(payload.actions):
        fields = item.model_dump(exclude_unset=True)
        fields.pop("action_id", None)
        if item.action_id is None:
            if not item.title:
                raise InvalidPayload(
                    f"actions.{index}.title is required to create an action",
                    {"field": f"actions.{index}.title"},
                )
            action_id = _fresh_id(ctx, "act", by_id.__contains__)
            action = _valid(
                NextAction,
                {**fields, "action_id": action_id, "created_at": now, "updated_at": now},
                f"payload.actions.{index}",
            )
            by_id[action.action_id] = len(actions)
            actions.append(action)
            created += 1
            continue
        if item.action_id not in by_id:
            # A malformed id is a bad request; a well-formed unknown one, a stale view. (An id
            # already in the file is accepted as it is: HCM v1 files may hold legacy ids.)
            validate_id(item.action_id, f"actions.{index}.action_id")
            # An unknown id means the caller's view is stale: refuse the whole update.
            raise ConflictingUpdate(
                f"action {item.action_id!r} does not exist in mission {payload.mission_id!r}; "
                "nothing was written (create it with action_id null)",
                {"action_id": item.action_id},
            )
        position = by_id[item.action_id]
        merged = actions[position].to_json() | fields | {"updated_at": now}
        actions[position] = _valid(NextAction, merged, f"payload.actions.{index}")
        updated += 1
    result = current.model_copy(update={"next_actions": actions})  # keeps the file's unknown keys
    draft.write_json(paths.next_actions, result.to_json())
    return WriteOutcome(
        result.to_json(),
        payload.mission_id,
        f"{created} created, {updated} updated",
        mission_id=payload.mission_id,
        stored_result={"mission_id": payload.mission_id},
    )


def replay_actions(stored: dict[str, Any] | None, view: TreeView) -> dict[str, Any]:
    assert stored is not None
    return _load_actions(view, MissionPaths(stored["mission_id"])).to_json()


def _load_decisions(view: TreeView, paths: MissionPaths) -> DecisionsFile:
    return view.load(paths.decisions, DecisionsFile) if view.exists(paths.decisions) else DecisionsFile()


def record_decision(ctx: OpContext, draft: Draft, payload: p.RecordDecision) -> WriteOutcome:
    paths = require_mission(draft, payload.mission_id)
    current = _load_decisions(draft, paths)
    decisions = list(current.decisions)
    item = payload.decision
    fields = item.model_dump(exclude_unset=True)
    fields.pop("decision_id", None)
    if item.decision_id is None:
        if not item.title:
            raise InvalidPayload(
                "decision.title is required to record a new decision", {"field": "decision.title"}
            )
        taken = {d.decision_id for d in decisions}
        decision = _valid(
            Decision,
            {
                **fields,
                "decision_id": _fresh_id(ctx, "dec", taken.__contains__),
                "timestamp": ctx.now(),
                "made_by_type": ctx.caller.type,
                "made_by_id": ctx.caller.id,
            },
            "payload.decision",
        )
        decisions.append(decision)
        verb = "record"
    else:
        position = next((i for i, d in enumerate(decisions) if d.decision_id == item.decision_id), None)
        if position is None:
            validate_id(item.decision_id, "decision.decision_id")
            raise ConflictingUpdate(
                f"decision {item.decision_id!r} does not exist in this mission",
                {"decision_id": item.decision_id},
            )
        old = decisions[position]
        if "status" in fields and fields["status"] is None:
            raise InvalidPayload(
                "decision.status cannot be null; omit it to keep the current status",
                {"field": "decision.status"},
            )
        _check_transition(old, fields)
        decision = _valid(Decision, old.to_json() | fields, "payload.decision")
        decisions[position] = decision
        verb = "update"
    draft.write_json(paths.decisions, current.model_copy(update={"decisions": decisions}).to_json())
    data = {"decision_id": decision.decision_id}
    return WriteOutcome(
        data,
        payload.mission_id,
        f"{verb} decision {decision.decision_id} ({decision.status})",
        mission_id=payload.mission_id,
        stored_result=data,
    )


def _check_transition(old: Decision, fields: dict[str, Any]) -> None:
    """Decisions move forward only: draft -> proposed -> validated -> deprecated; a validated
    decision may only be deprecated, and a deprecated one no longer changes."""
    new_status = fields.get("status", old.status)
    if DECISION_ORDER[new_status] < DECISION_ORDER[old.status]:
        raise ConflictingUpdate(
            f"decision {old.decision_id} cannot go back from {old.status} to {new_status}",
            {"decision_id": old.decision_id, "from": old.status, "to": new_status},
        )
    if old.status in ("validated", "deprecated"):
        other = {k for k, v in fields.items() if k != "status" and v != getattr(old, k, None)}
        if old.status == "deprecated" or other or new_status != "deprecated":
            raise ConflictingUpdate(
                f"decision {old.decision_id} is {old.status}: it can only be deprecated, not edited",
                {"decision_id": old.decision_id, "status": old.status, "fields": sorted(other)},
            )


def get_decisions(ctx: OpContext, view: TreeView, payload: p.GetDecisions) -> dict[str, Any]:
    paths = require_mission(view, payload.mission_id)
    rows = []
    for decision in _load_decisions(view, paths).decisions:
        if payload.filters.status and decision.status != payload.filters.status:
            continue
        if payload.filters.related_phase and decision.related_phase != payload.filters.related_phase:
            continue
        rows.append(decision.to_json())
    return {"decisions": rows}


RECORD_OPS = [
    OpSpec("HCM_ADD_EVIDENCE", "write", p.AddEvidence, add_evidence, zone="agent_ok"),
    OpSpec(
        "HCM_UPDATE_NEXT_ACTIONS",
        "write",
        p.UpdateNextActions,
        update_next_actions,
        replay=replay_actions,
        zone="agent_ok",
    ),
    OpSpec("HCM_RECORD_DECISION", "write", p.RecordDecision, record_decision, zone="agent_ok"),
    OpSpec("HCM_GET_DECISIONS", "read", p.GetDecisions, get_decisions, zone="agent_ok", quick=True),
]
