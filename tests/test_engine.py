"""The versioning promise (contract section 5), checked against the real git binary."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from arka_git_hcm.admin.init import init_hcm
from arka_git_hcm.config import Settings
from arka_git_hcm.errors import ConflictingUpdate
from arka_git_hcm.services.store import HcmStore

from .conftest import (
    AGENT,
    assert_clean,
    commit_count,
    create_mission,
    envelope,
    fixed_clock,
    git,
    journal,
    make_settings,
    ok,
)


def tree_digest(root: Path) -> str:
    """A digest of every file under root except .git (names and bytes)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if ".git" not in p.relative_to(root).parts and p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def test_init_makes_one_commit_with_the_layout_and_a_clean_work_tree(settings: Settings) -> None:
    hcm = settings.hcm_path
    assert commit_count(hcm) == 1
    files = git(hcm, "ls-files").split()
    for expected in (
        "meta.json",
        "state/team/agents.json",
        "state/team/humans.json",
        "hindex/scopes.json",
        "hindex/classification.json",
        "hindex/meta_rules.json",
        "hindex/routing.json",
    ):
        assert expected in files
    assert any(f.startswith("stable/glossary/") for f in files)
    assert any(f.startswith("domain/org/") for f in files)
    assert (settings.config_path / "arka-os.config.json").is_file()
    assert settings.log_path.is_dir()
    assert_clean(hcm)


def test_init_refuses_an_existing_hcm_and_changes_nothing(settings: Settings) -> None:
    before = tree_digest(settings.hcm_path)
    head = git(settings.hcm_path, "rev-parse", "HEAD")
    with pytest.raises(ConflictingUpdate, match="already holds an HCM"):
        init_hcm(settings, "acme")
    assert tree_digest(settings.hcm_path) == before
    assert git(settings.hcm_path, "rev-parse", "HEAD") == head


