#!/usr/bin/env python3
"""Benchmark of search (HCM_SEARCH), side by side with a plain scan of the files, in one run.

1. A client folder of ~100,000 files (``_common.build_client_fast``: the content `arka-hcm init`
   adopts, ~19,800 missions of 5 files in the contract's one missions folder, 1% documents).
2. A full build of the index from git objects (``index rebuild``), its size.
3. In-process searches through ``HcmStore.execute`` (what the server runs): two-word queries with
   a mission filter (the target), a prefix and a phrase in a mission, two words over the default
   scope (no filter), a context pack (HCM_MEMORY_QUERY). "warm": the words' collection
   statistics are cached (a word seen in the last 30 s); "cold": every query counts them again.
4. The plain scan the index replaces: ``grep -rilF`` of both words over the work tree, and over
   one mission's folder.
5. In-process writes with and without the search index following them (alternating blocks).
6. Over HTTP (``arka-hcm serve``, 1 worker): ``GET /v1/search`` latency with a mission filter;
   then the HTTP write load of bench_http (8 clients, wrk when installed) while a probe writes a
   unique word every 200 ms and watches the index file for it: how far the index is behind.

    .venv/bin/python bench/bench_search.py                 # 100k files (~3 minutes)
    .venv/bin/python bench/bench_search.py --quick         # 10k files, short phases
    .venv/bin/python bench/bench_search.py --json out.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Measure,
    Timer,
    build_client_fast,
    fmt,
    hermetic_env,
    journal_envelope,
    loadavg,
    machine_info,
    markdown_table,
    remove_tree,
    write_json,
)
from bench_http import Server, run_phase, run_phase_wrk, writer_token  # noqa: E402

from arka_git_hcm.config import load_settings  # noqa: E402
from arka_git_hcm.search import SERVER_ROUND_GAP_S, attach_search  # noqa: E402
from arka_git_hcm.search.ranking import Ranker  # noqa: E402
from arka_git_hcm.search.schema import IndexFiles  # noqa: E402
from arka_git_hcm.services.store import HcmStore  # noqa: E402

READER = {"type": "agent", "id": "bench-reader", "roles": ["reader"]}
# words of the synthetic HCM (journal lines, statuses, decisions, actions, documents): from very
# common (in every journal line) to rare, as agents' questions mix them
WORDS = [
    "interviews", "synthesised", "agreed", "step", "scope", "wave", "finance", "pilot", "impacted",
    "systems", "support", "product", "design", "dependencies", "data", "team", "audit", "process",
    "secured", "excluded", "definitions", "procedures", "reference", "context",
]  # fmt: skip


def _pairs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.sample(WORDS, 2)) for _ in range(count)]


def _timed(store: HcmStore, op: str, payloads: list[dict[str, Any]], fresh: Any = None) -> Measure:
    samples = []
    for n, payload in enumerate(payloads):
        if fresh is not None:
            fresh()
        started = time.perf_counter()
        response = store.execute({"op": op, "request_id": f"b{n}", "caller": READER, "payload": payload})
        samples.append(time.perf_counter() - started)
        if response["status"] != "ok":
            raise RuntimeError(f"{op} failed: {response['error']}")
    return Measure("", op, len(samples), sum(samples), samples)


def in_process(client: Path, missions: list[str], args: argparse.Namespace, log: Any) -> dict[str, Any]:
    store = HcmStore.open(load_settings(client=str(client)), scan_hand_edits=False)
    service = attach_search(store, interval_s=None, start=False, follow_writes=False)
    try:
        timer, cpu = Timer(), time.process_time()
        report = service.rebuild()
        rebuild_s, rebuild_cpu_s = timer(), time.process_time() - cpu
        status = service.status()
        log(
            f"rebuilt: {report.documents} documents in {rebuild_s:.1f} s ({rebuild_cpu_s:.1f} s of CPU), "
            f"{status['bytes'] / 1e6:.0f} MB"
        )
        rng = random.Random(11)
        n = args.queries
        rows: list[tuple[str, Measure]] = []

        def mission_scope() -> dict[str, Any]:
            return {"mission_id": rng.choice(missions)}

        def queries(text: list[str], scoped: bool) -> list[dict[str, Any]]:
            return [{"query": q, "scope": mission_scope() if scoped else {}} for q in text]

        _timed(store, "HCM_SEARCH", queries(_pairs(rng, 50), True))  # warm-up: caches, pages
        rows.append(
            ("two words, mission filter (warm)", _timed(store, "HCM_SEARCH", queries(_pairs(rng, n), True)))
        )

        def forget() -> None:
            service.ranker = Ranker()

        cold = queries(_pairs(rng, max(50, n // 10)), True)
        rows.append(
            ("two words, mission filter (cold statistics)", _timed(store, "HCM_SEARCH", cold, forget))
        )
        prefixes = [f"{w[:5]}* {rng.choice(WORDS)}" for w in rng.choices(WORDS, k=n)]
        rows.append(("prefix + word, mission filter", _timed(store, "HCM_SEARCH", queries(prefixes, True))))
        phrases = ['"interviews synthesised"', '"next step agreed"', '"data team"', '"first wave"']
        rows.append(
            ("phrase, mission filter", _timed(store, "HCM_SEARCH", queries(rng.choices(phrases, k=n), True)))
        )
        broad = max(20, n // 50)
        rows.append(("two words, no filter", _timed(store, "HCM_SEARCH", queries(_pairs(rng, broad), False))))
        rare = [f"reference {rng.randrange(1000)}" for _ in range(max(50, n // 10))]
        rare_label = "rare words, no filter (cold statistics)"
        rows.append((rare_label, _timed(store, "HCM_SEARCH", queries(rare, False))))
        packs = [
            {"mission_id": rng.choice(missions), "query": q, "max_bytes": 8192} for q in _pairs(rng, n // 4)
        ]
        rows.append(("context pack (HCM_MEMORY_QUERY, 8 KB)", _timed(store, "HCM_MEMORY_QUERY", packs)))
        writes = write_ab(store, service, missions, args, log)
    finally:
        store.close()
    return {
        "rebuild_s": rebuild_s,
        "rebuild_cpu_s": rebuild_cpu_s,
        "documents": report.documents,
        "files": status["files"],
        "index_bytes": status["bytes"],
        "rows": rows,
        "writes": writes,
    }


def write_ab(
    store: HcmStore, service: Any, missions: list[str], args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    """Sequential writes, in blocks that alternate: the index following them as in the server
    (its follower woken by each landed batch, rounds SERVER_ROUND_GAP_S apart, updates in a child
    process) or not. A block of writes first, not counted: the first write after the store
    opens pays once for what later writes find ready (0.9 s measured at 100,000 files), and it
    fell in the first measured block, always a "with" one."""
    rng = random.Random(5)
    following = {"on": True}
    service.close()
    service = attach_search(
        store, interval_s=None, follow_writes=False, updater_process=True, min_gap_s=SERVER_ROUND_GAP_S
    )
    store.add_landing_listener(lambda tip, paths: service.follower.wake() if following["on"] else None)
    service.catch_up()
    for n in range(args.write_block):
        if store.execute(journal_envelope(f"warm{n}", rng.choice(missions), n))["status"] != "ok":
            raise RuntimeError("a write failed")
    service.follower.wait_idle(60)
    results: dict[str, list[float]] = {"with": [], "without": []}
    counter = 0
    for _round in range(args.write_rounds):
        for mode in ("with", "without") if _round % 2 == 0 else ("without", "with"):
            following["on"] = mode == "with"
            samples = []
            for _ in range(args.write_block):
                counter += 1
                envelope = journal_envelope(f"w{counter}", rng.choice(missions), counter)
                started = time.perf_counter()
                if store.execute(envelope)["status"] != "ok":
                    raise RuntimeError("a write failed")
                samples.append(time.perf_counter() - started)
            service.follower.wait_idle(60)  # the catch-up is not counted in the next block
            results[mode] += samples
    per_s = {mode: len(s) / sum(s) for mode, s in results.items()}
    log(f"in-process writes: {per_s['with']:.0f}/s following, {per_s['without']:.0f}/s not")
    return {
        "with_per_s": per_s["with"],
        "without_per_s": per_s["without"],
        "with_p50_ms": statistics.median(results["with"]) * 1000,
        "without_p50_ms": statistics.median(results["without"]) * 1000,
    }


def grep_scan(client: Path, missions: list[str], args: argparse.Namespace) -> list[tuple[str, Measure]]:
    """What a search without an index does: read every file (grep -r, both words, any case)."""
    rng = random.Random(3)
    hcm = client / "hcm"
    rows = []
    for label, count, folder in (
        ("grep -ril, both words, whole HCM", 3, lambda: hcm),
        (
            "grep -ril, both words, one mission folder",
            50,
            lambda: hcm / "state" / "missions" / rng.choice(missions),
        ),
    ):
        samples = []
        for _ in range(count):
            first, second = rng.sample(WORDS, 2)
            started = time.perf_counter()
            found = subprocess.run(
                ["grep", "-rilF", "--exclude-dir=.git", first, str(folder())], capture_output=True
            ).stdout.split(b"\n")
            files = [f for f in found if f]
            if files:
                subprocess.run(
                    ["grep", "-ilF", second, *map(bytes.decode, files[:20000])], capture_output=True
                )
            samples.append(time.perf_counter() - started)
        rows.append((label, Measure("", "grep", len(samples), sum(samples), samples)))
    return rows


def over_http(
    root: Path, client: Path, missions: list[str], env: dict[str, str], args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    token = writer_token(client, env)
    server = Server(client, 1, env, root / "server-search.log")
    try:
        server.wait_ready()
        host, port = "127.0.0.1", server.port
        conn = http.client.HTTPConnection(host, port, timeout=60)
        headers = {"Authorization": f"Bearer {token}"}
        rng = random.Random(7)

        def get(query: str, mission: str) -> dict[str, Any]:
            params = urllib.parse.urlencode({"q": query, "mission_id": mission, "consistent": "true"})
            conn.request("GET", f"/v1/search?{params}", headers=headers)
            response = conn.getresponse()
            body = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"GET /v1/search: {response.status} {body}")
            return dict(body)

        get("interviews", missions[0])  # the server built its index at start: wait for it
        for q in _pairs(rng, 50):
            get(q, rng.choice(missions))
        samples = []
        for q in _pairs(rng, args.queries // 2):
            started = time.perf_counter()
            get(q, rng.choice(missions))
            samples.append(time.perf_counter() - started)
        conn.close()
        search = Measure("", "GET /v1/search", len(samples), sum(samples), samples)
        log(f"HTTP search p50 {search.p50_ms:.2f} ms")
        lag = lag_under_writes(root, server, client, token, missions, args, log)
    finally:
        server.stop()
    return {"search": search, **lag}


def lag_under_writes(
    root: Path, server: Any, client: Path, token: str, missions: list[str], args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    """bench_http's write phase (8 clients) while a probe writes a word nobody else writes every
    200 ms and polls the index file (read-only, no load on the server) until the word is in it."""
    files = IndexFiles(client / "hcm" / ".git")
    stop = threading.Event()
    lags: list[float] = []

    def probe() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        n = 0
        index: sqlite3.Connection | None = None
        index_path = None
        while not stop.is_set():
            n += 1
            word = "probe" + "".join(random.choice("bcdfghjklmnpqrstvwxz") for _ in range(10))
            envelope = journal_envelope(f"probe-{n}", missions[n % len(missions)], n)
            envelope["payload"]["entry"]["message"] = f"{word} check"
            conn.request("POST", "/v1/hcm/execute", body=json.dumps(envelope), headers=headers)
            if json.loads(conn.getresponse().read())["status"] != "ok":
                continue
            acknowledged = time.perf_counter()
            while not stop.is_set():
                current = files.current()
                if current != index_path:
                    index = sqlite3.connect(f"file:{current}?mode=ro", uri=True) if current else None
                    index_path = current
                if index is not None:
                    found = index.execute("SELECT 1 FROM fts WHERE fts MATCH ?", (f'"{word}"',)).fetchone()
                    if found:
                        lags.append(time.perf_counter() - acknowledged)
                        break
                stop.wait(0.005)
            stop.wait(0.2)
        conn.close()

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        if shutil.which("wrk"):
            measure, outcomes, _ = run_phase_wrk(
                root, server.base, token, "write", 8, args.write_seconds, missions, "lagw"
            )
        else:
            measure, outcomes, _ = run_phase(
                server.base, token, "write", 8, 100_000, args.write_seconds, missions, "lagw"
            )
    finally:
        stop.set()
        prober.join()
    lag = Measure("", "index lag", len(lags), sum(lags), lags)
    log(f"HTTP writes {measure.ops_per_s:.0f}/s with the index following; lag p50 {lag.p50_ms:.0f} ms")
    return {"writes": measure, "lag": lag, "lag_max_ms": max(lags) * 1000 if lags else None}


def http_ab(root: Path, env: dict[str, str], args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Durable HTTP writes/s, the server of this package (its search index following the
    writes) against a baseline server command (e.g. the same code without search), alternating
    short wrk phases on fresh copies of one client, so that the host's drift lands on both."""
    import bench_http

    pristine = root / "ab-client"
    shape = build_client_fast(pristine, args.ab_files, env, durability="full")
    token = writer_token(pristine, env)
    commands = {"search": None, "baseline": shlex.split(args.ab_baseline)}
    rates: dict[str, dict[int, list[float]]] = {name: {1: [], 8: []} for name in commands}
    for n in range(args.ab_rounds):
        for name in ("search", "baseline") if n % 2 == 0 else ("baseline", "search"):
            client = root / f"ab-{n}-{name}"
            subprocess.run(["cp", "-a", str(pristine), str(client)], check=True)
            bench_http.SERVER_COMMAND = commands[name]
            server = Server(client, 1, env, root / f"ab-{n}-{name}.log")
            try:
                server.wait_ready()
                if name == "search":  # its first index build is not what is measured
                    _wait_for_index(server, token)
                for clients in (1, 8):
                    measure, _, _ = run_phase_wrk(
                        root,
                        server.base,
                        token,
                        "write",
                        clients,
                        args.ab_seconds,
                        shape.missions,
                        f"ab{n}{name}",
                    )
                    rates[name][clients].append(measure.ops_per_s)
            finally:
                server.stop()
                remove_tree(client)
            log(f"A/B round {n + 1} {name}: {rates[name][1][-1]:.0f} / {rates[name][8][-1]:.0f} writes/s")
    bench_http.SERVER_COMMAND = None
    return {"files": shape.files, "rates": rates}


