"""HCM_MEMORY_QUERY's context pack: what an agent gets, and never more than max_bytes of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm.errors import InvalidPayload
from arka_git_hcm.search.pack import build_pack, json_size

from .conftest import AGENT, envelope, ok
from .search_support import create_mission, journal, put_doc, searching

META = {"mission_id": "m1", "title": "CRM migration", "mission_type": "audit", "client_name": "ACME " * 40}
STATUS = {"phase": "design", "status": "in_progress", "health": "ok", "progress": 0.4, "summary": "é" * 900}


def _context(entries: int, decisions: int) -> dict[str, Any]:
    return {
        "meta": META,
        "status": STATUS,
        "last_journal_entries": [
            {"message": f"entry {n} — café", "timestamp": f"t{n}"} for n in range(entries)
        ],
        "decisions": [{"decision_id": f"dec-{n}", "title": "choix " * 10} for n in range(decisions)],
        "next_actions": [{"action_id": "a-1", "title": "call"}],
    }


def _hits(count: int) -> list[dict[str, Any]]:
    return [
        {"path": f"domain/d{n}.json", "score": 1.0 / (n + 1), "snippet": "**mot** " * 20}
        for n in range(count)
    ]


@settings(max_examples=200, deadline=None)
@given(
    max_bytes=st.integers(min_value=1024, max_value=40_000),
    entries=st.integers(0, 30),
    decisions=st.integers(0, 10),
    hits=st.integers(0, 20),
)
def test_the_pack_never_exceeds_its_budget(max_bytes: int, entries: int, decisions: int, hits: int) -> None:
    context = _context(entries, decisions)
    pack = build_pack(
        mission_id="m1",
        revision="a" * 40,
        index_revision="b" * 40,
        context=context,
        hits=_hits(hits),
        matched="all",
        max_bytes=max_bytes,
    )
    assert pack["bytes"] == json_size(pack) <= max_bytes
    omitted = pack["omitted"]
    assert len(pack["hits"]) + omitted["hits"] == hits
    assert len(pack["last_journal_entries"]) + omitted["last_journal_entries"] == entries
    assert len(pack["decisions"]) + omitted["decisions"] == decisions
    # best hits first, newest entries kept (in their order)
    assert pack["hits"] == _hits(hits)[: len(pack["hits"])]
    kept = pack["last_journal_entries"]
    assert kept == context["last_journal_entries"][entries - len(kept) :]


def test_everything_fits_in_a_large_budget() -> None:
    pack = build_pack(
        mission_id="m1",
        revision="a",
        index_revision="b",
        context=_context(3, 2),
        hits=_hits(4),
        matched="any",
        max_bytes=1_000_000,
    )
    assert pack["context"] == {"meta": META, "status": STATUS}
    assert pack["omitted"] == {
        "hits": 0,
        "last_journal_entries": 0,
        "decisions": 0,
        "next_actions": 0,
        "shortened": [],
    }


def test_a_small_budget_shortens_the_context_then_refuses() -> None:
    pack = build_pack(
        mission_id="m1",
        revision="a",
        index_revision="b",
        context=_context(5, 5),
        hits=_hits(5),
        matched="all",
        max_bytes=1024,
    )
    assert pack["bytes"] <= 1024 and "status.summary" in pack["omitted"]["shortened"]
    huge = {"meta": {"mission_id": "m1", "title": "t" * 5000}, "status": {}}
    kept = build_pack(
        mission_id="m1",
        revision="a",
        index_revision="b",
        context=huge,
        hits=[],
        matched="all",
        max_bytes=1024,
    )
    assert kept["context"]["meta"]["title"] == "t" * 200 + "…"
    try:  # the payload asks for 1,024 bytes at least; the pack's own names take ~400
        build_pack(
            mission_id="m1",
            revision="a",
            index_revision="b",
            context=huge,
            hits=[],
            matched="all",
            max_bytes=300,
        )
    except InvalidPayload as exc:
        assert exc.details["field"] == "max_bytes"
    else:
        raise AssertionError("expected INVALID_PAYLOAD")


def test_memory_query_through_the_store(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        create_mission(store, "m1", title="CRM migration")
        for n in range(40):
            journal(store, f"CRM contact batch {n} imported, dédoublonnage en cours")
        put_doc(store, "domain/systems/crm.json", {"title": "CRM", "text": "contacts " * 50})
        payload = {
            "mission_id": "m1",
            "query": "CRM contact",
            "limit": 20,
            "max_bytes": 4000,
            "consistent": True,
        }
        response = ok(store, "HCM_MEMORY_QUERY", payload, AGENT)
        pack = response["data"]
        assert json_size(pack) <= 4000 and pack["omitted"]["hits"] + len(pack["hits"]) == 20
        assert all(h["revision"] == response["revision"] for h in pack["hits"])
        missing = store.execute(envelope("HCM_MEMORY_QUERY", {**payload, "mission_id": "nope"}, AGENT))
        assert missing["error"]["code"] == "MISSION_NOT_FOUND"
        tiny = store.execute(envelope("HCM_MEMORY_QUERY", {**payload, "max_bytes": 10}, AGENT))
        assert tiny["error"]["code"] == "INVALID_PAYLOAD"
