"""The one resolver that turns HCM-relative paths into locations under HCM_ROOT.

Every HCM path the code builds goes through :func:`check_relative` (syntax) and, when it
touches the disk, :meth:`PathResolver.resolve` (symlinks). Bad paths are *rejected*, never
"cleaned": cleaning is how traversal bugs are born. Each rule names the attack it stops.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .errors import UnsafePath
from .ids import WINDOWS_DEVICE_NAMES

__all__ = [
    "PathResolver",
    "check_component",
    "check_relative",
    "find_fold_collision",
    "fold_key",
    "join",
    "split",
]

MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255

# Code points that HFS+ ignores when comparing names and that render as nothing: ".g\u200cit"
# is ".git" to macOS (CVE-2014-9390). Stripped before comparing against ".git".
_IGNORABLE = frozenset(
    [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, 0x00AD, 0x034F]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x2070))
)


# Windows opens a device for these stems whatever the extension. Beyond the contract's list (which
# ids.py enforces), paths also refuse the console and clock devices, and the superscript-digit
# forms "COM\u00b9".."LPT\u00b3" that Windows also reserves (they reach us through NFKC below).
_DEVICE_NAMES = WINDOWS_DEVICE_NAMES | frozenset({"conin$", "conout$", "clock$"})

# NTFS 8.3 short names of any ".git*" entry: "GIT~1" (.git), "GITMOD~1" (.gitmodules) and the
# hashed fallback "GI7EBA~1" all start with "gi" once the leading dot is dropped (CVE-2019-1353,
# CVE-2014-9390 NTFS variant). We refuse every such shape rather than compute the hashes.
_SHORT_NAME_OF_DOT_GIT = re.compile(r"^gi[^~]{0,4}~[0-9]+(?:\..*)?$")


def _reject(path: str, why: str) -> UnsafePath:
    return UnsafePath(f"unsafe path {path[:200]!r}: {why}", {"path": path[:200], "reason": why})


def fold_key(name: str) -> str:
    """The key under which two names are "the same file" on a case-insensitive or NFD filesystem.

    Unicode's canonical caseless match, NFD(casefold(NFD(x))), returned in NFC; code points that
    HFS+ ignores are dropped first. Deliberately broader than any one filesystem's folding."""
    stripped = "".join(ch for ch in name if ord(ch) not in _IGNORABLE)
    nfd = unicodedata.normalize("NFD", unicodedata.normalize("NFD", stripped).casefold())
    return unicodedata.normalize("NFC", nfd)


def _compat_key(component: str) -> str:
    """``fold_key`` after compatibility folding: fullwidth ".ｇｉｔ" or "COM¹" show their plain form."""
    return fold_key(unicodedata.normalize("NFKC", fold_key(component)))


def _looks_like_dot_git(component: str) -> bool:
    for folded in (fold_key(component), _compat_key(component)):
        # Windows drops trailing dots and spaces (".git. " is ".git"), NTFS keeps 8.3 aliases such
        # as "git~1", and any ".git*" name is refused: .gitattributes can declare filters that run
        # programs, .gitmodules points at other repositories, .gitignore hides files from review.
        trimmed = folded.rstrip(". ")
        if trimmed.startswith(".git") or trimmed.startswith("git~") or _SHORT_NAME_OF_DOT_GIT.match(trimmed):
            return True
    return False


def check_component(component: str, path: str) -> None:
    problem = _component_problem(component)
    if problem is not None:
        raise _reject(path, problem)


@functools.lru_cache(maxsize=65536)
def _component_problem(component: str) -> str | None:
    """Why a path component is refused, or None. Cached: the same few thousand names (layers,
    mission ids, file names) come back on every operation, and the Unicode folding is not free."""
    try:
        _check_component_uncached(component)
    except UnsafePath as exc:
        return str(exc.details["reason"])
    return None


