"""Commands on search: search the HCM, and look after its index."""

from __future__ import annotations

import uuid
from typing import Any

import click

from ..errors import error_for_code
from ..ids import ROLES
from ..search import attach_search
from ..services.store import HcmStore
from . import Context, emit, main, pass_context

CLI_WAIT_S = 600.0  # a command may wait for a first build of the index (~10 s at 100,000 files)


def _caller(label: str, roles: tuple[str, ...]) -> dict[str, Any]:
    kind, _, ident = label.partition("/")
    if kind not in ("human", "agent", "system") or not ident:
        raise click.BadParameter("give TYPE/ID, e.g. agent/arka-pmo-01", param_hint="--as")
    return {"type": kind, "id": ident, "roles": list(roles) or ["reader"]}


@main.command("search")
@click.argument("query")
@click.option("--mission", "mission_id", help="Only this mission's documents.")
@click.option(
    "--layer",
    "layers",
    multiple=True,
    type=click.Choice(["stable", "domain", "state", "hindex"]),
    help="Only this layer (repeat for several).",
)
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100), help="Most results.")
@click.option("--as", "as_caller", default="human/cli", show_default=True, help="Search as this caller.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="The caller's role (default reader; admin sees every sensitivity level).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def search(
    obj: Context,
    query: str,
    mission_id: str | None,
    layers: tuple[str, ...],
    limit: int,
    as_caller: str,
    roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Search the HCM (HCM_SEARCH), best results first, as of the branch tip.

    \b
    Accents and case are ignored; "a phrase" in quotes; décis* for a prefix.
    With no --mission or --layer it looks where the hindex scopes say.
    Examples:
      arka-hcm --client ./arka-client search "décision budget" --mission acme-crm
      arka-hcm --client ./arka-client search 'périmètre' --layer state --json
      arka-hcm --client ./arka-client search 'risque' --as agent/arka-pmo-01
    """
    scope: dict[str, Any] = {}
    if mission_id:
        scope["mission_id"] = mission_id
    if layers:
        scope["layers"] = list(layers)
    envelope = {
        "op": "HCM_SEARCH",
        "request_id": f"cli-{uuid.uuid4().hex[:12]}",
        "caller": _caller(as_caller, roles),
        "payload": {"query": query, "scope": scope, "limit": limit, "consistent": True},
    }
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        attach_search(store, interval_s=None, wait_s=CLI_WAIT_S, start=False, follow_writes=False)
        response = store.execute(envelope)
    if response["status"] != "ok":
        raise error_for_code(response["error"]["code"])(response["error"]["message"])
    data = response["data"]

    def human() -> None:
        if not data["results"]:
            click.echo(f"no results (index at {data['revision'][:12]})")
            return
        for n, hit in enumerate(data["results"], start=1):
            where = hit["path"]
            entry = hit.get("entry") or {}
            if "line" in entry:
                where += f":{entry['line']}"
            elif "record" in entry:
                where += f"#{entry.get('id') or entry['record']}"
            click.echo(f"{n:>2}. {hit['score']:7.3f}  {where}")
            click.echo(f"    {hit['title']}")
            if hit["snippet"]:
                click.echo(f"    {hit['snippet']}")
        more = "; more results beyond --limit" if data["more"] else ""
        click.echo(f"(index at {data['revision'][:12]}, matched {data['matched']} words{more})")

    emit(data, as_json, human)


@main.group("index")
def index_group() -> None:
    """The search index: a rebuildable cache in .git/arka-hcm/search/ (never committed)."""


@index_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def index_status(obj: Context, as_json: bool) -> None:
    """Which commit the search index reflects, how big it is.

    \b
    Example:
      arka-hcm --client ./arka-client index status
    """
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        service = attach_search(store, interval_s=None, start=False, follow_writes=False)
        info = service.status()

    def human() -> None:
        if not info["exists"]:
            click.echo(f"no usable search index ({info['reason']}); it is built on the first search")
            return
        state = "up to date" if info["up_to_date"] else f"behind the tip {str(info['tip'])[:12]}"
        click.echo(f"index at {info['revision'][:12]} ({state})")
        click.echo(f"{info['documents']} documents from {info['files']} files, {info['bytes']} bytes")
        click.echo(f"built {info['built_at']}, updated {info['updated_at']}: {info['path']}")

    emit(info, as_json, human)


@index_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def index_rebuild(obj: Context, as_json: bool) -> None:
    """Rebuild the search index from the branch tip's git objects.

    \b
    Never needed for correctness (a missing, stale, corrupt or older index is rebuilt or
    caught up by itself); useful after copying an HCM, or to time a build.
    Example:
      arka-hcm --client ./arka-client index rebuild
    """
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        service = attach_search(store, interval_s=None, start=False, follow_writes=False)
        report = service.rebuild()
    emit(
        report.to_json(),
        as_json,
        f"rebuilt at {str(report.revision)[:12]}: {report.documents} documents in {report.seconds:.1f} s",
    )
