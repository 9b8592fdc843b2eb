"""The request log (``server.jsonl``): one JSON line per request, as ASGI middleware."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ..services.oplog import JsonLinesLog

__all__ = ["RequestLog"]


class RequestLog:
    """One JSON line per request: method, route, status, duration, request id, caller id.
    Never bodies, never tokens, never the Authorization header."""

    def __init__(self, app: Any, log: JsonLinesLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        scope.setdefault("state", {})

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            state = scope.get("state", {})
            self.log.write(
                {
                    "time": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                    "method": scope.get("method"),
                    "route": getattr(route, "path", None) or _safe_path(scope.get("path", "")),
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "request_id": state.get("request_id"),
                    "caller": state.get("caller_id"),
                }
            )


def _safe_path(path: str) -> str:
    """Unknown routes are logged by shape only (a path could carry anything, even a token)."""
    return path[:80].split("?")[0] if path.startswith(("/v1/", "/git/", "/health", "/ready")) else "(other)"
