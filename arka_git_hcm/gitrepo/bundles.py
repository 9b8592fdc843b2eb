"""Git bundles: create (full or incremental), read the header, apply, check out.

A bundle is git's own one-file transport (``git clone FILE`` works on it), so a backup stays
readable by plain git for as long as git exists. An incremental bundle names its
*prerequisites* (commits the receiving repository must already have); applying one whose
prerequisites are missing is refused by git itself, which is how a gap in a chain is caught.

The bundle's pack is written while the store keeps writing: refs always name complete objects
(a batch's pack is written before its branch moves), and the maintenance lock is held *shared*
while git reads the packs, so no fold or repack deletes a pack under it (those skip their turn
instead of waiting: writes are never held up by a backup).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .gitbin import maintenance_lock
from .gitcli import GitFailed, Progress, run_git

__all__ = [
    "BundleHeader",
    "EmptyBundle",
    "MissingPrerequisites",
    "apply_bundle",
    "checkout_branch",
    "count_commits",
    "create_bundle",
    "init_repository",
    "read_bundle_header",
    "snapshot_refs",
]

SNAPSHOT_GLOB = "refs/tags/snapshot/"


class EmptyBundle(Exception):
    """Nothing is new since the base: git refuses to write an empty bundle."""


class MissingPrerequisites(Exception):
    """The repository lacks commits an incremental bundle builds on (a gap in the chain)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


@dataclass
class BundleHeader:
    version: int
    refs: dict[str, str] = field(default_factory=dict)  # ref name -> object id
    prerequisites: list[str] = field(default_factory=list)
    capabilities: dict[str, str] = field(default_factory=dict)


def read_bundle_header(path: Path) -> BundleHeader:
    """The text header of a v2/v3 bundle (signature, capabilities, prerequisites, refs).
    ValueError when the file is not a git bundle."""
    with open(path, "rb") as fh:
        signature = fh.readline()
        if signature == b"# v2 git bundle\n":
            header = BundleHeader(version=2)
        elif signature == b"# v3 git bundle\n":
            header = BundleHeader(version=3)
        else:
            raise ValueError(f"{path.name} is not a git bundle (no bundle signature)")
        for _ in range(1_000_000):
            line = fh.readline()
            if not line.endswith(b"\n"):
                raise ValueError(f"{path.name}: the bundle header is truncated")
            text = line[:-1].decode("utf-8", "replace")
            if not text:
                return header
            if text.startswith("@"):
                key, _, value = text[1:].partition("=")
                header.capabilities[key] = value
            elif text.startswith("-"):
                header.prerequisites.append(text[1:].split(" ", 1)[0])
            else:
                oid, _, name = text.partition(" ")
                header.refs[name] = oid
    raise ValueError(f"{path.name}: the bundle header is too long")


def snapshot_refs(workdir: Path) -> dict[str, str]:
    """Every ``refs/tags/snapshot/*`` with the commit it names."""
    out = run_git(
        workdir, "for-each-ref", "--format=%(refname) %(*objectname) %(objectname)", SNAPSHOT_GLOB
    ).stdout.decode()
    found = {}
    for line in out.splitlines():
        name, peeled, direct = (line.split(" ") + ["", ""])[:3]
        found[name] = peeled or direct
    return found


def count_commits(workdir: Path, tip: str, exclude: list[str] | None = None) -> int:
    """Commits reachable from ``tip`` and from none of ``exclude``."""
    args = ["rev-list", "--count", tip, *(f"^{oid}" for oid in exclude or [])]
    return int(run_git(workdir, *args).stdout.decode().strip() or 0)


