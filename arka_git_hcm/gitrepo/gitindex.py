"""git's index (derived state the store keeps in line with HEAD, off the hot path) and the
work tree's status."""

from __future__ import annotations

import contextlib
import logging
import os

import pygit2
from pygit2.enums import FileMode

from . import gitbin
from .maintenance import PackMaintenance

__all__ = ["IndexAndWorkTree"]


class IndexAndWorkTree(PackMaintenance):
    def refresh_index(self, paths: list[str], tree_id: str) -> None:
        """Bring git's index in line with ``tree_id`` for ``paths`` (stat data from the work tree,
        which equals the tree for those paths), so `git status` stays clean."""
        index = self._repo.index
        index.read(force=False)
        for path in paths:
            blob = self.entry_id(tree_id, path)
            if blob is None:
                if path in index:
                    index.remove(path)
            else:
                try:
                    index.add(path)
                except (pygit2.GitError, OSError, KeyError):
                    index.add(pygit2.IndexEntry(path, pygit2.Oid(hex=blob), FileMode.BLOB))
        index.write()

    def _index_tree_differences(self, index: pygit2.Index, tree: pygit2.Tree) -> list[str]:
        diff = index.diff_to_tree(tree)
        paths: set[str] = set()
        for delta in diff.deltas:
            paths.add(delta.old_file.path)
            paths.add(delta.new_file.path)
        return sorted(paths)

    def index_differences(self, tree_id: str) -> list[str]:
        """Paths whose index entry differs from ``tree_id``. git's index is derived state: one
        that cannot be read (a flipped byte, a torn write) is rebuilt from the tree first."""
        self._visible(tree_id)
        try:
            index = self._repo.index
            index.read(force=True)
        except (pygit2.GitError, OSError, ValueError) as exc:
            self.rebuild_index(tree_id, reason=str(exc))
            return []
        tree = self._repo.get(tree_id)
        assert isinstance(tree, pygit2.Tree)
        return self._index_tree_differences(index, tree)

    def rebuild_index(self, tree_id: str, reason: str) -> None:
        """Replace git's index with one made from ``tree_id`` (stat data from the work tree,
        which equals that tree), without touching the work tree."""

        logging.getLogger("arka_git_hcm.git").warning(
            "git's index could not be read (%s); rebuilding it", reason
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.git_dir / "index")
        try:
            gitbin.rebuild_index(self.workdir, tree_id)
        except FileNotFoundError:  # no git binary: libgit2 builds it
            index = pygit2.Index()
            tree = self._repo.get(tree_id)
            assert isinstance(tree, pygit2.Tree)
            index.read_tree(tree)
            self._repo.index.read_tree(tree)
            self._repo.index.write()
        self._reopen()

    def worktree_status(self, *, ignored: bool = False) -> dict[str, str]:
        """Paths whose work-tree state differs from the index: 'modified', 'deleted', 'untracked'
        (and 'ignored' files, when asked)."""
        result: dict[str, str] = {}
        for path, flags in self._repo.status(untracked_files="all", ignored=ignored).items():
            if flags & pygit2.enums.FileStatus.IGNORED:
                result[path] = "ignored"
            elif flags & pygit2.enums.FileStatus.WT_NEW:
                result[path] = "untracked"
            elif flags & pygit2.enums.FileStatus.WT_DELETED:
                result[path] = "deleted"
            elif flags & (pygit2.enums.FileStatus.WT_MODIFIED | pygit2.enums.FileStatus.WT_TYPECHANGE):
                result[path] = "modified"
            elif flags & (
                pygit2.enums.FileStatus.INDEX_MODIFIED
                | pygit2.enums.FileStatus.INDEX_NEW
                | pygit2.enums.FileStatus.INDEX_DELETED
            ):
                result[path] = "staged"
        return result
