"""The operations of the contract (section 4) through HcmStore.execute: data shapes, one commit per
write with the contract's message and trailers, errors that leave nothing behind, access, idempotency
and reads ``at`` a point of history. (HCM_SEARCH / HCM_HISTORY / HCM_DIFF are tested elsewhere.)

The ``store`` fixture below shadows conftest's, built like conftest's ``fixture_store`` (copied
from a prepared template, which is cheaper than init): git's index is refreshed by the test
thread (``index_refresh_delay_s=60`` and :func:`clean`) rather than by the background refresher,
so nothing competes with the test for the store's lock (see
test_store_lock_release_racing_another_threads_acquire at the end of this file).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.jsonio import canonical_bytes
from arka_git_hcm.services.store import HcmStore

from .conftest import (
    ADMIN,
    AGENT,
    HUMAN,
    READER,
    assert_clean,
    commit_count,
    copy_client,
    envelope,
    git,
    new_hcm,
    ok,
    open_store,
)

MISSION_META = {"title": "Audit ACME", "mission_type": "audit"}
NOTE = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "hello"}


# --- shared helpers (imported by the other test_ops_* / test_fixture_v1 / test_verify files) --------


@pytest.fixture(scope="session")
def new_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    client = tmp_path_factory.mktemp("template") / "client"
    new_hcm(client)
    return client


@pytest.fixture
def store(tmp_path: Path, new_template: Path) -> Iterator[HcmStore]:
    s = open_store(copy_client(new_template, tmp_path / "client"))
    yield s
    s.close()


def hcm_of(store: HcmStore) -> Path:
    return Path(store.settings.hcm_path)


def clean(store: HcmStore) -> None:
    """assert_clean, after bringing git's index up to date from this thread."""
    store.engine.refresh_index()
    assert_clean(hcm_of(store))


def head(store: HcmStore) -> str:
    return git(hcm_of(store), "rev-parse", "HEAD").strip()


def files_of(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath) / name
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def read_json(store: HcmStore, rel: str) -> Any:
    return json.loads((hcm_of(store) / rel).read_bytes())


