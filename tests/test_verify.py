"""`verify`: the v1 fixture's quirks are warnings, damage is an error, and an HCM written only by
the operations is spotless."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arka_git_hcm.admin.verify import Finding, check_file, check_folder, verify_hcm
from arka_git_hcm.config import Settings
from arka_git_hcm.errors import Busy
from arka_git_hcm.jsonio import canonical_bytes
from arka_git_hcm.services.store import HcmStore

from .conftest import ADMIN, AGENT, git, new_hcm, ok, open_store
from .test_ops import (
    actions,
    decide,
    git_commit_file,
    hcm_of,
    mission,
    note,
)

MDIR = "state/missions/example-tenant-discovery-001"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HcmStore]:
    s = open_store(new_hcm(tmp_path / "client"))
    yield s
    s.close()


def has(findings: list[Finding], severity: str, path: str, text: str) -> bool:
    return any(f.severity == severity and f.path == path and text in f.message for f in findings)


V1_QUIRKS = [
    (f"{MDIR}/evidence/ev_0001.json", "differs from evidence_id 'ev-0001'"),
    (f"{MDIR}/journal.jsonl", "line 4 is blank"),
    ("state/team/agents.json", "agent_id 'LDHC-AGPR' does not follow the id rules"),
    ("meta.json", "not in canonical form"),
]


def test_the_v1_fixture_has_warnings_and_no_error(fixture_store: HcmStore) -> None:
    report = verify_hcm(hcm_of(fixture_store))
    assert report.errors == [], [f.to_json() for f in report.errors]
    assert report.ok and report.files == 55
    assert report.revision == git(hcm_of(fixture_store), "rev-parse", "HEAD").strip()
    for path, text in V1_QUIRKS:
        assert has(report.warnings, "warning", path, text), (path, text)
    # patterns about evidence are not evidence: no id/file-name check there
    pattern_findings = [f for f in report.findings if f.path.startswith("stable/patterns/evidence/")]
    assert pattern_findings and all("evidence_id" not in f.message for f in pattern_findings)
    assert [f for f in report.findings if "evidence_id" in f.message] == [
        Finding(
            "warning",
            f"{MDIR}/evidence/ev_0001.json",
            "file name 'ev_0001' differs from evidence_id 'ev-0001'",
        )
    ]
    as_json = report.to_json()
    assert (as_json["ok"], as_json["errors"], as_json["warnings"]) == (True, 0, len(report.warnings))


def _corrupt_json(store: HcmStore) -> str:
    git_commit_file(store, f"{MDIR}/status.json", b'{"phase": "design",\n')
    return f"{MDIR}/status.json"


def _missing_required_field(store: HcmStore) -> str:
    meta = json.loads((hcm_of(store) / f"{MDIR}/meta.json").read_bytes())
    del meta["title"]
    git_commit_file(store, f"{MDIR}/meta.json", canonical_bytes(meta))
    return f"{MDIR}/meta.json"


def _bad_enum(store: HcmStore) -> str:
    rel = f"{MDIR}/decisions.json"
    data = json.loads((hcm_of(store) / rel).read_bytes())
    data["decisions"][0]["status"] = "approved"
    git_commit_file(store, rel, canonical_bytes(data))
    return rel


def _corrupt_journal_line(store: HcmStore) -> str:
    rel = f"{MDIR}/journal.jsonl"
    git_commit_file(
        store, rel, (hcm_of(store) / rel).read_bytes() + b'{"timestamp": "2025-11-27T00:00:00Z"\n'
    )
    return rel


def _journal_entry_missing_fields(store: HcmStore) -> str:
    rel = f"{MDIR}/journal.jsonl"
    git_commit_file(store, rel, (hcm_of(store) / rel).read_bytes() + b'{"message":"who wrote this?"}\n')
    return rel


def _hand_edit_not_committed(store: HcmStore) -> str:
    path = hcm_of(store) / f"{MDIR}/status.json"
    path.write_bytes(path.read_bytes().replace(b"at_risk", b"ok"))
    return f"{MDIR}/status.json"


def _uncommitted_new_file(store: HcmStore) -> str:
    (hcm_of(store) / "domain/org/new.json").write_bytes(b"{}\n")
    return "domain/org/new.json"


def _deleted_from_work_tree(store: HcmStore) -> str:
    os.unlink(hcm_of(store) / "hindex/scopes.json")
    return "hindex/scopes.json"


def _missing_object(store: HcmStore) -> str:
    hcm = hcm_of(store)
    blob = git(hcm, "rev-parse", "HEAD:domain/org/org_profile.json").strip()
    # unpack every pack into loose objects (git's plumbing), then lose the one blob
    for pack in sorted((hcm / ".git" / "objects" / "pack").glob("*.pack")):
        moved = hcm.parent / pack.name
        os.replace(pack, moved)
        pack.with_suffix(".idx").unlink()
        with moved.open("rb") as stream:
            subprocess.run(["git", "unpack-objects", "-q"], cwd=hcm, stdin=stream, check=True)
    os.unlink(hcm / ".git" / "objects" / blob[:2] / blob[2:])
    return "domain/org/org_profile.json"


def _meta_missing_from_head(store: HcmStore) -> str:
    git_commit_file(store, "meta.json", None)
    return "meta.json"


DAMAGE: list[Callable[[HcmStore], str]] = [
    _corrupt_json,
    _missing_required_field,
    _bad_enum,
    _corrupt_journal_line,
    _journal_entry_missing_fields,
    _hand_edit_not_committed,
    _uncommitted_new_file,
    _deleted_from_work_tree,
    _missing_object,
    _meta_missing_from_head,
]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_damage_is_an_error(fixture_store: HcmStore, damage: Callable[[HcmStore], str]) -> None:
    path = damage(fixture_store)
    report = verify_hcm(hcm_of(fixture_store))
    assert not report.ok
    assert report.to_json()["ok"] is False
    assert any(f.path == path for f in report.errors), [f.to_json() for f in report.findings]
    assert {f.path for f in report.errors} <= {path, ".git"}, [f.to_json() for f in report.errors]
    # the quirks are still told apart (as warnings), unless the damage hid the file
    assert has(report.warnings, "warning", "state/team/agents.json", "LDHC-AGPR")


def test_an_hcm_written_by_the_operations_is_spotless(store: HcmStore) -> None:
    mission(store)
    note(store, "one")
    made = actions(store, [{"action_id": None, "title": "A"}])
    actions(store, [{"action_id": made[0]["action_id"], "status": "done"}])
    decide(store, {"title": "D"})
    ok(store, "HCM_ADD_EVIDENCE", {"mission_id": "m1", "evidence": {"type": "t", "title": "E"}}, AGENT)
    ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"phase": "p"}})
    ok(store, "HCM_SNAPSHOT_MISSION", {"mission_id": "m1"})
    ok(store, "HCM_DAY_ROLLUP", {"mission_id": "m1", "date": "2026-11-26"})
    ok(store, "HCM_ROTATE_JOURNAL", {"mission_id": "m1", "before": "2026-11-27"})
    ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "human", "member": {"human_id": "alice"}})
    ok(store, "HCM_PUT_DOCUMENT", {"path": "stable/glossary/g.json", "content": {"b": [1], "a": "é"}}, ADMIN)
    store.engine.refresh_index()
    report = verify_hcm(hcm_of(store))
    assert report.findings == [], [f.to_json() for f in report.findings]


# --- check_file, one file at a time ----------------------------------------------------------------

EVIDENCE = {
    "evidence_id": "ev-1",
    "type": "t",
    "title": "T",
    "created_at": "2026-01-01T00:00:00Z",
    "created_by_type": "agent",
    "created_by_id": "a",
}


def test_the_evidence_name_check_is_for_mission_evidence_only() -> None:
    assert check_file("state/missions/m1/evidence/ev-1.json", canonical_bytes(EVIDENCE)) == []
    renamed = check_file("state/missions/m1/evidence/ev-2.json", canonical_bytes(EVIDENCE))
    assert [f.severity for f in renamed] == ["warning"] and "differs from evidence_id" in renamed[0].message
    pattern = canonical_bytes({"pattern_id": "audit", "items": []})
    assert check_file("stable/patterns/evidence/audit.evidence_pack.pattern.json", pattern) == []
    assert check_file("domain/projects/evidence/x.json", pattern) == []
    missing = check_file("state/missions/m1/evidence/ev-1.json", canonical_bytes({"evidence_id": "ev-1"}))
    assert missing and all(f.severity == "error" for f in missing)


def test_journal_lines() -> None:
    entry = b'{"author_id":"a","author_type":"agent","entry_type":"note","message":"m","timestamp":"t"}'
    path = "state/missions/m1/journal.jsonl"
    assert check_file(path, b"") == []
    assert check_file(path, entry + b"\n" + entry + b"\n") == []
    assert [(f.severity, f.message) for f in check_file(path, entry)] == [
        ("warning", "no newline after the last line")
    ]
    assert [(f.severity, f.message) for f in check_file(path, entry + b"\n\n")] == [
        ("warning", "line 2 is blank")
    ]
    bad = check_file(path, entry + b"\nnot json\n" + b'{"message": "m"}\n')
    assert [(f.severity, f.message.split(":")[0]) for f in bad] == [("error", "line 2"), ("error", "line 3")]


def test_other_single_file_checks() -> None:
    assert [f.severity for f in check_file("stable/notes.txt", b"hello")] == ["warning"]
    assert [f.severity for f in check_file("stable/a.json", b'{"a": 1}')] == ["warning"]  # not canonical
    assert [f.severity for f in check_file("stable/a.json", b'{"a": 1, "a": 2}')] == ["error"]
    assert [f.severity for f in check_file("stable/a.json", b"\xff\xfe")] == ["error"]
    assert [f.severity for f in check_file("extra/a.json", canonical_bytes({}))] == [
        "warning"
    ]  # outside layers
    upper = check_file("state/team/humans.json", canonical_bytes({"humans": [{"human_id": "Bob"}]}))
    assert [f.severity for f in upper] == ["warning"] and "'Bob'" in upper[0].message


def test_check_folder_before_adoption(tmp_path: Path) -> None:
    (tmp_path / "stable").mkdir()
    (tmp_path / "stable" / "a.json").write_bytes(canonical_bytes({"a": 1}))
    found = check_folder(tmp_path, ["stable/a.json"])
    assert [(f.severity, f.path) for f in found] == [("warning", "meta.json")]


def test_verify_during_writes_is_ok_or_busy_never_a_false_damage(settings_v: Settings) -> None:
    """A store writing meanwhile moves the branch under the check (fsck reads a reflog entry
    before the pack it names; a work-tree file is on its way): that must not read as damage."""
    store = open_store(settings_v)
    ok(
        store,
        "HCM_CREATE_MISSION",
        {"mission_id": "m1", "meta": {"title": "T", "mission_type": "audit"}},
        ADMIN,
    )
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": _entry(f"busy {i}")}, AGENT)

    thread = threading.Thread(target=writer)
    thread.start()
    outcomes = []
    try:
        for _ in range(3):
            try:
                report = verify_hcm(hcm_of(store))
            except Busy:
                outcomes.append("busy")
            else:
                assert report.ok, [f.to_json() for f in report.errors]
                outcomes.append("ok")
    finally:
        stop.set()
        thread.join()
    store.close()
    assert verify_hcm(hcm_of(store)).ok  # idle: a clean report
    assert outcomes


def _entry(message: str) -> dict[str, str]:
    return {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": message}


@pytest.fixture
def settings_v(tmp_path: Path) -> Settings:
    return new_hcm(tmp_path / "client")
