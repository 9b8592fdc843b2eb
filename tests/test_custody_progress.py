"""Progress bars: on stderr, only on a terminal, never with --json."""

from __future__ import annotations

import io
import sys

import pytest

from arka_git_hcm.cli.progress import progress_bars


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_show_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for enabled, tty, shown in ((True, True, True), (False, True, False), (True, False, False)):
        err = Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        with progress_bars(enabled) as report:
            report("Writing objects", 5, 10)
            report("Writing objects", 10, 10)
            report("Verifying", 1, 2)
        assert ("Writing objects" in err.getvalue()) is shown, (enabled, tty)


def test_small_totals_stay_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    with progress_bars(True, min_total=200) as report:
        report("adopting files", 3, 20)
    assert err.getvalue() == ""
