"""readonly: the HCM's filesystem goes read-only, two ways:

- remount: `mount -o remount,ro` (an admin, or a volume manager), then `remount,rw` with the
  server left running (tmpfs; an ext4 image too in the long version). The kernel refuses
  `remount,ro` while a file on the mount is open for writing, and the running server always
  holds its SQLite indexes open: when refused (counted), the server is stopped, the volume
  remounted read-only and the server started on it (a volume mounted `ro` at boot);
- forced (ext4): the kernel forces the filesystem read-only after an error (`errors=remount-ro`,
  triggered through /sys/fs/ext4/<dev>/trigger_fs_error) under HTTP write load with files open;
  recovery is what an admin does: stop the server, unmount, `e2fsck -fy`, mount, start.

While read-only: /ready answers 503 READ_ONLY, writes 503 READ_ONLY (never a 500) and no write so
refused has a commit. After: /ready 200 and the next write succeeds (without a restart after a
remount), every refused request commits once when retried, nothing acknowledged is lost, fsck is
clean, the work tree equals HEAD and `git status` is clean.

    --quick: 1 forced cycle; long: 20 remount cycles on tmpfs and on ext4, 10 forced cycles;
    `--quick --fs tmpfs` adds 1 remount cycle.
"""

from __future__ import annotations

