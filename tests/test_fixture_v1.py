"""The HCM v1 fixture (an HCM written by the earlier TypeScript implementation): init adopts it as
it is, every read works on it, and writes keep what they do not touch."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from arka_git_hcm.services.store import HcmStore

from .conftest import ADMIN, AGENT, FIXTURE_HCM, HUMAN, READER, commit_count, ok
from .test_ops import (
    clean,
    fail,
    files_of,
    git_commit_file,
    hcm_of,
    read_json,
    write,
)

MID = "example-tenant-discovery-001"
MDIR = f"state/missions/{MID}"
FIXTURE_FILES = files_of(FIXTURE_HCM)


def fixture_json(rel: str) -> Any:
    return json.loads(FIXTURE_FILES[rel])


def includes(loaded: dict[str, Any], original: dict[str, Any]) -> bool:
    """Every field of the file, with its value, is in what the store answered."""
    return all(key in loaded and loaded[key] == value for key, value in original.items())


# --- adoption ---------------------------------------------------------------------------------------


def test_init_adopts_every_file_byte_for_byte_in_one_commit(fixture_store: HcmStore) -> None:
    hcm = hcm_of(fixture_store)
    assert len(FIXTURE_FILES) == 55
    assert commit_count(hcm) == 1
    listed = (
        subprocess.run(
            ["git", "ls-tree", "-r", "-z", "--format=%(objectname) %(path)", "HEAD"],
            cwd=hcm,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip("\0")
        .split("\0")
    )
    blobs = {path: blob for blob, path in (entry.split(" ", 1) for entry in listed)}
    assert sorted(blobs) == sorted(FIXTURE_FILES)
    batch = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=hcm,
        check=True,
        capture_output=True,
        input="".join(f"{blobs[p]}\n" for p in sorted(blobs)).encode(),
    ).stdout
    for path in sorted(blobs):
        header, _, rest = batch.partition(b"\n")
        size = int(header.split()[2])
        assert rest[:size] == FIXTURE_FILES[path], path
        batch = rest[size + 1 :]
    subject = subprocess.run(
        ["git", "log", "-1", "--format=%s"], cwd=hcm, capture_output=True, text=True
    ).stdout
    assert subject.startswith("HCM_INIT ") and "55 files" in subject
    assert files_of(hcm) == FIXTURE_FILES
    clean(fixture_store)


# --- every read -------------------------------------------------------------------------------------


def test_mission_context_on_the_v1_mission(fixture_store: HcmStore) -> None:
    data = ok(
        fixture_store,
        "HCM_GET_MISSION_CONTEXT",
        {
            "mission_id": MID,
            "options": {"include_last_entries": 500, "include_decisions": True, "include_next_actions": True},
        },
        READER,
    )["data"]
    assert includes(data["meta"], fixture_json(f"{MDIR}/meta.json"))
    assert includes(data["status"], fixture_json(f"{MDIR}/status.json"))
    lines = [json.loads(x) for x in FIXTURE_FILES[f"{MDIR}/journal.jsonl"].split(b"\n") if x.strip()]
    assert len(lines) == 4  # the blank line is not an entry
    assert data["last_journal_entries"] == lines  # including the one with keys in another order
    assert data["last_journal_entries"][-1]["message"] == "Entrée de journal de test"
    assert data["decisions"] == fixture_json(f"{MDIR}/decisions.json")["decisions"]
    original = fixture_json(f"{MDIR}/next_actions.json")["next_actions"]
    assert [a["action_id"] for a in data["next_actions"]] == ["act-0001", "act-0002", "act-a0229b04"]
    assert all(includes(a, o) for a, o in zip(data["next_actions"], original, strict=True))
    last2 = ok(
        fixture_store,
        "HCM_GET_MISSION_CONTEXT",
        {"mission_id": MID, "options": {"include_last_entries": 2}},
        AGENT,
    )["data"]
    assert last2["last_journal_entries"] == lines[-2:]


def test_list_decisions_team_on_the_v1_hcm(fixture_store: HcmStore) -> None:
    missions = ok(fixture_store, "HCM_LIST_MISSIONS", {}, READER)["data"]["missions"]
    assert missions == [
        {
            "mission_id": MID,
            "title": "Programme de découverte Example Tenant",
            "status": "in_progress",
            "phase": "design",
            "health": "at_risk",
            "client_id": "example-tenant",
        }
    ]
    assert ok(fixture_store, "HCM_LIST_MISSIONS", {"filters": {"status": "done"}})["data"]["missions"] == []

    def decision_ids(filters: dict[str, Any]) -> list[str]:
        data = ok(fixture_store, "HCM_GET_DECISIONS", {"mission_id": MID, "filters": filters})["data"]
        return [d["decision_id"] for d in data["decisions"]]

    assert decision_ids({}) == ["dec-0001"]
    assert decision_ids({"status": "validated", "related_phase": "cadrage"}) == ["dec-0001"]
    assert decision_ids({"status": "draft"}) == []

    team = ok(fixture_store, "HCM_GET_TEAM", {}, AGENT)["data"]
    agents = fixture_json("state/team/agents.json")["agents"]
    humans = fixture_json("state/team/humans.json")["humans"]
    assert [a["agent_id"] for a in team["agents"]] == ["LDHC-AGPR"]
    assert all(includes(a, o) for a, o in zip(team["agents"], agents, strict=True))
    assert all(includes(h, o) for h, o in zip(team["humans"], humans, strict=True))


def test_every_v1_document_reads_back_as_its_file(fixture_store: HcmStore) -> None:
    documents = [p for p in FIXTURE_FILES if p.split("/")[0] in ("stable", "domain", "hindex")]
    assert len(documents) == 41
    for path in documents:
        data = ok(fixture_store, "HCM_GET_DOCUMENT", {"path": path}, READER)["data"]
        assert data == {"path": path, "content": fixture_json(path)}, path


def test_day_context_on_the_v1_mission(fixture_store: HcmStore) -> None:
    def day_context(day: str) -> dict[str, Any]:
        payload = {"mission_id": MID, "date": day}
        return ok(fixture_store, "HCM_PREPARE_DAY_CONTEXT", payload, AGENT)["data"]["day_context"]

    ctx = day_context("2025-11-27")
    assert ctx["today_date"] == "2025-11-27"
    assert ctx["previous_day_rollup"] == fixture_json(f"{MDIR}/snapshots/2025-11-26.day.json")
    assert [a["action_id"] for a in ctx["open_actions"]] == ["act-0001", "act-0002"]  # not the done one
    assert ctx["today_objectives_hint"] == ["Consolider la liste des systèmes impactés"]
    later = day_context("2025-11-28")
    assert later["previous_day_rollup"] is None
    assert later["today_objectives_hint"] == ["overdue: Consolider la liste des systèmes impactés"]


def test_day_rollups_of_days_before_the_history_use_the_records_dates(fixture_store: HcmStore) -> None:
    write(fixture_store, "HCM_DAY_ROLLUP", {"mission_id": MID, "date": "2025-11-25"}, target=MID, mission=MID)
    day25 = read_json(fixture_store, f"{MDIR}/snapshots/2025-11-25.day.json")
    assert day25["key_events"] == [
        "Phase de cadrage validée par le sponsor.",
        "Clarifier le périmètre des systèmes concernés avant la prochaine itération.",
    ]
    assert day25["actions_created"] == ["act-0001", "act-0002"]
    assert (day25["decisions_made"], day25["actions_closed"]) == ([], [])
    write(fixture_store, "HCM_DAY_ROLLUP", {"mission_id": MID, "date": "2025-11-24"}, target=MID, mission=MID)
    day24 = read_json(fixture_store, f"{MDIR}/snapshots/2025-11-24.day.json")
    assert (day24["key_events"], day24["decisions_made"]) == ([], ["dec-0001"])


def test_snapshot_of_the_v1_mission_counts_its_records(fixture_store: HcmStore) -> None:
    data = write(fixture_store, "HCM_SNAPSHOT_MISSION", {"mission_id": MID}, target=MID, mission=MID)["data"]
    snap = read_json(fixture_store, data["path"])
    assert (
        snap["decisions_count"],
        snap["open_actions_count"],
        snap["evidence_count"],
        snap["journal_entries_count"],
    ) == (1, 2, 2, 4)
    assert snap["last_journal_entry_at"] == "2025-11-26T22:27:51.997Z"


# --- writes keep what they do not touch -------------------------------------------------------------


def test_append_to_the_v1_journal_keeps_every_line(fixture_store: HcmStore) -> None:
    rel = f"{MDIR}/journal.jsonl"
    entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "suite"}
    written = write(
        fixture_store,
        "HCM_APPEND_JOURNAL",
        {"mission_id": MID, "entry": entry},
        AGENT,
        target=MID,
        mission=MID,
    )["data"]["entry"]
    raw = (hcm_of(fixture_store) / rel).read_bytes()
    assert (
        raw
        == FIXTURE_FILES[rel]
        + json.dumps(written, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        + b"\n"
    )


def test_append_to_a_journal_without_final_newline_does_not_glue_lines(fixture_store: HcmStore) -> None:
    rel = f"{MDIR}/journal.jsonl"
    unterminated = FIXTURE_FILES[rel].rstrip(b"\n")
    git_commit_file(fixture_store, rel, unterminated, "a journal as some editors save it")
    entry = {
        "author_type": "human",
        "author_id": "alice",
        "entry_type": "note",
        "message": "après",
    }
    write(
        fixture_store,
        "HCM_APPEND_JOURNAL",
        {"mission_id": MID, "entry": entry},
        HUMAN,
        target=MID,
        mission=MID,
    )
    raw = (hcm_of(fixture_store) / rel).read_bytes()
    assert raw.startswith(unterminated + b"\n{")
    entries = [json.loads(x) for x in raw.split(b"\n") if x.strip()]
    assert [e["message"] for e in entries][-2:] == ["Entrée de journal de test", "après"]
    context = ok(fixture_store, "HCM_GET_MISSION_CONTEXT", {"mission_id": MID})["data"]
    assert len(context["last_journal_entries"]) == 5


def test_next_actions_update_keeps_hand_written_and_test_actions(fixture_store: HcmStore) -> None:
    rel = f"{MDIR}/next_actions.json"
    edited = fixture_json(rel)
    edited["next_actions"][2]["x_origin"] = {"tool": "ts-hcm", "run": 7}  # a field we do not know
    edited["x_file_note"] = "kept"
    git_commit_file(fixture_store, rel, json.dumps(edited, indent=2, ensure_ascii=False).encode())
    response = write(
        fixture_store,
        "HCM_UPDATE_NEXT_ACTIONS",
        {
            "mission_id": MID,
            "actions": [
                {"action_id": "act-0002", "status": "in_progress"},
                {"action_id": None, "title": "Nouvelle action"},
            ],
        },
        AGENT,
        target=MID,
        mission=MID,
    )
    after = read_json(fixture_store, rel)
    assert response["data"]["next_actions"] == after["next_actions"]
    assert after["x_file_note"] == "kept"
    rows = {a["action_id"]: a for a in after["next_actions"]}
    assert list(rows)[:3] == ["act-0001", "act-0002", "act-a0229b04"] and len(rows) == 4
    old = {a["action_id"]: a for a in edited["next_actions"]}
    assert includes(rows["act-0001"], old["act-0001"])
    assert includes(rows["act-a0229b04"], old["act-a0229b04"])
    assert rows["act-a0229b04"]["x_origin"] == {"tool": "ts-hcm", "run": 7}
    changed = {k: v for k, v in old["act-0002"].items() if k != "status"}
    assert includes(rows["act-0002"], changed) and rows["act-0002"]["status"] == "in_progress"


def test_other_writes_on_the_v1_hcm(fixture_store: HcmStore) -> None:
    hcm = hcm_of(fixture_store)
    # a validated v1 decision may be deprecated, not edited
    fail(
        fixture_store,
        "HCM_RECORD_DECISION",
        {"mission_id": MID, "decision": {"decision_id": "dec-0001", "title": "autre"}},
        "CONFLICTING_UPDATE",
        AGENT,
    )
    write(
        fixture_store,
        "HCM_RECORD_DECISION",
        {"mission_id": MID, "decision": {"decision_id": "dec-0001", "status": "deprecated"}},
        AGENT,
        target=MID,
        mission=MID,
    )
    decision = read_json(fixture_store, f"{MDIR}/decisions.json")["decisions"][0]
    assert includes(
        decision, {**fixture_json(f"{MDIR}/decisions.json")["decisions"][0], "status": "deprecated"}
    )

    status = write(
        fixture_store,
        "HCM_UPDATE_STATUS",
        {"mission_id": MID, "status": {"progress": 0.5}},
        target=MID,
        mission=MID,
    )["data"]["status"]
    assert includes(
        status,
        {
            k: v
            for k, v in fixture_json(f"{MDIR}/status.json").items()
            if k not in ("progress", "last_update")
        },
    )

    evidence = write(
        fixture_store,
        "HCM_ADD_EVIDENCE",
        {"mission_id": MID, "evidence": {"type": "doc", "title": "t"}},
        AGENT,
        target=MID,
        mission=MID,
    )["data"]
    assert (hcm / evidence["path"]).is_file()

    # the legacy upper-case agent id can still be updated; its other fields stay
    member = write(
        fixture_store,
        "HCM_UPSERT_TEAM_MEMBER",
        {"kind": "agent", "member": {"agent_id": "LDHC-AGPR", "status": "paused"}},
        target="state/team/agents.json",
    )["data"]["member"]
    original = fixture_json("state/team/agents.json")["agents"][0]
    assert includes(member, {**original, "status": "paused"})

    write(
        fixture_store,
        "HCM_PUT_DOCUMENT",
        {"path": "stable/glossary/core.glossary.json", "content": {"terms": []}},
        ADMIN,
        target="stable/glossary/core.glossary.json",
    )
    write(
        fixture_store,
        "HCM_ROTATE_JOURNAL",
        {"mission_id": MID, "before": "2025-11-26"},
        target=MID,
        mission=MID,
    )
    archive = (hcm / MDIR / "journal/archives/journal.2025-11-25.jsonl").read_bytes().splitlines()
    assert len(archive) == 2
    # files no operation touched are still the fixture's bytes
    now = files_of(hcm)
    for path in (
        "state/team/availability.json",
        "state/team/workload.json",
        f"{MDIR}/evidence/ev_0001.json",
        f"{MDIR}/meta.json",
        "meta.json",
        "hindex/scopes.json",
    ):
        assert now[path] == FIXTURE_FILES[path], path
    clean(fixture_store)
