"""Scheduled backups, run by the service itself (config ``backup``).

Every ``interval_s`` one backup is written to ``folder``: a full one, or (with ``incrementals``
> 0) an incremental since the newest backup of the current chain until ``incrementals`` of
them follow the last full one. ``keep`` full backups are kept, each with its incrementals;
older chains are deleted only after a new full backup succeeded. A backup takes no store lock
(see backup.py): writes go on. Each result is logged and kept in the state file that ``/ready``
reports (last backup time and status); a failure is logged at error level, shown in ``/ready``
details, and retried with a back-off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..clock import iso_seconds
from ..config import Settings
from ..errors import HcmError, NotFound
from ..worker import BackgroundWorker
from .backup import create_backup
from .manifest import SUFFIX, read_manifest
from .state import custody_dir, load_state, runner_lock, save_state

__all__ = ["BackupScheduler", "backup_folder", "backup_report", "list_backups"]

log = logging.getLogger("arka_git_hcm.backup")


def backup_folder(settings: Settings) -> Path:
    folder = Path(settings.file.backup.folder)
    return folder if folder.is_absolute() else settings.config_path.parent / folder


def _state_path(settings: Settings) -> Path:
    return custody_dir(settings.hcm_path) / "backup.json"


def list_backups(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The backups in ``folder`` (bundles with a readable manifest), oldest first."""
    found = []
    for manifest in folder.glob(f"*.bundle{SUFFIX}"):
        bundle = manifest.with_name(manifest.name[: -len(SUFFIX)])
        try:
            found.append((bundle, read_manifest(bundle)))
        except HcmError:
            continue
    return sorted(found, key=lambda item: (item[1].get("created_at", ""), item[0].name))


class BackupScheduler(BackgroundWorker):
    name = "arka-hcm-backup"

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        cfg = settings.file.backup
        super().__init__(
            interval_s=min(cfg.interval_s, 60.0), max_backoff_s=min(cfg.interval_s, 3600.0), log=log
        )
        self.settings = settings
        self.clock = clock
        self.force_next = False
        self.backups = 0

    def run_now(self) -> None:
        """Take a backup at the next round, due or not (admin route, tests)."""
        self.force_next = True
        self.wake()

    def work(self) -> None:
        path = _state_path(self.settings)
        with runner_lock(path.with_suffix(".lock")) as mine:
            if not mine:
                return
            state = load_state(path)
            now = self.clock()
            last = state.get("last_attempt_ts")
            if (
                not self.force_next
                and last is not None
                and now - float(last) < self.settings.file.backup.interval_s
            ):
                return
            self.force_next = False
            state["last_attempt_ts"] = now
            try:
                result = self._take_one(now)
            except HcmError as exc:
                state |= {"status": "failed", "last_error": exc.message[:500], "failed_at": iso_seconds(now)}
                save_state(path, state)
                log.error("scheduled backup failed: %s", exc.message)
                raise
            except Exception as exc:
                state |= {"status": "failed", "last_error": str(exc)[:500], "failed_at": iso_seconds(now)}
                save_state(path, state)
                log.error("scheduled backup failed unexpectedly", exc_info=True)
                raise
            state |= {"status": "ok", "last_error": None, "last_backup_at": iso_seconds(now)} | result
            save_state(path, state)
            self.backups += 1
            log.info("scheduled backup: %s", result.get("last_file") or result.get("note"))

    def _take_one(self, now: float) -> dict[str, Any]:
        cfg = self.settings.file.backup
        folder = backup_folder(self.settings)
        folder.mkdir(parents=True, exist_ok=True)
        existing = list_backups(folder)
        fulls = [i for i, (_, m) in enumerate(existing) if m["kind"] == "full"]
        since = None
        if cfg.incrementals and fulls and len(existing) - 1 - fulls[-1] < cfg.incrementals:
            since = str(existing[-1][0])
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        tenant = self.settings.file.tenant_id or "hcm"
        kind = "incr" if since else "full"
        out = folder / f"{tenant}-{stamp}-{kind}.bundle"
        for n in range(2, 1000):  # two backups in one second never share a name
            if not out.exists():
                break
            out = folder / f"{tenant}-{stamp}-{n}-{kind}.bundle"
        try:
            manifest = create_backup(self.settings, out, with_config=cfg.with_config, since=since)
        except NotFound as exc:
            if since is None:
                raise
            return {"note": f"nothing new since {Path(since).name}", "last_kind": None, "detail": exc.message}
        removed = self._prune(folder) if manifest["kind"] == "full" else []
        return {
            "last_file": out.name,
            "last_kind": manifest["kind"],
            "last_head": manifest["head"],
            "last_bytes": manifest["bytes"],
            "removed": removed,
            "note": None,
        }

    def _prune(self, folder: Path) -> list[str]:
        existing = list_backups(folder)
        fulls = [i for i, (_, m) in enumerate(existing) if m["kind"] == "full"]
        keep = self.settings.file.backup.keep
        if len(fulls) <= keep:
            return []
        cut = fulls[-keep]  # everything before the oldest full kept goes
        removed = []
        for bundle, _ in existing[:cut]:
            bundle.unlink(missing_ok=True)
            Path(f"{bundle}{SUFFIX}").unlink(missing_ok=True)
            removed.append(bundle.name)
        return removed


def backup_report(settings: Settings) -> dict[str, Any]:
    """For /ready: whether scheduled backups run, when the last one was taken, its status."""
    if not settings.file.backup.enabled:
        return {"enabled": False}
    state = load_state(_state_path(settings))
    return {
        "enabled": True,
        "folder": str(backup_folder(settings)),
        "status": state.get("status", "pending"),
        "last_backup_at": state.get("last_backup_at"),
        "last_file": state.get("last_file"),
        "last_error": state.get("last_error"),
        "failed_at": state.get("failed_at") if state.get("status") == "failed" else None,
    }
