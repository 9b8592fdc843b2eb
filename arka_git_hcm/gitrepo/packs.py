"""Pack files written by the store: one pack (and its index) per batch of writes.

A write adds about six objects (its blobs, the trees on its path, its commit). As loose objects
that is six files created, written and renamed per write, the largest cost of a durable write
under load (measured ~0.84 ms a write at 10k files, against ~0.12 ms for the same bytes as one
pack per batch of four). So the store keeps a batch's new objects in memory and writes them here
as one pack. Objects are deflated at level 1, except wide trees: stored blocks (their 20-byte ids
do not compress). A new version of a file or tree carries a delta from the version it replaces
(made while both are in memory: an appended journal line, a wide tree's one changed entry), and a
pack stores the delta (OFS_DELTA) whenever that base is earlier in the same pack. The format is
git's pack v2 with a v2 index (byte-identical to what `git index-pack` computes, tested), so git,
libgit2 and any git tool read them like any other pack; `git fsck --strict` checks them in the
tests.

The pack is renamed into place before its index, as git does: readers look packs up by their
index, so they never see a pack that is not complete. No fsync here; the engine orders
durability with its filesystem syncs.

Small packs pile up: the store folds the packs it wrote from the objects it still holds,
compressed (:class:`Held`; GitRepo.fold_own_packs, a geometric series in which each version
becomes a delta of the previous one), and has git fold the smallest of the rest, chosen as
`git repack --geometric=2` would (gitbin.repack_geometric).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .. import durable
from .rawtree import stored_zlib_stream

__all__ = [
    "Held",
    "OwnPack",
    "Written",
    "compressed",
    "delta_of",
    "geometric_split",
    "index_object_count",
    "index_object_ids",
    "whole_stream",
    "write_held",
    "KIND_CODES",
    "blob_id",
    "move_pack",
    "object_id",
    "pack_names",
    "remove_leftovers",
    "remove_pack",
    "sync_pack",
    "unreadable",
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
HELD_STREAM_MAX = 256 * 1024  # larger whole streams are not held (a fold reads the object back)
HELD_OVERHEAD = 200  # bytes a Held costs beyond its streams (the instance, two bytes objects, refs)
PACK_TEMP, IDX_TEMP = "tmp_pack_arka_", "tmp_idx_arka_"  # temp names: these + random hex


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
    # a file that grew (a journal: its previous version is its head): one memcmp, no copy
    if (len(a) == limit and b.startswith(a)) or (len(b) == limit and a.startswith(b)):
        return limit
    view = memoryview(b)
    lo, hi = 0, limit
    while lo < hi:  # binary search on slice equality: memcmp in C, no copy, no loop per byte
        mid = (lo + hi + 1) // 2
        if a.startswith(view[lo:mid], lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    view = memoryview(b)
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.endswith(view[len(b) - mid : len(b) - lo], 0, len(a) - lo):
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


@dataclass(slots=True)
class Held:
    """An object as a pack holds it, kept in memory by the process that wrote it so that a
    fold copies its compressed bytes instead of deflating it again (see fold_own_packs).

    ``stream`` is its zlib stream whole (None when not kept: too large, or never made because
    the object went out as a delta); ``delta`` the zlib stream of a delta from ``base``, its
    previous version, when that is much smaller (an appended journal, a wide tree changed by
    one entry). A pack stores it as that delta whenever the base is earlier in the same pack."""

    oid: bytes
    code: int
    size: int
    stream: bytes | None
    base: bytes | None = None
    delta: bytes | None = None
    delta_size: int = 0
    anchor: bool = False  # always stored whole, stream kept: a chain of deltas starts here (appended.py)

    @classmethod
    def new(cls, oid: bytes, code: int, size: int, base: bytes | None, delta: bytes | None) -> Held:
        """A new object of ``size`` bytes, with its delta from ``base`` if one was made."""
        if delta is None:
            return cls(oid, code, size, None, base)
        return cls(oid, code, size, None, base, compressed(delta), len(delta))

    def whole_from(self, data: bytes | bytearray) -> list[bytes | memoryview]:
        """Its whole stream made from its bytes ``data``, and kept when small enough (a fold
        then copies it instead of making it again)."""
        stream = whole_stream(self.code, data)
        if len(stream) == 1 and len(stream[0]) <= HELD_STREAM_MAX:
            self.stream = bytes(stream[0])
        return stream

    def whole_given(self, stream: bytes) -> list[bytes | memoryview]:
        """Its whole stream ``stream``, made by the caller, kept as :meth:`whole_from` keeps one."""
        if len(stream) <= HELD_STREAM_MAX:
            self.stream = stream
        return [stream]

    def weight(self) -> int:
        """Bytes it keeps in memory."""
        return len(self.stream or b"") + len(self.delta or b"") + HELD_OVERHEAD


class Written(NamedTuple):
    name: str
    as_delta: list[bool]  # per object, in order: whether it went out as a delta
    size: int  # bytes of the pack


@dataclass(slots=True)
class OwnPack:
    """A pack this process wrote and still holds the objects of (see fold_own_packs)."""

    name: str
    objects: list[Held]
    size: int  # bytes of the pack
    weight: int  # bytes its objects keep in memory (kept: a fold reads it for every pack)

    @classmethod
    def of(cls, name: str, objects: list[Held], size: int) -> OwnPack:
        return cls(name, objects, size, sum(item.weight() for item in objects))


def compressed(data: bytes | bytearray) -> bytes:
    return zlib.compress(data, 1)  # one call: a compressor object per object cost more than the deflate


def whole_stream(code: int, data: bytes | bytearray) -> list[bytes | memoryview]:
    """The zlib stream of an object stored whole: deflated at level 1, or for a wide tree
    stored blocks (20-byte ids do not compress, and git would keep the bytes as they are)."""
    if code != _TREE or len(data) < _SMALL:
        return [compressed(data)]
    return stored_zlib_stream(b"", data)


def delta_of(base: bytes | bytearray | None, data: bytes | bytearray) -> bytes | None:
    """A delta turning ``base`` into ``data`` when that is worth storing (much smaller than
    ``data``), else None."""
    if base is None or len(data) < DELTA_MIN:
        return None
    delta = make_delta(bytes(base), bytes(data))
    return delta if len(delta) * 4 < len(data) else None


def write_pack(pack_dir: Path, objects: Sequence[tuple[bytes, int, bytes, bytes | None]]) -> str:
    """Write ``(oid, type code, data, delta base id or None)`` objects (distinct ids) as one
    pack; returns its name. An object whose base comes earlier in the same pack is stored as a
    delta of it (OFS_DELTA) when that is much smaller: a wide tree changed by one entry."""
    data_of = {oid: data for oid, _code, data, _base in objects}
    held = []
    for oid, code, data, base in objects:
        delta = delta_of(data_of.get(base) if base is not None else None, data)
        held.append(Held.new(oid, code, len(data), base, delta))
    return write_held(pack_dir, held, lambda item: whole_stream(item.code, data_of[item.oid])).name


def write_held(
    pack_dir: Path, objects: Sequence[Held], whole: Callable[[Held], list[bytes | memoryview]]
) -> Written:
    """Write ``objects`` (distinct ids) as one pack: each as its delta when its base comes
    earlier in the pack and the chain stays under MAX_DELTA_DEPTH, else whole (its kept
    ``stream``, or what ``whole`` makes)."""
    entries: list[tuple[bytes, int, int]] = []  # (oid, crc32, offset)
    placed: dict[bytes | None, tuple[int, int]] = {}  # oid -> (offset, delta depth)
    as_delta: list[bool] = []
    head = b"PACK" + struct.pack(">II", 2, len(objects))
    parts: list[bytes | memoryview] = [head]
    offset = len(head)
    for item in objects:  # a fold copies a hundred thousand objects: keep this loop lean
        start, depth = offset, 0
        delta = item.delta
        base = placed.get(item.base) if delta is not None else None
        body: Sequence[bytes | memoryview]
        if base is not None and delta is not None and base[1] < MAX_DELTA_DEPTH and not item.anchor:
            header = _entry_header(_OFS_DELTA, item.delta_size) + _negative_offset(start - base[0])
            body, depth = (delta,), base[1] + 1
        else:
            header = _entry_header(item.code, item.size)
            body = (item.stream,) if item.stream is not None else whole(item)
        crc = zlib.crc32(header)
        parts.append(header)
        offset += len(header)
        for part in body:
            crc = zlib.crc32(part, crc)
            parts.append(part)
            offset += len(part)
        placed[item.oid] = (start, depth)
        as_delta.append(depth > 0)
        entries.append((item.oid, crc, start))
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part)
    pack_sha = digest.digest()
    parts.append(pack_sha)
    return Written(_install(pack_dir, parts, entries, pack_sha), as_delta, offset + len(pack_sha))


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


PACK_SUFFIXES = (".idx", ".pack", ".rev", ".bitmap", ".keep", ".promisor", ".mtimes")


_FANOUT_END = 8 + 256 * 4  # a version 2 index: 8 header bytes, then 256 big-endian counts


def _indexed_count(head: bytes, name: str) -> int:
    """The object count of a version 2 index starting with ``head`` (at least its fan-out)."""
    if len(head) < _FANOUT_END or head[:8] != _IDX_V2:
        raise OSError(f"{name}.idx is not a version 2 pack index")
    return int.from_bytes(head[_FANOUT_END - 4 : _FANOUT_END], "big")


def index_object_count(pack_dir: Path, name: str) -> int:
    """How many objects the pack ``name`` holds: the last entry of its index's fan-out table."""
    with open(pack_dir / f"{name}.idx", "rb") as index:
        return _indexed_count(index.read(_FANOUT_END), name)


