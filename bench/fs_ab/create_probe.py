#!/usr/bin/env python3
"""What spare.py saves, per new file: the create step of a file the store makes on each write (a
work-tree temp file, the pack, its index, the intent, the ref lock: 5 per write), created directly
(``open(O_CREAT|O_EXCL)``) or taken from a file made ahead (a rename of the spare into place and an
``open``), in a folder where every new file is renamed over one of 50 targets (freeing the old
inode), as in the store. Two passes of each, 3,000 files per pass.

    python3 bench/fs_ab/create_probe.py DIR [COUNT]     # DIR on the filesystem to probe
"""

import os
import sys
import time

d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
os.makedirs(d + "/spare", exist_ok=True)
os.makedirs(d + "/w", exist_ok=True)


def run(mode: str) -> tuple[float, float]:
    times = []
    for i in range(n):
        if mode == "spare":  # made ahead, outside the timed step, as the pool's thread does
            os.close(os.open(f"{d}/spare/s{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        started = time.perf_counter()
        if mode == "direct":
            fd = os.open(f"{d}/w/tmp{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        else:
            os.rename(f"{d}/spare/s{i}", f"{d}/w/tmp{i}")
            fd = os.open(f"{d}/w/tmp{i}", os.O_WRONLY)
        times.append(time.perf_counter() - started)
        os.write(fd, b"x" * 300)
        os.close(fd)
        os.rename(f"{d}/w/tmp{i}", f"{d}/w/target{i % 50}")
    times.sort()
    return times[n // 2] * 1e6, sum(times) / n * 1e6


for mode in ("direct", "spare", "direct", "spare"):
    p50, mean = run(mode)
    print(f"{d} {mode}: create step p50 {p50:.0f} us, mean {mean:.0f} us")
