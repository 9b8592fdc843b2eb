"""Progress bars for long work (backup, restore, push, verify, gc, init): tqdm on stderr, only
when stderr is a terminal and the output is not ``--json``, so scripts and logs never see them.

The services report ``(phase, done, total)``; a new phase starts a new bar.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bars"]


@contextmanager
def progress_bars(enabled: bool = True, *, min_total: int = 0) -> Iterator[Callable[[str, int, int], None]]:
    """Yields ``report(phase, done, total)``; the bars close when the block ends."""
    show = enabled and sys.stderr.isatty()
    state: dict[str, Any] = {"phase": None, "bar": None}

    def report(phase: str, done: int, total: int) -> None:
        if not show or total < min_total:
            return
        bar = state["bar"]
        if phase != state["phase"] or bar is None:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=phase, file=sys.stderr, leave=False, dynamic_ncols=True)
            state["phase"], state["bar"] = phase, bar
        if total != bar.total:
            bar.total = total
        bar.update(max(0, done - bar.n))

    try:
        yield report
    finally:
        if state["bar"] is not None:
            state["bar"].close()