def test_one_write_is_one_commit_with_message_trailers_author_and_committer(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    before = commit_count(hcm)
    response = journal(store, "Kick-off done", request_id="req-kickoff")
    assert commit_count(hcm) == before + 1
    assert response["revision"] == git(hcm, "rev-parse", "HEAD").strip()
    message = git(hcm, "log", "-1", "--format=%B")
    assert message.startswith("HCM_APPEND_JOURNAL m1: note by agent/arka-pmo-01\n")
    trailers = git(hcm, "log", "-1", "--format=%(trailers:only,unfold)")
    assert "Hcm-Op: HCM_APPEND_JOURNAL" in trailers
    assert "Hcm-Request-Id: req-kickoff" in trailers
    assert "Hcm-Caller: agent/arka-pmo-01" in trailers
    assert "Hcm-Mission: m1" in trailers
    assert git(hcm, "log", "-1", "--format=%an|%cn|%ce").strip() == "arka-pmo-01|Arka HCM|hcm@arka-os.local"
    assert git(hcm, "show", "--name-only", "--format=", "HEAD").split() == ["state/missions/m1/journal.jsonl"]
    assert_clean(hcm)


def test_a_failed_write_leaves_no_commit_and_no_changed_file(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    head, digest = git(hcm, "rev-parse", "HEAD"), tree_digest(hcm)
    bad = [
        envelope(
            "HCM_APPEND_JOURNAL",
            {
                "mission_id": "nope",
                "entry": {"author_type": "agent", "author_id": "a", "entry_type": "note", "message": "x"},
            },
            AGENT,
        ),
        envelope("HCM_CREATE_MISSION", {"mission_id": "m1", "meta": {"title": "t", "mission_type": "x"}}),
        envelope(
            "HCM_UPDATE_NEXT_ACTIONS",
            {
                "mission_id": "m1",
                "actions": [
                    {"action_id": None, "title": "new one"},
                    {"action_id": "act-missing", "status": "done"},
                ],
            },
            AGENT,
        ),
        envelope("HCM_APPEND_JOURNAL", {"mission_id": "../../etc", "entry": {}}, AGENT),
    ]
    for item in bad:
        response = store.execute(item)
        assert response["status"] == "error"
        assert set(response) >= {"request_id", "op", "status", "data", "error", "revision"}
        assert response["revision"] == head.strip()
    assert git(hcm, "rev-parse", "HEAD") == head
    assert tree_digest(hcm) == digest
    assert_clean(hcm)


def test_replay_returns_the_first_answer_without_a_commit(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    first = journal(store, "only once", request_id="same-id")
    count = commit_count(hcm)
    again = journal(store, "only once", request_id="same-id")
    assert again["replayed"] is True
    assert again["revision"] == first["revision"]
    assert again["data"]["entry"] == first["data"]["entry"]
    assert commit_count(hcm) == count
    other = store.execute(
        envelope(
            "HCM_APPEND_JOURNAL",
            {
                "mission_id": "m1",
                "entry": {
                    "author_type": "agent",
                    "author_id": "arka-pmo-01",
                    "entry_type": "note",
                    "message": "changed",
                },
            },
            AGENT,
            "same-id",
        )
    )
    assert other["error"]["code"] == "IDEMPOTENCY_MISMATCH"
    assert commit_count(hcm) == count


def test_replay_survives_a_restart_of_the_store(settings: Settings) -> None:
    first_store = HcmStore.open(settings)
    create_mission(first_store, "m1")
    first = journal(first_store, "durable answer", request_id="restart-id")
    first_store.close()
    second_store = HcmStore.open(settings)
    again = journal(second_store, "durable answer", request_id="restart-id")
    second_store.close()
    assert again["replayed"] is True and again["data"] == first["data"]


def test_a_commit_made_with_plain_git_is_built_upon_not_lost(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "c", index_refresh_delay_s=30)  # keep the index stale
    init_hcm(settings, "acme", clock=fixed_clock())
    store = HcmStore.open(settings)
    hcm = settings.hcm_path
    create_mission(store, "m1")
    (hcm / "stable" / "glossary" / "manual.json").write_text('{"terms": []}\n')
    git(hcm, "add", "stable/glossary/manual.json")
    commit = ["-c", "user.name=Admin", "-c", "user.email=a@b.c", "commit", "-qm", "manual glossary"]
    # While git's index lags behind the store's commits, the guard hook refuses a manual commit:
    # committing that index would silently revert mission m1.
    refused = subprocess.run(["git", *commit], cwd=hcm, capture_output=True, text=True)
    assert refused.returncode != 0 and "arka-hcm" in refused.stderr
    assert "state/missions/m1/meta.json" in git(hcm, "ls-tree", "-r", "--name-only", "HEAD")
    store.engine.refresh_index()
    git(hcm, *commit)
    manual = git(hcm, "rev-parse", "HEAD").strip()
    assert "state/missions/m1/meta.json" in git(hcm, "ls-tree", "-r", "--name-only", "HEAD")
    journal(store, "after the manual commit")
    store.close()
    assert git(hcm, "rev-parse", "HEAD~1").strip() == manual
    assert "stable/glossary/manual.json" in git(hcm, "ls-files")
    assert_clean(hcm)


def test_hand_edits_are_adopted_as_their_own_commit(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    journal_path = hcm / "state/missions/m1/journal.jsonl"
    hand = {
        "author_id": "bob",
        "author_type": "human",
        "entry_type": "note",
        "message": "by hand",
        "timestamp": "2026-11-26T08:00:00Z",
    }
    hand_line = json.dumps(hand) + "\n"
    journal_path.write_text(journal_path.read_text() + hand_line)
    journal(store, "through the store")
    subjects = git(hcm, "log", "-2", "--format=%s").splitlines()
    assert subjects[0].startswith("HCM_APPEND_JOURNAL m1")
    assert subjects[1].startswith("HCM_EXTERNAL_EDIT state/missions/m1/journal.jsonl")
    lines = journal_path.read_text().splitlines()
    assert "by hand" in lines[0] and "through the store" in lines[1]
    store.engine.refresh_index()  # git's index follows in the background: settle it before git status
    assert_clean(hcm)


def test_hand_edits_are_refused_when_the_config_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "c", external_edits="refuse")
    init_hcm(settings, "acme", clock=fixed_clock())
    store = HcmStore.open(settings)
    create_mission(store, "m1")
    status = settings.hcm_path / "state/missions/m1/status.json"
    status.write_text(status.read_text().replace('"planned"', '"on_hold"'))
    head = git(settings.hcm_path, "rev-parse", "HEAD")
    response = store.execute(envelope("HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"progress": 0.5}}))
    store.close()
    assert response["error"]["code"] == "CONFLICTING_UPDATE"
    assert "edited by hand" in response["error"]["message"]
    assert git(settings.hcm_path, "rev-parse", "HEAD") == head
    assert '"on_hold"' in status.read_text()  # the hand edit is still there, not lost


def test_hand_edits_made_while_closed_are_adopted_at_open(settings: Settings) -> None:
    hcm = settings.hcm_path
    (hcm / "stable" / "glossary" / "new.json").write_text('{"terms": ["x"]}\n')
    (hcm / "domain" / "org" / "README.json").unlink()
    store = HcmStore.open(settings)
    store.close()
    assert git(hcm, "log", "-1", "--format=%s").startswith("HCM_EXTERNAL_EDIT")
    changed = git(hcm, "show", "--name-status", "--format=", "HEAD")
    assert "A\tstable/glossary/new.json" in changed and "D\tdomain/org/README.json" in changed
    assert_clean(hcm)


def test_git_index_is_current_after_close_so_a_manual_commit_reverts_nothing(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    journal(store, "one")
    store.close()
    assert git(hcm, "diff", "--cached", "--name-only") == ""
    assert git(hcm, "status", "--porcelain") == ""


@pytest.mark.parametrize("durability", ["full", "fast"])
def test_both_durability_modes_write_and_verify(tmp_path: Path, durability: str) -> None:
    settings = make_settings(tmp_path / durability, durability=durability)
    init_hcm(settings, "acme", clock=fixed_clock())
    store = HcmStore.open(settings)
    create_mission(store, "m1")
    for i in range(5):
        journal(store, f"entry {i}")
    store.close()
    assert commit_count(settings.hcm_path) == 7
    assert_clean(settings.hcm_path)


def test_an_interrupted_write_is_rolled_forward_at_open(store: HcmStore) -> None:
    """Simulate a crash after the branch moved but before the work tree followed."""
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    path = "state/missions/m1/journal.jsonl"
    good = (hcm / path).read_bytes()
    store.engine.worktree.write_intent(store.engine.ref, None, store.tip() or "", [path, "state/x.json"])
    (hcm / path).write_bytes(b"torn")
    (hcm / "state" / "x.json").write_text("{}")
    store.close()
    reopened = HcmStore.open(store.settings)
    assert reopened.open_report["recovery"]["recovered"] is True
    reopened.close()
    assert (hcm / path).read_bytes() == good
    assert not (hcm / "state" / "x.json").exists()
    assert_clean(hcm)


def test_ok_writes_do_not_rewrite_unrelated_trees(store: HcmStore) -> None:
    """Commits are built along the changed path: the stable/ tree object is shared."""
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    before = git(hcm, "rev-parse", "HEAD:stable").strip()
    journal(store, "x")
    assert git(hcm, "rev-parse", "HEAD:stable").strip() == before


def test_ok_helper_sees_the_committed_answer(store: HcmStore) -> None:
    create_mission(store, "m1")
    data = ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"})["data"]
    assert data["meta"]["title"] == "Audit ACME"
    assert data["status"]["status"] == "planned"


def test_read_last_lines_matches_the_whole_file_reading(store: HcmStore) -> None:
    """The tail reader parses only the end of the journal; it must agree with a full read,
    blank lines and a missing final newline included."""
    from arka_git_hcm.operations.views import Draft

    draft = Draft(store.repo, None, None)
    lines = [json.dumps({"n": i}) for i in range(30)]
    for shape in ("\n".join(lines) + "\n", "\n".join(lines), "\n\n".join(lines) + "\n\n\n", ""):
        draft.write("state/j.jsonl", shape.encode())
        full = draft.read_lines("state/j.jsonl")
        for count in (0, 1, 2, 7, 29, 30, 31, 100):
            assert draft.read_last_lines("state/j.jsonl", count) == (full[-count:] if count else [])


def test_a_store_used_as_a_context_manager_closes_itself(client_dir: Path) -> None:
    """`with HcmStore.open(...) as store:` closes the store at the end of the block: git's index,
    refreshed only on close here (60 s delay), already matches HEAD when the block ends."""
    settings = make_settings(client_dir, index_refresh_delay_s=60.0)
    init_hcm(settings, "acme", "ACME")
    with HcmStore.open(settings) as store:
        create_mission(store, "m1")
        assert git(settings.hcm_path, "status", "--porcelain") != ""  # the index lags until close
    assert git(settings.hcm_path, "status", "--porcelain", "--untracked-files=all") == ""


def test_a_marker_left_by_a_killed_store_guards_until_a_store_repairs_the_index(tmp_path: Path) -> None:
    """A store killed before its index refresh leaves its marker (its pid may be alive again: a
    container restarts with the same pid) and a stale index: a manual commit of that index would
    revert the store's writes, so the hook refuses it until a store opens, repairs the index and
    removes the marker (its lock is free)."""
    settings = make_settings(tmp_path / "c")
    init_hcm(settings, "acme", clock=fixed_clock())
    hcm = settings.hcm_path
    pending = hcm / ".git" / "arka-hcm" / "index-pending"
    pending.mkdir(parents=True, exist_ok=True)
    stale = pending / f"{os.getppid()}-1-dead"  # a live pid, and nobody holds its lock
    stale.write_bytes(b"")
    (hcm / "stable" / "glossary" / "manual.json").write_text('{"terms": []}\n')
    git(hcm, "add", "stable/glossary/manual.json")
    commit = ["git", "-c", "user.name=Admin", "-c", "user.email=a@b.c", "commit", "-qm", "manual glossary"]
    refused = subprocess.run(commit, cwd=hcm, capture_output=True, text=True)
    assert refused.returncode != 0 and "arka-hcm missions list" in refused.stderr
    with HcmStore.open(settings) as store:  # it also adopts the file left uncommitted
        assert not stale.exists()  # removed at open, once the index matches HEAD
        create_mission(store, "m1")
    (hcm / "stable" / "glossary" / "later.json").write_text('{"terms": []}\n')
    git(hcm, "add", "stable/glossary/later.json")
    subprocess.run(commit, cwd=hcm, check=True)  # nothing pending now: allowed
    assert_clean(hcm)
    tracked = git(hcm, "ls-tree", "-r", "--name-only", "HEAD")
    assert "state/missions/m1/meta.json" in tracked and "stable/glossary/later.json" in tracked
