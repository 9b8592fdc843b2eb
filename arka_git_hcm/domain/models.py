"""Pydantic models of every file of the HCM layout (contract section 2).

File models accept unknown keys and keep them (``extra="allow"``): a client's HCM written by an
earlier implementation carries fields we do not know, and rewriting a file must not drop them.
Fields the contract lists as required are required; the rest default so that HCM v1 folders load.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..ids import CallerType

__all__ = [
    "ActorType",
    "Agent",
    "AgentsFile",
    "Attachment",
    "DayRollup",
    "Decision",
    "DecisionStatus",
    "DecisionsFile",
    "Evidence",
    "EvidenceSource",
    "HcmMeta",
    "Human",
    "HumansFile",
    "JournalEntry",
    "MissionMeta",
    "MissionSnapshot",
    "MissionStatus",
    "NextAction",
    "NextActionsFile",
    "Risk",
]

ActorType = CallerType  # the contract's caller types, as files name their authors
MissionStatusValue = Literal["planned", "in_progress", "on_hold", "done", "cancelled"]
Health = Literal["ok", "warning", "at_risk"]
EntryType = Literal["event", "note", "analysis", "warning", "error", "info"]
DecisionStatus = Literal["draft", "proposed", "validated", "deprecated"]
ActionStatus = Literal["todo", "in_progress", "blocked", "done", "cancelled"]
Priority = Literal["low", "medium", "high", "critical"]
Confidence = Literal["low", "medium", "high"]

DECISION_ORDER: dict[str, int] = {"draft": 0, "proposed": 1, "validated": 2, "deprecated": 3}
OPEN_ACTION_STATUSES = frozenset({"todo", "in_progress", "blocked"})


class FileModel(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


class HcmMeta(FileModel):
    hcm_version: str = "1.0.0"
    tenant_id: str
    tenant_name: str = ""
    environment: str = "production"
    description: str = ""
    created_at: str
    updated_at: str


class MissionMeta(FileModel):
    mission_id: str
    title: str
    client_id: str | None = None
    client_name: str | None = None
    mission_type: str
    created_at: str
    updated_at: str
    owner_human_id: str | None = None
    owner_agent_id: str | None = None
    tags: list[str] = []


class Risk(FileModel):
    risk_id: str
    severity: str
    summary: str
    owner: str | None = None


class MissionStatus(FileModel):
    phase: str = "init"
    phase_label: str = ""
    status: MissionStatusValue = "planned"
    progress: float = Field(0.0, ge=0.0, le=1.0)
    health: Health = "ok"
    risks: list[Risk] = []
    summary: str = ""
    last_update: str


class JournalEntry(FileModel):
    timestamp: str
    author_type: ActorType
    author_id: str
    entry_type: EntryType
    message: str
    context: dict[str, Any] | None = None


class Decision(FileModel):
    decision_id: str
    timestamp: str
    made_by_type: ActorType
    made_by_id: str
    title: str
    description: str = ""
    status: DecisionStatus = "draft"
    applies_from: str | None = None
    applies_to: str | None = None
    related_phase: str | None = None
    impacts: list[str] = []
    linked_evidence_ids: list[str] = []


class DecisionsFile(FileModel):
    decisions: list[Decision] = []


class NextAction(FileModel):
    action_id: str
    title: str
    description: str = ""
    owner_type: ActorType | None = None
    owner_id: str | None = None
    created_at: str
    updated_at: str | None = None
    due_date: str | None = None
    status: ActionStatus = "todo"
    priority: Priority = "medium"
    related_phase: str | None = None


class NextActionsFile(FileModel):
    next_actions: list[NextAction] = []


class EvidenceSource(FileModel):
    origin: str
    details: str = ""


class Attachment(FileModel):
    type: str
    path: str


class Evidence(FileModel):
    evidence_id: str
    type: str
    title: str
    source: EvidenceSource | None = None
    created_at: str
    created_by_type: ActorType
    created_by_id: str
    confidence: Confidence | None = None
    summary: str = ""
    highlights: list[str] = []
    tags: list[str] = []
    attachments: list[Attachment] = []


class MissionSnapshot(FileModel):
    snapshot_id: str
    timestamp: str
    mission_id: str
    reason: str | None = None
    status: dict[str, Any]
    decisions_count: int
    open_actions_count: int
    evidence_count: int = 0
    journal_entries_count: int = 0
    last_journal_entry_at: str | None = None


class DayRollup(FileModel):
    snapshot_id: str
    mission_id: str
    date: str
    summary: str = ""
    key_events: list[str] = []
    decisions_made: list[str] = []
    actions_created: list[str] = []
    actions_closed: list[str] = []
    updated_status: dict[str, Any] = {}


class Agent(FileModel):
    agent_id: str
    role: str = ""
    display_name: str = ""
    status: Literal["active", "paused", "disabled"] = "active"
    capabilities: list[str] = []
    assigned_missions: list[str] = []
    last_active_at: str | None = None


class AgentsFile(FileModel):
    agents: list[Agent] = []


class Human(FileModel):
    human_id: str
    display_name: str = ""
    email: str | None = None
    role: str = ""
    department: str | None = None
    time_zone: str | None = None
    preferred_language: str | None = None
    notes: str | None = None


class HumansFile(FileModel):
    humans: list[Human] = []
