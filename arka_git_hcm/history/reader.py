"""Reading the history index (see index.py for what it holds and how it is kept up to date).

Standard library only (no git adapter, no models): the store reads through it, and so does the
command line's quick ``log`` (services/quick_history.py), which answers from the index alone
without opening the store. Each thread has its own read-only connection, reopened when the file
is replaced (a rebuild); an index of another schema reads as no index at all.

- :meth:`HistoryReader.rows`, :func:`indexed_page`: commits newest first matching filters;
- :meth:`HistoryReader.summaries`: what HCM_HISTORY shows of each commit, as stored when it was
  indexed (the same fields operations/history.py reads from the commit itself);
- :meth:`HistoryReader.snapshot`: one consistent view across several reads.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

from ..clock import iso_seconds

__all__ = [
    "MISSIONS_PREFIX",
    "SCHEMA_VERSION",
    "HistoryFilters",
    "HistoryPage",
    "HistoryReader",
    "IndexedRow",
    "indexed_page",
]

# 2: each commit's mission trailer, request id and summary (what HCM_HISTORY shows), so a page
# is answered from the index alone; request ids moved from their own table to the commit's row.
SCHEMA_VERSION = "2"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS commits(
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL, time INTEGER NOT NULL, sufmin INTEGER NOT NULL,
  op INTEGER, caller INTEGER, mission INTEGER, request TEXT, summary TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS commits_id ON commits(id);
CREATE INDEX IF NOT EXISTS commits_sufmin ON commits(sufmin, seq);
CREATE INDEX IF NOT EXISTS commits_caller ON commits(caller, seq);
CREATE INDEX IF NOT EXISTS commits_op ON commits(op, seq);
CREATE INDEX IF NOT EXISTS commits_request ON commits(request) WHERE request IS NOT NULL;
CREATE TABLE IF NOT EXISTS touches(mission INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(mission, seq)) WITHOUT ROWID;
"""
TABLES = ("commits", "touches", "names", "meta")
MISSIONS_PREFIX = "state/missions/"
_SUMMARY_BATCH = 500  # ids per `IN (...)`: under SQLite's oldest limit on bound parameters


# NamedTuples and a plain class rather than dataclasses, and os.path rather than pathlib:
# creating a dataclass costs ~1 ms of a process's start, importing pathlib ~7 ms, and
# `arka-hcm log` counts its milliseconds.
class IndexedRow(NamedTuple):
    seq: int
    id: str
    time: int


class HistoryFilters(NamedTuple):
    mission: str | None = None
    path: str | None = None
    caller: str | None = None
    op: str | None = None
    since: float | None = None
    until: float | None = None


class HistoryPage:
    __slots__ = ("commits", "indexed", "next_cursor", "partial")

    def __init__(self) -> None:
        self.commits: list[str] = []
        self.next_cursor: str | None = None
        self.partial = False  # the walk budget ran out before the page filled: go on with the cursor
        self.indexed = False  # the index answered (part of) the page


def one(conn: sqlite3.Connection, sql: str, args: tuple[object, ...] | list[object] = ()) -> Any:
    """One row; the statement is closed at once: a statement left open keeps its read snapshot
    (WAL), and a cached connection would go on seeing an old index."""
    cursor = conn.execute(sql, args)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


