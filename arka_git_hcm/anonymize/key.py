"""The client's anonymization key: loaded (or created on first use) from CONFIG_ROOT, never
exported; the report carries only its fingerprint, so two bundles can be told to come from the
same key without revealing it."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from ..config import ANONYMIZE_KEY_FILE, ensure_anonymize_key

__all__ = ["AnonymizeKey", "load_key"]


class AnonymizeKey:
    def __init__(self, secret: bytes, *, ephemeral: bool = False) -> None:
        self.secret = secret
        self.ephemeral = ephemeral

    @property
    def fingerprint(self) -> str:
        """16 hex digits of a hash of the key under its own label (not usable as the key)."""
        digest = hashlib.sha256(b"arka-hcm anonymize key fingerprint\0" + self.secret).hexdigest()[:16]
        return ":".join(digest[i : i + 4] for i in range(0, 16, 4))

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"AnonymizeKey(fingerprint={self.fingerprint!r})"


def load_key(config_path: Path, *, create: bool = True) -> AnonymizeKey:
    """The key of CONFIG_ROOT; with ``create=False`` (a dry run writes nothing) a missing key is
    replaced by a throw-away one, and the report says so."""
    if not create and not (config_path / ANONYMIZE_KEY_FILE).exists():
        return AnonymizeKey(secrets.token_bytes(32), ephemeral=True)
    return AnonymizeKey(ensure_anonymize_key(config_path))
