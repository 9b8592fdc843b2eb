"""The checks an HCM passes before it is opened: who owns it, whether its branch can be read,
whether its volume takes writes; and how to create one that is missing."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from .. import durable
from ..config import Settings
from ..errors import AccessDenied, IoError
from ..gitrepo import GitRepo

__all__ = ["init_hint", "move_damaged_loose_objects", "probe_writable", "read_branch", "refuse_other_owner"]

log = logging.getLogger("arka_git_hcm.store")

_COMMIT_ID = re.compile(r"[0-9a-f]{40}")


def refuse_other_owner(git_dir: Path) -> None:
    """Refuse to open an HCM owned by another user, as git refuses a dubious owner: files this
    process creates (objects, refs, the work tree) would be its own, and the service, running as
    the folder's owner (uid 10001 in the container), could no longer write them. A folder shared
    through a group (setgid and group-writable, as teams set it up) is fine."""
    info = os.stat(git_dir)
    uid = os.geteuid()
    shared = info.st_mode & stat.S_ISGID and info.st_mode & stat.S_IWGRP
    if uid == info.st_uid or shared:
        return
    raise AccessDenied(
        f"{git_dir.parent} belongs to uid {info.st_uid} and this command runs as uid {uid}: the files it "
        f"would create could not be written by the service afterwards. Run it as the folder's owner: "
        f"inside the container, `docker compose exec arka-os arka-hcm ...` (or `docker-compose exec`), or "
        f"on the host `sudo -u '#{info.st_uid}' arka-hcm ...`",
        {"owner_uid": info.st_uid, "uid": uid},
    )


def move_damaged_loose_objects(repo: GitRepo) -> list[dict[str, str]]:
    """Loose objects libgit2 would hang on (cut short by a crash of the git that wrote them),
    moved aside before anything reads history; a history that needs one then reads as damaged."""
    moved = repo.move_damaged_loose_objects()
    for item in moved:
        log.warning(
            "moved the unreadable loose object %s to .git/arka-hcm/damaged-objects (%s); restore it "
            "from a clone or a backup (`git cat-file -p %s` there shows it)",
            item["id"],
            item["reason"],
            item["id"],
        )
    return moved


def read_branch(repo: GitRepo, settings: Settings) -> str | None:
    """The branch tip at open (None: a repository with no commit yet). A HEAD or branch that
    cannot be read, or an empty branch file in a repository that holds objects, is damage: the
    message says so, never "create it with init" (which would refuse an existing repository)."""
    damaged = None
    try:
        name = repo.head_ref_name()
        tip = repo.read_ref(name)
        if tip is not None and not _COMMIT_ID.fullmatch(tip):
            damaged = f"{name} holds {tip[:40]!r}, not a commit id"
        elif tip is None and ((repo.git_dir / name).exists() or repo.pack_count()):
            damaged = f"{name} is empty or missing while the repository holds objects"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        damaged = f"HEAD or its branch cannot be read ({exc})"
    if damaged is not None:
        raise IoError(
            f"the HCM repository at {settings.hcm_path} is damaged: {damaged}. Run `arka-hcm verify` "
            "and restore it from a backup (see the README's backup section)",
            {"path": str(settings.hcm_path)},
        )
    return tip


def probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``: OSError when the volume does not take writes."""
    with durable.folder(folder.parent, [folder.name], create=True) as fd:
        file_fd, name = durable.create_new(fd, ".ready-probe-")
        os.close(file_fd)
        os.unlink(name, dir_fd=fd)


def init_hint(hcm_path: Path) -> str:
    """How to create the HCM that was expected at ``hcm_path`` (a client folder's hcm/, or flat)."""
    if hcm_path.parent == Path(hcm_path.anchor):
        # /hcm: the container's default, so outside a container no folder was named at all
        return (
            "name the client folder with --client ./arka-client (or set ARKA_HCM_PATH), or create "
            "one with `arka-hcm init ./arka-client --tenant-id <id>`"
        )
    if hcm_path.name == "hcm":
        return (
            f"create it with `arka-hcm init {hcm_path.parent} --tenant-id <id>` (a client folder: "
            f"hcm/, config/, logs/)"
        )
    return f"create it with `arka-hcm init {hcm_path} --layout flat --tenant-id <id>`"
