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
import itertools
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
from ..domain.layout import is_required
from ..durable import StoreLock
from ..errors import (
    Busy,
    ConflictingUpdate,
    HcmError,
    IdempotencyMismatch,
    InternalError,
    IoError,
    ReadOnly,
    from_os_error,
)
from ..gitrepo import GitRepo, Signature, blob_id, sync_filesystem
from ..operations.outcome import WriteOutcome
from ..operations.views import Draft, TreeView
from ..paths import PathResolver
from .guard import pending_marker
from .hand_edits import DROPPED_LINES, LateEdits, SavedEdits, merge_journal, problems_of
from .index_keeper import IndexKeeper
from .request_index import REWIND_ACCEPTED, RequestIndex, Rewound
from .worktree import ASIDE_MARK, TEMP_MARK, Aside, Staged, StatKey, WorkTree, stat_key

__all__ = ["CommitEngine", "WriteRequest", "WriteResult", "payload_digest"]

log = logging.getLogger("arka_git_hcm.engine")
MAX_CAS_ATTEMPTS = 8
# batches one leader commits in a row under one hold of the lock before letting others in
MAX_CHAINED_BATCHES = 16
PACKS_BEFORE_REPACK = 16  # packs (one per batch) this process writes between two folds
PACKS_BACKPRESSURE = 64  # packs written while a fold still runs: the writer waits for it
GIT_REPACK_ABOVE = 24  # packs in the folder (folds, other processes' packs) that make git repack
PACKS_AT_CLOSE = 32  # at close, more packs than this are folded (CLI runs write one each)
EXTERNAL_EDIT_OP = "HCM_EXTERNAL_EDIT"
RACY_NS = 500_000_000  # a stat taken this soon after the file's mtime does not vouch for it
STRAY_ASIDE_AGE_S = 5.0  # an aside older than this was left by a process that died before its check
STRAY_ASIDE_VERSIONS = 500  # commits searched for the version a stray aside may hold
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
    # the snapshot tag a replay of this request makes sure of (from the stored answer)
    replay_tag: Callable[[dict[str, Any] | None], str | None] | None = None
    # an adoption's view of the disk: path -> the bytes it read there (what the disk holds)
    disk_read: dict[str, bytes | None] = field(default_factory=dict)


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
    # the blob each changed path held on disk when planned (None: absent): what an aside must hold
    expected: dict[str, str | None] = field(default_factory=dict)
    # hand edits not adopted (not valid): saved already, so the write may replace them
    set_aside: set[str] = field(default_factory=set)
    # the disk's bytes of adopted paths (git holds a merged version, not these)
    expected_data: dict[str, bytes] = field(default_factory=dict)
    final_ids: dict[str, str | None] = field(default_factory=dict)  # the blob id of each ``final``


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
        self.requests = RequestIndex(repo, self.ref, state_dir)
        # path -> (stat key, when it was taken): what this process last wrote or checked
        self._stat_cache: dict[str, tuple[StatKey, int]] = {}
        # a reason the store refuses writes until an admin acts (the branch went backwards, the
        # history is damaged); a work tree left behind by a failed write is not one: the next
        # batch repairs it first (``repair_pending``)
        self.broken: str | None = None
        self.repair_pending: str | None = None
        self.saved_edits = SavedEdits(state_dir)
        self.late_edits = LateEdits(
            self.worktree, self.saved_edits, self.repo.blob_data_or_none, self._adopt_journal
        )
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
        The calling thread waits; it leads a batch itself when no other thread is leading.
        (A store that refuses writes, ``broken``, still takes them to the batch: it checks again
        there whether an admin fixed what broke it.)"""
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
        strays: list[Aside] = []
        with self.lock.held(self.settings.file.store.lock_timeout_s), self._repo_lock:
            tip = self.tip()
            tree = self.repo.commit_tree(tip) if tip else None
            found = []
            for path, state in sorted(self.repo.worktree_status(ignored=True).items()):
                if ASIDE_MARK in path:  # beside its file (.git on another filesystem)
                    aside = self.worktree.aside_at(path, older_than=STRAY_ASIDE_AGE_S)
                    if aside is not None:
                        strays.append(aside)
                    continue
                if TEMP_MARK in path:  # a temp file of a killed writer is never part of the HCM
                    self.worktree.remove_stray_temp(path, older_than=STRAY_ASIDE_AGE_S)
                    continue
                if state == "ignored":
                    continue
                if self._disk_blob_id(path) != self.repo.entry_id(tree, path):
                    found.append(path)
        for aside in strays:  # outside the lock: adopting a journal edit is a write
            self._check_stray(aside, tip)
        return found

    def check_stray_asides(self) -> int:
        """Files moved aside by store processes killed before their check (a live process
        checks its own within a second): each is removed if git knows its content (a version
        of some file), else adopted (a journal append) or saved, never lost."""
        tip = self.tip()
        strays = self.worktree.stray_asides(older_than=STRAY_ASIDE_AGE_S)
        for aside in strays:
            self._check_stray(aside, tip)
        return len(strays)

    def _check_stray(self, aside: Aside, tip: str | None) -> None:
        """A stray holds some version of its file, or an edit of one: compared with the versions
        of that path in recent history (its content being in git's object database proves
        nothing: the index refresh stores hand-edited files there too)."""
        versions: list[str | None] = []
        if tip is not None and aside.path:
            for info in itertools.islice(self.repo.walk(tip), STRAY_ASIDE_VERSIONS):
                blob = self.repo.entry_id(info.tree, aside.path)
                if blob not in versions:
                    versions.append(blob)
        if not aside.path:
            aside.path = "unknown-path"  # saved under this name: the content is what matters
        self.late_edits.check(aside, tuple(versions))

    def adoption_request(
        self,
        paths: list[str],
        by: tuple[str, str] | None = None,
        contents: dict[str, bytes | None] | None = None,
    ) -> WriteRequest:
        """A write committing the disk's content of ``paths`` (or ``contents``, read already) as
        HCM_EXTERNAL_EDIT, authored by ``by`` (type, id: whoever asked for it) or the store
        itself. Paths that already equal the branch (adopted meanwhile by another process) are
        left out; journals are merged (append-only, see merge_journal)."""

        def apply(draft: Draft) -> WriteOutcome:
            changed, invalid = [], []
            for path in sorted(paths):
                data = contents[path] if contents is not None else self._disk_bytes(path)
                request.disk_read[path] = data
                if problems_of(path, data) or (data is None and is_required(path)):
                    invalid.append(path)  # never into history: every later read of it would fail
                    continue
                current = draft.read(path)
                if data is not None and current is not None and path.endswith(".jsonl"):
                    edited = data
                    data, dropped = merge_journal(current, edited)  # append-only: lines are added
                    if dropped:
                        self.saved_edits.save(path, edited, DROPPED_LINES)
                if data != current:
                    changed.append(path)
                    if data is None:
                        draft.delete(path)
                    else:
                        draft.write(path, data)
            target = changed[0] if len(changed) == 1 else "."
            summary = f"adopted hand edits of {len(changed)} file(s)"
            data_out = {"paths": changed, "invalid": invalid}
            return WriteOutcome(data_out, target, summary, stored_result=data_out)

        request = WriteRequest(
            op=EXTERNAL_EDIT_OP,
            request_id=f"external-{uuid.uuid4().hex[:16]}",
            caller_type=by[0] if by else "system",
            caller_id=by[1] if by else "arka-hcm",
            payload_sha256="",
            apply=apply,
            replay=lambda stored, view: dict(stored or {}),
            adopts_hand_edits=True,
        )
        return request

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
                        if batch and self.durable and not self.repair_pending:
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
        meanwhile; every write of these batches is acknowledged already. When folding falls
        behind (a busy CPU: a long run once reached 673 packs and ran out of descriptors), the
        writer waits for it once PACKS_BACKPRESSURE packs are waiting: packs stay bounded."""
        written = self.repo.packs_written
        if written < PACKS_BEFORE_REPACK:
            return
        with self._cond:
            running = self._repacker
            if self._closing or (running is not None and running.is_alive()):
                if running is None or written < PACKS_BACKPRESSURE:
                    return
            else:
                self.repo.packs_written = 0
                self._repacker = threading.Thread(target=self._repack, name="arka-hcm-repack", daemon=True)
                self._repacker.start()
                return
        log.info("folding packs fell behind (%d waiting): the writer waits for it", written)
        running.join()

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
        if close_intent and not self.repair_pending:  # an unfinished work tree keeps its intent
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
                self.follow_history(tip)
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
        try:
            known = chain.seen_requests.get(request.request_id) or self.requests.lookup(request.request_id)
            if known is not None:
                request.result = self._replay(known, request)
                return
        except HcmError as exc:
            request.error = exc
            return
        adopted_once = False
        while True:
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
            if adopted_once:
                # edited again while this write was planned (an editor saving in a loop): the
                # write goes on; the files it replaces are moved aside, never overwritten, and
                # their edits are adopted or saved a moment later (LateEdits)
                break
            self._plan_external_edit(chain, edited)
            adopted_once = True
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
        chain.final_ids.update(blobs)
        for path in draft.changes:  # what the disk holds there until this chain lands
            if path in request.disk_read:  # read just now: the freshest knowledge of the disk
                data = request.disk_read[path]
                chain.expected[path] = None if data is None else blob_id(data)
                if data is not None:
                    chain.expected_data[path] = data
            elif request.adopts_hand_edits:  # (no hand-edit check ran for it: the tip's version)
                chain.expected.setdefault(path, self.repo.entry_id(chain.tip_tree, path))
        chain.parent, chain.tree = commit, tree
        chain.seen_requests[request.request_id] = commit

    # --- hand edits -----------------------------------------------------------------------
    def _hand_edited(self, chain: _Chain, paths: list[str]) -> list[str]:
        """Paths whose file on disk differs from the branch tip (the disk holds the tip until
        this batch lands), checked by stat first and by content hash when stat changed. The stat
        key has the ctime, as git's index does: an edit that keeps the size and puts the mtime
        back still changes it."""
        edited = []
        for path in paths:
            if path in chain.changed or path in chain.set_aside:
                continue  # already rewritten by this chain, or an invalid edit saved already
            expected = self.repo.entry_id(chain.tip_tree, path)
            chain.expected.setdefault(path, expected)
            info = self.worktree.stat(path)
            key = None if info is None else stat_key(info)
            if key is not None and expected is not None and self._trusted_stat(path) == key:
                continue  # unchanged since this process wrote or checked it: no hashing
            if self._disk_blob_id(path) != expected:
                edited.append(path)
            elif key is not None:
                self._remember_stat(path, key)
        return edited

    def _remember_stat(self, path: str, key: StatKey) -> None:
        self._stat_cache[path] = (key, time.time_ns())

    def _trusted_stat(self, path: str) -> StatKey | None:
        """The stat this process last saw for ``path``, if it may vouch for the content: like
        git's "racily clean" index entries, a file modified within RACY_NS of the moment its
        stat was taken may have been written again in the same clock tick (same size, same
        mtime): it is hashed instead."""
        cached = self._stat_cache.get(path)
        if cached is None:
            return None
        key, taken_at = cached
        return key if taken_at - key[2] > RACY_NS else None

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
        """Adopt the hand edits of ``paths`` as their own commit before the write that touches
        them; an edit that is not valid (does not parse, breaks its model, deletes a file the
        layout needs) is saved where an admin finds it and left out: the write replaces it."""
        valid, read = [], {}
        for path in paths:
            data = read[path] = self._disk_bytes(path)  # read once: what is adopted is what is expected
            problems = problems_of(path, data)
            if data is None and is_required(path):
                problems = ["a file the HCM needs was deleted"]
            if problems:
                if data is not None:
                    self.saved_edits.save(path, data, f"a hand edit that is not valid: {problems[0]}")
                else:
                    log.warning("the hand deletion of %s was not adopted: the HCM needs that file", path)
                chain.expected[path] = None if data is None else blob_id(data)
                chain.set_aside.add(path)
                continue
            valid.append(path)
        if not valid:
            return
        request = self.adoption_request(valid, contents={path: read[path] for path in valid})
        draft = Draft(self.repo, chain.tree, chain.parent)
        outcome = request.apply(draft)
        if not draft.changes:
            return  # edited back to what the branch holds meanwhile: nothing to adopt
        self._append(chain, request, draft, outcome)  # (expected: what the disk held, read once)
        log.warning("adopted hand edits: %s", ", ".join(sorted(valid)[:20]))

    # --- landing --------------------------------------------------------------------------
    def _land(self, chain: _Chain, unsettled: _Chain | None) -> bool:
        """Move the branch to the chain's last commit and bring the work tree along. The sync
        here also makes ``unsettled`` (the previous batch, landed) durable: it is acknowledged.

        Everything that can fail for lack of space or permission is done before the branch
        moves: the pack, the work tree's new files (written under temp names), the snapshot tags
        (their refs created). A failure there leaves no commit, no tag and no changed file, and
        the next write, once space is freed, goes through. After the move only renames remain."""
        assert chain.parent is not None
        if unsettled is not None and self._settled(unsettled):
            unsettled = None  # acknowledged by an earlier attempt of this batch (the branch moved)
        paths = sorted(chain.changed)
        recorded = sorted(chain.changed | unsettled.changed) if unsettled is not None else paths
        tags = [self._tag_object(planned) for planned in chain.planned if planned.outcome.snapshot_tag]
        self.repo.flush_objects()  # the batch's objects, as one pack, covered by the sync below
        staged: list[Staged] = []
        created: list[str] = []
        try:
            for path in paths:
                if path in chain.expected and chain.expected[path] == chain.final_ids[path]:
                    continue  # the disk holds the final bytes already (an adopted hand edit)
                item = self.worktree.stage(path, chain.final[path], chain.expected.get(path))
                item.expected_data = chain.expected_data.get(path)
                staged.append(item)
            for ref, tag in tags:
                if not self.repo.create_ref(ref, tag):
                    raise ConflictingUpdate(f"{ref} exists already; the snapshot was not taken", {"tag": ref})
                created.append(ref)
            self.worktree.write_intent(self.ref, chain.tip, chain.parent, recorded, created)
            if self.durable:
                sync_filesystem(self.repo.git_dir)
        except BaseException:
            self._undo_staging(staged, created)
            raise
        if unsettled is not None:
            self._acknowledge([planned.request for planned in unsettled.planned])
        who = Signature(self.committer.name, self.committer.email, int(self.clock.now().timestamp()))
        first = chain.planned[0].outcome
        try:
            moved = self.repo.compare_and_swap_ref(
                self.ref,
                chain.tip,
                chain.parent,
                who=who,
                message=f"{chain.planned[0].request.op} {first.target}",
                durable=False,
            )
        except BaseException:
            self._undo_staging(staged, created)
            raise
        if not moved:
            self._undo_staging(staged, created)
            self.worktree.clear_intent()
            return False
        self._install(staged)
        for planned in chain.planned:
            self.requests.record(planned.request.request_id, planned.commit)
        self.requests.landed(chain.parent)
        self.index.mark(paths)
        for listener in self.landing_listeners:
            try:
                listener(chain.parent, paths)
            except Exception:  # a follower's problem never fails a write that landed
                log.exception("a landing listener failed")
        return True

    def _tag_object(self, planned: _Planned) -> tuple[str, str]:
        """(ref, id) of the annotated tag ``snapshot/<name>`` on the planned commit (pending)."""
        name = planned.outcome.snapshot_tag
        assert name is not None
        who = Signature(self.committer.name, self.committer.email, int(self.clock.now().timestamp()))
        message = f"{planned.request.op} {planned.outcome.target}"
        tag = self.repo.write_tag(f"snapshot/{name}", planned.commit, who, message)
        return f"refs/tags/snapshot/{name}", tag

    def _undo_staging(self, staged: list[Staged], created: list[str]) -> None:
        """Nothing landed: drop the temp files and the tag refs this batch made."""
        for item in staged:
            self.worktree.discard(item)
        for ref in created:
            self.repo.delete_ref(ref)

    def _install(self, staged: list[Staged]) -> None:
        """The branch moved: put each staged file in place (the replaced file goes aside, to be
        checked for a late hand edit). A failure here leaves the intent for the next batch (or
        the next open) to finish, and the store says so until then."""
        waiting = list(staged)
        try:
            while waiting:
                item = waiting.pop(0)
                info, asides = self.worktree.install(item, self._trusted_stat(item.path))
                if info is None:
                    self._stat_cache.pop(item.path, None)
                else:
                    self._remember_stat(item.path, stat_key(info))
                self.late_edits.add(asides)
        except HcmError as exc:
            for rest in waiting:
                self.worktree.discard(rest)
            self.repair_pending = f"the work tree could not follow the branch ({exc.message})"
            log.error(
                "work tree update failed after the branch moved; the next write repairs it: %s", exc.message
            )

    def _adopt_journal(self, path: str, edited: bytes, base: bytes | None) -> None:
        """Commit the lines an editor added to a journal (relative to ``base``, the version it
        started from) while the store replaced it, on top of the branch's version (called by
        LateEdits, off the writer's thread)."""

        def apply(draft: Draft) -> WriteOutcome:
            current = draft.read(path) or b""
            merged, _dropped = merge_journal(current, edited, base)
            if merged != current:  # nothing new: no commit (the request settles "unchanged")
                draft.write(path, merged)
            data = {"paths": [path]}
            return WriteOutcome(data, path, "merged lines added by hand", stored_result=data)

        request = self.adoption_request([path])
        request.apply = apply
        self.submit(request)

    # --- idempotency ----------------------------------------------------------------------
    def follow_history(self, tip: str) -> None:
        """Bring the request index to ``tip``. A branch moved back by hand, or history that
        cannot be read, makes the store refuse writes (READ_ONLY, with the reason and the fix)
        until an admin acts; reads still answer."""
        try:
            self.requests.catch_up(tip)
            self.broken = None  # (again) nothing to refuse for: a rewind undone, say
        except Rewound as rewound:
            self.broken = rewound.message()
            log.error("%s", self.broken)
            raise ReadOnly(self.broken, {"old": rewound.old, "new": rewound.new}) from None
        except IoError as exc:
            self.broken = (
                f"the HCM's history cannot be read ({exc.message}); writes are refused: run "
                "`arka-hcm verify` and restore from a backup"
            )
            log.error("%s", self.broken)
            raise ReadOnly(self.broken) from None

    def check_history(self) -> None:
        """At open: follow the history once, so a damaged history or an unaccepted rewind is
        known (and reported by /ready) before the first write."""
        tip = self.tip()
        if tip is None:
            return
        with self._locked(), contextlib.suppress(ReadOnly):
            self.follow_history(tip)

    def accept_rewind(self, by: tuple[str, str]) -> dict[str, Any]:
        """Keep a branch that was moved back by hand where it is: its dropped commits' request
        ids are remembered (a retry is refused, never applied twice), the decision is written to
        the reflog, and writes are allowed again."""
        with self._locked():
            tip = self.tip()
            if tip is None:
                raise ConflictingUpdate("the HCM has no commit")
            rewound = self.requests.unaccepted_rewind(tip)
            if (
                rewound is None
                and self.requests.tip_seen
                and not self.repo.is_ancestor(self.requests.tip_seen, tip)
            ):
                rewound = Rewound(self.requests.tip_seen, tip)
            if rewound is None:
                raise ConflictingUpdate("the branch was not moved back: there is no rewind to accept")
            dropped = self.requests.accept_rewind(rewound)
            who = Signature(by[1], f"{by[1]}@{by[0]}.arka", int(self.clock.now().timestamp()))
            self.repo.append_reflog(self.ref, tip, tip, who, f"{REWIND_ACCEPTED} (from {rewound.old})")
            self.broken = None
            self.follow_history(tip)
        return {"old": rewound.old, "new": rewound.new, "dropped_requests": dropped}

    def _replay(self, commit: str, request: WriteRequest) -> WriteResult:
        info = self.repo.commit_info(commit)
        trailers = parse_trailers(info.message)
        if (
            trailers.get("Hcm-Payload-Sha256") != request.payload_sha256
            or trailers.get("Hcm-Op") != request.op
        ):
            raise_mismatch(request.request_id, commit)
        stored = parse_result(trailers)
        data = request.replay(stored, TreeView(self.repo, info.tree, commit))
        name = request.replay_tag(stored) if request.replay_tag else None
        if name and self.repo.read_ref(f"refs/tags/snapshot/{name}") is None:
            # the first attempt landed its commit but not its tag (a version that tagged after
            # the branch moved): the replay makes good what it did not finish
            who = Signature(self.committer.name, self.committer.email, int(self.clock.now().timestamp()))
            self.repo.create_tag(f"snapshot/{name}", commit, who, f"{request.op} (tag made good on replay)")
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
        """Make the work tree equal HEAD for the paths an interrupted write named: roll forward
        if its branch move landed, back if not (then its snapshot tags go too). A file found
        holding neither version is a hand edit: it goes aside and is adopted or saved, never
        overwritten. Clears ``repair_pending`` once done."""
        intent = self.worktree.read_intent()
        if intent is None:
            self.repair_pending = None
            return {"recovered": False}
        # Our lock is held, so a leftover ref lock is from the crashed writer of this intent.
        self.repo.remove_stale_lock(self.ref)
        tip = self.tip()
        tree = self.repo.commit_tree(tip) if tip else None
        rolled_forward = tip == intent.get("new")
        if not rolled_forward:
            for ref in intent.get("tags") or []:
                if isinstance(ref, str) and ref.startswith("refs/tags/snapshot/"):
                    self.repo.delete_ref(ref)  # it names a commit that never joined the history
        old = intent.get("old")
        old_tree = self.repo.commit_tree(old) if isinstance(old, str) else None
        paths = [p for p in intent.get("paths", []) if isinstance(p, str)]
        self.worktree.remove_temp_files(paths)
        # checked by the late-edits worker once the lock is free (a journal edit is adopted by a
        # write of its own); a version git knows (old or new) is simply removed
        self.late_edits.add(self.worktree.leftover_asides(paths))
        for path in paths:
            versions = (self.repo.entry_id(tree, path), self.repo.entry_id(old_tree, path))
            staged = self.worktree.stage(path, self.repo.read_blob(tree, path), versions[0])
            info, asides = self.worktree.install(staged, None)
            self._stat_cache.pop(path, None)
            if info is not None:
                self._remember_stat(path, stat_key(info))
            self.late_edits.add(asides)
        if self.durable:
            sync_filesystem(self.settings.hcm_path)
        self.worktree.clear_intent()
        self.repair_pending = None
        self.index.mark(paths)
        outcome = "rolled forward" if rolled_forward else "rolled back"
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
        self.late_edits.close()  # asides still waiting are checked now
        self.worktree.close()
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
