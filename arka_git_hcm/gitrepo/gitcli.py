"""Running the git binary: the one runner of the adapter (fsck, index refresh, repack, bundles,
pushes, history streams, hook checks, fast-export/import all go through it).

Hermetic: no user or system config, no GIT_* from the caller's shell (:func:`hermetic_git_env`),
``safe.directory=*`` (the store decides which folder it serves, not git's owner check: in a
container the volume belongs to the host's user), with one deliberate exception: a git *hook* runs with the
variables git sets for it (``GIT_DIR``, ``GIT_INDEX_FILE`` of a ``commit -a``, and in
pre-receive ``GIT_OBJECT_DIRECTORY``/``GIT_QUARANTINE_PATH``, where the pushed objects wait until
the hook accepts them). ``hook_env=True`` keeps exactly those, so a check run from a hook sees
the objects and the index it is asked about, and nothing else from the environment.

Progress: git prints ``Phase:  45% (450/1000)`` lines on stderr when asked (``--progress``);
:func:`run_git` turns them into ``on_progress(phase, done, total)`` calls when given a callback.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "GitFailed",
    "HOOK_VARIABLES",
    "Progress",
    "cat_objects",
    "git_binary",
    "git_stream",
    "hermetic_git_env",
    "run_git",
]

Progress = Callable[[str, int, int], None]


def git_binary() -> str | None:
    return shutil.which("git")


def hermetic_git_env() -> dict[str, str]:
    """git with no user or system config and no GIT_* leaking from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


# What git itself sets for a hook and the hook's git commands need (never anything else).
HOOK_VARIABLES = (
    "GIT_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
)
_PROGRESS = re.compile(rb"^(?:remote: )?([A-Za-z][A-Za-z ]+):\s+\d+% \((\d+)/(\d+)\)")


class GitFailed(OSError):
    """git exited non-zero; ``stderr`` is its message (never holds credentials: none are
    passed on git's command line or in its URL)."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args[:2])} failed ({returncode}): {stderr[:800]}")
        self.returncode = returncode
        self.stderr = stderr


def _env(hook_env: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = hermetic_git_env()
    if hook_env:
        for name in HOOK_VARIABLES:
            value = os.environ.get(name)
            if value:
                env[name] = value
    if extra:
        env.update(extra)
    return env


def _command(cwd: Path | None, args: tuple[str, ...]) -> list[str]:
    git = git_binary()
    if git is None:
        raise FileNotFoundError("git: the git binary is needed here; install git")
    location = ["-C", str(cwd)] if cwd is not None else []
    return [git, "-c", "safe.directory=*", *location, *args]


def run_git(
    cwd: Path | None,
    *args: str,
    stdin: bytes | None = None,
    timeout: float = 3600,
    env: Mapping[str, str] | None = None,
    hook_env: bool = False,
    check: bool = True,
    on_progress: Progress | None = None,
    keep_fds: tuple[int, ...] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run git; GitFailed when it fails and ``check``. With ``on_progress``, git's progress
    lines on stderr are reported as they come (pass ``--progress`` in ``args``)."""
    command = _command(cwd, args)
    if on_progress is None:
        proc = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            env=_env(hook_env, env),
            timeout=timeout,
            pass_fds=keep_fds,
        )
    else:
        proc = _run_with_progress(command, stdin, _env(hook_env, env), timeout, on_progress, keep_fds)
    if check and proc.returncode != 0:
        raise GitFailed(args, proc.returncode, _text(proc.stderr))
    return proc


def _text(data: bytes) -> str:
    lines = [line for line in re.split(rb"[\r\n]", data) if line.strip() and not _PROGRESS.match(line)]
    return b"\n".join(lines).decode("utf-8", "replace").strip()


def _run_with_progress(
    command: list[str],
    stdin: bytes | None,
    env: dict[str, str],
    timeout: float,
    on_progress: Progress,
    keep_fds: tuple[int, ...],
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        pass_fds=keep_fds,
    )
    out: list[bytes] = []
    assert proc.stdout is not None and proc.stderr is not None
    reader = threading.Thread(
        target=lambda: out.append(proc.stdout.read() if proc.stdout else b""), daemon=True
    )
    reader.start()
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin)
        proc.stdin.close()
    err = bytearray()
    pending = b""
    stderr = proc.stderr
    for chunk in iter(lambda: os.read(stderr.fileno(), 4096), b""):
        err.extend(chunk)
        pending += chunk
        *lines, pending = re.split(rb"[\r\n]", pending)
        for line in lines:
            found = _PROGRESS.match(line)
            if found:
                on_progress(found.group(1).decode().strip(), int(found.group(2)), int(found.group(3)))
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    reader.join()
    proc.stdout.close()
    proc.stderr.close()
    return subprocess.CompletedProcess(command, proc.returncode, b"".join(out), bytes(err))


@contextlib.contextmanager
def git_stream(
    cwd: Path, *args: str, hook_env: bool = False, stdin: bytes | None = None
) -> Iterator[IO[bytes]]:
    """git's standard output as a stream (a million-commit log is never held in memory), with
    ``stdin`` fed to git from a thread meanwhile. GitFailed at the end when git failed (unless
    the reader stopped early)."""
    proc = subprocess.Popen(
        _command(cwd, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        env=_env(hook_env, None),
        bufsize=65536,
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    drain = threading.Thread(
        target=lambda: errors.append(proc.stderr.read() if proc.stderr else b""), daemon=True
    )
    drain.start()
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    early = True
    try:
        yield proc.stdout
        early = proc.poll() is None and bool(proc.stdout.peek(1) if hasattr(proc.stdout, "peek") else True)
    finally:
        if early:  # the reader stopped before the end (or failed): git need not finish
            proc.stdout.close()
            proc.kill()
        code = proc.wait()
        drain.join()
        proc.stderr.close()
        if not early:
            proc.stdout.close()
    if not early and code != 0:
        raise GitFailed(args, code, _text(b"".join(errors)))


def _feed(pipe: IO[bytes] | None, data: bytes) -> None:
    if pipe is None:
        return
    with contextlib.suppress(BrokenPipeError, ValueError):  # git stopped reading: it says why
        pipe.write(data)
    with contextlib.suppress(BrokenPipeError, ValueError):
        pipe.close()


def cat_objects(
    cwd: Path, object_ids: Sequence[str], *, hook_env: bool = False
) -> Iterator[tuple[str, bytes | None]]:
    """(id, content) of each object, in the order asked, None for one git does not have: one
    `git cat-file --batch` that finds and inflates objects on its own core while the caller
    works on the ones already read (a full search-index build reads 100,000 blobs: half of
    libgit2's CPU in this process, measured). OSError when git stops short."""
    if not object_ids:
        return
    payload = "".join(f"{oid}\n" for oid in object_ids).encode()
    with git_stream(cwd, "cat-file", "--batch", "--buffer", hook_env=hook_env, stdin=payload) as out:
        readline, read = out.readline, out.read
        for oid in object_ids:
            header = readline()
            fields = header.split()
            if len(fields) != 3:
                if not header.endswith(b"\n"):
                    raise OSError(f"git cat-file stopped before object {oid}")
                yield oid, None  # "<id> missing" (or "ambiguous")
                continue
            size = int(fields[2])
            data = read(size)
            if len(data) != size or read(1) != b"\n":
                raise OSError(f"git cat-file stopped inside object {oid}")
            yield oid, data
