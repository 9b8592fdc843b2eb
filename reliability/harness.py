"""What every fault campaign shares: a hermetic environment, client folders, the server as a
process group, HTTP writers that remember what was acknowledged, mounts, and the checks of the
promise (nothing acknowledged lost or doubled, fsck clean, work tree = HEAD, no traceback).

Not a test and not part of the package: the campaigns import the package (read-only) and this
module by path, as the benchmarks do.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arka_git_hcm.admin import tokens
from arka_git_hcm.admin.init import init_hcm
from arka_git_hcm.config import Settings, load_settings
from arka_git_hcm.gitrepo.gitbin import maintenance_lock
from arka_git_hcm.services.store import HcmStore

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = "arka-os.config.json"
WRITER_CALLER = {"type": "agent", "id": "http-writer", "roles": ["writer"]}
INTENT = ".git/arka-hcm/intent.json"


# --- output ----------------------------------------------------------------------------------


def opt(args: Any, name: str, default: Any) -> Any:
    """A campaign's own option, or its default (under `all`, which has none of them)."""
    value = getattr(args, name, None)
    return default if value is None else value


def say(message: str) -> None:
    print(message, flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])


class Report:
    """Figures and failures of one campaign. A failure is a broken promise, said in one line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: dict[str, Any] = {}
        self.failures: list[str] = []
        self.known: list[str] = []
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.ended: float | None = None
        self.strict = False

    def fail(self, message: str) -> None:
        self.failures.append(message)
        say(f"  FAIL: {message}")

    def known_defect(self, message: str) -> None:
        """A broken promise whose cause is a known package defect (RELIABILITY.md names it): said
        loudly and listed, but not a failure unless ``--strict``. Remove the allowance with the
        fix; tests/test_campaigns.py fails on a known defect it does not list."""
        self.known.append(message)
        say(f"  KNOWN DEFECT: {message}")
        if self.strict:
            self.fail(message)

    def check(self, condition: bool, message: str) -> bool:
        if not condition:
            self.fail(message)
        return condition

    def count(self, key: str, n: int = 1) -> None:
        self.figures[key] = self.figures.get(key, 0) + n

    def finish(self) -> None:
        self.ended = time.monotonic()

    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "ok": not self.failures,
            "seconds": round(self.seconds(), 1),
            "figures": self.figures,
            "failures": self.failures,
            "known_defects": self.known,
            "notes": self.notes,
        }

    def summary(self) -> str:
        rows = [[k, _fmt(v)] for k, v in self.figures.items()]
        rows.append(["failures of the promise", str(len(self.failures))])
        if self.known:
            rows.append(["known defects seen (not counted as failures)", str(len(self.known))])
        rows.append(["time", f"{self.seconds():.0f} s"])
        verdict = "PASS" if not self.failures else "FAIL"
        text = f"\n{self.name}: {verdict}\n" + table(["figure", "value"], rows)
        if self.known:
            text += "\nknown defects:\n" + "\n".join(f"  - {k}" for k in self.known)
        if self.failures:
            text += "\nfailures:\n" + "\n".join(f"  - {f}" for f in self.failures[:50])
            if len(self.failures) > 50:
                text += f"\n  ... and {len(self.failures) - 50} more"
        return text


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# --- environment -----------------------------------------------------------------------------


def hermetic_env(home: Path) -> dict[str, str]:
    """No user or system git config, no ARKA_* from the caller: results do not depend on the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ARKA_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "PYTHONUNBUFFERED": "1",
            **(
                {"PYTHONPATH": os.environ["ARKA_CAMPAIGN_PYTHONPATH"]}
                if os.environ.get("ARKA_CAMPAIGN_PYTHONPATH")
                else {}
            ),
            "ARKA_ENV": "development",
        }
    )
    return env


def arka_hcm() -> list[str]:
    """The console script of the venv running this file (or the one on PATH)."""
    candidate = Path(sys.executable).with_name("arka-hcm")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("arka-hcm")
    if found:
        return [found]
    raise SystemExit("arka-hcm is not installed in this environment (make setup)")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(client: Client, *args: str, stdin: str | None = None, timeout: float = 300) -> Run:
    proc = subprocess.run(
        [*arka_hcm(), *client.args(), *args],
        env=client.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def git(hcm: Path, env: dict[str, str], *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", *args], cwd=hcm, env=env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {hcm}: {proc.stdout}{proc.stderr}")
    return proc.stdout


class Workspace:
    """A temporary folder for one campaign (removed at the end unless kept)."""

    def __init__(self, name: str, keep: bool = False, parent: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"arka-campaign-{name}-", dir=parent))
        self.keep = keep
        self.env = hermetic_env(self.root / "home")

    def close(self) -> None:
        if self.keep:
            say(f"  (kept {self.root})")
            return
        shutil.rmtree(self.root, ignore_errors=True)


