"""The client's Git remotes: ``remote add/list/remove/status`` and ``push``.

Remotes are kept in ``arka-os.config.json`` (``remotes``: name and URL), so a backup made with
``--config`` carries them to a new host; their credentials live in the 0600 secrets file
(secrets.py), never in the URL: a URL with ``user:password@`` is refused with where to put the
password instead. A push sends the branch and every snapshot tag and is never forced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import FileConfig, RemoteRecord, Settings, locked_file_config, write_file_config
from ..errors import ConflictingUpdate, InvalidPayload, IoError, NotFound
from ..gitrepo.gitcli import GitFailed, Progress, run_git
from ..gitrepo.remotes import Credentials, RemoteDiverged, RemoteRejected, is_ancestor, ls_remote, push
from ..ids import validate_id
from .secrets import read_secrets, update_secrets

__all__ = [
    "add_remote",
    "check_url",
    "credentials_for",
    "find_remote",
    "list_remotes",
    "push_repository",
    "push_to_remote",
    "remote_status",
    "remove_remote",
]

_SCHEMES = ("http", "https", "git", "ssh", "file")


def check_url(url: str) -> str:
    """A remote URL without credentials; InvalidPayload saying why and what to do otherwise."""
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidPayload("the URL holds spaces or control characters", {"field": "url"})
    if url.startswith("/"):
        return url
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise InvalidPayload(
            f"unsupported URL {url[:100]!r}: use https://, http://, ssh://, git:// or file://",
            {"field": "url"},
        )
    if parts.password is not None or (parts.username and parts.scheme in ("http", "https")):
        raise InvalidPayload(
            "the URL holds credentials; give the URL without them and the user name with --username "
            "(the password is read from standard input with --password-stdin and kept in "
            "CONFIG_ROOT/arka-hcm.secrets.json, mode 0600)",
            {"field": "url"},
        )
    return url


@contextmanager
def _config_locked(settings: Settings) -> Iterator[FileConfig]:
    """Read-modify-write of the config under the same lock as `token` uses."""
    path = settings.config_file
    with locked_file_config(path) as config:
        yield config
        write_file_config(path, FileConfig.model_validate(config.model_dump()))


def add_remote(
    settings: Settings, name: str, url: str, *, username: str | None = None, password: str | None = None
) -> dict[str, Any]:
    validate_id(name, "remote name")
    check_url(url)
    if (username is None) != (password is None):
        raise InvalidPayload("give both --username and --password-stdin, or neither")
    for value in (username, password):
        if value is not None and (not value or "\n" in value or "\0" in value):
            raise InvalidPayload("a user name or password must be one non-empty line")
    with _config_locked(settings) as config:
        if any(r.name == name for r in config.remotes):
            raise ConflictingUpdate(f"remote {name} exists; remove it first", {"remote": name})
        config.remotes.append(RemoteRecord(name=name, url=url))
        if username is not None:
            with update_secrets(settings) as secrets:
                secrets.setdefault("remotes", {})[name] = {"username": username, "password": password}
    return {"name": name, "url": url, "credentials": username is not None}


def remove_remote(settings: Settings, name: str) -> dict[str, Any]:
    with _config_locked(settings) as config:
        if not any(r.name == name for r in config.remotes):
            raise NotFound(f"no remote {name}; see `arka-hcm remote list`", {"remote": name})
        if config.mirror.enabled and config.mirror.remote == name:
            raise ConflictingUpdate(f"remote {name} is the mirror's; disable mirror first", {"remote": name})
        config.remotes = [r for r in config.remotes if r.name != name]
    with update_secrets(settings) as secrets:
        secrets.get("remotes", {}).pop(name, None)
    return {"removed": name}


def list_remotes(settings: Settings) -> list[dict[str, Any]]:
    """Names, URLs and whether credentials are set (never the credentials)."""
    stored = read_secrets(settings).get("remotes", {})
    return [{"name": r.name, "url": r.url, "credentials": r.name in stored} for r in settings.file.remotes]


def find_remote(settings: Settings, name: str | None) -> RemoteRecord:
    remotes = settings.file.remotes
    if name is None:
        if settings.file.mirror.remote:
            name = settings.file.mirror.remote
        elif len(remotes) == 1:
            return remotes[0]
        else:
            raise InvalidPayload("name the remote: `arka-hcm push NAME` (see `arka-hcm remote list`)")
    for remote in remotes:
        if remote.name == name:
            return remote
    raise NotFound(f"no remote {name}; add it with `arka-hcm remote add {name} URL`", {"remote": name})


def credentials_for(settings: Settings, name: str) -> Credentials | None:
    entry = read_secrets(settings).get("remotes", {}).get(name)
    if not isinstance(entry, dict):
        return None
    username, password = entry.get("username"), entry.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    return Credentials(username, password)


def _tip(settings: Settings) -> str | None:
    return _tip_of(Path(settings.hcm_path), settings.file.store.branch)


def _tip_of(repo: Path, branch: str) -> str | None:
    proc = run_git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
    return proc.stdout.decode().strip() or None


def push_to_remote(
    settings: Settings, name: str | None = None, *, on_progress: Progress | None = None
) -> dict[str, Any]:
    return push_repository(settings, Path(settings.hcm_path), name, on_progress=on_progress)


def push_repository(
    settings: Settings,
    repo: Path,
    name: str | None = None,
    *,
    what: str = "this HCM",
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Push ``repo``'s branch and snapshot tags to remote ``name`` with its stored credentials,
    never forced: the HCM itself, or another repository of the same shape (the anonymized
    history of `arka-hcm anonymize --push`). ``what`` names ``repo`` in the errors."""
    remote = find_remote(settings, name)
    branch = settings.file.store.branch
    started = time.monotonic()
    try:
        result = push(
            repo,
            remote.url,
            credentials_for(settings, remote.name),
            branch,
            on_progress=on_progress,
        )
    except RemoteDiverged as exc:
        raise ConflictingUpdate(
            f"the remote {remote.name} has history {what} does not have: {exc.what}. The HCM never "
            f"force-pushes. Look at what is there (git fetch {remote.url} {branch}); if those commits "
            "are not wanted, move them aside on the remote (rename its branch or tag) or point the "
            "remote at a new empty repository, then push again",
            {"remote": remote.name},
        ) from None
    except RemoteRejected as exc:
        raise IoError(f"the remote {remote.name} refused the push: {exc}", {"remote": remote.name}) from None
    except GitFailed as exc:
        raise IoError(f"push to {remote.name} failed: {exc.stderr[:600]}", {"remote": remote.name}) from None
    return {
        "remote": remote.name,
        "revision": _tip_of(repo, branch),
        "updated": result.updated,
        "up_to_date": result.up_to_date,
        "seconds": round(time.monotonic() - started, 3),
    }