def index_object_ids(pack_dir: Path, name: str) -> list[bytes]:
    """The ids (binary, 20 bytes) of every object in the pack ``name``, from its index."""
    data = (pack_dir / f"{name}.idx").read_bytes()
    end = _FANOUT_END + 20 * _indexed_count(data, name)
    if len(data) < end:
        raise OSError(f"{name}.idx is cut short")
    return [data[at : at + 20] for at in range(_FANOUT_END, end, 20)]


def geometric_split(weights: dict[str, int], factor: int = 2) -> list[str]:
    """The packs to fold into one so that, by object count, each pack left holds at least
    ``factor`` times the objects of all smaller ones together (the packs folded counting as
    one): `git repack --geometric` chooses the same way. Already a progression: none."""
    ordered = sorted(weights, key=lambda name: (weights[name], name))
    split = len(ordered) - 1
    while split > 0 and weights[ordered[split]] >= factor * weights[ordered[split - 1]]:
        split -= 1
    if split:
        split += 1  # the larger pack of the first pair out of progression is not in it
    total = sum(weights[name] for name in ordered[:split])
    while split < len(ordered) and weights[ordered[split]] < factor * total:
        total += weights[ordered[split]]
        split += 1
    return ordered[:split]


def unreadable(pack_dir: Path, name: str, *, whole: bool = True) -> str | None:
    """Why the pack ``name`` cannot be read, or None when a cheap check finds nothing: its
    index against its own checksum, the pack's header, and the pack's trailing checksum against
    the one its index records (a pack is not hashed). A pack renamed into place whose bytes
    never reached the disk (a power cut, or a filesystem the kernel forced read-only, before the
    batch's sync) reads as zeros with its name and size intact. ``whole=False`` (a pack checked
    whole and synced before, see :class:`CheckedPacks`) reads the index's header and trailer
    only, not its body (168 MB at 1,000,000 commits)."""
    try:
        with open(pack_dir / f"{name}.idx", "rb") as index:
            if whole:
                idx = index.read()
            else:
                idx_size = os.fstat(index.fileno()).st_size
                head_idx = index.read(8)
                index.seek(max(0, idx_size - 40))
                idx = head_idx + index.read(40)
        with open(pack_dir / f"{name}.pack", "rb") as pack:
            head = pack.read(12)
            size = os.fstat(pack.fileno()).st_size
            pack.seek(max(0, size - 20))
            tail = pack.read(20)
    except FileNotFoundError:
        return None  # folded away meanwhile
    if whole:
        if len(idx) < 256 * 4 + 40 or hashlib.sha1(idx[:-20]).digest() != idx[-20:]:
            return "its index does not match its own checksum"
    elif len(idx) < 48 or idx[:8] != _IDX_V2:
        return "its index has no index header"
    if size < 32 or head[:4] != b"PACK":
        return "the pack has no pack header"
    if tail != idx[-40:-20]:
        return "the pack's checksum is not the one its index records"
    return None


