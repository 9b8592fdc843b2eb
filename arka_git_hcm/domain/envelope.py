"""The request/response envelope (contract section 3) and the payload model of every operation.

Payload models forbid unknown keys: a typo (``mision_id``) is an INVALID_PAYLOAD naming the field,
not a silently ignored value. Validation reports every bad field at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import InvalidPayload
from ..ids import Role, is_valid_id, validate_request_id
from .models import (
    ActionStatus,
    ActorType,
    Confidence,
    DecisionStatus,
    EntryType,
    Health,
    MissionStatusValue,
    Priority,
)

__all__ = [
    "Caller",
    "Envelope",
    "describe_validation_error",
    "parse_envelope",
]

_DATE = r"^\d{4}-\d{2}-\d{2}$"
_CALLER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


MAX_REPORTED_ERRORS = 20  # problems listed in one INVALID_PAYLOAD; the rest are counted


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1_000_000, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_keys(cls, data: Any) -> Any:
        """Stop early on an object with many unknown keys: each would be its own error, and
        150,000 of them in a 1 MB body cost a second of the event loop and a 7.6 MB answer."""
        if isinstance(data, dict) and len(data) > len(cls.model_fields) + MAX_REPORTED_ERRORS:
            known = {name for name in cls.model_fields} | {
                f.alias for f in cls.model_fields.values() if f.alias is not None
            }
            unknown = [key for key in data if key not in known]
            if len(unknown) > MAX_REPORTED_ERRORS:
                shown = ", ".join(repr(str(key)[:40]) for key in unknown[:5])
                raise ValueError(
                    f"{len(unknown)} unknown fields (e.g. {shown}); this object has no such fields"
                )
        return data


def _check_id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError(
            "must be 1-128 of a-z 0-9 . _ -, starting and ending with a letter or digit, "
            "without '..' or a Windows device name"
        )
    return value


HcmId = Annotated[str, AfterValidator(_check_id)]


class Caller(_Payload):
    type: ActorType
    id: str
    roles: list[Role] = []

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _CALLER_ID.match(value):
            raise ValueError("caller id must be 1-128 of letters, digits, . _ @ -")
        return value

    @property
    def label(self) -> str:
        return f"{self.type}/{self.id}"


class Envelope(_Payload):
    op: str = Field(min_length=1, max_length=64)
    request_id: str
    caller: Caller
    payload: dict[str, Any] = {}

    @field_validator("request_id")
    @classmethod
    def _check_request_id(cls, value: str) -> str:
        validate_request_id(value)
        return value


# --- payloads ---------------------------------------------------------------------------------


class _MissionScoped(_Payload):
    mission_id: HcmId


class _At(_Payload):
    at: str | None = Field(None, max_length=200)


class MissionMetaInput(_Payload):
    title: str = Field(min_length=1, max_length=500)
    mission_type: str = Field(min_length=1, max_length=100)
    client_id: str | None = Field(None, max_length=128)
    client_name: str | None = Field(None, max_length=500)
    owner_human_id: str | None = Field(None, max_length=128)
    owner_agent_id: str | None = Field(None, max_length=128)
    tags: list[str] = Field([], max_length=100)


class RiskInput(_Payload):
    risk_id: str = Field(min_length=1, max_length=128)
    severity: str = Field(min_length=1, max_length=50)
    summary: str = Field(max_length=5000)
    owner: str | None = Field(None, max_length=128)


class StatusPatch(_Payload):
    phase: str | None = Field(None, min_length=1, max_length=100)
    phase_label: str | None = Field(None, max_length=500)
    status: Literal["planned", "in_progress", "on_hold", "done", "cancelled"] | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    health: Health | None = None
    risks: list[RiskInput] | None = Field(None, max_length=500)
    summary: str | None = Field(None, max_length=20000)


class CreateMission(_MissionScoped):
    meta: MissionMetaInput
    status: StatusPatch | None = None


class ContextOptions(_Payload):
    include_last_entries: int = Field(10, ge=0)
    include_decisions: bool = False
    include_next_actions: bool = False


class GetMissionContext(_MissionScoped, _At):
    options: ContextOptions = ContextOptions()


class MissionFilters(_Payload):
    status: MissionStatusValue | None = None  # a value no mission can have is an error, not []
    client_id: str | None = None


class ListMissions(_At):
    filters: MissionFilters = MissionFilters()


class JournalEntryInput(_Payload):
    # the caller's own identity when omitted; only a system caller may name someone else
    author_type: ActorType | None = None
    author_id: str | None = Field(None, min_length=1, max_length=128)
    entry_type: EntryType
    message: str = Field(min_length=1)
    context: dict[str, Any] | None = None


class AppendJournal(_MissionScoped):
    entry: JournalEntryInput


class SourceInput(_Payload):
    origin: str = Field(min_length=1, max_length=500)
    details: str = Field("", max_length=20000)


class AttachmentInput(_Payload):
    type: str = Field(min_length=1, max_length=50)
    path: str = Field(min_length=1, max_length=1000)


class EvidenceInput(_Payload):
    type: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=500)
    source: SourceInput | None = None
    confidence: Confidence | None = None
    summary: str = Field("", max_length=100_000)
    highlights: list[str] = Field([], max_length=200)
    tags: list[str] = Field([], max_length=100)
    attachments: list[AttachmentInput] = Field([], max_length=200)


class AddEvidence(_MissionScoped):
    evidence: EvidenceInput


class ActionInput(_Payload):
    action_id: str | None = None
    title: str | None = Field(None, min_length=1, max_length=500)
    description: str | None = Field(None, max_length=20000)
    owner_type: ActorType | None = None
    owner_id: str | None = Field(None, max_length=128)
    due_date: str | None = Field(None, max_length=40)
    status: ActionStatus | None = None
    priority: Priority | None = None
    related_phase: str | None = Field(None, max_length=100)


class UpdateNextActions(_MissionScoped):
    actions: list[ActionInput] = Field(min_length=1, max_length=500)


class DecisionInput(_Payload):
    decision_id: str | None = None
    title: str | None = Field(None, min_length=1, max_length=500)
    description: str | None = Field(None, max_length=50000)
    status: DecisionStatus | None = None
    applies_from: str | None = Field(None, max_length=40)
    applies_to: str | None = Field(None, max_length=40)
    related_phase: str | None = Field(None, max_length=100)
    impacts: list[str] | None = Field(None, max_length=200)
    linked_evidence_ids: list[str] | None = Field(None, max_length=200)


class RecordDecision(_MissionScoped):
    decision: DecisionInput


class DecisionFilters(_Payload):
    status: DecisionStatus | None = None
    related_phase: str | None = None


class GetDecisions(_MissionScoped, _At):
    filters: DecisionFilters = DecisionFilters()


class UpdateStatus(_MissionScoped):
    status: StatusPatch


class SnapshotMission(_MissionScoped):
    reason: str | None = Field(None, max_length=1000)


class DayPayload(_MissionScoped):
    date: str = Field(pattern=_DATE)


class PrepareDayContext(DayPayload, _At):
    pass


class RotateJournal(_MissionScoped):
    before: str = Field(pattern=_DATE)


class GetTeam(_At):
    kind: Literal["agent", "human"] | None = None


class UpsertTeamMember(_Payload):
    kind: Literal["agent", "human"]
    member: dict[str, Any]


class GetDocument(_At):
    path: str = Field(min_length=1, max_length=1024)


class PutDocument(_Payload):
    path: str = Field(min_length=1, max_length=1024)
    content: Any


class History(_At):
    mission_id: HcmId | None = None
    path: str | None = Field(None, max_length=1024)
    limit: int = Field(50, ge=1, le=1000)
    since: str | None = Field(None, max_length=40)
    until: str | None = Field(None, max_length=40)
    caller: str | None = Field(None, max_length=300)  # "agent/arka-pmo-01"
    op: str | None = Field(None, max_length=64)
    cursor: str | None = Field(None, max_length=64)  # next_cursor of the previous page


class Diff(_Payload):
    from_: str = Field(alias="from", min_length=1, max_length=200)
    to: str = Field("HEAD", min_length=1, max_length=200)
    path: str | None = Field(None, max_length=1024)


class Rollback(_Payload):
    target: str = Field(min_length=1, max_length=200)
    mission_id: HcmId | None = None
    reason: str | None = Field(None, max_length=500)


class SearchScope(_Payload):
    """Where HCM_SEARCH looks. Empty: the hindex's default scopes (scopes.json per class)."""

    layers: list[Literal["stable", "domain", "state", "hindex"]] | None = Field(None, max_length=4)
    mission_id: HcmId | None = None
    path_prefix: str | None = Field(None, min_length=1, max_length=1024)


