"""Trees: reading a path at a commit and building the next root tree, rewriting only the
trees on the changed paths (as bytes, see rawtree), so a write's cost does not grow with the HCM."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

import pygit2
from pygit2.enums import ObjectType

from ..errors import ConflictingUpdate, from_os_error
from ..paths import find_fold_collision
from . import packs
from .base import damaged
from .objects import ObjectStore
from .rawtree import EMPTY_TREE, MODE_BLOB, MODE_TREE, RawTree

__all__ = ["TreeStore"]
_TREE = packs.KIND_CODES[b"tree"]


class TreeStore(ObjectStore):
    def _entry(self, tree_id: str, path: str) -> pygit2.Object | None:
        self._visible(tree_id)
        try:
            tree = self._repo.get(tree_id)
            if not isinstance(tree, pygit2.Tree):
                return None
            return tree[path]
        except KeyError:
            return None
        except pygit2.GitError as exc:
            raise damaged(exc) from None

    def read_blob(self, tree_id: str | None, path: str) -> bytes | None:
        """The content of the file at ``path`` in ``tree_id`` (None if absent or a folder)."""
        if tree_id is None:
            return None
        found = self._lookup(tree_id, path)
        if found is None or found[0] == MODE_TREE:
            return None
        return self._blob_bytes(found[1])

    def entry_id(self, tree_id: str | None, path: str) -> str | None:
        if tree_id is None:
            return None
        found = self._lookup(tree_id, path)
        return None if found is None else found[1].hex()

    def list_dir(self, tree_id: str | None, path: str) -> list[tuple[str, bool]]:
        """(name, is_folder) of each entry of the folder ``path`` ("" for the root)."""
        if tree_id is None:
            return []
        if path:
            found = self._lookup(tree_id, path)
            if found is None or found[0] != MODE_TREE:
                return []
            tree = self._raw_tree(found[1])
        else:
            tree = self._raw_tree(bytes.fromhex(tree_id))
        entries = []
        for name in tree.names:
            entry = tree.entry(name)
            assert entry is not None
            entries.append((name.decode("utf-8", "surrogateescape"), entry[0] == MODE_TREE))
        return entries

    def walk_files(self, tree_id: str | None, prefix: str = "") -> Iterator[tuple[str, str]]:
        """Every (path, blob id) under ``prefix`` in ``tree_id``."""
        if tree_id is None:
            return
        root = self._object(tree_id)
        if prefix:
            entry = self._entry(tree_id, prefix)
            if entry is None or entry.type != ObjectType.TREE:
                return
            root = self._object(entry.id)
        assert isinstance(root, pygit2.Tree)
        stack: list[tuple[str, pygit2.Tree]] = [(prefix, root)]
        while stack:
            base, tree = stack.pop()
            for e in tree:
                name = f"{base}/{e.name}" if base else str(e.name)
                if e.type == ObjectType.TREE:
                    sub = self._object(e.id)
                    assert isinstance(sub, pygit2.Tree)
                    stack.append((name, sub))
                elif e.type == ObjectType.BLOB:
                    yield name, str(e.id)

    def build_tree(self, base_tree: str | None, changes: Mapping[str, str | None]) -> str:
        """A new root tree: ``base_tree`` with each path set to a blob id (or removed for None).
        Only the trees on the changed paths are rewritten, as bytes (see rawtree)."""
        nested: dict[tuple[str, ...], str | None] = {tuple(p.split("/")): oid for p, oid in changes.items()}
        base = bytes.fromhex(base_tree) if base_tree else None
        try:
            result = self._build(base, nested)
        except OSError as exc:
            raise from_os_error(exc, "writing tree objects") from None
        if result is None:
            result = self._put(_TREE, b"tree", b"")
        return result.hex()

    def raw_tree(self, oid: bytes) -> RawTree:
        """The tree ``oid`` as raw entries (cached; pending trees from memory)."""
        return self._raw_tree(oid)

    def cached_raw_tree(self, oid: bytes) -> RawTree | None:
        """The tree ``oid`` if the cache holds it already (no read)."""
        return self._trees.get(oid)

    def remember_raw_tree(self, oid: bytes, tree: RawTree) -> None:
        """Put a tree parsed elsewhere (see tree_diff) into the cache."""
        self._trees.put(oid, tree)

    def raw_tree_bytes(self, oid: bytes) -> bytes | None:
        """The bytes of tree ``oid`` (pending ones from memory); None when it is missing or not
        a tree (:meth:`raw_tree` then says what is wrong)."""
        pending = self._pending.get(oid)
        if pending is not None:
            return pending[1]
        try:
            kind, data = self._repo.odb.read(oid.hex())
        except (KeyError, pygit2.GitError):
            return None
        return bytes(data) if kind == ObjectType.TREE else None

    def _raw_tree(self, oid: bytes) -> RawTree:
        tree = self._trees.get(oid)
        pending = self._pending.get(oid) if tree is None else None
        if pending is not None:
            tree = RawTree.parse(pending[1])
            self._trees.put(oid, tree)
        if tree is None:
            try:
                obj = self._repo.odb.read(oid.hex())
            except (KeyError, pygit2.GitError) as exc:
                raise damaged(exc) from None
            if obj[0] != ObjectType.TREE:
                raise damaged(LookupError(f"{oid.hex()} is not a tree"))
            tree = RawTree.parse(bytes(obj[1]))
            self._trees.put(oid, tree)
        return tree

    def _build(self, tree_oid: bytes | None, changes: dict[tuple[str, ...], str | None]) -> bytes | None:
        tree = self._raw_tree(tree_oid) if tree_oid is not None else EMPTY_TREE
        entry_changes: dict[bytes, tuple[bytes, bytes] | None] = {}
        subchanges: dict[str, dict[tuple[str, ...], str | None]] = defaultdict(dict)
        for parts, blob in changes.items():
            if len(parts) == 1:
                name = parts[0].encode("utf-8")
                entry_changes[name] = None if blob is None else (MODE_BLOB, bytes.fromhex(blob))
            else:
                subchanges[parts[0]][parts[1:]] = blob
        for name_str, sub in subchanges.items():
            name = name_str.encode("utf-8")
            current = tree.entry(name)
            subtree = current[1] if current is not None and current[0] == MODE_TREE else None
            new = self._build(subtree, sub)
            entry_changes[name] = None if new is None else (MODE_TREE, new)
        for name, change in entry_changes.items():
            if change is not None and name not in tree.index:
                self._check_new_name(tree, name)
        new_tree = tree.with_changes(entry_changes)
        if not new_tree.data:
            return None
        unchanged = new_tree is tree and tree_oid is not None  # nothing to hash: its id is known
        known = tree_oid if unchanged else new_tree.object_id()
        base_data = tree.data if tree_oid is not None else None
        oid = self._put(_TREE, b"tree", bytes(new_tree.data), tree_oid, known, base_data)
        self._trees.put(oid, new_tree)
        return oid

    @staticmethod
    def _check_new_name(tree: RawTree, name: bytes) -> None:
        # A new name that case-folds onto an existing one would make two files share one on
        # macOS/Windows checkouts (CVE-2021-21300 class): refuse it.
        other = find_fold_collision(name.decode("utf-8"), (n.decode("utf-8", "replace") for n in tree.names))
        if other is not None:
            raise ConflictingUpdate(
                f"'{name.decode()}' differs from the existing '{other}' only by case or Unicode form",
                {"name": name.decode(), "existing": other},
            )

    def _lookup(self, tree_id: str, path: str) -> tuple[bytes, bytes] | None:
        """(mode, id) of the entry at ``path``, walking cached raw trees (no libgit2 re-parse of
        the wide missions tree after every write)."""
        oid = bytes.fromhex(tree_id)
        mode = MODE_TREE
        for part in path.split("/"):
            if mode != MODE_TREE:
                return None
            found = self._raw_tree(oid).entry(part.encode("utf-8"))
            if found is None:
                return None
            mode, oid = found
        return mode, oid
