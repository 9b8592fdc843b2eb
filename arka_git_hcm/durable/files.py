"""Files the store creates: confined, never through a link, replaced atomically, synced on demand.

Everything that writes a file (work-tree files, packs, refs, the intent, hooks, the config, logs,
lock files) goes through this module, so the rules hold everywhere at once:

- **Never through a link.** A folder is reached by walking from a trusted root one component at
  a time with ``O_DIRECTORY | O_NOFOLLOW`` and every later call is relative to that descriptor
  (``dir_fd``): a symlink planted on the way (``state/missions/m1 -> /etc``, ``.git/arka-hcm ->
  /tmp``) is refused, and swapping one in after a check changes nothing, because no path is
  looked up twice. New files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` at a random name,
  so a link planted at a predictable temp name can neither be followed nor taken over.
- **Atomic.** A file is replaced by writing a new one beside it and renaming it over the target
  (within the same folder descriptor): readers and crashes see the old bytes or the new ones.
- **Durable on demand.** ``sync=True`` fsyncs the file before the rename and the folder after;
  the commit engine instead syncs the whole filesystem once per batch (:func:`sync_filesystem`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "LinkRefused",
    "append_line",
    "create_new",
    "fsync_path",
    "folder",
    "open_folder",
    "open_lock_file",
    "read_fd",
    "read_file",
    "replace_file",
    "sync_filesystem",
    "write_all",
    "write_atomic",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkRefused(OSError):
    """A component on the way, or the file itself, is a symbolic link (or not a folder)."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, "a symbolic link (or a file) stands where the store writes", path)


