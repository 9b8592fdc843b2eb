"""HCM_SEARCH end to end through the store: ranking, scopes, language, entries, and an index that
follows the branch (writes of this process and of others), rebuilds itself and survives a crash."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.search.child import ChildUpdater
from arka_git_hcm.search.schema import IndexFiles

from .conftest import AGENT, HUMAN, REPO_ROOT, ok, quiet_settings
from .search_support import ADMIN, create_mission, journal, paths, put_doc, search, search_error, searching
from .test_search_query import HOSTILE


def test_title_weighs_more_than_text_and_every_answer_names_its_revision(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        put_doc(
            store,
            "stable/procedures/a.json",
            {"title": "Incident response", "body": "Call the on-call team."},
        )
        put_doc(
            store,
            "stable/procedures/b.json",
            {"title": "Release", "body": "Check the incident list, then ship."},
        )
        put_doc(store, "stable/procedures/c.json", {"title": "Holidays", "body": "Nothing to see."})
        data = search(store, "incident")
        assert paths(data) == ["stable/procedures/a.json", "stable/procedures/b.json"]
        assert data["results"][0]["score"] > data["results"][1]["score"] > 0
        assert data["revision"] == store.tip() == data["results"][0]["revision"]
        assert data["results"][0]["snippet"] == "**Incident** response"
        assert data["results"][1]["snippet"] == "Check the **incident** list, then ship."


def test_scopes_mission_layers_and_path_prefix(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        for mission in ("m1", "m2"):
            create_mission(store, mission, title=f"Audit {mission}")
            journal(store, f"livraison prévue pour {mission}", mission)
        put_doc(store, "domain/business/livraison.json", {"title": "Livraison", "text": "Process"})
        put_doc(store, "stable/glossary/livraison.json", {"term": "livraison", "definition": "Delivery"})
        everywhere = search(store, "livraison")
        assert len(everywhere["results"]) == 4
        m1 = search(store, "livraison", scope={"mission_id": "m1"})
        assert [(h["path"], h["mission_id"]) for h in m1["results"]] == [
            ("state/missions/m1/journal.jsonl", "m1")
        ]
        assert search(store, "livraison", scope={"mission_id": "nope"})["results"] == []
        domain = search(store, "livraison", scope={"layers": ["domain", "stable"]})
        assert sorted(h["layer"] for h in domain["results"]) == ["domain", "stable"]
        prefixed = search(store, "livraison", scope={"path_prefix": "stable/glossary/"})
        assert paths(prefixed) == ["stable/glossary/livraison.json"]


def test_the_default_scope_is_the_hindex_scopes(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        put_doc(store, "domain/org/a.json", {"title": "Onboarding", "text": "x"})
        put_doc(store, "stable/procedures/b.json", {"title": "Onboarding", "text": "y"})
        assert len(search(store, "onboarding")["results"]) == 2
        # the default classification's classes, with v1-like narrower scopes (a class without
        # a scopes entry would use its classification targets: stable/ for core_reference)
        scopes = {
            "scopes": {
                "domain_knowledge": {"include": ["domain/**"], "exclude": []},
                "core_reference": {"include": ["stable/glossary/**"], "exclude": []},
                "mission_history": {"include": ["state/missions/**"], "exclude": []},
            }
        }
        put_doc(store, "hindex/scopes.json", scopes)
        assert paths(search(store, "onboarding")) == ["domain/org/a.json"]
        assert len(search(store, "onboarding", scope={"layers": ["stable"]})["results"]) == 1
        # hindex keywords route: a query naming a class's keyword ranks its documents higher
        classification = {
            "classifications": [{"class": "core_reference", "keywords": ["procédure"], "targets": ["stable"]}]
        }
        put_doc(store, "hindex/classification.json", classification)
        put_doc(store, "hindex/scopes.json", {"scopes": {"core_reference": {"include": ["stable/**"]}}})
        routed = search(store, "onboarding procédure")
        assert routed["routed_classes"] == ["core_reference"] and routed["matched"] == "any"


def test_accents_case_plurals_prefixes_and_phrases(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        put_doc(
            store,
            "stable/examples/d.json",
            {"title": "Note", "text": "Décisions validées pour les journaux du projet"},
        )
        put_doc(
            store,
            "stable/examples/e.json",
            {"title": "Other", "text": "The decisions of the validation board"},
        )
        french = "stable/examples/d.json"
        for query in (
            "decision",
            "DÉCISION",
            "décisions",
            "validée",
            "valide",
            "journal",
            "journaux",
            "décis*",
            "valid*",
            '"décisions validées"',
            '"decisions validees"',
            "JOURNAUX projet",
        ):
            assert french in paths(search(store, query)), query
        assert french not in paths(search(store, '"validées décisions"'))  # a phrase keeps its order
        assert paths(search(store, "validat*")) == ["stable/examples/e.json"]  # validation, not validées
        assert paths(search(store, "board"))[0] == "stable/examples/e.json"


def test_text_that_looks_like_query_syntax_is_searched_as_text(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        put_doc(
            store,
            "stable/examples/ops.json",
            {"title": "Operators", "text": "AND OR NOT NEAR title secret budget"},
        )
        for query in HOSTILE:
            response = store.execute(
                {
                    "op": "HCM_SEARCH",
                    "request_id": f"q{abs(hash(query))}",
                    "caller": HUMAN,
                    "payload": {"query": query, "consistent": True},
                }
            )
            assert response["status"] == "ok", (query, response)
        assert paths(search(store, "AND NEAR")) == ["stable/examples/ops.json"]
        assert paths(search(store, "title:secret")) == ["stable/examples/ops.json"]
        assert search_error(store, {"query": ""})["code"] == "INVALID_PAYLOAD"
        assert search_error(store, {"query": "x", "at": "HEAD"})["code"] == "INVALID_PAYLOAD"


def test_journal_lines_and_records_are_hits_of_their_own(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        create_mission(store, "m1")
        journal(store, "Kick-off with the sponsor")
        journal(store, "Risque identifié sur le budget data")
        journal(store, "Workshop planned")
        ok(
            store,
            "HCM_RECORD_DECISION",
            {
                "mission_id": "m1",
                "decision": {
                    "title": "Budget freeze",
                    "description": "No new spend",
                },
            },
        )
        data = search(store, "budget", scope={"mission_id": "m1"})
        by_kind = {hit["kind"]: hit for hit in data["results"]}
        entry = by_kind["entry"]
        assert entry["path"] == "state/missions/m1/journal.jsonl"
        assert entry["entry"].pop("timestamp").startswith("2026-11-26T09:00:")
        assert entry["entry"] == {"line": 2, "author": "agent/arka-pmo-01", "entry_type": "note"}
        assert entry["snippet"] == "Risque identifié sur le **budget** data"
        record = by_kind["record"]
        assert record["path"] == "state/missions/m1/decisions.json" and record["title"] == "Budget freeze"
        assert record["entry"]["record"] == 0 and record["entry"]["id"].startswith("dec-")


def test_all_words_first_then_any_and_more(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        for n in range(5):
            put_doc(store, f"domain/projects/p{n}.json", {"title": f"Project {n}", "text": "migration"})
        both = search(store, "migration project", limit=2)
        assert both["matched"] == "all" and len(both["results"]) == 2 and both["more"] is True
        either = search(store, "migration zzyzx")
        assert either["matched"] == "any" and len(either["results"]) == 5 and either["more"] is False
        assert search(store, "zzyzx")["results"] == []


def test_the_follower_catches_up_with_the_stores_writes(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, service):
        create_mission(store, "m1")
        assert search(store, "kickoff", consistent=False)["results"] == []
        for n in range(5):
            journal(store, f"kickoff step {n}")
        assert service.follower.wait_idle(30)  # woken by the landed batches, nothing left to do
        data = search(store, "kickoff", consistent=False)
        assert data["revision"] == store.tip() and len(data["results"]) == 5
        status = service.status()
        assert status["up_to_date"] and status["files"] >= 5
        report = service.follower.last_report
        assert report is not None and report.mode in ("incremental", "current")


def test_an_appended_journal_indexes_only_its_new_lines(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, service):
        create_mission(store, "m1")
        journal(store, "first line")
        search(store, "first")

        def rows() -> list[tuple[int, int]]:
            conn = sqlite3.connect(_generation(service))
            found = conn.execute(
                "SELECT id, line FROM doc WHERE path = 'state/missions/m1/journal.jsonl' ORDER BY line"
            ).fetchall()
            conn.close()
            return found

        before = rows()
        journal(store, "second line")
        journal(store, "third line")
        search(store, "third")
        after = rows()
        assert [line for _, line in after] == [1, 2, 3]
        assert after[0] == before[0]  # the first line's document was left alone
        lines = [h["entry"]["line"] for h in search(store, "line", limit=10)["results"]]
        assert sorted(lines) == [1, 2, 3]
        # a rewrite (a rotation; a hand edit adopted) replaces the file's documents
        ok(store, "HCM_ROTATE_JOURNAL", {"mission_id": "m1", "before": "2026-11-27"})
        found = search(store, "line", limit=10)["results"]
        assert {h["path"] for h in found} == {"state/missions/m1/journal/archives/journal.2026-11-26.jsonl"}
        assert rows() == []


def test_consistent_waits_for_the_tip_and_says_busy_when_it_cannot(tmp_path: Path) -> None:
    with searching(tmp_path / "c", wait_s=0.3) as (store, service):
        create_mission(store, "m1")
        search(store, "anything")
        with service.files.update_lock() as held:  # another updater that never finishes
            assert held
            journal(store, "blocked entry")
            error = search_error(store, {"query": "blocked", "consistent": True})
            assert error["code"] == "BUSY" and error["details"]["retry_after"] == 1
            stale = search(store, "blocked", consistent=False)
            assert stale["results"] == [] and stale["revision"] != store.tip()
        assert paths(search(store, "blocked")) == ["state/missions/m1/journal.jsonl"]


def test_writes_of_another_process_are_followed(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, _):
        create_mission(store, "m1")
        search(store, "anything")
        writer = REPO_ROOT / "tests" / "writer_process.py"
        proc = subprocess.run(
            [sys.executable, str(writer), str(tmp_path / "c"), "foreign", "3"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
        )
        assert proc.stdout.count("ACK") == 3, proc.stderr
        data = search(store, "foreign")  # consistent: the tip moved under this store's feet
        assert len(data["results"]) == 3 and data["revision"] == store.tip()


def test_the_periodic_round_notices_other_processes(tmp_path: Path) -> None:
    with searching(tmp_path / "c", interval_s=0.05) as (store, service):
        create_mission(store, "m1")
        search(store, "anything")
        writer = REPO_ROOT / "tests" / "writer_process.py"
        subprocess.run(
            [sys.executable, str(writer), str(tmp_path / "c"), "other", "2"],
            capture_output=True,
            timeout=120,
            cwd=REPO_ROOT,
            check=True,
        )
        tip = store.tip()
        for _ in range(600):  # condition wait: the follower's rounds notify; bounded
            if service.status().get("revision") == tip:
                break
            service.follower.wait_progress(0.1)
        assert service.status()["revision"] == tip


def _generation(service: Any) -> Path:
    current = IndexFiles(service.repo.git_dir).current()
    assert current is not None
    return current


def test_a_deleted_index_is_rebuilt(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, service):
        put_doc(store, "domain/org/a.json", {"title": "Kanban board"})
        search(store, "kanban")
        assert service.follower.wait_idle(30)
        shutil.rmtree(service.files.folder)  # by hand, while the service holds it open
        assert paths(search(store, "kanban", consistent=False)) == ["domain/org/a.json"]
        assert _generation(service).exists()
        # the build's large FTS5 buffer is not left to the updates that follow it
        conn = sqlite3.connect(_generation(service))
        config = dict(conn.execute("SELECT k, v FROM fts_config").fetchall())
        conn.close()
        assert config.get("hashsize") == 1024 * 1024


def test_a_corrupt_index_is_rebuilt(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, service):
        put_doc(store, "domain/org/a.json", {"title": "Kanban board"})
        search(store, "kanban")
        old = _generation(service)
        service.reader.close()  # let go of the file, as a restarted process would
        service.updater.close()
        with open(old, "r+b") as fh:
            fh.seek(0)
            fh.write(b"this is not a database" * 200)
        service.reader = type(service.reader)(service.files)
        assert paths(search(store, "kanban", consistent=False)) == ["domain/org/a.json"]
        assert service.follower.wait_idle(30)  # the old generation goes once the new one is current
        assert _generation(service) != old and not old.exists()


def test_an_index_of_another_schema_or_without_its_commit_is_rebuilt(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, service):
        put_doc(store, "domain/org/a.json", {"title": "Kanban board"})
        search(store, "kanban")
        for key, value in (("schema_version", "0"), ("tree", "0" * 40)):
            assert service.follower.wait_idle(30)  # no round may rewrite the meta under us
            before = _generation(service)
            conn = sqlite3.connect(before)
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
            conn.commit()
            conn.close()
            put_doc(store, "domain/org/b.json", {"title": "Kanban column"})
            assert sorted(paths(search(store, "kanban"))) == ["domain/org/a.json", "domain/org/b.json"]
            assert _generation(service) != before, key
            store.execute(
                {
                    "op": "HCM_PUT_DOCUMENT",
                    "request_id": f"del-{key}",
                    "caller": ADMIN,
                    "payload": {"path": "domain/org/b.json", "content": {"title": "gone"}},
                }
            )


def test_changed_sensitivity_rules_rebuild_the_index(tmp_path: Path) -> None:
    with searching(tmp_path / "c") as (store, service):
        put_doc(store, "domain/org/a.json", {"title": "Merger plan"})
        assert paths(search(store, "merger", AGENT)) == ["domain/org/a.json"]
        before = _generation(service)
        rules = {
            "rules": {
                "sensitivity_levels": {"public": [], "internal": ["human_user"], "restricted": []},
                "default_visibility": "internal",
                "path_sensitivity": {"domain/org/**": "restricted"},
            }
        }
        put_doc(store, "hindex/meta_rules.json", rules)
        assert search(store, "merger", AGENT)["results"] == []
        assert paths(search(store, "merger", ADMIN)) == ["domain/org/a.json"]
        assert _generation(service) != before


_CRASHING_UPDATE = """
import os, signal, sys
from pathlib import Path
from arka_git_hcm.search import SearchService
from tests.conftest import open_store, quiet_settings
store = open_store(quiet_settings(Path(sys.argv[1])))
def die() -> None:
    print("ROWS WRITTEN", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
service = SearchService(store.repo, store.tip, interval_s=None, before_stamp=die)
service.catch_up()
print("NOT REACHED", flush=True)
"""


def test_an_update_killed_between_its_rows_and_its_stamp_leaves_the_old_index(tmp_path: Path) -> None:
    client = tmp_path / "c"
    with searching(client) as (store, _):
        put_doc(store, "domain/org/a.json", {"title": "Original text"})
        old_tip = search(store, "original")["revision"]
    store = __import__("tests.conftest", fromlist=["open_store"]).open_store(quiet_settings(client))
    put_doc(store, "domain/org/b.json", {"title": "Fresh words"})
    put_doc(store, "domain/org/a.json", {"title": "Rewritten text"})
    store.close()
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHING_UPDATE, str(client)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == -9 and "ROWS WRITTEN" in proc.stdout and "NOT REACHED" not in proc.stdout
    with searching(client, start=False) as (store, service):
        assert service.status()["revision"] == old_tip
        stale = search(store, "original", consistent=False)
        assert paths(stale) == ["domain/org/a.json"] and stale["revision"] == old_tip
        assert search(store, "fresh", consistent=False)["results"] == []
        conn = sqlite3.connect(_generation(service))
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
        fresh = search(store, "fresh")  # consistent: caught up from the old stamp
        assert paths(fresh) == ["domain/org/b.json"] and search(store, "original")["results"] == []


def test_the_adopted_v1_fixture(tmp_path: Path, v1_template: Path) -> None:
    shutil.copytree(v1_template, tmp_path / "v1", symlinks=True)
    with searching(tmp_path / "v1") as (store, _):
        mission = "example-tenant-discovery-001"
        data = search(store, "entretiens", scope={"mission_id": mission})
        assert "state/missions/example-tenant-discovery-001/evidence/ev_0001.json" in paths(data)
        periметр = search(store, "périmètre", AGENT)  # v1's scopes: missions' meta and journal
        entry = periметр["results"][0]
        assert entry["kind"] == "entry" and entry["entry"]["author"] == "human/jeremy.grimonpont"
        glossary = search(store, "regroupement preuves")
        assert glossary["results"][0]["entry"] == {"record": 1, "id": "evidence_pack"}
        assert search(store, "data", AGENT, scope={"layers": ["hindex"]})["results"] == []
        assert os.path.isdir(tmp_path / "v1" / "hcm" / ".git" / "arka-hcm" / "search")
        assert (
            "arka-hcm/search"
            not in subprocess.run(
                ["git", "status", "--porcelain", "--ignored"],
                cwd=tmp_path / "v1" / "hcm",
                capture_output=True,
                text=True,
            ).stdout
        )


@pytest.mark.parametrize("caller", [AGENT, HUMAN])
def test_memory_query_packs_context_and_hits(tmp_path: Path, caller: dict[str, Any]) -> None:
    with searching(tmp_path / "c") as (store, _):
        create_mission(store, "m1", title="CRM migration")
        journal(store, "Data mapping of the CRM contacts done")
        put_doc(store, "domain/systems/crm.json", {"title": "CRM", "text": "Contacts live in the CRM"})
        pack = ok(
            store,
            "HCM_MEMORY_QUERY",
            {"mission_id": "m1", "query": "CRM contacts", "consistent": True},
            caller,
        )["data"]
        assert pack["context"]["meta"]["title"] == "CRM migration"
        assert {h["path"] for h in pack["hits"]} == {
            "state/missions/m1/journal.jsonl",
            "domain/systems/crm.json",
        }
        assert pack["last_journal_entries"][0]["message"].startswith("Data mapping")
        assert pack["revision"] == store.tip() == pack["index_revision"]


def test_updates_can_run_in_a_child_process(tmp_path: Path) -> None:
    with searching(tmp_path / "c", updater_process=True) as (store, service):
        create_mission(store, "m1")
        journal(store, "Entrée écrite par le serveur")
        assert paths(search(store, "entrée")) == ["state/missions/m1/journal.jsonl"]
        assert isinstance(service.updater, ChildUpdater)
        pid = service.updater.pid
        assert pid is not None and pid != os.getpid()
        os.kill(pid, signal.SIGKILL)  # a child that dies is replaced at the next round
        journal(store, "Seconde entrée")
        assert len(search(store, "entrée")["results"]) == 2
        assert service.updater.pid not in (None, pid)
        assert service.rebuild().mode == "rebuild"
        last = service.updater.pid
    assert last is not None
    with pytest.raises(ProcessLookupError):  # closing the store stopped it (and reaped it)
        os.kill(last, 0)
