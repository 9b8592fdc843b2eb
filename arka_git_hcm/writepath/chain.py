"""Planning a batch: each write becomes one commit on top of the previous one (a chain), built
in memory against the tree of its parent; nothing on disk moves until the chain lands.

The planner also decides what happens to files edited by hand that a write is about to replace:
adopted first as an ``HCM_EXTERNAL_EDIT`` commit of their own, saved when not valid, or the write
refused (config ``store.external_edits: refuse``). Replays of a known request id are answered from
the commit that first landed it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from ..clock import Clock
from ..config import Settings
from ..domain.commit_message import OperationTrailers, build_message, parse_result, parse_trailers
from ..domain.layout import is_required
from ..errors import ConflictingUpdate, HcmError
from ..gitrepo import GitRepo, Signature, blob_id
from ..operations.outcome import WriteOutcome
from ..operations.views import Draft, TreeView
from .disk_check import DiskCheck
from .hand_edits import DROPPED_LINES, SavedEdits, merge_journal, problems_of
from .request_index import RequestIndex
from .requests import EXTERNAL_EDIT_OP, WriteRequest, WriteResult, raise_mismatch

__all__ = ["Chain", "Planned", "Planner"]

log = logging.getLogger("arka_git_hcm.engine")


@dataclass
class Planned:
    request: WriteRequest
    commit: str
    outcome: WriteOutcome


@dataclass
class Chain:
    tip: str | None
    tip_tree: str | None
    parent: str | None
    tree: str | None
    planned: list[Planned] = field(default_factory=list)
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

    @classmethod
    def on(cls, repo: GitRepo, tip: str | None) -> Chain:
        tip_tree = repo.commit_tree(tip) if tip else None
        return cls(tip=tip, tip_tree=tip_tree, parent=tip, tree=tip_tree)

    def settled(self) -> bool:
        """Whether every write of the chain was acknowledged."""
        return all(planned.request.done for planned in self.planned)

    def requests(self) -> list[WriteRequest]:
        return [planned.request for planned in self.planned]


class Planner:
    def __init__(
        self,
        settings: Settings,
        repo: GitRepo,
        clock: Clock,
        committer: Signature,
        requests: RequestIndex,
        disk: DiskCheck,
        saved_edits: SavedEdits,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.clock = clock
        self.committer = committer
        self.requests = requests
        self.disk = disk
        self.saved_edits = saved_edits

    def signature(self) -> Signature:
        """The store's committer, now."""
        return Signature(self.committer.name, self.committer.email, int(self.clock.now().timestamp()))

    def plan(self, chain: Chain, request: WriteRequest) -> None:
        """Add ``request``'s commit to the chain, or settle it as a replay or an error."""
        request.error = None
        request.result = None
        try:
            known = chain.seen_requests.get(request.request_id) or self.requests.lookup(request.request_id)
            if known is not None:
                request.result = self.replay(known, request)
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
            edited = [] if request.adopts_hand_edits else self.disk.hand_edited(chain, list(draft.changes))
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

    def _append(self, chain: Chain, request: WriteRequest, draft: Draft, outcome: WriteOutcome) -> None:
        blobs = {  # each new version stored as a delta of the one it replaces where that pays
            p: (None if d is None else self.repo.write_blob(d, self.repo.entry_id(chain.tree, p)))
            for p, d in draft.changes.items()
        }
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
        chain.planned.append(Planned(request, commit, outcome))
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

    def _plan_external_edit(self, chain: Chain, paths: list[str]) -> None:
        """Adopt the hand edits of ``paths`` as their own commit before the write that touches
        them; an edit that is not valid (does not parse, breaks its model, deletes a file the
        layout needs) is saved where an admin finds it and left out: the write replaces it."""
        valid, read = [], {}
        for path in paths:
            data = read[path] = self.disk.read(path)  # read once: what is adopted is what is expected
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
                data = contents[path] if contents is not None else self.disk.read(path)
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

    def journal_adoption(self, path: str, edited: bytes, base: bytes | None) -> WriteRequest:
        """A write committing the lines an editor added to a journal (relative to ``base``, the
        version it started from) on top of the branch's version."""

        def apply(draft: Draft) -> WriteOutcome:
            current = draft.read(path) or b""
            merged, _dropped = merge_journal(current, edited, base)
            if merged != current:  # nothing new: no commit (the request settles "unchanged")
                draft.write(path, merged)
            data = {"paths": [path]}
            return WriteOutcome(data, path, "merged lines added by hand", stored_result=data)

        request = self.adoption_request([path])
        request.apply = apply
        return request

    def replay(self, commit: str, request: WriteRequest) -> WriteResult:
        """The answer of a request id that landed already (``commit``), once its operation and
        payload are checked to be the same."""
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
            message = f"{request.op} (tag made good on replay)"
            self.repo.create_tag(f"snapshot/{name}", commit, self.signature(), message)
        return WriteResult(data, commit, replayed=True)
