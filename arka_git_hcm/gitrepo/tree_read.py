"""Every file of a committed tree with its bytes, read as fast as libgit2 allows (a full
search-index build reads the whole HCM: 100,000 blobs).

:meth:`GitRepo.walk_files` lists the tree; :meth:`GitRepo.committed_reader` reads each blob
straight from the object database (:meth:`GitRepo.blob_data` checks the objects pending in
memory and makes a Blob object on the way, which the write path needs: ~2x the time, measured).
Only committed trees are read here (a branch tip, whose objects are on disk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .repo import GitRepo

__all__ = ["tree_files"]


def tree_files(
    repo: GitRepo, tree_id: str, wanted: Callable[[str], bool]
) -> Iterator[tuple[str, str, bytes]]:
    """(path, blob id, content) of every file under ``tree_id`` whose path ``wanted`` accepts."""
    read = repo.committed_reader()
    for path, blob in repo.walk_files(tree_id):
        if wanted(path):
            yield path, blob, read(blob)
