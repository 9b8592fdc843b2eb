"""The proof: after the bundle is written, open it as support would and search every object for
every original sensitive value.

The bundle is cloned (or, for an incremental one, fetched on top of the previous bundle) into a
scratch repository, then every object stored there (`git cat-file --batch-all-objects`: commits,
trees, tags and every version of every blob, reachable or not) is decoded, its JSON escapes
undone, NFC-composed and folded (:func:`~.normalize.scan_form`), and searched with the same
Aho-Corasick automaton that drove the rewrite: one pass per object, linear in the bundle's size.
Tree objects are searched by their entry names only (the 20-byte ids between them are binary).

One hit raises :class:`LeakFound` naming the category and the object (type, id, and the path of a
file with any sensitive part masked), never the value; the caller then deletes the bundle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InternalError
from ..gitrepo.plumbing_replay import all_objects, object_paths
from .dictionary import SensitiveSet
from .normalize import fold, nfc, scan_form

__all__ = ["LeakFound", "ScanResult", "scan_objects", "scan_repository", "tree_names"]


class LeakFound(InternalError):
    """A sensitive value is still in the bundle: it was deleted, nothing left the machine."""

    def __init__(self, category: str, where: str) -> None:
        super().__init__(
            f"the leak scan found a {category} value in {where}; the bundle was deleted. This is a "
            "place the anonymizer does not rewrite: report it (the category and the object, never "
            "the value), and add the value's context to anonymize.terms or anonymize.patterns",
            {"category": category, "object": where},
        )
        self.category = category
        self.where = where


@dataclass
class ScanResult:
    objects: int
    bytes: int
    values: int
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "status": "clean",
            "objects": self.objects,
            "bytes": self.bytes,
            "values_searched": self.values,
            "seconds": round(self.seconds, 3),
        }


def tree_names(data: bytes) -> str:
    """The entry names of a raw tree object, one a line."""
    names = []
    pos = 0
    size = len(data)
    while pos < size:
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        names.append(data[space + 1 : nul])
        pos = nul + 21
    return b"\n".join(names).decode("utf-8", "replace")


def scan_objects(
    objects: Iterable[tuple[str, str, bytes]], sensitive: SensitiveSet
) -> tuple[int, int, tuple[str, str, str] | None]:
    """(objects read, bytes read, first hit as (category, type, oid) or None)."""
    count = 0
    size = 0
    for oid, kind, data in objects:
        count += 1
        size += len(data)
        text = tree_names(data) if kind == "tree" else data.decode("utf-8", "replace")
        category = sensitive.first_hit(scan_form(text))
        if category is not None:
            return count, size, (category, kind, oid)
    return count, size, None


def scan_repository(repo: Path, sensitive: SensitiveSet) -> ScanResult:
    started = time.perf_counter()
    count, size, hit = scan_objects(all_objects(repo), sensitive)
    if hit is not None:
        category, kind, oid = hit
        raise LeakFound(category, _describe(repo, kind, oid, sensitive))
    return ScanResult(count, size, sensitive.size, time.perf_counter() - started)


def _describe(repo: Path, kind: str, oid: str, sensitive: SensitiveSet) -> str:
    if kind not in ("blob", "tree"):
        return f"{kind} {oid}"
    path = object_paths(repo).get(oid)
    if path is None:
        return f"{kind} {oid} (not reachable from any ref)"
    return f"{kind} {oid} ({'file' if kind == 'blob' else 'folder'} {_masked(path, sensitive)})"


def _masked(path: str, sensitive: SensitiveSet) -> str:
    """A path with every sensitive part replaced by ***: it may be the very place of the leak."""
    folded = fold(nfc(path))
    if len(folded) != len(path):
        folded = fold(path)
    out = []
    pos = 0
    for start, end, _ in sensitive.matches(folded):
        out.append(path[pos:start])
        out.append("***")
        pos = end
    out.append(path[pos:])
    return "".join(out)
