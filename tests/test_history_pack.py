"""gitrepo/history_pack.py against git itself: random histories written by HistoryWriter and by
`git fast-import` from the equivalent stream give the same commit and tag ids, and the pack and
index it writes pass `git fsck --strict` and `git verify-pack`."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm.gitrepo.history_pack import HistoryWriter, PackWriter

from .conftest import git

NAMES = ["a", "b", "a.b", "a-b", "missions", "m1", "m2", "é"]
MODES = [b"100644", b"100755", b"120000"]

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
contents = st.one_of(
    st.binary(max_size=40),
    st.integers(1, 300).map(lambda n: b"".join(b'{"line": %d}\n' % i for i in range(n))),  # a journal
)
op = st.one_of(
    st.tuples(st.just("M"), paths, st.sampled_from(MODES), contents),
    st.tuples(st.just("D"), paths, st.just(b""), st.just(b"")),
)
commit = st.tuples(
    st.lists(op, min_size=1, max_size=6),
    st.integers(-3, 30),  # parent: -1 the previous commit, < -1 none (a root), n >= 0 commit n
    st.booleans(),  # merge another earlier commit
)


History = list[tuple[list[tuple[str, str, bytes, bytes]], int, bool]]


def _ident(n: int) -> bytes:
    return b"Bot <bot@example.org> %d +0000" % (1_790_000_000 + n)


def _fast_import(repo: Path, history: History) -> list[str]:
    parts: list[bytes] = []
    for n, (ops, parent, merge) in enumerate(history):
        message = b"commit %d" % n
        if parent < -1 or n == 0:
            parts.append(b"reset refs/heads/main\n")
        parts.append(b"commit refs/heads/main\nmark :%d\n" % (n + 1))
        parts.append(b"author " + _ident(n) + b"\ncommitter " + _ident(n) + b"\n")
        parts.append(b"data %d\n%s\n" % (len(message), message))
        first = _parent(n, parent)
        if first is not None:
            parts.append(b"from :%d\n" % (first + 1))
            if merge and first > 0:
                parts.append(b"merge :%d\n" % first)
        for kind, path, mode, data in ops:
            if kind == "D":
                parts.append(b"D " + path.encode() + b"\n")
            else:
                parts.append(
                    b"M " + mode + b" inline " + path.encode() + b"\ndata %d\n" % len(data) + data + b"\n"
                )
        parts.append(b"\n")
    parts.append(b"tag v1\nfrom :%d\ntagger %s\ndata 3\nv1\n\n" % (len(history), _ident(0)))
    parts.append(b"done\n")
    subprocess.run(
        ["git", "-C", str(repo), "fast-import", "--quiet", "--done", "--date-format=raw"],
        input=b"".join(parts),
        check=True,
    )
    return _ids(repo)


def _parent(n: int, parent: int) -> int | None:
    if n == 0 or parent < -1:
        return None
    if parent == -1 or parent >= n:
        return n - 1
    return parent


def _ours(repo: Path, history: History) -> list[str]:
    firsts = [_parent(n, parent) for n, (_, parent, _) in enumerate(history)]
    keep = {first for n, first in enumerate(firsts) if first is not None and first != n - 1}
    pack = PackWriter(repo)
    writer = HistoryWriter(pack)
    commits: list[bytes] = []
    versions: dict[bytes, tuple[bytes, bytes]] = {}
    for n, (ops, _, merge) in enumerate(history):
        first = firsts[n]
        writer.start(None if first is None else commits[first])
        for kind, path, mode, data in ops:
            raw = path.encode()
            if kind == "D":
                writer.delete(raw)
            else:
                oid = writer.blob(data, versions.get(raw))
                versions[raw] = (oid, data)
                writer.put(raw, mode, oid)
        parents = [] if first is None else [commits[first]]
        if merge and first is not None and first > 0:
            parents.append(commits[first - 1])
        message = b"commit %d" % n
        commits.append(writer.commit(parents, _ident(n), _ident(n), message, keep=n in keep))
    tag = writer.tag(b"v1", commits[-1], _ident(0), b"v1\n")
    pack.finish()
    git(repo, "update-ref", "refs/heads/main", commits[-1].hex())
    git(repo, "update-ref", "refs/tags/v1", tag.hex())
    assert _ids(repo)[0] == tag.hex()
    return _ids(repo)


def _ids(repo: Path) -> list[str]:
    """The tag, then every commit and tree reachable from it."""
    return [git(repo, "rev-parse", "v1").strip(), *git(repo, "rev-list", "--objects", "v1").split()]


@settings(max_examples=40, deadline=None)
@given(st.lists(commit, min_size=1, max_size=12))
def test_the_same_ids_as_fast_import(history: History) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        theirs, ours = Path(scratch) / "theirs", Path(scratch) / "ours"
        for repo in (theirs, ours):
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
        assert _ours(ours, history) == _fast_import(theirs, history)
        git(ours, "fsck", "--strict", "--no-progress")
        for idx in (ours / "objects" / "pack").glob("*.idx"):
            git(ours, "verify-pack", str(idx))
