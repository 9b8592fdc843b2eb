"""The index updater in a child process, so that indexing never takes the server's CPU or GIL.

Measured in the server's process, keeping the index up costs ~1 ms of CPU per write at 100,000
files (reading and diffing the new trees, parsing the changed files, FTS5's tokenizing and
merging), most of it under the GIL the request handlers and the committer share, and more than
the 5% a write may lose. So the server's follower hands each round to a child process, one per
store, that holds its own repository handle and SQLite connection and answers one JSON line per
request on its standard output:

    parent -> child   {"op": "catch_up", "tip": "<commit>", "verify": true}
                      {"op": "rebuild", "tip": "<commit>", "reason": "...", "wait_s": 30}
    child -> parent   {"report": {...UpdateReport...} | null}      (null: another process updates)
                      {"error": "..."}

The child exits when its standard input closes, so it never outlives its parent (a killed server
included). If it dies, the parent's next round starts a new one; an update it was making is
either committed or not at all (see updater.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from .schema import IndexFiles
from .updater import UpdateReport

__all__ = ["ChildUpdater", "main", "serve"]

log = logging.getLogger("arka_git_hcm.search")


# run by code, not as ``-m`` (the package imports this module: runpy would run it twice)
_CHILD = "import sys; from arka_git_hcm.search.child import main; main(sys.argv[1])"


class ChildUpdater:
    """The updater's interface (catch_up, rebuild, close, files), answered by a child process."""

    def __init__(self, workdir: Path, files: IndexFiles) -> None:
        self.workdir = Path(workdir)
        self.files = files
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request at a time (the follower; a rebuild asked for)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before the first round)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def catch_up(self, tip: str | None, *, wait_s: float = 0.0, verify: bool = False) -> UpdateReport | None:
        if tip is None:
            return None
        return self._ask({"op": "catch_up", "tip": tip, "wait_s": wait_s, "verify": verify})

    def rebuild(self, tip: str, *, wait_s: float = 60.0, reason: str = "asked") -> UpdateReport | None:
        return self._ask({"op": "rebuild", "tip": tip, "wait_s": wait_s, "reason": reason})

    def close(self) -> None:
        """Close the child's input (it exits after its current request); a child still busy
        after a few seconds (a rebuild) is stopped: what it was writing is never made current."""
        proc, self._proc = self._proc, None  # no lock: the follower may be waiting on an answer
        if proc is None:
            return
        _close_quietly(proc.stdin)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _close_quietly(proc.stdout)

    def _ask(self, request: dict[str, Any]) -> UpdateReport | None:
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                line = proc.stdout.readline()  # the GIL is released while the child works
            except OSError:
                line = b""
            if not line:
                self._proc = None
                _close_quietly(proc.stdin)
                _close_quietly(proc.stdout)
                proc.wait()
                raise RuntimeError(f"the search index updater exited (code {proc.returncode})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the search index updater failed: {answer['error']}")
        report = answer.get("report")
        return None if report is None else UpdateReport(**report)

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is not None:  # it died since: let it go
            _close_quietly(self._proc.stdin)
            _close_quietly(self._proc.stdout)
            self._proc = None
        if self._proc is None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(self.workdir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._proc


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def serve(workdir: Path) -> None:
    """The child's side: answer requests from stdin until it closes."""
    from ..gitrepo import GitRepo
    from .updater import IndexUpdater

    repo = GitRepo(workdir)
    updater = IndexUpdater(repo, IndexFiles(repo.git_dir))
    try:
        for line in sys.stdin.buffer:
            request = json.loads(line)
            try:
                repo.notice_rollups()  # packs folded by the parent: reopen, as the store does
                if request["op"] == "rebuild":
                    report = updater.rebuild(
                        request["tip"], wait_s=request["wait_s"], reason=request["reason"]
                    )
                else:
                    report = updater.catch_up(
                        request["tip"], wait_s=request["wait_s"], verify=request["verify"]
                    )
                answer: dict[str, Any] = {"report": None if report is None else report.to_json()}
            except Exception as exc:  # reported to the parent, whose follower retries
                log.warning("search index update failed", exc_info=True)
                answer = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        updater.close()
        repo.close()


def main(workdir: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="arka-hcm search updater: %(message)s")
    serve(Path(workdir))
