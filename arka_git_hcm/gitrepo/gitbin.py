"""What the store asks of the git binary: fsck (libgit2 has none), git's index refresh, and gc.

The index refresh runs in a git process rather than through libgit2 in ours: rewriting a
100k-entry index takes ~100 ms of CPU, which in-process would hold Python's GIL and stall
every writer; as a child process it runs on the other core, and git's own ``index.lock``
makes concurrent refreshes from several store processes safe (each is read-modify-write
under that lock)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["IndexBusy", "count_objects", "gc", "git_binary", "run_fsck", "update_index"]


class IndexBusy(Exception):
    """git's index.lock is held (a person's git command, another store process): retry later."""


def git_binary() -> str | None:
    return shutil.which("git")


def hermetic_git_env() -> dict[str, str]:
    """git with no user or system config and no GIT_* leaking from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _git(
    workdir: Path, *args: str, stdin: bytes | None = None, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run git on the repository of ``workdir``, hermetically; FileNotFoundError without git.
    ``safe.directory=*``: the store decides which folder it serves, not git's owner check
    (in a container the volume belongs to the host's user)."""
    git = git_binary()
    if git is None:
        raise FileNotFoundError("git")
    return subprocess.run(
        [git, "-c", "safe.directory=*", "-C", str(workdir), *args],
        input=stdin,
        capture_output=True,
        env=hermetic_git_env(),
        timeout=timeout,
    )


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode("utf-8", "replace").strip()


def run_fsck(workdir: Path) -> tuple[bool, str]:
    """(ok, output) of `git fsck --strict` on the repository of ``workdir``."""
    try:
        proc = _git(workdir, "fsck", "--strict", "--no-progress", "--no-dangling", timeout=3600)
    except FileNotFoundError:
        return False, "the git binary is not installed; install git to verify repository integrity"
    return proc.returncode == 0, (proc.stdout.decode("utf-8", "replace") + _stderr(proc)).strip()


def update_index(workdir: Path, paths: list[str], timeout: float = 120) -> None:
    """`git update-index --add --remove` for exactly ``paths``: each entry takes the work-tree
    file's content and stat data (or is removed when the file is gone)."""
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
    )
    if proc.returncode != 0:
        message = _stderr(proc)
        if "index.lock" in message:
            raise IndexBusy(message)
        raise OSError(f"git update-index failed: {message[:500]}")


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


def gc(workdir: Path) -> None:
    """`git gc --quiet`: packs loose objects; unreachable objects are pruned only after git's
    default grace period (two weeks), so nothing a reflog or a running reader needs goes away."""
    proc = _git(workdir, "gc", "--quiet", timeout=3600)
    if proc.returncode != 0:
        raise OSError(f"git gc failed: {_stderr(proc)[:500]}")
