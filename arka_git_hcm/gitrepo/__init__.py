"""Git adapter: the only package that imports pygit2 or dulwich."""

from .repo import ZERO_OID, CommitInfo, GitRepo, Signature, fsync_dir, sync_filesystem

__all__ = ["ZERO_OID", "CommitInfo", "GitRepo", "Signature", "fsync_dir", "sync_filesystem"]
