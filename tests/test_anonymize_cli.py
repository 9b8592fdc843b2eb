"""`arka-hcm anonymize` from the command line: options, exit codes, report, push, the key."""

from __future__ import annotations

import json
import stat
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from arka_git_hcm.admin.snapshots import create_snapshot
from arka_git_hcm.anonymize import AnonymizeOptions, anonymize_hcm
from arka_git_hcm.cli import main
from arka_git_hcm.config import ANONYMIZE_KEY_FILE, CONFIG_FILE_NAME, load_settings
from arka_git_hcm.custody.remotes import add_remote
from arka_git_hcm.errors import ConfigError

from .conftest import ADMIN, git, new_hcm, ok, open_store
from .git_servers import bare_repo, http_backend


@pytest.fixture
def client(tmp_path: Path) -> Path:
    settings = new_hcm(tmp_path / "client")
    with open_store(settings) as store:
        member = {
            "human_id": "amelie.poulain",
            "display_name": "Amélie Poulain",
            "email": "amelie@montmartre.fr",
        }
        ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "human", "member": member}, ADMIN)
        ok(
            store,
            "HCM_CREATE_MISSION",
            {"mission_id": "m1", "meta": {"title": "Amélie", "mission_type": "audit"}},
        )
        create_snapshot(store, "first", "by Amélie Poulain")
    return tmp_path / "client"


def run(client: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--client", str(client), "anonymize", *args])


def test_help_has_examples_and_every_option() -> None:
    result = CliRunner().invoke(main, ["anonymize", "--help"])
    assert result.exit_code == 0
    for option in (
        "--out",
        "--report",
        "--history",
        "--since",
        "--snapshot",
        "--since-bundle",
        "--push",
        "--dry-run",
        "--json",
        "Examples:",
        "git clone",
    ):
        assert option in result.output, option


def test_the_key_is_made_at_init_readable_only_by_its_owner(client: Path) -> None:
    key = client / "config" / ANONYMIZE_KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) == 64
    key.chmod(0o644)
    result = run(client, "--dry-run")
    assert result.exit_code == 2 and "chmod 600" in result.output


def test_dry_run_prints_the_report_and_writes_nothing(client: Path) -> None:
    before = sorted(str(p) for p in client.rglob("*"))
    result = run(client, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dry_run"] is True and report["bundle"] is None and report["commits_replayed"] == 3
    assert report["scan"]["status"].startswith("would pass")
    assert "amelie" not in result.output.lower() and "montmartre" not in result.output
    assert sorted(str(p) for p in client.rglob("*")) == before
    table = run(client, "--dry-run")
    assert table.exit_code == 0 and "category" in table.output and "key fingerprint" in table.output


def test_a_bundle_and_its_report(client: Path, tmp_path: Path) -> None:
    out, report_file = tmp_path / "support.bundle", tmp_path / "report.json"
    result = run(client, "--out", str(out), "--report", str(report_file), "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert json.loads(report_file.read_text()) == printed
    assert printed["bundle"]["tip"] and printed["scan"]["status"] == "clean" and printed["tags_replayed"] == 1
    assert printed["categories"]["person_name"]["replacements"] > 0
    assert "amelie" not in report_file.read_text().lower()
    again = run(client, "--out", str(out))
    assert again.exit_code == 7 and "--force" in again.output
    assert run(client, "--out", str(out), "--force").exit_code == 0


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--since", "2026-01-01", "--snapshot", "first", "--out", "x.bundle"], 2, "give one"),
        (["--dry-run", "--out", "x.bundle"], 2, "writes nothing"),
        ([], 2, "--out"),
        (["--history", "squashed", "--snapshot", "first", "--out", "x.bundle"], 2, "squashed"),
        (["--snapshot", "nope", "--out", "x.bundle"], 6, "no snapshot"),
        (["--since", "yesterday-ish", "--out", "x.bundle"], 3, "ISO"),
    ],
)
def test_usage_errors_have_their_exit_codes(
    client: Path, tmp_path: Path, args: list[str], code: int, words: str
) -> None:
    args = [str(tmp_path / a) if a.endswith(".bundle") else a for a in args]
    result = run(client, *args)
    assert result.exit_code == code, result.output
    assert words in result.output
    assert not (tmp_path / "x.bundle").exists()


def test_no_hcm_here(tmp_path: Path) -> None:
    result = run(tmp_path / "nowhere", "--dry-run")
    assert result.exit_code == 6


