"""Git adapter: the only package that imports pygit2 or dulwich."""

from .packs import blob_id
from .refs import ZERO_OID
from .repo import CommitInfo, GitRepo, Signature, sync_filesystem

__all__ = ["ZERO_OID", "CommitInfo", "GitRepo", "Signature", "blob_id", "sync_filesystem"]
