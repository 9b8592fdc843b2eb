"""Git over HTTP, read-only: a real uvicorn on 127.0.0.1 and the real ``git`` binary.

The server is a tiny FastAPI app that mounts only the git router, with a bearer-only
authenticator like the service's own: basic auth reaching it proves the router's translation.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from arka_git_hcm.admin import tokens
from arka_git_hcm.config import Settings, TokenRecord
from arka_git_hcm.server.git_routes import GIT_BASE, PUSH_REFUSED, git_router, presented_token

MAX_REQUEST = 1024 * 1024


def git_env(home: Path) -> dict[str, str]:
    """No GIT_* from the outside, a private HOME, no prompts, no proxies: only what the test sets."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and "proxy" not in key.lower() and key not in ("SSH_ASKPASS",)
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.com",
        LC_ALL="C",
    )
    return env


@dataclass
class Git:
    env: dict[str, str]

    def run(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def out(self, *args: str, cwd: Path | None = None) -> str:
        return self.run(*args, cwd=cwd).stdout.strip()

    def commit(self, repo: Path, name: str, text: str) -> str:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
        self.run("add", name, cwd=repo)
        self.run("commit", "-q", "-m", f"write {name}", cwd=repo)
        return self.out("rev-parse", "HEAD", cwd=repo)


@dataclass
class Site:
    base: str  # http://127.0.0.1:PORT
    hcm: Path
    settings: Settings
    git: Git
    reader: str  # a reader token
    hidden: str  # a commit only a hidden ref reaches
    tmp: Path

    def url(self, token: str | None = None, user: str = "x") -> str:
        host = self.base.removeprefix("http://")
        auth = f"{user}:{token}@" if token is not None else ""
        return f"http://{auth}{host}{GIT_BASE}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, trust_env=False, timeout=30)


def _make_hcm(git: Git, hcm: Path) -> str:
    git.run("init", "-q", "-b", "main", str(hcm))
    git.commit(hcm, "meta.json", '{"hcm_version": "1.0.0"}\n')
    git.commit(hcm, "state/missions/m1/meta.json", '{"mission_id": "m1"}\n')
    git.run("tag", "-a", "snapshot/first", "-m", "first snapshot", cwd=hcm)
    git.commit(hcm, "state/missions/m1/journal.jsonl", '{"message": "hello"}\n')
    # Refs a client must not see: a remote-tracking ref and an internal one on a private commit.
    git.run("update-ref", "refs/remotes/client/main", "HEAD~1", cwd=hcm)
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=hcm,
        env=git.env,
        input="internal secret\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = subprocess.run(
        ["git", "mktree"],
        cwd=hcm,
        env=git.env,
        input=f"100644 blob {blob}\tsecret.txt\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    hidden = git.out("commit-tree", tree, "-m", "internal", cwd=hcm)
    git.run("update-ref", "refs/hcm/internal", hidden, cwd=hcm)
    return hidden


def _bearer_only(settings: Settings) -> Callable[[Request], TokenRecord]:
    """Like the service's authenticator: reads only ``Authorization: Bearer``."""

    def authenticate(request: Request) -> TokenRecord:
        header = request.headers.get("authorization", "")
        presented = header[7:] if header[:7].lower() == "bearer " else None
        return tokens.authenticate(tokens.load_tokens(settings), presented)

    return authenticate


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("git-http")
    home = tmp / "home"
    home.mkdir()
    git = Git(git_env(home))
    hcm = tmp / "hcm"
    hidden = _make_hcm(git, hcm)
    settings = Settings(hcm_path=hcm, config_path=tmp / "config", log_path=tmp / "logs")
    reader, _ = tokens.create_token(settings, "client-git", "system", ["reader"])

    app = FastAPI()
    app.include_router(
        git_router(lambda: settings.hcm_path, _bearer_only(settings), max_request_bytes=MAX_REQUEST)
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, log_level="info", lifespan="off", ws="none", access_log=True)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Site(f"http://127.0.0.1:{port}", hcm, settings, git, reader, hidden, tmp)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _clone(
    site: Site, name: str, url: str, *options: str, config: tuple[str, ...] = (), check: bool = True
) -> tuple[Path, str]:
    dest = site.tmp / name
    settings = [arg for item in config for arg in ("-c", item)]
    done = site.git.run(*settings, "clone", "-q", *options, url, str(dest), check=check)
    return dest, done.stderr


def _history(git: Git, repo: Path, ref: str) -> list[str]:
    return git.out("log", "--format=%H %T %an %s", ref, cwd=repo).splitlines()


@pytest.mark.parametrize("version", ["0", "1", "2"])
def test_clone_with_basic_auth_token_gives_the_same_history(site: Site, version: str) -> None:
    dest, _ = _clone(
        site, f"clone-v{version}", site.url(site.reader), config=(f"protocol.version={version}",)
    )
    git = site.git
    assert git.out("rev-parse", "HEAD", cwd=dest) == git.out("rev-parse", "main", cwd=site.hcm)
    assert _history(git, dest, "origin/main") == _history(git, site.hcm, "main")
    assert git.out("tag", cwd=dest) == "snapshot/first"
    assert git.out("cat-file", "-t", "snapshot/first", cwd=dest) == "tag"
    git.run("fsck", "--strict", "--no-progress", cwd=dest)
    assert git.out("status", "--porcelain", cwd=dest) == ""


def test_hidden_refs_are_neither_listed_nor_fetchable(site: Site) -> None:
    listed = site.git.out("ls-remote", site.url(site.reader))
    names = {line.split("\t")[1] for line in listed.splitlines()}
    assert names == {"HEAD", "refs/heads/main", "refs/tags/snapshot/first", "refs/tags/snapshot/first^{}"}
    assert site.hidden not in listed
    dest, _ = _clone(site, "clone-hidden", site.url(site.reader))
    assert site.git.run("cat-file", "-e", site.hidden, cwd=dest, check=False).returncode != 0
    done = site.git.run("fetch", "origin", site.hidden, cwd=dest, check=False)
    assert done.returncode != 0


def test_fetch_after_new_commits(site: Site) -> None:
    git = site.git
    dest, _ = _clone(site, "clone-fetch", site.url(site.reader))
    # Local commits the server never saw make the client send haves it cannot ACK,
    # over several stateless rounds.
    for i in range(40):
        git.commit(dest, f"local/{i}.txt", f"{i}\n")
    for i in range(3):
        head = git.commit(site.hcm, f"state/missions/m1/evidence/e{i}.json", f'{{"n": {i}}}\n')
    git.run("fetch", "-q", "origin", cwd=dest)
    assert git.out("rev-parse", "origin/main", cwd=dest) == head
    assert _history(git, dest, "origin/main") == _history(git, site.hcm, "main")
    git.run("fsck", "--strict", "--no-progress", cwd=dest)


def test_shallow_clone(site: Site) -> None:
    dest, _ = _clone(site, "clone-shallow", site.url(site.reader), "--depth", "1")
    assert site.git.out("rev-list", "--count", "HEAD", cwd=dest) == "1"
    assert site.git.out("rev-parse", "HEAD", cwd=dest) == site.git.out("rev-parse", "main", cwd=site.hcm)


def test_bearer_header_works(site: Site) -> None:
    header = f"http.extraHeader=Authorization: Bearer {site.reader}"
    dest, _ = _clone(site, "clone-bearer", site.url(), config=(header,))
    assert site.git.out("rev-parse", "HEAD", cwd=dest) == site.git.out("rev-parse", "main", cwd=site.hcm)


def test_credential_helper_answers_the_challenge(site: Site) -> None:
    store = site.tmp / "credentials"
    store.write_text(f"{site.url(site.reader, user='anyone')}\n".replace(GIT_BASE, ""))
    dest, _ = _clone(site, "clone-helper", site.url(), config=(f"credential.helper=store --file={store}",))
    assert site.git.out("rev-parse", "HEAD", cwd=dest) == site.git.out("rev-parse", "main", cwd=site.hcm)


def test_any_role_may_fetch(site: Site) -> None:
    for role in ("writer", "admin"):
        token, _ = tokens.create_token(site.settings, f"fetcher-{role}", "human", [role])
        with site.http() as http:
            answer = http.get(
                f"{GIT_BASE}/info/refs",
                params={"service": "git-upload-pack"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-git-upload-pack-advertisement"
        assert answer.content.startswith(b"001e# service=git-upload-pack\n0000")
        assert b"refs/heads/main" in answer.content


def test_clone_without_token_fails_with_401(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    _, stderr = _clone(site, "clone-anon", site.url(), check=False)
    assert not (site.tmp / "clone-anon" / ".git").exists()
    assert "terminal prompts disabled" in stderr or "Authentication failed" in stderr
    with site.http() as http:
        answer = http.get(f"{GIT_BASE}/info/refs", params={"service": "git-upload-pack"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Basic realm="arka-hcm"'
        assert "missing token" in answer.text
        posted = http.post(
            f"{GIT_BASE}/git-upload-pack",
            content=b"0000",
            headers={"Content-Type": "application/x-git-upload-pack-request"},
        )
        assert posted.status_code == 401


def test_bad_token_fails_and_is_never_echoed(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "arka_" + "Z" * 43
    _, stderr = _clone(site, "clone-bad", site.url(bad), check=False)
    assert "Authentication failed" in stderr
    assert not (site.tmp / "clone-bad" / ".git").exists()
    with site.http() as http:
        for headers in (
            {"Authorization": f"Bearer {bad}"},
            {"Authorization": "Basic " + base64.b64encode(f"x:{bad}".encode()).decode()},
        ):
            answer = http.get(f"{GIT_BASE}/info/refs", params={"service": "git-upload-pack"}, headers=headers)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == 'Basic realm="arka-hcm"'
            assert "invalid token" in answer.text
            assert bad not in answer.text
    # Nothing the server logged (uvicorn access lines included) carries a token.
    _clone(site, "clone-logged", site.url(site.reader))
    assert caplog.records, "the server's logs were not captured"
    assert bad not in caplog.text and site.reader not in caplog.text


def test_revoked_token_stops_working_on_the_running_server(site: Site) -> None:
    token, _ = tokens.create_token(site.settings, "short-lived", "agent", ["reader"])
    dest, _ = _clone(site, "clone-revoked", site.url(token))
    tokens.revoke_token(site.settings, "short-lived")
    done = site.git.run("fetch", "origin", cwd=dest, check=False)
    assert done.returncode != 0 and "Authentication failed" in done.stderr


def test_push_is_refused_with_a_message(site: Site) -> None:
    git = site.git
    dest, _ = _clone(site, "clone-push", site.url(site.reader))
    before = git.out("rev-parse", "main", cwd=site.hcm)
    git.commit(dest, "pushed.txt", "nope\n")
    done = git.run("push", "origin", "HEAD:main", cwd=dest, check=False)
    assert done.returncode != 0
    assert "read-only over HTTP" in done.stderr and "push from your clone" in done.stderr
    assert git.out("rev-parse", "main", cwd=site.hcm) == before
    with site.http() as http:
        auth = {"Authorization": f"Bearer {site.reader}"}
        for answer in (
            http.get(f"{GIT_BASE}/info/refs", params={"service": "git-receive-pack"}, headers=auth),
            http.post(f"{GIT_BASE}/git-receive-pack", content=b"0000", headers=auth),
        ):
            assert answer.status_code == 403
            assert answer.text == PUSH_REFUSED


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/info/refs", 403),  # dumb discovery
        ("GET", "/info/refs?service=git-upload-archive", 403),
        ("POST", "/git-upload-archive", 403),
        ("GET", "/HEAD", 404),
        ("GET", "/objects/info/packs", 404),
        ("GET", "/objects/info/alternates", 404),
        ("GET", "/objects/ab/" + "c" * 38, 404),
        ("GET", "/objects/pack/pack-" + "a" * 40 + ".pack", 404),
        ("GET", "/config", 404),
        ("GET", "/../.git/config", 404),
        ("PUT", "/info/refs", 404),
    ],
)
def test_dumb_routes_and_archive_are_refused(site: Site, method: str, path: str, status: int) -> None:
    with site.http() as http:
        answer = http.request(method, GIT_BASE + path, headers={"Authorization": f"Bearer {site.reader}"})
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/plain")
    assert b"[core]" not in answer.content and b"PACK" not in answer.content


def _pkt(line: str) -> bytes:
    data = line.encode()
    return f"{len(data) + 4:04x}".encode() + data


def _want(sha: str) -> bytes:
    return _pkt(f"want {sha} side-band-64k thin-pack ofs-delta no-progress\n") + b"0000" + _pkt("done\n")


def _post(site: Site, body: bytes, **headers: str) -> httpx.Response:
    with site.http() as http:
        return http.post(
            f"{GIT_BASE}/git-upload-pack",
            content=body,
            headers={
                "Authorization": f"Bearer {site.reader}",
                "Content-Type": "application/x-git-upload-pack-request",
                **headers,
            },
        )


def test_upload_pack_accepts_gzip_requests(site: Site) -> None:
    head = site.git.out("rev-parse", "main", cwd=site.hcm)
    answer = _post(site, gzip.compress(_want(head)), **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-git-upload-pack-result"
    assert answer.headers["cache-control"].startswith("no-cache")
    assert b"PACK" in answer.content


def test_upload_pack_refuses_what_it_must(site: Site) -> None:
    head = site.git.out("rev-parse", "main", cwd=site.hcm)
    # A want that is not an advertised tip: an ERR line, no pack.
    hidden = _post(site, _want(site.hidden))
    assert hidden.status_code == 200 and b"ERR " in hidden.content and b"PACK" not in hidden.content
    # Browsers cannot send this type cross-site without a preflight.
    wrong_type = _post(site, _want(head), **{"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    # A gzip bomb is cut at the cap, not inflated into memory.
    bomb = gzip.compress(b"0" * (MAX_REQUEST + 1))
    assert len(bomb) < MAX_REQUEST // 100
    assert _post(site, bomb, **{"Content-Encoding": "gzip"}).status_code == 413
    assert _post(site, b"x" * (MAX_REQUEST + 1)).status_code == 413
    assert _post(site, b"not gzip", **{"Content-Encoding": "gzip"}).status_code == 400
    assert _post(site, _want(head), **{"Content-Encoding": "br"}).status_code == 400


def test_presented_token_parsing() -> None:
    def request(value: str | None) -> Request:
        headers = [] if value is None else [(b"authorization", value.encode())]
        return Request({"type": "http", "headers": headers})

    basic = base64.b64encode(b"user:arka_tok:with:colons").decode()
    assert presented_token(request("Bearer arka_tok")) == "arka_tok"
    assert presented_token(request("bearer   arka_tok ")) == "arka_tok"
    assert presented_token(request(f"Basic {basic}")) == "arka_tok:with:colons"
    assert presented_token(request("Basic " + base64.b64encode(b"user:").decode())) is None
    assert presented_token(request("Basic !!!")) is None
    assert presented_token(request("Digest abc")) is None
    assert presented_token(request(None)) is None


def _upload_packs(gitdir: Path) -> list[int]:
    """The git upload-pack processes serving ``gitdir`` (the export's pack writers), from /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"upload-pack" in argv and str(gitdir).encode() in argv and state != "Z":
            found.append(int(pid))
    return found


def test_large_pack_streams_and_a_hung_up_client_frees_the_writer(site: Site) -> None:
    git = site.git
    big = os.urandom(6 * 1024 * 1024)  # incompressible: the pack is as large as the blob
    (site.hcm / "stable").mkdir(exist_ok=True)
    (site.hcm / "stable" / "big.bin").write_bytes(big)
    git.run("add", "stable/big.bin", cwd=site.hcm)
    git.run("commit", "-q", "-m", "big", cwd=site.hcm)
    head = git.out("rev-parse", "main", cwd=site.hcm)

    dest, _ = _clone(site, "clone-big", site.url(site.reader))
    assert (dest / "stable" / "big.bin").read_bytes() == big

    # A client that reads one chunk and hangs up must not leave a pack writer behind (the
    # writer is git upload-pack now; it was a dulwich thread).
    with (
        site.http() as http,
        http.stream(
            "POST",
            f"{GIT_BASE}/git-upload-pack",
            content=_want(head),
            headers={
                "Authorization": f"Bearer {site.reader}",
                "Content-Type": "application/x-git-upload-pack-request",
            },
        ) as answer,
    ):
        assert answer.status_code == 200
        first = next(answer.iter_raw())
        assert first
    deadline = time.monotonic() + 15
    while _upload_packs(site.hcm / ".git"):
        assert time.monotonic() < deadline, "the pack writer kept running after the client left"
        time.sleep(0.05)