def run(
    store: HcmStore,
    op: str,
    payload: dict[str, Any],
    caller: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    return store.execute(envelope(op, payload, caller, request_id))


def tip_and_count(store: HcmStore) -> tuple[str | None, int]:
    tip = store.repo.read_ref("refs/heads/main")
    return tip, (sum(1 for _ in store.repo.walk(tip)) if tip else 0)


def fail(
    store: HcmStore,
    op: str,
    payload: dict[str, Any],
    code: str,
    caller: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Run an operation that must fail with ``code`` and leave no commit and no changed file."""
    hcm = hcm_of(store)
    before, files = tip_and_count(store), files_of(hcm)
    response = run(store, op, payload, caller, request_id)
    assert response["status"] == "error", response
    assert response["error"]["code"] == code, response
    assert response["data"] is None
    assert response["revision"] == before[0]
    assert "Traceback" not in response["error"]["message"]
    assert tip_and_count(store) == before
    assert files_of(hcm) == files
    return response


def fail_all(
    store: HcmStore, op: str, payloads: list[dict[str, Any]], code: str, caller: dict[str, Any] | None = None
) -> None:
    """fail() for each payload, naming the payload that did not fail as it should."""
    for payload in payloads:
        try:
            fail(store, op, payload, code, caller)
        except AssertionError as exc:
            raise AssertionError(f"{op} {json.dumps(payload)[:300]}: {exc}") from None


def write(
    store: HcmStore,
    op: str,
    payload: dict[str, Any],
    caller: dict[str, Any] | None = None,
    *,
    target: str,
    mission: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Run a write that must succeed as exactly one commit with the contract's message, trailers,
    author and committer, and leave the work tree equal to HEAD (all read back with real git)."""
    caller = caller or HUMAN
    hcm = hcm_of(store)
    count = commit_count(hcm)
    response = ok(store, op, payload, caller, request_id)
    assert "replayed" not in response
    assert commit_count(hcm) == count + 1
    fields = git(hcm, "log", "-1", "--format=%H%x00%s%x00%an%x00%cn%x00%ce%x00%(trailers:only,unfold)")
    sha, subject, author, committer, committer_email, trailer_text = fields.split("\x00")
    assert sha == response["revision"]
    assert subject.startswith(f"{op} {target}: "), subject
    assert len(subject) > len(f"{op} {target}: ")
    found = dict(line.split(": ", 1) for line in trailer_text.splitlines() if line.strip())
    assert found["Hcm-Op"] == op
    assert found["Hcm-Request-Id"] == response["request_id"]
    assert found["Hcm-Caller"] == f"{caller['type']}/{caller['id']}"
    if mission is None:
        assert "Hcm-Mission" not in found
    else:
        assert found["Hcm-Mission"] == mission
    assert author == caller["id"]
    assert (committer, committer_email) == ("Arka HCM", store.settings.file.store.committer.email)
    clean(store)
    return response


def git_commit_file(store: HcmStore, rel: str, data: bytes | None, message: str = "edit by hand") -> None:
    """Change one file and commit it with plain git (what a person with a clone might do). git's
    index is brought up to date first, as the store does within index_refresh_delay_s."""
    store.engine.refresh_index()
    hcm = hcm_of(store)
    path = hcm / rel
    if data is None:
        git(hcm, "rm", "-q", rel)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        git(hcm, "add", rel)
    git(hcm, "-c", "user.name=someone", "-c", "user.email=someone@example.com", "commit", "-q", "-m", message)


def mission(store: HcmStore, mission_id: str = "m1", **meta: Any) -> dict[str, Any]:
    return ok(store, "HCM_CREATE_MISSION", {"mission_id": mission_id, "meta": {**MISSION_META, **meta}})


def note(store: HcmStore, message: str, mission_id: str = "m1", **entry: Any) -> dict[str, Any]:
    payload = {"mission_id": mission_id, "entry": {**NOTE, "message": message, **entry}}
    return ok(store, "HCM_APPEND_JOURNAL", payload, AGENT)


def actions(store: HcmStore, items: list[dict[str, Any]], mission_id: str = "m1") -> list[dict[str, Any]]:
    response = ok(store, "HCM_UPDATE_NEXT_ACTIONS", {"mission_id": mission_id, "actions": items}, AGENT)
    return response["data"]["next_actions"]


def decide(store: HcmStore, decision: dict[str, Any], mission_id: str = "m1") -> str:
    response = ok(store, "HCM_RECORD_DECISION", {"mission_id": mission_id, "decision": decision}, AGENT)
    return response["data"]["decision_id"]


def context(store: HcmStore, mission_id: str = "m1", **options: Any) -> dict[str, Any]:
    return ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": mission_id, "options": options})["data"]


def is_iso_utc(text: Any) -> bool:
    if not (isinstance(text, str) and text.endswith("Z")):
        return False
    return datetime.fromisoformat(text[:-1] + "+00:00").utcoffset() is not None


M1 = "state/missions/m1"


# --- HCM_CREATE_MISSION ----------------------------------------------------------------------------


def test_create_mission_writes_the_five_files_in_one_commit(store: HcmStore) -> None:
    response = write(
        store,
        "HCM_CREATE_MISSION",
        {"mission_id": "m1", "meta": {**MISSION_META, "client_id": "acme", "tags": ["pilot"]}},
        target="m1",
        mission="m1",
    )
    assert response["data"] == {"mission_id": "m1"}
    hcm = hcm_of(store)
    added = git(hcm, "diff-tree", "--no-commit-id", "--name-status", "-r", "HEAD").split("\n")
    assert sorted(line.split("\t")[1] for line in added if line) == sorted(
        f"{M1}/{name}"
        for name in ("meta.json", "status.json", "journal.jsonl", "decisions.json", "next_actions.json")
    )
    assert git(hcm, "diff-tree", "--no-commit-id", "--name-status", "-r", "HEAD").count("A\t") == 5
    meta = read_json(store, f"{M1}/meta.json")
    assert meta["mission_id"] == "m1" and meta["title"] == "Audit ACME" and meta["mission_type"] == "audit"
    assert meta["client_id"] == "acme" and meta["tags"] == ["pilot"]
    assert is_iso_utc(meta["created_at"]) and meta["updated_at"] == meta["created_at"]
    status = read_json(store, f"{M1}/status.json")
    assert (status["phase"], status["status"], status["health"]) == ("init", "planned", "ok")
    assert status["progress"] == 0 and status["risks"] == [] and is_iso_utc(status["last_update"])
    assert (hcm / M1 / "journal.jsonl").read_bytes() == b""
    assert read_json(store, f"{M1}/decisions.json") == {"decisions": []}
    assert read_json(store, f"{M1}/next_actions.json") == {"next_actions": []}
    for name in ("meta.json", "status.json", "decisions.json", "next_actions.json"):
        raw = (hcm / M1 / name).read_bytes()
        assert raw == canonical_bytes(json.loads(raw)), name


def test_create_mission_with_an_initial_status(store: HcmStore) -> None:
    risk = {"risk_id": "r1", "severity": "high", "summary": "s"}
    ok(
        store,
        "HCM_CREATE_MISSION",
        {
            "mission_id": "m1",
            "meta": MISSION_META,
            "status": {"phase": "cadrage", "status": "in_progress", "progress": 0.2, "risks": [risk]},
        },
    )
    status = read_json(store, f"{M1}/status.json")
    assert (status["phase"], status["status"], status["progress"], status["health"]) == (
        "cadrage",
        "in_progress",
        0.2,
        "ok",
    )
    assert status["risks"] == [{"risk_id": "r1", "severity": "high", "summary": "s", "owner": None}]


def test_create_existing_mission_is_a_conflict(store: HcmStore) -> None:
    mission(store)
    fail(
        store,
        "HCM_CREATE_MISSION",
        {"mission_id": "m1", "meta": {**MISSION_META, "title": "Other"}},
        "CONFLICTING_UPDATE",
    )
    assert read_json(store, f"{M1}/meta.json")["title"] == "Audit ACME"


def test_create_mission_with_a_bad_status_is_invalid(store: HcmStore) -> None:
    bad = ({"phase": None}, {"health": "great"}, {"progress": 2}, {"status": "open"}, {"health": None})
    for status in bad:
        payload = {"mission_id": "m1", "meta": MISSION_META, "status": status}
        response = fail(store, "HCM_CREATE_MISSION", payload, "INVALID_PAYLOAD")
        fields = [e["field"] for e in response["error"]["details"]["errors"]]
        assert f"payload.status.{next(iter(status))}" in fields, (status, fields)


# --- HCM_GET_MISSION_CONTEXT / HCM_LIST_MISSIONS ---------------------------------------------------


def test_context_gives_meta_status_and_the_last_entries_in_order(store: HcmStore) -> None:
    mission(store)
    for i in range(12):
        note(store, f"n{i}")
    data = context(store)
    assert set(data) == {"mission_id", "meta", "status", "last_journal_entries"}
    assert data["mission_id"] == "m1"
    assert data["meta"] == read_json(store, f"{M1}/meta.json")
    assert data["status"] == read_json(store, f"{M1}/status.json")
    assert [e["message"] for e in data["last_journal_entries"]] == [f"n{i}" for i in range(2, 12)]
    assert [e["message"] for e in context(store, include_last_entries=3)["last_journal_entries"]] == [
        "n9",
        "n10",
        "n11",
    ]
    assert context(store, include_last_entries=0)["last_journal_entries"] == []
    assert len(context(store, include_last_entries=500)["last_journal_entries"]) == 12


def test_context_includes_decisions_and_actions_only_when_asked(store: HcmStore) -> None:
    mission(store)
    dec = decide(store, {"title": "D1"})
    act = actions(store, [{"action_id": None, "title": "A1"}])[0]["action_id"]
    data = context(store, include_decisions=True, include_next_actions=True)
    assert [d["decision_id"] for d in data["decisions"]] == [dec]
    assert [a["action_id"] for a in data["next_actions"]] == [act]
    assert "decisions" not in context(store, include_next_actions=True)
    assert "next_actions" not in context(store, include_decisions=True)


def test_include_last_entries_is_at_most_500(store: HcmStore) -> None:
    mission(store)
    response = fail(
        store,
        "HCM_GET_MISSION_CONTEXT",
        {"mission_id": "m1", "options": {"include_last_entries": 501}},
        "INVALID_PAYLOAD",
    )
    assert "include_last_entries" in json.dumps(response["error"])
    # checked before the mission is looked up: a bad request is a bad request
    fail(
        store,
        "HCM_GET_MISSION_CONTEXT",
        {"mission_id": "nope", "options": {"include_last_entries": 501}},
        "INVALID_PAYLOAD",
    )
    fail(
        store,
        "HCM_GET_MISSION_CONTEXT",
        {"mission_id": "m1", "options": {"include_last_entries": -1}},
        "INVALID_PAYLOAD",
    )


def test_list_missions_and_its_filters(store: HcmStore) -> None:
    mission(store, "m1", client_id="acme")
    mission(store, "m2", client_id="globex", title="Second")
    patch = {"status": "in_progress", "health": "warning", "phase": "design"}
    ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m2", "status": patch})
    rows = ok(store, "HCM_LIST_MISSIONS", {})["data"]["missions"]
    assert rows == [
        {
            "mission_id": "m1",
            "title": "Audit ACME",
            "status": "planned",
            "phase": "init",
            "health": "ok",
            "client_id": "acme",
        },
        {
            "mission_id": "m2",
            "title": "Second",
            "status": "in_progress",
            "phase": "design",
            "health": "warning",
            "client_id": "globex",
        },
    ]
    by_status = ok(store, "HCM_LIST_MISSIONS", {"filters": {"status": "in_progress"}})["data"]["missions"]
    assert [r["mission_id"] for r in by_status] == ["m2"]
    by_client = ok(store, "HCM_LIST_MISSIONS", {"filters": {"client_id": "acme"}})["data"]["missions"]
    assert [r["mission_id"] for r in by_client] == ["m1"]
    assert ok(store, "HCM_LIST_MISSIONS", {"filters": {"client_id": "nobody"}})["data"]["missions"] == []
    # a status no mission can have is a mistake to report, not an empty answer
    bad = store.execute(envelope("HCM_LIST_MISSIONS", {"filters": {"status": "active"}}, AGENT))
    assert bad["error"]["code"] == "INVALID_PAYLOAD" and "in_progress" in bad["error"]["message"]


# --- HCM_APPEND_JOURNAL ----------------------------------------------------------------------------


def test_append_journal_sets_the_timestamp_and_appends_one_line(store: HcmStore) -> None:
    mission(store)
    note(store, "first")
    response = write(
        store,
        "HCM_APPEND_JOURNAL",
        {
            "mission_id": "m1",
            "entry": {**NOTE, "message": "second", "entry_type": "analysis", "context": {"k": [1, 2]}},
        },
        AGENT,
        target="m1",
        mission="m1",
    )
    entry = response["data"]["entry"]
    assert is_iso_utc(entry["timestamp"])
    assert {k: v for k, v in entry.items() if k != "timestamp"} == {
        **NOTE,
        "message": "second",
        "entry_type": "analysis",
        "context": {"k": [1, 2]},
    }
    raw = (hcm_of(store) / M1 / "journal.jsonl").read_bytes()
    lines = raw.split(b"\n")
    assert raw.endswith(b"\n") and len(lines) == 3 and lines[2] == b""
    assert json.loads(lines[0])["message"] == "first"
    assert json.loads(lines[1]) == entry
    assert context(store)["last_journal_entries"][-1] == entry


def test_journal_entries_take_no_client_timestamp(store: HcmStore) -> None:
    mission(store)
    response = fail(
        store,
        "HCM_APPEND_JOURNAL",
        {"mission_id": "m1", "entry": {**NOTE, "timestamp": "2000-01-01T00:00:00Z"}},
        "INVALID_PAYLOAD",
        AGENT,
    )
    assert "payload.entry.timestamp" in [e["field"] for e in response["error"]["details"]["errors"]]


def test_bad_journal_entries_are_invalid(store: HcmStore) -> None:
    mission(store)
    bad = [{"entry_type": "gossip"}, {"author_type": "robot"}, {"message": ""}, {"context": "not an object"}]
    fail_all(
        store,
        "HCM_APPEND_JOURNAL",
        [{"mission_id": "m1", "entry": {**NOTE, **b}} for b in bad],
        "INVALID_PAYLOAD",
        AGENT,
    )


def test_a_journal_line_over_64_kib_is_too_large(store: HcmStore) -> None:
    mission(store)
    big = {**NOTE, "message": "x" * 65_536}
    response = fail(
        store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": big}, "PAYLOAD_TOO_LARGE", AGENT
    )
    assert response["error"]["details"]["limit"] == 64 * 1024
    # a line just under the limit is fine
    note(store, "y" * 60_000)


# --- HCM_ADD_EVIDENCE ------------------------------------------------------------------------------


def test_add_evidence_sets_id_time_and_author_from_the_caller(store: HcmStore) -> None:
    mission(store)
    evidence = {
        "type": "interview_synthesis",
        "title": "Interviews",
        "source": {"origin": "interviews"},
        "confidence": "high",
        "summary": "s",
        "highlights": ["h"],
        "tags": ["t"],
        "attachments": [{"type": "file", "path": "raw/a.pdf"}],
    }
    response = write(
        store,
        "HCM_ADD_EVIDENCE",
        {"mission_id": "m1", "evidence": evidence},
        AGENT,
        target="m1",
        mission="m1",
    )
    data = response["data"]
    assert set(data) == {"evidence_id", "path"}
    assert data["path"] == f"{M1}/evidence/{data['evidence_id']}.json"
    stored = read_json(store, data["path"])
    assert stored["evidence_id"] == data["evidence_id"]
    assert (stored["created_by_type"], stored["created_by_id"]) == ("agent", AGENT["id"])
    assert is_iso_utc(stored["created_at"])
    assert stored["source"] == {"origin": "interviews", "details": ""}
    for key in ("type", "title", "confidence", "summary", "highlights", "tags", "attachments"):
        assert stored[key] == evidence[key]
    second = ok(store, "HCM_ADD_EVIDENCE", {"mission_id": "m1", "evidence": evidence}, AGENT)["data"]
    assert second["evidence_id"] != data["evidence_id"]


def test_evidence_cannot_choose_its_id_or_author(store: HcmStore) -> None:
    mission(store)
    extras = [
        {"evidence_id": "ev-x"},
        {"created_by_id": "someone"},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"confidence": "total"},
    ]
    fail_all(
        store,
        "HCM_ADD_EVIDENCE",
        [{"mission_id": "m1", "evidence": {"type": "t", "title": "T", **x}} for x in extras],
        "INVALID_PAYLOAD",
        AGENT,
    )


# --- HCM_UPDATE_NEXT_ACTIONS -----------------------------------------------------------------------


def test_next_actions_create_and_update(store: HcmStore) -> None:
    mission(store)
    response = write(
        store,
        "HCM_UPDATE_NEXT_ACTIONS",
        {
            "mission_id": "m1",
            "actions": [
                {"action_id": None, "title": "A1", "priority": "high", "due_date": "2026-12-01"},
                {"action_id": None, "title": "A2", "owner_type": "human", "owner_id": "alice"},
            ],
        },
        AGENT,
        target="m1",
        mission="m1",
    )
    created = response["data"]["next_actions"]
    assert [a["title"] for a in created] == ["A1", "A2"]
    assert len({a["action_id"] for a in created}) == 2
    a1 = created[0]
    assert (a1["status"], a1["priority"], a1["due_date"]) == ("todo", "high", "2026-12-01")
    assert is_iso_utc(a1["created_at"]) and a1["updated_at"] == a1["created_at"]
    assert response["data"] == read_json(store, f"{M1}/next_actions.json")

    updated = actions(store, [{"action_id": a1["action_id"], "status": "done", "due_date": None}])
    assert len(updated) == 2
    new_a1 = updated[0]
    assert (new_a1["status"], new_a1["due_date"], new_a1["title"], new_a1["priority"]) == (
        "done",
        None,
        "A1",
        "high",
    )
    assert new_a1["created_at"] == a1["created_at"] and new_a1["updated_at"] > a1["updated_at"]
    assert updated[1] == created[1]


def test_an_unknown_action_id_among_valid_ones_writes_nothing(store: HcmStore) -> None:
    mission(store)
    a1 = actions(store, [{"action_id": None, "title": "A1"}])[0]
    before = read_json(store, f"{M1}/next_actions.json")
    response = fail(
        store,
        "HCM_UPDATE_NEXT_ACTIONS",
        {
            "mission_id": "m1",
            "actions": [
                {"action_id": a1["action_id"], "status": "done"},
                {"action_id": None, "title": "A new one"},
                {"action_id": "act-does-not-exist", "status": "done"},
            ],
        },
        "CONFLICTING_UPDATE",
        AGENT,
    )
    assert response["error"]["details"]["action_id"] == "act-does-not-exist"
    assert read_json(store, f"{M1}/next_actions.json") == before


def test_invalid_next_action_items(store: HcmStore) -> None:
    mission(store)
    a1 = actions(store, [{"action_id": None, "title": "A1"}])[0]["action_id"]
    items = [
        {"action_id": None},  # a new action needs a title
        {"action_id": None, "title": "T", "status": None},
        {"action_id": None, "title": "T", "priority": "urgent"},
        {"action_id": None, "title": "T", "created_at": "2020-01-01"},
        {"action_id": "../x", "status": "done"},
        {"action_id": "ACT-1", "status": "done"},
        {"action_id": "con", "status": "done"},
        {"action_id": a1, "title": None},  # null where the file needs a value
        {"action_id": a1, "status": None},
        {"action_id": a1, "status": "finished"},
    ]
    payloads = [{"mission_id": "m1", "actions": [item]} for item in items]
    fail_all(
        store,
        "HCM_UPDATE_NEXT_ACTIONS",
        [*payloads, {"mission_id": "m1", "actions": []}],
        "INVALID_PAYLOAD",
        AGENT,
    )


# --- HCM_RECORD_DECISION / HCM_GET_DECISIONS -------------------------------------------------------


def test_record_a_decision_and_move_it_forward(store: HcmStore) -> None:
    mission(store)
    response = write(
        store,
        "HCM_RECORD_DECISION",
        {
            "mission_id": "m1",
            "decision": {"title": "Scope", "description": "d", "impacts": ["i"], "related_phase": "cadrage"},
        },
        AGENT,
        target="m1",
        mission="m1",
    )
    dec = response["data"]["decision_id"]
    assert response["data"] == {"decision_id": dec}
    stored = read_json(store, f"{M1}/decisions.json")["decisions"]
    assert len(stored) == 1
    row = stored[0]
    assert (row["decision_id"], row["status"], row["made_by_type"], row["made_by_id"]) == (
        dec,
        "draft",
        "agent",
        AGENT["id"],
    )
    assert is_iso_utc(row["timestamp"]) and row["impacts"] == ["i"] and row["linked_evidence_ids"] == []
    for status in ("proposed", "validated", "deprecated"):
        assert decide(store, {"decision_id": dec, "status": status}) == dec
        assert read_json(store, f"{M1}/decisions.json")["decisions"][0]["status"] == status
    assert read_json(store, f"{M1}/decisions.json")["decisions"][0]["title"] == "Scope"


def test_a_draft_may_be_edited_and_skip_forward(store: HcmStore) -> None:
    mission(store)
    dec = decide(store, {"title": "T"})
    decide(store, {"decision_id": dec, "title": "T2", "description": "more"})
    decide(store, {"decision_id": dec, "status": "validated"})
    row = read_json(store, f"{M1}/decisions.json")["decisions"][0]
    assert (row["title"], row["description"], row["status"]) == ("T2", "more", "validated")


DECISION_RULES: list[tuple[str, dict[str, Any]]] = [
    ("proposed", {"status": "draft"}),  # backward
    ("validated", {"status": "proposed"}),
    ("validated", {"status": "draft"}),
    ("deprecated", {"status": "validated"}),
    ("validated", {"title": "new title"}),  # a validated decision is not edited ...
    ("validated", {"description": "edited", "status": "validated"}),
    ("validated", {"status": "deprecated", "title": "edited while deprecating"}),
    ("validated", {"status": "validated"}),  # ... it only moves to deprecated
    ("deprecated", {"title": "x"}),  # a deprecated one no longer changes
    ("deprecated", {"status": "deprecated", "impacts": ["new"]}),
    ("deprecated", {"status": "deprecated"}),
]


def test_decision_rules_are_enforced_and_write_nothing(store: HcmStore) -> None:
    mission(store)
    for start, change in DECISION_RULES:
        dec = decide(store, {"title": "T", "status": start})
        before = read_json(store, f"{M1}/decisions.json")
        payload = {"mission_id": "m1", "decision": {"decision_id": dec, **change}}
        response = fail(store, "HCM_RECORD_DECISION", payload, "CONFLICTING_UPDATE", AGENT)
        assert response["error"]["details"]["decision_id"] == dec, (start, change)
        assert read_json(store, f"{M1}/decisions.json") == before


def test_invalid_decisions(store: HcmStore) -> None:
    mission(store)
    dec = decide(store, {"title": "T"})
    decisions = [
        {"title": "T", "status": None},
        {"title": "T", "status": "accepted"},
        {"description": "no title"},
        {"title": "T", "made_by_id": "me"},
        {"title": "T", "impacts": "one"},
        {"decision_id": "../x", "status": "proposed"},
        {"decision_id": "D1", "status": "proposed"},
        {"decision_id": "a..b", "status": "proposed"},
        {"decision_id": dec, "status": None},  # null where the file needs a value
        {"decision_id": dec, "title": None},
        {"decision_id": dec, "impacts": None},
    ]
    fail_all(
        store,
        "HCM_RECORD_DECISION",
        [{"mission_id": "m1", "decision": d} for d in decisions],
        "INVALID_PAYLOAD",
        AGENT,
    )


def test_an_unknown_decision_id_is_a_conflict(store: HcmStore) -> None:
    mission(store)
    fail(
        store,
        "HCM_RECORD_DECISION",
        {"mission_id": "m1", "decision": {"decision_id": "dec-nope", "status": "proposed"}},
        "CONFLICTING_UPDATE",
        AGENT,
    )


def test_get_decisions_with_filters(store: HcmStore) -> None:
    mission(store)
    d1 = decide(store, {"title": "A", "related_phase": "cadrage", "status": "validated"})
    d2 = decide(store, {"title": "B", "related_phase": "design"})
    d3 = decide(store, {"title": "C", "related_phase": "cadrage", "status": "proposed"})

    def ids(filters: dict[str, Any]) -> list[str]:
        data = ok(store, "HCM_GET_DECISIONS", {"mission_id": "m1", "filters": filters}, AGENT)["data"]
        return [d["decision_id"] for d in data["decisions"]]

    assert ids({}) == [d1, d2, d3]
    assert ids({"status": "validated"}) == [d1]
    assert ids({"related_phase": "cadrage"}) == [d1, d3]
    assert ids({"related_phase": "cadrage", "status": "proposed"}) == [d3]
    assert ids({"status": "deprecated"}) == []
    all_rows = ok(store, "HCM_GET_DECISIONS", {"mission_id": "m1"})["data"]["decisions"]
    assert all_rows == read_json(store, f"{M1}/decisions.json")["decisions"]
    fail(
        store, "HCM_GET_DECISIONS", {"mission_id": "m1", "filters": {"status": "accepted"}}, "INVALID_PAYLOAD"
    )


# --- HCM_UPDATE_STATUS -----------------------------------------------------------------------------


def test_update_status_merges_a_partial_status(store: HcmStore) -> None:
    mission(store)
    before = read_json(store, f"{M1}/status.json")
    response = write(
        store,
        "HCM_UPDATE_STATUS",
        {
            "mission_id": "m1",
            "status": {
                "phase": "design",
                "progress": 0.5,
                "risks": [{"risk_id": "r1", "severity": "low", "summary": "s", "owner": "bob"}],
            },
        },
        target="m1",
        mission="m1",
    )
    status = response["data"]["status"]
    assert status == read_json(store, f"{M1}/status.json")
    assert (status["phase"], status["progress"], status["status"], status["health"]) == (
        "design",
        0.5,
        "planned",
        "ok",
    )
    assert status["risks"] == [{"risk_id": "r1", "severity": "low", "summary": "s", "owner": "bob"}]
    assert status["last_update"] > before["last_update"]
    ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"health": "at_risk"}})
    assert read_json(store, f"{M1}/status.json")["phase"] == "design"


