"""handedits: HTTP writers append journal entries and update a mission's status while an editor
works on the same files by hand: appends with `>>`, rewrites in place, saves that rename a new
copy over the file (journals), and rewrites of `status.json` (valid ones, and now and then a
broken one).

At the end (after a last write of each file, the server stopped and the HCM opened once more):
every line the editor added is in the history or in `.git/arka-hcm/saved-edits/` (never
silently lost), none is doubled, every valid status edit was adopted into history at some
commit or saved, every broken one is saved and kept out of history, every acknowledged write is
in history exactly once; fsck clean, work tree = HEAD, `git status` clean.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import (
    HttpWriters,
    Ledger,
    Report,
    Server,
    Workspace,
    check_acknowledged,
    fsck,
    git,
    http_call,
    journal_envelope,
    make_client,
    no_traceback,
    opt,
    run_cli,
    say,
    verify,
    wait_clean,
    worktree_equals_head,
)

MISSIONS = ["m1", "m2"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=float, help="how long writers and the editor run [quick 5, long 300]"
    )
    parser.add_argument("--writers", type=int, help="HTTP writer clients [4]")


class Editor:
    """A person editing the HCM folder by hand, each edit carrying a unique marker."""

    def __init__(self, hcm: Path, seed: int) -> None:
        self.hcm = hcm
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lines: list[str] = []  # markers of journal lines added
        self.statuses: list[str] = []  # markers of valid status edits
        self.broken: list[str] = []  # markers of broken status edits
        self.kinds: Counter[str] = Counter()
        self.pending: dict[str, tuple[str, bytes, bool]] = {}
        self.last_valid: dict[str, dict[str, Any]] = {
            m: json.loads((hcm / f"state/missions/{m}/status.json").read_text()) for m in MISSIONS
        }
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            mission = self.rng.choice(MISSIONS)
            kind = self.rng.choices(["append", "rewrite", "rename", "status", "broken"], [4, 2, 2, 2, 0.3])[0]
            try:
                if kind == "status" or kind == "broken":
                    self.edit_status(mission, f"hand-status-{n}", broken=kind == "broken")
                else:
                    self.edit_journal(mission, f"hand-line-{n}", kind)
            except FileNotFoundError:
                self.kinds["caught between the store's two renames (tried again)"] += 1
                continue
            self.kinds[kind] += 1
            time.sleep(self.rng.uniform(0, 0.02))

    def edit_journal(self, mission: str, marker: str, kind: str) -> None:
        path = self.hcm / f"state/missions/{mission}/journal.jsonl"
        entry = {
            "timestamp": "2026-12-07T10:00:00.000Z",
            "author_type": "human",
            "author_id": "bob",
            "entry_type": "note",
            "message": marker,
        }
        line = json.dumps(entry) + "\n"
        if kind == "append":
            with open(path, "a") as f:
                f.write(line)
        else:
            text = path.read_text()
            text = (text if text.endswith("\n") or not text else text + "\n") + line
            if kind == "rewrite":
                path.write_text(text)  # in place: truncate and write
            else:
                tmp = path.with_name(f".journal.jsonl.swp-{marker}")
                tmp.write_text(text)
                os.replace(tmp, path)
        self.lines.append(marker)

    def edit_status(self, mission: str, marker: str, broken: bool) -> None:
        """Rewrite status.json with a new summary (or a broken copy). The previous hand edit of
        the file is the store's to keep only if a write replaced it since (the file no longer
        holds exactly what the editor wrote); otherwise the editor itself overwrote it."""
        path = self.hcm / f"state/missions/{mission}/status.json"
        current = path.read_bytes()
        self.settle(mission, current)
        try:
            status = json.loads(current)
        except ValueError:
            status = dict(self.last_valid[mission])
        if broken:
            data = current[: len(current) // 2] + f' "{marker}"'.encode()
        else:
            status["summary"] = marker
            data = (json.dumps(status, indent=2) + "\n").encode()
            self.last_valid[mission] = status
        path.write_bytes(data)
        self.pending[mission] = (marker, data, broken)

    def settle(self, mission: str, current: bytes | None) -> None:
        """File the previous status edit of ``mission``: kept (a write saw it) or superseded."""
        previous = self.pending.pop(mission, None)
        if previous is None:
            return
        marker, data, broken = previous
        if current == data:
            self.kinds["status edits superseded by the editor's next one"] += 1
        elif broken:
            self.broken.append(marker)
        else:
            self.statuses.append(marker)

    def finish(self) -> None:
        """After the last writes (which touched every status file): every pending edit was seen."""
        for mission in list(self.pending):
            self.settle(mission, None)


def status_writer(
    host: tuple[str, int], token: str, ledger: Ledger, stop: threading.Event, seed: int
) -> None:
    """Updates of the missions' status over HTTP (another field than the editor's)."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        rid = f"status-{seed}-{n}"
        mission = rng.choice(MISSIONS)
        envelope = {
            "op": "HCM_UPDATE_STATUS",
            "request_id": rid,
            "caller": {"type": "human", "id": "alice", "roles": ["writer"]},
            "payload": {"mission_id": mission, "status": {"progress": round(rng.random(), 2)}},
        }
        with ledger.lock:
            ledger.sent[rid] = envelope
        try:
            status, answer = http_call(host, "POST", "/v1/hcm/execute", envelope, token)
        except OSError:
            return
        if status == 200:
            ledger.ack(rid, str(answer.get("revision")))
        else:
            with ledger.lock:
                ledger.bad.append(f"{rid}: HTTP {status} {answer.get('error')}")
        time.sleep(rng.uniform(0, 0.05))


