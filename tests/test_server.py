"""The HTTP service, for real: `arka-hcm serve` on 127.0.0.1, httpx as the client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import FIXTURES, assert_clean, commit_count, git

JSON_SUITE = FIXTURES / "jsontestsuite" / "test_parsing"
CLI = [sys.executable, "-m", "arka_git_hcm"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(client: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--client", str(client), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


class Server:
    def __init__(self, client: Path, workers: int = 1, wait_for: str = "/ready") -> None:
        self.client = client
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                *CLI,
                "--client",
                str(client),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}{wait_for}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


def make_token(client: Path, token_id: str, type_: str, roles: str) -> str:
    out = cli(client, "token", "create", "--id", token_id, "--type", type_, "--roles", roles, "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["token"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    client = tmp_path_factory.mktemp("served") / "client"
    assert cli(client.parent, "init", str(client), "--tenant-id", "acme").returncode == 0
    cfg = client / "config" / "arka-os.config.json"
    config = json.loads(cfg.read_text())
    config["store"]["durability"] = "fast"
    cfg.write_text(json.dumps(config))
    tokens = {
        "writer": make_token(client, "arka-pmo-01", "agent", "writer"),
        "reader": make_token(client, "viewer", "human", "reader"),
        "human": make_token(client, "alice", "human", "writer"),
    }
    server = Server(client, workers=2)
    yield {"client": client, "url": server.url, "tokens": tokens, "server": server}
    server.stop()


def call(
    served: dict[str, Any],
    op: str,
    payload: dict[str, Any],
    who: str = "writer",
    caller: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> httpx.Response:
    ids = {"writer": ("agent", "arka-pmo-01"), "reader": ("human", "viewer"), "human": ("human", "alice")}
    type_, id_ = ids[who]
    body = {
        "op": op,
        "request_id": request_id or f"r-{time.monotonic_ns()}",
        "caller": caller or {"type": type_, "id": id_},
        "payload": payload,
    }
    return httpx.post(
        f"{served['url']}/v1/hcm/execute",
        json=body,
        headers={"Authorization": f"Bearer {served['tokens'][who]}"},
        timeout=30,
    )


def ensure_mission(served: dict[str, Any], mission_id: str = "m1") -> None:
    call(
        served,
        "HCM_CREATE_MISSION",
        {"mission_id": mission_id, "meta": {"title": "Audit", "mission_type": "audit"}},
        "human",
    )


def entry(message: str) -> dict[str, Any]:
    return {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": message}


def test_health_and_ready_need_no_token(served: dict[str, Any]) -> None:
    assert httpx.get(f"{served['url']}/health").json()["status"] == "ok"
    ready = httpx.get(f"{served['url']}/ready").json()
    assert ready["status"] == "ready" and len(ready["revision"]) == 40


def test_missing_or_bad_token_is_401_in_the_contract_shape(served: dict[str, Any]) -> None:
    body = {
        "op": "HCM_LIST_MISSIONS",
        "request_id": "r",
        "caller": {"type": "agent", "id": "x"},
        "payload": {},
    }
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = httpx.post(f"{served['url']}/v1/hcm/execute", json=body, headers=headers)
        assert response.status_code == 401
        data = response.json()
        assert data["status"] == "error" and data["error"]["code"] == "UNAUTHENTICATED"
        assert set(data) == {"request_id", "op", "status", "data", "error", "revision"}


def test_write_then_read_through_http(served: dict[str, Any]) -> None:
    ensure_mission(served)
    before = commit_count(served["client"] / "hcm")
    written = call(served, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry("over http")})
    assert written.status_code == 200, written.text
    assert written.json()["revision"] == git(served["client"] / "hcm", "rev-parse", "HEAD").strip()
    assert commit_count(served["client"] / "hcm") == before + 1
    context = httpx.get(
        f"{served['url']}/v1/missions/m1/context",
        headers={"Authorization": f"Bearer {served['tokens']['reader']}"},
    ).json()
    assert context["data"]["last_journal_entries"][-1]["message"] == "over http"
    listing = httpx.get(
        f"{served['url']}/v1/missions", headers={"Authorization": f"Bearer {served['tokens']['reader']}"}
    ).json()
    assert "m1" in [m["mission_id"] for m in listing["data"]["missions"]]


def test_an_envelope_claiming_another_caller_is_refused(served: dict[str, Any]) -> None:
    ensure_mission(served)
    head = git(served["client"] / "hcm", "rev-parse", "HEAD")
    response = call(
        served,
        "HCM_APPEND_JOURNAL",
        {"mission_id": "m1", "entry": entry("spoof")},
        caller={"type": "human", "id": "ceo", "roles": ["admin"]},
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "ACCESS_DENIED"
    assert git(served["client"] / "hcm", "rev-parse", "HEAD") == head


def test_roles_come_from_the_token_not_the_body(served: dict[str, Any]) -> None:
    ensure_mission(served)
    response = call(
        served,
        "HCM_APPEND_JOURNAL",
        {"mission_id": "m1", "entry": entry("reader tries")},
        "reader",
        caller={"type": "human", "id": "viewer", "roles": ["admin", "writer"]},
    )
    assert response.status_code == 403
    agent_admin_op = call(served, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"progress": 0.5}})
    assert agent_admin_op.status_code == 403


def test_oversized_bodies_are_413_before_parsing(served: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {served['tokens']['writer']}"}
    big = b'{"op":"HCM_LIST_MISSIONS","pad":"' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = httpx.post(f"{served['url']}/v1/hcm/execute", content=big, headers=headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        for _ in range(40):
            yield b"x" * 32768

    streamed = httpx.post(f"{served['url']}/v1/hcm/execute", content=chunks(), headers=headers)
    assert streamed.status_code == 413


def test_every_bad_json_of_the_public_corpus_is_a_clean_400(served: dict[str, Any]) -> None:
    cases = sorted(JSON_SUITE.glob("n_*.json"))
    assert len(cases) > 150, f"JSONTestSuite corpus not found at {JSON_SUITE}"
    head = git(served["client"] / "hcm", "rev-parse", "HEAD")
    headers = {"Authorization": f"Bearer {served['tokens']['writer']}", "Content-Type": "application/json"}
    with httpx.Client(base_url=served["url"], headers=headers, timeout=30) as client:
        for case in cases:
            response = client.post("/v1/hcm/execute", content=case.read_bytes())
            assert response.status_code in (400, 413), (case.name, response.status_code, response.text[:200])
            body = response.json()
            assert body["error"]["code"] in ("INVALID_PAYLOAD", "PAYLOAD_TOO_LARGE"), case.name
            assert "Traceback" not in response.text
    assert git(served["client"] / "hcm", "rev-parse", "HEAD") == head


def test_unknown_routes_and_methods_answer_in_the_error_shape(served: dict[str, Any]) -> None:
    missing = httpx.get(f"{served['url']}/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = httpx.get(f"{served['url']}/v1/hcm/execute")
    assert wrong.status_code == 405 and wrong.json()["status"] == "error"


def test_openapi_is_served_to_a_caller_with_a_token(served: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {served['tokens']['reader']}"}
    spec = httpx.get(f"{served['url']}/openapi.json", headers=headers).json()
    assert "/v1/hcm/execute" in spec["paths"] and "/v1/missions/{mission_id}/context" in spec["paths"]


def test_logs_never_hold_tokens_or_journal_text(served: dict[str, Any]) -> None:
    ensure_mission(served)
    secret_text = "SECRET-JOURNAL-TEXT-4242"
    call(served, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry(secret_text)})
    call(served, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry(secret_text)}, "reader")
    httpx.get(f"{served['url']}/v1/missions?token={served['tokens']['writer']}")
    time.sleep(0.3)
    logs = served["client"] / "logs"
    text = "".join(p.read_text() for p in logs.iterdir() if p.is_file())
    assert "operations.jsonl" in os.listdir(logs) and "server.jsonl" in os.listdir(logs)
    assert '"route":"/v1/hcm/execute"' in text  # the request log is there...
    for token in served["tokens"].values():
        assert token not in text  # ...without any token
    assert secret_text not in text
    assert "Authorization" not in text and "Bearer" not in text


@pytest.mark.slow
def test_server_workers_and_the_cli_write_at_the_same_time(served: dict[str, Any]) -> None:
    client, hcm = served["client"], served["client"] / "hcm"
    ensure_mission(served)
    start = commit_count(hcm)
    acked: list[str] = []
    lock = threading.Lock()

    def http_writer(n: int) -> None:
        for i in range(15):
            rid = f"http-{n}-{i}"
            response = call(
                served, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry(rid)}, request_id=rid
            )
            assert response.status_code == 200, response.text
            with lock:
                acked.append(rid)

    def cli_writer() -> None:
        lines = "\n".join(
            json.dumps(
                {
                    "op": "HCM_APPEND_JOURNAL",
                    "request_id": f"cli-{i}",
                    "caller": {"type": "agent", "id": "arka-pmo-01", "roles": ["writer"]},
                    "payload": {"mission_id": "m1", "entry": entry(f"cli-{i}")},
                }
            )
            for i in range(20)
        )
        out = cli(client, "exec", stdin=lines)
        assert out.returncode == 0, out.stderr
        with lock:
            acked.extend(f"cli-{i}" for i in range(20))

    pool = [threading.Thread(target=http_writer, args=(n,)) for n in range(6)] + [
        threading.Thread(target=cli_writer)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    messages = [
        json.loads(line)["message"]
        for line in (hcm / "state/missions/m1/journal.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert all(messages.count(rid) == 1 for rid in acked)
    assert commit_count(hcm) == start + len(acked)
    deadline = time.monotonic() + 10  # git's index is refreshed off the hot path
    while git(hcm, "status", "--porcelain") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_clean(hcm)


def test_a_damaged_hcm_serves_health_and_says_read_only(tmp_path: Path) -> None:
    """A broken repository must not crash-loop the container: /health answers, /ready and every
    operation answer READ_ONLY (503) with the reason."""
    client_dir = tmp_path / "damaged"
    assert cli(tmp_path, "init", str(client_dir), "--tenant-id", "acme").returncode == 0
    token = make_token(client_dir, "ops", "human", "reader")
    branch = client_dir / "hcm" / ".git" / "refs" / "heads" / "main"
    tip = branch.read_text()
    branch.write_text("1" * 40 + "\n")
    server = Server(client_dir, wait_for="/health")
    try:
        ready = httpx.get(f"{server.url}/ready")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "READ_ONLY"
        assert "could not be opened" in ready.json()["error"]["message"]
        body = {"op": "HCM_LIST_MISSIONS", "request_id": "r", "caller": {"type": "human", "id": "ops"}}
        answer = httpx.post(
            f"{server.url}/v1/hcm/execute", headers={"Authorization": f"Bearer {token}"}, json=body
        )
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "READ_ONLY"
        # repaired in place (a restore, a volume made writable again): ready without a restart
        branch.write_text(tip)
        deadline = time.monotonic() + 120  # the server tries again every 5 s
        while httpx.get(f"{server.url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server never opened the repaired HCM"
            time.sleep(0.2)
        answer = httpx.post(
            f"{server.url}/v1/hcm/execute", headers={"Authorization": f"Bearer {token}"}, json=body
        )
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
    finally:
        server.stop()


def test_a_port_in_use_is_a_configuration_error_that_says_so(tmp_path: Path) -> None:
    client = tmp_path / "client"
    made = subprocess.run([*CLI, "init", str(client), "--tenant-id", "acme"], capture_output=True)
    assert made.returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli(client, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert proc.returncode == 2, proc.stderr[-500:]
    assert f"could not start on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_git_clone_over_http_from_the_real_server(served: dict[str, Any], tmp_path: Path) -> None:
    """``git clone`` from ``arka-hcm serve`` itself (two workers, the app's middleware, git's
    own upload-pack behind it), with git's default protocol (v2) and with v0."""
    ensure_mission(served)
    hcm = served["client"] / "hcm"
    host = served["url"].removeprefix("http://")
    for version in ("2", "0"):
        dest = tmp_path / f"clone-v{version}"
        url = f"http://x:{served['tokens']['reader']}@{host}/git/hcm.git"
        git(tmp_path, "-c", f"protocol.version={version}", "clone", "-q", url, str(dest))
        assert git(dest, "rev-parse", "HEAD") == git(hcm, "rev-parse", "HEAD")
        assert git(dest, "rev-list", "--count", "HEAD") == git(hcm, "rev-list", "--count", "HEAD")
        git(dest, "fsck", "--strict", "--no-progress")
    # no token: git is challenged and fails; nothing is cloned
    anonymous = f"http://{host}/git/hcm.git"
    done = subprocess.run(
        ["git", "-c", "credential.helper=", "clone", "-q", anonymous, str(tmp_path / "anon")],
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""},
        timeout=60,
    )
    assert done.returncode != 0 and not (tmp_path / "anon" / ".git").exists()
