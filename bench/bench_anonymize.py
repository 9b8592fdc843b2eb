#!/usr/bin/env python3
"""Benchmark of `arka-hcm anonymize`: commits of history replayed per second, against plain git.

Builds an HCM history of N commits quickly (a fast-import stream of the commits the store writes:
missions created, journals growing line by line, statuses, next actions, decisions and evidence
rewritten, team members; callers human and agent with the store's trailers; ~10% of journal
lines name a person, an email or a phone), then, in the same run:

- baseline: `git fast-export | git fast-import` of the same history into a new bare repository,
  no transform (the floor of any replay through git's streams);
- anonymize: the whole command (analyse, rewrite + pack writer, bundle, clone and leak scan),
  each stage timed;
- the leak scan's matcher against the alternatives, on the bundle's own objects and needles:
  pyahocorasick (one pass whatever the number of values), one `re` alternation with the same
  whole-word rule, and a naive loop (`value in text` for each value, then the word check).

    .venv/bin/python bench/bench_anonymize.py --quick            # smoke, ~20 s
    .venv/bin/python bench/bench_anonymize.py --commits 100000   # the issue's figure (~10 min)
    .venv/bin/python bench/bench_anonymize.py --commits 100000 --client /tmp/h100k   # built once, reused
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from arka_git_hcm.anonymize import AnonymizeOptions, anonymize_hcm
from arka_git_hcm.anonymize.dictionary import SensitiveSet
from arka_git_hcm.anonymize.leakscan import tree_names
from arka_git_hcm.anonymize.normalize import is_boundary, scan_form
from arka_git_hcm.config import FileConfig, Settings, StoreConfig
from arka_git_hcm.domain.layout import skeleton
from arka_git_hcm.gitrepo.plumbing_replay import all_objects
from arka_git_hcm.jsonio import canonical_bytes, compact_dumps

FIRST = "Zoé Jérôme Amélie Benoît Chloé Cédric Élodie François Gaëlle Hélène Inès Jérémy Léa Maël Noémie Rémi"
LAST = "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre Michel"
WORDS = [
    *("kick-off", "réunion", "atelier", "livrable", "jalon", "risque", "dépendance", "migration"),
    *("recette", "validation", "budget", "planning", "comité", "analyse", "écart", "process"),
    *("données", "client", "fournisseur", "contrat", "périmètre"),
]


def hermetic_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ARKA_"))}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"})
    return env


class HistoryWriter:
    """A fast-import stream of store-shaped commits, written straight into git fast-import."""

    def __init__(self, out: Any, seed: int = 7) -> None:
        self.out = out
        self.rng = random.Random(seed)
        self.when = 1_790_000_000
        self.commits = 0
        firsts, lasts = FIRST.split(), LAST.split()
        self.people = [(f"{f} {n}", f"{f}.{n}".lower()) for f in firsts for n in lasts][:60]
        self.missions: dict[str, dict[str, Any]] = {}

    def _ascii(self, text: str) -> str:
        import unicodedata

        return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))

    def human_id(self, index: int) -> str:
        return self._ascii(self.people[index][1])

    def commit(
        self, op: str, target: str, caller: str, files: dict[str, bytes], mission: str | None = None
    ) -> None:
        self.commits += 1
        self.when += self.rng.randint(1, 90)
        kind, _, ident = caller.partition("/")
        message = f"{op} {target}: bench\n\nHcm-Op: {op}\nHcm-Request-Id: req-{self.commits}\n"
        message += f"Hcm-Caller: {caller}\n"
        if mission:
            message += f"Hcm-Mission: {mission}\n"
        message += f"Hcm-Payload-Sha256: {self.rng.getrandbits(256):064x}\n"
        data = message.encode()
        parts = [
            b"commit refs/heads/main\n",
            f"author {ident} <{ident}@{kind}.arka> {self.when} +0000\n".encode(),
            f"committer Arka HCM <hcm@arka-os.local> {self.when} +0000\n".encode(),
            f"data {len(data)}\n".encode(),
            data,
        ]
        for path, content in files.items():
            parts.append(f"M 100644 inline {path}\ndata {len(content)}\n".encode())
            parts.append(content)
            parts.append(b"\n")
        parts.append(b"\n")
        self.out.write(b"".join(parts))

    def init(self) -> None:
        files = {
            p: canonical_bytes(v)
            for p, v in skeleton("acme", "ACME Industries", "production", "2026-01-01T00:00:00Z").items()
        }
        humans = [
            {
                "human_id": self.human_id(i),
                "display_name": name,
                "email": f"{self.human_id(i)}@acme-industries.fr",
                "notes": f"tél 06 {10 + i % 80} {20 + i % 70} {30 + i % 60} {40 + i % 50}",
                "role": "consultant",
            }
            for i, (name, _) in enumerate(self.people)
        ]
        files["state/team/humans.json"] = canonical_bytes({"humans": humans})
        self.commit("HCM_INIT", ".", "system/arka-hcm", files)

    def iso(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.when))

    def step(self, missions_total: int) -> None:
        rng = self.rng
        mission_id = f"acme-m{rng.randrange(missions_total):05d}"
        person = rng.randrange(len(self.people))
        human = f"human/{self.human_id(person)}"
        root = f"state/missions/{mission_id}"
        state = self.missions.get(mission_id)
        if state is None:
            state = {"journal": b"", "decisions": [], "actions": [], "evidence": 0}
            self.missions[mission_id] = state
            meta = {
                "mission_id": mission_id,
                "title": f"Audit {mission_id}",
                "client_id": "acme",
                "client_name": "ACME Industries",
                "mission_type": "audit",
                "created_at": self.iso(),
                "updated_at": self.iso(),
                "owner_human_id": self.human_id(person),
                "owner_agent_id": None,
                "tags": [],
            }
            status = {
                "phase": "init",
                "status": "planned",
                "progress": 0.0,
                "health": "ok",
                "risks": [],
                "summary": "",
                "last_update": self.iso(),
                "phase_label": "",
            }
            files = {
                f"{root}/meta.json": canonical_bytes(meta),
                f"{root}/status.json": canonical_bytes(status),
                f"{root}/journal.jsonl": b"",
                f"{root}/decisions.json": canonical_bytes({"decisions": []}),
                f"{root}/next_actions.json": canonical_bytes({"next_actions": []}),
            }
            self.commit("HCM_CREATE_MISSION", mission_id, human, files, mission_id)
            return
        roll = rng.random()
        if roll < 0.6:
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
            if rng.random() < 0.1:
                other = self.people[rng.randrange(len(self.people))][0]
                mail = self._ascii(other).lower().replace(" ", ".")
                words += f" — voir avec {other} ({mail}@acme-industries.fr)"
            author = rng.random() < 0.7
            entry = {
                "timestamp": self.iso(),
                "author_type": "agent" if author else "human",
                "author_id": "arka-pmo-01" if author else self.human_id(person),
                "entry_type": "note",
                "message": words,
            }
            state["journal"] += compact_dumps(entry).encode() + b"\n"
            caller = "agent/arka-pmo-01" if author else human
            self.commit(
                "HCM_APPEND_JOURNAL",
                mission_id,
                caller,
                {f"{root}/journal.jsonl": state["journal"]},
                mission_id,
            )
        elif roll < 0.7:
            status = {
                "phase": rng.choice(["init", "build", "run"]),
                "status": "in_progress",
                "progress": round(rng.random(), 2),
                "health": "ok",
                "risks": [],
                "summary": " ".join(rng.choice(WORDS) for _ in range(12)),
                "last_update": self.iso(),
                "phase_label": "",
            }
            self.commit(
                "HCM_UPDATE_STATUS",
                mission_id,
                human,
                {f"{root}/status.json": canonical_bytes(status)},
                mission_id,
            )
        elif roll < 0.8:
            state["actions"].append(
                {
                    "action_id": f"act-{self.commits:07d}",
                    "title": " ".join(rng.choice(WORDS) for _ in range(6)),
                    "description": "",
                    "owner_type": "human",
                    "owner_id": self.human_id(person),
                    "created_at": self.iso(),
                    "updated_at": self.iso(),
                    "due_date": None,
                    "status": "todo",
                    "priority": "medium",
                    "related_phase": None,
                }
            )
            body = canonical_bytes({"next_actions": state["actions"][-20:]})
            self.commit(
                "HCM_UPDATE_NEXT_ACTIONS", mission_id, human, {f"{root}/next_actions.json": body}, mission_id
            )
        elif roll < 0.9:
            state["decisions"].append(
                {
                    "decision_id": f"dec-{self.commits:07d}",
                    "timestamp": self.iso(),
                    "made_by_type": "human",
                    "made_by_id": self.human_id(person),
                    "title": " ".join(rng.choice(WORDS) for _ in range(6)),
                    "description": " ".join(rng.choice(WORDS) for _ in range(20)),
                    "status": "proposed",
                    "impacts": [],
                    "linked_evidence_ids": [],
                }
            )
            body = canonical_bytes({"decisions": state["decisions"][-20:]})
            self.commit(
                "HCM_RECORD_DECISION", mission_id, human, {f"{root}/decisions.json": body}, mission_id
            )
        else:
            state["evidence"] += 1
            ev_id = f"ev-{self.commits:07d}"
            body = canonical_bytes(
                {
                    "evidence_id": ev_id,
                    "type": "doc",
                    "title": "compte rendu",
                    "created_at": self.iso(),
                    "created_by_type": "human",
                    "created_by_id": self.human_id(person),
                    "summary": " ".join(rng.choice(WORDS) for _ in range(40)),
                }
            )
            self.commit(
                "HCM_ADD_EVIDENCE", mission_id, human, {f"{root}/evidence/{ev_id}.json": body}, mission_id
            )


def build_history(hcm: Path, commits: int) -> float:
    env = hermetic_env()
    subprocess.run(["git", "init", "-q", "-b", "main", str(hcm)], check=True, env=env)
    started = time.perf_counter()
    proc = subprocess.Popen(["git", "-C", str(hcm), "fast-import", "--quiet"], stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    writer = HistoryWriter(proc.stdin)
    writer.init()
    missions = max(5, commits // 100)
    while writer.commits < commits:
        writer.step(missions)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("fast-import failed")
    return time.perf_counter() - started


def baseline(hcm: Path, scratch: Path) -> float:
    env = hermetic_env()
    target = scratch / "baseline.git"
    subprocess.run(["git", "init", "-q", "--bare", str(target)], check=True, env=env)
    started = time.perf_counter()
    export = subprocess.Popen(["git", "-C", str(hcm), "fast-export", "main"], stdout=subprocess.PIPE, env=env)
    imported = subprocess.run(
        ["git", "-C", str(target), "fast-import", "--quiet"], stdin=export.stdout, env=env
    )
    assert export.stdout is not None
    export.stdout.close()
    if export.wait() != 0 or imported.returncode != 0:
        raise RuntimeError("baseline failed")
    return time.perf_counter() - started


def matchers(repo: Path, sensitive: SensitiveSet, limit_bytes: int, budget: float = 20.0) -> dict[str, Any]:
    """The three ways of searching every needle in the bundle's objects (same whole-word rule)."""
    texts = []
    size = 0
    for _, kind, data in all_objects(repo):
        text = tree_names(data) if kind == "tree" else data.decode("utf-8", "replace")
        texts.append(scan_form(text))
        size += len(data)
        if size >= limit_bytes:
            break
    needles = [value for _, value in sensitive.needles()]
    alternation = re.compile(
        "|".join(rf"(?<![^\W_])(?:{re.escape(n)})(?![^\W_])" for n in sorted(needles, key=len, reverse=True))
    )
    results: dict[str, Any] = {"objects": len(texts), "bytes": size, "needles": len(needles)}

    def naive(text: str) -> bool:
        for needle in needles:
            start = text.find(needle)
            while start >= 0:
                if is_boundary(text, start, start + len(needle)):
                    return True
                start = text.find(needle, start + 1)
        return False

    for name, hit in (
        ("pyahocorasick", lambda t: sensitive.first_hit(t) is not None),
        ("re alternation", lambda t: alternation.search(t) is not None),
        ("naive loop", naive),
    ):
        # each matcher gets the same texts, but at most `budget` seconds (the slow ones would
        # take minutes): the rate is measured on what it got through
        started = time.perf_counter()
        found = searched = done = 0
        for text in texts:
            found += hit(text)
            searched += len(text)
            done += 1
            if time.perf_counter() - started > budget:
                break
        seconds = time.perf_counter() - started
        results[name] = {
            "seconds": round(seconds, 3),
            "objects": done,
            "MB/s": round(searched / seconds / 1e6, 2),
            "hits": found,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="2,000 commits")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--client", type=Path, help="a client folder: its history is built there once and reused after"
    )
    args = parser.parse_args()
    commits = 2_000 if args.quick else args.commits
    scratch = Path(tempfile.mkdtemp(prefix="bench-anonymize-"))
    try:
        figures = run(scratch, commits, args.client)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def run(scratch: Path, commits: int, client: Path | None = None) -> dict[str, Any]:
    client = client or scratch / "client"
    hcm = client / "hcm"
    if (hcm / ".git").is_dir():
        found = subprocess.run(
            ["git", "-C", str(hcm), "rev-list", "--count", "main"],
            capture_output=True,
            check=True,
            env=hermetic_env(),
        )
        commits = int(found.stdout)
        print(f"history: {commits:,} commits reused from {client}", file=sys.stderr)
    else:
        hcm.mkdir(parents=True)
        built = build_history(hcm, commits)
        print(f"history: {commits:,} commits built in {built:.1f} s", file=sys.stderr)
    base = baseline(hcm, scratch)
    settings = Settings(
        hcm_path=hcm,
        config_path=client / "config",
        log_path=client / "logs",
        file=FileConfig(tenant_id="acme", store=StoreConfig()),
    )
    load_before = os.getloadavg()[0]
    cpu_before = os.times()
    started = time.perf_counter()
    report = anonymize_hcm(settings, AnonymizeOptions(out=scratch / "support.bundle"))
    total = time.perf_counter() - started
    cpu_after = os.times()
    # CPU of this process and of the git children it waited for: what the run costs whatever
    # else the (shared) machine is doing; wall-clock rates below depend on that load
    own_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    git_cpu = (cpu_after.children_user - cpu_before.children_user) + (
        cpu_after.children_system - cpu_before.children_system
    )
    seconds = report.seconds
    replay = seconds["analyse"] + seconds["replay"]
    rows = [
        ("git fast-export | git fast-import (no transform)", base, commits / base),
        ("anonymize: analyse (pass 1)", seconds["analyse"], commits / seconds["analyse"]),
        ("anonymize: rewrite + pack writer (pass 2)", seconds["replay"], commits / seconds["replay"]),
        ("anonymize: replay = analyse + rewrite", replay, commits / replay),
        ("anonymize: bundle", seconds["bundle"], None),
        ("anonymize: clone + leak scan of every object", seconds["scan"], None),
        ("anonymize: whole command", total, commits / total),
    ]
    print(
        f"\nload average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores); CPU of the run: "
        f"Python {own_cpu:.1f} s, git children {git_cpu:.1f} s"
    )
    print(f"\n{'step':<50}{'seconds':>10}{'commits/s':>12}")
    for name, secs, rate in rows:
        print(f"{name:<50}{secs:>10.1f}{(f'{rate:,.0f}' if rate else '-'):>12}")
    assert report.scan is not None and report.bundle is not None
    print(
        f"\nbundle {report.bundle['bytes'] / 1e6:,.1f} MB; scan: {report.scan['objects']:,} objects, "
        f"{report.scan['bytes'] / 1e6:,.1f} MB, {report.scan['values_searched']:,} values"
    )
    # the matcher comparison, on the bundle's own objects and this HCM's needles
    support = scratch / "support.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(scratch / "support.bundle"), str(support)], check=True
    )
    from arka_git_hcm.anonymize.key import load_key
    from arka_git_hcm.anonymize.pseudonyms import Pseudonyms
    from arka_git_hcm.anonymize.service import _analyse, _choose_range  # the same values as the run

    sensitive = _analyse(settings, hcm, _choose_range(hcm, "refs/heads/main", AnonymizeOptions()), None)
    sensitive.freeze(Pseudonyms(load_key(settings.config_path).secret))
    compared = matchers(support, sensitive, limit_bytes=40_000_000)
    print(
        f"\nmatchers on {compared['objects']:,} objects ({compared['bytes'] / 1e6:.1f} MB),"
        f" {compared['needles']} values:"
    )
    print(f"{'matcher':<18}{'objects':>10}{'seconds':>10}{'MB/s':>10}{'hits':>6}")
    for name in ("pyahocorasick", "re alternation", "naive loop"):
        row = compared[name]
        print(f"{name:<18}{row['objects']:>10,}{row['seconds']:>10.2f}{row['MB/s']:>10.2f}{row['hits']:>6}")
    return {
        "commits": commits,
        "baseline_s": base,
        "python_cpu_s": own_cpu,
        "git_cpu_s": git_cpu,
        "loadavg_before": load_before,
        "stages_s": seconds,
        "total_s": total,
        "replay_commits_per_s": commits / replay,
        "whole_commits_per_s": commits / total,
        "scan": report.scan,
        "bundle_bytes": report.bundle["bytes"],
        "matchers": compared,
    }


if __name__ == "__main__":
    main()
