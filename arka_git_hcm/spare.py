"""Empty files made ahead of time, so that writing a new file creates no inode on the hot path.

Creating a file is the dearest step of a write on the filesystem we measured (ext4 on the
2-core VMs: ~0.7 ms of kernel CPU per create, against ~0.02 ms for a rename or a link, see
bench/README.md). A batch of writes creates several files: a temp file per work-tree file
(renamed over its target), the pack and its index, the intent, the ref lock. So a background
thread keeps a few dozen empty files ready in one private folder, off the writer's critical
path: a writer takes one, writes it and renames it into place. A rename across folders of
one filesystem is as atomic as the same-folder temp-and-rename it replaces. A lock file, which
must be created exclusively, is made by hard-linking a spare to the lock's name (link fails if
the name exists, as O_EXCL does). When no spare is ready the writer creates its own file.

Spare files are named ``spare-<pid>-<pool>.<n>``; those of processes that died are removed by the
next pool opened on the folder.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections import deque
from pathlib import Path

__all__ = ["SpareFiles", "process_alive"]

log = logging.getLogger("arka_git_hcm.spare")
_pools = itertools.count(1)


class SpareFiles:
    def __init__(self, folder: Path, keep: int = 48) -> None:
        self.folder = folder
        self.keep = keep
        self._low = keep // 2
        self._ready: deque[str] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._failed = False
        self._no_links = False
        self._counter = 0
        self._prefix = f"{folder}/spare-{os.getpid()}-{next(_pools)}."

    # --- taking ---------------------------------------------------------------------------
    def take(self) -> str | None:
        """The path of an empty file nobody else uses, or None (none ready: create your own)."""
        with self._cond:
            path = self._ready.popleft() if self._ready else None
            if len(self._ready) <= self._low and not self._closing and not self._failed:
                if self._thread is None:
                    self._start()
                self._cond.notify()
        return path

    def open_new(self, fallback: str, mode: int = 0o644) -> tuple[int, str]:
        """A descriptor open for writing on a new empty file, and its path: a spare, or
        ``fallback`` created now. The caller writes it and renames it into place."""
        spare = self.take()
        if spare is not None:
            try:
                fd = os.open(spare, os.O_WRONLY)
            except FileNotFoundError:  # removed behind our back: fall back
                pass
            else:
                if mode != 0o644:
                    os.fchmod(fd, mode)
                return fd, spare
        return os.open(fallback, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), fallback

    def create_exclusive(self, path: str | Path, mode: int = 0o644) -> int:
        """Create ``path`` as O_CREAT|O_EXCL would (FileExistsError if it exists) and open it
        for writing; made by hard-linking a spare, which creates no inode. On a filesystem
        without hard links, the file is created directly (and from then on always)."""
        spare = None if self._no_links else self.take()
        if spare is not None:
            linked = False
            try:
                os.link(spare, path)  # fails with FileExistsError if taken, as O_EXCL does
                linked = True
            except FileNotFoundError:
                pass
            except FileExistsError:
                raise
            except OSError as exc:
                self._no_links = True
                log.info("no hard links in %s (%s): lock files are created directly", self.folder, exc)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(spare)
            if linked:
                if mode != 0o644:
                    os.chmod(path, mode)
                return os.open(path, os.O_WRONLY)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    # --- the maker thread -----------------------------------------------------------------
    def _start(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._remove_dead()
        except OSError:
            self._failed = True
            return
        self._thread = threading.Thread(target=self._run, name="arka-hcm-spare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing and len(self._ready) > self._low:
                    self._cond.wait()
                if self._closing:
                    return
                missing = self.keep - len(self._ready)
            for _ in range(missing):
                self._counter += 1
                path = f"{self._prefix}{self._counter}"
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                except OSError as exc:  # a full or read-only disk: writers create their own
                    log.warning("cannot prepare spare files in %s: %s", self.folder, exc)
                    with self._cond:
                        self._failed = True
                    return
                with self._cond:
                    if self._closing:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                        return
                    self._ready.append(path)

    def _remove_dead(self) -> None:
        for name in os.listdir(self.folder):
            parts = name.split("-")
            if len(parts) == 3 and parts[0] == "spare" and parts[1].isdigit():
                pid = int(parts[1])
                if pid != os.getpid() and not process_alive(pid):
                    with contextlib.suppress(OSError):
                        os.unlink(self.folder / name)

    def close(self) -> None:
        """Stop the maker and remove the spares not taken."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        with self._cond:
            leftovers = list(self._ready)
            self._ready.clear()
        for path in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(path)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
