"""The service's custody workers: scheduled backups (full, incrementals, keep N, loud failures),
`/ready` details (last backup, mirror lag, history index) and the admin backup route, on a real
`arka-hcm serve`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from arka_git_hcm.config import BackupConfig, Settings
from arka_git_hcm.custody.restore import verify_backup
from arka_git_hcm.custody.schedule import BackupScheduler, backup_report, list_backups
from arka_git_hcm.services.store import HcmStore

from .conftest import create_mission, git, journal
from .git_servers import bare_repo
from .test_server import Server, cli


def with_backup(settings: Settings, folder: Path, **cfg: Any) -> Settings:
    backup = BackupConfig(enabled=True, folder=str(folder), **cfg)
    return settings.with_file(settings.file.model_copy(update={"backup": backup}))


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_scheduled_backups_chain_incrementals_and_keep_n(
    store: HcmStore, settings: Settings, tmp_path: Path
) -> None:
    create_mission(store, "m1")
    folder = tmp_path / "backups"
    scheduled = with_backup(settings, folder, interval_s=3600, keep=2, incrementals=1)
    ticks = iter(range(1_000_000, 2_000_000, 10))
    worker = BackupScheduler(scheduled, clock=lambda: float(next(ticks)))
    try:
        kinds = []
        for n in range(6):
            journal(store, f"n{n}")
            before = worker.backups
            worker.run_now()
            wait_for(lambda b=before: worker.backups > b, "no backup was taken")
            kinds.append(backup_report(scheduled)["last_file"].rsplit("-", 1)[1])
        assert kinds == ["full.bundle", "incr.bundle"] * 3
        left = list_backups(folder)
        assert [m["kind"] for _, m in left] == ["full", "incremental", "full", "incremental"]  # keep 2 fulls
        assert verify_backup([p for p, _ in left[2:]])["ok"]
        assert left[-1][1]["head"] == store.tip()
    finally:
        worker.close(final_round=False)


def test_a_failed_backup_is_loud(
    store: HcmStore, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create_mission(store, "m1")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    scheduled = with_backup(settings, blocker / "sub")
    worker = BackupScheduler(scheduled)
    caplog.set_level(logging.ERROR, logger="arka_git_hcm.backup")
    try:
        worker.run_now()
        wait_for(lambda: backup_report(scheduled)["status"] == "failed", "the failure was not recorded")
    finally:
        worker.close(final_round=False)
    report = backup_report(scheduled)
    assert report["last_error"] and report["failed_at"]
    assert any(r.levelno == logging.ERROR and "backup failed" in r.getMessage() for r in caplog.records)


def test_the_service_reports_backups_and_mirror_lag_in_ready(tmp_path: Path) -> None:
    client = tmp_path / "acme"
    assert cli(tmp_path, "init", str(client), "--tenant-id", "acme").returncode == 0
    remote = bare_repo(tmp_path / "mirror.git")
    config_file = client / "config" / "arka-os.config.json"
    config = json.loads(config_file.read_text())
    config["store"]["durability"] = "fast"
    config["remotes"] = [{"name": "client-git", "url": str(remote)}]
    config["mirror"] = {"enabled": True, "remote": "client-git", "interval_s": 3600, "max_backoff_s": 5}
    config["backup"] = {"enabled": True, "folder": str(tmp_path / "backups"), "interval_s": 3600}
    config_file.write_text(json.dumps(config))
    admin = json.loads(
        cli(client, "token", "create", "--id", "ops", "--type", "human", "--roles", "admin", "--json").stdout
    )["token"]
    writer = json.loads(
        cli(client, "token", "create", "--id", "w", "--type", "human", "--roles", "writer", "--json").stdout
    )["token"]
    server = Server(client)
    try:
        envelope = {
            "op": "HCM_CREATE_MISSION",
            "request_id": "r-1",
            "caller": {"type": "human", "id": "w"},
            "payload": {"mission_id": "crm", "meta": {"title": "CRM", "mission_type": "audit"}},
        }
        answer = httpx.post(
            f"{server.url}/v1/hcm/execute",
            json=envelope,
            headers={"Authorization": f"Bearer {writer}"},
            timeout=10,
        )
        assert answer.status_code == 200
        tip = answer.json()["revision"]

        def details() -> dict[str, Any]:
            return dict(httpx.get(f"{server.url}/ready", timeout=10).json()["details"])

        wait_for(lambda: details()["backup"]["status"] == "ok", "no scheduled backup at start")
        wait_for(lambda: details()["mirror"]["lag_commits"] == 0, "the mirror did not catch up")
        wait_for(lambda: details()["history_index"]["indexed_to"] == tip, "the history index did not follow")
        assert git(remote, "rev-parse", "main").strip() == tip
        assert details()["backup"]["last_backup_at"]
        refused = httpx.post(
            f"{server.url}/v1/admin/backup", headers={"Authorization": f"Bearer {writer}"}, timeout=60
        )
        assert refused.status_code == 403
        taken = httpx.post(
            f"{server.url}/v1/admin/backup", headers={"Authorization": f"Bearer {admin}"}, timeout=60
        )
        assert taken.status_code == 200 and taken.json()["backup"]["head"] == tip
    finally:
        server.stop()