_IDX_V2 = b"\xfftOc\x00\x00\x00\x02"


class CheckedPacks:
    """Packs already checked whole and synced, by name and the identity of their two files
    (size, mtime, inode): a pack never changes under its name, so one that was whole on disk
    stays whole, and later opens check only its ends. Small packs are checked whole each time
    (cheaper than keeping them). Kept in ``.git/arka-hcm/packs-checked``; a lost or stale
    record costs one whole check, never a missed one."""

    MIN_INDEX_BYTES = 4 * 1024 * 1024

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root
        self._known: dict[str, str] = {}
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in durable.read_file(path, root=root).decode().splitlines():
                name, _, identity = line.partition(" ")
                self._known[name] = identity
        self._seen: dict[str, str] = {}

    def why_unreadable(self, pack_dir: Path, name: str) -> str | None:
        """:func:`unreadable`, whole unless this very pack was checked whole and synced."""
        try:
            idx = os.stat(pack_dir / f"{name}.idx")
            pack = os.stat(pack_dir / f"{name}.pack")
        except FileNotFoundError:
            return None  # folded away meanwhile
        stamps = (idx.st_size, idx.st_mtime_ns, idx.st_ino, pack.st_size, pack.st_mtime_ns, pack.st_ino)
        identity = ":".join(map(str, stamps))
        if self._known.get(name) == identity:
            reason = unreadable(pack_dir, name, whole=False)
        else:
            reason = unreadable(pack_dir, name)
            if reason is not None or idx.st_size < self.MIN_INDEX_BYTES:
                return reason
            try:
                sync_pack(pack_dir, name)  # what was just checked is on the disk from now on
            except OSError:  # a volume the kernel forced read-only: checked whole next time
                return reason
        if reason is None:
            self._seen[name] = identity
        return reason

    def save(self) -> None:
        """Keep the packs of this round (packs gone since are forgotten)."""
        if self._seen == self._known:
            return
        text = "".join(f"{name} {identity}\n" for name, identity in sorted(self._seen.items()))
        with contextlib.suppress(OSError):  # a read-only HCM: the next open checks them whole
            durable.write_atomic(self.path, text.encode(), root=self.root)
        self._known = dict(self._seen)


def move_pack(pack_dir: Path, name: str, folder: Path) -> None:
    """Move a pack's files (its index first: readers look packs up by it) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in PACK_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.rename(pack_dir / f"{name}{suffix}", folder / f"{name}{suffix}")


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
