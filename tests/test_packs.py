"""One pack per batch: the packs and indexes the store writes must be exactly git's formats, the
store must read objects it has not written yet, and small packs must be folded."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm import durable
from arka_git_hcm.config import Settings
from arka_git_hcm.errors import HcmError
from arka_git_hcm.gitrepo import GitRepo, Signature, appended, gitbin, packs
from arka_git_hcm.services.store import HcmStore
from arka_git_hcm.writepath import pack_folding

from .conftest import assert_clean, create_mission, git, journal, ok, open_store


def new_repo(path: Path) -> GitRepo:
    pygit2.init_repository(str(path))
    return GitRepo(path)


def blob_objects(count: int, seed: int = 1) -> list[tuple[bytes, int, bytes, bytes | None]]:
    rng = random.Random(seed)
    objects: list[tuple[bytes, int, bytes, bytes | None]] = []
    for i in range(count):
        data = rng.randbytes(rng.choice([0, 5, 300, 70_000])) + str(i).encode()
        objects.append((packs.object_id(b"blob", data), 3, data, None))
    return objects


def edited_versions(count: int, seed: int, kinds: tuple[str, ...]) -> list[bytes]:
    """Successive versions of a wide object: ids replaced, entries inserted and removed, or two
    ids far apart replaced (a delta of head and tail then carries the whole middle)."""
    rng = random.Random(seed)
    data = rng.randbytes(20_000)
    versions = []
    for _ in range(count):
        b = bytearray(data)
        at = rng.randrange(0, len(b) - 40)
        kind = rng.choice(kinds)
        if kind in ("splice", "two"):
            b[at : at + 20] = rng.randbytes(20)
        if kind == "two":
            other = rng.randrange(0, len(b) - 20)
            b[other : other + 20] = rng.randbytes(20)
        if kind == "insert":
            b[at:at] = rng.randbytes(rng.randrange(1, 400))
        if kind == "remove":
            del b[at : at + rng.randrange(1, 40)]
        data = bytes(b)
        versions.append(data)
    return versions


def index_by_git(pack: Path, tmp: Path) -> bytes:
    """The .idx that `git index-pack` computes for a copy of ``pack``."""
    copy = tmp / "copy.pack"
    shutil.copy(pack, copy)
    subprocess.run(
        ["git", "index-pack", "-o", str(tmp / "copy.idx"), str(copy)], check=True, capture_output=True
    )
    return (tmp / "copy.idx").read_bytes()


def test_a_pack_of_whole_objects_is_what_git_indexes(tmp_path: Path) -> None:
    repo_dir = tmp_path / "r"
    new_repo(repo_dir)
    pack_dir = repo_dir / ".git" / "objects" / "pack"
    objects = blob_objects(60)
    name = packs.write_pack(pack_dir, objects)
    assert (pack_dir / f"{name}.idx").read_bytes() == index_by_git(pack_dir / f"{name}.pack", tmp_path)
    git(repo_dir, "verify-pack", str(pack_dir / f"{name}.idx"))
    libgit2 = pygit2.Repository(str(repo_dir))
    for oid, _, data, _ in objects:
        assert libgit2[oid.hex()].read_raw() == data
        assert git(repo_dir, "cat-file", "-s", oid.hex()).strip() == str(len(data))
    assert packs.write_pack(pack_dir, objects) == name  # the same pack again: already there
    assert packs.pack_names(pack_dir) == [name]


@pytest.mark.parametrize("kinds", [("splice", "insert", "remove"), ("splice", "insert", "remove", "two")])
def test_successive_versions_are_packed_as_deltas_that_git_and_libgit2_read(
    tmp_path: Path, kinds: tuple[str, ...]
) -> None:
    repo_dir = tmp_path / "r"
    new_repo(repo_dir)
    pack_dir = repo_dir / ".git" / "objects" / "pack"
    versions = edited_versions(40, seed=7, kinds=kinds)
    objects: list[tuple[bytes, int, bytes, bytes | None]] = []
    previous = None
    for data in versions:
        oid = packs.object_id(b"blob", data)
        objects.append((oid, 3, data, previous))
        previous = oid
    name = packs.write_pack(pack_dir, objects)
    pack = pack_dir / f"{name}.pack"
    report = git(repo_dir, "verify-pack", "-v", str(pack_dir / f"{name}.idx"))
    assert f"chain length = {packs.MAX_DELTA_DEPTH + 1}:" not in report
    if "two" not in kinds:
        # 40 versions of 20 KB: whole every MAX_DELTA_DEPTH + 1, deltas of a few hundred bytes between
        assert pack.stat().st_size < 4 * 20_500
        assert f"chain length = {packs.MAX_DELTA_DEPTH}:" in report
    assert (pack_dir / f"{name}.idx").read_bytes() == index_by_git(pack, tmp_path)
    libgit2 = pygit2.Repository(str(repo_dir))
    for oid, _, data, _ in objects:
        assert libgit2[oid.hex()].read_raw() == data
    git(repo_dir, "fsck", "--strict", "--no-progress", "--no-dangling")


@settings(max_examples=200, deadline=None)
@given(base=st.binary(min_size=0, max_size=600), target=st.binary(min_size=0, max_size=600))
def test_a_delta_rebuilds_its_target_from_its_base(base: bytes, target: bytes) -> None:
    assert apply_delta(base, packs.make_delta(base, target)) == target


def apply_delta(base: bytes, delta: bytes) -> bytes:
    """git's delta format, read independently of the writer (patch-delta.c's rules)."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = delta[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, at

    base_size, at = varint(0)
    result_size, at = varint(at)
    assert base_size == len(base)
    out = bytearray()
    while at < len(delta):
        command = delta[at]
        at += 1
        if command & 0x80:
            offset = size = 0
            for i in range(4):
                if command & (1 << i):
                    offset |= delta[at] << (8 * i)
                    at += 1
            for i in range(3):
                if command & (0x10 << i):
                    size |= delta[at] << (8 * i)
                    at += 1
            out += base[offset : offset + (size or 0x10000)]
        else:
            assert command, "0 is a reserved delta command"
            out += delta[at : at + command]
            at += command
    assert len(out) == result_size
    return bytes(out)


