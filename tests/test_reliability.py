"""Reliability (issue 11): hand edits are never silently lost, a failed write leaves nothing,
damaged or derived state is repaired or reported. Each test fails on the code before the fix."""

from __future__ import annotations

import ctypes
import errno
import json
import logging
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
from arka_git_hcm.admin.init import init_hcm
from arka_git_hcm.admin.verify import verify_hcm
from arka_git_hcm.cli import main
from arka_git_hcm.config import Settings
from arka_git_hcm.durable import files as durable_files
from arka_git_hcm.errors import AccessDenied, IoError, ReadOnly
from arka_git_hcm.gitrepo import packs
from arka_git_hcm.services.store import HcmStore

from .conftest import (
    AGENT,
    assert_clean,
    commit_count,
    create_mission,
    envelope,
    git,
    journal,
    make_settings,
    ok,
)

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


def test_a_killed_writers_temp_file_is_removed_by_the_next_open_however_soon(store: HcmStore) -> None:
    """A writer killed after writing its batch's temp files but before the intent leaves temp files
    no intent names (found by the kill campaign: a server restarted 3 s after the kill kept one for
    its whole run, hidden from `git status` by .git/info/exclude). Temp files are only made under
    the store's lock, so the next open, holding it, removes them whatever their age."""
    settings = store.settings
    create_mission(store)
    store.close()
    orphan = settings.hcm_path / "state/missions/m1/.journal.jsonl.arka-tmp-0123456789abcdef"
    orphan.write_text("a copy the killed writer was about to link in\n")
    with HcmStore.open(settings):
        assert not orphan.exists()
    assert_clean(settings.hcm_path)


