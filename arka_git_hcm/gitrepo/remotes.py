"""Talking to the client's Git: push the branch and the snapshot tags, read a remote's refs.

Credentials never travel on a command line (``ps`` shows it to every user of the machine), in a
URL (git prints URLs in its messages), or in an environment that outlives the git process: an
HTTP remote's ``Authorization: Basic`` header is written to a git config file of mode 0600 in a
private temporary folder, named to this one git process as its global config
(``GIT_CONFIG_GLOBAL``), scoped to the remote's URL (``http.<url>.extraHeader``: a redirect to
another host does not get it), and deleted as soon as git exits.

Pushes are never forced: no ``+`` in a refspec, no ``--force``. A remote branch with commits
the HCM does not have is reported as :class:`RemoteDiverged`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .bundles import SNAPSHOT_GLOB
from .gitcli import GitFailed, Progress, run_git

__all__ = [
    "Credentials",
    "PushResult",
    "RemoteDiverged",
    "RemoteRejected",
    "ls_remote",
    "push",
    "is_ancestor",
]


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never printed, even by accident in a traceback
        return f"Credentials(username={self.username!r}, password=***)"


class RemoteDiverged(Exception):
    """The remote's branch holds commits this HCM does not have (or a snapshot tag there names
    another commit): pushing would need a force, which the HCM never does."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class RemoteRejected(Exception):
    """The remote refused the push for another reason (a hook, permissions)."""


@dataclass
class PushResult:
    updated: list[str]  # refs the push created or moved
    up_to_date: list[str]


@contextlib.contextmanager
def _credential_env(url: str, credentials: Credentials | None) -> Iterator[dict[str, str]]:
    if credentials is None or not url.startswith(("http://", "https://")):
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="arka-hcm-cred-"))  # mode 0700 by mkdtemp
    try:
        config = folder / "gitconfig"
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        # a value with a newline or quote could inject config lines: the header is base64 only
        scope = url.replace("\\", "\\\\").replace('"', '\\"')
        text = f'[http "{scope}"]\n\textraHeader = Authorization: Basic {token}\n'
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        yield {"GIT_CONFIG_GLOBAL": str(config)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ls_remote(url: str, credentials: Credentials | None, branch: str, timeout: float = 120) -> dict[str, str]:
    """The remote's branch and snapshot tags (peeled to commits) as {ref: commit id}."""
    with _credential_env(url, credentials) as env:
        out = run_git(
            None, "ls-remote", url, f"refs/heads/{branch}", f"{SNAPSHOT_GLOB}*", env=env, timeout=timeout
        ).stdout.decode("utf-8", "replace")
    refs: dict[str, str] = {}
    for line in out.splitlines():
        oid, _, name = line.partition("\t")
        if name.endswith("^{}"):
            refs[name[:-3]] = oid  # a peeled annotated tag: the commit it names
        else:
            refs.setdefault(name, oid)
    return refs


def is_ancestor(workdir: Path, older: str, newer: str) -> bool:
    proc = run_git(workdir, "merge-base", "--is-ancestor", older, newer, check=False)
    return proc.returncode == 0


def push(
    workdir: Path,
    url: str,
    credentials: Credentials | None,
    branch: str,
    *,
    on_progress: Progress | None = None,
    timeout: float = 3600,
) -> PushResult:
    """Push ``refs/heads/<branch>`` and every snapshot tag to ``url``, never forced."""
    refspecs = [f"refs/heads/{branch}:refs/heads/{branch}", f"{SNAPSHOT_GLOB}*:{SNAPSHOT_GLOB}*"]
    args = ["push", "--porcelain", *(["--progress"] if on_progress else []), url, *refspecs]
    with _credential_env(url, credentials) as env:
        proc = run_git(workdir, *args, env=env, check=False, on_progress=on_progress, timeout=timeout)
    updated, same, rejected = [], [], []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        flag, refs_pair, summary = parts[0], parts[1], parts[2]
        target = refs_pair.split(":")[-1]
        if flag == "=":
            same.append(target)
        elif flag in ("*", " ", "+"):
            updated.append(target)
        elif flag == "!":
            rejected.append((target, summary))
    if rejected:
        first_ref, first_reason = rejected[0]
        if any(
            k in first_reason for k in ("non-fast-forward", "fetch first", "already exists", "stale info")
        ):
            raise RemoteDiverged(f"{first_ref} ({first_reason})")
        raise RemoteRejected(f"{first_ref}: {first_reason}; {_tail(proc.stderr)}")
    if proc.returncode != 0:
        raise GitFailed(("push",), proc.returncode, _tail(proc.stderr))
    return PushResult(updated, same)


def _tail(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if "%" not in line]
    return "\n".join(lines[-8:]).strip()
