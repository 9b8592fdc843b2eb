"""The history index: one row per commit of the branch's first-parent line, in SQLite, so that
history per mission, the state at a date and request-id lookups answer in milliseconds at
millions of commits instead of walking them.

Stored at ``.git/arka-hcm/history/index.sqlite`` (outside the work tree, never in a backup: it
is rebuilt from history). Rows are numbered by ``seq``, the commit's depth along first parents
(the root is 0), and hold the commit id, its time, ``sufmin`` (the smallest commit time from
this commit to the indexed tip: non-decreasing in ``seq``, so "the newest commit at or before T"
is one index lookup even when clocks went backwards), the operation, the caller, the mission
trailer, the request id (the oldest commit of an id wins, as for idempotent replays), the summary
HCM_HISTORY shows, and the missions whose folder it changed (``touches``). Read through
reader.py; an index of another schema is ignored by readers and rebuilt by the next build
(the service's start, ``arka-hcm history reindex``).

Maintenance is off the write path: :meth:`HistoryIndex.catch_up` indexes what landed since its
stamp (the newest indexed commit), from one ``git log`` stream; history rewritten below the stamp
(a hand reset) drops the rows above the point where the lines meet; no meeting point at all
rebuilds. Readers never wait for it: what is not indexed yet is walked (query.py).
Writers in several processes take turns on a flock; a reader opens the file read-only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from ..domain.commit_message import parse_trailers, summary_of
from ..durable import flocked
from ..gitrepo.revlog import LoggedCommit, first_parent_count, log_first_parent
from .reader import MISSIONS_PREFIX, SCHEMA, SCHEMA_VERSION, HistoryReader, IndexedRow, one

__all__ = ["HistoryIndex", "IndexedRow", "caller_of", "missions_of"]

_BATCH = 20_000
_WAL_SETTLE_BYTES = 16 * 1024 * 1024


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


class HistoryIndex(HistoryReader):
    """The index of one HCM: read it as a :class:`HistoryReader`, keep it up to date here."""

    def __init__(self, workdir: Path, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.workdir = Path(workdir)
        self.folder = Path(state_dir) / "history"
        self.path = self.folder / "index.sqlite"

    # --- maintenance ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _writer(self, wait: bool, *, reset: bool) -> Iterator[sqlite3.Connection | None]:
        """The index open for writing under its flock; None when another process holds it, or
        when the file holds another schema and ``reset`` is False (readers ignore such a file;
        with ``reset`` its tables are dropped, and the caller builds it again)."""
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
                if not _schema_is_current(conn):
                    if not reset:
                        yield None
                        return
                    _drop_tables(conn)
                conn.executescript(SCHEMA)
                yield conn
                _settle(conn, self.path)
            finally:
                conn.close()

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
        with self._writer(wait, reset=build) as conn:
            if conn is None:
                return 0
            names = _Names(conn)
            stamp = one(conn, "SELECT value FROM meta WHERE key = 'stamp_seq'")
            if stamp is None:
                if not build:
                    return 0
                return self._build(conn, names, tip, on_progress)
            return self._extend(conn, names, tip, int(stamp[0]), build, on_progress)

    def rebuild(self, tip: str | None, on_progress: Callable[[int, int], None] | None = None) -> int:
        with self._writer(True, reset=True) as conn:
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
                    _insert(conn, names, batch)
                    batch = []
                    if on_progress:
                        on_progress(total - seq - 1, total)
            _insert(conn, names, batch)
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
            row = one(conn, "SELECT seq FROM commits WHERE id = ?", (bytes.fromhex(record.id),))
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
                for table in ("commits", "touches"):
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
            _insert(conn, names, batch)
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
            ident = int(one(self.conn, "SELECT id FROM names WHERE text = ?", (text,))[0])
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


def _schema_is_current(conn: sqlite3.Connection) -> bool:
    """True for a new (empty) file or an index of this schema."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return True
    if "meta" not in tables:
        return False
    row = one(conn, "SELECT value FROM meta WHERE key = 'schema'")
    return row is not None and row[0] == SCHEMA_VERSION


def _drop_tables(conn: sqlite3.Connection) -> None:
    """Empty a file of an older schema (every table, whatever it held) in one transaction."""
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.execute("BEGIN")
    try:
        for table in tables:
            if not table.startswith("sqlite_"):
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')  # noqa: S608 (names from the file)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _clear(conn: sqlite3.Connection) -> None:
    for table in ("commits", "touches", "meta"):
        conn.execute(f"DELETE FROM {table}")  # noqa: S608
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))


def _set_meta(conn: sqlite3.Connection, seq: int, tip: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('stamp_seq', ?)", (str(seq),))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('stamp_id', ?)", (tip,))


def _insert(conn: sqlite3.Connection, names: _Names, batch: list[tuple[int, LoggedCommit, int]]) -> None:
    """Rows for commits newest first. What HCM_HISTORY shows of a commit is derived here as
    operations/history.py derives it from the commit object (tests/test_quick_history.py checks
    that both agree)."""
    commits: list[tuple[object, ...]] = []
    touches: list[tuple[int | None, int]] = []
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
                names(trailers.get("Hcm-Mission")),
                trailers.get("Hcm-Request-Id"),
                summary_of(record.message),
            )
        )
        touches.extend((names(mission), seq) for mission in missions_of(record.paths))
    conn.executemany("INSERT INTO commits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", commits)
    conn.executemany("INSERT OR IGNORE INTO touches VALUES (?, ?)", touches)