def test_invalid_status_updates(store: HcmStore) -> None:
    mission(store)
    statuses = [
        {},
        {"progress": 1.5},
        {"progress": -0.1},
        {"health": None},
        {"phase": None},
        {"status": None},
        {"status": "finished"},
        {"last_update": "2020-01-01T00:00:00Z"},
        {"risks": [{"risk_id": "r"}]},
    ]
    fail_all(
        store, "HCM_UPDATE_STATUS", [{"mission_id": "m1", "status": st} for st in statuses], "INVALID_PAYLOAD"
    )


# --- HCM_SNAPSHOT_MISSION --------------------------------------------------------------------------


def test_snapshot_records_status_counts_and_last_journal_time(store: HcmStore) -> None:
    mission(store)
    note(store, "one")
    last = note(store, "two")["data"]["entry"]["timestamp"]
    decide(store, {"title": "D"})
    made = actions(store, [{"action_id": None, "title": "A1"}, {"action_id": None, "title": "A2"}])
    actions(store, [{"action_id": made[0]["action_id"], "status": "done"}])
    ok(store, "HCM_ADD_EVIDENCE", {"mission_id": "m1", "evidence": {"type": "t", "title": "E"}}, AGENT)
    response = write(
        store, "HCM_SNAPSHOT_MISSION", {"mission_id": "m1", "reason": "weekly"}, target="m1", mission="m1"
    )
    data = response["data"]
    assert set(data) == {"snapshot_id", "path"}
    assert data["path"].startswith(f"{M1}/snapshots/") and data["path"].endswith(".snapshot.json")
    snap = read_json(store, data["path"])
    assert snap["snapshot_id"] == data["snapshot_id"] and snap["mission_id"] == "m1"
    assert snap["reason"] == "weekly"
    assert snap["status"] == read_json(store, f"{M1}/status.json")
    assert (
        snap["decisions_count"],
        snap["open_actions_count"],
        snap["evidence_count"],
        snap["journal_entries_count"],
    ) == (1, 1, 1, 2)
    assert snap["last_journal_entry_at"] == last
    again = ok(store, "HCM_SNAPSHOT_MISSION", {"mission_id": "m1"})["data"]
    assert again["path"] != data["path"] and again["snapshot_id"] != data["snapshot_id"]


