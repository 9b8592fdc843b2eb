"""Search over the HCM: HCM_SEARCH and HCM_MEMORY_QUERY, from an SQLite FTS5 index kept beside
the repository (``.git/arka-hcm/search/``), rebuilt from git objects whenever it is missing,
stale, corrupt or of another schema, and followed off the write path.

    from arka_git_hcm.search import attach_search
    store = HcmStore.open(settings)
    attach_search(store)          # HCM_SEARCH / HCM_MEMORY_QUERY now answer; store.close() closes it
"""

from .schema import SCHEMA_VERSION
from .service import SERVER_ROUND_GAP_S, SearchService, attach_search
from .updater import UpdateReport

__all__ = ["SCHEMA_VERSION", "SERVER_ROUND_GAP_S", "SearchService", "UpdateReport", "attach_search"]
