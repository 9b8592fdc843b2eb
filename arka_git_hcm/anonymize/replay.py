"""The rewrite pass: a fast-export stream in, a fast-import stream out, commit by commit.

Every commit of the chosen history becomes one commit of the new history, with the same tree
shape: its files rewritten (:class:`~.rewriter.Rewriter`), its paths, author, committer and
message too; dates in UTC. Snapshot tags follow their commits with pseudonymous names and
messages. All commits go to one branch; each has its parents by mark, and a parentless one
starts afresh (``reset``), so the new history is the old one's shape exactly.

Nothing in the output depends on anything but the input and the key (no clock, no randomness,
marks only number things), so the same history gives the same commit ids, run after run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from .rewriter import Rewriter
from .stream import Blob, Commit, Reset, Tag, format_ident, quote_path

__all__ = ["Replayer", "Sink"]


class Sink(Protocol):
    """Where the fast-import stream goes: git fast-import's stdin, or a dry run's scanner."""

    def write(self, data: bytes, /) -> object: ...


def _kind(path: str) -> str:
    return "jsonl" if path.endswith(".jsonl") else "json" if path.endswith(".json") else "text"


class Replayer:
    def __init__(self, rewriter: Rewriter, out: Sink, branch_ref: str) -> None:
        self.rewriter = rewriter
        self.out = out
        self.branch_ref = branch_ref.encode()
        self.commits = 0
        self.tags = 0
        self.files_written = 0
        self.tag_refs: list[str] = []
        self._next = 0
        self._pending: dict[str, bytes] = {}
        self._blobs: dict[tuple[str, str], str] = {}  # (old mark, kind) -> new mark
        self._commits: dict[str, str] = {}  # old mark -> new mark
        self._by_original: dict[str, str] = {}  # original commit id -> new mark
        self.category_counts: Counter[str] = Counter()
        self.file_counts: dict[str, Counter[str]] = {}  # pseudonymous path -> replacements

    def _mark(self) -> str:
        self._next += 1
        return f":{self._next}"

    def run(
        self, events: Iterable[Blob | Commit | Tag | Reset], on_commit: Callable[[int], None] | None = None
    ) -> None:
        self.out.write(b"feature done\n")
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

    def finish(self, tip: str) -> None:
        """Point the branch at the original tip's new commit, and end the stream."""
        mark = self._by_original.get(tip)
        if mark is not None:
            self.out.write(b"reset " + self.branch_ref + b"\nfrom " + mark.encode() + b"\n\n")
        self.out.write(b"done\n")

    # --- commands --------------------------------------------------------------------------
    def commit(self, commit: Commit) -> None:
        rewriter = self.rewriter
        counts: Counter[str] = Counter()
        chunks: list[bytes] = []
        ops: list[bytes] = []
        for op in commit.ops:
            if op.kind == "deleteall":
                ops.append(b"deleteall\n")
                continue
            path = rewriter.path(op.path)
            if op.kind == "D":
                ops.append(b"D " + quote_path(path) + b"\n")
                continue
            ref = op.ref
            if ref.startswith(":"):
                ref = self._blob(op.path, path, ref, chunks)
            ops.append(f"M {op.mode} {ref} ".encode() + quote_path(path) + b"\n")
        self._pending.clear()
        mark = self._mark()
        self._commits[commit.mark] = mark
        if commit.original:
            self._by_original[commit.original] = mark
        head: list[bytes] = []
        parent = self._commits.get(commit.parent) if commit.parent else None
        if parent is None:
            head.append(b"reset " + self.branch_ref + b"\n")  # a root: never the child of the last one
        head.append(b"commit " + self.branch_ref + b"\nmark " + mark.encode() + b"\n")
        for word, ident in ((b"author ", commit.author), (b"committer ", commit.committer)):
            if ident is not None:
                head.append(word + format_ident(rewriter.ident(ident, counts)) + b"\n")
        message = rewriter.message(commit.message.decode("utf-8", "surrogateescape"), counts)
        data = message.encode("utf-8", "surrogateescape")
        head.append(f"data {len(data)}\n".encode() + data)
        if not data.endswith(b"\n"):
            head.append(b"\n")
        if parent is not None:
            head.append(b"from " + parent.encode() + b"\n")
        for merge in commit.merges:
            merged = self._commits.get(merge)
            if merged is not None:
                head.append(b"merge " + merged.encode() + b"\n")
        chunks.extend(head)
        chunks.extend(ops)
        chunks.append(b"\n")
        self.out.write(b"".join(chunks))
        self.category_counts.update(counts)
        self.commits += 1

    def _blob(self, old_path: str, new_path: str, old_mark: str, chunks: list[bytes]) -> str:
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
        mark = self._mark()
        self._blobs[key] = mark
        chunks.append(b"blob\nmark " + mark.encode() + f"\ndata {len(out)}\n".encode() + out + b"\n")
        self.files_written += 1
        return mark

    def tag(self, tag: Tag) -> None:
        target = self._commits.get(tag.target)
        if target is None:  # a tag of something outside the chosen history: not exported
            return
        counts: Counter[str] = Counter()
        name = self.rewriter.path(tag.name)
        message = self.rewriter.message(tag.message.decode("utf-8", "surrogateescape"), counts)
        data = message.encode("utf-8", "surrogateescape")
        chunks = [b"tag " + name.encode("utf-8", "surrogateescape") + b"\nfrom " + target.encode() + b"\n"]
        if tag.tagger is not None:
            chunks.append(b"tagger " + format_ident(self.rewriter.ident(tag.tagger, counts)) + b"\n")
        chunks.append(f"data {len(data)}\n".encode() + data + b"\n")
        self.out.write(b"".join(chunks))
        self.category_counts.update(counts)
        self.tag_refs.append(f"refs/tags/{name}")
        self.tags += 1

    def reset(self, reset: Reset) -> None:
        target = self._commits.get(reset.target)
        if target is None or not reset.ref.startswith("refs/tags/"):
            return  # branches: the one output branch is set by finish()
        name = self.rewriter.path(reset.ref[len("refs/tags/") :])
        self.out.write(f"reset refs/tags/{name}\nfrom {target}\n\n".encode("utf-8", "surrogateescape"))
        self.tag_refs.append(f"refs/tags/{name}")
