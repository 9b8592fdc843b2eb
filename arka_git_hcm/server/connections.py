"""Connections the service accepts: bounded in number, and in how long their headers may take.

uvicorn arms no timer on a new connection until its first request's headers are complete, and
any byte received cancels its keep-alive timer: a client that opens connections and never
finishes its headers holds a file descriptor each, for ever (20,000 of them exhausted the
server's descriptors in a test). This protocol, a thin subclass of uvicorn's httptools one,
adds what a reverse proxy would otherwise provide:

- a **header deadline**: a request's headers must be complete ``header_timeout_s`` after its
  first byte (or after the connection opened); otherwise the connection is closed;
- a **connection cap**: at ``max_connections`` open connections, the oldest one still waiting
  for its headers is closed to make room (so idle or slow clients cannot lock real ones out);
  when every connection is serving a request, the new one is closed at once.

The limits come from the app (``server.max_connections``, ``server.header_timeout_s`` in the
config, see :func:`limits_of`). A reverse proxy in front (nginx, Traefik) adds TLS and per-client
rate limits; see the README.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "GuardedHttpProtocol", "limits_of"]


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout_s: float = 10.0


def limits_of(app: Any) -> ConnectionLimits:
    """The limits the service's app carries (``connection_limits``), through uvicorn's wrappers."""
    for _ in range(8):
        limits = getattr(app, "connection_limits", None)
        if isinstance(limits, ConnectionLimits):
            return limits
        app = getattr(app, "app", None)
        if app is None:
            break
    return ConnectionLimits()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a connection cap."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self._connection_limits()
        self._awaiting_headers = True
        self._header_timer: asyncio.TimerHandle | None = None
        if len(self.connections) >= limits.max_connections and not self._evict_one():
            self.transport = transport  # connection_lost closes it
            transport.abort()  # every slot serves a request: this one goes, the others stay served
            return
        super().connection_made(transport)
        self._arm(limits)

    def _connection_limits(self) -> ConnectionLimits:
        """Read once per server (kept on uvicorn's server state, shared by its connections)."""
        limits = getattr(self.server_state, "arka_connection_limits", None)
        if not isinstance(limits, ConnectionLimits):
            limits = limits_of(self.app)
            self.server_state.arka_connection_limits = limits  # type: ignore[attr-defined]
        return limits

    def _evict_one(self) -> bool:
        """Close the oldest connection still waiting for its headers; False when there is none."""
        for other in list(self.connections):
            if getattr(other, "_awaiting_headers", False) and other.transport is not None:
                other.transport.abort()
                self.connections.discard(other)
                return True
        return False

    def _arm(self, limits: ConnectionLimits) -> None:
        self._awaiting_headers = True
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        self._awaiting_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            self.transport.abort()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self._connection_limits())  # a next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