def test_a_full_disk_while_writing_a_temp_file_leaves_no_temp_file(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp file was created, its bytes did not fit (found by the disk-full campaign on tmpfs:
    the temp file stayed beside the journal, a full copy of it on a full disk, because the folder's
    descriptor was closed before the temp file was unlinked through it)."""
    settings = store.settings
    create_mission(store)
    real = durable.write_all

    def full(fd: int, data: Any) -> None:
        if isinstance(data, bytes) and b"after the disk filled" in data:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(durable, "write_all", full)
    response = store.execute(
        envelope(
            "HCM_APPEND_JOURNAL",
            {"mission_id": "m1", "entry": {"entry_type": "note", "message": "after the disk filled"}},
            AGENT,
        )
    )
    assert response["error"]["code"] == "STORAGE_FULL"
    leftovers = [
        p.name for p in (settings.hcm_path / "state/missions/m1").iterdir() if ".arka-tmp-" in p.name
    ]
    assert leftovers == []


def _failing_syncfs(code: int) -> Any:
    def syncfs(fd: int) -> int:
        ctypes.set_errno(code)
        return -1

    return syncfs


def test_a_failed_filesystem_sync_is_raised_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs(2) reports what the kernel could not write (an I/O error, a filesystem forced
    read-only after one); sync(2), the old fallback on any failure, reports nothing."""
    monkeypatch.setattr(durable_files, "_syncfs", _failing_syncfs(errno.EIO))
    with pytest.raises(OSError) as caught:
        durable_files.sync_filesystem(tmp_path)
    assert caught.value.errno == errno.EIO


def test_a_durable_write_whose_sync_failed_is_not_acknowledged(
    client_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the read-only campaign: the kernel forced ext4 read-only under load, syncfs
    failed (EROFS, EIO), the store fell back to sync(2), acknowledged the batch, and after e2fsck
    the acknowledged writes were gone. A write whose sync failed answers an error; its retry
    answers once the disk takes writes again, committed once."""
    settings = make_settings(client_dir, durability="full")
    init_hcm(settings, "acme", "ACME")
    with HcmStore.open(settings) as store:
        create_mission(store)
        monkeypatch.setattr(durable_files, "_syncfs", _failing_syncfs(errno.EIO))
        request = envelope(
            "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": {"entry_type": "note", "message": "x"}}, AGENT
        )
        answer = store.execute(request)
        assert answer["status"] == "error" and answer["error"]["code"] == "IO_ERROR", answer
        monkeypatch.undo()
        again = store.execute(request)
        assert again["status"] == "ok", again
    ids = git(settings.hcm_path, "log", "--format=%(trailers:key=Hcm-Request-Id,valueonly)").split()
    assert ids.count(request["request_id"]) == 1
    assert_clean(settings.hcm_path)


def test_a_pack_whose_bytes_never_reached_the_disk_is_moved_aside_at_open(store: HcmStore) -> None:
    """Found by the read-only campaign: the kernel forced ext4 read-only under load (as a power
    cut would), and packs of batches whose sync never completed came back after e2fsck with their
    names and sizes but zeros for bytes. History was whole and every acknowledged write there, but
    `git fsck` failed and every fold (`git repack`) failed until someone removed them by hand. The
    next open moves such a pack aside (kept for an admin) and says so."""
    settings = store.settings
    create_mission(store)
    journal(store, "one")
    store.close()
    pack_dir = settings.hcm_path / ".git/objects/pack"
    name = "pack-" + "ab" * 20
    (pack_dir / f"{name}.pack").write_bytes(bytes(1826))
    (pack_dir / f"{name}.idx").write_bytes(bytes(1240))
    with HcmStore.open(settings) as reopened:
        assert [p["name"] for p in reopened.open_report["damaged_packs"]] == [name]
        journal(reopened, "two")
    assert not (pack_dir / f"{name}.idx").exists()
    assert (settings.hcm_path / ".git/arka-hcm/damaged-packs" / f"{name}.pack").read_bytes() == bytes(1826)
    assert_clean(settings.hcm_path)


def test_a_large_pack_is_checked_whole_once_then_by_its_ends(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each open hashed every pack index whole (168 MB, 0.28 s of every command at 1,000,000
    commits). A pack checked whole is synced and recorded; later opens read its ends only,
    until the files under its name change. A pack never recorded is still checked whole."""
    settings = store.settings
    create_mission(store)
    journal(store, "one")
    store.close()
    monkeypatch.setattr(packs.CheckedPacks, "MIN_INDEX_BYTES", 0)  # every pack counts as large
    checked_whole: list[str] = []
    real = packs.unreadable

    def spy(pack_dir: Path, name: str, *, whole: bool = True) -> str | None:
        if whole:
            checked_whole.append(name)
        return real(pack_dir, name, whole=whole)

    monkeypatch.setattr(packs, "unreadable", spy)
    pack_dir = settings.hcm_path / ".git/objects/pack"
    names = packs.pack_names(pack_dir)
    with HcmStore.open(settings):
        pass
    assert sorted(checked_whole) == names  # checked whole the first time...
    record = (settings.hcm_path / ".git/arka-hcm/packs-checked").read_text()
    assert sorted(line.split()[0] for line in record.splitlines()) == names
    checked_whole.clear()
    with HcmStore.open(settings):
        pass
    assert checked_whole == []  # ...then by their ends
    # the same name over other files (a repack writing it again): checked whole again
    first = names[0]
    data = (pack_dir / f"{first}.idx").read_bytes()
    (pack_dir / f"{first}.idx").unlink()
    (pack_dir / f"{first}.idx").write_bytes(data)
    zeroed = "pack-" + "cd" * 20  # and a pack whose bytes never reached the disk, never recorded
    (pack_dir / f"{zeroed}.pack").write_bytes(bytes(1826))
    (pack_dir / f"{zeroed}.idx").write_bytes(bytes(1240))
    with HcmStore.open(settings) as reopened:
        assert [p["name"] for p in reopened.open_report["damaged_packs"]] == [zeroed]
    assert sorted(checked_whole) == sorted([first, zeroed])
    assert_clean(settings.hcm_path)
    # a pack that cannot be synced (a volume forced read-only) opens, and is not recorded
    (settings.hcm_path / ".git/arka-hcm/packs-checked").unlink()

    def cannot_sync(pack_dir: Path, name: str) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(packs, "sync_pack", cannot_sync)
    with HcmStore.open(settings) as reopened:
        assert reopened.open_report["damaged_packs"] == []
    assert not (settings.hcm_path / ".git/arka-hcm/packs-checked").exists()


def test_a_durable_branch_move_syncs_the_new_ref_before_renaming_it(
    client_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the read-only campaign: after the kernel forced ext4 read-only under load (as a
    power cut on a filesystem that does not order data before a rename would), the branch file
    came back as 41 zero bytes: renamed into place, its bytes never written (the batch's second
    sync had failed). The store then refused to open, saying to restore a backup. Everything
    written after the first sync is a rename, the ref included: its lock, holding the new tip, is
    written before that sync and renamed over the branch after it, so the branch is the old tip
    or the new one, never zeros (and costs no fsync of its own: ~1 ms a durable write)."""
    settings = make_settings(client_dir, durability="full")
    init_hcm(settings, "acme", "ACME")
    lock = settings.hcm_path / ".git" / "refs" / "heads" / "main.lock"
    seen_at_sync: list[str | None] = []
    real = durable_files._syncfs
    assert real is not None

    def spy(fd: int) -> int:
        seen_at_sync.append(lock.read_text() if lock.exists() else None)
        return int(real(fd))

    with HcmStore.open(settings) as store:
        create_mission(store)
        monkeypatch.setattr(durable_files, "_syncfs", spy)
        answer = journal(store, "one")
    tip = git(settings.hcm_path, "rev-parse", "HEAD").strip()
    assert answer["revision"] == tip
    # the first sync of the batch ran while the lock held the new tip: its bytes were synced
    assert seen_at_sync and seen_at_sync[0] == f"{tip}\n", seen_at_sync
    assert not lock.exists()


def test_a_sync_that_returns_while_the_journal_was_aborted_is_not_trusted(
    client_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the read-only campaign (ext4 forced read-only by an error under load): syncfs(2)
    answered 0, the batch was acknowledged, and after e2fsck its branch move was gone. Between
    the journal's abort and the filesystem being flagged read-only, syncfs finds nothing left to
    commit (what was pending was dropped) and reports success. A file created after the sync goes
    through the journal, and fails for good once it is aborted: the store checks that before it
    acknowledges. Here the second sync of the batch (after the branch move) is the one that
    "succeeds" on an aborted journal: every later file creation fails with EROFS."""
    settings = make_settings(client_dir, durability="full")
    init_hcm(settings, "acme", "ACME")
    with HcmStore.open(settings) as store:
        create_mission(store)
        real_syncfs, real_open = durable_files._syncfs, os.open
        assert real_syncfs is not None
        calls = {"sync": 0}
        aborted = threading.Event()

        def syncfs(fd: int) -> int:
            calls["sync"] += 1
            if calls["sync"] == 2:
                aborted.set()  # the journal aborts during this sync, which still answers 0
            return int(real_syncfs(fd))

        def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if aborted.is_set() and flags & os.O_CREAT:
                raise OSError(errno.EROFS, "Read-only file system")
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(durable_files, "_syncfs", syncfs)
        monkeypatch.setattr(os, "open", open_)
        answer = store.execute(
            envelope(
                "HCM_APPEND_JOURNAL",
                {"mission_id": "m1", "entry": {"entry_type": "note", "message": "x"}},
                AGENT,
            )
        )
        monkeypatch.undo()
        assert answer["status"] == "error" and answer["error"]["code"] == "READ_ONLY", answer


def test_a_branch_lock_left_by_a_killed_git_is_named_in_the_refusal(store: HcmStore) -> None:
    """Found by the corruption campaign: a `refs/heads/main.lock` left by a killed git process
    made every write answer BUSY "the HCM branch kept moving during the write", which it did
    not: the answer names the lock file and what to do about it."""
    settings = store.settings
    create_mission(store)
    lock = settings.hcm_path / ".git/refs/heads/main.lock"
    lock.write_text(git(settings.hcm_path, "rev-parse", "HEAD"))
    answer = store.execute(
        envelope(
            "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": {"entry_type": "note", "message": "x"}}, AGENT
        )
    )
    assert answer["error"]["code"] == "BUSY"
    assert "main.lock" in answer["error"]["message"], answer["error"]
    lock.unlink()
    journal(store, "once the lock is gone")


def test_a_truncated_loose_object_is_moved_aside_instead_of_hanging_the_store(store: HcmStore) -> None:
    """Found by the corruption campaign: a loose object cut short (written by a hand-run git)
    made libgit2 spin forever in Repository.get: every command and the server's start hung.
    The store checks loose objects at open, moves a damaged one aside, and the history that
    needs it reads as damaged: READ_ONLY with the reason, never a hang."""
    settings = store.settings
    create_mission(store)
    store.close()
    hcm = settings.hcm_path
    (hcm / "hand.txt").write_text("by hand\n")
    git(hcm, "add", "hand.txt")
    git(hcm, "-c", "user.name=x", "-c", "user.email=x@y.z", "commit", "-qm", "by hand")
    tip = git(hcm, "rev-parse", "HEAD").strip()
    loose = hcm / ".git" / "objects" / tip[:2] / tip[2:]
    loose.chmod(0o644)
    cut = loose.read_bytes()[:20]
    loose.write_bytes(cut)
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def open_it() -> None:
        try:
            with HcmStore.open(settings) as reopened:
                outcome["ready"] = reopened.health()["ready"]
        except Exception as exc:  # a refusal that says why is as good as READ_ONLY
            outcome["error"] = exc
        done.set()

    threading.Thread(target=open_it, daemon=True).start()
    assert done.wait(120), "opening the store hung on the damaged loose object"
    assert outcome.get("ready") is False or isinstance(outcome.get("error"), IoError), outcome
    assert (hcm / ".git/arka-hcm/damaged-objects" / tip).read_bytes() == cut  # kept for an admin
    assert not loose.exists()


def test_a_file_moved_aside_that_cannot_be_checked_yet_is_retried_and_drops_no_other(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the hand-edits campaign: a live server piled up files in .git/arka-hcm/asides
    (408 in a minute) that it never checked. One check that failed dropped every other file due
    in the same round, and itself, for the life of the process."""
    create_mission(store, "m1")
    create_mission(store, "m2")
    late = store.engine.late_edits
    real = late.check
    failures: list[str] = []

    def flaky(aside: Any, also_expected: tuple[str | None, ...] = ()) -> None:
        if "/m1/" in aside.path and len(failures) < 2:
            failures.append(aside.path)
            if len(failures) == 1:
                raise OSError(errno.EIO, "Input/output error")
            raise ReadOnly("the HCM volume is read-only (opening the store's write lock); remount it")
        real(aside, also_expected)

    monkeypatch.setattr(late, "check", flaky)
    caplog.set_level(logging.WARNING, logger="arka_git_hcm")
    journal(store, "one", "m1")
    journal(store, "two", "m2")
    asides = store.settings.hcm_path / ".git" / "arka-hcm" / "asides"
    deadline = time.monotonic() + 60
    while (len(failures) < 2 or any(asides.iterdir())) and time.monotonic() < deadline:
        late.wait_idle(1.0)
        time.sleep(0.05)
    assert len(failures) == 2, "the check never ran, or never again"
    assert sorted(p.name for p in asides.iterdir()) == []
    said = [r for r in caplog.records if "moved aside, failed; it is retried" in r.getMessage()]
    # an unexpected error keeps its stack; an error of the store says all in one line
    assert [r.exc_info is not None for r in said] == [True, False]
    assert said[1].getMessage().endswith("remount it")


def test_a_store_closing_under_hand_edits_leaves_no_file_aside_unchecked(store: HcmStore) -> None:
    """Found by the hand-edits campaign: a server stopped gracefully after a run of writes and
    `>>` appends left hundreds of files in .git/arka-hcm/asides. Checking a file at close may
    adopt a hand edit, a write that moves the journal aside again: those were never checked.
    Close now runs rounds while files wait."""
    create_mission(store)
    path = store.settings.hcm_path / JOURNAL
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            journal(store, f"w{i}")
            i += 1

    def editor() -> None:
        j = 0
        while not stop.is_set():
            with open(path, "a") as f:
                f.write(
                    '{"timestamp":"2026-12-07T10:00:00Z","author_type":"human","author_id":"bob",'
                    f'"entry_type":"note","message":"hand {j}"}}\n'
                )
            j += 1
            time.sleep(0.005)

    threads = [threading.Thread(target=writer) for _ in range(3)] + [threading.Thread(target=editor)]
    for thread in threads:
        thread.start()
    time.sleep(3)  # how long the load runs, not a wait for an outcome
    stop.set()
    for thread in threads:
        thread.join()
    store.close()
    asides = store.settings.hcm_path / ".git" / "arka-hcm" / "asides"
    assert sorted(p.name for p in asides.iterdir()) == []
    hand = [line for line in path.read_text().splitlines() if '"hand ' in line]
    assert hand, "no hand edit was adopted"
