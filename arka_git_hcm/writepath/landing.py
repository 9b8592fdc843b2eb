"""Landing a planned chain: the branch moves, the work tree follows, and a crash anywhere in
between is finished or undone at the next write or open.

Everything that can fail for lack of space or permission is done before the branch moves: the
pack, the work tree's new files (written under temp names), the snapshot tags (their refs
created). A failure there leaves no commit, no tag and no changed file. The intent (old tip, new
tip, paths, tags) is written and synced before the move, so :meth:`Landing.recover` knows which
way to go. After the move only renames remain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConflictingUpdate, HcmError, from_os_error
from ..gitrepo import GitRepo, sync_filesystem
from .chain import Chain, Planned, Planner
from .disk_check import DiskCheck
from .hand_edits import LateEdits
from .index_keeper import IndexKeeper
from .request_index import RequestIndex
from .requests import WriteRequest
from .worktree import Aside, Staged, WorkTree, stat_key

__all__ = ["Landing"]

log = logging.getLogger("arka_git_hcm.engine")

Acknowledge = Callable[[list[WriteRequest]], None]


class Landing:
    def __init__(
        self,
        *,
        ref: str,
        durable: bool,
        hcm_path: Path,
        repo: GitRepo,
        worktree: WorkTree,
        planner: Planner,
        disk: DiskCheck,
        late_edits: LateEdits,
        requests: RequestIndex,
        index: IndexKeeper,
    ) -> None:
        self.ref = ref
        self.durable = durable
        self.hcm_path = hcm_path
        self.repo = repo
        self.worktree = worktree
        self.planner = planner
        self.disk = disk
        self.late_edits = late_edits
        self.requests = requests
        self.index = index
        # called with (new tip, changed paths) after each batch lands: must be cheap (wake a worker)
        self.listeners: list[Callable[[str, list[str]], None]] = []
        # a work tree a failed write left behind: the next batch (or /ready) repairs it first
        self.repair_pending: str | None = None

    def land(self, chain: Chain, unsettled: Chain | None, acknowledge: Acknowledge) -> bool:
        """Move the branch to the chain's last commit and bring the work tree along. The sync
        here also makes ``unsettled`` (the previous batch, landed) durable: it is acknowledged.
        Returns False when the branch moved under the chain (nothing changed then)."""
        assert chain.parent is not None
        if unsettled is not None and unsettled.settled():
            unsettled = None  # acknowledged by an earlier attempt of this batch (the branch moved)
        paths = sorted(chain.changed)
        recorded = sorted(chain.changed | unsettled.changed) if unsettled is not None else paths
        tags = [self._tag_object(planned) for planned in chain.planned if planned.outcome.snapshot_tag]
        self.repo.flush_objects()  # the batch's objects, as one pack, covered by the sync below
        staged: list[Staged] = []
        created: list[str] = []
        prepared = None
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
            # the branch's lock, holding the new tip, is written before the sync too: renamed
            # over the branch after it, the branch is the old tip or the new one after a crash,
            # never a file whose bytes never reached the disk (and no fsync of its own)
            prepared = self.repo.prepare_ref_update(self.ref, chain.parent)
            if self.durable:
                sync_filesystem(self.repo.git_dir)
        except BaseException:
            if prepared is not None:
                self.repo.abort_ref_update(prepared)
            self._undo_staging(staged, created)
            raise
        if unsettled is not None:
            acknowledge(unsettled.requests())
        if prepared is None:  # the branch's lock is held: a git command, or another writer
            self._undo_staging(staged, created)
            self.worktree.clear_intent()
            return False
        first = chain.planned[0]
        try:
            moved = self.repo.finish_ref_update(
                prepared,
                chain.tip,
                who=self.planner.signature(),
                message=f"{first.request.op} {first.outcome.target}",
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
        for listener in self.listeners:
            try:
                listener(chain.parent, paths)
            except Exception:  # a follower's problem never fails a write that landed
                log.exception("a landing listener failed")
        return True

    def settle(self, chain: Chain, acknowledge: Acknowledge, *, close_intent: bool = True) -> None:
        """Make a landed chain durable, close its intent and acknowledge its writes."""
        if self.durable:
            sync_filesystem(self.hcm_path)
        if close_intent and not self.repair_pending:  # an unfinished work tree keeps its intent
            self.worktree.clear_intent()
        acknowledge(chain.requests())

    def _tag_object(self, planned: Planned) -> tuple[str, str]:
        """(ref, id) of the annotated tag ``snapshot/<name>`` on the planned commit (pending)."""
        name = planned.outcome.snapshot_tag
        assert name is not None
        message = f"{planned.request.op} {planned.outcome.target}"
        tag = self.repo.write_tag(f"snapshot/{name}", planned.commit, self.planner.signature(), message)
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
                asides: list[Aside] = []
                try:
                    info = self.worktree.install(item, self.disk.trusted_stat(item.path), asides)
                finally:  # a file moved aside is checked even when the install failed after it
                    self.late_edits.add(asides)
                if info is None:
                    self.disk.forget(item.path)
                else:
                    self.disk.remember(item.path, stat_key(info))
        except HcmError as exc:
            for rest in waiting:
                self.worktree.discard(rest)
            self.repair_pending = f"the work tree could not follow the branch ({exc.message})"
            log.error(
                "work tree update failed after the branch moved; the next write repairs it: %s", exc.message
            )

    def recover(self) -> dict[str, Any]:
        """Make the work tree equal HEAD for the paths an interrupted write named (call under the
        store's lock): roll forward if its branch move landed, back if not (then its snapshot
        tags go too). A file found holding neither version is a hand edit: it goes aside and is
        adopted or saved, never overwritten. Clears ``repair_pending`` once done."""
        intent = self.worktree.read_intent()
        if intent is None:
            self.repair_pending = None
            return {"recovered": False}
        # The lock is held, so a leftover ref lock is from the crashed writer of this intent.
        self.repo.remove_stale_lock(self.ref)
        tip = self.repo.read_ref(self.ref)
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
            asides: list[Aside] = []
            try:
                info = self.worktree.install(staged, None, asides)
            finally:
                self.late_edits.add(asides)
            self.disk.forget(path)
            if info is not None:
                self.disk.remember(path, stat_key(info))
        if self.durable:
            try:
                sync_filesystem(self.hcm_path)
            except OSError as exc:  # the intent stays: the next open or batch repairs again
                raise from_os_error(exc, "syncing the repaired work tree") from None
        self.worktree.clear_intent()
        self.repair_pending = None
        self.index.mark(paths)
        outcome = "rolled forward" if rolled_forward else "rolled back"
        log.warning("recovered an interrupted write (%s, %d path(s))", outcome, len(paths))
        return {"recovered": True, "outcome": outcome, "paths": paths}
