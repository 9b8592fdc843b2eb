"""Git hooks the store installs in the HCM repository.

The store commits without git's index and refreshes the index a moment later (off the hot path).
In that moment the index still describes the previous HEAD, so a person running `git commit` by
hand would commit a tree that silently reverts the store's last writes. The store marks that
moment with a file per process in ``.git/arka-hcm/index-pending/``; the ``pre-commit`` hook
refuses a manual commit while a live store process has such a marker.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["GUARD_MARK", "install_hooks", "pending_marker"]

GUARD_MARK = "# arka-hcm: index guard"

PRE_COMMIT = f"""#!/bin/sh
{GUARD_MARK} (installed by arka-hcm; do not edit, it is rewritten on upgrade)
# Refuse a manual commit while the HCM store has written commits that git's index does not show yet:
# such a commit would silently revert them. The store refreshes the index within a second.
dir="$(git rev-parse --git-dir)/arka-hcm/index-pending"
for marker in "$dir"/*; do
  [ -e "$marker" ] || continue
  pid="${{marker##*/}}"
  pid="${{pid%%-*}}"
  if kill -0 "$pid" 2>/dev/null; then
    echo "arka-hcm: the HCM store has just written and git's index is being refreshed." >&2
    echo "arka-hcm: run 'git status' again in a second, then retry the commit." >&2
    exit 1
  fi
done
exit 0
"""


def install_hooks(git_dir: Path) -> bool:
    """Install (or upgrade) the guard hook; never replace a hook someone else wrote."""
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
    hook.parent.mkdir(parents=True, exist_ok=True)
    tmp = hook.with_name(f".pre-commit.{os.getpid()}")
    tmp.write_text(PRE_COMMIT, "utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, hook)
    return True


def pending_marker(git_dir: Path, token: int) -> Path:
    return git_dir / "arka-hcm" / "index-pending" / f"{os.getpid()}-{token}"


def set_pending(marker: Path, pending: bool) -> None:
    if pending:
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    else:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
