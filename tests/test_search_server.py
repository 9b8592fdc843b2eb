"""Search over HTTP, for real: `arka-hcm serve` with two workers (two followers of one index)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .test_server import Server, call, cli, ensure_mission, entry, make_token


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    client = tmp_path_factory.mktemp("search-served") / "client"
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


def get(served: dict[str, Any], params: dict[str, Any], who: str | None = "reader") -> httpx.Response:
    headers = {"Authorization": f"Bearer {served['tokens'][who]}"} if who else {}
    return httpx.get(f"{served['url']}/v1/search", params=params, headers=headers, timeout=30)


def test_writes_are_found_through_the_search_route(served: dict[str, Any]) -> None:
    ensure_mission(served)
    for n in range(6):  # spread over both workers: each follows the index, one updates at a time
        written = call(served, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry(f"jalon livré {n}")})
        assert written.status_code == 200, written.text
    response = get(served, {"q": "jalon", "mission_id": "m1", "limit": 10, "consistent": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["op"] == "HCM_SEARCH" and body["revision"] == body["data"]["revision"]
    assert len(body["data"]["results"]) == 6
    assert body["data"]["results"][0]["entry"]["author"] == "agent/arka-pmo-01"
    layered = get(served, {"q": "jalon", "layer": ["domain", "stable"], "consistent": "true"}).json()
    assert layered["data"]["results"] == []


def test_search_and_memory_query_through_execute(served: dict[str, Any]) -> None:
    ensure_mission(served)
    call(served, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry("Revue des risques du lot 2")})
    found = call(served, "HCM_SEARCH", {"query": "risques", "consistent": True}, "reader")
    assert found.status_code == 200 and found.json()["data"]["results"]
    pack = call(served, "HCM_MEMORY_QUERY", {"mission_id": "m1", "query": "risques", "consistent": True})
    assert pack.status_code == 200, pack.text
    data = pack.json()["data"]
    assert data["context"]["meta"]["title"] == "Audit" and data["bytes"] <= 16384
    assert len(pack.content) < 16384 + 400  # the pack is bounded, the envelope adds little


def test_the_route_has_the_same_auth_and_error_shape(served: dict[str, Any]) -> None:
    shape = {"request_id", "op", "status", "data", "error", "revision"}
    unauthenticated = get(served, {"q": "x"}, who=None)
    assert unauthenticated.status_code == 401 and set(unauthenticated.json()) == shape
    for params in (
        {"q": "x", "limit": 0},
        {},
        {"q": "x", "mission_id": "../etc"},
        {"q": "x", "layer": "git"},
    ):
        bad = get(served, params)
        assert bad.status_code == 400, (params, bad.text)
        assert set(bad.json()) == shape and bad.json()["error"]["code"] == "INVALID_PAYLOAD"
    hostile = get(served, {"q": 'AND "( NEAR title:* -x'})
    assert hostile.status_code == 200 and hostile.json()["status"] == "ok"


def test_the_index_lives_outside_the_versioned_tree(served: dict[str, Any]) -> None:
    hcm: Path = served["client"] / "hcm"
    assert (hcm / ".git" / "arka-hcm" / "search" / "CURRENT").exists()
    assert not any(p.name.endswith(".sqlite") for p in hcm.iterdir())
