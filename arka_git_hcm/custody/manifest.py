"""The manifest of a backup: ``FILE.manifest.json`` beside the bundle ``FILE``.

Why beside and not inside: the contract makes a backup a git bundle that plain git verifies and
clones (``git clone FILE``); git stops reading a bundle at the end of its pack and refuses a pack
followed by anything, and a tar around it would need unpacking before git could read it. So the
bundle stays a pure bundle, and the manifest next to it says what it holds (tenant, branch, head
commit, refs, prerequisites, commit and snapshot counts, program version, when) and carries its
sha256, so a copy damaged in transit is caught before anything is restored. With ``--config`` it
embeds the config file (tokens are stored as hashes there), and with ``--with-secrets`` the
secret files too; a manifest holding secrets is written with mode 0600.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..durable import write_atomic
from ..errors import InvalidPayload, NotFound
from ..jsonio import canonical_bytes, parse_json

__all__ = ["FORMAT", "manifest_path", "read_manifest", "sha256_of", "write_manifest"]

FORMAT = "arka-hcm-backup/1"
SUFFIX = ".manifest.json"


def manifest_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + SUFFIX)


def sha256_of(path: Path, on_progress: Any = None) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    done = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            done += len(block)
            if on_progress:
                on_progress("Checksum", done, size)
    return digest.hexdigest()


def write_manifest(bundle: Path, manifest: dict[str, Any]) -> Path:
    """Atomically, mode 0600 when it holds secrets (0644 otherwise)."""
    path = manifest_path(bundle)
    mode = 0o600 if manifest.get("secrets") else 0o644
    write_atomic(path, canonical_bytes(manifest), mode=mode, sync=True)
    return path


def read_manifest(bundle: Path) -> dict[str, Any]:
    path = manifest_path(bundle)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(
            f"{path.name} is missing beside {bundle.name}: a backup is the bundle and its manifest "
            "(copy both)",
            {"path": str(path)},
        ) from None
    value = parse_json(raw, what=path.name, max_bytes=64 * 1024 * 1024)
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise InvalidPayload(
            f"{path.name} is not an arka-hcm backup manifest ({FORMAT})", {"path": str(path)}
        )
    for key in ("kind", "sha256", "head", "branch", "refs", "prerequisites"):
        if key not in value:
            raise InvalidPayload(f"{path.name} lacks {key!r}", {"path": str(path)})
    return value