def test_the_repo_reads_objects_it_has_not_written_yet(tmp_path: Path) -> None:
    repo_dir = tmp_path / "r"
    repo = new_repo(repo_dir)
    blob = repo.write_blob(b'{"a": 1}\n')
    tree = repo.build_tree(None, {"state/missions/m1/meta.json": blob, "meta.json": blob})
    assert packs.pack_names(repo.pack_dir) == []  # nothing on disk yet
    assert repo.read_blob(tree, "state/missions/m1/meta.json") == b'{"a": 1}\n'
    assert repo.blob_data(blob) == b'{"a": 1}\n'
    assert repo.list_dir(tree, "state/missions") == [("m1", True)]
    assert repo.list_dir(tree, "") == [("meta.json", False), ("state", True)]
    assert packs.pack_names(repo.pack_dir) == []
    who = Signature("agent-1", "agent-1@agent.arka", 1_700_000_000, 60)
    commit = repo.write_commit(tree, [], who, who, "HCM_TEST m1: first\n")
    assert repo.commit_info(commit).tree == tree  # read through libgit2: the pending pack is written
    assert len(packs.pack_names(repo.pack_dir)) == 1
    assert git(repo_dir, "cat-file", "-t", commit).strip() == "commit"


def test_commit_trees_are_remembered_without_reading_packs_and_dropped_commits_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = new_repo(tmp_path / "r")
    who = Signature("agent-1", "agent-1@agent.arka", 1_700_000_000, 0)
    tree = repo.build_tree(None, {"a.json": repo.write_blob(b"{}\n")})
    commit = repo.write_commit(tree, [], who, who, "HCM_TEST a: first\n")
    repo.flush_objects()
    reads: list[str] = []
    real_commit = repo._commit

    def counted(oid: str) -> pygit2.Commit:
        reads.append(oid)
        return real_commit(oid)

    monkeypatch.setattr(repo, "_commit", counted)
    assert repo.commit_tree(commit) == tree
    assert reads == []  # remembered when written: libgit2 never looked for it
    # a commit of a batch that failed is dropped with its objects: asking for it is an error
    dropped = repo.write_commit(tree, [commit], who, who, "HCM_TEST a: dropped\n")
    repo.discard_pending()
    with pytest.raises(HcmError):
        repo.commit_tree(dropped)
    assert reads == [dropped]
    # a commit written by another process is read once, then remembered
    other = str(
        pygit2.Repository(str(tmp_path / "r")).create_commit(
            None, who.to_pygit2(), who.to_pygit2(), "p\n", pygit2.Oid(hex=tree), [pygit2.Oid(hex=commit)]
        )
    )
    assert repo.commit_tree(other) == tree
    assert repo.commit_tree(other) == tree
    assert reads == [dropped, other]


