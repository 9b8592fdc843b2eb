"""Mirror mode: the service pushes to the client's Git after commits, in the background.

The store wakes the worker after each batch lands (a landing listener: a flag and a notify, so
a write never waits for the network); the worker also looks at the tip every
``mirror.interval_s`` for commits other processes made. Wakes that arrive during a push are
folded into one more push (batching). A failed push (remote down, diverged) is logged, kept
in the state file, and retried with a back-off doubling up to ``mirror.max_backoff_s``; writes
go on meanwhile. The lag (commits and seconds behind) is in ``/ready`` details and
``arka-hcm remote status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..clock import iso_seconds
from ..config import Settings
from ..errors import HcmError
from ..gitrepo.gitcli import run_git
from ..worker import BackgroundWorker
from .remotes import push_to_remote
from .state import custody_dir, load_state, runner_lock, save_state

__all__ = ["MirrorWorker", "mirror_report"]

log = logging.getLogger("arka_git_hcm.mirror")
LAG_COUNT_CAP = 100_000
MIN_GAP_S = 1.0  # at most one push a second: commits landing meanwhile go in the next push


def _state_path(settings: Settings) -> Path:
    return custody_dir(settings.hcm_path) / "mirror.json"


class MirrorWorker(BackgroundWorker):
    name = "arka-hcm-mirror"

    def __init__(
        self, settings: Settings, tip: Callable[[], str | None], clock: Callable[[], float] = time.time
    ):
        mirror = settings.file.mirror
        super().__init__(interval_s=mirror.interval_s, max_backoff_s=mirror.max_backoff_s, log=log)
        self.settings = settings
        self.tip = tip
        self.clock = clock
        self.pushes = 0
        self._last_push = 0.0

    def on_landing(self, _tip: str, _paths: list[str]) -> None:
        self.wake()

    def work(self) -> None:
        path = _state_path(self.settings)
        with runner_lock(path.with_suffix(".lock")) as mine:
            if not mine:
                return  # another process of the service mirrors
            state = load_state(path)
            tip = self.tip()
            if tip is None or tip == state.get("pushed_tip"):
                if state.get("behind_since") is not None:
                    save_state(path, state | {"behind_since": None})
                return
            wait = MIN_GAP_S - (time.monotonic() - self._last_push)
            if wait > 0 and not self.closing:
                time.sleep(wait)  # wakes arriving meanwhile are folded into this push
            self._last_push = time.monotonic()
            tip = self.tip() or tip
            now = self.clock()
            state.setdefault("behind_since", now)
            state["behind_since"] = state["behind_since"] or now
            state["last_attempt_at"] = iso_seconds(now)
            try:
                push_to_remote(self.settings, self.settings.file.mirror.remote)
            except HcmError as exc:
                state["last_error"] = exc.message[:500]
                state["failures"] = int(state.get("failures", 0)) + 1
                save_state(path, state)
                log.error("mirror push to %s failed: %s", self.settings.file.mirror.remote, exc.message)
                raise
            self.pushes += 1
            state |= {
                "pushed_tip": tip,
                "last_push_at": iso_seconds(self.clock()),
                "last_error": None,
                "failures": 0,
            }
            if self.tip() == tip:
                state["behind_since"] = None
            save_state(path, state)
            log.info("mirrored %s to %s", tip[:12], self.settings.file.mirror.remote)


def mirror_report(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """The mirror's lag for /ready and `remote status`: commits and seconds behind."""
    mirror = settings.file.mirror
    if not mirror.enabled:
        return {"enabled": False}
    state = load_state(_state_path(settings))
    hcm = Path(settings.hcm_path)
    tip = run_git(hcm, "rev-parse", "--verify", "-q", f"refs/heads/{settings.file.store.branch}", check=False)
    head = tip.stdout.decode().strip() or None
    pushed = state.get("pushed_tip")
    commits: int | None = 0
    seconds: float | None = 0.0
    if head is None or head == pushed:
        pass
    else:
        span = [head] + ([f"^{pushed}"] if pushed else [])
        counted = run_git(hcm, "rev-list", "--count", f"--max-count={LAG_COUNT_CAP}", *span, check=False)
        commits = int(counted.stdout.decode().strip() or 0) if counted.returncode == 0 else None
        since = state.get("behind_since")
        seconds = round((now or time.time()) - since, 1) if since else None
    return {
        "enabled": True,
        "remote": mirror.remote,
        "pushed_tip": pushed,
        "lag_commits": commits,
        "lag_commits_capped": commits == LAG_COUNT_CAP,
        "lag_seconds": seconds,
        "last_push_at": state.get("last_push_at"),
        "last_error": state.get("last_error"),
        "failures": state.get("failures", 0),
    }
