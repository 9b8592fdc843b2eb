"""Reliability (issue 11): hand edits are never silently lost, a failed write leaves nothing,
damaged or derived state is repaired or reported. Each test fails on the code before the fix."""

from __future__ import annotations

import errno
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from arka_git_hcm import durable
from arka_git_hcm.admin.verify import verify_hcm
from arka_git_hcm.cli import main
from arka_git_hcm.config import Settings
from arka_git_hcm.errors import AccessDenied, IoError
from arka_git_hcm.services.store import HcmStore

from .conftest import AGENT, assert_clean, commit_count, create_mission, envelope, git, journal, ok

STATUS = "state/missions/m1/status.json"
JOURNAL = "state/missions/m1/journal.jsonl"


def saved_edits(settings: Settings) -> list[dict[str, Any]]:
    index = settings.hcm_path / ".git/arka-hcm/saved-edits/index.jsonl"
    return [json.loads(line) for line in index.read_text().splitlines()] if index.exists() else []


def head_file(settings: Settings, rel: str) -> str:
    return git(settings.hcm_path, "show", f"HEAD:{rel}")


# --- hand edits ---------------------------------------------------------------------------------


def test_an_edit_that_keeps_the_size_and_puts_the_mtime_back_is_adopted(store: HcmStore) -> None:
    create_mission(store)
    path = store.settings.hcm_path / STATUS
    before = path.stat()
    text = path.read_text()
    edited = text.replace('"summary": ""', '"summary": "x"').replace('"phase": "init"', '"phase": "ini"')
    assert len(edited) == len(text)
    path.write_text(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `touch -r` or an editor would
    ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"progress": 0.5}})
    subjects = git(store.settings.hcm_path, "log", "-2", "--format=%s").splitlines()
    assert subjects[1].startswith("HCM_EXTERNAL_EDIT")
    assert '"summary": "x"' in head_file(store.settings, STATUS)


@pytest.mark.parametrize(
    "damage",
    [lambda t: t.replace('"planned"', '"plannex"'), lambda t: t[: len(t) // 2]],
    ids=["bad-value", "broken-json"],
)
def test_an_invalid_hand_edit_is_saved_and_kept_out_of_history(store: HcmStore, damage: Any) -> None:
    settings = store.settings
    create_mission(store)
    path = settings.hcm_path / STATUS
    broken = damage(path.read_text())
    path.write_text(broken)
    ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"progress": 0.5}})
    log = git(settings.hcm_path, "log", "--format=%s")
    assert "HCM_EXTERNAL_EDIT" not in log
    saved = saved_edits(settings)
    assert [r["path"] for r in saved] == [STATUS] and "not valid" in saved[0]["reason"]
    assert (settings.hcm_path / ".git" / saved[0]["saved_as"]).read_text() == broken
    assert ok(store, "HCM_LIST_MISSIONS", {})["data"]["missions"][0]["status"] == "planned"
    store.close()
    report = verify_hcm(settings.hcm_path)
    assert report.ok and any("kept out of history" in f.message for f in report.warnings)


def test_an_invalid_hand_edit_found_at_open_is_reported_not_adopted(store: HcmStore) -> None:
    settings = store.settings
    create_mission(store)
    store.close()
    (settings.hcm_path / STATUS).write_text("{ not json")
    with HcmStore.open(settings) as reopened:
        assert reopened.open_report["hand_edits"]["invalid"] == [STATUS]
        assert reopened.health()["details"]["hand_edits_not_adopted"] == [STATUS]
        assert "HCM_EXTERNAL_EDIT" not in git(settings.hcm_path, "log", "--format=%s")


def editor(hcm: Path, stop: threading.Event, made: list[str], seed: int) -> None:
    """Appends (`>>`), editor-style rewrites (read, add a line, write it all) and saves that rename
    a new copy over the file, each adding one line with a unique marker."""
    rng = random.Random(seed)
    path = hcm / JOURNAL
    n = 0
    while not stop.is_set():
        n += 1
        marker = f"hand-{seed}-{n}"
        entry = {"timestamp": "2026-11-26T10:00:00.000Z", "entry_type": "note", "message": marker}
        line = json.dumps({"author_type": "human", "author_id": "bob", **entry})
        kind = rng.choice(["append", "append", "rewrite", "rename"])
        try:
            if kind == "append":
                with open(path, "a") as f:
                    f.write(line + "\n")
            else:
                text = path.read_text()
                text = (text if text.endswith("\n") or not text else text + "\n") + line + "\n"
                if kind == "rewrite":
                    path.write_text(text)
                else:
                    tmp = path.with_name(f"editor-{seed}.swp")
                    tmp.write_text(text)
                    os.replace(tmp, path)
        except FileNotFoundError:
            continue  # caught between the store's two renames: the editor tries again
        made.append(marker)
        time.sleep(rng.uniform(0, 0.004))


