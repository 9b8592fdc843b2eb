#!/usr/bin/env python3
"""Long history: does the HCM stay fast at 1,000,000 commits?

Builds (or reuses) an HCM with a long history (bench/history_build.py: fast-import of realistic
store commits, 500 missions, one rarely touched), then times, each as the median of several runs:

- the history index: build from scratch, size, catching up 1 commit;
- HCM_HISTORY of a rarely touched mission and of a busy one (the last 20 commits), in-process;
- ``at=DATE``: HCM_GET_MISSION_CONTEXT at random dates (the state at a date, through the index);
- ``arka-hcm log --mission`` as a user types it (a new process each time), beside the floor of
  any such command (Python importing click, sqlite3 and json);
- the alternative the issue names: git's commit-graph with changed-path Bloom filters, time to
  write it and ``git log --first-parent -20 -- <mission folder>`` with and without it;
- backup create (full bundle), backup verify (restore into a temporary folder, fsck, layout);
- ``arka-hcm verify``; a clone over HTTP from ``arka-hcm serve`` (time, the server's peak RSS
  with and without its git children, CPU), optionally against a server run from another source
  tree (``--clone-baseline``) and git's own clone without HTTP (``--clone-native``);
- ``arka-hcm gc`` and the repository's bytes per commit after it.

    .venv/bin/python bench/bench_history.py --quick                   # 20,000 commits, a minute
    .venv/bin/python bench/bench_history.py --client /tmp/lh1m --skip-build --json out.json
    .venv/bin/python bench/bench_history.py --commits 1000000 --client /tmp/lh1m
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import history_build  # noqa: E402

from arka_git_hcm.config import load_settings  # noqa: E402
from arka_git_hcm.services.store import HcmStore  # noqa: E402

CLI = [sys.executable, "-m", "arka_git_hcm"]
READER = {"type": "human", "id": "bench", "roles": ["reader"]}


class Rows(list[tuple[str, str]]):
    """The table's rows, each also printed as soon as it is measured (a 1M run takes an hour)."""

    def append(self, item: tuple[str, str]) -> None:
        super().append(item)
        print(f"  {item[0]}: {item[1]}", file=sys.stderr, flush=True)


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def git(hcm: Path, *args: str, timeout: float = 7200) -> str:
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", *args], cwd=hcm, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {proc.stderr[:500]}")
    return proc.stdout


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def execute(store: HcmStore, op: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = store.execute({"op": op, "request_id": "bench", "caller": READER, "payload": payload})
    assert response["status"] == "ok", response
    return response


def bench_index(
    client: Path, rows: list[tuple[str, str]], runs: int, keep_index: bool = False
) -> dict[str, Any]:
    settings = load_settings(client=client)
    hcm = settings.hcm_path
    results: dict[str, Any] = {}
    with HcmStore.open(settings, scan_hand_edits=False) as store:
        if keep_index:  # time the queries on the index as it is (a build takes minutes at 1M)
            added = store.history.catch_up(store.tip(), build=True, wait=True)
            rows.append(("history index: kept (no rebuild)", f"{added:,} commits added to reach the tip"))
        else:
            store.history.rebuild(None)  # from scratch: time the full build
            seconds, added = timed(lambda: store.history.catch_up(store.tip(), build=True, wait=True))
            results["index_build_s"] = round(seconds, 1)
            rows.append(("history index: build from scratch", f"{seconds:.1f} s ({added:,} commits)"))
        results["index_bytes"] = size = dir_bytes(store.history.folder)
        stamp = store.history.stamp()
        indexed = stamp.seq + 1 if stamp is not None else 0
        rows.append(("history index: size", f"{size / 1e6:.0f} MB ({size / max(indexed, 1):.0f} B/commit)"))
        for mission, label in (("rare-mission", "rarely touched"), ("mission-0000", "busiest")):
            ms = median_ms(
                functools.partial(execute, store, "HCM_HISTORY", {"mission_id": mission, "limit": 20}), runs
            )
            results[f"history_{label}_ms"] = round(ms, 2)
            rows.append((f"HCM_HISTORY, last 20 of the {label} mission", f"{ms:.2f} ms"))
        ms = median_ms(lambda: execute(store, "HCM_HISTORY", {"limit": 20, "caller": "human/alice"}), runs)
        rows.append(("HCM_HISTORY, last 20 by one caller", f"{ms:.2f} ms"))
        first = int(git(hcm, "log", "--reverse", "--format=%ct", "--max-parents=0", "HEAD").split()[0])
        last = int(git(hcm, "log", "-1", "--format=%ct").strip())
        rng = random.Random(5)
        dates = [datetime.fromtimestamp(rng.randint(first, last), UTC).isoformat() for _ in range(runs)]
        it = iter(dates * 2)
        ms = median_ms(lambda: store.commit_at(datetime.fromisoformat(next(it))), runs)
        results["at_date_ms"] = round(ms, 3)
        rows.append(("at=DATE (the commit at a random date)", f"{ms:.2f} ms"))
        it = iter(dates * 2)
        ms = median_ms(
            lambda: execute(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "mission-0001", "at": next(it)}),
            runs,
        )
        results["context_at_date_ms"] = round(ms, 2)
        rows.append(("HCM_GET_MISSION_CONTEXT at a random date", f"{ms:.2f} ms"))
        ms = median_ms(lambda: store.find_request("req-00000042"), runs)
        rows.append(("request id lookup (idempotent replay)", f"{ms:.2f} ms"))
    results |= bench_cli_log(client, rows, runs)
    return results


