"""New objects kept pending in memory and written as one pack per batch, and objects read
back (pending ones from memory, the rest through libgit2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pygit2

from ..errors import IoError, from_os_error
from . import packs
from .base import CommitInfo, RepoBase, Signature, damaged

__all__ = ["ObjectStore"]
_BLOB = packs.KIND_CODES[b"blob"]
_COMMIT = packs.KIND_CODES[b"commit"]
_TAG = packs.KIND_CODES[b"tag"]
PENDING_LIMIT = 32 * 1024 * 1024  # pending object bytes that force a pack out mid-batch
OWN_PACK_BYTES_KEPT = 64 * 1024 * 1024  # compressed objects of own packs held for the folds, at most
OWN_OBJECTS_KEPT = 32768  # objects of own packs held for the folds, at most (~5,000 writes)
COMMIT_TREES_KEPT = 4096  # commit -> tree ids remembered (a commit's tree never changes)


class ObjectStore(RepoBase):
    def _put(
        self,
        code: int,
        kind: bytes,
        data: bytes,
        base: bytes | None = None,
        oid: bytes | None = None,
        base_data: bytes | bytearray | None = None,
        stream: tuple[bytes, bool] | None = None,
    ) -> bytes:
        """Keep a new object pending (written by the next flush); returns its id. ``base``: its
        previous version, whose bytes ``base_data`` are (the delta from it is made now, while
        both are in memory; a pack stores the object as that delta when the base is in the
        same pack: the batch's, or a fold's). ``oid``: the id when the caller has hashed it;
        ``stream``: its zlib stream when the caller has made it, and whether it is an anchor
        (an appended journal, see appended.py)."""
        if oid is None:
            oid = packs.object_id(kind, data)
        delta = packs.delta_of(base_data, data) if base is not None else None
        with self._pack_lock:  # a reader thread may be flushing (see _visible)
            if oid not in self._pending:
                self._pending[oid] = (code, data, base, delta)
                self._pending_bytes += len(data)
                if stream is not None:
                    self._made_streams[oid] = stream
            full = self._pending_bytes > PENDING_LIMIT
        if full:
            self.flush_objects()
        return oid

    def flush_objects(self) -> str | None:
        """Write every pending object as one pack (no fsync: the caller syncs); its name. The
        pack's objects stay held, compressed, for the folds (within OWN_PACK_BYTES_KEPT)."""
        if not self._pending:
            return None
        with self._pack_lock:  # _put takes it too: every pending object goes in this pack
            pending, made = self._pending, self._made_streams
            if not pending:
                return None
            held = [
                packs.Held.new(oid, code, len(data), base, delta)
                for oid, (code, data, base, delta) in pending.items()
            ]
            for item in held:
                if item.oid in made:
                    item.anchor = made[item.oid][1]

            def whole(item: packs.Held) -> list[bytes | memoryview]:
                given = made.get(item.oid)
                return item.whole_from(pending[item.oid][1]) if given is None else item.whole_given(given[0])

            try:
                written = packs.write_held(self.pack_dir, held, whole)
            except OSError as exc:
                raise from_os_error(exc, "writing a pack of new objects") from None
            self._pending, self._made_streams = {}, {}
            self._pending_bytes = 0
            self.packs_written += 1
            own = packs.OwnPack.of(written.name, held, written.size)
            weight = own.weight
            held_objects = sum(len(pack.objects) for pack in self._own_packs) + len(held)
            if self._own_bytes + weight <= OWN_PACK_BYTES_KEPT and held_objects <= OWN_OBJECTS_KEPT:
                self._own_packs.append(own)
                self._own_bytes += weight
            return written.name

    def discard_pending(self) -> None:
        """Forget the pending objects. Only for the thread that wrote them, once the commit that
        needed them failed before its ref moved (nothing else may name them)."""
        with self._pack_lock:
            self._pending, self._made_streams = {}, {}
            self._pending_bytes = 0
        self._commit_trees.clear()  # it may name the dropped commits

    def _visible(self, oid: str | pygit2.Oid | bytes) -> None:
        """Before libgit2 reads ``oid``: if it is still pending, write the pending pack now."""
        if self._pending:
            raw = oid if isinstance(oid, bytes) else bytes.fromhex(str(oid))
            if raw in self._pending:
                self.flush_objects()

    def write_blob(self, data: bytes, previous: str | None = None) -> str:
        """A new blob (pending); ``previous``: the id of the version it replaces (a journal
        before this append), stored as its delta base when that is much smaller."""
        data = bytes(data)
        base = bytes.fromhex(previous) if previous else None
        small = len(data) < packs.DELTA_MIN  # no delta pays below that: no base looked up
        base_data = self.recent_blob(base) if base is not None and not small else None
        if base is None or base_data is None:
            oid = self._put(_BLOB, b"blob", data)
        else:
            oid = packs.object_id(b"blob", data)
            # an append (a journal) is deflated from what it adds, not whole (appended.py)
            stream = self._appended.stream(base, base_data, oid, data)
            oid = self._put(_BLOB, b"blob", data, base, oid=oid, base_data=base_data, stream=stream)
            self._blobs.drop(base)  # superseded: room for the versions still read
        self._blobs.put(oid, data)
        return oid.hex()

    def recent_blob(self, oid: bytes) -> bytes | None:
        """The bytes of blob ``oid`` if they are in memory (pending, or recently written or
        read), without reading the object database."""
        pending = self._pending.get(oid)
        if pending is not None:
            return pending[1]
        return self._blobs.get(oid)

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
            raise damaged(exc) from None
        if not isinstance(obj, pygit2.Commit):
            raise damaged(LookupError(f"commit {commit_id} is missing or not a commit"))
        return obj

    def _object(self, oid: str | pygit2.Oid) -> pygit2.Object:
        self._visible(oid)
        try:
            obj = self._repo.get(oid)
        except pygit2.GitError as exc:
            raise damaged(exc) from None
        if obj is None:
            raise damaged(KeyError(f"object {oid} is missing"))
        return obj

    def blob_data(self, blob_id: str) -> bytes:
        data = self._blob_bytes(bytes.fromhex(blob_id))
        assert data is not None, f"{blob_id} is not a blob"
        return data

    def _blob_bytes(self, oid: bytes) -> bytes | None:
        """Blob ``oid``'s bytes, from memory when recent, else read and kept; None when the
        object is not a blob."""
        data = self.recent_blob(oid)
        if data is not None:
            return data
        blob = self._object(oid.hex())
        if not isinstance(blob, pygit2.Blob):
            return None
        data = blob.data
        self._blobs.put(oid, data)
        return data

    def committed_reader(self) -> Callable[[str], bytes]:
        """A reader of committed objects by hex id, for reading many in a row (a search index
        build reads every blob of a tree): straight from libgit2's object database, without
        :meth:`blob_data`'s look at the pending objects and its Blob object (~half the time of
        a read, measured). Only for objects already on disk, such as the blobs of a branch
        tip's tree: a pending object is not seen. A missing or damaged object raises IO_ERROR."""
        odb = self._repo.odb

        def read(object_id: str) -> bytes:
            try:
                return odb.read(object_id)[1]
            except (KeyError, ValueError, pygit2.GitError) as exc:
                raise damaged(exc) from None

        return read

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
