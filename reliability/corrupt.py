"""corrupt: one kind of damage at a time, each on its own copy of an HCM with history, then the
command line (`status`, `missions list`, `verify`, a write through `exec`) and the server
(`/health`, `/ready`, a write) are run against it. Each kind is repaired or reported as promised
and nothing crashes with a traceback:

- index: a flipped byte in `.git/index` (derived state): rebuilt at open, everything works;
- ref-empty, ref-garbage, head-garbage: the branch (or HEAD) damaged: a clear "damaged, restore"
  message (never "init"), `/ready` 503 READ_ONLY with the reason, writes 503;
- old-commit: a damaged old commit inside a pack: the store opens READ_ONLY with the reason,
  `/ready` 503, writes 503, `verify` exits 1;
- rewind: the branch moved back by hand (`git reset --hard main~5`): writes refused until
  `arka-hcm accept-rewind`, a retried request of a dropped commit is never applied twice; and
  the same rewind undone (the branch moved back to its tip) lets writes through;
- loose-truncated, pack-truncated, idx-truncated: an object file cut short: reported (`verify`
  exits 1, `/ready` 503 or a clear error), never a traceback;
- intent-torn, ref-lock: a torn intent of a crashed writer (repaired at open), a branch lock
  left by a killed git process (reported with what to do, not an endless BUSY).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    Client,
    Report,
    Run,
    Server,
    Workspace,
    crashes,
    git,
    hermetic_process,
    journal_envelope,
    make_client,
    opt,
    run_cli,
    say,
    tracebacks,
)

from arka_git_hcm.services.store import HcmStore

KINDS = [
    "index",
    "ref-empty",
    "ref-garbage",
    "head-garbage",
    "old-commit",
    "rewind",
    "rewind-undone",
    "loose-truncated",
    "pack-truncated",
    "idx-truncated",
    "intent-torn",
    "ref-lock",
]
# the quick version: one of each kind issue 11 §3 names (derived state, a damaged branch and HEAD,
# a damaged old commit, a branch moved back by hand); the long one runs them all
QUICK_KINDS = ["index", "ref-empty", "head-garbage", "old-commit", "rewind"]
MISSIONS = ["m1", "m2"]
COMMANDS = ("status", "list", "verify", "write")  # run on each damaged copy (list: long version only)
HANG_S = 60  # a command that has not answered by then is hung (it takes seconds on a busy host)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kinds", help=f"comma-separated, of: {', '.join(KINDS)} [quick: {','.join(QUICK_KINDS)}; long: all]"
    )
    parser.add_argument("--rounds", type=int, help="rounds of every kind, at other offsets [quick 1, long 5]")
    parser.add_argument("--parallel", type=int, help="kinds checked at once [3]")


@dataclass
class Outcome:
    """What the command line and the server answered on one damaged copy."""

    kind: str
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    cli: dict[str, Run] = field(default_factory=dict)
    http: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(message)


def build_template(ws: Workspace) -> Client:
    """An HCM with history: two missions and 24 journal entries in several CLI-like runs (a pack
    each), then a few over one store (packs folded or not: the damage kinds pick their object)."""
    client = make_client(ws.root / "template", ws.env, missions=MISSIONS, durability="full")
    with hermetic_process(ws.env), HcmStore.open(client.settings()) as store:
        for n in range(24):
            answer = store.execute(
                journal_envelope(
                    f"t-{n}", MISSIONS[n % 2], {"type": "agent", "id": "http-writer", "roles": ["writer"]}
                )
            )
            if answer["status"] != "ok":
                raise RuntimeError(f"template write failed: {answer['error']}")
    return client


def copy_client(template: Client, dest: Path) -> Client:
    shutil.copytree(template.path, dest, symlinks=True)
    client = Client(dest, template.env, dest / "hcm", dest / "config", dest / "logs")
    client.token, client.admin_token, client.human_token = (
        template.token,
        template.admin_token,
        template.human_token,
    )
    return client


# --- the damage ----------------------------------------------------------------------------------


def flip_byte(path: Path, rng: random.Random, start: int = 0, end: int | None = None) -> int:
    data = bytearray(path.read_bytes())
    offset = rng.randrange(start, end if end is not None else len(data))
    data[offset] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return offset


def damage(kind: str, client: Client, rng: random.Random, outcome: Outcome) -> dict[str, Any]:
    """Do the damage; returns what the checks need to know."""
    hcm, env = client.hcm, client.env
    dotgit = hcm / ".git"
    info: dict[str, Any] = {}
    if kind == "index":
        offset = flip_byte(dotgit / "index", rng)
        outcome.notes.append(f"byte {offset} of .git/index flipped")
    elif kind == "ref-empty":
        (dotgit / "refs/heads/main").write_text("")
    elif kind == "ref-garbage":
        (dotgit / "refs/heads/main").write_text("this is not a commit id\n")
    elif kind == "head-garbage":
        (dotgit / "HEAD").write_bytes(b"\x00\x13garbage\n")
    elif kind == "old-commit":
        git(hcm, env, "gc", "-q")  # one pack: damage an old commit inside it
        commits = git(hcm, env, "rev-list", "main").split()
        target = commits[len(commits) // 2 + rng.randrange(len(commits) // 2)]  # an old one
        pack = next((dotgit / "objects/pack").glob("*.pack"))
        listing = git(hcm, env, "verify-pack", "-v", str(pack.with_suffix(".idx")))
        offset = next(int(line.split()[4]) for line in listing.splitlines() if line.startswith(target))
        data = bytearray(pack.read_bytes())
        data[offset + 2 + rng.randrange(6)] ^= 0xFF
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))
        outcome.notes.append(f"commit {target[:12]} damaged at pack offset {offset}")
    elif kind in ("rewind", "rewind-undone"):
        log = git(hcm, env, "log", "-5", "--format=%(trailers:key=Hcm-Request-Id,valueonly)", "main")
        info["dropped"] = [line.strip() for line in log.splitlines() if line.strip()]
        info["old_tip"] = git(hcm, env, "rev-parse", "main").strip()
        git(hcm, env, "reset", "-q", "--hard", "main~5")  # what a person would type
    elif kind == "loose-truncated":
        # the objects as loose files (as plain git or an older store writes them), then the tip
        # commit's file cut short
        unpack_all(hcm, env)
        tip = git(hcm, env, "rev-parse", "main").strip()
        tree = git(hcm, env, "rev-parse", "main^{tree}").strip()
        target = rng.choice([tip, tree])
        path = dotgit / "objects" / target[:2] / target[2:]
        loose = path.read_bytes()
        path.chmod(0o644)
        path.write_bytes(loose[: rng.randrange(1, max(2, len(loose) - 1))])
        outcome.notes.append(f"loose object {target[:12]} cut to fewer than {len(loose)} bytes")
    elif kind in ("pack-truncated", "idx-truncated"):
        git(hcm, env, "gc", "-q")
        pack = next((dotgit / "objects/pack").glob("*.pack"))
        path = pack if kind == "pack-truncated" else pack.with_suffix(".idx")
        whole = path.read_bytes()
        cut = rng.randrange(len(whole) // 4, len(whole) - 1)
        path.chmod(0o644)
        path.write_bytes(whole[:cut])
        outcome.notes.append(f"{path.name} cut from {len(whole)} to {cut} bytes")
    elif kind == "intent-torn":
        (dotgit / "arka-hcm").mkdir(exist_ok=True)
        (dotgit / "arka-hcm/intent.json").write_bytes(b'{"ref": "refs/heads/main", "old": "12')
    elif kind == "ref-lock":
        tip = git(hcm, env, "rev-parse", "main").strip()
        (dotgit / "refs/heads/main.lock").write_text(tip + "\n")  # a killed `git update-ref`
    else:
        raise ValueError(kind)
    return info


def unpack_all(hcm: Path, env: dict[str, str]) -> None:
    pack_dir = hcm / ".git/objects/pack"
    aside = hcm.parent / "packs-unpacked"
    aside.mkdir(exist_ok=True)
    for pack in list(pack_dir.glob("*.pack")):
        for suffix in (".pack", ".idx", ".rev"):
            src = pack.with_suffix(suffix)
            if src.exists():
                shutil.move(str(src), aside / src.name)
    for pack in aside.glob("*.pack"):
        with open(pack, "rb") as stream:
            proc = subprocess.run(
                ["git", "-c", "safe.directory=*", "unpack-objects", "-q"],
                cwd=hcm,
                env=env,
                stdin=stream,
                capture_output=True,
            )
        if proc.returncode != 0:
            raise RuntimeError(f"git unpack-objects failed: {proc.stderr!r}")


# --- what must hold ------------------------------------------------------------------------------

DAMAGED_REF = ("ref-empty", "ref-garbage", "head-garbage")
UNREADABLE = ("old-commit", "loose-truncated", "pack-truncated", "idx-truncated")
REPAIRED = ("index", "intent-torn")


def exercise(kind: str, client: Client, rng: random.Random, work: Path, quick: bool = False) -> Outcome:
    outcome = Outcome(kind)
    info = damage(kind, client, rng, outcome)
    cli = outcome.cli
    write = journal_envelope(f"after-{kind}", "m1", {"type": "human", "id": "alice", "roles": ["writer"]})
    commands = {
        "status": (["status", "--json"], None),
        "list": (["missions", "list", "--json"], None),
        "verify": (["verify", "--json"], None),
        "write": (["exec"], json.dumps(write) + "\n"),
    }
    if quick:  # `missions list` opens the store as `status` does: one Python start less per kind
        del commands["list"]
    for name, (argv, stdin) in commands.items():
        try:
            cli[name] = run_cli(client, *argv, stdin=stdin, timeout=HANG_S)
        except subprocess.TimeoutExpired:
            cli[name] = Run(-9, "", f"(hung: killed after {HANG_S} s)")
            outcome.problems.append(f"`arka-hcm {' '.join(argv)}` hung (killed after {HANG_S} s)")
    servers = [Server(client, 1, log_dir=work)]
    try:
        server = servers[0]
        healthy = server.wait_health(timeout=HANG_S)
        outcome.expect(
            healthy,
            f"`serve` did not answer /health (exit {server.proc.returncode}): {server.output()[-500:]}",
        )
        if healthy:
            outcome.http["ready"] = server.get("/ready")
            outcome.http["write"] = post(server, client.token, journal_envelope(f"http-after-{kind}", "m2"))
            if kind.startswith("rewind"):
                rewind_checks(kind, client, servers, work, info, outcome)
            if kind == "ref-lock":
                ref_lock_checks(outcome)
    finally:
        for server in servers:
            server.stop()
    judge(kind, client, outcome)
    for name, run in cli.items():
        for last in tracebacks(run.text):
            outcome.problems.append(f"`arka-hcm {name}` printed a traceback ending in {last!r}")
    for server in servers:
        found, counted = crashes(server.output())
        for crash in found:
            outcome.problems.append(f"the server printed a traceback ending in {crash}")
        if counted:
            outcome.notes.append(f"stacks of handled errors in the server log: {dict(counted)}")
    return outcome


def post(server: Server, token: str, envelope: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from harness import http_call

    return http_call(server.host, "POST", "/v1/hcm/execute", envelope, token)


def code_of(answer: tuple[int, dict[str, Any]]) -> str:
    status, body = answer
    return "OK" if status == 200 else str((body.get("error") or {}).get("code", status))


def message_of(answer: tuple[int, dict[str, Any]]) -> str:
    return str((answer[1].get("error") or {}).get("message", ""))


def judge(kind: str, client: Client, o: Outcome) -> None:
    cli, http = o.cli, o.http
    if kind in REPAIRED:
        for name in [n for n in ("status", "list", "verify", "write") if n in cli]:
            o.expect(cli[name].code == 0, f"`arka-hcm {name}` exit {cli[name].code}: {cli[name].text[-300:]}")
        o.expect(http.get("ready", (0, {}))[0] == 200, f"/ready answered {http.get('ready')}")
        o.expect(http.get("write", (0, {}))[0] == 200, f"a write over HTTP answered {http.get('write')}")
        clean = git(client.hcm, client.env, "--no-optional-locks", "status", "--porcelain", check=False)
        o.expect(clean == "", f"`git status` not clean after the repair: {clean[:200]}")
        fsck = subprocess.run(
            ["git", "-c", "safe.directory=*", "fsck", "--strict", "--no-progress"],
            cwd=client.hcm,
            env=client.env,
            capture_output=True,
            text=True,
        )
        o.expect(fsck.returncode == 0, f"git fsck failed after the repair: {fsck.stderr[-300:]}")
    elif kind in DAMAGED_REF:
        for name in [n for n in ("status", "list", "write") if n in cli]:
            run = cli[name]
            o.expect(run.code not in (0, 1), f"`arka-hcm {name}` exit {run.code} on a damaged branch")
            o.expect(
                "damaged" in run.text and "restore" in run.text,
                f"`arka-hcm {name}` does not say damaged/restore: {run.text[-300:]}",
            )
            o.expect(
                "arka-hcm init" not in run.text, f"`arka-hcm {name}` says to run init: {run.text[-300:]}"
            )
        o.expect(
            cli["verify"].code == 1,
            f"`arka-hcm verify` exit {cli['verify'].code} on a damaged branch: {cli['verify'].text[-300:]}",
        )
        ready_says_read_only(o, "damaged")
    elif kind in UNREADABLE:
        o.expect(
            cli["verify"].code == 1,
            f"`arka-hcm verify` exit {cli['verify'].code} on {kind}: {cli['verify'].text[-300:]}",
        )
        # the store may open (history read lazily) or refuse with a clear error: never exit 1
        # (verify's) nor 14 (an unexpected error) from the other commands
        for name in [n for n in ("status", "list", "write") if n in cli]:
            o.expect(
                cli[name].code not in (1, 14),
                f"`arka-hcm {name}` exit {cli[name].code}: {cli[name].text[-300:]}",
            )
        ready, write = http.get("ready", (0, {})), http.get("write", (0, {}))
        o.expect(
            ready[0] == 503 and code_of(ready) == "READ_ONLY",
            f"/ready answered {ready[0]} {code_of(ready)}: {message_of(ready)[:200]}",
        )
        o.expect(
            write[0] in (503,) and code_of(write) == "READ_ONLY",
            f"a write answered {write[0]} {code_of(write)}: {message_of(write)[:200]}",
        )
        o.notes.append(f"/ready: {message_of(ready)[:160]}")


def ready_says_read_only(o: Outcome, words: str) -> None:
    ready, write = o.http.get("ready", (0, {})), o.http.get("write", (0, {}))
    o.expect(
        ready[0] == 503 and code_of(ready) == "READ_ONLY", f"/ready answered {ready[0]} {code_of(ready)}"
    )
    o.expect(words in message_of(ready), f"/ready does not say {words!r}: {message_of(ready)[:200]}")
    o.expect(
        write[0] == 503 and code_of(write) == "READ_ONLY", f"a write answered {write[0]} {code_of(write)}"
    )


def rewind_checks(
    kind: str, client: Client, servers: list[Server], work: Path, info: dict[str, Any], o: Outcome
) -> None:
    """Writes refused until an admin decides; a dropped request never applied twice."""
    server = servers[-1]
    ready_says_read_only(o, "moved back by hand")
    o.expect(
        "accept-rewind" in message_of(o.http.get("write", (0, {}))),
        "the refusal does not say `accept-rewind`",
    )
    o.expect(
        o.cli["verify"].code == 1 and "moved back" in o.cli["verify"].text,
        f"`verify` does not report the rewind: {o.cli['verify'].text[-300:]}",
    )
    dropped = info["dropped"]
    # a retry of an acknowledged request whose commit the rewind dropped (its payload as sent)
    retry = journal_envelope(dropped[0], "m1" if int(dropped[0].split("-")[1]) % 2 == 0 else "m2")
    answer = post(server, client.token, retry)
    o.expect(
        answer[0] == 503 and code_of(answer) == "READ_ONLY",
        f"a retry of dropped {dropped[0]} before the decision answered {answer[0]} {code_of(answer)}",
    )
    if kind == "rewind":
        server.stop()
        accepted = run_cli(client, "--as", "human/alice", "accept-rewind", "--json")
        o.cli["accept-rewind"] = accepted
        o.expect(accepted.code == 0, f"`accept-rewind` exit {accepted.code}: {accepted.text[-300:]}")
        server = Server(client, 1, log_dir=work)
        servers.append(server)
        server.wait_ready()
        again = post(server, client.token, retry)
        o.expect(
            again[0] == 409 and code_of(again) == "CONFLICTING_UPDATE",
            f"a retry of dropped {dropped[0]} after accept-rewind answered {again[0]} {code_of(again)} "
            "(never applied twice)",
        )
    else:
        git(client.hcm, client.env, "update-ref", "refs/heads/main", info["old_tip"])  # undone
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.get("/ready")[0] != 200:
            time.sleep(0.2)
        again = post(server, client.token, retry)
        o.expect(
            again[0] == 200 and again[1].get("replayed") is True,
            f"a retry of {dropped[0]} once the rewind was undone answered {again[0]} {code_of(again)} "
            f"replayed={again[1].get('replayed')}",
        )
    fresh = post(server, client.token, journal_envelope(f"after-decision-{kind}", "m2"))
    o.expect(fresh[0] == 200, f"a new write after the decision answered {fresh[0]} {code_of(fresh)}")
    ids = git(
        client.hcm, client.env, "log", "--format=%(trailers:key=Hcm-Request-Id,valueonly)", "main"
    ).split()
    o.expect(ids.count(dropped[0]) <= 1, f"{dropped[0]} is in the history {ids.count(dropped[0])} times")
    if kind == "rewind":
        o.expect(dropped[0] not in ids, f"the dropped {dropped[0]} was applied again after accept-rewind")


def ref_lock_checks(o: Outcome) -> None:
    """A branch lock left by a killed git: a write must say what is wrong (the lock file), not
    retry forever nor answer that the branch "kept moving"."""
    write = o.http.get("write", (0, {}))
    if write[0] == 200:
        o.notes.append("the write went through (the stale lock was cleared)")
        return
    message = message_of(write)
    o.expect(
        "main.lock" in message,
        f"a write with a stale branch lock answered {write[0]} {code_of(write)}: {message[:200]}",
    )


def run(args: argparse.Namespace, report: Report) -> None:
    kinds = str(opt(args, "kinds", ",".join(QUICK_KINDS if args.quick else KINDS))).split(",")
    rounds = opt(args, "rounds", 1 if args.quick else 5)
    rng = random.Random(args.seed)
    ws = Workspace("corrupt", keep=args.keep, parent=args.tmp)
    try:
        template = build_template(ws)
        jobs = []
        for round_ in range(rounds):
            for kind in kinds:
                jobs.append((kind, round_, random.Random(rng.random())))

        def one(job: tuple[str, int, random.Random]) -> Outcome:
            kind, round_, job_rng = job
            work = ws.root / f"{kind}-{round_}"
            work.mkdir()
            client = copy_client(template, work / "client")
            try:
                return exercise(kind, client, job_rng, work, quick=args.quick)
            except Exception as exc:  # a campaign step failing is reported, with the kind
                o = Outcome(kind)
                o.problems.append(f"the check itself failed: {type(exc).__name__}: {exc}")
                return o

        with ThreadPoolExecutor(max_workers=opt(args, "parallel", 3)) as pool:
            for outcome in pool.map(one, jobs):
                report.count(f"{outcome.kind}: rounds")
                for problem in outcome.problems:
                    report.fail(f"{outcome.kind}: {problem}")
                verdict = "ok" if not outcome.problems else f"{len(outcome.problems)} problem(s)"
                ready = outcome.http.get("ready")
                say(
                    f"  {outcome.kind}: {verdict}; status/list/verify/write exit "
                    f"{'/'.join(str(outcome.cli[n].code) if n in outcome.cli else '-' for n in COMMANDS)}"
                    f", /ready {ready[0] if ready else '-'}; {'; '.join(outcome.notes)[:200]}"
                )
                if ready is not None:
                    report.figures[f"{outcome.kind}: /ready"] = f"{ready[0]} {code_of(ready)}"
    finally:
        ws.close()
