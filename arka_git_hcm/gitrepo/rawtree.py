"""Git tree objects as bytes, edited in place.

Why not libgit2's TreeBuilder for every tree: the contract puts every mission in one folder,
``state/missions/``. At 20,000 missions that tree is ~680 KB, and a write rewrites it whole:
TreeBuilder copies every entry, re-serializes, deflates and the next read re-parses it (~30 ms a
write at 100k files, measured). Here the tip's trees stay in memory as their raw bytes plus an
index of entries; changing the id of an existing entry (the common case: one mission's subtree
changed) is a 20-byte splice, hashed with hashlib and packed (packs.py) as a zlib stream of
stored blocks (tree ids do not compress anyway). The bytes are exactly git's tree format, so the
object ids equal those git and libgit2 compute; `git fsck --strict` checks them in the tests.

(Very wide trees once kept SHA-1 states along their bytes to hash on from the first change; it
saved ~0.45 ms of CPU a write at 100k files, which measured under the 5% a speed trick must pay
on journaled ext4 and xfs, so it was removed: bench/README.md, "Speed code on the filesystems
clients run".)
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from .lru import ObjectCache

__all__ = [
    "EMPTY_TREE",
    "MODE_BLOB",
    "MODE_TREE",
    "RawTree",
    "raw_tree_cache",
    "stored_blocks",
    "stored_zlib_stream",
]

MODE_TREE = b"40000"
MODE_BLOB = b"100644"
_SMALL = 64 * 1024
_STORED_BLOCK = 65535


class RawTree:
    """One tree object: its bytes, its entry names in order, and where each entry starts."""

    __slots__ = ("data", "index", "names", "offsets")

    def __init__(self, data: bytes | bytearray, names: list[bytes], offsets: list[int]) -> None:
        self.data = data
        self.names = names
        self.offsets = offsets
        self.index = {name: i for i, name in enumerate(names)}

    def object_id(self) -> bytes:
        """The git object id of this tree (20 bytes)."""
        whole = hashlib.sha1(b"tree %d\0" % len(self.data))
        whole.update(self.data)  # one call: no copy of the bytes, one release of the GIL
        return whole.digest()

    @classmethod
    def parse(cls, data: bytes) -> RawTree:
        names: list[bytes] = []
        offsets: list[int] = []
        pos, end = 0, len(data)
        find = data.find
        while pos < end:
            space = find(b" ", pos)
            nul = find(b"\0", space)
            names.append(data[space + 1 : nul])
            offsets.append(pos)
            pos = nul + 21
        return cls(data, names, offsets)

    def entry(self, name: bytes) -> tuple[bytes, bytes] | None:
        """(mode, 20-byte id) of ``name``, or None."""
        i = self.index.get(name)
        if i is None:
            return None
        start = self.offsets[i]
        space = self.data.find(b" ", start)
        oid_at = space + 1 + len(name) + 1
        return bytes(self.data[start:space]), bytes(self.data[oid_at : oid_at + 20])

    def with_changes(self, changes: dict[bytes, tuple[bytes, bytes] | None]) -> RawTree:
        """A new tree with entries set (mode, id) or removed (None)."""
        splices: list[tuple[int, bytes]] = []
        for name, value in changes.items():
            current = self.entry(name)
            if value is None or current is None or current[0] != value[0]:
                return self._rebuilt(changes)
            if current[1] != value[1]:
                start = self.offsets[self.index[name]]
                splices.append((start + len(current[0]) + 1 + len(name) + 1, value[1]))
        if not splices:
            return self
        # Same-length replacements: entry order and offsets are unchanged, so they are shared.
        # One copy of the bytes (a join of views around the new ids), not two: at 20,000
        # missions the tree is ~680 KB and a copy costs ~0.35 ms on these VMs.
        view = memoryview(self.data)
        parts: list[bytes | memoryview] = []
        pos = 0
        for at, oid in sorted(splices):
            parts += (view[pos:at], oid)
            pos = at + 20
        parts.append(view[pos:])
        clone = RawTree.__new__(RawTree)
        clone.data, clone.names, clone.offsets, clone.index = (
            b"".join(parts),
            self.names,
            self.offsets,
            self.index,
        )
        return clone

    def _rebuilt(self, changes: dict[bytes, tuple[bytes, bytes] | None]) -> RawTree:
        entries: dict[bytes, tuple[bytes, bytes]] = {}
        for name in self.names:
            value = self.entry(name)
            assert value is not None
            entries[name] = value
        for name, change in changes.items():
            if change is None:
                entries.pop(name, None)
            else:
                entries[name] = change
        # git orders a folder as if its name ended with "/"
        ordered = sorted(entries, key=lambda n: n + b"/" if entries[n][0] == MODE_TREE else n)
        parts: list[bytes] = []
        offsets: list[int] = []
        pos = 0
        for name in ordered:
            mode, oid = entries[name]
            chunk = mode + b" " + name + b"\0" + oid
            offsets.append(pos)
            parts.append(chunk)
            pos += len(chunk)
        return RawTree(b"".join(parts), ordered, offsets)


EMPTY_TREE = RawTree(b"", [], [])


def raw_tree_cache(max_bytes: int = 64 * 1024 * 1024) -> ObjectCache[RawTree]:
    """Recently used trees by id, bounded by total bytes (superseded wide trees fall out)."""
    return ObjectCache(max_bytes, lambda tree: len(tree.data))


def stored_blocks(data: bytes | bytearray, header: bytes = b"") -> list[tuple[bytes, bytes | memoryview]]:
    """``header + data`` as stored deflate blocks: (block header, block) pairs, the last one
    marked final; ``data`` is not copied (views), only the first block when a header leads it."""
    view = memoryview(data)
    first: bytes | memoryview = (
        header + bytes(view[: _STORED_BLOCK - len(header)]) if header else view[:_STORED_BLOCK]
    )
    rest = view[_STORED_BLOCK - len(header) :]
    blocks = [first, *(rest[at : at + _STORED_BLOCK] for at in range(0, len(rest), _STORED_BLOCK))]
    last = len(blocks) - 1
    return [(struct.pack("<BHH", i == last, len(b), len(b) ^ 0xFFFF), b) for i, b in enumerate(blocks)]


def stored_zlib_stream(header: bytes, data: bytes | bytearray) -> list[bytes | memoryview]:
    """A valid zlib stream of ``header + data`` made of *stored* deflate blocks, as buffers to
    hand to writev: no compression work and no copy of ``data`` (a wide tree is ~680 KB of
    mostly SHA-1 bytes that do not compress; zlib at level 0 still copied it, ~1 ms)."""
    parts: list[bytes | memoryview] = [b"\x78\x01"]  # CMF/FLG: deflate, 32K window, check bits
    for block_header, block in stored_blocks(data, header):
        parts += (block_header, block)
    parts.append(struct.pack(">I", zlib.adler32(data, zlib.adler32(header))))
    return parts
