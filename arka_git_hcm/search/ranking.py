"""Ranking the documents a query matches, and the snippets that show why.

Score: BM25 (k1 1.2, b 0.75) with the title weighted 4 and the text 1, as FTS5's ``bm25()``
computes it, times 1.5 for documents of a class the query routes to (a hindex keyword).

Why not ``ORDER BY bm25(fts)``: FTS5 computes each term's document frequency on every query by
walking the term's whole document list. For a word in half of 100,000 documents that alone is
~10 ms, even when a mission filter leaves ten candidates (measured). Here the candidates are
fetched without ranking (the filter words in the MATCH make that a few index seeks), with
FTS5's ``highlight()`` marking every matched span, and scored in Python from:

- the term frequencies per column: the marked spans, each attributed to the query term it
  matches best (and a prefix term's spans only if the word really starts with the prefix);
- the column lengths (FTS5's docsize table) and the average lengths (its averages record);
- the document frequencies, counted once and cached (30 s), and counted only over the
  documents the caller may see: a score never reflects what the caller could not read.

Past ``CANDIDATE_CAP`` candidates (a broad query with no mission), FTS5's own ``bm25()``
picks the best few and they are scored here the same way.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .query import ParsedQuery, Term, fts_string, match_expression
from .schema import docsize_tokens, level_token, mission_token
from .snippets import frequencies, mark_prefixes, plain, snippet

__all__ = ["CANDIDATE_CAP", "Filters", "Hit", "Ranker"]

K1, B = 1.2, 0.75
TITLE_WEIGHT, TEXT_WEIGHT = 4.0, 1.0
ROUTED_BOOST = 1.5
CANDIDATE_CAP = 300
STATS_TTL_S = 30.0


@dataclass(frozen=True)
class Filters:
    """Where to look. ``levels``: the sensitivity levels the caller may see (None: all)."""

    levels: tuple[str, ...] | None
    mission: str | None = None
    layers: tuple[str, ...] | None = None
    path_prefix: str | None = None
    default_scope: bool = False  # no scope given: documents in a hindex class scope
    with_shared: bool = False  # a context pack: the mission's documents + the shared default scope

    def match(self) -> str:
        """The ``filt`` part of the MATCH: the selective part of the filters, as index seeks."""
        parts = []
        if self.mission is not None:
            token = fts_string(mission_token(self.mission))
            parts.append(f"({token} OR {fts_string('zshared')})" if self.with_shared else token)
        if self.layers:
            parts.append("(" + " OR ".join(fts_string(f"zl{layer}") for layer in self.layers) + ")")
        if self.levels is not None:
            parts.append("(" + " OR ".join(fts_string(level_token(lv)) for lv in self.levels) + ")")
        return "filt : (" + " AND ".join(parts) + ")" if parts else ""

    def sql(self) -> tuple[str, list[Any]]:
        """The same filters on each row's own columns: the authority (the filter words are
        hashes, and a search must never show a row the caller may not see)."""
        conds: list[str] = []
        args: list[Any] = []
        if self.levels is not None:
            conds.append(f"d.sens IN ({','.join('?' * len(self.levels))})")
            args += self.levels
        if self.mission is not None and self.with_shared:
            conds.append("(d.mission = ? OR (d.mission IS NULL AND d.classes != ''))")
            args.append(self.mission)
        elif self.mission is not None:
            conds.append("d.mission = ?")
            args.append(self.mission)
        if self.layers:
            conds.append(f"d.layer IN ({','.join('?' * len(self.layers))})")
            args += self.layers
        if self.path_prefix:
            conds.append("substr(d.path, 1, ?) = ?")
            args += [len(self.path_prefix), self.path_prefix]
        if self.default_scope:
            conds.append("d.classes != ''")
        return (" AND " + " AND ".join(conds) if conds else ""), args


@dataclass
class Hit:
    id: int
    score: float
    path: str
    kind: str
    title: str
    snippet: str
    layer: str
    mission: str | None
    entry: dict[str, Any] | None

    def to_json(self, revision: str) -> dict[str, Any]:
        return {
            "path": self.path,
            "score": round(self.score, 4),
            "title": self.title,
            "snippet": self.snippet,
            "layer": self.layer,
            "mission_id": self.mission,
            "revision": revision,
            "kind": self.kind,
            "entry": self.entry,
        }


_COLUMNS = """fts.rowid, highlight(fts, 0, char(1), char(2)), highlight(fts, 1, char(1), char(2)),
    s.sz, d.path, d.kind, d.title, d.layer, d.mission, d.classes,
    d.line, d.record, d.entry_id, d.timestamp, d.author, d.entry_type"""
_FROM = "FROM fts JOIN doc d ON d.id = fts.rowid JOIN fts_docsize s ON s.id = fts.rowid"


class Ranker:
    def __init__(self) -> None:
        self._stats: OrderedDict[tuple[Any, ...], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def search(
        self,
        conn: sqlite3.Connection,
        generation: str,
        query: ParsedQuery,
        filters: Filters,
        routed: list[str],
        limit: int,
    ) -> tuple[list[Hit], bool, str]:
        """(hits best first, whether there are more, "all" or "any": the words it matched),
        from one snapshot of the index."""
        if filters.levels == () or not query.terms:
            return [], False, "all"
        stats = self._statistics(conn, generation, query.terms, filters.levels)
        modes = ["all", "any"] if len(query.terms) > 1 else ["all"]
        for mode in modes:
            hits, more = self._search(conn, query.terms, filters, stats, routed, limit, mode)
            if hits:
                return hits, more, mode
        return [], False, "all"

    def _search(
        self,
        conn: sqlite3.Connection,
        terms: tuple[Term, ...],
        filters: Filters,
        stats: dict[str, Any],
        routed: list[str],
        limit: int,
        mode: str,
    ) -> tuple[list[Hit], bool]:
        where, args = filters.sql()
        rows = None
        if filters.mission is not None and any(_python_prefix(t) for t in terms):
            rows = self._mission_candidates(conn, terms, filters, where, args, mode)
        if rows is None:
            scope = filters.match()
            match = (scope + " AND " if scope else "") + match_expression(terms, mode)
            rows = _candidates(conn, match, where, args, limit)
        scored = [hit for hit in (self._score(row, terms, stats, routed, mode) for row in rows) if hit]
        scored.sort(key=lambda h: (-h.score, h.path, h.id))
        return scored[:limit], len(scored) > limit

    def _mission_candidates(
        self,
        conn: sqlite3.Connection,
        terms: tuple[Term, ...],
        filters: Filters,
        where: str,
        args: list[Any],
        mode: str,
    ) -> list[tuple[Any, ...]] | None:
        """A one-word prefix inside one mission: FTS5 would merge the document lists of every
        word with that prefix in the whole index (~5 ms a prefix at 100,000 files), so the
        mission's documents are fetched by the filter (and the other terms) alone, and the
        prefix is found in their text here. None: too many candidates, let FTS5 do it."""
        others = tuple(t for t in terms if not _python_prefix(t))
        scope = filters.match()
        if others and mode == "all":
            match = scope + " AND " + match_expression(others, "all")
        elif others:  # any: every document of the scope, the other terms marked where they are
            match = f"{scope} AND ({match_expression(others, 'any')} OR {scope})"
        else:
            match = scope
        rows = conn.execute(
            f"SELECT {_COLUMNS} {_FROM} WHERE fts MATCH ?{where} LIMIT ?", [match, *args, CANDIDATE_CAP + 1]
        ).fetchall()
        if len(rows) > CANDIDATE_CAP:
            return None
        prefixes = [t.text for t in terms if _python_prefix(t)]
        return [
            (row[0], mark_prefixes(row[1], prefixes), mark_prefixes(row[2], prefixes), *row[3:])
            for row in rows
        ]

    # --- statistics ----------------------------------------------------------------------------
    def _statistics(
        self,
        conn: sqlite3.Connection,
        generation: str,
        terms: tuple[Term, ...],
        levels: tuple[str, ...] | None,
    ) -> dict[str, Any]:
        """Collection statistics over what the caller may see (the number of documents, their
        average length, each term's document frequency), so that no score reflects a document
        the caller could not read. Counting a frequency over the whole index is cheaper: it is
        done that way when the caller may see every level present."""
        per_level = conn.execute("SELECT sens, docs, tokens FROM level_stats WHERE docs > 0").fetchall()
        seen = [row for row in per_level if levels is None or row[0] in levels]
        count = sum(docs for _, docs, _ in seen)
        tokens = sum(t for _, _, t in seen)
        scoped = levels is not None and len(seen) < len(per_level)
        visible = "filt : (" + " OR ".join(fts_string(level_token(lv)) for lv in levels or ()) + ")"
        frequencies = {}
        for term in terms:
            expr = "{title body} : " + term.expression()
            frequencies[term] = self._cached(
                conn,
                (generation, levels if scoped else None, expr),
                "SELECT count(*) FROM fts WHERE fts MATCH ?",
                f"{visible} AND {expr}" if scoped else expr,
            )
        return {"count": max(float(count), 1.0), "df": frequencies, "avgdl": tokens / count if count else 1.0}

    def _cached(self, conn: sqlite3.Connection, key: tuple[Any, ...], sql: str, match: str) -> float:
        now = time.monotonic()
        with self._lock:
            found = self._stats.get(key)
            if found is not None and now - found[1] < STATS_TTL_S:
                self._stats.move_to_end(key)
                return found[0]
        value = float(conn.execute(sql, (match,)).fetchone()[0])
        with self._lock:
            self._stats[key] = (value, now)
            while len(self._stats) > 4096:
                self._stats.popitem(last=False)
        return value

    # --- one candidate ---------------------------------------------------------------------------
    def _score(
        self,
        row: tuple[Any, ...],
        terms: tuple[Term, ...],
        stats: dict[str, Any],
        routed: list[str],
        mode: str,
    ) -> Hit | None:
        doc_id, title_marked, body_marked, sizes, path, kind, title, layer, mission, classes = row[:10]
        tf_title = frequencies(title_marked, terms)
        tf_body = frequencies(body_marked, terms)
        present = [t for t in terms if tf_title[t] or tf_body[t]]
        if not present or (mode == "all" and len(present) < len(terms)):
            return None  # a prefix matched only through its shortened forms
        length = docsize_tokens(sizes)
        norm = K1 * (1 - B + B * length / stats["avgdl"])
        score = 0.0
        for term in present:
            weight = TITLE_WEIGHT * tf_title[term] + TEXT_WEIGHT * tf_body[term]
            df = stats["df"][term]
            idf = math.log((stats["count"] - df + 0.5) / (df + 0.5))
            score += max(idf, 1e-6) * weight * (K1 + 1) / (weight + norm)
        if routed and any(f"|{name}|" in classes for name in routed):
            score *= ROUTED_BOOST
        shown = snippet(body_marked, terms) or snippet(title_marked, terms) or plain(body_marked)[:200]
        return Hit(doc_id, score, path, kind, title, shown, layer, mission, _entry(kind, *row[10:]))


def _candidates(
    conn: sqlite3.Connection, match: str, where: str, args: list[Any], limit: int
) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE fts MATCH ?{where} LIMIT ?", [match, *args, CANDIDATE_CAP + 1]
    ).fetchall()
    if len(rows) <= CANDIDATE_CAP:
        return rows
    # A broad query: FTS5's bm25 picks the best few (its frequencies count every document; the
    # scores shown are recomputed here over what the caller may see).
    ids = conn.execute(
        f"SELECT fts.rowid {_FROM} WHERE fts MATCH ?{where} "
        f"ORDER BY bm25(fts, {TITLE_WEIGHT}, {TEXT_WEIGHT}, 0.0) LIMIT ?",
        [match, *args, limit * 4 + 1],
    ).fetchall()
    found = [
        conn.execute(f"SELECT {_COLUMNS} {_FROM} WHERE fts MATCH ? AND fts.rowid = ?", (match, i)).fetchone()
        for (i,) in ids
    ]
    return [row for row in found if row is not None]


def _python_prefix(term: Term) -> bool:
    return term.kind == "prefix" and " " not in term.text


def _entry(
    kind: str,
    line: int | None,
    record: int | None,
    entry_id: str | None,
    timestamp: str | None,
    author: str | None,
    entry_type: str | None,
) -> dict[str, Any] | None:
    """What names the matched entry inside its file: a journal line, or a record of a list."""
    if kind == "entry":
        found = {"line": line, "timestamp": timestamp, "author": author, "entry_type": entry_type}
        return {k: v for k, v in found.items() if v is not None}
    if kind == "record":
        return {"record": record, "id": entry_id} if entry_id else {"record": record}
    return None
