"""Pack files written by the store: one pack (and its index) per batch of writes.

A write adds about six objects (its blobs, the trees on its path, its commit). As loose objects
that is six files created, written and renamed per write, the largest cost of a durable write
under load (measured ~0.84 ms a write at 10k files, against ~0.12 ms for the same bytes as one
pack per batch of four). So the store keeps a batch's new objects in memory and writes them here
as one pack. Objects are deflated at level 1, except wide trees: stored blocks (their 20-byte ids
do not compress), or a delta of the tree's previous version when that is in the same pack (a
wide tree changed by one entry: a few dozen bytes instead of 680 KB). The format is git's pack
v2 with a v2 index (byte-identical to what `git index-pack` computes, tested), so git, libgit2
and dulwich read them like any other pack; `git fsck --strict` checks them in the tests.

Very wide trees (256 KiB and more) go first in a pack, and the running checksums after each of
their stored blocks (the pack's SHA-1, the entry's CRC-32, the stream's Adler-32) are kept: the next batch's
pack starts with the next version of that tree, byte for byte the same up to its changed entry,
so its checksums are taken on from the last block the two share (half the tree on average).

The pack is renamed into place before its index, as git does: readers look packs up by their
index, so they never see a pack that is not complete. No fsync here; the engine orders
durability with its filesystem syncs.

Small packs pile up; the engine has `git repack --geometric=2` fold them (with deltas: the
successive missions trees differ by one entry), see gitbin.repack_geometric.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .. import durable
from .rawtree import RESUMABLE_MIN, stored_blocks, stored_zlib_stream

__all__ = [
    "KIND_CODES",
    "blob_id",
    "object_id",
    "pack_names",
    "remove_leftovers",
    "remove_pack",
    "sync_pack",
    "write_pack",
]

KIND_CODES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
_SMALL = 64 * 1024
_IDX_MAGIC = b"\xfftOc"
_OFS_DELTA = 6
_TREE = KIND_CODES[b"tree"]
DELTA_MIN = 4096  # smaller objects are not worth a delta
MAX_DELTA_DEPTH = 16  # a reader applies at most this many deltas to rebuild an object
_LARGE = 0x80000000
_STORED_BLOCK = 65535  # bytes of a stored deflate block, at most
PACK_TEMP, IDX_TEMP = "tmp_pack_arka_", "tmp_idx_arka_"  # temp names: these + random hex
_POINTS_KEPT = 8  # wide trees whose checksum states are kept (the hot path needs the last one)


class _StreamPoints(NamedTuple):
    """A wide tree written first in a pack: the bytes before its stored blocks (the pack header,
    the entry header, the zlib header), its bytes, and after each block the pack's SHA-1 state,
    the entry's CRC-32 and the stream's Adler-32."""

    prefix: bytes
    data: bytes
    points: list[tuple[hashlib._Hash, int, int]]


_stream_points: OrderedDict[bytes, _StreamPoints] = OrderedDict()
_stream_points_lock = threading.Lock()


def blob_id(data: bytes) -> str:
    """The git id (hex) a blob of ``data`` has: what `git hash-object` prints."""
    return object_id(b"blob", data).hex()


def object_id(kind: bytes, data: bytes | bytearray) -> bytes:
    digest = hashlib.sha1(kind + b" " + str(len(data)).encode() + b"\0")
    digest.update(data)
    return digest.digest()


def _entry_header(code: int, size: int) -> bytes:
    first = (code << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(first | 0x80)
        first = size & 0x7F
        size >>= 7
    out.append(first)
    return bytes(out)


def _entry_stream(data: bytes | bytearray, compress: bool = True) -> list[bytes | memoryview]:
    """The zlib stream of an entry: deflated at level 1, or for a wide tree (``compress`` False:
    20-byte ids do not compress, and git would keep the bytes as they are) stored blocks."""
    if compress or len(data) < _SMALL:
        compressor = zlib.compressobj(1)
        return [compressor.compress(data) + compressor.flush()]
    return stored_zlib_stream(b"", data)


def _negative_offset(distance: int) -> bytes:
    """git's encoding of an OFS_DELTA base distance (big-endian 7-bit groups, each but the last
    with the high bit set, and one added to every group but the last)."""
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(reversed(out))


def _size_varint(size: int) -> bytes:
    out = bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        if size:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    lo, hi = 0, limit
    while lo < hi:  # binary search on slice equality: memcmp in C, no Python loop per byte
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def make_delta(base: bytes, target: bytes) -> bytes:
    """A git delta turning ``base`` into ``target``: copy the common head, insert what differs,
    copy the common tail. Exact for the store's edits of a wide tree (one entry's id replaced,
    or one entry added or removed), where everything but a few dozen bytes is shared."""
    limit = min(len(base), len(target))
    head = _common_prefix(base, target, limit)
    tail = _common_suffix(base, target, limit - head)
    out = bytearray(_size_varint(len(base)) + _size_varint(len(target)))
    _copy(out, 0, head)
    middle = target[head : len(target) - tail]
    for at in range(0, len(middle), 127):
        piece = middle[at : at + 127]
        out.append(len(piece))
        out += piece
    _copy(out, len(base) - tail, tail)
    return bytes(out)


def _copy(out: bytearray, offset: int, size: int) -> None:
    while size:
        step = min(size, 0xFFFFFF)
        command, args = 0x80, bytearray()
        for i in range(4):
            byte = (offset >> (8 * i)) & 0xFF
            if byte:
                command |= 1 << i
                args.append(byte)
        for i in range(3):
            byte = (step >> (8 * i)) & 0xFF
            if byte:
                command |= 0x10 << i
                args.append(byte)
        out.append(command)
        out += args
        offset += step
        size -= step


def _is_wide_tree(obj: tuple[bytes, int, bytes, bytes | None]) -> bool:
    """A tree wide enough for its checksums to be taken on (see rawtree.RESUMABLE_MIN)."""
    return obj[1] == _TREE and len(obj[2]) >= RESUMABLE_MIN


def _first_wide_tree(
    head: bytes, oid: bytes, data: bytes, base: bytes | None
) -> tuple[list[bytes | memoryview], int, hashlib._Hash]:
    """The entry of a wide tree written first in a pack, as stored deflate blocks: its parts,
    its CRC-32, and the pack's SHA-1 state after it. When ``base`` (its previous version) was
    written first in a pack of as many objects, every block the two share is not hashed again:
    the checksums are taken on from the states kept after the last shared block (a state
    depends only on the bytes before it, all compared equal here)."""
    data = bytes(data)  # kept and compared later: never a buffer its owner may change (no copy for bytes)
    prefix = head + _entry_header(_TREE, len(data)) + b"\x78\x01"  # zlib: deflate, no dictionary
    pairs = stored_blocks(data)
    headers = [header for header, _block in pairs]
    blocks = [block for _header, block in pairs]
    shared = 0
    with _stream_points_lock:
        known = _stream_points.get(base) if base is not None else None
        if known is not None:
            _stream_points.move_to_end(base)  # type: ignore[arg-type]
    if known is not None and known.prefix == prefix and len(known.data) == len(data):
        old = known.data
        while shared < len(known.points):
            at = shared * _STORED_BLOCK
            if data[at : at + _STORED_BLOCK] != old[at : at + _STORED_BLOCK]:
                break
            shared += 1
    if shared:
        assert known is not None
        state, crc, adler = known.points[shared - 1]
        digest = state.copy()
        points = known.points[:shared]
    else:
        digest = hashlib.sha1(prefix)
        crc, adler = zlib.crc32(prefix[len(head) :]), 1
        points = []
    for header, block in zip(headers[shared:], blocks[shared:], strict=True):
        digest.update(header)
        digest.update(block)
        crc = zlib.crc32(block, zlib.crc32(header, crc))
        adler = zlib.adler32(block, adler)
        points.append((digest.copy(), crc, adler))  # states are copied, never updated in place
    with _stream_points_lock:
        _stream_points[oid] = _StreamPoints(prefix, data, points)
        while len(_stream_points) > _POINTS_KEPT:
            _stream_points.popitem(last=False)
    trailer = struct.pack(">I", adler)
    digest.update(trailer)
    crc = zlib.crc32(trailer, crc)
    parts: list[bytes | memoryview] = [prefix[len(head) :]]
    for header, block in pairs:
        parts += (header, block)
    parts.append(trailer)
    return parts, crc, digest


def write_pack(pack_dir: Path, objects: Sequence[tuple[bytes, int, bytes, bytes | None]]) -> str:
    """Write ``(oid, type code, data, delta base id or None)`` objects (distinct ids) as one
    pack; returns its name. An object whose base comes earlier in the same pack is stored as a
    delta of it (OFS_DELTA) when that is much smaller: a wide tree changed by one entry. Wide
    trees go first (in their order: a base still precedes its deltas)."""
    objects = [o for o in objects if _is_wide_tree(o)] + [o for o in objects if not _is_wide_tree(o)]
    entries: list[tuple[bytes, int, int]] = []  # (oid, crc32, offset)
    placed: dict[bytes, tuple[int, bytes, int]] = {}  # oid -> (offset, data, depth): delta bases
    parts: list[bytes | memoryview] = []
    head = b"PACK" + struct.pack(">II", 2, len(objects))
    parts.append(head)
    offset = len(head)
    rest = objects
    if objects and _is_wide_tree(objects[0]):
        oid, _code, data, base = objects[0]
        entry, crc, digest = _first_wide_tree(head, oid, data, base)
        entries.append((oid, crc, offset))
        placed[oid] = (offset, data, 0)
        parts += entry
        offset += sum(len(part) for part in entry)
        rest = objects[1:]
    else:
        digest = hashlib.sha1(head)
    for oid, code, data, base in rest:
        start, crc = offset, 0
        chunk: tuple[bytes | memoryview, ...] = ()
        depth = 0
        if base is not None and base in placed and placed[base][2] < MAX_DELTA_DEPTH:
            base_offset, base_data, base_depth = placed[base]
            delta = make_delta(base_data, data)
            if len(delta) * 4 < len(data):
                header = _entry_header(_OFS_DELTA, len(delta)) + _negative_offset(start - base_offset)
                chunk = (header, *_entry_stream(delta))
                depth = base_depth + 1
        if not chunk:
            chunk = (_entry_header(code, len(data)), *_entry_stream(data, compress=code != _TREE))
        if len(data) >= DELTA_MIN:
            placed[oid] = (start, data, depth)
        for part in chunk:
            crc = zlib.crc32(part, crc)
            digest.update(part)
            parts.append(part)
            offset += len(part)
        entries.append((oid, crc, start))
    pack_sha = digest.digest()
    parts.append(pack_sha)
    return _install(pack_dir, parts, entries, pack_sha)


def _install(
    pack_dir: Path, parts: list[bytes | memoryview], entries: list[tuple[bytes, int, int]], pack_sha: bytes
) -> str:
    """Write the pack, then its index (readers look packs up by their index, so they never see
    a pack that is not whole), each at a random temp name made with O_EXCL | O_NOFOLLOW in the
    pack folder reached without following a link, then renamed into place."""
    name = f"pack-{pack_sha.hex()}"
    with durable.folder(pack_dir.parent.parent, [pack_dir.parent.name, pack_dir.name], create=True) as fd:
        if _exists(fd, f"{name}.idx") and _exists(fd, f"{name}.pack"):
            return name  # the very same objects in the very same order: already there
        durable.replace_file(fd, f"{name}.pack", parts, mode=0o444, temp_prefix=PACK_TEMP)
        durable.replace_file(
            fd, f"{name}.idx", [_index_bytes(entries, pack_sha)], mode=0o444, temp_prefix=IDX_TEMP
        )
    return name


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _index_bytes(entries: list[tuple[bytes, int, int]], pack_sha: bytes) -> bytes:
    entries = sorted(entries)
    fanout = [0] * 256
    for oid, _, _ in entries:
        fanout[oid[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    small: list[int] = []
    large: list[int] = []
    for _, _, offset in entries:
        if offset < _LARGE:
            small.append(offset)
        else:
            small.append(_LARGE | len(large))
            large.append(offset)
    body = b"".join(
        [
            _IDX_MAGIC,
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(oid for oid, _, _ in entries),
            struct.pack(f">{len(entries)}I", *(crc for _, crc, _ in entries)),
            struct.pack(f">{len(small)}I", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_sha,
        ]
    )
    return body + hashlib.sha1(body).digest()


def sync_pack(pack_dir: Path, name: str) -> None:
    """fsync a pack, its index and the pack folder: the pack survives a power cut from now on."""
    for path in (pack_dir / f"{name}.pack", pack_dir / f"{name}.idx", pack_dir):
        durable.fsync_path(path)  # the folder last: it holds their names


def remove_pack(pack_dir: Path, name: str) -> None:
    """Delete a pack whose objects are all in another, synced pack: its index first, so that
    no reader looking objects up finds the index of a pack already gone."""
    for suffix in (".idx", ".pack", ".rev"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pack_dir / f"{name}{suffix}")


def pack_names(pack_dir: Path) -> list[str]:
    """The names (``pack-<hex>``) of every pack that has its index, sorted."""
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        return []
    return sorted(
        n[:-4] for n in names if n.startswith("pack-") and n.endswith(".idx") and n[:-4] + ".pack" in names
    )


def remove_leftovers(pack_dir: Path, min_age_s: float = 600) -> list[str]:
    """What killed writers left: temp files of packs being written, and packs that never got
    their index (killed between the two renames). Writing a pack takes milliseconds, so only
    files older than ``min_age_s`` are taken: never one being written now, by any process, in
    any pid namespace."""
    removed = []
    try:
        names = os.listdir(pack_dir)
    except FileNotFoundError:
        return []
    present = set(names)
    now = time.time()
    for file in names:
        temp = file.startswith((PACK_TEMP, IDX_TEMP))
        orphan = file.startswith("pack-") and file.endswith(".pack") and file[:-5] + ".idx" not in present
        if not (temp or orphan):
            continue
        try:
            if now - os.stat(pack_dir / file).st_mtime < min_age_s:
                continue
            os.unlink(pack_dir / file)
        except FileNotFoundError:
            continue
        removed.append(file)
    return removed