# Which modules a command loaded: `log` answers from the history index without pydantic and
# pygit2 when it can be exact (services/quick_history.py), else through the store.
LOADED_PROBE = """
import contextlib, io, json, sys
from arka_git_hcm.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps([m for m in ("pydantic", "pygit2") if m in sys.modules]))
"""


def bench_cli_log(client: Path, rows: list[tuple[str, str]], runs: int) -> dict[str, Any]:
    """`arka-hcm log --mission` as a user types it (the console script beside this Python, a new
    process each time), interleaved with the floor no such command goes under: Python with
    click, sqlite3 and json imported. Both move with the host's load; their difference is ours."""
    args = ["--client", str(client), "log", "--mission", "rare-mission", "-n", "20"]
    script = Path(sys.executable).with_name("arka-hcm")
    command = [str(script), *args] if script.exists() else [*CLI, *args]
    floor = [sys.executable, "-c", "import click, sqlite3, json"]
    samples: dict[str, list[float]] = {"log": [], "floor": []}
    for _ in range(runs):
        for name, argv in (("log", command), ("floor", floor)):
            began = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            samples[name].append((time.perf_counter() - began) * 1000)
    probe = subprocess.run([sys.executable, "-c", LOADED_PROBE, *args], capture_output=True, text=True)
    loaded = json.loads(probe.stdout) if probe.returncode == 0 else ["(probe failed)"]
    cli_ms, floor_ms = statistics.median(samples["log"]), statistics.median(samples["floor"])
    way = "from the index" if not loaded else f"through the store ({', '.join(loaded)} loaded)"
    rows.append(
        (
            "`arka-hcm log --mission` (whole command)",
            f"{cli_ms:.0f} ms, {way}; Python + click, sqlite3, json alone: {floor_ms:.0f} ms "
            f"(medians of {runs}, interleaved; load {os.getloadavg()[0]:.1f})",
        )
    )
    return {"cli_log_mission_ms": round(cli_ms, 1), "cli_floor_ms": round(floor_ms, 1), "cli_loaded": loaded}


def bench_commit_graph(client: Path, rows: list[tuple[str, str]]) -> dict[str, Any]:
    hcm = client / "hcm"
    path = "state/missions/rare-mission"

    def log_rare() -> str:
        return git(hcm, "log", "--first-parent", "-20", "--format=%H", "--", path)

    graph = hcm / ".git" / "objects" / "info" / "commit-graph"
    graph.unlink(missing_ok=True)
    shutil.rmtree(hcm / ".git" / "objects" / "info" / "commit-graphs", ignore_errors=True)
    plain, _ = timed(log_rare)
    rows.append(("git log -- <rare mission>, no commit-graph", f"{plain * 1000:.0f} ms"))
    seconds, _ = timed(lambda: git(hcm, "commit-graph", "write", "--reachable", "--changed-paths"))
    rows.append(("git commit-graph write --changed-paths", f"{seconds:.0f} s"))
    with_graph, _ = timed(log_rare)
    rows.append(("git log -- <rare mission>, commit-graph + Bloom filters", f"{with_graph * 1000:.0f} ms"))
    return {
        "git_log_plain_ms": plain * 1000,
        "commit_graph_write_s": seconds,
        "git_log_graph_ms": with_graph * 1000,
    }