def test_commits_are_the_bytes_libgit2_writes(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    libgit2 = pygit2.Repository(str(tmp_path / "r"))
    tree = repo.build_tree(None, {"a.json": repo.write_blob(b"{}\n")})
    repo.flush_objects()
    parent = str(
        libgit2.create_commit(
            None, pygit2.Signature("x", "x@y.z", 1, 0), pygit2.Signature("x", "x@y.z", 1, 0), "p\n", tree, []
        )
    )
    cases = [
        (Signature("agent-1", "agent-1@agent.arka", 1_700_000_000, 0), [], "HCM_X m: s\n\nArka-Op: X\n"),
        (Signature(" Ünïcode name ", "a@b.c", 1_700_000_001, -330), [parent], "no newline"),
        (Signature("arka-hcm", "hcm@arka.local", 2_000_000_000, 120), [parent, parent], "é\n"),
    ]
    for who, parents, message in cases:
        ours = repo.write_commit(tree, parents, who, who, message)
        theirs = libgit2.create_commit(
            None,
            who.to_pygit2(),
            who.to_pygit2(),
            message,
            pygit2.Oid(hex=tree),
            [pygit2.Oid(hex=p) for p in parents],
        )
        assert ours == str(theirs), who


def _packs_of(hcm: Path) -> int:
    return len(packs.pack_names(hcm / ".git" / "objects" / "pack"))


def test_small_packs_are_folded_and_other_handles_reopen(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pack_folding, "PACKS_BEFORE_REPACK", 4)
    monkeypatch.setattr(pack_folding, "GIT_REPACK_ABOVE", 5)
    hcm = settings.hcm_path
    with open_store(settings) as store, open_store(settings) as other:
        create_mission(store, "m1")
        first_handle = other.repo._repo
        seen: list[int] = []
        for i in range(30):
            journal(store, f"entry {i}")
            store.engine.packs.wait_idle(600)  # the fold this write may have started
            seen.append(_packs_of(hcm))
        assert max(seen) <= 8, seen  # without folding there would be 32 packs
        assert (hcm / ".git" / "arka-hcm" / "packs-rolled-up").exists()
        # the other store reopens its libgit2 handle and reads everything, old and new
        context = ok(other, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"})
        assert other.repo._repo is not first_handle
        assert len(context["data"]["last_journal_entries"]) > 0
    assert_clean(hcm)
    assert git(hcm, "count-objects", "-v").splitlines()[0] == "count: 0"  # nothing loose


def test_own_packs_are_folded_from_memory_into_one_synced_pack_of_deltas(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pack_folding, "PACKS_BEFORE_REPACK", 10_000)  # folds only when asked
    git_repacks: list[Path] = []
    synced: list[str] = []
    real_sync = packs.sync_pack

    def repack(workdir: Path) -> bool:
        git_repacks.append(workdir)
        return True

    def sync(pack_dir: Path, name: str) -> None:
        synced.append(name)
        real_sync(pack_dir, name)

    monkeypatch.setattr(gitbin, "repack_geometric", repack)
    monkeypatch.setattr(packs, "sync_pack", sync)
    hcm = settings.hcm_path
    with open_store(settings) as store:
        for i in range(150):  # a state/missions tree wider at each write, over 4 KiB at the end
            create_mission(store, f"m{i:03d}")
        before = set(packs.pack_names(hcm / ".git" / "objects" / "pack"))
        own = [pack.name for pack in store.repo._own_packs]
        assert len(own) == 150 and set(own) <= before
        pack_bytes = sum((hcm / ".git" / "objects" / "pack" / f"{n}.pack").stat().st_size for n in own)
        assert store.repo.fold_own_packs() == 150
        after = set(packs.pack_names(hcm / ".git" / "objects" / "pack"))
        assert after == (before - set(own)) | set(synced) and len(synced) == 1
        # the fold is held in their place (the next folds copy its compressed objects)
        assert [pack.name for pack in store.repo._own_packs] == synced
        assert store.repo._own_bytes == store.repo._own_packs[0].weight > 0
        folded = hcm / ".git" / "objects" / "pack" / f"{synced[0]}.pack"
        assert folded.stat().st_size < pack_bytes  # one pack header, and deltas of the wide trees
        assert (hcm / ".git" / "arka-hcm" / "packs-rolled-up").exists()  # other processes reopen
        # reads and writes go on after the fold
        ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m003"})
        journal(store, "after the fold", "m003")
    assert git_repacks == []  # no git process was needed
    assert git(hcm, "fsck", "--strict", "--no-dangling").strip() == ""
    verify = git(hcm, "verify-pack", "-v", str(folded.with_suffix(".idx")))
    assert "chain length = 1:" in verify  # the missions trees are deltas of their previous versions
    assert_clean(hcm)


def test_journal_versions_written_by_separate_batches_become_deltas_when_folded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes spread over missions put each version of a journal in a different batch's pack,
    whole; the fold stores each as a delta of the previous one, copying the rest as compressed
    (no deflate again, no read back), so a long run's packs grow by what the appends add."""
    monkeypatch.setattr(pack_folding, "PACKS_BEFORE_REPACK", 10_000)  # folds only when asked
    hcm = settings.hcm_path
    pack_dir = hcm / ".git" / "objects" / "pack"
    missions = [f"m{i}" for i in range(4)]
    with open_store(settings) as store:
        for mission in missions:
            create_mission(store, mission)
        store.repo.fold_own_packs()
        rng = random.Random(5)
        for round_ in range(30):  # journals over DELTA_MIN (4 KiB) after a few rounds
            for mission in missions:  # one batch each: the previous version is in another pack
                journal(store, f"round {round_} {rng.randbytes(300).hex()}", mission)
        store.repo.flush_objects()
        journal_ids = {
            git(hcm, "rev-parse", f"HEAD:state/missions/{m}/journal.jsonl").strip() for m in missions
        }
        unfolded = sum(p.stat().st_size for p in pack_dir.glob("*.pack"))
        read_back = store.repo.objects_read_back
        assert store.repo.fold_own_packs() == 121
        assert store.repo.objects_read_back == read_back  # every whole object copied as held
        (folded,) = [pack.name for pack in store.repo._own_packs]
        report = git(hcm, "verify-pack", "-v", str(pack_dir / f"{folded}.idx"))
        blob_deltas = [line for line in report.splitlines() if " blob " in line and len(line.split()) == 7]
        assert len(blob_deltas) >= 4 * 20  # (oid, type, size, packed size, offset, depth, base)
        assert all(oid in report for oid in journal_ids)
        assert (pack_dir / f"{folded}.pack").stat().st_size * 3 < unfolded
        for mission in missions:  # every version reads back whole, through libgit2 and git
            entries = ok(
                store,
                "HCM_GET_MISSION_CONTEXT",
                {"mission_id": mission, "options": {"include_last_entries": 500}},
            )
            assert len(entries["data"]["last_journal_entries"]) == 30
    assert git(hcm, "fsck", "--strict", "--no-dangling").strip() == ""
    for n in range(1, 30):
        assert f"round {n - 1} " in git(hcm, "show", f"HEAD~{4 * (30 - n)}:state/missions/m0/journal.jsonl")
    assert_clean(hcm)


def test_held_objects_stay_bounded_and_packs_let_go_of_stay_readable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arka_git_hcm.gitrepo import maintenance, objects

    monkeypatch.setattr(objects, "OWN_OBJECTS_KEPT", 120)
    monkeypatch.setattr(maintenance, "OWN_OBJECTS_KEPT", 120)
    monkeypatch.setattr(pack_folding, "PACKS_BEFORE_REPACK", 10_000)  # folds only when asked
    hcm = settings.hcm_path
    with open_store(settings) as store:
        create_mission(store, "m1")
        most = 0
        for i in range(120):
            journal(store, f"entry {i} " + "x" * 300)
            if i % 8 == 7:
                store.repo.fold_own_packs()
            held = sum(len(pack.objects) for pack in store.repo._own_packs)
            most = max(most, held)
        assert most <= 120
        released = set(packs.pack_names(store.repo.pack_dir)) - {p.name for p in store.repo._own_packs}
        assert released  # folds let go of stay on disk, for git's repack
        entries = ok(
            store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1", "options": {"include_last_entries": 500}}
        )
        assert len(entries["data"]["last_journal_entries"]) == 120
    assert_clean(hcm)


def test_folds_form_a_geometric_series() -> None:
    def own(*counts: int) -> list[packs.OwnPack]:
        held = packs.Held(b"", 3, 0, b"")
        return [packs.OwnPack.of(f"pack-{i}", [held] * count, 1000) for i, count in enumerate(counts)]

    def run(*counts: int) -> list[int]:
        return [len(pack.objects) for pack in GitRepo._geometric_run(own(*counts))]

    assert run(800, 300, 100, 10, 10, 10, 10) == [10, 10, 10, 10]
    assert run(800, 300, 70, 10, 10, 10, 10) == [70, 10, 10, 10, 10]
    assert run(800, 300, 100, 40, 40, 40) == [800, 300, 100, 40, 40, 40]
    assert run(50, 10) == [10]  # nothing to fold: one pack
    assert run() == []


def test_a_fold_waits_for_no_one_and_deletes_nothing_while_fsck_reads(settings: Settings) -> None:
    with open_store(settings) as store:
        for i in range(3):
            create_mission(store, f"m{i}")
        before = packs.pack_names(store.repo.pack_dir)
        with gitbin.maintenance_lock(settings.hcm_path, exclusive=False) as fd:  # as fsck holds it
            assert fd is not None
            assert store.repo.fold_own_packs() == 0
            assert packs.pack_names(store.repo.pack_dir) == before
        # once fsck is done the fold goes ahead (a background git child of the store may hold
        # the lock a moment longer on a loaded host: the fold then skips its turn, as designed)
        deadline = time.monotonic() + 60
        folded = store.repo.fold_own_packs()
        while folded == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            folded = store.repo.fold_own_packs()
        assert folded == 3
    assert git(settings.hcm_path, "fsck", "--strict", "--no-dangling").strip() == ""


def test_a_cli_run_folds_packs_at_close_when_they_pile_up(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pack_folding, "PACKS_AT_CLOSE", 5)
    monkeypatch.setattr(pack_folding, "PACKS_BEFORE_REPACK", 10_000)  # as a process of one write each
    hcm = settings.hcm_path
    with open_store(settings) as store:
        create_mission(store, "m1")
        for i in range(8):
            journal(store, f"entry {i}")
        assert _packs_of(hcm) > 5
    assert _packs_of(hcm) <= 3
    assert_clean(hcm)


def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        threading_sleep()
    raise AssertionError("condition not reached in 3 s")


def test_a_failing_pack_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = new_repo(tmp_path / "r")
    repo.write_blob(b"x" * 1000)
    real_write_all = durable.files.write_all

    def disk_full(fd: int, data: object) -> None:
        real_write_all(fd, b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(durable.files, "write_all", disk_full)
    with pytest.raises(HcmError):
        repo.flush_objects()
    assert [p.name for p in repo.pack_dir.iterdir()] == [] if repo.pack_dir.exists() else True
    monkeypatch.undo()
    assert repo.flush_objects() is not None  # the objects were kept for the next try
    repo.close()


def test_large_blobs_are_compressed_in_packs(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    big = b'{"entry": "the same line again and again"}\n' * 8000  # 360 KB of JSON lines
    repo.write_blob(big)
    name = repo.flush_objects()
    assert (repo.pack_dir / f"{name}.pack").stat().st_size < len(big) // 10
    repo.close()


def test_the_background_repack_folds_small_packs_and_loose_objects_and_syncs_before_deleting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folding deletes packs that may hold history acknowledged long ago: the new pack must be
    durable first, whatever the store's durability; a large pack is left alone, and every
    object of the folded packs (reachable or not) is kept."""
    repo = new_repo(tmp_path / "r")
    pack_dir = repo.pack_dir
    objects = blob_objects(73, seed=7)
    big = packs.write_pack(pack_dir, objects[:64])
    small = [packs.write_pack(pack_dir, objects[a:b]) for a, b in ((64, 66), (66, 69), (69, 73))]
    (tmp_path / "by-hand.txt").write_text("loose by hand\n")
    loose_id = git(tmp_path / "r", "hash-object", "-w", str(tmp_path / "by-hand.txt")).strip()
    repo.close()
    events: list[tuple[str, ...]] = []
    real_git, real_sync, real_remove = gitbin._git, packs.sync_pack, packs.remove_pack

    def spy_git(workdir: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        events.append(("git", *args))
        return real_git(workdir, *args, **kwargs)  # type: ignore[arg-type]

    def spy_sync(pack_dir: Path, name: str) -> None:
        events.append(("sync", name))
        real_sync(pack_dir, name)

    def spy_remove(pack_dir: Path, name: str) -> None:
        events.append(("rm", name))
        real_remove(pack_dir, name)

    monkeypatch.setattr(gitbin, "_git", spy_git)
    monkeypatch.setattr(packs, "sync_pack", spy_sync)
    monkeypatch.setattr(packs, "remove_pack", spy_remove)
    assert gitbin.repack_geometric(tmp_path / "r")
    left = packs.pack_names(pack_dir)
    assert big in left and len(left) == 2 and not set(small) & set(left)
    (new,) = set(left) - {big}
    assert packs.index_object_count(pack_dir, new) == 9 + 1  # the small packs' objects and the loose one
    kinds = [e[0] for e in events]
    assert kinds.index("sync") < kinds.index("rm") and sorted(e[1] for e in events if e[0] == "rm") == sorted(
        small
    )
    fold = next(e for e in events if e[0] == "git" and "pack-objects" in e)
    assert "core.fsync=pack,pack-metadata" in fold and "repack" not in fold  # no history walk
    assert git(tmp_path / "r", "count-objects", "-v").splitlines()[0] == "count: 0"  # loose one packed
    for oid, *_ in objects:
        git(tmp_path / "r", "cat-file", "-e", oid.hex())
    git(tmp_path / "r", "cat-file", "-e", loose_id)
    events.clear()
    assert gitbin.repack_geometric(tmp_path / "r")  # a progression already: nothing to do
    assert packs.pack_names(pack_dir) == left and not events


def test_a_pack_folded_away_by_a_hand_run_gc_meanwhile_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = new_repo(tmp_path / "r")
    objects = blob_objects(9, seed=3)
    names = [packs.write_pack(repo.pack_dir, objects[a : a + 3]) for a in (0, 3, 6)]
    repo.close()
    real_count = packs.index_object_count

    def count(pack_dir: Path, name: str) -> int:
        if name == names[0]:
            git(tmp_path / "r", "repack", "-a", "-d", "-k", "-q")  # git folds everything first
        return real_count(pack_dir, name)

    monkeypatch.setattr(packs, "index_object_count", count)
    assert gitbin.repack_geometric(tmp_path / "r")
    for oid, *_ in objects:
        git(tmp_path / "r", "cat-file", "-e", oid.hex())


@pytest.mark.parametrize(
    ("weights", "folded"),
    [
        ({}, []),
        ({"a": 5}, []),
        ({"a": 1, "b": 2, "c": 4, "d": 8}, []),  # already a progression
        ({"a": 3, "b": 3, "c": 3, "big": 1000}, ["a", "b", "c"]),
        ({"a": 1, "b": 1, "c": 5, "big": 1000}, ["a", "b"]),  # c >= 2 x (a + b): in progression
        ({"a": 2, "b": 2, "c": 5, "big": 1000}, ["a", "b", "c"]),  # c < 2 x (a + b): joins the fold
        ({"a": 10, "b": 10, "c": 30, "d": 100}, ["a", "b", "c"]),  # 100 >= 2 x 50: d stays
        ({"a": 10, "b": 10, "c": 30, "d": 90}, ["a", "b", "c", "d"]),  # d joins: 90 < 2 x 50
    ],
)
def test_the_geometric_split_chooses_as_git_does(weights: dict[str, int], folded: list[str]) -> None:
    assert packs.geometric_split(weights) == folded


def test_verify_reads_a_repository_it_cannot_write(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    hcm = settings.hcm_path
    (hcm / ".git" / "arka-hcm" / "maintenance.lock").unlink(missing_ok=True)
    real_open = os.open

    def read_only(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only)
    ok_, output = gitbin.run_fsck(hcm)
    monkeypatch.undo()
    assert ok_, output


def test_a_killed_index_refresh_leaves_no_lock_that_blocks_the_next_one(settings: Settings) -> None:
    git_dir = settings.hcm_path / ".git"
    (git_dir / "index.lock").write_bytes(b"")  # git's lock, left by a killed refresh
    (git_dir / "arka-hcm" / "index-refresh.0123456789ab").write_bytes(b"")  # its marker, free
    with open_store(settings) as store:
        assert not (git_dir / "index.lock").exists()
        create_mission(store, "m1")
    assert_clean(settings.hcm_path)
    assert not list((git_dir / "arka-hcm").glob("index-refresh.*"))


def test_a_running_refresh_keeps_its_lock(settings: Settings) -> None:
    import fcntl

    git_dir = settings.hcm_path / ".git"
    (git_dir / "index.lock").write_bytes(b"")
    marker = git_dir / "arka-hcm" / "index-refresh.fedcba987654"
    fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's refresh, running
    try:
        store = open_store(settings)
        assert (git_dir / "index.lock").exists()
    finally:
        os.close(fd)
        (git_dir / "index.lock").unlink()
    store.close()


def test_readers_never_flush_a_batch_being_built(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    blob = repo.write_blob(b"pending")
    tree = repo.build_tree(None, {"a.json": blob})
    repo.resolve_commit("HEAD")  # a reader resolving a revision
    assert packs.pack_names(repo.pack_dir) == []
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            repo.build_tree(tree, {f"m{i % 50}/x.json": repo.write_blob(str(i).encode())})

    def flusher() -> None:
        try:
            while not stop.is_set():
                repo.flush_objects()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=flusher)]
    for t in threads:
        t.start()
    threading_sleep(0.8)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    repo.flush_objects()
    git(tmp_path / "r", "fsck", "--strict", "--no-progress", "--no-dangling")
    repo.close()


def test_writes_leave_no_temp_file_in_the_work_tree(store: HcmStore) -> None:
    create_mission(store, "m1")
    for i in range(5):
        journal(store, f"entry {i}")
    hcm = store.settings.hcm_path
    leftovers = [p for p in hcm.rglob("*arka-tmp*") if ".git" not in p.parts]
    assert leftovers == []
    store.engine.refresh_index()
    assert git(hcm, "status", "--porcelain", "--ignored") == ""


def threading_sleep(seconds: float = 0.01) -> None:
    time.sleep(seconds)


def test_leftover_pack_files_of_killed_writers_are_removed_at_open(settings: Settings) -> None:
    pack_dir = settings.hcm_path / ".git" / "objects" / "pack"
    old_orphan = pack_dir / f"pack-{'1' * 40}.pack"
    new_orphan = pack_dir / f"pack-{'2' * 40}.pack"
    dead_temp = pack_dir / "tmp_pack_arka_123_1"
    live_temp = pack_dir / "tmp_pack_arka_456_1"
    for path in (old_orphan, new_orphan, dead_temp, live_temp):
        path.write_bytes(b"partial")
    os.utime(old_orphan, (0, 0))
    os.utime(dead_temp, (0, 0))
    kept = set(packs.pack_names(pack_dir))
    with open_store(settings) as store:
        assert set(packs.pack_names(pack_dir)) == kept
        ok(store, "HCM_LIST_MISSIONS", {})
    assert not old_orphan.exists() and not dead_temp.exists()
    assert new_orphan.exists() and live_temp.exists()  # maybe being installed right now


def test_a_hand_run_git_gc_is_noticed_and_the_handle_reopened(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arka_git_hcm.gitrepo import maintenance

    monkeypatch.setattr(maintenance, "PACK_LIST_CHECK_S", 0.0)
    with open_store(settings) as store:
        create_mission(store, "m1")
        journal(store, "before a gc by hand")
        handle = store.repo._repo
        git(settings.hcm_path, "gc", "--quiet")  # plain git: no stamp, packs replaced
        context = ok(store, "HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"})
        assert store.repo._repo is not handle  # the deleted packs' mappings are let go
        assert [e["message"] for e in context["data"]["last_journal_entries"]] == ["before a gc by hand"]
        journal(store, "after it")
    assert_clean(settings.hcm_path)


def test_a_ref_in_a_folder_that_does_not_exist_yet_is_created_with_its_reflog(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    who = Signature("agent-1", "agent-1@agent.arka", 1_700_000_000, 0)
    tree = repo.build_tree(None, {"a.json": repo.write_blob(b"{}\n")})
    commit = repo.write_commit(tree, [], who, who, "HCM_TEST a: first\n")
    ref = "refs/heads/team/feature"
    assert repo.compare_and_swap_ref(ref, None, commit, who=who, message="first\nmore", durable=True)
    assert git(tmp_path / "r", "rev-parse", ref).strip() == commit
    reflog = (tmp_path / "r" / ".git" / "logs" / ref).read_text()
    assert reflog.startswith("0" * 40 + f" {commit} ") and reflog.endswith("\tfirst\n")
    assert not (tmp_path / "r" / ".git" / f"{ref}.lock").exists()
    # the same move again is refused: the ref is no longer where the caller thought
    assert not repo.compare_and_swap_ref(ref, None, commit, who=who, message="again", durable=False)


def journal_lines(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        b'{"author_id":"agent-%d","entry_type":"note","message":"step %d: %s"}\n'
        % (rng.randint(1, 40), rng.randint(1, 10**6), rng.choice([b"nothing blocking", b"two anomalies"]))
        for _ in range(count)
    ]


def test_an_appended_version_is_deflated_from_what_it_adds_and_git_reads_every_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each append of a journal held in its own pack is stored whole; its stream is made by the
    compressor that made the previous version's, fed only the new line (never the whole file
    again), and every version reads back byte for byte through git and libgit2."""
    repo = new_repo(tmp_path / "r")
    fed: list[int] = []
    real = appended._Growing.extend

    def counting(self: appended._Growing, more: bytes | memoryview) -> bytes:
        fed.append(len(more))
        return real(self, more)

    monkeypatch.setattr(appended._Growing, "extend", counting)
    lines = journal_lines(400, seed=3)
    data, previous, ids = b"", None, []
    for line in lines:  # one pack per version, as sequential writes make them
        data += line
        previous = repo.write_blob(data, previous)
        ids.append(previous)
        repo.flush_objects()
    first = next(i for i, n in enumerate(fed) if n < 1000)  # appends start past DELTA_MIN
    assert first == 1
    assert fed[first - 1] > packs.DELTA_MIN  # the first append seen: deflated whole, once
    assert fed[first:] == [len(line) for line in lines[len(lines) - len(fed) + first :]]
    whole = len(zlib.compress(data, 1))
    streams = [h.stream for p in repo._own_packs for h in p.objects if h.oid == bytes.fromhex(ids[-1])]
    assert streams and streams[0] is not None and len(streams[0]) < whole * 1.1
    assert zlib.decompress(streams[0]) == data
    repo.close()
    hcm = tmp_path / "r"
    assert git(hcm, "fsck", "--strict", "--no-dangling").strip() == ""
    for n in (0, 50, 399):
        assert git(hcm, "cat-file", "blob", ids[n]).encode() == b"".join(lines[: n + 1])


def test_appended_streams_follow_only_appends_and_stay_bounded() -> None:
    streams = appended.AppendedStreams(max_bytes=3 * appended.STATE_BYTES)
    base = b"".join(journal_lines(50, seed=4))
    base_id = packs.object_id(b"blob", base)
    rewritten = base[:-10] + b"changed!!\n"
    assert streams.stream(base_id, base, b"x" * 20, rewritten) is None  # not an append
    assert streams.stream(base_id, base, b"x" * 20, base) is None  # nothing added
    data = base
    for i in range(6):  # six files followed: the least recently extended are let go
        grown = data + b'{"n":%d}\n' % i
        made = streams.stream(packs.object_id(b"blob", data), data, packs.object_id(b"blob", grown), grown)
        assert made is not None and zlib.decompress(made[0]) == grown
        data = b"".join(journal_lines(50, seed=10 + i))
    assert len(streams) <= 2


def test_folds_of_appended_versions_never_read_a_journal_back(tmp_path: Path) -> None:
    """One version in MAX_DELTA_DEPTH of a growing file is an anchor, stored whole in every
    pack with its stream kept; the versions between are deltas. However the folds group the
    packs, none needs a version whole that it no longer holds (no read back, no deflate of
    the whole journal), and git reads every version."""
    repo = new_repo(tmp_path / "r")
    lines = journal_lines(300, seed=6)
    data, previous, ids = b"", None, []
    for n, line in enumerate(lines):
        data += line
        previous = repo.write_blob(data, previous)
        ids.append(previous)
        if n % 7 == 3:  # now and then two versions in one pack: the second is a delta there
            continue
        repo.flush_objects()
        if n % 5 == 0:
            repo.fold_own_packs()
    repo.flush_objects()
    while repo.fold_own_packs():
        pass
    assert repo.objects_read_back == 0
    anchors = [h for p in repo._own_packs for h in p.objects if h.anchor]
    assert anchors and all(h.stream is not None for h in anchors)
    repo.close()
    hcm = tmp_path / "r"
    depths = [
        int(line.split()[5])
        for pack in (hcm / ".git" / "objects" / "pack").glob("*.idx")
        for line in git(hcm, "verify-pack", "-v", str(pack)).splitlines()
        if " blob " in line and len(line.split()) == 7
    ]
    assert depths and max(depths) < packs.MAX_DELTA_DEPTH
    assert git(hcm, "fsck", "--strict", "--no-dangling").strip() == ""
    for n in (0, 17, 150, 299):
        assert git(hcm, "cat-file", "blob", ids[n]).encode() == b"".join(lines[: n + 1])
