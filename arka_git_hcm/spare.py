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

Each pool has a random name and holds an flock on ``pool-<name>.lock`` in the folder while it
lives; its files are ``spare-<name>-<n>``. The next pool to start removes the files of pools whose
lock nobody holds (a killed process, a container restarted with the same pid, a CLI run in another
pid namespace: flocks are the kernel's, pids are not). Work-tree files come from spares only
where a file created in the spare folder gets the same group, default ACL and SELinux label as
one created in the work tree (:meth:`SpareFiles.inherits_like`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import threading
import time
from collections import deque
from pathlib import Path

from .lockfiles import create_held, remove_if_abandoned

__all__ = ["SpareFiles"]

log = logging.getLogger("arka_git_hcm.spare")
RETRY_AFTER_S = 60.0  # after a failure to make spares (a full disk), try again this much later
_STARTUP_GRACE_S = 60.0  # a spare whose pool lock is missing may belong to a pool starting now


class SpareFiles:
    def __init__(self, folder: Path, keep: int = 48) -> None:
        self.folder = folder
        self.keep = keep
        self._low = keep // 2
        self._ready: deque[str] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._failed_at: float | None = None
        self._no_links = False
        self._counter = 0
        self._name = secrets.token_hex(6)
        self._prefix = f"{folder}/spare-{self._name}-"
        self._lock_fd: int | None = None

    # --- taking ---------------------------------------------------------------------------
    def take(self) -> str | None:
        """The path of an empty file nobody else uses, or None (none ready: create your own)."""
        with self._cond:
            path = self._ready.popleft() if self._ready else None
            if len(self._ready) <= self._low and not self._closing:
                if self._thread is None and self._may_start():
                    self._start()
                self._cond.notify()
        return path

    def _may_start(self) -> bool:
        return self._failed_at is None or time.monotonic() - self._failed_at > RETRY_AFTER_S

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

    def create_exclusive(self, path: str | Path) -> int:
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
                return os.open(path, os.O_WRONLY)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    # --- the maker thread -----------------------------------------------------------------
    def _start(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self._lock_fd is None:
                self._lock_fd = create_held(self.folder / f"pool-{self._name}.lock")
                self._remove_dead()
        except OSError as exc:
            log.warning("cannot prepare spare files in %s: %s", self.folder, exc)
            self._failed_at = time.monotonic()
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
                        self._failed_at = time.monotonic()
                        self._thread = None
                    return
                with self._cond:
                    if self._closing:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                        return
                    self._ready.append(path)

    def _remove_dead(self) -> None:
        """Remove the files of pools that no process runs any more."""
        graces: dict[str, float | None] = {self._name: None}
        for name in os.listdir(self.folder):
            if name.startswith("pool-") and name.endswith(".tmp"):
                remove_if_abandoned(self.folder / name)  # a pool killed while it was starting
            if not name.startswith("spare-"):
                continue
            owner = name[len("spare-") :].rsplit("-", 1)[0]
            if owner not in graces:
                graces[owner] = self._grace(owner)
            grace = graces[owner]
            if grace is not None and self._older_than(name, grace):
                with contextlib.suppress(OSError):
                    os.unlink(self.folder / name)

    def _grace(self, owner: str) -> float | None:
        """How old a file of pool ``owner`` must be to go: never (None) while the pool holds its
        lock; at once when its lock is free (the pool is gone); after a grace period when it has
        no lock file (gone long ago, or creating its lock right now)."""
        abandoned = remove_if_abandoned(self.folder / f"pool-{owner}.lock")
        if abandoned is None:
            return _STARTUP_GRACE_S
        return 0.0 if abandoned else None

    def _older_than(self, name: str, seconds: float) -> bool:
        try:
            return time.time() - os.stat(self.folder / name).st_mtime >= seconds
        except FileNotFoundError:
            return False

    def inherits_like(self, folder: Path) -> bool:
        """Whether a file made in the spare folder gets what one made in ``folder`` gets: the
        same group (setgid folders), default ACL and SELinux label. If not, the work tree
        creates its temp files beside their targets (a team sharing the folder keeps access)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            ours, theirs = os.stat(self.folder), os.stat(folder)
        except OSError:
            return False
        if (ours.st_mode & stat.S_ISGID) != (theirs.st_mode & stat.S_ISGID):
            return False
        if theirs.st_mode & stat.S_ISGID and ours.st_gid != theirs.st_gid:
            return False
        return all(
            _xattr(self.folder, attr) == _xattr(folder, attr)
            for attr in ("system.posix_acl_default", "security.selinux")
        )

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
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.folder / f"pool-{self._name}.lock")
            os.close(self._lock_fd)
            self._lock_fd = None


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name)
    except OSError:  # not set, or not supported here
        return None