class Search(_Payload):
    query: str = Field(min_length=1, max_length=500)
    scope: SearchScope = SearchScope()
    limit: int = Field(10, ge=1, le=100)
    # wait (bounded) until the index reflects the branch tip this request saw
    consistent: bool = False


class MemoryQuery(_MissionScoped):
    query: str = Field(min_length=1, max_length=500)
    limit: int = Field(8, ge=1, le=50)
    max_bytes: int = Field(16384, ge=1024, le=1_048_576)
    consistent: bool = False


def describe_validation_error(exc: ValidationError, prefix: str = "") -> InvalidPayload:
    """One INVALID_PAYLOAD listing the bad fields with where they were (cattrs-style), at most
    MAX_REPORTED_ERRORS of them; ``more_errors`` counts the rest."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:MAX_REPORTED_ERRORS]:
        where = ".".join(str(p)[:80] for p in (prefix, *err["loc"]) if p != "") or "(top level)"
        problems.append({"field": where, "problem": err["msg"][:300]})
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    details: dict[str, Any] = {"errors": problems}
    more = exc.error_count() - len(problems)
    if more > 0:
        details["more_errors"] = more
        summary += f" (and {more} more)"
    return InvalidPayload(f"invalid payload: {summary}", details)


def parse_envelope(value: Any) -> Envelope:
    if not isinstance(value, dict):
        raise InvalidPayload("the request must be a JSON object {op, request_id, caller, payload}")
    try:
        return Envelope.model_validate(value)
    except ValidationError as exc:
        raise describe_validation_error(exc) from None
