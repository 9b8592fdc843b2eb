"""Secret files in CONFIG_ROOT: the remotes' credentials (``arka-hcm.secrets.json``) and the
anonymization key (``anonymization.key``).

The credentials file must be mode 0600 (owner read/write only): a file others can read is
refused, with the ``chmod`` that fixes it, rather than used (its secrets may already have been
read, and the admin must know). It is written atomically with that mode. Nothing here is ever
logged or printed; ``remote list`` shows whether a remote has credentials, never them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import Settings
from ..durable import flocked, write_atomic
from ..errors import ConfigError, InvalidPayload
from ..jsonio import canonical_bytes, parse_json

__all__ = [
    "ANONYMIZATION_KEY",
    "SECRETS_FILE",
    "read_secrets",
    "secret_files",
    "update_secrets",
]

SECRETS_FILE = "arka-hcm.secrets.json"
ANONYMIZATION_KEY = "anonymization.key"


def _path(settings: Settings) -> Path:
    return settings.config_path / SECRETS_FILE


def read_secrets(settings: Settings) -> dict[str, Any]:
    """The secrets file ({} when absent); ConfigError when it is readable by others."""
    path = _path(settings)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise ConfigError(
                f"{path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); it holds "
                f"credentials: run `chmod 600 {path}` (and consider changing the passwords)"
            )
        raw = b""
        while chunk := os.read(fd, 1 << 16):
            raw += chunk
    finally:
        os.close(fd)
    try:
        value = parse_json(raw, what=SECRETS_FILE)
    except Exception as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return value


@contextmanager
def update_secrets(settings: Settings) -> Iterator[dict[str, Any]]:
    """Read-modify-write of the secrets file under a lock; written atomically, mode 0600."""
    path = _path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with flocked(path.with_name(f".{SECRETS_FILE}.lock"), mode=0o600):
        secrets = read_secrets(settings)
        yield secrets
        write_atomic(path, canonical_bytes(secrets), mode=0o600, sync=True)


def secret_files(settings: Settings) -> dict[str, bytes]:
    """The secret files present in CONFIG_ROOT, by name (for a backup made --with-secrets)."""
    found = {}
    for name in (SECRETS_FILE, ANONYMIZATION_KEY):
        path = settings.config_path / name
        if path.is_file() and not path.is_symlink():
            if name == SECRETS_FILE:
                read_secrets(settings)  # refuses a file others can read
            found[name] = path.read_bytes()
    return found


def check_secret_name(name: str) -> str:
    if name not in (SECRETS_FILE, ANONYMIZATION_KEY):
        raise InvalidPayload(f"{name!r} is not a secret file arka-hcm restores")
    return name
