"""Creating a client folder, or adopting an HCM that already exists without history."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock, iso
from ..config import (
    CONFIG_FILE_NAME,
    Settings,
    default_file_config,
    ensure_anonymize_key,
    read_file_config,
    write_file_config,
)
from ..domain.layout import skeleton
from ..errors import ConflictingUpdate, InvalidPayload
from ..gitrepo import GitRepo
from ..ids import validate_id
from ..jsonio import canonical_bytes
from ..operations.outcome import WriteOutcome
from ..operations.views import Draft
from ..paths import PathResolver
from ..writepath.engine import CommitEngine
from ..writepath.guard import install_hooks
from ..writepath.requests import WriteRequest
from .verify import Finding, check_folder

__all__ = ["InitResult", "init_hcm"]


@dataclass
class InitResult:
    hcm_path: Path
    config_path: Path
    log_path: Path
    adopted: bool
    files: int
    revision: str
    warnings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return {
            "hcm": str(self.hcm_path),
            "config": str(self.config_path),
            "logs": str(self.log_path),
            "adopted": self.adopted,
            "files": self.files,
            "revision": self.revision,
            "warnings": [w.to_json() for w in self.warnings],
        }


def _existing_files(resolver: PathResolver) -> list[str]:
    """Every file of an HCM folder to adopt, each through the resolver (symlinks and unsafe names
    are refused: adopting them would commit a way out of HCM_ROOT)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(resolver.root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = resolver.relative(Path(dirpath) / name)
            resolver.resolve(rel)
            files.append(rel)
        for name in dirnames:
            if os.path.islink(Path(dirpath) / name):
                raise InvalidPayload(
                    f"{resolver.relative(Path(dirpath) / name)} is a symlink; replace it "
                    "with a real folder before adopting this HCM"
                )
    return files


def init_hcm(
    settings: Settings,
    tenant_id: str,
    tenant_name: str = "",
    *,
    clock: Clock | None = None,
    on_progress: Any = None,
) -> InitResult:
    """Create (or adopt) the HCM at ``settings.hcm_path`` with its first commit, the config file
    (if missing) and the log folder. Never overwrites an HCM that already has a history."""
    clock = clock or SystemClock()
    hcm = Path(settings.hcm_path)
    validate_id(tenant_id, "tenant_id")
    if (hcm / ".git").exists():
        raise ConflictingUpdate(
            f"{hcm} already holds an HCM with its history; nothing was changed "
            "(use `arka-hcm verify` to check it, or choose another folder)",
            {"path": str(hcm)},
        )
    hcm.mkdir(parents=True, exist_ok=True)
    resolver = PathResolver(hcm)
    existing = _existing_files(resolver)
    warnings: list[Finding] = []
    if existing:
        findings = check_folder(hcm, existing)
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            lines = "; ".join(f"{f.path}: {f.message}" for f in errors[:10])
            raise InvalidPayload(
                f"{hcm} holds files that cannot be adopted ({len(errors)} error(s)): {lines}",
                {"errors": [f.to_json() for f in errors]},
            )
        warnings = [f for f in findings if f.severity == "warning"]

    config_file = settings.config_path / CONFIG_FILE_NAME
    if not config_file.exists():
        write_file_config(config_file, default_file_config(tenant_id))
    file_config = read_file_config(config_file)
    settings = settings.with_file(file_config)
    ensure_anonymize_key(settings.config_path)  # the per-client key of `arka-hcm anonymize`
    settings.log_path.mkdir(parents=True, exist_ok=True)

    repo = GitRepo.init(hcm, file_config.store.branch)
    install_hooks(repo.git_dir)
    engine = CommitEngine(settings, repo, clock)
    if existing:

        def apply(draft: Draft) -> WriteOutcome:
            for index, path in enumerate(existing):
                data = resolver.read_bytes(path)
                assert data is not None, path
                request.disk_read[path] = data  # the disk holds it already: nothing to replace
                draft.write(path, data)
                if on_progress:
                    on_progress(index + 1, len(existing))
            return WriteOutcome({}, ".", f"adopt the existing HCM ({len(existing)} files)")

        files = len(existing)
    else:
        content = skeleton(tenant_id, tenant_name, settings.env, iso(clock.now()))

        def apply(draft: Draft) -> WriteOutcome:
            for path, value in content.items():
                draft.write(path, canonical_bytes(value))
            return WriteOutcome({}, ".", f"new HCM for tenant {tenant_id}")

        files = len(content)
    request = WriteRequest(
        op="HCM_INIT",
        request_id=f"init-{tenant_id}",
        caller_type="system",
        caller_id="arka-hcm",
        payload_sha256="",
        apply=apply,
        replay=lambda stored, view: {},
        adopts_hand_edits=bool(existing),
    )
    revision = engine.submit(request).revision
    engine.close()
    return InitResult(hcm, settings.config_path, settings.log_path, bool(existing), files, revision, warnings)
