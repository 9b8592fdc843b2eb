"""The git export served by git's own upload-pack: what it checks, what it hands to git, and
how a clone ends (client gone, client stalled) and is bounded (slots, the maintenance lock).

A real uvicorn on 127.0.0.1 and the real ``git`` binary, as in test_git_http.py. The "tight"
server allows one pack at a time, no wait for a slot or for maintenance, and a 1 s stall
limit; its repository holds a 24 MB incompressible file, so a pack no client reads cannot
fit in the pipes and socket buffers: git is still running (blocked) when the test looks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from arka_git_hcm.admin import tokens
from arka_git_hcm.config import Settings
from arka_git_hcm.gitrepo import http_export
from arka_git_hcm.gitrepo.gitbin import maintenance_lock
from arka_git_hcm.server.git_routes import BUSY, GIT_BASE, git_router

from .test_git_http import Git, _bearer_only, _make_hcm, _pkt, _want, git_env

RESULT = "application/x-git-upload-pack-result"
REQUEST = "application/x-git-upload-pack-request"


@contextlib.contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Server:
    base: str
    hcm: Path
    git: Git
    token: str
    hidden: str
    paths: dict[str, Path]  # what the router's repo_path() answers, changeable by a test

    def http(self, small_buffer: bool = False) -> httpx.Client:
        """``small_buffer``: a fixed 64 kB receive buffer (the kernel's autotuning could take
        tens of MB of a pack nobody reads)."""
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)] if small_buffer else []
        transport = httpx.HTTPTransport(socket_options=options)
        return httpx.Client(base_url=self.base, trust_env=False, timeout=60, transport=transport)

    def url(self) -> str:
        return f"http://x:{self.token}@{self.base.removeprefix('http://')}{GIT_BASE}"

    def auth(self, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **headers}

    def post(self, body: bytes, **headers: str) -> httpx.Response:
        with self.http() as http:
            return http.post(
                f"{GIT_BASE}/git-upload-pack",
                content=body,
                headers=self.auth(**{"Content-Type": REQUEST, **headers}),
            )

    def rev(self, what: str) -> str:
        return self.git.out("rev-parse", what, cwd=self.hcm)


def _server(tmp: Path, *, big: bool = False, **limits: Any) -> contextlib.AbstractContextManager[Server]:
    @contextlib.contextmanager
    def run() -> Iterator[Server]:
        home = tmp / "home"
        home.mkdir()
        git = Git(git_env(home))
        hcm = tmp / "hcm"
        hidden = _make_hcm(git, hcm)
        if big:
            (hcm / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
            git.run("add", "big.bin", cwd=hcm)
            git.run("commit", "-q", "-m", "big", cwd=hcm)
        settings = Settings(hcm_path=hcm, config_path=tmp / "config", log_path=tmp / "logs")
        token, _ = tokens.create_token(settings, "client-git", "system", ["reader"])
        paths = {"hcm": hcm}
        app = FastAPI()
        app.include_router(git_router(lambda: paths["hcm"], _bearer_only(settings), **limits))
        with _serve(app) as base:
            yield Server(base, hcm, git, token, hidden, paths)

    return run()


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _server(tmp_path_factory.mktemp("roomy")) as server:
        yield server


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    limits = {"max_fetches": 1, "slot_wait_s": 0, "lock_wait_s": 0}
    with _server(tmp_path_factory.mktemp("tight"), big=True, **limits) as server:
        yield server


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _server(tmp_path_factory.mktemp("impatient"), big=True, stall_timeout_s=1) as server:
        yield server


def _v2(command: str, *args: str, caps: tuple[str, ...] = ()) -> bytes:
    head = _pkt(f"command={command}\n") + b"".join(_pkt(f"{cap}\n") for cap in caps)
    return head + b"0001" + b"".join(_pkt(f"{arg}\n") for arg in args) + b"0000"


def _fetch_v2(*wants: str) -> bytes:
    return _v2("fetch", *(f"want {w}" for w in wants), "no-progress", "ofs-delta", "done")


V2 = {"Git-Protocol": "version=2"}


# --- the protocol ---------------------------------------------------------------------------


def test_advertisements_per_protocol_version(roomy: Server) -> None:
    with roomy.http() as http:

        def get(**headers: str) -> bytes:
            answer = http.get(
                f"{GIT_BASE}/info/refs", params={"service": "git-upload-pack"}, headers=roomy.auth(**headers)
            )
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/x-git-upload-pack-advertisement"
            return answer.content

        v0 = get()
        assert v0.startswith(b"001e# service=git-upload-pack\n0000")
        assert b"refs/heads/main" in v0 and b"refs/hcm/" not in v0 and b"refs/remotes/" not in v0
        v1 = get(**{"Git-Protocol": "version=1"})
        assert v1.startswith(b"001e# service=git-upload-pack\n0000000eversion 1\n")
        # v2: capabilities only (as git http-backend sends them), and only what is served
        v2 = get(**{"Git-Protocol": "object-format=sha1:version=2"})
        assert v2.startswith(b"000eversion 2\n") and v2.endswith(b"0000")
        assert b"ls-refs" in v2 and b"fetch=" in v2
        assert b"object-info" not in v2 and b"filter" not in v2 and b"# service" not in v2
        # anything else in the header is a v0 client
        assert get(**{"Git-Protocol": "version=3"}) == v0


def test_v2_ls_refs_lists_only_exported_refs(roomy: Server) -> None:
    answer = roomy.post(_v2("ls-refs", "peel", "symrefs", "ref-prefix refs/"), **V2)
    assert answer.status_code == 200
    assert b"refs/heads/main" in answer.content and b"refs/tags/snapshot/first" in answer.content
    assert b"refs/hcm/" not in answer.content and b"refs/remotes/" not in answer.content
    assert roomy.hidden.encode() not in answer.content


def test_v2_wants_are_checked_before_git_serves_them(roomy: Server) -> None:
    """git's v2 fetch serves any object by id; the export only exported tips and the commits
    they reach (as git checks v0)."""
    head, parent = roomy.rev("main"), roomy.rev("main~2")  # main~1 is the tag's commit
    blob = roomy.rev("main:meta.json")
    tag = roomy.rev("snapshot/first")
    for wants in ([head], [tag], [parent], [head, parent]):
        answer = roomy.post(_fetch_v2(*wants), **V2)
        assert answer.status_code == 200 and b"PACK" in answer.content, wants
    for wants in ([roomy.hidden], [roomy.hidden.upper()], [head, roomy.hidden], [blob], ["0" * 40], ["xyz"]):
        answer = roomy.post(_fetch_v2(*wants), **V2)
        assert answer.status_code == 200 and answer.headers["content-type"] == RESULT
        assert b"ERR " in answer.content and b"PACK" not in answer.content, wants
    # commands and arguments not served
    for body in (
        _v2("object-info", "size", f"oid {roomy.hidden}"),
        _v2("bundle-uri"),
        _v2("fetch", "want-ref refs/hcm/internal", "done"),
        _pkt("command=ls-refs\n")
        + _pkt("command=fetch\n")
        + b"0001"
        + _pkt(f"want {roomy.hidden}\n")
        + b"0000",
        b"zzzz",
    ):
        answer = roomy.post(body, **V2)
        assert answer.status_code == 200 and b"ERR " in answer.content and b"PACK" not in answer.content


def test_hidden_commit_is_not_fetchable_with_any_protocol(roomy: Server, tmp_path: Path) -> None:
    git = roomy.git
    dest = tmp_path / "clone"
    git.run("clone", "-q", roomy.url(), str(dest))
    for version in ("0", "1", "2"):
        done = git.run(
            "-c", f"protocol.version={version}", "fetch", "origin", roomy.hidden, cwd=dest, check=False
        )
        assert done.returncode != 0, version
        # a commit an exported branch reaches may be fetched by id, as git allows it
        parent = roomy.rev("main~2")
        git.run("-c", f"protocol.version={version}", "fetch", "-q", "origin", parent, cwd=dest)
    assert git.run("cat-file", "-e", roomy.hidden, cwd=dest, check=False).returncode != 0


def test_gzip_v2_request(roomy: Server) -> None:
    import gzip

    answer = roomy.post(gzip.compress(_fetch_v2(roomy.rev("main"))), **{**V2, "Content-Encoding": "gzip"})
    assert answer.status_code == 200 and b"PACK" in answer.content


def test_git_gets_no_token_no_header_and_none_of_the_servers_environment(
    roomy: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[list[str], dict[str, str]]] = []
    popen = subprocess.Popen

    def spy(args: Any, *rest: Any, **kwargs: Any) -> Any:
        if any("upload-pack" in str(a) or str(a) == "--git-dir" for a in args):
            started.append(([str(a) for a in args], dict(kwargs.get("env") or {})))
        return popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)  # http_export calls subprocess.Popen/run
    monkeypatch.setenv("ARKA_SENTINEL_SECRET", "sentinel-value")
    for version in ("0", "2"):
        roomy.git.run(
            "-c", f"protocol.version={version}", "clone", "-q", roomy.url(), str(tmp_path / version)
        )
    # a want that is not a tip: the v2 check walks the history (git rev-list)
    roomy.post(_fetch_v2(roomy.rev("main~2")), **{**V2, "X-Extra": "header-value"})
    assert any("upload-pack" in args for args, _env in started)
    assert any(args[-2:] == ["rev-list", "--stdin"] for args, _env in started)
    allowed = {"PATH", "TMPDIR", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_TERMINAL_PROMPT", "LC_ALL"}
    for args, env in started:
        assert roomy.token not in " ".join(args) and "Bearer" not in " ".join(args)
        assert set(env) <= allowed | {"GIT_PROTOCOL"}, env
        assert env.get("GIT_PROTOCOL") in (None, "version=1", "version=2")
        assert roomy.token not in "".join(env.values()) and "header-value" not in "".join(env.values())
        assert "sentinel-value" not in env.values()
        assert "receive-pack" not in args and "upload-archive" not in args


def test_missing_repository_is_a_404(tight: Server, tmp_path: Path) -> None:
    tight.paths["hcm"] = tmp_path / "nowhere"
    try:
        with tight.http() as http:
            answer = http.get(
                f"{GIT_BASE}/info/refs", params={"service": "git-upload-pack"}, headers=tight.auth()
            )
        assert answer.status_code == 404 and "the HCM repository is missing" in answer.text
        assert tight.post(_want(tight.rev("main"))).status_code == 404
    finally:
        tight.paths["hcm"] = tight.hcm


# --- the child process, the slots, the lock -------------------------------------------------


def _sessions_of(gitdir: Path) -> set[int]:
    """Session ids of the git upload-packs serving ``gitdir`` (each leads its own session)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"upload-pack" in argv and str(gitdir).encode() in argv:
                found.add(int(pid))
    return found


