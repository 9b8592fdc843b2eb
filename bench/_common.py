"""Shared helpers of the benchmarks: synthetic HCM folders, statistics, tables, a hermetic git.

Not a test and not part of the package: the benchmarks import the package (read-only) and this
module by path (``bench/`` is not a package).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pygit2

from arka_git_hcm.config import CONFIG_FILE_NAME, FileConfig, StoreConfig, write_file_config
from arka_git_hcm.domain.commit_message import OperationTrailers, build_message
from arka_git_hcm.domain.layout import skeleton
from arka_git_hcm.gitrepo import GitRepo, Signature
from arka_git_hcm.jsonio import canonical_bytes, compact_dumps

# Files of one mission folder (the contract's layout: state/missions/<id>/...).
MISSION_FILES = ("meta.json", "status.json", "journal.jsonl", "decisions.json", "next_actions.json")
DOC_FOLDERS = [f"stable/{s}" for s in ("glossary", "referentials", "procedures", "patterns", "examples")] + [
    f"domain/{s}" for s in ("org", "business", "systems", "constraints", "projects")
]
DOCS_PER_FOLDER = 100  # documents are spread over narrow folders (the wide one is state/missions)
AGENT = {"type": "agent", "id": "bench", "roles": ["writer"]}
TENANT = "bench"


# --- a hermetic git ------------------------------------------------------------------------


def hermetic_env(home: Path) -> dict[str, str]:
    """The environment for git and the CLI: no user/system config, a fixed identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ARKA_"))}
    env.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        }
    )
    return env


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def commit_count(hcm: Path, env: dict[str, str]) -> int:
    return int(git(hcm, env, "rev-list", "--count", "HEAD").strip())


# --- synthetic HCM content -----------------------------------------------------------------


def _mission_files(rng: random.Random, index: int) -> tuple[str, dict[str, bytes]]:
    mission_id = f"m-{index:06d}"
    day = 1 + index % 27
    stamp = f"2026-10-{day:02d}T08:30:00Z"
    meta = {
        "mission_id": mission_id,
        "title": f"Mission {index}: audit of process {index % 97}",
        "client_id": TENANT,
        "client_name": "Bench Corp",
        "mission_type": rng.choice(["audit", "discovery", "delivery"]),
        "created_at": stamp,
        "updated_at": stamp,
        "owner_human_id": f"human-{index % 13}",
        "owner_agent_id": "arka-pmo-01",
        "tags": ["bench", f"wave-{index % 5}"],
    }
    status = {
        "phase": "design",
        "phase_label": "Detailed design",
        "status": "in_progress",
        "progress": round(rng.random(), 2),
        "last_update": stamp,
        "health": rng.choice(["ok", "at_risk"]),
        "risks": [
            {
                "risk_id": "risk-001",
                "severity": "medium",
                "summary": "Depends on the data team.",
                "owner": "arka-pmo-01",
            }
        ],
        "summary": "The mission is in detailed design; data dependencies are being secured.",
    }
    journal = b"".join(
        compact_dumps(
            {
                "timestamp": f"2026-10-{day:02d}T{9 + n:02d}:00:00Z",
                "author_type": "agent",
                "author_id": "arka-pmo-01",
                "entry_type": "note",
                "message": f"Entry {n} of mission {index}: interviews synthesised, next step agreed.",
            }
        ).encode()
        + b"\n"
        for n in range(rng.randint(2, 8))
    )
    decisions = {
        "decisions": [
            {
                "decision_id": "dec-0001",
                "timestamp": stamp,
                "made_by_type": "human",
                "made_by_id": "alice",
                "title": "Scope of the first wave",
                "description": "Support and Product teams, not Finance.",
                "status": "validated",
                "applies_from": stamp,
                "applies_to": None,
                "related_phase": "cadrage",
                "impacts": ["Finance processes excluded from the pilot"],
                "linked_evidence_ids": [],
            }
        ]
    }
    actions = {
        "next_actions": [
            {
                "action_id": "act-0001",
                "title": "List the impacted systems",
                "description": "Support and Product.",
                "owner_type": "agent",
                "owner_id": "arka-analyst-01",
                "created_at": stamp,
                "due_date": "2026-12-01T18:00:00Z",
                "status": "in_progress",
                "priority": "high",
                "related_phase": "design",
            }
        ]
    }
    files = {
        "meta.json": canonical_bytes(meta),
        "status.json": canonical_bytes(status),
        "journal.jsonl": journal,
        "decisions.json": canonical_bytes(decisions),
        "next_actions.json": canonical_bytes(actions),
    }
    return mission_id, files


