"""``/git/hcm.git``: the HCM history over git smart HTTP, fetch only.

The client's Git clones and fetches with a token, given as ``Authorization: Bearer`` or as
the password of HTTP basic auth (any user name) so that ``git clone http://x:TOKEN@host/...``
and credential helpers work. Answers are ``text/plain`` where git shows them to its user
(``remote: ...``). Push, archive and the dumb protocol are refused; everything else under
``/git`` is a 404.
"""

from __future__ import annotations

import base64
import binascii
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..config import TokenRecord
from ..errors import AccessDenied, HcmError, PayloadTooLarge, Unauthenticated
from ..gitrepo import http_export
from ..ids import ROLES

__all__ = [
    "GIT_BASE",
    "PUSH_REFUSED",
    "REALM",
    "RepoPathProvider",
    "RequestAuthenticator",
    "git_router",
    "presented_token",
]

GIT_BASE = "/git/hcm.git"
REALM = "arka-hcm"
PUSH_REFUSED = (
    "this HCM is read-only over HTTP: push is refused.\n"
    "To copy the history to your own Git, fetch it from here and push from your clone.\n"
)
SMART_ONLY = (
    "only `git clone` / `git fetch` over smart HTTP are served here "
    "(info/refs?service=git-upload-pack, git-upload-pack); archive and dumb HTTP are not.\n"
)
NOT_FOUND = f"not found: the HCM history is served at {GIT_BASE} (fetch only).\n"
_FETCH_ROLES = frozenset(ROLES)  # any role may fetch

RepoPathProvider = Callable[[], Path]
RequestAuthenticator = Callable[[Request], TokenRecord | Awaitable[TokenRecord]]


def presented_token(request: Request) -> str | None:
    """The token a request carries: a Bearer token, or the password of basic auth."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _as_bearer(request: Request) -> Request:
    """The request as the app's one authenticator expects it: ``Authorization: Bearer``.

    git can only send basic auth; translating it here keeps a single token check for the
    whole service instead of a second, git-only one that could drift from it.
    """
    token = presented_token(request)
    headers = [(name, value) for name, value in request.scope["headers"] if name.lower() != b"authorization"]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode("latin-1", "replace")))
    return Request({**request.scope, "headers": headers}, request.receive)


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(message if message.endswith("\n") else message + "\n", status, headers)


def _challenge(message: str) -> Response:
    # Without the challenge git (and its credential helpers) never offer credentials.
    return _text(401, message, {"WWW-Authenticate": f'Basic realm="{REALM}"'})


async def _caller(request: Request, authenticate: RequestAuthenticator) -> TokenRecord:
    # The authenticator stats (and may re-read) the config file: keep it off the event loop.
    outcome = await run_in_threadpool(authenticate, _as_bearer(request))
    record: TokenRecord = await outcome if inspect.isawaitable(outcome) else outcome
    if not _FETCH_ROLES.intersection(record.roles):
        raise AccessDenied(f"token {record.id!r} has no role that may fetch (reader, writer or admin)")
    # For the request log: who fetched, never with what token.
    request.state.caller_id = f"{record.type}/{record.id}"
    return record


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes before it is all in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"upload-pack request larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"upload-pack request larger than {limit} bytes")
        parts.append(part)
    return b"".join(parts)


async def _iterate(chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """Pull the pack stream in a worker thread; closing it on disconnect stops the writer."""
    try:
        while True:
            part = await run_in_threadpool(next, chunks, None)
            if part is None:
                return
            yield part
    finally:
        chunks.close()


def git_router(
    repo_path: RepoPathProvider,
    authenticate: RequestAuthenticator,
    *,
    max_request_bytes: int = http_export.MAX_REQUEST_BYTES,
) -> APIRouter:
    """Routes of the read-only git export.

    ``repo_path()`` gives the HCM work tree (or its ``.git``) at each request;
    ``authenticate(request)`` returns the caller's token record or raises Unauthenticated,
    reading the token from ``Authorization: Bearer`` (basic auth is translated to it here).
    """
    router = APIRouter(include_in_schema=False)

    async def guarded(request: Request, answer: Callable[[], Awaitable[Response]]) -> Response:
        try:
            await _caller(request, authenticate)
            return await answer()
        except Unauthenticated as exc:
            return _challenge(exc.message)
        except HcmError as exc:
            # git shows a text/plain body to its user as "remote: ..."; JSON would be noise.
            return _text(exc.http_status, exc.message)

    @router.get(f"{GIT_BASE}/info/refs")
    async def info_refs(request: Request, service: str | None = None) -> Response:
        if service == "git-receive-pack":
            return _text(403, PUSH_REFUSED)
        if service != http_export.SERVICE:
            return _text(403, SMART_ONLY)

        async def answer() -> Response:
            body = await run_in_threadpool(http_export.advertise_upload_pack, repo_path())
            return Response(body, 200, http_export.NO_CACHE_HEADERS, http_export.ADVERTISEMENT_CONTENT_TYPE)

        return await guarded(request, answer)

    @router.post(f"{GIT_BASE}/git-upload-pack")
    async def upload_pack(request: Request) -> Response:
        async def answer() -> Response:
            # The exact type, as git http-backend requires: a browser cannot send it
            # cross-site without a CORS preflight, so a page cannot drive a fetch with the
            # basic-auth credentials its browser cached.
            if request.headers.get("content-type") != http_export.REQUEST_CONTENT_TYPE:
                return _text(415, f"Content-Type must be {http_export.REQUEST_CONTENT_TYPE}")
            raw = await _read_body(request, max_request_bytes)
            data = http_export.decode_request_body(
                raw, request.headers.get("content-encoding"), max_request_bytes
            )
            chunks = await run_in_threadpool(http_export.upload_pack, repo_path(), data)
            return StreamingResponse(
                _iterate(chunks), 200, http_export.NO_CACHE_HEADERS, http_export.RESULT_CONTENT_TYPE
            )

        return await guarded(request, answer)

    @router.post(f"{GIT_BASE}/git-receive-pack")
    async def receive_pack() -> Response:
        return _text(403, PUSH_REFUSED)

    @router.post(f"{GIT_BASE}/git-upload-archive")
    async def upload_archive() -> Response:
        return _text(403, SMART_ONLY)

    @router.api_route(
        "/git/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    )
    async def elsewhere(rest: str) -> Response:
        # HEAD, objects/*, info/packs...: the dumb protocol would hand out repository files.
        return _text(404, NOT_FOUND)

    return router
