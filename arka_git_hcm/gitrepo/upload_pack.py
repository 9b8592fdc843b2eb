"""One ``git upload-pack --stateless-rpc`` child of the HTTP export (gitrepo/http_export.py
decides what it may be asked; this module starts it, feeds it, streams it and ends it).

- **command line**: built here from constants and the repository path, never from a request;
  every setting of ``PINNED_CONFIG`` comes after the repository's own config (``-c``), so a
  setting in ``.git/config`` cannot widen what is served;
- **environment**: a short allow-list (PATH, TMPDIR, git's config switches, ``LC_ALL`` and
  ``GIT_PROTOCOL``, one of three constants): no token, no header, nothing else of the server's
  environment reaches git. This is stricter than gitcli's runner (the store's own git commands
  keep the server's environment minus ``GIT_*``): these children act on a caller's bytes;
- **its own session** at nice 10 with ``pack.threads=1``: a clone uses at most one core, a write
  outranks it, and :func:`kill_group` ends upload-pack and the pack-objects it started at once;
- **streaming**: :class:`UploadPack` reads the answer on the event loop from a non-blocking
  pipe, one chunk at a time; when nobody reads, git blocks on its pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from ..errors import IoError
from . import gitcli

__all__ = [
    "PINNED_CONFIG",
    "UploadPack",
    "child_env",
    "error_line",
    "kill_group",
    "pkt_line",
    "run_check",
    "spawn",
    "tail",
    "upload_pack_command",
]

logger = logging.getLogger(__name__)

# After the repository's own config (command-line settings come last): for the multi-valued
# hideRefs the last matching entry wins, for the others the last value does.
PINNED_CONFIG = (
    "safe.directory=*",
    "uploadpack.hideRefs=refs/",
    "uploadpack.hideRefs=!refs/heads/",
    "uploadpack.hideRefs=!refs/tags/",
    "uploadpack.allowTipSHA1InWant=false",
    "uploadpack.allowReachableSHA1InWant=false",
    "uploadpack.allowAnySHA1InWant=false",
    "uploadpack.allowRefInWant=false",
    "uploadpack.allowFilter=false",
    "uploadpack.allowSidebandAll=false",
    "uploadpack.keepAlive=5",  # keep-alive packets while pack-objects counts in silence
    "transfer.advertiseSID=false",
    "pack.threads=1",
)
_ENV_KEPT = ("PATH", "TMPDIR")
_PROTOCOL_ENV = {1: "version=1", 2: "version=2"}
_NICE = 10
_CHUNK = 256 * 1024
_CHECK_TIMEOUT_S = 600.0


def error_line(message: str) -> bytes:
    """An ``ERR`` pkt-line: git stops and prints ``remote error: <message>``."""
    return pkt_line(b"ERR " + message.encode("utf-8", "replace")[:900])


def pkt_line(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def _git_program() -> str:
    git = gitcli.git_binary()
    if git is None:
        raise IoError("the git binary is not installed on the server; install git to serve clones")
    return git


def child_env(version: int) -> dict[str, str]:
    """The child's whole environment: an allow-list, and constants."""
    inherited = gitcli.hermetic_git_env()
    env = {name: inherited[name] for name in _ENV_KEPT if name in inherited}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    if version in _PROTOCOL_ENV:
        env["GIT_PROTOCOL"] = _PROTOCOL_ENV[version]
    return env


def upload_pack_command(gitdir: Path, *, advertise: bool) -> list[str]:
    command = [_git_program()]
    for setting in PINNED_CONFIG:
        command += ["-c", setting]
    command += ["upload-pack", "--stateless-rpc", "--strict"]
    if advertise:
        command.append("--advertise-refs")
    return [*command, str(gitdir)]


def run_check(gitdir: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """A short git command of the v2 checks, with the same environment as upload-pack."""
    return subprocess.run(
        [_git_program(), "-c", "safe.directory=*", "--git-dir", str(gitdir), *args],
        input=stdin,
        capture_output=True,
        env=child_env(0),
        timeout=_CHECK_TIMEOUT_S,
        check=False,
    )


def spawn(
    command: list[str], env: dict[str, str], lock_fd: int | None, stderr: int | IO[bytes], *, stdin: bool
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        close_fds=True,  # nothing of the server (its sockets, files) but the lock
        pass_fds=() if lock_fd is None else (lock_fd,),
        start_new_session=True,  # its own process group: pack-objects is killed with it
    )
    with contextlib.suppress(OSError):
        # Before it reads its request, so pack-objects, started later, inherits it.
        os.setpriority(os.PRIO_PROCESS, proc.pid, _NICE)
    return proc


def kill_group(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL to the child's process group (upload-pack and its pack-objects), if it runs."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return True


def tail(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[-800:]


class UploadPack:
    """One running ``git upload-pack``. Its request is fed by a short-lived thread (git reads it
    whole before it answers); its answer is read on the event loop from a non-blocking pipe,
    one chunk at a time (no thread per clone, one chunk in memory: when nobody reads, git
    blocks on its pipe). Its stderr goes to an unnamed temporary file, read when it fails."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], request: bytes) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self._stderr = stderr
        self._killed = False
        self._out = proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._feeder = threading.Thread(
            target=_feed, args=(proc.stdin, request), name="hcm-upload-pack-request", daemon=True
        )
        self._feeder.start()

    async def _read(self) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            try:
                return os.read(self._out, _CHUNK)
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(self._out, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(self._out)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The answer as it comes; an ``ERR`` line when git fails before answering anything."""
        sent = 0
        while data := await self._read():
            sent += len(data)
            yield data
        code = await asyncio.to_thread(self.proc.wait)
        if code != 0 and not self._killed:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 4096))
            logger.warning("git upload-pack exited with %s: %s", code, tail(self._stderr.read()))
            if sent == 0:
                yield error_line("upload-pack failed; see the server log")

    async def aclose(self) -> None:
        """Kill the child's process group if it still runs, reap it, close our ends."""
        self._killed = kill_group(self.proc) or self._killed
        # Reaped in a worker thread: it ends even if this await is cancelled.
        await asyncio.to_thread(self.proc.wait)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _feed(pipe: IO[bytes], request: bytes) -> None:
    """Write the request to git's stdin and close it (git then sees its end)."""
    try:
        pipe.write(request)
    except OSError:  # git ended (or was killed) without reading it all
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()
