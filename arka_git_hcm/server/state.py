"""What one server process holds: the open store, its background custody workers, the token
cache, and why it is not ready when the HCM could not be opened. Routes reach the store only
through :meth:`ServiceState.store`, and the caller only through :meth:`ServiceState.authenticate`."""

from __future__ import annotations

import logging

from fastapi import Request

from ..admin import tokens
from ..clock import Clock
from ..config import Settings, TokenRecord
from ..custody.service import CustodyService
from ..domain.envelope import Caller
from ..errors import HcmError, ReadOnly
from ..search import attach_search
from ..services.store import HcmStore
from .git_routes import presented_token

__all__ = ["ServiceState"]

log = logging.getLogger("arka_git_hcm.server")


class ServiceState:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.tokens = tokens.TokenCache()
        self.problem: str | None = None  # why the HCM is not open
        self.custody: CustodyService | None = None
        self._store: HcmStore | None = None

    def open(self) -> None:
        """Open the store and start its workers (in a thread: it may take a while). A damaged or
        unreadable HCM must not crash-loop the container: the service still starts, /health
        answers, and /ready and every operation say READ_ONLY with the reason."""
        try:
            self._store = HcmStore.open(self.settings, clock=self.clock)
            # follows the writes, updating in a child process (off this process's CPU and GIL)
            attach_search(self._store, updater_process=True, min_gap_s=0.1)
        except HcmError as exc:
            self.problem = f"the HCM could not be opened: {exc.message}"
            log.error("%s", self.problem)
        except Exception as exc:  # anything else: still serve /health and say why not ready
            self.problem = f"the HCM could not be opened ({type(exc).__name__}); see the server log"
            log.exception("%s", self.problem)
        if self._store is not None:  # history index, mirror, scheduled backups: background workers
            self.custody = CustodyService(self._store)
            self.custody.start()

    def close(self) -> None:
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
