"""The one validation entry point of the git hooks (``arka-hcm validate``).

- ``validate_push(old, new, ref)``: what a client's Git server's ``pre-receive`` asks for each
  pushed ref. On the HCM branch: no deletion, fast-forward only, and every commit new to the
  server checked file by file against its first parent. On ``refs/tags/snapshot/*``: no
  deletion, no move (a snapshot names one state forever). Other refs are not the HCM's.
- ``validate_staged()``: what a person is about to commit by hand in a clone (``pre-commit``).
- ``validate_rev(rev)``: every file of one commit's tree (a check of any revision).

A changed file is refused when its path breaks the path rules (``..``, ``.git`` in any disguise,
control characters, Windows device names: the resolver's rules), when it is a symlink or a
submodule (a way out of the folder), when it lies outside the layout (meta.json and the
stable/domain/state/hindex layers, JSON and JSON lines only), or when its content breaks its
file model. Each refusal names the commit, the file and the rule. Git is read through the
hook's own environment (pushed objects wait in a quarantine until the hook accepts them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from ..admin.verify import check_file
from ..domain.layout import LAYERS, META
from ..errors import HcmError
from ..gitrepo.gitcli import cat_objects, run_git
from ..paths import check_relative

__all__ = ["Refusal", "validate_push", "validate_rev", "validate_staged"]

ZERO = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_SYMLINK, _GITLINK = "120000", "160000"


@dataclass(frozen=True)
class Refusal:
    commit: str | None
    path: str
    rule: str
    message: str

    def line(self) -> str:
        where = f"{self.commit[:12]} " if self.commit else ""
        return f"refused: {where}{self.path}: [{self.rule}] {self.message}"

    def to_json(self) -> dict[str, str | None]:
        return {"commit": self.commit, "path": self.path, "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class _Change:
    path: str
    mode: str  # new mode ("000000" when deleted)
    oid: str


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return run_git(repo, *args, stdin=stdin, hook_env=True).stdout


def _parse_raw(data: bytes) -> list[_Change]:
    """``--raw -z`` records: ``:oldmode newmode oldoid newoid status\\0path\\0``."""
    tokens = data.split(b"\0")
    changes, i = [], 0
    while i < len(tokens) - 1:
        head = tokens[i].decode()
        if not head.startswith(":"):
            i += 1
            continue
        fields = head[1:].split(" ")
        path = tokens[i + 1].decode("utf-8", "surrogateescape")
        changes.append(_Change(path, fields[1], fields[3]))
        i += 2
    return changes


def _blobs(repo: Path, oids: list[str]) -> dict[str, bytes]:
    return {oid: data for oid, data in cat_objects(repo, oids, hook_env=True) if data is not None}


def _check_changes(
    repo: Path, commit: str | None, changes: list[_Change], seen: set[tuple[str, str]]
) -> list[Refusal]:
    refusals: list[Refusal] = []
    to_read: list[_Change] = []
    for change in changes:
        if change.mode == "000000":
            if change.path == META:
                refusals.append(
                    Refusal(commit, change.path, "layout", "meta.json is required at the HCM's root")
                )
            continue
        problem = _path_problem(change)
        if problem is not None:
            refusals.append(Refusal(commit, change.path, *problem))
        elif (change.path, change.oid) not in seen:
            to_read.append(change)
    blobs = _blobs(repo, sorted({c.oid for c in to_read}))
    for change in to_read:
        seen.add((change.path, change.oid))
        data = blobs.get(change.oid)
        if data is None:
            refusals.append(Refusal(commit, change.path, "object", "its content is missing from the push"))
            continue
        for finding in check_file(change.path, data):
            if finding.severity == "error":
                refusals.append(Refusal(commit, change.path, "model", finding.message))
            elif "not a JSON file" in finding.message or "outside the HCM layers" in finding.message:
                refusals.append(Refusal(commit, change.path, "layout", finding.message))
    return refusals


def _path_problem(change: _Change) -> tuple[str, str] | None:
    try:
        check_relative(change.path)
    except HcmError as exc:
        return "path", exc.message
    if change.mode == _SYMLINK:
        return "symlink", "symbolic links are refused: one could point outside the HCM"
    if change.mode == _GITLINK:
        return "submodule", "submodules are refused in an HCM"
    if change.path != META and change.path.split("/")[0] not in LAYERS:
        return "layout", "outside the HCM layers (meta.json, stable/, domain/, state/, hindex/)"
    return None


def validate_rev(repo: Path, rev: str) -> list[Refusal]:
    commit = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", commit)
    changes = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _kind, oid = meta.decode().split(" ")
        changes.append(_Change(path.decode("utf-8", "surrogateescape"), mode, oid))
    refusals = _check_changes(repo, commit, changes, set())
    if not any(c.path == META for c in changes):
        refusals.append(Refusal(commit, META, "layout", "meta.json is required at the HCM's root"))
    return refusals


def validate_staged(repo: Path) -> list[Refusal]:
    has_head = (
        run_git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False, hook_env=True).returncode == 0
    )
    base = "HEAD" if has_head else EMPTY_TREE
    raw = _git(repo, "diff-index", "--cached", "--raw", "-z", "--no-renames", base)
    return _check_changes(repo, None, _parse_raw(raw), set())


def validate_push(repo: Path, old: str, new: str, ref: str, branch: str = "main") -> list[Refusal]:
    if ref.startswith("refs/tags/snapshot/"):
        if new == ZERO:
            return [Refusal(None, ref, "delete-snapshot", "a snapshot tag is never deleted")]
        if old not in (ZERO, new):
            return [
                Refusal(
                    None, ref, "move-snapshot", "a snapshot tag names one state forever; choose a new name"
                )
            ]
        return []
    if ref != f"refs/heads/{branch}":
        return []
    if new == ZERO:
        return [Refusal(None, ref, "delete-branch", f"the HCM branch {branch} is never deleted")]
    if old != ZERO:
        ancestor = run_git(repo, "merge-base", "--is-ancestor", old, new, check=False, hook_env=True)
        if ancestor.returncode != 0:
            return [
                Refusal(
                    new,
                    ref,
                    "non-fast-forward",
                    f"this push rewrites the HCM's history (it drops commits after {old[:12]}); "
                    "history is never rewritten: fetch, rebase your commits on it, push again",
                )
            ]
        span = [f"{old}..{new}"]
    else:
        span = [new, "--not", "--all"]
    marker = f"\x01arka-{secrets.token_hex(8)} "
    fmt = f"--format={marker.replace(chr(1), '%x01')}%H"
    log = _git(repo, "log", "--first-parent", "--reverse", "--no-renames", "--raw", "-z", fmt, *span)
    refusals: list[Refusal] = []
    seen: set[tuple[str, str]] = set()
    for commit, changes in _per_commit(log, marker.encode()):
        refusals.extend(_check_changes(repo, commit, changes, seen))
    return refusals


def _per_commit(log: bytes, marker: bytes) -> list[tuple[str, list[_Change]]]:
    """Split ``log --raw -z --format=<marker>%H`` into commits and their changes. The marker is
    random per run, so no path can pass for a commit boundary."""
    commits: list[tuple[str, list[_Change]]] = []
    tokens = iter(log.split(b"\0"))
    for token in tokens:
        token = token.lstrip(b"\n")
        if token.startswith(marker):
            commits.append((token[len(marker) :].decode().strip(), []))
        elif token.startswith(b":") and commits:
            fields = token[1:].decode().split(" ")
            path = next(tokens, b"").decode("utf-8", "surrogateescape")
            commits[-1][1].append(_Change(path, fields[1], fields[3]))
    return commits
