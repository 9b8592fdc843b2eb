"""The ranker's BM25, checked against FTS5's own ``bm25()`` (the oracle) on generated corpora,
and the ranker's shortcuts (prefixes inside a mission) against the plain FTS5 query."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arka_git_hcm.gitrepo import GitRepo, Signature
from arka_git_hcm.jsonio import canonical_bytes
from arka_git_hcm.search.query import match_expression, parse_query
from arka_git_hcm.search.ranking import Filters, Ranker
from arka_git_hcm.search.schema import IndexFiles, open_reader
from arka_git_hcm.search.updater import IndexUpdater

# words the French forms and the stop words leave alone (one form each, as FTS5 sees them)
WORDS = ["alpha", "bravo", "delta", "kilo", "lima", "oscar", "tango", "victor", "whisky", "india"]
TEXT = st.lists(st.sampled_from(WORDS), min_size=0, max_size=12).map(" ".join)
DOCS = st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=12)
QUERY = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3, unique=True).map(" ".join)
WHO = Signature("t", "t@example.invalid", 1_790_000_000)


def _index(folder: Path, files: dict[str, bytes]) -> tuple[GitRepo, IndexFiles]:
    repo = GitRepo.init(folder, "main")
    tree = repo.build_tree(None, {path: repo.write_blob(data) for path, data in files.items()})
    commit = repo.write_commit(tree, [], WHO, WHO, "test\n")
    assert repo.compare_and_swap_ref("refs/heads/main", None, commit, who=WHO, message="t", durable=False)
    index = IndexFiles(repo.git_dir)
    updater = IndexUpdater(repo, index)
    assert updater.rebuild(commit) is not None
    updater.close()
    return repo, index


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=DOCS, query=QUERY)
def test_scores_equal_fts5_bm25(tmp_path_factory: object, docs: list[tuple[str, str]], query: str) -> None:
    folder = tmp_path_factory.mktemp("corpus")  # type: ignore[attr-defined]
    files = {
        f"stable/examples/d{i}.json": canonical_bytes({"title": t, "text": x})
        for i, (t, x) in enumerate(docs)
    }
    repo, index = _index(folder, files)
    current = index.current()
    assert current is not None
    conn = open_reader(current)
    parsed = parse_query(query)
    hits, _, matched = Ranker().search(conn, "g", parsed, Filters(levels=None, default_scope=True), [], 100)
    oracle = conn.execute(
        "SELECT d.path, -bm25(fts, 4.0, 1.0, 0.0) FROM fts JOIN doc d ON d.id = fts.rowid "
        "WHERE fts MATCH ? AND d.classes != ''",
        (match_expression(parsed.terms, matched),),
    ).fetchall()
    conn.close()
    repo.close()
    assert {h.path: round(h.score, 6) for h in hits} == {path: round(score, 6) for path, score in oracle}


def test_a_prefix_inside_a_mission_finds_what_fts5_finds(tmp_path: Path) -> None:
    journal = b"".join(
        canonical_bytes({"message": m}).replace(b"\n", b"") + b"\n"
        for m in ("Synthèse des entretiens", "Synthesis of interviews", "nothing here", "synthétiser vite")
    )
    files = {"state/missions/m1/journal.jsonl": journal, "state/missions/m2/journal.jsonl": journal}
    repo, index = _index(tmp_path / "r", files)
    current = index.current()
    assert current is not None
    conn = open_reader(current)
    ranker = Ranker()
    for text in ("synth*", "synthè* entretiens", "interv* synth*", "synthet*"):
        parsed = parse_query(text)
        inside = ranker.search(conn, "g", parsed, Filters(levels=None, mission="m1"), [], 10)[0]
        everywhere = ranker.search(conn, "g", parsed, Filters(levels=None), [], 10)[0]
        assert sorted((h.path, h.entry["line"]) for h in inside if h.entry) == sorted(
            (h.path, h.entry["line"]) for h in everywhere if h.entry and h.mission == "m1"
        ), text
        assert all("**" in h.snippet for h in inside)
    lines = [
        h.entry["line"]
        for h in ranker.search(
            conn, "g", parse_query("synthet*"), Filters(levels=None, mission="m1"), [], 10
        )[0]
        if h.entry
    ]
    assert lines == [4]  # synthétiser starts with "synthet"; synthèse and synthesis do not
    conn.close()
    repo.close()


def test_statistics_count_only_the_visible_levels(tmp_path: Path) -> None:
    files = {
        "stable/examples/a.json": canonical_bytes({"title": "alpha", "sensitivity": "public"}),
        "stable/examples/b.json": canonical_bytes({"title": "alpha bravo", "sensitivity": "secret"}),
    }
    repo, index = _index(tmp_path / "r", files)
    current = index.current()
    assert current is not None
    conn = open_reader(current)
    stats = conn.execute("SELECT sens, docs FROM level_stats ORDER BY sens").fetchall()
    assert ("public", 1) in stats and ("secret", 1) in stats
    ranker = Ranker()
    public = ranker.search(conn, "g", parse_query("alpha"), Filters(levels=("public",)), [], 10)[0]
    assert [h.path for h in public] == ["stable/examples/a.json"]
    conn.close()
    sqlite3.connect(current).close()
    repo.close()