import argparse
import http.client
import random
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import (
    Client,
    HttpWriters,
    Ledger,
    Mount,
    MountError,
    Report,
    Server,
    Workspace,
    check_acknowledged,
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

ALLOWED = frozenset({"BUSY", "READ_ONLY"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cycles", type=int, help="remount cycles per filesystem [20; none in quick unless --fs]"
    )
    parser.add_argument(
        "--fs", help="filesystems of the remount cycles: tmpfs, ext4 or both [quick none, long tmpfs,ext4]"
    )
    parser.add_argument(
        "--forced", type=int, help="cycles of a read-only forced by the kernel (ext4) [quick 1, long 10]"
    )
    parser.add_argument("--writers", type=int, help="HTTP writer clients [6]")


def run(args: argparse.Namespace, report: Report) -> None:
    quick = args.quick
    # the quick version: one read-only forced by the kernel under load (what issue 11 saw in
    # production); the remount cycles need a server restart each here (see remount_cycles)
    for kind in str(opt(args, "fs", "" if quick else "tmpfs,ext4")).split(","):
        if kind:
            remount_cycles(args, report, kind)
    forced = opt(args, "forced", 1 if quick else 10)
    if forced:
        forced_cycles(args, report, forced)


def _setup(
    args: argparse.Namespace, kind: str, name: str, options: str = ""
) -> tuple[Workspace, Mount, Client]:
    ws = Workspace(name, keep=args.keep, parent=args.tmp)
    try:
        mount = Mount(ws.root / "mnt", 64, kind, options=options)
    except BaseException:
        ws.close()
        raise
    try:
        view = mount.bind(ws.root / "volume")
        # the HCM alone on the volume that goes read-only; config and logs elsewhere (volumes of
        # their own, as in the container)
        client = make_client(ws.root / "client", ws.env, missions=["m1", "m2", "m3"], hcm=view / "hcm")
    except BaseException:
        mount.close()
        ws.close()
        raise
    return ws, mount, client


def _load(
    server: Server,
    client: Client,
    ledger: Ledger,
    prefix: str,
    n: int,
    pause: float = 0.0,
    allowed: frozenset[str] = ALLOWED,
) -> HttpWriters:
    ledger.first_ack.clear()
    writers = HttpWriters(
        server.host, client.token, ledger, prefix, ["m1", "m2", "m3"], n, allowed_errors=allowed, pause=pause
    )
    writers.start()
    ledger.first_ack.wait(120)
    return writers


def _while_read_only(
    report: Report, server: Server, ledger: Ledger, before: Counter[str], n: int, label: str
) -> None:
    """Writers go on until each was refused a few times; /ready must say READ_ONLY."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ledger.codes["READ_ONLY"] - before["READ_ONLY"] < 3 * n:
        time.sleep(0.05)
    status, answer = server.get("/ready")
    code = (answer.get("error") or {}).get("code")
    report.check(
        status == 503 and code == "READ_ONLY",
        f"{label}: /ready answered {status} {code} on a read-only volume",
    )
    report.count(
        "/ready on a read-only volume: 503 READ_ONLY"
        if status == 503 and code == "READ_ONLY"
        else f"/ready on a read-only volume: {status}"
    )
    report.count("503 READ_ONLY answers to writes", ledger.codes["READ_ONLY"] - before["READ_ONLY"])


def _refused(ledger: Ledger) -> list[str]:
    return [rid for rid, code in ledger.refused.items() if code in ("READ_ONLY", "IO_ERROR")]


def _no_commit_for_refused(report: Report, client: Client, ledger: Ledger, label: str) -> list[str]:
    """No refused write has a commit; returns those that do (checked again by the caller when a
    sync failure after the branch move explains them)."""
    ids = history_request_ids(client.hcm, client.env)
    return [rid for rid in _refused(ledger) if ids[rid]]


def _after(
    report: Report, server: Server, client: Client, ledger: Ledger, refused: list[str], label: str
) -> dict[str, dict[str, Any]]:
    status, answer = server.wait_ready(timeout=60)
    report.check(status == 200, f"{label}: /ready answered {status} {answer} once writable again")
    conn = http.client.HTTPConnection(*server.host, timeout=120)
    try:
        rid = f"{label.replace(' ', '-')}-after"
        status, answer = request_on(
            conn, "POST", "/v1/hcm/execute", journal_envelope(rid, "m1"), client.token
        )
    finally:
        conn.close()
    if report.check(
        status == 200, f"{label}: the first write once writable answered {status} {answer.get('error')}"
    ):
        ledger.ack(rid, str(answer.get("revision")))
        report.count("first write once writable again answered 200")
    with ledger.lock:
        for rid in refused:
            ledger.unknown[rid] = ledger.sent[rid]
    answers = retry_unknown(server.host, client.token, ledger, report)
    check_acknowledged(report, client.hcm, client.env, ledger.acked, ["m1", "m2", "m3"], label)
    fsck(report, client.hcm, client.env, label)
    wait_clean(report, client.hcm, client.env, label)
    worktree_equals_head(report, client.hcm, client.env, label)
    return answers


def remount_cycles(args: argparse.Namespace, report: Report, kind: str) -> None:
    """`mount -o remount,ro` of the HCM's volume, then `remount,rw` with the server left running.

    The kernel refuses `remount,ro` while a file on the mount is open for writing, and the
    running server always holds some (its SQLite indexes: the history index, the search index
    and their -wal/-shm files). So each cycle first tries once under load (counted: refused
    busy, or done), and when refused stops the server (SIGTERM), remounts read-only and starts
    it again on the read-only volume, as after a reboot with the volume mounted `ro`. Either
    way the server must answer /health, /ready 503 READ_ONLY and writes 503; after `remount,rw`
    (server still running) /ready turns 200 and the next write succeeds without a restart."""
    cycles = opt(args, "cycles", 1 if args.quick else 20)
    n = opt(args, "writers", 6)
    rng = random.Random(f"{args.seed}-{kind}")
    ws, mount, client = _setup(args, kind, f"readonly-{kind}")
    server = None
    servers: list[Server] = []
    ledger = Ledger()
    try:
        server = Server(client, 1, log_dir=ws.root)
        servers.append(server)
        status, answer = server.wait_ready()
        if not report.check(status == 200, f"{kind}: the server never got ready: {status} {answer}"):
            return
        for cycle in range(cycles):
            label = f"{kind} remount {cycle}"
            before = Counter(ledger.codes)
            writers = _load(server, client, ledger, f"{kind}{cycle}", n, pause=0.2)
            time.sleep(rng.uniform(0, 0.5))
            started_read_only = False
            if mount.try_remount("ro"):
                report.count(f"{kind}: remounted read-only under load")
            else:
                report.count(
                    f"{kind}: remount,ro under load refused busy (the server's files open for writing)"
                )
                writers.join()
                server.stop()
                mount.remount("ro")
                server = Server(client, 1, log_dir=ws.root)
                servers.append(server)
                if not report.check(
                    server.wait_health(),
                    f"{label}: the server did not start on a read-only volume: {server.output()[-800:]}",
                ):
                    break
                report.count(f"{kind}: server started on the read-only volume")
                started_read_only = True
                writers = HttpWriters(
                    server.host,
                    client.token,
                    ledger,
                    f"{kind}{cycle}ro",
                    ["m1", "m2", "m3"],
                    n,
                    ALLOWED,
                    pause=0.05,
                ).start()
            _while_read_only(report, server, ledger, before, n, label)
            writers.join()
            committed = _no_commit_for_refused(report, client, ledger, label)
            report.check(not committed, f"{label}: writes answered 503 have a commit: {committed[:5]}")
            refused = _refused(ledger)
            mount.remount("rw")
            if started_read_only:
                # a server that could not open the store tries again every OPEN_RETRY_S (5 s)
                report.check(
                    _ready_within(server, 30),
                    f"{label}: a server started on a read-only volume still answers 503 READ_ONLY 30 s "
                    "after `remount,rw`",
                )
            _after(report, server, client, ledger, refused, label)
            say(
                f"  {label}: {len(refused)} writes refused 503, {len(ledger.acked)} acknowledged, "
                f"{len(report.failures)} failure(s)"
            )
            if report.failures and not args.keep_going:
                break
        server.stop()
        for s in servers:
            no_traceback(report, s.output(), "the server")
        _final(report, client, ledger, kind)
    finally:
        for s in servers:
            if s.alive():
                s.kill9()
        mount.close()
        ws.close()


def _ready_within(server: Server, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.get("/ready")[0] == 200:
            return True
        time.sleep(0.2)
    return False


def forced_cycles(args: argparse.Namespace, report: Report, cycles: int) -> None:
    """ext4 with errors=remount-ro, an error triggered by hand: the kernel forces the filesystem
    read-only with the store's files open (what `mount -o remount,ro` refuses to do)."""
    n = opt(args, "writers", 6)
    rng = random.Random(f"{args.seed}-forced")
    ws, mount, client = _setup(args, "ext4", "readonly-forced", options="errors=remount-ro")
    mount.keep_image = args.keep
    server = None
    # when the kernel aborts the journal under a running syncfs, the sync fails with EIO: the
    # store answers IO_ERROR (500) for those writes (the contract's code for an I/O error)
    ledger = Ledger(accept_500=("syncing the filesystem failed: Input/output error",))
    try:
        for cycle in range(cycles):
            label = f"ext4 forced {cycle}"
            server = Server(client, 1, log_dir=ws.root)
            status, answer = server.wait_ready()
            if not report.check(status == 200, f"{label}: the server never got ready: {status} {answer}"):
                return
            before = Counter(ledger.codes)
            writers = _load(server, client, ledger, f"forced{cycle}", n, allowed=ALLOWED | {"IO_ERROR"})
            time.sleep(rng.uniform(0, 0.5))
            mount.trigger_error()
            report.count("ext4: read-only forced by the kernel")
            _while_read_only(report, server, ledger, before, n, label)
            writers.join()
            refused = _refused(ledger)
            server.stop()
            no_traceback(report, server.output(), "the server")
            repaired = mount.repair()
            report.count(f"ext4: e2fsck after the forced read-only: {repaired}")
            server = Server(client, 1, log_dir=ws.root)
            # what survived the forced read-only and e2fsck: a refused write has no commit, unless
            # the sync after its branch move failed (its outcome was unknown to the store, which
            # said so with an error): then its retry must answer replayed, never commit again
            committed = _no_commit_for_refused(report, client, ledger, label)
            answers = _after(report, server, client, ledger, refused, label)
            for rid in committed:
                replayed = bool(answers.get(rid, {}).get("replayed"))
                report.check(
                    replayed,
                    f"{label}: {rid} was refused ({ledger.errors.get(rid)}), has a commit, "
                    "and its retry did not answer replayed",
                )
                report.count(
                    "refused writes whose commit landed (sync failed after the branch moved); retry replayed"
                )
            server.stop()
            no_traceback(report, server.output(), "the server")
            report.count(
                "ext4: unreadable packs moved aside at the next open",
                server.output().count("moved the unreadable pack"),
            )
            say(
                f"  {label}: {len(refused)} writes refused 503, {len(ledger.acked)} acknowledged, "
                f"{len(report.failures)} failure(s)"
            )
            if report.failures and not args.keep_going:
                break
        _final(report, client, ledger, "ext4 forced")
    finally:
        if server is not None and server.alive():
            server.kill9()
        mount.close()
        ws.close()


def _final(report: Report, client: Client, ledger: Ledger, kind: str) -> None:
    for bad in ledger.bad:
        report.fail(f"{kind}: an answer broke the contract: {bad}")
    report.figures[f"{kind}: HTTP answers"] = dict(ledger.statuses)
    report.figures[f"{kind}: refusals by step"] = dict(ledger.messages) or "none"
    report.figures[f"{kind}: writes acknowledged"] = len(ledger.acked)
    lost, doubled = check_acknowledged(
        report, client.hcm, client.env, ledger.acked, ["m1", "m2", "m3"], f"{kind} end"
    )
    report.figures[f"{kind}: lost / doubled"] = f"{lost} / {doubled}"
    verify(report, client, f"{kind} end")


__all__ = ["MountError", "Path", "add_arguments", "run", "subprocess"]
