"""Pushing to the client's Git, for real: a bare repository over file://, `git daemon` with
receive-pack, and `git http-backend` behind basic auth; pulled back and compared by commit id.
Credentials never in the URL, the listing or a leftover file; a diverged remote is an error
that says what to do; the mirror follows writes and never fails one."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from arka_git_hcm.admin.snapshots import create_snapshot
from arka_git_hcm.cli import main
from arka_git_hcm.config import MirrorConfig, Settings, read_file_config
from arka_git_hcm.custody.mirror import MirrorWorker, mirror_report
from arka_git_hcm.custody.remotes import (
    add_remote,
    list_remotes,
    push_to_remote,
    remote_status,
    remove_remote,
)
from arka_git_hcm.errors import ConfigError, ConflictingUpdate, InvalidPayload
from arka_git_hcm.services.store import HcmStore

from .conftest import create_mission, git, journal
from .git_servers import bare_repo, git_daemon, http_backend


def reload(settings: Settings) -> Settings:
    return settings.with_file(read_file_config(settings.config_file))


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main", "refs/tags")


def test_push_to_a_bare_repository_over_file_url(store: HcmStore, settings: Settings, tmp_path: Path) -> None:
    create_mission(store, "m1")
    create_snapshot(store, "first")
    remote = bare_repo(tmp_path / "client-git.git")
    add_remote(settings, "backup-git", f"file://{remote}")
    result = push_to_remote(reload(settings), "backup-git")
    assert "refs/heads/main" in result["updated"] and "refs/tags/snapshot/first" in result["updated"]
    assert refs(remote) == refs(settings.hcm_path)
    journal(store, "more")
    again = push_to_remote(reload(settings))  # the only remote
    assert again["updated"] == ["refs/heads/main"] and "refs/tags/snapshot/first" in again["up_to_date"]
    git(tmp_path, "clone", "-q", str(remote), "pulled")
    assert git(tmp_path / "pulled", "rev-list", "--all") == git(settings.hcm_path, "rev-list", "main")
    status = remote_status(reload(settings))
    assert status[0]["behind"] == 0 and not status[0]["diverged"]


def test_a_diverged_remote_is_refused_with_what_to_do(
    store: HcmStore, settings: Settings, tmp_path: Path
) -> None:
    create_mission(store, "m1")
    remote = bare_repo(tmp_path / "r.git")
    add_remote(settings, "r", str(remote))
    push_to_remote(reload(settings), "r")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), "other")
    git(other, "-c", "user.name=x", "-c", "user.email=x@y", "commit", "-q", "--allow-empty", "-m", "theirs")
    git(other, "push", "-q", "origin", "main")
    journal(store, "ours")
    with pytest.raises(ConflictingUpdate, match="never force-pushes"):
        push_to_remote(reload(settings), "r")
    assert git(remote, "log", "-1", "--format=%s", "main").strip() == "theirs"  # nothing forced
    assert remote_status(reload(settings), "r")[0]["diverged"] is True


def test_push_over_git_daemon(store: HcmStore, settings: Settings, tmp_path: Path) -> None:
    create_mission(store, "m1")
    base = tmp_path / "srv"
    bare_repo(base / "hcm.git")
    git(base / "hcm.git", "config", "daemon.receivepack", "true")
    with git_daemon(base) as url:
        add_remote(settings, "daemon", f"{url}/hcm.git")
        push_to_remote(reload(settings), "daemon")
        git(tmp_path, "clone", "-q", f"{url}/hcm.git", "pulled")
    assert git(tmp_path / "pulled", "rev-parse", "HEAD").strip() == store.tip()
    assert refs(base / "hcm.git") == refs(settings.hcm_path)


def test_push_over_smart_http_with_basic_auth(
    store: HcmStore, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_mission(store, "m1")
    create_snapshot(store, "s1")
    root = tmp_path / "srv"
    bare_repo(root / "hcm.git")
    git(root / "hcm.git", "config", "http.receivepack", "true")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    with http_backend(root, "hcm-bot", "s3cret-token") as (base, seen):
        url = f"{base}/hcm.git"
        with pytest.raises(InvalidPayload, match="holds credentials"):
            add_remote(settings, "gitlab", f"http://hcm-bot:s3cret-token@{url[7:]}")
        add_remote(settings, "gitlab", url, username="hcm-bot", password="s3cret-token")
        secrets = settings.config_path / "arka-hcm.secrets.json"
        assert oct(secrets.stat().st_mode & 0o777) == "0o600"
        result = push_to_remote(reload(settings), "gitlab")
        assert "refs/heads/main" in result["updated"]
        assert seen and all(header.startswith("Basic ") for header in seen)
        assert list(private_tmp.iterdir()) == []  # the 0600 credential config is gone
        listing = CliRunner().invoke(
            main, ["--client", str(settings.hcm_path.parent), "remote", "list", "--json"]
        )
        assert (
            listing.exit_code == 0
            and "s3cret" not in listing.output
            and '"credentials": true' in listing.output
        )
        assert remote_status(reload(settings), "gitlab")[0]["behind"] == 0
        with pytest.raises(Exception, match="gitlab"):  # wrong password: refused, named
            remove_remote(settings, "gitlab")
            add_remote(settings, "gitlab", url, username="hcm-bot", password="wrong")
            push_to_remote(reload(settings), "gitlab")
    assert refs(root / "hcm.git") == refs(settings.hcm_path)


def test_a_secrets_file_others_can_read_is_refused(settings: Settings, tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "r.git")
    add_remote(settings, "r", str(remote), username="u", password="p")
    secrets = settings.config_path / "arka-hcm.secrets.json"
    os.chmod(secrets, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        list_remotes(reload(settings))


def test_the_cli_adds_a_remote_with_a_password_from_stdin(settings: Settings, tmp_path: Path) -> None:
    client = str(settings.hcm_path.parent)
    runner = CliRunner()
    added = runner.invoke(
        main,
        [
            "--client",
            client,
            "remote",
            "add",
            "g",
            "https://git.example.invalid/hcm.git",
            "--username",
            "bot",
            "--password-stdin",
        ],
        input="tok3n\n",
    )
    assert added.exit_code == 0 and "tok3n" not in added.output
    assert "tok3n" not in (settings.config_file).read_text()
    refused = runner.invoke(
        main, ["--client", client, "remote", "add", "h", "https://bot:pw@git.example.invalid/x.git"]
    )
    assert refused.exit_code == 3 and "--password-stdin" in refused.output
    removed = runner.invoke(main, ["--client", client, "remote", "remove", "g"])
    assert (
        removed.exit_code == 0 and "tok3n" not in (settings.config_path / "arka-hcm.secrets.json").read_text()
    )


def _wait(predicate: object, what: str | Callable[[], str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what if isinstance(what, str) else what()
        time.sleep(0.05)


def _worker_state(worker: MirrorWorker, remote: Path, store: HcmStore, settings: Settings) -> str:
    """What a failure needs to be understood: the worker's thread and rounds, both tips, the state."""
    thread = worker._thread
    return (
        f"rounds={worker.rounds} pushes={worker.pushes} running={worker.running()} "
        f"thread_alive={thread is not None and thread.is_alive()} last_error={worker.last_error!r} "
        f"remote={git(remote, 'rev-parse', '-q', '--verify', 'main', check=False).strip()} "
        f"local={store.tip()} state={mirror_report(settings)}"
    )


