#!/usr/bin/env python3
"""A/B of speed mechanisms on the filesystems clients run: journaled ext4 and xfs (loop-mounted
image files), with this machine's own disk as the reference row.

Run as root (it makes filesystems and mounts them):

    .venv/bin/python bench/fs_ab.py --variants no_spare,no_resume            # ~25 min per filesystem
    .venv/bin/python bench/fs_ab.py --variants no_spare --fs xfs --rounds 2   # a short look

A variant is a patch of the package, ``bench/fs_ab/<name>.patch`` (``no_spare``: the store never
takes a spare file; ``no_resume``: wide trees hashed whole and packed as before). The unpatched
package ("base") and each variant are copies of ``arka_git_hcm/`` under ``--variants-dir``, and every
measured process imports its copy through PYTHONPATH: the benchmark code is the same for all.

For each filesystem: an image file is made (``mkfs.ext4`` with its defaults, which include the
journal, checked with ``dumpe2fs``; ``mkfs.xfs``), mounted with ``mount -o loop``, and HCMs of
5-file missions (the widest state/missions tree: 68 KiB at 10k files, 677 KiB at 100k) are built
once per size (``build_client_fast`` of the store benchmark) with a writer token. Then rounds of
A/B pairs: in each cell (store 10k full, 10k fast, 100k full, 100k fast, HTTP 10k, HTTP 100k) and
for each variant, the unpatched package ("base", A) and the variant (B) run one after the other,
base first or variant first, alternating by round and cell (``--only-100k`` variants run only at
100k files: below that their code is identical). Before each run the script waits until no process
works in that HCM any more (the store's git children: index refresh, repack).

- store: a long-lived process per version writes ``--store-ops`` sequential HCM_APPEND_JOURNAL
  with durability full or fast (``StoreWriter`` of ``bench_store.py``, 3 unmeasured warm-up
  writes per store open); each store cell starts with ``--settle-ops`` unmeasured base writes;
- HTTP: ``arka-hcm serve --workers 1`` of the version on the HCM, an unmeasured 2 s wrk phase
  with 8 clients, then a measured one of ``--http-seconds`` (``run_phase_wrk`` of
  ``bench_http.py``); new commits are checked against acknowledged writes.

All versions write into the same HCMs in turn, so the history grows alike for each. The images
are unmounted, their loop devices detached and removed at the end, also on failure or SIGTERM.
The gain of a mechanism in a pair is A ops/s over B ops/s minus one; the table gives the median
over pairs, per order and over both, the time saved per write and in how many pairs A was faster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

VERSIONS_BASE = "base"


# --- filesystems -------------------------------------------------------------------------------


def sh(*cmd: str, check: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stdout}{proc.stderr}")
    return proc.stdout


class Filesystem:
    """An image file with a filesystem, loop-mounted; or ('host') a folder of this machine's disk."""

    def __init__(self, kind: str, images: Path, size_gb: int, host_dir: Path) -> None:
        self.kind = kind
        self.image = images / f"{kind}.img"
        self.mnt = images / f"mnt-{kind}"
        self.mounted = False
        self.size_gb = size_gb
        self.root = host_dir if kind == "host" else self.mnt / "fsab"
        self.describe = ""

    def make(self) -> None:
        if self.kind == "host":
            self.root.mkdir(parents=True, exist_ok=True)
            source = sh("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--target", str(self.root)).strip()
            dev = source.split()[0]
            features = ""
            with contextlib.suppress(RuntimeError):
                features = sh("dumpe2fs", "-h", dev).lower()
            journal = "has_journal" in features
            self.describe = f"this VM's disk ({source}; {'with' if journal else 'without'} a journal)"
            return
        self.image.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.image.unlink()
        sh("truncate", "-s", f"{self.size_gb}G", str(self.image))
        if self.kind == "ext4j":
            # default features (has_journal, data=ordered); the inode tables and the journal are
            # zeroed now rather than by ext4lazyinit in the background during the first minutes
            sh("mkfs.ext4", "-F", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image))
            features = sh("dumpe2fs", "-h", str(self.image)).lower()
            if "has_journal" not in features:
                raise RuntimeError("mkfs.ext4 made no journal")
            self.describe = "ext4 (mkfs.ext4 defaults: has_journal, data=ordered), loop-mounted image"
        elif self.kind == "xfs":
            sh("mkfs.xfs", "-f", "-q", str(self.image))
            self.describe = "xfs (mkfs.xfs defaults), loop-mounted image"
        else:
            raise ValueError(self.kind)
        self.mnt.mkdir(parents=True, exist_ok=True)
        sh("mount", "-o", "loop", str(self.image), str(self.mnt))
        self.mounted = True
        self.root.mkdir()
        opts = sh("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", str(self.mnt)).strip()
        self.describe += f" ({opts})"

    def cleanup(self) -> None:
        if self.kind == "host":
            shutil.rmtree(self.root, ignore_errors=True)
            return
        if self.mounted:
            loop = sh("findmnt", "-n", "-o", "SOURCE", str(self.mnt), check=False).strip()
            for _ in range(10):
                if subprocess.run(["umount", str(self.mnt)], capture_output=True).returncode == 0:
                    self.mounted = False
                    break
                time.sleep(1)
            if loop.startswith("/dev/loop"):  # mount -o loop detaches on umount (autoclear); make sure
                subprocess.run(["losetup", "-d", loop], capture_output=True)
        with contextlib.suppress(OSError):
            self.mnt.rmdir()
        with contextlib.suppress(FileNotFoundError):
            self.image.unlink()
        with contextlib.suppress(OSError):
            self.image.parent.rmdir()  # if empty


