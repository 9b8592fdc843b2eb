"""The HCM folder as files: atomic writes, the write intent, crash recovery.

The work tree is derived state: git history is the truth. Before the branch moves, the engine
records *which* paths the batch changes in an intent file inside ``.git``; after a crash anywhere,
:func:`recover` rewrites exactly those paths from HEAD, whether the branch moved or not, so the
work tree equals HEAD again (roll forward if the commit landed, roll back if it did not).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import Busy, from_os_error
from ..jsonio import compact_dumps, parse_json
from ..paths import PathResolver
from ..spare import SpareFiles

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


class WorkTree:
    def __init__(self, resolver: PathResolver, state_dir: Path, spares: SpareFiles | None = None) -> None:
        self.resolver = resolver
        self.root = resolver.root
        self.intent_path = state_dir / INTENT_FILE
        # empty files made ahead (no inode created on the hot path), for the intent always, for
        # work-tree files where they get the group, default ACL and label files made here get
        self.spares = spares
        self._tree_spares = spares if spares is not None and spares.inherits_like(self.root) else None

    @staticmethod
    def _open_new(spares: SpareFiles | None, fallback: Path | str) -> tuple[int, str]:
        if spares is not None:
            return spares.open_new(str(fallback))
        return os.open(fallback, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), str(fallback)

    # --- files ----------------------------------------------------------------------------
    def write_file(self, rel: str, data: bytes) -> os.stat_result:
        """Replace a file atomically (temp file + rename): a reader or a crash sees the old bytes
        or the new ones, never a torn file. The temp file is a spare made ahead (see spare.py),
        else one created beside the target. Durability comes from the engine's filesystem sync
        after the batch, not from one fsync per file."""
        target = self.resolver.resolve_text(rel)
        folder, _, name = target.rpartition("/")
        if not os.path.isdir(folder):
            self._make_parents(rel)
        fallback = f"{folder}/.{name}.arka-tmp-{os.getpid()}"
        tmp = fallback
        try:
            fd, tmp = self._open_new(self._tree_spares, fallback)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV or tmp == fallback:
                    raise
                # .git on another filesystem than the work tree: temp files beside the target
                os.unlink(tmp)
                self._tree_spares = None
                return self.write_file(rel, data)
            return os.lstat(target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise from_os_error(exc, f"writing {rel}") from None

    def _make_parents(self, rel: str) -> None:
        parts = rel.split("/")[:-1]
        current = self.root
        for part in parts:
            current = current / part
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                pass
            except OSError as exc:
                raise from_os_error(exc, f"creating folder for {rel}") from None
        # resolve() again: refuses a symlink planted on the way between checks
        self.resolver.resolve(rel)

    def delete_file(self, rel: str) -> None:
        target = self.resolver.resolve(rel)
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise from_os_error(exc, f"deleting {rel}") from None
        # git tracks no folders: drop the ones this deletion emptied, as git checkout would
        parent = target.parent
        while parent != self.root:
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = parent.parent

    def remove_temp_files(self, paths: list[str]) -> None:
        """Temp files a killed writer left beside the paths it was replacing."""
        for rel in paths:
            folder = self.root.joinpath(*rel.split("/")[:-1])
            name = rel.rsplit("/", 1)[-1]
            with contextlib.suppress(OSError):
                for leftover in folder.glob(f".{name}.arka-tmp-*"):
                    leftover.unlink()

    def stat(self, rel: str) -> os.stat_result | None:
        try:
            return os.lstat(self.resolver.resolve_text(rel))
        except FileNotFoundError:
            return None

    # --- the intent -----------------------------------------------------------------------
    def write_intent(self, ref: str, old: str | None, new: str, paths: list[str]) -> None:
        self.intent_path.parent.mkdir(parents=True, exist_ok=True)
        body = compact_dumps({"ref": ref, "old": old, "new": new, "paths": sorted(paths)})
        fd, tmp = self._open_new(self.spares, self.intent_path.with_suffix(".tmp"))
        try:
            try:
                _write_all(fd, (body + "\n").encode("utf-8"))
            finally:
                os.close(fd)
            os.replace(tmp, self.intent_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read_intent(self) -> dict[str, Any] | None:
        try:
            raw = self.intent_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            value = parse_json(raw, what="intent")
        except Exception:
            # A torn intent can only come from a crash before its rename: the branch never moved.
            return {"paths": [], "torn": True}
        return value if isinstance(value, dict) else None

    def clear_intent(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.intent_path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
