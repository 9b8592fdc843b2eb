"""HCM_HISTORY and HCM_DIFF, checked against what git itself says."""

from __future__ import annotations

from arka_git_hcm.services.store import HcmStore

from .conftest import create_mission, git, journal, ok


def test_history_lists_operations_newest_first_with_trailers(store: HcmStore) -> None:
    create_mission(store, "m1")
    create_mission(store, "m2")
    journal(store, "one", "m1", request_id="h-1")
    journal(store, "two", "m2", request_id="h-2")
    commits = ok(store, "HCM_HISTORY", {"limit": 3})["data"]["commits"]
    hcm = store.settings.hcm_path
    assert [c["revision"] for c in commits] == git(hcm, "rev-list", "-3", "HEAD").split()
    assert commits[0]["op"] == "HCM_APPEND_JOURNAL" and commits[0]["request_id"] == "h-2"
    assert commits[0]["caller"] == "agent/arka-pmo-01" and commits[0]["mission_id"] == "m2"


def test_history_filters_by_mission_and_by_path(store: HcmStore) -> None:
    create_mission(store, "m1")
    create_mission(store, "m2")
    journal(store, "one", "m1", request_id="f-1")
    journal(store, "two", "m2", request_id="f-2")
    by_mission = ok(store, "HCM_HISTORY", {"mission_id": "m1"})["data"]["commits"]
    assert [c["request_id"] for c in by_mission][0] == "f-1"
    assert all(c["mission_id"] == "m1" for c in by_mission)
    hcm = store.settings.hcm_path
    expected = git(hcm, "log", "--format=%H", "--", "state/missions/m2/journal.jsonl").split()
    by_path = ok(store, "HCM_HISTORY", {"path": "state/missions/m2/journal.jsonl"})["data"]["commits"]
    assert [c["revision"] for c in by_path] == expected


def test_history_limit_and_unsafe_path(store: HcmStore) -> None:
    create_mission(store, "m1")
    assert len(ok(store, "HCM_HISTORY", {"limit": 1})["data"]["commits"]) == 1
    bad = store.execute(
        {
            "op": "HCM_HISTORY",
            "request_id": "x",
            "caller": {"type": "human", "id": "a", "roles": ["reader"]},
            "payload": {"path": "../.git/config"},
        }
    )
    assert bad["error"]["code"] == "INVALID_PAYLOAD"


def test_diff_between_two_revisions_matches_git(store: HcmStore) -> None:
    create_mission(store, "m1")
    first = journal(store, "alpha")["revision"]
    journal(store, "beta")
    data = ok(store, "HCM_DIFF", {"from": first, "to": "HEAD"})["data"]
    assert [c["path"] for c in data["changes"]] == ["state/missions/m1/journal.jsonl"]
    assert data["changes"][0]["change"] == "modified" and "+" in data["changes"][0]["patch"]
    assert "beta" in data["changes"][0]["patch"]
    hcm = store.settings.hcm_path
    assert git(hcm, "diff", "--name-only", first, "HEAD").split() == ["state/missions/m1/journal.jsonl"]


def test_diff_reports_added_files_and_honours_path(store: HcmStore) -> None:
    create_mission(store, "m1")
    before = store.tip()
    create_mission(store, "m2")
    data = ok(store, "HCM_DIFF", {"from": before, "path": "state/missions/m2"})["data"]
    assert {c["change"] for c in data["changes"]} == {"added"}
    assert all(c["path"].startswith("state/missions/m2/") for c in data["changes"])
    none = ok(store, "HCM_DIFF", {"from": before, "path": "state/missions/m1"})["data"]
    assert none["changes"] == []
    unknown = store.execute(
        {
            "op": "HCM_DIFF",
            "request_id": "y",
            "caller": {"type": "human", "id": "a", "roles": ["reader"]},
            "payload": {"from": "deadbeef"},
        }
    )
    assert unknown["error"]["code"] == "NOT_FOUND"
