"""Journal rotation, day rollups and the day context (contract section 4), over several days of
history: each day is a store opened with a FixedClock starting that morning."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.services.store import HcmStore

from .conftest import AGENT, HUMAN, commit_count, new_hcm, ok, open_store
from .test_ops import (
    M1,
    actions,
    clean,
    context,
    decide,
    fail,
    git_commit_file,
    hcm_of,
    mission,
    note,
    read_json,
    write,
)

JOURNAL = f"{M1}/journal.jsonl"
ARCHIVES = f"{M1}/journal/archives"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HcmStore]:
    """A new HCM whose git index is refreshed by the test thread (see test_ops.py)."""
    s = open_store(new_hcm(tmp_path / "client"))
    yield s
    s.close()


def line(ts: str | None, message: str, **extra: Any) -> dict[str, Any]:
    entry = {"author_type": "agent", "author_id": "a1", "entry_type": "note", "message": message, **extra}
    if ts is not None:
        entry["timestamp"] = ts
    return entry


def journal_entries(store: HcmStore) -> list[dict[str, Any]]:
    raw = (hcm_of(store) / JOURNAL).read_bytes()
    return [json.loads(x) for x in raw.split(b"\n") if x.strip()]


def archived(store: HcmStore) -> dict[str, list[dict[str, Any]]]:
    folder = hcm_of(store) / ARCHIVES
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.iterdir()):
        raw = path.read_bytes()
        assert raw.endswith(b"\n") and b"\n\n" not in raw, path.name
        out[path.name] = [json.loads(x) for x in raw.split(b"\n") if x]
    return out


def every_entry(store: HcmStore) -> Counter[str]:
    """The multiset of entries across the journal and its archives."""
    found = journal_entries(store) + [e for day in archived(store).values() for e in day]
    return Counter(json.dumps(e, sort_keys=True) for e in found)


def rotate(store: HcmStore, before: str) -> list[str]:
    response = write(
        store, "HCM_ROTATE_JOURNAL", {"mission_id": "m1", "before": before}, target="m1", mission="m1"
    )
    return response["data"]["archived_days"]


# --- HCM_ROTATE_JOURNAL ----------------------------------------------------------------------------


def test_rotation_moves_each_entry_once_and_is_stable(store: HcmStore) -> None:
    mission(store)
    odd_order = (
        '{"message":"odd order","timestamp":"2026-11-24T07:00:00Z","entry_type":"event",'
        '"author_id":"h1","author_type":"human"}'
    )
    rows = [
        json.dumps(line("2026-11-23T10:00:00Z", "d23")),
        json.dumps(line("2026-11-24T09:00:00.500Z", "d24a")),
        odd_order,
        "",  # HCM v1 left blank lines
        json.dumps(line(None, "no timestamp")),
        json.dumps(line("2026-11-24T23:30:00-02:00", "d25 by UTC")),
        json.dumps(line("not a date", "bad timestamp")),
        json.dumps(line("2026-11-26T08:00:00Z", "d26")),
    ]
    git_commit_file(store, JOURNAL, ("\n".join(rows) + "\n").encode())
    before = every_entry(store)
    assert sum(before.values()) == 7

    assert rotate(store, "2026-11-25") == ["2026-11-23", "2026-11-24"]
    assert every_entry(store) == before
    arch = archived(store)
    assert [e["message"] for e in arch["journal.2026-11-23.jsonl"]] == ["d23"]
    assert [e["message"] for e in arch["journal.2026-11-24.jsonl"]] == ["d24a", "odd order"]
    assert [e["message"] for e in journal_entries(store)] == [
        "no timestamp",
        "d25 by UTC",
        "bad timestamp",
        "d26",
    ]
    assert b"\n\n" not in (hcm_of(store) / JOURNAL).read_bytes()

    # the same rotation again moves nothing and changes no file
    kept = (JOURNAL, f"{ARCHIVES}/journal.2026-11-24.jsonl")
    snapshot = {p: (hcm_of(store) / p).read_bytes() for p in kept}
    assert rotate(store, "2026-11-25") == []
    assert every_entry(store) == before
    assert {p: (hcm_of(store) / p).read_bytes() for p in snapshot} == snapshot

    # a later cut moves the rest; lines without a readable timestamp stay
    assert rotate(store, "2026-11-27") == ["2026-11-25", "2026-11-26"]
    assert every_entry(store) == before
    assert [e["message"] for e in journal_entries(store)] == ["no timestamp", "bad timestamp"]
    assert [e["message"] for e in archived(store)["journal.2026-11-25.jsonl"]] == ["d25 by UTC"]

    # a new entry of a day already archived is appended to that archive, nothing repeated
    fresh = note(store, "fresh")["data"]["entry"]  # the clock says 2026-11-26
    assert rotate(store, "2026-11-27") == ["2026-11-26"]
    assert archived(store)["journal.2026-11-26.jsonl"][-1] == fresh
    assert every_entry(store) == before + Counter([json.dumps(fresh, sort_keys=True)])
    assert [e["message"] for e in context(store)["last_journal_entries"]] == ["no timestamp", "bad timestamp"]
    # lines move byte for byte (this one's keys are in a v1 order of their own)
    assert odd_order.encode() in (hcm_of(store) / ARCHIVES / "journal.2026-11-24.jsonl").read_bytes().split(
        b"\n"
    )


def test_rotation_of_a_journal_written_by_the_ops(tmp_path: Path) -> None:
    settings = new_hcm(tmp_path / "c", datetime(2026, 3, 2, 8, tzinfo=UTC))
    ids = itertools.count(1)
    day1 = open_store(settings, datetime(2026, 3, 2, 9, tzinfo=UTC), ids)
    mission(day1)
    first = [note(day1, f"day1 #{i}")["data"]["entry"] for i in range(3)]
    day1.close()
    day2 = open_store(settings, datetime(2026, 3, 3, 9, tzinfo=UTC), ids)
    try:
        second = [note(day2, f"day2 #{i}")["data"]["entry"] for i in range(2)]
        assert rotate(day2, "2026-03-03") == ["2026-03-02"]
        assert archived(day2) == {"journal.2026-03-02.jsonl": first}
        assert journal_entries(day2) == second
        # once the journal is empty, a snapshot still knows when the last entry was written
        assert rotate(day2, "2026-03-04") == ["2026-03-03"]
        assert journal_entries(day2) == []
        snap = ok(day2, "HCM_SNAPSHOT_MISSION", {"mission_id": "m1"})["data"]
        assert read_json(day2, snap["path"])["last_journal_entry_at"] == second[-1]["timestamp"]
        fail(day2, "HCM_ROTATE_JOURNAL", {"mission_id": "m1", "before": "2026-02-30"}, "INVALID_PAYLOAD")
        fail(day2, "HCM_ROTATE_JOURNAL", {"mission_id": "m1", "before": "03/03/2026"}, "INVALID_PAYLOAD")
        # the rollup of an archived day still sees its journal
        ok(day2, "HCM_DAY_ROLLUP", {"mission_id": "m1", "date": "2026-03-02"})
        rollup = read_json(day2, f"{M1}/snapshots/2026-03-02.day.json")
        assert rollup["key_events"] == ["day1 #0", "day1 #1", "day1 #2"]
    finally:
        day2.close()


# --- HCM_DAY_ROLLUP --------------------------------------------------------------------------------

D1, D2, D3 = "2026-03-02", "2026-03-03", "2026-03-04"


def _morning(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=9, tzinfo=UTC)


def two_days(tmp_path: Path) -> tuple[HcmStore, dict[str, str]]:
    """Day 1: mission, actions a1 a2, decisions d0 (validated) d1 (draft), journal, phase p1.
    Day 2: a1 done, a3 created and cancelled, a4 created, d1 validated, d2 proposed, journal,
    phase p2. Returns the day-2 store (still open) and the ids."""
    settings = new_hcm(tmp_path / "c", datetime(2026, 3, 2, 8, tzinfo=UTC))
    ids = itertools.count(1)
    day1 = open_store(settings, _morning(D1), ids)
    mission(day1)
    made = actions(day1, [{"action_id": None, "title": "a1"}, {"action_id": None, "title": "a2"}])
    got = {"a1": made[0]["action_id"], "a2": made[1]["action_id"]}
    got["d0"] = decide(day1, {"title": "d0", "status": "validated"})
    got["d1"] = decide(day1, {"title": "d1"})
    note(day1, "kick-off held", entry_type="event")
    note(day1, "scope unclear", entry_type="warning")
    ok(day1, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"phase": "p1"}})
    day1.close()

    day2 = open_store(settings, _morning(D2), ids)
    actions(day2, [{"action_id": got["a1"], "status": "done"}])
    made = actions(day2, [{"action_id": None, "title": "a3"}, {"action_id": None, "title": "a4"}])
    got["a3"], got["a4"] = made[2]["action_id"], made[3]["action_id"]
    actions(day2, [{"action_id": got["a3"], "status": "cancelled"}])
    decide(day2, {"decision_id": got["d1"], "status": "validated"})
    got["d2"] = decide(day2, {"title": "d2", "status": "proposed"})
    note(day2, "design started", entry_type="event")
    ok(day2, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"phase": "p2", "progress": 0.3}})
    return day2, got


def rollup(store: HcmStore, day: str) -> dict[str, Any]:
    response = write(store, "HCM_DAY_ROLLUP", {"mission_id": "m1", "date": day}, target="m1", mission="m1")
    path = f"{M1}/snapshots/{day}.day.json"
    assert response["data"] == {"snapshot_id": f"day-{day}", "path": path}
    return read_json(store, path)


def test_day_rollup_takes_each_day_from_history(tmp_path: Path) -> None:
    store, ids = two_days(tmp_path)
    try:
        first = rollup(store, D1)  # written on day 2, about day 1: day 2 must not leak in
        assert (first["snapshot_id"], first["mission_id"], first["date"]) == (f"day-{D1}", "m1", D1)
        assert first["key_events"] == ["kick-off held", "scope unclear"]
        assert first["summary"] == "scope unclear"
        assert sorted(first["decisions_made"]) == sorted([ids["d0"], ids["d1"]])
        assert first["actions_created"] == [ids["a1"], ids["a2"]]
        assert first["actions_closed"] == []
        assert first["updated_status"]["phase"] == "p1"
        assert first["updated_status"]["progress"] == 0

        second = rollup(store, D2)
        assert second["key_events"] == ["design started"]
        assert ids["d2"] in second["decisions_made"] and ids["d0"] not in second["decisions_made"]
        assert ids["d1"] in second["decisions_made"]  # validated that day
        assert second["actions_created"] == [ids["a3"], ids["a4"]]
        assert sorted(second["actions_closed"]) == sorted([ids["a1"], ids["a3"]])
        assert (second["updated_status"]["phase"], second["updated_status"]["progress"]) == ("p2", 0.3)

        # a day without activity, and a day before the history began
        for quiet in (D3, "2026-03-01"):
            empty = rollup(store, quiet)
            assert (
                empty["key_events"],
                empty["decisions_made"],
                empty["actions_created"],
                empty["actions_closed"],
            ) == ([], [], [], [])

        # rolling a day up again gives the same file
        again = rollup(store, D1)
        assert again == first
        fail(store, "HCM_DAY_ROLLUP", {"mission_id": "m1", "date": "2026-02-30"}, "INVALID_PAYLOAD")
        fail(store, "HCM_DAY_ROLLUP", {"mission_id": "m1", "date": "yesterday"}, "INVALID_PAYLOAD")
        fail(store, "HCM_DAY_ROLLUP", {"mission_id": "m1", "date": D1}, "ACCESS_DENIED", AGENT)
    finally:
        store.close()


# --- HCM_PREPARE_DAY_CONTEXT -----------------------------------------------------------------------


def test_day_context_has_yesterday_open_actions_and_hints(tmp_path: Path) -> None:
    store, ids = two_days(tmp_path)
    try:
        made = actions(
            store,
            [
                {"action_id": None, "title": "late", "due_date": "2026-03-02T18:00:00Z"},
                {"action_id": None, "title": "due today", "due_date": D2},
                {"action_id": None, "title": "critical one", "priority": "critical"},
                {"action_id": None, "title": "someday", "priority": "low", "due_date": "2026-06-01"},
                {"action_id": None, "title": "blocked", "status": "blocked", "priority": "high"},
            ],
        )
        assert len(made) == 9

        def day_context(day: str, **extra: Any) -> dict[str, Any]:
            payload = {"mission_id": "m1", "date": day, **extra}
            response = ok(store, "HCM_PREPARE_DAY_CONTEXT", payload, AGENT)
            assert set(response["data"]) == {"day_context"}
            return response["data"]["day_context"]

        count = commit_count(hcm_of(store))
        ctx = day_context(D2)
        assert commit_count(hcm_of(store)) == count  # a read
        assert set(ctx) == {"previous_day_rollup", "open_actions", "today_date", "today_objectives_hint"}
        assert ctx["today_date"] == D2
        assert ctx["previous_day_rollup"] is None  # day 1 not rolled up yet
        open_titles = [a["title"] for a in ctx["open_actions"]]
        assert open_titles == ["a2", "a4", "late", "due today", "critical one", "someday", "blocked"]
        assert all(a["status"] in ("todo", "in_progress", "blocked") for a in ctx["open_actions"])
        current = {a["action_id"]: a for a in read_json(store, f"{M1}/next_actions.json")["next_actions"]}
        assert all(a == current[a["action_id"]] for a in ctx["open_actions"])
        assert ctx["today_objectives_hint"][0] == "critical one"
        assert set(ctx["today_objectives_hint"]) == {"critical one", "blocked", "overdue: late", "due today"}

        rolled = rollup(store, D1)
        ctx = day_context(D2)
        assert ctx["previous_day_rollup"] == rolled
        # the next day: "due today" is now overdue
        tomorrow = day_context(D3)
        assert tomorrow["previous_day_rollup"] is None
        assert "overdue: due today" in tomorrow["today_objectives_hint"]
        # as of an earlier revision: before the five actions above existed
        earlier = day_context(D2, at="HEAD~2")
        assert [a["title"] for a in earlier["open_actions"]] == ["a2", "a4"]
        fail(
            store,
            "HCM_PREPARE_DAY_CONTEXT",
            {"mission_id": "m1", "date": "2026-3-3"},
            "INVALID_PAYLOAD",
            HUMAN,
        )
        clean(store)
    finally:
        store.close()