# --- team ------------------------------------------------------------------------------------------


def test_upsert_and_get_team_members(store: HcmStore) -> None:
    agent = {
        "agent_id": "arka-pmo-01",
        "role": "pmo",
        "display_name": "PMO",
        "capabilities": ["plan"],
        "x_extra": {"kept": True},
    }
    response = write(
        store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "agent", "member": agent}, target="state/team/agents.json"
    )
    member = response["data"]["member"]
    assert {k: member[k] for k in agent} == agent
    assert member["status"] == "active" and member["assigned_missions"] == []
    human = {"human_id": "alice", "display_name": "Alice", "email": "alice@example.com", "role": "pm"}
    write(
        store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "human", "member": human}, target="state/team/humans.json"
    )

    # an update merges: fields not sent are kept
    patch = {"agent_id": "arka-pmo-01", "status": "paused"}
    updated = ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "agent", "member": patch})["data"]["member"]
    assert (updated["status"], updated["role"], updated["capabilities"], updated["x_extra"]) == (
        "paused",
        "pmo",
        ["plan"],
        {"kept": True},
    )

    team = ok(store, "HCM_GET_TEAM", {}, READER)["data"]
    assert set(team) == {"agents", "humans"}
    assert team["agents"] == [updated]
    assert [h["human_id"] for h in team["humans"]] == ["alice"]
    assert team["humans"][0]["email"] == "alice@example.com"
    assert set(ok(store, "HCM_GET_TEAM", {"kind": "agent"})["data"]) == {"agents"}
    assert set(ok(store, "HCM_GET_TEAM", {"kind": "human"})["data"]) == {"humans"}
    assert read_json(store, "state/team/agents.json") == {"agents": team["agents"]}
    raw = (hcm_of(store) / "state/team/agents.json").read_bytes()
    assert raw == canonical_bytes(json.loads(raw))


