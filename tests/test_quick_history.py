"""`arka-hcm log` answered from the history index alone (services/quick_history.py) against the
store's own answer (the oracle): the same data for every filter and page, the same output from
the command line, and the store's path, with its usual answers and errors, whenever the quick
one cannot be sure."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from arka_git_hcm.cli import log_cmds, main
from arka_git_hcm.config import load_settings
from arka_git_hcm.environment import Roots, resolve_roots
from arka_git_hcm.errors import ConfigError
from arka_git_hcm.services.quick_history import CHECKED_CONFIG, quick_history, remember_config
from arka_git_hcm.services.store import HcmStore

from .conftest import git, new_hcm
from .test_custody_history import START, SettableClock, _write, build_history

CALLER = {"type": "human", "id": "tester", "roles": ["reader", "writer", "admin"]}
HAND_AUTHOR = ("Zoé Main", "zoe@example.org")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client folder whose history mixes store writes (missions, callers, ops, a clock that
    went backwards) and commits made by hand with plain git (no trailers, non-ASCII), indexed to
    its tip. Tests work on copies."""
    client = tmp_path_factory.mktemp("quick") / "client"
    settings = new_hcm(client, START)
    clock = SettableClock(START)
    with HcmStore.open(settings, clock=clock) as store:
        build_history(store, clock, writes=40)
    hcm = settings.hcm_path
    (hcm / "stable" / "notes.json").write_text('{"by": "hand"}\n')
    git(hcm, "add", "stable/notes.json")
    name, email = HAND_AUTHOR
    for message in ("Fix: the glossary — à la main\n\nbody line\n", "no colon in this subject"):
        git(
            hcm,
            "-c",
            f"user.name={name}",
            "-c",
            f"user.email={email}",
            "commit",
            "--no-verify",
            "--allow-empty",
            "-qm",
            message,
        )
    with HcmStore.open(settings, clock=clock) as store:
        clock.value += timedelta(hours=1)
        _write(
            store,
            clock,
            "HCM_APPEND_JOURNAL",
            {"mission_id": "m1", "entry": {"entry_type": "note", "message": "after the hand commits"}},
            {"type": "agent", "id": "arka-pmo-01", "roles": ["writer"]},
        )
        store.reindex_history()
        assert store.history.stamp().id == store.tip()  # type: ignore[union-attr]
    return client


