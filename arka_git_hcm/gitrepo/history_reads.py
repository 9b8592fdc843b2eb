"""Reading history: walking first parents, ancestry, tags, revisions, and the differences
between two trees."""

from __future__ import annotations

from collections.abc import Iterator

import pygit2
from pygit2.enums import ObjectType

from .base import CommitInfo, damaged
from .trees import TreeStore

__all__ = ["HistoryReads"]


class HistoryReads(TreeStore):
    def list_tags(self, prefix: str) -> list[tuple[str, str, int, str]]:
        """(name without prefix, commit id, tag time, message) of every tag under refs/tags/<prefix>."""
        found = []
        for ref in self._repo.references.iterator():
            if not ref.name.startswith(f"refs/tags/{prefix}"):
                continue
            target = self._repo.get(ref.target)
            if isinstance(target, pygit2.Tag):
                commit = target.peel(pygit2.Commit)
                when = target.tagger.time if target.tagger else commit.commit_time
                found.append(
                    (ref.name[len(f"refs/tags/{prefix}") :], str(commit.id), when, target.message.strip())
                )
            elif isinstance(target, pygit2.Commit):
                found.append((ref.name[len(f"refs/tags/{prefix}") :], str(target.id), target.commit_time, ""))
        return sorted(found, key=lambda row: row[2])

    def resolve_commit(self, spec: str) -> str | None:
        """A revision (full/short id, ref, tag name) as a commit id, or None."""
        try:  # a name a caller can give is a ref, a tag or a landed commit: never pending
            obj = self._repo.revparse_single(spec)
        except (KeyError, ValueError, pygit2.GitError):
            return None
        try:
            commit = obj.peel(pygit2.Commit)
        except (pygit2.GitError, ValueError, TypeError):
            return None
        return str(commit.id)

    def merge_base(self, a: str, b: str) -> str | None:
        try:
            found = self._repo.merge_base(pygit2.Oid(hex=a), pygit2.Oid(hex=b))
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return None if found is None else str(found)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is in the history of ``descendant`` (and differs from it)."""
        try:
            return bool(self._repo.descendant_of(pygit2.Oid(hex=descendant), pygit2.Oid(hex=ancestor)))
        except (KeyError, ValueError, pygit2.GitError):
            return False

    def walk(self, start: str, stop: str | None = None) -> Iterator[CommitInfo]:
        """First-parent history from ``start`` back to (excluding) ``stop``."""
        current: str | None = start
        while current and current != stop:
            info = self.commit_info(current)
            yield info
            current = info.parents[0] if info.parents else None

    def changed_paths(
        self, old_tree: str | None, new_tree: str | None, prefix: str | None = None
    ) -> list[str]:
        """Files that differ between two trees (under ``prefix``), without computing patches."""
        old = self._object(old_tree) if old_tree else None
        new = self._object(new_tree) if new_tree else None
        if prefix:
            old_entry = self._entry(old_tree, prefix) if old_tree else None
            new_entry = self._entry(new_tree, prefix) if new_tree else None
            old = (
                self._object(old_entry.id)
                if old_entry is not None and old_entry.type == ObjectType.TREE
                else None
            )
            new = (
                self._object(new_entry.id)
                if new_entry is not None and new_entry.type == ObjectType.TREE
                else None
            )
        if old is None and new is None:
            return []
        base = (prefix.rstrip("/") + "/") if prefix else ""
        try:
            if old is None:
                assert isinstance(new, pygit2.Tree)
                diff = new.diff_to_tree(swap=True)
            elif new is None:
                assert isinstance(old, pygit2.Tree)
                diff = old.diff_to_tree()
            else:
                assert isinstance(old, pygit2.Tree) and isinstance(new, pygit2.Tree)
                diff = old.diff_to_tree(new)
        except pygit2.GitError as exc:
            raise damaged(exc) from None
        return sorted(base + (d.new_file.path or d.old_file.path) for d in diff.deltas)

    def diff_trees(
        self,
        old_tree: str | None,
        new_tree: str,
        paths: list[str] | None = None,
        max_patch_bytes: int = 65536,
    ) -> list[tuple[str, str, str]]:
        """(path, added|modified|deleted, unified patch) for each file that differs; ``paths``
        limits the diff to those paths or folders (pathspec, not a scan of other folders)."""
        new = self._object(new_tree)
        old = self._object(old_tree) if old_tree else None
        assert isinstance(new, pygit2.Tree) and (old is None or isinstance(old, pygit2.Tree))
        try:
            diff = new.diff_to_tree(swap=True) if old is None else old.diff_to_tree(new)
        except pygit2.GitError as exc:
            raise damaged(exc) from None
        kinds = {"A": "added", "M": "modified", "D": "deleted"}
        result = []
        for patch in diff:
            if patch is None:
                continue
            delta = patch.delta
            path = delta.new_file.path or delta.old_file.path
            if paths and not any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths):
                continue
            text = patch.text or ""
            if len(text) > max_patch_bytes:
                text = text[:max_patch_bytes] + "\n[patch truncated]\n"
            result.append((path, kinds.get(delta.status_char(), "modified"), text))
        return result
