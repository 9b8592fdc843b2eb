"""Which files differ between two trees, at a cost that grows with the changes, not the tree.

:meth:`GitRepo.changed_paths` asks libgit2, which walks both versions of a folder entry by entry:
~80 ms, holding the GIL, for the contract's one wide folder at 20,000 missions (measured), and a
follower of the branch (the search index) asks once per batch of writes. Here both versions are
the store's raw tree bytes (usually already in its cache: the engine built them) and identical
stretches are skipped with memcmp (``bytes.startswith`` on a view: no copy), so each difference
costs a few comparisons; only differing subtrees are entered.
"""

from __future__ import annotations

from bisect import bisect_right

from .rawtree import MODE_TREE, RawTree
from .repo import GitRepo

__all__ = ["changed_files"]

_GALLOP_START = 256
_SHARE_LAYOUT_FROM = 16 * 1024  # narrower trees parse in well under a millisecond


def changed_files(repo: GitRepo, old_tree: str | None, new_tree: str | None) -> list[str]:
    """Paths of the files (blobs) added, removed or changed from ``old_tree`` to ``new_tree``."""
    found: set[str] = set()
    _diff(
        repo,
        bytes.fromhex(old_tree) if old_tree else None,
        bytes.fromhex(new_tree) if new_tree else None,
        "",
        found,
    )
    return sorted(found)


def _diff(repo: GitRepo, old: bytes | None, new: bytes | None, base: str, found: set[str]) -> None:
    if old == new:
        return
    a = repo.raw_tree(old) if old is not None else None
    b = _tree_like(repo, new, a) if new is not None else None
    if a is None or b is None:
        only = a if a is not None else b
        assert only is not None
        for name in only.names:
            _entry_changed(repo, base, name, only.entry(name), None, found)
        return
    for name in _differing_names(a, b):
        _entry_changed(repo, base, name, a.entry(name), b.entry(name), found)


def _entry_changed(
    repo: GitRepo,
    base: str,
    name: bytes,
    old: tuple[bytes, bytes] | None,
    new: tuple[bytes, bytes] | None,
    found: set[str],
) -> None:
    if old == new:
        return
    path = base + name.decode("utf-8", "surrogateescape")
    old_is_tree = old is not None and old[0] == MODE_TREE
    new_is_tree = new is not None and new[0] == MODE_TREE
    if (old is not None and not old_is_tree) or (new is not None and not new_is_tree):
        found.add(path)  # a file appeared, vanished or changed (or became a folder)
    if old_is_tree or new_is_tree:
        _diff(
            repo,
            old[1] if old is not None and old_is_tree else None,
            new[1] if new is not None and new_is_tree else None,
            path + "/",
            found,
        )


def _tree_like(repo: GitRepo, oid: bytes, like: RawTree | None) -> RawTree:
    """The tree ``oid``, parsed with the help of ``like``, its previous version. Parsing the
    missions folder's 20,000 entries costs ~10-50 ms of Python (measured), and a follower in
    another process than the writer (whose cache holds the trees it built) meets a new version
    of it every round. Usually only entry ids changed (a mission's subtree): same length, and
    every differing byte inside an id slot of ``like``; then the new tree shares ``like``'s
    names and offsets, as a tree the writer spliced would."""
    cached = repo.cached_raw_tree(oid)
    if cached is not None or like is None or len(like.data) < _SHARE_LAYOUT_FROM:
        return cached if cached is not None else repo.raw_tree(oid)
    data = repo.raw_tree_bytes(oid)
    if data is None or len(data) != len(like.data) or not _ids_differ_only(like, data):
        return repo.raw_tree(oid)
    tree = RawTree.__new__(RawTree)
    tree.data, tree.names, tree.offsets, tree.index = data, like.names, like.offsets, like.index
    repo.remember_raw_tree(oid, tree)
    return tree


def _ids_differ_only(like: RawTree, data: bytes) -> bool:
    """True when ``data`` (as long as ``like.data``) differs from it only inside id slots (the
    last 20 bytes of each entry), so it has the same entries at the same offsets."""
    view = memoryview(data)
    at = 0
    while at < len(data):
        at += _common_run(like.data, at, view, at)
        if at >= len(data):
            return True
        entry = bisect_right(like.offsets, at) - 1
        end = like.offsets[entry + 1] if entry + 1 < len(like.offsets) else len(like.data)
        if at < end - 20:
            return False  # a mode or a name changed: entries may have moved
        at = end  # anything may differ inside the id; go on after it
    return True


def _order_key(tree: RawTree, index: int) -> bytes:
    """git's entry order: a folder sorts as if its name ended with '/'."""
    name = tree.names[index]
    data, start = tree.data, tree.offsets[index]
    return name + b"/" if data.startswith(MODE_TREE + b" ", start) else name


def _differing_names(a: RawTree, b: RawTree) -> list[bytes]:
    """Names whose entry differs (changed, added or removed), merging the two sorted entry lists
    and jumping over byte-identical stretches."""
    names: list[bytes] = []
    i = j = 0
    view_b = memoryview(b.data)
    while i < len(a.names) and j < len(b.names):
        same = _common_run(a.data, a.offsets[i], view_b, b.offsets[j])
        if same:
            # identical bytes parse to identical entries: go to the entries that hold the first
            # differing byte (they start at the same distance from where the run began)
            i = _entry_at(a, a.offsets[i] + same)
            j = _entry_at(b, b.offsets[j] + same)
            if i == len(a.names) or j == len(b.names):
                break
        key_a, key_b = _order_key(a, i), _order_key(b, j)
        if key_a == key_b:
            names.append(a.names[i])
            i, j = i + 1, j + 1
        elif key_a < key_b:
            names.append(a.names[i])
            i += 1
        else:
            names.append(b.names[j])
            j += 1
    names.extend(a.names[i:])
    names.extend(b.names[j:])
    return names


def _entry_at(tree: RawTree, position: int) -> int:
    """The index of the entry holding byte ``position`` (len(names) past the end)."""
    if position >= len(tree.data):
        return len(tree.names)
    return bisect_right(tree.offsets, position) - 1


def _common_run(a: bytes | bytearray, at_a: int, b: memoryview, at_b: int) -> int:
    """How many bytes from ``a[at_a:]`` and ``b[at_b:]`` are equal (galloping, then halving
    only the unknown stretch: each comparison is a memcmp without a copy)."""
    limit = min(len(a) - at_a, len(b) - at_b)
    known, step = 0, _GALLOP_START
    while known < limit:
        size = min(step, limit - known)
        if not a.startswith(b[at_b + known : at_b + known + size], at_a + known):
            break
        known += size
        step *= 4
    else:
        return limit
    low, high = known, known + min(step, limit - known)  # a difference lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if a.startswith(b[at_b + low : at_b + middle], at_a + low):
            low = middle
        else:
            high = middle
    return low
