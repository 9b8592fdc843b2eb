"""Inputs at the edges (issue 10 §3-§5): what a caller may name, how much a refused request costs,
and who an entry is by. Each test fails on the code before the fix."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.config import Settings
from arka_git_hcm.domain.envelope import Caller
from arka_git_hcm.services.store import HcmStore

from .conftest import ADMIN, AGENT, HUMAN, READER, commit_count, create_mission, envelope, git, journal, ok

NOTE = {"entry_type": "note", "message": "hello"}


def error_of(store: HcmStore, op: str, payload: dict[str, Any], caller: dict[str, Any] | None = None) -> Any:
    response = store.execute(envelope(op, payload, caller))
    assert response["status"] == "error", response
    return response["error"]


# --- revisions: only the HCM's own history ------------------------------------------------------


def commit_outside_history(hcm: Path) -> str:
    """A commit in the object database that no ref of the HCM reaches: made on another branch
    with plain git, then the branch deleted (its objects stay until git prunes them)."""
    git(hcm, "checkout", "-q", "-b", "side")
    (hcm / "side.json").write_text("{}\n")
    git(hcm, "add", "side.json")
    git(hcm, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "--no-verify", "-m", "side")
    side = git(hcm, "rev-parse", "HEAD").strip()
    git(hcm, "checkout", "-q", "main")
    git(hcm, "branch", "-q", "-D", "side")
    return side


def test_at_from_to_and_rollback_accept_only_commits_of_the_hcm_history(
    store: HcmStore, settings: Settings
) -> None:
    create_mission(store)
    first = journal(store, "first")["revision"]
    store.close()
    side = commit_outside_history(settings.hcm_path)
    with HcmStore.open(settings) as reopened:
        for prefix in (side, side[:7]):
            err = error_of(reopened, "HCM_LIST_MISSIONS", {"at": prefix})
            assert err["code"] == "NOT_FOUND"
            assert error_of(reopened, "HCM_DIFF", {"from": prefix})["code"] == "NOT_FOUND"
            assert error_of(reopened, "HCM_ROLLBACK", {"target": prefix}, ADMIN)["code"] == "NOT_FOUND"
        blob = git(settings.hcm_path, "rev-parse", "HEAD:meta.json").strip()
        assert error_of(reopened, "HCM_LIST_MISSIONS", {"at": blob[:8]})["code"] == "NOT_FOUND"
        # the HCM's own commits still work, by id, prefix, HEAD~N and snapshot names
        assert ok(reopened, "HCM_LIST_MISSIONS", {"at": first[:8]})["revision"] == first
        assert ok(reopened, "HCM_LIST_MISSIONS", {"at": "HEAD"})["revision"] == first
        assert ok(reopened, "HCM_LIST_MISSIONS", {"at": "HEAD~1"})["revision"] != first


def test_a_snapshot_is_accepted_by_name_and_by_its_tag_name(store: HcmStore) -> None:
    create_mission(store)
    snap = ok(store, "HCM_SNAPSHOT_MISSION", {"mission_id": "m1"})
    journal(store, "after the snapshot")
    name = snap["data"]["snapshot_id"]
    for at in (name, f"snapshot/{name}"):
        assert ok(store, "HCM_LIST_MISSIONS", {"at": at})["revision"] == snap["revision"]


# --- dates at the edges: 400, never 500 -----------------------------------------------------------


EDGE_DATES = ["0001-01-01", "9999-12-31", "9999-12-31T23:00:00-23:59", "0001-01-01T00:30:00+23:59"]


@pytest.mark.parametrize("moment", EDGE_DATES)
def test_dates_at_the_edges_are_invalid_payloads(store: HcmStore, moment: str) -> None:
    create_mission(store)
    day = moment[:10]
    assert error_of(store, "HCM_LIST_MISSIONS", {"at": moment})["code"] == "INVALID_PAYLOAD"
    assert error_of(store, "HCM_HISTORY", {"since": moment})["code"] == "INVALID_PAYLOAD"
    for op, payload in (
        ("HCM_DAY_ROLLUP", {"mission_id": "m1", "date": day}),
        ("HCM_PREPARE_DAY_CONTEXT", {"mission_id": "m1", "date": day}),
        ("HCM_ROTATE_JOURNAL", {"mission_id": "m1", "before": day}),
    ):
        assert error_of(store, op, payload)["code"] == "INVALID_PAYLOAD", op


# --- who an entry is by --------------------------------------------------------------------------


def test_an_agent_or_a_person_writes_journal_entries_only_as_itself(store: HcmStore) -> None:
    create_mission(store)
    before = commit_count(store.settings.hcm_path)
    forged = {"author_type": "human", "author_id": "ceo", **NOTE}
    err = error_of(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": forged}, AGENT)
    assert err["code"] == "ACCESS_DENIED" and "only as itself" in err["message"]
    other_agent = {"author_type": "agent", "author_id": "someone-else", **NOTE}
    err = error_of(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": other_agent}, HUMAN)
    assert err["code"] == "ACCESS_DENIED"
    assert commit_count(store.settings.hcm_path) == before
    # omitted: the caller's own identity
    entry = ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": NOTE}, AGENT)["data"]["entry"]
    assert (entry["author_type"], entry["author_id"]) == ("agent", "arka-pmo-01")


def test_the_system_caller_names_whom_it_writes_for(store: HcmStore) -> None:
    create_mission(store)
    system = {"type": "system", "id": "arka-os", "roles": ["writer"]}
    on_behalf = {"author_type": "human", "author_id": "bob", **NOTE}
    entry = ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": on_behalf}, system)["data"]["entry"]
    assert (entry["author_type"], entry["author_id"]) == ("human", "bob")


# --- refused requests are cheap and are logged bounded, under the token's identity -----------------


def test_a_refused_envelope_is_logged_bounded_and_as_the_token_not_the_claimed_caller(
    store: HcmStore, settings: Settings
) -> None:
    log = settings.log_path / "operations.jsonl"
    create_mission(store)
    token = Caller(type="human", id="viewer", roles=["reader"])
    huge = "r" * 1_000_000
    for _ in range(66):
        body = {"op": "HCM_LIST_MISSIONS", "request_id": huge, "caller": {"type": "system", "id": "sysadmin"}}
        response = store.execute(json.dumps({**body, "payload": {}}).encode(), caller=token)
        assert response["status"] == "error" and response["request_id"] is None
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["op"] == "HCM_CREATE_MISSION"  # nothing earlier was rolled away
    refused = records[-66:]
    assert all(r["caller"] == "human/viewer" and r["request_id"] is None for r in refused)
    assert max(len(line) for line in log.read_text().splitlines()) < 600


def test_many_unknown_keys_are_refused_early_with_a_bounded_answer(store: HcmStore) -> None:
    payload = {f"{i:x}": 1 for i in range(90_000)}  # just under the 1 MiB envelope limit
    started = time.perf_counter()
    response = store.execute(envelope("HCM_LIST_MISSIONS", payload, READER))
    elapsed = time.perf_counter() - started
    assert response["error"]["code"] == "INVALID_PAYLOAD"
    assert len(json.dumps(response)) < 10_000
    assert "90000 unknown fields" in response["error"]["message"]
    assert elapsed < 5  # generous: the old path took ~1 s of pure validation plus a 7.6 MB answer


def test_errors_are_listed_up_to_twenty_and_the_rest_counted(store: HcmStore) -> None:
    create_mission(store)
    actions = [{"action_id": None, "title": "", "priority": "urgent"} for _ in range(30)]
    response = store.execute(envelope("HCM_UPDATE_NEXT_ACTIONS", {"mission_id": "m1", "actions": actions}))
    details = response["error"]["details"]
    assert len(details["errors"]) == 20 and details["more_errors"] == 40


def test_role_grants_are_read_with_the_strict_parser(store: HcmStore) -> None:
    """A grants file with a duplicate key is malformed: it grants nothing (json.loads took the
    last value, a smuggling vector between the validator and the reader)."""
    bad = b'{"rules": {"role_grants": {"human/viewer": ["reader"], "human/viewer": ["admin"]}}}\n'
    hcm = store.settings.hcm_path
    (hcm / "hindex/meta_rules.json").write_bytes(bad)
    git(hcm, "add", "hindex/meta_rules.json")
    git(hcm, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "--no-verify", "-m", "grants")
    doc = {"path": "stable/glossary/x.json", "content": {}}
    err = error_of(store, "HCM_PUT_DOCUMENT", doc, {"type": "human", "id": "viewer", "roles": ["writer"]})
    assert err["code"] == "ACCESS_DENIED"
