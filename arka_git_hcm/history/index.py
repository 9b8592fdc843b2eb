"""The history index: one row per commit of the branch's first-parent line, in SQLite, so that
history per mission, the state at a date and request-id lookups answer in milliseconds at
millions of commits instead of walking them.

Stored at ``.git/arka-hcm/history/index.sqlite`` (outside the work tree, never in a backup: it
is rebuilt from history). Rows are numbered by ``seq``, the commit's depth along first parents
(the root is 0), and hold the commit id, its time, ``sufmin`` (the smallest commit time from
this commit to the indexed tip: non-decreasing in ``seq``, so "the newest commit at or before T"
is one index lookup even when clocks went backwards), the operation, the caller, the missions
whose folder it changed (``touches``) and its request id (``requests``: the oldest commit of an
id wins, as for idempotent replays).

Maintenance is off the write path: :meth:`HistoryIndex.catch_up` indexes what landed since its
stamp (the newest indexed commit), from one ``git log`` stream; history rewritten below the stamp
(a hand reset) drops the rows above the point where the lines meet; no meeting point at all
rebuilds. Readers never wait for it: what is not indexed yet is walked (history_query.py).
Writers in several processes take turns on a flock; a reader opens the file read-only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.commit_message import parse_trailers
from ..durable import flocked
from ..gitrepo.revlog import LoggedCommit, first_parent_count, log_first_parent

__all__ = ["HistoryIndex", "IndexedRow", "caller_of", "missions_of"]

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS commits(
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL, time INTEGER NOT NULL, sufmin INTEGER NOT NULL,
  op INTEGER, caller INTEGER);
CREATE INDEX IF NOT EXISTS commits_id ON commits(id);
CREATE INDEX IF NOT EXISTS commits_sufmin ON commits(sufmin, seq);
CREATE INDEX IF NOT EXISTS commits_caller ON commits(caller, seq);
CREATE INDEX IF NOT EXISTS commits_op ON commits(op, seq);
CREATE TABLE IF NOT EXISTS touches(mission INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(mission, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests(request_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
"""
_BATCH = 20_000
_WAL_SETTLE_BYTES = 16 * 1024 * 1024
MISSIONS_PREFIX = "state/missions/"


@dataclass(frozen=True)
class IndexedRow:
    seq: int
    id: str
    time: int


def _one(conn: sqlite3.Connection, sql: str, args: tuple[object, ...] | list[object] = ()) -> Any:
    """One row; the statement is closed at once: a statement left open keeps its read snapshot
    (WAL), and a cached connection would go on seeing an old index."""
    cursor = conn.execute(sql, args)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def missions_of(paths: tuple[str, ...] | list[str]) -> set[str]:
    """The missions whose folder a commit changed (from its changed paths)."""
    found = set()
    for path in paths:
        if path.startswith(MISSIONS_PREFIX):
            rest = path[len(MISSIONS_PREFIX) :]
            if "/" in rest:
                found.add(rest.split("/", 1)[0])
    return found


def caller_of(trailers: dict[str, str], author_name: str, author_email: str) -> str:
    """The caller HCM_HISTORY shows: the trailer, or the author of a commit made by hand."""
    return trailers.get("Hcm-Caller") or f"{author_name} <{author_email}>"


