"""The history index against the walk it replaces (the oracle) and against git itself: every
filter, every page, a lagging index, clocks that went backwards, a branch reset by hand."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.config import Settings
from arka_git_hcm.gitrepo import GitRepo
from arka_git_hcm.history import index as history_index
from arka_git_hcm.history import query as history_query
from arka_git_hcm.history.query import HistoryFilters, commit_at, find_request, history_page
from arka_git_hcm.services.store import HcmStore

from .conftest import ADMIN, AGENT, HUMAN, READER, envelope, git, new_hcm, ok

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)


class SettableClock:
    def __init__(self, start: datetime) -> None:
        self.value = start

    def now(self) -> datetime:
        return self.value


def _write(
    store: HcmStore, clock: SettableClock, op: str, payload: dict[str, Any], caller: dict[str, Any]
) -> str:
    clock.value += timedelta(minutes=7)
    return str(ok(store, op, payload, caller)["revision"])


def build_history(
    store: HcmStore, clock: SettableClock, writes: int = 60, seed: int = 3, create: bool = True
) -> None:
    rng = random.Random(seed)
    for mission in ("m1", "m2", "m3", "rare") if create else ():
        _write(
            store,
            clock,
            "HCM_CREATE_MISSION",
            {"mission_id": mission, "meta": {"title": "T", "mission_type": "audit"}},
            HUMAN,
        )
    for n in range(writes):
        mission = rng.choice(["m1", "m1", "m2", "m3"])
        roll = rng.random()
        if roll < 0.6:
            entry = {
                "author_type": "agent",
                "author_id": "arka-pmo-01",
                "entry_type": "note",
                "message": f"n{n}",
            }
            _write(store, clock, "HCM_APPEND_JOURNAL", {"mission_id": mission, "entry": entry}, AGENT)
        elif roll < 0.8:
            _write(
                store,
                clock,
                "HCM_UPDATE_STATUS",
                {"mission_id": mission, "status": {"summary": f"s{n}"}},
                HUMAN,
            )
        elif roll < 0.9:
            doc = {"path": "stable/glossary/terms.json", "content": {"n": n}}
            _write(store, clock, "HCM_PUT_DOCUMENT", doc, ADMIN)
        else:
            _write(store, clock, "HCM_ROLLBACK", {"target": "HEAD~2"}, ADMIN)  # touches many missions
        if n == writes // 2:
            entry = {
                "author_type": "agent",
                "author_id": "arka-pmo-01",
                "entry_type": "note",
                "message": "rare",
            }
            _write(store, clock, "HCM_APPEND_JOURNAL", {"mission_id": "rare", "entry": entry}, AGENT)
        if n % 17 == 5:
            clock.value -= timedelta(hours=3)  # a clock that went backwards


@pytest.fixture
def long_store(tmp_path: Path) -> Iterator[tuple[HcmStore, SettableClock]]:
    settings: Settings = new_hcm(tmp_path / "client", START)
    clock = SettableClock(START)
    counter = itertools.count(1)
    store = HcmStore.open(settings, clock=clock, id_token=lambda: f"{next(counter):04d}")
    build_history(store, clock)
    yield store, clock
    store.close()


def all_pages(store: HcmStore, flt: HistoryFilters, use_index: bool, limit: int = 7) -> list[str]:
    tip = store.tip()
    assert tip is not None
    found: list[str] = []
    cursor = None
    for _ in range(1000):
        page = history_page(store.repo, store.history if use_index else None, tip, flt, limit, cursor)
        found += page.commits
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("pages never ended")


FILTERS = [
    HistoryFilters(),
    HistoryFilters(mission="m1"),
    HistoryFilters(mission="rare"),
    HistoryFilters(mission="nope"),
    HistoryFilters(caller="agent/arka-pmo-01"),
    HistoryFilters(op="HCM_UPDATE_STATUS"),
    HistoryFilters(mission="m2", op="HCM_APPEND_JOURNAL"),
    HistoryFilters(since=(START + timedelta(hours=2)).timestamp()),
    HistoryFilters(until=(START + timedelta(hours=3)).timestamp()),
    HistoryFilters(
        mission="m1",
        since=(START + timedelta(hours=1)).timestamp(),
        until=(START + timedelta(hours=4)).timestamp(),
    ),
]


def test_every_filter_pages_through_the_same_commits_as_the_walk(
    long_store: tuple[HcmStore, SettableClock],
) -> None:
    store, _ = long_store
    assert store.history.catch_up(store.tip()) > 60
    for flt in FILTERS:
        walked = all_pages(store, flt, use_index=False)
        assert all_pages(store, flt, use_index=True) == walked, flt
        assert len(set(walked)) == len(walked)


def test_mission_history_matches_git_log(long_store: tuple[HcmStore, SettableClock]) -> None:
    store, _ = long_store
    store.history.catch_up(store.tip())
    hcm = store.settings.hcm_path
    for mission in ("m1", "rare"):
        expected = git(hcm, "log", "--first-parent", "--format=%H", "--", f"state/missions/{mission}").split()
        assert all_pages(store, HistoryFilters(mission=mission), use_index=True) == expected


def test_a_lagging_index_still_answers_in_full(long_store: tuple[HcmStore, SettableClock]) -> None:
    store, clock = long_store
    store.history.catch_up(store.tip())
    store.history_indexer.close(final_round=False)  # nothing follows the writes: the index lags
    build_history(store, clock, writes=15, seed=9, create=False)  # not indexed: walked
    assert store.history.stamp() is not None and store.history.stamp().id != store.tip()  # type: ignore[union-attr]
    for flt in FILTERS:
        assert all_pages(store, flt, use_index=True) == all_pages(store, flt, use_index=False), flt
    assert store.history.catch_up(store.tip()) > 15
    assert store.history.stamp().id == store.tip()  # type: ignore[union-attr]


def test_commit_at_any_moment_matches_the_walk_despite_clock_skew(
    long_store: tuple[HcmStore, SettableClock],
) -> None:
    store, _ = long_store
    tip = store.tip()
    store.history.catch_up(tip)
    for minutes in range(-30, 60 * 12, 11):
        moment = START + timedelta(minutes=minutes)
        assert commit_at(store.repo, store.history, tip, moment) == commit_at(
            store.repo, None, tip, moment
        ), moment
    assert store.commit_at(START + timedelta(days=30)) == tip


def test_request_lookup_matches_the_walk(long_store: tuple[HcmStore, SettableClock]) -> None:
    store, _ = long_store
    tip = store.tip()
    store.history.catch_up(tip)
    hcm = store.settings.hcm_path
    for line in git(
        hcm, "log", "--format=%H %(trailers:key=Hcm-Request-Id,valueonly,separator=)"
    ).splitlines()[:40]:
        commit, _, request_id = line.partition(" ")
        if request_id:
            assert find_request(store.repo, store.history, tip, request_id) == commit
            assert store.find_request(request_id) == commit
    assert store.find_request("never-sent") is None


def _reset_by_hand(store: HcmStore, back: int) -> str:
    """Index the history, close the store, then move its branch (and work tree) ``back`` commits
    with plain git, as a person would; the commit it now points at."""
    store.history.catch_up(store.tip(), wait=True)
    hcm = store.settings.hcm_path
    older = git(hcm, "rev-parse", f"HEAD~{back}").strip()
    store.close()
    git(hcm, "update-ref", "refs/heads/main", older)
    git(hcm, "reset", "-q", "--hard", older)
    return older


def test_a_branch_reset_by_hand_drops_the_rows_above_it(long_store: tuple[HcmStore, SettableClock]) -> None:
    store, clock = long_store
    hcm = store.settings.hcm_path
    _reset_by_hand(store, 10)
    counter = itertools.count(500)
    reopened = HcmStore.open(store.settings, clock=clock, id_token=lambda: f"{next(counter):04d}")
    try:
        reopened.accept_rewind(("human", "admin"))  # writes are refused until an admin keeps the reset
        entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "after"}
        _write(reopened, clock, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry}, AGENT)
        for flt in FILTERS[:3]:
            assert all_pages(reopened, flt, use_index=True) == all_pages(reopened, flt, use_index=False)
        reopened.history.catch_up(reopened.tip(), wait=True)
        stamp = reopened.history.stamp()
        assert stamp is not None and stamp.id == reopened.tip()
        count = int(git(hcm, "rev-list", "--first-parent", "--count", "HEAD"))
        assert stamp.seq == count - 1
        for flt in FILTERS:
            assert all_pages(reopened, flt, use_index=True) == all_pages(reopened, flt, use_index=False)
    finally:
        reopened.close()


def test_no_silent_cap_a_long_walk_pauses_with_a_cursor(
    long_store: tuple[HcmStore, SettableClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = long_store
    monkeypatch.setattr(history_query, "WALK_BUDGET", 10)
    flt = HistoryFilters(mission="rare")
    tip = store.tip()
    assert tip is not None
    first = history_page(store.repo, None, tip, flt, 20, None)
    assert first.partial and first.next_cursor is not None and first.commits == []
    assert (
        all_pages(store, flt, use_index=False)
        == git(
            store.settings.hcm_path, "log", "--first-parent", "--format=%H", "--", "state/missions/rare"
        ).split()
    )


def test_hcm_history_pages_with_a_cursor_and_filters(long_store: tuple[HcmStore, SettableClock]) -> None:
    store, _ = long_store
    store.history.catch_up(store.tip())
    seen: list[str] = []
    payload: dict[str, object] = {"limit": 5, "caller": "agent/arka-pmo-01"}
    while True:
        data = ok(store, "HCM_HISTORY", payload, READER)["data"]
        seen += [c["revision"] for c in data["commits"]]
        assert all(c["caller"] == "agent/arka-pmo-01" for c in data["commits"])
        if data["next_cursor"] is None:
            break
        payload["cursor"] = data["next_cursor"]
    assert seen == all_pages(store, HistoryFilters(caller="agent/arka-pmo-01"), use_index=False)
    bad = store.execute(
        {"op": "HCM_HISTORY", "request_id": "c", "caller": READER, "payload": {"cursor": "HEAD~1"}}
    )
    assert bad["error"]["code"] == "INVALID_PAYLOAD"


def test_the_indexer_follows_the_writes_off_the_write_path(tmp_path: Path) -> None:
    settings = new_hcm(tmp_path / "client", START)
    clock = SettableClock(START)
    with HcmStore.open(settings, clock=clock) as store:
        store.history_indexer.serve(interval_s=3600)
        assert store.history_indexer.wait_idle(60)
        assert store.history.stamp() is not None
        for n in range(3):
            _write(
                store,
                clock,
                "HCM_CREATE_MISSION",
                {"mission_id": f"w{n}", "meta": {"title": "T", "mission_type": "a"}},
                HUMAN,
            )
        deadline = time.monotonic() + 60
        while store.history.stamp().id != store.tip():  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the indexer did not catch up"
            store.history_indexer.wait_idle(1)
    conn = sqlite3.connect(settings.hcm_path / ".git" / "arka-hcm" / "history" / "index.sqlite")
    assert conn.execute("SELECT count(*) FROM commits").fetchone()[0] == 4
    conn.close()


def test_a_cli_store_extends_an_existing_index_but_never_builds_one(tmp_path: Path) -> None:
    settings = new_hcm(tmp_path / "client", START)
    clock = SettableClock(START)
    with HcmStore.open(settings, clock=clock) as store:
        _write(
            store,
            clock,
            "HCM_CREATE_MISSION",
            {"mission_id": "a", "meta": {"title": "T", "mission_type": "a"}},
            HUMAN,
        )
    assert not (settings.hcm_path / ".git" / "arka-hcm" / "history" / "index.sqlite").exists()
    with HcmStore.open(settings, clock=clock) as store:
        store.history.catch_up(store.tip())
        _write(
            store,
            clock,
            "HCM_CREATE_MISSION",
            {"mission_id": "b", "meta": {"title": "T", "mission_type": "a"}},
            HUMAN,
        )
        tip = store.tip()
    with HcmStore.open(settings, clock=clock) as store:
        assert store.history.stamp().id == tip  # type: ignore[union-attr]  # the last round at close


def test_a_deleted_index_is_noticed_by_open_readers(long_store: tuple[HcmStore, SettableClock]) -> None:
    store, _ = long_store
    store.history.catch_up(store.tip(), wait=True)
    assert store.history.stamp() is not None
    for leftover in store.history.folder.glob("index.sqlite*"):
        leftover.unlink()
    assert store.history.stamp() is None  # the walk answers until it is rebuilt
    assert all_pages(store, HistoryFilters(mission="m1"), use_index=True) == all_pages(
        store, HistoryFilters(mission="m1"), use_index=False
    )
    store.history.catch_up(store.tip(), wait=True)
    assert store.history.stamp().id == store.tip()  # type: ignore[union-attr]


def test_closing_during_a_build_leaves_a_whole_index_or_none(
    long_store: tuple[HcmStore, SettableClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    from arka_git_hcm.history import index as history_index

    store, _ = long_store
    monkeypatch.setattr(history_index, "_BATCH", 3)  # progress (and the stop check) every 3 rows
    store.history_indexer.serve(interval_s=3600)
    store.history_indexer.close(final_round=False)
    stamp = store.history.stamp()
    assert stamp is None or stamp.id == store.tip()
    assert store.history.catch_up(store.tip(), wait=True) in (
        0,
        int(git(store.settings.hcm_path, "rev-list", "--count", "HEAD")),
    )
    assert store.history.stamp().id == store.tip()  # type: ignore[union-attr]


def test_opening_reads_request_ids_from_the_index_not_the_whole_history(
    long_store: tuple[HcmStore, SettableClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1,000,000 commits every process open read every commit's trailers (51 s for one
    `arka-hcm log`). With a history index, the open reads only the commits above it, and a retry
    of a request the index holds is still answered with its first commit, never applied twice."""
    store, clock = long_store
    hcm = store.settings.hcm_path
    store.history.catch_up(store.tip(), wait=True)  # indexed up to here
    entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "x"}
    old = ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m2", "entry": entry}, AGENT, request_id="old-req")
    store.history.catch_up(store.tip(), wait=True)
    above = ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m3", "entry": entry}, AGENT, request_id="new-req")
    store.close()
    walked: list[str] = []
    real_walk = GitRepo.walk

    def counting_walk(self: GitRepo, start: str, stop: str | None = None) -> Iterator[Any]:
        for info in real_walk(self, start, stop):
            walked.append(info.id)
            yield info

    monkeypatch.setattr(GitRepo, "walk", counting_walk)
    counter = itertools.count(900)
    reopened = HcmStore.open(store.settings, clock=clock, id_token=lambda: f"{next(counter):04d}")
    try:
        commits = int(git(hcm, "rev-list", "--count", "HEAD"))
        assert commits > 60 and len(walked) <= 3  # the commit above the index, then its anchor
        before = commits
        for request_id, mission, first in (("old-req", "m2", old), ("new-req", "m3", above)):
            again = reopened.execute(
                envelope("HCM_APPEND_JOURNAL", {"mission_id": mission, "entry": entry}, AGENT, request_id)
            )
            assert again["status"] == "ok" and again["replayed"] is True, again
            assert again["revision"] == first["revision"]
        assert int(git(hcm, "rev-list", "--count", "HEAD")) == before  # nothing applied twice
        fresh = ok(reopened, "HCM_APPEND_JOURNAL", {"mission_id": "m2", "entry": entry}, AGENT, "fresh")
        assert fresh.get("replayed") is not True
    finally:
        reopened.close()


