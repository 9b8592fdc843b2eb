#!/usr/bin/env python3
"""Benchmark of the store itself (no HTTP): sequential durable writes, against plain git.

Two HCM shapes, each at about 1,000 / 10,000 / 100,000 files (all missions in state/missions/ as
the contract lays them out, plus ~1% stable/ and domain/ documents): missions of 20 files (the 5
every mission has and 15 of history: archived journal days, day rollups, evidence) and missions
of 5 files, the worst case (the most missions, so the widest state/missions tree). For each, in
one run:

- sequential HCM_APPEND_JOURNAL through ``HcmStore.execute`` with durability "full" and "fast"
  (one commit per write, a random mission each time);
- a plain-git baseline on an identical copy of the HCM: append the same line to the journal,
  ``git add <path>``, ``git commit -q -m`` (subprocesses; capped by a time budget at large sizes);
- what the state/missions tree's bytes alone cost (written and fsynced, hashed);
- HCM_GET_MISSION_CONTEXT latency on random missions;
- where the time of one durable write goes (timers wrapped around the engine's steps);
- checks: one commit per acknowledged write, ``git status`` clean when idle.

Every HCM of a shape is built first, then the rounds take turns: in each, every size in turn runs
full, fast and git (1k, 10k, 100k, then again): this machine's speed drifts over minutes, and
sizes measured at different times would compare the host with itself.

    .venv/bin/python bench/bench_store.py                       # both shapes (~7 minutes)
    .venv/bin/python bench/bench_store.py --mission-files 5 --sizes 1000,10000 --json out.json
    .venv/bin/python bench/bench_store.py --quick               # CI smoke, < 60 s
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import hashlib
import io
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Measure,
    Timer,
    build_client_fast,
    commit_count,
    context_envelope,
    dir_bytes,
    fmt,
    git,
    hermetic_env,
    journal_envelope,
    journal_line,
    loadavg,
    machine_info,
    markdown_table,
    remove_tree,
    tree_entries_and_bytes,
    write_hcm_folder,
    write_json,
)

from arka_git_hcm.admin.init import init_hcm  # noqa: E402
from arka_git_hcm.config import FileConfig, Settings, StoreConfig  # noqa: E402
from arka_git_hcm.services.store import HcmStore  # noqa: E402

WARMUP_WRITES = 3  # per store open: the first write after open reads the whole history once


INDEX_REFRESH_DELAY: float | None = None  # --index-refresh-delay (None: the package's default)


def settings_for(client: Path, durability: str) -> Settings:
    """The store's settings: defaults except durability (and the index refresh delay if asked)."""
    extra = {} if INDEX_REFRESH_DELAY is None else {"index_refresh_delay_s": INDEX_REFRESH_DELAY}
    store = StoreConfig(durability=durability, **extra)  # type: ignore[arg-type]
    return Settings(
        hcm_path=client / "hcm",
        config_path=client / "config",
        log_path=client / "logs",
        env="production",
        file=FileConfig(tenant_id="bench", store=store),
    )


# --- the three write methods -----------------------------------------------------------------


class StoreWriter:
    def __init__(self, client: Path, durability: str, missions: list[str], rng: random.Random) -> None:
        self.store = HcmStore.open(settings_for(client, durability))
        self.missions = missions
        self.rng = rng
        self.durability = durability
        self.acked = 0

    def write(self, request_id: str, n: int) -> float:
        envelope = journal_envelope(request_id, self.rng.choice(self.missions), n)
        started = time.perf_counter()
        response = self.store.execute(envelope)
        elapsed = time.perf_counter() - started
        if response["status"] != "ok":
            raise RuntimeError(f"write failed: {response['error']}")
        self.acked += 1
        return elapsed

    def close(self) -> None:
        self.store.close()
        self.store = None  # type: ignore[assignment]
        release()