def test_hand_edits_under_concurrent_writers_are_never_lost(store: HcmStore) -> None:
    settings = store.settings
    create_mission(store)
    stop = threading.Event()
    made: list[str] = []
    acked: list[str] = []

    def writer(w: int) -> None:
        for i in range(40):
            rid = f"w{w}-{i}"
            entry = {"entry_type": "note", "message": rid}
            response = store.execute(
                envelope("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry}, AGENT, request_id=rid)
            )
            assert response["status"] == "ok", response
            acked.append(rid)

    editors = [threading.Thread(target=editor, args=(settings.hcm_path, stop, made, 1))]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in editors + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in editors:
        thread.join()
    journal(store, "after the editor stopped")  # a last write sees the editor's last lines
    store.close()  # late checks run, the index settles
    final = head_file(settings, JOURNAL)
    messages = Counter(json.loads(line)["message"] for line in final.splitlines() if line.strip())
    assert all(messages[rid] == 1 for rid in acked), "an acknowledged write was lost or doubled"
    saved = "".join((settings.hcm_path / ".git" / r["saved_as"]).read_text() for r in saved_edits(settings))
    lost = [m for m in made if messages[m] == 0 and m not in saved]
    assert not lost, f"{len(lost)} of {len(made)} hand edits lost: {lost[:5]}"
    assert all(messages[m] <= 1 for m in made)
    assert len(made) > 20  # the editor did run beside the writers
    assert_clean(settings.hcm_path)


# --- a failed write leaves nothing ---------------------------------------------------------------


def test_a_full_disk_while_preparing_the_work_tree_is_a_clean_507_and_the_next_write_goes_through(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = store.settings
    create_mission(store)
    head = git(settings.hcm_path, "rev-parse", "HEAD")
    before = (settings.hcm_path / JOURNAL).read_bytes()
    real = durable.create_new

    def full(dir_fd: int, prefix: str, mode: int = 0o644) -> tuple[int, str]:
        if ".arka-tmp-" in prefix:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(dir_fd, prefix, mode)

    monkeypatch.setattr(durable, "create_new", full)
    response = store.execute(
        envelope(
            "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": {"entry_type": "note", "message": "x"}}, AGENT
        )
    )
    assert response["error"]["code"] == "STORAGE_FULL"
    assert git(settings.hcm_path, "rev-parse", "HEAD") == head
    assert (settings.hcm_path / JOURNAL).read_bytes() == before
    monkeypatch.setattr(durable, "create_new", real)  # space freed
    journal(store, "after space was freed")
    assert store.health()["ready"]
    store.engine.refresh_index()
    assert_clean(settings.hcm_path)


def test_a_work_tree_that_could_not_follow_is_repaired_by_the_next_write(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = store.settings
    create_mission(store)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", refuse)  # putting the new file in place, after the branch moved
    landed = journal(store, "landed, work tree behind")
    assert store.engine.repair_pending
    monkeypatch.undo()
    assert git(settings.hcm_path, "rev-parse", "HEAD").strip() == landed["revision"]
    journal(store, "the next write repairs first")
    assert not store.engine.repair_pending
    lines = (settings.hcm_path / JOURNAL).read_text()
    assert "landed, work tree behind" in lines and "the next write repairs first" in lines
    store.engine.refresh_index()
    assert_clean(settings.hcm_path)


def test_a_snapshot_whose_tag_cannot_be_made_leaves_no_commit(store: HcmStore) -> None:
    settings = store.settings
    create_mission(store)
    head = git(settings.hcm_path, "rev-parse", "HEAD")
    blocker = settings.hcm_path / ".git/refs/tags/snapshot"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the tag folder goes\n")  # as a root-owned folder would refuse it
    request = envelope("HCM_SNAPSHOT_MISSION", {"mission_id": "m1"}, request_id="snap-1")
    assert store.execute(request)["status"] == "error"
    assert git(settings.hcm_path, "rev-parse", "HEAD") == head
    blocker.unlink()
    answer = store.execute(request)
    assert answer["status"] == "ok" and "replayed" not in answer
    name = answer["data"]["snapshot_id"]
    assert git(settings.hcm_path, "rev-parse", f"snapshot/{name}^{{commit}}").strip() == answer["revision"]


def test_a_replay_makes_good_a_tag_the_first_attempt_did_not_write(store: HcmStore) -> None:
    settings = store.settings
    create_mission(store)
    request = envelope("HCM_SNAPSHOT_MISSION", {"mission_id": "m1"}, request_id="snap-2")
    first = store.execute(request)
    name = first["data"]["snapshot_id"]
    git(settings.hcm_path, "tag", "-d", f"snapshot/{name}")  # as an older version could leave it
    again = store.execute(request)
    assert again["replayed"] is True
    assert git(settings.hcm_path, "rev-parse", f"snapshot/{name}^{{commit}}").strip() == first["revision"]


def test_a_command_run_as_another_user_than_the_owner_is_refused(settings: Settings) -> None:
    git_dir = settings.hcm_path / ".git"
    os.chown(git_dir, 10001, 10001)
    try:
        with pytest.raises(AccessDenied, match="docker compose exec"):
            HcmStore.open(settings)
        result = CliRunner().invoke(
            main, ["--hcm", str(settings.hcm_path), "--config", str(settings.config_path), "missions", "list"]
        )
        assert result.exit_code == 5 and "uid 10001" in result.output
        git_dir.chmod(0o2775)  # a folder shared through its group is fine
        HcmStore.open(settings).close()
    finally:
        os.chown(git_dir, os.geteuid(), os.getegid())
        git_dir.chmod(0o755)


# --- damaged or derived state -------------------------------------------------------------------


def test_a_damaged_git_index_is_rebuilt_at_open(store: HcmStore) -> None:
    settings = store.settings
    create_mission(store)
    store.close()
    index = settings.hcm_path / ".git/index"
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    with HcmStore.open(settings) as reopened:
        journal(reopened, "after the repair")
    assert_clean(settings.hcm_path)


def test_readiness_tries_a_write(store: HcmStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.health()["ready"]

    def read_only(dir_fd: int, prefix: str, mode: int = 0o644) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(durable, "create_new", read_only)  # os.access would still say writable
    health = store.health()
    assert not health["ready"] and "read-only" in health["problems"][0]


def test_a_branch_moved_back_by_hand_is_refused_until_an_admin_decides(store: HcmStore) -> None:
    settings = store.settings
    hcm = settings.hcm_path
    create_mission(store)
    acked = [journal(store, f"entry {i}", request_id=f"e-{i}") for i in range(5)]
    store.close()
    old_tip = git(hcm, "rev-parse", "HEAD").strip()
    git(hcm, "reset", "-q", "--hard", "HEAD~5")  # what a person would type
    with HcmStore.open(settings) as reopened:
        assert not reopened.health()["ready"]
        retry = reopened.execute(
            envelope(
                "HCM_APPEND_JOURNAL",
                {"mission_id": "m1", "entry": {"entry_type": "note", "message": "entry 4"}},
                AGENT,
                request_id="e-4",
            )
        )
        assert retry["error"]["code"] == "READ_ONLY" and "accept-rewind" in retry["error"]["message"]
    assert any("moved back by hand" in f.message for f in verify_hcm(hcm).errors)
    result = CliRunner().invoke(
        main,
        [
            "--hcm",
            str(hcm),
            "--config",
            str(settings.config_path),
            "--as",
            "human/alice",
            "accept-rewind",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["old"] == old_tip
    before = commit_count(hcm)
    with HcmStore.open(settings) as reopened:
        retry = reopened.execute(
            envelope(
                "HCM_APPEND_JOURNAL",
                {"mission_id": "m1", "entry": {"entry_type": "note", "message": "entry 4"}},
                AGENT,
                request_id="e-4",
            )
        )
        assert retry["error"]["code"] == "CONFLICTING_UPDATE"  # never applied twice
        journal(reopened, "a new write")
    assert commit_count(hcm) == before + 1
    assert len(acked) == 5


def test_a_rewind_undone_lets_writes_through_again(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store)
    journal(store, "one")
    journal(store, "two")
    tip = git(hcm, "rev-parse", "HEAD").strip()
    git(hcm, "update-ref", "refs/heads/main", "HEAD~1")
    with pytest.raises(AssertionError):
        journal(store, "refused")
    git(hcm, "update-ref", "refs/heads/main", tip)  # undone
    journal(store, "three")


def test_a_damaged_branch_says_restore_not_init(store: HcmStore) -> None:
    settings = store.settings
    create_mission(store)
    store.close()
    (settings.hcm_path / ".git/refs/heads/main").write_text("")
    with pytest.raises(IoError, match="damaged") as caught:
        HcmStore.open(settings)
    assert "init" not in caught.value.message


def test_a_damaged_old_commit_makes_the_store_read_only_with_the_reason(store: HcmStore) -> None:
    settings = store.settings
    create_mission(store)
    journal(store, "one")
    store.close()
    hcm = settings.hcm_path
    git(hcm, "gc", "-q")  # one pack: damage an old commit inside it
    first = git(hcm, "rev-list", "--max-parents=0", "HEAD").strip()
    pack = next((hcm / ".git/objects/pack").glob("*.pack"))
    idx = pack.with_suffix(".idx")
    offsets = git(hcm, "verify-pack", "-v", str(idx))
    offset = next(int(line.split()[4]) for line in offsets.splitlines() if line.startswith(first))
    data = bytearray(pack.read_bytes())
    pack.chmod(0o644)
    data[offset + 4] ^= 0xFF
    pack.write_bytes(bytes(data))
    with HcmStore.open(settings) as reopened:
        health = reopened.health()
        assert not health["ready"] and "cannot be read" in health["problems"][0]
        refused = reopened.execute(
            envelope(
                "HCM_APPEND_JOURNAL",
                {"mission_id": "m1", "entry": {"entry_type": "note", "message": "x"}},
                AGENT,
            )
        )
        assert refused["error"]["code"] == "READ_ONLY"
