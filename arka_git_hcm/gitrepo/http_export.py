"""Read-only git smart-HTTP export of the HCM repository, built on dulwich's upload-pack.

Plain functions, bytes in and bytes out, so the HTTP front-end stays a thin router:

- :func:`advertise_upload_pack` answers ``GET info/refs?service=git-upload-pack``;
- :func:`decode_request_body` undoes the gzip git applies to large requests, with a size cap;
- :func:`upload_pack` answers ``POST git-upload-pack`` as a stream of chunks.

What dulwich's ``HTTPGitApplication`` offers by default and this export does not:

- ``git-receive-pack`` (push) and ``git-upload-archive``: only the upload-pack handler exists
  here, there is no table of services a query string could select from;
- the dumb protocol (``HEAD``, ``info/refs`` without a service, ``objects/info/packs``,
  loose objects, pack and idx files, alternates): no function serves files of the repository;
- refs outside ``HEAD``, ``refs/heads/*`` and ``refs/tags/*`` are neither advertised nor
  wantable (remote-tracking refs of ``arka-hcm push``, stash, anything internal);
- the ``filter`` capability (partial clone): dulwich only serves wants at advertised tips, so
  the lazy fetch of a missing blob would fail later; clients fall back to a full clone.

Protocol: v0/v1 stateless RPC. dulwich implements protocol v2 only as a client; a modern git
asking for v2 (``Git-Protocol: version=2``) gets a v0 advertisement and negotiates v0.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Generator, Iterable
from io import BytesIO
from pathlib import Path

from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.objects import ObjectID
from dulwich.protocol import CAPABILITY_FILTER, ReceivableProtocol, pkt_line
from dulwich.refs import Ref
from dulwich.repo import Repo
from dulwich.server import Backend, BackendRepo, UploadPackHandler

from ..errors import InvalidPayload, NotFound, PayloadTooLarge

__all__ = [
    "ADVERTISEMENT_CONTENT_TYPE",
    "MAX_REQUEST_BYTES",
    "NO_CACHE_HEADERS",
    "REQUEST_CONTENT_TYPE",
    "RESULT_CONTENT_TYPE",
    "SERVICE",
    "advertise_upload_pack",
    "decode_request_body",
    "upload_pack",
]

logger = logging.getLogger(__name__)

SERVICE = "git-upload-pack"
ADVERTISEMENT_CONTENT_TYPE = "application/x-git-upload-pack-advertisement"
REQUEST_CONTENT_TYPE = "application/x-git-upload-pack-request"
RESULT_CONTENT_TYPE = "application/x-git-upload-pack-result"
# Refs and negotiation answers change with every write: a proxy must never serve them stale.
NO_CACHE_HEADERS = {
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
    "Pragma": "no-cache",
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
}
# A request is want/have lines (~50 bytes each), re-sent whole at every stateless round;
# 32 MiB is far beyond a real negotiation and bounds what one caller can make us hold.
MAX_REQUEST_BYTES = 32 * 1024 * 1024

_EXPORTED_PREFIXES = (b"refs/heads/", b"refs/tags/")
_QUEUE_CHUNKS = 64  # bounded: a slow reader slows the pack writer instead of filling memory
_COALESCE_BYTES = 64 * 1024
# A client that stops reading must not pin a thread and open pack files forever.
_STALL_TIMEOUT_S = 300.0


def _is_exported(name: bytes) -> bool:
    return name == b"HEAD" or name.startswith(_EXPORTED_PREFIXES)


class _ExportedRepo(Repo):
    """The repository as a fetching client may see it: HEAD, branches and tags only.

    dulwich advertises, and accepts wants for, exactly what ``get_refs`` returns, so hiding a
    ref here also makes its objects unreachable for the client.
    """

    def __init__(self, root: str) -> None:
        super().__init__(root)
        all_symrefs = self.refs.get_symrefs
        # The advertisement lists symrefs as capabilities (symref=A:B); keep hidden names out.
        self.refs.get_symrefs = lambda: {  # type: ignore[method-assign]
            name: target for name, target in all_symrefs().items() if _is_exported(name)
        }

    def get_refs(self) -> dict[Ref, ObjectID]:
        return {name: sha for name, sha in super().get_refs().items() if _is_exported(name)}


class _OneRepoBackend(Backend):
    """Serves the one repository whatever path the protocol names: no lookup by URL path,
    so no request can make the server open another directory."""

    def __init__(self, repo: _ExportedRepo) -> None:
        self._repo = repo

    def open_repository(self, path: str) -> BackendRepo:
        return self._repo


class _ReadOnlyUploadPack(UploadPackHandler):
    def capabilities(self) -> list[bytes]:
        return [cap for cap in super().capabilities() if cap != CAPABILITY_FILTER]


def _open(repo_path: Path) -> _ExportedRepo:
    try:
        return _ExportedRepo(str(repo_path))
    except NotGitRepository:
        raise NotFound("the HCM repository is missing; run `arka-hcm init` on the server") from None


def advertise_upload_pack(repo_path: Path) -> bytes:
    """The body of ``GET info/refs?service=git-upload-pack`` (a few bytes per ref)."""
    out = BytesIO()
    proto = ReceivableProtocol(BytesIO().read, out.write)
    proto.write_pkt_line(f"# service={SERVICE}\n".encode("ascii"))
    proto.write_pkt_line(None)
    with _open(repo_path) as repo:
        handler = _ReadOnlyUploadPack(
            _OneRepoBackend(repo), ["/"], proto, stateless_rpc=True, advertise_refs=True
        )
        handler.handle()
    return out.getvalue()


def decode_request_body(
    body: bytes, content_encoding: str | None, max_bytes: int = MAX_REQUEST_BYTES
) -> bytes:
    """The upload-pack request as sent before transfer compression.

    git gzips requests above a few kB. The inflated size is capped: a gzip bomb of a few kB
    would otherwise expand to gigabytes in memory.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        data = body
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, max_bytes + 1)
        except zlib.error:
            raise InvalidPayload("the request body is not valid gzip") from None
        if len(data) <= max_bytes and not inflater.eof:
            raise InvalidPayload("the gzip request body is truncated")
    else:
        raise InvalidPayload(f"unsupported Content-Encoding {content_encoding!r}: use gzip or none")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"upload-pack request larger than {max_bytes} bytes")
    return data


