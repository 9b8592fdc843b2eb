"""The HCM folder as files: atomic writes, the write intent, crash recovery.

The work tree is derived state: git history is the truth. Before the branch moves, the engine
records *which* paths the batch changes in an intent file inside ``.git``; after a crash anywhere,
:func:`recover` rewrites exactly those paths from HEAD, whether the branch moved or not, so the
work tree equals HEAD again (roll forward if the commit landed, roll back if it did not).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

from .. import durable
from ..errors import Busy, from_os_error
from ..jsonio import compact_dumps, parse_json
from ..paths import PathResolver

__all__ = ["StoreLock", "WorkTree"]


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
            fd = durable.open_lock_file(self.path, root=self.path.parent.parent)
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


INTENT_FILE = "intent.json"  # in the store's state folder: the paths a batch in flight changes
TEMP_MARK = ".arka-tmp-"  # in the name of a work-tree temp file: never part of the HCM


class WorkTree:
    def __init__(self, resolver: PathResolver, state_dir: Path) -> None:
        self.resolver = resolver
        self.root = resolver.root
        self.state_dir = state_dir
        self.intent_path = state_dir / INTENT_FILE

    # --- files ----------------------------------------------------------------------------
    def write_file(self, rel: str, data: bytes) -> os.stat_result:
        """Replace a file atomically (temp file + rename): a reader or a crash sees the old bytes
        or the new ones, never a torn file. The folders are walked without following links and
        the temp file is created beside the target at a random name with O_EXCL | O_NOFOLLOW
        (it gets the folder's group and default ACL, as a file made there by hand would), so a
        link planted in the HCM folder can redirect nothing. Durability comes from the engine's
        filesystem sync after the batch, not from one fsync per file."""
        try:
            fd, name = self.resolver.open_parent(rel, create=True)
            try:
                durable.replace_file(fd, name, data, temp_prefix=f".{name}{TEMP_MARK}")
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
        except OSError as exc:
            raise from_os_error(exc, f"writing {rel}") from None

    def delete_file(self, rel: str) -> None:
        try:
            fd, name = self.resolver.open_parent(rel)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise from_os_error(exc, f"deleting {rel}") from None
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise from_os_error(exc, f"deleting {rel}") from None
        finally:
            os.close(fd)
        # git tracks no folders: drop the ones this deletion emptied, as git checkout would
        parts = rel.split("/")[:-1]
        while parts:
            try:
                with durable.folder(self.root, parts[:-1]) as parent:
                    os.rmdir(parts[-1], dir_fd=parent)
            except OSError:
                break
            parts.pop()

    def remove_temp_files(self, paths: list[str]) -> None:
        """Temp files a killed writer left beside the paths it was replacing."""
        for rel in paths:
            folder, _, name = rel.rpartition("/")
            try:
                with durable.folder(self.root, folder.split("/") if folder else []) as fd:
                    for leftover in os.listdir(fd):
                        if leftover.startswith(f".{name}{TEMP_MARK}"):
                            with contextlib.suppress(OSError):
                                os.unlink(leftover, dir_fd=fd)
            except OSError:
                continue

    def stat(self, rel: str) -> os.stat_result | None:
        try:
            fd, name = self.resolver.open_parent(rel)
        except FileNotFoundError:
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    # --- the intent -----------------------------------------------------------------------
    def write_intent(self, ref: str, old: str | None, new: str, paths: list[str]) -> None:
        body = compact_dumps({"ref": ref, "old": old, "new": new, "paths": sorted(paths)})
        durable.write_atomic(self.intent_path, (body + "\n").encode("utf-8"), root=self.state_dir.parent)

    def read_intent(self) -> dict[str, Any] | None:
        try:
            raw = durable.read_file(self.intent_path, root=self.state_dir.parent)
        except FileNotFoundError:
            return None
        try:
            value = parse_json(raw, what="intent")
        except Exception:
            # A torn intent can only come from a crash before its rename: the branch never moved.
            return {"paths": [], "torn": True}
        return value if isinstance(value, dict) else None

    def clear_intent(self) -> None:
        with (
            contextlib.suppress(FileNotFoundError),
            durable.folder(self.state_dir.parent, [self.state_dir.name]) as fd,
        ):
            os.unlink(INTENT_FILE, dir_fd=fd)
