"""`arka-hcm search` and `arka-hcm index`, in-process with CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import CREATE, env, run


@pytest.fixture
def client(tmp_path: Path) -> Path:
    path = tmp_path / "arka-client"
    assert run("init", str(path), "--tenant-id", "acme").exit_code == 0
    config = path / "config" / "arka-os.config.json"
    data = json.loads(config.read_text())
    data["store"]["durability"] = "fast"
    config.write_text(json.dumps(data))
    return path


def _journal(client: Path, message: str, rid: str) -> None:
    entry = {"author_type": "agent", "author_id": "pmo", "entry_type": "note", "message": message}
    agent = {"type": "agent", "id": "pmo", "roles": ["writer"]}
    stdin = env("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry}, rid, agent)
    assert run("--client", str(client), "exec", stdin=stdin).exit_code == 0


def test_search_finds_what_was_just_written(client: Path) -> None:
    assert run("--client", str(client), "exec", stdin=CREATE).exit_code == 0
    _journal(client, "Arbitrage budgétaire validé", "j1")
    _journal(client, "Atelier planifié", "j2")
    human = run("--client", str(client), "search", "budget*", "--mission", "m1")
    assert human.exit_code == 0, human.output
    assert "state/missions/m1/journal.jsonl:1" in human.output and "**budgétaire**" in human.output
    data = json.loads(run("--client", str(client), "search", "atelier", "--layer", "state", "--json").output)
    assert [h["entry"]["line"] for h in data["results"]] == [2]
    assert data["revision"] == data["tip"]
    nothing = run("--client", str(client), "search", "zzyzx")
    assert nothing.exit_code == 0 and "no results" in nothing.output


def test_search_as_another_caller_and_bad_options(client: Path) -> None:
    assert run("--client", str(client), "exec", stdin=CREATE).exit_code == 0
    as_agent = run("--client", str(client), "search", "audit", "--as", "agent/pmo", "--json")
    assert as_agent.exit_code == 0 and json.loads(as_agent.output)["results"]
    bad = run("--client", str(client), "search", "audit", "--as", "nobody")
    assert bad.exit_code == 2 and "TYPE/ID" in bad.output
    invalid = run("--client", str(client), "search", "audit", "--mission", "../etc")
    assert invalid.exit_code == 3  # INVALID_PAYLOAD


def test_index_status_and_rebuild(client: Path) -> None:
    before = json.loads(run("--client", str(client), "index", "status", "--json").output)
    assert before["exists"] is False
    assert "it is built on the first search" in run("--client", str(client), "index", "status").output
    rebuilt = json.loads(run("--client", str(client), "index", "rebuild", "--json").output)
    assert rebuilt["mode"] == "rebuild" and rebuilt["documents"] > 0
    status = json.loads(run("--client", str(client), "index", "status", "--json").output)
    assert status["exists"] and status["up_to_date"] and status["revision"] == rebuilt["revision"]
    assert ".git/arka-hcm/search/index-" in status["path"]
    assert "up to date" in run("--client", str(client), "index", "status").output
    assert run("--client", str(client), "exec", stdin=CREATE).exit_code == 0
    stale = json.loads(run("--client", str(client), "index", "status", "--json").output)
    assert stale["up_to_date"] is False  # the CLI does not follow writes; a search catches up


def test_exec_answers_search_envelopes(client: Path) -> None:
    lines = "\n".join(
        [
            CREATE,
            env("HCM_SEARCH", {"query": "audit", "consistent": True}, "s1"),
            env("HCM_MEMORY_QUERY", {"mission_id": "m1", "query": "audit", "consistent": True}, "s2"),
        ]
    )
    result = run("--client", str(client), "exec", stdin=lines)
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.splitlines()]
    assert answers[1]["data"]["results"][0]["path"] == "state/missions/m1/meta.json"
    assert answers[1]["revision"] == answers[0]["revision"]
    assert answers[2]["data"]["context"]["meta"]["title"] == "Audit"
