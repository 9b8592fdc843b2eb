"""A caller never gets a hit, a snippet, a count or a score shaped by what it may not read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import AGENT, HUMAN, ok
from .search_support import ADMIN, create_mission, journal, paths, put_doc, search, searching

CAROL = {"type": "human", "id": "carol", "roles": ["reader"]}
RULES = {
    "rules": {
        "sensitivity_levels": {"public": [], "internal": ["human_user"], "restricted": ["executive"]},
        "default_visibility": "internal",
        "path_sensitivity": {"domain/constraints/**": "restricted"},
        "role_grants": {"human/carol": ["executive"]},
    }
}


def _visible_world(store: Any) -> None:
    put_doc(store, "hindex/meta_rules.json", RULES)
    put_doc(store, "domain/org/plan.json", {"title": "Reorganisation plan", "text": "merger of two teams"})
    put_doc(store, "domain/org/other.json", {"title": "Canteen", "text": "menu"})


def _restricted_world(store: Any) -> None:
    put_doc(store, "domain/constraints/secret.json", {"title": "Merger", "text": "merger merger acquisition"})
    put_doc(
        store,
        "domain/org/board.json",
        {"title": "Board", "text": "merger talks", "sensitivity": "restricted"},
    )


def test_restricted_documents_give_no_hit_snippet_or_count(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        _visible_world(store)
        _restricted_world(store)
        for caller in (AGENT, HUMAN):
            data = search(store, "merger", caller, limit=1)
            assert paths(data) == ["domain/org/plan.json"]
            assert data["more"] is False  # two restricted documents match too: not counted
            assert "acquisition" not in str(data) and "talks" not in str(data)
            # the only document with both words is restricted: for this caller nothing has both
            assert search(store, "merger acquisition", caller)["matched"] == "any"
        for caller in (ADMIN, CAROL):  # admin sees every level; carol holds "executive" by grant
            data = search(store, "merger", caller, limit=5)
            assert sorted(paths(data)) == [
                "domain/constraints/secret.json",
                "domain/org/board.json",
                "domain/org/plan.json",
            ]
            assert search(store, "merger acquisition", caller)["matched"] == "all"


def test_scores_do_not_depend_on_documents_the_caller_cannot_see(tmp_path: Path) -> None:
    def scores(client: Path, restricted: bool) -> dict[str, dict[str, float]]:
        with searching(client) as (store, _):
            _visible_world(store)
            if restricted:
                _restricted_world(store)
            found: dict[str, dict[str, float]] = {}
            for who in (AGENT, ADMIN):
                hits = search(store, "merger teams", who)["results"]
                found[str(who["id"])] = {h["path"]: h["score"] for h in hits}
            return found

    without = scores(tmp_path / "a", restricted=False)
    with_hidden = scores(tmp_path / "b", restricted=True)
    assert with_hidden["arka-pmo-01"] == without["arka-pmo-01"]  # document frequencies: visible only
    plan = "domain/org/plan.json"
    assert with_hidden["root-admin"][plan] != without["root-admin"][plan]  # an admin's statistics differ


def test_restricted_journal_entries_stay_out_of_hits_and_context_packs(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        put_doc(store, "hindex/meta_rules.json", RULES)
        create_mission(store, "m1")
        journal(store, "Weekly sync on the migration")
        entry = {
            "author_type": "human",
            "author_id": "alice",
            "entry_type": "note",
            "message": "Layoffs planned after the migration",
            "context": {"sensitivity": "restricted"},
        }
        ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry})
        hits = search(store, "migration", AGENT, scope={"mission_id": "m1"})["results"]
        assert [h["entry"]["line"] for h in hits] == [1]
        payload = {"mission_id": "m1", "query": "migration layoffs", "consistent": True}
        pack = ok(store, "HCM_MEMORY_QUERY", payload, AGENT)["data"]
        assert "Layoffs" not in str(pack)
        assert [e["message"] for e in pack["last_journal_entries"]] == ["Weekly sync on the migration"]
        full = ok(store, "HCM_MEMORY_QUERY", payload, CAROL)["data"]
        assert len(full["last_journal_entries"]) == 2 and "Layoffs" in str(full["hits"])


def test_implicit_roles_can_keep_agents_to_public_documents(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        rules = {"rules": {**RULES["rules"], "implicit_roles": {"human": ["human_user"], "agent": []}}}
        put_doc(store, "hindex/meta_rules.json", rules)
        put_doc(store, "stable/glossary/a.json", {"term": "kpi", "sensitivity": "public"})
        put_doc(store, "stable/glossary/b.json", {"term": "kpi tree"})
        assert paths(search(store, "kpi", AGENT)) == ["stable/glossary/a.json"]
        assert len(search(store, "kpi", HUMAN)["results"]) == 2
        label = {"rules": {**rules["rules"], "sensitivity_levels": {"internal": ["agent/arka-pmo-01"]}}}
        put_doc(store, "hindex/meta_rules.json", label)  # a level may name one caller
        assert len(search(store, "kpi", AGENT)["results"]) == 2


def test_an_unreadable_meta_rules_file_hides_everything_but_from_admins(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        put_doc(store, "domain/org/a.json", {"title": "Roadmap"})
        put_doc(store, "hindex/meta_rules.json", ["not", "the", "rules", "object"])
        assert search(store, "roadmap", HUMAN)["results"] == []
        assert search(store, "roadmap", AGENT)["results"] == []
        assert paths(search(store, "roadmap", ADMIN)) == ["domain/org/a.json"]