def create_bundle(
    workdir: Path,
    out: Path,
    branch: str,
    *,
    exclude: list[str] | None = None,
    on_progress: Progress | None = None,
) -> BundleHeader:
    """Write a bundle of ``refs/heads/<branch>`` and every snapshot tag to ``out`` (through a
    temp file and a rename, so ``out`` is never half written); commits reachable from any of
    ``exclude`` are left out and become the bundle's prerequisites. EmptyBundle when nothing
    is new.

    The refs are read once and frozen in a throwaway repository that borrows the HCM's objects
    (``objects/info/alternates``): `git bundle create` resolves each ref twice, and when the
    store moves the branch in between it silently leaves that ref out (seen: "Refusing to create
    empty bundle" under writes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")  # unpredictable: git writes it
    args = ["bundle", "create", "--progress" if on_progress else "--quiet", str(tmp)]
    # HEAD too: `git clone FILE` then checks the branch out (a bundle without it clones empty)
    args += ["HEAD", f"refs/heads/{branch}", f"--glob={SNAPSHOT_GLOB}*"]
    args += [f"^{oid}" for oid in exclude or []]
    try:
        with (
            maintenance_lock(workdir, exclusive=False) as fd,
            tempfile.TemporaryDirectory(prefix="arka-bundle-refs-") as frozen,
        ):
            _freeze_refs(workdir, Path(frozen), branch)
            run_git(Path(frozen), *args, on_progress=on_progress, keep_fds=() if fd is None else (fd,))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except GitFailed as exc:
        if "empty bundle" in exc.stderr:
            raise EmptyBundle(exc.stderr) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return read_bundle_header(out)


def _freeze_refs(workdir: Path, frozen: Path, branch: str) -> None:
    """A bare repository at ``frozen`` whose refs are the HCM's branch and snapshot tags as they
    are now, and whose objects are the HCM's."""
    listed = run_git(
        workdir, "for-each-ref", "--format=%(objectname) %(refname)", f"refs/heads/{branch}", SNAPSHOT_GLOB
    ).stdout.decode()
    init_repository(frozen, branch, bare=True)
    objects = (workdir / ".git" / "objects").resolve()
    (frozen / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    # sorted by ref name, as the header promises (git reads a sorted packed-refs by bisection)
    lines = sorted(
        (line for line in listed.splitlines() if line.strip()), key=lambda line: line.split(" ", 1)[1]
    )
    (frozen / "packed-refs").write_text("# pack-refs with: sorted\n" + "".join(f"{line}\n" for line in lines))


def init_repository(path: Path, branch: str, *, bare: bool = False) -> None:
    """An empty repository whose HEAD names ``branch`` (the store's own settings are applied by
    the caller when it becomes an HCM)."""
    path.mkdir(parents=True, exist_ok=True)
    args = ["init", "--quiet", f"--initial-branch={branch}"] + (["--bare"] if bare else [])
    run_git(path, *args)


def apply_bundle(repo: Path, bundle: Path, *, on_progress: Progress | None = None) -> None:
    """Fetch the bundle's branch and tags into ``repo`` (never forced: a bundle of another
    history is refused). MissingPrerequisites names the commits a gap leaves out."""
    verify = run_git(repo, "bundle", "verify", str(bundle), check=False)
    if verify.returncode != 0:
        message = verify.stderr.decode("utf-8", "replace")
        if "lacks these prerequisite commits" in message:
            words = (line.removeprefix("error:").strip().split(" ")[0] for line in message.splitlines())
            missing = [w for w in words if len(w) == 40 and all(c in "0123456789abcdef" for c in w)]
            raise MissingPrerequisites(missing or ["(unknown)"])
        raise GitFailed(("bundle", "verify"), verify.returncode, message.strip())
    run_git(
        repo,
        "fetch",
        "--no-auto-gc",
        "--update-head-ok",
        "--progress" if on_progress else "--quiet",
        str(bundle),
        "refs/heads/*:refs/heads/*",
        "refs/tags/*:refs/tags/*",
        on_progress=on_progress,
    )


def checkout_branch(workdir: Path) -> None:
    """Bring the work tree and git's index to HEAD (after the bundles were applied)."""
    run_git(workdir, "reset", "--quiet", "--hard", "HEAD")