def test_invalid_team_members(store: HcmStore) -> None:
    cases = [
        ("agent", {"role": "no id"}),
        ("agent", {"agent_id": "Upper"}),
        ("agent", {"agent_id": "../x"}),
        ("agent", {"agent_id": "con"}),
        ("agent", {"agent_id": "a..b"}),
        ("agent", {"agent_id": "a1", "status": "sleeping"}),
        ("agent", {"agent_id": "a1", "capabilities": "all"}),
        ("agent", {"agent_id": 7}),
        ("human", {"agent_id": "a1"}),
        ("human", {"human_id": "h1", "display_name": None}),
        ("robot", {"agent_id": "a1"}),
    ]
    fail_all(store, "HCM_UPSERT_TEAM_MEMBER", [{"kind": k, "member": m} for k, m in cases], "INVALID_PAYLOAD")
    fail(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "agent"}, "INVALID_PAYLOAD")


# --- documents -------------------------------------------------------------------------------------


def test_put_and_get_a_document_round_trip_with_canonical_bytes(store: HcmStore) -> None:
    content = {"terms": [{"term": "HCM", "définition": "mémoire"}], "a": 1.5, "z": None, "b": True}
    response = write(
        store,
        "HCM_PUT_DOCUMENT",
        {"path": "stable/glossary/core.json", "content": content},
        ADMIN,
        target="stable/glossary/core.json",
    )
    assert response["data"] == {"path": "stable/glossary/core.json", "content": content}
    raw = (hcm_of(store) / "stable/glossary/core.json").read_bytes()
    assert (
        raw
        == (
            '{\n  "a": 1.5,\n  "b": true,\n  "terms": [\n    {\n      "définition": "mémoire",\n'
            '      "term": "HCM"\n    }\n  ],\n  "z": null\n}\n'
        ).encode()
    )
    got = ok(store, "HCM_GET_DOCUMENT", {"path": "stable/glossary/core.json"}, AGENT)["data"]
    assert got == {"path": "stable/glossary/core.json", "content": content}
    # overwrite, in domain/ and hindex/ too
    ok(store, "HCM_PUT_DOCUMENT", {"path": "stable/glossary/core.json", "content": [1, 2]}, ADMIN)
    assert ok(store, "HCM_GET_DOCUMENT", {"path": "stable/glossary/core.json"})["data"]["content"] == [1, 2]
    write(
        store,
        "HCM_PUT_DOCUMENT",
        {"path": "domain/org/profile.json", "content": {"name": "ACME"}},
        ADMIN,
        target="domain/org/profile.json",
    )
    write(
        store,
        "HCM_PUT_DOCUMENT",
        {"path": "hindex/sources/extra.json", "content": {"sources": []}},
        ADMIN,
        target="hindex/sources/extra.json",
    )


