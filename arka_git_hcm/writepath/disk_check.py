"""What the work tree holds, checked cheaply: has a file been edited by hand since the store
wrote it?

The store remembers the stat of each file it wrote or checked (with the ctime, as git's index
does: an edit that keeps the size and puts the mtime back still changes it) and hashes a file only
when its stat changed, or when the stat was taken too soon after the file's mtime to vouch for it
(git's "racily clean" rule).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

from ..errors import HcmError
from ..gitrepo import GitRepo, blob_id
from ..paths import PathResolver
from .worktree import ASIDE_MARK, TEMP_MARK, Aside, StatKey, WorkTree, stat_key

if TYPE_CHECKING:
    from .chain import Chain

__all__ = ["NOT_A_FILE", "RACY_NS", "STRAY_ASIDE_AGE_S", "DiskCheck"]

RACY_NS = 500_000_000  # a stat taken this soon after the file's mtime does not vouch for it
STRAY_ASIDE_AGE_S = 5.0  # an aside older than this was left by a process that died before its check
STRAY_ASIDE_VERSIONS = 500  # commits searched for the version a stray aside may hold
NOT_A_FILE = "not-a-regular-file"


class DiskCheck:
    def __init__(self, repo: GitRepo, resolver: PathResolver, worktree: WorkTree) -> None:
        self.repo = repo
        self.resolver = resolver
        self.worktree = worktree
        # path -> (stat key, when it was taken): what this process last wrote or checked
        self._stat_cache: dict[str, tuple[StatKey, int]] = {}

    # --- the stat cache ---------------------------------------------------------------------
    def remember(self, path: str, key: StatKey) -> None:
        self._stat_cache[path] = (key, time.time_ns())

    def forget(self, path: str) -> None:
        self._stat_cache.pop(path, None)

    def trusted_stat(self, path: str) -> StatKey | None:
        """The stat this process last saw for ``path``, if it may vouch for the content: a file
        modified within RACY_NS of the moment its stat was taken may have been written again in
        the same clock tick (same size, same mtime): it is hashed instead."""
        cached = self._stat_cache.get(path)
        if cached is None:
            return None
        key, taken_at = cached
        return key if taken_at - key[2] > RACY_NS else None

    # --- the disk ---------------------------------------------------------------------------
    def blob_id(self, path: str) -> str | None:
        """The blob id of the work-tree file at ``path``; None when absent; NOT_A_FILE for a
        folder, a symlink or a path the resolver refuses (never followed, never hashed)."""
        try:
            data = self.resolver.read_bytes(path)
        except HcmError:
            return NOT_A_FILE
        return None if data is None else blob_id(data)

    def holds(self, path: str, expected: str | None) -> bool:
        """Whether the work-tree file at ``path`` holds blob ``expected`` (None: no file). Its
        bytes are compared with the blob's when those are in memory (an append just read them:
        a compare instead of hashing the whole journal again), else hashed."""
        try:
            data = self.resolver.read_bytes(path)
        except HcmError:
            return False  # a folder, a link, a path refused: never what a blob id names
        if data is None or expected is None:
            return data is None and expected is None
        known = self.repo.recent_blob(bytes.fromhex(expected))
        return data == known if known is not None else blob_id(data) == expected

    def read(self, path: str) -> bytes | None:
        """The work-tree file's bytes, read without following a link (None: no file there)."""
        return self.resolver.read_bytes(path)

    def hand_edited(self, chain: Chain, paths: list[str]) -> list[str]:
        """Paths whose file on disk differs from the branch tip (the disk holds the tip until
        ``chain`` lands), checked by stat first and by content hash when the stat changed."""
        edited = []
        for path in paths:
            if path in chain.changed or path in chain.set_aside:
                continue  # already rewritten by this chain, or an invalid edit saved already
            expected = self.repo.entry_id(chain.tip_tree, path)
            chain.expected.setdefault(path, expected)
            info = self.worktree.stat(path)
            key = None if info is None else stat_key(info)
            if key is not None and expected is not None and self.trusted_stat(path) == key:
                continue  # unchanged since this process wrote or checked it: no hashing
            if not self.holds(path, expected):
                edited.append(path)
            elif key is not None:
                self.remember(path, key)
        return edited

    def scan(self, tree: str | None) -> tuple[list[str], list[Aside]]:
        """Every path whose file differs from ``tree`` (HEAD's), and the asides killed processes
        left (call under the store's lock). git's status (stat-based, so cheap) gives candidates;
        each is confirmed against the tree's blob, because git's index may lag behind commits of
        other processes (it is refreshed off the hot path) and would report them."""
        found: list[str] = []
        strays: list[Aside] = []
        for path, state in sorted(self.repo.worktree_status(ignored=True).items()):
            if ASIDE_MARK in path:  # beside its file (.git on another filesystem)
                aside = self.worktree.aside_at(path, older_than=STRAY_ASIDE_AGE_S)
                if aside is not None:
                    strays.append(aside)
                continue
            if TEMP_MARK in path:  # a temp file of a killed writer is never part of the HCM
                # temp files are made and removed only under the store's lock, which this
                # holds: one found now is a killed writer's, however young
                self.worktree.remove_stray_temp(path, older_than=0)
                continue
            if state == "ignored":
                continue
            if self.blob_id(path) != self.repo.entry_id(tree, path):
                found.append(path)
        return found, strays

    def versions_of(self, aside: Aside, tip: str | None) -> tuple[str | None, ...]:
        """The blobs ``aside``'s path held in recent history: a stray aside holding one of them
        is a version of its file, anything else an edit (its content being in git's object
        database proves nothing: the index refresh stores hand-edited files there too)."""
        versions: list[str | None] = []
        if tip is not None and aside.path:
            for info in itertools.islice(self.repo.walk(tip), STRAY_ASIDE_VERSIONS):
                blob = self.repo.entry_id(info.tree, aside.path)
                if blob not in versions:
                    versions.append(blob)
        if not aside.path:
            aside.path = "unknown-path"  # saved under this name: the content is what matters
        return tuple(versions)
