"""Where things live in an HCM (contract section 2), as HCM-relative paths.

Paths are built here from ids and always through :func:`arka_git_hcm.paths.join`, so a mission
id can never smuggle a separator or ``..`` into a location.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel

from ..ids import validate_id
from ..paths import join
from . import models

__all__ = [
    "DOCUMENT_LAYERS",
    "LAYERS",
    "MISSIONS_DIR",
    "META",
    "MissionPaths",
    "is_required",
    "mission_paths",
    "model_for_path",
    "skeleton",
    "zone_of",
]

META = "meta.json"
MISSIONS_DIR = "state/missions"
AGENTS = "state/team/agents.json"
HUMANS = "state/team/humans.json"
LAYERS = ("stable", "domain", "state", "hindex")
DOCUMENT_LAYERS = ("stable", "domain", "hindex")
STABLE_DIRS = ("glossary", "referentials", "procedures", "patterns", "examples")
DOMAIN_DIRS = ("org", "business", "systems", "constraints", "projects")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class MissionPaths:
    """The files of one mission folder."""

    def __init__(self, mission_id: str) -> None:
        self.mission_id = validate_id(mission_id, "mission_id")
        self.root = join(MISSIONS_DIR, self.mission_id)
        self.meta = join(self.root, "meta.json")
        self.status = join(self.root, "status.json")
        self.journal = join(self.root, "journal.jsonl")
        self.decisions = join(self.root, "decisions.json")
        self.next_actions = join(self.root, "next_actions.json")
        self.evidence_dir = join(self.root, "evidence")
        self.snapshots_dir = join(self.root, "snapshots")
        self.archives_dir = join(self.root, "journal", "archives")

    def evidence(self, evidence_id: str) -> str:
        return join(self.evidence_dir, validate_id(evidence_id, "evidence_id") + ".json")

    def snapshot(self, stamp: str) -> str:
        return join(self.snapshots_dir, f"{stamp}.snapshot.json")

    def day_rollup(self, date: str) -> str:
        return join(self.snapshots_dir, f"{date}.day.json")

    def archive(self, date: str) -> str:
        return join(self.archives_dir, f"journal.{date}.jsonl")


@functools.lru_cache(maxsize=4096)
def mission_paths(mission_id: str) -> MissionPaths:
    """:class:`MissionPaths`, remembered: every mission operation names them, each name checked
    by the path rules, and a mission's file names never change (an invalid id raises, uncached)."""
    return MissionPaths(mission_id)


_MISSION_FILE_MODELS: dict[str, type[BaseModel]] = {
    "meta.json": models.MissionMeta,
    "status.json": models.MissionStatus,
    "decisions.json": models.DecisionsFile,
    "next_actions.json": models.NextActionsFile,
}


def model_for_path(path: str) -> type[BaseModel] | None:
    """The model that a JSON file at ``path`` must satisfy, if the layout names one.
    ``journal.jsonl`` files are validated line by line with JournalEntry."""
    if path == META:
        return models.HcmMeta
    if path == AGENTS:
        return models.AgentsFile
    if path == HUMANS:
        return models.HumansFile
    parts = path.split("/")
    if len(parts) >= 4 and parts[0] == "state" and parts[1] == "missions":
        rest = parts[3:]
        if len(rest) == 1:
            return _MISSION_FILE_MODELS.get(rest[0])
        if len(rest) == 2 and rest[0] == "evidence" and rest[1].endswith(".json"):
            return models.Evidence
        if len(rest) == 2 and rest[0] == "snapshots":
            if rest[1].endswith(".day.json"):
                return models.DayRollup
            if rest[1].endswith(".snapshot.json"):
                return models.MissionSnapshot
    return None


def is_required(path: str) -> bool:
    """Files the HCM cannot do without: the HCM's meta.json, a mission's meta.json and status.json
    (a hand deletion of one of them is not adopted into history)."""
    if path == META:
        return True
    parts = path.split("/")
    return len(parts) == 4 and parts[:2] == ["state", "missions"] and parts[3] in ("meta.json", "status.json")


def zone_of(path: str) -> str:
    """The access zone of a path: its top-level layer, or 'team' for state/team."""
    parts = path.split("/")
    if parts[0] == "state" and len(parts) > 1 and parts[1] == "team":
        return "team"
    return parts[0]


# --- the skeleton of a new HCM ---------------------------------------------------------------


def _default_hindex() -> dict[str, Any]:
    return {
        "hindex/classification.json": {
            "classifications": [
                {
                    "class": "mission_history",
                    "keywords": ["journal", "progress", "yesterday", "decision"],
                    "targets": ["state/missions"],
                    "priority": 1,
                },
                {
                    "class": "domain_knowledge",
                    "keywords": ["product", "kpi", "policy", "system"],
                    "targets": ["domain"],
                    "priority": 2,
                },
                {
                    "class": "core_reference",
                    "keywords": ["definition", "glossary", "procedure", "role"],
                    "targets": ["stable"],
                    "priority": 3,
                },
            ]
        },
        "hindex/scopes.json": {
            "scopes": {
                "mission_history": {"include": ["state/missions/**"], "exclude": []},
                "domain_knowledge": {"include": ["domain/**"], "exclude": []},
                "core_reference": {"include": ["stable/**"], "exclude": []},
            }
        },
        "hindex/meta_rules.json": {
            "rules": {
                "sensitivity_levels": {"public": [], "internal": ["human_user"], "restricted": []},
                "default_visibility": "internal",
                "role_grants": {},
            }
        },
        "hindex/routing.json": {
            "routing": {
                "mission_history": "deterministic",
                "core_reference": "deterministic",
                "domain_knowledge": "deterministic",
                "fallback": "deterministic",
            }
        },
        "hindex/sources/stable_sources.json": {"sources": []},
        "hindex/sources/domain_sources.json": {"sources": []},
    }


def skeleton(tenant_id: str, tenant_name: str, environment: str, now: str) -> dict[str, Any]:
    """Every file of a fresh HCM, path -> JSON value. Empty folders hold a README.json so that git
    (which tracks files, not folders) keeps the layout visible in every clone."""
    files: dict[str, Any] = {
        META: models.HcmMeta(
            tenant_id=tenant_id,
            tenant_name=tenant_name or tenant_id,
            environment=environment,
            description="Hybrid Collective Memory, versioned by arka_git_hcm.",
            created_at=now,
            updated_at=now,
        ).to_json(),
        AGENTS: {"agents": []},
        HUMANS: {"humans": []},
        join(MISSIONS_DIR, "README.json"): {
            "about": "One folder per mission, created by HCM_CREATE_MISSION."
        },
    }
    for sub in STABLE_DIRS:
        files[join("stable", sub, "README.json")] = {
            "about": f"stable/{sub}: admin-written reference material."
        }
    for sub in DOMAIN_DIRS:
        files[join("domain", sub, "README.json")] = {"about": f"domain/{sub}: the client's business context."}
    files.update(_default_hindex())
    return files
