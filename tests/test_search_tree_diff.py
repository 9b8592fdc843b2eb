"""The raw-tree diff the search follower uses, checked against libgit2's diff (the oracle)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arka_git_hcm.errors import IoError
from arka_git_hcm.gitrepo import GitRepo, tree_read
from arka_git_hcm.gitrepo.gitcli import cat_objects
from arka_git_hcm.gitrepo.tree_diff import changed_files
from arka_git_hcm.gitrepo.tree_read import tree_files

NAMES = st.sampled_from(["a", "b", "m-0001", "m-0002", "m-0100", "z", "a.json", "b-c", "a0"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
CHANGES = st.dictionaries(PATHS, st.one_of(st.none(), st.binary(max_size=3)), max_size=8)


def _apply(repo: GitRepo, tree: str | None, changes: dict[str, bytes | None]) -> str | None:
    """``tree`` with ``changes``, skipping those a tree cannot hold (a file and a folder of one
    name), one path at a time."""
    for path, data in changes.items():
        blob = None if data is None else repo.write_blob(data)
        try:
            tree = repo.build_tree(tree, {path: blob})
        except Exception:
            continue
    return tree


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=CHANGES, change=CHANGES)
def test_same_answer_as_libgit2(
    tmp_path: Path, base: dict[str, bytes | None], change: dict[str, bytes | None]
) -> None:
    repo = _repo(tmp_path)
    try:
        wide = {f"state/missions/m-{i:04d}/meta.json": b"%d" % i for i in range(0, 120, 3)}
        old = _apply(repo, _apply(repo, None, dict(wide)), base)
        new = _apply(repo, old, change)
        repo.flush_objects()
        assert changed_files(repo, old, new) == repo.changed_paths(old, new)
        assert changed_files(repo, new, old) == repo.changed_paths(new, old)
    finally:
        repo.close()


def test_far_apart_changes_in_a_wide_folder_and_an_added_mission(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    files = {f"state/missions/m-{i:05d}/journal.jsonl": b"x%d\n" % i for i in range(3000)}
    old = repo.build_tree(None, {p: repo.write_blob(d) for p, d in files.items()})
    edits = {
        "state/missions/m-00000/journal.jsonl": repo.write_blob(b"first\n"),
        "state/missions/m-02999/journal.jsonl": repo.write_blob(b"last\n"),
        "state/missions/m-01500/journal.jsonl": None,
        "state/missions/m-01500a/meta.json": repo.write_blob(b"{}"),
    }
    new = repo.build_tree(old, edits)
    repo.flush_objects()
    assert changed_files(repo, old, new) == sorted(edits) == repo.changed_paths(old, new)
    assert changed_files(repo, new, new) == []
    assert changed_files(repo, None, new) == repo.changed_paths(None, new)
    repo.close()


def test_tree_files_reads_every_wanted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path)
    tree = repo.build_tree(
        None,
        {
            "a/b.json": repo.write_blob(b"1"),
            "a/c.bin": repo.write_blob(b"2"),
            "d.json": repo.write_blob(b"3"),
        },
    )
    repo.flush_objects()
    found = sorted((p, d) for p, _, d in tree_files(repo, tree, lambda p: p.endswith(".json")))
    assert found == [("a/b.json", b"1"), ("d.json", b"3")]
    # the same through libgit2 when there is no git binary
    monkeypatch.setattr(tree_read, "git_binary", lambda: None)
    found = sorted((p, d) for p, _, d in tree_files(repo, tree, lambda p: p.endswith(".json")))
    assert found == [("a/b.json", b"1"), ("d.json", b"3")]
    repo.close()


def test_cat_objects_streams_in_order_and_reports_missing_objects(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    contents = [b"", b"x\n" * 70_000, bytes(range(256)) * 3, b"last"]  # one larger than a pipe
    ids = [repo.write_blob(data) for data in contents]
    repo.flush_objects()
    absent = "0" * 40
    got = list(cat_objects(repo.workdir, [ids[1], absent, *ids, ids[0]]))
    assert got == [(ids[1], contents[1]), (absent, None), *zip(ids, contents, strict=True), (ids[0], b"")]
    assert list(cat_objects(repo.workdir, [])) == []


def test_a_blob_missing_from_a_tree_is_io_error(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    tree = repo.build_tree(None, {"a.json": repo.write_blob(b"1")})
    repo.flush_objects()
    tree = repo.build_tree(tree, {"gone.json": "1" * 40})  # an id no object has
    repo.flush_objects()
    with pytest.raises(IoError, match="repository is damaged"):
        list(tree_files(repo, tree, lambda p: True))
    repo.close()


def _repo(tmp_path: Path) -> GitRepo:
    folder = tmp_path / "repo"
    if (folder / ".git").exists():
        return GitRepo(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return GitRepo.init(folder, "main")


def test_a_new_version_of_a_wide_folder_is_read_from_the_previous_one(tmp_path: Path) -> None:
    """Another process's handle (cold cache): the new missions tree differs only in ids, then by
    a name of the same length; both answers equal libgit2's, and lookups in the tree made from
    the previous version's layout find the new blobs."""
    writer = _repo(tmp_path)
    files = {f"state/missions/m-{i:05d}/journal.jsonl": writer.write_blob(b"%d\n" % i) for i in range(1500)}
    old = writer.build_tree(None, files)
    ids_only = writer.build_tree(
        old,
        {
            "state/missions/m-00007/journal.jsonl": writer.write_blob(b"seven\n"),
            "state/missions/m-01400/journal.jsonl": writer.write_blob(b"fourteen hundred\n"),
        },
    )
    renamed = writer.build_tree(
        ids_only,
        {
            "state/missions/m-00008/journal.jsonl": None,
            "state/missions/m-0000x/journal.jsonl": files["state/missions/m-00008/journal.jsonl"],
        },
    )
    writer.flush_objects()
    writer.close()
    reader = GitRepo(tmp_path / "repo")
    for before, after in ((old, ids_only), (ids_only, renamed), (old, renamed)):
        assert changed_files(reader, before, after) == reader.changed_paths(before, after)
    assert reader.read_blob(ids_only, "state/missions/m-01400/journal.jsonl") == b"fourteen hundred\n"
    assert reader.read_blob(renamed, "state/missions/m-0000x/journal.jsonl") == b"8\n"
    assert reader.read_blob(renamed, "state/missions/m-00008/journal.jsonl") is None
    reader.close()