def _document(index: int) -> bytes:
    return canonical_bytes(
        {
            "document_id": f"doc-{index:06d}",
            "title": f"Reference document {index}",
            "body": "Definitions, procedures and context the agents read. " * 6,
            "tags": ["reference", f"group-{index % 11}"],
        }
    )


@dataclass
class HcmShape:
    files: int
    missions: list[str]
    documents: int
    missions_dir_entries: int


def _history_files(index: int, count: int) -> dict[str, bytes]:
    """What a mission accumulates as it lives, ``count`` files: evidence, day rollups and
    archived journal days, in the mission's own narrow folders (contract layout, valid models)."""
    mission_id = f"m-{index:06d}"
    out: dict[str, bytes] = {}
    for n in range(count):
        day = f"2026-{1 + n // 28 % 12:02d}-{1 + n % 28:02d}"
        if n % 3 == 0:
            out[f"evidence/ev-{n:04d}.json"] = canonical_bytes(
                {
                    "evidence_id": f"ev-{n:04d}",
                    "type": "document",
                    "title": f"Evidence {n} of mission {index}",
                    "created_at": f"{day}T10:00:00Z",
                    "created_by_type": "agent",
                    "created_by_id": "arka-analyst-01",
                    "confidence": "medium",
                    "summary": "Interview notes and the figures they point to.",
                }
            )
        elif n % 3 == 1:
            out[f"snapshots/{day}.day.json"] = canonical_bytes(
                {
                    "snapshot_id": f"{day}.day",
                    "mission_id": mission_id,
                    "date": day,
                    "key_events": [f"Workshop {n} held"],
                }
            )
        else:
            entry = {
                "timestamp": f"{day}T10:00:00Z",
                "author_type": "agent",
                "author_id": "arka-pmo-01",
                "entry_type": "note",
                "message": f"Archived entry {n} of mission {index}.",
            }
            out[f"journal/archives/journal.{day}.jsonl"] = compact_dumps(entry).encode() + b"\n"
    return out


