"""Shared fixtures. Tests are hermetic: no GIT_* variables, HOME in a temp folder, no user or
system git config, so results do not depend on the machine running them."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.admin.init import init_hcm
from arka_git_hcm.clock import FixedClock
from arka_git_hcm.config import FileConfig, LimitsConfig, Settings, StoreConfig
from arka_git_hcm.gitrepo.gitbin import maintenance_lock
from arka_git_hcm.services.store import HcmStore

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"  # copied into the repository: a clone has nothing beside it
FIXTURE_HCM = FIXTURES / "arka-hcm-v1" / "hcm"


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for key in list(os.environ):
        if key.startswith("GIT_") or key.startswith("ARKA_"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run the real git binary in ``cwd`` and return stdout."""
    proc = subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout


def make_settings(client: Path, **store: Any) -> Settings:
    store.setdefault("durability", "fast")
    store.setdefault("index_refresh_delay_s", 0.0)
    return Settings(
        hcm_path=client / "hcm",
        config_path=client / "config",
        log_path=client / "logs",
        env="development",
        file=FileConfig(tenant_id="acme", store=StoreConfig(**store), limits=LimitsConfig()),
    )


def fixed_clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC))


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    return tmp_path / "client"


@pytest.fixture
def settings(client_dir: Path) -> Settings:
    s = make_settings(client_dir)
    init_hcm(s, "acme", "ACME", clock=fixed_clock())
    return s


@pytest.fixture
def store(settings: Settings) -> Iterator[HcmStore]:
    counter = iter(range(1, 1_000_000))
    s = HcmStore.open(settings, clock=fixed_clock(), id_token=lambda: f"{next(counter):04d}")
    yield s
    s.close()


# --- the HCM v1 fixture, adopted once per session and copied per test ---------------------------
# Stores built here refresh git's index only when a test asks (``index_refresh_delay_s=60`` and
# ``engine.refresh_index()``), so no background refresh competes with the test for the lock.

START = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


def quiet_settings(client: Path, **store: Any) -> Settings:
    return make_settings(client, **{"index_refresh_delay_s": 60.0, **store})


def open_store(settings: Settings, start: datetime = START, ids: Iterator[int] | None = None) -> HcmStore:
    counter = ids if ids is not None else itertools.count(1)
    return HcmStore.open(settings, clock=FixedClock(start), id_token=lambda: f"{next(counter):04d}")


def new_hcm(client: Path, start: datetime = START) -> Settings:
    settings = quiet_settings(client)
    init_hcm(settings, "acme", "ACME", clock=FixedClock(start))
    return settings


def adopt_fixture(client: Path) -> Settings:
    shutil.copytree(FIXTURE_HCM, client / "hcm")
    for path in (client / "hcm").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (client / "hcm").chmod(0o755)
    settings = quiet_settings(client)
    init_hcm(settings, "example-tenant", clock=FixedClock(START))
    return settings


def copy_client(template: Path, client: Path) -> Settings:
    """A copy of a prepared client folder (hcm with its .git, config, logs): cheaper than init."""
    shutil.copytree(template, client, symlinks=True, copy_function=shutil.copyfile)
    return quiet_settings(client)


@pytest.fixture(scope="session")
def v1_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    client = tmp_path_factory.mktemp("template") / "v1"
    adopt_fixture(client)
    return client


@pytest.fixture
def fixture_store(tmp_path: Path, v1_template: Path) -> Iterator[HcmStore]:
    """The HCM v1 fixture, adopted (a copy of the session's template)."""
    s = open_store(copy_client(v1_template, tmp_path / "v1"))
    yield s
    s.close()


HUMAN = {"type": "human", "id": "alice", "roles": ["writer"]}
ADMIN = {"type": "human", "id": "root-admin", "roles": ["admin"]}
AGENT = {"type": "agent", "id": "arka-pmo-01", "roles": ["writer"]}
READER = {"type": "human", "id": "viewer", "roles": ["reader"]}

_rid = iter(range(1, 10_000_000))


def envelope(
    op: str, payload: dict[str, Any], caller: dict[str, Any] | None = None, request_id: str | None = None
) -> dict[str, Any]:
    return {
        "op": op,
        "request_id": request_id or f"req-{next(_rid)}",
        "caller": caller or HUMAN,
        "payload": payload,
    }


def ok(
    store: HcmStore,
    op: str,
    payload: dict[str, Any],
    caller: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    response = store.execute(envelope(op, payload, caller, request_id))
    assert response["status"] == "ok", response
    return response


def create_mission(store: HcmStore, mission_id: str = "m1", **meta: Any) -> dict[str, Any]:
    meta = {"title": "Audit ACME", "mission_type": "audit", **meta}
    return ok(store, "HCM_CREATE_MISSION", {"mission_id": mission_id, "meta": meta})


def journal(store: HcmStore, message: str, mission_id: str = "m1", **kw: Any) -> dict[str, Any]:
    entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": message}
    return ok(store, "HCM_APPEND_JOURNAL", {"mission_id": mission_id, "entry": entry}, AGENT, **kw)


def commit_count(hcm: Path) -> int:
    return int(git(hcm, "rev-list", "--count", "HEAD").strip())


def assert_clean(hcm: Path) -> None:
    """The versioning promise after any operation: fsck passes and the work tree equals HEAD."""
    with maintenance_lock(hcm, exclusive=False):  # a repack (maybe of a killed writer) moves packs
        git(hcm, "fsck", "--strict", "--no-progress")
    assert git(hcm, "status", "--porcelain", "--untracked-files=all") == ""


def git_available() -> bool:
    return shutil.which("git") is not None
