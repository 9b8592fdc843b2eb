"""The git adapter's core: libgit2 settings, the values that cross the boundary (Signature,
CommitInfo), and the state every part of :class:`~arka_git_hcm.gitrepo.repo.GitRepo` shares."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

from ..errors import IoError
from . import packs
from .appended import AppendedStreams
from .lru import ObjectCache
from .rawtree import raw_tree_cache

__all__ = ["CommitInfo", "RepoBase", "Signature", "configure_library", "damaged"]
_configured = False
log = logging.getLogger("arka_git_hcm.git")
MWINDOW_FILE_LIMIT = 128  # pack files libgit2 keeps open at most
BLOB_CACHE_BYTES = 32 * 1024 * 1024  # recently written or read blobs kept in memory


def configure_library() -> None:
    """Process-wide libgit2 settings, applied once.

    - The tree cache is raised: reading a mission at HEAD walks state/missions, whose tree is wide;
      with the default cache each read re-parses it (3.7 ms -> 0.07 ms measured at 100k files).
    - Owner validation is off: in a container the volume belongs to the host's user, and the
      store (not libgit2's safe.directory heuristic) decides which folder it serves.
    - libgit2's own fsync is off: the store orders durability itself with one filesystem sync
      after the objects and one after the ref (see CommitEngine), which costs far fewer syncs.
    - At most MWINDOW_FILE_LIMIT pack files are kept open.
    """
    global _configured
    if _configured:
        return
    pygit2.settings.cache_object_limit(ObjectType.TREE, 4 * 1024 * 1024)
    pygit2.settings.cache_max_size(256 * 1024 * 1024)
    pygit2.settings.owner_validation = False
    pygit2.settings.enable_fsync_gitdir(False)
    # Packs libgit2 keeps open (each a descriptor and a mapping), least recently used closed
    # first: the store writes a pack per batch, so without a bound they pile up between folds.
    pygit2.settings.mwindow_file_limit = MWINDOW_FILE_LIMIT
    _configured = True


@dataclass(frozen=True)
class Signature:
    name: str
    email: str
    time: int
    offset: int = 0  # minutes east of UTC

    def to_pygit2(self) -> pygit2.Signature:
        return pygit2.Signature(self.name, self.email, self.time, self.offset)

    def reflog_identity(self) -> str:
        """``Name <email> <time> <+hhmm>`` as git writes it in reflogs."""
        sign = "+" if self.offset >= 0 else "-"
        tz = f"{sign}{abs(self.offset) // 60:02d}{abs(self.offset) % 60:02d}"
        return f"{self.name} <{self.email}> {self.time} {tz}"


@dataclass(frozen=True)
class CommitInfo:
    id: str
    parents: tuple[str, ...]
    tree: str
    message: str
    author_name: str
    author_email: str
    author_time: int
    committer_name: str
    committer_email: str
    commit_time: int


def damaged(exc: Exception) -> IoError:
    return IoError(
        f"the HCM repository is damaged ({exc}); run `arka-hcm verify` and restore from a backup",
        {"git_error": str(exc)[:300]},
    )


class RepoBase:
    """A non-bare repository whose work tree is the HCM folder.

    New objects (blobs, trees, commits) are kept in memory, *pending*, and written as one pack
    by :meth:`flush_objects` (see packs.py): the engine flushes before the sync that precedes
    its branch move, and :meth:`compare_and_swap_ref` flushes too, so an object is on disk
    before any ref can name it. Reads see pending objects: raw trees and blobs from memory,
    and anything read through libgit2 flushes first.

    libgit2 reports a corrupt or missing object as a GitError wherever it is read; the adapter
    turns those into IO_ERROR so that no pygit2 exception crosses the boundary."""

    def __init__(self, workdir: Path) -> None:
        configure_library()
        self.workdir = Path(workdir)
        self._repo = self._open_libgit2()
        self.git_dir = Path(self._repo.path)
        self.pack_dir = self.git_dir / "objects" / "pack"
        self.state_dir = self.git_dir / "arka-hcm"  # the store's own files: locks, intent, markers
        self._rollup_stamp = self.state_dir / "packs-rolled-up"
        self._seen_rollup = self._stamp()
        self._packs_seen = set(packs.pack_names(self.pack_dir))  # as libgit2 opened them
        self._packs_checked_at = time.monotonic()
        self._trees = raw_tree_cache()
        # recently written or read blobs: an append reads the journal it appends to, mostly the
        # version the previous write made (no inflating it again, and its delta is made from it)
        self._blobs: ObjectCache[bytes] = ObjectCache(BLOB_CACHE_BYTES, len)
        # id -> (type, data, base id, delta from base): see ObjectStore._put
        self._pending: dict[bytes, tuple[int, bytes, bytes | None, bytes | None]] = {}
        self._pending_bytes = 0
        self._made_streams: dict[bytes, tuple[bytes, bool]] = {}  # id -> (zlib stream, anchor): appended.py
        self._appended = AppendedStreams()
        self._pack_lock = threading.RLock()
        self._signatures: dict[tuple[str, str], bytes] = {}
        # The tip is read on every operation, and it is usually a commit of the newest pack,
        # which libgit2 finds only after listing the pack folder again: remember trees instead.
        self._commit_trees: dict[str, str] = {}
        self.packs_written = 0
        # The packs this process wrote whose objects it still holds, oldest first (see fold_own_packs)
        self._own_packs: list[packs.OwnPack] = []
        self._own_bytes = 0
        self.objects_read_back = 0  # by folds that needed an object whole (see _whole_again)
        self._closed = False

    def _open_libgit2(self) -> pygit2.Repository:
        try:
            return pygit2.Repository(str(self.workdir), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError as exc:
            raise IoError(f"{self.workdir} holds no readable git repository: {exc}") from None

    def _stamp(self) -> tuple[int, int]:
        try:
            info = os.stat(self._rollup_stamp)
        except FileNotFoundError:
            return (0, 0)
        return (info.st_ino, info.st_mtime_ns)
