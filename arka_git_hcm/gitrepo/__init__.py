"""Git adapter: the only package that imports pygit2 or dulwich."""

from .refs import ZERO_OID, fsync_dir
from .repo import CommitInfo, GitRepo, Signature, sync_filesystem

__all__ = ["ZERO_OID", "CommitInfo", "GitRepo", "Signature", "fsync_dir", "sync_filesystem"]
