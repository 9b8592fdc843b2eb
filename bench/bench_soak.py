#!/usr/bin/env python3
"""Soak: a long run of writes must not exhaust the process (issue 11 §4).

One process writing sequentially (HcmStore.execute), then the HTTP service with concurrent
clients, each with a CPU hog running beside it (a busy process per core: folds of small packs
then compete for the CPU, which is when they once fell behind). Every window of writes it
records the writing process's open descriptors (and how many point at deleted files), packs on
disk, resident memory and writes/s; at the end it prints the table per window and the peaks.
Writes/s should stay flat (not fall), descriptors and packs bounded.

    .venv/bin/python bench/bench_soak.py                    # 200,000 writes each way (~1-2 h here)
    .venv/bin/python bench/bench_soak.py --ops 20000 --window 2000
    .venv/bin/python bench/bench_soak.py --quick            # CI smoke: 3,000 writes, no HTTP
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
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
from bench_http import writer_token  # noqa: E402

from arka_git_hcm.config import load_settings  # noqa: E402
from arka_git_hcm.services.store import HcmStore  # noqa: E402


@dataclass
class Sample:
    writes: int
    seconds: float
    rate: float
    fds: int
    fds_deleted: int
    packs: int
    rss_mb: float
    load: str
    cpu_ms: float = 0.0  # CPU of the writing process (all its threads) per write in the window


def process_state(pid: int) -> tuple[int, int, float]:
    """(open descriptors, of which to deleted files, resident MB) of a process."""
    folder = f"/proc/{pid}/fd"
    fds = deleted = 0
    for name in os.listdir(folder):
        try:
            target = os.readlink(f"{folder}/{name}")
        except OSError:
            continue
        fds += 1
        deleted += target.endswith("(deleted)")
    rss = 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return fds, deleted, rss


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used: unlike writes/s, it barely
    moves with the load of the rest of the machine."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(phase: str, s: Sample) -> None:
    print(
        f"  {phase:<5} {s.writes:>7} writes  {s.rate:6.0f} w/s  cpu {s.cpu_ms:.2f} ms/write  "
        f"fds {s.fds} ({s.fds_deleted} deleted)  "
        f"packs {s.packs}  rss {s.rss_mb:.0f} MB  load {s.load}",
        flush=True,
    )


def packs_on_disk(hcm: Path) -> int:
    return len(list((hcm / ".git" / "objects" / "pack").glob("pack-*.idx")))


def _hog(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


class CpuHog:
    """One busy process per core, as other work on the host would be."""

    def __init__(self, processes: int) -> None:
        self.stop = multiprocessing.Event()
        self.procs = [
            multiprocessing.Process(target=_hog, args=(self.stop,), daemon=True) for _ in range(processes)
        ]

    def __enter__(self) -> CpuHog:
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(timeout=10)


def soak_store(client: Path, ops: int, window: int, missions: list[str]) -> list[Sample]:
    settings = load_settings(client=client)
    rng = random.Random(11)
    samples: list[Sample] = []
    with HcmStore.open(settings) as store:
        started = last = time.perf_counter()
        cpu_last = cpu_seconds(os.getpid())
        for n in range(1, ops + 1):
            answer = store.execute(journal_envelope(f"soak-{n}", rng.choice(missions), n))
            if answer["status"] != "ok":
                raise RuntimeError(f"write {n} failed: {answer['error']}")
            if n % window == 0:
                now = time.perf_counter()
                fds, deleted, rss = process_state(os.getpid())
                cpu = cpu_seconds(os.getpid())
                samples.append(
                    Sample(
                        n,
                        now - started,
                        window / (now - last),
                        fds,
                        deleted,
                        packs_on_disk(client / "hcm"),
                        rss,
                        loadavg(),
                        (cpu - cpu_last) * 1000 / window,
                    )
                )
                last, cpu_last = now, cpu
                report("store", samples[-1])
    return samples


def soak_http(
    client: Path, ops: int, window: int, missions: list[str], clients: int, env: dict[str, str]
) -> list[Sample]:
    import httpx

    port = _free_port()
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [
            str(bin_dir / "arka-hcm"),
            "--client",
            str(client),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    token = writer_token(client, env)
    for _ in range(300):
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    counter = iter(range(1, ops + 1))
    lock = threading.Lock()
    done = [0]
    samples: list[Sample] = []
    started = time.perf_counter()
    last = [started]
    cpu_last = [cpu_seconds(server.pid)]
    failures: list[str] = []

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                answer = http.post(
                    "/v1/hcm/execute", json=journal_envelope(f"http-{n}", rng.choice(missions), n)
                )
                if answer.status_code != 200:
                    failures.append(answer.text[:200])
                    return
                with lock:
                    done[0] += 1
                    if done[0] % window == 0:
                        now = time.perf_counter()
                        fds, deleted, rss = process_state(server.pid)
                        cpu = cpu_seconds(server.pid)
                        samples.append(
                            Sample(
                                done[0],
                                now - started,
                                window / (now - last[0]),
                                fds,
                                deleted,
                                packs_on_disk(client / "hcm"),
                                rss,
                                loadavg(),
                                (cpu - cpu_last[0]) * 1000 / window,
                            )
                        )
                        last[0], cpu_last[0] = now, cpu
                        report("http", samples[-1])

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait(timeout=60)
    if failures:
        raise RuntimeError(f"HTTP writes failed: {failures[:3]}")
    return samples


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summary(name: str, samples: list[Sample]) -> list[Any]:
    if not samples:
        return [name, "-", "-", "-", "-", "-", "-", "-", "-"]
    third = max(1, len(samples) // 3)

    def thirds(values: list[float], digits: int) -> str:
        first, last = sum(values[:third]) / third, sum(values[-third:]) / third
        return f"{fmt(first, digits)} -> {fmt(last, digits)}"

    return [
        name,
        samples[-1].writes,
        thirds([s.rate for s in samples], 0),
        thirds([s.cpu_ms for s in samples], 2),
        max(s.fds for s in samples),
        max(s.fds_deleted for s in samples),
        max(s.packs for s in samples),
        fmt(max(s.rss_mb for s in samples), 0),
        f"{fmt(samples[-1].seconds, 0)} s",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200_000, help="writes per phase [200000]")
    parser.add_argument("--window", type=int, default=10_000, help="writes per sample [10000]")
    parser.add_argument("--missions", type=int, default=300, help="missions in the HCM [300]")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients [8]")
    parser.add_argument("--durability", default="fast", choices=["fast", "full"])
    parser.add_argument("--hog", type=int, default=os.cpu_count() or 2, help="busy processes beside [cores]")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3,000 store writes, windows of 500, no HTTP")
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--tmp", help="parent folder of the temporary HCM [system temp]")
    args = parser.parse_args()
    if args.quick:
        args.ops, args.window, args.no_http = 3000, 500, True
    work = Path(tempfile.mkdtemp(prefix="arka-soak-", dir=args.tmp))
    env = hermetic_env(work / "home")
    (work / "home").mkdir()
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    rows = []
    try:
        for phase in ("store", "http"):
            if phase == "http" and args.no_http:
                continue
            client = work / phase
            shape = build_client_fast(client, args.missions * 5 + 200, env, durability=args.durability)
            missions = shape.missions
            print(f"{phase}: {len(missions)} missions, {args.ops} writes, {args.durability}, hog x{args.hog}")
            with CpuHog(args.hog):
                if phase == "store":
                    samples = soak_store(client, args.ops, args.window, missions)
                else:
                    samples = soak_http(client, args.ops, args.window, missions, args.clients, env)
            results[phase] = [s.__dict__ for s in samples]
            rows.append(summary(phase, samples))
    finally:
        remove_tree(work)
    print()
    print(
        markdown_table(
            [
                "phase",
                "writes",
                "w/s first third -> last third",
                "CPU ms/write, same thirds",
                "peak fds",
                "peak fds to deleted files",
                "peak packs on disk",
                "peak RSS MB",
                "time",
            ],
            rows,
        )
    )
    write_json(args.json_out, results)


if __name__ == "__main__":
    main()
