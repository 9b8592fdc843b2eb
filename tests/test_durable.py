"""Files the store creates never follow a link (issue 10 §2), and writes are whole.

Someone with write access to the folder (a hand edit, a team share) plants symbolic links where
the store writes: at the temp names beside work-tree files, in the store's state folder, at a
ref's lock, at the hook. Each test plants one, runs the store, and checks that nothing outside
the folder changed and that the repository is still sound."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm import durable
from arka_git_hcm.config import Settings
from arka_git_hcm.errors import HcmError
from arka_git_hcm.services.store import HcmStore
from arka_git_hcm.writepath.guard import install_hooks

from .conftest import assert_clean, create_mission, git, journal, open_store


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the HCM that a planted link points at; it must never change."""
    target = tmp_path / "outside" / "victim"
    target.parent.mkdir()
    target.write_bytes(b"precious\n")
    target.chmod(0o644)
    return target


def unchanged(victim: Path) -> None:
    assert victim.read_bytes() == b"precious\n"
    assert not victim.stat().st_mode & 0o111, "the outside file was made executable"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"], "a file appeared outside"


def test_links_at_every_predictable_temp_name_beside_a_work_tree_file_are_never_followed(
    settings: Settings, outside: Path
) -> None:
    hcm = settings.hcm_path
    hcm.chmod(hcm.stat().st_mode | stat.S_ISGID)  # a folder shared through its group, as teams do
    with open_store(settings) as store:
        create_mission(store)
        folder = hcm / "state/missions/m1"
        # the names older versions used (pid-based), and a spread of others
        for name in [
            f".journal.jsonl.arka-tmp-{os.getpid()}",
            ".journal.jsonl.arka-tmp-0",
            "journal.jsonl.tmp",
        ]:
            (folder / name).symlink_to(outside)
        journal(store, "an append beside planted links")
    unchanged(outside)
    assert "an append beside planted links" in (folder / "journal.jsonl").read_text()


def test_a_folder_swapped_for_a_link_is_refused_not_followed(settings: Settings, outside: Path) -> None:
    with open_store(settings) as store:
        create_mission(store)
        create_mission(store, "m2")
        mission = settings.hcm_path / "state/missions/m2"
        for child in mission.iterdir():
            child.unlink()
        mission.rmdir()
        mission.symlink_to(outside.parent, target_is_directory=True)
        entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "x"}
        response = store.execute(
            {
                "op": "HCM_APPEND_JOURNAL",
                "request_id": "r-link",
                "caller": {"type": "agent", "id": "arka-pmo-01", "roles": ["writer"]},
                "payload": {"mission_id": "m2", "entry": entry},
            }
        )
    assert response["status"] == "error"
    unchanged(outside)


def test_links_in_the_store_state_folder_and_at_the_ref_lock_are_never_followed(
    settings: Settings, outside: Path
) -> None:
    git_dir = settings.hcm_path / ".git"
    state = git_dir / "arka-hcm"
    state.mkdir(exist_ok=True)
    for name in ("intent.json.tmp", "packs-rolled-up.tmp", "spare"):
        (state / name).symlink_to(outside)
    pack_dir = git_dir / "objects" / "pack"
    pack_dir.mkdir(parents=True, exist_ok=True)
    for name in (f"tmp_pack_arka_{os.getpid()}_1", f"tmp_idx_arka_{os.getpid()}_1"):
        (pack_dir / name).symlink_to(outside)
    with open_store(settings) as store:
        create_mission(store)
        for i in range(3):
            journal(store, f"entry {i}")
    unchanged(outside)
    assert not (git_dir / "refs/heads/main").is_symlink()
    for name in ("intent.json.tmp", "packs-rolled-up.tmp", "spare"):
        (state / name).unlink()
    for leftover in pack_dir.iterdir():
        if leftover.is_symlink():
            leftover.unlink()
    assert_clean(settings.hcm_path)


def test_a_link_planted_at_the_ref_lock_makes_the_write_busy_never_the_ref_a_link(
    settings: Settings, outside: Path
) -> None:
    lock = settings.hcm_path / ".git/refs/heads/main.lock"
    with open_store(settings) as store:
        create_mission(store)
        lock.symlink_to(outside)
        before = git(settings.hcm_path, "rev-parse", "HEAD").strip()
        response = store.execute(
            {
                "op": "HCM_APPEND_JOURNAL",
                "request_id": "r-lock",
                "caller": {"type": "agent", "id": "arka-pmo-01", "roles": ["writer"]},
                "payload": {
                    "mission_id": "m1",
                    "entry": {
                        "author_type": "agent",
                        "author_id": "arka-pmo-01",
                        "entry_type": "note",
                        "message": "x",
                    },
                },
            }
        )
        assert response["status"] == "error"  # the branch could not move: nothing acknowledged
        assert git(settings.hcm_path, "rev-parse", "HEAD").strip() == before
    unchanged(outside)
    assert not (settings.hcm_path / ".git/refs/heads/main").is_symlink()


def test_the_hook_is_never_written_through_a_link(tmp_path: Path, outside: Path) -> None:
    git_dir = tmp_path / "r" / ".git"
    (git_dir / "hooks").mkdir(parents=True)
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (git_dir / "hooks" / f".pre-commit.{pid}").symlink_to(outside)
    assert install_hooks(git_dir)
    unchanged(outside)
    assert (git_dir / "hooks" / "pre-commit").read_text().startswith("#!/bin/sh")
    assert not (git_dir / "hooks" / "pre-commit").is_symlink()


def test_a_link_in_place_of_the_store_lock_is_refused(settings: Settings, outside: Path) -> None:
    lock = settings.hcm_path / ".git/arka-hcm/write.lock"
    lock.parent.mkdir(exist_ok=True)
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    with pytest.raises(HcmError), HcmStore.open(settings) as store:
        create_mission(store)
    unchanged(outside)


def test_write_atomic_refuses_a_link_on_the_way_and_leaves_no_temp_file(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(durable.LinkRefused):
        durable.write_atomic(root / "sub" / "file", b"data", root=root)
    unchanged(outside)
    durable.write_atomic(root / "real" / "file", b"data", root=root)
    assert (root / "real" / "file").read_bytes() == b"data"
    assert os.listdir(root / "real") == ["file"]


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=300), max_size=1200),
    caps=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20),
)
def test_parts_are_written_whole_through_short_writes(parts: list[bytes], caps: list[int]) -> None:
    written = bytearray()
    calls = iter(caps * 10_000)

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        assert len(buffers) <= 512
        room = next(calls)  # the kernel may write less than asked: resume where it stopped
        data = b"".join(bytes(b) for b in buffers)[:room]
        written.extend(data)
        return len(data)

    real = os.writev
    os.writev = short_writev  # type: ignore[assignment]
    try:
        durable.write_all(-1, list(parts))
    finally:
        os.writev = real
    assert bytes(written) == b"".join(parts)
