"""Loose objects (one zlib file per object, as plain git writes them: a hand-run `git commit`,
`git add`, a fetch) checked before libgit2 reads them.

The store itself writes packs only. A loose object whose file was cut short (a crash of the git
that wrote it on a filesystem without ordered data, a full disk) makes libgit2 1.9 spin forever
in ``Repository.get`` instead of failing, where git answers "header ... too long" at once: every
command and the server's start would hang. So the store checks the loose objects at open, as
git would read them: a complete zlib stream, a ``<type> <size>\\0`` header that matches the
content, and the content's SHA-1 equal to the object's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import zlib
from pathlib import Path

__all__ = ["damaged_loose_objects", "loose_object_ids", "move_loose_object"]

_HEADER = re.compile(rb"(commit|tree|blob|tag) (\d{1,20})\x00")
_FANOUT = re.compile(r"[0-9a-f]{2}")
_REST = re.compile(r"[0-9a-f]{38}")


def why_unreadable(path: Path, object_id: str) -> str | None:
    """Why the loose object file ``path`` cannot be read as ``object_id``, or None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None  # packed meanwhile (git gc)
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(data)
    except zlib.error as exc:
        return f"its zlib stream is damaged ({exc})"
    if not inflate.eof:
        return "it is cut short (its zlib stream does not end)"
    header = _HEADER.match(raw)
    if header is None:
        return "it has no object header"
    if len(raw) - header.end() != int(header.group(2)):
        return "its size is not the one its header says"
    if hashlib.sha1(raw).hexdigest() != object_id:
        return "its content does not hash to its name"
    return None


def loose_object_ids(objects_dir: Path) -> list[str]:
    """The ids of every loose object under ``objects_dir`` (readable or not)."""
    found = []
    try:
        fanouts = [e for e in os.scandir(objects_dir) if _FANOUT.fullmatch(e.name) and e.is_dir()]
    except FileNotFoundError:
        return []
    for fanout in fanouts:
        for entry in os.scandir(fanout.path):
            if _REST.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                found.append(fanout.name + entry.name)
    return found


def damaged_loose_objects(objects_dir: Path) -> list[tuple[str, str]]:
    """(object id, reason) of every loose object under ``objects_dir`` that cannot be read."""
    found = []
    for object_id in loose_object_ids(objects_dir):
        reason = why_unreadable(objects_dir / object_id[:2] / object_id[2:], object_id)
        if reason is not None:
            found.append((object_id, reason))
    return found


def move_loose_object(objects_dir: Path, object_id: str, folder: Path) -> None:
    """Move a loose object's file into ``folder`` (kept for an admin, out of git's way)."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):  # another process moved it first
        os.rename(objects_dir / object_id[:2] / object_id[2:], folder / object_id)
