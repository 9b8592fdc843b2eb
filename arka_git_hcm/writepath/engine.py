"""The commit engine: one successful write operation = exactly one commit (contract section 5).

How a write lands, and which failure each step stops (each step has its module):

1. Writers queue in-process; one leader thread takes a batch of waiting writes (group commit,
   ``group_commit.py``) and the inter-process lock (flock), so threads and server workers and the
   CLI are serialized on one machine without ever losing each other's commits.
2. Each operation runs against the tree of the previous commit of the chain (the branch tip for
   the first), producing its own commit; an operation that fails leaves no commit (``chain.py``).
3. Paths an operation is about to overwrite are compared with the work tree first
   (``disk_check.py``): a hand edit is adopted as an ``HCM_EXTERNAL_EDIT`` commit of its own, or
   refused (config), never lost.
4. The intent (old tip, new tip, changed paths) is recorded, objects and intent are synced
   (``durability: full``), then the branch moves by compare-and-swap from the tip the chain was
   built on (``landing.py``). If someone else moved it (plain git, another tool) the batch is
   rebuilt on the new tip.
5. The work tree is brought to the new tip for the changed paths, synced, the intent is cleared,
   and only then is each write acknowledged.

A crash anywhere leaves objects that fsck accepts and an intent that :meth:`CommitEngine.recover`
uses to make the work tree equal HEAD again. Git's index (``index_keeper.py``) and the pack folder
(``pack_folding.py``) are kept up off the hot path.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..clock import Clock
from ..config import Settings
from ..durable import StoreLock
from ..errors import Busy, ConflictingUpdate, HcmError, InternalError, IoError, ReadOnly, from_os_error
from ..gitrepo import GitRepo, Signature
from ..history.index import HistoryIndex
from ..paths import PathResolver
from .chain import Chain, Planner
from .disk_check import STRAY_ASIDE_AGE_S, DiskCheck
from .group_commit import GroupCommit
from .guard import pending_marker
from .hand_edits import LateEdits, SavedEdits
from .index_keeper import IndexKeeper
from .landing import Landing
from .pack_folding import PackFolding
from .request_index import REWIND_ACCEPTED, RequestIndex, Rewound
from .requests import WriteRequest, WriteResult
from .worktree import WorkTree

__all__ = ["CommitEngine"]

log = logging.getLogger("arka_git_hcm.engine")
MAX_CAS_ATTEMPTS = 8
# batches one leader commits in a row under one hold of the lock before letting others in
MAX_CHAINED_BATCHES = 16


class CommitEngine:
    def __init__(
        self, settings: Settings, repo: GitRepo, clock: Clock, history: HistoryIndex | None = None
    ) -> None:
        self.settings = settings
        self.repo = repo
        store = settings.file.store
        self.ref = f"refs/heads/{store.branch}"
        self.durable = store.durability == "full"
        self.resolver = PathResolver(settings.hcm_path)
        state_dir = repo.state_dir
        self.worktree = WorkTree(self.resolver, state_dir)
        self.lock = StoreLock(state_dir / "write.lock")
        self._repo_lock = threading.RLock()  # pygit2 objects (index) are not shared across threads
        self.requests = RequestIndex(repo, self.ref, state_dir, history)
        # a reason the store refuses writes until an admin acts (the branch went backwards, the
        # history is damaged); a work tree left behind by a failed write is not one: the next
        # batch repairs it first (``repair_pending``)
        self.broken: str | None = None
        self.saved_edits = SavedEdits(state_dir)
        self.disk = DiskCheck(repo, self.resolver, self.worktree)
        committer = Signature(store.committer.name, store.committer.email, 0)
        self.planner = Planner(settings, repo, clock, committer, self.requests, self.disk, self.saved_edits)
        self.late_edits = LateEdits(
            self.worktree, self.saved_edits, repo.blob_data_or_none, self._adopt_journal
        )
        self.index = IndexKeeper(
            repo, self.tip, self._locked, pending_marker(repo.git_dir, id(self)), store.index_refresh_delay_s
        )
        self.landing = Landing(
            ref=self.ref,
            durable=self.durable,
            hcm_path=settings.hcm_path,
            repo=repo,
            worktree=self.worktree,
            planner=self.planner,
            disk=self.disk,
            late_edits=self.late_edits,
            requests=self.requests,
            index=self.index,
        )
        self.packs = PackFolding(repo)
        self.group = GroupCommit(self._run_batches, store.batch_max)

    # --- public ---------------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.planner.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.planner.clock = clock

    @property
    def repair_pending(self) -> str | None:
        """Why the work tree does not equal the branch yet (a failed write's leftovers), if so."""
        return self.landing.repair_pending

    @property
    def landing_listeners(self) -> list[Callable[[str, list[str]], None]]:
        """Called with (new tip, changed paths) after each batch lands: must be cheap."""
        return self.landing.listeners

    def tip(self) -> str | None:
        return self.repo.read_ref(self.ref)

    def submit(self, request: WriteRequest) -> WriteResult:
        """Run one write (batched with others waiting) and return its result or raise. A store
        that refuses writes (``broken``) still takes them to the batch: it checks again there
        whether an admin fixed what broke it."""
        return self.group.submit(request)

    async def submit_async(self, request: WriteRequest) -> WriteResult:
        """The same for an asyncio caller (the HTTP server): the engine's committer leads."""
        return await self.group.submit_async(request)

    def submit_adoption(self, request: WriteRequest) -> str | None:
        """Commit files as they are on disk (hand edits, an adopted HCM); returns the revision,
        or None when the disk turned out to equal the branch (nothing to adopt)."""
        request.adopts_hand_edits = True
        result = self.submit(request)
        return None if result.data.get("unchanged") else result.revision

    def adoption_request(
        self,
        paths: list[str],
        by: tuple[str, str] | None = None,
        contents: dict[str, bytes | None] | None = None,
    ) -> WriteRequest:
        return self.planner.adoption_request(paths, by, contents)

    def _adopt_journal(self, path: str, edited: bytes, base: bytes | None) -> None:
        """Commit the lines an editor added to a journal while the store replaced it (called by
        LateEdits, off the writer's thread)."""
        self.submit(self.planner.journal_adoption(path, edited, base))

    def find_hand_edits(self) -> list[str]:
        """Paths whose file on disk differs from HEAD (asides of killed processes are checked
        on the way, and adopted or saved)."""
        with self._locked():
            tip = self.tip()
            found, strays = self.disk.scan(self.repo.commit_tree(tip) if tip else None)
        for aside in strays:  # outside the lock: adopting a journal edit is a write
            self.late_edits.check(aside, self.disk.versions_of(aside, tip))
        return found

    def check_stray_asides(self) -> int:
        """Files moved aside by store processes killed before their check (a live process
        checks its own within a second): each is removed if it holds a version of its file,
        else adopted (a journal append) or saved, never lost."""
        tip = self.tip()
        strays = self.worktree.stray_asides(older_than=STRAY_ASIDE_AGE_S)
        for aside in strays:
            self.late_edits.check(aside, self.disk.versions_of(aside, tip))
        return len(strays)

    # --- batches --------------------------------------------------------------------------
    def _run_batches(self, taken: list[WriteRequest]) -> None:
        """Commit ``taken``, then whatever queued meanwhile, under one hold of the lock.

        Chained group commit: when more writes are waiting after a batch landed, that batch is
        not synced on its own. The next batch's intent names the paths of both, and the one
        sync before the next branch move makes the landed batch durable (it is acknowledged
        then) together with the new batch's objects. One sync per batch instead of two."""
        batch = list(taken)
        unsettled: Chain | None = None  # landed, not yet synced nor acknowledged
        try:
            with self._locked(), self._objects_dropped_on_failure():
                self.landing.recover()
                for _round in range(MAX_CHAINED_BATCHES):
                    landed = self._commit_batch(batch, unsettled)
                    if landed is not None:
                        # before any acknowledgement: a caller that saw its write answered also
                        # sees the fold that write started (PackFolding.wait_idle)
                        self.packs.after_batch()
                    self.group.wake([r for r in batch if r.done])  # replays and refusals answer now
                    if unsettled is not None and not unsettled.settled():
                        self.landing.settle(unsettled, self.group.acknowledge)  # nothing landed after it
                    unsettled = None
                    batch = self.group.take_more(taken) if _round + 1 < MAX_CHAINED_BATCHES else []
                    if landed is not None:
                        if batch and self.durable and not self.repair_pending:
                            unsettled = landed
                        else:
                            self.landing.settle(landed, self.group.acknowledge)
                    if not batch:
                        break
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

    def _fail(self, taken: list[WriteRequest], error: HcmError, unsettled: Chain | None) -> None:
        if unsettled is not None and not unsettled.settled():
            try:
                # the intent stays: it may also name the failed batch's paths, for recovery
                self.landing.settle(unsettled, self.group.acknowledge, close_intent=False)
            except OSError:
                log.exception("syncing a landed batch failed")
        for request in taken:
            if not request.done:
                request.error, request.result, request.done = error, None, True
        self.group.wake(taken)

    def _commit_batch(self, batch: list[WriteRequest], unsettled: Chain | None) -> Chain | None:
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
            chain = Chain.on(self.repo, tip)
            for request in pending:
                self.planner.plan(chain, request)
            if not chain.planned:
                _finish_unplanned(pending)
                return None
            if self.landing.land(chain, unsettled, self.group.acknowledge):
                landed = {id(planned.request) for planned in chain.planned}
                for planned in chain.planned:
                    planned.request.result = WriteResult(planned.outcome.data, planned.commit)
                _finish_unplanned([r for r in pending if id(r) not in landed])
                return chain
            # the branch moved under us (plain git, another tool): rebuild on the new tip
            time.sleep(0.002 * (_attempt + 1))
        busy = Busy("the HCM branch kept moving during the write; retry", retry_after=1)
        lock = f"{self.ref}.lock"
        if self.tip() == tip and (self.repo.git_dir / lock).exists():
            # the branch did not move: its lock file is held (a git command running on the HCM,
            # or one killed, which git never cleans up)
            busy = Busy(
                f".git/{lock} exists: a git command is changing the branch, or one was killed and "
                f"left it; if no git command runs on the HCM, remove .git/{lock}",
                retry_after=1,
            )
        for request in batch:
            if not request.done:
                request.error = busy
                request.done = True
        return None

    # --- the history the request index follows ----------------------------------------------
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

    # --- recovery, git's index and closing ----------------------------------------------------
    def recover(self) -> dict[str, Any]:
        """Finish or undo an interrupted write, drop what killed writers left in the pack
        folder, and move aside packs whose bytes never reached the disk (call at open; takes
        the lock)."""
        with self._locked():
            leftovers = self.repo.remove_pack_leftovers()
            if leftovers:
                log.warning("removed %d leftover pack file(s) of killed writers", len(leftovers))
            damaged = self.repo.move_damaged_packs()
            for pack in damaged:
                log.warning(
                    "moved the unreadable pack %s to .git/arka-hcm/damaged-packs (%s): its bytes never "
                    "reached the disk (a power cut, or the volume forced read-only, before its sync)",
                    pack["name"],
                    pack["reason"],
                )
            return self.landing.recover() | {"damaged_packs": damaged}

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
        self.group.close()  # queued writes are committed first
        self.packs.close()
        self.late_edits.close()  # asides still waiting are checked now
        self.worktree.close()
        self.index.close()
        self.repo.close()


def _finish_unplanned(pending: list[WriteRequest]) -> None:
    for request in pending:
        if request.error is not None or request.result is not None:
            request.done = True
