"""Keeps git's index in step with the branch, off the hot path.

The engine commits without git's index (building the trees is what keeps a write cheap), so after
a write the index still describes the previous HEAD and `git status` would show staged changes
that undo the store's writes. Rewriting the index costs time in proportion to the number of files
(~14 ms at 10k files, ~110 ms at 100k, measured), so it is done here, by one background worker
running `git update-index` in a child process (so the CPU it takes is not under our GIL):
after the store has been idle for ``delay`` seconds, or at the latest ``max_stale`` seconds after
the first pending write, and always when the store closes. While a refresh is pending, the
pre-commit hook (see hooks.py) refuses manual commits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..durable import create_held, remove_if_abandoned
from ..gitrepo import GitRepo
from ..gitrepo.gitbin import IndexBusy, update_index
from ..worker import BackgroundWorker
from .guard import PendingMarker, remove_stale_markers

__all__ = ["IndexKeeper"]

log = logging.getLogger("arka_git_hcm.index")


class IndexKeeper(BackgroundWorker):
    name = "arka-hcm-index"

    def __init__(
        self,
        repo: GitRepo,
        tip: Callable[[], str | None],
        locked: Callable[[], contextlib.AbstractContextManager[None]],
        pending_marker: Path,
        delay: float,
        max_stale: float = 2.0,
    ) -> None:
        # a failed refresh (git's index.lock held by a hand-run git) is retried within a second
        super().__init__(max_backoff_s=1.0, log=log)
        self.repo = repo
        self.tip = tip
        self.locked = locked  # the store's write lock (the index must match a tip nobody is moving)
        self.pending = PendingMarker(pending_marker)
        self.delay = delay
        self.max_stale = max(max_stale, delay)
        self.seconds = 0.0  # time spent refreshing, for benchmarks
        self._dirty: set[str] = set()
        self._first_dirty: float | None = None
        self._last_write = 0.0
        self._refreshing = threading.Lock()

    def mark(self, paths: list[str]) -> None:
        """The work tree and the branch changed at ``paths``; the index must follow."""
        if not paths:
            return
        with self._cond:
            now = time.monotonic()
            self._dirty.update(paths)
            self._last_write = now
            if self._first_dirty is None:
                self._first_dirty = now
            self.pending.set(True)
        self.wake()

    def work(self) -> None:
        """One refresh, once the store is quiet (at close: at once). A failure is retried by
        the worker; meanwhile the index is derived state that the next open repairs anyway."""
        with self._cond:
            self._wait_for_quiet()
        self.refresh()

    def has_pending(self) -> bool:
        return bool(self._dirty)  # refreshed at close, so `git status` is clean at rest

    def _wait_for_quiet(self) -> None:
        """Called with the condition held: wait until idle for ``delay`` or stale for ``max_stale``."""
        while not self._closing:
            now = time.monotonic()
            idle = now - self._last_write
            stale = now - (self._first_dirty or now)
            if idle >= self.delay or stale >= self.max_stale:
                return
            self._cond.wait(timeout=min(self.delay - idle, self.max_stale - stale))

    def refresh(self) -> None:
        """Refresh now, for every pending path. Runs `git update-index` in a child process without
        the store's write lock: writers go on meanwhile, and git's index.lock orders refreshes.
        One refresh at a time in this process: a caller waits for one already running (which may
        hold the paths it wants refreshed) rather than return before the index is current."""
        with self._refreshing:
            self._refresh()

    def _refresh(self) -> None:
        with self._cond:
            paths = sorted(self._dirty)
            self._dirty.clear()
            self._first_dirty = None
        if not paths:
            self.pending.set(False)
            return
        try:
            self._write(paths)
        except Exception:
            with self._cond:
                self._dirty.update(paths)
                self._first_dirty = self._first_dirty or time.monotonic()
            raise
        with self._cond:
            if not self._dirty:
                self.pending.set(False)

    def repair(self) -> list[str]:
        """At open: entries that disagree with HEAD (a process died before its refresh)."""
        with self.locked():
            self._clear_interrupted_refresh()
            tip = self.tip()
            if tip is None:
                return []
            paths = self.repo.index_differences(self.repo.commit_tree(tip))
            if paths:
                self._write(paths)
            remove_stale_markers(self.repo.git_dir)  # the index now matches HEAD: theirs is done
            return paths

    @contextlib.contextmanager
    def _marker(self) -> Iterator[int]:
        """``index-refresh.<random>``, created already locked and handed to the git child: it is
        locked exactly as long as a refresh of ours may hold git's index.lock, even if this
        process is killed and its git child runs on (see durable/locks.py)."""
        marker = self.repo.state_dir / f"index-refresh.{secrets.token_hex(6)}"
        fd = create_held(marker)
        try:
            yield fd
        finally:
            marker.unlink(missing_ok=True)
            os.close(fd)

    def _clear_interrupted_refresh(self) -> None:
        """A store process killed during a refresh may leave git's ``index.lock`` behind (its git
        child killed too). When no refresh marker is locked any more (no refresh of any store
        process, nor an orphaned git child of one, is running), the lock is stale: removed, so
        git and the store can write the index again."""
        running = False
        for marker in self.repo.state_dir.glob("index-refresh.*"):
            held = remove_if_abandoned(marker) is False  # a free marker is removed
            running = running or held
        if not running:
            (self.repo.git_dir / "index.lock").unlink(missing_ok=True)

    def _write(self, paths: list[str]) -> None:
        started = time.perf_counter()
        try:
            with self._marker() as marker:
                for attempt in range(50):
                    try:
                        update_index(self.repo.workdir, paths, keep_fd=marker)
                        return
                    except IndexBusy:
                        time.sleep(0.02 * (attempt + 1))
                    except FileNotFoundError:  # no git binary: libgit2, under the store's lock
                        with self.locked():
                            tip = self.tip()
                            if tip is not None:
                                self.repo.refresh_index(paths, self.repo.commit_tree(tip))
                        return
                raise IndexBusy("git's index.lock stayed held; the refresh will be retried")
        finally:
            self.seconds += time.perf_counter() - started
