"""History commands: diff, snapshot, rollback, gc (`log` is in log_cmds.py, kept light)."""

from __future__ import annotations

from typing import Any

import click

from ..admin.gc import pack_objects
from ..admin.snapshots import create_snapshot, list_snapshots
from ..services.store import HcmStore
from . import Context, emit, main, pass_context
from .store_cmds import run_operation


@main.command("diff")
@click.argument("from_rev", metavar="FROM")
@click.argument("to_rev", metavar="[TO]", default="HEAD")
@click.option("--path", help="Only this file or folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def diff_(obj: Context, from_rev: str, to_rev: str, path: str | None, as_json: bool) -> None:
    """Show what changed from FROM to TO (default HEAD), each a revision, snapshot name or ISO date.

    \b
    Examples:
      arka-hcm --client ./arka-client diff HEAD~3
      arka-hcm --client ./arka-client diff HEAD~5 HEAD --path state/missions/acme-audit
    """
    payload: dict[str, Any] = {"from": from_rev, "to": to_rev}
    if path:
        payload["path"] = path
    data = run_operation(obj, "HCM_DIFF", payload)["data"]

    def human() -> None:
        if not data["changes"]:
            click.echo("no changes")
        for change in data["changes"]:
            click.echo(f"{change['change']}: {change['path']}")
            click.echo(change["patch"].rstrip("\n"))

    emit(data, as_json, human)


@main.group()
def snapshot() -> None:
    """Name the current state of the whole HCM (a `snapshot/<name>` tag), list the names."""


@snapshot.command("create")
@click.argument("name")
@click.option("-m", "--message", default="", help="Why this snapshot (kept in the tag).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def snapshot_create(obj: Context, name: str, message: str, as_json: bool) -> None:
    """Tag the current HEAD as snapshot NAME (no commit is written).

    \b
    Example:
      arka-hcm --client ./arka-client snapshot create before-migration -m "before the CRM import"
    """
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        who = obj.caller
        info = create_snapshot(store, name, message, who=f"{who['type']}/{who['id']}")
    emit(info, as_json, f"snapshot {info['name']} = {info['revision'][:12]}")


@snapshot.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def snapshot_list(obj: Context, as_json: bool) -> None:
    """List snapshots, oldest first (mission snapshots included).

    \b
    Example:
      arka-hcm --client ./arka-client snapshot list
    """
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        rows = list_snapshots(store)

    def human() -> None:
        if not rows:
            click.echo("no snapshots")
        for row in rows:
            click.echo(f"{row['time']}  {row['revision'][:12]}  {row['name']}  {row['message']}")

    emit({"snapshots": rows}, as_json, human)


@main.command()
@click.argument("target")
@click.option("--mission", "mission_id", help="Roll back only this mission's folder.")
@click.option("--reason", help="Why (kept in the commit message).")
@click.option("--dry-run", is_flag=True, help="Only list the files that would change.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def rollback(
    obj: Context, target: str, mission_id: str | None, reason: str | None, dry_run: bool, as_json: bool
) -> None:
    """Bring the HCM (or one mission) back to TARGET: a revision, snapshot name or ISO date.

    History is never rewritten: the rollback is one new HCM_ROLLBACK commit, itself revertible.

    \b
    Examples:
      arka-hcm --client ./arka-client rollback before-migration --dry-run
      arka-hcm --client ./arka-client rollback HEAD~1 --mission acme-audit --reason "bad import"
    """
    if dry_run:
        payload: dict[str, Any] = {"from": "HEAD", "to": target}
        if mission_id:
            payload["path"] = f"state/missions/{mission_id}"
        data = run_operation(obj, "HCM_DIFF", payload)["data"]
        plan = {"target": data["to"], "would_change": [(c["change"], c["path"]) for c in data["changes"]]}

        def human_plan() -> None:
            click.echo(f"rolling back to {data['to'][:12]} would change {len(data['changes'])} file(s):")
            for change in data["changes"]:
                click.echo(f"  {change['change']}: {change['path']}")

        emit(plan, as_json, human_plan)
        return
    payload = {"target": target} | ({"mission_id": mission_id} if mission_id else {})
    if reason:
        payload["reason"] = reason
    response = run_operation(obj, "HCM_ROLLBACK", payload)
    data = response["data"]
    emit(
        data | {"revision": response["revision"]},
        as_json,
        f"rolled back {data['restored_files']} file(s) to {data['target'][:12]} "
        f"in {response['revision'][:12]}",
    )


@main.command("gc")
@click.option("--dry-run", is_flag=True, help="Only count the loose objects and packs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def gc_(obj: Context, dry_run: bool, as_json: bool) -> None:
    """Fold every pack (and any loose object) into one: git gc, under the store's write lock.

    Writes already fold their small packs in the background; run this in a quiet moment for
    the smallest repository. History is not changed; unreachable objects (a write that failed
    before its branch moved) are kept loose for git's two-week grace, then pruned. Sizes are
    in KiB.

    \b
    Examples:
      arka-hcm --client ./arka-client gc --dry-run
      arka-hcm --client ./arka-client gc
    """
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        report = pack_objects(store, dry_run=dry_run)

    def human() -> None:
        before = report["before"]
        click.echo(
            f"before: {before.get('count', 0)} loose objects ({before.get('size', 0)} KiB), "
            f"{before.get('packs', 0)} pack(s) ({before.get('size_pack', 0)} KiB)"
        )
        if report["after"]:
            after = report["after"]
            click.echo(
                f"after:  {after.get('count', 0)} loose objects ({after.get('size', 0)} KiB), "
                f"{after.get('packs', 0)} pack(s) ({after.get('size_pack', 0)} KiB)"
            )

    emit(report, as_json, human)
