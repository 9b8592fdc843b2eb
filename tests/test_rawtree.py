"""The byte-level tree builder must produce exactly the trees git would (same object ids)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pygit2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arka_git_hcm.gitrepo import GitRepo
from arka_git_hcm.gitrepo.rawtree import RawTree

from .conftest import git

# Names chosen to exercise git's ordering rule (a folder sorts as "name/"): "a", "a.b", "a-b", "a0"...
NAMES = st.sampled_from(["a", "a.b", "a-b", "a0", "ab", "b", "b.json", "m1", "m10", "m2", "z"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)


def reference_tree(repo_dir: Path, files: dict[str, bytes]) -> str:
    """The tree libgit2's index writes for the same files."""
    repo = pygit2.Repository(str(repo_dir))
    index = pygit2.Index()
    for path, data in files.items():
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    return str(index.write_tree(repo))


def conflicts(files: dict[str, bytes], path: str) -> bool:
    """A path cannot be both a file and a folder."""
    return any(f.startswith(path + "/") or path.startswith(f + "/") for f in files if f != path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(PATHS, st.one_of(st.none(), st.binary(max_size=8))), min_size=1, max_size=12))
def test_tree_ids_equal_libgit2_after_any_sequence_of_edits(
    tmp_path: Path, steps: list[tuple[str, bytes | None]]
) -> None:
    repo_dir = tmp_path / "r"
    if not repo_dir.exists():
        pygit2.init_repository(str(repo_dir))
    repo = GitRepo(repo_dir)
    files: dict[str, bytes] = {}
    tree: str | None = None
    for path, data in steps:
        change: dict[str, str | None]
        if data is None:
            if path not in files:
                continue
            files.pop(path)
            change = {path: None}
        else:
            if conflicts(files, path):
                continue
            files[path] = data
            change = {path: repo.write_blob(data)}
        tree = repo.build_tree(tree, change)
        if files:
            assert tree == reference_tree(repo_dir, files)
        else:
            assert tree == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree


def test_wide_tree_splice_and_fsck(tmp_path: Path) -> None:
    repo_dir = tmp_path / "wide"
    pygit2.init_repository(str(repo_dir))
    repo = GitRepo(repo_dir)
    blob = repo.write_blob(b"{}\n")
    files = {f"state/missions/m{i:05d}/meta.json": blob for i in range(3000)}
    tree = repo.build_tree(None, files)
    other = repo.write_blob(b'{"x": 1}\n')
    for i in (0, 1500, 2999):
        tree = repo.build_tree(tree, {f"state/missions/m{i:05d}/meta.json": other})
    files.update({f"state/missions/m{i:05d}/meta.json": other for i in (0, 1500, 2999)})
    assert tree == reference_tree(repo_dir, {p: repo.blob_data(b) for p, b in files.items()})
    commit = pygit2.Repository(str(repo_dir)).create_commit(
        "refs/heads/main",
        pygit2.Signature("a", "a@b.c"),
        pygit2.Signature("a", "a@b.c"),
        "m",
        pygit2.Oid(hex=tree),
        [],
    )
    assert commit is not None
    git(repo_dir, "fsck", "--strict", "--no-progress")


def test_raw_tree_parse_round_trip() -> None:
    data = b"100644 a.json\0" + b"\x01" * 20 + b"40000 m1\0" + b"\x02" * 20
    tree = RawTree.parse(data)
    assert tree.names == [b"a.json", b"m1"]
    assert tree.entry(b"m1") == (b"40000", b"\x02" * 20)
    assert tree.entry(b"nope") is None
    assert tree.with_changes({b"m1": (b"40000", b"\x03" * 20)}).entry(b"m1") == (b"40000", b"\x03" * 20)
    assert tree.with_changes({b"m1": (b"40000", b"\x02" * 20)}) is tree


def test_large_trees_are_stored_as_uncompressed_zlib_that_git_reads(tmp_path: Path) -> None:
    """Trees over 64 KiB are packed as stored deflate blocks written with writev; git must read them."""

    from arka_git_hcm.gitrepo.rawtree import stored_zlib_stream

    header, data = b"blob 200000\0", bytes(range(256)) * 782 + b"tail"
    stream = b"".join(bytes(p) for p in stored_zlib_stream(header, data[:200000]))
    assert zlib.decompress(stream) == header + data[:200000]
    repo_dir = tmp_path / "big"
    pygit2.init_repository(str(repo_dir))
    repo = GitRepo(repo_dir)
    blob = repo.write_blob(b"x")
    files = {f"m{i:05d}/f.json": blob for i in range(4000)}  # root tree of ~150 KB
    tree = repo.build_tree(None, files)
    repo.flush_objects()  # written as one pack, the wide tree as stored deflate blocks
    assert git(repo_dir, "cat-file", "-t", tree).strip() == "tree"
    assert len(git(repo_dir, "ls-tree", tree).splitlines()) == 4000
    assert tree == reference_tree(repo_dir, {p: b"x" for p in files})
