"""The operation layer: one envelope in, one response out, the same for the CLI and the server.

with HcmStore.open(settings) as store:   # or store = HcmStore.open(...); ...; store.close()
    response = store.execute({"op": "HCM_APPEND_JOURNAL", "request_id": "r1", "caller": {...},
                              "payload": {...}})
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..clock import Clock, SystemClock, parse_iso
from ..config import Settings
from ..domain.envelope import Caller, Envelope, describe_validation_error, parse_envelope
from ..errors import AccessDenied, HcmError, InternalError, InvalidPayload, NotFound
from ..gitrepo import GitRepo
from ..jsonio import compact_dumps, parse_json
from .access import META_RULES, authorize, parse_role_grants
from .engine import CommitEngine, WriteRequest, WriteResult, payload_digest
from .hooks import install_hooks
from .oplog import JsonLinesLog
from .ops_base import OpContext, OpSpec
from .ops_days import DAY_OPS
from .ops_history import HISTORY_OPS
from .ops_missions import MISSION_OPS
from .ops_records import RECORD_OPS
from .ops_rollback import ROLLBACK_OPS
from .ops_search import SEARCH_OPS, SearchPort
from .ops_team_docs import TEAM_DOC_OPS
from .views import TreeView

__all__ = ["OPERATIONS", "HcmStore", "error_response", "init_hint", "ok_response"]

log = logging.getLogger("arka_git_hcm.store")

OPERATIONS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in MISSION_OPS + RECORD_OPS + DAY_OPS + TEAM_DOC_OPS + HISTORY_OPS + ROLLBACK_OPS + SEARCH_OPS
}
NOT_YET: frozenset[str] = frozenset()
_AT_REVISION = re.compile(r"^(?:[0-9a-f]{4,40}|HEAD(?:~\d{1,6})?)$")
_AT_SNAPSHOT = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")


def error_response(envelope: Any, error: HcmError, revision: str | None) -> dict[str, Any]:
    request_id = envelope.get("request_id") if isinstance(envelope, dict) else None
    op = envelope.get("op") if isinstance(envelope, dict) else None
    return {
        "request_id": request_id if isinstance(request_id, str) else None,
        "op": op if isinstance(op, str) else None,
        "status": "error",
        "data": None,
        "error": error.to_dict(),
        "revision": revision,
    }


def ok_response(envelope: Envelope, data: dict[str, Any], revision: str | None) -> dict[str, Any]:
    return {
        "request_id": envelope.request_id,
        "op": envelope.op,
        "status": "ok",
        "data": data,
        "error": None,
        "revision": revision,
    }


def init_hint(hcm_path: Path) -> str:
    """How to create the HCM that was expected at ``hcm_path`` (a client folder's hcm/, or flat)."""
    if hcm_path.parent == Path(hcm_path.anchor):
        # /hcm: the container's default, so outside a container no folder was named at all
        return (
            "name the client folder with --client ./arka-client (or set ARKA_HCM_PATH), or create "
            "one with `arka-hcm init ./arka-client --tenant-id <id>`"
        )
    if hcm_path.name == "hcm":
        return (
            f"create it with `arka-hcm init {hcm_path.parent} --tenant-id <id>` (a client folder: "
            f"hcm/, config/, logs/)"
        )
    return f"create it with `arka-hcm init {hcm_path} --layout flat --tenant-id <id>`"


@dataclass
class _Job:
    """One envelope on its way through the operation layer."""

    started: float
    envelope_dict: Any
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
        self.engine = CommitEngine(settings, repo, clock)
        log_cfg = settings.file.logging
        self.oplog = JsonLinesLog(settings.log_path / "operations.jsonl", log_cfg.max_bytes, log_cfg.backups)
        self.open_report: dict[str, Any] = {}
        self.search: SearchPort | None = None  # set by arka_git_hcm.search.attach_search
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
        repo = GitRepo(settings.hcm_path)
        head = repo.read_ref(repo.head_ref_name())
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
        if not install_hooks(store.repo.git_dir):
            log.warning(
                "a pre-commit hook that arka-hcm did not write exists; the index guard is not installed"
            )
        store.open_report["recovery"] = store.engine.recover()
        store.open_report["index_repaired"] = store.engine.repair_index()
        if scan_hand_edits:
            store.open_report["hand_edits"] = store.scan_hand_edits(
                adopt=settings.file.store.external_edits == "adopt"
            )
        return store

    def close(self) -> None:
        if self.search is not None:
            self.search.close()
        self.engine.close()
        self.oplog.close()

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
        offload: Callable[[Callable[[], dict[str, Any]]], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """:meth:`execute` for an asyncio server: the envelope is checked in the calling loop,
        a quick read (OpSpec.quick) runs there too, other reads through ``offload`` (a thread
        pool), a write joins the engine's queue."""
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
        self._log(job.envelope_dict, job.response, job.started)
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

    def _log(self, envelope: Any, response: dict[str, Any], started: float) -> None:
        caller = envelope.get("caller") if isinstance(envelope, dict) else None
        self.oplog.write(
            {
                "time": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                "op": response.get("op"),
                "request_id": response.get("request_id"),
                "caller": f"{caller.get('type')}/{caller.get('id')}" if isinstance(caller, dict) else None,
                "status": response["status"],
                "error_code": (response.get("error") or {}).get("code"),
                "replayed": bool(response.get("replayed")),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "revision": response.get("revision"),
            }
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
        """``at`` as a commit: a revision, a snapshot name, or an ISO date/time (state then)."""
        if at is None:
            return self.tip()
        if _AT_REVISION.match(at):
            commit = self.repo.resolve_commit(at)
            if commit is not None:
                return commit
        if _AT_SNAPSHOT.match(at):
            commit = self.repo.resolve_commit(f"refs/tags/snapshot/{at}")
            if commit is not None:
                return commit
        try:
            moment = parse_iso(at)
        except ValueError:
            raise NotFound(
                f"{at!r} is neither a revision, a snapshot name nor an ISO date/time", {"at": at}
            ) from None
        commit = self.commit_at(moment)
        if commit is None:
            raise NotFound(f"the HCM has no history at {at}", {"at": at})
        return commit

    def commit_at(self, moment: datetime) -> str | None:
        tip = self.tip()
        if tip is None:
            return None
        limit = moment.timestamp()
        for info in self.repo.walk(tip):
            if info.commit_time <= limit:
                return info.id
        return None

    def state_at(self, moment: datetime) -> TreeView | None:
        commit = self.commit_at(moment)
        return None if commit is None else self.view(commit)

    # --- hand edits -----------------------------------------------------------------------
    def scan_hand_edits(self, *, adopt: bool) -> dict[str, Any]:
        """Find files whose work-tree content differs from HEAD (edited, added or deleted by hand)
        and adopt them as one HCM_EXTERNAL_EDIT commit, or just report them."""
        from ..paths import check_relative

        adoptable, unsafe = [], []
        for path in self.engine.find_hand_edits():
            try:
                check_relative(path)
                self.engine.resolver.resolve(path)
                adoptable.append(path)
            except HcmError:
                unsafe.append(path)
        report: dict[str, Any] = {"paths": adoptable, "unsafe": unsafe, "adopted": None}
        if adoptable and adopt:
            report["adopted"] = self._adopt(adoptable)
        if adoptable or unsafe:
            log.warning("hand edits found: %d adoptable, %d unsafe", len(adoptable), len(unsafe))
        return report

    def _adopt(self, paths: list[str]) -> str | None:
        return self.engine.submit_adoption(self.engine.adoption_request(paths))
