"""The clock seam: the store asks a Clock for the time, so tests can fix it."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FixedClock", "OutOfRange", "SystemClock", "iso", "parse_day", "parse_iso"]

# The span a date may take in the HCM: the epoch (git's times start there) to the day before the
# last one Python can add a day to. Dates outside it used to overflow (a 500): they are refused.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 30)


class OutOfRange(ValueError):
    """A well-formed date or time outside FIRST_DAY..LAST_DAY."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock for tests: starts at ``start`` and moves ``step`` forward at every reading."""

    def __init__(self, start: datetime, step: timedelta = timedelta(seconds=1)) -> None:
        self._current = start
        self._step = step
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            value = self._current
            self._current += self._step
            return value


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the HCM's timestamp format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(seconds: float) -> str:
    """A POSIX time as ISO-8601 UTC to the second with a Z: commit times in HCM_HISTORY, the
    times in the custody state files and snapshot lists."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO date or date-time (a bare date is midnight UTC) as an aware UTC datetime;
    raises ValueError when it cannot be read, OutOfRange (a ValueError) outside the HCM's span."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)  # an offset can push 9999-12-31 past the last year
    except OverflowError:
        raise OutOfRange(_span(text)) from None
    if not FIRST_DAY <= moment.date() <= LAST_DAY:
        raise OutOfRange(_span(text))
    return moment


def parse_day(text: str) -> date:
    """A calendar day YYYY-MM-DD within the HCM's span; ValueError (OutOfRange) otherwise."""
    day = date.fromisoformat(text)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise OutOfRange(_span(text))
    return day


def _span(text: str) -> str:
    return f"{text[:40]!r} is outside the dates the HCM keeps ({FIRST_DAY} to {LAST_DAY})"
