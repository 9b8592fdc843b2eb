"""kill: `kill -9` of the server's process group (1 and 2 uvicorn workers) under HTTP writers,
and of command-line writer processes beside it (`arka-hcm exec` streams, and the library with
threads in chained durable batches), each only after its first acknowledgement plus a random
delay. Some restarts are killed again while they recover the interrupted write.

After each cycle: the server is restarted, every request whose answer was lost is sent again
(it must answer ok: committed once, or replayed), then every acknowledged write must be in
history exactly once, `git fsck --strict` clean, the work tree equal to HEAD and `git status`
clean once the store is idle.

    --quick: 1 cycle (2 workers, an exec stream and a library writer beside, at most one kill
    during recovery); long: 120 cycles alternating 1 and 2 workers, up to 3 recovery kills.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    Client,
    HttpWriters,
    Ledger,
    Report,
    Server,
    Workspace,
    arka_hcm,
    check_acknowledged,
    fsck,
    intent_present,
    make_client,
    no_traceback,
    opt,
    retry_unknown,
    run_cli,
    say,
    verify,
    wait_clean,
    worktree_equals_head,
)

HERE = Path(__file__).resolve().parent
EXEC_CALLER = {"type": "agent", "id": "cli-writer", "roles": ["writer"]}
RECOVERED = re.compile(r"recovered an interrupted write \((rolled forward|rolled back)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=int, help="kill cycles [quick 1, long 120]")
    parser.add_argument("--writers", type=int, help="HTTP writer clients [8]")
    parser.add_argument("--max-delay", type=float, help="most seconds after the first ack before a kill")
    parser.add_argument(
        "--recovery-kills", type=float, help="share of restarts killed while recovering [0.4]"
    )


@dataclass
class Beside:
    """A command-line writer process running beside the server, killed on its own schedule."""

    kind: str  # "exec" or "library"
    proc: subprocess.Popen[str]
    envelopes: dict[str, dict[str, Any]]
    stderr_path: Path
    acked: list[str] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    first: threading.Event = field(default_factory=threading.Event)
    killed_mid_stream: bool = False
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.kind == "exec":
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue
                rid = answer.get("request_id")
                if rid:
                    self.answered.add(rid)
                    if answer.get("status") == "ok":
                        self.acked.append(rid)
                        self.first.set()
            else:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "SEND":
                    self.sent.add(parts[1])
                elif len(parts) >= 2 and parts[0] in ("ACK", "ERR"):
                    self.answered.add(parts[1])
                    if parts[0] == "ACK":
                        self.acked.append(parts[1])
                        self.first.set()
        self.first.set()  # ended (or killed): nobody waits for an acknowledgement any more

    def unanswered(self) -> list[str]:
        """Requests the process may have started and never answered (retried afterwards)."""
        if self.kind == "library":
            return sorted(self.sent - self.answered)
        for rid in self.envelopes:  # one at a time, in order: the first unanswered one
            if rid not in self.answered:
                return [rid]
        return []


def start_beside(client: Client, kind: str, prefix: str, mission: str, work: Path) -> Beside:
    stderr_path = work / f"{prefix}.stderr"
    count = 100_000 if kind == "library" else 600
    envelopes: dict[str, dict[str, Any]] = {}
    for n in range(count):
        rid = f"{prefix}-{n}"
        caller = EXEC_CALLER if kind == "exec" else {"type": "agent", "id": "lib-writer", "roles": ["writer"]}
        envelopes[rid] = {
            "op": "HCM_APPEND_JOURNAL",
            "request_id": rid,
            "caller": caller,
            "payload": {"mission_id": mission, "entry": {"entry_type": "note", "message": rid}},
        }
    with open(stderr_path, "w") as stderr:
        if kind == "exec":
            feed = work / f"{prefix}.jsonl"
            feed.write_text("".join(json.dumps(e) + "\n" for e in envelopes.values()))
            cmd = [*arka_hcm(), *client.args(), "exec", "--file", str(feed)]
        else:
            # durable, 4 threads in batches of 2: batches chain, so kills land between them too
            cmd = [
                sys.executable,
                str(HERE / "lib_writer.py"),
                str(client.hcm),
                str(client.config),
                prefix,
                str(count),
                "4",
            ]
            cmd += ["full", "2", mission]
        proc = subprocess.Popen(cmd, env=client.env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    beside = Beside(kind, proc, envelopes, stderr_path)
    beside.reader = threading.Thread(target=beside.read, daemon=True)
    beside.reader.start()
    return beside


def kill_beside(beside: Beside, rng: random.Random, max_delay: float, report: Report) -> None:
    """Wait for its first acknowledgement (however long a busy machine takes), then kill -9 after
    a random delay."""
    beside.first.wait(300)
    time.sleep(rng.uniform(0, max_delay))
    if beside.proc.poll() is None:
        beside.proc.send_signal(signal.SIGKILL)
        beside.killed_mid_stream = True
    beside.proc.wait(timeout=120)
    assert beside.reader is not None
    beside.reader.join(60)


def restart(
    client: Client, workers: int, rng: random.Random, share: float, report: Report, work: Path, most: int
) -> Server:
    """Start the server again after a kill. With probability ``share`` (and an interrupted write to
    recover), kill it again the moment one of its processes holds the store's lock while the
    intent is still on disk: the kill lands inside the recovery itself (at most ``most`` times)."""
    for attempt in range(most + 1):
        had_intent = intent_present(client)
        server = Server(client, workers, log_dir=work)
        if attempt == most or not had_intent or rng.random() >= share:
            return server
        report.count("restarts aimed at recovery")
        lock = str(client.hcm / ".git/arka-hcm/write.lock")
        caught = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.alive():
            if not intent_present(client):
                break  # recovered before we saw it: not a kill during recovery
            if any(_holds(pid, lock) for pid in server.pids()) and intent_present(client):
                caught = True
                break
            time.sleep(0.0005)
        if not caught:
            return server
        server.kill9()
        report.count("kills during recovery (lock held, intent on disk)")
        no_traceback(report, server.output(), "the server")
    raise AssertionError("unreachable")


def _holds(pid: int, path: str) -> bool:
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"{folder}/{name}") == path:
                return True
        except OSError:
            continue
    return False


def retry_beside(client: Client, besides: list[Beside], report: Report) -> list[str]:
    """Retry, through one `arka-hcm exec`, every request a killed writer left unanswered; each
    must answer ok (committed or replayed). Returns the ids acknowledged this way."""
    pending = [b.envelopes[rid] for b in besides for rid in b.unanswered()]
    acked: list[str] = []
    for _attempt in range(10):
        if not pending:
            break
        result = run_cli(client, "exec", stdin="".join(json.dumps(e) + "\n" for e in pending))
        no_traceback(report, result.text, "arka-hcm exec (retries)")
        answers = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
        again = []
        for envelope, answer in zip(pending, answers, strict=False):
            if answer.get("status") == "ok":
                acked.append(envelope["request_id"])
                report.count("CLI retries: " + ("replayed" if answer.get("replayed") else "committed"))
            elif answer["error"]["code"] == "BUSY":
                again.append(envelope)
            else:
                report.fail(f"retry of {envelope['request_id']} answered {answer['error']}")
        if len(answers) < len(pending):
            report.fail(
                f"arka-hcm exec answered {len(answers)} of {len(pending)} retries: {result.err[-500:]}"
            )
        pending = again
        time.sleep(1)
    if pending:
        report.fail(f"{len(pending)} retries still BUSY after 10 attempts")
    return acked


def run(args: argparse.Namespace, report: Report) -> None:
    quick = args.quick
    cycles = opt(args, "cycles", 1 if quick else 120)
    max_delay = opt(args, "max_delay", 0.4 if quick else 1.5)
    n_writers = opt(args, "writers", 8)
    recovery_share = opt(args, "recovery_kills", 0.4)
    rng = random.Random(args.seed)
    ws = Workspace("kill", keep=args.keep, parent=args.tmp)
    work = ws.root / "work"
    work.mkdir()
    missions = ["m1", "m2", "m3", "m4"]
    server: Server | None = None
    servers: list[Server] = []
    try:
        t0 = time.monotonic()
        client = make_client(ws.root / "client", ws.env, missions=[*missions, "cli"], durability="full")
        say(f"  client folder made in {time.monotonic() - t0:.1f} s")
        ledger = Ledger()
        cli_acked: list[str] = []
        # the quick version's one cycle runs two uvicorn workers (the harder case); the long one
        # alternates 1, 2, 1, ...
        server = Server(client, 2 if cycles == 1 else 1, log_dir=work)
        servers.append(server)
        status, answer = server.wait_ready()
        if not report.check(status == 200, f"the server never got ready: {status} {answer}"):
            return
        for cycle in range(cycles):
            workers = server.workers
            report.count(f"cycles with {workers} worker(s)")
            ledger.first_ack.clear()
            writers = HttpWriters(server.host, client.token, ledger, f"c{cycle}", missions, n_writers).start()
            # one command-line writer of each kind beside the server, each killed on its own schedule
            besides = [
                start_beside(client, kind, f"{kind[:3]}{cycle}", "cli" if kind == "exec" else "m1", work)
                for kind in ("exec", "library")
            ]
            killers = [
                threading.Thread(target=kill_beside, args=(b, random.Random(rng.random()), max_delay, report))
                for b in besides
            ]
            for killer in killers:
                killer.start()
            # the server: after this cycle's first acknowledgement plus a random delay
            if not ledger.first_ack.wait(300):
                report.fail(f"cycle {cycle}: no HTTP write acknowledged in 300 s")
            time.sleep(rng.uniform(0, max_delay))
            with ledger.lock:
                inflight = ledger.inflight
            server.kill9()
            report.count("server kills (kill -9 of the process group)")
            if inflight:
                report.count("server kills with requests in flight")
            if intent_present(client):
                report.count("server kills with a batch landing (intent on disk)")
            writers.join()
            for killer in killers:
                killer.join()
            for beside in besides:
                kind = beside.kind
                report.count(
                    f"CLI writers killed mid-stream ({kind})"
                    if beside.killed_mid_stream
                    else f"CLI writers that ended before their kill ({kind})"
                )
                no_traceback(report, beside.stderr_path.read_text(errors="replace"), f"the {kind} writer")
                cli_acked += beside.acked
                report.count(f"CLI writes acknowledged ({kind})", len(beside.acked))
            # the next cycle runs with the other number of workers (1, 2, 1, ...)
            server = restart(
                client, 2 if workers == 1 else 1, rng, recovery_share, report, work, 1 if quick else 3
            )
            servers.append(server)
            t0 = time.monotonic()
            status, answer = server.wait_ready()
            say(f"    restart ready in {time.monotonic() - t0:.1f} s")
            if not report.check(
                status == 200, f"cycle {cycle}: /ready answered {status} after the restart: {answer}"
            ):
                break
            retried = len(retry_unknown(server.host, client.token, ledger, report))
            report.count("HTTP requests retried after a kill", retried)
            cli_acked += retry_beside(client, besides, report)
            t0 = time.monotonic()
            check_acknowledged(
                report,
                client.hcm,
                client.env,
                [*ledger.acked, *cli_acked],
                [*missions, "cli"],
                f"cycle {cycle}",
            )
            fsck(report, client.hcm, client.env, f"cycle {cycle}")
            wait_clean(report, client.hcm, client.env, f"cycle {cycle}")
            worktree_equals_head(report, client.hcm, client.env, f"cycle {cycle}")
            say(f"    checks in {time.monotonic() - t0:.1f} s")
            say(
                f"  cycle {cycle + 1}/{cycles}: {workers} worker(s), {len(ledger.acked)} HTTP + "
                f"{len(cli_acked)} CLI writes acknowledged, {retried} retried, "
                f"{len(report.failures)} failure(s)"
            )
            if report.failures and not args.keep_going:
                break
        server.stop()
        for bad in ledger.bad:
            report.fail(f"an answer broke the contract: {bad}")
        report.check(
            not ledger.replayed_first, f"first attempts answered replayed: {ledger.replayed_first[:5]}"
        )
        report.figures["HTTP writes acknowledged"] = len(ledger.acked)
        report.figures["CLI writes acknowledged (with retries)"] = len(cli_acked)
        report.figures["HTTP answers"] = dict(ledger.statuses)
        lost, doubled = check_acknowledged(
            report, client.hcm, client.env, [*ledger.acked, *cli_acked], [*missions, "cli"], "end"
        )
        report.figures["lost"] = lost
        report.figures["doubled"] = doubled
        fsck(report, client.hcm, client.env, "end")
        wait_clean(report, client.hcm, client.env, "end")
        worktree_equals_head(report, client.hcm, client.env, "end")
        verify(report, client, "end")
        rolled: dict[str, int] = {}
        for s in servers:
            text = s.output()
            no_traceback(report, text, "the server")
            for match in RECOVERED.finditer(text):
                rolled[match.group(1)] = rolled.get(match.group(1), 0) + 1
        report.figures["recoveries logged by restarted servers"] = rolled or "none"
    finally:
        for s in servers:
            if s.alive():
                s.kill9()
        ws.close()
