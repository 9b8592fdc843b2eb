"""The git adapter: the only module family that imports pygit2 (and dulwich).

Everything crosses this boundary as plain values: object ids are 40-char hex strings, file
contents are bytes, paths are validated HCM-relative strings. The store never scans the work
tree or git's index to commit: :meth:`GitRepo.build_tree` rewrites only the trees on the changed
paths, so the cost of a write does not grow with the number of files in the HCM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FileMode, ObjectType

from ..durable import sync_filesystem, write_atomic
from ..errors import ConflictingUpdate, IoError, from_os_error
from ..paths import find_fold_collision
from . import gitbin, packs, refs
from .rawtree import EMPTY_TREE, MODE_BLOB, MODE_TREE, RawTree, RawTreeCache

__all__ = ["CommitInfo", "GitRepo", "Signature", "configure_library", "sync_filesystem"]
_configured = False
log = logging.getLogger("arka_git_hcm.git")
_BLOB, _TREE, _COMMIT = packs.KIND_CODES[b"blob"], packs.KIND_CODES[b"tree"], packs.KIND_CODES[b"commit"]
_TAG = packs.KIND_CODES[b"tag"]
PENDING_LIMIT = 32 * 1024 * 1024  # pending object bytes that force a pack out mid-batch
OWN_PACK_BYTES_KEPT = 64 * 1024 * 1024  # objects of unfolded own packs kept in memory, at most
COMMIT_TREES_KEPT = 4096  # commit -> tree ids remembered (a commit's tree never changes)
PACK_LIST_CHECK_S = 1.0  # how often notice_rollups lists the pack folder
MWINDOW_FILE_LIMIT = 128  # pack files libgit2 keeps open at most


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


def _damaged(exc: Exception) -> IoError:
    return IoError(
        f"the HCM repository is damaged ({exc}); run `arka-hcm verify` and restore from a backup",
        {"git_error": str(exc)[:300]},
    )


class GitRepo:
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
        self._trees = RawTreeCache()
        self._pending: dict[bytes, tuple[int, bytes, bytes | None]] = {}  # id -> (type, data, base)
        self._pending_bytes = 0
        self._pack_lock = threading.RLock()
        self._signatures: dict[tuple[str, str], bytes] = {}
        # The tip is read on every operation, and it is usually a commit of the newest pack,
        # which libgit2 finds only after listing the pack folder again: remember trees instead.
        self._commit_trees: dict[str, str] = {}
        self.packs_written = 0
        # The objects of each pack this process wrote and has not folded yet (see fold_own_packs)
        self._own_packs: list[tuple[str, list[tuple[bytes, int, bytes, bytes | None]]]] = []
        self._own_bytes = 0
        self._closed = False

    def _open_libgit2(self) -> pygit2.Repository:
        try:
            return pygit2.Repository(str(self.workdir), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError as exc:
            raise IoError(f"{self.workdir} holds no readable git repository: {exc}") from None

    # --- creation -------------------------------------------------------------------------
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

    # --- refs (see refs.py) ---------------------------------------------------------------
    def read_ref(self, ref: str) -> str | None:
        return refs.read_ref(self.git_dir, ref)

    def head_ref_name(self) -> str:
        return refs.head_ref_name(self.git_dir)

    def compare_and_swap_ref(
        self, ref: str, old: str | None, new: str, *, who: Signature, message: str, durable: bool
    ) -> bool:
        self.flush_objects()  # no ref may name an object that is not on disk
        return refs.compare_and_swap_ref(self.git_dir, ref, old, new, who.reflog_identity(), message, durable)

    def remove_stale_lock(self, ref: str) -> bool:
        return refs.remove_stale_lock(self.git_dir, ref)

    # --- objects --------------------------------------------------------------------------
    def _put(
        self, code: int, kind: bytes, data: bytes, base: bytes | None = None, oid: bytes | None = None
    ) -> bytes:
        """Keep a new object pending (written by the next flush); returns its id. ``base``: an
        object it differs little from (stored as a delta of it if both go in the same pack).
        ``oid``: the object's id when the caller has hashed it already."""
        if oid is None:
            oid = packs.object_id(kind, data)
        with self._pack_lock:  # a reader thread may be flushing (see _visible)
            if oid not in self._pending:
                self._pending[oid] = (code, data, base)
                self._pending_bytes += len(data)
            full = self._pending_bytes > PENDING_LIMIT
        if full:
            self.flush_objects()
        return oid

    def flush_objects(self) -> str | None:
        """Write every pending object as one pack (no fsync: the caller syncs); its name."""
        if not self._pending:
            return None
        with self._pack_lock:  # _put takes it too: every pending object goes in this pack
            objects = [(oid, *entry) for oid, entry in self._pending.items()]
            if not objects:
                return None
            try:
                name = packs.write_pack(self.pack_dir, objects)
            except OSError as exc:
                raise from_os_error(exc, "writing a pack of new objects") from None
            size, self._pending_bytes = self._pending_bytes, 0
            self._pending.clear()
            self.packs_written += 1
            if self._own_bytes + size <= OWN_PACK_BYTES_KEPT:
                self._own_packs.append((name, objects))
                self._own_bytes += size
            return name

    def fold_own_packs(self) -> int:
        """Fold the packs this process wrote (one per batch) into one, from the objects it
        still holds in memory: no git process, no pack read back, and each wide tree stored
        as a delta of its previous version (the successive batches' missions trees differ by
        one entry). The new pack is synced before the folded ones are deleted, whatever the
        durability: they may hold history acknowledged long ago. Returns how many packs were
        folded (0 when fewer than two, or while git repacks, gc runs or fsck reads packs)."""
        with self._pack_lock:
            folding = list(self._own_packs)
        if len(folding) < 2:
            return 0
        seen: set[bytes] = set()
        objects = []
        for _name, held in folding:  # in writing order: a delta base always comes first
            for entry in held:
                if entry[0] not in seen:
                    seen.add(entry[0])
                    objects.append(entry)
        with gitbin.maintenance_lock(self.workdir, exclusive=True, wait=False) as fd:
            if fd is None:
                return 0
            try:
                name = packs.write_pack(self.pack_dir, objects)
                packs.sync_pack(self.pack_dir, name)
                for old, _held in folding:
                    if old != name:
                        packs.remove_pack(self.pack_dir, old)
            except OSError as exc:
                raise from_os_error(exc, "folding small packs") from None
        folded = {old for old, _held in folding}
        self._keep_own_packs(lambda name: name not in folded)
        self.announce_repack()
        return len(folding)

    def _keep_own_packs(self, keep: Callable[[str], bool]) -> None:
        """Forget the objects of own packs no longer to fold (folded, or gone in a git repack)."""
        with self._pack_lock:
            self._own_packs = [item for item in self._own_packs if keep(item[0])]
            self._own_bytes = sum(len(e[2]) for _n, held in self._own_packs for e in held)

    def repack(self) -> None:
        """Fold the small packs (and any loose objects) with `git repack --geometric=2 -d`, then
        tell every store process to reopen its libgit2 handle. Safe beside writers: git folds
        only packs it listed when it started and keeps every object of them."""
        try:
            if not gitbin.repack_geometric(self.workdir):
                return  # another process is folding packs right now
        except subprocess.TimeoutExpired as exc:
            raise IoError(f"git repack took too long: {exc}") from None
        present = set(packs.pack_names(self.pack_dir))
        self._keep_own_packs(present.__contains__)
        self.announce_repack()

    def announce_repack(self) -> None:
        """Packs were replaced (repack, gc): every store process reopens its libgit2 handle,
        which would otherwise keep the deleted packs mapped (their disk space not freed)."""
        self._stamp_rollup()
        if not self._closed:
            self._reopen()

    def pack_count(self) -> int:
        return len(packs.pack_names(self.pack_dir))

    def remove_pack_leftovers(self) -> list[str]:
        """Half-written pack files of killed processes (call under the store's write lock)."""
        return packs.remove_leftovers(self.pack_dir)

    def _stamp(self) -> tuple[int, int]:
        try:
            info = os.stat(self._rollup_stamp)
        except FileNotFoundError:
            return (0, 0)
        return (info.st_ino, info.st_mtime_ns)

    def _stamp_rollup(self) -> None:
        write_atomic(self._rollup_stamp, f"{time.time_ns()}\n".encode(), root=self.git_dir)

    def notice_rollups(self) -> None:
        """Reopen libgit2's handle if packs were folded since it was opened: libgit2 keeps
        deleted packs mapped, holding their disk space and their memory. A store process that
        folds packs stamps it (cheap to check on every operation); at most once a second the
        pack folder is listed too, for packs deleted by a hand-run `git gc` or `git repack`."""
        if self._stamp() != self._seen_rollup:
            self._reopen()
            return
        now = time.monotonic()
        if now - self._packs_checked_at < PACK_LIST_CHECK_S:
            return
        self._packs_checked_at = now
        present = set(packs.pack_names(self.pack_dir))
        if self._packs_seen - present:
            self._reopen()
        else:
            self._packs_seen = present

    def _reopen(self) -> None:
        self._seen_rollup = self._stamp()
        self._packs_seen = set(packs.pack_names(self.pack_dir))
        self._packs_checked_at = time.monotonic()
        old, self._repo = self._repo, self._open_libgit2()
        # Release the old handle's open packs now (deleted ones included): waiting for the last
        # reference to go left hundreds of descriptors to deleted packs open under load. A thread
        # still using the old handle is safe: libgit2 reopens what it needs on its next use.
        old.free()

    def discard_pending(self) -> None:
        """Forget the pending objects. Only for the thread that wrote them, once the commit that
        needed them failed before its ref moved (nothing else may name them)."""
        with self._pack_lock:
            self._pending.clear()
            self._pending_bytes = 0
        self._commit_trees.clear()  # it may name the dropped commits

    def _visible(self, oid: str | pygit2.Oid | bytes) -> None:
        """Before libgit2 reads ``oid``: if it is still pending, write the pending pack now."""
        if self._pending:
            raw = oid if isinstance(oid, bytes) else bytes.fromhex(str(oid))
            if raw in self._pending:
                self.flush_objects()

    def write_blob(self, data: bytes) -> str:
        return self._put(_BLOB, b"blob", bytes(data)).hex()

    def hash_file(self, path: Path) -> str:
        return str(pygit2.hashfile(str(path)))

    def commit_tree(self, commit_id: str) -> str:
        tree = self._commit_trees.get(commit_id)
        if tree is None:
            tree = str(self._commit(commit_id).tree_id)
            self._remember_tree(commit_id, tree)
        return tree

    def _remember_tree(self, commit_id: str, tree: str) -> None:
        if len(self._commit_trees) >= COMMIT_TREES_KEPT:
            self._commit_trees.clear()  # cheap bound; the next lookups refill it
        self._commit_trees[commit_id] = tree

    def _commit(self, commit_id: str) -> pygit2.Commit:
        self._visible(commit_id)
        try:
            obj = self._repo.get(commit_id)
        except pygit2.GitError as exc:
            raise _damaged(exc) from None
        if not isinstance(obj, pygit2.Commit):
            raise _damaged(LookupError(f"commit {commit_id} is missing or not a commit"))
        return obj

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
            raise _damaged(exc) from None

    def _object(self, oid: str | pygit2.Oid) -> pygit2.Object:
        self._visible(oid)
        try:
            obj = self._repo.get(oid)
        except pygit2.GitError as exc:
            raise _damaged(exc) from None
        if obj is None:
            raise _damaged(KeyError(f"object {oid} is missing"))
        return obj

    def read_blob(self, tree_id: str | None, path: str) -> bytes | None:
        """The content of the file at ``path`` in ``tree_id`` (None if absent or a folder)."""
        if tree_id is None:
            return None
        found = self._lookup(tree_id, path)
        if found is None or found[0] == MODE_TREE:
            return None
        pending = self._pending.get(found[1])
        if pending is not None:
            return pending[1]
        blob = self._object(found[1].hex())
        if not isinstance(blob, pygit2.Blob):
            return None
        return blob.data

    def entry_id(self, tree_id: str | None, path: str) -> str | None:
        if tree_id is None:
            return None
        found = self._lookup(tree_id, path)
        return None if found is None else found[1].hex()

    def blob_data(self, blob_id: str) -> bytes:
        pending = self._pending.get(bytes.fromhex(blob_id))
        if pending is not None:
            return pending[1]
        blob = self._object(blob_id)
        assert isinstance(blob, pygit2.Blob)
        return blob.data

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
                raise _damaged(exc) from None
            if obj[0] != ObjectType.TREE:
                raise _damaged(LookupError(f"{oid.hex()} is not a tree"))
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
        oid = self._put(_TREE, b"tree", bytes(new_tree.data), tree_oid, known)
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

    def write_commit(
        self, tree: str, parents: list[str], author: Signature, committer: Signature, message: str
    ) -> str:
        """A new commit object (pending) without moving any ref (the ref moves by compare-and-
        swap). The bytes are those libgit2's git_commit_create writes (a test compares them)."""
        lines = [b"tree " + tree.encode("ascii")]
        lines.extend(b"parent " + p.encode("ascii") for p in parents)
        lines.append(b"author " + self._signature_bytes(author))
        lines.append(b"committer " + self._signature_bytes(committer))
        data = b"\n".join(lines) + b"\n\n" + message.encode("utf-8")
        commit_id = self._put(_COMMIT, b"commit", data).hex()
        self._remember_tree(commit_id, tree)
        return commit_id

    def _signature_bytes(self, who: Signature) -> bytes:
        """``Name <email> time +hhmm``; name and email checked and trimmed by libgit2 itself
        (once per identity), so they are exactly what git_signature_new would keep."""
        key = (who.name, who.email)
        identity = self._signatures.get(key)
        if identity is None:
            checked = pygit2.Signature(who.name, who.email, 0, 0)
            identity = f"{checked.name} <{checked.email}>".encode()
            self._signatures[key] = identity
        sign = "+" if who.offset >= 0 else "-"
        zone = f"{sign}{abs(who.offset) // 60:02d}{abs(who.offset) % 60:02d}"
        return identity + f" {who.time} {zone}".encode("ascii")

    def commit_info(self, commit_id: str) -> CommitInfo:
        c = self._commit(commit_id)
        return CommitInfo(
            id=str(c.id),
            parents=tuple(str(p) for p in c.parent_ids),
            tree=str(c.tree_id),
            message=c.message,
            author_name=c.author.name,
            author_email=c.author.email,
            author_time=c.author.time,
            committer_name=c.committer.name,
            committer_email=c.committer.email,
            commit_time=c.commit_time,
        )

    def write_tag(self, name: str, commit_id: str, tagger: Signature, message: str) -> str:
        """A new annotated tag object named ``name`` on a commit (pending, no ref): the bytes
        libgit2's git_tag_create writes."""
        data = (
            f"object {commit_id}\ntype commit\ntag {name}\n".encode("ascii")
            + b"tagger "
            + self._signature_bytes(tagger)
            + b"\n\n"
            + message.rstrip("\n").encode("utf-8")
            + b"\n"
        )
        return self._put(_TAG, b"tag", data).hex()

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

    def has_blob(self, blob_id: str) -> bool:
        """Whether the object database holds this object (pending ones included)."""
        if bytes.fromhex(blob_id) in self._pending:
            return True
        try:
            return blob_id in self._repo.odb
        except (ValueError, pygit2.GitError):
            return False

    def blob_data_or_none(self, blob_id: str) -> bytes | None:
        try:
            return self.blob_data(blob_id)
        except (AssertionError, KeyError, ValueError, IoError):
            return None

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

    def last_reflog_entry(self, ref: str) -> tuple[str, str, str] | None:
        """(old, new, message) of the last line of ``ref``'s reflog, or None."""
        return refs.last_reflog_entry(self.git_dir, ref)

    def append_reflog(self, ref: str, old: str, new: str, who: Signature, message: str) -> None:
        """A reflog line without moving the ref (a decision recorded where git keeps its moves)."""
        refs.append_reflog(self.git_dir, ref, old, new, who.reflog_identity(), message)

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
            raise _damaged(exc) from None
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
            raise _damaged(exc) from None
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

    # --- the index and the work tree ------------------------------------------------------
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
        import logging

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

    def close(self) -> None:
        """Release libgit2's object cache now (the budget is process-wide, and a closed store's
        superseded wide trees would otherwise crowd out the next store's)."""
        self.flush_objects()
        self._closed = True
        self._repo.free()
        self._trees = RawTreeCache()
