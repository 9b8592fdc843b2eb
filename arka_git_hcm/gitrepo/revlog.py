"""First-parent history as a stream of records: what the history index is built from.

One `git log` process streams every commit newest first with its message and the paths it
changed against its first parent (a million commits never sit in memory). Records are framed by
NUL bytes and a random marker chosen per run: a commit message written by hand can hold any
text, but cannot guess the marker, so no message can forge a record boundary.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .gitcli import git_stream, run_git

__all__ = ["LoggedCommit", "first_parent_count", "log_first_parent"]


@dataclass(frozen=True)
class LoggedCommit:
    id: str
    parent: str | None
    commit_time: int
    author_name: str
    author_email: str
    message: str
    paths: tuple[str, ...]


def first_parent_count(workdir: Path, tip: str) -> int:
    return int(run_git(workdir, "rev-list", "--first-parent", "--count", tip).stdout.decode().strip() or 0)


def _tokens(stream: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in stream:
        pending += chunk
        *done, pending = pending.split(b"\0")
        yield from done
    if pending:
        yield pending


def log_first_parent(workdir: Path, tip: str) -> Iterator[LoggedCommit]:
    """Commits from ``tip`` back to the root along first parents, newest first. Stop iterating
    whenever (the git process is ended)."""
    marker = b"\x01arka-" + secrets.token_hex(8).encode() + b" "
    fmt = "%x01arka-" + marker[6:-1].decode() + " %H %ct %P%x00%an%x00%ae%x00%B"
    args = [
        "log",
        "--first-parent",
        "--no-renames",
        "--no-color",
        "-z",
        "--name-only",
        f"--format={fmt}",
        tip,
    ]
    with git_stream(workdir, *args) as out:
        tokens = _tokens(iter(lambda: out.read(1 << 16), b""))
        current: list[bytes] | None = None
        paths: list[str] = []
        for token in tokens:
            if token.startswith(marker):
                if current is not None:
                    yield _record(current, paths)
                head = token[len(marker) :]
                name, email, message = next(tokens), next(tokens), next(tokens)
                current, paths = [head, name, email, message], []
                continue
            path = token.lstrip(b"\n")
            if path:
                paths.append(path.decode("utf-8", "surrogateescape"))
        if current is not None:
            yield _record(current, paths)


def _record(parts: list[bytes], paths: list[str]) -> LoggedCommit:
    head, name, email, message = parts
    fields = head.decode("ascii").split(" ")
    return LoggedCommit(
        id=fields[0],
        parent=fields[2] if len(fields) > 2 and fields[2] else None,
        commit_time=int(fields[1]),
        author_name=name.decode("utf-8", "replace"),
        author_email=email.decode("utf-8", "replace"),
        message=message.decode("utf-8", "replace"),
        paths=tuple(paths),
    )
