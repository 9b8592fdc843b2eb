"""Read-only git smart-HTTP export of the HCM repository, served by git's own upload-pack.

The HTTP front-end stays a thin router; this module decides what may be asked and starts
``git upload-pack --stateless-rpc`` (the program ``git http-backend`` runs for a fetch;
gitrepo/upload_pack.py runs the child and streams its answer):

- :func:`advertisement` answers ``GET info/refs?service=git-upload-pack`` (``--advertise-refs``);
- :func:`decode_request_body` undoes the gzip git applies to large requests, with a size cap;
- :func:`start_upload_pack` answers ``POST git-upload-pack``: an :class:`UploadPack` whose
  output is read from the child's pipe chunk by chunk, never held whole (a clone of a
  million commits is a pack of about 1 GB).

Protocol v0, v1 and v2 (the client's ``Git-Protocol`` header; git asks for v2 by default).
It replaces dulwich's upload-pack, which builds the pack in Python: a clone of 1,000,000
commits did not finish in an hour where ``git upload-pack`` took 433 s (issue 13).

What the export guarantees, and how:

- **read-only by construction**: the only program ever started is ``git upload-pack`` (and,
  for the v2 checks below, ``for-each-ref``, ``rev-parse``, ``cat-file`` and ``rev-list``),
  command lines built from constants and the repository path; there is no receive-pack or
  upload-archive path to select, whatever the URL or query string. The repository is the one
  ``repo_path`` names, never a path taken from the request;
- **no dumb protocol**: no function serves files of the repository (``HEAD``, objects, packs);
- **what a client sees and may want**: ``HEAD``, ``refs/heads/*`` and ``refs/tags/*``.
  ``uploadpack.hideRefs`` hides every other ref (remote-tracking refs of ``arka-hcm push``,
  anything internal) from the advertisement and ``ls-refs``; in v0/v1 git itself refuses a
  want no exported ref reaches. Protocol v2 checks no wants at all (any object in the
  repository could be fetched by id), so a v2 request is checked here before git sees it:
  only the ``ls-refs`` and ``fetch`` commands, and every want must be an exported tip or a
  commit an exported tip reaches, as git checks v0 stateless requests (a tip may move between
  ``ls-refs`` and ``fetch`` while agents write). The ``object-info`` command (sizes of any
  object) is neither advertised nor served;
- **no partial clone**: ``uploadpack.allowFilter`` stays off (a lazy fetch of a single blob
  by id would need a want that is not a commit);
- **hermetic**: see gitrepo/upload_pack.py (pinned ``-c`` settings, an allow-listed
  environment: no token, no header reaches git);
- **packs stay put under a clone**: the maintenance lock (``gitbin.maintenance_lock``) is taken
  *shared* before git starts and its descriptor is handed to the child, so it is held exactly
  as long as git (and the pack-objects it starts) runs: a fold or a repack, which take it
  exclusive without waiting, skip their turn; a gc waits; none deletes a pack a clone reads.
  A request that finds a gc running waits up to ``lock_wait_s``, then gets MaintenanceBusy;
- **bounded**: one core at most per clone, at a lower CPU priority; the git process group is
  killed when the answer is abandoned (:meth:`UploadPack.aclose`).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidPayload, IoError, NotFound, PayloadTooLarge
from . import gitbin
from .upload_pack import (
    UploadPack,
    child_env,
    error_line,
    kill_group,
    pkt_line,
    run_check,
    spawn,
    tail,
    upload_pack_command,
)

__all__ = [
    "ADVERTISEMENT_CONTENT_TYPE",
    "LOCK_WAIT_S",
    "MAX_REQUEST_BYTES",
    "NO_CACHE_HEADERS",
    "REQUEST_CONTENT_TYPE",
    "RESULT_CONTENT_TYPE",
    "SERVICE",
    "MaintenanceBusy",
    "Refused",
    "UploadPack",
    "advertisement",
    "decode_request_body",
    "error_line",
    "protocol_version",
    "request_command",
    "start_upload_pack",
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
# How long a request waits for a gc (which holds the maintenance lock exclusive) to end.
LOCK_WAIT_S = 600.0

_EXPORTED = ("refs/heads/", "refs/tags/")
# v2 capabilities advertised (and commands served): object-info, bundle-uri and whatever a
# newer git adds are not.
_V2_ADVERTISED = frozenset({b"version 2", b"agent", b"ls-refs", b"fetch", b"server-option", b"object-format"})
_V2_COMMANDS = ("ls-refs", "fetch")
_ADVERTISE_TIMEOUT_S = 120.0
_POLL_S = 0.2


class Refused(Exception):
    """A request the export does not serve; sent to git as an ``ERR`` line (``remote error:``)."""


class MaintenanceBusy(Exception):
    """A gc held the maintenance lock for longer than the request may wait."""


@dataclass(frozen=True)
class _Repository:
    gitdir: Path
    workdir: Path | None  # None for a bare repository (no maintenance lock there)


def _locate(repo_path: Path) -> _Repository:
    """The repository of ``repo_path`` (a work tree or its ``.git``); NotFound when missing."""
    gitdir = repo_path / ".git" if (repo_path / ".git").is_dir() else repo_path
    if not ((gitdir / "HEAD").is_file() and (gitdir / "objects").is_dir()):
        raise NotFound("the HCM repository is missing; run `arka-hcm init` on the server")
    return _Repository(gitdir, gitdir.parent if gitdir.name == ".git" else None)


def protocol_version(header: str | None) -> int:
    """The protocol a ``Git-Protocol`` header asks for (``version=2``, ``key=value`` items
    separated by colons); 0 when absent or anything else."""
    items = (header or "").split(":")
    if "version=2" in items:
        return 2
    return 1 if "version=1" in items else 0


def _pkt_lines(data: bytes) -> Iterator[bytes | int]:
    """The pkt-lines of ``data``: payloads (one trailing newline removed, as git reads them)
    and, for the special packets, their number (0 flush, 1 delim, 2 response end)."""
    pos = 0
    while pos < len(data):
        head = data[pos : pos + 4]
        if len(head) < 4 or not all(c in b"0123456789abcdefABCDEF" for c in head):
            raise Refused("protocol error: bad pkt-line length")
        size = int(head, 16)
        if size < 4:
            if size == 3:
                raise Refused("protocol error: bad pkt-line length")
            yield size
            pos += 4
            continue
        payload = data[pos + 4 : pos + size]
        if len(payload) != size - 4:
            raise Refused("protocol error: truncated pkt-line")
        pos += size
        yield payload[:-1] if payload.endswith(b"\n") else payload


def request_command(request: bytes, version: int) -> str:
    """What a POST asks for: ``fetch`` (v0/v1 always: wants, haves, a pack) or the v2 command,
    ``ls-refs`` or ``fetch``; Refused for any other v2 command or a ``want-ref``."""
    if version != 2:
        return "fetch"
    command, _wants = _v2_request(request)
    return command


def _v2_request(request: bytes) -> tuple[str, list[bytes]]:
    """(command, wants) of a v2 request, read as git's ``serve`` reads it: one request, the
    command and capabilities up to a delim, then the command's arguments up to a flush."""
    command: str | None = None
    wants: list[bytes] = []
    in_args = False
    for line in _pkt_lines(request):
        if line == 0:
            break
        if line == 1:
            in_args = True
            continue
        if isinstance(line, int):
            raise Refused("protocol error: unexpected packet in a request")
        if not in_args:
            if line.startswith(b"command="):
                if command is not None:
                    raise Refused("protocol error: two commands in one request")
                command = line[len(b"command=") :].decode("ascii", "replace")
        elif line.startswith(b"want-ref "):
            raise Refused("want-ref is not served here")
        elif line.startswith(b"want "):
            wants.append(line[len(b"want ") :])
    if command not in _V2_COMMANDS:
        raise Refused(f"upload-pack: command {command!r} is not served here (ls-refs and fetch are)")
    return command, wants


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