# --- client folders --------------------------------------------------------------------------


@dataclass
class Client:
    """A client's three folders (hcm, config, logs: together, or each where a campaign mounts it)."""

    path: Path
    env: dict[str, str]
    hcm: Path
    config: Path
    logs: Path
    token: str = ""
    admin_token: str = ""
    human_token: str = ""

    @property
    def config_file(self) -> Path:
        return self.config / CONFIG_FILE

    def args(self) -> list[str]:
        return ["--hcm", str(self.hcm), "--config", str(self.config), "--logs", str(self.logs)]

    def settings(self) -> Settings:
        return load_settings(hcm=self.hcm, config=self.config, logs=self.logs)

    def set_store(self, **store: Any) -> None:
        config = json.loads(self.config_file.read_text())
        config["store"].update(store)
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")


def make_client(
    path: Path,
    env: dict[str, str],
    *,
    missions: Sequence[str] = ("m1",),
    durability: str = "full",
    hcm: Path | None = None,
    logs: Path | None = None,
) -> Client:
    """A new HCM (the library's init, in this process: a command line would cost a Python start
    each), its tokens (an HTTP writer agent, an admin, a human writer) and missions. ``hcm`` and
    ``logs``: put those folders elsewhere (a campaign's own filesystem)."""
    client = Client(path, env, hcm or path / "hcm", path / "config", logs or path / "logs")
    for folder in (client.hcm, client.config, client.logs):
        folder.mkdir(parents=True, exist_ok=True)
    with hermetic_process(env):
        settings = load_settings(hcm=client.hcm, config=client.config, logs=client.logs)
        init_hcm(settings, "acme", "ACME")
        client.set_store(durability=durability)
        settings = client.settings()
        client.token = tokens.create_token(settings, "http-writer", "agent", ["writer"])[0]
        client.admin_token = tokens.create_token(settings, "root-admin", "human", ["admin", "writer"])[0]
        client.human_token = tokens.create_token(settings, "alice", "human", ["writer"])[0]
        with HcmStore.open(settings) as store:
            for m in missions:
                answer = store.execute(
                    {
                        "op": "HCM_CREATE_MISSION",
                        "request_id": f"create-{m}",
                        "caller": {"type": "human", "id": "alice", "roles": ["writer"]},
                        "payload": {
                            "mission_id": m,
                            "meta": {"title": f"Mission {m}", "mission_type": "audit"},
                        },
                    }
                )
                if answer["status"] != "ok":
                    raise RuntimeError(f"creating mission {m} failed: {answer['error']}")
    return client


