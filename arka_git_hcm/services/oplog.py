"""JSON-lines logs in LOG_ROOT, rotated by size, safe for several processes.

The operation log records *that* something happened (time, op, request_id, caller, status, error
code, duration, revision), never payload contents or secrets: these logs leave the client's
machine when support asks for them.

The file stays open (O_APPEND: each line lands whole at the end, whichever process writes it);
rotation takes an flock (on the log folder itself) and renames, and every writer notices
a rotation by another process because the path no longer names the file it holds open.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import datetime
from typing import Any

from ..jsonio import compact_dumps

__all__ = ["JsonLinesLog", "operation_record"]


def operation_record(
    *,
    op: str | None,
    request_id: str | None,
    caller: str | None,
    status: str,
    error_code: str | None,
    replayed: bool,
    started: float,
    revision: str | None,
) -> dict[str, Any]:
    """One line of ``operations.jsonl``: ``started`` is the ``time.perf_counter()`` at which the
    operation began. Every path that answers an operation logs through this one shape."""
    return {
        "time": datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "op": op,
        "request_id": request_id,
        "caller": caller,
        "status": status,
        "error_code": error_code,
        "replayed": replayed,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "revision": revision,
    }


class JsonLinesLog:
    """One log file; paths through os.path (pathlib would cost `arka-hcm log` ~7 ms of start)."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backups: int) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.failed = False

    def write(self, record: dict[str, Any]) -> None:
        line = (compact_dumps(record) + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = self._current_fd()
                if os.fstat(fd).st_size + len(line) > self.max_bytes and self.backups > 0:
                    fd = self._rotate(fd, len(line))
                os.write(fd, line)
            except OSError:
                # A full or read-only log volume must not fail the operation it describes.
                self.failed = True
                self._close()

    def _current_fd(self) -> int:
        if self._fd is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            self._close()  # rotated (or removed) by someone else: follow the path
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # never through a link: a link planted at the log's name must not receive the records
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o640)
        return self._fd

    def _rotate(self, fd: int, incoming: int) -> int:
        from pathlib import Path  # rare: pathlib and durable's imports cost a quick command ~30 ms

        from ..durable import folder_flocked

        with folder_flocked(Path(self.path).parent):  # no lock file among the logs
            fd = self._current_fd()  # another process may have rotated while we waited
            if os.fstat(fd).st_size + incoming > self.max_bytes:
                for index in range(self.backups - 1, 0, -1):
                    older = f"{self.path}.{index}"
                    if os.path.exists(older):
                        os.replace(older, f"{self.path}.{index + 1}")
                os.replace(self.path, f"{self.path}.1")
                fd = self._current_fd()
            return fd

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close()
