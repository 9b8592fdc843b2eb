"""Index rows: what a document becomes in the tables, the per-level tallies, and the stream
of rows a full build inserts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from ..gitrepo import GitRepo
from ..gitrepo.tree_read import tree_files
from .documents import Document, documents_of, is_indexed, location
from .rules import IndexRules
from .schema import docsize_tokens, filter_tokens

__all__ = ["delete_path", "produced", "rows_of", "tally"]

_CHUNK = 2000  # documents per insert batch while rebuilding


def rows_of(
    docs: list[Document], rules: IndexRules, first_id: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``doc`` and ``fts`` rows of ``docs``, numbered from ``first_id``."""
    rows: list[tuple[Any, ...]] = []
    fts: list[tuple[Any, ...]] = []
    described_path = None
    layer, mission, classes, scoped, forced = "", None, "", False, None
    filters: dict[str, str] = {}  # the file's filter tokens by sensitivity level
    for doc_id, doc in enumerate(docs, start=first_id):
        if doc.path != described_path:  # a file's documents are consecutive
            described_path = doc.path
            layer, mission = location(doc.path)
            names = rules.classes_of(doc.path)
            classes = "".join(f"|{c}" for c in names) + ("|" if names else "")
            scoped = bool(names)
            forced = rules.path_level(doc.path)
            filters = {}
        sens = forced if forced is not None else doc.own_sensitivity or rules.default_level
        filt = filters.get(sens)
        if filt is None:
            filt = filters[sens] = filter_tokens(layer, mission, scoped, sens)
        rows.append(
            (
                doc_id,
                doc.path,
                doc.kind,
                doc.line,
                doc.record,
                doc.entry_id,
                doc.timestamp,
                doc.author,
                doc.entry_type,
                doc.title,
                layer,
                mission,
                sens,
                classes,
            )
        )
        fts.append((doc_id, doc.index_title, doc.text, filt))
    return rows, fts


def produced(
    repo: GitRepo, tree: str, rules: IndexRules
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[str, str, int, int]]]]:
    """The rows of every indexed file of ``tree``, in batches of about _CHUNK documents, with
    the ``files`` rows of their files. Made in the caller's thread: a helper thread (or child
    processes) making them while the caller inserts cost more CPU than they saved in wall
    time on a busy 2-core host (measured, see docs/search.md)."""
    next_id = 1
    pending: list[Document] = []
    known: list[tuple[str, str, int, int]] = []
    for path, blob, data in tree_files(repo, tree, is_indexed):
        known.append((path, blob, len(data), data.count(b"\n")))
        pending.extend(documents_of(path, data))
        if len(pending) >= _CHUNK:
            yield (*rows_of(pending, rules, next_id), known)
            next_id += len(pending)
            pending, known = [], []
    if pending or known:
        yield (*rows_of(pending, rules, next_id), known)


def tally(conn: sqlite3.Connection, where: str, args: tuple[Any, ...], sign: int) -> None:
    """Add (or take away) the documents ``where`` selects to the per-level statistics: the
    number of documents and of tokens of each sensitivity level, from which a search computes
    its statistics over only what the caller may see."""
    counts: dict[str, list[int]] = {}
    found = conn.execute(
        "SELECT d.sens, s.sz, count(*) FROM doc d JOIN fts_docsize s ON s.id = d.id "
        f"WHERE {where} GROUP BY d.sens, s.sz",  # few distinct size records: each decoded once
        args,
    )
    for sens, sizes, docs in found:
        tally = counts.setdefault(sens, [0, 0])
        tally[0] += docs
        tally[1] += docs * docsize_tokens(sizes)
    conn.executemany(
        "INSERT INTO level_stats VALUES (?, ?, ?) ON CONFLICT(sens) DO UPDATE "
        "SET docs = docs + excluded.docs, tokens = tokens + excluded.tokens",
        [(sens, sign * docs, sign * tokens) for sens, (docs, tokens) in counts.items()],
    )


def delete_path(conn: sqlite3.Connection, path: str) -> None:
    ids = [r[0] for r in conn.execute("SELECT id FROM doc WHERE path = ?", (path,))]
    if ids:
        tally(conn, "d.path = ?", (path,), -1)
        conn.executemany("DELETE FROM fts WHERE rowid = ?", [(i,) for i in ids])
        conn.execute("DELETE FROM doc WHERE path = ?", (path,))