def _alive_in(sessions: set[int]) -> list[int]:
    """Processes (upload-pack, pack-objects) still in those sessions."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[3]) in sessions:
                alive.append(int(pid))
    return alive


def _lock_is_free(workdir: Path) -> bool:
    with maintenance_lock(workdir, exclusive=True, wait=False) as fd:
        return fd is not None


def _eventually(check: Callable[[], bool], what: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@contextlib.contextmanager
def _pack_being_read(server: Server) -> Iterator[Iterator[bytes]]:
    """A clone's POST whose client has read one chunk and reads nothing more (with a 64 kB
    receive buffer, git cannot write the 24 MB pack: it blocks on its pipe until the client
    reads, hangs up, or the server ends it). Yields the rest of the answer."""
    with (
        server.http(small_buffer=True) as http,
        http.stream(
            "POST",
            f"{GIT_BASE}/git-upload-pack",
            content=_want(server.rev("main")),
            headers=server.auth(**{"Content-Type": REQUEST}),
        ) as answer,
    ):
        assert answer.status_code == 200
        rest = answer.iter_raw()
        assert next(rest)
        yield rest


def test_a_client_that_hangs_up_ends_git_and_frees_its_slot_and_the_lock(tight: Server) -> None:
    with _pack_being_read(tight):
        sessions = _sessions_of(tight.hcm / ".git")
        assert sessions and _alive_in(sessions), "git is not blocked on its pipe"
        # git reads packs under the maintenance lock, shared: no repack, fold or gc now
        assert not _lock_is_free(tight.hcm)
        # the one slot is taken: a second clone is told to come back
        busy = tight.post(_want(tight.rev("main")))
        assert busy.status_code == 503 and busy.text == BUSY and busy.headers["retry-after"]
        # a ref listing has its own slots
        with tight.http() as http:
            listed = http.get(
                f"{GIT_BASE}/info/refs", params={"service": "git-upload-pack"}, headers=tight.auth()
            )
        assert listed.status_code == 200
    _eventually(lambda: not _alive_in(sessions), "git kept running after its client hung up")
    _eventually(lambda: _lock_is_free(tight.hcm), "the maintenance lock stayed held")
    _eventually(
        lambda: tight.post(_want(tight.rev("main"))).status_code == 200, "the slot was not given back"
    )


def test_a_client_that_stops_reading_is_cut_off(impatient: Server) -> None:
    with _pack_being_read(impatient) as rest:
        # the connection stays open and nothing is read: git cannot have finished on its own,
        # so its end (the lock free again) is the stall limit's doing (1 s here)
        _eventually(lambda: _lock_is_free(impatient.hcm), "git kept running for a stalled client")
        assert not _sessions_of(impatient.hcm / ".git")
        # the answer was cut, not completed
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in rest:
                pass


def test_maintenance_in_progress_is_a_503(tight: Server) -> None:
    with maintenance_lock(tight.hcm, exclusive=True) as fd:
        assert fd is not None
        with tight.http() as http:
            listed = http.get(
                f"{GIT_BASE}/info/refs", params={"service": "git-upload-pack"}, headers=tight.auth()
            )
        assert listed.status_code == 503 and "being maintained" in listed.text
        assert listed.headers["retry-after"]
        posted = tight.post(_want(tight.rev("main")))
        assert posted.status_code == 503 and "being maintained" in posted.text
    # and the slot it took is free again
    assert tight.post(_want(tight.rev("main"))).status_code == 200


def test_a_request_waits_for_a_gc_then_is_served(roomy: Server) -> None:
    """A gc holds the maintenance lock exclusive: a listing started meanwhile waits for its
    end (up to ``lock_wait_s``) instead of failing, and git reads the packs only after it."""
    held = threading.Event()
    release = threading.Event()

    def gc() -> None:
        with maintenance_lock(roomy.hcm, exclusive=True) as fd:
            assert fd is not None
            held.set()
            release.wait(10)

    thread = threading.Thread(target=gc)
    thread.start()
    assert held.wait(10)
    timer = threading.Timer(0.6, release.set)
    timer.start()
    began = time.monotonic()
    try:
        body = http_export.advertisement(roomy.hcm, 0, lock_wait_s=30)
    finally:
        release.set()
        thread.join(10)
    assert time.monotonic() - began >= 0.5
    assert b"refs/heads/main" in body


def test_a_full_clone_of_a_large_pack_through_the_tight_server(tight: Server, tmp_path: Path) -> None:
    dest = tmp_path / "clone"
    tight.git.run("clone", "-q", tight.url(), str(dest))
    assert (dest / "big.bin").read_bytes() == (tight.hcm / "big.bin").read_bytes()
    tight.git.run("fsck", "--strict", "--no-progress", cwd=dest)
