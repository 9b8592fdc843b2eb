"""The zlib streams of files that only grow (journals), made in time proportional to what a write
appends, not to the file.

Each write to a journal stores its new version whole in the batch's pack (its previous version
is in an earlier pack, so no delta can be used there). Deflating that version again from its
first byte made an append cost grow with the journal: 0.84 ms for a 150 KB journal here, the
largest cost that grew in the soak (issue 11). Instead, the compressor that made the previous
version's stream is kept, fed only the appended bytes, and a copy of it finishes the stream:
0.05 ms at 150 KB, and a stream within 3% of a whole deflate's size (measured on journal lines,
see the constants).

The compressor is never flushed between versions, so it goes on exactly where the previous
version left it, and a copy of it finishes each version's stream: a complete zlib stream that
git, libgit2 and `git index-pack` read like any other (tests/test_packs.py checks with git).
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict

from .packs import MAX_DELTA_DEPTH

__all__ = ["AppendedStreams"]

# A small window and hash table keep each compressor at ~48 KB (a default one holds ~260 KB, and
# its copy per version cost 0.28 ms). Measured on 750 journal lines (151 KB): whole level-1
# deflate 16.6 KB in 0.84 ms; this, 17.0 KB at 0.05 ms per appended line.
WINDOW_BITS = 13
MEM_LEVEL = 4
STATE_BYTES = 48 * 1024  # what one compressor holds (tracemalloc, the settings above)
MAX_BYTES = 24 * 1024 * 1024  # compressors and their streams kept, at most (~300 journals)
ANCHOR_EVERY = MAX_DELTA_DEPTH  # every this many versions of a file, one is an anchor (below)


class _Growing:
    __slots__ = ("size", "versions", "_deflate", "_body")

    def __init__(self) -> None:
        self.size = 0
        self.versions = 0  # streams made
        self._deflate = zlib.compressobj(1, zlib.DEFLATED, WINDOW_BITS, MEM_LEVEL)
        self._body = bytearray()  # the blocks the compressor emitted so far

    def extend(self, more: bytes | memoryview) -> bytes:
        """Take ``more`` bytes; the whole zlib stream of everything taken so far."""
        self._body += self._deflate.compress(more)
        self.size += len(more)
        self.versions += 1
        return b"".join((self._body, self._deflate.copy().flush(zlib.Z_FINISH)))

    def weight(self) -> int:
        return STATE_BYTES + len(self._body)


class AppendedStreams:
    """Compressors of grown files by the id of the version they have taken, bounded by bytes
    (the least recently extended go first; a file whose compressor went is deflated whole
    once, then followed again). Thread-safe."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._states: OrderedDict[bytes, _Growing] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def stream(
        self, base: bytes, base_data: bytes | bytearray, oid: bytes, data: bytes
    ) -> tuple[bytes, bool] | None:
        """The zlib stream of ``data`` (blob ``oid``) when it is ``base_data`` (blob ``base``)
        with bytes appended, and whether this version is an anchor; else None (not an append:
        the caller deflates it whole).

        Anchors: a pack stores a version as a delta of the previous one when both are in it,
        in chains of at most MAX_DELTA_DEPTH, and a fold of packs then needs some versions
        whole again. Those are the anchors, one in ANCHOR_EVERY versions of a file, always
        stored whole with their stream kept (packs.Held.anchor); a version between two anchors
        is a delta, never needed whole again. (Before, a fold found its own chain breaks, and
        read back and deflated the whole journal for each: 247 times in 3,000 writes to five
        150 KB journals, measured.)"""
        if len(data) <= len(base_data) or not data.startswith(base_data):
            return None
        with self._lock:
            state = self._states.pop(base, None)
            if state is not None:
                self._bytes -= state.weight()
        if state is None or state.size != len(base_data):
            state, more = _Growing(), memoryview(data)  # first append seen: deflated whole once
        else:
            more = memoryview(data)[len(base_data) :]
        stream = state.extend(more)
        anchor = (state.versions - 1) % ANCHOR_EVERY == 0
        with self._lock:
            old = self._states.pop(oid, None)  # the same content made twice: keep one
            if old is not None:
                self._bytes -= old.weight()
            self._states[oid] = state
            self._bytes += state.weight()
            while self._bytes > self.max_bytes and self._states:
                _, dropped = self._states.popitem(last=False)
                self._bytes -= dropped.weight()
        return stream, anchor

    def __len__(self) -> int:
        return len(self._states)
