"""The commit engine: one successful write operation = exactly one commit (contract section 5).

How a write lands, and which failure each step stops:

1. Writers queue in-process; one leader thread takes a batch of waiting writes (group commit)
   and the inter-process lock (flock), so threads and server workers and the CLI are serialized
   on one machine without ever losing each other's commits.
2. Each operation runs against the tree of the previous commit of the chain (the branch tip for
   the first), producing its own commit; an operation that fails leaves no commit.
3. Paths an operation is about to overwrite are compared with the work tree first: a hand edit
   is adopted as an ``HCM_EXTERNAL_EDIT`` commit of its own, or refused (config), never lost.
4. The intent (old tip, new tip, changed paths) is recorded, objects and intent are synced
   (``durability: full``), then the branch moves by compare-and-swap from the tip the chain was
   built on. If someone else moved it (plain git, another tool) the batch is rebuilt on the new tip.
5. The work tree is brought to the new tip for the changed paths, synced, the intent is cleared,
   and only then is each write acknowledged.

A crash anywhere leaves objects that fsck accepts and an intent that :meth:`CommitEngine.recover`
uses to make the work tree equal HEAD again. Git's index is refreshed off the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock
from ..config import Settings
from ..domain.commit_message import OperationTrailers, build_message, parse_result, parse_trailers
from ..errors import (
    Busy,
    ConflictingUpdate,
    HcmError,
    IdempotencyMismatch,
    InternalError,
    ReadOnly,
    from_os_error,
)
from ..gitrepo import GitRepo, Signature, blob_id, sync_filesystem
from ..paths import PathResolver
from .hooks import pending_marker
from .index_keeper import IndexKeeper
from .views import Draft, TreeView
from .worktree import TEMP_MARK, StoreLock, WorkTree

__all__ = ["CommitEngine", "WriteOutcome", "WriteRequest", "WriteResult", "payload_digest"]

log = logging.getLogger("arka_git_hcm.engine")
MAX_CAS_ATTEMPTS = 8
# batches one leader commits in a row under one hold of the lock before letting others in
MAX_CHAINED_BATCHES = 16
PACKS_BEFORE_REPACK = 16  # packs (one per batch) this process writes between two folds
GIT_REPACK_ABOVE = 24  # packs in the folder (folds, other processes' packs) that make git repack
PACKS_AT_CLOSE = 32  # at close, more packs than this are folded (CLI runs write one each)
EXTERNAL_EDIT_OP = "HCM_EXTERNAL_EDIT"
NOT_A_FILE = "not-a-regular-file"


def payload_digest(op: str, caller: str, payload: Any) -> str:
    """The digest a replay compares. Its serialisation never changes (older commits carry it):
    compact, sorted keys, raw UTF-8, exactly as the first versions wrote it."""
    text = json.dumps(
        {"op": op, "caller": caller, "payload": payload},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class WriteOutcome:
    """What an operation returns after editing its draft."""

    data: dict[str, Any]
    target: str
    summary: str
    mission_id: str | None = None
    # What a replay answers. None: the operation's replay() rebuilds it from the commit's tree.
    stored_result: dict[str, Any] | None = None
    # An annotated tag ``snapshot/<name>`` to put on this operation's commit once it landed.
    snapshot_tag: str | None = None


@dataclass
class WriteRequest:
    op: str
    request_id: str
    caller_type: str
    caller_id: str
    payload_sha256: str
    apply: Callable[[Draft], WriteOutcome]
    replay: Callable[[dict[str, Any] | None, TreeView], dict[str, Any]]
    # True only for the store's own adoption of hand edits: those paths differ from HEAD on purpose
    adopts_hand_edits: bool = False
    # filled in by the engine
    result: WriteResult | None = None
    error: HcmError | None = None
    done: bool = False
    # set by submit_async: called (from the committing thread) once the request is done
    on_done: Callable[[], None] | None = field(default=None, repr=False)


@dataclass
class WriteResult:
    data: dict[str, Any]
    revision: str
    replayed: bool = False


@dataclass
class _Planned:
    request: WriteRequest
    commit: str
    outcome: WriteOutcome


@dataclass
class _Chain:
    tip: str | None
    tip_tree: str | None
    parent: str | None
    tree: str | None
    planned: list[_Planned] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    # the newest bytes of each changed path (None: deleted), so the work tree is written from
    # memory instead of being read back through the new trees
    final: dict[str, bytes | None] = field(default_factory=dict)
    seen_requests: dict[str, str] = field(default_factory=dict)


class CommitEngine:
    def __init__(self, settings: Settings, repo: GitRepo, clock: Clock) -> None:
        self.settings = settings
        self.repo = repo
        self.clock = clock
        store = settings.file.store
        self.ref = f"refs/heads/{store.branch}"
        self.durable = store.durability == "full"
        self.resolver = PathResolver(settings.hcm_path)
        state_dir = repo.state_dir
        self.worktree = WorkTree(self.resolver, state_dir)
        self.lock = StoreLock(state_dir / "write.lock")
        self.committer = Signature(store.committer.name, store.committer.email, 0)
        self._cond = threading.Condition()
        self._queue: list[WriteRequest] = []
        self._leader = False
        self._committer: threading.Thread | None = None  # leads batches of submit_async
        self._repacker: threading.Thread | None = None  # folds small packs (_maintain_packs)
        self._closing = False
        self._repo_lock = threading.RLock()  # pygit2 objects (index) are not shared across threads
        self._requests: dict[str, str] = {}
        self._indexed_tip: str | None = None
        self._stat_cache: dict[str, tuple[int, int, int]] = {}
        self.broken: str | None = None  # a reason once the store must refuse writes
        # called with (new tip, changed paths) after each batch lands: must be cheap (wake a worker)
        self.landing_listeners: list[Callable[[str, list[str]], None]] = []
        self.index = IndexKeeper(
            repo, self.tip, self._locked, pending_marker(repo.git_dir, id(self)), store.index_refresh_delay_s
        )

    # --- public ---------------------------------------------------------------------------
    def tip(self) -> str | None:
        return self.repo.read_ref(self.ref)

    def submit(self, request: WriteRequest) -> WriteResult:
        """Run one write (possibly batched with others waiting) and return its result or raise.
        The calling thread waits; it leads a batch itself when no other thread is leading."""
        if self.broken:
            raise ReadOnly(self.broken)
        with self._cond:
            self._queue.append(request)
            while not request.done:
                if self._leader:
                    self._cond.wait()
                    continue
                self._lead()
        return _outcome(request)

    async def submit_async(self, request: WriteRequest) -> WriteResult:
        """The same as :meth:`submit` for an asyncio caller (the HTTP server): the request joins
        the queue and a committer thread of the engine leads the batches, so the event loop
        neither blocks nor hands each write to a thread of its own."""
        if self.broken:
            raise ReadOnly(self.broken)
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def settle() -> None:
            if not finished.done():
                finished.set_result(None)

        def wake() -> None:  # runs in the committing thread
            loop.call_soon_threadsafe(settle)

        request.on_done = wake
        with self._cond:
            if self._closing:
                raise ReadOnly("the store is closing; retry")
            if self._committer is None:
                self._committer = threading.Thread(
                    target=self._commit_loop, name="arka-hcm-committer", daemon=True
                )
                self._committer.start()
            self._queue.append(request)
            self._cond.notify_all()
        await finished
        return _outcome(request)

    def _lead(self) -> None:
        """Take a batch off the queue and commit it (``self._cond`` held on entry and exit).
        While more writes are waiting, the leader goes on with them under the same lock."""
        self._leader = True
        taken = self._queue[: self.settings.file.store.batch_max]
        del self._queue[: len(taken)]
        self._cond.release()
        try:
            self._run_batches(taken)
        finally:
            self._cond.acquire()
            self._leader = False
            # a request no batch could settle (never expected) waits for the next leader
            self._queue[:0] = [r for r in taken if not r.done]
            self._cond.notify_all()

    def _take_more(self, taken: list[WriteRequest]) -> list[WriteRequest]:
        with self._cond:
            more = self._queue[: self.settings.file.store.batch_max]
            del self._queue[: len(more)]
        taken.extend(more)
        return more

    def _acknowledge(self, requests: list[WriteRequest]) -> None:
        """Requests whose answer is final (and durable): mark them done, wake their waiters."""
        with self._cond:
            for request in requests:
                request.done = True
        self._wake(requests)

    def _wake(self, requests: list[WriteRequest]) -> None:
        """Wake the waiters of ``requests`` that are done: threads in submit, and the
        callbacks of submit_async (each called once)."""
        if not requests:
            return
        with self._cond:
            self._cond.notify_all()
        for request in requests:
            if request.done and request.on_done is not None:
                callback, request.on_done = request.on_done, None
                callback()

    def _commit_loop(self) -> None:
        with self._cond:
            while True:
                if self._queue and not self._leader:
                    self._lead()  # queued writes are committed even once closing has begun
                elif self._closing:
                    return
                else:
                    self._cond.wait()

    def submit_adoption(self, request: WriteRequest) -> str | None:
        """Commit files as they are on disk (hand edits, an adopted HCM); returns the revision,
        or None when the disk turned out to equal the branch (nothing to adopt)."""
        request.adopts_hand_edits = True
        result = self.submit(request)
        return None if result.data.get("unchanged") else result.revision

    def find_hand_edits(self) -> list[str]:
        """Paths whose file on disk differs from HEAD. git's status (stat-based, so cheap) gives
        candidates; each is confirmed against HEAD's blob, because the index may lag behind
        commits of other processes (it is refreshed off the hot path) and would report them."""
        with self.lock.held(self.settings.file.store.lock_timeout_s), self._repo_lock:
            tip = self.tip()
            tree = self.repo.commit_tree(tip) if tip else None
            return [
                path
                for path in sorted(self.repo.worktree_status())
                # a temp file of a killed writer is never part of the HCM
                if TEMP_MARK not in path and self._disk_blob_id(path) != self.repo.entry_id(tree, path)
            ]

    def adoption_request(self, paths: list[str], by: tuple[str, str] | None = None) -> WriteRequest:
        """A write committing the disk's content of ``paths`` as HCM_EXTERNAL_EDIT, authored by
        ``by`` (type, id: whoever asked for it) or the store itself. Paths that already equal the
        branch (adopted meanwhile by another process) are left out."""

        def apply(draft: Draft) -> WriteOutcome:
            changed = []
            for path in sorted(paths):
                data = self._disk_bytes(path)
                if data != draft.read(path):
                    changed.append(path)
                    if data is None:
                        draft.delete(path)
                    else:
                        draft.write(path, data)
            target = changed[0] if len(changed) == 1 else "."
            summary = f"adopted hand edits of {len(changed)} file(s)"
            return WriteOutcome({"paths": changed}, target, summary, stored_result={"paths": changed})

        return WriteRequest(
            op=EXTERNAL_EDIT_OP,
            request_id=f"external-{uuid.uuid4().hex[:16]}",
            caller_type=by[0] if by else "system",
            caller_id=by[1] if by else "arka-hcm",
            payload_sha256="",
            apply=apply,
            replay=lambda stored, view: dict(stored or {}),
            adopts_hand_edits=True,
        )

    # --- batches --------------------------------------------------------------------------
    def _run_batches(self, taken: list[WriteRequest]) -> None:
        """Commit ``taken``, then whatever queued meanwhile, under one hold of the lock.

        Chained group commit: when more writes are waiting after a batch landed, that batch is
        not synced on its own. The next batch's intent names the paths of both, and the one
        sync before the next branch move makes the landed batch durable (it is acknowledged
        then) together with the new batch's objects. One sync per batch instead of two."""
        batch = list(taken)
        unsettled: _Chain | None = None  # landed, not yet synced nor acknowledged
        try:
            with (
                self.lock.held(self.settings.file.store.lock_timeout_s),
                self._repo_lock,
                self._objects_dropped_on_failure(),
            ):
                self._recover_locked()
                for _round in range(MAX_CHAINED_BATCHES):
                    landed = self._commit_batch(batch, unsettled)
                    self._wake([r for r in batch if r.done])  # replays and refusals answer now
                    if unsettled is not None and not self._settled(unsettled):
                        self._settle(unsettled)  # nothing landed after it: sync it on its own
                    unsettled = None
                    batch = self._take_more(taken) if _round + 1 < MAX_CHAINED_BATCHES else []
                    if landed is not None:
                        if batch and self.durable and not self.broken:
                            unsettled = landed
                        else:
                            self._settle(landed)
                    if not batch:
                        break
                self._maintain_packs()
        except HcmError as exc:
            self._fail(taken, exc, unsettled)
        except OSError as exc:
            self._fail(taken, from_os_error(exc, "committing"), unsettled)
        except Exception:
            log.exception("unexpected failure while committing a batch")
            error = InternalError("the write failed unexpectedly; nothing was committed")
            self._fail(taken, error, unsettled)

    @contextlib.contextmanager
    def _objects_dropped_on_failure(self) -> Iterator[None]:
        """A batch that fails leaves its objects pending (a full disk refused their pack, say):
        drop them, or they would be retried with every later batch. Landed batches flushed
        theirs before their branch move, and only this thread adds objects while it leads."""
        try:
            yield
        except BaseException:
            self.repo.discard_pending()
            raise

    def _maintain_packs(self) -> None:
        """Every PACKS_BEFORE_REPACK packs this process wrote (one per batch), fold them into
        one in the background, from the objects still in memory (GitRepo.fold_own_packs); and
        when more than GIT_REPACK_ABOVE packs pile up (these folds, other processes' packs),
        have git fold them (`git repack --geometric`, see GitRepo.repack). Writers go on
        meanwhile; every write of these batches is acknowledged already."""
        if self.repo.packs_written < PACKS_BEFORE_REPACK:
            return
        self.repo.packs_written = 0
        with self._cond:
            if self._closing or (self._repacker is not None and self._repacker.is_alive()):
                return
            self._repacker = threading.Thread(target=self._repack, name="arka-hcm-repack", daemon=True)
            self._repacker.start()

    def _repack(self) -> None:
        started = time.perf_counter()
        try:
            self.repo.fold_own_packs()
            if self.repo.pack_count() > GIT_REPACK_ABOVE:
                self.repo.repack()
        except FileNotFoundError:
            log.warning("the git binary is missing: small packs are not folded; install git")
        except Exception:  # derived layout only: the next attempt, or `arka-hcm gc`, folds them
            log.warning("folding small packs failed; it will be retried", exc_info=True)
        else:
            log.debug("folded small packs in %.0f ms", (time.perf_counter() - started) * 1000)

    def _fail(self, taken: list[WriteRequest], error: HcmError, unsettled: _Chain | None) -> None:
        if unsettled is not None and not self._settled(unsettled):
            try:
                # the intent stays: it may also name the failed batch's paths, for recovery
                self._settle(unsettled, close_intent=False)
            except OSError:
                log.exception("syncing a landed batch failed")
        for request in taken:
            if not request.done:
                request.error, request.result, request.done = error, None, True
        self._wake(taken)

    @staticmethod
    def _settled(chain: _Chain) -> bool:
        return all(planned.request.done for planned in chain.planned)

    def _settle(self, chain: _Chain, *, close_intent: bool = True) -> None:
        """Make a landed batch durable, close its intent and acknowledge its writes."""
        if self.durable:
            sync_filesystem(self.settings.hcm_path)
        if close_intent and not self.broken:  # a broken work tree keeps its intent for repair
            self.worktree.clear_intent()
        self._acknowledge([planned.request for planned in chain.planned])

    def _commit_batch(self, batch: list[WriteRequest], unsettled: _Chain | None) -> _Chain | None:
        """Plan and land ``batch``; returns the landed chain (its writes answered but not yet
        acknowledged), or None when nothing landed (replays and errors are settled here)."""
        for _attempt in range(MAX_CAS_ATTEMPTS):
            pending = [r for r in batch if not r.done]
            if not pending:
                return None
            tip = self.tip()
            self.repo.notice_rollups()
            if tip is not None:
                self._catch_up(tip)
            tip_tree = self.repo.commit_tree(tip) if tip else None
            chain = _Chain(tip=tip, tip_tree=tip_tree, parent=tip, tree=tip_tree)
            for request in pending:
                self._plan(chain, request)
            if not chain.planned:
                self._finish_unplanned(pending)
                return None
            if self._land(chain, unsettled):
                landed = {id(planned.request) for planned in chain.planned}
                for planned in chain.planned:
                    planned.request.result = WriteResult(planned.outcome.data, planned.commit)
                self._finish_unplanned([r for r in pending if id(r) not in landed])
                return chain
            # the branch moved under us (plain git, another tool): rebuild on the new tip
            time.sleep(0.002 * (_attempt + 1))
        for request in batch:
            if not request.done:
                request.error = Busy("the HCM branch kept moving during the write; retry", retry_after=1)
                request.done = True
        return None

    def _finish_unplanned(self, pending: list[WriteRequest]) -> None:
        for request in pending:
            if request.error is not None or request.result is not None:
                request.done = True

    def _plan(self, chain: _Chain, request: WriteRequest) -> None:
        """Add ``request``'s commit to the chain, or settle it as a replay or an error."""
        request.error = None
        request.result = None
        known = self._requests.get(request.request_id) or chain.seen_requests.get(request.request_id)
        if known is not None:
            try:
                request.result = self._replay(known, request)
            except HcmError as exc:
                request.error = exc
            return
        for _ in range(2):
            draft = Draft(self.repo, chain.tree, chain.parent)
            try:
                outcome = request.apply(draft)
            except HcmError as exc:
                request.error = exc
                return
            if request.adopts_hand_edits and not draft.changes:
                request.result = WriteResult({"unchanged": True}, chain.parent or "")
                return
            edited = [] if request.adopts_hand_edits else self._hand_edited(chain, list(draft.changes))
            if not edited:
                break
            if self.settings.file.store.external_edits == "refuse":
                request.error = ConflictingUpdate(
                    "files were edited by hand and not committed: "
                    + ", ".join(sorted(edited)[:10])
                    + "; run `arka-hcm adopt` to commit them or `git checkout -- <path>` to drop them",
                    {"paths": sorted(edited)},
                )
                return
            self._plan_external_edit(chain, edited)
        else:  # pragma: no cover - the second pass sees the adopted content
            request.error = ConflictingUpdate("the files kept changing on disk during the write")
            return
        self._append(chain, request, draft, outcome)

    def _append(self, chain: _Chain, request: WriteRequest, draft: Draft, outcome: WriteOutcome) -> None:
        blobs = {p: (None if d is None else self.repo.write_blob(d)) for p, d in draft.changes.items()}
        tree = self.repo.build_tree(chain.tree, blobs)
        trailers = OperationTrailers(
            op=request.op,
            request_id=request.request_id,
            caller=f"{request.caller_type}/{request.caller_id}",
            mission=outcome.mission_id,
            payload_sha256=request.payload_sha256,
            result=outcome.stored_result,
        )
        now = int(self.clock.now().timestamp())
        author = Signature(request.caller_id, f"{request.caller_id}@{request.caller_type}.arka", now)
        committer = Signature(self.committer.name, self.committer.email, now)
        message = build_message(outcome.target, outcome.summary, trailers)
        parents = [chain.parent] if chain.parent else []
        commit = self.repo.write_commit(tree, parents, author, committer, message)
        chain.planned.append(_Planned(request, commit, outcome))
        chain.changed.update(draft.changes)
        chain.final.update(draft.changes)
        chain.parent, chain.tree = commit, tree
        chain.seen_requests[request.request_id] = commit

    # --- hand edits -----------------------------------------------------------------------
    def _hand_edited(self, chain: _Chain, paths: list[str]) -> list[str]:
        """Paths whose file on disk differs from the branch tip (the disk holds the tip until
        this batch lands), checked by stat first and by content hash when stat changed."""
        edited = []
        for path in paths:
            if path in chain.changed:
                continue  # already rewritten by this chain: the disk holds the tip's version
            expected = self.repo.entry_id(chain.tip_tree, path)
            info = self.worktree.stat(path)
            key = None if info is None else (info.st_ino, info.st_size, info.st_mtime_ns)
            if key is not None and expected is not None and self._stat_cache.get(path) == key:
                continue  # unchanged since this process wrote or checked it: no hashing
            if self._disk_blob_id(path) != expected:
                edited.append(path)
            elif key is not None:
                self._stat_cache[path] = key
        return edited

    def _disk_blob_id(self, path: str) -> str | None:
        """The blob id of the work-tree file at ``path``; None when absent; NOT_A_FILE for a
        folder, a symlink or a path the resolver refuses (never followed, never hashed)."""
        try:
            data = self.resolver.read_bytes(path)
        except HcmError:
            return NOT_A_FILE
        return None if data is None else blob_id(data)

    def _disk_bytes(self, path: str) -> bytes | None:
        """The work-tree file's bytes, read without following a link (None: no file there)."""
        return self.resolver.read_bytes(path)

    def _plan_external_edit(self, chain: _Chain, paths: list[str]) -> None:
        request = self.adoption_request(paths)
        draft = Draft(self.repo, chain.tree, chain.parent)
        outcome = request.apply(draft)
        self._append(chain, request, draft, outcome)
        log.warning("adopted hand edits: %s", ", ".join(sorted(paths)[:20]))

    # --- landing --------------------------------------------------------------------------
    def _land(self, chain: _Chain, unsettled: _Chain | None) -> bool:
        """Move the branch to the chain's last commit and bring the work tree along. The sync
        here also makes ``unsettled`` (the previous batch, landed) durable: it is acknowledged."""
        assert chain.parent is not None
        if unsettled is not None and self._settled(unsettled):
            unsettled = None  # acknowledged by an earlier attempt of this batch (the branch moved)
        paths = sorted(chain.changed)
        recorded = sorted(chain.changed | unsettled.changed) if unsettled is not None else paths
        self.repo.flush_objects()  # the batch's objects, as one pack, covered by the sync below
        self.worktree.write_intent(self.ref, chain.tip, chain.parent, recorded)
        if self.durable:
            sync_filesystem(self.repo.git_dir)
        if unsettled is not None:
            self._acknowledge([planned.request for planned in unsettled.planned])
        who = Signature(self.committer.name, self.committer.email, int(self.clock.now().timestamp()))
        first = chain.planned[0].outcome
        moved = self.repo.compare_and_swap_ref(
            self.ref,
            chain.tip,
            chain.parent,
            who=who,
            message=f"{chain.planned[0].request.op} {first.target}",
            durable=False,
        )
        if not moved:
            self.worktree.clear_intent()
            return False
        try:
            self._checkout_paths(chain.tree, paths, chain.final)
        except HcmError as exc:
            # The commit landed; the intent stays so the next open repairs the work tree.
            self.broken = f"the work tree could not follow the branch ({exc.message}); restart the service"
            log.error("work tree update failed after the branch moved: %s", exc.message)
            return True
        for planned in chain.planned:
            self._requests[planned.request.request_id] = planned.commit
            if planned.outcome.snapshot_tag:
                self._tag_snapshot(planned)
        self._indexed_tip = chain.parent
        self.index.mark(paths)
        for listener in self.landing_listeners:
            try:
                listener(chain.parent, paths)
            except Exception:  # a follower's problem never fails a write that landed
                log.exception("a landing listener failed")
        return True

    def _tag_snapshot(self, planned: _Planned) -> None:
        """The tag is a convenience name for a commit already in history: failing to write it
        (a crash right here, a name taken) loses nothing and must not fail the operation."""
        name = planned.outcome.snapshot_tag
        assert name is not None
        who = Signature(self.committer.name, self.committer.email, int(self.clock.now().timestamp()))
        try:
            self.repo.create_tag(
                f"snapshot/{name}", planned.commit, who, f"{planned.request.op} {planned.outcome.target}"
            )
        except HcmError as exc:
            log.warning("snapshot tag %s not written: %s", name, exc.message)

    def _checkout_paths(
        self, tree: str | None, paths: list[str], known: dict[str, bytes | None] | None = None
    ) -> None:
        for path in paths:
            data = known[path] if known is not None and path in known else self.repo.read_blob(tree, path)
            if data is None:
                self.worktree.delete_file(path)
                self._stat_cache.pop(path, None)
            else:
                info = self.worktree.write_file(path, data)
                self._stat_cache[path] = (info.st_ino, info.st_size, info.st_mtime_ns)

    # --- idempotency ----------------------------------------------------------------------
    def _catch_up(self, tip: str) -> None:
        if tip == self._indexed_tip:
            return
        found_stop = False
        fresh: dict[str, str] = {}
        for info in self.repo.walk(tip):
            if info.id == self._indexed_tip:
                found_stop = True
                break
            rid = parse_trailers(info.message).get("Hcm-Request-Id")
            if rid:
                fresh[rid] = info.id  # walking newest-first: the oldest commit of an id wins
        if found_stop:
            for rid, commit in fresh.items():
                self._requests.setdefault(rid, commit)
        else:
            self._requests = fresh  # first look, or history rewritten below us: start over
        self._indexed_tip = tip

    def _replay(self, commit: str, request: WriteRequest) -> WriteResult:
        info = self.repo.commit_info(commit)
        trailers = parse_trailers(info.message)
        if (
            trailers.get("Hcm-Payload-Sha256") != request.payload_sha256
            or trailers.get("Hcm-Op") != request.op
        ):
            raise_mismatch(request.request_id, commit)
        data = request.replay(parse_result(trailers), TreeView(self.repo, info.tree, commit))
        return WriteResult(data, commit, replayed=True)

    # --- recovery and git's index ---------------------------------------------------------
    def recover(self) -> dict[str, Any]:
        """Finish or undo an interrupted write, and drop what killed writers left in the pack
        folder (call at open; takes the lock)."""
        with self.lock.held(self.settings.file.store.lock_timeout_s), self._repo_lock:
            leftovers = self.repo.remove_pack_leftovers()
            if leftovers:
                log.warning("removed %d leftover pack file(s) of killed writers", len(leftovers))
            return self._recover_locked()

    def _recover_locked(self) -> dict[str, Any]:
        intent = self.worktree.read_intent()
        if intent is None:
            return {"recovered": False}
        # Our lock is held, so a leftover ref lock is from the crashed writer of this intent.
        self.repo.remove_stale_lock(self.ref)
        tip = self.tip()
        tree = self.repo.commit_tree(tip) if tip else None
        paths = [p for p in intent.get("paths", []) if isinstance(p, str)]
        self.worktree.remove_temp_files(paths)
        self._checkout_paths(tree, paths)
        if self.durable:
            sync_filesystem(self.settings.hcm_path)
        self.worktree.clear_intent()
        self.index.mark(paths)
        outcome = "rolled forward" if tip == intent.get("new") else "rolled back"
        log.warning("recovered an interrupted write (%s, %d path(s))", outcome, len(paths))
        return {"recovered": True, "outcome": outcome, "paths": paths}

    # --- git's index and closing -----------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self.lock.held(self.settings.file.store.lock_timeout_s), self._repo_lock:
            yield

    def refresh_index(self) -> None:
        """Bring git's index to HEAD now for the paths this process changed."""
        self.index.refresh()

    def repair_index(self) -> list[str]:
        """At open: refresh index entries that disagree with HEAD. Returns their paths."""
        return self.index.repair()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._committer is not None:
            self._committer.join(timeout=30)
        if self._repacker is not None:
            self._repacker.join(timeout=600)
        with contextlib.suppress(OSError):
            if self.repo.pack_count() > PACKS_AT_CLOSE:
                self._repack()
        self.index.close()
        self.repo.close()


def _outcome(request: WriteRequest) -> WriteResult:
    if request.error is not None:
        raise request.error
    assert request.result is not None
    return request.result


def raise_mismatch(request_id: str, commit: str) -> None:
    raise IdempotencyMismatch(
        f"request_id {request_id!r} was already used for a different operation or payload "
        f"(commit {commit[:12]}); use a new request_id for a new write",
        {"request_id": request_id, "revision": commit},
    )
