"""What the store asks of the git binary: fsck (libgit2 has none), git's index refresh, repack
and gc (git itself runs through gitcli.run_git, the one runner).

The index refresh runs in a git process rather than through libgit2 in ours: rewriting a
100k-entry index takes ~100 ms of CPU, which in-process would hold Python's GIL and stall
every writer; as a child process it runs on the other core, and git's own ``index.lock``
makes concurrent refreshes from several store processes safe (each is read-modify-write
under that lock)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .. import durable
from . import loose, packs
from .gitcli import git_binary, run_git

__all__ = [
    "IndexBusy",
    "count_objects",
    "gc",
    "git_binary",
    "maintenance_lock",
    "rebuild_index",
    "repack_geometric",
    "run_fsck",
    "update_index",
]


class IndexBusy(Exception):
    """git's index.lock is held (a person's git command, another store process): retry later."""


@contextlib.contextmanager
def maintenance_lock(workdir: Path, *, exclusive: bool, wait: bool = True) -> Iterator[int | None]:
    """flock on ``.git/arka-hcm/maintenance.lock``: exclusive while git moves packs (repack,
    gc), shared while fsck reads them (a pack deleted under fsck reads as damage). Yields the
    descriptor, to hand to the git child (the lock then lives as long as git runs, even if
    this process is killed), or None when ``wait`` is False and the lock is taken, or (shared
    only) when the repository is read-only and has no lock file to take."""
    path = workdir / ".git" / "arka-hcm" / "maintenance.lock"
    try:
        fd = durable.open_lock_file(path, root=workdir / ".git")
    except OSError:
        if exclusive:
            raise
        try:  # a read-only repository (a mount, a backup, an auditor): flock works read-only
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # no lock file and none can be made: nobody can repack here either
            yield None
            return
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def _git(
    workdir: Path, *args: str, stdin: bytes | None = None, timeout: float, keep_fd: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    """git on the repository of ``workdir`` through the one runner (gitcli.run_git), its exit
    code left to the caller; FileNotFoundError without git."""
    keep = () if keep_fd is None else (keep_fd,)
    return run_git(workdir, *args, stdin=stdin, timeout=timeout, keep_fds=keep, check=False)


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode("utf-8", "replace").strip()


def run_fsck(workdir: Path) -> tuple[bool, str]:
    """(ok, output) of `git fsck --strict` on the repository of ``workdir``."""
    try:
        with maintenance_lock(workdir, exclusive=False) as fd:
            proc = _git(
                workdir, "fsck", "--strict", "--no-progress", "--no-dangling", timeout=3600, keep_fd=fd
            )
    except FileNotFoundError:
        return False, "the git binary is not installed; install git to verify repository integrity"
    return proc.returncode == 0, (proc.stdout.decode("utf-8", "replace") + _stderr(proc)).strip()


def update_index(workdir: Path, paths: list[str], timeout: float = 120, keep_fd: int | None = None) -> None:
    """`git update-index --add --remove` for exactly ``paths``: each entry takes the work-tree
    file's content and stat data (or is removed when the file is gone). ``keep_fd``: a
    descriptor the git child inherits (a lock that must live as long as git runs)."""
    proc = _git(
        workdir,
        "-c",
        "core.fsync=none",
        "update-index",
        "--add",
        "--remove",
        "-z",
        "--stdin",
        stdin=b"".join(p.encode("utf-8") + b"\0" for p in paths),
        timeout=timeout,
        keep_fd=keep_fd,
    )
    if proc.returncode < 0:
        # killed by a signal: git hashes files through mmap, and a file truncated meanwhile (an
        # editor rewriting it in place) is a SIGBUS. The index.lock it held is left behind; it
        # was ours (created with O_EXCL until the child died), so it goes, and the refresh is
        # tried again.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(workdir / ".git" / "index.lock")
        raise IndexBusy(f"git update-index was killed by signal {-proc.returncode}; retrying")
    if proc.returncode != 0:
        message = _stderr(proc)
        if "index.lock" in message:
            raise IndexBusy(message)
        raise OSError(f"git update-index failed: {message[:500]}")


def rebuild_index(workdir: Path, tree_id: str) -> None:
    """A new git index from ``tree_id`` (`git read-tree`), then its stat data from the work
    tree (`git update-index --refresh`; files that differ stay marked as changed)."""
    proc = _git(workdir, "read-tree", tree_id, timeout=600)
    if proc.returncode != 0:
        raise OSError(f"git read-tree failed: {_stderr(proc)[:500]}")
    _git(workdir, "update-index", "-q", "--refresh", timeout=3600)


def count_objects(workdir: Path) -> dict[str, int]:
    """`git count-objects -v` as numbers (count/size of loose objects, packs, size-pack in KiB)."""
    proc = _git(workdir, "count-objects", "-v", timeout=600)
    if proc.returncode != 0:
        raise OSError(f"git count-objects failed: {_stderr(proc)[:500]}")
    result = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(": ")
        if value.strip().isdigit():
            result[key.strip().replace("-", "_")] = int(value)
    return result


def repack_geometric(workdir: Path, *, timeout: float = 600) -> bool:
    """Fold the smallest packs (folds the store let go of, other processes' packs) and any
    loose objects into one, so that each pack left holds at least twice the objects of all
    smaller ones together; large packs are left alone (`git repack --geometric=2 -d` chooses
    the same packs: packs.geometric_split).

    The objects are listed from the folded packs' indexes and handed to `git pack-objects`,
    rather than run through `git repack`: for `--geometric`, git 2.39 walks history from every
    commit in the small packs to name their objects (7.8 s of 8.7 s at 1,000,000 commits, a
    cost that grows with history while writers waited on it), and naming only serves a delta
    search, which is off here (`pack.window=0`): the store's folds already store each version
    of a journal or wide tree as a delta of the previous one, and deltas between listed
    objects are kept. `arka-hcm gc` searches deltas over the whole history. Every object of
    the folded packs is kept, reachable or not (a writer's objects may not be named by a ref
    yet). The new pack is always fsynced before the folded ones are deleted, whatever the
    store's durability: they may hold history acknowledged long ago.
    False when another repack or gc holds the maintenance lock (nothing to do then)."""
    git_dir = workdir / ".git"
    pack_dir = git_dir / "objects" / "pack"
    with maintenance_lock(workdir, exclusive=True, wait=False) as fd:
        if fd is None:
            return False
        weights = {}
        for name in packs.pack_names(pack_dir):
            if not (pack_dir / f"{name}.keep").exists():
                with contextlib.suppress(FileNotFoundError):  # folded meanwhile (a hand-run git gc)
                    weights[name] = packs.index_object_count(pack_dir, name)
        folding = packs.geometric_split(weights)
        loose_ids = loose.loose_object_ids(git_dir / "objects")
        if len(folding) < 2 and not loose_ids:
            return True
        listed = [oid.encode() + b"\n" for oid in loose_ids]
        for name in folding:
            with contextlib.suppress(FileNotFoundError):
                listed += [oid.hex().encode() + b"\n" for oid in packs.index_object_ids(pack_dir, name)]
        proc = _git(
            workdir,
            *("-c", "core.fsync=pack,pack-metadata", "-c", "pack.window=0"),
            *("pack-objects", "-q", "--delta-base-offset", str(pack_dir / "pack")),
            stdin=b"".join(listed),
            timeout=timeout,
            keep_fd=fd,
        )
        if proc.returncode != 0:
            raise OSError(f"git pack-objects failed: {_stderr(proc)[:500]}")
        written = "pack-" + proc.stdout.decode("ascii", "replace").strip()
        packs.sync_pack(pack_dir, written)
        for name in folding:
            if name != written:
                packs.remove_pack(pack_dir, name)
        if loose_ids:
            pruned = _git(workdir, "prune-packed", "-q", timeout=timeout, keep_fd=fd)
            if pruned.returncode != 0:
                raise OSError(f"git prune-packed failed: {_stderr(pruned)[:500]}")
    return True


def gc(workdir: Path) -> None:
    """`git gc --quiet`: packs loose objects; unreachable objects are pruned only after git's
    default grace period (two weeks), so nothing a reflog or a running reader needs goes away."""
    with maintenance_lock(workdir, exclusive=True) as fd:
        proc = _git(workdir, "gc", "--quiet", timeout=3600, keep_fd=fd)
    if proc.returncode != 0:
        raise OSError(f"git gc failed: {_stderr(proc)[:500]}")
