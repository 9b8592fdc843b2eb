"""Keeping the index up with the branch, off the write path.

A :class:`~arka_git_hcm.worker.BackgroundWorker`: the store wakes it after each batch of writes
lands in this process (its landing listener only calls ``wake()``), and it looks at the tip
every ``interval_s`` for what other processes wrote (a second server worker, the CLI). Each
round brings the index to the tip as it is then: the changed paths of everything that landed
since the last round, in one transaction.

Rounds follow each other at least ``min_gap_s`` apart unless someone waits for the index
(``consistent``): under a stream of writes a round then takes in several batches, so the
per-round costs (opening a transaction, diffing the trees, committing) are paid a few times a
second instead of once per batch, on the CPU the writers share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..worker import BackgroundWorker
from .schema import IndexFiles
from .updater import UpdateReport

__all__ = ["IndexFollower", "Updater"]

log = logging.getLogger("arka_git_hcm.search")


class Updater(Protocol):
    """An IndexUpdater, in this process or in a child (child.ChildUpdater)."""

    files: IndexFiles

    def catch_up(
        self, tip: str | None, *, wait_s: float = 0.0, verify: bool = False
    ) -> UpdateReport | None: ...

    def rebuild(self, tip: str, *, wait_s: float = 60.0, reason: str = "asked") -> UpdateReport | None: ...

    def close(self) -> None: ...


class IndexFollower(BackgroundWorker):
    name = "arka-hcm-search"

    def __init__(
        self,
        updater: Updater,
        tip: Callable[[], str | None],
        *,
        interval_s: float | None = 1.0,
        min_gap_s: float = 0.0,
    ) -> None:
        super().__init__(interval_s=interval_s, log=log)
        self.updater = updater
        self.tip = tip
        self.min_gap_s = min_gap_s
        self._progress = threading.Condition()
        self._urgent = False
        self._rebuild: tuple[str, Path] | None = None
        self._rebuilt_from: Path | None = None
        self._verified = False
        self._last_round = 0.0
        self._closed = threading.Event()
        self.last_report: UpdateReport | None = None

    def hurry(self) -> None:
        """Someone waits for the index: skip the gap between rounds, and run one now."""
        self._urgent = True
        self.wake()

    def request_rebuild(self, reason: str, generation: Path | None) -> None:
        """A reader found the index ``generation`` unreadable: rebuild it, once (readers that
        keep failing on it until the new one is current ask again; they are not heard twice)."""
        if generation is not None and generation != self._rebuilt_from:
            self._rebuild = (reason, generation)
        self.hurry()

    def work(self) -> None:
        gap = self.min_gap_s - (time.monotonic() - self._last_round)
        if gap > 0 and not self._urgent:
            self._closed.wait(gap)  # let more batches land; returns at once when closing
        self._urgent = False
        tip = self.tip()
        try:
            wanted, self._rebuild = self._rebuild, None
            if wanted is not None and tip is not None and self.updater.files.current() == wanted[1]:
                self._rebuilt_from = wanted[1]
                report = self.updater.rebuild(tip, wait_s=30.0, reason=wanted[0])
            else:
                report = self.updater.catch_up(tip, verify=not self._verified)
                self._verified = True
            if report is not None:
                self.last_report = report
        finally:
            self._last_round = time.monotonic()
            with self._progress:
                self._progress.notify_all()

    def wait_progress(self, timeout: float) -> None:
        """Return after this process's next round, or after ``timeout`` (another process may
        be the one updating: the caller looks at the index again either way)."""
        with self._progress:
            self._progress.wait(timeout)

    def close(self, *, final_round: bool = False, timeout: float = 30.0) -> None:
        self._closed.set()
        super().close(final_round=final_round, timeout=timeout)
        self.updater.close()
