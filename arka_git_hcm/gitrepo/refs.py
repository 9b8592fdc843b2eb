"""Refs on disk, with git's own lock protocol.

The store moves a branch as git does: it creates ``<ref>.lock`` with O_EXCL, checks the ref still
points where the new commit was built, and renames the lock over the ref. git, libgit2 and other
store processes use the same lock file, so a concurrent `git commit` by a person and a store write
can never both win. (libgit2's ``Reference.set_target`` refuses a stale old value too; the store
keeps its own few lines for git's reflog format and the no-link rule of durable.py.)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .. import durable

__all__ = [
    "ZERO_OID",
    "PreparedRef",
    "abort_ref_update",
    "append_reflog",
    "compare_and_swap_ref",
    "finish_ref_update",
    "prepare_ref_update",
    "delete_loose_ref",
    "head_ref_name",
    "last_reflog_entry",
    "read_ref",
    "remove_stale_lock",
]

ZERO_OID = "0" * 40


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
    durable_sync: bool,
    *,
    reflog: bool = True,
) -> bool:
    """Move ``ref`` from ``old`` to ``new`` only if it still points at ``old``. Returns False when
    it moved meanwhile (the caller rebuilds on the new tip) or its lock is held (contention).
    ``durable_sync``: fsync the new ref before the rename and its folder after.

    The ref's folder is reached without following a link and the lock is created there with
    O_EXCL | O_NOFOLLOW, then renamed over the ref within that folder: a link planted at
    ``<ref>.lock`` or on the way can neither receive the new id nor become the ref."""
    parts = ref.split("/")
    with durable.folder(git_dir, parts[:-1], create=True) as dir_fd:
        name, lock = parts[-1], parts[-1] + ".lock"
        try:
            fd = os.open(lock, _LOCK_FLAGS, 0o644, dir_fd=dir_fd)
        except FileExistsError:
            return False
        try:
            try:
                moved = read_ref(git_dir, ref) != old
                if not moved:
                    durable.write_all(fd, f"{new}\n".encode("ascii"))
                    if durable_sync:
                        os.fsync(fd)
            finally:
                os.close(fd)  # exactly once: a second close could hit another thread's file
            if moved:
                os.unlink(lock, dir_fd=dir_fd)
                return False
            if reflog:
                _append_reflog(git_dir, ref, old or ZERO_OID, new, identity, message)
            os.replace(lock, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock, dir_fd=dir_fd)
            raise
        if durable_sync:
            os.fsync(dir_fd)
    return True


_LOCK_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class PreparedRef:
    """``<ref>.lock`` created and holding the new id, not yet renamed over the ref."""

    git_dir: Path
    ref: str
    new: str


def prepare_ref_update(git_dir: Path, ref: str, new: str) -> PreparedRef | None:
    """The first half of a compare-and-swap, for a caller that syncs the filesystem before the
    second: ``<ref>.lock`` is created (O_EXCL | O_NOFOLLOW, in a folder reached without links)
    holding ``new``, so the sync writes its bytes, and the rename in :func:`finish_ref_update`
    can never leave a ref whose bytes never reached the disk (zeros, after a power cut or an
    aborted journal) without an fsync of its own. None when the lock is held (contention)."""
    parts = ref.split("/")
    with durable.folder(git_dir, parts[:-1], create=True) as dir_fd:
        lock = parts[-1] + ".lock"
        try:
            fd = os.open(lock, _LOCK_FLAGS, 0o644, dir_fd=dir_fd)
        except FileExistsError:
            return None
        try:
            durable.write_all(fd, f"{new}\n".encode("ascii"))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock, dir_fd=dir_fd)
            raise
        finally:
            os.close(fd)  # exactly once
    return PreparedRef(git_dir, ref, new)


def finish_ref_update(
    prepared: PreparedRef, old: str | None, identity: str, message: str, *, reflog: bool = True
) -> bool:
    """Rename the prepared lock over the ref if the ref still points at ``old`` (True); else
    remove the lock (False: the ref moved meanwhile)."""
    git_dir, ref = prepared.git_dir, prepared.ref
    parts = ref.split("/")
    with durable.folder(git_dir, parts[:-1]) as dir_fd:
        name, lock = parts[-1], parts[-1] + ".lock"
        try:
            if read_ref(git_dir, ref) != old:
                os.unlink(lock, dir_fd=dir_fd)
                return False
            if reflog:
                _append_reflog(git_dir, ref, old or ZERO_OID, prepared.new, identity, message)
            os.replace(lock, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock, dir_fd=dir_fd)
            raise
    return True


def abort_ref_update(prepared: PreparedRef) -> None:
    """Remove a prepared lock (the write failed before the branch moved)."""
    parts = prepared.ref.split("/")
    with contextlib.suppress(FileNotFoundError), durable.folder(prepared.git_dir, parts[:-1]) as dir_fd:
        os.unlink(parts[-1] + ".lock", dir_fd=dir_fd)


def last_reflog_entry(git_dir: Path, ref: str) -> tuple[str, str, str] | None:
    """(old, new, message) of the last line of ``ref``'s reflog (its tail is read, not the file)."""
    try:
        with durable.folder(git_dir, ["logs", *ref.split("/")[:-1]]) as dir_fd:
            fd = os.open(ref.split("/")[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - 8192), os.SEEK_SET)
        tail = durable.read_fd(fd)
    finally:
        os.close(fd)
    lines = [line for line in tail.split(b"\n") if line.strip()]
    if not lines:
        return None
    head, _, message = lines[-1].decode("utf-8", "replace").partition("\t")
    fields = head.split(" ")
    if len(fields) < 2 or len(fields[0]) != 40 or len(fields[1]) != 40:
        return None
    return fields[0], fields[1], message


def append_reflog(git_dir: Path, ref: str, old: str, new: str, identity: str, message: str) -> None:
    _append_reflog(git_dir, ref, old, new, identity, message)


def _append_reflog(git_dir: Path, ref: str, old: str, new: str, identity: str, message: str) -> None:
    first = message.split("\n", 1)[0]  # one line: git splits its reflog on \n only
    line = f"{old} {new} {identity}\t{first}\n".encode()
    durable.append_line(git_dir / "logs" / ref, line, root=git_dir)


def delete_loose_ref(git_dir: Path, ref: str) -> None:
    """Remove a loose ref (and its reflog), without following a link on the way."""
    parts = ref.split("/")
    for base in ([], ["logs"]):
        try:
            with durable.folder(git_dir, [*base, *parts[:-1]]) as dir_fd:
                os.unlink(parts[-1], dir_fd=dir_fd)
        except FileNotFoundError:
            continue


def remove_stale_lock(git_dir: Path, ref: str) -> bool:
    parts = ref.split("/")
    try:
        with durable.folder(git_dir, parts[:-1]) as dir_fd:
            os.unlink(parts[-1] + ".lock", dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
