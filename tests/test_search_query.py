"""Queries: user text never reaches FTS5 as syntax; words, phrases, prefixes, French forms."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm.search.query import fts_string, match_expression, parse_query
from arka_git_hcm.search.schema import TOKENIZER

HOSTILE = [
    "AND",
    "OR NOT",
    "NEAR(a b, 3)",
    '"',
    '""',
    '"unbalanced',
    "*",
    "a*b*",
    "title:secret",
    "{title body}: x",
    "(",
    ")",
    "((a) OR",
    "-budget",
    "^start",
    "col : NEAR",
    "'; DROP TABLE doc; --",
    "\x00\x01\u200b",
    "décision AND NOT budget",
    "* * *",
]


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE VIRTUAL TABLE fts USING fts5(title, body, filt, tokenize='{TOKENIZER}')")
    conn.execute("INSERT INTO fts VALUES ('Décisions validées', 'AND OR NOT NEAR budget title secret', '')")
    return conn


def _runs(conn: sqlite3.Connection, text: str) -> None:
    query = parse_query(text)
    for mode in ("all", "any"):
        if query.terms:
            conn.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (match_expression(query.terms, mode),))


def test_hostile_text_is_plain_text() -> None:
    conn = _table()
    for text in HOSTILE:
        _runs(conn, text)
    # operators are words like any other: a document containing them is found by them
    query = parse_query("AND NEAR")
    rows = conn.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (match_expression(query.terms, "all"),))
    assert rows.fetchall() == [(1,)]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_any_text_gives_a_valid_expression(text: str) -> None:
    _runs(_table(), text)


def test_a_string_literal_doubles_its_quotes() -> None:
    assert fts_string('say "hi"') == '"say ""hi"""'


def test_words_phrases_and_prefixes() -> None:
    query = parse_query('Décisions "plan de communication" synthè* l\'équipe x*')
    kinds = [(t.kind, t.text) for t in query.terms]
    assert kinds == [
        ("word", "decisions"),
        ("phrase", "plan de communication"),
        ("prefix", "synthe"),
        ("phrase", "l equipe"),
        ("word", "x"),  # a one-letter prefix would match half the index: a plain word
    ]
    assert query.terms[0].forms[0] == "Décisions"  # FTS5 folds the user's spelling itself


def test_stop_words_are_left_out_unless_they_are_all_there_is() -> None:
    assert [t.text for t in parse_query("le budget de la mission").terms] == ["budget", "mission"]
    assert parse_query("le budget").ignored == ("le",)
    assert [t.text for t in parse_query("de la").terms] == ["de", "la"]


def test_french_forms_a_porter_stemmer_misses() -> None:
    def forms(word: str) -> set[str]:
        return set(parse_query(word).terms[0].forms)

    assert {"journal"} <= forms("journaux") and {"journaux"} <= forms("journal")
    assert {"travail"} <= forms("travaux")
    assert {"bureau"} <= forms("bureaux") and {"bureaux"} <= forms("bureau")
    assert {"validee"} <= forms("validé") and {"valide"} <= forms("validées")


def test_a_prefix_longer_than_its_stem_still_matches() -> None:
    """FTS5 stems a prefix: validat* alone would miss "validation" (stem: valid)."""
    conn = _table()
    conn.execute("INSERT INTO fts VALUES ('', 'la validation du périmètre', '')")
    for text in ("validat*", "valida*", "décis*", "DÉCISIONS*", "périm*"):
        query = parse_query(text)
        found = conn.execute(
            "SELECT count(*) FROM fts WHERE fts MATCH ?", (match_expression(query.terms, "all"),)
        )
        assert found.fetchone()[0] >= 1, text


def test_many_terms_are_capped() -> None:
    query = parse_query(" ".join(f"word{i}" for i in range(40)))
    assert len(query.terms) == 16 and len(query.ignored) == 24
