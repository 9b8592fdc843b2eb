"""Failures of the outside world map to the contract's codes and change nothing."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.config import Settings
from arka_git_hcm.durable import StoreLock
from arka_git_hcm.errors import HcmError
from arka_git_hcm.services.oplog import JsonLinesLog
from arka_git_hcm.services.store import HcmStore

from .conftest import AGENT, assert_clean, commit_count, create_mission, envelope, git, journal, make_settings
from .test_engine import tree_digest

ENTRY = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "x"}


def test_a_held_lock_answers_busy_and_commits_nothing(tmp_path: Path) -> None:
    from arka_git_hcm.admin.init import init_hcm

    settings = make_settings(tmp_path / "c", lock_timeout_s=0.2)
    init_hcm(settings, "acme")
    store = HcmStore.open(settings)
    create_mission(store, "m1")
    before = commit_count(settings.hcm_path)
    other = StoreLock(settings.hcm_path / ".git" / "arka-hcm" / "write.lock")
    other.acquire(1)
    try:
        response = store.execute(envelope("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": ENTRY}, AGENT))
    finally:
        other.release()
    assert response["error"]["code"] == "BUSY"
    assert response["error"]["details"]["retry_after"] >= 1
    assert commit_count(settings.hcm_path) == before
    journal(store, "after the lock is released")  # and the store still works
    store.close()


@pytest.mark.parametrize(
    ("err", "code"), [(errno.ENOSPC, "STORAGE_FULL"), (errno.EROFS, "READ_ONLY"), (errno.EIO, "IO_ERROR")]
)
def test_disk_errors_during_a_write_map_to_codes_and_leave_no_trace(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch, err: int, code: str
) -> None:
    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    head, digest = git(hcm, "rev-parse", "HEAD"), tree_digest(hcm)

    def failing(data: bytes, previous: str | None = None) -> str:
        raise OSError(err, "simulated")

    monkeypatch.setattr(store.repo, "write_blob", failing)
    response = store.execute(envelope("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": ENTRY}, AGENT))
    assert response["status"] == "error" and response["error"]["code"] == code
    assert "Traceback" not in json.dumps(response)
    assert git(hcm, "rev-parse", "HEAD") == head and tree_digest(hcm) == digest
    monkeypatch.undo()
    journal(store, "the disk is back")
    store.close()
    assert_clean(hcm)


@pytest.mark.parametrize(("err", "code"), [(errno.ENOSPC, "STORAGE_FULL"), (errno.EIO, "IO_ERROR")])
def test_a_pack_the_disk_refuses_fails_the_write_and_its_objects_are_dropped(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch, err: int, code: str
) -> None:
    from arka_git_hcm.gitrepo import packs

    hcm = store.settings.hcm_path
    create_mission(store, "m1")
    head, digest = git(hcm, "rev-parse", "HEAD"), tree_digest(hcm)
    pack_names = set(packs.pack_names(hcm / ".git" / "objects" / "pack"))

    def refused(*args: Any, **kwargs: Any) -> str:
        raise OSError(err, "simulated")

    monkeypatch.setattr(packs, "write_held", refused)
    response = store.execute(envelope("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": ENTRY}, AGENT))
    assert response["status"] == "error" and response["error"]["code"] == code
    assert git(hcm, "rev-parse", "HEAD") == head and tree_digest(hcm) == digest
    assert store.repo._pending == {}  # not carried into the next batches
    assert set(packs.pack_names(hcm / ".git" / "objects" / "pack")) == pack_names
    monkeypatch.undo()
    journal(store, "the disk is back")
    store.close()
    assert_clean(hcm)


def test_an_unexpected_exception_is_an_internal_error_without_details(
    store: HcmStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_mission(store, "m1")

    def boom(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("secret internals /etc/shadow")

    monkeypatch.setattr(store.repo, "build_tree", boom)
    response = store.execute(envelope("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": ENTRY}, AGENT))
    assert response["error"]["code"] == "INTERNAL_ERROR"
    assert "shadow" not in json.dumps(response)


def test_the_error_shape_is_pinned(store: HcmStore) -> None:
    response = store.execute(envelope("HCM_GET_MISSION_CONTEXT", {"mission_id": "ghost"}))
    assert list(response) == ["request_id", "op", "status", "data", "error", "revision"]
    assert list(response["error"]) == ["code", "message", "details"]
    assert response["status"] == "error" and response["data"] is None
    assert response["error"]["code"] == "MISSION_NOT_FOUND"


def test_every_error_class_carries_code_status_and_exit_code() -> None:
    import arka_git_hcm.errors as errors

    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    seen = set()
    for cls in classes:
        if issubclass(cls, HcmError):
            assert cls.code and 400 <= cls.http_status <= 599 and cls.exit_code >= 2
            seen.add(cls.code)
    contract = {
        "INVALID_PAYLOAD",
        "UNAUTHENTICATED",
        "ACCESS_DENIED",
        "MISSION_NOT_FOUND",
        "NOT_FOUND",
        "CONFLICTING_UPDATE",
        "PAYLOAD_TOO_LARGE",
        "IDEMPOTENCY_MISMATCH",
        "BUSY",
        "STORAGE_FULL",
        "READ_ONLY",
        "IO_ERROR",
        "INTERNAL_ERROR",
    }
    assert contract <= seen


def test_operation_log_has_one_line_per_operation_without_payloads(settings: Settings) -> None:
    store = HcmStore.open(settings)
    create_mission(store, "m1")
    journal(store, "PRIVATE-NOTE-123", request_id="logged-1")
    store.execute(envelope("HCM_GET_MISSION_CONTEXT", {"mission_id": "ghost"}))
    store.close()
    lines = [json.loads(x) for x in (settings.log_path / "operations.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    record = lines[1]
    assert set(record) >= {
        "time",
        "op",
        "request_id",
        "caller",
        "status",
        "error_code",
        "duration_ms",
        "revision",
    }
    assert record["request_id"] == "logged-1" and record["caller"] == "agent/arka-pmo-01"
    assert lines[2]["error_code"] == "MISSION_NOT_FOUND"
    assert "PRIVATE-NOTE-123" not in (settings.log_path / "operations.jsonl").read_text()


def test_logs_rotate_by_size(tmp_path: Path) -> None:
    log = JsonLinesLog(tmp_path / "ops.jsonl", max_bytes=4096, backups=2)
    for i in range(400):
        log.write({"n": i, "pad": "x" * 40})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ops.jsonl", "ops.jsonl.1", "ops.jsonl.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    last = json.loads((tmp_path / "ops.jsonl").read_text().splitlines()[-1])
    assert last["n"] == 399


def test_roles_granted_in_meta_rules_widen_a_caller(store: HcmStore) -> None:
    """Contract section 6: roles come from the identity and hindex/meta_rules.json."""
    from .conftest import ADMIN, ok

    reader = {"type": "human", "id": "bob", "roles": ["reader"]}
    denied = store.execute(
        envelope(
            "HCM_CREATE_MISSION", {"mission_id": "m9", "meta": {"title": "t", "mission_type": "x"}}, reader
        )
    )
    assert denied["error"]["code"] == "ACCESS_DENIED"
    rules = ok(store, "HCM_GET_DOCUMENT", {"path": "hindex/meta_rules.json"}, ADMIN)["data"]["content"]
    rules["rules"]["role_grants"] = {"human/bob": ["writer", "superuser"]}
    ok(store, "HCM_PUT_DOCUMENT", {"path": "hindex/meta_rules.json", "content": rules}, ADMIN)
    granted = store.execute(
        envelope(
            "HCM_CREATE_MISSION", {"mission_id": "m9", "meta": {"title": "t", "mission_type": "x"}}, reader
        )
    )
    assert granted["status"] == "ok"
    # an unknown role in the file ("superuser") grants nothing; admin stays needed for documents
    doc = store.execute(envelope("HCM_PUT_DOCUMENT", {"path": "stable/x.json", "content": {}}, reader))
    assert doc["error"]["code"] == "ACCESS_DENIED"


def test_two_writers_of_one_log_lose_no_line_across_rotations(tmp_path: Path) -> None:
    """Server workers each hold the log open; one rotating must not make the other write into the
    renamed file or lose lines."""
    first = JsonLinesLog(tmp_path / "ops.jsonl", max_bytes=4096, backups=100)
    second = JsonLinesLog(tmp_path / "ops.jsonl", max_bytes=4096, backups=100)
    for i in range(400):
        (first if i % 2 else second).write({"n": i, "pad": "y" * 30})
    numbers = sorted(json.loads(line)["n"] for p in tmp_path.iterdir() for line in p.read_text().splitlines())
    assert numbers == list(range(400))
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    first.close()
    second.close()