@contextlib.contextmanager
def hermetic_process(env: dict[str, str]) -> Iterator[None]:
    """This process's environment as the hermetic one while the library runs here (it calls git)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def journal_envelope(rid: str, mission: str, caller: dict[str, Any] | None = None) -> dict[str, Any]:
    """An append whose message is its request id: every line of history names its request."""
    who = caller or WRITER_CALLER
    return {
        "op": "HCM_APPEND_JOURNAL",
        "request_id": rid,
        "caller": who,
        "payload": {"mission_id": mission, "entry": {"entry_type": "note", "message": rid}},
    }


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`arka-hcm serve` in its own process group (uvicorn's workers included), its output in a
    file that is searched for tracebacks."""

    def __init__(self, client: Client, workers: int = 1, log_dir: Path | None = None) -> None:
        self.client = client
        self.workers = workers
        self.port = free_port()
        self.log_path = (log_dir or client.path) / f"server-{self.port}-{time.time_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()/stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                *arka_hcm(),
                *client.args(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env=client.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def host(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        return http_call(self.host, "GET", path, None, "", timeout)

    def wait_health(self, timeout: float = 180) -> bool:
        """Until /health answers (the store was opened, recovery included), or the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                status, _ = self.get("/health", timeout=5)
                if status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def wait_ready(self, timeout: float = 180) -> tuple[int, dict[str, Any]]:
        """/ready's last answer once it is 200 or the deadline passed."""
        deadline = time.monotonic() + timeout
        last: tuple[int, dict[str, Any]] = (0, {})
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.output()[-2000:]}")
            try:
                last = self.get("/ready", timeout=10)
                if last[0] == 200:
                    return last
            except OSError:
                pass
            time.sleep(0.1)
        return last

    def pids(self) -> list[int]:
        """The group's processes (the supervisor and uvicorn's workers)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    fields = stat.rsplit(")", 1)[1].split()
                    if int(fields[2]) == self.proc.pid:  # pgrp
                        found.append(int(entry))
        return found

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        # uvicorn's workers are in the group too: wait until none is left holding the store
        deadline = time.monotonic() + 60
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._log.close()

    def stop(self) -> int | None:
        """SIGTERM to the server's own process, as `docker stop` sends it to the container's
        first process (graceful: the store closes its search child and git's index is
        refreshed); SIGKILL of the group after 60 s. Not to the whole group: its helpers (the
        search updater, a `git log` of the history index) would die under the server's feet
        and it would log their deaths as tracebacks."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()
                return None
        # its helpers end once the server closed their pipes; one left after 30 s is killed
        # (the next server, an unmount or e2fsck must not find it holding the store's files)
        deadline = time.monotonic() + 30
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pids():
            say(f"    a helper of the stopped server was still running after 30 s: {self.pids()} (killed)")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""


def http_call(
    host: tuple[str, int], method: str, path: str, body: Any, token: str, timeout: float = 120
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(*host, timeout=timeout)
    try:
        return request_on(conn, method, path, body, token)
    finally:
        conn.close()


def request_on(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any, token: str
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {"raw": raw[:500].decode("utf-8", "replace")}
    return response.status, answer if isinstance(answer, dict) else {"value": answer}


# --- HTTP writers ------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the campaign's clients sent and what was answered, shared by writer threads."""

    acked: dict[str, str] = field(default_factory=dict)  # request id -> revision answered
    unknown: dict[str, dict[str, Any]] = field(default_factory=dict)  # sent, no final answer
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # every envelope sent, by request id
    messages: Counter[str] = field(default_factory=Counter)  # "CODE: what failed" of refusals
    errors: dict[str, str] = field(default_factory=dict)  # request id -> its last error message
    # a 500 whose message holds one of these is the contract's IO_ERROR for a real I/O error
    accept_500: tuple[str, ...] = ()
    refused: dict[str, str] = field(default_factory=dict)  # request id -> error code answered
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    replayed_first: list[str] = field(default_factory=list)  # a first attempt answered "replayed"
    bad: list[str] = field(default_factory=list)  # answers that break the contract
    lock: threading.Lock = field(default_factory=threading.Lock)
    first_ack: threading.Event = field(default_factory=threading.Event)
    inflight: int = 0

    def ack(self, rid: str, revision: str) -> None:
        with self.lock:
            self.acked[rid] = revision
            self.unknown.pop(rid, None)
            self.refused.pop(rid, None)
        self.first_ack.set()


# codes a write may answer while a fault is on; a write so answered was not applied and may be retried
RETRYABLE = {"BUSY", "READ_ONLY", "STORAGE_FULL"}
CODE_STATUS = {"BUSY": 423, "READ_ONLY": 503, "STORAGE_FULL": 507}  # the contract's HTTP statuses


class HttpWriters:
    """``n`` threads appending journal entries over HTTP (keep-alive connections) until stopped
    or until the server goes away. An entry's message is its request id."""

    def __init__(
        self,
        host: tuple[str, int],
        token: str,
        ledger: Ledger,
        prefix: str,
        missions: Sequence[str],
        n: int,
        allowed_errors: frozenset[str] = frozenset({"BUSY"}),
        pause: float = 0.0,
    ) -> None:
        self.host, self.token, self.ledger = host, token, ledger
        self.prefix, self.missions, self.allowed = prefix, list(missions), allowed_errors
        self.stop = threading.Event()
        self.pause = pause
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]
        self.sent = 0

    def start(self) -> HttpWriters:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float = 300) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def _run(self, worker: int) -> None:
        rng = random.Random(f"{self.prefix}-{worker}")
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self.stop.is_set():
            n += 1
            rid = f"{self.prefix}-{worker}-{n}"
            envelope = journal_envelope(rid, rng.choice(self.missions))
            with self.ledger.lock:
                self.ledger.unknown[rid] = envelope
                self.ledger.sent[rid] = envelope
                self.ledger.inflight += 1
                self.sent += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(*self.host, timeout=300)
                status, answer = request_on(conn, "POST", "/v1/hcm/execute", envelope, self.token)
            except (OSError, http.client.HTTPException):
                # the server went away mid-request: the answer is unknown (retried later)
                with self.ledger.lock:
                    self.ledger.inflight -= 1
                if conn is not None:
                    conn.close()
                return
            with self.ledger.lock:
                self.ledger.inflight -= 1
            record_answer(self.ledger, rid, status, answer, self.allowed, first=True)
            if self.pause:
                time.sleep(rng.uniform(0, self.pause))
        if conn is not None:
            conn.close()


def record_answer(
    ledger: Ledger, rid: str, status: int, answer: dict[str, Any], allowed: frozenset[str], first: bool
) -> str:
    """File one answer in the ledger; returns its code ("OK" or the error code)."""
    with ledger.lock:
        ledger.statuses[status] += 1
    if status == 200 and answer.get("status") == "ok":
        if first and answer.get("replayed"):
            ledger.replayed_first.append(rid)
        ledger.ack(rid, str(answer.get("revision")))
        with ledger.lock:
            ledger.codes["OK"] += 1
        return "OK"
    error = answer.get("error") or {}
    code = str(error.get("code", f"HTTP{status}"))
    with ledger.lock:
        ledger.codes[code] += 1
        message = str(error.get("message", ""))
        ledger.messages[f"{code}: {_what_failed(message)}"] += 1
        ledger.errors[rid] = message
        ledger.refused[rid] = code
        io_error = status == 500 and any(m in message for m in ledger.accept_500)
        if code not in allowed or (status == 500 and not io_error) or status != CODE_STATUS.get(code, status):
            ledger.bad.append(f"{rid}: HTTP {status} {code} {str(answer.get('error'))[:200]}")
    return code


def _what_failed(message: str) -> str:
    """The step an error message names ("while writing a pack of new objects"), paths elided."""
    if " while " in message:
        message = message.split(" while ", 1)[1].split(";")[0]
    elif " (" in message:  # "the HCM volume is read-only (writing a pack of new objects); ..."
        message = message.split(" (", 1)[1].split(")")[0]
    message = message.split(";")[0]
    return re.sub(r"state/missions/[^ ]+", "<mission file>", message)[:80]


def retry_unknown(
    host: tuple[str, int], token: str, ledger: Ledger, report: Report, attempts: int = 30
) -> dict[str, dict[str, Any]]:
    """Send again every request whose answer was never received (or was a retryable refusal): each
    must answer ok, committed once or replayed. Returns the answers, by request id."""
    answers: dict[str, dict[str, Any]] = {}
    with ledger.lock:
        pending = dict(ledger.unknown)
        ledger.unknown.clear()
    conn = http.client.HTTPConnection(*host, timeout=300)
    try:
        for rid, envelope in pending.items():
            for attempt in range(attempts):
                try:
                    status, answer = request_on(conn, "POST", "/v1/hcm/execute", envelope, token)
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection(*host, timeout=300)
                    if attempt == attempts - 1:
                        report.fail(f"retry of {rid} never answered: {exc}")
                    time.sleep(0.5)
                    continue
                code = record_answer(ledger, rid, status, answer, frozenset({"BUSY"}), first=False)
                answers[rid] = answer
                if code == "OK":
                    report.count("HTTP retries: " + ("replayed" if answer.get("replayed") else "committed"))
                    break
                if code != "BUSY":
                    report.fail(f"retry of {rid} answered HTTP {status} {code}: {answer.get('error')}")
                    break
                time.sleep(0.5)
    finally:
        conn.close()
    return answers


# --- checks of the promise -----------------------------------------------------------------------


def history_request_ids(hcm: Path, env: dict[str, str]) -> Counter[str]:
    out = git(hcm, env, "log", "--format=%(trailers:key=Hcm-Request-Id,valueonly)", "main")
    return Counter(line.strip() for line in out.splitlines() if line.strip())


def journal_messages(hcm: Path, env: dict[str, str], missions: Iterable[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for mission in missions:
        text = git(hcm, env, "show", f"main:state/missions/{mission}/journal.jsonl", check=False)
        for line in text.splitlines():
            if line.strip():
                with contextlib.suppress(ValueError):
                    found[str(json.loads(line).get("message"))] += 1
    return found


def check_acknowledged(
    report: Report,
    hcm: Path,
    env: dict[str, str],
    acked: Iterable[str],
    missions: Iterable[str],
    label: str = "",
) -> tuple[int, int]:
    """Every acknowledged write is in history exactly once (its commit and its journal line), and
    no request id was committed twice. Returns (lost, doubled)."""
    ids = history_request_ids(hcm, env)
    lines = journal_messages(hcm, env, missions)
    acked = list(acked)
    lost = [rid for rid in acked if ids[rid] == 0 or lines[rid] == 0]
    doubled = sorted({rid for rid, n in ids.items() if n > 1} | {m for m, n in lines.items() if n > 1})
    where = f" ({label})" if label else ""
    report.check(not lost, f"{len(lost)} acknowledged write(s) lost{where}: {lost[:5]}")
    report.check(not doubled, f"{len(doubled)} write(s) doubled in history{where}: {doubled[:5]}")
    return len(lost), len(doubled)


def fsck(report: Report, hcm: Path, env: dict[str, str], label: str = "") -> bool:
    """``git fsck --strict`` (under the store's maintenance lock, shared: a fold moving packs
    meanwhile is not damage)."""
    with maintenance_lock(hcm, exclusive=False):
        proc = subprocess.run(
            ["git", "-c", "safe.directory=*", "fsck", "--strict", "--no-progress"],
            cwd=hcm,
            env=env,
            capture_output=True,
            text=True,
        )
    return report.check(
        proc.returncode == 0,
        f"git fsck --strict failed{(' (' + label + ')') if label else ''}: {proc.stderr[-500:]}",
    )


def wait_clean(report: Report, hcm: Path, env: dict[str, str], label: str = "", timeout: float = 60) -> bool:
    """`git status` clean (the store refreshes git's index off the hot path: once idle it must be)."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = git(
            hcm, env, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all", check=False
        )
        if out == "":
            return True
        time.sleep(0.2)
    return report.check(
        False,
        f"git status not clean after {timeout:.0f} s{(' (' + label + ')') if label else ''}: {out[:300]}",
    )


def worktree_equals_head(report: Report, hcm: Path, env: dict[str, str], label: str = "") -> bool:
    """Every file of HEAD is on disk with HEAD's bytes and no other file is there (not through
    git's index: this does not depend on its refresh)."""
    listing = git(hcm, env, "ls-tree", "-r", "-z", "main")
    expected: dict[str, str] = {}
    for item in listing.split("\0"):
        if item:
            meta, path = item.split("\t", 1)
            expected[path] = meta.split()[2]
    on_disk = set()
    for root, dirs, files in os.walk(hcm):
        if root == str(hcm):
            dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            on_disk.add(os.path.relpath(os.path.join(root, name), hcm))
    extra = sorted(on_disk - set(expected))
    missing = sorted(set(expected) - on_disk)
    paths = sorted(set(expected) & on_disk)
    differ = []
    if paths:
        proc = subprocess.run(
            ["git", "-c", "safe.directory=*", "hash-object", "--stdin-paths", "--no-filters"],
            cwd=hcm,
            env=env,
            input="\n".join(paths) + "\n",
            capture_output=True,
            text=True,
        )
        hashes = proc.stdout.split()
        differ = [p for p, h in zip(paths, hashes, strict=False) if h != expected[p]]
    where = f" ({label})" if label else ""
    ok = report.check(not extra, f"files on disk not in HEAD{where}: {extra[:5]}")
    ok &= report.check(not missing, f"files of HEAD missing on disk{where}: {missing[:5]}")
    ok &= report.check(not differ, f"files on disk differ from HEAD{where}: {differ[:5]}")
    return ok


TRACEBACK = "Traceback (most recent call last)"


def tracebacks(text: str) -> list[str]:
    """The exception line ending each traceback in ``text``."""
    found = []
    for block in text.split(TRACEBACK)[1:]:
        lines = block.splitlines()[1:]
        last = next((line for line in lines if line and not line.startswith((" ", "\t"))), "?")
        found.append(last)
    return found


# warnings the store logs with the stack of an error it handles (a background task retries later;
# a landed batch whose sync failed is answered with the error): not crashes
HANDLED = (
    "failed (attempt",  # BackgroundWorker: index refresh, late edits (retried after a back-off)
    "moved aside, failed; it is retried",  # late edits: one file's check (the others go on)
    "folding small packs failed; it will be retried",
    "syncing a landed batch failed",
    "the last round at close failed",
    "refreshing git's index failed; it will be retried",
    "refreshing git's index at close failed",
    "search index update failed",  # the search child answers the error; its follower retries
)


def crashes(text: str, handled: tuple[str, ...] = HANDLED) -> tuple[list[str], Counter[str]]:
    """The tracebacks in ``text`` that are crashes, each as "<exception line> after <log line>",
    and the others counted by exception: a traceback whose log line just before it is one of
    the store's warnings about an error it handles (``handled``) is not a crash."""
    found: list[str] = []
    counted: Counter[str] = Counter()
    blocks = text.split(TRACEBACK)
    for before, block in zip(blocks, blocks[1:], strict=False):
        lines = block.splitlines()[1:]
        last = next((line for line in lines if line and not line.startswith((" ", "\t"))), "?")
        context = before.rstrip().splitlines()[-1] if before.strip() else ""
        if "During handling of the above exception" in context:
            continue  # the chained part of one traceback: judged with the next block
        if handled and any(h in context for h in handled):
            counted[last.split(":")[0].split(".")[-1]] += 1
            continue
        found.append(f"{last[:200]!r} after {context[-200:]!r}")
    return found, counted


def no_traceback(report: Report, text: str, what: str, handled: tuple[str, ...] = HANDLED) -> bool:
    """No crash in ``text`` (see :func:`crashes`); stacks of handled errors are counted."""
    found, counted = crashes(text, handled)
    for name, n in counted.items():
        report.count(f"stacks logged for handled errors: {name}", n)
    for crash in found:
        report.fail(f"{what} printed a traceback ending in {crash}")
    return not found


def verify(report: Report, client: Client, label: str = "") -> bool:
    result = run_cli(client, "verify", "--json")
    no_traceback(report, result.text, "arka-hcm verify")
    return report.check(
        result.code == 0,
        f"arka-hcm verify failed{(' (' + label + ')') if label else ''}: {result.text[-800:]}",
    )


def intent_present(client: Client) -> bool:
    return (client.hcm / INTENT).exists()


# --- mounts ------------------------------------------------------------------------------------


class MountError(RuntimeError):
    pass


class Mount:
    """A small filesystem of its own for the HCM: tmpfs, or an ext4 image on a loop device.
    Needs root (CAP_SYS_ADMIN); raises MountError saying why when it cannot mount."""

    def __init__(self, where: Path, size_mb: int, kind: str = "tmpfs", options: str = "") -> None:
        self.where = where
        self.kind = kind
        self.size_mb = size_mb
        self.options = options
        self.image: Path | None = None
        self.mounted = False
        where.mkdir(parents=True, exist_ok=True)
        if kind == "tmpfs":
            extra = f",{options}" if options else ""
            self._run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755{extra}", "tmpfs", str(where)]
            )
        elif kind == "ext4":
            self.image = where.with_name(where.name + ".img")
            with open(self.image, "wb") as f:
                f.truncate(size_mb * 1024 * 1024)
            self._run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard", str(self.image)])
            self._mount_image()
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(where / "lost+found")
        else:
            raise ValueError(kind)
        self.mounted = True

    def _mount_image(self) -> None:
        assert self.image is not None
        self._run(
            [
                "mount",
                "-o",
                ",".join(["loop", *filter(None, [self.options])]),
                str(self.image),
                str(self.where),
            ]
        )

    def device(self) -> str:
        proc = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(self.where)], capture_output=True, text=True
        )
        return Path(proc.stdout.strip()).name

    def trigger_error(self) -> None:
        """ext4 only: an error as the kernel would find one (errors=remount-ro forces read-only)."""
        knob = Path("/sys/fs/ext4") / self.device() / "trigger_fs_error"
        if not knob.exists():
            raise MountError(f"{knob} is missing: this kernel cannot trigger an ext4 error by hand")
        knob.write_text("arka-hcm reliability campaign\n")

    def repair(self) -> str:
        """Unmount, `e2fsck -fy` the image, mount again (after the kernel forced read-only).
        Returns what e2fsck's exit code says."""
        assert self.image is not None
        if self.view is not None:
            self._unmount(self.view)
        self._unmount()
        proc = subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, text=True)
        self.repairs += 1
        (self.image.parent / f"e2fsck-{self.repairs}.log").write_text(proc.stdout + proc.stderr)
        self._mount_image()
        if self.view is not None:
            self._run(["mount", "--bind", str(self.where), str(self.view)])
        return {0: "clean", 1: "errors corrected"}.get(proc.returncode, f"exit {proc.returncode}")

    def _unmount(self, where: Path | None = None) -> None:
        where = where or self.where
        for _ in range(100):
            proc = subprocess.run(["umount", str(where)], capture_output=True, text=True)
            if proc.returncode == 0:
                return
            time.sleep(0.1)
        raise MountError(f"umount {where} failed: {proc.stderr.strip()}")

    @staticmethod
    def _run(cmd: list[str]) -> None:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except FileNotFoundError as exc:
            raise MountError(f"{cmd[0]} is not installed: {exc}") from None
        if proc.returncode != 0:
            raise MountError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}, uid {os.geteuid()}): "
                f"{(proc.stderr or proc.stdout).strip()[:300]}"
            )

    def bind(self, view: Path) -> Path:
        """Also show the filesystem at ``view`` through a bind mount (as a container's volume is),
        which :meth:`remount` then makes read-only or writable on its own. A whole filesystem
        cannot go read-only under load: the kernel refuses while a deleted file is still open
        or mapped (packs a fold deleted, which libgit2 keeps mapped for a while); a mount can."""
        view.mkdir(parents=True, exist_ok=True)
        self._run(["mount", "--bind", str(self.where), str(view)])
        self.view = view
        return view

    view: Path | None = None

    def remount(self, mode: str, timeout: float = 60) -> int:
        """``mount -o remount,<mode>`` (of the bind mount when there is one), retried while the
        kernel answers busy (a file open for writing, a write in progress); returns the attempts
        it took."""
        deadline = time.monotonic() + timeout
        attempts = 0
        target, option = (self.view, f"remount,{mode},bind") if self.view else (self.where, f"remount,{mode}")
        while True:
            attempts += 1
            proc = subprocess.run(["mount", "-o", option, str(target)], capture_output=True, text=True)
            if proc.returncode == 0:
                return attempts
            if time.monotonic() > deadline:
                raise MountError(f"remount,{mode} failed {attempts} times: {proc.stderr.strip()}")
            time.sleep(0.01)

    def try_remount(self, mode: str) -> bool:
        """One ``remount,<mode>`` attempt (of the bind mount when there is one): did it work?"""
        target, option = (self.view, f"remount,{mode},bind") if self.view else (self.where, f"remount,{mode}")
        return subprocess.run(["mount", "-o", option, str(target)], capture_output=True).returncode == 0

    def free_bytes(self) -> int:
        st = os.statvfs(self.where)
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        if not self.mounted:
            return
        try:
            if self.view is not None:
                self._unmount(self.view)
                self.view = None
            self._unmount()
        except MountError:
            subprocess.run(["umount", "-l", str(self.where)], capture_output=True, text=True)
        self.mounted = False
        if self.image is not None and not self.keep_image:
            with contextlib.suppress(OSError):
                self.image.unlink()

    keep_image = False
    repairs = 0

    def __enter__(self) -> Mount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def can_mount(where: Path) -> str | None:
    """None when a tmpfs can be mounted here, else why not (for a loud failure, never a skip)."""
    try:
        Mount(where, 1).close()
    except MountError as exc:
        return str(exc)
    finally:
        with contextlib.suppress(OSError):
            where.rmdir()
    return None


def fill(folder: Path, keep_bytes: int = 0, name: str = "ballast") -> int:
    """Write a file until the filesystem is full (ENOSPC), then give back ``keep_bytes``.
    Returns the bytes written."""
    path = folder / name
    written = 0
    chunk = b"\0" * (256 * 1024)
    with open(path, "ab") as f:
        while True:
            try:
                written += os.write(f.fileno(), chunk if len(chunk) > 4096 else chunk)
            except OSError:
                if len(chunk) > 4096:
                    chunk = chunk[: len(chunk) // 4]
                    continue
                break
        if keep_bytes:
            size = os.fstat(f.fileno()).st_size
            os.ftruncate(f.fileno(), max(0, size - keep_bytes))
    return written


@contextlib.contextmanager
def elapsed(report: Report, key: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        report.figures[key] = f"{time.monotonic() - started:.1f} s"
