"""Files and locks the store creates: one implementation of each mechanism, used by everything
that writes (see files.py and locks.py)."""

from .files import (
    LinkRefused,
    append_line,
    create_new,
    folder,
    fsync_path,
    open_folder,
    open_lock_file,
    read_fd,
    read_file,
    replace_file,
    sync_filesystem,
    write_all,
    write_atomic,
)
from .locks import StoreLock, create_held, flocked, folder_flocked, lock_is_held, remove_if_abandoned

__all__ = [
    "LinkRefused",
    "StoreLock",
    "append_line",
    "create_held",
    "create_new",
    "flocked",
    "folder",
    "folder_flocked",
    "fsync_path",
    "lock_is_held",
    "open_folder",
    "open_lock_file",
    "read_fd",
    "read_file",
    "remove_if_abandoned",
    "replace_file",
    "sync_filesystem",
    "write_all",
    "write_atomic",
]