def saved_text(hcm: Path) -> str:
    index = hcm / ".git/arka-hcm/saved-edits/index.jsonl"
    if not index.exists():
        return ""
    parts = []
    for line in index.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            parts.append((hcm / ".git" / record["saved_as"]).read_text(errors="replace"))
    return "\n".join(parts)


def status_history(hcm: Path, env: dict[str, str]) -> str:
    """Every version of the missions' status.json the history holds."""
    out = git(
        hcm,
        env,
        "log",
        "-p",
        "--format=",
        "main",
        "--",
        *(f"state/missions/{m}/status.json" for m in MISSIONS),
    )
    return out


def run(args: argparse.Namespace, report: Report) -> None:
    seconds = float(opt(args, "seconds", 5 if args.quick else 300))
    n = opt(args, "writers", 4)
    ws = Workspace("handedits", keep=args.keep, parent=args.tmp)
    server = None
    try:
        client = make_client(ws.root / "client", ws.env, missions=MISSIONS)
        server = Server(client, 1, log_dir=ws.root)
        status, answer = server.wait_ready()
        if not report.check(status == 200, f"the server never got ready: {status} {answer}"):
            return
        ledger = Ledger()
        writers = HttpWriters(server.host, client.token, ledger, "w", MISSIONS, n).start()
        stop_status = threading.Event()
        statuses = threading.Thread(
            target=status_writer, args=(server.host, client.human_token, ledger, stop_status, 7)
        )
        statuses.start()
        editor = Editor(client.hcm, args.seed)
        editor.thread.start()
        time.sleep(seconds)
        editor.stop.set()
        editor.thread.join()
        writers.join()
        stop_status.set()
        statuses.join()
        # a last write of every file the editor touched: the store sees its last edits
        for mission in MISSIONS:
            rid = f"last-{mission}"
            status, answer = http_call(
                server.host, "POST", "/v1/hcm/execute", journal_envelope(rid, mission), client.token
            )
            if report.check(status == 200, f"the last write to {mission} answered {status} {answer}"):
                ledger.ack(rid, str(answer.get("revision")))
            last_status = {
                "op": "HCM_UPDATE_STATUS",
                "request_id": f"last-status-{mission}",
                "caller": {"type": "human", "id": "alice", "roles": ["writer"]},
                "payload": {"mission_id": mission, "status": {"progress": 1.0}},
            }
            status, answer = http_call(
                server.host, "POST", "/v1/hcm/execute", last_status, client.human_token
            )
            if report.check(status == 200, f"the last status update of {mission} answered {status} {answer}"):
                ledger.ack(f"last-status-{mission}", str(answer.get("revision")))
        editor.finish()
        server.stop()  # late edits checked at close, git's index settles
        asides_dir = client.hcm / ".git/arka-hcm/asides"
        left = sorted(asides_dir.glob("*")) if asides_dir.exists() else []
        report.figures["asides left by the stopped server"] = len(left)
        # a live store checks the files it moved aside within a second, and the rest at close
        report.check(
            not left,
            f"the server left {len(left)} files in .git/arka-hcm/asides unchecked after a graceful stop",
        )
        opened = run_cli(client, "status", "--json")  # one more open: stray asides, hand edits
        report.check(opened.code == 0, f"`arka-hcm status` after the run: {opened.text[-300:]}")
        no_traceback(report, server.output(), "the server")
        for bad in ledger.bad:
            report.fail(f"an answer broke the contract: {bad}")
        hcm, env = client.hcm, client.env
        journal_ids = [rid for rid in ledger.acked if not rid.startswith(("status-", "last-status-"))]
        lost, doubled = check_acknowledged(report, hcm, env, journal_ids, MISSIONS, "journals")
        ids = Counter(
            git(hcm, env, "log", "--format=%(trailers:key=Hcm-Request-Id,valueonly)", "main").split()
        )
        status_lost = [
            rid for rid in ledger.acked if rid.startswith(("status-", "last-status-")) and ids[rid] != 1
        ]
        report.check(not status_lost, f"status updates lost or doubled: {status_lost[:5]}")
        saved = saved_text(hcm)
        heads: Counter[str] = Counter()
        for mission in MISSIONS:
            for line in git(hcm, env, "show", f"main:state/missions/{mission}/journal.jsonl").splitlines():
                if line.strip():
                    heads[json.loads(line).get("message")] += 1
        # markers are matched with their quotes: "hand-status-4" is a substring of "hand-status-41"
        lines_lost = [m for m in editor.lines if heads[m] == 0 and f'"{m}"' not in saved]
        lines_doubled = [m for m in editor.lines if heads[m] > 1]
        report.check(
            not lines_lost,
            f"{len(lines_lost)} of {len(editor.lines)} hand-added journal lines lost: {lines_lost[:5]}",
        )
        report.check(not lines_doubled, f"hand-added journal lines doubled: {lines_doubled[:5]}")
        history = status_history(hcm, env)
        statuses_lost = [m for m in editor.statuses if f'"{m}"' not in history and f'"{m}"' not in saved]
        report.check(
            not statuses_lost,
            f"{len(statuses_lost)} of {len(editor.statuses)} status edits lost: {statuses_lost[:5]}",
        )
        broken_in_history = [m for m in editor.broken if f'"{m}"' in history]
        broken_lost = [m for m in editor.broken if f'"{m}"' not in saved]
        report.check(
            not broken_in_history, f"broken status edits adopted into history: {broken_in_history[:5]}"
        )
        report.check(
            not broken_lost,
            f"{len(broken_lost)} of {len(editor.broken)} broken status edits lost: {broken_lost[:5]}",
        )
        report.figures["HTTP writes acknowledged (journal / status)"] = (
            f"{len(journal_ids)} / {len(ledger.acked) - len(journal_ids)}"
        )
        report.figures["hand edits (by kind)"] = dict(editor.kinds)
        in_history = sum(1 for m in editor.lines if heads[m] == 1)
        report.figures["hand-added journal lines: in history / saved / lost / doubled"] = (
            f"{in_history} / {len(editor.lines) - in_history - len(lines_lost)} / "
            f"{len(lines_lost)} / {len(lines_doubled)}"
        )
        adopted = sum(1 for m in editor.statuses if f'"{m}"' in history)
        report.figures["valid status edits: adopted / saved / lost"] = (
            f"{adopted} / {len(editor.statuses) - adopted - len(statuses_lost)} / {len(statuses_lost)}"
        )
        report.figures["broken status edits: saved / lost / in history"] = (
            f"{len(editor.broken) - len(broken_lost)} / {len(broken_lost)} / {len(broken_in_history)}"
        )
        index = hcm / ".git/arka-hcm/saved-edits/index.jsonl"
        report.figures["saved edits (.git/arka-hcm/saved-edits)"] = (
            len(index.read_text().splitlines()) if index.exists() else 0
        )
        report.figures["lost / doubled (acknowledged)"] = f"{lost} / {doubled}"
        asides = (
            list((hcm / ".git/arka-hcm/asides").glob("*")) if (hcm / ".git/arka-hcm/asides").exists() else []
        )
        report.check(not asides, f"{len(asides)} asides left in .git/arka-hcm/asides after the next open")
        fsck(report, hcm, env, "end")
        wait_clean(report, hcm, env, "end")
        worktree_equals_head(report, hcm, env, "end")
        verify(report, client, "end")
        say(
            f"  {len(editor.lines)} journal lines and {len(editor.statuses) + len(editor.broken)} status "
            f"edits by hand, {len(ledger.acked)} writes acknowledged"
        )
    finally:
        if server is not None and server.alive():
            server.kill9()
        ws.close()


__all__ = ["Any", "add_arguments", "run"]