def test_get_a_missing_document_is_not_found(store: HcmStore) -> None:
    fail(store, "HCM_GET_DOCUMENT", {"path": "stable/glossary/none.json"}, "NOT_FOUND")


BAD_DOCUMENT_PATHS = [
    "state/missions/m1/meta.json",
    "state/team/agents.json",
    "meta.json",
    "other/x.json",
    "stable/x.txt",
    "stable",
    "stable/",
    ".git/config",
    "stable/.git/config.json",
    "stable/.GIT/x.json",
    "domain/.git/x.json",
    "stable/.git",
    "hindex/.git./x.json",
    "stable/../meta.json",
    "/stable/x.json",
    "stable//x.json",
    "stable\\x.json",
    "stable/./x.json",
    "stable/x\x00.json",
]


def test_documents_live_only_under_stable_domain_hindex(store: HcmStore) -> None:
    fail_all(
        store,
        "HCM_PUT_DOCUMENT",
        [{"path": p, "content": {"x": 1}} for p in BAD_DOCUMENT_PATHS],
        "INVALID_PAYLOAD",
        ADMIN,
    )
    fail_all(store, "HCM_GET_DOCUMENT", [{"path": p} for p in BAD_DOCUMENT_PATHS], "INVALID_PAYLOAD")


def test_a_null_document_is_a_document_and_a_folder_is_not(store: HcmStore) -> None:
    ok(store, "HCM_PUT_DOCUMENT", {"path": "stable/empty.json", "content": None}, ADMIN)
    assert (hcm_of(store) / "stable/empty.json").read_bytes() == b"null\n"
    got = ok(store, "HCM_GET_DOCUMENT", {"path": "stable/empty.json"})["data"]
    assert got == {"path": "stable/empty.json", "content": None}
    ok(store, "HCM_PUT_DOCUMENT", {"path": "stable/dir.json/inner.json", "content": {}}, ADMIN)
    fail(store, "HCM_PUT_DOCUMENT", {"path": "stable/dir.json", "content": {}}, "INVALID_PAYLOAD", ADMIN)
    fail(store, "HCM_GET_DOCUMENT", {"path": "stable/dir.json"}, "NOT_FOUND")
    fail(store, "HCM_PUT_DOCUMENT", {"path": "stable/Empty.json", "content": {}}, "INVALID_PAYLOAD", ADMIN)


def test_nan_in_a_python_envelope_is_invalid_not_internal(store: HcmStore) -> None:
    """execute() takes Python dicts (CLI, tests, embedding) that never went through the strict JSON
    parser; NaN / Infinity are not JSON and must be a bad payload, not an INTERNAL_ERROR."""
    mission(store)
    fail(
        store,
        "HCM_PUT_DOCUMENT",
        {"path": "stable/x.json", "content": float("nan")},
        "INVALID_PAYLOAD",
        ADMIN,
    )
    bad_note = {**NOTE, "context": {"score": float("inf")}}
    fail(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": bad_note}, "INVALID_PAYLOAD", AGENT)


def test_new_ids_never_reuse_an_existing_one(tmp_path: Path, new_template: Path) -> None:
    """Ids are random in production and injected in tests; either way a new action, decision or
    evidence must not take the id of an existing one (HCM v1 holds act-0001 / dec-0001)."""
    s = open_store(copy_client(new_template, tmp_path / "c"), ids=itertools.repeat(7))
    try:
        mission(s)
        first = actions(s, [{"action_id": None, "title": "A"}])[0]["action_id"]
        assert first == "act-0007"
        fail(
            s,
            "HCM_UPDATE_NEXT_ACTIONS",
            {"mission_id": "m1", "actions": [{"action_id": None, "title": "B"}]},
            "CONFLICTING_UPDATE",
            AGENT,
        )
        assert decide(s, {"title": "D"}) == "dec-0007"
        fail(
            s,
            "HCM_RECORD_DECISION",
            {"mission_id": "m1", "decision": {"title": "E"}},
            "CONFLICTING_UPDATE",
            AGENT,
        )
        evidence = {"mission_id": "m1", "evidence": {"type": "t", "title": "T"}}
        assert ok(s, "HCM_ADD_EVIDENCE", evidence, AGENT)["data"]["evidence_id"] == "ev-0007"
        fail(s, "HCM_ADD_EVIDENCE", evidence, "CONFLICTING_UPDATE", AGENT)
    finally:
        s.close()
    counter = itertools.chain([7, 7, 7], itertools.count(8))
    s = open_store(copy_client(new_template, tmp_path / "d"), ids=counter)
    try:
        mission(s)
        actions(s, [{"action_id": None, "title": "A"}])
        made = actions(s, [{"action_id": None, "title": "B"}, {"action_id": None, "title": "C"}])
        assert [a["action_id"] for a in made] == ["act-0007", "act-0008", "act-0009"]
    finally:
        s.close()


def test_a_document_over_the_limit_is_too_large(store: HcmStore) -> None:
    fail(
        store,
        "HCM_PUT_DOCUMENT",
        {"path": "stable/big.json", "content": {"x": "y" * 600_000}},
        "PAYLOAD_TOO_LARGE",
        ADMIN,
    )


# --- errors common to every operation --------------------------------------------------------------

MISSION_OPS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("HCM_GET_MISSION_CONTEXT", {}, HUMAN),
    ("HCM_APPEND_JOURNAL", {"entry": NOTE}, AGENT),
    ("HCM_ADD_EVIDENCE", {"evidence": {"type": "t", "title": "T"}}, AGENT),
    ("HCM_UPDATE_NEXT_ACTIONS", {"actions": [{"action_id": None, "title": "A"}]}, AGENT),
    ("HCM_RECORD_DECISION", {"decision": {"title": "D"}}, AGENT),
    ("HCM_GET_DECISIONS", {}, HUMAN),
    ("HCM_UPDATE_STATUS", {"status": {"phase": "p"}}, HUMAN),
    ("HCM_SNAPSHOT_MISSION", {}, HUMAN),
    ("HCM_DAY_ROLLUP", {"date": "2026-11-26"}, HUMAN),
    ("HCM_PREPARE_DAY_CONTEXT", {"date": "2026-11-26"}, HUMAN),
    ("HCM_ROTATE_JOURNAL", {"before": "2026-11-26"}, HUMAN),
]