class HistoryIndex:
    def __init__(self, workdir: Path, state_dir: Path) -> None:
        self.workdir = Path(workdir)
        self.folder = Path(state_dir) / "history"
        self.path = self.folder / "index.sqlite"
        self._local = threading.local()

    # --- reading --------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection | None:
        """This thread's read-only connection, or None while no index exists."""
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            self.close_reader()
            return None
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "inode", None) == inode:
            return conn
        self.close_reader()  # none yet, or the file was replaced (deleted and rebuilt)
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=True)
            conn.execute("PRAGMA busy_timeout = 5000")
            row = _one(conn, "SELECT value FROM meta WHERE key = 'schema'")
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

    def stamp(self) -> IndexedRow | None:
        """The newest indexed commit, or None (no index yet)."""
        conn = self._reader()
        if conn is None:
            return None
        try:
            row = _one(
                conn,
                "SELECT c.seq, c.id, c.time FROM meta m JOIN commits c ON c.seq = CAST(m.value AS INTEGER) "
                "WHERE m.key = 'stamp_seq'",
            )
        except sqlite3.Error:
            return None
        return IndexedRow(row[0], row[1].hex(), row[2]) if row else None

    def seq_of(self, commit_id: str) -> int | None:
        conn = self._reader()
        if conn is None or len(commit_id) != 40:
            return None
        row = _one(conn, "SELECT seq FROM commits WHERE id = ?", (bytes.fromhex(commit_id),))
        return int(row[0]) if row else None

    def name_id(self, text: str) -> int | None:
        conn = self._reader()
        if conn is None:
            return None
        row = _one(conn, "SELECT id FROM names WHERE text = ?", (text,))
        return int(row[0]) if row else None

    def newest_at_or_before(self, moment: float, upto: int, *, strict: bool = False) -> IndexedRow | None:
        """The newest indexed commit (seq ≤ ``upto``) whose time is ≤ ``moment`` (< if strict).
        ``sufmin`` is non-decreasing in seq, so the last row whose sufmin qualifies is one index
        lookup; clamped to ``upto``, it is the answer unless clocks went backwards above it."""
        conn = self._reader()
        if conn is None:
            return None
        op = "<" if strict else "<="
        row = _one(
            conn,
            f"SELECT seq FROM commits WHERE sufmin {op} ? ORDER BY sufmin DESC, seq DESC LIMIT 1",  # noqa: S608
            (moment,),
        )
        if row is None:
            return None
        candidate = _one(conn, "SELECT seq, id, time FROM commits WHERE seq = ?", (min(int(row[0]), upto),))
        if candidate is None:
            return None
        seq, oid, when = candidate
        if (when < moment) if strict else (when <= moment):
            return IndexedRow(seq, oid.hex(), when)
        found = _one(
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
        """The (oldest) indexed commit carrying ``Hcm-Request-Id: request_id``."""
        conn = self._reader()
        if conn is None:
            return None
        row = _one(
            conn,
            "SELECT c.seq, c.id, c.time FROM requests r JOIN commits c ON c.seq = r.seq "
            "WHERE r.request_id = ?",
            (request_id,),
        )
        return IndexedRow(row[0], row[1].hex(), row[2]) if row else None

    # --- maintenance ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _writer(self, wait: bool) -> Iterator[sqlite3.Connection | None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with flocked(self.folder / "index.lock", wait=wait) as fd:
            if fd is None:
                yield None  # another process is indexing: its work serves us too
                return
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # a lost tail is re-indexed from git
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.executescript(_SCHEMA)
                yield conn
                _settle(conn, self.path)
            finally:
                conn.close()

    def exists(self) -> bool:
        return self.stamp() is not None

    def catch_up(
        self,
        tip: str | None,
        *,
        build: bool = True,
        wait: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Index the commits from the stamp to ``tip``; returns how many were added. A missing
        index is built only when ``build`` (a one-shot CLI run never starts a long build)."""
        if tip is None or (not build and not self.path.exists()):
            return 0
        with self._writer(wait) as conn:
            if conn is None:
                return 0
            names = _Names(conn)
            stamp = _one(conn, "SELECT value FROM meta WHERE key = 'stamp_seq'")
            if stamp is None:
                if not build:
                    return 0
                return self._build(conn, names, tip, on_progress)
            return self._extend(conn, names, tip, int(stamp[0]), build, on_progress)

    def rebuild(self, tip: str | None, on_progress: Callable[[int, int], None] | None = None) -> int:
        with self._writer(True) as conn:
            assert conn is not None
            _clear(conn)
            return 0 if tip is None else self._build(conn, _Names(conn), tip, on_progress)

    def _build(
        self,
        conn: sqlite3.Connection,
        names: _Names,
        tip: str,
        on_progress: Callable[[int, int], None] | None,
    ) -> int:
        total = first_parent_count(self.workdir, tip)
        conn.execute("BEGIN")
        try:
            _clear(conn)
            seq, low = total - 1, None
            batch: list[tuple[int, LoggedCommit, int]] = []
            for record in log_first_parent(self.workdir, tip):
                low = record.commit_time if low is None else min(low, record.commit_time)
                batch.append((seq, record, low))
                seq -= 1
                if len(batch) >= _BATCH:
                    _insert(conn, names, batch, replace_requests=True)
                    batch = []
                    if on_progress:
                        on_progress(total - seq - 1, total)
            _insert(conn, names, batch, replace_requests=True)
            _set_meta(conn, total - 1, tip)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if on_progress:
            on_progress(total, total)
        return total

    def _extend(
        self,
        conn: sqlite3.Connection,
        names: _Names,
        tip: str,
        stamp_seq: int,
        build: bool,
        on_progress: Callable[[int, int], None] | None,
    ) -> int:
        fresh: list[LoggedCommit] = []
        meet: int | None = None
        for record in log_first_parent(self.workdir, tip):
            row = _one(conn, "SELECT seq FROM commits WHERE id = ?", (bytes.fromhex(record.id),))
            if row is not None:
                meet = int(row[0])
                break
            fresh.append(record)
        if meet is None:  # no common line with what was indexed: history was replaced
            return self._rebuild_if_allowed(conn, names, tip, build, on_progress)
        if meet == stamp_seq and not fresh:
            return 0
        conn.execute("BEGIN")
        try:
            if meet < stamp_seq:  # the branch moved back below the stamp (a hand reset)
                for table in ("commits", "touches", "requests"):
                    conn.execute(f"DELETE FROM {table} WHERE seq > ?", (meet,))  # noqa: S608
            low: int | None = None
            batch = []
            seq = meet + len(fresh)
            for record in fresh:  # newest first
                low = record.commit_time if low is None else min(low, record.commit_time)
                batch.append((seq, record, low))
                seq -= 1
            if low is not None:
                conn.execute("UPDATE commits SET sufmin = ? WHERE sufmin > ? AND seq <= ?", (low, low, meet))
            _insert(conn, names, batch, replace_requests=False)
            _set_meta(conn, meet + len(fresh), tip)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(fresh)

    def _rebuild_if_allowed(
        self,
        conn: sqlite3.Connection,
        names: _Names,
        tip: str,
        build: bool,
        on_progress: Callable[[int, int], None] | None,
    ) -> int:
        if not build:
            return 0
        return self._build(conn, names, tip, on_progress)


class _Names:
    """Ops, callers and mission ids stored once each (rows hold small integers)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.known: dict[str, int] = {}

    def __call__(self, text: str | None) -> int | None:
        if text is None:
            return None
        ident = self.known.get(text)
        if ident is None:
            self.conn.execute("INSERT OR IGNORE INTO names(text) VALUES (?)", (text,))
            ident = int(_one(self.conn, "SELECT id FROM names WHERE text = ?", (text,))[0])
            self.known[text] = ident
        return ident


def _settle(conn: sqlite3.Connection, path: Path) -> None:
    """Fold a large write-ahead log back into the database and empty it. A first build writes
    the whole index into the log (265 MB at 1,000,000 commits), and a log left that large makes
    every new reader process read it through before its first query (0.2 s of each
    `arka-hcm log`, measured). Small logs are left to SQLite's own checkpoints."""
    try:
        size = os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return
    if size > _WAL_SETTLE_BYTES:
        with contextlib.suppress(sqlite3.Error):  # readers in the way: the next round does it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _clear(conn: sqlite3.Connection) -> None:
    for table in ("commits", "touches", "requests", "meta"):
        conn.execute(f"DELETE FROM {table}")  # noqa: S608
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))