def _open_dir_at(parent: int | None, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LinkRefused(name) from None
        raise


def open_folder(
    root: str | Path, parts: Sequence[str] = (), *, create: bool = False, mode: int = 0o755
) -> int:
    """A descriptor of ``root/parts...``, walked one component at a time without following a
    link; missing folders are made when ``create``. ``root`` itself is trusted (the HCM folder,
    its ``.git``, CONFIG_ROOT, LOG_ROOT: the places the operator named). Close it when done."""
    fd = os.open(os.fspath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise LinkRefused(part)
            try:
                child = _open_dir_at(fd, part)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
                child = _open_dir_at(fd, part)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def folder(root: str | Path, parts: Sequence[str] = (), *, create: bool = False) -> Iterator[int]:
    fd = open_folder(root, parts, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def _split(path: str | Path, root: str | Path | None) -> tuple[str, list[str], str]:
    """(trusted root, folders below it, file name) of ``path``; without ``root``, the file's own
    folder is the trusted root."""
    text = os.fspath(path)
    if root is None:
        head, name = os.path.split(text)
        return head or ".", [], name
    rel = os.path.relpath(text, os.fspath(root))
    parts = rel.split(os.sep)
    if parts[0] == ".." or os.path.isabs(rel):
        raise LinkRefused(text)
    return os.fspath(root), parts[:-1], parts[-1]


def create_new(dir_fd: int, prefix: str, mode: int = 0o644) -> tuple[int, str]:
    """A new empty file in ``dir_fd`` at an unpredictable name starting with ``prefix``:
    (descriptor open for writing, name)."""
    for _ in range(16):
        name = f"{prefix}{secrets.token_hex(8)}"
        try:
            return os.open(name, _NEW_FLAGS, mode, dir_fd=dir_fd), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not draw an unused temp name", prefix)


def write_all(fd: int, data: bytes | bytearray | memoryview | Sequence[bytes | memoryview]) -> None:
    """Write every byte, resuming after short writes; a sequence of parts goes out with writev
    in slices (IOV_MAX is 1024), linear in the number of parts (a pack has thousands)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return
    parts = list(data)
    at, first = 0, memoryview(parts[0]) if parts else memoryview(b"")
    while at < len(parts):
        written = os.writev(fd, [first, *parts[at + 1 : at + 512]])
        while written:
            if written >= len(first):
                written -= len(first)
                at += 1
                first = memoryview(parts[at]) if at < len(parts) else memoryview(b"")
            else:
                first, written = first[written:], 0
        if at < len(parts) and not first:
            at += 1  # an empty part
            first = memoryview(parts[at]) if at < len(parts) else memoryview(b"")


def replace_file(
    dir_fd: int,
    name: str,
    data: bytes | Sequence[bytes | memoryview],
    *,
    mode: int = 0o644,
    sync: bool = False,
    temp_prefix: str | None = None,
) -> os.stat_result:
    """Atomically make ``name`` in ``dir_fd`` hold ``data`` (temp file + rename); returns the new
    file's stat. The temp file is removed on any failure (a full disk keeps no half file)."""
    fd, tmp = create_new(dir_fd, temp_prefix if temp_prefix is not None else f".{name}.tmp-", mode)
    try:
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
            info = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    if sync:
        os.fsync(dir_fd)
    return info


def write_atomic(
    path: str | Path,
    data: bytes,
    *,
    root: str | Path | None = None,
    mode: int = 0o644,
    sync: bool = False,
    create_folders: bool = True,
) -> None:
    """:func:`replace_file` by path: the folders between ``root`` (trusted; default the file's
    own folder) and the file are walked without following links."""
    base, parts, name = _split(path, root)
    with folder(base, parts, create=create_folders) as fd:
        replace_file(fd, name, data, mode=mode, sync=sync)


def read_file(path: str | Path, *, root: str | Path | None = None) -> bytes:
    """The bytes of a regular file, never through a link (FileNotFoundError when absent)."""
    base, parts, name = _split(path, root)
    with folder(base, parts) as dir_fd:
        fd = _open_file_at(dir_fd, name, os.O_RDONLY)
        try:
            return _read_all(fd)
        finally:
            os.close(fd)


def _open_file_at(dir_fd: int, name: str, flags: int, mode: int = 0o644) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkRefused(name) from None
        raise


def read_fd(fd: int) -> bytes:
    """Every byte from ``fd``'s position to its end."""
    return _read_all(fd)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def open_lock_file(path: str | Path, *, root: str | Path | None = None, mode: int = 0o644) -> int:
    """A descriptor of a lock file (created if missing), never through a link: flock-ing a file
    a link points to would let a planted link decide who holds the store's lock."""
    base, parts, name = _split(path, root)
    with folder(base, parts, create=True) as dir_fd:
        return _open_file_at(dir_fd, name, os.O_RDWR | os.O_CREAT, mode)


def append_line(path: str | Path, line: bytes, *, root: str | Path | None = None, mode: int = 0o644) -> None:
    """Append ``line`` to a file (created if missing) with O_APPEND, never through a link."""
    base, parts, name = _split(path, root)
    with folder(base, parts, create=True) as dir_fd:
        fd = _open_file_at(dir_fd, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
        try:
            write_all(fd, line)
        finally:
            os.close(fd)


def fsync_path(path: str | Path) -> None:
    """fsync a file or a folder by path (opened read-only, which fsync accepts on Linux)."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def sync_filesystem(path: str | Path) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (Linux syncfs(2)); one call is
    much cheaper than an fsync per file of a batch. Falls back to sync(2) where syncfs does not
    exist. A failure raises OSError: syncfs reports what the kernel could not write (an I/O
    error, a filesystem it forced read-only after one), and whoever acknowledges a write after
    this call must not (sync(2), which reports nothing, is no fallback for a failure). A failure
    on a filesystem now mounted read-only is EROFS."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _syncfs is None:
            os.sync()
            return
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            if code == errno.ENOSYS:
                os.sync()
                return
            with contextlib.suppress(OSError):
                if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
                    code = errno.EROFS
            raise OSError(code, f"syncing the filesystem failed: {os.strerror(code)}", os.fspath(path))
        _probe_journal(fd)
    finally:
        os.close(fd)


SYNC_PROBE = ".sync-probe.arka-tmp-"  # (a temp-file name: hidden from `git status`, swept at open)


def _probe_journal(dir_fd: int) -> None:
    """syncfs(2) answers 0 when it finds nothing left to commit, which is also what it finds
    right after the filesystem aborted its journal on an error (ext4, before it flags itself
    read-only): the pending changes were dropped, not written. Creating a file goes through the
    journal and fails (EROFS) once it is aborted, which is for good: a file created and removed
    after the sync proves the sync had a live journal to commit to."""
    name = SYNC_PROBE + secrets.token_hex(6)
    probe = os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
    )
    os.close(probe)
    os.unlink(name, dir_fd=dir_fd)