def release() -> None:
    """Free closed stores' libgit2 object caches now (call once no reference is left). A closed
    HcmStore sits in reference cycles until Python's cycle collector runs, and libgit2's cache
    budget is process-wide: a closed but uncollected store leaves a new one no room to keep the
    wide state/missions tree cached (measured: mission context p50 0.39 ms -> 18 ms at 100k
    files). A server opens one store per process, so the benchmark collects each closed store."""
    gc.collect()


class GitWriter:
    """The baseline: what a script on plain git would do for one journal append."""

    def __init__(self, hcm: Path, env: dict[str, str], missions: list[str], rng: random.Random) -> None:
        self.hcm, self.env, self.missions, self.rng = hcm, env, missions, rng

    def write(self, request_id: str, n: int) -> float:
        mission = self.rng.choice(self.missions)
        rel = f"state/missions/{mission}/journal.jsonl"
        started = time.perf_counter()
        with open(self.hcm / rel, "ab") as fh:
            fh.write(journal_line(n))
        subprocess.run(["git", "add", "--", rel], cwd=self.hcm, env=self.env, check=True)
        subprocess.run(
            ["git", "commit", "-q", "-m", f"HCM_APPEND_JOURNAL {mission}: {request_id}"],
            cwd=self.hcm,
            env=self.env,
            check=True,
        )
        return time.perf_counter() - started


def run_writes(writer: Any, measure: Measure, prefix: str, count: int, budget_s: float | None = None) -> None:
    timer = Timer()
    samples = []
    for n in range(count):
        samples.append(writer.write(f"{prefix}-{n}", n))
        if budget_s is not None and timer() > budget_s:
            break
    measure.merge(Measure(measure.size, measure.method, len(samples), timer(), samples))


# --- where the time of one write goes ----------------------------------------------------------

BREAKDOWN_TARGETS = [
    # (label, module path, attribute path, note)
    ("execute (whole operation)", "arka_git_hcm.services.store", "HcmStore.execute", ""),
    ("  envelope parse + validation", "arka_git_hcm.services.store", "parse_envelope", ""),
    ("  engine.submit", "arka_git_hcm.writepath.engine", "CommitEngine.submit", ""),
    ("    flock acquire", "arka_git_hcm.durable.locks", "StoreLock.acquire", ""),
    ("    recover check (intent read)", "arka_git_hcm.writepath.landing", "Landing.recover", ""),
    ("    read tip + follow history", "arka_git_hcm.writepath.engine", "CommitEngine.follow_history", ""),
    ("    plan (run op on draft + commit objects)", "arka_git_hcm.writepath.chain", "Planner.plan", ""),
    (
        "      op handler (read journal blob, models)",
        "arka_git_hcm.services.store",
        "OPERATIONS[HCM_APPEND_JOURNAL].handler",
        "",
    ),
    ("      hand-edit check (stat/hash)", "arka_git_hcm.writepath.disk_check", "DiskCheck.hand_edited", ""),
    ("      write blob", "arka_git_hcm.gitrepo.repo", "GitRepo.write_blob", ""),
    ("      build trees on the path", "arka_git_hcm.gitrepo.repo", "GitRepo.build_tree", ""),
    ("      write commit", "arka_git_hcm.gitrepo.repo", "GitRepo.write_commit", ""),
    ("    land", "arka_git_hcm.writepath.landing", "Landing.land", ""),
    ("      write the batch's pack + index", "arka_git_hcm.gitrepo.repo", "GitRepo.flush_objects", ""),
    ("      stage work-tree files (temp names)", "arka_git_hcm.writepath.worktree", "WorkTree.stage", ""),
    ("      write intent", "arka_git_hcm.writepath.worktree", "WorkTree.write_intent", ""),
    ("      syncfs (x2 when full)", "arka_git_hcm.writepath.landing", "sync_filesystem", ""),
    ("      prepare the branch's lock", "arka_git_hcm.gitrepo.repo", "GitRepo.prepare_ref_update", ""),
    ("      move the branch (reflog, rename)", "arka_git_hcm.gitrepo.repo", "GitRepo.finish_ref_update", ""),
    ("      install work-tree files (rename)", "arka_git_hcm.writepath.worktree", "WorkTree.install", ""),
    ("    settle (sync, clear intent, ack)", "arka_git_hcm.writepath.landing", "Landing.settle", ""),
    ("      clear intent", "arka_git_hcm.writepath.worktree", "WorkTree.clear_intent", ""),
    ("  operations.jsonl line", "arka_git_hcm.services.store", "HcmStore._log", ""),
    (
        "path checks (check_relative; also inside the rows above)",
        "arka_git_hcm.operations.views",
        "check_relative",
        "",
    ),
    ("path checks (check_relative; also inside the rows above)", "arka_git_hcm.paths", "check_relative", ""),
    (
        "background: git index refresh (per refresh)",
        "arka_git_hcm.writepath.engine",
        "CommitEngine.refresh_index",
        "off the hot path, but holds the lock",
    ),
]


