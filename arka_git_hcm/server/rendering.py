"""One JSON shape for every answer: the contract's response envelope, with the HTTP status of its
error code (and ``Retry-After`` for BUSY, ``WWW-Authenticate`` for UNAUTHENTICATED), whatever
failed (an operation, a bad query parameter, an unknown route, a crash)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import HcmError, InternalError, InvalidPayload, NotFound, error_for_code
from ..services.responses import error_response

__all__ = ["error_json", "install_error_handlers", "response_json"]


def error_json(
    error: HcmError, request_id: str | None = None, op: str | None = None, revision: str | None = None
) -> JSONResponse:
    body = error_response({"request_id": request_id, "op": op}, error, revision)
    headers = {"Retry-After": str(getattr(error, "retry_after", 1))} if error.code == "BUSY" else None
    if error.code == "UNAUTHENTICATED":
        headers = {"WWW-Authenticate": 'Bearer realm="arka-hcm"'}
    return JSONResponse(body, status_code=error.http_status, headers=headers)


def response_json(response: dict[str, Any]) -> JSONResponse:
    """An operation's response envelope, with the HTTP status of its error code."""
    if response["status"] == "ok":
        return JSONResponse(response)
    error = error_for_code(response["error"]["code"])
    headers = None
    if response["error"]["code"] == "BUSY":
        headers = {"Retry-After": str(response["error"]["details"].get("retry_after", 1))}
    return JSONResponse(response, status_code=error.http_status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HcmError)
    async def on_hcm_error(request: Request, exc: HcmError) -> JSONResponse:
        return error_json(exc, getattr(request.state, "request_id", None))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return error_json(InvalidPayload("invalid request parameters", {"errors": problems}))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_json(NotFound(f"no route {request.url.path[:100]!r}; the routes are in the README"))
        error = (
            InvalidPayload(f"{request.method} is not allowed here")
            if exc.status_code == 405
            else InternalError(str(exc.detail))
        )
        response = error_json(error)
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        return error_json(InternalError("the request failed unexpectedly; see the server log"))