def _check_component_uncached(component: str, path: str = "") -> None:
    path = path or component
    if component in ("", ".", ".."):
        raise _reject(path, "empty, '.' or '..' component (parent traversal)")
    if fold_key(component) in ("", ".", ".."):
        # "\u200c" or "..\u200c": invisible code points that HFS+ ignores, so the name is empty, "."
        # or ".." there, and it reads as one of those in every listing and review.
        raise _reject(path, "a name made of '.'/'..' and invisible code points (HFS+ ignores them)")
    if len(component.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
        raise _reject(path, f"a component is longer than {MAX_COMPONENT_BYTES} bytes")
    if _looks_like_dot_git(component):
        raise _reject(path, "names .git or a disguise of it (the repository itself is never reachable)")
    compat = _compat_key(component)
    if compat in ("", ".", "..") or any(sep in compat for sep in "/\\:"):
        # "．．" or "a／b": tools that map names through Windows "best fit" code pages turn them
        # into a real traversal or separator.
        raise _reject(path, "a compatibility form of '.', '..', '/', '\\' or ':'")
    for key in (fold_key(component), compat):
        if key.split(".", 1)[0].rstrip(" ") in _DEVICE_NAMES:
            raise _reject(path, "Windows device name (opens a device on a Windows checkout)")
    if component != component.strip() or component.endswith("."):
        raise _reject(path, "leading/trailing space or trailing dot (Windows silently drops them)")


def check_relative(path: str) -> str:
    """Validate an HCM-relative POSIX path and return it unchanged, or raise UnsafePath."""
    if not isinstance(path, str):
        raise _reject(str(path), "not a string")
    problem = _path_problem(path)
    if problem is not None:
        raise _reject(path, problem)
    return path


@functools.lru_cache(maxsize=65536)
def _path_problem(path: str) -> str | None:
    try:
        _check_relative_uncached(path)
    except UnsafePath as exc:
        return str(exc.details["reason"])
    return None


def _check_relative_uncached(path: str) -> str:
    if path == "":
        raise _reject(str(path), "empty path")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise _reject(path, "contains a lone surrogate (not representable as UTF-8)") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise _reject(path, f"longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/") or path.startswith("~"):
        raise _reject(path, "absolute path (must be relative to HCM_ROOT)")
    if "\\" in path:
        raise _reject(path, "backslash (a separator on Windows: 'a\\..\\b' escapes there)")
    if ":" in path:
        raise _reject(
            path, "colon (drive letters and NTFS alternate streams such as '.git::$INDEX_ALLOCATION')"
        )
    for ch in path:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            raise _reject(path, "NUL or control character (truncates paths in C code, forges log lines)")
        if unicodedata.category(ch) in ("Zl", "Zp"):
            raise _reject(path, "line or paragraph separator")
    if path != unicodedata.normalize("NFC", path):
        raise _reject(path, "not in Unicode NFC form (would alias another name on macOS)")
    for component in path.split("/"):
        check_component(component, path)
    return path


def join(*parts: str) -> str:
    """Join HCM-relative parts and validate the result (the only way the code builds paths)."""
    return check_relative("/".join(parts))


def split(path: str) -> list[str]:
    return check_relative(path).split("/")


def find_fold_collision(name: str, existing: Iterable[str]) -> str | None:
    """An existing sibling that ``name`` would alias on a case-insensitive or NFD filesystem."""
    key = fold_key(name)
    for other in existing:
        if other != name and fold_key(other) == key:
            return other
    return None


class PathResolver:
    """Turns validated relative paths into absolute paths under ``root``, refusing symlinks."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self._root_text = str(self.root).rstrip("/")  # "" for "/": components join as "/part"

    def resolve(self, path: str) -> Path:
        """:meth:`resolve_text` as a Path."""
        return Path(self.resolve_text(path))

    def resolve_text(self, path: str) -> str:
        """The absolute location of ``path``, as a string (pathlib objects cost more than the
        checks on the hot path); every existing component on the way must be a plain
        directory (last: plain file or absent). A symlink anywhere would let a hand-made link
        ``state/missions/m1 -> /etc`` turn a journal append into a write outside HCM_ROOT.
        The first absent component must not alias an existing sibling after case folding and NFC:
        ``Stable/x.json`` next to ``stable/`` is two folders here but one on a macOS or Windows
        checkout, where the later file silently overwrites or hides the other (CVE-2021-21300)."""
        parts = split(path)
        current = self._root_text  # strings, not Path objects: this runs for every file written
        for index, part in enumerate(parts):
            parent, current = current, f"{current}/{part}"
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                self._refuse_fold_collision(path, Path(parent), part)
                return "/".join([self._root_text, *parts])
            except NotADirectoryError:
                raise _reject(path, "a component on the way is a file, not a folder") from None
            if stat.S_ISLNK(info.st_mode):
                raise _reject(path, "a symlink on the way (it could point outside HCM_ROOT)")
            last = index == len(parts) - 1
            if not last and not stat.S_ISDIR(info.st_mode):
                raise _reject(path, "a component on the way is not a folder")
            if last and not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise _reject(path, "not a regular file (device, fifo or socket)")
        return current if parts else str(self.root)

    @staticmethod
    def _refuse_fold_collision(path: str, parent: Path | int, name: str) -> None:
        try:
            siblings = os.listdir(parent)
        except FileNotFoundError:
            return
        other = find_fold_collision(name, siblings)
        if other is not None:
            raise _reject(path, f"{name!r} differs from the existing {other!r} only by case or Unicode form")

    def open_parent(self, path: str, *, create: bool = False) -> tuple[int, str]:
        """(descriptor of the folder that holds ``path``, the file's name), for writing it.

        The same rules as :meth:`resolve_text`, enforced while walking: every folder is opened
        relative to the previous one with ``O_NOFOLLOW``, so a symlink swapped in after a check
        is never followed (a path is looked up once). Missing folders are made when ``create``,
        each checked first for a case or Unicode alias among its siblings. The caller closes the
        descriptor."""
        parts = split(path)
        fd = os.open(self._root_text or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                child = self._enter(fd, path, part, create)
                os.close(fd)
                fd = child
            name = parts[-1]
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                self._refuse_fold_collision(path, fd, name)
            else:
                if stat.S_ISLNK(info.st_mode):
                    raise _reject(path, "a symlink (it could point outside HCM_ROOT)")
                if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                    raise _reject(path, "not a regular file (device, fifo or socket)")
        except BaseException:
            os.close(fd)
            raise
        return fd, name

    def _enter(self, fd: int, path: str, part: str, create: bool) -> int:
        """The descriptor of folder ``part`` inside ``fd``, made if missing."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                self._refuse_fold_collision(path, fd, part)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, flags, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _reject(path, "a symlink or a file on the way (could leave HCM_ROOT)") from None
            raise
        return child

    def read_bytes(self, path: str) -> bytes | None:
        """The bytes of the regular file at ``path``, read without following any link; None when
        there is no file (absent, or a folder). A link or a special file on the way or at the
        end raises UnsafePath."""
        try:
            fd, name = self.open_parent(path)
        except FileNotFoundError:
            return None
        try:
            try:
                file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _reject(path, "a symlink (it could point outside HCM_ROOT)") from None
                raise
            try:
                mode = os.fstat(file_fd).st_mode
                if stat.S_ISDIR(mode):
                    return None
                if not stat.S_ISREG(mode):
                    raise _reject(path, "not a regular file (device, fifo or socket)")
                chunks = []
                while chunk := os.read(file_fd, 1 << 20):
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                os.close(file_fd)
        finally:
            os.close(fd)

    def relative(self, absolute: Path) -> str:
        """The HCM-relative path of a location found by walking the root (validated)."""
        rel = os.path.relpath(absolute, self.root)
        return check_relative(rel.replace(os.sep, "/"))
