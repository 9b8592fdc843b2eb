"""Every file of a committed tree with its bytes, read as fast as this host allows (a full
search-index build reads the whole HCM: 100,000 blobs).

:meth:`GitRepo.walk_files` lists the tree; the blobs come from one `git cat-file --batch`
(gitcli.cat_objects), which finds and inflates them in its own process, on the other core, while
this one parses what already came: at 100,000 files 0.6 s of this process's CPU instead of 1.3 s
with libgit2 reads (measured). Without a git binary they are read straight from libgit2's object
database (:meth:`GitRepo.committed_reader`). Only committed trees are read here (a branch tip,
whose objects are on disk): a pending object is not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .base import damaged
from .gitcli import cat_objects, git_binary
from .repo import GitRepo

__all__ = ["tree_files"]


def tree_files(
    repo: GitRepo, tree_id: str, wanted: Callable[[str], bool]
) -> Iterator[tuple[str, str, bytes]]:
    """(path, blob id, content) of every file under ``tree_id`` whose path ``wanted`` accepts.
    A missing or damaged object raises IO_ERROR."""
    files = [(path, blob) for path, blob in repo.walk_files(tree_id) if wanted(path)]
    if git_binary() is None:
        read = repo.committed_reader()
        for path, blob in files:
            yield path, blob, read(blob)
        return
    try:
        for (path, blob), (_, data) in zip(
            files, cat_objects(repo.workdir, [b for _, b in files]), strict=True
        ):
            if data is None:
                raise damaged(KeyError(f"object {blob} of {path} is missing"))
            yield path, blob, data
    except OSError as exc:
        raise damaged(exc) from None
