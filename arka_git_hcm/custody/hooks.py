"""``arka-hcm hooks install``: the git hooks of the top-level ``hooks/`` folder, installed where
the HCM's history goes.

- a bare repository (the client's Git server): ``pre-receive``;
- a clone a person commits in: ``pre-commit``;
- the HCM folder's own repository: the store already keeps its index guard as ``pre-commit``
  (services/hooks.py) and rewrites it on upgrade; the guard runs ``hooks/arka-hcm-validate``
  after itself, so the checks are installed there and both run: guard, then validation.

The scripts are a few lines of shell calling ``arka-hcm validate``; the installed copy names
this very interpreter (``python -m arka_git_hcm``) so it works without arka-hcm on PATH. A hook
someone else wrote is never replaced unless ``force``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..durable import write_atomic
from ..errors import ConflictingUpdate, NotFound
from ..gitrepo.gitcli import GitFailed, run_git
from ..writepath.guard import GUARD_MARK, VALIDATE_HOOK

__all__ = ["PRE_COMMIT", "PRE_RECEIVE", "install_git_hooks"]

MARK = "# arka-hcm: pre-"
PRE_RECEIVE = """#!/bin/sh
# arka-hcm: pre-receive, for the client's Git server that receives the HCM's history.
# Refuses a push to the HCM branch that rewrites history (non-fast-forward, a deleted branch or
# snapshot tag) or whose new commits hold files that break the layout, the path rules or the
# file models; each refusal names the commit, the file and the rule.
# Install: arka-hcm hooks install --repo /path/to/hcm.git   (or copy this file to hooks/)
# ARKA_HCM: how to run arka-hcm here; ARKA_HCM_BRANCH: the HCM branch (default main).
ARKA_HCM="${ARKA_HCM:-arka-hcm}"
# one process for every pushed ref: git gives "old new ref" lines on standard input
exec $ARKA_HCM validate --branch "${ARKA_HCM_BRANCH:-main}" --pre-receive
"""
PRE_COMMIT = """#!/bin/sh
# arka-hcm: pre-commit, for a person committing by hand in a clone of the HCM.
# The same checks as the server's pre-receive, on what is staged.
# Install: arka-hcm hooks install --repo /path/to/clone   (or copy this file to .git/hooks/)
# ARKA_HCM: how to run arka-hcm here.
ARKA_HCM="${ARKA_HCM:-arka-hcm}"
exec $ARKA_HCM validate --staged
"""


def _command() -> str:
    python = sys.executable
    if python and " " not in python and os.access(python, os.X_OK):
        return f"{python} -m arka_git_hcm"
    return "arka-hcm"


def _write(hook: Path, text: str, force: bool) -> None:
    try:
        current = hook.read_text("utf-8")
    except FileNotFoundError:
        current = None
    if current is not None and MARK not in current and not force:
        raise ConflictingUpdate(
            f"{hook} exists and arka-hcm did not write it; merge it by hand, or --force to replace it",
            {"hook": str(hook)},
        )
    hook.parent.mkdir(parents=True, exist_ok=True)
    script = text.replace('ARKA_HCM="${ARKA_HCM:-arka-hcm}"', f'ARKA_HCM="${{ARKA_HCM:-{_command()}}}"')
    # at a random temp name, never through a link: a planted one cannot receive the script
    write_atomic(hook, script.encode("utf-8"), mode=0o755)


def install_git_hooks(repo: Path, *, force: bool = False) -> dict[str, Any]:
    try:
        git_dir = Path(run_git(repo, "rev-parse", "--absolute-git-dir").stdout.decode().strip())
        bare = run_git(repo, "rev-parse", "--is-bare-repository").stdout.decode().strip() == "true"
    except GitFailed:
        raise NotFound(f"{repo} is not a git repository", {"repo": str(repo)}) from None
    hooks = git_dir / "hooks"
    if bare:
        _write(hooks / "pre-receive", PRE_RECEIVE, force)
        return {"repo": str(repo), "installed": ["pre-receive"]}
    pre_commit = hooks / "pre-commit"
    if pre_commit.is_file() and GUARD_MARK in pre_commit.read_text("utf-8", "replace"):
        _write(hooks / VALIDATE_HOOK, PRE_COMMIT, force)  # run by the store's guard, after it
        return {
            "repo": str(repo),
            "installed": [VALIDATE_HOOK],
            "after": "pre-commit (the store's index guard)",
        }
    _write(pre_commit, PRE_COMMIT, force)
    return {"repo": str(repo), "installed": ["pre-commit"]}
