"""Searches while several writers (threads and another process) write: answers never fail, never
show a restricted document, and the index ends exactly equal to the branch."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from .conftest import AGENT, REPO_ROOT, ok
from .search_support import ADMIN, create_mission, journal, put_doc, searching

FULL = os.environ.get("HCM_STRESS") == "full"
WRITER = REPO_ROOT / "tests" / "writer_process.py"


@pytest.mark.slow
def test_searches_during_writes_of_threads_and_another_process(tmp_path: Path) -> None:
    threads, per_thread, foreign = (4, 60, 80) if FULL else (2, 12, 10)
    client = tmp_path / "c"
    with searching(client, updater_process=True, interval_s=0.05, min_gap_s=0.02) as (store, service):
        create_mission(store, "m1")
        rules = {"rules": {"path_sensitivity": {"domain/constraints/**": "restricted"}}}
        put_doc(store, "hindex/meta_rules.json", rules)
        failures: list[Any] = []
        stop = threading.Event()

        def write(worker: int) -> None:
            for n in range(per_thread):
                journal(store, f"stress{worker}x{n} progress")
                if n % 5 == 0:
                    put_doc(store, f"domain/constraints/c{worker}-{n}.json", {"title": "progress secret"})

        def read(consistent: bool) -> None:
            while not stop.is_set():
                response = store.execute(
                    {"op": "HCM_SEARCH", "request_id": f"s{threading.get_ident()}", "caller": AGENT,
                     "payload": {"query": "progress", "limit": 100, "consistent": consistent}}
                )  # fmt: skip
                if response["status"] != "ok":
                    failures.append(response["error"])
                    continue
                leaked = [
                    h for h in response["data"]["results"] if h["path"].startswith("domain/constraints")
                ]
                if leaked:
                    failures.append(leaked)

        other = subprocess.Popen(
            [sys.executable, str(WRITER), str(client), "foreign", str(foreign)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )  # fmt: skip
        pool = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
        pool += [threading.Thread(target=read, args=(c,)) for c in (True, False)]
        for thread in pool:
            thread.start()
        for thread in pool[:threads]:
            thread.join()
        out, err = other.communicate(timeout=300)
        stop.set()
        for thread in pool[threads:]:
            thread.join()
        assert other.returncode == 0 and out.count("ACK") == foreign, err
        assert failures == []
        final = ok(store, "HCM_SEARCH", {"query": "stress0x0", "consistent": True}, ADMIN)["data"]
        assert final["revision"] == store.tip() and final["results"]
        lines = store.view(store.tip()).read_lines("state/missions/m1/journal.jsonl")
        assert len(lines) == threads * per_thread + foreign
        current = service.files.current()
        assert current is not None
        conn = sqlite3.connect(current)
        indexed = conn.execute(
            "SELECT count(*), count(DISTINCT line), min(line), max(line) FROM doc "
            "WHERE path = 'state/missions/m1/journal.jsonl'"
        ).fetchone()
        stats = dict(conn.execute("SELECT sens, docs FROM level_stats").fetchall())
        total = conn.execute("SELECT count(*) FROM doc").fetchone()[0]
        conn.close()
        assert indexed == (len(lines), len(lines), 1, len(lines))
        assert sum(stats.values()) == total and stats["restricted"] == threads * ((per_thread + 4) // 5) + 1
