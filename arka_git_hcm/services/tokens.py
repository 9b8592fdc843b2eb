"""Bearer tokens: who may call the HCM service, and as whom.

A token is shown once, when it is created, and only its SHA-256 is kept in
``arka-os.config.json``: a leaked config file (backup, support bundle) gives an attacker
nothing to present. The server re-reads the file when it changes, so a token created or
revoked with the command line takes effect on a running server at its next request.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypedDict, cast, get_args

from ..clock import Clock, SystemClock, iso
from ..config import FileConfig, Settings, TokenRecord, read_file_config, write_file_config
from ..durable import open_lock_file
from ..errors import ConflictingUpdate, InvalidPayload, NotFound, Unauthenticated
from ..ids import validate_id

__all__ = [
    "TOKEN_PREFIX",
    "TokenInfo",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "load_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "arka_"
CallerType = Literal["agent", "human", "system"]
Role = Literal["reader", "writer", "admin"]
_CALLER_TYPES: tuple[str, ...] = get_args(CallerType)
_ROLES: tuple[str, ...] = get_args(Role)
_MAX_LABEL = 200
# A real token is ~48 characters; hashing megabytes of header per request is a cheap DoS.
_MAX_PRESENTED = 1024
# File timestamps are coarse (a few ms on most file systems): a file changed twice within
# one tick can keep the same stat. Like git's "racy clean" index entries, a cached read is
# trusted only once the file is older than this when we read it.
_RACY_WINDOW_S = 2.0


class TokenInfo(TypedDict):
    """What may be shown about a token: everything but its hash (a plain dict, ready for JSON)."""

    id: str
    type: CallerType
    roles: list[Role]
    created_at: str
    label: str


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in place of ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(
        id=record.id,
        type=record.type,
        roles=list(record.roles),
        created_at=record.created_at,
        label=record.label,
    )


def _validate(id: str, type: str, roles: Sequence[str], label: str) -> list[Role]:
    validate_id(id, "token id")
    if type not in _CALLER_TYPES:
        raise InvalidPayload(f"token type {type!r} is invalid: use agent, human or system", {"field": "type"})
    if isinstance(roles, str) or not roles:
        raise InvalidPayload(
            "a token needs at least one role among reader, writer, admin", {"field": "roles"}
        )
    bad = [role for role in roles if role not in _ROLES]
    if bad:
        raise InvalidPayload(f"unknown role(s) {bad}: use reader, writer or admin", {"field": "roles"})
    # The label lands in the config file and in `token list` output: one printable line.
    if len(label) > _MAX_LABEL or not label.isprintable():
        raise InvalidPayload(
            f"label must be one printable line of at most {_MAX_LABEL} characters", {"field": "label"}
        )
    return cast(list[Role], list(dict.fromkeys(roles)))


@contextmanager
def _config_locked(settings: Settings) -> Iterator[FileConfig]:
    """Hold an exclusive lock on the config for a read-modify-write.

    Two ``token create`` runs (or the CLI and a server) writing at once would otherwise each
    write back the list they read, and one token would silently vanish.
    """
    path = settings.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(path.with_name(f".{path.name}.lock"), mode=0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield read_file_config(path)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def create_token(
    settings: Settings,
    id: str,
    type: str,
    roles: Sequence[str],
    label: str = "",
    *,
    clock: Clock | None = None,
) -> tuple[str, TokenRecord]:
    """Create a token for ``id``; returns ``(token, record)``. The token is never stored."""
    valid_roles = _validate(id, type, roles, label)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        id=id,
        type=cast(CallerType, type),
        roles=valid_roles,
        sha256=hash_token(token),
        created_at=iso((clock or SystemClock()).now()),
        label=label,
    )
    with _config_locked(settings) as config:
        # One identity, one token: a second one would make revocation by id ambiguous.
        if any(existing.id == id for existing in config.tokens):
            raise ConflictingUpdate(
                f"a token with id {id!r} already exists; revoke it first or choose another id",
                {"field": "id"},
            )
        write_file_config(
            settings.config_file, config.model_copy(update={"tokens": [*config.tokens, record]})
        )
    return token, record


def list_tokens(settings: Settings) -> list[TokenInfo]:
    """The tokens in the config file, without their hashes."""
    return [_info(record) for record in read_file_config(settings.config_file).tokens]


def revoke_token(settings: Settings, id: str) -> TokenInfo:
    """Remove the token of ``id``; a running server refuses it from its next request on."""
    with _config_locked(settings) as config:
        kept = [record for record in config.tokens if record.id != id]
        if len(kept) == len(config.tokens):
            raise NotFound(
                f"no token with id {id!r}; `arka-hcm token list` shows the existing ones", {"field": "id"}
            )
        revoked = next(record for record in config.tokens if record.id == id)
        write_file_config(settings.config_file, config.model_copy(update={"tokens": kept}))
    return _info(revoked)


def authenticate(records: Sequence[TokenRecord], presented: str | None) -> TokenRecord:
    """The record whose token is ``presented``; raises Unauthenticated otherwise.

    Every record is compared, with hmac.compare_digest, whatever the outcome: the time taken
    says nothing about which token, or which prefix of a hash, came close.
    """
    if not presented:
        raise Unauthenticated(
            "missing token: send `Authorization: Bearer <token>` (or the token as the password "
            "of HTTP basic auth); `arka-hcm token create` makes one"
        )
    if len(presented) > _MAX_PRESENTED:
        raise Unauthenticated("invalid token: it is not one this HCM issued, or it was revoked")
    digest = hash_token(presented)
    found: TokenRecord | None = None
    for record in records:
        if hmac.compare_digest(record.sha256, digest) and found is None:
            found = record
    if found is None:
        raise Unauthenticated("invalid token: it is not one this HCM issued, or it was revoked")
    return found


_StatKey = tuple[int, int, int, int]
_cache: dict[Path, tuple[_StatKey, tuple[TokenRecord, ...]]] = {}
_cache_lock = threading.Lock()


def load_tokens(settings: Settings) -> tuple[TokenRecord, ...]:
    """The token records on disk now, re-read only when the config file changed.

    A request costs one ``stat``; the file is parsed again after any replace (new inode),
    edit (mtime, size) or removal, so revocation is immediate.
    """
    path = settings.config_file
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ()
    key: _StatKey = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _cache_lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    records = tuple(read_file_config(path).tokens)
    if time.time() - st.st_mtime > _RACY_WINDOW_S:
        with _cache_lock:
            _cache[path] = (key, records)
    return records
