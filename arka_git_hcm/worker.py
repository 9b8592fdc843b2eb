"""The one background-worker mechanism: a daemon thread that runs ``work()`` when woken, or at
its own pace, until closed.

Every background task of the store (refreshing git's index, folding packs, keeping the search and
history indexes up to date, mirroring to the client's Git, scheduled backups) is one of these, so
the lifecycle rules live in one place:

- ``wake()`` is cheap and never blocks (a writer calls it on its hot path after a batch lands);
  wakes that arrive while ``work()`` runs are not lost: one more round follows;
- ``work()`` failing never kills the thread: the failure is logged and retried after a back-off
  that doubles up to ``max_backoff_s`` (a remote that is down, a full disk);
- ``close()`` stops the thread after its current round and, unless told otherwise, runs last
  rounds (while ``has_pending()``, at most LAST_ROUNDS) so that nothing woken for is left
  undone when a store closes;
- the thread is started lazily, by the first ``wake()`` (or ``start()``), so a CLI run that
  never needs a worker never starts one.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["BackgroundWorker"]

LAST_ROUNDS = 8  # rounds at most at close, while work is pending


class BackgroundWorker:
    """Subclass and implement :meth:`work`; ``interval_s`` (None: only when woken) also runs it
    periodically, which is how a worker notices what other processes did."""

    name = "arka-hcm-worker"

    def __init__(
        self,
        *,
        interval_s: float | None = None,
        max_backoff_s: float = 60.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.log = log or logging.getLogger(f"arka_git_hcm.{self.name}")
        self._cond = threading.Condition()
        self._woken = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.last_error: str | None = None  # the last failure's message, for health reports
        self.rounds = 0  # completed rounds (tests wait on progress through wait_idle)

    # --- what subclasses provide ----------------------------------------------------------------
    def work(self) -> None:
        """One round of the task. Raise to have it retried after a back-off."""
        raise NotImplementedError

    def has_pending(self) -> bool:
        """Whether work is left that a last round at close must do (besides an unanswered wake)."""
        return False

    def idle_timeout(self) -> float | None:
        """How long to wait for a wake before a round of its own (default ``interval_s``)."""
        return self.interval_s

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Ask for one more round soon (never blocks on the round itself)."""
        with self._cond:
            self._woken = True
            self._start_locked()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no wake is pending and no round runs (True), or ``timeout`` (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._woken or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    _busy = False

    def running(self) -> bool:
        """Whether a round runs or is about to (woken and not yet done)."""
        with self._cond:
            return self._woken or self._busy

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._woken and not self._closing:
                    if not self._cond.wait(self.idle_timeout()):
                        break  # the interval elapsed: a periodic round
                if self._closing:
                    self._cond.notify_all()
                    return
                self._woken = False
                self._busy = True
            try:
                self.work()
            except Exception as exc:
                self._failures += 1
                self.last_error = str(exc)[:500] or type(exc).__name__
                self.log.warning("%s failed (attempt %d); retrying", self.name, self._failures, exc_info=True)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait(self._backoff())
                    if not self._closing:
                        self._woken = True  # what failed is still to do
                continue
            self._failures = 0
            self.last_error = None
            with self._cond:
                self._busy = False
                self.rounds += 1
                self._cond.notify_all()

    def _backoff(self) -> float:
        return float(min(self.max_backoff_s, 0.1 * 2 ** min(self._failures, 20)))

    def close(self, *, final_round: bool = True, timeout: float = 30.0) -> None:
        """Stop the thread; then run last rounds here (``final_round``) so a store that
        closes leaves nothing it was woken for undone."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if not final_round:
            return
        # A last round may leave work of its own (a hand edit adopted at close is a write, which
        # moves a file aside to check): a few more rounds, while there is some.
        for _round in range(LAST_ROUNDS):
            if not (self._woken or self.has_pending()):
                return
            self._woken = False
            try:
                self.work()
            except Exception:
                self.log.warning("%s: the last round at close failed", self.name, exc_info=True)
                return

    @property
    def closing(self) -> bool:
        return self._closing
