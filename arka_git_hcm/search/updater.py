"""Bringing the index to a commit: incrementally from the changed paths, or rebuilt whole.

Everything is read from git objects (the tree of a commit), never from the work tree, so the
index is right for an adopted, a restored or an anonymized HCM, and whatever a hand edit left in
the folder. One updater at a time (``update.lock``); readers are never blocked (WAL).

An incremental update diffs the stamped commit's tree with the new tip's (changed paths only),
rewrites the documents of each changed file (a journal that only grew gets its new lines only),
and moves the stamp, all in one SQLite transaction: a crash anywhere leaves the previous rows
with the previous stamp. A rebuild writes a new generation and switches CURRENT to it (see
schema.py); it happens when there is no index, when it is corrupt or of another schema version,
when the stamped commit is not in the repository any more (a restored or anonymized history), or
when the hindex rules that decide scopes and sensitivity changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HcmError
from ..gitrepo import GitRepo
from ..gitrepo.tree_diff import changed_files
from .documents import Document, documents_of, is_indexed, journal_documents
from .rows import delete_path, produced, rows_of, tally
from .rules import IndexRules, load_rules
from .schema import SCHEMA_VERSION, IndexFiles, create_indexes, create_schema, read_meta

__all__ = ["IndexUpdater", "UpdateReport"]

log = logging.getLogger("arka_git_hcm.search")


@dataclass
class UpdateReport:
    revision: str | None
    mode: str  # "current" (nothing to do), "incremental" or "rebuild"
    paths: int = 0
    documents: int = 0
    seconds: float = 0.0
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "mode": self.mode,
            "paths": self.paths,
            "documents": self.documents,
            "seconds": round(self.seconds, 4),
            "reason": self.reason,
        }


class IndexUpdater:
    def __init__(
        self,
        repo: GitRepo,
        files: IndexFiles,
        *,
        before_stamp: Callable[[], None] | None = None,
    ) -> None:
        self.repo = repo
        self.files = files
        # called inside an incremental update's transaction after its rows, before the stamp:
        # the seam the crash tests use to kill an update at its worst moment
        self.before_stamp = before_stamp
        self._conn: sqlite3.Connection | None = None
        self._conn_path: Path | None = None
        self._verified: set[Path] = set()
        self._busy = threading.Lock()  # the follower's thread and a caller's (rebuild) share this
        self.last_report: UpdateReport | None = None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # --- entry points ------------------------------------------------------------------------
    def catch_up(self, tip: str | None, *, wait_s: float = 0.0, verify: bool = False) -> UpdateReport | None:
        """Bring the index to ``tip``; None when another process holds the update lock longer
        than ``wait_s`` (it is updating: nothing to do here). ``verify`` runs SQLite's
        quick_check once per generation and process (a follower's first round)."""
        if tip is None:
            return None
        with self._busy, self.files.update_lock(wait_s) as held:
            if not held:
                return None
            report = self._catch_up_locked(tip, verify)
        self.last_report = report
        return report

    def rebuild(self, tip: str, *, wait_s: float = 60.0, reason: str = "asked") -> UpdateReport | None:
        with self._busy, self.files.update_lock(wait_s) as held:
            if not held:
                return None
            report = self._rebuild(tip, reason)
        self.last_report = report
        return report

    # --- deciding ----------------------------------------------------------------------------
    def _catch_up_locked(self, tip: str, verify: bool) -> UpdateReport:
        started = time.perf_counter()
        problem, meta = self._open_current(verify)
        if problem is not None:
            return self._rebuild(tip, problem)
        if meta.get("revision") == tip:
            return UpdateReport(tip, "current")
        new_tree = self.repo.commit_tree(tip)
        rules, _ = load_rules(lambda path: self.repo.read_blob(new_tree, path))
        if rules.fingerprint() != meta.get("rules"):
            return self._rebuild(tip, "the hindex rules for scopes or sensitivity changed")
        old_tree = meta.get("tree")
        try:
            paths = changed_files(self.repo, old_tree, new_tree)
        except HcmError:
            return self._rebuild(tip, "the indexed commit is not in the repository any more")
        assert self._conn is not None
        try:
            added = self._apply(self._conn, paths, new_tree, rules, tip)
        except sqlite3.DatabaseError as exc:
            return self._rebuild(tip, f"the index could not be updated ({exc})")
        return UpdateReport(tip, "incremental", len(paths), added, time.perf_counter() - started)

    def _open_current(self, verify: bool) -> tuple[str | None, dict[str, str]]:
        """(why it must be rebuilt, or None; its meta) of the current generation."""
        path = self.files.current()
        if path is None or not path.exists():
            return "there is no index yet", {}
        try:
            if self._conn is None or self._conn_path != path:
                self.close()
                self._conn = _writer(path)
                self._conn_path = path
            if verify and path not in self._verified:
                result = self._conn.execute("PRAGMA quick_check").fetchone()
                if result is None or result[0] != "ok":
                    self.close()
                    return f"the index is corrupt ({result[0] if result else 'no answer'})", {}
                self._verified.add(path)
            meta = read_meta(self._conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            return f"the index is corrupt or unreadable ({exc})", {}
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            self.close()
            return f"the index has schema version {meta.get('schema_version')}, not {SCHEMA_VERSION}", {}
        if not meta.get("revision") or not meta.get("tree"):
            self.close()
            return "the index has no stamp (an interrupted build)", {}
        return None, meta

    # --- incremental ---------------------------------------------------------------------------
    def _apply(
        self, conn: sqlite3.Connection, paths: list[str], new_tree: str, rules: IndexRules, tip: str
    ) -> int:
        added = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            next_id = first_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM doc").fetchone()[0]
            for path in paths:
                if not is_indexed(path):
                    continue
                docs, row = self._documents_for(conn, path, new_tree)
                if docs is None:
                    continue
                rows, fts = rows_of(docs, rules, next_id)
                conn.executemany("INSERT INTO doc VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.executemany("INSERT INTO fts(rowid, title, body, filt) VALUES (?,?,?,?)", fts)
                next_id += len(rows)
                added += len(rows)
                if row is None:
                    conn.execute("DELETE FROM files WHERE path = ?", (path,))
                else:
                    conn.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?)", row)
            tally(conn, "d.id >= ?", (first_id,), +1)  # this round's new documents, in one pass
            if self.before_stamp is not None:
                self.before_stamp()
            _stamp(conn, tip, new_tree, rules)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return added

    def _documents_for(
        self, conn: sqlite3.Connection, path: str, new_tree: str
    ) -> tuple[list[Document] | None, tuple[str, str, int, int] | None]:
        """The documents to add for ``path`` (after deleting what must go) and its new files
        row; (None, _) when nothing changed for it."""
        blob = self.repo.entry_id(new_tree, path)
        known = conn.execute("SELECT blob, size, lines FROM files WHERE path = ?", (path,)).fetchone()
        if blob is None:
            delete_path(conn, path)
            return [], None
        if known is not None and known[0] == blob:
            return None, None
        data = self.repo.blob_data(blob)
        row = (path, blob, len(data), data.count(b"\n"))
        if known is not None and path.endswith(".jsonl") and _grew(known[0], known[1], data):
            return journal_documents(path, data[known[1] :], known[2] + 1), row
        delete_path(conn, path)
        return documents_of(path, data), row

    # --- rebuild ----------------------------------------------------------------------------
    def _rebuild(self, tip: str, reason: str) -> UpdateReport:
        started = time.perf_counter()
        log.info("rebuilding the search index at %s: %s", tip[:12], reason)
        self.close()
        path = self.files.new_generation()
        tree = self.repo.commit_tree(tip)
        rules, _ = load_rules(lambda p: self.repo.read_blob(tree, p))
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            # A private file until CURRENT names it: no journal, no syncs while filling it; it is
            # synced whole before it becomes current.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA cache_size = -131072")
            create_schema(conn)
            # FTS5 writes a segment each time its pending terms pass `hashsize` (1 MiB by
            # default) and merges them as it goes: with 64 MiB the whole HCM makes a few segments
            # and 'optimize' has little left to do (-10% of SQLite's time at 100,000 files,
            # measured). Put back after the build: an update's transaction stays small.
            conn.execute("INSERT INTO fts(fts, rank) VALUES ('hashsize', ?)", (_BUILD_HASH_BYTES,))
            conn.execute("BEGIN")
            count = 0
            for rows, fts, known in produced(self.repo, tree, rules):
                conn.executemany("INSERT INTO files VALUES (?,?,?,?)", known)
                conn.executemany("INSERT INTO doc VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.executemany("INSERT INTO fts(rowid, title, body, filt) VALUES (?,?,?,?)", fts)
                count += len(rows)
            tally(conn, "1", (), +1)  # every document, in one pass
            create_indexes(conn)
            _stamp(conn, tip, tree, rules)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('built_at', ?)", (_now(),))
            conn.execute("COMMIT")
            conn.execute("INSERT INTO fts(fts) VALUES ('optimize')")
            conn.execute("INSERT INTO fts(fts, rank) VALUES ('hashsize', ?)", (_FTS5_HASH_BYTES,))
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        _fsync(path)
        self.files.make_current(path)
        self.files.remove_other_generations()
        return UpdateReport(tip, "rebuild", 0, count, time.perf_counter() - started, reason)


_BUILD_HASH_BYTES = 64 * 1024 * 1024
_FTS5_HASH_BYTES = 1024 * 1024  # SQLite's default


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False, timeout=30.0
    )
    conn.execute("PRAGMA journal_mode = WAL")
    # A cache: a power cut may lose the last updates (the stamp goes with them), never consistency.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -32000")
    return conn


def _stamp(conn: sqlite3.Connection, tip: str, tree: str, rules: IndexRules) -> None:
    """The commit the rows reflect, and the rules they were made with."""
    conn.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        [("revision", tip), ("tree", tree), ("rules", rules.fingerprint()), ("updated_at", _now())],
    )


def _grew(old_blob: str, old_size: int, data: bytes) -> bool:
    """True when ``data`` is the old content plus whole new lines (an append): the old blob id
    is the hash of the old bytes, so no need to read them."""
    if len(data) < old_size or (old_size and data[old_size - 1 : old_size] != b"\n"):
        return False
    digest = hashlib.sha1(b"blob %d\0" % old_size)
    digest.update(memoryview(data)[:old_size])
    return digest.hexdigest() == old_blob


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
