"""Bearer tokens: created once, stored as a hash, listed without it, revoked, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arka_git_hcm.admin import tokens
from arka_git_hcm.clock import FixedClock
from arka_git_hcm.config import FileConfig, Settings, read_file_config, write_file_config
from arka_git_hcm.errors import ConflictingUpdate, InvalidPayload, NotFound, Unauthenticated


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(hcm_path=tmp_path / "hcm", config_path=tmp_path / "config", log_path=tmp_path / "logs")


def test_create_stores_only_the_hash(settings: Settings) -> None:
    token, record = tokens.create_token(settings, "arka-pmo-01", "agent", ["writer"], label="PMO agent")
    assert token.startswith(tokens.TOKEN_PREFIX) and len(token) > 40
    assert record.sha256 == hashlib.sha256(token.encode()).hexdigest()
    raw = settings.config_file.read_bytes()
    assert token.encode() not in raw
    assert token[len(tokens.TOKEN_PREFIX) :].encode() not in raw
    assert record.sha256.encode() in raw
    # The config holds secrets: not readable by other users.
    assert stat.S_IMODE(settings.config_file.stat().st_mode) == 0o600
    assert read_file_config(settings.config_file).tokens == [record]


def test_tokens_are_random(settings: Settings) -> None:
    first, _ = tokens.create_token(settings, "a1", "agent", ["reader"])
    second, _ = tokens.create_token(settings, "a2", "agent", ["reader"])
    assert first != second


def test_create_keeps_the_rest_of_the_config(settings: Settings) -> None:
    write_file_config(settings.config_file, FileConfig(tenant_id="acme"))
    tokens.create_token(settings, "ops", "human", ["admin"])
    assert read_file_config(settings.config_file).tenant_id == "acme"


def test_created_at_comes_from_the_clock(settings: Settings) -> None:
    clock = FixedClock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    _, record = tokens.create_token(settings, "ops", "human", ["admin"], clock=clock)
    assert record.created_at == "2026-01-02T03:04:05.000Z"


def test_duplicate_id_is_a_conflict(settings: Settings) -> None:
    tokens.create_token(settings, "arka-pmo-01", "agent", ["writer"])
    with pytest.raises(ConflictingUpdate):
        tokens.create_token(settings, "arka-pmo-01", "agent", ["reader"])
    assert len(tokens.list_tokens(settings)) == 1


@pytest.mark.parametrize(
    ("id", "type", "roles", "label"),
    [
        ("Bad Id", "agent", ["reader"], ""),
        ("../x", "agent", ["reader"], ""),
        ("con", "agent", ["reader"], ""),
        ("ok", "robot", ["reader"], ""),
        ("ok", "agent", [], ""),
        ("ok", "agent", ["root"], ""),
        ("ok", "agent", "reader", ""),
        ("ok", "agent", ["reader"], "two\nlines"),
        ("ok", "agent", ["reader"], "x" * 201),
    ],
)
def test_invalid_requests_are_refused(
    settings: Settings, id: str, type: str, roles: list[str], label: str
) -> None:
    with pytest.raises(InvalidPayload):
        tokens.create_token(settings, id, type, roles, label=label)
    assert not settings.config_file.exists()


def test_roles_are_deduplicated(settings: Settings) -> None:
    _, record = tokens.create_token(settings, "ops", "human", ["admin", "reader", "admin"])
    assert record.roles == ["admin", "reader"]


def test_list_never_shows_hashes(settings: Settings) -> None:
    _, record = tokens.create_token(settings, "arka-pmo-01", "agent", ["writer"], label="PMO")
    listed = tokens.list_tokens(settings)
    assert [info["id"] for info in listed] == ["arka-pmo-01"]
    assert set(listed[0]) == {"id", "type", "roles", "created_at", "label", "expires_at"}
    assert listed[0]["label"] == "PMO" and listed[0]["roles"] == ["writer"]
    assert record.sha256 not in repr(listed)


def test_list_of_a_missing_config_is_empty(settings: Settings) -> None:
    assert tokens.list_tokens(settings) == []
    assert tokens.load_tokens(settings) == ()


def test_revoke(settings: Settings) -> None:
    token, _ = tokens.create_token(settings, "a1", "agent", ["reader"])
    tokens.create_token(settings, "a2", "agent", ["reader"])
    assert tokens.authenticate(tokens.load_tokens(settings), token).id == "a1"
    info = tokens.revoke_token(settings, "a1")
    assert info["id"] == "a1"
    assert [i["id"] for i in tokens.list_tokens(settings)] == ["a2"]
    # A running server re-reads the file: the revoked token fails at once.
    with pytest.raises(Unauthenticated):
        tokens.authenticate(tokens.load_tokens(settings), token)
    with pytest.raises(NotFound):
        tokens.revoke_token(settings, "a1")


def test_authenticate(settings: Settings) -> None:
    token, record = tokens.create_token(settings, "a1", "agent", ["reader"])
    records = tokens.load_tokens(settings)
    assert tokens.authenticate(records, token) == record
    for presented in (None, ""):
        with pytest.raises(Unauthenticated, match="missing token"):
            tokens.authenticate(records, presented)
    for presented in (token + "x", token[:-1], "arka_" + "A" * 43, "é" * 10, "x" * 100_000):
        with pytest.raises(Unauthenticated, match="invalid token") as caught:
            tokens.authenticate(records, presented)
        assert presented[:20] not in caught.value.message  # never echoed


def test_authenticate_compares_every_record(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """No early exit: the first record matching must cost as much as the last or none."""
    first, _ = tokens.create_token(settings, "a1", "agent", ["reader"])
    for i in range(2, 6):
        tokens.create_token(settings, f"a{i}", "agent", ["reader"])
    records = tokens.load_tokens(settings)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the module tokens.py calls
    assert tokens.authenticate(records, first).id == "a1"
    assert len(calls) == len(records)
    calls.clear()
    with pytest.raises(Unauthenticated):
        tokens.authenticate(records, "arka_wrong")
    assert len(calls) == len(records)


def test_the_token_cache_sees_changes_made_by_another_process(settings: Settings) -> None:
    tokens.create_token(settings, "a1", "agent", ["reader"])
    cache = tokens.TokenCache()
    assert [r.id for r in cache.load(settings)] == ["a1"]
    # Age the file past the racy window so the cache is used, then change it "behind our back".
    old = settings.config_file.stat().st_mtime - 60
    os.utime(settings.config_file, (old, old))
    cached = cache.load(settings)
    assert cache.load(settings) is cached
    config = read_file_config(settings.config_file)
    write_file_config(settings.config_file, config.model_copy(update={"tokens": []}))
    assert cache.load(settings) == ()


def test_concurrent_creates_lose_nothing(settings: Settings) -> None:
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            tokens.create_token(settings, f"agent-{i}", "agent", ["writer"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(i["id"] for i in tokens.list_tokens(settings)) == sorted(f"agent-{i}" for i in range(12))