@contextlib.contextmanager
def _reading_packs(repo: _Repository, wait_s: float) -> Iterator[int | None]:
    """The maintenance lock, shared, waiting up to ``wait_s`` for a gc to end (a fold or a
    repack never waits for readers: they skip their turn). Yields its descriptor (None when
    the repository has no lock file and none can be made: nobody can repack there either)."""
    if repo.workdir is None:
        yield None
        return
    lock_file = repo.gitdir / "arka-hcm" / "maintenance.lock"
    deadline = time.monotonic() + wait_s
    while True:
        with gitbin.maintenance_lock(repo.workdir, exclusive=False, wait=False) as fd:
            if fd is not None or not lock_file.exists():
                yield fd
                return
        if time.monotonic() >= deadline:
            raise MaintenanceBusy(
                "the repository is being maintained (git gc); retry the clone or fetch in a few minutes"
            )
        time.sleep(_POLL_S)


def advertisement(repo_path: Path, version: int, *, lock_wait_s: float = LOCK_WAIT_S) -> bytes:
    """The body of ``GET info/refs?service=git-upload-pack`` (a few bytes per ref)."""
    repo = _locate(repo_path)
    with _reading_packs(repo, lock_wait_s) as fd:
        proc = spawn(
            upload_pack_command(repo.gitdir, advertise=True),
            child_env(version),
            fd,
            subprocess.PIPE,
            stdin=False,
        )
    try:
        out, err = proc.communicate(timeout=_ADVERTISE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise IoError("git upload-pack did not list the refs in time") from None
    if proc.returncode != 0:
        logger.warning("git upload-pack --advertise-refs failed (%s): %s", proc.returncode, tail(err))
        raise IoError("git upload-pack could not list the refs; see the server log")
    if version == 2:
        # git http-backend sends a v2 advertisement as is; keep only what is served here.
        kept = [
            pkt_line(line + b"\n")
            for line in _pkt_lines(out)
            if not isinstance(line, int) and line.split(b"=", 1)[0] in _V2_ADVERTISED
        ]
        return b"".join(kept) + b"0000"
    return pkt_line(f"# service={SERVICE}\n".encode("ascii")) + b"0000" + out


def _exported_tips(repo: _Repository) -> tuple[set[bytes], list[bytes]]:
    """(every object id a client was or could be shown: exported refs, the tags' targets and
    HEAD; the commits among them)."""
    listed = run_check(
        repo.gitdir,
        "for-each-ref",
        "--format=%(objectname) %(objecttype) %(*objectname) %(*objecttype)",
        *_EXPORTED,
    )
    if listed.returncode != 0:
        logger.warning("git for-each-ref failed: %s", tail(listed.stderr))
        raise IoError("git could not list the refs; see the server log")
    lines = listed.stdout.splitlines()
    head = run_check(repo.gitdir, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    if head.returncode == 0:
        lines.append(head.stdout.strip() + b" commit")
    tips: set[bytes] = set()
    commits: list[bytes] = []
    for line in lines:
        fields = line.split()
        for oid, kind in zip(fields[0::2], fields[1::2], strict=False):
            tips.add(oid)
            if kind == b"commit":
                commits.append(oid)
    return tips, commits


def _check_wants(repo: _Repository, wants: list[bytes]) -> None:
    """Refused unless every want is an exported tip or a commit one of them reaches."""
    if not wants:
        return
    tips, tip_commits = _exported_tips(repo)
    width = len(next(iter(tips))) if tips else 40
    others: list[bytes] = []
    for want in wants:
        oid = want[:width].lower()  # git reads the first hex digits and ignores the rest
        if len(oid) != width or not all(c in b"0123456789abcdef" for c in oid):
            raise Refused("upload-pack: protocol error, expected an object id after want")
        if oid not in tips:
            others.append(oid)
    if not others:
        return
    refused = Refused(f"upload-pack: not our ref {others[0].decode()}")
    if not tip_commits:
        raise refused
    kinds = run_check(
        repo.gitdir, "cat-file", "--batch-check=%(objecttype)", stdin=b"\n".join(others) + b"\n"
    ).stdout.split()
    if kinds != [b"commit"] * len(others):
        raise refused
    # As git checks a v0 stateless request: no commit may be reachable from the wants and
    # from no exported tip (a want reachable from a tip lists nothing).
    walk = run_check(
        repo.gitdir,
        "rev-list",
        "--stdin",
        stdin=b"".join([*(w + b"\n" for w in others), *(b"^" + t + b"\n" for t in tip_commits)]),
    )
    if walk.returncode != 0 or walk.stdout.strip():
        raise refused


def start_upload_pack(
    repo_path: Path, request: bytes, version: int, *, lock_wait_s: float = LOCK_WAIT_S
) -> UploadPack:
    """git upload-pack, started on ``request`` (already decoded); read its answer with
    :meth:`UploadPack.chunks`, end it with :meth:`UploadPack.aclose`. Blocking (it may wait
    for a gc and runs the v2 checks): call it from a worker thread. Refused for a v2 request
    the export does not serve, MaintenanceBusy, NotFound."""
    repo = _locate(repo_path)
    with _reading_packs(repo, lock_wait_s) as fd:
        if version == 2:
            _command, wants = _v2_request(request)
            _check_wants(repo, wants)
        # closed by UploadPack.aclose (or below if git cannot start)
        stderr = tempfile.TemporaryFile(prefix="arka-upload-pack-")  # noqa: SIM115
        try:
            proc = spawn(
                upload_pack_command(repo.gitdir, advertise=False), child_env(version), fd, stderr, stdin=True
            )
        except BaseException:
            stderr.close()
            raise
    # Our descriptor of the lock is closed now: the child's copy holds it until git ends.
    return UploadPack(proc, stderr, request)