def _set_meta(conn: sqlite3.Connection, seq: int, tip: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('stamp_seq', ?)", (str(seq),))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('stamp_id', ?)", (tip,))


def _insert(
    conn: sqlite3.Connection,
    names: _Names,
    batch: list[tuple[int, LoggedCommit, int]],
    *,
    replace_requests: bool,
) -> None:
    commits: list[tuple[int, bytes, int, int, int | None, int | None]] = []
    touches: list[tuple[int | None, int]] = []
    requests: list[tuple[str, int]] = []
    for seq, record, sufmin in batch:
        trailers = parse_trailers(record.message)
        caller = caller_of(trailers, record.author_name, record.author_email)
        commits.append(
            (
                seq,
                bytes.fromhex(record.id),
                record.commit_time,
                sufmin,
                names(trailers.get("Hcm-Op")),
                names(caller),
            )
        )
        touches.extend((names(mission), seq) for mission in missions_of(record.paths))
        request_id = trailers.get("Hcm-Request-Id")
        if request_id:
            requests.append((request_id, seq))
    conn.executemany("INSERT INTO commits VALUES (?, ?, ?, ?, ?, ?)", commits)
    conn.executemany("INSERT OR IGNORE INTO touches VALUES (?, ?)", touches)
    # newest first: in a build a later (older) row replaces; when extending, older rows stay
    verb = "REPLACE" if replace_requests else "IGNORE"
    conn.executemany(f"INSERT OR {verb} INTO requests VALUES (?, ?)", requests)  # noqa: S608
