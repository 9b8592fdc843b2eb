"""The search service: what HCM_SEARCH and HCM_MEMORY_QUERY call, and its life with a store.

    service = attach_search(store)     # the server and the CLI do this after HcmStore.open
    store.execute({"op": "HCM_SEARCH", ..., "payload": {"query": "décision budget"}})
    store.close()                      # closes the service too

The service holds the index (reader, updater, follower) of one HCM repository. It reads the
hindex rules from the tree the operation reads (the tip the request saw), asks the index for the
hits the caller may see, and says which revision they reflect.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..domain.envelope import Caller, MemoryQuery, Search
from ..domain.layout import mission_paths
from ..errors import Busy, HcmError
from ..gitrepo import GitRepo
from .child import ChildUpdater
from .follower import IndexFollower, Updater
from .pack import build_pack
from .query import ParsedQuery, parse_query
from .ranking import Filters, Hit, Ranker
from .reader import IndexReader, IndexUnavailable
from .rules import RULE_FILES, AccessRules, IndexRules, load_rules
from .schema import IndexFiles
from .updater import IndexUpdater, UpdateReport

__all__ = ["SearchService", "attach_search"]

_ANCESTRY_DEPTH = 256  # how far back "the index is past the tip the caller saw" is looked for


class TreeReader(Protocol):
    """The tree an operation reads (services.views.TreeView): the hindex rules come from it."""

    @property
    def commit_id(self) -> str | None: ...

    def read(self, path: str) -> bytes | None: ...


class _Store(Protocol):
    repo: GitRepo
    search: Any

    def tip(self) -> str | None: ...

    def add_landing_listener(self, listener: Callable[[str, list[str]], None]) -> None: ...


class SearchService:
    def __init__(
        self,
        repo: GitRepo,
        tip: Callable[[], str | None],
        *,
        interval_s: float | None = 1.0,
        min_gap_s: float = 0.05,
        wait_s: float = 5.0,
        before_stamp: Callable[[], None] | None = None,
        updater_process: bool = False,
    ) -> None:
        self.repo = repo
        self.tip = tip
        self.wait_s = wait_s
        self.files = IndexFiles(repo.git_dir)
        self.updater: Updater = (
            ChildUpdater(repo.workdir, self.files)
            if updater_process
            else IndexUpdater(repo, self.files, before_stamp=before_stamp)
        )
        self.reader = IndexReader(self.files)
        self.ranker = Ranker()
        self.follower = IndexFollower(self.updater, tip, interval_s=interval_s, min_gap_s=min_gap_s)
        self._rules: tuple[tuple[bytes | None, ...], IndexRules, AccessRules] | None = None
        self._rules_lock = threading.Lock()

    # --- life ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Bring the index to the tip now, in the background (builds it if there is none)."""
        self.follower.wake()

    def on_landing(self, new_tip: str, paths: list[str]) -> None:
        """The store's landing listener: runs in the committing thread, so it only wakes."""
        self.follower.wake()

    def close(self) -> None:
        self.follower.close(timeout=5.0)
        self.reader.close()

    # --- the operations --------------------------------------------------------------------------
    def search(self, payload: Search, caller: Caller, view: TreeReader) -> dict[str, Any]:
        index_rules, access = self._rules_of(view)
        scope = payload.scope
        given = bool(scope.mission_id or scope.layers or scope.path_prefix)
        filters = Filters(
            levels=access.visible_levels(caller),
            mission=scope.mission_id,
            layers=tuple(scope.layers) if scope.layers else None,
            path_prefix=scope.path_prefix,
            default_scope=not given,
        )
        query = parse_query(payload.query)
        routed = index_rules.routed_classes(payload.query)
        hits, more, matched, revision = self._ranked(
            query, filters, routed, payload.limit, view.commit_id, payload.consistent
        )
        return {
            "results": [hit.to_json(revision) for hit in hits],
            "revision": revision,
            "tip": view.commit_id,
            "more": more,
            "matched": matched,
            "terms": query.to_json(),
            "ignored_terms": list(query.ignored),
            "routed_classes": routed,
        }

    def memory_pack(
        self, payload: MemoryQuery, caller: Caller, view: TreeReader, context: dict[str, Any]
    ) -> dict[str, Any]:
        """``context``: the mission's context as HCM_GET_MISSION_CONTEXT gives it (at the tip)."""
        index_rules, access = self._rules_of(view)
        levels = access.visible_levels(caller)
        filters = Filters(levels=levels, mission=payload.mission_id, with_shared=True)
        query = parse_query(payload.query)
        routed = index_rules.routed_classes(payload.query)
        hits, _, matched, revision = self._ranked(
            query, filters, routed, payload.limit, view.commit_id, payload.consistent
        )
        return build_pack(
            mission_id=payload.mission_id,
            revision=view.commit_id,
            index_revision=revision,
            context=_visible_context(context, payload.mission_id, index_rules, levels),
            hits=[hit.to_json(revision) for hit in hits],
            matched=matched,
            max_bytes=payload.max_bytes,
        )

    def status(self) -> dict[str, Any]:
        tip = self.tip()
        try:
            with self.reader.snapshot() as snap:
                documents = snap.conn.execute("SELECT count(*) FROM doc").fetchone()[0]
                files = snap.conn.execute("SELECT count(*) FROM files").fetchone()[0]
                meta, generation = snap.meta, snap.generation
        except IndexUnavailable as exc:
            return {"exists": False, "reason": exc.reason, "tip": tip, "up_to_date": False}
        size = sum(
            os.path.getsize(p)
            for p in (generation, *(generation.with_name(generation.name + s) for s in ("-wal",)))
            if os.path.exists(p)
        )
        return {
            "exists": True,
            "path": str(generation),
            "schema_version": int(meta["schema_version"]),
            "revision": meta["revision"],
            "tip": tip,
            "up_to_date": meta["revision"] == tip,
            "documents": documents,
            "files": files,
            "bytes": size,
            "built_at": meta.get("built_at"),
            "updated_at": meta.get("updated_at"),
        }

    def rebuild(self, *, wait_s: float = 60.0) -> UpdateReport:
        tip = self.tip()
        if tip is None:
            raise Busy("the HCM has no commit yet: nothing to index")
        report = self.updater.rebuild(tip, wait_s=wait_s, reason="asked")
        if report is None:
            raise Busy("another process holds the search index's update lock; retry shortly")
        return report

    def catch_up(self, *, wait_s: float = 60.0) -> UpdateReport | None:
        """Bring the index to the tip in the calling thread (the CLI, tests)."""
        return self.updater.catch_up(self.tip(), wait_s=wait_s)

    # --- inside ----------------------------------------------------------------------------------
    def _ranked(
        self,
        query: ParsedQuery,
        filters: Filters,
        routed: list[str],
        limit: int,
        tip: str | None,
        consistent: bool,
    ) -> tuple[list[Hit], bool, str, str]:
        """Rank in one snapshot of the index; wait (bounded) for an index to exist, and with
        ``consistent`` for it to reflect ``tip``."""
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                with self.reader.snapshot() as snap:
                    if not consistent or self._covers(snap.revision, tip):
                        hits, more, matched = self.ranker.search(
                            snap.conn, str(snap.generation), query, filters, routed, limit
                        )
                        return hits, more, matched, snap.revision
                    reason = f"the index reflects {snap.revision[:12]}, not yet {str(tip)[:12]}"
            except IndexUnavailable as exc:
                reason = exc.reason
                if exc.corrupt:
                    self.follower.request_rebuild(reason, exc.generation)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Busy(f"the search index is not ready: {reason}; retry shortly", {"reason": reason})
            self.follower.hurry()
            self.follower.wait_progress(min(remaining, 0.05))

    def _covers(self, revision: str, tip: str | None) -> bool:
        """True when the index reflects ``tip`` or a later commit of the branch."""
        if tip is None or revision == tip:
            return True
        try:
            for depth, info in enumerate(self.repo.walk(revision)):
                if info.id == tip:
                    return True
                if depth >= _ANCESTRY_DEPTH:
                    return False
        except HcmError:
            return False
        return False

    def _rules_of(self, view: TreeReader) -> tuple[IndexRules, AccessRules]:
        raw = tuple(view.read(path) for path in RULE_FILES)
        with self._rules_lock:
            cached = self._rules
            if cached is not None and cached[0] == raw:
                return cached[1], cached[2]
        contents = dict(zip(RULE_FILES, raw, strict=True))
        index_rules, access = load_rules(contents.get)
        with self._rules_lock:
            self._rules = (raw, index_rules, access)
        return index_rules, access


