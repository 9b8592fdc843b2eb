"""Hand edits: files people change in the HCM folder while the store runs. None is silently lost.

The contract: an edit made by hand is adopted as an ``HCM_EXTERNAL_EDIT`` commit of its own, or
refused (config), never lost. Three moments matter:

- **When a write is planned**, files it will replace are compared with the branch tip; a
  difference is a hand edit, adopted first when it is valid (the file parses and matches its
  model), else saved here (below) before the write replaces it, and reported.
- **While the write lands** (the pack, the intent, the sync and the branch move take
  milliseconds), an editor may write again. The work tree never overwrites a file: it moves it
  aside and links the new one in (worktree.py). The aside is checked a moment later by
  :class:`LateEdits`: still what the store expected, it is removed; an append to a journal is
  adopted on top of the new version; anything else is saved and reported.
- **After a crash**, asides left beside the intent's paths are checked the same way.

Saved edits live in ``.git/arka-hcm/saved-edits/<time>-<n>/<path>`` with one JSON line each in
``saved-edits/index.jsonl`` (path, reason, where): `arka-hcm verify` and ``/ready`` list them,
the log says so at the moment it happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import durable
from ..domain.checks import check_file
from ..errors import HcmError
from ..gitrepo import blob_id
from ..jsonio import compact_dumps, parse_json
from ..worker import BackgroundWorker
from .worktree import Aside, WorkTree

__all__ = ["LateEdits", "SavedEdits", "merge_journal", "problems_of"]

log = logging.getLogger("arka_git_hcm.hand_edits")
SAVED_DIR = "saved-edits"
INDEX = "index.jsonl"
LATE_CHECK_S = 0.5  # how long an aside waits before it is checked (a `>>` append takes microseconds)
DROPPED_LINES = "journal lines were removed or changed by hand; the journal is append-only, so they stay"


def problems_of(path: str, data: bytes | None) -> list[str]:
    """Why a hand edit may not be adopted into history (empty: it may): a file that does not
    parse or does not match its model would make every later read of it fail."""
    if data is None:
        return []
    return [f.message for f in check_file(path, data) if f.severity == "error"]


class SavedEdits:
    """Hand edits kept out of history, where an admin finds them."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.folder = state_dir / SAVED_DIR
        self._lock = threading.Lock()
        self._count = 0

    def save(self, path: str, data: bytes, reason: str) -> str:
        """Keep ``data`` (what the file held) and say why; returns where, relative to ``.git``."""
        with self._lock:
            self._count += 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            folder = f"{stamp}-{self._count}"
        target = self.folder / folder / path
        durable.write_atomic(target, data, root=self.state_dir.parent, mode=0o600)
        where = f"arka-hcm/{SAVED_DIR}/{folder}/{path}"
        record = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "path": path, "reason": reason}
        durable.append_line(
            self.folder / INDEX,
            (compact_dumps(record | {"saved_as": where}) + "\n").encode("utf-8"),
            root=self.state_dir.parent,
        )
        log.warning("hand edit of %s saved to .git/%s and kept out of history: %s", path, where, reason)
        return where

    def listed(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest saved edits, newest last."""
        try:
            raw = durable.read_file(self.folder / INDEX, root=self.state_dir.parent)
        except FileNotFoundError:
            return []
        records = []
        for line in raw.split(b"\n")[-limit - 1 :]:
            if line.strip():
                try:
                    records.append(parse_json(line, what=INDEX))
                except Exception:  # a torn last line of a crash: skip it
                    continue
        return records[-limit:]


@dataclass
class _Pending:
    aside: Aside
    expected: bytes | None  # the content the store expected there (to tell an append from a rewrite)


class LateEdits(BackgroundWorker):
    """Checks the files the work tree moved aside, a moment after they were moved.

    ``adopt_journal(path, edited)`` commits the new lines of an edited journal on top of the
    branch's version (an ``HCM_EXTERNAL_EDIT`` write, see :func:`merge_journal`); any other
    edited file is saved."""

    name = "arka-hcm-late-edits"

    def __init__(
        self,
        worktree: WorkTree,
        saved: SavedEdits,
        read_blob: Callable[[str], bytes | None],
        adopt_journal: Callable[[str, bytes, bytes | None], None],
    ) -> None:
        super().__init__()
        self.worktree = worktree
        self.saved = saved
        self.read_blob = read_blob  # a blob's bytes by id
        self.adopt_journal = adopt_journal  # (path, edited, base): merges the edit into the branch
        self._pending: list[Aside] = []
        self._lock = threading.Lock()

    def add(self, asides: list[Aside]) -> None:
        if asides:
            with self._lock:
                self._pending.extend(asides)
            self.wake()

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def idle_timeout(self) -> float | None:
        """Asleep when nothing waits; else until the oldest aside is due."""
        with self._lock:
            if not self._pending:
                return None
            oldest = self._pending[0].moved_at
        return max(0.01, LATE_CHECK_S - (time.monotonic() - oldest))

    def work(self) -> None:
        due: list[Aside] = []
        now = time.monotonic()
        with self._lock:
            keep: list[Aside] = []
            for aside in self._pending:
                (due if self.closing or now - aside.moved_at >= LATE_CHECK_S else keep).append(aside)
            self._pending = keep
        failed: list[Aside] = []
        for aside in due:  # one that cannot be checked now must not drop the others
            try:
                self.check(aside)
            except HcmError as exc:  # said in full by its message (a read-only volume...)
                log.warning("checking %s, moved aside, failed; it is retried: %s", aside.path, exc.message)
                failed.append(aside)
            except Exception:
                log.warning("checking %s, moved aside, failed; it is retried", aside.path, exc_info=True)
                failed.append(aside)
        if failed:
            with self._lock:
                self._pending[:0] = failed  # oldest first, as added
            raise RuntimeError(f"{len(failed)} file(s) moved aside could not be checked yet")

    def check(self, aside: Aside, also_expected: tuple[str | None, ...] = ()) -> None:
        """Remove the aside if it holds what the store expected (or one of ``also_expected``:
        versions a killed writer may have left); else merge the lines an edit added to a journal,
        or save it. Never call it holding the store's write lock: adopting a journal edit is a
        write. (Whether git's object database holds the content says nothing: git's index
        refresh stores a hand-edited file's content there too.)"""
        data = self.worktree.read_aside(aside)
        known = [oid for oid in (aside.expected, *also_expected) if oid is not None]
        if data is None or blob_id(data) in known:
            self.worktree.remove_aside(aside)  # what the store expected there: nothing to keep
            return
        if aside.path.endswith(".jsonl") and not problems_of(aside.path, data):
            # a journal: the lines the edit added to the version it started from are merged
            # into the branch's version (append-only: nothing the store wrote since is undone)
            base = aside.expected_data
            if base is None:
                base = next((b for b in (self.read_blob(oid) for oid in known) if b is not None), b"")
            _merged, dropped = merge_journal(base, data)
            try:
                self.adopt_journal(aside.path, data, base)
            except Exception as exc:  # saved instead: never lost
                self.saved.save(
                    aside.path, data, f"an edit made while the store wrote; adopting it failed: {exc}"
                )
            else:
                log.warning("a hand edit of %s made while the store wrote was merged into it", aside.path)
                if dropped:
                    self.saved.save(aside.path, data, DROPPED_LINES)
            self.worktree.remove_aside(aside)
            return
        problems = problems_of(aside.path, data)
        reason = "edited by hand while the store replaced it" + (
            f" (and not valid: {problems[0]})" if problems else ""
        )
        self.saved.save(aside.path, data, reason)
        self.worktree.remove_aside(aside)


def merge_journal(current: bytes, edited: bytes, base: bytes | None = None) -> tuple[bytes, bool]:
    """A journal edited by hand, merged into the branch's version ``current``: the lines
    ``edited`` added to ``base`` (the version the edit started from; default ``current``) and
    that ``current`` does not have yet, appended in their order (lines are counted: the same
    line twice is two lines).

    A journal is append-only: lines the edit dropped or changed stay (the store's writes made
    meanwhile, from an editor that saved an older copy, are not reverted), and the second value
    says whether the edit dropped any, so the edited copy can be saved and reported. Returns
    (``current`` plus the new lines, dropped)."""
    current_lines = _lines(current)
    base_left = Counter(current_lines if base is None else _lines(base))
    # lines ``current`` gained since ``base`` (the store's, or this edit adopted already)
    already = Counter(current_lines) - Counter(base_left)
    added = []
    for line in _lines(edited):
        if base_left[line] > 0:
            base_left[line] -= 1
        elif already[line] > 0:
            already[line] -= 1
        else:
            added.append(line)
    dropped = any(count > 0 for count in base_left.values())
    if not added:
        return current, dropped
    start = current if not current or current.endswith(b"\n") else current + b"\n"
    return start + b"".join(line + b"\n" for line in added), dropped


def _lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line.strip()]