def remote_status(settings: Settings, name: str | None = None) -> list[dict[str, Any]]:
    """For each remote (or one): its branch head, how many commits it lacks, and whether it
    diverged; an unreachable remote is reported, not raised."""
    remotes = [find_remote(settings, name)] if name else list(settings.file.remotes)
    tip = _tip(settings)
    hcm = Path(settings.hcm_path)
    branch = settings.file.store.branch
    rows = []
    for remote in remotes:
        row: dict[str, Any] = {"name": remote.name, "url": remote.url, "tip": tip}
        try:
            refs = ls_remote(remote.url, credentials_for(settings, remote.name), branch)
        except GitFailed as exc:
            rows.append(row | {"reachable": False, "error": exc.stderr[:300]})
            continue
        head = refs.get(f"refs/heads/{branch}")
        row |= {
            "reachable": True,
            "remote_head": head,
            "snapshots": sum(1 for r in refs if "/snapshot/" in r),
        }
        if tip is None or head == tip:
            row |= {"behind": 0, "diverged": False}
        elif head is None:
            row |= {"behind": int(run_git(hcm, "rev-list", "--count", tip).stdout), "diverged": False}
        elif _known(hcm, head) and is_ancestor(hcm, head, tip):
            row |= {
                "behind": int(run_git(hcm, "rev-list", "--count", f"{head}..{tip}").stdout),
                "diverged": False,
            }
        else:
            row |= {"behind": None, "diverged": True}
        rows.append(row)
    return rows


def _known(hcm: Path, commit: str) -> bool:
    return run_git(hcm, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0
