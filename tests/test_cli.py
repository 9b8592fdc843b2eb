"""The `arka-hcm` command line, in-process with click's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from arka_git_hcm.cli import main

from .conftest import FIXTURE_HCM, FIXTURES, assert_clean, commit_count, git

JSON_SUITE = FIXTURES / "jsontestsuite" / "test_parsing"


def run(*args: str, stdin: str | bytes | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


@pytest.fixture
def client(tmp_path: Path) -> Path:
    path = tmp_path / "arka-client"
    result = run("init", str(path), "--tenant-id", "acme")
    assert result.exit_code == 0, result.output
    config = path / "config" / "arka-os.config.json"
    data = json.loads(config.read_text())
    data["store"]["durability"] = "fast"
    config.write_text(json.dumps(data))
    return path


def env(op: str, payload: dict[str, Any], rid: str, caller: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "op": op,
            "request_id": rid,
            "caller": caller or {"type": "human", "id": "alice", "roles": ["writer"]},
            "payload": payload,
        }
    )


CREATE = env(
    "HCM_CREATE_MISSION", {"mission_id": "m1", "meta": {"title": "Audit", "mission_type": "audit"}}, "c1"
)


def test_init_lays_out_the_client_folder(client: Path) -> None:
    assert (client / "hcm" / ".git").is_dir()
    assert (client / "hcm" / "meta.json").is_file()
    assert json.loads((client / "config" / "arka-os.config.json").read_text())["tenant_id"] == "acme"
    assert (client / "logs").is_dir()
    assert_clean(client / "hcm")


def test_init_refuses_an_existing_hcm(client: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(client), "--tenant-id", "acme"])
    assert result.exit_code == 7
    assert "already holds an HCM" in result.output
    assert commit_count(client / "hcm") == 1


def test_init_adopts_the_v1_fixture_with_warnings(tmp_path: Path) -> None:
    target = tmp_path / "v1"
    shutil.copytree(FIXTURE_HCM, target / "hcm")
    for path in [target / "hcm", *(target / "hcm").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    result = run("init", str(target), "--tenant-id", "example-tenant", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["adopted"] is True and report["files"] == 55
    assert any("ev_0001" in w["path"] for w in report["warnings"])
    verify = run("--client", str(target), "verify", "--json")
    assert verify.exit_code == 0
    assert json.loads(verify.output)["errors"] == 0


def test_exec_runs_a_stream_of_envelopes_and_exits_0(client: Path) -> None:
    journal = env(
        "HCM_APPEND_JOURNAL",
        {
            "mission_id": "m1",
            "entry": {"author_type": "human", "author_id": "alice", "entry_type": "note", "message": "hello"},
        },
        "j1",
    )
    result = run("--client", str(client), "exec", stdin=CREATE + "\n" + journal + "\n")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.splitlines()]
    assert [a["status"] for a in answers] == ["ok", "ok"]
    assert answers[1]["revision"] == git(client / "hcm", "rev-parse", "HEAD").strip()
    assert commit_count(client / "hcm") == 3


def test_exec_reads_a_pretty_printed_envelope_from_a_file(client: Path, tmp_path: Path) -> None:
    path = tmp_path / "envelope.json"
    path.write_text(json.dumps(json.loads(CREATE), indent=2))
    result = run("--client", str(client), "exec", "--file", str(path))
    assert result.exit_code == 0 and json.loads(result.output)["data"] == {"mission_id": "m1"}


@pytest.mark.parametrize(
    ("stdin", "code", "exit_code"),
    [
        (
            json.dumps({"op": "HCM_NOPE", "request_id": "x", "caller": {"type": "human", "id": "a"}}),
            "INVALID_PAYLOAD",
            3,
        ),
        (env("HCM_GET_MISSION_CONTEXT", {"mission_id": "ghost"}, "g1"), "MISSION_NOT_FOUND", 6),
        (
            env(
                "HCM_CREATE_MISSION",
                {"mission_id": "m2", "meta": {"title": "t", "mission_type": "x"}},
                "p1",
                {"type": "human", "id": "bob", "roles": ["reader"]},
            ),
            "ACCESS_DENIED",
            5,
        ),
        ("{not json", "INVALID_PAYLOAD", 3),
    ],
)
def test_exec_errors_have_documented_exit_codes(client: Path, stdin: str, code: str, exit_code: int) -> None:
    result = run("--client", str(client), "exec", stdin=stdin)
    assert result.exit_code == exit_code, result.output
    answer = json.loads(result.output.splitlines()[0])
    assert answer["status"] == "error" and answer["error"]["code"] == code
    assert commit_count(client / "hcm") == 1


def test_exec_exit_code_is_the_first_error_and_later_envelopes_still_run(client: Path) -> None:
    bad = env("HCM_GET_MISSION_CONTEXT", {"mission_id": "ghost"}, "g2")
    result = run("--client", str(client), "exec", stdin="\n".join([CREATE, bad, "{broken"]))
    assert result.exit_code == 6
    statuses = [json.loads(line)["status"] for line in result.output.splitlines()]
    assert statuses == ["ok", "error", "error"]


def test_exec_refuses_every_bad_json_of_the_public_corpus(client: Path) -> None:
    cases = sorted(JSON_SUITE.glob("n_*.json"))
    assert len(cases) > 150, f"JSONTestSuite corpus not found at {JSON_SUITE}"
    for case in cases:
        data = case.read_bytes()
        if b"\n" in data.strip():
            continue  # multi-line inputs are read as JSON lines; covered by the single-line rule below
        result = CliRunner().invoke(main, ["--client", str(client), "exec"], input=data)
        assert result.exit_code in (3, 8), (case.name, result.output)
        answer = json.loads(result.output.splitlines()[0])
        assert answer["error"]["code"] in ("INVALID_PAYLOAD", "PAYLOAD_TOO_LARGE"), case.name
    assert commit_count(client / "hcm") == 1


def test_exec_refuses_envelopes_over_the_size_limit(client: Path) -> None:
    big = env(
        "HCM_CREATE_MISSION",
        {"mission_id": "m1", "meta": {"title": "x" * (1024 * 1024), "mission_type": "a"}},
        "big",
    )
    result = run("--client", str(client), "exec", stdin=big)
    assert result.exit_code == 8
    assert json.loads(result.output)["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_missions_list_and_show_human_and_json(client: Path) -> None:
    run("--client", str(client), "exec", stdin=CREATE)
    human = run("--client", str(client), "missions", "list")
    assert "m1" in human.output and "planned" in human.output and "Audit" in human.output
    header, row = human.output.splitlines()[:2]
    assert header.index("STATUS") == row.index("planned")  # ids shorter than the header stay aligned
    data = json.loads(run("--client", str(client), "missions", "list", "--json").output)
    assert data["missions"][0]["mission_id"] == "m1"
    shown = run("--client", str(client), "missions", "show", "m1")
    assert "m1: Audit" in shown.output
    shown_json = json.loads(run("--client", str(client), "missions", "show", "m1", "--json").output)
    assert shown_json["meta"]["mission_type"] == "audit" and shown_json["next_actions"] == []
    missing = CliRunner().invoke(main, ["--client", str(client), "missions", "show", "ghost"])
    assert missing.exit_code == 6 and "does not exist" in missing.output


def test_verify_finds_damage_and_exits_1(client: Path) -> None:
    assert run("--client", str(client), "verify").exit_code == 0
    (client / "hcm" / "stable" / "glossary" / "README.json").write_text("{broken")
    result = run("--client", str(client), "verify", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert any(
        f["path"] == "stable/glossary/README.json" and f["severity"] == "error" for f in report["findings"]
    )


def test_verify_reports_a_corrupt_object(client: Path) -> None:
    objects = client / "hcm" / ".git" / "objects"
    pack = next(p for p in objects.glob("pack/*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"garbage!"
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    result = run("--client", str(client), "verify", "--json")
    assert result.exit_code == 1
    assert any(
        "fsck" in f["message"] or "object" in f["message"] for f in json.loads(result.output)["findings"]
    )


def test_adopt_commits_hand_edits(client: Path) -> None:
    (client / "hcm" / "stable" / "glossary" / "terms.json").write_text('{"terms": []}\n')
    result = run("--client", str(client), "adopt", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["paths"] == ["stable/glossary/terms.json"]
    assert git(client / "hcm", "log", "-1", "--format=%s").startswith("HCM_EXTERNAL_EDIT")
    assert_clean(client / "hcm")


def test_status_says_whether_an_hcm_is_there(client: Path, tmp_path: Path) -> None:
    ok = run("--client", str(client), "status", "--json")
    assert ok.exit_code == 0 and len(json.loads(ok.output)["revision"]) == 40
    missing = CliRunner().invoke(main, ["--client", str(tmp_path / "nothing"), "status"])
    assert missing.exit_code == 6 and "arka-hcm init" in missing.output


def test_log_filters_by_date_and_refuses_a_date_it_cannot_read(client: Path) -> None:
    assert run("--client", str(client), "exec", stdin=CREATE).exit_code == 0
    listed = run("--client", str(client), "log", "--since", "2000-01-01", "--json")
    assert listed.exit_code == 0
    assert [c["op"] for c in json.loads(listed.output)["commits"]] == ["HCM_CREATE_MISSION", "HCM_INIT"]
    future = run("--client", str(client), "log", "--since", "2999-01-01T00:00:00Z", "--json")
    assert json.loads(future.output)["commits"] == []
    said = run("--client", str(client), "log", "--since", "2999-01-01")
    assert said.exit_code == 0 and said.output.strip() == "no commits"
    bad = CliRunner().invoke(main, ["--client", str(client), "log", "--since", "yesterday"])
    assert bad.exit_code == 2  # a usage error, caught before the store opens
    assert "'yesterday' is not an ISO date/time" in bad.output and "2026-11-01" in bad.output


def test_without_a_folder_named_the_message_says_how_to_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ARKA_HCM_PATH", "ARKA_CONFIG_PATH", "ARKA_LOG_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for command in (["gc", "--dry-run"], ["verify"], ["status"]):  # defaults: the container's /hcm
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 6, command
        assert "--client ./arka-client" in result.output, command
        assert "init / " not in result.output  # never suggests creating an HCM at the root


def test_global_options_override_the_environment(client: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARKA_HCM_PATH", "/nonexistent/hcm")
    result = run(
        "--hcm",
        str(client / "hcm"),
        "--config",
        str(client / "config"),
        "--logs",
        str(client / "logs"),
        "status",
        "--json",
    )
    assert result.exit_code == 0
    monkeypatch.setenv("ARKA_HCM_PATH", str(client / "hcm"))
    monkeypatch.setenv("ARKA_CONFIG_PATH", str(client / "config"))
    assert run("status").exit_code == 0


def test_an_invalid_config_stops_with_the_field_named(client: Path) -> None:
    config = client / "config" / "arka-os.config.json"
    data = json.loads(config.read_text())
    data["store"]["durability"] = "sometimes"
    config.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["--client", str(client), "status"])
    assert result.exit_code == 2
    assert "store.durability" in result.output


def test_token_create_list_revoke(client: Path) -> None:
    created = json.loads(
        run(
            "--client",
            str(client),
            "token",
            "create",
            "--id",
            "pmo",
            "--type",
            "agent",
            "--roles",
            "writer",
            "--json",
        ).output
    )
    assert created["token"].startswith("arka_")
    assert created["token"] not in (client / "config" / "arka-os.config.json").read_text()
    listing = json.loads(run("--client", str(client), "token", "list", "--json").output)
    assert [t["id"] for t in listing["tokens"]] == ["pmo"]
    assert run("--client", str(client), "token", "revoke", "pmo").exit_code == 0
    assert json.loads(run("--client", str(client), "token", "list", "--json").output)["tokens"] == []


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # (the root group loads each command's module)
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


@pytest.mark.parametrize("name", [name for name, _ in _commands(main)])
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = run(*name.split(), "--help")
    assert result.exit_code == 0
    command = dict(_commands(main))[name]
    if not isinstance(command, click.Group):
        assert "Example" in result.output, f"`arka-hcm {name} --help` shows no example"


def test_every_command_is_in_the_readme() -> None:
    root = Path(__file__).resolve().parents[1]
    # docs/*.md: the reference pages the README links to for each capability
    readme = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    for name, command in _commands(main):
        if not isinstance(command, click.Group):
            assert f"arka-hcm {name}" in readme or f"{name}" in readme.split("## Command line")[1], name


def test_a_missing_hcm_names_the_init_command_that_creates_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--client", str(tmp_path / "empty"), "status"])
    assert result.exit_code == 6
    assert f"arka-hcm init {tmp_path / 'empty'} --tenant-id" in result.output
    flat = CliRunner().invoke(main, ["--hcm", str(tmp_path / "memory"), "status"])
    assert f"arka-hcm init {tmp_path / 'memory'} --layout flat" in flat.output


def test_another_git_repository_is_not_taken_for_an_hcm(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    (project / "README").write_text("hi\n")
    git(project, "add", "README")
    git(project, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "-qm", "x")
    for args in (["status"], ["missions", "list"]):
        result = CliRunner().invoke(main, ["--hcm", str(project), *args])
        assert result.exit_code == 6 and "not an HCM" in result.output
    assert not (project / ".git" / "arka-hcm").exists()
    assert not (project / ".git" / "hooks" / "pre-commit").exists()


LAZY_PROBE = """
import sys
import click
from arka_git_hcm.cli import COMMAND_MODULES, main
loaded = lambda: sorted(m for m in sys.modules if m.startswith("arka_git_hcm.cli."))
assert loaded() == [], loaded()  # nothing but the root group at start
heavy = [m for m in ("pydantic", "pygit2", "arka_git_hcm.config") if m in sys.modules]
assert heavy == [], heavy  # `log` can answer without them (tests/test_quick_history.py)
ctx = click.Context(main)
assert main.get_command(ctx, "log").name == "log"
assert "arka_git_hcm.cli.custody_cmds" not in sys.modules and "arka_git_hcm.anonymize" not in sys.modules
for name, module in COMMAND_MODULES.items():
    assert main.get_command(ctx, name).callback.__module__ == f"arka_git_hcm.cli.{module}", name
assert set(main.commands) == set(COMMAND_MODULES), set(main.commands) ^ set(COMMAND_MODULES)
print("ok")
"""


def test_commands_are_loaded_when_asked_for_and_the_map_names_every_one() -> None:
    """A command imports its own module only (a new command missing from COMMAND_MODULES, or
    listed under the wrong module, fails here)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", LAZY_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert "log" in run("--help").output and "anonymize" in run("--help").output