def _wait_for_index(server: Any, token: str) -> None:
    for _ in range(600):
        response = httpx.get(
            f"{server.base}/v1/search",
            params={"q": "x", "consistent": "true"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        if response.status_code == 200:
            return
        time.sleep(0.1)
    raise RuntimeError("the server's search index was not built in a minute")


def ab_report(ab: dict[str, Any]) -> str:
    rows = []
    for clients in (1, 8):
        search, base = ab["rates"]["search"][clients], ab["rates"]["baseline"][clients]
        ratios = [s / b - 1 for s, b in zip(search, base, strict=True)]
        rows.append(
            [
                f"{clients} client(s)",
                " ".join(f"{x:.0f}" for x in search),
                " ".join(f"{x:.0f}" for x in base),
                f"{(statistics.median(search) / statistics.median(base) - 1) * 100:+.1f}%",
                " ".join(f"{r * 100:+.0f}%" for r in ratios),
            ]
        )
    header = ["HTTP durable writes/s", "with search", "baseline", "medians", "per round (same round's pair)"]
    return f"\n\nA/B at {ab['files']:,} files, 1 worker, wrk:\n\n" + markdown_table(header, rows)


def report(results: dict[str, Any], setup: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"# Search benchmark ({setup['files']:,} files, {results['in_process']['documents']:,} documents)",
        "",
        f"{meta['date']} · {meta['cpus']} CPUs · Python {meta['python']} · commit {meta['package_commit']}"
        f"{' (dirty)' if meta['package_dirty'] else ''} · load {setup['load_start']} → {loadavg()}",
        "",
        f"Index: full rebuild {results['in_process']['rebuild_s']:.1f} s "
        f"({results['in_process']['rebuild_cpu_s']:.1f} s of CPU), "
        f"{results['in_process']['index_bytes'] / 1e6:.0f} MB for {results['in_process']['files']:,} files.",
        "",
    ]
    rows = [
        [label, m.count, fmt(m.p50_ms, 2), fmt(m.p99_ms, 2), fmt(statistics.fmean(m.latencies) * 1000, 2)]
        for label, m in results["in_process"]["rows"] + results["grep"]
    ]
    if "http" in results:
        m = results["http"]["search"]
        rows.append(["GET /v1/search, two words, mission filter", m.count, fmt(m.p50_ms, 2), fmt(m.p99_ms, 2),
                     fmt(statistics.fmean(m.latencies) * 1000, 2)])  # fmt: skip
    lines.append(markdown_table(["what", "n", "p50 ms", "p99 ms", "mean ms"], rows))
    w = results["in_process"]["writes"]
    lines += [
        "",
        f"In-process sequential writes: {w['with_per_s']:.0f}/s with the index following "
        f"(p50 {w['with_p50_ms']:.2f} ms), {w['without_per_s']:.0f}/s without "
        f"(p50 {w['without_p50_ms']:.2f} ms): "
        f"{(w['with_per_s'] / w['without_per_s'] - 1) * 100:+.1f}%.",
    ]
    if "http" in results:
        h = results["http"]
        lines.append(
            f"HTTP, 8 writers: {h['writes'].ops_per_s:.0f} writes/s; the index was behind an acknowledged "
            f"write by p50 {fmt(h['lag'].p50_ms, 0)} ms, p99 {fmt(h['lag'].p99_ms, 0)} ms, max "
            f"{fmt(h['lag_max_ms'], 0)} ms ({h['lag'].count} probes)."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000, help="size of the HCM [100000]")
    parser.add_argument("--queries", type=int, default=2000, help="queries per in-process row")
    parser.add_argument("--write-rounds", type=int, default=12, help="alternating write blocks per mode")
    parser.add_argument("--write-block", type=int, default=40, help="writes per block")
    parser.add_argument("--write-seconds", type=float, default=15.0, help="HTTP write phase")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP part")
    parser.add_argument(
        "--ab-baseline",
        help="also run an HTTP write A/B against this server command (e.g. a launcher of the "
        "code before search); --ab-only skips everything else",
    )
    parser.add_argument("--ab-only", action="store_true", help="only the A/B (needs --ab-baseline)")
    parser.add_argument("--ab-rounds", type=int, default=6, help="A/B rounds (each runs both servers)")
    parser.add_argument("--ab-files", type=int, default=10_000, help="size of the A/B's HCM [10000]")
    parser.add_argument("--ab-seconds", type=float, default=8.0, help="seconds per A/B write phase")
    parser.add_argument("--quick", action="store_true", help="small smoke run (10k files)")
    parser.add_argument("--json", dest="json_out", help="write the results as JSON to this file")
    parser.add_argument("--tmp", help="parent folder of the temporary client folder [system temp]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.queries, args.write_rounds, args.write_seconds = 10_000, 300, 6, 4.0
    started = Timer()

    def log(message: str) -> None:
        print(f"[{started():6.1f}s] {message}", file=sys.stderr, flush=True)

    meta = machine_info()
    root = Path(tempfile.mkdtemp(prefix="arka-bench-search-", dir=args.tmp))
    env = hermetic_env(root / "home")
    (root / "home").mkdir()
    results: dict[str, Any] = {}
    if args.ab_only:
        try:
            ab = http_ab(root, env, args, log)
        finally:
            remove_tree(root)
        print(ab_report(ab))
        write_json(args.json_out, {"machine": meta, "args": vars(args), "ab": ab})
        return 0
    try:
        client = root / "client"
        shape = build_client_fast(client, args.files, env, durability="full")
        setup = {"files": shape.files, "missions": len(shape.missions), "load_start": loadavg()}
        log(f"built {shape.files} files ({len(shape.missions)} missions)")
        results["in_process"] = in_process(client, shape.missions, args, log)
        results["grep"] = grep_scan(client, shape.missions, args)
        if not args.no_http:
            results["http"] = over_http(root, client, shape.missions, env, args, log)
        if args.ab_baseline:
            remove_tree(client)
            results["ab"] = http_ab(root, env, args, log)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            remove_tree(root)
    print(report(results, setup, meta) + (ab_report(results["ab"]) if "ab" in results else ""))
    write_json(
        args.json_out,
        {
            "machine": meta,
            "args": vars(args),
            "setup": setup,
            "rebuild_s": results["in_process"]["rebuild_s"],
            "rebuild_cpu_s": results["in_process"]["rebuild_cpu_s"],
            "rows": [
                {"what": label} | m.to_json() for label, m in results["in_process"]["rows"] + results["grep"]
            ],
            "writes": results["in_process"]["writes"],
            "http": {
                "search": results["http"]["search"].to_json(),
                "writes": results["http"]["writes"].to_json(),
                "lag": results["http"]["lag"].to_json(),
            }
            if "http" in results
            else None,
            "ab": results.get("ab"),
        },
    )
    log(f"done in {started():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
