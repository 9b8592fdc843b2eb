"""What one server process holds: the open store, its background custody workers, the token
cache, and why it is not ready when the HCM could not be opened. Routes reach the store only
through :meth:`ServiceState.store`, and the caller only through :meth:`ServiceState.authenticate`."""

from __future__ import annotations

import contextlib
import logging

from fastapi import Request

from ..admin import tokens
from ..clock import Clock
from ..config import Settings, TokenRecord
from ..custody.service import CustodyService
from ..domain.envelope import Caller
from ..errors import HcmError, ReadOnly
from ..search import SERVER_ROUND_GAP_S, attach_search
from ..services.store import HcmStore
from ..worker import BackgroundWorker
from .git_routes import presented_token

__all__ = ["OPEN_RETRY_S", "ServiceState"]

log = logging.getLogger("arka_git_hcm.server")

OPEN_RETRY_S = 5.0  # while the HCM cannot be opened, the server tries again this often


class _OpenRetry(BackgroundWorker):
    """Tries to open the HCM again while it cannot be (a volume mounted read-only then made
    writable, a repository restored in place): the service becomes ready without a restart."""

    name = "arka-hcm-open-retry"

    def __init__(self, state: ServiceState) -> None:
        super().__init__(interval_s=OPEN_RETRY_S, log=log)
        self.state = state

    def work(self) -> None:
        if not self.state.is_open():
            self.state.try_open()


class ServiceState:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.tokens = tokens.TokenCache()
        self.problem: str | None = None  # why the HCM is not open
        self.custody: CustodyService | None = None
        self._store: HcmStore | None = None
        self._retry: _OpenRetry | None = None

    def open(self) -> None:
        """Open the store and start its workers (in a thread: it may take a while). A damaged or
        unreadable HCM must not crash-loop the container: the service still starts, /health
        answers, and /ready and every operation say READ_ONLY with the reason, while it tries
        again every OPEN_RETRY_S seconds."""
        self.try_open()
        if not self.is_open():
            self._retry = _OpenRetry(self)
            self._retry.start()

    def is_open(self) -> bool:
        return self._store is not None

    def try_open(self) -> None:
        store = None
        try:
            store = HcmStore.open(self.settings, clock=self.clock)
            # follows the writes, updating in a child process (off this process's CPU and GIL)
            attach_search(store, updater_process=True, min_gap_s=SERVER_ROUND_GAP_S)
        except Exception as exc:  # anything else: still serve /health and say why not ready
            if store is not None:  # opened, but search could not follow it: not half open
                with contextlib.suppress(Exception):
                    store.close()
            if isinstance(exc, HcmError):
                self._not_opened(f"the HCM could not be opened: {exc.message}")
            else:
                reason = f"the HCM could not be opened ({type(exc).__name__}); see the server log"
                self._not_opened(reason, exc)
            return
        # history index, mirror, scheduled backups: background workers, started before the
        # store is handed to the routes
        custody = CustodyService(store)
        custody.start()
        self.custody, self._store = custody, store
        if self.problem is not None:
            log.warning("the HCM is open now (it could not be before: %s)", self.problem)
            self.problem = None

    def _not_opened(self, reason: str, exc: Exception | None = None) -> None:
        if reason != self.problem:  # retries log a reason once, not every few seconds
            log.error("%s", reason, exc_info=exc)
        self.problem = reason

    def close(self) -> None:
        if self._retry is not None:
            self._retry.close(final_round=False)
        if self.custody is not None:
            self.custody.close()
        if self._store is not None:
            self._store.close()

    def not_open(self) -> ReadOnly:
        return ReadOnly(self.problem or "the HCM is not open yet; retry shortly")

    def store(self) -> HcmStore:
        if self._store is None:
            raise self.not_open()
        return self._store

    def authenticate(self, request: Request) -> TokenRecord:
        """The token's record (UNAUTHENTICATED otherwise); the request log names its identity."""
        record = tokens.authenticate(self.tokens.load(self.settings), presented_token(request))
        request.state.caller_id = f"{record.type}/{record.id}"
        return record

    @staticmethod
    def caller_of(record: TokenRecord) -> Caller:
        """The caller of every request is its token's identity, with the token's roles."""
        return Caller(type=record.type, id=record.id, roles=list(record.roles))
