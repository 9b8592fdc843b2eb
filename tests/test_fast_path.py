"""``POST /v1/hcm/execute`` through ExecuteFastPath (what `arka-hcm serve` runs) answers exactly
as through the FastAPI route it bypasses: same status, headers, body and request log line."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path
from typing import Any

from arka_git_hcm.admin import tokens
from arka_git_hcm.clock import FixedClock
from arka_git_hcm.server.app import EXECUTE_PATH, ExecuteFastPath, create_app

from .conftest import START, git, make_settings, new_hcm

Request = tuple[str, str, dict[str, str], bytes]


async def _call(
    app: Any, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, payload


def _answers(client: Path, fast: bool, requests: list[Request]) -> list[tuple[int, dict[str, str], bytes]]:
    app = create_app(make_settings(client, index_refresh_delay_s=60.0), clock=FixedClock(START))
    served: Any = ExecuteFastPath(app) if fast else app

    async def run() -> list[tuple[int, dict[str, str], bytes]]:
        async with app.router.lifespan_context(app):
            return [await _call(served, *request) for request in requests]

    return asyncio.run(run())


def _envelope(op: str, payload: dict[str, Any], rid: str, caller: dict[str, Any] | None = None) -> bytes:
    caller = caller or {"type": "agent", "id": "arka-pmo-01", "roles": ["writer"]}
    return json.dumps({"op": op, "request_id": rid, "caller": caller, "payload": payload}).encode()


def test_the_fast_path_answers_as_the_fastapi_route(tmp_path: Path) -> None:
    settings = new_hcm(tmp_path / "a")
    token, _ = tokens.create_token(settings, "arka-pmo-01", "agent", ["writer"])
    human, _ = tokens.create_token(settings, "alice", "human", ["writer"])
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    bearer = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    as_alice = {"authorization": f"Bearer {human}"}
    basic = {"authorization": "Basic " + base64.b64encode(f"git:{token}".encode()).decode()}
    create = _envelope(
        "HCM_CREATE_MISSION",
        {"mission_id": "m1", "meta": {"title": "Audit", "mission_type": "audit"}},
        "c1",
        {"type": "human", "id": "alice", "roles": ["writer"]},
    )
    entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "hello"}
    append = _envelope("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry}, "j1")
    requests: list[Request] = [
        ("POST", EXECUTE_PATH, as_alice, create),
        ("POST", EXECUTE_PATH, bearer, append),
        ("POST", EXECUTE_PATH, bearer, append),  # replayed
        ("POST", EXECUTE_PATH, basic, _envelope("HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"}, "r1")),
        ("POST", EXECUTE_PATH, {}, append),  # no token
        ("POST", EXECUTE_PATH, {"authorization": "Bearer arka_wrong"}, append),
        ("POST", EXECUTE_PATH, bearer, b'{"op": "HCM_APPEND_JOURNAL", "op": 1}'),  # duplicate key
        ("POST", EXECUTE_PATH, bearer, b"[1,]"),
        ("POST", EXECUTE_PATH, bearer, b"\xff\xfe"),
        ("POST", EXECUTE_PATH, {**bearer, "content-length": str(2 * 1024 * 1024)}, b"{}"),
        ("POST", EXECUTE_PATH, bearer, b" " * (1024 * 1024 + 1)),  # over the limit, undeclared
        ("POST", EXECUTE_PATH, bearer, _envelope("HCM_NOPE", {}, "x1")),
        (
            "POST",
            EXECUTE_PATH,
            bearer,
            _envelope(
                "HCM_APPEND_JOURNAL",
                {"mission_id": "m1", "entry": entry},
                "j2",
                {"type": "human", "id": "boss", "roles": ["admin"]},
            ),
        ),
        ("GET", EXECUTE_PATH, bearer, b""),
    ]
    route = _answers(tmp_path / "a", False, requests)
    fast = _answers(tmp_path / "b", True, requests)
    statuses = [status for status, _, _ in fast]
    assert statuses == [200, 200, 200, 200, 401, 401, 400, 400, 400, 413, 413, 400, 403, 405], statuses
    for request, theirs, ours in zip(requests, route, fast, strict=True):
        assert ours == theirs, request[3][:80]
    assert json.loads(fast[2][2])["replayed"] is True and "replayed" not in json.loads(fast[1][2])
    assert git(tmp_path / "a" / "hcm", "rev-parse", "HEAD") == git(
        tmp_path / "b" / "hcm", "rev-parse", "HEAD"
    )

    def logged(client: Path) -> list[dict[str, Any]]:
        lines = (client / "logs" / "server.jsonl").read_text().splitlines()
        return [
            {k: v for k, v in json.loads(line).items() if k not in ("time", "duration_ms")} for line in lines
        ]

    assert logged(tmp_path / "b") == logged(tmp_path / "a")
    assert len(logged(tmp_path / "b")) == len(requests)
    assert token not in (tmp_path / "b" / "logs" / "server.jsonl").read_text()
