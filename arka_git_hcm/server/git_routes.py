"""``/git/hcm.git``: the HCM history over git smart HTTP, fetch only.

The client's Git clones and fetches with a token, given as ``Authorization: Bearer`` or as
the password of HTTP basic auth (any user name) so that ``git clone http://x:TOKEN@host/...``
and credential helpers work. Answers are ``text/plain`` where git shows them to its user
(``remote: ...``). Push, archive and the dumb protocol are refused; everything else under
``/git`` is a 404.

Packs are made by git's own ``upload-pack`` (gitrepo/http_export.py) and streamed from its
pipe to the client as they come. A clone is bounded here:

- at most ``max_fetches`` upload-packs making packs at once per worker process (default 2,
  with ``pack.threads=1`` and nice 10 each: on 2 cores, clones cannot starve the writes), and
  ``max_fetches * 4`` quick ones (ref listings); a request waits up to ``slot_wait_s`` for a
  slot, then gets a 503 with ``Retry-After``;
- the git process group is killed when the client disconnects, or when it stops reading for
  ``stall_timeout_s``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..config import TokenRecord
from ..errors import AccessDenied, HcmError, Unauthenticated
from ..gitrepo import http_export
from ..ids import ROLES
from .bodies import read_body

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
BUSY = "too many clones and fetches at once on this server; retry in a minute.\n"
_FETCH_ROLES = frozenset(ROLES)  # any role may fetch
MAX_FETCHES = 2
SLOT_WAIT_S = 60.0
# A client that stops reading must not pin a git process, a slot and the packs forever.
STALL_TIMEOUT_S = 300.0
_RETRY_AFTER_S = 30

logger = logging.getLogger(__name__)

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


class _Slots:
    """At most ``size`` holders at once, across event loops and threads; a waiter polls (the
    waits are rare and short, and nothing here is bound to one event loop)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held = 0
        self._lock = threading.Lock()

    def _take(self) -> bool:
        with self._lock:
            if self._held >= self.size:
                return False
            self._held += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._held -= 1

    async def acquire(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while not self._take():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


class _PackStream(StreamingResponse):
    """The answer of one git upload-pack, sent as it comes. Ends the git process group when
    the client disconnects (watched on ``receive``: with ASGI 2.3 a send to a gone client
    returns silently), when it stops reading for ``stall_s``, and in any case at the end;
    then gives its slot back."""

    def __init__(self, pack: http_export.UploadPack, release: Callable[[], None], stall_s: float) -> None:
        super().__init__(pack.chunks(), 200, http_export.NO_CACHE_HEADERS, http_export.RESULT_CONTENT_TYPE)
        self.pack = pack
        self.release = release
        self.stall_s = stall_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._send(send)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    close = getattr(self.body_iterator, "aclose", None)
                    if close is not None:
                        await close()
                    await self.pack.aclose()
                finally:
                    self.release()

    async def _send(self, send: Any) -> None:
        try:
            with anyio.fail_after(self.stall_s):
                await send(
                    {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
                )
            async for chunk in self.body_iterator:
                with anyio.fail_after(self.stall_s):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            logger.warning("git upload-pack: the client read nothing for %.0f s; ending it", self.stall_s)
        except OSError:  # ASGI 2.4 servers: a send to a gone client raises
            pass


def _busy(message: str = BUSY) -> Response:
    return _text(503, message, {"Retry-After": str(_RETRY_AFTER_S)})


def _refused(message: str) -> Response:
    # git reads the ERR line of a 200 answer and prints "remote error: ..."
    return Response(
        http_export.error_line(message), 200, http_export.NO_CACHE_HEADERS, http_export.RESULT_CONTENT_TYPE
    )


def git_router(
    repo_path: RepoPathProvider,
    authenticate: RequestAuthenticator,
    *,
    max_request_bytes: int = http_export.MAX_REQUEST_BYTES,
    max_fetches: int = MAX_FETCHES,
    slot_wait_s: float = SLOT_WAIT_S,
    stall_timeout_s: float = STALL_TIMEOUT_S,
    lock_wait_s: float = http_export.LOCK_WAIT_S,
) -> APIRouter:
    """Routes of the read-only git export.

    ``repo_path()`` gives the HCM work tree (or its ``.git``) at each request;
    ``authenticate(request)`` returns the caller's token record or raises Unauthenticated,
    reading the token from ``Authorization: Bearer`` (basic auth is translated to it here).
    ``max_fetches``, ``slot_wait_s``, ``stall_timeout_s``: see the module's docstring;
    ``lock_wait_s``: how long a request waits for a gc to end before a 503.
    """
    router = APIRouter(include_in_schema=False)
    packs = _Slots(max_fetches)  # upload-packs that make packs (v0/v1 POSTs, v2 fetch)
    listings = _Slots(max_fetches * 4)  # quick ones: ref advertisements, v2 ls-refs

    async def guarded(request: Request, answer: Callable[[], Awaitable[Response]]) -> Response:
        try:
            await _caller(request, authenticate)
            return await answer()
        except Unauthenticated as exc:
            return _challenge(exc.message)
        except http_export.MaintenanceBusy as exc:
            return _busy(f"{exc}\n")
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
            # Only the version is read from the header; git gets one of three constants.
            version = http_export.protocol_version(request.headers.get("git-protocol"))
            if not await listings.acquire(slot_wait_s):
                return _busy()
            try:
                body = await run_in_threadpool(
                    http_export.advertisement, repo_path(), version, lock_wait_s=lock_wait_s
                )
            finally:
                listings.release()
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
            raw = await read_body(request, max_request_bytes, "the upload-pack request")
            data = http_export.decode_request_body(
                raw, request.headers.get("content-encoding"), max_request_bytes
            )
            version = http_export.protocol_version(request.headers.get("git-protocol"))
            try:
                command = http_export.request_command(data, version)
            except http_export.Refused as exc:
                return _refused(str(exc))
            slots = packs if command == "fetch" else listings
            if not await slots.acquire(slot_wait_s):
                return _busy()
            try:
                # Shielded: a git started for a request cancelled meanwhile must still reach
                # _PackStream, whose end kills it.
                with anyio.CancelScope(shield=True):
                    pack = await run_in_threadpool(
                        http_export.start_upload_pack, repo_path(), data, version, lock_wait_s=lock_wait_s
                    )
            except http_export.Refused as exc:
                slots.release()
                return _refused(str(exc))
            except BaseException:
                slots.release()
                raise
            return _PackStream(pack, slots.release, stall_timeout_s)

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
