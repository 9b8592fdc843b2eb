"""What the HTTP service runs beside the store: the history indexer (building a missing index in
the background), the mirror and the scheduled backups, each a BackgroundWorker woken by the
store's landing listener or its own interval, and what ``/ready`` reports about them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidPayload
from ..services.store import HcmStore
from .backup import create_backup
from .mirror import MirrorWorker, mirror_report
from .schedule import BackupScheduler, backup_folder, backup_report

__all__ = ["HISTORY_LOOK_S", "CustodyService"]

HISTORY_LOOK_S = 30.0  # how often the service's indexer looks for other processes' commits


class CustodyService:
    def __init__(self, store: HcmStore) -> None:
        self.store = store
        self.settings = store.settings
        self.mirror: MirrorWorker | None = None
        self.backups: BackupScheduler | None = None

    def start(self) -> None:
        self.store.history_indexer.serve(HISTORY_LOOK_S)
        if self.settings.file.mirror.enabled:
            self.mirror = MirrorWorker(self.settings, self.store.tip)
            self.store.add_landing_listener(self.mirror.on_landing)
            self.mirror.wake()
        if self.settings.file.backup.enabled:
            self.backups = BackupScheduler(self.settings)
            self.backups.wake()

    def close(self) -> None:
        # no last round: a push or a backup at shutdown could outlast the container's grace period
        for worker in (self.mirror, self.backups):
            if worker is not None:
                worker.close(final_round=False, timeout=10)

    def ready_details(self) -> dict[str, Any]:
        stamp = self.store.history.stamp()
        details: dict[str, Any] = {
            "history_index": {
                "indexed_to": stamp.id if stamp else None,
                "commits": stamp.seq + 1 if stamp else 0,
            }
        }
        backup = backup_report(self.settings)
        if backup["enabled"]:
            details["backup"] = backup
        mirror = mirror_report(self.settings)
        if mirror["enabled"]:
            details["mirror"] = mirror | ({"worker_error": self.mirror.last_error} if self.mirror else {})
        return details

    def backup_now(self) -> dict[str, Any]:
        """A full backup into the configured folder, now (POST /v1/admin/backup)."""
        if not self.settings.file.backup.folder:
            raise InvalidPayload("no backup folder configured (config backup.folder)")
        folder = backup_folder(self.settings)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out: Path = folder / f"{self.settings.file.tenant_id or 'hcm'}-{stamp}-full.bundle"
        for n in range(2, 1000):  # two backups in one second never share a name
            if not out.exists():
                break
            out = folder / f"{self.settings.file.tenant_id or 'hcm'}-{stamp}-{n}-full.bundle"
        return create_backup(self.settings, out, with_config=self.settings.file.backup.with_config)
