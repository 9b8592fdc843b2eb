#!/usr/bin/env python3
"""Benchmark of the HTTP service: the real server, real tokens, durability full.

1. A client folder of ~10,000 files: the files are written, then ``arka-hcm init`` adopts them
   (the command a client runs), and ``arka-hcm token create --id bench --type agent --roles
   writer --json`` makes the writer token.
2. For ``--workers 1`` and ``2``: a fresh copy of that folder, ``arka-hcm serve`` on a free port
   of 127.0.0.1, then with 1, 8 and 32 concurrent clients (a thread each with http.client, one keep-alive
   connection each): HCM_APPEND_JOURNAL writes and HCM_GET_MISSION_CONTEXT reads through
   ``POST /v1/hcm/execute``, each phase bounded by a count and a time limit.
3. After the server stops: new commits (``git rev-list --count``) must equal acknowledged writes
   (one commit per write) -- with wrk, plus at most one per client of each write phase: the
   requests wrk abandons when its time is up are still committed -- and ``git status`` must be
   clean.

    .venv/bin/python bench/bench_http.py                 # ~10k files, workers 1 and 2 (a few minutes)
    .venv/bin/python bench/bench_http.py --quick         # CI smoke, < 60 s
    .venv/bin/python bench/bench_http.py --files 10000 --workers 1 --concurrency 1,8 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import (  # noqa: E402
    Measure,
    Timer,
    commit_count,
    context_envelope,
    fmt,
    git,
    hermetic_env,
    journal_envelope,
    loadavg,
    machine_info,
    markdown_table,
    remove_tree,
    write_hcm_folder,
    write_json,
)

SERVER_COMMAND: list[str] | None = None  # --server-command (A/B experiments); None: arka-hcm


def arka_hcm() -> list[str]:
    """The installed console script of the venv running this file (or the one on PATH)."""
    candidate = Path(sys.executable).with_name("arka-hcm")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("arka-hcm")
    if found:
        return [found]
    raise SystemExit("arka-hcm is not installed in this environment (pip install -e .)")


def writer_token(client: Path, env: dict[str, str]) -> str:
    """A new agent token with the writer role (id "bench") for the benchmark's HTTP clients."""
    proc = subprocess.run(
        [*arka_hcm(), "--client", str(client), "token", "create", "--id", "bench", "--type", "agent"]
        + ["--roles", "writer", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"arka-hcm token create failed: {proc.stderr}")
    return str(json.loads(proc.stdout)["token"])


def branch_moves(hcm: Path) -> int:
    """Reflog lines of the branch: one per branch move, i.e. per group-commit batch."""
    try:
        return len((hcm / ".git" / "logs" / "refs" / "heads" / "main").read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the client folder -------------------------------------------------------------------------


def prepare_client(
    root: Path, files: int, env: dict[str, str], log: Any
) -> tuple[Path, list[str], str, dict[str, Any]]:
    client = root / "client"
    timer = Timer()
    shape = write_hcm_folder(client / "hcm", files)
    written = timer()
    timer = Timer()
    proc = subprocess.run(
        [*arka_hcm(), "init", str(client), "--tenant-id", "bench", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"arka-hcm init failed: {proc.stderr}")
    init_s = timer()
    token = writer_token(client, env)
    config = json.loads((client / "config" / "arka-os.config.json").read_text())
    durability = config["store"]["durability"]
    log(
        f"client folder: {shape.files} files ({len(shape.missions)} missions) written in {written:.1f} s, "
        f"adopted by `arka-hcm init` in {init_s:.1f} s; durability {durability!r}"
    )
    return (
        client,
        shape.missions,
        token,
        {
            "files": shape.files,
            "missions": len(shape.missions),
            "write_files_s": round(written, 2),
            "init_s": round(init_s, 2),
            "durability": durability,
        },
    )


class Server:
    """`arka-hcm serve` as a child process in its own process group (uvicorn's workers included)."""

    def __init__(self, client: Path, workers: int, env: dict[str, str], log_file: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_fh = open(log_file, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                *(SERVER_COMMAND or arka_hcm()),
                "--client",
                str(client),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=self.log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> float:
        timer = Timer()
        while timer() < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with code {self.proc.returncode}; see {self.log_fh.name}"
                )
            try:
                if httpx.get(self.base + "/ready", timeout=1.0).status_code == 200:
                    return timer()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server was not ready after {timeout:.0f} s; see {self.log_fh.name}")

    def stop(self) -> None:
        """SIGTERM to the server's own process group (this child and its uvicorn workers only)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log_fh.close()


# --- load generation ---------------------------------------------------------------------------

WRK_SCRIPT = Path(__file__).with_name("wrk_envelopes.lua")


def run_phase_wrk(
    root: Path,
    base: str,
    token: str,
    kind: str,
    clients: int,
    seconds: float,
    missions: list[str],
    prefix: str,
) -> tuple[Measure, Counter[str], int]:
    """The same phase with wrk (C, event-driven, its own process): the load generator costs the
    server's 2 CPUs far less than Python threads do. Runs for ``seconds``; the latency
    percentiles are wrk's. Writes still in flight when wrk stops are committed by the server but
    not counted as acknowledged (at most one per client)."""
    script = WRK_SCRIPT
    missions_file = root / "wrk-missions.txt"
    missions_file.write_text("\n".join(missions) + "\n")
    env = {
        **os.environ,
        "ARKA_BENCH_MISSIONS": str(missions_file),
        "ARKA_BENCH_KIND": kind,
        "ARKA_BENCH_PREFIX": prefix,
        "ARKA_BENCH_TOKEN": token,
    }
    threads = max(1, min(2, clients))
    proc = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            base,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ARKA-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
    data = json.loads(line.split(" ", 1)[1])
    outcomes: Counter[str] = Counter({"ok": data["ok"]})
    for key in ("replayed", "failed", "socket_errors"):
        if data[key]:
            outcomes[key if key != "replayed" else "replayed (unexpected)"] = data[key]
    op = "HCM_APPEND_JOURNAL" if kind == "write" else "HCM_GET_MISSION_CONTEXT"
    measure = Measure(
        clients,
        op,
        data["ok"],
        data["duration_us"] / 1e6,
        given_p50_ms=data["p50_us"] / 1000,
        given_p99_ms=data["p99_us"] / 1000,
    )
    return measure, outcomes, data["ok"] if kind == "write" else 0


def run_phase(
    base: str,
    token: str,
    kind: str,
    clients: int,
    max_ops: int,
    max_s: float,
    missions: list[str],
    prefix: str,
) -> tuple[Measure, Counter[str], int]:
    """``clients`` concurrent loops, each a thread with its own keep-alive connection
    (``http.client``: the lightest client at hand, so the 2 CPUs go to the server rather than to
    the load generator), until ``max_ops`` operations were started or ``max_s`` seconds passed.
    Returns the measure (acknowledged operations only), the outcome counts and the number of
    acknowledged writes."""
    counter = itertools.count()
    samples: list[float] = []
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    rng = random.Random(hash((prefix, clients)) & 0xFFFF)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    deadline = time.perf_counter() + max_s

    def loop() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/health")  # connection set-up is not what is measured
        conn.getresponse().read()
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter)
                mission = rng.choice(missions)
            if n >= max_ops:
                break
            envelope = (
                journal_envelope(f"{prefix}-{n}", mission, n)
                if kind == "write"
                else context_envelope(f"{prefix}-{n}", mission)
            )
            body = json.dumps(envelope).encode()
            started = time.perf_counter()
            try:
                conn.request("POST", "/v1/hcm/execute", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - started
                data = json.loads(payload)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with lock:
                    outcomes[f"transport error {type(exc).__name__}"] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                continue
            with lock:
                if response.status == 200 and data.get("status") == "ok":
                    if data.get("replayed"):
                        outcomes["replayed (unexpected)"] += 1
                        continue
                    outcomes["ok"] += 1
                    samples.append(elapsed)
                else:
                    code = (data.get("error") or {}).get("code", "?")
                    outcomes[f"HTTP {response.status} {code}"] += 1
        conn.close()

    timer = Timer()
    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = timer()
    op = "HCM_APPEND_JOURNAL" if kind == "write" else "HCM_GET_MISSION_CONTEXT"
    measure = Measure(clients, op, len(samples), elapsed, samples)
    return measure, outcomes, outcomes["ok"] if kind == "write" else 0


def bench_workers(
    pristine: Path,
    root: Path,
    workers: int,
    token: str,
    missions: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    log: Any,
) -> dict[str, Any]:
    client = root / f"client-w{workers}"
    subprocess.run(["cp", "-a", str(pristine), str(client)], check=True)
    hcm = client / "hcm"
    before = commit_count(hcm, env)
    moves_before = branch_moves(hcm)
    server = Server(client, workers, env, root / f"server-w{workers}.log")
    rows: list[dict[str, Any]] = []
    acked = 0
    cpu_before = os.times()
    try:
        ready_s = server.wait_ready()
        log(f"workers={workers}: server ready on {server.base} in {ready_s:.1f} s")
        for kind in ("write", "read"):
            for clients in args.concurrency:
                max_ops = args.write_ops if kind == "write" else args.read_ops
                max_s = args.write_seconds if kind == "write" else args.read_seconds
                moves = branch_moves(hcm)
                prefix = f"w{workers}-{kind}-c{clients}"
                if args.load == "wrk":
                    measure, outcomes, ok_writes = run_phase_wrk(
                        root, server.base, token, kind, clients, max_s, missions, prefix
                    )
                    time.sleep(0.3)  # let writes in flight when wrk stopped land before counting
                else:
                    measure, outcomes, ok_writes = run_phase(
                        server.base, token, kind, clients, max_ops, max_s, missions, prefix
                    )
                moves = branch_moves(hcm) - moves
                acked += ok_writes
                measure.method = (
                    "write HCM_APPEND_JOURNAL" if kind == "write" else "read HCM_GET_MISSION_CONTEXT"
                )
                measure.size = clients
                errors = {k: v for k, v in outcomes.items() if k != "ok"}
                per_move = ok_writes / moves if kind == "write" and moves else None
                rows.append(
                    {
                        "workers": workers,
                        "clients": clients,
                        "kind": kind,
                        "measure": measure,
                        "errors": errors,
                        "commits_per_move": per_move,
                    }
                )
                log(
                    f"workers={workers} {kind:5s} clients={clients:2d}: {measure.count} ok in "
                    f"{measure.elapsed:.1f} s = {measure.ops_per_s:.0f}/s, p50 {measure.p50_ms:.2f} ms, "
                    f"p99 {measure.p99_ms:.2f} ms"
                    + (f", {per_move:.2f} commits per branch move" if per_move else "")
                    + (f", errors {errors}" if errors else "")
                )
    finally:
        server.stop()
    cpu_after = os.times()
    in_flight = sum(row["clients"] for row in rows if row["kind"] == "write") if args.load == "wrk" else 0
    after = commit_count(hcm, env)
    moves = branch_moves(hcm) - moves_before
    status = git(hcm, env, "status", "--porcelain", "--untracked-files=all")
    check = {
        "commits_before": before,
        "commits_after": after,
        "new_commits": after - before,
        "branch_moves": moves,
        "commits_per_branch_move": round((after - before) / moves, 2) if moves else None,
        "acknowledged_writes": acked,
        # wrk abandons the requests in flight when its time is up: the server still commits them
        "in_flight_allowance": in_flight,
        "one_commit_per_write": acked <= after - before <= acked + in_flight,
        "git_status_clean": status == "",
        # this process and its children (wrk)
        "load_generator_cpu_s": round(
            sum(cpu_after[:4]) - sum(cpu_before[:4]),
            1,
        ),
    }
    log(
        f"workers={workers}: {check['new_commits']} new commits for {acked} acknowledged writes "
        f"({'one commit per write' if check['one_commit_per_write'] else 'MISMATCH'}); git status "
        f"{'clean' if check['git_status_clean'] else 'NOT clean'}"
    )
    if not args.keep:
        remove_tree(client)
    return {"workers": workers, "rows": rows, "check": check}


# --- report ------------------------------------------------------------------------------------


def report(
    results: list[dict[str, Any]], setup: dict[str, Any], args: argparse.Namespace, meta: dict[str, Any]
) -> str:
    lines = [
        f"## HTTP benchmark ({meta['date']}, {meta['cpus']} CPUs, Python {meta['python']})",
        "",
        f"Package at {meta['package_commit']}{' + uncommitted edits' if meta['package_dirty'] else ''}; "
        f"load average at start {meta['loadavg_start']}, at end {loadavg()}.",
        "",
        (
            f"Server started with `{args.server_command}` (an experiment, not the shipped command). "
            if args.server_command
            else ""
        )
        + f"`arka-hcm serve` on 127.0.0.1, durability {setup['durability']!r}, {setup['files']:,} files "
        f"({setup['missions']:,} missions) adopted by `arka-hcm init` in {setup['init_s']:.1f} s. "
        f"Each phase: at most {args.write_ops} writes / {args.write_seconds:.0f} s, "
        f"or {args.read_ops} reads / "
        f"{args.read_seconds:.0f} s. "
        + (
            "Load generator: wrk (2 threads, one keep-alive connection per client; phases run for "
            "the time limit; latency percentiles are wrk's), on the same 2 CPUs as the server."
            if args.load == "wrk"
            else "Clients: threads with http.client in one process on the same 2 CPUs as the "
            "server, one keep-alive connection each."
        ),
        "",
    ]
    headers = [
        "workers",
        "operation",
        "clients",
        "ops",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "commits per batch",
        "errors",
    ]
    rows = []
    for r in results:
        for row in r["rows"]:
            m = row["measure"]
            errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
            rows.append(
                [
                    str(r["workers"]),
                    m.method,
                    str(row["clients"]),
                    str(m.count),
                    fmt(m.ops_per_s),
                    fmt(m.p50_ms, 2),
                    fmt(m.p99_ms, 2),
                    fmt(row["commits_per_move"], 2),
                    errors,
                ]
            )
    lines += [markdown_table(headers, rows), ""]
    checks = [
        [
            str(r["workers"]),
            f"{r['check']['new_commits']:,}",
            f"{r['check']['acknowledged_writes']:,}",
            "yes" if r["check"]["one_commit_per_write"] else "NO",
            "clean" if r["check"]["git_status_clean"] else "NOT clean",
            f"{r['check']['branch_moves']:,}",
            fmt(r["check"]["commits_per_branch_move"], 2),
            f"{r['check']['load_generator_cpu_s']}",
        ]
        for r in results
    ]
    lines += [
        "### One commit per write",
        "",
        markdown_table(
            [
                "workers",
                "new commits",
                "acknowledged writes",
                "equal (+ wrk's abandoned requests)",
                "git status",
                "branch moves",
                "commits per move",
                "load generator CPU s",
            ],
            checks,
        ),
        "",
    ]
    lines += ["### Targets", "", markdown_table(["target", "measured", "verdict"], targets(results)), ""]
    return "\n".join(lines)


def targets(results: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in results:
        by = {(row["kind"], row["clients"]): row["measure"] for row in r["rows"]}
        w8 = by.get(("write", 8))
        if w8:
            out.append(
                [
                    f">= 400 durable writes/s with 8 clients (workers {r['workers']})",
                    f"{w8.ops_per_s:.0f}/s",
                    "PASS" if w8.ops_per_s >= 400 else "FAIL",
                ]
            )
        for clients in sorted({c for k, c in by if k == "read"}):
            rd = by[("read", clients)]
            plural = "s" if clients > 1 else ""
            out.append(
                [
                    f"read p50 <= 3 ms (workers {r['workers']}, {clients} client{plural})",
                    f"{rd.p50_ms:.2f} ms",
                    "PASS" if rd.p50_ms <= 3.0 else "FAIL",
                ]
            )
        out.append(
            [
                f"new commits = acknowledged writes (workers {r['workers']})",
                f"{r['check']['new_commits']} / {r['check']['acknowledged_writes']}",
                "PASS" if r["check"]["one_commit_per_write"] else "FAIL",
            ]
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10000, help="size of the HCM [10000]")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts to measure [1,2]")
    parser.add_argument("--concurrency", default="1,8,32", help="concurrent clients [1,8,32]")
    parser.add_argument("--write-ops", type=int, default=1500, help="max writes per phase")
    parser.add_argument("--write-seconds", type=float, default=12.0, help="max seconds per write phase")
    parser.add_argument("--read-ops", type=int, default=3000, help="max reads per phase")
    parser.add_argument("--read-seconds", type=float, default=8.0, help="max seconds per read phase")
    parser.add_argument(
        "--server-command",
        help="command that stands in for `arka-hcm` when starting the "
        "server (A/B experiments, e.g. 'python patched_launcher.py'); init and tokens still "
        "use arka-hcm",
    )
    parser.add_argument(
        "--load",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk (C, if installed: apt install wrk) or Python threads with "
        "http.client [auto: wrk when on PATH]",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run for CI (< 60 s)")
    parser.add_argument("--json", dest="json_out", help="write the results as JSON to this file")
    parser.add_argument("--tmp", help="parent folder of the temporary client folders [system temp]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (and server logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.write_ops, args.write_seconds = 1000, 150, 2.0
        args.read_ops, args.read_seconds = 300, 1.5
    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") else "python"
    global SERVER_COMMAND
    SERVER_COMMAND = shlex.split(args.server_command) if args.server_command else None
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    started = Timer()

    def log(message: str) -> None:
        print(f"[{started():6.1f}s] {message}", file=sys.stderr, flush=True)

    root = Path(tempfile.mkdtemp(prefix="arka-bench-http-", dir=args.tmp))
    env = hermetic_env(root / "home")
    (root / "home").mkdir()
    meta = machine_info()
    results = []
    try:
        pristine, missions, token, setup = prepare_client(root, args.files, env, log)
        for workers in worker_counts:
            results.append(bench_workers(pristine, root, workers, token, missions, env, args, log))
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            remove_tree(root)
    print(report(results, setup, args, meta))
    log(f"done in {started():.0f} s")
    write_json(
        args.json_out,
        {
            "machine": meta,
            "args": vars(args),
            "setup": setup,
            "results": [
                {
                    "workers": r["workers"],
                    "check": r["check"],
                    "rows": [
                        {
                            "kind": row["kind"],
                            "clients": row["clients"],
                            "errors": row["errors"],
                            "commits_per_move": row["commits_per_move"],
                        }
                        | row["measure"].to_json()
                        for row in r["rows"]
                    ],
                }
                for r in results
            ],
            "targets": [{"target": t, "measured": m, "verdict": v} for t, m, v in targets(results)],
        },
    )
    return 0 if all(r["check"]["one_commit_per_write"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
