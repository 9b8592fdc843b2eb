"""Repository integrity through the git binary (libgit2 has no fsck)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["git_binary", "run_fsck"]


def git_binary() -> str | None:
    return shutil.which("git")


def hermetic_git_env() -> dict[str, str]:
    """git with no user or system config and no GIT_* leaking from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def run_fsck(workdir: Path) -> tuple[bool, str]:
    """(ok, output) of `git fsck --strict` on the repository of ``workdir``."""
    git = git_binary()
    if git is None:
        return False, "the git binary is not installed; install git to verify repository integrity"
    proc = subprocess.run(
        [
            git,
            "-c",
            "safe.directory=*",
            "-C",
            str(workdir),
            "fsck",
            "--strict",
            "--no-progress",
            "--no-dangling",
        ],
        capture_output=True,
        text=True,
        env=hermetic_git_env(),
        timeout=3600,
    )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