class _ClientGone(Exception):
    """Raised inside the pack writer to unwind dulwich when nobody reads the answer."""


_END = object()


def upload_pack(repo_path: Path, request: bytes) -> Generator[bytes, None, None]:
    """The chunks of the ``POST git-upload-pack`` answer to ``request`` (already decoded).

    The repository is opened now, so a missing one is an error before any byte is sent
    (opening holds no file descriptor, packs open lazily: an answer never iterated leaks
    nothing).
    dulwich writes through a callback; it runs in its own thread and hands chunks over a
    bounded queue, so the answer streams and memory stays flat whatever the pack size.
    """
    repo = _open(repo_path)
    return _stream(repo, request)


def _stream(repo: _ExportedRepo, request: bytes) -> Generator[bytes, None, None]:
    chunks: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    stop = threading.Event()

    def put(item: object) -> None:
        deadline = time.monotonic() + _STALL_TIMEOUT_S
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                if time.monotonic() > deadline:
                    stop.set()
        raise _ClientGone

    def write(data: bytes) -> int:
        put(bytes(data))
        return len(data)

    def run() -> None:
        tail: bytes | None = None
        try:
            proto = ReceivableProtocol(BytesIO(request).read, write)
            _ReadOnlyUploadPack(_OneRepoBackend(repo), ["/"], proto, stateless_rpc=True).handle()
        except _ClientGone:
            return
        except GitProtocolError as exc:
            # A malformed or hostile request (a want that is not an advertised tip, a cut body):
            # git prints an ERR line as "remote error: ...".
            tail = pkt_line(f"ERR upload-pack: {exc}".encode("utf-8", "replace")[:1000])
        except Exception:
            logger.exception("upload-pack failed")
            tail = pkt_line(b"ERR upload-pack: internal error, see the server log")
        finally:
            repo.close()
        try:
            if tail is not None:
                put(tail)
            put(_END)
        except _ClientGone:
            pass

    thread = threading.Thread(target=run, name="hcm-upload-pack", daemon=True)
    thread.start()
    try:
        yield from _drain(chunks, thread)
    finally:
        # Reached on normal end and when the server drops the iterator (client hung up).
        stop.set()


def _next_item(chunks: queue.Queue[object], writer: threading.Thread) -> object:
    while True:
        try:
            return chunks.get(timeout=1.0)
        except queue.Empty:
            # The writer gave up (stalled reader) without an end marker: end here rather
            # than wait forever.
            if not writer.is_alive() and chunks.empty():
                return _END


def _drain(chunks: queue.Queue[object], writer: threading.Thread) -> Iterable[bytes]:
    """Yield the queued chunks, joining small ones (pkt-lines, ACKs) into fewer writes."""
    while True:
        item = _next_item(chunks, writer)
        if item is _END:
            return
        assert isinstance(item, bytes)
        batch = [item]
        size = len(item)
        ended = False
        while size < _COALESCE_BYTES:
            try:
                more = chunks.get_nowait()
            except queue.Empty:
                break
            if more is _END:
                ended = True
                break
            assert isinstance(more, bytes)
            batch.append(more)
            size += len(more)
        yield b"".join(batch)
        if ended:
            return
