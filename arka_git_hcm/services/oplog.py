"""JSON-lines logs in LOG_ROOT, rotated by size, safe for several processes.

The operation log records *that* something happened (time, op, request_id, caller, status, error
code, duration, revision), never payload contents or secrets: these logs leave the client's
machine when support asks for them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from ..jsonio import compact_dumps

__all__ = ["JsonLinesLog"]


class JsonLinesLog:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._ok = True

    def write(self, record: dict[str, Any]) -> None:
        line = (compact_dumps(record) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_size + len(line) > self.max_bytes and self.backups > 0:
                    self._rotate()
                    os.close(fd)
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            # A full or read-only log volume must not fail the operation it describes.
            self._ok = False

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