def bench_backup(client: Path, rows: list[tuple[str, str]]) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        bundle = scratch / "full.bundle"
        seconds, _ = timed(
            lambda: subprocess.run(
                [*CLI, "--client", str(client), "backup", "create", str(bundle), "--json"],
                check=True,
                capture_output=True,
            )
        )
        size = bundle.stat().st_size
        rows.append(("backup create (full bundle)", f"{seconds:.0f} s, {size / 1e6:.0f} MB"))
        verify_s, proc = timed(
            lambda: subprocess.run([*CLI, "backup", "verify", str(bundle)], capture_output=True, text=True)
        )
        rows.append(
            (
                "backup verify (restore, fsck, layout)",
                f"{verify_s:.0f} s ({'OK' if proc.returncode == 0 else 'FAILED'})",
            )
        )
        restore_s, proc = timed(
            lambda: subprocess.run(
                [*CLI, "restore", str(bundle), str(scratch / "restored")], capture_output=True, text=True
            )
        )
        rows.append(
            (
                "restore (into a new folder, verified)",
                f"{restore_s:.0f} s ({'OK' if proc.returncode == 0 else 'FAILED'})",
            )
        )
        return {
            "backup_s": seconds,
            "bundle_bytes": size,
            "backup_verify_s": verify_s,
            "restore_s": restore_s,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def bench_verify(client: Path, rows: list[tuple[str, str]]) -> dict[str, Any]:
    seconds, proc = timed(
        lambda: subprocess.run([*CLI, "--client", str(client), "verify"], capture_output=True, text=True)
    )
    rows.append(
        (
            "arka-hcm verify (fsck + files)",
            f"{seconds:.0f} s (exit {proc.returncode})",
        )
    )
    return {"verify_s": seconds}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessTree:
    """Resources of a server process and its descendants (git upload-pack, pack-objects), from
    /proc: the peak RSS of the server alone and of the whole tree (sampled every 0.25 s), and
    CPU seconds (the server's own, plus what its reaped children used: cutime/cstime)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_server_kb = 0
        self.peak_tree_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _stat(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on

    @staticmethod
    def _rss_kb(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def descendants(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parent = int(self._stat(int(entry))[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(parent, []).append(int(entry))
        found, todo = [], [self.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def cpu_s(self) -> float:
        fields = self._stat(self.pid)
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # u, s, cu, cs

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            total = 0
            for pid in [self.pid, *self.descendants()]:
                try:
                    rss = self._rss_kb(pid)
                except OSError:
                    continue
                total += rss
                if pid == self.pid:
                    self.peak_server_kb = max(self.peak_server_kb, rss)
            self.peak_tree_kb = max(self.peak_tree_kb, total)

    def __enter__(self) -> ProcessTree:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _wait_idle(tree: ProcessTree, limit_s: float = 600) -> None:
    """Until the server's start-up work (store open, index catch-up) is done: under 5% of a
    core over 3 s, or ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = tree.cpu_s()
        time.sleep(3)
        if tree.cpu_s() - before < 0.15:
            return


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clone_once(
    client: Path, label: str, timeout: float, token: str, source: Path | None = None
) -> dict[str, Any]:
    """One ``git clone --bare`` over HTTP from ``arka-hcm serve``; ``source``: run the server from
    another source tree (e.g. ``git archive fcb7de3``, the dulwich export) to compare."""
    port = free_port()
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = subprocess.Popen(
        [*CLI, "--client", str(client), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=source or Path(__file__).resolve().parents[1],  # `python -m` puts the cwd first
    )
    scratch = Path(tempfile.mkdtemp(prefix="bench-clone-"))
    result: dict[str, Any] = {"label": label}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        url = f"http://git:{token}@127.0.0.1:{port}/git/hcm.git"
        with ProcessTree(server.pid) as tree:
            _wait_idle(tree)
            cpu_before, client_before = tree.cpu_s(), _children_cpu_s()
            began = time.perf_counter()
            try:
                subprocess.run(
                    ["git", "clone", "-q", "--bare", url, str(scratch / "c.git")],
                    check=True,
                    timeout=timeout,
                    capture_output=True,
                )
                result["seconds"] = time.perf_counter() - began
                time.sleep(1)  # the server reaps its git children
            except subprocess.TimeoutExpired:
                result["seconds"] = None
            except subprocess.CalledProcessError as exc:
                result["seconds"] = None
                result["error"] = exc.stderr.decode("utf-8", "replace")[-500:]
            result["server_cpu_s"] = tree.cpu_s() - cpu_before
            result["client_cpu_s"] = _children_cpu_s() - client_before
        result["peak_server_rss_mb"] = tree.peak_server_kb / 1024
        result["peak_tree_rss_mb"] = tree.peak_tree_kb / 1024
        if result["seconds"] is not None:
            result["clone_bytes"] = dir_bytes(scratch / "c.git")
        return result
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def clone_native(client: Path, timeout: float) -> dict[str, Any]:
    """For scale: ``git clone --bare --no-local`` (git's upload-pack over a pipe, no HTTP)."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-clone-"))
    try:
        before = _children_cpu_s()
        began = time.perf_counter()
        subprocess.run(
            [
                "git",
                "-c",
                "safe.directory=*",
                "clone",
                "-q",
                "--bare",
                "--no-local",
                str(client / "hcm"),
                str(scratch / "c.git"),
            ],
            check=True,
            timeout=timeout,
            capture_output=True,
        )
        return {
            "label": "git clone --no-local (no HTTP)",
            "seconds": time.perf_counter() - began,
            "client_cpu_s": _children_cpu_s() - before,  # both sides: upload-pack is its child
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def bench_clone(
    client: Path,
    rows: list[tuple[str, str]],
    timeout: float,
    baseline: Path | None = None,
    native: bool = False,
) -> dict[str, Any]:
    token = json.loads(
        subprocess.run(
            [
                *CLI,
                "--client",
                str(client),
                "token",
                "create",
                "--id",
                f"bench-{os.getpid()}",
                "--type",
                "human",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["token"]
    runs = []
    if baseline is not None:
        runs.append(clone_once(client, f"clone over HTTP, server from {baseline}", timeout, token, baseline))
    runs.append(clone_once(client, "clone over HTTP (arka-hcm serve)", timeout, token))
    for run in runs:
        if run["seconds"] is not None:
            done = f"{run['seconds']:.0f} s"
        elif "error" in run:  # git failed (or was stopped) before the timeout
            done = f"failed: {run['error'].strip()[-200:]}"
        else:
            done = f"not done after {timeout:.0f} s"
        rows.append(
            (
                run["label"],
                f"{done}; server RSS peak {run['peak_server_rss_mb']:.0f} MB (with its git children "
                f"{run['peak_tree_rss_mb']:.0f} MB); server CPU {run['server_cpu_s']:.0f} s "
                f"(with its git children), client CPU {run['client_cpu_s']:.0f} s",
            )
        )
    if native:
        run = clone_native(client, timeout)
        runs.append(run)
        rows.append((run["label"], f"{run['seconds']:.0f} s; CPU {run['client_cpu_s']:.0f} s (both sides)"))
    current = runs[-2] if native else runs[-1]
    return {"clone_http_s": current["seconds"], "clone_runs": runs}


def bench_gc(client: Path, rows: list[tuple[str, str]], commits: int) -> dict[str, Any]:
    hcm = client / "hcm"
    before = dir_bytes(hcm / ".git" / "objects")
    seconds, _ = timed(
        lambda: subprocess.run([*CLI, "--client", str(client), "gc"], check=True, capture_output=True)
    )
    after = dir_bytes(hcm / ".git" / "objects")
    rows.append(("repository objects before gc", f"{before / 1e6:.0f} MB ({before / commits:.0f} B/commit)"))
    rows.append(("arka-hcm gc", f"{seconds:.0f} s"))
    rows.append(("repository objects after gc", f"{after / 1e6:.0f} MB ({after / commits:.0f} B/commit)"))
    return {"gc_s": seconds, "objects_bytes_before": before, "objects_bytes_after": after}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", type=Path, help="client folder to build into or reuse")
    parser.add_argument("--commits", type=int, default=1_000_000)
    parser.add_argument("--missions", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="20,000 commits, no gc, short clone")
    parser.add_argument("--skip-build", action="store_true", help="reuse --client as it is")
    parser.add_argument("--only", default="index,graph,backup,verify,clone,gc")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument(
        "--keep-index", action="store_true", help="index step: time the index as it is, no rebuild"
    )
    parser.add_argument("--clone-timeout", type=float, default=3600)
    parser.add_argument(
        "--clone-baseline",
        type=Path,
        help="also clone from a server run from this source tree (e.g. `git archive fcb7de3` unpacked)",
    )
    parser.add_argument("--clone-native", action="store_true", help="also time git clone --no-local")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    if args.quick:
        args.commits, args.only, args.clone_timeout = 20_000, "index,graph,backup,verify,clone", 300
    client = args.client or Path(tempfile.mkdtemp(prefix="bench-history-")) / "client"
    rows: list[tuple[str, str]] = Rows()
    results: dict[str, Any] = {"commits_requested": args.commits}
    if not args.skip_build:
        seconds, timings = timed(
            lambda: history_build.build(client, args.commits, args.missions, progress=not args.quick)
        )
        rows.append(("build (store seed + git fast-import)", f"{seconds:.0f} s"))
        results["build"] = timings
    commits = int(git(client / "hcm", "rev-list", "--count", "HEAD"))
    results["commits"] = commits
    steps = args.only.split(",")
    if "index" in steps:
        results |= bench_index(client, rows, args.runs, args.keep_index)
    if "graph" in steps:
        results |= bench_commit_graph(client, rows)
    if "backup" in steps:
        results |= bench_backup(client, rows)
    if "verify" in steps:
        results |= bench_verify(client, rows)
    if "clone" in steps:
        results |= bench_clone(client, rows, args.clone_timeout, args.clone_baseline, args.clone_native)
    if "gc" in steps:
        results |= bench_gc(client, rows, commits)
    print(
        f"\n{commits:,} commits, {args.missions} missions "
        f"({datetime.now(UTC):%Y-%m-%d}, load {os.getloadavg()[0]:.1f})\n"
    )
    print("| step | result |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    results["rows"] = rows
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
