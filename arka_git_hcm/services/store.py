"""The operation layer: one envelope in, one response out, the same for the CLI and the server.

with HcmStore.open(settings) as store:   # or store = HcmStore.open(...); ...; store.close()
    response = store.execute({"op": "HCM_APPEND_JOURNAL", "request_id": "r1", "caller": {...},
                              "payload": {...}})
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..clock import Clock, SystemClock
from ..config import Settings
from ..domain.envelope import Caller, Envelope, describe_validation_error, parse_envelope
from ..domain.layout import is_required
from ..errors import AccessDenied, HcmError, InternalError, InvalidPayload, NotFound, from_os_error
from ..gitrepo import GitRepo
from ..history.index import HistoryIndex
from ..history.indexer import HistoryIndexer
from ..history.query import find_request
from ..jsonio import compact_dumps, parse_json
from ..operations.access import META_RULES, authorize, parse_role_grants
from ..operations.base import OpContext, OpSpec
from ..operations.days import DAY_OPS
from ..operations.history import HISTORY_OPS
from ..operations.missions import MISSION_OPS
from ..operations.records import RECORD_OPS
from ..operations.rollback import ROLLBACK_OPS
from ..operations.search import SEARCH_OPS, SearchPort
from ..operations.team_docs import TEAM_DOC_OPS
from ..operations.views import TreeView
from ..writepath.engine import CommitEngine
from ..writepath.guard import install_hooks
from ..writepath.hand_edits import problems_of
from ..writepath.requests import WriteRequest, WriteResult, payload_digest
from .opening import init_hint, move_damaged_loose_objects, probe_writable, read_branch, refuse_other_owner
from .oplog import JsonLinesLog, operation_record
from .quick_history import remember_config
from .responses import error_response, ok_response
from .revisions import Revisions

__all__ = ["OPERATIONS", "HcmStore"]

log = logging.getLogger("arka_git_hcm.store")

OPERATIONS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in MISSION_OPS + RECORD_OPS + DAY_OPS + TEAM_DOC_OPS + HISTORY_OPS + ROLLBACK_OPS + SEARCH_OPS
}
NOT_YET: frozenset[str] = frozenset()
LOOP_PARSE_MAX = 64 * 1024  # bodies up to this size are parsed on an asyncio caller's loop


@dataclass
class _Job:
    """One envelope on its way through the operation layer."""

    started: float
    envelope_dict: Any
    caller: str | None = None  # who is logged: the token's identity when there is one
    envelope: Envelope | None = None
    read: Callable[[], dict[str, Any]] | None = None  # a read operation: answers when called
    quick: bool = False  # a read an asyncio server answers on its loop (OpSpec.quick)
    write: WriteRequest | None = None  # a write operation: what the engine commits
    response: dict[str, Any] | None = None

    def settle(self, result: WriteResult) -> None:
        assert self.envelope is not None
        self.response = ok_response(self.envelope, result.data, result.revision)
        if result.replayed:
            self.response["replayed"] = True


class HcmStore:
    def __init__(
        self,
        settings: Settings,
        repo: GitRepo,
        clock: Clock,
        id_token: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.clock = clock
        self.id_token = id_token or (lambda: None)
        # the history index, kept up to date off the write path (see history/index.py); the
        # engine's request index reads the ids of the commits it holds from it
        self.history = HistoryIndex(settings.hcm_path, repo.state_dir)
        self.engine = CommitEngine(settings, repo, clock, self.history)
        log_cfg = settings.file.logging
        self.oplog = JsonLinesLog(settings.log_path / "operations.jsonl", log_cfg.max_bytes, log_cfg.backups)
        self.open_report: dict[str, Any] = {}
        self.search: SearchPort | None = None  # set by arka_git_hcm.search.attach_search
        self.history_indexer = HistoryIndexer(self.history, self.tip)
        self.revisions = Revisions(repo, self.history, self.tip)
        self._grants: tuple[str | None, dict[str, list[str]]] = (None, {})

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        id_token: Callable[[], str | None] | None = None,
        scan_hand_edits: bool = True,
    ) -> HcmStore:
        """Open the HCM at ``settings.hcm_path``: finish an interrupted write, repair git's index,
        and detect (then adopt or report) files edited by hand while the store was not looking."""
        git_dir = Path(settings.hcm_path) / ".git"
        if not git_dir.is_dir():
            raise NotFound(
                f"no HCM repository at {settings.hcm_path}; {init_hint(settings.hcm_path)}",
                {"path": str(settings.hcm_path)},
            )
        refuse_other_owner(git_dir)
        repo = GitRepo(settings.hcm_path)
        damaged_objects = move_damaged_loose_objects(repo)  # before anything reads history
        head = read_branch(repo, settings)
        if head is not None and repo.entry_id(repo.commit_tree(head), "meta.json") is None:
            # Some other git repository: never install hooks or state in it.
            raise NotFound(
                f"{settings.hcm_path} is a git repository but not an HCM (no meta.json on its branch); "
                f"point --hcm/--client at an HCM, or {init_hint(settings.hcm_path)} in another folder",
                {"path": str(settings.hcm_path)},
            )
        if head is None:
            raise NotFound(
                f"{settings.hcm_path} holds a git repository with no commit, not an HCM; "
                f"{init_hint(settings.hcm_path)}",
                {"path": str(settings.hcm_path)},
            )
        store = cls(settings, repo, clock or SystemClock(), id_token)
        store.add_landing_listener(lambda _tip, _paths: store.history_indexer.wake())
        if not install_hooks(store.repo.git_dir):
            log.warning(
                "a pre-commit hook that arka-hcm did not write exists; the index guard is not installed"
            )
        store.open_report["damaged_objects"] = damaged_objects
        store.open_report["recovery"] = store.engine.recover()
        store.open_report["damaged_packs"] = store.open_report["recovery"].pop("damaged_packs", [])
        store.open_report["stray_asides"] = store.engine.check_stray_asides()
        store.open_report["index_repaired"] = store.engine.repair_index()
        store.engine.check_history()
        remember_config(settings)  # `arka-hcm log` may then answer without the models (quick_history)
        if scan_hand_edits:
            store.open_report["hand_edits"] = store.scan_hand_edits(
                adopt=settings.file.store.external_edits == "adopt"
            )
        return store

    def close(self) -> None:
        if self.search is not None:
            self.search.close()
        self.engine.close()
        self.history_indexer.close()
        self.history.close_reader()
        self.oplog.close()

    def health(self) -> dict[str, Any]:
        """Whether the store can take writes now (``ready``), the problems if not, each with what
        to do, and details an admin should see: hand edits kept out of history. A work tree left
        by a failed write is repaired here if it can be. The volume is checked by doing what a
        write does (creating and removing a file where the store writes): a filesystem the
        kernel forced read-only still passes ``os.access``."""
        problems: list[str] = []
        engine = self.engine
        if engine.repair_pending:
            try:
                engine.recover()
            except HcmError as exc:
                problems.append(f"{engine.repair_pending}; repairing it failed: {exc.message}")
        if engine.broken:
            problems.append(engine.broken)
        try:
            probe_writable(self.repo.state_dir)
        except OSError as exc:
            problems.append(from_os_error(exc, "checking that the HCM volume takes writes").message)
        tip = self._safe_tip()
        if tip is None:
            problems.append("the HCM branch has no commit")
        scan = self.open_report.get("hand_edits") or {}
        details: dict[str, Any] = {
            "saved_hand_edits": engine.saved_edits.listed(5),
            "hand_edits_not_adopted": scan.get("invalid", []),
        }
        return {"ready": not problems, "revision": tip, "problems": problems, "details": details}

    @property
    def branch_ref(self) -> str:
        """The branch the HCM's history is on (``refs/heads/<store.branch>``)."""
        return self.engine.ref

    def write_lock(self, timeout_s: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold the store's write lock (no write of any process lands meanwhile): for maintenance
        that moves objects (``arka-hcm gc``)."""
        return self.engine.lock.held(
            self.settings.file.store.lock_timeout_s if timeout_s is None else timeout_s
        )

    def reindex_history(self, on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Bring the history index to the tip now (a first build, or after a restore)."""
        added = self.history.catch_up(self.tip(), build=True, wait=True, on_progress=on_progress)
        stamp = self.history.stamp()
        return {
            "added": added,
            "indexed_to": stamp.id if stamp else None,
            "commits": stamp.seq + 1 if stamp else 0,
        }

    def accept_rewind(self, by: tuple[str, str]) -> dict[str, Any]:
        """Keep the branch where a person moved it back (see RequestIndex)."""
        return self.engine.accept_rewind(by)

    def add_landing_listener(self, listener: Callable[[str, list[str]], None]) -> None:
        """Call ``listener(new_tip, changed_paths)`` after each batch of writes lands in this
        process (from the committing thread: it must only wake a worker, never do the work).
        Writes of other processes are not announced: followers also look at the tip now and then."""
        self.engine.landing_listeners.append(listener)

    def __enter__(self) -> HcmStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the operation layer --------------------------------------------------------------
    def execute(
        self, request: Any, *, caller: Caller | None = None, what: str = "envelope"
    ) -> dict[str, Any]:
        """Run one envelope (dict, or raw JSON bytes) and return the contract's response.
        ``caller`` (the token's identity over HTTP) must match a caller the envelope claims;
        ``what`` names the input in parse errors ("line 3" of a JSON-lines stream)."""
        job = self._prepare(request, caller, what)
        if job.response is None:
            with self._answering(job):
                if job.write is not None:
                    job.settle(self.engine.submit(job.write))
                else:
                    assert job.read is not None
                    job.response = job.read()
        return self._finish(job)

    async def execute_async(
        self,
        request: Any,
        *,
        caller: Caller | None = None,
        offload: Callable[[Callable[[], Any]], Awaitable[Any]],
    ) -> dict[str, Any]:
        """:meth:`execute` for an asyncio server: the envelope is checked in the calling loop,
        a quick read (OpSpec.quick) runs there too, other reads through ``offload`` (a thread
        pool), a write joins the engine's queue."""
        if isinstance(request, (bytes, str)) and len(request) > LOOP_PARSE_MAX:
            # parsing and validating a large body takes milliseconds: not on the event loop,
            # where it would hold every other request (and /health) meanwhile
            job: _Job = await offload(lambda: self._prepare(request, caller, "envelope"))
        else:
            job = self._prepare(request, caller, "envelope")
        if job.response is None:
            with self._answering(job):
                if job.write is not None:
                    job.settle(await self.engine.submit_async(job.write))
                else:
                    assert job.read is not None
                    job.response = job.read() if job.quick else await offload(job.read)
        return self._finish(job)

    def _prepare(self, request: Any, caller: Caller | None, what: str) -> _Job:
        """Parse, validate and authorize one envelope: a job holding its read or its write, or
        already answered (an error)."""
        job = _Job(started=time.perf_counter(), envelope_dict=request)
        if caller is not None:
            job.caller = caller.label
        with self._answering(job):
            if not isinstance(request, (bytes, str)):
                # A Python value (CLI, embedding, tests) goes through the same strict parser as
                # bytes from the network, so NaN, sizes and depth are refused the same way.
                try:
                    request = compact_dumps(request)
                except (ValueError, TypeError) as exc:
                    raise InvalidPayload(
                        f"the envelope is not JSON ({exc}); NaN and Infinity are not JSON"
                    ) from None
            limits = self.settings.file.limits
            job.envelope_dict = parse_json(
                request,
                max_bytes=limits.max_envelope_bytes,
                max_depth=limits.max_json_depth,
                what=what,
            )
            envelope = parse_envelope(job.envelope_dict)
            job.caller = job.caller or envelope.caller.label
            if caller is not None:
                envelope = self._bind_caller(envelope, caller)
            self._plan(job, envelope)
        return job

    @contextlib.contextmanager
    def _answering(self, job: _Job) -> Iterator[None]:
        """Any failure inside becomes the job's error response (never a traceback)."""
        try:
            yield
        except HcmError as exc:
            job.response = error_response(job.envelope_dict, exc, self._safe_tip())
        except Exception:
            log.exception("operation failed unexpectedly")
            job.response = error_response(
                job.envelope_dict, InternalError("the operation failed unexpectedly"), self._safe_tip()
            )

    def _finish(self, job: _Job) -> dict[str, Any]:
        assert job.response is not None
        self._log(job)
        return job.response

    def _bind_caller(self, envelope: Envelope, caller: Caller) -> Envelope:
        claimed = envelope.caller
        if (claimed.type, claimed.id) != (caller.type, caller.id):
            raise AccessDenied(
                f"the envelope claims caller {claimed.label} but the token belongs to {caller.label}",
                {"claimed": claimed.label, "token": caller.label},
            )
        return envelope.model_copy(update={"caller": caller})

    def _plan(self, job: _Job, envelope: Envelope) -> None:
        spec = OPERATIONS.get(envelope.op)
        if spec is None and envelope.op in NOT_YET:
            raise InvalidPayload(
                f"{envelope.op} is in the contract but not implemented in this version", {"field": "op"}
            )
        if spec is None:
            raise InvalidPayload(
                f"unknown op {envelope.op!r}; known: {', '.join(sorted(OPERATIONS))}", {"field": "op"}
            )
        try:
            payload = spec.payload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise describe_validation_error(exc, "payload") from None
        tip = self.tip()  # read once: the grants and a read without `at` answer as of this commit
        envelope = envelope.model_copy(update={"caller": self._with_granted_roles(envelope.caller, tip)})
        authorize(spec, envelope.caller)
        job.envelope = envelope
        ctx = OpContext(
            caller=envelope.caller,
            clock=self.clock,
            limits=self.settings.file.limits,
            state_at=self.state_at,
            id_token=self.id_token,
            resolve_at=self.resolve_at,
            search=self.search,
            history=self.history,
        )
        if spec.kind == "read":

            def read() -> dict[str, Any]:
                at = getattr(payload, "at", None)
                commit = tip if at is None else self.resolve_at(at)
                data = spec.handler(ctx, self.view(commit), payload)
                return ok_response(envelope, data, data["revision"] if spec.revision_from_data else commit)

            job.read = read
            job.quick = spec.quick
            return
        job.write = WriteRequest(
            op=spec.name,
            request_id=envelope.request_id,
            caller_type=envelope.caller.type,
            caller_id=envelope.caller.id,
            payload_sha256=payload_digest(spec.name, envelope.caller.label, envelope.payload),
            apply=lambda draft: spec.handler(ctx, draft, payload),
            replay=spec.replay,
            replay_tag=spec.tag_of,
        )

    def _with_granted_roles(self, caller: Caller, tip: str | None) -> Caller:
        """Roles come from the caller's identity (its token over HTTP) plus the grants an admin
        wrote in ``hindex/meta_rules.json`` -> ``rules.role_grants``: ``{"human/alice": ["admin"]}``.
        The grants are read at the branch tip, cached by the file's blob id."""
        if tip is None:
            return caller
        tree = self.repo.commit_tree(tip)
        blob = self.repo.entry_id(tree, META_RULES)
        cached_blob, grants = self._grants  # one tuple: threads never see a half-updated cache
        if blob != cached_blob:
            grants = parse_role_grants(self.repo.read_blob(tree, META_RULES))
            self._grants = (blob, grants)
        extra = [r for r in grants.get(caller.label, []) if r not in caller.roles]
        return caller.model_copy(update={"roles": [*caller.roles, *extra]}) if extra else caller

    def _log(self, job: _Job) -> None:
        """One record per operation: only bounded, validated values (see :func:`echoed`), and the
        caller is the token's identity, or the envelope's once it validated; never the payload."""
        response = job.response
        assert response is not None
        self.oplog.write(
            operation_record(
                op=response.get("op"),
                request_id=response.get("request_id"),
                caller=job.caller,
                status=response["status"],
                error_code=(response.get("error") or {}).get("code"),
                replayed=bool(response.get("replayed")),
                started=job.started,
                revision=response.get("revision"),
            )
        )

    # --- reading at a point in history ----------------------------------------------------
    def tip(self) -> str | None:
        return self.engine.tip()

    def _safe_tip(self) -> str | None:
        try:
            return self.tip()
        except Exception:
            return None

    def view(self, commit: str | None) -> TreeView:
        self.repo.notice_rollups()
        return TreeView(self.repo, self.repo.commit_tree(commit) if commit else None, commit)

    def resolve_at(self, at: str | None) -> str | None:
        """The commit ``at`` names (see :class:`Revisions`); the tip when None."""
        return self.revisions.resolve_at(at)

    def commit_at(self, moment: datetime) -> str | None:
        """The newest first-parent commit at or before ``moment`` (from the history index)."""
        return self.revisions.commit_at(moment)

    def find_request(self, request_id: str) -> str | None:
        """The commit that answered ``request_id`` (the oldest on the branch), from the history
        index; None when no commit carries it. For idempotent replays."""
        return find_request(self.repo, self.history, self.tip(), request_id)

    def state_at(self, moment: datetime) -> TreeView | None:
        commit = self.commit_at(moment)
        return None if commit is None else self.view(commit)

    # --- hand edits -----------------------------------------------------------------------
    def scan_hand_edits(self, *, adopt: bool, by: tuple[str, str] | None = None) -> dict[str, Any]:
        """Find files whose work-tree content differs from HEAD (edited, added or deleted by hand)
        and adopt them as one HCM_EXTERNAL_EDIT commit (authored ``by`` (type, id) when a person
        asked for it, else by the store itself), or just report them."""
        from ..paths import check_relative

        adoptable, unsafe, invalid = [], [], []
        for path in self.engine.find_hand_edits():
            try:
                check_relative(path)
                data = self.engine.resolver.read_bytes(path)
            except HcmError:
                unsafe.append(path)
                continue
            if problems_of(path, data) or (data is None and is_required(path)):
                invalid.append(path)  # kept out of history, left on disk, reported
            else:
                adoptable.append(path)
        report: dict[str, Any] = {"paths": adoptable, "unsafe": unsafe, "invalid": invalid, "adopted": None}
        if adoptable and adopt:
            try:
                report["adopted"] = self.engine.submit_adoption(self.engine.adoption_request(adoptable, by))
            except HcmError as exc:  # a store that refuses writes (a rewind to decide) still opens
                report["adoption_refused"] = exc.message
                log.warning("hand edits not adopted: %s", exc.message)
        if adoptable or unsafe or invalid:
            log.warning(
                "hand edits found: %d adoptable, %d unsafe, %d not valid (kept out of history: %s)",
                len(adoptable),
                len(unsafe),
                len(invalid),
                ", ".join(invalid[:10]),
            )
        return report