def test_unknown_mission_is_mission_not_found(store: HcmStore) -> None:
    mission(store)
    for op, payload, caller in MISSION_OPS:
        response = fail(store, op, {"mission_id": "m2", **payload}, "MISSION_NOT_FOUND", caller)
        assert response["error"]["details"]["mission_id"] == "m2", op


BAD_IDS = ["../x", "M1", "con", "a..b", "nul.json", "Com1", "m1/", "", "-m", "m-", "m 1", "m1\n", "m" * 129]


def test_bad_mission_ids_are_invalid(store: HcmStore) -> None:
    for op, payload, caller in [("HCM_CREATE_MISSION", {"meta": MISSION_META}, HUMAN), *MISSION_OPS]:
        for bad_id in BAD_IDS:
            response = fail(store, op, {"mission_id": bad_id, **payload}, "INVALID_PAYLOAD", caller)
            fields = [e["field"] for e in response["error"]["details"]["errors"]]
            assert "payload.mission_id" in fields, (op, bad_id)


def test_an_unknown_op_is_invalid(store: HcmStore) -> None:
    response = fail(store, "HCM_DELETE_EVERYTHING", {}, "INVALID_PAYLOAD")
    assert response["error"]["details"] == {"field": "op"}
    assert response["op"] == "HCM_DELETE_EVERYTHING"


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"mision_id": "m1", "meta": MISSION_META}, "payload.mision_id"),
        ({"mission_id": "m1", "meta": {**MISSION_META, "colour": "red"}}, "payload.meta.colour"),
        ({"mission_id": "m1", "meta": MISSION_META, "force": True}, "payload.force"),
    ],
)
def test_an_unknown_payload_field_is_invalid_and_named(
    store: HcmStore, payload: dict[str, Any], field: str
) -> None:
    response = fail(store, "HCM_CREATE_MISSION", payload, "INVALID_PAYLOAD")
    assert field in [e["field"] for e in response["error"]["details"]["errors"]]
    assert field in response["error"]["message"]


def test_unknown_fields_of_reads_are_invalid_too(store: HcmStore) -> None:
    mission(store)
    response = fail(
        store,
        "HCM_GET_MISSION_CONTEXT",
        {"mission_id": "m1", "options": {"include_last": 3}},
        "INVALID_PAYLOAD",
    )
    assert "payload.options.include_last" in [e["field"] for e in response["error"]["details"]["errors"]]


# --- access ----------------------------------------------------------------------------------------


def _write_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """A valid payload and an allowed caller for every write op (mission m1 exists)."""
    return [
        ("HCM_CREATE_MISSION", {"mission_id": "m2", "meta": MISSION_META}, HUMAN),
        ("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": NOTE}, AGENT),
        ("HCM_ADD_EVIDENCE", {"mission_id": "m1", "evidence": {"type": "t", "title": "T"}}, AGENT),
        (
            "HCM_UPDATE_NEXT_ACTIONS",
            {"mission_id": "m1", "actions": [{"action_id": None, "title": "A"}]},
            AGENT,
        ),
        ("HCM_RECORD_DECISION", {"mission_id": "m1", "decision": {"title": "D"}}, AGENT),
        ("HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"phase": "p2"}}, HUMAN),
        ("HCM_SNAPSHOT_MISSION", {"mission_id": "m1", "reason": "r"}, HUMAN),
        ("HCM_DAY_ROLLUP", {"mission_id": "m1", "date": "2026-11-26"}, HUMAN),
        ("HCM_ROTATE_JOURNAL", {"mission_id": "m1", "before": "2026-11-27"}, HUMAN),
        ("HCM_UPSERT_TEAM_MEMBER", {"kind": "agent", "member": {"agent_id": "a1", "role": "x"}}, HUMAN),
        ("HCM_PUT_DOCUMENT", {"path": "stable/glossary/g.json", "content": {"v": 1}}, ADMIN),
    ]


WRITE_CASES = _write_cases()
WRITE_IDS = [c[0] for c in WRITE_CASES]


def test_a_reader_cannot_write(store: HcmStore) -> None:
    mission(store)
    note(store, "x")
    for op, payload, _allowed in WRITE_CASES:
        fail_all(store, op, [payload], "ACCESS_DENIED", READER)
        fail_all(store, op, [payload], "ACCESS_DENIED", {"type": "human", "id": "nobody", "roles": []})


def test_agents_write_only_journal_evidence_actions_decisions(store: HcmStore) -> None:
    mission(store)
    denied = [(op, payload) for op, payload, allowed in WRITE_CASES if allowed is not AGENT]
    assert [op for op, _ in denied] == [
        "HCM_CREATE_MISSION",
        "HCM_UPDATE_STATUS",
        "HCM_SNAPSHOT_MISSION",
        "HCM_DAY_ROLLUP",
        "HCM_ROTATE_JOURNAL",
        "HCM_UPSERT_TEAM_MEMBER",
        "HCM_PUT_DOCUMENT",
    ]
    for op, payload in denied:
        fail_all(store, op, [payload], "ACCESS_DENIED", AGENT)
        fail_all(store, op, [payload], "ACCESS_DENIED", {**AGENT, "roles": ["writer", "admin"]})


def test_only_admins_put_documents(store: HcmStore) -> None:
    payload = {"path": "stable/glossary/g.json", "content": {"v": 1}}
    fail(store, "HCM_PUT_DOCUMENT", payload, "ACCESS_DENIED", HUMAN)
    system_writer = {"type": "system", "id": "cron", "roles": ["writer"]}
    fail(store, "HCM_PUT_DOCUMENT", payload, "ACCESS_DENIED", system_writer)
    ok(store, "HCM_PUT_DOCUMENT", payload, {"type": "system", "id": "cron", "roles": ["admin"]})


def test_readers_and_agents_may_read(store: HcmStore) -> None:
    mission(store)
    for caller in (READER, AGENT):
        ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"}, caller)
        ok(store, "HCM_LIST_MISSIONS", {}, caller)
        ok(store, "HCM_GET_DECISIONS", {"mission_id": "m1"}, caller)
        ok(store, "HCM_PREPARE_DAY_CONTEXT", {"mission_id": "m1", "date": "2026-11-26"}, caller)
        ok(store, "HCM_GET_TEAM", {}, caller)
        ok(store, "HCM_GET_DOCUMENT", {"path": "stable/glossary/README.json"}, caller)


# --- idempotency -----------------------------------------------------------------------------------