class HistoryReader:
    """Read-only access to the index under ``state_dir`` (``.git/arka-hcm``)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._file = os.path.join(state_dir, "history", "index.sqlite")
        self._local = threading.local()

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's read-only connection, or None while no index (of this schema) exists."""
        try:
            inode = os.stat(self._file).st_ino
        except FileNotFoundError:
            self.close_reader()
            return None
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "inode", None) == inode:
            return conn
        self.close_reader()  # none yet, or the file was replaced (deleted and rebuilt)
        try:
            conn = sqlite3.connect(f"file:{self._file}?mode=ro", uri=True, check_same_thread=True)
            conn.execute("PRAGMA busy_timeout = 5000")
            row = one(conn, "SELECT value FROM meta WHERE key = 'schema'")
        except sqlite3.Error:
            return None
        if row is None or row[0] != SCHEMA_VERSION:
            conn.close()
            return None
        self._local.conn = conn
        self._local.inode = inode
        return conn

    def close_reader(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[bool]:
        """Reads inside the block see one state of the index (a catch-up or a rebuild by
        another process lands before or after all of them); yields False without an index."""
        conn = self._reader()
        if conn is None:
            yield False
            return
        conn.execute("BEGIN")
        try:
            yield True
        finally:
            with contextlib.suppress(sqlite3.Error):  # closed meanwhile: the file was replaced
                conn.execute("ROLLBACK")

    def stamp(self) -> IndexedRow | None:
        """The newest indexed commit, or None (no index yet)."""
        conn = self._reader()
        if conn is None:
            return None
        try:
            row = one(
                conn,
                "SELECT c.seq, c.id, c.time FROM meta m JOIN commits c ON c.seq = CAST(m.value AS INTEGER) "
                "WHERE m.key = 'stamp_seq'",
            )
        except sqlite3.Error:
            return None
        return IndexedRow(row[0], row[1].hex(), row[2]) if row else None

    def exists(self) -> bool:
        return self.stamp() is not None

    def seq_of(self, commit_id: str) -> int | None:
        conn = self._reader()
        if conn is None or len(commit_id) != 40:
            return None
        row = one(conn, "SELECT seq FROM commits WHERE id = ?", (bytes.fromhex(commit_id),))
        return int(row[0]) if row else None

    def name_id(self, text: str) -> int | None:
        conn = self._reader()
        if conn is None:
            return None
        row = one(conn, "SELECT id FROM names WHERE text = ?", (text,))
        return int(row[0]) if row else None

    def newest_at_or_before(self, moment: float, upto: int, *, strict: bool = False) -> IndexedRow | None:
        """The newest indexed commit (seq ≤ ``upto``) whose time is ≤ ``moment`` (< if strict).
        ``sufmin`` is non-decreasing in seq, so the last row whose sufmin qualifies is one index
        lookup; clamped to ``upto``, it is the answer unless clocks went backwards above it."""
        conn = self._reader()
        if conn is None:
            return None
        op = "<" if strict else "<="
        row = one(
            conn,
            f"SELECT seq FROM commits WHERE sufmin {op} ? ORDER BY sufmin DESC, seq DESC LIMIT 1",  # noqa: S608
            (moment,),
        )
        if row is None:
            return None
        candidate = one(conn, "SELECT seq, id, time FROM commits WHERE seq = ?", (min(int(row[0]), upto),))
        if candidate is None:
            return None
        seq, oid, when = candidate
        if (when < moment) if strict else (when <= moment):
            return IndexedRow(seq, oid.hex(), when)
        found = one(
            conn,  # rare: a skewed clock; scan down from the candidate
            f"SELECT seq, id, time FROM commits WHERE seq <= ? AND time {op} ? "  # noqa: S608
            "ORDER BY seq DESC LIMIT 1",
            (seq, moment),
        )
        return IndexedRow(found[0], found[1].hex(), found[2]) if found else None

    def rows(
        self,
        hi: int,
        lo: int,
        *,
        mission: str | None = None,
        caller: str | None = None,
        op: str | None = None,
        until: float | None = None,
        limit: int,
    ) -> list[IndexedRow]:
        """Indexed commits with lo < seq ≤ hi matching the filters, newest first."""
        conn = self._reader()
        if conn is None:
            return []
        where = ["c.seq <= ?", "c.seq > ?"]
        args: list[object] = [hi, lo]
        source = "commits c"
        for column, text in (("caller", caller), ("op", op)):
            if text is not None:
                ident = self.name_id(text)
                if ident is None:
                    return []
                where.append(f"c.{column} = ?")
                args.append(ident)
        if until is not None:
            where.append("c.time <= ?")
            args.append(until)
        if mission is not None:
            ident = self.name_id(mission)
            if ident is None:
                return []
            source = "touches t JOIN commits c ON c.seq = t.seq"
            where = [w.replace("c.seq", "t.seq") for w in where[:2]] + where[2:] + ["t.mission = ?"]
            args.append(ident)
            order = "t.seq"
        else:
            order = "c.seq"
        sql = (
            f"SELECT c.seq, c.id, c.time FROM {source} WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY {order} DESC LIMIT ?"
        )
        return [IndexedRow(s, i.hex(), t) for s, i, t in conn.execute(sql, [*args, limit]).fetchall()]

    def request_seq(self, request_id: str) -> IndexedRow | None:
        """The oldest indexed commit carrying ``Hcm-Request-Id: request_id``."""
        conn = self._reader()
        if conn is None:
            return None
        row = one(
            conn,
            "SELECT seq, id, time FROM commits WHERE request = ? ORDER BY seq LIMIT 1",
            (request_id,),
        )
        return IndexedRow(row[0], row[1].hex(), row[2]) if row else None

    def summaries(self, commit_ids: list[str]) -> list[dict[str, Any]] | None:
        """What HCM_HISTORY shows of each commit, in the order given (the shape of
        operations/history.py ``commit_summary``); None when one of them is not indexed."""
        conn = self._reader()
        if conn is None:
            return None
        found: dict[bytes, dict[str, Any]] = {}
        for start in range(0, len(commit_ids), _SUMMARY_BATCH):
            batch = [bytes.fromhex(c) for c in commit_ids[start : start + _SUMMARY_BATCH]]
            marks = ",".join("?" * len(batch))
            sql = (
                "SELECT c.id, c.time, o.text, a.text, c.request, m.text, c.summary FROM commits c "
                "LEFT JOIN names o ON o.id = c.op LEFT JOIN names a ON a.id = c.caller "
                f"LEFT JOIN names m ON m.id = c.mission WHERE c.id IN ({marks})"  # noqa: S608
            )
            for oid, when, op, caller, request, mission, summary in conn.execute(sql, batch).fetchall():
                found[oid] = {
                    "revision": oid.hex(),
                    "time": iso_seconds(when),
                    "op": op,
                    "caller": caller,
                    "request_id": request,
                    "mission_id": mission,
                    "summary": summary,
                }
        answer = []
        for commit_id in commit_ids:
            item = found.get(bytes.fromhex(commit_id))
            if item is None:
                return None
            answer.append(item)
        return answer


def indexed_page(
    index: HistoryReader, seq: int, flt: HistoryFilters, limit: int, page: HistoryPage
) -> HistoryPage:
    """Fill ``page`` (up to ``limit`` commits) from the indexed commits at or below ``seq``."""
    page.indexed = True
    lo, hi = -1, seq
    if flt.since is not None:
        older = index.newest_at_or_before(flt.since, seq, strict=True)
        lo = older.seq if older is not None else -1
    if flt.until is not None:
        last = index.newest_at_or_before(flt.until, seq)
        if last is None:
            return page
        hi = last.seq
    need = limit - len(page.commits)
    rows = index.rows(
        hi, lo, mission=flt.mission, caller=flt.caller, op=flt.op, until=flt.until, limit=need + 1
    )
    page.commits.extend(row.id for row in rows[:need])
    if len(rows) > need:
        page.next_cursor = rows[need].id
    return page
