"""soak: bench/bench_soak.py (a long run of writes in one process and over HTTP, with a CPU hog
per core beside it), its table reported, and its peaks checked: descriptors to deleted files and
packs on disk stay bounded (the limits of tests/test_soak.py), every write answered ok (the
benchmark stops at the first failure). Writes/s per window is reported, not judged (the host's
load moves it).

    --quick: 800 store writes on 300 missions with one CPU hog (bounded for CI on a shared
    machine); long: 200,000 each way (1-2 h here); --ops N: another length (both phases).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from harness import REPO_ROOT, Report, Workspace, opt, say

from arka_git_hcm.writepath import pack_folding

DELETED_FDS_MAX = 40  # as tests/test_soak.py
PACKS_MAX = pack_folding.PACKS_BACKPRESSURE + pack_folding.GIT_REPACK_ABOVE + 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", type=int, help="writes per phase [quick 800 (store only), long 200000]")
    parser.add_argument("--window", type=int, help="writes per sample [ops / 20]")


def run(args: argparse.Namespace, report: Report) -> None:
    ws = Workspace("soak", keep=args.keep, parent=args.tmp)
    out = ws.root / "soak.json"
    cmd = [
        sys.executable,
        str(REPO_ROOT / "bench" / "bench_soak.py"),
        "--json",
        str(out),
        "--tmp",
        str(ws.root),
    ]
    ops = opt(args, "ops", None)
    if args.quick and ops is None:
        cmd += ["--ops", "800", "--window", "200", "--missions", "20", "--hog", "1", "--no-http"]
    else:
        ops = ops or 200_000
        cmd += ["--ops", str(ops), "--window", str(opt(args, "window", max(500, ops // 20)))]
    try:
        say(f"  {' '.join(cmd[1:])}")
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=ws.env, capture_output=True, text=True)
        table = proc.stdout[proc.stdout.rfind("| phase") :] if "| phase" in proc.stdout else ""
        say(table)
        if not report.check(
            proc.returncode == 0, f"bench_soak.py exit {proc.returncode}: {proc.stderr[-800:]}"
        ):
            return
        results = json.loads(out.read_text())
        for phase in ("store", "http"):
            samples = results.get(phase)
            if not samples:
                continue
            deleted = max(s["fds_deleted"] for s in samples)
            packs = max(s["packs"] for s in samples)
            report.figures[f"{phase}: writes"] = samples[-1]["writes"]
            report.figures[f"{phase}: w/s first window -> last"] = (
                f"{samples[0]['rate']:.0f} -> {samples[-1]['rate']:.0f}"
            )
            report.figures[f"{phase}: CPU ms per write, first window -> last"] = (
                f"{samples[0]['cpu_ms']:.2f} -> {samples[-1]['cpu_ms']:.2f}"
            )
            report.figures[f"{phase}: peak fds (to deleted files)"] = (
                f"{max(s['fds'] for s in samples)} ({deleted})"
            )
            report.figures[f"{phase}: peak packs on disk"] = packs
            report.figures[f"{phase}: peak RSS MB"] = f"{max(s['rss_mb'] for s in samples):.0f}"
            report.check(
                deleted <= DELETED_FDS_MAX,
                f"{phase}: {deleted} descriptors to deleted files (bound {DELETED_FDS_MAX})",
            )
            report.check(packs <= PACKS_MAX, f"{phase}: {packs} packs on disk (bound {PACKS_MAX})")
        report.notes.append(table)
    finally:
        ws.close()


__all__ = ["Path", "add_arguments", "run"]
