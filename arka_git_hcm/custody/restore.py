"""``arka-hcm restore`` and ``arka-hcm backup verify``: a chain of bundles back to an HCM.

Restore builds a complete client folder (``hcm/`` with its repository and checked-out tree,
``config/``, ``logs/``) in a staging folder inside DIR, then moves it into place, then opens it
as a store (hooks, git's index) and verifies it (fsck, work tree = HEAD, every file against its
model). The commit ids are the source's: the bundles carry the objects themselves.

A chain is one full bundle then incrementals; they may be given in any order and are applied
full first, then each incremental whose prerequisites are present. One whose prerequisites no
bundle provides is a gap: refused, naming the bundle and the missing commits, before anything
is written to DIR.

Destructive by default? Never: a non-empty DIR is refused; with ``force`` what was there
(``hcm/``, ``config/``) is moved aside to ``*.replaced-<time>`` beside it, not deleted.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..admin.verify import verify_hcm
from ..config import CONFIG_FILE_NAME, default_file_config, load_settings, write_file_config
from ..errors import ConflictingUpdate, HcmError, InvalidPayload, IoError
from ..gitrepo import GitRepo
from ..gitrepo.bundles import MissingPrerequisites, apply_bundle, checkout_branch, read_bundle_header
from ..gitrepo.gitcli import GitFailed, Progress, run_git
from ..services.store import HcmStore
from .manifest import read_manifest, sha256_of
from .secrets import check_secret_name

__all__ = ["order_chain", "restore_backup", "verify_backup"]


def _load(bundles: list[Path], on_progress: Progress | None) -> list[tuple[Path, dict[str, Any]]]:
    loaded = []
    for bundle in (Path(b).absolute() for b in bundles):  # git reads them from another folder
        if not bundle.is_file():
            raise InvalidPayload(f"{bundle} is not a file", {"path": str(bundle)})
        manifest = read_manifest(bundle)
        actual = sha256_of(bundle, on_progress)
        if actual != manifest["sha256"]:
            raise IoError(
                f"{bundle.name} is damaged: its sha256 is {actual}, its manifest says {manifest['sha256']}",
                {"path": str(bundle)},
            )
        try:
            header = read_bundle_header(bundle)
        except ValueError as exc:
            raise IoError(str(exc), {"path": str(bundle)}) from None
        if header.refs != manifest["refs"] or sorted(header.prerequisites) != manifest["prerequisites"]:
            raise IoError(f"{bundle.name} does not hold what its manifest lists", {"path": str(bundle)})
        loaded.append((bundle, manifest))
    return loaded


def order_chain(loaded: list[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    """Full first, then each incremental once its prerequisites are reachable from what came
    before (a prerequisite is a commit of an earlier bundle's history). InvalidPayload on a
    gap, a second full bundle, or bundles of different tenants."""
    fulls = [item for item in loaded if item[1]["kind"] == "full"]
    if len(fulls) != 1:
        raise InvalidPayload(
            f"a restore takes exactly one full backup and its incrementals; got {len(fulls)} full "
            f"among {', '.join(p.name for p, _ in loaded)}"
        )
    tenants = {m.get("tenant_id") for _, m in loaded}
    if len(tenants) > 1:
        raise InvalidPayload(f"these backups belong to different tenants: {sorted(map(str, tenants))}")
    chain = fulls[:]
    rest = [item for item in loaded if item[1]["kind"] != "full"]
    rest.sort(key=lambda item: item[1].get("commits") or 0)  # older heads first
    return chain + rest


def _move_aside(target: Path) -> list[str]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = []
    for name in ("hcm", "config"):
        old = target / name
        if old.exists():
            aside = target / f"{name}.replaced-{stamp}"
            os.replace(old, aside)
            moved.append(str(aside))
    return moved


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise InvalidPayload(f"{target} is a file; restore into a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ConflictingUpdate(
            f"{target} is not empty; restore into an empty folder, or add --force to move its "
            "hcm/ and config/ aside (to *.replaced-<time>, nothing is deleted)",
            {"path": str(target)},
        )


def _write_config(staging: Path, manifest: dict[str, Any]) -> list[str]:
    config_dir = staging / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = manifest.get("files") or {}
    written = []
    text = files.get(f"config/{CONFIG_FILE_NAME}")
    if text is not None:
        fd = os.open(config_dir / CONFIG_FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        written.append(f"config/{CONFIG_FILE_NAME}")
    else:
        config = default_file_config(str(manifest.get("tenant_id") or ""))
        config.store.branch = manifest["branch"]
        write_file_config(config_dir / CONFIG_FILE_NAME, config)
    for name, data in (manifest.get("secrets") or {}).items():
        leaf = check_secret_name(name.removeprefix("config/"))
        fd = os.open(config_dir / leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(data))
        written.append(f"config/{leaf}")
    return written


def _apply_chain(hcm: Path, chain: list[tuple[Path, dict[str, Any]]], on_progress: Progress | None) -> None:
    GitRepo.init(hcm, chain[0][1]["branch"]).close()
    applied: list[str] = []
    for bundle, _manifest in chain:
        try:
            apply_bundle(hcm, bundle, on_progress=on_progress)
        except MissingPrerequisites as exc:
            raise InvalidPayload(
                f"gap in the chain: {bundle.name} builds on commit(s) {', '.join(exc.missing)} that "
                f"{', '.join(applied) or 'no bundle given'} do not hold; add the incremental backups "
                "between them",
                {"bundle": bundle.name, "missing": exc.missing},
            ) from None
        except GitFailed as exc:
            raise IoError(f"{bundle.name} could not be applied: {exc.stderr[:500]}") from None
        applied.append(bundle.name)
    checkout_branch(hcm)


def _build(
    staging: Path, chain: list[tuple[Path, dict[str, Any]]], on_progress: Progress | None
) -> tuple[str, list[str]]:
    last = chain[-1][1]
    _apply_chain(staging / "hcm", chain, on_progress)
    head = run_git(staging / "hcm", "rev-parse", "HEAD").stdout.decode().strip()
    if head != last["head"]:
        raise IoError(f"the restored head {head} is not the backup's head {last['head']}")
    with_files = [m for _, m in chain if m.get("files") or m.get("secrets")]  # the newest config wins
    newest = with_files[-1] if with_files else {}
    written = _write_config(staging, last | {"files": newest.get("files"), "secrets": newest.get("secrets")})
    (staging / "logs").mkdir(exist_ok=True)
    return head, written


def restore_backup(
    bundles: list[Path], target: Path, *, force: bool = False, on_progress: Progress | None = None
) -> dict[str, Any]:
    chain = order_chain(_load(bundles, on_progress))
    target = Path(target).absolute()
    _check_target(target, force)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".arka-restore-", dir=target))
    try:
        head, written = _build(staging, chain, on_progress)
        moved = _move_aside(target) if force else []
        os.replace(staging / "hcm", target / "hcm")
        os.replace(staging / "config", target / "config")
        (target / "logs").mkdir(exist_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    settings = load_settings(client=target)
    with HcmStore.open(settings, scan_hand_edits=False):
        pass  # installs the store's hooks and brings git's index in line
    report = verify_hcm(settings.hcm_path, on_progress=_files_progress(on_progress))
    return {
        "ok": report.ok,
        "client": str(target),
        "head": head,
        "tenant_id": chain[0][1].get("tenant_id"),
        "bundles": [p.name for p, _ in chain],
        "commits": int(run_git(settings.hcm_path, "rev-list", "--count", "HEAD").stdout.decode()),
        "config_files": written,
        "moved_aside": moved,
        "verify": report.to_json(),
    }


def _files_progress(on_progress: Progress | None) -> Any:
    if on_progress is None:
        return None
    return lambda done, total: on_progress("Verifying files", done, total)


def verify_backup(bundles: list[Path], *, on_progress: Progress | None = None) -> dict[str, Any]:
    """Check a full bundle or a chain: checksums against manifests, the chain's order and gaps,
    then a restore into a temporary folder: git fsck of every object, the head's layout and
    every file against its model, the head commit against the last manifest."""
    chain = order_chain(_load(bundles, on_progress))
    scratch = Path(tempfile.mkdtemp(prefix="arka-hcm-verify-"))
    try:
        head, _ = _build(scratch, chain, on_progress)
        report = verify_hcm(scratch / "hcm", on_progress=_files_progress(on_progress))
        commits = int(run_git(scratch / "hcm", "rev-list", "--count", "HEAD").stdout.decode())
    except HcmError:
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    last = chain[-1][1]
    problems = [f.to_json() for f in report.errors]
    if last.get("commits") is not None and commits != last["commits"]:
        problems.append(
            {
                "severity": "error",
                "path": ".git",
                "message": f"{commits} commits, manifest says {last['commits']}",
            }
        )
    return {
        "ok": not problems,
        "head": head,
        "commits": commits,
        "bundles": [
            {"file": p.name, "kind": m["kind"], "head": m["head"], "sha256": m["sha256"]} for p, m in chain
        ],
        "files": report.files,
        "errors": problems,
        "warnings": len(report.warnings),
    }
