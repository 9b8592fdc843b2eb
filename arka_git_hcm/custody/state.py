"""Small JSON state files of the custody workers (``.git/arka-hcm/custody/*.json``) and the
flock that lets one process of a multi-worker service run each task.

A state file is written atomically by the process running the task and read by every process
(``/ready`` of any server worker, ``arka-hcm remote status``), so each reports the same facts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..durable import flocked, write_atomic

__all__ = ["custody_dir", "load_state", "runner_lock", "save_state"]


def custody_dir(hcm_path: Path) -> Path:
    return Path(hcm_path) / ".git" / "arka-hcm" / "custody"


def load_state(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def save_state(path: Path, state: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(state, sort_keys=True, indent=2) + "\n").encode("utf-8"))


@contextlib.contextmanager
def runner_lock(path: Path) -> Iterator[bool]:
    """True when this process may run the task now (another process holds it otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with flocked(path, wait=False) as fd:
        yield fd is not None