def test_a_rewind_is_still_seen_when_the_index_knows_both_ends(
    long_store: tuple[HcmStore, SettableClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, clock = long_store
    _reset_by_hand(store, 5)  # both ends are in the index

    def no_git_walk(self: GitRepo, ancestor: str, descendant: str) -> bool:
        raise AssertionError("the depths in the index answer this")

    monkeypatch.setattr(GitRepo, "is_ancestor", no_git_walk)
    reopened = HcmStore.open(store.settings, clock=clock)
    try:
        assert reopened.health()["ready"] is False
        refused = reopened.execute(
            envelope("HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"summary": "s"}}, HUMAN)
        )
        assert refused["error"]["code"] == "READ_ONLY" and "moved back by hand" in refused["error"]["message"]
    finally:
        reopened.close()


def test_a_large_write_ahead_log_is_folded_back_after_indexing(
    long_store: tuple[HcmStore, SettableClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first build left its whole index in the log (265 MB at 1,000,000 commits): every new
    reader process then read it through before answering."""
    store, _ = long_store
    wal = Path(f"{store.history.path}-wal")
    store.history.rebuild(store.tip())
    assert store.history.stamp() is not None  # a reader stays open: the writer's close keeps the log
    monkeypatch.setattr(history_index, "_WAL_SETTLE_BYTES", 1 << 40)
    store.history.rebuild(store.tip())
    assert wal.stat().st_size > 0  # left to SQLite: under the threshold
    monkeypatch.setattr(history_index, "_WAL_SETTLE_BYTES", 0)
    store.history.rebuild(store.tip())
    assert wal.stat().st_size == 0
    stamp = store.history.stamp()
    assert stamp is not None and stamp.id == store.tip()  # the rows are in the database


# The index as schema 1 wrote it (before each row held what HCM_HISTORY shows of its commit).
SCHEMA_1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE names(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE commits(
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL, time INTEGER NOT NULL, sufmin INTEGER NOT NULL,
  op INTEGER, caller INTEGER);
CREATE INDEX commits_id ON commits(id);
CREATE TABLE touches(mission INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(mission, seq)) WITHOUT ROWID;
CREATE TABLE requests(request_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
"""


def test_an_index_of_the_previous_schema_is_ignored_then_rebuilt(
    long_store: tuple[HcmStore, SettableClock],
) -> None:
    """After an upgrade, readers take the old file for no index (they walk); a one-shot CLI
    store leaves it alone; the next build (the service's start, `history reindex`) replaces it
    instead of failing on its old columns."""
    store, _ = long_store
    store.history.folder.mkdir(parents=True, exist_ok=True)
    tip = store.tip()
    assert tip is not None
    conn = sqlite3.connect(store.history.path)
    conn.executescript(SCHEMA_1)
    conn.execute("INSERT INTO commits VALUES (0, ?, 0, 0, NULL, NULL)", (bytes.fromhex(tip),))
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)", [("schema", "1"), ("stamp_seq", "0"), ("stamp_id", tip)]
    )
    conn.commit()
    conn.close()
    assert store.history.stamp() is None and store.history.seq_of(tip) is None
    assert store.history.catch_up(tip, build=False) == 0
    assert store.history.stamp() is None
    added = store.history.catch_up(tip, build=True, wait=True)
    stamp = store.history.stamp()
    assert stamp is not None and stamp.id == tip and added == stamp.seq + 1
    check = sqlite3.connect(store.history.path)
    tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    check.close()
    assert "requests" not in tables
    for flt in (HistoryFilters(mission="m1"), HistoryFilters(caller="agent/arka-pmo-01")):
        assert all_pages(store, flt, use_index=True) == all_pages(store, flt, use_index=False)
    line = git(
        store.settings.hcm_path,
        "log",
        "-1",
        "--skip=3",
        "--format=%H %(trailers:key=Hcm-Request-Id,valueonly)",
    )
    commit, _, request_id = line.strip().partition(" ")
    assert request_id and store.find_request(request_id) == commit
