"""The git adapter: the only module family that imports pygit2.

Everything crosses this boundary as plain values: object ids are 40-char hex strings, file
contents are bytes, paths are validated HCM-relative strings. The store never scans the work
tree or git's index to commit: :meth:`GitRepo.build_tree` rewrites only the trees on the changed
paths, so the cost of a write does not grow with the number of files in the HCM.

:class:`GitRepo` is built in layers, one module each, every layer using only those below it:
``base`` (libgit2 handle and shared state) -> ``objects`` (pending objects, packs, reads) ->
``trees`` (paths at a commit, building trees) -> ``history_reads`` (walks, tags, diffs) ->
``maintenance`` (folding packs, reopening) -> ``gitindex`` (git's index, status) -> this module
(refs and tags, creation, closing).
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from ..durable import sync_filesystem
from ..errors import ConflictingUpdate, from_os_error
from . import refs
from .base import CommitInfo, Signature, configure_library
from .gitindex import IndexAndWorkTree
from .rawtree import raw_tree_cache

__all__ = ["CommitInfo", "GitRepo", "Signature", "configure_library", "sync_filesystem"]


class GitRepo(IndexAndWorkTree):
    """A non-bare repository whose work tree is the HCM folder.

    New objects (blobs, trees, commits) are kept in memory, *pending*, and written as one pack
    by :meth:`flush_objects` (see packs.py): the engine flushes before the sync that precedes
    its branch move, and :meth:`compare_and_swap_ref` flushes too, so an object is on disk
    before any ref can name it. Reads see pending objects: raw trees and blobs from memory,
    and anything read through libgit2 flushes first.

    libgit2 reports a corrupt or missing object as a GitError wherever it is read; the adapter
    turns those into IO_ERROR so that no pygit2 exception crosses the boundary."""

    @classmethod
    def init(cls, workdir: Path, branch: str) -> GitRepo:
        configure_library()
        pygit2.init_repository(str(workdir), bare=False, initial_head=branch)
        repo = cls(workdir)
        config = repo._repo.config
        # Not a checkout anyone should edit by hand with autocrlf games: bytes in, bytes out.
        config["core.autocrlf"] = "false"
        config["core.filemode"] = "true"
        config["gc.auto"] = "0"  # packing is the store's job (arka-hcm gc), never a surprise pause
        return repo

    def read_ref(self, ref: str) -> str | None:
        return refs.read_ref(self.git_dir, ref)

    def head_ref_name(self) -> str:
        return refs.head_ref_name(self.git_dir)

    def compare_and_swap_ref(
        self,
        ref: str,
        old: str | None,
        new: str,
        *,
        who: Signature,
        message: str,
        durable: bool,
    ) -> bool:
        self.flush_objects()  # no ref may name an object that is not on disk
        return refs.compare_and_swap_ref(self.git_dir, ref, old, new, who.reflog_identity(), message, durable)

    def prepare_ref_update(self, ref: str, new: str) -> refs.PreparedRef | None:
        """``<ref>.lock`` holding ``new``, for a caller that syncs before :meth:`finish_ref_update`
        (None: the lock is held). See refs.prepare_ref_update."""
        self.flush_objects()  # no ref may name an object that is not on disk
        return refs.prepare_ref_update(self.git_dir, ref, new)

    def finish_ref_update(
        self, prepared: refs.PreparedRef, old: str | None, *, who: Signature, message: str
    ) -> bool:
        return refs.finish_ref_update(prepared, old, who.reflog_identity(), message)

    def abort_ref_update(self, prepared: refs.PreparedRef) -> None:
        refs.abort_ref_update(prepared)

    def remove_stale_lock(self, ref: str) -> bool:
        return refs.remove_stale_lock(self.git_dir, ref)

    def create_tag(self, name: str, commit_id: str, tagger: Signature, message: str) -> str:
        """An annotated tag ``refs/tags/<name>`` on a commit; ConflictingUpdate if it exists."""
        tag = self.write_tag(name, commit_id, tagger, message)
        if not self.create_ref(f"refs/tags/{name}", tag):
            raise ConflictingUpdate(f"tag {name} exists already; choose another name", {"tag": name})
        return tag

    def create_ref(self, ref: str, oid: str) -> bool:
        """Create ``ref`` pointing at ``oid`` (flushed first) if it does not exist; False if it
        does. Written like a branch move: lock file, never through a link, no reflog."""
        self.flush_objects()
        if self.read_ref(ref) is not None:
            return False
        try:
            return refs.compare_and_swap_ref(self.git_dir, ref, None, oid, "", "", False, reflog=False)
        except OSError as exc:
            raise from_os_error(exc, f"creating {ref}") from None

    def delete_ref(self, ref: str) -> None:
        """Remove a loose ref this store created (a tag of a write that did not land)."""
        try:
            refs.delete_loose_ref(self.git_dir, ref)
        except OSError as exc:
            raise from_os_error(exc, f"removing {ref}") from None

    def last_reflog_entry(self, ref: str) -> tuple[str, str, str] | None:
        """(old, new, message) of the last line of ``ref``'s reflog, or None."""
        return refs.last_reflog_entry(self.git_dir, ref)

    def append_reflog(self, ref: str, old: str, new: str, who: Signature, message: str) -> None:
        """A reflog line without moving the ref (a decision recorded where git keeps its moves)."""
        refs.append_reflog(self.git_dir, ref, old, new, who.reflog_identity(), message)

    def close(self) -> None:
        """Release libgit2's object cache now (the budget is process-wide, and a closed store's
        superseded wide trees would otherwise crowd out the next store's)."""
        self.flush_objects()
        self._closed = True
        self._repo.free()
        self._trees = raw_tree_cache()