def _other(op: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A different payload for the same op (same target)."""
    changed = json.loads(json.dumps(payload))
    if op == "HCM_CREATE_MISSION":
        changed["meta"]["title"] = "Other title"
    elif op == "HCM_APPEND_JOURNAL":
        changed["entry"]["message"] = "other"
    elif op == "HCM_ADD_EVIDENCE":
        changed["evidence"]["title"] = "Other"
    elif op == "HCM_UPDATE_NEXT_ACTIONS":
        changed["actions"][0]["title"] = "Other"
    elif op == "HCM_RECORD_DECISION":
        changed["decision"]["title"] = "Other"
    elif op == "HCM_UPDATE_STATUS":
        changed["status"]["phase"] = "p3"
    elif op == "HCM_SNAPSHOT_MISSION":
        changed["reason"] = "other"
    elif op == "HCM_DAY_ROLLUP":
        changed["date"] = "2026-11-25"
    elif op == "HCM_ROTATE_JOURNAL":
        changed["before"] = "2026-11-28"
    elif op == "HCM_UPSERT_TEAM_MEMBER":
        changed["member"]["role"] = "other"
    elif op == "HCM_PUT_DOCUMENT":
        changed["content"] = {"v": 2}
    assert changed != payload
    return changed


@pytest.mark.parametrize("op,payload,caller", WRITE_CASES, ids=WRITE_IDS)
def test_every_write_replays_its_first_answer(
    store: HcmStore, op: str, payload: dict[str, Any], caller: dict[str, Any]
) -> None:
    hcm = hcm_of(store)
    mission(store)
    note(store, "before")
    first = ok(store, op, payload, caller, request_id=f"idem-{op}")
    assert "replayed" not in first

    # another write of the same kind changes what a replay could wrongly re-read from the tip
    later = _other(op, payload)
    if op == "HCM_CREATE_MISSION":
        later["mission_id"] = "m3"
    ok(store, op, later, caller)
    note(store, "after")
    count, tip, files = commit_count(hcm), head(store), files_of(hcm)

    again = store.execute(envelope(op, payload, caller, f"idem-{op}"))
    assert again["status"] == "ok", again
    assert again["replayed"] is True
    assert again["data"] == first["data"]
    assert again["revision"] == first["revision"]
    assert (commit_count(hcm), head(store), files_of(hcm)) == (count, tip, files)

    mismatch = fail(store, op, _other(op, payload), "IDEMPOTENCY_MISMATCH", caller, request_id=f"idem-{op}")
    assert mismatch["error"]["details"]["revision"] == first["revision"]
    clean(store)


def test_same_request_id_from_another_caller_is_a_mismatch(store: HcmStore) -> None:
    mission(store)
    ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": NOTE}, AGENT, request_id="r-shared")
    other = {"type": "agent", "id": "other-agent", "roles": ["writer"]}
    fail(
        store,
        "HCM_APPEND_JOURNAL",
        {"mission_id": "m1", "entry": NOTE},
        "IDEMPOTENCY_MISMATCH",
        other,
        request_id="r-shared",
    )
    fail(
        store,
        "HCM_UPDATE_STATUS",
        {"mission_id": "m1", "status": {"phase": "x"}},
        "IDEMPOTENCY_MISMATCH",
        request_id="r-shared",
    )


def test_a_failed_write_does_not_burn_its_request_id(store: HcmStore) -> None:
    fail(
        store,
        "HCM_APPEND_JOURNAL",
        {"mission_id": "m1", "entry": NOTE},
        "MISSION_NOT_FOUND",
        AGENT,
        request_id="r-retry",
    )
    mission(store)
    first = ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": NOTE}, AGENT, request_id="r-retry")
    assert "replayed" not in first


# --- reads at a point of history ------------------------------------------------------------------


def test_reads_at_a_revision_a_time_and_head_minus_one(store: HcmStore) -> None:
    hcm = hcm_of(store)
    mission(store)
    rev1 = ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"phase": "one"}})["revision"]
    ok(store, "HCM_PUT_DOCUMENT", {"path": "stable/glossary/g.json", "content": {"v": 1}}, ADMIN)
    ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "agent", "member": {"agent_id": "a1"}})
    decide(store, {"title": "D"})
    actions(store, [{"action_id": None, "title": "A", "priority": "high"}])
    rev2 = ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"phase": "two"}})["revision"]
    mission(store, "m2")
    time1 = git(hcm, "log", "-1", "--format=%cI", rev1).strip()
    time2 = git(hcm, "log", "-1", "--format=%cI", rev2).strip()
    assert time1 < time2

    def phase(at: str) -> tuple[str, str]:
        response = ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1", "at": at})
        return response["data"]["status"]["phase"], response["revision"]

    assert phase(rev1) == ("one", rev1)
    assert phase(rev1[:10]) == ("one", rev1)
    assert phase(time1) == ("one", rev1)
    assert phase(time1.replace("+00:00", "Z")) == ("one", rev1)
    assert phase(rev2) == ("two", rev2)
    assert phase("HEAD~1") == ("two", rev2)
    assert phase("HEAD")[0] == "two"

    # every read that takes `at` answers as of that commit
    at1 = {"at": rev1}

    def listed(at: dict[str, str]) -> list[str]:
        return [m["mission_id"] for m in ok(store, "HCM_LIST_MISSIONS", at)["data"]["missions"]]

    assert listed(at1) == ["m1"]
    assert listed({"at": "HEAD~1"}) == ["m1"]
    assert len(ok(store, "HCM_LIST_MISSIONS", {})["data"]["missions"]) == 2
    assert ok(store, "HCM_GET_DECISIONS", {"mission_id": "m1", **at1})["data"]["decisions"] == []
    assert len(ok(store, "HCM_GET_DECISIONS", {"mission_id": "m1", "at": rev2})["data"]["decisions"]) == 1
    assert ok(store, "HCM_GET_TEAM", at1)["data"]["agents"] == []
    assert len(ok(store, "HCM_GET_TEAM", {"at": rev2})["data"]["agents"]) == 1
    fail(store, "HCM_GET_DOCUMENT", {"path": "stable/glossary/g.json", **at1}, "NOT_FOUND")
    doc = ok(store, "HCM_GET_DOCUMENT", {"path": "stable/glossary/g.json", "at": rev2})["data"]
    assert doc["content"] == {"v": 1}
    day = {"mission_id": "m1", "date": "2026-11-26"}
    assert ok(store, "HCM_PREPARE_DAY_CONTEXT", {**day, **at1})["data"]["day_context"]["open_actions"] == []
    later = ok(store, "HCM_PREPARE_DAY_CONTEXT", {**day, "at": rev2})["data"]["day_context"]
    assert len(later["open_actions"]) == 1
    # a mission that did not exist yet
    fail(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m2", "at": rev2}, "MISSION_NOT_FOUND")


def test_an_unknown_at_is_not_found(store: HcmStore) -> None:
    mission(store)
    unknown = [
        "deadbeef",
        "0" * 40,
        "HEAD~50",
        "no-such-snapshot",
        "2020-01-01",
        "2020-01-01T00:00:00Z",
        "yesterday!",
        "main~1000",
        "2026-13-45",
    ]
    fail_all(
        store, "HCM_GET_MISSION_CONTEXT", [{"mission_id": "m1", "at": at} for at in unknown], "NOT_FOUND"
    )
    fail_all(store, "HCM_LIST_MISSIONS", [{"at": at} for at in unknown], "NOT_FOUND")
    fail_all(store, "HCM_GET_TEAM", [{"at": at} for at in unknown], "NOT_FOUND")
