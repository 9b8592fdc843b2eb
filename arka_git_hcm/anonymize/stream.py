"""Reading and writing git's fast-export / fast-import stream (``git help fast-import``).

The parser is linear and streaming: commands are read line by line, ``data <n>`` payloads with
one read of ``n`` bytes, and each command is handed on as soon as it is complete, so a history of
any length passes through in constant memory (blobs wait only until the commit that names them,
which fast-export writes right after them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

__all__ = [
    "Blob",
    "Commit",
    "FileOp",
    "Ident",
    "Reset",
    "StreamError",
    "Tag",
    "format_ident",
    "parse_ident",
    "parse_stream",
    "quote_path",
    "unquote_path",
]


class StreamError(ValueError):
    """The stream is not what fast-export writes (a git we do not know, or a cut stream)."""


class Ident:
    """``Name <email> <seconds> <tz>`` of an author, committer or tagger."""

    __slots__ = ("email", "name", "seconds", "tz")

    def __init__(self, name: str, email: str, seconds: int, tz: str) -> None:
        self.name = name
        self.email = email
        self.seconds = seconds
        self.tz = tz


def parse_ident(raw: bytes) -> Ident:
    text = raw.decode("utf-8", "surrogateescape")
    lt = text.find("<")
    gt = text.rfind(">")
    if lt < 0 or gt < lt:
        raise StreamError("an identity without <email>")
    when = text[gt + 1 :].split()
    seconds = int(when[0]) if when else 0
    tz = when[1] if len(when) > 1 else "+0000"
    return Ident(text[:lt].strip(), text[lt + 1 : gt], seconds, tz)


def format_ident(ident: Ident) -> bytes:
    return f"{ident.name} <{ident.email}> {ident.seconds} {ident.tz}".encode("utf-8", "surrogateescape")


class Blob:
    __slots__ = ("data", "mark")

    def __init__(self, mark: str, data: bytes) -> None:
        self.mark = mark
        self.data = data


class FileOp:
    """``M <mode> <dataref> <path>``, ``D <path>`` or ``deleteall``."""

    __slots__ = ("kind", "mode", "path", "ref")

    def __init__(self, kind: str, path: str = "", mode: str = "", ref: str = "") -> None:
        self.kind = kind
        self.path = path
        self.mode = mode
        self.ref = ref


class Commit:
    __slots__ = (
        "author",
        "committer",
        "encoding",
        "mark",
        "merges",
        "message",
        "ops",
        "original",
        "parent",
        "ref",
    )

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.mark = ""
        self.original = ""
        self.author: Ident | None = None
        self.committer: Ident | None = None
        self.encoding = ""
        self.message = b""
        self.parent = ""
        self.merges: list[str] = []
        self.ops: list[FileOp] = []


class Tag:
    __slots__ = ("mark", "message", "name", "original", "tagger", "target")

    def __init__(self, name: str) -> None:
        self.name = name
        self.mark = ""
        self.original = ""
        self.target = ""
        self.tagger: Ident | None = None
        self.message = b""


class Reset:
    __slots__ = ("ref", "target")

    def __init__(self, ref: str, target: str) -> None:
        self.ref = ref
        self.target = target


_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, '"': 34, "\\": 92}


def unquote_path(raw: bytes) -> str:
    """A path as fast-export writes it: plain, or C-quoted with octal escapes for bytes."""
    if not raw.startswith(b'"'):
        return raw.decode("utf-8", "surrogateescape")
    out = bytearray()
    index = 1
    end = len(raw) - 1
    while index < end:
        char = raw[index]
        if char == 92:  # backslash
            nxt = chr(raw[index + 1])
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                index += 2
            else:
                out.append(int(raw[index + 1 : index + 4], 8))
                index += 4
        else:
            out.append(char)
            index += 1
    return out.decode("utf-8", "surrogateescape")


def quote_path(path: str) -> bytes:
    raw = path.encode("utf-8", "surrogateescape")
    if not (raw.startswith(b'"') or any(b < 32 or b == 92 for b in raw)):
        return raw
    out = bytearray(b'"')
    for byte in raw:
        if byte in (34, 92):
            out += b"\\" + bytes([byte])
        elif byte < 32 or byte == 127:
            out += f"\\{byte:03o}".encode()
        else:
            out.append(byte)
    return bytes(out + b'"')


def _data(stream: IO[bytes], line: bytes) -> bytes:
    if not line.startswith(b"data "):
        raise StreamError(f"expected a data command, got {line[:40]!r}")
    size = int(line[5:])
    data = stream.read(size)
    if len(data) != size:
        raise StreamError("the stream ended inside a data block")
    return data


def parse_stream(stream: IO[bytes]) -> Iterator[Blob | Commit | Tag | Reset]:
    """Every command of a fast-export stream, in order; ``done`` must end it."""
    readline = stream.readline
    line = readline()
    while line:
        if line == b"\n":
            line = readline()
            continue
        if line == b"blob\n":
            mark_line = readline()
            mark = mark_line[5:-1].decode()
            line = readline()
            if line.startswith(b"original-oid "):
                line = readline()
            yield Blob(mark, _data(stream, line))
            line = readline()
        elif line.startswith(b"commit "):
            commit = Commit(line[7:-1].decode("utf-8", "surrogateescape"))
            line = _commit_body(stream, commit)
            yield commit
        elif line.startswith(b"tag "):
            tag = Tag(line[4:-1].decode("utf-8", "surrogateescape"))
            line = readline()
            while not line.startswith(b"data "):
                if line.startswith(b"mark "):
                    tag.mark = line[5:-1].decode()
                elif line.startswith(b"from "):
                    tag.target = line[5:-1].decode()
                elif line.startswith(b"original-oid "):
                    tag.original = line[13:-1].decode()
                elif line.startswith(b"tagger "):
                    tag.tagger = parse_ident(line[7:-1])
                else:
                    raise StreamError(f"unexpected line in a tag: {line[:40]!r}")
                line = readline()
            tag.message = _data(stream, line)
            yield tag
            line = readline()
        elif line.startswith(b"reset "):
            ref = line[6:-1].decode("utf-8", "surrogateescape")
            line = readline()
            target = ""
            if line.startswith(b"from "):
                target = line[5:-1].decode()
                line = readline()
            yield Reset(ref, target)
        elif line == b"done\n":
            return
        elif line.startswith((b"feature ", b"progress ")):
            line = readline()
        else:
            raise StreamError(f"unexpected command {line[:40]!r}")
    raise StreamError("the stream ended without 'done' (git fast-export was interrupted)")


def _commit_body(stream: IO[bytes], commit: Commit) -> bytes:
    readline = stream.readline
    line = readline()
    while not line.startswith(b"data "):
        if line.startswith(b"mark "):
            commit.mark = line[5:-1].decode()
        elif line.startswith(b"original-oid "):
            commit.original = line[13:-1].decode()
        elif line.startswith(b"author "):
            commit.author = parse_ident(line[7:-1])
        elif line.startswith(b"committer "):
            commit.committer = parse_ident(line[10:-1])
        elif line.startswith(b"encoding "):
            commit.encoding = line[9:-1].decode()
        else:
            raise StreamError(f"unexpected line in a commit: {line[:40]!r}")
        line = readline()
    # fast-export writes the file commands right after the message's bytes (a message without a
    # final newline is glued to them: the byte count, not a line, ends it); a blank line ends
    # the commit.
    commit.message = _data(stream, line)
    line = readline()
    while line and line != b"\n":
        if line.startswith(b"M "):
            mode, ref, rest = line[2:-1].split(b" ", 2)
            commit.ops.append(FileOp("M", unquote_path(rest), mode.decode(), ref.decode()))
        elif line.startswith(b"D "):
            commit.ops.append(FileOp("D", unquote_path(line[2:-1])))
        elif line == b"deleteall\n":
            commit.ops.append(FileOp("deleteall"))
        elif line.startswith(b"from "):
            commit.parent = line[5:-1].decode()
        elif line.startswith(b"merge "):
            commit.merges.append(line[6:-1].decode())
        else:
            raise StreamError(f"unexpected file command {line[:40]!r}")
        line = readline()
    return readline()
