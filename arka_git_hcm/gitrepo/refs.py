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
    ref_path = git_dir / ref
    lock_path = ref_path.with_name(ref_path.name + ".lock")
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if spares is not None:
            fd = spares.create_exclusive(lock_path)
        else:
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
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
        fsync_dir(ref_path.parent)
    return True


def _append_reflog(git_dir: Path, ref: str, old: str, new: str, identity: str, message: str) -> None:
    log = git_dir / "logs" / ref
    log.parent.mkdir(parents=True, exist_ok=True)
    first = message.splitlines()[0] if message else ""
    with open(log, "ab") as fh:
        fh.write(f"{old} {new} {identity}\t{first}\n".encode())


def remove_stale_lock(git_dir: Path, ref: str) -> bool:
    try:
        (git_dir / (ref + ".lock")).unlink()
        return True
    except FileNotFoundError:
        return False
