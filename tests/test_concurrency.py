"""Many writers at once, threads and real processes: no acknowledged write is lost or doubled."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.admin.init import init_hcm
from arka_git_hcm.config import Settings
from arka_git_hcm.gitrepo import sync_filesystem
from arka_git_hcm.services.store import HcmStore
from arka_git_hcm.writepath import landing as landing_module

from .conftest import (
    AGENT,
    assert_clean,
    commit_count,
    create_mission,
    envelope,
    git,
    journal,
    make_settings,
    open_store,
)

WRITER = Path(__file__).with_name("writer_process.py")
FULL = os.environ.get("HCM_STRESS") == "full"


def journal_messages(hcm: Path) -> Counter[str]:
    lines = (hcm / "state/missions/m1/journal.jsonl").read_text().splitlines()
    return Counter(json.loads(line)["message"] for line in lines if line.strip())


def test_threads_in_one_process_never_lose_a_write(store: HcmStore) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    start = commit_count(hcm)
    threads, per_thread = 8, 15
    acked: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(per_thread):
            journal(store, f"t{t}-{i}", request_id=f"t{t}-{i}")
            with lock:
                acked.append(f"t{t}-{i}")

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()
    assert len(acked) == threads * per_thread
    messages = journal_messages(hcm)
    assert all(messages[m] == 1 for m in acked)
    assert commit_count(hcm) == start + len(acked)
    # every commit is one operation: each request id appears exactly once in history
    ids = [line for line in git(hcm, "log", "--format=%(trailers:key=Hcm-Request-Id,valueonly)").split()]
    assert Counter(ids)["t0-0"] == 1 and len(set(ids)) == len(ids)
    assert_clean(hcm)


@pytest.mark.slow
def test_processes_and_threads_together_never_lose_a_write(settings: Settings) -> None:
    """Several processes (as server workers and the CLI would be), each with threads."""
    store = HcmStore.open(settings)
    create_mission(store, "m1")
    store.close()
    hcm = settings.hcm_path
    start = commit_count(hcm)
    processes, per_process = (6, 60) if FULL else (4, 20)
    client = hcm.parent
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(client), f"p{p}", str(per_process), "3", "full"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for p in range(processes)
    ]
    acked: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        acked += [line.split()[1] for line in out.splitlines() if line.startswith("ACK ")]
        assert "ERR" not in out, out
    assert len(acked) == processes * per_process
    messages = journal_messages(hcm)
    assert all(messages[m] == 1 for m in acked)
    assert sum(messages.values()) == len(acked)
    assert commit_count(hcm) == start + len(acked)
    assert_clean(hcm)


def test_chained_batches_acknowledge_a_write_only_after_a_sync_that_follows_its_branch_move(
    client_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durability full with more writers than a batch holds: the leader chains batches, syncing
    once per batch. Every acknowledgement must still come after a sync that followed the
    branch move carrying that write (the event order is recorded as it happens)."""
    settings = make_settings(client_dir, durability="full", batch_max=2, index_refresh_delay_s=60.0)
    init_hcm(settings, "acme", "ACME")
    store = open_store(settings)
    create_mission(store, "m1")
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()
    real_sync = sync_filesystem
    real_finish = store.repo.finish_ref_update

    def sync(path: Path) -> None:
        real_sync(path)
        with lock:
            events.append(("sync", None))

    def cas(prepared: Any, old: str | None, **kw: Any) -> bool:
        moved = real_finish(prepared, old, **kw)
        if moved:
            landed = {info.id for info in store.repo.walk(prepared.new, old)}
            with lock:
                events.append(("cas", landed))
        return moved

    monkeypatch.setattr(landing_module, "sync_filesystem", sync)  # every sync of the write path
    monkeypatch.setattr(store.repo, "finish_ref_update", cas)  # the branch move of each batch

    def work(t: int) -> None:
        for i in range(10):
            revision = journal(store, f"c{t}-{i}")["revision"]
            with lock:
                events.append(("ack", revision))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()
    acks = [(i, rev) for i, (kind, rev) in enumerate(events) if kind == "ack"]
    assert len(acks) == 60
    for at, revision in acks:
        moved = next(i for i, (kind, landed) in enumerate(events) if kind == "cas" and revision in landed)
        assert moved < at
        assert any(kind == "sync" for kind, _ in events[moved:at]), f"ack of {revision} before any sync"
    moves = sum(1 for kind, _ in events if kind == "cas")
    syncs = sum(1 for kind, _ in events if kind == "sync")
    assert moves >= 30  # batches of at most 2
    assert syncs < 2 * moves  # chained: fewer than the two syncs an isolated batch costs
    messages = journal_messages(settings.hcm_path)
    assert all(messages[f"c{t}-{i}"] == 1 for t in range(6) for i in range(10))
    assert_clean(settings.hcm_path)


