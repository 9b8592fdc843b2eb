"""Index rows: what a document becomes in the tables, the per-level tallies, and the stream
of rows a full build inserts."""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
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
    rows: list[tuple[Any, ...]] = []
    fts: list[tuple[Any, ...]] = []
    described: tuple[str, str | None, str, bool] | None = None
    described_path = None
    for doc_id, doc in enumerate(docs, start=first_id):
        if doc.path != described_path:  # a file's documents are consecutive
            layer, mission = location(doc.path)
            names = rules.classes_of(doc.path)
            described = (
                layer,
                mission,
                "".join(f"|{c}" for c in names) + ("|" if names else ""),
                bool(names),
            )
            described_path = doc.path
        assert described is not None
        layer, mission, classes, scoped = described
        sens = rules.sensitivity_of(doc.path, doc.own_sensitivity)
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
        fts.append((doc_id, doc.index_title, doc.text, filter_tokens(layer, mission, scoped, sens)))
    return rows, fts


_DONE = object()


def produced(
    repo: GitRepo, tree: str, rules: IndexRules
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[str, str, int, int]]]]:
    """The rows of every indexed file of ``tree``, in batches. Reading blobs and parsing JSON
    (Python, under the GIL) run on a helper thread while the caller inserts (SQLite, which
    releases the GIL while it tokenizes): a rebuild takes about the longer of the two."""
    batches: queue.Queue[Any] = queue.Queue(maxsize=4)

    def produce() -> None:
        try:
            next_id = 1
            pending: list[Document] = []
            known: list[tuple[str, str, int, int]] = []
            for path, blob, data in tree_files(repo, tree, is_indexed):
                known.append((path, blob, len(data), data.count(b"\n")))
                pending.extend(documents_of(path, data))
                if len(pending) >= _CHUNK:
                    batches.put((*rows_of(pending, rules, next_id), known))
                    next_id += len(pending)
                    pending, known = [], []
            batches.put((*rows_of(pending, rules, next_id), known))
            batches.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            batches.put(exc)

    helper = threading.Thread(target=produce, name="arka-hcm-search-rebuild", daemon=True)
    helper.start()
    try:
        while True:
            item = batches.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # the consumer stopped early (an error): drain so the helper can finish and exit
        while helper.is_alive():
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.1)
        helper.join()


def tally(conn: sqlite3.Connection, where: str, args: tuple[Any, ...], sign: int) -> None:
    """Add (or take away) the documents ``where`` selects to the per-level statistics: the
    number of documents and of tokens of each sensitivity level, from which a search computes
    its statistics over only what the caller may see."""
    counts: dict[str, list[int]] = {}
    found = conn.execute(
        f"SELECT d.sens, s.sz FROM doc d JOIN fts_docsize s ON s.id = d.id WHERE {where}", args
    )
    for sens, sizes in found:
        tally = counts.setdefault(sens, [0, 0])
        tally[0] += 1
        tally[1] += docsize_tokens(sizes)
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
