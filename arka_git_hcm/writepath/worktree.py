"""The HCM folder as files: atomic writes, the write intent, crash recovery.

The work tree is derived state: git history is the truth. Before the branch moves, the engine
records *which* paths the batch changes in an intent file inside ``.git``; after a crash anywhere,
:func:`recover` rewrites exactly those paths from HEAD, whether the branch moved or not, so the
work tree equals HEAD again (roll forward if the commit landed, roll back if it did not).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import durable
from ..errors import from_os_error
from ..jsonio import compact_dumps, parse_json
from ..paths import PathResolver

__all__ = ["ASIDE_MARK", "TEMP_MARK", "Aside", "Staged", "StatKey", "WorkTree", "stat_key"]


INTENT_FILE = "intent.json"  # in the store's state folder: the paths a batch in flight changes
TEMP_MARK = ".arka-tmp-"  # in the name of a work-tree temp file: never part of the HCM
ASIDE_MARK = ".arka-old-"  # a file the store moved out of the way: checked, then removed or saved
ASIDES_DIR = "asides"  # in the store's state folder: where replaced files wait for their check
StatKey = tuple[int, int, int, int]  # (inode, size, mtime_ns, ctime_ns): what git's index checks too


def stat_key(info: os.stat_result) -> StatKey:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _content_key(info: os.stat_result) -> tuple[int, int, int]:
    """What a write to the file changes (a rename or a link changes only the ctime)."""
    return (info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass
class Staged:
    """A work-tree change prepared before the branch moves: the new bytes already written beside
    the target under a temp name (``temp`` None: a deletion). Everything that can fail for lack
    of space or permission happens here, so a full disk fails the write before it lands."""

    path: str
    folder: int  # descriptor of the target's folder, open until installed or discarded
    name: str
    temp: str | None
    expected: str | None  # the blob id the store believes the file holds now (None: absent)
    written: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) of the temp file as written
    # the expected bytes when git does not hold them (a hand edit adopted merged, not as it was)
    expected_data: bytes | None = None


@dataclass
class Aside:
    """The file a change replaced, moved out of the way (never deleted at once): an editor may
    have written it after the store last looked, or still hold it open. Checked a moment later:
    removed when it holds what the store expected, else adopted or saved (see hand_edits.py)."""

    path: str
    # None: in the store's asides folder (.git/arka-hcm/asides), where it is out of every
    # listing of the HCM; else the folder (relative to the root) it sits in, hidden by
    # .git/info/exclude (when .git is on another filesystem than the work tree)
    folder: str | None
    name: str
    expected: str | None
    # (inode, size, mtime_ns) of the file when it was known to hold ``expected``, just before the
    # move: the same later means nothing wrote it since (no reading needed); None: it must be read
    key: tuple[int, int, int] | None
    moved_at: float = field(default_factory=time.monotonic)
    expected_data: bytes | None = None  # see Staged.expected_data


def aside_name(path: str) -> str:
    """A unique name in the asides folder that says which file it was (when short enough)."""
    encoded = base64.urlsafe_b64encode(path.encode("utf-8")).decode("ascii").rstrip("=")
    token = secrets.token_hex(6)
    return f"{token}-{encoded}" if len(encoded) <= 230 else token


def path_of_aside(name: str) -> str | None:
    _token, sep, encoded = name.partition("-")
    if not sep:
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


class WorkTree:
    def __init__(self, resolver: PathResolver, state_dir: Path) -> None:
        self.resolver = resolver
        self.root = resolver.root
        self.state_dir = state_dir
        self.intent_path = state_dir / INTENT_FILE
        self._asides_fd: int | None = None

    # --- files ----------------------------------------------------------------------------
    def write_file(self, rel: str, data: bytes) -> os.stat_result:
        """Replace a file atomically (temp file + rename): a reader or a crash sees the old bytes
        or the new ones, never a torn file. The folders are walked without following links and
        the temp file is created beside the target at a random name with O_EXCL | O_NOFOLLOW
        (it gets the folder's group and default ACL, as a file made there by hand would), so a
        link planted in the HCM folder can redirect nothing. Durability comes from the engine's
        filesystem sync after the batch, not from one fsync per file."""
        try:
            fd, name = self.resolver.open_parent(rel, create=True)
            try:
                durable.replace_file(fd, name, data, temp_prefix=f".{name}{TEMP_MARK}")
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
        except OSError as exc:
            raise from_os_error(exc, f"writing {rel}") from None

    def delete_file(self, rel: str) -> None:
        try:
            fd, name = self.resolver.open_parent(rel)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise from_os_error(exc, f"deleting {rel}") from None
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise from_os_error(exc, f"deleting {rel}") from None
        finally:
            os.close(fd)
        self._drop_empty_folders(rel)

    # --- changes staged before the branch moves, installed after ---------------------------------
    def stage(self, rel: str, data: bytes | None, expected: str | None) -> Staged:
        """Write ``data`` beside ``rel`` under a temp name (folders made as needed), or prepare
        its deletion (``data`` None). The caller installs or discards it."""
        try:
            fd, name = self.resolver.open_parent(rel, create=data is not None)
        except FileNotFoundError:  # a deletion whose folder is gone already
            fd, name = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), ""
        except OSError as exc:
            raise from_os_error(exc, f"preparing {rel}") from None
        if data is None:
            return Staged(rel, fd, name, None, expected)
        try:
            tmp_fd, temp = durable.create_new(fd, f".{name}{TEMP_MARK}")
            try:
                durable.write_all(tmp_fd, data)
                written = _content_key(os.fstat(tmp_fd))
            finally:
                os.close(tmp_fd)
        except OSError as exc:
            if "temp" in locals():  # (through the folder's descriptor: unlinked before it is closed)
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=fd)
            os.close(fd)
            raise from_os_error(exc, f"writing {rel}") from None
        return Staged(rel, fd, name, temp, expected, written)

    def discard(self, staged: Staged) -> None:
        if staged.temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(staged.temp, dir_fd=staged.folder)
        os.close(staged.folder)

    def install(self, staged: Staged, known: StatKey | None, asides: list[Aside]) -> os.stat_result | None:
        """Put a staged change in place: the current file is moved aside (never overwritten),
        then the new one is linked in with no-replace semantics, so a file an editor creates at
        that name in between is moved aside too instead of being lost. ``known``: the stat of the
        file when the store last wrote or checked it. Returns the new file's stat (None when the
        file may have been written by someone else since the link: it is hashed next time). Each
        file moved aside is appended to ``asides`` as it is moved, so the caller has them even
        when a later step fails."""
        fd, name = staged.folder, staged.name
        folder = staged.path.rpartition("/")[0]
        try:
            if not name:
                return None
            for _attempt in range(8):
                aside = self._move_aside(fd, name, staged, folder, known)
                if aside is not None:
                    asides.append(aside)
                    known = None  # a second one (created in between) was never seen
                if staged.temp is None:
                    self._drop_empty_folders(staged.path)
                    return None
                try:
                    os.link(staged.temp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    continue  # an editor created it since: that one goes aside too
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
                    os.replace(staged.temp, name, src_dir_fd=fd, dst_dir_fd=fd)  # no hard links here
                    staged.temp = None
                else:
                    os.unlink(staged.temp, dir_fd=fd)
                    staged.temp = None
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                # an editor may have written it between the link and this stat: then its stat is
                # not the one of what the store wrote, and must not vouch for the content
                return info if _content_key(info) == staged.written else None
            raise OSError(errno.EBUSY, f"{staged.path} kept being recreated while the store replaced it")
        except OSError as exc:
            raise from_os_error(exc, f"replacing {staged.path}") from None
        finally:
            self.discard(staged)

    def _move_aside(
        self, fd: int, name: str, staged: Staged, folder: str, known: StatKey | None
    ) -> Aside | None:
        """Rename the file at ``name`` out of the work tree (into the asides folder; beside
        itself under a hidden name when .git is on another filesystem)."""
        try:
            before = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        # known to hold what was expected until now: its stat (ctime included) is the one the
        # store wrote or checked; anything written after this line changes size or mtime (or,
        # renamed over it, the inode), which the check compares
        key = _content_key(before) if known is not None and stat_key(before) == known else None
        aside = aside_name(staged.path)
        try:
            asides = self._asides_folder()
            os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=asides)
            where: str | None = None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            aside = f".{name}{ASIDE_MARK}{secrets.token_hex(6)}"
            os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
            where = folder
        return Aside(staged.path, where, aside, staged.expected, key, expected_data=staged.expected_data)

    def _asides_folder(self) -> int:
        """The asides folder's descriptor, opened once (no link followed on the way)."""
        if self._asides_fd is None:
            self._asides_fd = durable.open_folder(
                self.state_dir.parent, [self.state_dir.name, ASIDES_DIR], create=True
            )
        return self._asides_fd

    @contextlib.contextmanager
    def _folder_of(self, aside: Aside) -> Iterator[int]:
        if aside.folder is None:
            with durable.folder(self.state_dir.parent, [self.state_dir.name, ASIDES_DIR]) as fd:
                yield fd
        else:
            with durable.folder(self.root, aside.folder.split("/") if aside.folder else []) as fd:
                yield fd

    def close(self) -> None:
        if self._asides_fd is not None:
            os.close(self._asides_fd)
            self._asides_fd = None

    def _drop_empty_folders(self, rel: str) -> None:
        """git tracks no folders: drop the ones a deletion emptied, as git checkout would."""
        parts = rel.split("/")[:-1]
        while parts:
            try:
                with durable.folder(self.root, parts[:-1]) as parent:
                    os.rmdir(parts[-1], dir_fd=parent)
            except OSError:
                break
            parts.pop()

    def read_aside(self, aside: Aside) -> bytes | None:
        """The aside's bytes, or None when it is gone or, untouched since the move, known to
        hold what the store expected (no reading needed)."""
        try:
            with self._folder_of(aside) as fd:
                if aside.key is not None:
                    try:
                        if _content_key(os.stat(aside.name, dir_fd=fd, follow_symlinks=False)) == aside.key:
                            return None
                    except FileNotFoundError:
                        return None
                file_fd = os.open(aside.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                try:
                    return durable.read_fd(file_fd)
                finally:
                    os.close(file_fd)
        except FileNotFoundError:
            return None

    def remove_aside(self, aside: Aside) -> None:
        with contextlib.suppress(OSError), self._folder_of(aside) as fd:
            os.unlink(aside.name, dir_fd=fd)

    def stray_asides(self, older_than: float) -> list[Aside]:
        """Asides in the asides folder moved there more than ``older_than`` seconds ago: their
        process died before checking them (a live one checks its own within a second)."""
        found = []
        try:
            with durable.folder(self.state_dir.parent, [self.state_dir.name, ASIDES_DIR]) as fd:
                for entry in os.listdir(fd):
                    with contextlib.suppress(OSError):
                        if (
                            time.time() - os.stat(entry, dir_fd=fd, follow_symlinks=False).st_ctime
                            >= older_than
                        ):
                            found.append(Aside(path_of_aside(entry) or "", None, entry, None, None))
        except FileNotFoundError:
            return []
        return found

    def aside_at(self, rel: str, *, older_than: float) -> Aside | None:
        """The in-place aside at ``rel`` (a hidden name with ASIDE_MARK), if it was moved there
        (its ctime) more than ``older_than`` seconds ago."""
        folder, _, name = rel.rpartition("/")
        stem, mark, _rand = name.partition(ASIDE_MARK)
        if not mark or not stem.startswith("."):
            return None
        try:
            with durable.folder(self.root, folder.split("/") if folder else []) as fd:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        if time.time() - info.st_ctime < older_than:
            return None
        path = f"{folder}/{stem[1:]}" if folder else stem[1:]
        return Aside(path, folder, name, None, None)

    def remove_stray_temp(self, rel: str, *, older_than: float) -> None:
        """A temp file (TEMP_MARK) made more than ``older_than`` seconds ago: its writer died."""
        folder, _, name = rel.rpartition("/")
        if TEMP_MARK not in name:
            return
        with (
            contextlib.suppress(OSError),
            durable.folder(self.root, folder.split("/") if folder else []) as fd,
        ):
            if time.time() - os.stat(name, dir_fd=fd, follow_symlinks=False).st_ctime >= older_than:
                os.unlink(name, dir_fd=fd)

    def leftover_asides(self, paths: list[str]) -> list[Aside]:
        """Asides a killed writer left for ``paths`` (to check against what they may hold)."""
        wanted = set(paths)
        found = [a for a in self.stray_asides(older_than=0) if a.path in wanted]
        for rel in paths:
            folder, _, name = rel.rpartition("/")
            try:
                with durable.folder(self.root, folder.split("/") if folder else []) as fd:
                    for entry in os.listdir(fd):
                        if entry.startswith(f".{name}{ASIDE_MARK}"):
                            found.append(Aside(rel, folder, entry, None, None))
            except OSError:
                continue
        return found

    def remove_temp_files(self, paths: list[str]) -> None:
        """Temp files a killed writer left beside the paths it was replacing."""
        for rel in paths:
            folder, _, name = rel.rpartition("/")
            try:
                with durable.folder(self.root, folder.split("/") if folder else []) as fd:
                    for leftover in os.listdir(fd):
                        if leftover.startswith(f".{name}{TEMP_MARK}"):
                            with contextlib.suppress(OSError):
                                os.unlink(leftover, dir_fd=fd)
            except OSError:
                continue

    def stat(self, rel: str) -> os.stat_result | None:
        try:
            fd, name = self.resolver.open_parent(rel)
        except FileNotFoundError:
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    # --- the intent -----------------------------------------------------------------------
    def write_intent(
        self, ref: str, old: str | None, new: str, paths: list[str], tags: list[str] | None = None
    ) -> None:
        """Record, before the branch moves, what a crash must repair: the paths the batch changes
        and the tag refs it created (removed if the branch never moved)."""
        body = compact_dumps(
            {"ref": ref, "old": old, "new": new, "paths": sorted(paths), "tags": sorted(tags or [])}
        )
        durable.write_atomic(self.intent_path, (body + "\n").encode("utf-8"), root=self.state_dir.parent)

    def read_intent(self) -> dict[str, Any] | None:
        try:
            raw = durable.read_file(self.intent_path, root=self.state_dir.parent)
        except FileNotFoundError:
            return None
        try:
            value = parse_json(raw, what="intent")
        except Exception:
            # A torn intent can only come from a crash before its rename: the branch never moved.
            return {"paths": [], "torn": True}
        return value if isinstance(value, dict) else None

    def clear_intent(self) -> None:
        with (
            contextlib.suppress(FileNotFoundError),
            durable.folder(self.state_dir.parent, [self.state_dir.name]) as fd,
        ):
            os.unlink(INTENT_FILE, dir_fd=fd)
