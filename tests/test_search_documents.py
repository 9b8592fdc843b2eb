"""What a file becomes in the index: journal lines one by one, records one by one, or one document."""

from __future__ import annotations

import json

from arka_git_hcm.jsonio import canonical_bytes, compact_dumps
from arka_git_hcm.search.documents import MAX_TEXT_CHARS, documents_of, journal_documents, location


def _line(**entry: object) -> bytes:
    return compact_dumps(entry).encode() + b"\n"


def test_a_journal_is_indexed_line_by_line_and_names_each_entry() -> None:
    data = (
        _line(
            timestamp="2026-11-26T09:00:00Z",
            author_type="agent",
            author_id="pmo",
            entry_type="note",
            message="Kick-off done",
            context={"phase": "cadrage"},
        )
        + b"\n"  # a blank line (v1 journals have some): skipped, still counted
        + _line(
            timestamp="2026-11-26T10:00:00Z",
            author_type="human",
            author_id="alice",
            entry_type="event",
            message="Budget validé",
            context={"sensitivity": "restricted"},
        )
        + b"not json at all\n"
    )
    docs = documents_of("state/missions/m1/journal.jsonl", data)
    assert [(d.kind, d.line) for d in docs] == [("entry", 1), ("entry", 3), ("entry", 4)]
    first, second, broken = docs
    assert first.text == "Kick-off done\ncadrage" and first.author == "agent/pmo"
    assert first.timestamp == "2026-11-26T09:00:00Z" and first.entry_type == "note"
    assert second.own_sensitivity == "restricted"
    assert broken.text == "not json at all"


def test_appended_lines_are_numbered_after_the_indexed_ones() -> None:
    docs = journal_documents("j.jsonl", _line(message="later") + _line(message="last"), first_line=8)
    assert [d.line for d in docs] == [8, 9]


def test_a_list_of_records_gives_one_document_per_record() -> None:
    content = {
        "sensitivity": "internal",
        "decisions": [
            {
                "decision_id": "dec-0001",
                "title": "Scope",
                "description": "Support first",
                "timestamp": "2026-11-26T09:00:00Z",
            },
            {"decision_id": "dec-0002", "title": "Budget", "sensitivity": "restricted"},
        ],
    }
    docs = documents_of("state/missions/m1/decisions.json", canonical_bytes(content))
    assert [(d.kind, d.record, d.entry_id, d.title) for d in docs] == [
        ("record", 0, "dec-0001", "Scope"),
        ("record", 1, "dec-0002", "Budget"),
    ]
    assert sorted(docs[0].text.split("\n")) == ["Support first", "dec-0001"]  # no timestamp
    assert [d.own_sensitivity for d in docs] == ["internal", "restricted"]


def test_any_other_json_is_one_document_titled_by_its_title_or_name() -> None:
    docs = documents_of(
        "domain/org/profile.json", canonical_bytes({"name": "ACME", "about": {"x": ["a", 2]}})
    )
    assert len(docs) == 1 and docs[0].title == "ACME" and docs[0].text == "a"
    untitled = documents_of("domain/org/security_policies.json", canonical_bytes({"rules": "Badge"}))
    assert untitled[0].title == "security_policies" and untitled[0].index_title == "security policies"


def test_broken_json_and_plain_text_are_indexed_as_text() -> None:
    assert documents_of("stable/x.json", b'{"title": "half')[0].text == '{"title": "half'
    assert documents_of("stable/notes.md", b"# Notes\nhello")[0].text == "# Notes\nhello"
    long = documents_of("stable/big.json", json.dumps({"t": "x" * (MAX_TEXT_CHARS * 2)}).encode())
    assert len(long[0].text) == MAX_TEXT_CHARS


def test_location_names_the_layer_and_the_mission() -> None:
    assert location("state/missions/m1/evidence/e.json") == ("state", "m1")
    assert location("state/team/agents.json") == ("state", None)
    assert location("meta.json") == ("root", None)
    assert location("domain/org/a.json") == ("domain", None)


def test_json_nested_deeper_than_python_parses_is_indexed_as_text() -> None:
    """A file that never went through the write path (a hand edit, an adopted or restored HCM)
    may nest deeper than json.loads can go (RecursionError): one bad file must not make every
    rebuild fail. It is indexed as text, like broken JSON."""
    deep = b'["needle", ' + b"[" * 100_000 + b"]" * 100_001
    (doc,) = documents_of("stable/glossary/deep.json", deep)
    assert doc.kind == "file" and "needle" in doc.text
    entries = journal_documents("state/missions/m1/journal.jsonl", b'{"message": "ok"}\n' + deep + b"\n")
    assert [d.line for d in entries] == [1, 2] and "needle" in entries[1].text
