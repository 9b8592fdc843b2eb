"""Backups and restores, checked with real git: full and incremental bundles, chains and gaps,
config and secrets, damage, and an HCM moved to another folder (host) and served there."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from arka_git_hcm.admin.snapshots import create_snapshot
from arka_git_hcm.cli import main
from arka_git_hcm.config import Settings
from arka_git_hcm.custody.backup import create_backup
from arka_git_hcm.custody.manifest import manifest_path
from arka_git_hcm.custody.restore import restore_backup, verify_backup
from arka_git_hcm.errors import ConflictingUpdate, InvalidPayload, IoError, NotFound
from arka_git_hcm.services.store import HcmStore

from .conftest import assert_clean, create_mission, git, journal
from .test_server import Server, cli


def all_refs(hcm: Path) -> str:
    return git(hcm, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags")


def test_full_backup_restores_the_same_commits(store: HcmStore, tmp_path: Path) -> None:
    create_mission(store, "m1")
    journal(store, "one")
    create_snapshot(store, "before")
    journal(store, "two")
    out = tmp_path / "b" / "full.bundle"
    manifest = create_backup(store.settings, out)
    hcm = store.settings.hcm_path
    assert manifest["kind"] == "full" and manifest["head"] == store.tip()
    assert manifest["commits"] == int(git(hcm, "rev-list", "--count", "HEAD")) and manifest["snapshots"] == 1
    assert manifest["tenant_id"] == "acme" and manifest["prerequisites"] == []
    git(hcm, "bundle", "verify", str(out))  # plain git reads it
    git(tmp_path, "clone", "-q", str(out), "plain-clone")
    assert git(tmp_path / "plain-clone", "rev-parse", "HEAD").strip() == store.tip()
    report = restore_backup([out], tmp_path / "restored")
    assert report["ok"], report
    restored = tmp_path / "restored" / "hcm"
    assert all_refs(restored) == all_refs(hcm)
    assert git(restored, "rev-list", "--all") == git(hcm, "rev-list", "--all")
    assert_clean(restored)
    assert (tmp_path / "restored" / "config" / "arka-os.config.json").is_file()
    assert (tmp_path / "restored" / "logs").is_dir()


def test_a_chain_restores_in_any_order_and_a_gap_is_refused(store: HcmStore, tmp_path: Path) -> None:
    create_mission(store, "m1")
    full = tmp_path / "full.bundle"
    create_backup(store.settings, full)
    journal(store, "a")
    incr1 = tmp_path / "incr1.bundle"
    m1 = create_backup(store.settings, incr1, since=str(full))
    create_snapshot(store, "mid")
    journal(store, "b")
    incr2 = tmp_path / "incr2.bundle"
    m2 = create_backup(store.settings, incr2, since=str(incr1))
    assert m1["kind"] == m2["kind"] == "incremental" and m2["prerequisites"] and m2["commits_in_bundle"] == 1
    with pytest.raises(NotFound, match="nothing new"):
        create_backup(store.settings, tmp_path / "empty.bundle", since=str(incr2))
    with pytest.raises(InvalidPayload, match="gap in the chain"):
        restore_backup([full, incr2], tmp_path / "gap")
    assert not (tmp_path / "gap" / "hcm").exists()
    report = restore_backup([incr2, full, incr1], tmp_path / "chain")
    assert report["ok"] and report["head"] == store.tip()
    assert all_refs(tmp_path / "chain" / "hcm") == all_refs(store.settings.hcm_path)
    assert verify_backup([full, incr1, incr2])["ok"]
    since_snapshot = create_backup(store.settings, tmp_path / "s.bundle", since="snapshot/mid")
    assert since_snapshot["since"] == "snapshot/mid" and since_snapshot["commits_in_bundle"] == 1
    create_snapshot(store, "late")  # a new tag alone: nothing new on the branch, and it says so
    with pytest.raises(NotFound, match="nothing new on main since"):
        create_backup(store.settings, tmp_path / "tag-only.bundle", since=str(incr2))
    assert not (tmp_path / "tag-only.bundle").exists()
    journal(store, "c")  # the next incremental carries the tag with the new commit
    incr3 = create_backup(store.settings, tmp_path / "incr3.bundle", since=str(incr2))
    assert "refs/tags/snapshot/late" in incr3["refs"], incr3["refs"]


def test_restore_refuses_a_non_empty_folder_unless_forced(store: HcmStore, tmp_path: Path) -> None:
    create_mission(store, "m1")
    out = tmp_path / "full.bundle"
    create_backup(store.settings, out)
    target = tmp_path / "busy"
    (target / "hcm").mkdir(parents=True)
    (target / "hcm" / "keep.txt").write_text("mine")
    with pytest.raises(ConflictingUpdate, match="not empty"):
        restore_backup([out], target)
    report = restore_backup([out], target, force=True)
    assert report["ok"] and len(report["moved_aside"]) == 1
    assert (Path(report["moved_aside"][0]) / "keep.txt").read_text() == "mine"


def test_config_and_secrets_travel_only_when_asked(
    settings: Settings, store: HcmStore, tmp_path: Path
) -> None:
    create_mission(store, "m1")
    secrets = settings.config_path / "arka-hcm.secrets.json"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"remotes": {"x": {"username": "u", "password": "p"}}}\n')
    os.close(fd)
    plain = tmp_path / "plain.bundle"
    create_backup(settings, plain, with_config=True)
    text = manifest_path(plain).read_text()
    assert "arka-os.config.json" in text and "secrets" not in json.loads(text)
    secret = tmp_path / "secret.bundle"
    create_backup(settings, secret, with_secrets=True)
    assert stat.S_IMODE(manifest_path(secret).stat().st_mode) == 0o600
    restore_backup([secret], tmp_path / "with")
    restored = tmp_path / "with" / "config" / "arka-hcm.secrets.json"
    assert restored.read_bytes() == secrets.read_bytes() and stat.S_IMODE(restored.stat().st_mode) == 0o600
    restore_backup([plain], tmp_path / "without")
    assert not (tmp_path / "without" / "config" / "arka-hcm.secrets.json").exists()


def test_a_damaged_bundle_is_caught_before_anything_is_restored(store: HcmStore, tmp_path: Path) -> None:
    create_mission(store, "m1")
    out = tmp_path / "full.bundle"
    create_backup(store.settings, out)
    data = bytearray(out.read_bytes())
    data[-30] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(IoError, match="damaged"):
        verify_backup([out])
    result = CliRunner().invoke(main, ["backup", "verify", str(out)])
    assert result.exit_code == 13 and "damaged" in result.output
    with pytest.raises(IoError):
        restore_backup([out], tmp_path / "r")


def test_backup_while_the_store_writes(store: HcmStore, tmp_path: Path) -> None:
    create_mission(store, "m1")
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            journal(store, "busy")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        outs = [tmp_path / f"b{n}.bundle" for n in range(3)]
        for out in outs:
            create_backup(store.settings, out)
    finally:
        stop.set()
        thread.join()
    for out in outs:
        assert verify_backup([out])["ok"]


def test_cli_backup_restore_and_verify(store: HcmStore, settings: Settings, tmp_path: Path) -> None:
    create_mission(store, "m1")
    store.close()
    out = tmp_path / "cli.bundle"
    runner = CliRunner()
    client = str(settings.hcm_path.parent)
    created = runner.invoke(main, ["--client", client, "backup", "create", str(out), "--config", "--json"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["config_included"] is True
    verified = runner.invoke(main, ["backup", "verify", str(out)])
    assert verified.exit_code == 0 and verified.output.startswith("OK"), verified.output
    restored = runner.invoke(main, ["restore", str(out), str(tmp_path / "new"), "--json"])
    assert restored.exit_code == 0, restored.output
    again = runner.invoke(main, ["restore", str(out), str(tmp_path / "new")])
    assert again.exit_code == 7 and "--force" in again.output


@pytest.mark.skipif(sys.platform != "linux", reason="moves a served HCM between folders")
def test_move_an_hcm_to_another_host_and_serve_it(tmp_path: Path) -> None:
    """The README's move, with two folders as two hosts: stop, backup, copy, restore, start."""
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    assert cli(host_a, "init", str(host_a / "acme"), "--tenant-id", "acme").returncode == 0
    client_a = host_a / "acme"
    envelope = {
        "op": "HCM_CREATE_MISSION",
        "request_id": "move-1",
        "caller": {"type": "human", "id": "alice", "roles": ["writer"]},
        "payload": {"mission_id": "crm", "meta": {"title": "CRM", "mission_type": "audit"}},
    }
    assert cli(client_a, "exec", stdin=json.dumps(envelope)).returncode == 0
    token = json.loads(
        cli(
            client_a, "token", "create", "--id", "ops", "--type", "human", "--roles", "writer,admin", "--json"
        ).stdout
    )["token"]
    assert cli(client_a, "backup", "create", str(host_a / "acme.bundle"), "--config").returncode == 0
    for name in ("acme.bundle", "acme.bundle.manifest.json"):  # "copy" to the other host
        (host_b / name).parent.mkdir(parents=True, exist_ok=True)
        (host_b / name).write_bytes((host_a / name).read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "arka_git_hcm", "restore", str(host_b / "acme.bundle"), str(host_b / "acme")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    a_ids = git(client_a / "hcm", "rev-list", "--all")
    assert git(host_b / "acme" / "hcm", "rev-list", "--all") == a_ids
    server = Server(host_b / "acme")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        context = httpx.get(f"{server.url}/v1/missions/crm/context", headers=headers, timeout=10)
        assert context.status_code == 200 and context.json()["data"]["meta"]["title"] == "CRM"
        replay = httpx.post(
            f"{server.url}/v1/hcm/execute",
            headers=headers,
            json=envelope | {"caller": {"type": "human", "id": "ops"}},
            timeout=10,
        )
        assert replay.status_code == 422  # the request ids moved with the history: no second commit
        write = dict(envelope, request_id="move-2", caller={"type": "human", "id": "ops"})
        write["payload"] = {"mission_id": "crm2", "meta": {"title": "Two", "mission_type": "audit"}}
        assert (
            httpx.post(f"{server.url}/v1/hcm/execute", headers=headers, json=write, timeout=10).status_code
            == 200
        )
        ready = httpx.get(f"{server.url}/ready", timeout=10).json()
        assert ready["status"] == "ready" and "details" in ready
    finally:
        server.stop()
    assert_clean(host_b / "acme" / "hcm")
