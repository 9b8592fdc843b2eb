"""The analysis pass: read the whole chosen history once and gather every sensitive value, before
anything is rewritten (git-filter-repo's rule: analyse first). A value learned in commit 90,000
(a new team member) is then also replaced where it appeared as free text in commit 10.

Every version of every file is read, with two savings that do not skip anything: a journal that
grew is read from its previous version's end (only the new lines), and a string already seen
(the same title in 5,000 versions of ``next_actions.json``) is searched for patterns once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from .detectors import PatternDetector, field_values, identity_values
from .dictionary import SensitiveSet
from .stream import Blob, Commit, Ident, Reset, Tag

__all__ = ["Analyser"]

_SEEN_LIMIT = 2_000_000


class Analyser:
    def __init__(
        self,
        sensitive: SensitiveSet,
        detector: PatternDetector,
        service_idents: set[tuple[str, str]],
    ) -> None:
        self.sensitive = sensitive
        self.detector = detector
        self.service = service_idents
        self.commits = 0
        # marks of commits a later commit starts from, other than the next one: the rewrite
        # pass keeps their trees (replay.py)
        self.branch_points: set[str] = set()
        self._previous = ""
        self._pending: dict[str, bytes] = {}
        self._done_marks: set[str] = set()
        self._journal: dict[str, bytes] = {}
        self._seen: set[str] = set()

    def run(
        self, events: Iterable[Blob | Commit | Tag | Reset], on_commit: Callable[[int], None] | None = None
    ) -> None:
        for event in events:
            if isinstance(event, Blob):
                self._pending[event.mark] = event.data
            elif isinstance(event, Commit):
                self.commit(event)
                self.commits += 1
                if on_commit is not None:
                    on_commit(self.commits)
            elif isinstance(event, Tag):
                self.tag(event)

    # --- commands --------------------------------------------------------------------------
    def commit(self, commit: Commit) -> None:
        if commit.parent and commit.parent != self._previous:
            self.branch_points.add(commit.parent)
        self._previous = commit.mark
        for ident in (commit.author, commit.committer):
            if ident is not None:
                self._ident(ident)
        self._message(commit.message.decode("utf-8", "surrogateescape"))
        for op in commit.ops:
            if op.kind == "deleteall":
                continue
            self._texts([op.path])
            if op.kind == "M" and op.ref in self._pending:
                self._file(op.path, self._pending.pop(op.ref))
                self._done_marks.add(op.ref)
        self._pending.clear()

    def tag(self, tag: Tag) -> None:
        self._texts([tag.name])
        if tag.tagger is not None:
            self._ident(tag.tagger)
        self._message(tag.message.decode("utf-8", "surrogateescape"))

    def _ident(self, ident: Ident) -> None:
        found = identity_values(ident.name, ident.email, self.service)
        self.sensitive.add_all(found)
        if not found:  # the service identity: still searched for patterns (a client's domain)
            self._texts([ident.name, ident.email])

    def _message(self, message: str) -> None:
        for line in message.split("\n"):
            key, sep, value = line.partition(": ")
            if sep and key == "Hcm-Caller":
                kind, _, ident = value.partition("/")
                self.sensitive.add("human_id" if kind == "human" else "agent", ident)
            elif sep and key == "Hcm-Result":
                with contextlib.suppress(ValueError):
                    self._json_value(json.loads(value))
        self._texts([message])

    # --- file contents ---------------------------------------------------------------------
    def _file(self, path: str, data: bytes) -> None:
        if path.endswith(".jsonl"):
            previous = self._journal.get(path)
            fresh = data
            if previous is not None and previous.endswith(b"\n") and data.startswith(previous):
                fresh = data[len(previous) :]
            self._journal[path] = data
            for line in fresh.split(b"\n"):
                if line.strip():
                    self._json_or_text(line)
        elif path.endswith(".json"):
            self._json_or_text(data)
        else:
            self._texts([data.decode("utf-8", "surrogateescape")])

    def _json_or_text(self, data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        try:
            value = json.loads(text)
        except ValueError:
            self._texts([text])
            return
        self._json_value(value)

    def _json_value(self, value: Any) -> None:
        self.sensitive.add_all(field_values(value))
        strings: list[str] = []
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                strings.append(item)
            elif isinstance(item, dict):
                strings.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        self._texts(strings)

    def _texts(self, texts: list[str]) -> None:
        """Pattern detection over the strings not searched before, in one regex pass each."""
        fresh = [t for t in texts if len(t) >= 3 and t not in self._seen]
        if not fresh:
            return
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.clear()
        self._seen.update(fresh)
        self.sensitive.add_all(self.detector.find("\n".join(fresh)))