def generate_hcm(
    target_files: int, seed: int = 7, mission_files: int = len(MISSION_FILES)
) -> tuple[dict[str, bytes], list[str], int]:
    """The files of an HCM of about ``target_files`` files, in memory: the skeleton, ~1% documents
    in stable/ and domain/ (narrow folders of 100), the rest missions, ALL in state/missions/ as
    the contract says. A mission has ``mission_files`` files: the 5 every mission has, plus (when
    more) the history a mission accumulates (evidence, day rollups, archived journal days). With
    5 (the default, the worst case for the one wide folder) 100k files are ~19,800 missions; with
    20, ~4,950. Returns (path -> bytes, mission ids, number of documents)."""
    rng = random.Random(seed)
    now = "2026-10-01T08:00:00Z"
    files = {
        path: canonical_bytes(value)
        for path, value in skeleton(TENANT, "Bench Corp", "production", now).items()
    }
    documents = max(20, target_files // 100)
    per_mission = max(len(MISSION_FILES), mission_files)
    mission_count = max(4, (target_files - len(files) - documents) // per_mission)
    for i in range(documents):
        folder = DOC_FOLDERS[i % len(DOC_FOLDERS)]
        group = i // (len(DOC_FOLDERS) * DOCS_PER_FOLDER)
        files[f"{folder}/group-{group:03d}/doc-{i:06d}.json"] = _document(i)
    missions = []
    for i in range(mission_count):
        mission_id, content = _mission_files(rng, i)
        content.update(_history_files(i, per_mission - len(MISSION_FILES)))
        for name, data in content.items():
            files[f"state/missions/{mission_id}/{name}"] = data
        missions.append(mission_id)
    return files, missions, documents


def write_files(root: Path, files: dict[str, bytes]) -> None:
    made: set[Path] = set()
    for rel, data in files.items():
        path = root / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as fh:
            fh.write(data)


def write_hcm_folder(
    hcm: Path, target_files: int, seed: int = 7, mission_files: int = len(MISSION_FILES)
) -> HcmShape:
    """A plain HCM folder (no .git yet), ready for `arka-hcm init` to adopt it."""
    files, missions, documents = generate_hcm(target_files, seed, mission_files)
    write_files(hcm, files)
    return HcmShape(len(files), missions, documents, len(missions) + 1)


def build_client_fast(
    client: Path,
    target_files: int,
    env: dict[str, str],
    *,
    durability: str = "full",
    seed: int = 7,
    mission_files: int = len(MISSION_FILES),
) -> HcmShape:
    """A client folder (hcm/, config/, logs/) whose HCM has the same first commit content that
    `init_hcm` adoption produces (same blobs, same trees, packed, git's index current),
    built without adoption's per-file checks and full checkout: the generated bytes are turned
    into blobs directly, the root tree is built once with the store's own tree builder, the
    branch is set, and git's index is rebuilt from HEAD by the git binary."""
    hcm = client / "hcm"
    files, missions, documents = generate_hcm(target_files, seed, mission_files)
    write_files(hcm, files)
    repo = GitRepo.init(hcm, "main")
    blobs = {rel: repo.write_blob(data) for rel, data in files.items()}
    tree = repo.build_tree(None, blobs)
    stamp = 1_790_000_000
    system = Signature("arka-hcm", "arka-hcm@system.arka", stamp)
    trailers = OperationTrailers(op="HCM_INIT", request_id=f"init-{TENANT}", caller="system/arka-hcm")
    message = build_message(".", f"adopt the existing HCM ({len(files)} files)", trailers)
    commit = repo.write_commit(tree, [], system, system, message)
    if not repo.compare_and_swap_ref(
        "refs/heads/main", None, commit, who=system, message="HCM_INIT .", durable=False
    ):
        raise RuntimeError("could not set the branch of the new HCM")
    repo.close()
    git(hcm, env, "read-tree", "HEAD")
    git(hcm, env, "update-index", "-q", "--refresh")
    write_file_config(
        client / "config" / CONFIG_FILE_NAME,
        FileConfig(tenant_id=TENANT, store=StoreConfig(durability=durability)),
    )  # type: ignore[arg-type]
    (client / "logs").mkdir(parents=True, exist_ok=True)
    return HcmShape(len(files), missions, documents, len(missions) + 1)


def tree_entries_and_bytes(hcm: Path, rel: str) -> tuple[int, int]:
    """How many entries the tree at ``rel`` holds at HEAD and its raw size in bytes (what every
    write below it rewrites)."""
    repo = pygit2.Repository(str(hcm))
    tree = repo.revparse_single(f"HEAD:{rel}")
    return len(tree), len(tree.read_raw())


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# --- envelopes -----------------------------------------------------------------------------


def journal_envelope(request_id: str, mission_id: str, n: int) -> dict[str, Any]:
    return {
        "op": "HCM_APPEND_JOURNAL",
        "request_id": request_id,
        "caller": AGENT,
        "payload": {
            "mission_id": mission_id,
            "entry": {
                "author_type": "agent",
                "author_id": "bench",
                "entry_type": "note",
                "message": f"bench entry {n}: progress noted, nothing blocking.",
            },
        },
    }


def context_envelope(request_id: str, mission_id: str) -> dict[str, Any]:
    return {
        "op": "HCM_GET_MISSION_CONTEXT",
        "request_id": request_id,
        "caller": AGENT,
        "payload": {"mission_id": mission_id},
    }


def journal_line(n: int) -> bytes:
    """What the git baseline appends: the same kind of line the store writes."""
    return (
        compact_dumps(
            {
                "timestamp": "2026-11-26T09:00:00Z",
                "author_type": "agent",
                "author_id": "bench",
                "entry_type": "note",
                "message": f"bench entry {n}: progress noted, nothing blocking.",
            }
        ).encode()
        + b"\n"
    )


# --- statistics and tables -----------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of samples in seconds; returns milliseconds."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1] * 1000


@dataclass
class Measure:
    """One row: ``count`` operations that took ``elapsed`` seconds of wall time in total."""

    size: int | str
    method: str
    count: int
    elapsed: float
    latencies: list[float] = field(default_factory=list, repr=False)
    note: str = ""
    ratio: float | None = None
    # percentiles measured elsewhere (wrk reports them; it does not hand out its samples)
    given_p50_ms: float | None = None
    given_p99_ms: float | None = None

    @property
    def ops_per_s(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else float("nan")

    @property
    def p50_ms(self) -> float:
        return self.given_p50_ms if self.given_p50_ms is not None else percentile(self.latencies, 50)

    @property
    def p99_ms(self) -> float:
        return self.given_p99_ms if self.given_p99_ms is not None else percentile(self.latencies, 99)

    def merge(self, other: Measure) -> None:
        self.count += other.count
        self.elapsed += other.elapsed
        self.latencies.extend(other.latencies)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies"]
        data.update(
            ops_per_s=round(self.ops_per_s, 2),
            p50_ms=round(self.p50_ms, 3),
            p99_ms=round(self.p99_ms, 3),
            mean_ms=round(statistics.fmean(self.latencies) * 1000, 3) if self.latencies else None,
        )
        return data


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[str(c) for c in row] for row in rows]
    align = ["---" if i < 2 else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Where and on what code a run happened (the package may have uncommitted edits)."""
    repo = Path(__file__).resolve().parents[1]

    def run(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    dirty = run("git", "status", "--porcelain", "--", "arka_git_hcm")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": run("git", "--version"),
        "package_commit": run("git", "rev-parse", "--short", "HEAD"),
        "package_dirty": bool(dirty),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
