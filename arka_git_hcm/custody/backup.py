"""``arka-hcm backup create``: the branch and every snapshot tag as one git bundle, full or
incremental, with its manifest beside it (see manifest.py for why beside).

A backup never holds up writes: it takes no store lock; git reads the refs once at its start
(every object a ref names is already on disk: a batch's pack is written before its branch
moves) and the packs under the maintenance lock shared (see gitrepo/bundles.py). A service
writing meanwhile simply lands after the bundle's head.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import CONFIG_FILE_NAME, Settings
from ..errors import HcmError, InvalidPayload, IoError, NotFound
from ..gitrepo.bundles import EmptyBundle, count_commits, create_bundle, read_bundle_header, snapshot_refs
from ..gitrepo.gitcli import GitFailed, Progress, run_git
from ..ids import is_valid_id
from .manifest import FORMAT, read_manifest, sha256_of, write_manifest
from .secrets import secret_files

__all__ = ["create_backup", "resolve_since"]


def _hcm_repo(settings: Settings) -> Path:
    hcm = Path(settings.hcm_path)
    if not (hcm / ".git").is_dir():
        raise NotFound(f"no HCM repository at {hcm}", {"path": str(hcm)})
    return hcm


def resolve_since(settings: Settings, since: str) -> tuple[list[str], str]:
    """The commits an incremental backup starts after: a snapshot's commit, or every ref of a
    previous bundle (with its manifest). Returns (commits to exclude, description)."""
    path = Path(since).absolute()
    if path.is_file():
        try:
            header = read_bundle_header(path)
        except ValueError as exc:
            raise InvalidPayload(str(exc)) from None
        return sorted(set(header.refs.values())), path.name
    name = since.removeprefix("refs/tags/").removeprefix("snapshot/")
    if not is_valid_id(name):
        raise InvalidPayload(f"--since {since!r} is neither a bundle file nor a snapshot name")
    proc = run_git(
        _hcm_repo(settings),
        "rev-parse",
        "--verify",
        "-q",
        f"refs/tags/snapshot/{name}^{{commit}}",
        check=False,
    )
    if proc.returncode != 0:
        raise NotFound(
            f"no snapshot {name!r} and no file {since!r}; see `arka-hcm snapshot list`", {"since": since}
        )
    return [proc.stdout.decode().strip()], f"snapshot/{name}"


def _tenant(hcm: Path, head: str, settings: Settings) -> str:
    proc = run_git(hcm, "cat-file", "blob", f"{head}:meta.json", check=False)
    if proc.returncode == 0:
        try:
            tenant = json.loads(proc.stdout).get("tenant_id")
            if isinstance(tenant, str):
                return tenant
        except ValueError:
            pass
    return settings.file.tenant_id


def create_backup(
    settings: Settings,
    out: Path,
    *,
    with_config: bool = False,
    with_secrets: bool = False,
    since: str | None = None,
    on_progress: Progress | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write ``out`` (a git bundle) and ``out.manifest.json``; returns the manifest (without the
    embedded files)."""
    hcm = _hcm_repo(settings)
    out = Path(out).absolute()  # git runs in the HCM folder: a relative path would land there
    branch = settings.file.store.branch
    exclude, base = resolve_since(settings, since) if since else ([], None)
    if with_secrets and not with_config:
        with_config = True  # secrets without the config they belong to would restore half a client
    try:
        header = create_bundle(hcm, out, branch, exclude=exclude, on_progress=on_progress)
    except EmptyBundle:
        raise NotFound(
            f"nothing new since {base}: no incremental backup was written", {"since": base}
        ) from None
    except (GitFailed, FileNotFoundError) as exc:
        raise IoError(f"the bundle could not be written: {exc}") from None
    except OSError as exc:
        from ..errors import from_os_error

        raise from_os_error(exc, f"writing {out}") from None
    head = header.refs.get(f"refs/heads/{branch}")
    if head is None:
        out.unlink(missing_ok=True)
        if exclude:  # only new snapshot tags: git leaves the unmoved branch out of the bundle
            raise NotFound(
                f"nothing new on {branch} since {base}: no incremental backup was written (a snapshot "
                "taken since goes into the next incremental, after a write, or into a full backup)",
                {"since": base},
            )
        raise NotFound(f"the branch {branch} has no commit to back up")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "kind": "incremental" if exclude else "full",
        "bundle": out.name,
        "bytes": out.stat().st_size,
        "sha256": sha256_of(out, on_progress),
        "tenant_id": _tenant(hcm, head, settings),
        "branch": branch,
        "head": head,
        "refs": dict(sorted(header.refs.items())),
        "prerequisites": sorted(header.prerequisites),
        "since": base,
        "commits": count_commits(hcm, head),
        "commits_in_bundle": count_commits(hcm, head, exclude) if exclude else None,
        "snapshots": len(snapshot_refs(hcm)),
        "program_version": __version__,
        "created_at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    files: dict[str, str] = {}
    if with_config:
        config = settings.config_file
        if config.is_file():
            files[f"config/{CONFIG_FILE_NAME}"] = config.read_text("utf-8")
    secrets: dict[str, str] = {}
    if with_secrets:
        try:
            secrets = {
                f"config/{name}": base64.b64encode(data).decode()
                for name, data in secret_files(settings).items()
            }
        except HcmError:
            out.unlink(missing_ok=True)
            raise
    full = manifest | ({"files": files} if files else {}) | ({"secrets": secrets} if secrets else {})
    write_manifest(out, full)
    return manifest | {
        "manifest": out.name + ".manifest.json",
        "config_included": bool(files),
        "secrets_included": sorted(secrets),
    }


def describe(bundle: Path) -> dict[str, Any]:
    """The manifest of a backup without its embedded files (for listings)."""
    manifest = read_manifest(bundle)
    return {k: v for k, v in manifest.items() if k not in ("files", "secrets")}
