"""The routes of the HTTP service, each a thin face of the operation layer: authenticate, build
the envelope, ``HcmStore.execute_async``, render the response."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..errors import AccessDenied, HcmError, ReadOnly
from .bodies import read_body
from .rendering import error_json, response_json
from .state import ServiceState

__all__ = ["EXECUTE_PATH", "add_health_routes", "add_operation_routes", "add_read_routes"]

EXECUTE_PATH = "/v1/hcm/execute"

log = logging.getLogger("arka_git_hcm.server")


def add_health_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/health", tags=["health"])
    def health() -> dict[str, Any]:
        """Alive (no auth)."""
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["health"])
    def ready() -> JSONResponse:
        """Ready to take writes: the repository is open, its history readable, the volume takes a
        file (tried for real). Details list hand edits kept out of history; 503 READ_ONLY says why
        not, with what to do."""
        try:
            health = state.store().health()
        except HcmError as exc:
            return error_json(exc)
        details = dict(health["details"])
        if state.custody is not None:  # last backup, mirror lag, history index: never fail readiness
            try:
                details.update(state.custody.ready_details())
            except Exception:
                log.exception("custody details failed")
                details["custody"] = {"error": "custody details unavailable; see the server log"}
        if not health["ready"]:
            problem = ReadOnly("; ".join(health["problems"]), {"details": details})
            return error_json(problem, revision=health["revision"])
        return JSONResponse({"status": "ready", "revision": health["revision"], "details": details})

    @app.post("/v1/admin/backup", tags=["admin"])
    async def admin_backup(request: Request) -> JSONResponse:
        """Take a full backup now into the configured backup folder (admin token)."""
        record = state.authenticate(request)
        if "admin" not in record.roles:
            raise AccessDenied("taking a backup needs the admin role")
        state.store()
        if state.custody is None:
            raise state.not_open()
        manifest = await run_in_threadpool(state.custody.backup_now)
        return JSONResponse({"status": "ok", "backup": manifest})


def add_operation_routes(app: FastAPI, state: ServiceState) -> None:
    limit = state.settings.file.limits.max_envelope_bytes

    @app.post(EXECUTE_PATH, tags=["operations"])
    async def execute(request: Request) -> JSONResponse:
        """Run one operation envelope `{op, request_id, caller, payload}` as the token's caller;
        answers `{request_id, op, status, data, error, revision}`."""
        record = state.authenticate(request)
        body = await read_body(request, limit)
        response = await state.store().execute_async(
            body, caller=state.caller_of(record), offload=run_in_threadpool
        )
        request.state.request_id = response.get("request_id")
        return response_json(response)


def add_read_routes(app: FastAPI, state: ServiceState) -> None:
    async def run_read(request: Request, op: str, payload: dict[str, Any]) -> JSONResponse:
        caller = state.caller_of(state.authenticate(request))
        envelope = {
            "op": op,
            "request_id": f"http-{uuid.uuid4().hex[:16]}",
            "caller": caller.model_dump(),
            "payload": payload,
        }
        request.state.request_id = envelope["request_id"]
        response = await state.store().execute_async(envelope, caller=caller, offload=run_in_threadpool)
        return response_json(response)

    @app.get("/v1/missions", tags=["reads"])
    async def list_missions(
        request: Request, status: str | None = None, client_id: str | None = None, at: str | None = None
    ) -> JSONResponse:
        """HCM_LIST_MISSIONS."""
        filters = {k: v for k, v in {"status": status, "client_id": client_id}.items() if v}
        payload: dict[str, Any] = {"filters": filters} | ({"at": at} if at else {})
        return await run_read(request, "HCM_LIST_MISSIONS", payload)

    @app.get("/v1/missions/{mission_id}/context", tags=["reads"])
    async def mission_context(
        request: Request,
        mission_id: str,
        include_last_entries: int = Query(10, ge=0),
        include_decisions: bool = False,
        include_next_actions: bool = False,
        at: str | None = None,
    ) -> JSONResponse:
        """HCM_GET_MISSION_CONTEXT."""
        payload: dict[str, Any] = {
            "mission_id": mission_id,
            "options": {
                "include_last_entries": include_last_entries,
                "include_decisions": include_decisions,
                "include_next_actions": include_next_actions,
            },
        } | ({"at": at} if at else {})
        return await run_read(request, "HCM_GET_MISSION_CONTEXT", payload)

    @app.get("/v1/missions/{mission_id}/decisions", tags=["reads"])
    async def decisions(
        request: Request, mission_id: str, status: str | None = None, at: str | None = None
    ) -> JSONResponse:
        """HCM_GET_DECISIONS."""
        payload: dict[str, Any] = {
            "mission_id": mission_id,
            "filters": {"status": status} if status else {},
        } | ({"at": at} if at else {})
        return await run_read(request, "HCM_GET_DECISIONS", payload)

    @app.get("/v1/search", tags=["reads"])
    async def search(
        request: Request,
        q: str = Query(..., min_length=1, max_length=500),
        mission_id: str | None = None,
        layer: list[str] = Query([]),
        limit: int = Query(10, ge=1, le=100),
        consistent: bool = False,
    ) -> JSONResponse:
        """HCM_SEARCH: `?q=décision budget&mission_id=acme-crm&layer=state&limit=10`."""
        scope: dict[str, Any] = {"mission_id": mission_id} if mission_id else {}
        if layer:
            scope["layers"] = layer
        payload = {"query": q, "scope": scope, "limit": limit, "consistent": consistent}
        return await run_read(request, "HCM_SEARCH", payload)
