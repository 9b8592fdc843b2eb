"""The index's files: where they live, their SQLite schema and version, and who may update them.

The index is a cache, outside the versioned tree: ``.git/arka-hcm/search/`` (git never tracks
anything under ``.git``, so it is never committed, never in the work tree, never in a clone or a
bundle). It can be deleted at any time; it is rebuilt from git objects.

    .git/arka-hcm/search/
      CURRENT                 the name of the current generation, replaced atomically
      index-000007.sqlite     one generation (+ its -wal and -shm while in use)
      update.lock             flock: one updater at a time, across processes

Why generations: a full rebuild (no index, a corrupt one, an older schema, changed hindex rules)
writes a new file and then points CURRENT at it, so readers keep answering from the old one
meanwhile and never see a half-built index. Replacing a WAL database file in place under readers
of other processes is not safe (a reader closing the old file can delete the new one's WAL), and
each generation has its own -wal/-shm names, so that cannot happen.

Incremental updates change rows and the stamp (the commit the index reflects) in one SQLite
transaction: a crash leaves the previous stamp with the previous rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "SCHEMA_VERSION",
    "TOKENIZER",
    "IndexFiles",
    "create_indexes",
    "create_schema",
    "docsize_tokens",
    "filter_tokens",
    "level_token",
    "mission_token",
    "open_reader",
    "read_meta",
]

SCHEMA_VERSION = 1
TOKENIZER = "porter unicode61 remove_diacritics 2"
_GENERATION = re.compile(r"^index-(\d{6})\.sqlite$")

_SCHEMA = f"""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE files(path TEXT PRIMARY KEY, blob TEXT NOT NULL, size INTEGER NOT NULL,
                   lines INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE doc(id INTEGER PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, line INTEGER,
                 record INTEGER, entry_id TEXT, timestamp TEXT, author TEXT, entry_type TEXT,
                 title TEXT NOT NULL, layer TEXT NOT NULL, mission TEXT, sens TEXT NOT NULL,
                 classes TEXT NOT NULL);
CREATE VIRTUAL TABLE fts USING fts5(title, body, filt, tokenize='{TOKENIZER}');
CREATE TABLE level_stats(sens TEXT PRIMARY KEY, docs INTEGER NOT NULL, tokens INTEGER NOT NULL)
    WITHOUT ROWID;
"""


@functools.lru_cache(maxsize=4096)
def _digits(kind: str, value: str) -> str:
    # digits only, so the stemmer leaves the word alone; a hash, so no id or level name can
    # spell another's word (the row's own columns are checked as well)
    return kind + str(int.from_bytes(hashlib.blake2b(value.encode(), digest_size=7).digest(), "big"))


def mission_token(mission_id: str) -> str:
    return _digits("zm", mission_id)


def level_token(level: str) -> str:
    return _digits("zv", level)


@functools.lru_cache(maxsize=65536)
def filter_tokens(layer: str, mission: str | None, scoped: bool, sensitivity: str) -> str:
    """The words of the ``filt`` column, which user terms never reach (they are confined to
    title and body): the layer, the mission, ``zshared`` for documents of the default scope
    outside any mission (what a context pack adds to a mission's own), the sensitivity level."""
    tokens = [f"zl{layer}", level_token(sensitivity)]
    if mission is not None:
        tokens.append(mission_token(mission))
    elif scoped:
        tokens.append("zshared")
    return " ".join(tokens)


def docsize_tokens(sizes: bytes | None) -> int:
    """The tokens of one document, all columns: FTS5's docsize record is one SQLite varint per
    column (7 bits a byte, high bit "more", a ninth byte carrying 8 bits)."""
    if not sizes:
        return 0
    if max(sizes) < 0x80:  # every column under 128 tokens, one byte each: the usual case
        return sum(sizes)
    total = value = count = 0
    for byte in sizes:
        if count == 8:
            total += (value << 8) | byte
            value = count = 0
            continue
        value = (value << 7) | (byte & 0x7F)
        count += 1
        if not byte & 0x80:
            total += value
            value = count = 0
    return total


def create_schema(conn: sqlite3.Connection) -> None:
    """The tables, without their secondary index (made after a bulk load: faster)."""
    try:
        conn.executescript(_SCHEMA)
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc):  # a Python built against an SQLite without FTS5: say so, plainly
            raise RuntimeError(
                f"this Python's SQLite {sqlite3.sqlite_version} has no FTS5, which search needs; "
                f"use a Python whose sqlite3 module has it (the official builds and Debian's do)"
            ) from None
        raise
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def create_indexes(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE INDEX doc_path ON doc(path)")


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def open_reader(path: Path) -> sqlite3.Connection:
    """A connection for searching: never creates the file (a generation removed between reading
    CURRENT and opening it must fail, not leave an empty database behind)."""
    conn = sqlite3.connect(
        f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False, timeout=5.0
    )
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA cache_size = -16000")
    return conn


class IndexFiles:
    def __init__(self, git_dir: Path) -> None:
        self.folder = Path(git_dir) / "arka-hcm" / "search"
        self.current_file = self.folder / "CURRENT"
        self.lock_file = self.folder / "update.lock"

    def current(self) -> Path | None:
        """The current generation's database, or None (no index yet)."""
        try:
            name = self.current_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not _GENERATION.match(name):
            return None
        return self.folder / name

    def current_stamp(self) -> tuple[int, int] | None:
        """Changes whenever CURRENT is replaced (readers reopen then)."""
        try:
            info = os.stat(self.current_file)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns)

    def new_generation(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for m in map(_GENERATION.match, os.listdir(self.folder)) if m]
        path = self.folder / f"index-{max(numbers, default=0) + 1:06d}.sqlite"
        for leftover in _with_companions(path):  # a crashed earlier build of the same number
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        return path

    def make_current(self, path: Path) -> None:
        """Point CURRENT at ``path`` (already complete and synced): temp file, fsync, rename,
        fsync of the folder, so a crash leaves CURRENT naming the old or the new generation."""
        tmp = self.folder / f"CURRENT.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(path.name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.current_file)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove_other_generations(self) -> list[str]:
        """Delete every generation but the current one (call under the update lock). Readers of
        other processes still holding an old one keep reading it until they notice CURRENT."""
        current = self.current()
        removed = []
        for name in os.listdir(self.folder):
            base = name.split("-wal")[0].split("-shm")[0].split("-journal")[0]
            if not _GENERATION.match(base) or (current is not None and base == current.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
                removed.append(name)
        return removed

    @contextlib.contextmanager
    def update_lock(self, wait_s: float = 0.0) -> Iterator[bool]:
        """Hold the updater lock; yields False (without it) when another process holds it past
        ``wait_s``. flock: released by the kernel when its holder dies, however it died."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)  # another process updates; its rounds are short
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _with_companions(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