def test_asyncio_writers_are_batched_by_the_committer_thread(client_dir: Path) -> None:
    """The server's path: execute_async from one event loop, writes joined into batches by the
    engine's committer thread (no thread per request), each still its own commit."""
    settings = make_settings(client_dir, durability="full", index_refresh_delay_s=60.0)
    init_hcm(settings, "acme", "ACME")
    store = open_store(settings)
    create_mission(store, "m1")
    hcm = settings.hcm_path
    start = commit_count(hcm)
    reflog = hcm / ".git/logs/refs/heads/main"
    moves_before = len(reflog.read_text().splitlines())

    def entry(n: int) -> dict[str, Any]:
        payload = {
            "mission_id": "m1",
            "entry": {
                "author_type": "agent",
                "author_id": "arka-pmo-01",
                "entry_type": "note",
                "message": f"a{n}",
            },
        }
        return envelope("HCM_APPEND_JOURNAL", payload, AGENT, request_id=f"a{n}")

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(store.execute_async(entry(n), offload=asyncio.to_thread) for n in range(40))
        )

    responses = asyncio.run(main())
    # a replay and a read go through the same path
    replay, read = asyncio.run(
        _both(
            store.execute_async(entry(0), offload=asyncio.to_thread),
            store.execute_async(
                envelope("HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"}, AGENT), offload=asyncio.to_thread
            ),
        )
    )
    store.close()
    assert [r["status"] for r in responses] == ["ok"] * 40
    assert len({r["revision"] for r in responses}) == 40  # one commit each
    assert replay["replayed"] is True and replay["revision"] == responses[0]["revision"]
    assert read["status"] == "ok" and len(read["data"]["last_journal_entries"]) == 10
    assert commit_count(hcm) == start + 40
    moves = len(reflog.read_text().splitlines()) - moves_before
    assert moves < 40  # writes waiting together shared branch moves
    assert_clean(hcm)


async def _both(a: Any, b: Any) -> tuple[Any, Any]:
    return (await a, await b)


def test_quick_reads_are_answered_on_the_loop_and_the_others_in_a_thread(store: HcmStore) -> None:
    """Handing a one-mission read to a worker thread and back cost more than the read (8 clients:
    ~1,300 reads/s through threads, ~1,900 on the loop); reads that can grow with the HCM (every
    mission, history) still go to a thread, so they never hold the server's loop."""
    create_mission(store, "m1")
    offloaded: list[str] = []

    async def offload(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        response = await asyncio.to_thread(read)
        offloaded.append(response["op"])
        return response

    def run(op: str, payload: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = asyncio.run(
            store.execute_async(envelope(op, payload, AGENT), offload=offload)
        )
        assert response["status"] == "ok", response
        return response

    context = run("HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"})
    run("HCM_GET_DECISIONS", {"mission_id": "m1"})
    run("HCM_GET_TEAM", {"kind": "agent"})
    assert offloaded == []
    run("HCM_LIST_MISSIONS", {})
    run("HCM_HISTORY", {"limit": 5})
    assert offloaded == ["HCM_LIST_MISSIONS", "HCM_HISTORY"]
    same = store.execute(envelope("HCM_GET_MISSION_CONTEXT", {"mission_id": "m1"}, AGENT))
    assert context["data"] == same["data"] and context["revision"] == same["revision"]
