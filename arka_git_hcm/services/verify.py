"""`arka-hcm verify`: integrity of the repository, the work tree, and every file's shape.

Findings are *errors* (real damage: a corrupt object, a file that is not JSON, a required field
missing, the work tree out of step with HEAD) or *warnings* (quirks of HCM folders written by
earlier implementations: non-canonical formatting, blank journal lines, an evidence file whose
name differs from its id, upper-case ids, files the layout does not name). Warnings exit 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ..domain.layout import LAYERS, META, model_for_path
from ..domain.models import JournalEntry
from ..errors import Busy, HcmError
from ..gitrepo import GitRepo
from ..gitrepo.gitbin import run_fsck
from ..ids import is_valid_id
from ..jsonio import canonical_bytes, parse_json
from ..paths import PathResolver
from .worktree import INTENT_FILE

__all__ = ["Finding", "VerifyReport", "check_folder", "verify_hcm"]

_ID_FIELDS = ("mission_id", "evidence_id", "action_id", "decision_id", "agent_id", "human_id")


@dataclass
class Finding:
    severity: Literal["error", "warning"]
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity, "path": self.path, "message": self.message}


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


def _ids_in(value: Any) -> Iterable[tuple[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if key in _ID_FIELDS:
                    yield key, sub
                elif isinstance(sub, (dict, list)):
                    stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def _is_mission_evidence(path: str) -> bool:
    """``state/missions/<id>/evidence/<evidence_id>.json``: the only files named after an evidence
    id (``stable/patterns/evidence/*.json`` are patterns, not evidence)."""
    parts = path.split("/")
    return (
        len(parts) == 5
        and parts[0] == "state"
        and parts[1] == "missions"
        and parts[3] == "evidence"
        and parts[4].endswith(".json")
    )


def check_file(path: str, data: bytes) -> list[Finding]:
    """Shape checks of one file's bytes."""
    found: list[Finding] = []
    if path.endswith(".jsonl"):
        lines = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                if number < len(lines):
                    found.append(Finding("warning", path, f"line {number} is blank"))
                continue
            try:
                entry = parse_json(line, what=f"line {number}")
                JournalEntry.model_validate(entry)
            except HcmError as exc:
                found.append(Finding("error", path, f"line {number}: {exc.message}"))
                continue
            except ValidationError as exc:
                err = exc.errors()[0]
                found.append(
                    Finding("error", path, f"line {number}: {'.'.join(map(str, err['loc']))}: {err['msg']}")
                )
                continue
        if data and not data.endswith(b"\n"):
            found.append(Finding("warning", path, "no newline after the last line"))
        return found
    if not path.endswith(".json"):
        found.append(Finding("warning", path, "not a JSON file; the HCM holds .json and .jsonl files"))
        return found
    try:
        value = parse_json(data, what=path, max_depth=512)
    except HcmError as exc:
        return [Finding("error", path, exc.message)]
    model = model_for_path(path)
    if model is not None:
        try:
            model.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors()[:5]:
                where = ".".join(str(p) for p in err["loc"])
                found.append(Finding("error", path, f"{where}: {err['msg']}"))
    if data != canonical_bytes(value):
        found.append(
            Finding("warning", path, "not in canonical form (2-space indent, sorted keys, final newline)")
        )
    for key, value_id in _ids_in(value):
        if not is_valid_id(value_id):
            found.append(Finding("warning", path, f"{key} {value_id!r} does not follow the id rules"))
    if _is_mission_evidence(path) and isinstance(value, dict):
        stem = path.rsplit("/", 1)[-1][: -len(".json")]
        if value.get("evidence_id") != stem:
            found.append(
                Finding(
                    "warning",
                    path,
                    f"file name {stem!r} differs from evidence_id {value.get('evidence_id')!r}",
                )
            )
    if path.split("/")[0] not in LAYERS and path != META:
        found.append(Finding("warning", path, "outside the HCM layers (stable, domain, state, hindex)"))
    return found


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
    """(branch tip, a write intent open): what changes while a store writes."""
    return repo.read_ref(repo.head_ref_name()), (repo.state_dir / INTENT_FILE).exists()


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
            if rel not in files:
                found.append(
                    Finding(
                        "error",
                        rel,
                        "in the work tree but not in HEAD: an uncommitted file (`arka-hcm adopt` commits it)",
                    )
                )
    return VerifyReport(head, total, found)
