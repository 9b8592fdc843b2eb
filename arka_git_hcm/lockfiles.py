"""Lock files that tell whether their owner is alive: created already flock-ed, released by the
kernel when the owner is gone, however it went (killed, its container restarted with the same pid,
in another pid namespace). A descriptor handed to a child process keeps the lock held while the
child runs. Used for the index-refresh markers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

__all__ = ["create_held", "remove_if_abandoned"]


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
