"""Team members and documents of stable/, domain/ and hindex/."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..domain import envelope as p
from ..domain.envelope import describe_validation_error
from ..domain.layout import AGENTS, DOCUMENT_LAYERS, HUMANS, model_for_path
from ..domain.models import Agent, AgentsFile, Human, HumansFile
from ..errors import InvalidPayload, NotFound, PayloadTooLarge
from ..ids import validate_id
from ..jsonio import canonical_bytes
from ..paths import check_relative
from .base import OpContext, OpSpec
from .outcome import WriteOutcome
from .views import Draft, TreeView

__all__ = ["TEAM_DOC_OPS", "document_path"]


def json_bytes(value: Any, field: str) -> bytes:
    """Canonical bytes of a free-form JSON value from the caller. Envelopes given to execute() as
    Python objects have not been through the strict parser: NaN, Infinity or a non-JSON type is a
    bad payload, not an internal error."""
    try:
        return canonical_bytes(value)
    except (ValueError, TypeError) as exc:
        raise InvalidPayload(f"{field} is not valid JSON ({exc})", {"field": field}) from None


def get_team(ctx: OpContext, view: TreeView, payload: p.GetTeam) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if payload.kind in (None, "agent"):
        data["agents"] = (view.load(AGENTS, AgentsFile) if view.exists(AGENTS) else AgentsFile()).to_json()[
            "agents"
        ]
    if payload.kind in (None, "human"):
        data["humans"] = (view.load(HUMANS, HumansFile) if view.exists(HUMANS) else HumansFile()).to_json()[
            "humans"
        ]
    return data


def upsert_team_member(ctx: OpContext, draft: Draft, payload: p.UpsertTeamMember) -> WriteOutcome:
    model, path, key, id_field = (
        (Agent, AGENTS, "agents", "agent_id")
        if payload.kind == "agent"
        else (Human, HUMANS, "humans", "human_id")
    )
    try:
        member = model.model_validate(payload.member)
    except ValidationError as exc:
        raise describe_validation_error(exc, "member") from None
    member_id: str = getattr(member, id_field)
    current = draft.read_json(path) or {key: []}
    rows = list(current.get(key, []))
    position = next(
        (i for i, r in enumerate(rows) if isinstance(r, dict) and r.get(id_field) == member_id), None
    )
    if position is None:
        # New members follow the id rules; one already in the file (HCM v1 left "LDHC-AGPR") may
        # still be updated under its legacy id.
        validate_id(member_id, f"member.{id_field}")
        rows.append(member.to_json())
        verb = "add"
    else:
        rows[position] = rows[position] | member.model_dump(mode="json", exclude_unset=True)
        verb = "update"
    draft.write_json(path, current | {key: rows})
    result = rows[-1] if position is None else rows[position]
    return WriteOutcome(
        {"member": result}, path, f"{verb} {payload.kind} {member_id}", stored_result={"member": result}
    )


def document_path(path: str) -> str:
    check_relative(path)
    if path.split("/")[0] not in DOCUMENT_LAYERS or "/" not in path or not path.endswith(".json"):
        raise InvalidPayload(
            "documents are .json files under stable/, domain/ or hindex/ (e.g. stable/glossary/core.json)",
            {"field": "path"},
        )
    return path


def get_document(ctx: OpContext, view: TreeView, payload: p.GetDocument) -> dict[str, Any]:
    path = document_path(payload.path)
    if view.read(path) is None:  # (a document may hold JSON null: test for the file, not the value)
        raise NotFound(f"document {path} does not exist", {"path": path})
    return {"path": path, "content": view.read_json(path)}


def put_document(ctx: OpContext, draft: Draft, payload: p.PutDocument) -> WriteOutcome:
    path = document_path(payload.path)
    if draft.exists(path) and draft.read(path) is None:
        raise InvalidPayload(f"{path} is a folder, not a document", {"field": "path", "path": path})
    data = json_bytes(payload.content, "content")
    limit = ctx.limits.max_document_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"the document is {len(data)} bytes; the limit is {limit}", {"limit": limit})
    model = model_for_path(path)
    if model is not None:
        try:
            model.model_validate(payload.content)
        except ValidationError as exc:
            raise describe_validation_error(exc, "content") from None
    verb = "update" if draft.exists(path) else "add"
    draft.write(path, data)
    return WriteOutcome(
        {"path": path, "content": payload.content}, path, f"{verb} document", stored_result={"path": path}
    )


def replay_document(stored: dict[str, Any] | None, view: TreeView) -> dict[str, Any]:
    assert stored is not None
    return {"path": stored["path"], "content": view.read_json(stored["path"])}


TEAM_DOC_OPS = [
    OpSpec("HCM_GET_TEAM", "read", p.GetTeam, get_team, zone="agent_ok", quick=True),
    OpSpec("HCM_UPSERT_TEAM_MEMBER", "write", p.UpsertTeamMember, upsert_team_member),
    OpSpec("HCM_GET_DOCUMENT", "read", p.GetDocument, get_document, zone="agent_ok", quick=True),
    OpSpec("HCM_PUT_DOCUMENT", "write", p.PutDocument, put_document, replay=replay_document, zone="admin"),
]
