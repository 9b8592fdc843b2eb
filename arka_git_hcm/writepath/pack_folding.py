"""Keeping the pack folder small while writes go on.

Each batch writes one pack. Every PACKS_BEFORE_REPACK of them, a background worker folds this
process's newest packs into one from the objects it still holds, compressed (GitRepo.
fold_own_packs: a geometric series, each version of a journal a delta of the previous one), and
when more than GIT_REPACK_ABOVE packs pile up (other processes' packs, folds this process let go
of) it has git fold the smallest of them (a geometric series, see GitRepo.repack). Writers go on
meanwhile: every write of those batches is acknowledged already. When folding falls behind (a
busy CPU: a long run once reached 673 packs and ran out of descriptors), the writer waits for it
once PACKS_BACKPRESSURE packs are waiting, so packs stay bounded. At close, more than
PACKS_AT_CLOSE packs (CLI runs write one each) are folded.
"""

from __future__ import annotations

import contextlib
import logging
import time

from ..gitrepo import GitRepo
from ..worker import BackgroundWorker

__all__ = ["PackFolding"]

log = logging.getLogger("arka_git_hcm.engine")

PACKS_BEFORE_REPACK = 16  # packs (one per batch) this process writes between two folds
PACKS_BACKPRESSURE = 64  # packs written while a fold still runs: the writer waits for it
GIT_REPACK_ABOVE = 24  # packs in the folder (folds, other processes' packs) that make git repack
PACKS_AT_CLOSE = 32  # at close, more packs than this are folded


class PackFolding(BackgroundWorker):
    name = "arka-hcm-repack"

    def __init__(self, repo: GitRepo) -> None:
        super().__init__(log=log)
        self.repo = repo

    def after_batch(self) -> None:
        """Called by the writer after each landed batch, before its writes are acknowledged (under
        the store's lock)."""
        written = self.repo.packs_written
        if written < PACKS_BEFORE_REPACK or self.closing:
            return
        if not self.running():
            self.repo.packs_written = 0
            self.wake()
            return
        if written >= PACKS_BACKPRESSURE:
            log.info("folding packs fell behind (%d waiting): the writer waits for it", written)
            self.wait_idle(600.0)

    def work(self) -> None:
        started = time.perf_counter()
        try:
            self.repo.fold_own_packs()
            if self.repo.pack_count() > GIT_REPACK_ABOVE:
                self.repo.repack()
        except FileNotFoundError:
            log.warning("the git binary is missing: small packs are not folded; install git")
        except Exception:  # derived layout only: the next attempt, or `arka-hcm gc`, folds them
            log.warning("folding small packs failed; it will be retried", exc_info=True)
        else:
            log.debug("folded small packs in %.0f ms", (time.perf_counter() - started) * 1000)

    def has_pending(self) -> bool:
        with contextlib.suppress(OSError):
            return self.repo.pack_count() > PACKS_AT_CLOSE
        return False

    def close(self, *, final_round: bool = True, timeout: float = 600.0) -> None:
        super().close(final_round=final_round, timeout=timeout)