def test_push_sends_the_anonymized_branch_and_tags(client: Path, tmp_path: Path) -> None:
    remote = tmp_path / "internal.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    add_remote(load_settings(client=client), "internal", str(remote))
    settings = load_settings(client=client)
    report = anonymize_hcm(settings, AnonymizeOptions(out=tmp_path / "b.bundle", push_remote="internal"))
    assert report.bundle is not None and report.pushed == str(remote)
    assert git(remote, "rev-parse", "refs/heads/main").strip() == report.bundle["tip"]
    assert git(remote, "tag", "--list").split() == ["snapshot/first"]
    assert "amelie" not in git(remote, "log", "--all", "-p", "--format=%an %ae %B").lower()


def test_push_through_a_named_remote_over_file_url_then_fast_forward(client: Path, tmp_path: Path) -> None:
    """`--push NAME` uses the remote of `arka-hcm remote add`; a later run (same key) continues
    the history, so the push is a fast-forward; a remote holding other history is refused, never
    forced, and no bundle is left."""
    remote = bare_repo(tmp_path / "support.git")
    added = CliRunner().invoke(
        main, ["--client", str(client), "remote", "add", "support", f"file://{remote}"]
    )
    assert added.exit_code == 0, added.output
    first = run(client, "--out", str(tmp_path / "one.bundle"), "--push", "support", "--json")
    assert first.exit_code == 0, first.output
    tip = json.loads(first.output)["bundle"]["tip"]
    assert json.loads(first.output)["pushed"] == f"file://{remote}"
    assert git(remote, "rev-parse", "main").strip() == tip
    with open_store(load_settings(client=client)) as store:
        ok(
            store,
            "HCM_CREATE_MISSION",
            {"mission_id": "m2", "meta": {"title": "Amélie 2", "mission_type": "audit"}},
        )
    second = run(client, "--out", str(tmp_path / "two.bundle"), "--push", "support", "--json")
    assert second.exit_code == 0, second.output
    new_tip = json.loads(second.output)["bundle"]["tip"]
    assert new_tip != tip and git(remote, "rev-parse", "main").strip() == new_tip
    assert git(remote, "merge-base", "--is-ancestor", tip, new_tip) == ""
    log = git(remote, "log", "--all", "-p", "--format=%an %ae %B").lower()
    assert "amelie" not in log and "montmartre" not in log and "poulain" not in log

    raw = bare_repo(tmp_path / "raw.git")  # the raw HCM's own remote: other history
    git(client / "hcm", "push", "-q", str(raw), "main")
    CliRunner().invoke(main, ["--client", str(client), "remote", "add", "raw", str(raw)])
    refused = run(client, "--out", str(tmp_path / "three.bundle"), "--push", "raw")
    assert refused.exit_code == 7, refused.output
    assert "never force-pushes" in refused.output and "anonymized history" in refused.output
    assert git(raw, "rev-parse", "main").strip() == git(client / "hcm", "rev-parse", "main").strip()
    assert not (tmp_path / "three.bundle").exists()
    unknown = run(client, "--out", str(tmp_path / "four.bundle"), "--push", "nowhere")
    assert unknown.exit_code == 6 and "remote add" in unknown.output


def test_push_over_smart_http_with_the_stored_credentials(
    client: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "srv"
    bare_repo(root / "support.git")
    git(root / "support.git", "config", "http.receivepack", "true")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    with http_backend(root, "hcm-bot", "s3cret-token") as (base, seen):
        url = f"{base}/support.git"
        add_remote(load_settings(client=client), "support", url, username="hcm-bot", password="s3cret-token")
        result = run(client, "--out", str(tmp_path / "b.bundle"), "--push", "support", "--json")
        assert result.exit_code == 0, result.output
        assert seen and all(header.startswith("Basic ") for header in seen)
    assert "s3cret" not in result.output
    assert list(private_tmp.iterdir()) == []  # the 0600 credential config is gone
    report = json.loads(result.output)
    assert report["pushed"] == url
    assert git(root / "support.git", "rev-parse", "main").strip() == report["bundle"]["tip"]
    assert git(root / "support.git", "tag", "--list").split() == ["snapshot/first"]


def test_the_config_section_is_validated(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    for bad in (
        {"patterns": ["("]},
        {"patterns": ["a*"]},
        {"terms": ["ab"]},
        {"coarsen_timestamps": "maybe"},
    ):
        (config / CONFIG_FILE_NAME).write_text(json.dumps({"anonymize": bad}))
        with pytest.raises(ConfigError) as caught:
            load_settings(hcm=tmp_path / "h", config=config, logs=tmp_path / "l")
        assert "anonymize" in caught.value.message
    (config / CONFIG_FILE_NAME).write_text(json.dumps({"anonymize": {"terms": ["Projet Phénix"]}}))
    settings = load_settings(hcm=tmp_path / "h", config=config, logs=tmp_path / "l")
    assert (
        settings.file.anonymize.terms == ["Projet Phénix"] and not settings.file.anonymize.coarsen_timestamps
    )
