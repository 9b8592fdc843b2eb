"""What rewriting a history into a separate repository asks of the git binary: a fast-export
stream, refs, bundles, a bare repository of its own, every object of a repository (the new
history's objects themselves are written by :mod:`.history_pack`).

Only git itself is used here (no libgit2): fast-export is git's own streaming format for whole
histories (git-filter-repo is built on it), and a bundle or a clone of a bundle must be exactly
what the client's and support's git will read. Every child runs with the hermetic environment
of :mod:`.gitbin` (no user or system config, no ``GIT_*`` from the caller's shell), so a
client's ``~/.gitconfig`` cannot change what is written or sent.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .gitbin import _git, _stderr
from .gitcli import git_binary, hermetic_git_env

__all__ = [
    "BundleHead",
    "GitStream",
    "all_objects",
    "bundle_create",
    "bundle_list_heads",
    "bundle_verify",
    "clone_bundle",
    "fetch_bundle",
    "has_commit",
    "init_bare",
    "last_commit_before",
    "list_refs",
    "object_paths",
    "rev_count",
    "rev_list",
    "rev_parse",
    "start_fast_export",
    "update_refs",
]

# Long operations on 100k-commit histories: generous, but never unbounded.
_LONG = 6 * 3600.0


class GitStream:
    """A git child whose stdin or stdout is a stream; ``finish`` waits and raises on failure
    with git's own message (never the stream's content)."""

    def __init__(self, what: str, args: list[str], *, reading: bool) -> None:
        git = git_binary()
        if git is None:
            raise FileNotFoundError("git")
        self.what = what
        self._reading = reading
        self.proc = subprocess.Popen(
            [git, "-c", "safe.directory=*", *args],
            stdin=subprocess.DEVNULL if reading else subprocess.PIPE,
            stdout=subprocess.PIPE if reading else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=hermetic_git_env(),
            bufsize=1 << 20,
        )

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def finish(self) -> None:
        if not self._reading and self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        if self._reading and self.proc.stdout is not None:
            self.proc.stdout.close()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        code = self.proc.wait()
        if code != 0:
            raise OSError(f"git {self.what} failed (exit {code}): {err.decode('utf-8', 'replace')[:500]}")

    def kill(self) -> None:
        """Stop the child (an error on our side): never leaves a process behind."""
        if self.proc.poll() is None:
            self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.proc.wait()


def start_fast_export(repo: Path, revs: list[str]) -> GitStream:
    """`git fast-export` of ``revs`` (rev-list arguments: ``tip``, ``base^..tip``, ``-1 tip``,
    tag names). Signed tags are stripped (a signature cannot survive a rewrite), messages are
    re-encoded to UTF-8, and the stream ends with ``done`` so a truncated one is detected."""
    args = [
        "-C",
        str(repo),
        "fast-export",
        "--signed-tags=strip",
        "--tag-of-filtered-object=drop",
        "--reencode=yes",
        "--use-done-feature",
        "--fake-missing-tagger",
        "--show-original-ids",
        *revs,
    ]
    return GitStream("fast-export", args, reading=True)


def init_bare(path: Path, branch: str) -> None:
    """A new, empty bare repository whose HEAD names ``branch``: the anonymized history's home,
    separate from the raw one so that no object of the raw repository can reach it."""
    path.mkdir(parents=True, exist_ok=True)
    proc = _git(path, "init", "--quiet", "--bare", f"--initial-branch={branch}", timeout=120)
    if proc.returncode != 0:
        raise OSError(f"git init failed: {_stderr(proc)[:500]}")


def update_refs(repo: Path, refs: dict[str, str]) -> None:
    """Create (or move) ``refs`` (name -> object id) in ``repo`` in one `git update-ref --stdin`
    (one transaction: all or none)."""
    lines = "".join(f"update {name} {oid}\n" for name, oid in refs.items())
    proc = _git(repo, "update-ref", "--stdin", stdin=lines.encode("utf-8", "surrogateescape"), timeout=600)
    if proc.returncode != 0:
        raise OSError(f"git update-ref failed: {_stderr(proc)[:500]}")


def rev_list(repo: Path, revs: list[str]) -> list[str]:
    proc = _git(repo, "rev-list", *revs, "--", timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git rev-list failed: {_stderr(proc)[:500]}")
    return proc.stdout.decode("ascii").split()


def rev_count(repo: Path, revs: list[str]) -> int:
    proc = _git(repo, "rev-list", "--count", *revs, "--", timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git rev-list failed: {_stderr(proc)[:500]}")
    return int(proc.stdout.strip() or b"0")


def rev_parse(repo: Path, spec: str) -> str | None:
    """The commit ``spec`` names (a ref, a tag, ``<date>``-free revision syntax), or None."""
    proc = _git(
        repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{spec}^{{commit}}", timeout=120
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("ascii").strip() or None


def last_commit_before(repo: Path, tip: str, moment: int) -> str | None:
    """The newest first-parent ancestor of ``tip`` committed at or before ``moment`` (epoch s)."""
    proc = _git(repo, "rev-list", "-1", "--first-parent", f"--before={moment}", tip, "--", timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git rev-list failed: {_stderr(proc)[:500]}")
    return proc.stdout.decode("ascii").strip() or None


def list_refs(repo: Path, prefix: str) -> list[tuple[str, str]]:
    """(ref name, commit it leads to) of every ref under ``prefix`` (annotated tags peeled)."""
    proc = _git(
        repo,
        "for-each-ref",
        "--format=%(refname)%00%(objectname)%00%(*objectname)",
        prefix,
        timeout=600,
    )
    if proc.returncode != 0:
        raise OSError(f"git for-each-ref failed: {_stderr(proc)[:500]}")
    found = []
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        name, direct, peeled = line.split("\0")
        found.append((name, peeled or direct))
    return found


def has_commit(repo: Path, oid: str) -> bool:
    proc = _git(repo, "cat-file", "-e", f"{oid}^{{commit}}", timeout=120)
    return proc.returncode == 0


def bundle_create(repo: Path, out: Path, refs: list[str]) -> None:
    """`git bundle create out refs...` (``^commit`` entries make an incremental bundle whose
    prerequisites are those commits)."""
    proc = _git(repo, "bundle", "create", "--quiet", str(out), *refs, timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git bundle create failed: {_stderr(proc)[:500]}")


def bundle_verify(repo: Path, bundle: Path) -> None:
    """`git bundle verify` run in ``repo`` (which must hold the bundle's prerequisites)."""
    proc = _git(repo, "bundle", "verify", "--quiet", str(bundle), timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git bundle verify failed: {_stderr(proc)[:500]}")


class BundleHead:
    __slots__ = ("oid", "ref")

    def __init__(self, oid: str, ref: str) -> None:
        self.oid = oid
        self.ref = ref

    def __repr__(self) -> str:
        return f"BundleHead({self.oid!r}, {self.ref!r})"


def bundle_list_heads(bundle: Path) -> list[BundleHead]:
    """The refs a bundle carries (read from its header; no repository needed)."""
    proc = _git(bundle.parent, "bundle", "list-heads", str(bundle), timeout=600)
    if proc.returncode != 0:
        raise OSError(f"git bundle list-heads failed: {_stderr(proc)[:500]}")
    heads = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        oid, _, ref = line.partition(" ")
        if oid and ref:
            heads.append(BundleHead(oid, ref))
    return heads


def clone_bundle(bundle: Path, dest: Path, *, bare: bool) -> None:
    """`git clone bundle dest`, as support does."""
    args = ["clone", "--quiet", *(["--bare"] if bare else []), str(bundle), str(dest)]
    proc = _git(dest.parent, *args, timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git clone of the bundle failed: {_stderr(proc)[:500]}")


def fetch_bundle(repo: Path, bundle: Path) -> None:
    """Fetch every ref of ``bundle`` into ``repo`` under the same names (support's `git fetch`
    of an incremental bundle on top of what it has)."""
    proc = _git(repo, "fetch", "--quiet", "--no-tags", str(bundle), "+refs/*:refs/*", timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git fetch of the bundle failed: {_stderr(proc)[:500]}")


def all_objects(repo: Path) -> Iterator[tuple[str, str, bytes]]:
    """(oid, type, raw content) of every object stored in ``repo``: reachable or not, loose or
    packed (`git cat-file --batch-all-objects --batch`), in pack order."""
    stream = GitStream(
        "cat-file",
        ["-C", str(repo), "cat-file", "--batch-all-objects", "--batch", "--unordered"],
        reading=True,
    )
    out = stream.stdout
    try:
        while True:
            header = out.readline()
            if not header:
                break
            oid, kind, size = header.split()
            data = out.read(int(size))
            out.read(1)  # the newline after each object
            yield oid.decode("ascii"), kind.decode("ascii"), data
    except BaseException:
        stream.kill()
        raise
    stream.finish()


def object_paths(repo: Path) -> dict[str, str]:
    """oid -> a path naming it (blobs and trees reachable from any ref), to say *where* an
    object lives without printing its content."""
    proc = _git(repo, "rev-list", "--objects", "--all", timeout=_LONG)
    if proc.returncode != 0:
        raise OSError(f"git rev-list failed: {_stderr(proc)[:500]}")
    found: dict[str, str] = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        oid, _, path = line.partition(" ")
        if path:
            found.setdefault(oid, path)
    return found
