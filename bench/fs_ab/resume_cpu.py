#!/usr/bin/env python3
"""What the resumable checksums save, in CPU per write at 100k files (19,796 missions, a 677 KiB
state/missions tree): one entry of the tree changed at random, then its id and its pack entry's
checksums (SHA-1 of the pack, CRC-32, Adler-32), resumed from the previous version's states
(``RawTree.object_id`` + ``packs._first_wide_tree``), against a whole SHA-1 of the tree plus the
stored-block stream, CRC-32 and SHA-1 of the pack entry (the path taken without the mechanism).
No disk: the filesystem does not change this number, only the time of the rest of a write.

    .venv/bin/python bench/fs_ab/resume_cpu.py
"""

import hashlib
import os
import random
import struct
import time
import zlib

from arka_git_hcm.gitrepo import packs
from arka_git_hcm.gitrepo.rawtree import RawTree

names = sorted(f"m-{i:06d}".encode() for i in range(19796))
tree = RawTree.parse(b"".join(b"40000 " + name + b"\0" + os.urandom(20) for name in names))
rng = random.Random(1)
head = b"PACK" + struct.pack(">II", 2, 7)
state = {"tree": tree, "oid": tree.object_id()}
packs._first_wide_tree(head, state["oid"], bytes(tree.data), None)


def resumed() -> None:
    new = state["tree"].with_changes({rng.choice(names): (b"40000", os.urandom(20))})
    oid = new.object_id()
    packs._first_wide_tree(head, oid, bytes(new.data), state["oid"])
    state["tree"], state["oid"] = new, oid


def whole() -> None:
    new = state["tree"].with_changes({rng.choice(names): (b"40000", os.urandom(20))})
    data = bytes(new.data)
    tree_id = hashlib.sha1(b"tree %d\0" % len(data))
    tree_id.update(data)
    tree_id.digest()
    digest, crc = hashlib.sha1(head), 0
    for part in (packs._entry_header(packs._TREE, len(data)), *packs._entry_stream(data, compress=False)):
        crc = zlib.crc32(part, crc)
        digest.update(part)
    new.checkpoints = None
    state["tree"] = new


def timed(fn, reps: int = 300) -> tuple[float, float]:
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[reps // 2] * 1000, sum(samples) / reps * 1000


print(f"tree: {len(tree.data)} bytes")
for name, fn in (("resumed", resumed), ("whole", whole), ("resumed", resumed), ("whole", whole)):
    p50, mean = timed(fn)
    print(f"{name}: tree id + pack entry checksums, p50 {p50:.3f} ms, mean {mean:.3f} ms")
