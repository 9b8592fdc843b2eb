"""HCM_HISTORY answered from the history index alone, for a command that must start fast.

``arka-hcm log`` is typed by people, a new process each time. Opening the store costs far more
than the question (at 1,000,000 commits: pydantic's models, pygit2, the open checks ~0.4 s; the
index query ~5 ms), so :func:`quick_history` answers without any of it, from files read
directly, when, and only when, the answer is the one :meth:`HcmStore.execute` would give. It
imports the standard library and the pydantic-free, pygit2-free modules only. Every doubt
returns None, and the caller runs the operation the normal way, which also gives every error
its usual message. It answers only when:

- the configuration certainly loads: paths and ``ARKA_*`` as load_settings resolves them, and
  the config file byte for byte the one the models of config.py last accepted, for this
  version of the program (``config-checked.json``, written by :func:`remember_config` each
  time the store opens; it holds the few settings this path needs). No second copy of the
  rules: a file edited since is "not sure", and the next store open checks it;
- the payload is one the models certainly accept: no ``path`` (not indexed) or ``at``, ids,
  sizes and dates within their rules, a cursor that is an indexed commit;
- the store would open without changing anything the answer is drawn from, nor refuse to open:
  ``.git`` is a folder of this user (or shared through its group), HEAD names the configured
  branch, the branch is a commit id (a loose ref or a line of packed-refs; a symbolic or odd
  ref is left to the store), ``meta.json`` is in the work tree, and no write is in flight or
  left to repair: no intent (``intent.json``, writepath/worktree.py), no file moved aside by a
  killed writer (``asides/``), no pending refresh of git's index (``index-pending/``);
- the index is of this schema and stamped exactly at the branch's tip (read in one snapshot).

Like a read over HTTP, the answer is the committed history: a file edited by hand and not yet
adopted is not in it (the full path of ``log`` does not adopt either; see README). Not done
here, because the answer is read from the index and touches no git object: the open's checks of
damaged objects (loose objects cut short, packs whose bytes never reached the disk, moved aside
by the next store that opens; ``arka-hcm verify`` reports them). On such a repository the
store's path may answer an error where this one answers the history as it was indexed. The
operation is logged to ``operations.jsonl`` as the store logs it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import stat
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..clock import parse_iso
from ..environment import CONFIG_FILE_NAME, Roots
from ..errors import HcmError
from ..history.reader import HistoryFilters, HistoryPage, HistoryReader, indexed_page
from ..ids import CALLER_TYPES, ROLES, is_valid_id
from ..jsonio import compact_dumps, parse_json
from .oplog import JsonLinesLog, operation_record

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["CHECKED_CONFIG", "quick_history", "remember_config"]

CHECKED_CONFIG = "config-checked.json"  # in .git/arka-hcm/
CHECKED_KEPT = 4  # installations remembered (the service's, an admin's command line, ...)

OP = "HCM_HISTORY"
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
_FILTERS = {"mission_id", "caller", "op", "since", "until", "cursor"}
# the payload model's (domain/envelope.py History) bounds on each text
_MAX_LENGTH = {"caller": 300, "op": 64, "since": 40, "until": 40, "cursor": 64}
_CALLER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")  # the envelope's caller id


class _FullPath(Exception):
    """This question goes the normal way."""


def quick_history(roots: Roots, caller: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any] | None:
    """The response :meth:`HcmStore.execute` would give to HCM_HISTORY with ``payload`` from
    ``caller``, or None when it cannot be certain (see the module docstring)."""
    started = time.perf_counter()
    try:
        flt, limit, cursor = _filters(payload)
        who = _caller_label(caller)
        config = _file_config(roots)
        _check_size(caller, payload, config["limits"]["max_envelope_bytes"])
        tip = _branch_tip(roots.hcm_path, config["store"]["branch"])
        state = os.path.join(roots.hcm_path, ".git", "arka-hcm")
        data = _page(HistoryReader(state), tip, flt, limit, cursor)
    except (_FullPath, HcmError, OSError, ValueError, sqlite3.Error):
        return None
    request_id = f"cli-{os.urandom(6).hex()}"  # run_operation's form: cli- and 12 hex digits
    response = {
        "request_id": request_id,
        "op": OP,
        "status": "ok",
        "data": data,
        "error": None,
        "revision": tip,
    }
    logging = config["logging"]
    oplog = JsonLinesLog(
        os.path.join(roots.log_path, "operations.jsonl"), logging["max_bytes"], logging["backups"]
    )
    try:
        oplog.write(
            operation_record(
                op=OP,
                request_id=request_id,
                caller=who,
                status="ok",
                error_code=None,
                replayed=False,
                started=started,
                revision=tip,
            )
        )
    finally:
        oplog.close()
    return response


def _text(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if type(value) is not str or len(value) > _MAX_LENGTH.get(key, 1024):
        raise _FullPath
    value.encode("utf-8")  # a lone surrogate (UnicodeEncodeError): the strict parser refuses it
    return value


def _filters(payload: dict[str, Any]) -> tuple[HistoryFilters, int, str | None]:
    if type(payload) is not dict or not set(payload) <= _FILTERS | {"limit"}:
        raise _FullPath  # a path (not indexed), `at`, or a key the model refuses
    limit = payload.get("limit", 50)
    if type(limit) is not int or not 1 <= limit <= 1000:
        raise _FullPath
    mission = _text(payload, "mission_id")
    if mission is not None and not is_valid_id(mission):
        raise _FullPath
    since, until = _text(payload, "since"), _text(payload, "until")
    cursor = _text(payload, "cursor")
    if cursor is not None and not _COMMIT_ID.fullmatch(cursor):
        raise _FullPath
    flt = HistoryFilters(
        mission=mission,
        caller=_text(payload, "caller"),
        op=_text(payload, "op"),
        since=parse_iso(since).timestamp() if since is not None else None,
        until=parse_iso(until).timestamp() if until is not None else None,
    )
    return flt, limit, cursor


def _check_size(caller: dict[str, Any], payload: dict[str, Any], max_bytes: int) -> None:
    """The envelope run_operation would send is within the configured limit (the request id
    has the same length as its real one)."""
    envelope = {"op": OP, "request_id": "cli-" + "0" * 12, "caller": caller, "payload": payload}
    if len(compact_dumps(envelope).encode("utf-8")) > max_bytes:
        raise _FullPath


def _caller_label(caller: dict[str, Any]) -> str:
    kind, ident, roles = caller.get("type"), caller.get("id"), caller.get("roles")
    if (
        set(caller) != {"type", "id", "roles"}
        or kind not in CALLER_TYPES
        or type(ident) is not str
        or not _CALLER_ID.fullmatch(ident)
        or type(roles) is not list
        or not roles
        or not set(roles) <= set(ROLES)
    ):
        raise _FullPath  # no role, or not the command line's caller: the store decides
    return f"{kind}/{ident}"


def _config_digest(config_file: str) -> str:
    """What identifies a config file's content for this program: its sha256 (or "missing":
    every default), this version, and config.py's size and time (a rule changed in a working
    copy changes them)."""
    try:
        with open(config_file, "rb") as file:
            content = hashlib.sha256(file.read()).hexdigest()
    except FileNotFoundError:
        content = "missing"
    rules = os.stat(os.path.join(os.path.dirname(os.path.dirname(__file__)), "config.py"))
    return f"{content} {__version__} {rules.st_size}:{rules.st_mtime_ns}"


def _file_config(roots: Roots) -> dict[str, Any]:
    """The settings this path needs, as the models read them from the config file as it is
    now; _FullPath when the file changed since they last did."""
    state = os.path.join(roots.hcm_path, ".git", "arka-hcm")
    digest = _config_digest(roots.config_file)
    for entry in _checked_entries(os.path.join(state, CHECKED_CONFIG)):
        if entry.get("digest") == digest:
            return entry
    raise _FullPath


def _checked_entries(path: str) -> list[dict[str, Any]]:
    """The records of config-checked.json, newest last (one per installation of the program
    that opened the store: the service's and an admin's command line each keep theirs)."""
    try:
        with open(path, "rb") as file:
            checked = parse_json(file.read(16384), what=CHECKED_CONFIG)
    except (OSError, ValueError, HcmError):
        return []
    entries = checked.get("entries") if type(checked) is dict else None
    return [e for e in entries if type(e) is dict] if type(entries) is list else []


def remember_config(settings: Settings) -> None:
    """Record that the models accept the config file as it is now, with the settings
    :func:`quick_history` needs (skipped when already recorded, or when the file changed since
    ``settings`` were read). Best effort: a store opens whether this can be written or not."""
    from ..config import read_file_config  # the models: only on the store's path
    from ..durable import write_atomic

    config_file = os.fspath(settings.config_path / CONFIG_FILE_NAME)
    state = settings.hcm_path / ".git" / "arka-hcm"
    try:
        digest = _config_digest(config_file)
        entries = _checked_entries(os.fspath(state / CHECKED_CONFIG))
        if any(entry.get("digest") == digest for entry in entries):
            return
        config = read_file_config(settings.config_path / CONFIG_FILE_NAME)
        if _config_digest(config_file) != digest:
            return  # edited while it was read: the next open records it
        record = {
            "digest": digest,
            "store": {"branch": config.store.branch},
            "limits": {"max_envelope_bytes": config.limits.max_envelope_bytes},
            "logging": {"max_bytes": config.logging.max_bytes, "backups": config.logging.backups},
        }
        content = digest.split(" ")[0]  # other installations' records of this same file stay
        kept = [e for e in entries if str(e.get("digest", "")).split(" ")[0] == content]
        kept = (kept + [record])[-CHECKED_KEPT:]
        data = compact_dumps({"entries": kept}).encode("utf-8") + b"\n"
        write_atomic(state / CHECKED_CONFIG, data, root=state.parent)
    except (OSError, HcmError):
        return


def _read_small(*path: str) -> str:
    with open(os.path.join(*path), "rb") as file:
        return file.read(4096).decode("ascii")


def _branch_tip(hcm_path: str, branch: str) -> str:
    """The branch's commit, read as the store would open it; _FullPath for anything the open
    would repair, refuse or report. Paths through os.path: pathlib would cost ~7 ms of start."""
    git_dir = os.path.join(hcm_path, ".git")
    info = os.stat(git_dir, follow_symlinks=False)
    shared = info.st_mode & stat.S_ISGID and info.st_mode & stat.S_IWGRP
    if not stat.S_ISDIR(info.st_mode) or not (info.st_uid == os.geteuid() or shared):
        raise _FullPath  # not a repository, or another user's: the store says which
    ref = f"refs/heads/{branch}"
    head = _read_small(git_dir, "HEAD").strip()
    if not head.startswith("ref:") or head[4:].strip() != ref:
        raise _FullPath
    try:
        tip = _read_small(git_dir, ref).strip()
    except FileNotFoundError:
        tip = _packed_ref(git_dir, ref)
    if not _COMMIT_ID.fullmatch(tip):
        raise _FullPath  # a symbolic ref, an empty or damaged file
    state = os.path.join(git_dir, "arka-hcm")
    if (
        os.path.lexists(os.path.join(state, "intent.json"))
        or _has_entries(os.path.join(state, "asides"))
        or _has_entries(os.path.join(state, "index-pending"))
    ):
        raise _FullPath  # a write in flight or left to repair: the open finishes it
    if not stat.S_ISREG(os.lstat(os.path.join(hcm_path, "meta.json")).st_mode):
        raise _FullPath  # not an HCM (or its meta.json edited away): the store says so
    return tip


def _packed_ref(git_dir: str, ref: str) -> str:
    with open(os.path.join(git_dir, "packed-refs"), "rb") as file:
        for line in file.read().decode("ascii").splitlines():
            oid, _, name = line.partition(" ")
            if name == ref and not line.startswith(("#", "^")):
                return oid
    raise _FullPath


def _has_entries(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(True for _ in entries)
    except FileNotFoundError:
        return False


def _page(
    reader: HistoryReader, tip: str, flt: HistoryFilters, limit: int, cursor: str | None
) -> dict[str, Any]:
    try:
        with reader.snapshot() as indexed:
            stamp = reader.stamp() if indexed else None
            if stamp is None or stamp.id != tip:
                raise _FullPath  # no index, another schema, or behind (or ahead of) the tip
            start = stamp.seq if cursor is None else reader.seq_of(cursor)
            if start is None:
                raise _FullPath  # a cursor the index does not hold: the store walks or refuses
            page = indexed_page(reader, start, flt, limit, HistoryPage())
            commits = reader.summaries(page.commits)
            if commits is None:
                raise _FullPath
    finally:
        reader.close_reader()
    return {"commits": commits, "next_cursor": page.next_cursor}
