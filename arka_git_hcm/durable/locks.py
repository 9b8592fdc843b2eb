"""Locks, one implementation for the whole store: flock on lock files reached without following a
link (files.open_lock_file).

- :class:`StoreLock`: the store's inter-process write lock, with a timeout (threads of one
  process queue on a mutex; other processes are waited for by a blocking flock on a helper
  thread, woken by the kernel when the holder releases).
- :func:`flocked`: a context manager for the other locks (maintenance, config, logs, indexes),
  shared or exclusive, waiting or not.
- :func:`lock_is_held`: whether some process holds a lock now (verify asks it of the write lock).
- :func:`create_held` / :func:`remove_if_abandoned`: lock files that tell whether their owner is
  alive: created already flock-ed, released by the kernel when the owner is gone, however it
  went (killed, its container restarted with the same pid, in another pid namespace). A
  descriptor handed to a child process keeps the lock held while the child runs. Used for the
  index-refresh markers.

flock is advisory and released by the kernel when its holder dies: a killed writer never
leaves anything locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import Busy, from_os_error
from .files import open_lock_file

__all__ = [
    "StoreLock",
    "create_held",
    "flocked",
    "folder_flocked",
    "lock_is_held",
    "remove_if_abandoned",
]


def create_held(path: Path) -> int:
    """Create ``path`` already locked (made under a temp name, locked, renamed), so nobody can
    see it unlocked while its owner lives. Returns the descriptor holding the lock; close it
    (after removing the file) to release."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(tmp, path)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd


CREATION_GRACE_S = 60.0  # a ``.tmp`` lock file younger than this is being created right now


def remove_if_abandoned(path: Path) -> bool | None:
    """True when nobody held ``path``'s lock (it is removed, under the lock); False while its
    owner holds it; None when there is no such file. A ``.tmp`` file (see :func:`create_held`)
    may not be locked yet: it counts as held until it is CREATION_GRACE_S old, then as left by
    a creator that died."""
    if path.name.endswith(".tmp"):
        try:
            young = time.time() - path.stat().st_mtime < CREATION_GRACE_S
        except FileNotFoundError:
            return None
        if young:
            return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        with contextlib.suppress(OSError):
            os.unlink(path)  # a link in place of a lock file: nobody holds it; it goes, unfollowed
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(OSError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)


class StoreLock:
    """The inter-process write lock (flock on ``.git/arka-hcm/write.lock``).

    flock is released by the kernel when a process dies, so a killed writer never leaves the
    store locked; the lock is advisory and only store processes take it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        # Threads of one process queue on a mutex (no polling among themselves); only other
        # processes are waited for by polling flock.
        self._mutex = threading.Lock()

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self._mutex.acquire(timeout=timeout):
            raise Busy(
                f"the HCM is busy (write lock held for more than {timeout:g}s); retry shortly", retry_after=1
            )
        try:
            self._acquire_flock(deadline, timeout)
        except BaseException:
            self._mutex.release()
            raise

    def _acquire_flock(self, deadline: float, timeout: float) -> None:
        try:
            fd = open_lock_file(self.path, root=self.path.parent.parent)
        except OSError as exc:
            raise from_os_error(exc, "opening the store's write lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fd = fd
            return
        except BlockingIOError:
            pass
        # Contended by another process: wait in a blocking flock (woken by the kernel the moment
        # the holder releases, instead of polling), on a helper thread so the wait can time out.
        waiter = _FlockWaiter(fd)
        if waiter.wait(max(0.0, deadline - time.monotonic())):
            self._fd = fd
            return
        raise Busy(
            f"the HCM is busy (write lock held for more than {timeout:g}s); retry shortly", retry_after=1
        )

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._mutex.release()

    @contextlib.contextmanager
    def held(self, timeout: float) -> Any:
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()


class _FlockWaiter:
    """A blocking flock on a thread. If the caller gives up first, the thread releases the lock
    as soon as it gets it (and closes the descriptor), so an abandoned wait never holds it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._state_lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        threading.Thread(target=self._run, name="arka-hcm-flock", daemon=True).start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        with self._state_lock:
            if self._abandoned:
                with contextlib.suppress(OSError):
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
                return
            self._done.set()

    def wait(self, timeout: float) -> bool:
        if self._done.wait(timeout):
            return True
        with self._state_lock:
            if self._done.is_set():
                return True
            self._abandoned = True
            return False


@contextlib.contextmanager
def flocked(
    path: Path, *, exclusive: bool = True, wait: bool = True, root: Path | None = None, mode: int = 0o644
) -> Iterator[int | None]:
    """Hold an flock on ``path`` (created if missing, never through a link; ``root``: the trusted
    folder above it). Yields the descriptor (to hand to a child process that must keep the lock
    while it runs), or None when ``wait`` is False and another holder has it."""
    fd = open_lock_file(path, root=root, mode=mode)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def folder_flocked(path: Path) -> Iterator[None]:
    """An exclusive flock on a folder itself (a descriptor opened read-only on it): a lock that
    adds no file to a folder whose listing matters (the log folder)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_is_held(path: Path) -> bool:
    """Whether some process holds an exclusive flock on ``path`` now (False when it is absent)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
