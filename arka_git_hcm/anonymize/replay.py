"""The rewrite pass: a fast-export stream in, the new history's objects out, commit by commit.

Every commit of the chosen history becomes one commit of the new history, with the same tree
shape: its files rewritten (:class:`~.rewriter.Rewriter`), its paths, author, committer and
message too; dates in UTC. Snapshot tags follow their commits with pseudonymous names and
messages. All commits go to one branch; each has its parents, and a parentless one starts from
an empty tree, so the new history is the old one's shape exactly.

The objects are written by :class:`~..gitrepo.history_pack.HistoryWriter` (the ones `git
fast-import` made from the equivalent stream, written at a fraction of its cost). A commit that
a later one starts from, other than the next (a branch point), must be known beforehand: the
analysis pass reads the same stream and names them (:attr:`.analysis.Analyser.branch_points`).

Nothing in the output depends on anything but the input and the key (no clock, no randomness),
so the same history gives the same commit ids, run after run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from ..gitrepo.history_pack import HistoryWriter
from .rewriter import Rewriter
from .stream import Blob, Commit, Reset, Tag, format_ident

__all__ = ["Replayer"]


def _kind(path: str) -> str:
    return "jsonl" if path.endswith(".jsonl") else "json" if path.endswith(".json") else "text"


def _path(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


class Replayer:
    def __init__(
        self, rewriter: Rewriter, writer: HistoryWriter, branch_ref: str, branch_points: set[str]
    ) -> None:
        self.rewriter = rewriter
        self.writer = writer
        self.branch_ref = branch_ref
        self.branch_points = branch_points
        self.commits = 0
        self.tags = 0
        self.files_written = 0
        self.tag_refs: list[str] = []
        self.refs: dict[str, str] = {}  # what the new repository's refs must name, at the end
        self._pending: dict[str, bytes] = {}
        self._blobs: dict[tuple[str, str], bytes] = {}  # (old mark, kind) -> new blob id
        self._versions: dict[bytes, tuple[bytes, bytes]] = {}  # new path -> its last (id, bytes)
        self._commits: dict[str, bytes] = {}  # old mark -> new commit id
        self._by_original: dict[str, bytes] = {}  # original commit id -> new commit id
        self._last: bytes | None = None
        self.category_counts: Counter[str] = Counter()
        self.file_counts: dict[str, Counter[str]] = {}  # pseudonymous path -> replacements

    def run(
        self, events: Iterable[Blob | Commit | Tag | Reset], on_commit: Callable[[int], None] | None = None
    ) -> None:
        for event in events:
            if isinstance(event, Blob):
                self._pending[event.mark] = event.data
            elif isinstance(event, Commit):
                self.commit(event)
                if on_commit is not None:
                    on_commit(self.commits)
            elif isinstance(event, Tag):
                self.tag(event)
            elif isinstance(event, Reset):
                self.reset(event)

    def finish(self, tip: str) -> dict[str, str]:
        """The refs of the new repository: the branch at the original tip's new commit, and
        the tags (name -> object id)."""
        head = self._by_original.get(tip, self._last)
        if head is not None:
            self.refs[self.branch_ref] = head.hex()
        return self.refs

    # --- commands --------------------------------------------------------------------------
    def commit(self, commit: Commit) -> None:
        rewriter = self.rewriter
        writer = self.writer
        counts: Counter[str] = Counter()
        parent = self._commits.get(commit.parent) if commit.parent else None
        writer.start(parent)  # a root (no parent): an empty tree, never the last commit's
        for op in commit.ops:
            if op.kind == "deleteall":
                writer.delete_all()
                continue
            path = rewriter.path(op.path)
            if op.kind == "D":
                writer.delete(_path(path))
                continue
            # an object named by id (a submodule's commit) is kept as it is
            oid = self._blob(op.path, path, op.ref) if op.ref.startswith(":") else bytes.fromhex(op.ref)
            writer.put(_path(path), op.mode.encode(), oid)
        self._pending.clear()
        idents = []
        for ident in (commit.author or commit.committer, commit.committer):
            idents.append(b"" if ident is None else format_ident(rewriter.ident(ident, counts)))
        message = rewriter.message(commit.message.decode("utf-8", "surrogateescape"), counts)
        parents = [] if parent is None else [parent]
        parents += [self._commits[merge] for merge in commit.merges if merge in self._commits]
        new = writer.commit(
            parents,
            idents[0],
            idents[1],
            message.encode("utf-8", "surrogateescape"),
            keep=commit.mark in self.branch_points,
        )
        self._commits[commit.mark] = new
        self._last = new
        if commit.original:
            self._by_original[commit.original] = new
        self.category_counts.update(counts)
        self.commits += 1

    def _blob(self, old_path: str, new_path: str, old_mark: str) -> bytes:
        key = (old_mark, _kind(old_path))
        known = self._blobs.get(key)
        if known is not None:
            return known
        data = self._pending.get(old_mark)
        if data is None:
            raise ValueError(f"the stream names blob {old_mark} before giving it")
        counts: Counter[str] = Counter()
        out = self.rewriter.content(old_path, data, counts)
        if counts:
            self.file_counts.setdefault(new_path, Counter()).update(counts)
            self.category_counts.update(counts)
        path = _path(new_path)
        # the previous version of the same file: a journal that grew is a few bytes of delta
        oid = self.writer.blob(out, self._versions.get(path))
        self._versions[path] = (oid, out)
        self._blobs[key] = oid
        self.files_written += 1
        return oid

    def tag(self, tag: Tag) -> None:
        target = self._commits.get(tag.target)
        if target is None:  # a tag of something outside the chosen history: not exported
            return
        counts: Counter[str] = Counter()
        name = self.rewriter.path(tag.name)
        message = self.rewriter.message(tag.message.decode("utf-8", "surrogateescape"), counts)
        tagger = None if tag.tagger is None else format_ident(self.rewriter.ident(tag.tagger, counts))
        oid = self.writer.tag(_path(name), target, tagger, message.encode("utf-8", "surrogateescape"))
        self.category_counts.update(counts)
        self.refs[f"refs/tags/{name}"] = oid.hex()
        self.tag_refs.append(f"refs/tags/{name}")
        self.tags += 1

    def reset(self, reset: Reset) -> None:
        target = self._commits.get(reset.target)
        if target is None or not reset.ref.startswith("refs/tags/"):
            return  # branches: the one output branch is set by finish()
        name = self.rewriter.path(reset.ref[len("refs/tags/") :])
        self.refs[f"refs/tags/{name}"] = target.hex()
        self.tag_refs.append(f"refs/tags/{name}")
