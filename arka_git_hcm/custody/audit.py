"""Who did what and when, for an auditor who does not use git: every commit's operation, caller,
request id, mission, time and summary (from the trailers the store writes), as JSON lines or
CSV, read page by page through the history index (no limit on the number of commits)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

from ..history.query import HistoryFilters, history_page
from ..operations.history import commit_summary
from ..services.store import HcmStore

__all__ = ["HistoryFilters", "FIELDS", "audit_rows", "write_audit"]

FIELDS = ("time", "revision", "op", "caller", "request_id", "mission_id", "summary")
_PAGE = 1000
# A cell starting with one of these is a formula to a spreadsheet: a caller id or a summary
# could run one on the auditor's machine (CSV injection); such cells are prefixed with '.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def audit_rows(store: HcmStore, flt: HistoryFilters) -> Iterator[dict[str, Any]]:
    """Commits newest first matching ``flt``, as audit rows."""
    tip = store.tip()
    if tip is None:
        return
    cursor: str | None = None
    while True:
        page = history_page(store.repo, store.history, tip, flt, _PAGE, cursor)
        for commit in page.commits:
            summary = commit_summary(store.repo, commit)
            yield {key: summary.get(key) for key in FIELDS}
        cursor = page.next_cursor
        if cursor is None:
            return


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_audit(rows: Iterator[dict[str, Any]], fmt: str, out: IO[str]) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow([_cell(row[key]) for key in FIELDS])
            count += 1
        return count
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
