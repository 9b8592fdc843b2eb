"""Reading the index: one SQLite connection per thread, on the current generation.

Reads are snapshots (WAL): the stamp and the rows a search reads come from one transaction, so an
answer's revision is exactly what it searched, while an updater in this or another process keeps
writing. A connection notices a new generation (a rebuild switched CURRENT) before each read.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .schema import SCHEMA_VERSION, IndexFiles, open_reader, read_meta

__all__ = ["IndexReader", "IndexUnavailable", "Snapshot", "classify"]


class IndexUnavailable(Exception):
    """No usable index right now: missing, being built, corrupt, or of another schema version.
    ``corrupt`` says whether rebuilding is the remedy (rather than waiting for the first build)."""

    def __init__(self, reason: str, *, corrupt: bool = False, generation: Path | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.corrupt = corrupt
        self.generation = generation


_CORRUPT_SIGNS = ("malformed", "not a database", "no such table", "disk i/o", "corrupt", "schema")


def classify(exc: sqlite3.DatabaseError) -> str:
    """ "busy" (retry), "corrupt" (rebuild), or "bug" (our own SQL: never a reason to rebuild)."""
    message = str(exc).lower()
    if "locked" in message or "busy" in message:
        return "busy"
    if type(exc) is sqlite3.DatabaseError or any(s in message for s in _CORRUPT_SIGNS):
        return "corrupt"
    return "bug"


class Snapshot:
    def __init__(self, conn: sqlite3.Connection, meta: dict[str, str], generation: Path) -> None:
        self.conn = conn
        self.meta = meta
        self.generation = generation

    @property
    def revision(self) -> str:
        return self.meta["revision"]


class IndexReader:
    def __init__(self, files: IndexFiles) -> None:
        self.files = files
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        conn, generation = self._connection()
        try:
            conn.execute("BEGIN")
            try:
                meta = read_meta(conn)
                if meta.get("schema_version") != str(SCHEMA_VERSION):
                    raise IndexUnavailable(
                        "the index has another schema version", corrupt=True, generation=generation
                    )
                if not meta.get("revision"):
                    raise IndexUnavailable("the index has no stamp", corrupt=True, generation=generation)
                yield Snapshot(conn, meta, generation)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._forget()
            kind = classify(exc)
            if kind == "bug":
                raise
            raise IndexUnavailable(
                f"the index is {kind} ({exc})", corrupt=kind == "corrupt", generation=generation
            ) from None

    def _connection(self) -> tuple[sqlite3.Connection, Path]:
        if self._closed:
            raise IndexUnavailable("the search index is closed")
        stamp = self.files.current_stamp()
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == stamp:
            return held[1], held[2]
        self._forget()
        generation = self.files.current()
        if generation is None:
            raise IndexUnavailable("there is no search index yet")
        try:
            conn = open_reader(generation)
        except sqlite3.DatabaseError as exc:  # removed between CURRENT and here, or damaged
            corrupt = generation.exists()
            raise IndexUnavailable(
                f"the index could not be opened ({exc})", corrupt=corrupt, generation=generation
            ) from None
        with self._lock:
            self._all.append(conn)
        self._local.held = (stamp, conn, generation)
        return conn, generation

    def _forget(self) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            with self._lock:
                if held[1] in self._all:
                    self._all.remove(held[1])
            with contextlib.suppress(sqlite3.Error):
                held[1].close()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