# --- package versions --------------------------------------------------------------------------


def make_versions(names: list[str], where: Path) -> dict[str, Path]:
    """A copy of the package per version (``base`` unpatched), each in its own PYTHONPATH folder."""
    out = {}
    for name in [VERSIONS_BASE, *names]:
        folder = where / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copytree(
            REPO / "arka_git_hcm", folder / "arka_git_hcm", ignore=shutil.ignore_patterns("__pycache__")
        )
        if name != VERSIONS_BASE:
            patch = BENCH / "fs_ab" / f"{name}.patch"
            sh("patch", "-s", "-p1", "-d", str(folder), "-i", str(patch))
        out[name] = folder
    return out


# --- the store part: one long-lived process per version ---------------------------------------


def store_worker(_args: argparse.Namespace) -> int:
    """Child: for each command line (JSON) on stdin, sequential writes with this process's
    package (PYTHONPATH); answers one JSON line per command."""
    from bench_store import WARMUP_WRITES, StoreWriter

    import arka_git_hcm

    print("FSAB-JSON " + json.dumps({"package": str(Path(arka_git_hcm.__file__).parent)}), flush=True)
    for line in sys.stdin:
        spec = json.loads(line)
        missions = json.loads(Path(spec["missions_file"]).read_text())
        size, durability, prefix = spec["size"], spec["durability"], spec["prefix"]
        writer = StoreWriter(Path(spec["client"]), durability, missions, random.Random(spec["seed"]))
        try:
            for n in range(WARMUP_WRITES):
                writer.write(f"{prefix}-warm-{n}", n)
            samples = []
            started = time.perf_counter()
            for n in range(spec["ops"]):
                samples.append(writer.write(f"{prefix}-{n}", n))
            elapsed = time.perf_counter() - started
        finally:
            writer.close()
        samples.sort()
        out = {
            "size": size,
            "durability": durability,
            "ops": len(samples),
            "ops_per_s": len(samples) / elapsed,
            "p50_ms": samples[len(samples) // 2] * 1000,
        }
        print("FSAB-JSON " + json.dumps(out), flush=True)
    return 0


class StoreProcess:
    """A store-worker child importing one version of the package."""

    def __init__(self, version_dir: Path, env: dict[str, str], log_file: Path) -> None:
        self.log_fh = open(log_file, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "store-worker"],
            env={**env, "PYTHONPATH": str(version_dir)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_fh,
            text=True,
            cwd=str(version_dir),
        )
        hello = self._answer()
        if Path(hello["package"]) != version_dir / "arka_git_hcm":
            raise RuntimeError(f"the worker imported {hello['package']}, not {version_dir}")

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("FSAB-JSON "):
                return json.loads(line.split(" ", 1)[1])  # type: ignore[no-any-return]
        raise RuntimeError(f"store worker exited ({self.proc.wait()}); see {self.log_fh.name}")

    def run(self, **spec: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_fh.close()


# --- the HTTP part: one server per version, size and round -------------------------------------


def run_http(
    version_dir: Path,
    env: dict[str, str],
    client: Path,
    token: str,
    missions: list[str],
    seconds: float,
    prefix: str,
    log_file: Path,
) -> dict[str, Any]:
    import bench_http
    from _common import commit_count

    hcm = client / "hcm"
    before = commit_count(hcm, env)
    server = bench_http.Server(client, 1, {**env, "PYTHONPATH": str(version_dir)}, log_file)
    try:
        server.wait_ready(timeout=300)
        _m, _o, warm = bench_http.run_phase_wrk(
            client.parent, server.base, token, "write", 8, 2, missions, prefix + "-w"
        )
        time.sleep(0.3)
        measure, outcomes, acked = bench_http.run_phase_wrk(
            client.parent, server.base, token, "write", 8, seconds, missions, prefix
        )
        time.sleep(0.3)
    finally:
        server.stop()
    new = commit_count(hcm, env) - before
    errors = {k: v for k, v in outcomes.items() if k != "ok"}
    ok = warm + acked <= new <= warm + acked + 16
    if errors or not ok:
        raise RuntimeError(
            f"HTTP check failed: errors {errors}, {new} new commits for {warm} + {acked} writes"
        )
    return {
        "ops_per_s": measure.ops_per_s,
        "ops": measure.count,
        "p50_ms": measure.p50_ms,
        "p99_ms": measure.p99_ms,
        "new_commits": new,
        "acked": warm + acked,
    }


def quiesce(client: Path, limit_s: float = 60.0) -> None:
    """Wait until no process works in ``client`` (the store's git children: index refresh,
    repack), so that a run does not pay for what the previous one left running."""
    mark = str(client)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        busy = False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if mark in (proc / "cmdline").read_bytes().decode(errors="replace") or os.readlink(
                    proc / "cwd"
                ).startswith(mark):
                    busy = True
                    break
        if not busy:
            return
        time.sleep(0.2)


# --- one filesystem ----------------------------------------------------------------------------


def bench_fs(fs: Filesystem, versions: dict[str, Path], args: argparse.Namespace, log: Any) -> dict[str, Any]:
    from _common import build_client_fast, hermetic_env
    from bench_http import writer_token

    home = fs.root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = hermetic_env(home)
    clients: dict[int, dict[str, Any]] = {}
    for size in args.sizes:
        client = fs.root / f"c{size}"
        started = time.perf_counter()
        shape = build_client_fast(client, size, env, mission_files=5)
        missions_file = fs.root / f"missions-{size}.json"
        missions_file.write_text(json.dumps(shape.missions))
        clients[size] = {
            "client": client,
            "missions_file": str(missions_file),
            "missions": shape.missions,
            "token": writer_token(client, env),
        }
        log(
            f"[{fs.kind}] built {size} files ({len(shape.missions)} missions) "
            f"in {time.perf_counter() - started:.0f} s"
        )
    names = list(versions)
    variants = names[1:]
    pairs: list[dict[str, Any]] = []  # one per A/B pair: bench, round, variant, order, A and B results
    workers = (
        {n: StoreProcess(versions[n], env, fs.root / f"store-{n}.log") for n in names}
        if args.store_ops
        else {}
    )

    def store_run(name: str, size: int, durability: str, ops: int, tag: str) -> dict[str, Any]:
        c = clients[size]
        quiesce(c["client"])
        return workers[name].run(
            client=str(c["client"]),
            missions_file=c["missions_file"],
            size=size,
            durability=durability,
            ops=ops,
            prefix=f"{fs.kind}-{name}-{size}-{durability}-{tag}",
            seed=len(pairs),
        )

    def http_run(name: str, size: int, tag: str) -> dict[str, Any]:
        c = clients[size]
        quiesce(c["client"])
        return run_http(
            versions[name],
            env,
            c["client"],
            c["token"],
            c["missions"],
            args.http_seconds,
            f"{fs.kind}-{name}-{size}-{tag}",
            fs.root / f"server-{name}-{size}-{tag}.log",
        )

    cells: list[tuple[str, int, str]] = []
    if args.store_ops:
        cells += [("store", s, d) for s in args.sizes for d in ("full", "fast")]
    if args.http_seconds > 0:
        cells += [("http", s, "") for s in args.sizes]
    try:
        for rnd in range(args.rounds):
            for cell, (kind, size, durability) in enumerate(cells):
                bench = f"store/{size}/{durability}" if kind == "store" else f"http/{size}"
                if kind == "store" and args.settle_ops:  # unmeasured: whatever the previous cell left
                    store_run(VERSIONS_BASE, size, durability, args.settle_ops, f"r{rnd}-settle")
                done = []
                for vi, variant in enumerate(variants):
                    if variant in args.only_100k and size < 100000:
                        continue
                    order = (
                        [VERSIONS_BASE, variant] if (rnd + cell + vi) % 2 == 0 else [variant, VERSIONS_BASE]
                    )
                    got = {}
                    for name in order:
                        tag = f"r{rnd}-{variant}-{name}"
                        got[name] = (
                            store_run(name, size, durability, args.store_ops, tag)
                            if kind == "store"
                            else http_run(name, size, tag)
                        )
                    pairs.append(
                        {
                            "bench": bench,
                            "round": rnd,
                            "variant": variant,
                            "order": order,
                            "A": got[VERSIONS_BASE],
                            "B": got[variant],
                        }
                    )
                    done.append(" then ".join(f"{n} {got[n]['ops_per_s']:.0f}" for n in order))
                log(f"[{fs.kind}] round {rnd + 1} {bench}: " + "; ".join(done))
    finally:
        for w in workers.values():
            w.close()
    return {"fs": fs.kind, "describe": fs.describe, "pairs": pairs}


# --- summary -----------------------------------------------------------------------------------


def bootstrap_ci(gains: list[float], draws: int = 4000) -> str:
    """A 90% percentile-bootstrap interval of the median paired gain (fixed seed: reproducible)."""
    if len(gains) < 3:
        return "–"
    rng = random.Random(12)
    medians = sorted(statistics.median(rng.choices(gains, k=len(gains))) for _ in range(draws))
    return f"{medians[int(draws * 0.05)] * 100:+.0f}..{medians[int(draws * 0.95)] * 100:+.0f}%"


def summarize(results: list[dict[str, Any]], variants: list[str], sizes: list[int]) -> list[list[str]]:
    benches = [f"store/{s}/{d}" for s in sizes for d in ("full", "fast")] + [f"http/{s}" for s in sizes]
    rows = []
    for result in results:
        for variant in variants:
            for bench in benches:
                pairs = [p for p in result["pairs"] if p["bench"] == bench and p["variant"] == variant]
                if not pairs:
                    continue
                gains_first, gains_second, gains, saved = [], [], [], []
                for p in pairs:
                    x, y = p["A"]["ops_per_s"], p["B"]["ops_per_s"]
                    gain = x / y - 1
                    gains.append(gain)
                    saved.append(1 / y - 1 / x)  # seconds per write
                    (gains_first if p["order"][0] == VERSIONS_BASE else gains_second).append(gain)

                def pct(vals: list[float]) -> str:
                    return f"{statistics.median(vals) * 100:+.1f}%" if vals else "–"

                size = int(bench.split("/")[1])
                label = (
                    f"store {size // 1000}k {bench.split('/')[2]}"
                    if bench.startswith("store")
                    else f"HTTP {size // 1000}k, 8 clients"
                )
                rows.append(
                    [
                        result["fs"],
                        variant.replace("no_", ""),
                        label,
                        f"{statistics.median(p['A']['ops_per_s'] for p in pairs):.0f}",
                        f"{statistics.median(p['B']['ops_per_s'] for p in pairs):.0f}",
                        pct(gains),
                        f"{statistics.median(saved) * 1000:+.2f}",
                        pct(gains_first),
                        pct(gains_second),
                        f"{min(gains) * 100:+.0f}..{max(gains) * 100:+.0f}%",
                        bootstrap_ci(gains),
                        f"{sum(g > 0 for g in gains)} of {len(gains)}",
                    ]
                )
    return rows


HEADERS = [
    "fs",
    "mechanism",
    "bench",
    "A: with (ops/s, median)",
    "B: without",
    "gain (median of pairs)",
    "ms saved per write",
    "gain, A run first",
    "gain, B run first",
    "range",
    "90% interval of the median (bootstrap)",
    "pairs A was faster in",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("store-worker")

    parser.add_argument(
        "--variants", default="no_spare,no_resume", help="patches in bench/fs_ab/, comma-separated"
    )
    parser.add_argument(
        "--fs", default="ext4j,xfs,host", help="ext4j (journaled ext4 image), xfs, host (this disk)"
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=6, help="rounds; the order of versions alternates")
    parser.add_argument(
        "--store-ops", type=int, default=150, help="measured writes per size, durability, round"
    )
    parser.add_argument("--http-seconds", type=float, default=8.0, help="measured wrk phase (0: no HTTP)")
    parser.add_argument(
        "--only-100k",
        default="no_resume",
        help="variants measured only at 100k files (the code is identical below: trees < 256 KiB)",
    )
    parser.add_argument(
        "--settle-ops", type=int, default=30, help="unmeasured writes (base) before each store cell"
    )
    parser.add_argument(
        "--images", default="/var/tmp/fs_ab", help="folder of the image files and mount points"
    )
    parser.add_argument("--image-gb", type=int, default=12)
    parser.add_argument(
        "--host-dir", default="/tmp/fs_ab-host", help="the reference row's folder on this disk"
    )
    parser.add_argument("--variants-dir", default=str(REPO.parent / f"{REPO.name}-variants"))
    parser.add_argument("--json", dest="json_out", help="write every number to this file")
    parser.add_argument("--summarize", nargs="+", help="only print the table of saved --json files")
    args = parser.parse_args(argv)
    if args.cmd == "store-worker":
        return store_worker(args)
    if args.summarize:
        saved = [r for f in args.summarize for r in json.loads(Path(f).read_text())]
        print_table(
            saved, [v for v in args.variants.split(",") if v], [int(s) for s in args.sizes.split(",")]
        )
        return 0
    if os.geteuid() != 0:
        raise SystemExit("run as root: it makes and mounts filesystems")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.only_100k = [s for s in args.only_100k.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    versions = make_versions(variants, Path(args.variants_dir))
    results = []
    from _common import loadavg

    try:
        for kind in args.fs.split(","):
            fs = Filesystem(kind, Path(args.images), args.image_gb, Path(args.host_dir))
            try:
                fs.make()
                log(f"[{kind}] {fs.describe}; load {loadavg()}")
                result = bench_fs(fs, versions, args, log)
                result["loadavg_end"] = loadavg()
                results.append(result)
                if args.json_out:
                    Path(args.json_out).write_text(json.dumps(results, indent=1, default=str))
            finally:
                fs.cleanup()
    finally:
        shutil.rmtree(args.variants_dir, ignore_errors=True)
    print_table(results, variants, args.sizes)
    return 0


def print_table(results: list[dict[str, Any]], variants: list[str], sizes: list[int]) -> None:
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * (len(HEADERS) - 3)) + "|")
    for row in summarize(results, variants, sizes):
        print("| " + " | ".join(row) + " |")
    print()
    for r in results:
        print(f"- {r['fs']}: {r['describe']}")


if __name__ == "__main__":
    sys.exit(main())
