"""diskfull: the HCM's filesystem fills up while HTTP writers run (a small tmpfs, or an ext4 image
on a loop device); each cycle leaves a different amount of room (none to 256 KiB) so writes fail
at different steps (the pack, the work tree's temp files, the intent).

While full, every write answers 200 (it fit) or 507 STORAGE_FULL (never a 500) and no write
answered 507 has a commit. Once space is freed the very next write succeeds without a restart,
every request refused meanwhile commits once when retried, and nothing acknowledged is lost
(fsck clean, work tree = HEAD, `git status` clean).
"""

from __future__ import annotations

import argparse
import http.client
import random
import time
from collections import Counter

from harness import (
    HttpWriters,
    Ledger,
    Mount,
    Report,
    Server,
    Workspace,
    check_acknowledged,
    fill,
    fsck,
    history_request_ids,
    journal_envelope,
    make_client,
    no_traceback,
    opt,
    request_on,
    retry_unknown,
    say,
    verify,
    wait_clean,
    worktree_equals_head,
)

ROOM = [0, 0, 1024, 4096, 16384, 65536, 262144]  # bytes given back after filling


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=int, help="disk-full cycles per filesystem [quick 2, long 25]")
    parser.add_argument("--fs", help="tmpfs, ext4 or tmpfs,ext4 [quick tmpfs, long both]")
    parser.add_argument("--writers", type=int, help="HTTP writer clients [6]")
    parser.add_argument("--size-mb", type=int, help="size of the filesystem [24]")


def run(args: argparse.Namespace, report: Report) -> None:
    quick = args.quick
    kinds = str(opt(args, "fs", "tmpfs" if quick else "tmpfs,ext4")).split(",")
    for kind in kinds:
        one_filesystem(args, report, kind)


def one_filesystem(args: argparse.Namespace, report: Report, kind: str) -> None:
    quick = args.quick
    cycles = opt(args, "cycles", 2 if quick else 25)
    n_writers = opt(args, "writers", 6)
    rng = random.Random(f"{args.seed}-{kind}")
    ws = Workspace(f"diskfull-{kind}", keep=args.keep, parent=args.tmp)
    mount = None
    server = None
    try:
        mount = Mount(ws.root / "mnt", opt(args, "size_mb", 24), kind)
        missions = ["m1", "m2", "m3"]
        # the HCM and the logs on the small filesystem (one data volume), the config beside it
        client = make_client(
            ws.root / "client", ws.env, missions=missions, hcm=mount.where / "hcm", logs=mount.where / "logs"
        )
        ledger = Ledger()
        server = Server(client, 1, log_dir=ws.root)
        status, answer = server.wait_ready()
        if not report.check(status == 200, f"{kind}: the server never got ready: {status} {answer}"):
            return
        for cycle in range(cycles):
            before = Counter(ledger.codes)
            ledger.first_ack.clear()
            writers = HttpWriters(
                server.host,
                client.token,
                ledger,
                f"{kind}{cycle}",
                missions,
                n_writers,
                allowed_errors=frozenset({"BUSY", "STORAGE_FULL"}),
            ).start()
            ledger.first_ack.wait(120)
            room = rng.choice(ROOM)
            fill(mount.where, keep_bytes=room, name=f"ballast-{cycle}")
            # writers go on until each has been refused a few times (or the room they were left
            # lasted a minute)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if ledger.codes["STORAGE_FULL"] - before["STORAGE_FULL"] >= 3 * n_writers:
                    break
                time.sleep(0.05)
            ready_full = server.get("/ready")[0]
            report.count(f"{kind}: /ready while full answered {ready_full}")
            writers.join()
            refused = [rid for rid, code in ledger.refused.items() if code == "STORAGE_FULL"]
            full_now = ledger.codes["STORAGE_FULL"] - before["STORAGE_FULL"]
            report.count(f"{kind}: 507 STORAGE_FULL answers", full_now)
            report.count(f"{kind}: cycles", 1)
            if full_now == 0:
                report.count(f"{kind}: cycles with no 507 (the room left sufficed)")
            ids = history_request_ids(client.hcm, client.env)
            committed = [rid for rid in refused if ids[rid]]
            report.check(
                not committed, f"{kind} cycle {cycle}: writes answered 507 have a commit: {committed[:5]}"
            )
            # free the space: the next write must go through at once, without a restart
            for ballast in mount.where.glob("ballast-*"):
                ballast.unlink()
            conn = http.client.HTTPConnection(*server.host, timeout=120)
            try:
                status, answer = request_on(
                    conn,
                    "POST",
                    "/v1/hcm/execute",
                    journal_envelope(f"{kind}{cycle}-after", "m1"),
                    client.token,
                )
            finally:
                conn.close()
            if report.check(
                status == 200,
                f"{kind} cycle {cycle}: the first write after space was freed answered "
                f"{status} {answer.get('error')}",
            ):
                ledger.ack(f"{kind}{cycle}-after", str(answer.get("revision")))
                report.count(f"{kind}: first write after freeing space answered 200")
            # a client retries what was refused (the same envelope): each commits once
            with ledger.lock:
                for rid in refused:
                    ledger.unknown[rid] = ledger.sent[rid]
            retry_unknown(server.host, client.token, ledger, report)
            status, answer = server.wait_ready(timeout=60)
            report.check(
                status == 200,
                f"{kind} cycle {cycle}: /ready after space was freed answered {status} {answer}",
            )
            check_acknowledged(
                report, client.hcm, client.env, ledger.acked, missions, f"{kind} cycle {cycle}"
            )
            fsck(report, client.hcm, client.env, f"{kind} cycle {cycle}")
            wait_clean(report, client.hcm, client.env, f"{kind} cycle {cycle}")
            worktree_equals_head(report, client.hcm, client.env, f"{kind} cycle {cycle}")
            say(
                f"  {kind} cycle {cycle + 1}/{cycles}: room {room} B, {full_now} answers 507, "
                f"{len(ledger.acked)} writes acknowledged, {len(report.failures)} failure(s)"
            )
            if report.failures and not args.keep_going:
                break
        server.stop()
        # a background fold of small packs that hit the full disk logs its stack and retries later
        no_traceback(report, server.output(), "the server")
        for bad in ledger.bad:
            report.fail(f"{kind}: an answer broke the contract: {bad}")
        report.figures[f"{kind}: HTTP answers"] = dict(ledger.statuses)
        report.figures[f"{kind}: refusals by step"] = {k: v for k, v in ledger.messages.items()} or "none"
        report.figures[f"{kind}: writes acknowledged"] = len(ledger.acked)
        lost, doubled = check_acknowledged(
            report, client.hcm, client.env, ledger.acked, missions, f"{kind} end"
        )
        report.figures[f"{kind}: lost / doubled"] = f"{lost} / {doubled}"
        fsck(report, client.hcm, client.env, f"{kind} end")
        verify(report, client, f"{kind} end")
    finally:
        if server is not None and server.alive():
            server.kill9()
        if mount is not None:
            mount.close()
        ws.close()
