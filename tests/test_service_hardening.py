"""The service and the command line under hostile or careless use (issue 10 §4-§5), for real:
a served HCM on 127.0.0.1, raw sockets, the CLI in-process."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from arka_git_hcm.admin import tokens
from arka_git_hcm.cli import main
from arka_git_hcm.config import load_settings
from arka_git_hcm.errors import Unauthenticated

from .conftest import git
from .test_server import Server, cli, make_token


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False, env=env)


def new_client(tmp_path: Path, **server: Any) -> Path:
    client = tmp_path / "client"
    assert run("init", str(client), "--tenant-id", "acme").exit_code == 0
    cfg = client / "config" / "arka-os.config.json"
    config = json.loads(cfg.read_text())
    config["store"]["durability"] = "fast"
    config["server"].update(server)
    cfg.write_text(json.dumps(config))
    return client


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_half_open_connections_are_capped_and_cut_when_their_headers_are_late(tmp_path: Path) -> None:
    client = new_client(tmp_path, max_connections=40, header_timeout_s=1.0)
    server = Server(client, workers=1, wait_for="/health")
    sockets: list[socket.socket] = []
    try:
        baseline = open_fds(server.proc.pid)
        for i in range(300):  # never finish their headers; half of them send a first line
            sock = socket.create_connection(("127.0.0.1", server.port))
            if i % 2:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        # a real client still gets in: the oldest half-open connections make room
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert open_fds(server.proc.pid) - baseline <= 45
        # and a connection that never completes its headers is closed once they are late
        late = socket.create_connection(("127.0.0.1", server.port))
        late.sendall(b"GET /health HTTP/1.1\r\n")
        assert closed_by_peer(late, within=15)
        late.close()
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_no_redirect_reflects_the_host_header_and_docs_need_a_token_in_production(tmp_path: Path) -> None:
    client = new_client(tmp_path)
    token = make_token(client, "viewer", "human", "reader")
    server = Server(client, workers=1)  # the tests' environment has no ARKA_ENV: production
    try:
        slash = httpx.get(f"{server.url}/v1/missions/", headers={"Host": "evil.example"})
        assert slash.status_code == 404 and "location" not in slash.headers
        assert httpx.get(f"{server.url}/docs").status_code == 404
        assert httpx.get(f"{server.url}/openapi.json").status_code == 401
        spec = httpx.get(f"{server.url}/openapi.json", headers={"Authorization": f"Bearer {token}"})
        assert spec.status_code == 200 and "/v1/hcm/execute" in spec.json()["paths"]
        # a body of many unknown keys is refused early, with a bounded answer
        body = {"op": "HCM_LIST_MISSIONS", "request_id": "r-1", "caller": {"type": "human", "id": "viewer"}}
        huge = json.dumps({**body, "payload": {f"{i:x}": 1 for i in range(90_000)}})
        answer = httpx.post(
            f"{server.url}/v1/hcm/execute", content=huge, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 400 and len(answer.content) < 10_000
        # the request log names who called, and `token list` reads the last use from it
        listed = json.loads(cli(client, "token", "list", "--json").stdout)["tokens"]
        assert listed[0]["id"] == "viewer" and listed[0]["last_used_at"] is not None
    finally:
        server.stop()


def test_token_commands_need_an_existing_config(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run("--config", str(missing), "token", "create", "--id", "a1", "--type", "agent")
    assert result.exit_code == 6 and "arka-hcm init" in result.output
    assert not missing.exists()
    assert run("--config", str(missing), "token", "list").exit_code == 6


def test_tokens_expire(tmp_path: Path) -> None:
    client = new_client(tmp_path)
    out = run(
        "--client", str(client), "token", "create", "--id", "temp", "--type", "human", "--expires", "2h"
    )
    assert out.exit_code == 0, out.output
    settings = load_settings(client=client)
    record = tokens.load_tokens(settings)[0]
    assert record.expires_at is not None
    secret = out.output.strip().splitlines()[-1]
    assert tokens.authenticate([record], secret).id == "temp"
    later = datetime.now(UTC) + timedelta(hours=3)
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.authenticate([record], secret, now=later)
    bad = run(
        "--client", str(client), "token", "create", "--id", "t2", "--type", "human", "--expires", "soon"
    )
    assert bad.exit_code == 3


def test_the_command_line_names_who_ran_it(tmp_path: Path) -> None:
    client = new_client(tmp_path)
    hcm = client / "hcm"
    create = {
        "op": "HCM_CREATE_MISSION",
        "request_id": "c1",
        "caller": {"type": "human", "id": "alice", "roles": ["writer"]},
        "payload": {"mission_id": "m1", "meta": {"title": "Audit", "mission_type": "audit"}},
    }
    assert run("--client", str(client), "exec", stdin=json.dumps(create)).exit_code == 0
    out = run("--client", str(client), "--as", "human/bob", "rollback", "HEAD~1", "--reason", "undo")
    assert out.exit_code == 0, out.output
    assert git(hcm, "log", "-1", "--format=%an %(trailers:key=Hcm-Caller,valueonly)").split() == [
        "bob",
        "human/bob",
    ]
    out = run("--client", str(client), "snapshot", "create", "s1", env={"ARKA_CALLER": "human/carol"})
    assert out.exit_code == 0, out.output
    assert git(hcm, "for-each-ref", "--format=%(taggername)", "refs/tags/snapshot/s1").strip() == "carol"
    assert run("--client", str(client), "--as", "root", "missions", "list").exit_code == 2


def test_exec_answers_stay_one_per_line_for_every_reader(tmp_path: Path) -> None:
    client = new_client(tmp_path)
    member = {"human_id": "eve", "display_name": "Eve\u2028second\u2029third\x85fourth"}
    lines = [
        json.dumps(
            {
                "op": "HCM_UPSERT_TEAM_MEMBER",
                "request_id": f"m{i}",
                "caller": {"type": "human", "id": "alice", "roles": ["writer"]},
                "payload": {"kind": "human", "member": member},
            }
        )
        for i in range(2)
    ]
    out = run("--client", str(client), "exec", stdin="\n".join(lines))
    assert out.exit_code == 0, out.output
    answers = out.output.splitlines()  # str.splitlines: the reader that splits on U+2028 too
    assert len(answers) == 2
    assert json.loads(answers[0])["data"]["member"]["display_name"] == member["display_name"]
