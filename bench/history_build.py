"""Build a long HCM history quickly: `git fast-import` of realistic store commits.

The first commits are written by the store itself (the HCM skeleton and one HCM_CREATE_MISSION
per mission), so the layout, the file models and the commit format are the real ones; the bulk
follows through fast-import with the store's message and trailers (Hcm-Op, Hcm-Request-Id,
Hcm-Caller, Hcm-Mission, Hcm-Payload-Sha256), the store's committer, and content the models
accept: journal appends (the journal keeps its last lines, as daily rotation keeps it short),
status updates, and next-actions updates, across many missions of uneven activity. One mission,
``rare-mission``, is touched only at its creation, at 10% and at 50% of the history: the worst
case for "the last 20 commits of a rarely touched mission". Commit times advance ~30 s per commit
(1,000,000 commits ≈ one year); a snapshot tag every 100,000 commits.

    .venv/bin/python bench/history_build.py /tmp/long-hcm --commits 1000000 --missions 500
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arka_git_hcm.admin.init import init_hcm  # noqa: E402
from arka_git_hcm.clock import FixedClock  # noqa: E402
from arka_git_hcm.config import FileConfig, Settings, StoreConfig  # noqa: E402
from arka_git_hcm.domain.commit_message import OperationTrailers, build_message  # noqa: E402
from arka_git_hcm.jsonio import canonical_bytes, compact_dumps  # noqa: E402
from arka_git_hcm.services.store import HcmStore  # noqa: E402

START = datetime(2025, 1, 1, 8, 0, 0, tzinfo=UTC)
STEP_S = 30
RARE = "rare-mission"
AGENTS = [f"arka-agent-{i:02d}" for i in range(40)]
HUMANS = ["alice", "bob", "carol", "dave"]
STATUSES = ["planned", "in_progress", "on_hold", "in_progress", "in_progress"]
JOURNAL_KEPT = 6  # lines a mission's journal keeps (rotation moves older days out)


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _settings(client: Path) -> Settings:
    return Settings(
        hcm_path=client / "hcm",
        config_path=client / "config",
        log_path=client / "logs",
        env="development",
        file=FileConfig(tenant_id="acme", store=StoreConfig(durability="fast", index_refresh_delay_s=60)),
    )


def seed_with_store(client: Path, missions: list[str]) -> tuple[str, int]:
    """The skeleton and the missions, written by the store: (tip, last commit time)."""
    settings = _settings(client)
    init_hcm(settings, "acme", "ACME", clock=FixedClock(START))
    counter = itertools.count(1)
    when = int(START.timestamp())
    with HcmStore.open(settings, clock=FixedClock(START), id_token=lambda: f"{next(counter):06d}") as store:
        for index, mission in enumerate(missions):
            store.clock = FixedClock(datetime.fromtimestamp(when + index * STEP_S, UTC))
            store.engine.clock = store.clock
            response = store.execute(
                {
                    "op": "HCM_CREATE_MISSION",
                    "request_id": f"seed-{mission}",
                    "caller": {"type": "human", "id": "alice", "roles": ["writer"]},
                    "payload": {
                        "mission_id": mission,
                        "meta": {"title": f"Mission {mission}", "mission_type": "audit"},
                    },
                }
            )
            assert response["status"] == "ok", response
        tip = store.tip()
    assert tip is not None
    return tip, when + len(missions) * STEP_S


class Generator:
    def __init__(self, missions: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.missions = [m for m in missions if m != RARE]
        # uneven activity: a few busy missions, a long tail
        self.weights = [1.0 / (1 + i) ** 0.8 for i in range(len(self.missions))]
        self.journals: dict[str, list[bytes]] = {m: [] for m in missions}
        self.actions: dict[str, int] = {m: 0 for m in missions}

    def pick(self) -> str:
        return self.rng.choices(self.missions, self.weights)[0]

    def change(self, mission: str, when: int, n: int) -> tuple[str, str, str, dict[str, bytes]]:
        """(op, caller, summary, files) of one operation on ``mission``."""
        roll = self.rng.random()
        root = f"state/missions/{mission}"
        if roll < 0.8:
            agent = self.rng.choice(AGENTS)
            entry = {
                "author_id": agent,
                "author_type": "agent",
                "entry_type": self.rng.choice(["note", "event", "analysis", "info"]),
                "message": f"step {n}: checked {self.rng.randrange(1, 500)} records of the {mission} import",
                "timestamp": _iso(when),
            }
            lines = self.journals[mission]
            lines.append(compact_dumps(entry).encode() + b"\n")
            del lines[:-JOURNAL_KEPT]
            return (
                "HCM_APPEND_JOURNAL",
                f"agent/{agent}",
                "append a journal entry",
                {f"{root}/journal.jsonl": b"".join(lines)},
            )
        if roll < 0.9:
            status = {
                "health": self.rng.choice(["ok", "ok", "warning", "at_risk"]),
                "last_update": _iso(when),
                "phase": self.rng.choice(["init", "analysis", "build", "review"]),
                "phase_label": "",
                "progress": round(self.rng.random(), 2),
                "risks": [],
                "status": self.rng.choice(STATUSES),
                "summary": f"update {n}",
            }
            human = self.rng.choice(HUMANS)
            return (
                "HCM_UPDATE_STATUS",
                f"human/{human}",
                "update the status",
                {f"{root}/status.json": canonical_bytes(status)},
            )
        self.actions[mission] += 1
        actions = [
            {
                "action_id": f"act-{mission}-{k}",
                "created_at": _iso(when),
                "description": "",
                "due_date": None,
                "owner_id": self.rng.choice(AGENTS),
                "owner_type": "agent",
                "priority": self.rng.choice(["low", "medium", "high"]),
                "related_phase": None,
                "status": self.rng.choice(["todo", "in_progress", "done"]),
                "title": f"action {k}",
                "updated_at": _iso(when),
            }
            for k in range(max(0, self.actions[mission] - 5), self.actions[mission])
        ]
        agent = self.rng.choice(AGENTS)
        return (
            "HCM_UPDATE_NEXT_ACTIONS",
            f"agent/{agent}",
            "update next actions",
            {f"{root}/next_actions.json": canonical_bytes({"next_actions": actions})},
        )


def _data(out: IO[bytes], payload: bytes) -> None:
    out.write(b"data %d\n" % len(payload))
    out.write(payload)
    out.write(b"\n")


def stream(
    out: IO[bytes], gen: Generator, tip: str, start_time: int, commits: int, branch: str, progress: bool
) -> None:
    rare_at = {commits // 10, commits // 2}
    began = time.monotonic()
    for n in range(commits):
        when = start_time + n * STEP_S
        mission = RARE if n in rare_at else gen.pick()
        op, caller, summary, files = gen.change(mission, when, n)
        request_id = f"req-{n:08d}"
        trailers = OperationTrailers(
            op=op,
            request_id=request_id,
            caller=caller,
            mission=mission,
            payload_sha256=hashlib.sha256(request_id.encode()).hexdigest(),
        )
        message = build_message(mission, summary, trailers).encode()
        kind, name = caller.split("/", 1)
        out.write(f"commit refs/heads/{branch}\nmark :{n + 1}\n".encode())
        out.write(f"author {name} <{name}@{kind}.arka> {when} +0000\n".encode())
        out.write(f"committer Arka HCM <hcm@arka-os.local> {when} +0000\n".encode())
        _data(out, message)
        if n == 0:
            out.write(f"from {tip}\n".encode())
        for path, content in files.items():
            out.write(f"M 100644 inline {path}\n".encode())
            _data(out, content)
        out.write(b"\n")
        if n and n % 100_000 == 0:
            out.write(f"tag snapshot/bench-{n // 1000}k\nfrom :{n}\n".encode())
            out.write(f"tagger Arka HCM <hcm@arka-os.local> {when} +0000\n".encode())
            _data(out, f"snapshot at {n} commits\n".encode())
        if progress and n and n % 50_000 == 0:
            rate = n / (time.monotonic() - began)
            print(f"  {n:,} commits streamed ({rate:,.0f}/s)", file=sys.stderr, flush=True)


def build(
    client: Path, commits: int, missions: int, seed: int = 7, progress: bool = True
) -> dict[str, float]:
    """A client folder with ``missions`` missions and about ``missions + commits`` commits."""
    names = [RARE] + [f"mission-{i:04d}" for i in range(missions - 1)]
    timings: dict[str, float] = {}
    began = time.perf_counter()
    tip, start_time = seed_with_store(client, names)
    timings["seed_s"] = time.perf_counter() - began
    hcm = client / "hcm"
    began = time.perf_counter()
    proc = subprocess.Popen(
        ["git", "-c", "safe.directory=*", "fast-import", "--quiet", "--force", "--depth=50"],
        cwd=hcm,
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    gen = Generator(names, seed)
    for mission in names:  # the journals start empty, as HCM_CREATE_MISSION writes them
        gen.journals[mission] = []
    try:
        stream(proc.stdin, gen, tip, start_time, commits, "main", progress)
    finally:
        proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    timings["fast_import_s"] = time.perf_counter() - began
    began = time.perf_counter()
    subprocess.run(["git", "-c", "safe.directory=*", "reset", "-q", "--hard", "main"], cwd=hcm, check=True)
    timings["checkout_s"] = time.perf_counter() - began
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("client", type=Path)
    parser.add_argument("--commits", type=int, default=1_000_000)
    parser.add_argument("--missions", type=int, default=500)
    args = parser.parse_args()
    print(build(args.client, args.commits, args.missions))


if __name__ == "__main__":
    main()
