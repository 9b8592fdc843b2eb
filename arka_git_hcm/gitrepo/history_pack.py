"""A replayed history written straight into one pack of a new repository: what `git fast-import`
does for `arka-hcm anonymize`, object for object, at a fraction of its cost.

fast-import rebuilds every tree along a changed path from its entries (sorted, formatted, hashed,
deflated and delta-searched again: 1,000 missions in ``state/missions`` is a 38 KB tree a
commit) and deflates every version of a growing journal whole. Here a folder keeps its bytes and
a changed entry is spliced in place, and each new version of a folder or a file is stored as a
delta of its previous version (known, not searched for: copy the common head and tail, insert
the middle; one memcmp for a journal that grew). The objects are the ones fast-import makes
from the equivalent stream (tests/test_anonymize_writer.py pins their ids); the pack and its
index are git's formats, written with :mod:`.packs`' encoders, and everything after (bundle,
clone, ``index-pack``, the leak scan) reads them with git itself.

    PackWriter      objects -> one pack + index (or, for a dry run, ids only)
    HistoryWriter   fast-import's model as calls: start from a parent's tree, put / delete
                    paths, commit, tag
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .packs import _entry_header, _index_bytes, _negative_offset, make_delta, object_id
from .rawtree import stored_zlib_stream

__all__ = ["OBJ_BLOB", "OBJ_COMMIT", "OBJ_TAG", "OBJ_TREE", "HistoryWriter", "Observer", "PackWriter"]

OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_TAG = 1, 2, 3, 4
_OFS_DELTA = 6
_TYPE_NAMES = {OBJ_COMMIT: b"commit", OBJ_TREE: b"tree", OBJ_BLOB: b"blob", OBJ_TAG: b"tag"}
# git's own default (pack.depth): a history pack is read rarely (support's clone re-indexes it)
MAX_DELTA_DEPTH = 50
_MIN_DELTA = 64  # below this a delta saves nothing worth a base lookup

Observer = Callable[[str, bytes, bytes], None]  # (type, binary id, content) of each new object


class PackWriter:
    """Objects written into one new pack of ``repo`` (``objects/pack``) with its version-2
    index, made visible by :meth:`finish` (git finds a pack by its index, so it never sees a
    partial one). Each object is stored once (by id); given a base already in this pack, as an
    offset delta when that is under a quarter of its size and the chain stays within
    :data:`MAX_DELTA_DEPTH`.

    ``repo=None`` writes nothing (a dry run): ids are still computed, and ``observe`` still sees
    every new object."""

    def __init__(self, repo: Path | None, *, observe: Observer | None = None) -> None:
        self.observe = observe
        self.objects = 0
        self._index: dict[bytes, int] = {}  # id -> position in _entries
        self._entries: list[tuple[bytes, int, int]] = []  # (id, crc32, offset), as _index_bytes wants
        self._depths = bytearray()
        self._file: IO[bytes] | None = None
        self._digest = hashlib.sha1()
        self._folder: Path | None = None
        self._tmp: Path | None = None
        self._offset = 12
        if repo is not None:
            self._folder = repo / "objects" / "pack"
            self._folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="tmp_pack_arka_", dir=self._folder)
            self._tmp = Path(name)
            self._file = os.fdopen(fd, "w+b", buffering=1 << 20)
            self._file.write(b"PACK" + struct.pack(">II", 2, 0))  # the count is set by finish()

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._index

    def add(self, kind: int, data: bytes, base: bytes | None = None, base_data: bytes | None = None) -> bytes:
        """The binary id of the object; written unless already there. ``base``/``base_data``: an
        object of this pack (and its content) to store this one as a delta of."""
        oid = object_id(_TYPE_NAMES[kind], data)
        if oid in self._index:
            return oid
        if self.observe is not None:
            self.observe(_TYPE_NAMES[kind].decode(), oid, data)
        self._index[oid] = len(self._depths)
        self.objects += 1
        if self._file is None:
            self._depths.append(0)
            return oid
        depth = 0
        parts: list[bytes | memoryview] = []
        if base is not None and base_data is not None and len(data) >= _MIN_DELTA:
            position = self._index.get(base)
            if position is not None and self._depths[position] < MAX_DELTA_DEPTH:
                delta = make_delta(base_data, data)
                if len(delta) * 4 < len(data):
                    distance = self._offset - self._entries[position][2]
                    header = _entry_header(_OFS_DELTA, len(delta)) + _negative_offset(distance)
                    parts = [header, zlib.compress(delta, 1)]
                    depth = self._depths[position] + 1
        if not parts:
            if kind == OBJ_TREE:  # a wide tree's ids do not compress: stored blocks (packs.py)
                parts = [_entry_header(kind, len(data)), *stored_zlib_stream(b"", data)]
            else:  # one call: a compressor object per object cost more than the deflate
                parts = [_entry_header(kind, len(data)), zlib.compress(data, 1)]
        crc = 0
        start = self._offset
        for part in parts:
            crc = zlib.crc32(part, crc)
            self._file.write(part)
            self._offset += len(part)
        self._entries.append((oid, crc, start))
        self._depths.append(depth)
        return oid

    def finish(self) -> str | None:
        """Close the pack, write its index, and make it visible; its name (None for a dry run)."""
        if self._file is None or self._tmp is None or self._folder is None:
            return None
        fh, self._file = self._file, None
        fh.seek(8)
        fh.write(struct.pack(">I", len(self._entries)))
        fh.flush()
        fh.seek(0)
        digest = hashlib.sha1()
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
        checksum = digest.digest()
        fh.write(checksum)
        fh.close()
        name = f"pack-{checksum.hex()}"
        idx_tmp = self._folder / f"tmp_idx_arka_{checksum.hex()}"
        idx_tmp.write_bytes(_index_bytes(self._entries, checksum))
        os.replace(self._tmp, self._folder / f"{name}.pack")
        os.replace(idx_tmp, self._folder / f"{name}.idx")
        return name

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


class _Folder:
    """One folder of the working tree: its entries, and the bytes of its last stored version
    with where each entry starts in them (so a changed entry is spliced, not re-sorted)."""

    __slots__ = ("changed", "dirty", "entries", "oid", "positions", "raw", "rebuild", "subfolders")

    def __init__(self) -> None:
        self.entries: dict[bytes, list[object]] = {}  # name -> [mode, id or None, _Folder or None]
        self.raw = b""
        self.positions: dict[bytes, int] = {}
        self.oid: bytes | None = None  # the last stored version (a delta base)
        self.dirty = True
        self.rebuild = True  # an entry added, removed, or of another kind: sort again
        self.changed: set[bytes] = set()  # entries whose id or mode changed (same length)
        self.subfolders: set[bytes] = set()  # subfolders to store before this one

    def copy(self) -> _Folder:
        twin = _Folder()
        twin.entries = {
            name: [entry[0], entry[1], entry[2].copy() if isinstance(entry[2], _Folder) else None]
            for name, entry in self.entries.items()
        }
        twin.raw, twin.positions, twin.oid = self.raw, self.positions, self.oid
        twin.dirty, twin.rebuild = self.dirty, self.rebuild
        twin.changed, twin.subfolders = set(self.changed), set(self.subfolders)
        return twin


_TREE_MODE = b"40000"


def _sort_key(item: tuple[bytes, list[object]]) -> bytes:
    name, entry = item
    return name + b"/" if entry[0] == _TREE_MODE else name


class HistoryWriter:
    """What `git fast-import` does for a replay, as calls: start a commit from its first
    parent's tree (or an empty one), set and delete paths, commit; annotated tags. The working
    tree is kept between commits; a commit whose state a later commit starts from (other than
    the next one: a branch point) must be committed with ``keep=True``.

    Objects are those fast-import writes from the equivalent stream: trees sorted as git sorts
    them (a folder as if its name ended in ``/``), a folder emptied by a deletion removed from
    its parent, commits as ``tree``/``parent``/``author``/``committer``/blank line/message, tags
    as ``object``/``type``/``tag``/``tagger``/blank line/message."""

    def __init__(self, pack: PackWriter) -> None:
        self.pack = pack
        self._root = _Folder()
        self._head: bytes | None = None
        self._kept: dict[bytes, _Folder] = {}

    # --- the working tree ------------------------------------------------------------------
    def start(self, parent: bytes | None) -> None:
        """The next commit starts from ``parent``'s tree (None: an empty tree)."""
        if parent is None:
            self._root = _Folder()
        elif parent != self._head:
            kept = self._kept.get(parent)
            if kept is None:
                raise ValueError("a commit starts from a state that was not kept")
            self._root = kept.copy()
        self._head = parent

    def blob(self, data: bytes, base: tuple[bytes, bytes] | None = None) -> bytes:
        """Store a file's content; ``base``: (id, content) of an earlier version to delta from."""
        if base is None:
            return self.pack.add(OBJ_BLOB, data)
        return self.pack.add(OBJ_BLOB, data, base[0], base[1])

    def put(self, path: bytes, mode: bytes, oid: bytes) -> None:
        """``M mode id path``: a file (or symlink, or submodule commit) at ``path``."""
        if mode == _TREE_MODE or mode == b"040000":
            raise ValueError("a folder cannot be set by id")
        parts = path.split(b"/")
        folder = self._root
        folder.dirty = True
        for name in parts[:-1]:
            entry = folder.entries.get(name)
            if entry is None or not isinstance(entry[2], _Folder):  # missing, or a file in the way
                child = _Folder()
                folder.entries[name] = [_TREE_MODE, None, child]
                folder.rebuild = True
            else:
                child = entry[2]
            folder.subfolders.add(name)
            child.dirty = True
            folder = child
        leaf = parts[-1]
        entry = folder.entries.get(leaf)
        if entry is not None and entry[2] is None and len(entry[0]) == len(mode):  # type: ignore[arg-type]
            entry[0] = mode
            entry[1] = oid
            folder.changed.add(leaf)
        else:
            folder.entries[leaf] = [mode, oid, None]
            folder.rebuild = True

    def delete(self, path: bytes) -> None:
        """``D path``: a file or a whole folder; folders left empty go too. A missing path is
        not an error (fast-import's rule)."""
        parts = path.split(b"/")
        trail: list[tuple[_Folder, bytes]] = []
        folder = self._root
        for name in parts[:-1]:
            entry = folder.entries.get(name)
            if entry is None or not isinstance(entry[2], _Folder):
                return
            trail.append((folder, name))
            folder = entry[2]
        if parts[-1] not in folder.entries:
            return
        del folder.entries[parts[-1]]
        folder.subfolders.discard(parts[-1])
        folder.rebuild = True
        folder.dirty = True
        for parent, name in reversed(trail):
            parent.dirty = True
            if not folder.entries:  # emptied: removed from its parent
                del parent.entries[name]
                parent.subfolders.discard(name)
                parent.rebuild = True
            else:
                parent.subfolders.add(name)
            folder = parent

    def delete_all(self) -> None:
        self._root = _Folder()

    def _store(self, folder: _Folder) -> bytes:
        for name in folder.subfolders:
            entry = folder.entries.get(name)
            child = entry[2] if entry is not None else None
            if isinstance(child, _Folder) and child.dirty:
                oid = self._store(child)
                if entry is not None and entry[1] != oid:
                    entry[1] = oid
                    folder.changed.add(name)
        folder.subfolders.clear()
        if folder.rebuild:
            parts = []
            positions = {}
            offset = 0
            for name, entry in sorted(folder.entries.items(), key=_sort_key):
                line = entry[0] + b" " + name + b"\0" + entry[1]  # type: ignore[operator]
                positions[name] = offset
                offset += len(line)
                parts.append(line)
            raw = b"".join(parts)
            folder.positions = positions
            folder.rebuild = False
        elif folder.changed:
            buffer = bytearray(folder.raw)
            for name in folder.changed:
                entry = folder.entries[name]
                start = folder.positions[name]
                mode, new_id = entry[0], entry[1]
                assert isinstance(mode, bytes) and isinstance(new_id, bytes)
                buffer[start : start + len(mode)] = mode
                id_at = start + len(mode) + len(name) + 2
                buffer[id_at : id_at + 20] = new_id
            raw = bytes(buffer)
        else:
            raw = folder.raw
        folder.changed.clear()
        if folder.oid is None or raw != folder.raw:
            folder.oid = self.pack.add(OBJ_TREE, raw, folder.oid, folder.raw)
            folder.raw = raw
        folder.dirty = False
        return folder.oid

    # --- commits and tags ------------------------------------------------------------------
    def commit(
        self, parents: list[bytes], author: bytes, committer: bytes, message: bytes, *, keep: bool = False
    ) -> bytes:
        tree = self._store(self._root) if self._root.dirty or self._root.oid is None else self._root.oid
        head = [b"tree " + tree.hex().encode() + b"\n"]
        head += [b"parent " + parent.hex().encode() + b"\n" for parent in parents]
        head.append(b"author " + author + b"\ncommitter " + committer + b"\n\n")
        oid = self.pack.add(OBJ_COMMIT, b"".join(head) + message)
        self._head = oid
        if keep:
            self._kept[oid] = self._root.copy()
        return oid

    def tag(self, name: bytes, target: bytes, tagger: bytes | None, message: bytes) -> bytes:
        body = b"object " + target.hex().encode() + b"\ntype commit\ntag " + name + b"\n"
        if tagger is not None:
            body += b"tagger " + tagger + b"\n"
        return self.pack.add(OBJ_TAG, body + b"\n" + message)