def test_the_mirror_follows_writes_and_never_fails_one(
    store: HcmStore, settings: Settings, tmp_path: Path
) -> None:
    remote = bare_repo(tmp_path / "mirror.git")
    add_remote(settings, "m", str(remote))
    mirrored = reload(settings)
    mirrored = mirrored.with_file(
        mirrored.file.model_copy(update={"mirror": MirrorConfig(enabled=True, remote="m", max_backoff_s=1)})
    )
    worker = MirrorWorker(mirrored, store.tip)
    store.add_landing_listener(worker.on_landing)
    try:
        create_mission(store, "m1")
        for n in range(5):
            journal(store, f"n{n}")
        _wait(
            lambda: git(remote, "rev-parse", "-q", "--verify", "main", check=False).strip() == store.tip(),
            lambda: f"the mirror did not catch up: {_worker_state(worker, remote, store, mirrored)}",
        )
        assert worker.pushes <= 6  # batched: wakes during a push fold into one more
        _wait(lambda: mirror_report(mirrored)["lag_commits"] == 0, "lag not 0")
        os.rename(remote, tmp_path / "gone.git")  # the remote goes down: writes go on
        journal(store, "while down")
        _wait(lambda: mirror_report(mirrored).get("last_error") is not None, "the failure was not reported")
        report = mirror_report(mirrored)
        assert report["lag_commits"] == 1 and report["failures"] >= 1
        os.rename(tmp_path / "gone.git", remote)  # back: the retry catches up
        _wait(
            lambda: git(remote, "rev-parse", "-q", "--verify", "main", check=False).strip() == store.tip(),
            "the mirror did not recover",
        )
    finally:
        worker.close(final_round=False)
