"""Git hooks the store installs in the HCM repository.

The store commits without git's index and refreshes the index a moment later (off the hot path).
In that moment the index still describes the previous HEAD, so a person running `git commit` by
hand would commit a tree that silently reverts the store's last writes. The store marks that
moment with a file per store in ``.git/arka-hcm/index-pending/``, created already flock-ed and
held while the refresh is pending (see durable/locks.py). The ``pre-commit`` hook refuses a manual
commit while any marker exists: a held one is a refresh about to happen; a free one was left by a
store killed before its refresh, so the index may still be stale. The next store to open brings
the index to HEAD and removes free markers (their lock, not a pid, tells: containers restart with
the same pid), so any arka-hcm command unblocks manual commits after a crash.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path

from .. import durable
from ..durable import create_held, remove_if_abandoned

__all__ = [
    "GUARD_MARK",
    "VALIDATE_HOOK",
    "install_hooks",
    "pending_marker",
    "remove_stale_markers",
    "PendingMarker",
]

GUARD_MARK = "# arka-hcm: index guard"
VALIDATE_HOOK = "arka-hcm-validate"  # the staged-files check the guard runs after itself

PRE_COMMIT = f"""#!/bin/sh
{GUARD_MARK} (installed by arka-hcm; do not edit, it is rewritten on upgrade)
# Refuse a manual commit while the HCM store has written commits that git's index does not show yet:
# such a commit would silently revert them. The store refreshes the index within a second.
dir="$(git rev-parse --git-dir)/arka-hcm/index-pending"
for marker in "$dir"/*; do
  [ -e "$marker" ] || continue
  if command -v flock >/dev/null 2>&1 && (exec 9<"$marker"; flock -n 9) 2>/dev/null; then
    # nobody holds it: a store was stopped before it refreshed the index, which may be stale
    echo "arka-hcm: a store stopped before bringing git's index up to date with its last writes." >&2
    echo "arka-hcm: run any arka-hcm command on this HCM once (e.g. 'arka-hcm missions list')," >&2
    echo "arka-hcm: which repairs the index, then 'git status' and retry the commit." >&2
    exit 1
  fi
  echo "arka-hcm: the HCM store has just written and git's index is being refreshed." >&2
  echo "arka-hcm: run 'git status' again in a second, then retry the commit." >&2
  exit 1
done
# then the checks of what is staged, when `arka-hcm hooks install` put them here
validate="$(git rev-parse --git-dir)/hooks/{VALIDATE_HOOK}"
if [ -x "$validate" ]; then exec "$validate"; fi
exit 0
"""


# The store's transient files in the work tree, which `git status` must not show: temp files of a
# change being written, and files moved aside while a change lands (see worktree.py).
EXCLUDES = ("/**/.*.arka-tmp-*", "/**/.*.arka-old-*", "/.*.arka-tmp-*", "/.*.arka-old-*")
EXCLUDE_MARK = "# arka-hcm: transient files of the store"


def install_excludes(git_dir: Path) -> None:
    """Add the store's transient names to ``.git/info/exclude`` (kept with the repository, never
    committed), keeping whatever else is there."""
    path = git_dir / "info" / "exclude"
    try:
        current = durable.read_file(path, root=git_dir).decode("utf-8", "replace")
    except FileNotFoundError:
        current = ""
    if EXCLUDE_MARK in current:
        return
    block = "\n".join([EXCLUDE_MARK, *EXCLUDES]) + "\n"
    text = (current if not current or current.endswith("\n") else current + "\n") + block
    durable.write_atomic(path, text.encode("utf-8"), root=git_dir)


def install_hooks(git_dir: Path) -> bool:
    """Install (or upgrade) the guard hook, never replacing a hook someone else wrote, and the
    store's excludes. False when a foreign pre-commit hook is there."""
    install_excludes(git_dir)
    hook = git_dir / "hooks" / "pre-commit"
    try:
        current = hook.read_text("utf-8")
    except FileNotFoundError:
        current = None
    except OSError:
        return False
    if current == PRE_COMMIT:
        return True
    if current is not None and GUARD_MARK not in current:
        return False
    # a temp file at a random name, made with O_EXCL | O_NOFOLLOW in hooks/ reached without
    # following a link: a planted link can neither receive the script nor be made executable
    durable.write_atomic(hook, PRE_COMMIT.encode("utf-8"), root=git_dir, mode=0o755)
    return True


def pending_marker(git_dir: Path, token: int) -> Path:
    return git_dir / "arka-hcm" / "index-pending" / f"{os.getpid()}-{token}-{secrets.token_hex(4)}"


class PendingMarker:
    """One store's "git's index is behind" marker: a file that exists, locked, while a refresh
    is pending, so the pre-commit guard refuses a hand commit meanwhile; a process that dies
    leaves it unlocked (see :func:`remove_stale_markers`). Owned by the store's IndexKeeper."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def set(self, pending: bool) -> None:
        with self._lock:
            if pending:
                if self._fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = create_held(self.path)
            else:
                fd, self._fd = self._fd, None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                if fd is not None:
                    os.close(fd)


def remove_stale_markers(git_dir: Path) -> int:
    """Markers of stores that died with a refresh pending (their lock is free)."""
    folder = git_dir / "arka-hcm" / "index-pending"
    if not folder.is_dir():
        return 0
    return sum(1 for marker in folder.iterdir() if remove_if_abandoned(marker))