class Breakdown:
    """Wraps functions with timers (in this process only; the package is not modified)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        import importlib

        for label, module_name, attr_path, _note in BREAKDOWN_TARGETS:
            owner: Any = importlib.import_module(module_name)
            if attr_path.startswith("OPERATIONS["):  # a frozen OpSpec holds the handler itself
                op = attr_path[len("OPERATIONS[") : attr_path.index("]")]
                spec = owner.OPERATIONS[op]
                self._undo.append((spec, "handler", spec.handler))
                object.__setattr__(spec, "handler", self._wrap(label, spec.handler))
                continue
            parts = attr_path.split(".")
            for part in parts[:-1]:
                owner = getattr(owner, part)
            name = parts[-1]
            if isinstance(owner, type):
                # the class that defines it (GitRepo's methods live in its layers' base classes);
                # patched there, so every subclass sees the timed one
                owner = next(klass for klass in owner.__mro__ if name in klass.__dict__)
                original = owner.__dict__[name]
            else:
                original = getattr(owner, name)
            self._undo.append((owner, name, original))
            setattr(owner, name, self._wrap(label, original))

    def _wrap(self, label: str, fn: Any) -> Any:
        totals, calls = self.totals, self.calls

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started
                calls[label] += 1

        return timed

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._undo):
            object.__setattr__(owner, name, original) if name == "handler" else setattr(owner, name, original)
        self._undo.clear()

    def rows(self, writes: int) -> list[dict[str, Any]]:
        out = []
        whole = self.totals.get("execute (whole operation)", 0.0) / max(writes, 1)
        seen = set()
        for label, _m, _a, note in BREAKDOWN_TARGETS:
            if label in seen:
                continue
            seen.add(label)
            calls = self.calls.get(label, 0)
            if not calls:
                continue
            per_write = self.totals[label] / writes
            per_call = self.totals[label] / calls
            out.append(
                {
                    "step": label,
                    "calls": calls,
                    "ms_per_write": round(per_write * 1000, 3),
                    "ms_per_call": round(per_call * 1000, 3),
                    "share": round(per_write / whole, 3) if whole else None,
                    "note": note,
                }
            )
        return out


def measure_breakdown(
    client: Path, durability: str, missions: list[str], writes: int, profile: bool
) -> tuple[list[dict[str, Any]], str | None, int]:
    writer = StoreWriter(client, durability, missions, random.Random(99))
    for n in range(WARMUP_WRITES):
        writer.write(f"bd-warm-{durability}-{n}", n)
    breakdown = Breakdown()
    breakdown.install()
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler:
            profiler.enable()
        for n in range(writes):
            writer.write(f"bd-{durability}-{n}", n)
        if profiler:
            profiler.disable()
        writer.store.engine.refresh_index()  # the pending background refresh, counted once more
    finally:
        breakdown.uninstall()
        writer.close()
    text = None
    if profiler:
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("tottime").print_stats(18)
        stats.sort_stats("cumulative").print_stats(30)
        text = buf.getvalue()
    return breakdown.rows(writes), text, writer.acked


def measure_context(client: Path, missions: list[str], reads: int) -> Measure:
    store = HcmStore.open(settings_for(client, "fast"))
    rng = random.Random(5)
    try:
        for n in range(20):
            store.execute(context_envelope(f"ctx-warm-{n}", rng.choice(missions)))
        samples = []
        timer = Timer()
        for n in range(reads):
            envelope = context_envelope(f"ctx-{n}", rng.choice(missions))
            started = time.perf_counter()
            response = store.execute(envelope)
            samples.append(time.perf_counter() - started)
            if response["status"] != "ok":
                raise RuntimeError(f"read failed: {response['error']}")
        return Measure(0, "HCM_GET_MISSION_CONTEXT (store)", len(samples), timer(), samples)
    finally:
        store.close()
        del store
        release()


def measure_tree_floor(folder: Path, tree_bytes: int, samples: int = 100) -> dict[str, float]:
    """What the state/missions tree's bytes alone cost one durable write at this size, whatever
    the store does. A commit below state/missions/ needs a new object of that tree, and git
    reads a delta's base only from the same pack: a write at a time stores the tree whole, so
    its bytes are written and synced with every durable write (and hashed: the object id, the
    pack's checksums). Here, on the same filesystem: p50 of writing a new file of that size and
    fsyncing it, and of one SHA-1 over those bytes."""
    data = os.urandom(tree_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    writes, hashes = [], []
    for i in range(samples):
        path = folder / f"floor-{i}"
        started = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        hashlib.sha1(data).digest()
        hashes.append(time.perf_counter() - started)
    remove_tree(folder)
    return {"write_sync_ms": statistics.median(writes) * 1000, "sha1_ms": statistics.median(hashes) * 1000}


# --- one size ----------------------------------------------------------------------------------


class SizeRun:
    """One size's HCM (and its plain-git copy) and what was measured on it so far."""

    def __init__(self, size: int, args: argparse.Namespace, workdir: Path, log: Any) -> None:
        self.size, self.args, self.log = size, args, log
        self.root = Path(tempfile.mkdtemp(prefix=f"size{size}-", dir=workdir))
        self.env = hermetic_env(self.root / "home")
        (self.root / "home").mkdir()
        self.client = self.root / "store"
        self.git_hcm = self.root / "git-copy"
        self.info: dict[str, Any] = {"size": size, "loadavg_start": loadavg()}
        self.rng = random.Random(size)
        self.full = Measure(size, "store, durability full", 0, 0.0)
        self.fast = Measure(size, "store, durability fast", 0, 0.0)
        self.base = Measure(size, "plain git (add + commit)", 0, 0.0)
        self.acked = 0
        self.missions: list[str] = []

    def prepare(self) -> None:
        size, args, log, info = self.size, self.args, self.log, self.info
        timer = Timer()
        shape = build_client_fast(self.client, size, self.env, mission_files=args.mission_files)
        self.missions = shape.missions
        info.update(
            files=shape.files,
            missions=len(shape.missions),
            documents=shape.documents,
            build_s=round(timer(), 2),
        )
        entries, tree_bytes = tree_entries_and_bytes(self.client / "hcm", "state/missions")
        info.update(missions_tree_entries=entries, missions_tree_bytes=tree_bytes)
        log(
            f"[{size}] built {shape.files} files ({len(shape.missions)} missions, state/missions tree: "
            f"{entries} entries, {tree_bytes / 1024:.0f} KiB) in {info['build_s']} s"
        )
        timer = Timer()
        subprocess.run(["cp", "-a", str(self.client / "hcm"), str(self.git_hcm)], check=True)
        git(self.git_hcm, self.env, "update-index", "-q", "--refresh")
        info["git_copy_s"] = round(timer(), 2)
        if size <= args.adopt_max:
            adopt_client = self.root / "adopt"
            timer = Timer()
            write_hcm_folder(adopt_client / "hcm", size, mission_files=args.mission_files)
            written = timer()
            timer = Timer()
            init_hcm(settings_for(adopt_client, "full"), "bench")
            info["init_hcm_adopt_s"] = round(timer(), 2)
            log(
                f"[{size}] init_hcm adoption of the same folder: {info['init_hcm_adopt_s']} s "
                f"(writing the files: {written:.1f} s)"
            )
            remove_tree(adopt_client)
        self.objects_before = dir_bytes(self.client / "hcm" / ".git" / "objects")

    def round(self, rnd: int) -> None:
        """One round: store writes (full, then fast), then the git baseline."""
        args = self.args
        for durability, measure in (("full", self.full), ("fast", self.fast)):
            writer = StoreWriter(self.client, durability, self.missions, self.rng)
            try:
                for n in range(WARMUP_WRITES):
                    writer.write(f"warm-{durability}-{rnd}-{n}", n)
                run_writes(writer, measure, f"{durability}-{rnd}", max(1, args.ops // args.rounds))
            finally:
                writer.close()
                self.acked += writer.acked
        gw = GitWriter(self.git_hcm, self.env, self.missions, self.rng)
        gw.write(f"git-warm-{rnd}", 0)
        run_writes(
            gw, self.base, f"git-{rnd}", max(1, args.git_ops // args.rounds), args.git_budget / args.rounds
        )
        self.log(
            f"[{self.size}] round {rnd + 1}/{args.rounds}: full {self.full.ops_per_s:.0f}/s, "
            f"fast {self.fast.ops_per_s:.0f}/s, git {self.base.ops_per_s:.1f}/s"
        )

    def finish(self) -> dict[str, Any]:
        size, args, info, log = self.size, self.args, self.info, self.log
        full, fast, base = self.full, self.fast, self.base
        if base.count < full.count:
            base.note = f"{base.count} ops, time budget {args.git_budget:.0f} s"
        for m in (full, fast, base):
            m.ratio = m.ops_per_s / base.ops_per_s if base.ops_per_s else None
        context = measure_context(self.client, self.missions, args.context_reads)
        context.size = size
        breakdown, profile_text, bd_acked = [], None, 0
        if args.breakdown_ops:
            breakdown, profile_text, bd_acked = measure_breakdown(
                self.client, "full", self.missions, args.breakdown_ops, args.profile
            )
        acked = self.acked + bd_acked
        commits = commit_count(self.client / "hcm", self.env)
        status = git(self.client / "hcm", self.env, "status", "--porcelain", "--untracked-files=all")
        objects_after = dir_bytes(self.client / "hcm" / ".git" / "objects")
        info.update(
            commits=commits,
            acked_writes=acked,
            one_commit_per_write=commits == 1 + acked,
            git_status_clean=status == "",
            objects_kib_per_commit=round((objects_after - self.objects_before) / 1024 / max(acked, 1), 1),
        )
        log(
            f"[{size}] checks: {commits} commits for 1 + {acked} acknowledged writes; git status "
            f"{'clean' if status == '' else 'NOT clean'}; +{info['objects_kib_per_commit']} KiB of objects "
            "per commit"
        )
        info["loadavg_end"] = loadavg()
        info["rows"] = [full, fast, base, context]
        info["breakdown"] = breakdown
        info["profile"] = profile_text
        return info

    def floor(self) -> None:
        """The tree's bytes alone, measured between rounds (see measure_tree_floor)."""
        samples = measure_tree_floor(self.root / "floor", self.info["missions_tree_bytes"], samples=30)
        kept = self.info.setdefault("floor_samples", [])
        kept.append(samples)

    def summarize_floor(self) -> None:
        samples = self.info.pop("floor_samples", [])
        if samples:
            self.info["tree_floor"] = {
                key: statistics.median(s[key] for s in samples) for key in ("write_sync_ms", "sha1_ms")
            }

    def remove(self) -> None:
        if self.args.keep:
            self.log(f"[{self.size}] kept {self.root}")
        else:
            remove_tree(self.root)


def bench_sizes(sizes: list[int], args: argparse.Namespace, workdir: Path, log: Any) -> list[dict[str, Any]]:
    """Build every size's HCM, then run the rounds size after size in turn (round 1 of every
    size, then round 2, ...): this host's speed drifts over minutes, and comparing sizes
    measured at different times would mostly compare the host with itself."""
    runs = [SizeRun(size, args, workdir, log) for size in sizes]
    try:
        for run in runs:
            run.prepare()
        for rnd in range(args.rounds):
            for run in runs:
                run.floor()
                run.round(rnd)
        results = []
        for run in runs:
            run.summarize_floor()
            floor = run.info["tree_floor"]
            log(
                f"[{run.size}] the state/missions tree's bytes written and fsynced: "
                f"{floor['write_sync_ms']:.2f} ms, one SHA-1 of them: {floor['sha1_ms']:.2f} ms (p50)"
            )
            results.append(run.finish())
        return results
    finally:
        for run in runs:
            run.remove()


# --- report ------------------------------------------------------------------------------------


def row_cells(m: Measure) -> list[str]:
    ratio = f"{m.ratio:.1f}×" if m.ratio is not None else "–"
    method = m.method + (f" ({m.note})" if m.note else "")
    return [f"{m.size:,}", method, str(m.count), fmt(m.ops_per_s), fmt(m.p50_ms, 2), fmt(m.p99_ms, 2), ratio]


def targets(results: list[dict[str, Any]], mission_files: int) -> list[tuple[str, str, str]]:
    by_size = {r["size"]: {m.method: m for m in r["rows"]} for r in results}

    def full(size: int) -> Measure | None:
        return by_size.get(size, {}).get("store, durability full")

    floors = {r["size"]: r["tree_floor"]["write_sync_ms"] for r in results if "tree_floor" in r}
    slower = f"100k no more than 20% slower than 10k (missions of {mission_files} files)"
    out = []
    f10, f100 = full(10000), full(100000)
    if f10:
        out.append(
            (
                ">= 200 durable writes/s at 10k files",
                f"{f10.ops_per_s:.0f}/s",
                "PASS" if f10.ops_per_s >= 200 else "FAIL",
            )
        )
    else:
        out.append((">= 200 durable writes/s at 10k files", "not measured", "n/a"))
    if f10 and f100:
        drop = 1 - f100.ops_per_s / f10.ops_per_s
        measured = f"{drop * 100:.0f}% slower" if drop >= 0 else f"{-drop * 100:.0f}% faster"
        if 10000 in floors and 100000 in floors:
            # a 10k write plus the time to write and sync the wider tree's extra bytes
            per_write = 1000 / f10.ops_per_s
            least = 1 - per_write / (per_write + max(0.0, floors[100000] - floors[10000]))
            measured += f" (writing and syncing its wider missions tree alone: {least * 100:.0f}% slower)"
        out.append((slower, measured, "PASS" if drop <= 0.20 else "FAIL"))
    else:
        out.append((slower, "not measured", "n/a"))
    if f10 and f10.ratio is not None:
        out.append(
            (">= 10× the git baseline at 10k", f"{f10.ratio:.1f}×", "PASS" if f10.ratio >= 10 else "FAIL")
        )
    else:
        out.append((">= 10× the git baseline at 10k", "not measured", "n/a"))
    for r in results:
        ctx = by_size[r["size"]].get("HCM_GET_MISSION_CONTEXT (store)")
        if ctx:
            out.append(
                (
                    f"mission context p50 <= 1 ms ({r['size']:,} files)",
                    f"{ctx.p50_ms:.2f} ms",
                    "PASS" if ctx.p50_ms <= 1.0 else "FAIL",
                )
            )
    return out


def indent(label: str) -> str:
    """Nested steps keep their indentation in Markdown."""
    stripped = label.lstrip(" ")
    return "&nbsp;" * (len(label) - len(stripped)) + stripped


def report(results: list[dict[str, Any]], args: argparse.Namespace, meta: dict[str, Any]) -> str:
    lines = [
        f"## Store benchmark ({meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}, {meta['git']})",
        "",
        f"Package at {meta['package_commit']}{' + uncommitted edits' if meta['package_dirty'] else ''}; "
        "load average (1/5/15 min) at the start/end of each size: "
        + "; ".join(f"{r['size']:,}: {r['loadavg_start']} → {r['loadavg_end']}" for r in results)
        + ".",
        "",
        f"Missions of {args.mission_files} files"
        + (
            " (the 5 every mission has: the most missions per file count)"
            if args.mission_files <= 5
            else f" (the 5 every mission has + {args.mission_files - 5} of history)"
        )
        + f". Sequential, one thread. {args.ops} writes per store method and size in {args.rounds} "
        "rounds, each running every size and method in turn "
        f"(+{WARMUP_WRITES} unmeasured warm-up writes per store open); git baseline up to "
        f"{args.git_ops} writes within {args.git_budget:.0f} s per size; {args.context_reads} context "
        "reads on random missions. Store settings: defaults except durability"
        + (
            f", index_refresh_delay_s={args.index_refresh_delay}"
            if args.index_refresh_delay is not None
            else ""
        )
        + ".",
        "",
    ]
    headers = ["size (files)", "method", "ops", "ops/s", "p50 ms", "p99 ms", "ratio vs git"]
    rows = [row_cells(m) for r in results for m in r["rows"]]
    lines += [markdown_table(headers, rows), ""]
    lines += ["### HCMs built", ""]
    build_rows = []
    for r in results:
        build_rows.append(
            [
                f"{r['size']:,}",
                f"{r['files']:,}",
                f"{r['missions']:,}",
                f"{r['missions_tree_entries']:,} / {r['missions_tree_bytes'] / 1024:,.0f} KiB",
                f"{r['tree_floor']['write_sync_ms']:.2f} / {r['tree_floor']['sha1_ms']:.2f}",
                f"{r['build_s']:.1f}",
                fmt(r.get("init_hcm_adopt_s")),
                f"{r['objects_kib_per_commit']:.1f}",
                f"{r['commits']:,} = 1 + {r['acked_writes']:,}"
                if r["one_commit_per_write"]
                else f"MISMATCH {r['commits']} vs 1 + {r['acked_writes']}",
                "clean" if r["git_status_clean"] else "NOT clean",
            ]
        )
    lines += [
        markdown_table(
            [
                "size",
                "files",
                "missions",
                "state/missions tree (entries / size)",
                "that tree's bytes: written + fsynced / one SHA-1 (ms, p50)",
                "fast build s",
                "init_hcm adopt s",
                "objects KiB per commit",
                "commits",
                "git status",
            ],
            build_rows,
        ),
        "",
    ]
    verdicts = targets(results, args.mission_files)
    lines += ["### Targets", "", markdown_table(["target", "measured", "verdict"], verdicts), ""]
    for r in results:
        if r["breakdown"]:
            lines += [
                f"### Where one durable write goes at {r['size']:,} files "
                f"({args.breakdown_ops} writes, timers around the engine's steps; nested rows are "
                "included in their parent)",
                "",
            ]
            lines += [
                markdown_table(
                    ["step", "calls", "ms per write", "ms per call", "share"],
                    [
                        [
                            indent(b["step"]),
                            b["calls"],
                            f"{b['ms_per_write']:.3f}",
                            f"{b['ms_per_call']:.3f}",
                            f"{b['share'] * 100:.0f}%" if b["share"] is not None else "–",
                        ]
                        for b in r["breakdown"]
                    ],
                ),
                "",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated file counts")
    parser.add_argument("--ops", type=int, default=300, help="measured writes per store method and size")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds; in each, every size runs every method in turn"
    )
    parser.add_argument("--git-ops", type=int, default=None, help="git baseline writes per size [= --ops]")
    parser.add_argument("--git-budget", type=float, default=45.0, help="seconds of git baseline per size")
    parser.add_argument("--context-reads", type=int, default=1000)
    parser.add_argument(
        "--mission-files",
        default="20,5",
        help="files per mission, one benchmark per value [20,5]. 5: the 5 every mission has, so the "
        "most missions in the one state/missions folder (the worst case); more adds the history "
        "a mission accumulates (archived journal days, day rollups, evidence)",
    )
    parser.add_argument("--breakdown-ops", type=int, default=150, help="writes timed step by step (0: skip)")
    parser.add_argument(
        "--adopt-max",
        type=int,
        default=10000,
        help="also time init_hcm adoption for sizes up to this (0: never)",
    )
    parser.add_argument(
        "--index-refresh-delay",
        type=float,
        default=None,
        help="store.index_refresh_delay_s for the measured stores [package default]",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the breakdown writes and print it")
    parser.add_argument("--quick", action="store_true", help="small smoke run for CI (< 60 s)")
    parser.add_argument("--json", dest="json_out", help="write the results as JSON to this file")
    parser.add_argument("--tmp", help="parent folder of the temporary HCMs [system temp]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary HCMs")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.ops, args.rounds, args.context_reads = "1000", 60, 2, 200
        args.breakdown_ops, args.adopt_max, args.git_budget = 30, 1000, 10.0
        args.mission_files = "5"
    if args.git_ops is None:
        args.git_ops = args.ops
    global INDEX_REFRESH_DELAY
    INDEX_REFRESH_DELAY = args.index_refresh_delay
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    started = Timer()

    def log(message: str) -> None:
        print(f"[{started():6.1f}s] {message}", file=sys.stderr, flush=True)

    if shutil.which("git") is None:
        print("the git binary is needed for the baseline", file=sys.stderr)
        return 2
    shapes = [int(n) for n in str(args.mission_files).split(",") if n.strip()]
    meta = machine_info()
    runs: list[tuple[argparse.Namespace, list[dict[str, Any]]]] = []
    for mission_files in shapes:
        shape_args = argparse.Namespace(**{**vars(args), "mission_files": mission_files})
        workdir = Path(tempfile.mkdtemp(prefix="arka-bench-store-", dir=args.tmp))
        try:
            log(f"missions of {mission_files} files")
            runs.append((shape_args, bench_sizes(sizes, shape_args, workdir, log)))
        finally:
            if not args.keep:
                remove_tree(workdir)
    for shape_args, results in runs:
        print(report(results, shape_args, meta))
        for r in results:
            if r.get("profile"):
                print(
                    f"\n<details><summary>cProfile of the breakdown writes at {r['size']:,} files"
                    "</summary>\n\n```"
                )
                print(r["profile"])
                print("```\n</details>")
    log(f"done in {started():.0f} s")
    write_json(
        args.json_out,
        {
            "machine": meta,
            "args": vars(args),
            "shapes": [
                {
                    "mission_files": shape_args.mission_files,
                    "sizes": [
                        {k: v for k, v in r.items() if k not in ("rows", "profile")}
                        | {"rows": [m.to_json() for m in r["rows"]]}
                        for r in results
                    ],
                    "targets": [
                        {"target": t, "measured": m, "verdict": v}
                        for t, m, v in targets(results, shape_args.mission_files)
                    ],
                    "context_mean_ms": {
                        r["size"]: statistics.fmean(r["rows"][3].latencies) * 1000 for r in results
                    },
                }
                for shape_args, results in runs
            ],
        },
    )
    failed_checks = [
        (shape_args.mission_files, r["size"])
        for shape_args, results in runs
        for r in results
        if not r["one_commit_per_write"] or not r["git_status_clean"]
    ]
    if failed_checks:
        print(f"CHECK FAILED (files per mission, size): {failed_checks}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