def _visible_context(
    context: dict[str, Any], mission_id: str, rules: IndexRules, levels: tuple[str, ...] | None
) -> dict[str, Any]:
    """The parts of a mission's context the caller may see, by the rules search uses."""
    paths = mission_paths(mission_id)

    def visible(path: str, value: Any) -> bool:
        own = value.get("sensitivity") if isinstance(value, dict) else None
        if isinstance(value, dict) and own is None and isinstance(value.get("context"), dict):
            own = value["context"].get("sensitivity")
        level = rules.sensitivity_of(path, own if isinstance(own, str) and own.strip() else None)
        return levels is None or level in levels

    shown: dict[str, Any] = {}
    for key, path in (("meta", paths.meta), ("status", paths.status)):
        if key in context and visible(path, context[key]):
            shown[key] = context[key]
    lists = (
        ("last_journal_entries", paths.journal),
        ("decisions", paths.decisions),
        ("next_actions", paths.next_actions),
    )
    for key, path in lists:
        shown[key] = [item for item in context.get(key) or [] if visible(path, item)]
    return shown


# A server's follower: rounds at least this far apart (from the end of one to the start of the
# next) under a stream of writes. Each round costs the writers CPU (mostly the child's, on the
# cores they share: the index on a tmpfs, out of the store's syncfs, cost about as much) and
# some disk, so fewer, larger rounds cost them less, and the index lags more. Measured
# (docs/search.md): one sequential writer at 100,000 files, 0.1 s: -4% to
# -15% (median -8.2%), 0.2 s: -1.1% to -6.6% (median -4.0%); HTTP durable writes, 8 clients at
# 10,000 files, 0.1 s: +2.5% and +4.2%, 0.2 s: -13.0% and -6.7%; lag p99 157-186 ms at 0.1 s,
# 286-299 ms at 0.2 s. The targets: at most 5% slower, at most 300 ms behind. 0.1 s keeps the
# server's case (many writers at once) and the lag; the one-writer case is 8% slower.
SERVER_ROUND_GAP_S = 0.1


def attach_search(
    store: _Store,
    *,
    interval_s: float | None = 1.0,
    min_gap_s: float = 0.05,
    wait_s: float = 5.0,
    start: bool = True,
    follow_writes: bool = True,
    updater_process: bool = False,
) -> SearchService:
    """Give ``store`` its search index: HCM_SEARCH and HCM_MEMORY_QUERY answer from it, and
    closing the store closes it. A server follows the writes (each landed batch wakes the
    follower; ``interval_s`` looks for other processes' writes); a command line run does not
    (``follow_writes=False``, ``start=False``): it brings the index up to date when it searches.
    ``updater_process``: updates run in a child process (a server: see child.py)."""
    service = SearchService(
        store.repo,
        store.tip,
        interval_s=interval_s,
        min_gap_s=min_gap_s,
        wait_s=wait_s,
        updater_process=updater_process,
    )
    if follow_writes:
        store.add_landing_listener(service.on_landing)
    store.search = service
    if start:
        service.start()
    return service
