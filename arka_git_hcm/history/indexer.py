"""The worker that keeps the history index up to date, off the write path.

Woken by the store after each batch lands in this process (a landing listener), and, in the
service, every ``interval_s`` for commits other processes made (the CLI, another worker). A
store opened by a one-shot command only extends an index that exists (a few new commits, in
its last round at close); building one from a long history is the service's job (in the
background, at start) or ``arka-hcm history reindex``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..worker import BackgroundWorker
from .index import HistoryIndex

__all__ = ["HistoryIndexer"]

log = logging.getLogger("arka_git_hcm.history")


class _Stopped(Exception):
    """The store closes during a long build: give up (the build is rolled back, and redone by
    the next service start) instead of holding the shutdown."""


MIN_GAP_S = 0.5  # at most two rounds a second: under a stream of writes, rounds cover many batches


class HistoryIndexer(BackgroundWorker):
    name = "arka-hcm-history-index"

    def __init__(self, index: HistoryIndex, tip: Callable[[], str | None]) -> None:
        super().__init__(interval_s=None, max_backoff_s=300.0, log=log)
        self.index = index
        self.tip = tip
        self.build = False
        self.indexed = 0  # commits added by this worker (for tests and health reports)
        self._last_round = 0.0

    def serve(self, interval_s: float) -> None:
        """Run as the service does: build a missing index, look at the tip every interval."""
        self.build = True
        self.interval_s = interval_s
        self.wake()

    def _progress(self, _done: int, _total: int) -> None:
        if self.closing:
            raise _Stopped

    def work(self) -> None:
        # wakes arriving meanwhile fold into this round: a busy service indexes in batches
        # instead of spawning a git process after every landed batch of writes
        wait = MIN_GAP_S - (time.monotonic() - self._last_round)
        if wait > 0 and not self.closing:
            time.sleep(wait)
        self._last_round = time.monotonic()
        try:
            added = self.index.catch_up(self.tip(), build=self.build, on_progress=self._progress)
        except _Stopped:
            log.info("history index: build interrupted by shutdown; it starts again next time")
            return
        if added:
            self.indexed += added
            log.debug("history index: %d commit(s) added", added)
