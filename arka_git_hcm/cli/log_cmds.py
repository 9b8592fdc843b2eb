"""`arka-hcm log`: the history, one line per write.

Typed by people, a new process each time, so it is kept light: this module imports neither
pydantic nor pygit2. It answers from the history index when the store would give exactly that
answer (services/quick_history.py), else it runs HCM_HISTORY through the store as every other
command does. Either way the answer is the committed history: like a read over HTTP, `log`
never adopts hand edits first (README, "Command line").
"""

from __future__ import annotations

from typing import Any

import click

from ..clock import parse_iso
from ..errors import ConfigError
from ..services.quick_history import quick_history
from . import Context, emit, main, pass_context


def _iso_or_none(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_iso(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not an ISO date/time; for example 2026-11-01 or 2026-11-01T09:30:00Z"
            ) from None
    return value


def history_response(obj: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """HCM_HISTORY's response: from the index when it can answer exactly, else from the store
    (opened without adopting hand edits: the committed history, as over HTTP)."""
    try:
        quick = quick_history(obj.roots(), obj.caller, payload)
    except ConfigError:
        quick = None  # the store's path reports it, in its words
    if quick is not None:
        return quick
    from .store_cmds import run_operation  # the store, its models and pygit2

    return run_operation(obj, "HCM_HISTORY", payload, scan_hand_edits=False)


@main.command("log")
@click.option("--mission", "mission_id", help="Only commits that changed this mission.")
@click.option("--path", help="Only commits that changed this file or folder.")
@click.option("--caller", help="Only writes by this caller (type/id, e.g. agent/arka-pmo-01).")
@click.option("--op", help="Only this operation (e.g. HCM_UPDATE_STATUS).")
@click.option(
    "-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many commits."
)
@click.option("--since", callback=_iso_or_none, help="Only commits after this ISO date/time.")
@click.option("--until", callback=_iso_or_none, help="Only commits up to this ISO date/time.")
@click.option("--cursor", help="Go on from a previous page (the cursor it printed).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def log_(
    obj: Context,
    mission_id: str | None,
    path: str | None,
    caller: str | None,
    op: str | None,
    limit: int,
    since: str | None,
    until: str | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Show the HCM's history (HCM_HISTORY): one line per write operation, newest first.

    The committed history: a file edited by hand shows up once adopted (`arka-hcm adopt`,
    or any other command that opens the store).

    \b
    Examples:
      arka-hcm --client ./arka-client log -n 5
      arka-hcm --client ./arka-client log --mission acme-audit --since 2026-11-01
      arka-hcm --client ./arka-client log --caller agent/arka-pmo-01 --op HCM_APPEND_JOURNAL \\
          --since 2026-11-01 --until 2026-11-30
    """
    payload: dict[str, Any] = {"limit": limit}
    filters = {
        "mission_id": mission_id,
        "path": path,
        "since": since,
        "until": until,
        "caller": caller,
        "op": op,
        "cursor": cursor,
    }
    payload |= {key: value for key, value in filters.items() if value}
    data = history_response(obj, payload)["data"]

    def human() -> None:
        if not data["commits"]:
            click.echo("no commits")
        for c in data["commits"]:
            click.echo(
                f"{c['revision'][:12]}  {c['time']}  {c['op'] or '-':<24}  {c['caller']:<24}  {c['summary']}"
            )
        if data.get("next_cursor"):
            more = "the search paused; go on" if data.get("partial") else "more"
            click.echo(f"({more}: add --cursor {data['next_cursor']})")

    emit(data, as_json, human)
