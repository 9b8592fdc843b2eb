"""Bearer tokens: who may call the HCM service, and as whom.

A token is shown once, when it is created, and only its SHA-256 is kept in
``arka-os.config.json``: a leaked config file (backup, support bundle) gives an attacker
nothing to present. The server re-reads the file when it changes, so a token created or
revoked with the command line takes effect on a running server at its next request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict, cast

from ..clock import Clock, SystemClock, iso, parse_iso
from ..config import Settings, TokenRecord, locked_file_config, read_file_config, write_file_config
from ..errors import ConflictingUpdate, InvalidPayload, NotFound, Unauthenticated
from ..ids import CALLER_TYPES, ROLES, CallerType, Role, validate_id

__all__ = [
    "TOKEN_PREFIX",
    "TokenInfo",
    "authenticate",
    "create_token",
    "ensure_config",
    "expiry_of",
    "last_used",
    "hash_token",
    "list_tokens",
    "TokenCache",
    "load_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "arka_"
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
    expires_at: str | None


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
        expires_at=record.expires_at,
    )


_DURATION = re.compile(r"^(\d{1,5})([hdw])$")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def expiry_of(text: str, now: datetime) -> str:
    """``--expires``: a duration from now (``12h``, ``90d``, ``4w``) or an ISO date/time, as the
    ISO time the token stops working. InvalidPayload when unreadable or not in the future."""
    match = _DURATION.fullmatch(text.strip())
    try:
        moment = now + int(match.group(1)) * _UNIT[match.group(2)] if match else parse_iso(text)
    except (ValueError, OverflowError):
        raise InvalidPayload(
            f"--expires {text[:40]!r} is neither a duration (12h, 90d, 4w) nor an ISO date/time",
            {"field": "expires"},
        ) from None
    if moment <= now:
        raise InvalidPayload(f"--expires {text[:40]!r} is not in the future", {"field": "expires"})
    return iso(moment)


def ensure_config(settings: Settings) -> None:
    """Token commands edit or read an existing client's config: never create one at a default
    place (``/config`` outside a container) by accident."""
    if not settings.config_file.is_file():
        raise NotFound(
            f"no configuration at {settings.config_file}; name the client folder with --client "
            "(or --config / ARKA_CONFIG_PATH), or create one with `arka-hcm init DIR --tenant-id <id>`",
            {"path": str(settings.config_file)},
        )


def _validate(id: str, type: str, roles: Sequence[str], label: str) -> list[Role]:
    validate_id(id, "token id")
    if type not in CALLER_TYPES:
        raise InvalidPayload(f"token type {type!r} is invalid: use agent, human or system", {"field": "type"})
    if isinstance(roles, str) or not roles:
        raise InvalidPayload(
            "a token needs at least one role among reader, writer, admin", {"field": "roles"}
        )
    bad = [role for role in roles if role not in ROLES]
    if bad:
        raise InvalidPayload(f"unknown role(s) {bad}: use reader, writer or admin", {"field": "roles"})
    # The label lands in the config file and in `token list` output: one printable line.
    if len(label) > _MAX_LABEL or not label.isprintable():
        raise InvalidPayload(
            f"label must be one printable line of at most {_MAX_LABEL} characters", {"field": "label"}
        )
    return cast(list[Role], list(dict.fromkeys(roles)))


def create_token(
    settings: Settings,
    id: str,
    type: str,
    roles: Sequence[str],
    label: str = "",
    *,
    expires: str | None = None,
    clock: Clock | None = None,
) -> tuple[str, TokenRecord]:
    """Create a token for ``id``; returns ``(token, record)``. The token is never stored.
    ``expires``: a duration (``90d``) or an ISO date/time after which it is refused."""
    valid_roles = _validate(id, type, roles, label)
    now = (clock or SystemClock()).now()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        id=id,
        type=cast(CallerType, type),
        roles=valid_roles,
        sha256=hash_token(token),
        created_at=iso(now),
        label=label,
        expires_at=expiry_of(expires, now) if expires else None,
    )
    with locked_file_config(settings.config_file) as config:
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
    with locked_file_config(settings.config_file) as config:
        kept = [record for record in config.tokens if record.id != id]
        if len(kept) == len(config.tokens):
            raise NotFound(
                f"no token with id {id!r}; `arka-hcm token list` shows the existing ones", {"field": "id"}
            )
        revoked = next(record for record in config.tokens if record.id == id)
        write_file_config(settings.config_file, config.model_copy(update={"tokens": kept}))
    return _info(revoked)


def authenticate(
    records: Sequence[TokenRecord], presented: str | None, *, now: datetime | None = None
) -> TokenRecord:
    """The record whose token is ``presented`` (and not expired); raises Unauthenticated otherwise.

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
    if found.expires_at is not None and (now or datetime.now(UTC)) >= parse_iso(found.expires_at):
        raise Unauthenticated(
            f"the token of {found.type}/{found.id} expired at {found.expires_at}; an admin creates a "
            "new one with `arka-hcm token revoke` then `token create`"
        )
    return found


_StatKey = tuple[int, int, int, int]


class TokenCache:
    """The token records of one config file, re-read only when the file changed: owned by a
    server (one per app), so a request costs one ``stat``. The file is parsed again after any
    replace (new inode), edit (mtime, size, ctime) or removal, so revocation is immediate; a
    file changed within the last ``_RACY_WINDOW_S`` is never cached (an edit in the same tick
    would keep its stat)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[Path, _StatKey, tuple[TokenRecord, ...]] | None = None

    def load(self, settings: Settings) -> tuple[TokenRecord, ...]:
        path = settings.config_file
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return ()
        key: _StatKey = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            entry = self._entry
        if entry is not None and entry[0] == path and entry[1] == key:
            return entry[2]
        records = tuple(read_file_config(path).tokens)
        if time.time() - st.st_mtime > _RACY_WINDOW_S:
            with self._lock:
                self._entry = (path, key, records)
        return records


def load_tokens(settings: Settings) -> tuple[TokenRecord, ...]:
    """The token records on disk now (read each time; a server keeps a :class:`TokenCache`)."""
    return TokenCache().load(settings)


_LOG_CALLER = re.compile(rb'"caller":"([a-z]+/[A-Za-z0-9._@-]{1,128})".*?"time":"([^"]{10,40})"')


def last_used(settings: Settings, records: Sequence[TokenRecord]) -> dict[str, str]:
    """When each token's identity last made a request, from the server's request log (newest
    file first, each read once, stopping when every identity is found): no config write per
    request, and nothing but what the log already holds."""
    wanted = {f"{r.type}/{r.id}" for r in records}
    found: dict[str, str] = {}
    log = settings.log_path / "server.jsonl"
    for index in range(0, settings.file.logging.backups + 1):
        path = log if index == 0 else log.with_name(f"{log.name}.{index}")
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        for line in reversed(data.split(b"\n")):
            match = _LOG_CALLER.search(line)
            if match is None:
                continue
            who = match.group(1).decode()
            if who in wanted and who not in found:
                found[who] = match.group(2).decode()
        if wanted <= found.keys():
            break
    return found
