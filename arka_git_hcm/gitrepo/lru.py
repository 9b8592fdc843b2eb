"""A least-recently-used cache of immutable git objects by id, bounded by total bytes.

Git objects never change once written, so nothing is ever invalidated: entries only fall out,
oldest use first, when the bytes held pass the bound. Thread-safe (server readers and the
writer share one repository handle)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ObjectCache"]

V = TypeVar("V")
ENTRY_OVERHEAD = 64  # bytes counted per entry beyond its own (the key, the dict slot)


class ObjectCache(Generic[V]):
    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[bytes, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, oid: bytes) -> V | None:
        with self._lock:
            value = self._items.get(oid)
            if value is not None:
                self._items.move_to_end(oid)
            return value

    def drop(self, oid: bytes) -> None:
        """Forget ``oid`` (it will not be asked for again: a version a write superseded)."""
        with self._lock:
            value = self._items.pop(oid, None)
            if value is not None:
                self._bytes -= self._size_of(value) + ENTRY_OVERHEAD

    def put(self, oid: bytes, value: V) -> None:
        size = self._size_of(value) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return  # larger than the whole cache: it would only push everything else out
        with self._lock:
            if oid in self._items:
                self._items.move_to_end(oid)
                return
            self._items[oid] = value
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size_of(old) + ENTRY_OVERHEAD