@pytest.fixture
def client(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "client"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def roots(client: Path) -> Roots:
    return resolve_roots(client=client, environ={})


def store_answer(client: Path, payload: dict[str, Any]) -> dict[str, Any]:
    with HcmStore.open(load_settings(client=client, environ={}), scan_hand_edits=False) as store:
        response = store.execute(
            {"op": "HCM_HISTORY", "request_id": "oracle", "caller": CALLER, "payload": payload}
        )
    assert response["status"] == "ok", response
    return response


def same_answer(quick: dict[str, Any] | None, full: dict[str, Any]) -> None:
    assert quick is not None, "the quick path did not answer"
    assert quick["request_id"].startswith("cli-") and len(quick["request_id"]) == 16
    assert {**quick, "request_id": None} == {**full, "request_id": None}


FILTERS: list[dict[str, Any]] = [
    {},
    {"mission_id": "m1"},
    {"mission_id": "rare"},
    {"mission_id": "nope"},
    {"caller": "agent/arka-pmo-01"},
    {"caller": "human/alice", "mission_id": "m2"},
    {"caller": f"{HAND_AUTHOR[0]} <{HAND_AUTHOR[1]}>"},
    {"op": "HCM_UPDATE_STATUS"},
    {"op": "HCM_APPEND_JOURNAL", "mission_id": "m2"},
    {"op": "HCM_NOT_AN_OP"},
    {"since": (START + timedelta(hours=2)).isoformat()},
    {"until": (START + timedelta(hours=3)).isoformat()},
    {"since": "2026-01-05T10:00:00Z", "until": "2026-01-05T13:30:00+01:00", "mission_id": "m1"},
    {"until": "2000-01-01"},
]


@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_every_page_is_the_stores_answer(client: Path, limit: int) -> None:
    """Each filter set, page after page through the cursors: the same response (commits with
    every field, next cursor, revision) as HcmStore.execute."""
    for filters in FILTERS:
        payload: dict[str, Any] = {"limit": limit, **filters}
        for _page in range(100):
            full = store_answer(client, payload)
            same_answer(quick_history(roots(client), CALLER, payload), full)
            cursor = full["data"]["next_cursor"]
            if cursor is None:
                break
            payload = {**payload, "cursor": cursor}
        else:
            raise AssertionError("pages never ended")


def test_the_index_holds_what_the_commit_says_of_hand_made_commits(client: Path) -> None:
    data = store_answer(client, {"limit": 3})["data"]
    _ours, second, first = data["commits"]
    assert (second["summary"], second["op"], second["request_id"]) == ("no colon in this subject", None, None)
    assert first["summary"] == "the glossary — à la main" and first["caller"] == "Zoé Main <zoe@example.org>"
    same_answer(quick_history(roots(client), CALLER, {"limit": 3}), store_answer(client, {"limit": 3}))


class Paths:
    """Which way `log` answered, through the command line's one seam (log_cmds.quick_history)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.quick: list[bool] = []

    def use(self, way: str) -> None:
        if way == "quick":
            self.spy()
        else:
            self.store_only()

    def spy(self) -> None:
        def spying(*args: Any) -> dict[str, Any] | None:
            answer = quick_history(*args)
            self.quick.append(answer is not None)
            return answer

        self.monkeypatch.setattr(log_cmds, "quick_history", spying)

    def store_only(self) -> None:
        self.monkeypatch.setattr(log_cmds, "quick_history", lambda *args: None)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    return Paths(monkeypatch)


def log(client: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--client", str(client), "log", *args])


CLI_FILTERS = [
    [],
    ["--mission", "m1"],
    ["--mission", "rare", "-n", "1"],
    ["--caller", "agent/arka-pmo-01", "--op", "HCM_APPEND_JOURNAL"],
    ["--op", "HCM_UPDATE_STATUS", "-n", "3"],
    ["--since", "2026-01-05T10:00:00Z", "--until", "2026-01-05T14:00:00Z"],
    ["--until", "2000-01-01"],
]


@pytest.mark.parametrize("args", CLI_FILTERS)
def test_the_command_prints_what_the_store_path_prints(client: Path, paths: Paths, args: list[str]) -> None:
    """Human and --json output, first page and the next one, each through both paths."""
    outputs: dict[str, list[str]] = {}
    for way in ("quick", "store"):
        paths.use(way)
        first = log(client, *args, "--json")
        assert first.exit_code == 0, first.output
        pages = [first.output, log(client, *args).output]
        cursor = json.loads(first.output)["next_cursor"]
        if cursor:
            pages += [
                log(client, *args, "--cursor", cursor).output,
                log(client, *args, "--cursor", cursor, "--json").output,
            ]
        outputs[way] = pages
    assert paths.quick and all(paths.quick), paths.quick
    assert outputs["quick"] == outputs["store"]


def test_the_operation_is_logged_as_the_store_logs_it(client: Path, paths: Paths) -> None:
    records = []
    for way in ("quick", "store"):
        paths.use(way)
        assert log(client, "--mission", "m1").exit_code == 0
        lines = (client / "logs" / "operations.jsonl").read_text().splitlines()
        records.append(json.loads(lines[-1]))
    quick, store = records
    assert set(quick) == set(store)
    for varies in ("time", "duration_ms", "request_id"):
        del quick[varies], store[varies]
    assert quick == store and quick["op"] == "HCM_HISTORY" and quick["status"] == "ok"


# --- when the quick path cannot be sure, the store's path answers ------------------------------


def falls_back(client: Path, paths: Paths, *args: str) -> str:
    """`log` answers through the store's path, and prints what the store's path prints."""
    paths.spy()
    answered = log(client, *args, "--json")
    assert paths.quick == [False], paths.quick
    paths.store_only()
    expected = log(client, *args, "--json")
    assert answered.exit_code == expected.exit_code == 0, answered.output
    assert answered.output == expected.output
    return answered.output


def tip(client: Path) -> str:
    return git(client / "hcm", "rev-parse", "HEAD").strip()


def test_an_index_behind_the_tip(client: Path, paths: Paths) -> None:
    hcm = client / "hcm"
    git(
        hcm,
        "-c",
        "user.name=b",
        "-c",
        "user.email=b@c.d",
        "commit",
        "--no-verify",
        "--allow-empty",
        "-qm",
        "later",
    )
    data = json.loads(falls_back(client, paths, "-n", "2"))
    assert data["commits"][0]["revision"] == tip(client)  # walked from the tip to the index


def test_a_missing_index(client: Path, paths: Paths) -> None:
    for file in (client / "hcm" / ".git" / "arka-hcm" / "history").glob("index.sqlite*"):
        file.unlink()
    falls_back(client, paths, "--mission", "m1")


def test_a_corrupt_index(client: Path, paths: Paths) -> None:
    folder = client / "hcm" / ".git" / "arka-hcm" / "history"
    for file in folder.glob("index.sqlite-*"):
        file.unlink()
    (folder / "index.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    falls_back(client, paths, "--mission", "m1")


def test_an_index_of_the_previous_schema(client: Path, paths: Paths) -> None:
    index = client / "hcm" / ".git" / "arka-hcm" / "history" / "index.sqlite"
    conn = sqlite3.connect(index)
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    falls_back(client, paths, "--mission", "m1")
    assert CliRunner().invoke(main, ["--client", str(client), "history", "reindex"]).exit_code == 0
    paths.quick.clear()
    paths.spy()
    assert log(client, "--mission", "m1").exit_code == 0 and paths.quick == [True]


def test_a_write_left_to_repair(client: Path, paths: Paths) -> None:
    """An intent left by a killed writer: the store's open finishes it, then answers."""
    head = tip(client)
    intent = client / "hcm" / ".git" / "arka-hcm" / "intent.json"
    intent.write_text(
        json.dumps({"ref": "refs/heads/main", "old": head, "new": head, "paths": [], "tags": []})
    )
    paths.spy()
    assert log(client, "-n", "2").exit_code == 0 and paths.quick == [False]
    assert not intent.exists()  # recovered by the open
    paths.quick.clear()
    assert log(client, "-n", "2").exit_code == 0 and paths.quick == [True]


@pytest.mark.parametrize("folder", ["asides", "index-pending"])
def test_what_killed_processes_leave_behind(client: Path, paths: Paths, folder: str) -> None:
    left = client / "hcm" / ".git" / "arka-hcm" / folder
    left.mkdir(exist_ok=True)
    (left / "left-by-a-killed-process").write_bytes(b"")
    falls_back(client, paths, "-n", "3")


def test_a_packed_ref_is_read_and_a_symbolic_one_is_left_to_the_store(client: Path, paths: Paths) -> None:
    hcm = client / "hcm"
    git(hcm, "pack-refs", "--all")
    assert not (hcm / ".git" / "refs" / "heads" / "main").exists()
    paths.spy()
    packed = log(client, "--mission", "m1", "--json")
    assert packed.exit_code == 0 and paths.quick == [True]
    paths.store_only()
    assert log(client, "--mission", "m1", "--json").output == packed.output
    git(hcm, "update-ref", "refs/heads/elsewhere", tip(client))
    (hcm / ".git" / "refs" / "heads" / "main").write_text("ref: refs/heads/elsewhere\n")
    paths.quick.clear()
    falls_back(client, paths, "--mission", "m1")


def test_a_head_on_another_branch(client: Path, paths: Paths) -> None:
    git(client / "hcm", "branch", "other", "HEAD~3")
    git(client / "hcm", "symbolic-ref", "HEAD", "refs/heads/other")
    falls_back(client, paths, "-n", "2")


@pytest.mark.parametrize(
    "args",
    [
        ["--path", "state/missions/m1"],  # paths are not indexed
        ["--cursor", "0" * 40],  # no such commit: the store's message
        ["--mission", "Not-An-Id"],
        ["--caller", "x" * 301],
    ],
)
def test_payloads_the_store_decides(client: Path, paths: Paths, args: list[str]) -> None:
    paths.spy()
    answered = log(client, *args)
    assert paths.quick == [False]
    paths.store_only()
    expected = log(client, *args)
    assert (answered.exit_code, answered.output) == (expected.exit_code, expected.output)


def test_an_invalid_config_gives_the_usual_error(client: Path, paths: Paths) -> None:
    config = client / "config" / "arka-os.config.json"
    data = json.loads(config.read_text())
    data["store"]["batch_max"] = 0
    config.write_text(json.dumps(data))
    assert quick_history(roots(client), CALLER, {"limit": 20}) is None
    with pytest.raises(ConfigError) as usual:
        load_settings(client=client, environ={})
    paths.spy()
    result = log(client, "--mission", "m1")
    assert result.exit_code == 2 and result.output == f"error: {usual.value.message}\n"


def test_a_config_edited_is_checked_by_the_models_once_then_answered_quickly(
    client: Path, paths: Paths
) -> None:
    """The quick path never judges a config file itself: one the models have not seen since it
    changed goes the store's way, whose open records that the models accept it; the next run
    answers quickly. (A port written as a string: pydantic reads it, lax.)"""
    config = client / "config" / "arka-os.config.json"
    data = json.loads(config.read_text())
    data["server"]["port"] = "8080"
    data["store"]["branch"] = "main"
    config.write_text(json.dumps(data))
    checked = client / "hcm" / ".git" / "arka-hcm" / CHECKED_CONFIG
    before = checked.read_bytes()
    assert quick_history(roots(client), CALLER, {"limit": 20}) is None
    expected = falls_back(client, paths, "--mission", "m1")
    assert checked.read_bytes() != before
    paths.quick.clear()
    paths.spy()
    assert log(client, "--mission", "m1", "--json").output == expected
    assert paths.quick == [True]


def test_the_models_decide_and_no_record_of_a_refused_config_is_kept(client: Path) -> None:
    checked = client / "hcm" / ".git" / "arka-hcm" / CHECKED_CONFIG
    config = client / "config" / "arka-os.config.json"
    data = json.loads(config.read_text())
    settings = load_settings(client=client, environ={})
    before = checked.read_bytes()
    data["limits"]["max_json_depth"] = 3  # below the model's bound
    config.write_text(json.dumps(data))
    remember_config(settings)
    assert checked.read_bytes() == before
    assert quick_history(roots(client), CALLER, {"limit": 20}) is None
    checked.unlink()
    config.unlink()  # no file: every default, which the models accept
    remember_config(load_settings(client=client, environ={}))
    assert [e["store"] for e in json.loads(checked.read_text())["entries"]] == [{"branch": "main"}]
    assert quick_history(roots(client), CALLER, {"limit": 20}) is not None


def test_two_installations_of_the_program_keep_their_own_record(
    client: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's installation and an admin's command line (another copy of the program)
    open the same HCM in turn: each keeps its record, neither sends the other the slow way."""
    from arka_git_hcm.services import quick_history as quick

    settings = load_settings(client=client, environ={})
    real = quick._config_digest
    for other in ("other-install", "a-third"):
        monkeypatch.setattr(quick, "_config_digest", lambda path, tag=other: f"{real(path)} {tag}")
        assert quick_history(roots(client), CALLER, {"limit": 20}) is None
        remember_config(settings)
        assert quick_history(roots(client), CALLER, {"limit": 20}) is not None
    monkeypatch.setattr(quick, "_config_digest", real)
    assert quick_history(roots(client), CALLER, {"limit": 20}) is not None  # the first one's stays
    checked = client / "hcm" / ".git" / "arka-hcm" / CHECKED_CONFIG
    assert len(json.loads(checked.read_text())["entries"]) == 3


def test_a_bad_caller_or_environment_gives_the_usual_error(client: Path, paths: Paths) -> None:
    paths.spy()
    bad_as = CliRunner().invoke(main, ["--client", str(client), "--as", "robot/x", "log"])
    assert bad_as.exit_code == 2 and "is not TYPE/ID" in bad_as.output
    bad_env = CliRunner().invoke(main, ["--client", str(client), "log"], env={"ARKA_ENV": "prod"})
    assert bad_env.exit_code == 2 and "ARKA_ENV='prod' is invalid" in bad_env.output


def test_a_pending_hand_edit_is_not_in_the_history_on_either_path(client: Path, paths: Paths) -> None:
    """`log` shows the committed history, as a read over HTTP does: neither path adopts."""
    status = client / "hcm" / "state" / "missions" / "m1" / "status.json"
    status.write_text(status.read_text().replace("}", ', "edited": "by hand"}', 1))
    before = tip(client)
    paths.spy()
    quick = log(client, "-n", "3", "--json")
    paths.store_only()
    full = log(client, "-n", "3", "--json")
    assert paths.quick == [True] and quick.output == full.output
    assert tip(client) == before and "status.json" in git(client / "hcm", "status", "--porcelain")


PROBE = """
import contextlib, io, json, sys
from arka_git_hcm.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        assert not exc.code, exc.code
print(json.dumps([m for m in ("pydantic", "pygit2", "arka_git_hcm.services.store") if m in sys.modules]))
"""


def loaded_by(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return list(json.loads(proc.stdout))


def test_log_loads_neither_pydantic_nor_pygit2_when_it_answers_from_the_index(client: Path) -> None:
    assert loaded_by("--client", str(client), "log", "--mission", "m1", "-n", "5") == []
    # the probe can see them: the store's path loads all three
    assert loaded_by("--client", str(client), "log", "--path", "state") == [
        "pydantic",
        "pygit2",
        "arka_git_hcm.services.store",
    ]
