"""`arka-hcm verify`: integrity of the repository, the work tree, and every file's shape.

Findings are *errors* (real damage: a corrupt object, a file that is not JSON, a required field
missing, the work tree out of step with HEAD) or *warnings* (quirks of HCM folders written by
earlier implementations: non-canonical formatting, blank journal lines, an evidence file whose
name differs from its id, upper-case ids, files the layout does not name). Warnings exit 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.checks import Finding, check_file
from ..domain.layout import META
from ..durable import lock_is_held
from ..errors import Busy, HcmError
from ..gitrepo import GitRepo
from ..gitrepo.gitbin import run_fsck
from ..history.index import HistoryIndex
from ..paths import PathResolver
from ..writepath.hand_edits import SavedEdits
from ..writepath.request_index import RequestIndex
from ..writepath.worktree import ASIDE_MARK, INTENT_FILE, TEMP_MARK

__all__ = ["Finding", "VerifyReport", "check_file", "check_folder", "verify_hcm"]


@dataclass
class VerifyReport:
    revision: str | None
    files: int
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "revision": self.revision,
            "files": self.files,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.to_json() for f in self.findings],
        }


def check_folder(root: Path, files: list[str]) -> list[Finding]:
    """Checks of a plain folder (before adoption)."""
    resolver = PathResolver(root)
    found: list[Finding] = []
    if META not in files:
        found.append(Finding("warning", META, "missing: an HCM folder has a meta.json at its root"))
    for path in files:
        found.extend(check_file(path, resolver.resolve(path).read_bytes()))
    return found


VERIFY_ATTEMPTS = 3


def verify_hcm(
    hcm_path: Path,
    *,
    fsck: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    attempts: int = VERIFY_ATTEMPTS,
) -> VerifyReport:
    """Check the repository, the work tree against HEAD, and every file against its model.

    A store writing meanwhile moves the branch under the check: git fsck may read a reflog entry
    before the pack it names, and a work-tree file may still be on its way. So a check that finds
    errors while a write was in flight (the branch moved, or a write intent was open) is run
    again; if writes never pause, the answer is BUSY ("run again when the store is idle"), never a
    false DAMAGED."""
    repo = GitRepo(hcm_path)
    try:
        for attempt in range(attempts):
            before = _writing_state(repo)
            report = _verify_once(repo, hcm_path, fsck=fsck, on_progress=on_progress)
            if report.ok or (before == _writing_state(repo) and not before[1]):
                return report
            time.sleep(0.2 * (attempt + 1))
    finally:
        repo.close()
    raise Busy(
        "the store kept writing during each check, so its findings may be writes in flight; "
        "run `arka-hcm verify` again when the store is idle (or stop the service first)",
        retry_after=5,
    )


def _writing_state(repo: GitRepo) -> tuple[str | None, bool]:
    """(branch tip, a write in flight): what changes while a store writes. An intent counts as
    in flight only while some store holds the write lock: a free lock means a leftover of a
    write that failed or was killed (reported, not waited for)."""
    return repo.read_ref(repo.head_ref_name()), (repo.state_dir / INTENT_FILE).exists() and _lock_held(repo)


def _lock_held(repo: GitRepo) -> bool:
    return lock_is_held(repo.state_dir / "write.lock")


def _store_state_findings(repo: GitRepo, head: str) -> list[Finding]:
    """What the store's own state says: a rewind nobody accepted, an interrupted write left to
    repair, hand edits kept out of history."""
    found = []
    history = HistoryIndex(repo.workdir, repo.state_dir)  # depths instead of a walk of git's graph
    try:
        rewound = RequestIndex(repo, repo.head_ref_name(), repo.state_dir, history).unaccepted_rewind(head)
    finally:
        history.close_reader()
    if rewound is not None:
        found.append(Finding("error", ".git", rewound.message()))
    if (repo.state_dir / INTENT_FILE).exists() and not _lock_held(repo):
        found.append(
            Finding(
                "error",
                ".git/arka-hcm/intent.json",
                "a write was interrupted before the work tree followed the branch; any arka-hcm "
                "command that opens the HCM (e.g. `arka-hcm status`) finishes it",
            )
        )
    for record in SavedEdits(repo.state_dir).listed(20):
        found.append(
            Finding(
                "warning",
                str(record.get("path")),
                f"a hand edit was kept out of history ({record.get('reason')}); it is saved in "
                f".git/{record.get('saved_as')}",
            )
        )
    return found


def _verify_once(
    repo: GitRepo, hcm_path: Path, *, fsck: bool, on_progress: Callable[[int, int], None] | None
) -> VerifyReport:
    found: list[Finding] = []
    if fsck:
        ok, output = run_fsck(hcm_path)
        if not ok:
            found.append(Finding("error", ".git", f"git fsck --strict failed: {output[:2000]}"))
    head = repo.read_ref(repo.head_ref_name())
    if head is None:
        return VerifyReport(None, 0, found + [Finding("error", ".git", "the branch has no commit")])
    try:
        files = dict(repo.walk_files(repo.commit_tree(head)))
    except HcmError as exc:  # a damaged commit or tree: say so, do not crash
        return VerifyReport(
            head, 0, found + [Finding("error", ".git", f"cannot read HEAD's tree: {exc.message}")]
        )
    if META not in files:
        found.append(Finding("error", META, "missing from HEAD"))
    found.extend(_store_state_findings(repo, head))
    resolver = PathResolver(hcm_path)
    total = len(files)
    for done, (path, blob) in enumerate(sorted(files.items()), start=1):
        try:
            found.extend(check_file(path, repo.blob_data(blob)))
        except HcmError as exc:  # a missing or corrupt object: the file's history is damaged
            found.append(Finding("error", path, f"cannot read its committed content: {exc.message}"))
        location = resolver.root / path
        try:
            if not location.is_file() or location.is_symlink():
                found.append(Finding("error", path, "in HEAD but missing from the work tree"))
            elif repo.hash_file(location) != blob:
                found.append(
                    Finding(
                        "error",
                        path,
                        "the work tree differs from HEAD: an uncommitted hand edit "
                        "(`arka-hcm adopt` commits it)",
                    )
                )
        except OSError as exc:
            found.append(Finding("error", path, f"cannot read the work tree file: {exc.strerror}"))
        if on_progress and (done % 200 == 0 or done == total):
            on_progress(done, total)
    for dirpath, dirnames, filenames in os.walk(hcm_path):
        if Path(dirpath) == Path(hcm_path):
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            rel = os.path.relpath(Path(dirpath) / name, hcm_path).replace(os.sep, "/")
            if TEMP_MARK in name or ASIDE_MARK in name:
                continue  # the store's transient files (a killed store's are cleared at the next open)
            if rel not in files:
                found.append(
                    Finding(
                        "error",
                        rel,
                        "in the work tree but not in HEAD: an uncommitted file (`arka-hcm adopt` commits it)",
                    )
                )
    return VerifyReport(head, total, found)
