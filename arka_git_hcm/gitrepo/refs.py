"""Refs on disk, with git's own lock protocol.

The store never moves a branch with libgit2's ``set_target`` (no compare-and-swap there): it
writes ``<ref>.lock`` with O_EXCL, checks the ref still points where the new commit was built,
and renames the lock over the ref. git, libgit2 and other store processes use the same lock file,
so a concurrent `git commit` by a person and a store write can never both win.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..spare import SpareFiles

__all__ = ["ZERO_OID", "compare_and_swap_ref", "fsync_dir", "head_ref_name", "read_ref", "remove_stale_lock"]

ZERO_OID = "0" * 40


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ref(git_dir: Path, ref: str) -> str | None:
    """The id a ref points to, read from disk now (loose file first, then packed-refs)."""
    try:
        fd = os.open(f"{git_dir}/{ref}", os.O_RDONLY)  # read on every operation: no io layers
        try:
            value = os.read(fd, 4096).decode("ascii").strip()
        finally:
            os.close(fd)
        if value.startswith("ref:"):
            return read_ref(git_dir, value[4:].strip())
        return value or None
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        return None
    try:
        for line in (git_dir / "packed-refs").read_text("ascii").splitlines():
            if line and line[0] not in "#^":
                oid, _, name = line.partition(" ")
                if name == ref:
                    return oid
    except FileNotFoundError:
        pass
    return None


def head_ref_name(git_dir: Path) -> str:
    head = (git_dir / "HEAD").read_text("ascii").strip()
    return head[4:].strip() if head.startswith("ref:") else "HEAD"


def compare_and_swap_ref(
    git_dir: Path,
    ref: str,
    old: str | None,
    new: str,
    identity: str,
    message: str,
    durable: bool,
    spares: SpareFiles | None = None,
) -> bool:
    """Move ``ref`` from ``old`` to ``new`` only if it still points at ``old``. Returns False when
    it moved meanwhile (the caller rebuilds on the new tip) or its lock is held (contention)."""
    ref_path = f"{git_dir}/{ref}"  # strings: this runs for every batch
    lock_path = ref_path + ".lock"
    try:
        fd = _create_lock(lock_path, spares)
    except FileNotFoundError:  # a first ref in a new folder (refs/tags/snapshot/, say)
        os.makedirs(os.path.dirname(ref_path), exist_ok=True)
        fd = _create_lock(lock_path, spares)
    except FileExistsError:
        return False
    try:
        try:
            moved = read_ref(git_dir, ref) != old
            if not moved:
                os.write(fd, f"{new}\n".encode("ascii"))
                if durable:
                    os.fsync(fd)
        finally:
            os.close(fd)  # exactly once: a second close could hit another thread's file
        if moved:
            os.unlink(lock_path)
            return False
        _append_reflog(git_dir, ref, old or ZERO_OID, new, identity, message)
        os.replace(lock_path, ref_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        raise
    if durable:
        fsync_dir(Path(os.path.dirname(ref_path)))
    return True


def _create_lock(lock_path: str, spares: SpareFiles | None) -> int:
    """The ref's lock file, created exclusively (FileExistsError when another writer holds it)."""
    if spares is not None:
        return spares.create_exclusive(lock_path)
    return os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def _append_reflog(git_dir: Path, ref: str, old: str, new: str, identity: str, message: str) -> None:
    log = f"{git_dir}/logs/{ref}"
    first = message.split("\n", 1)[0]  # one line: git splits its reflog on \n only
    line = f"{old} {new} {identity}\t{first}\n".encode()
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def remove_stale_lock(git_dir: Path, ref: str) -> bool:
    try:
        (git_dir / (ref + ".lock")).unlink()
        return True
    except FileNotFoundError:
        return False
