"""Snapshots are annotated tags snapshot/<name>; rollback is a new commit, never a reset."""

from __future__ import annotations

import pytest

from arka_git_hcm.admin.snapshots import create_snapshot, list_snapshots
from arka_git_hcm.errors import ConflictingUpdate, InvalidPayload
from arka_git_hcm.services.store import HcmStore

from .conftest import (
    ADMIN,
    AGENT,
    HUMAN,
    assert_clean,
    commit_count,
    create_mission,
    envelope,
    git,
    journal,
    ok,
)


def test_a_snapshot_is_an_annotated_tag_and_writes_no_commit(store: HcmStore) -> None:
    create_mission(store, "m1")
    hcm = store.settings.hcm_path
    count = commit_count(hcm)
    info = create_snapshot(store, "before-import", "before the CRM import")
    assert commit_count(hcm) == count
    assert git(hcm, "cat-file", "-t", "snapshot/before-import").strip() == "tag"
    assert git(hcm, "rev-parse", "snapshot/before-import^{commit}").strip() == info["revision"]
    assert [s["name"] for s in list_snapshots(store)] == ["before-import"]
    with pytest.raises(ConflictingUpdate):
        create_snapshot(store, "before-import")
    with pytest.raises(InvalidPayload):
        create_snapshot(store, "Bad Name")


def test_reads_at_a_snapshot_name(store: HcmStore) -> None:
    create_mission(store, "m1")
    journal(store, "before")
    create_snapshot(store, "s1")
    journal(store, "after")
    entries = ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1", "at": "s1"})["data"][
        "last_journal_entries"
    ]
    assert [e["message"] for e in entries] == ["before"]


def test_mission_snapshot_operation_tags_its_commit(store: HcmStore) -> None:
    create_mission(store, "m1")
    response = ok(store, "HCM_SNAPSHOT_MISSION", {"mission_id": "m1", "reason": "weekly"})
    name = response["data"]["snapshot_id"]
    hcm = store.settings.hcm_path
    assert git(hcm, "rev-parse", f"snapshot/{name}^{{commit}}").strip() == response["revision"]
    at = ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1", "at": name})
    assert at["revision"] == response["revision"]


def test_rollback_of_one_mission_is_a_new_commit_with_the_old_folder(store: HcmStore) -> None:
    create_mission(store, "m1")
    create_mission(store, "m2")
    good = journal(store, "good entry", "m1")["revision"]
    journal(store, "bad entry", "m1")
    journal(store, "kept entry", "m2")
    hcm = store.settings.hcm_path
    history_before = git(hcm, "rev-list", "HEAD").split()
    response = ok(store, "HCM_ROLLBACK", {"target": good, "mission_id": "m1", "reason": "bad import"}, ADMIN)
    assert response["data"]["restored_files"] == 1
    # history kept, one new commit on top
    assert git(hcm, "rev-list", "HEAD").split()[1:] == history_before
    assert (
        git(hcm, "rev-parse", "HEAD:state/missions/m1").strip()
        == git(hcm, "rev-parse", f"{good}:state/missions/m1").strip()
    )
    assert "kept entry" in (hcm / "state/missions/m2/journal.jsonl").read_text()
    assert git(hcm, "log", "-1", "--format=%s").startswith("HCM_ROLLBACK m1: roll back to")
    assert_clean(hcm)


def test_rollback_of_the_whole_hcm_equals_the_target_tree(store: HcmStore) -> None:
    create_mission(store, "m1")
    target = store.tip()
    create_mission(store, "m2")
    journal(store, "x", "m1")
    ok(store, "HCM_ROLLBACK", {"target": target}, ADMIN)
    hcm = store.settings.hcm_path
    assert git(hcm, "rev-parse", "HEAD^{tree}").strip() == git(hcm, "rev-parse", f"{target}^{{tree}}").strip()
    assert not (hcm / "state/missions/m2").exists()
    assert_clean(hcm)


def test_rollback_needs_an_admin_and_an_existing_target(store: HcmStore) -> None:
    create_mission(store, "m1")
    count = commit_count(store.settings.hcm_path)
    for caller in (HUMAN, AGENT):
        denied = store.execute(envelope("HCM_ROLLBACK", {"target": "HEAD~1"}, caller))
        assert denied["error"]["code"] == "ACCESS_DENIED"
    missing = store.execute(envelope("HCM_ROLLBACK", {"target": "no-such-snapshot"}, ADMIN))
    assert missing["error"]["code"] == "NOT_FOUND"
    assert commit_count(store.settings.hcm_path) == count


def test_gc_repacks_and_the_store_goes_on(store: HcmStore) -> None:
    from arka_git_hcm.admin.gc import pack_objects

    create_mission(store, "m1")
    first = journal(store, "before gc", request_id="gc-1")
    dry = pack_objects(store, dry_run=True)
    assert dry["before"]["packs"] >= 3 and dry["after"] is None  # init + one pack per write
    stamp = store.settings.hcm_path / ".git" / "arka-hcm" / "packs-rolled-up"
    assert not stamp.exists()
    report = pack_objects(store)
    assert report["after"]["count"] == 0 and report["after"]["packs"] == 1
    assert stamp.exists()  # other store processes reopen their handles on the deleted packs
    again = journal(store, "before gc", request_id="gc-1")  # replay reads packed objects
    assert again["replayed"] is True and again["data"] == first["data"]
    journal(store, "after gc")
    context = ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1", "at": first["revision"]})
    assert [e["message"] for e in context["data"]["last_journal_entries"]] == ["before gc"]
    store.close()
    assert_clean(store.settings.hcm_path)
