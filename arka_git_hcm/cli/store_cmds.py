"""Commands on the store: init, exec, missions, verify, status, adopt."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from ..admin.init import init_hcm
from ..admin.verify import Finding, verify_hcm
from ..config import load_settings
from ..errors import HcmError, InvalidPayload, error_for_code
from ..jsonio import line_dumps, parse_json
from ..search import attach_search
from ..services.opening import init_hint
from ..services.responses import error_response
from ..services.store import HcmStore
from . import Context, emit, main, pass_context
from .progress import progress_bars


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--tenant-id", required=True, help="The client's id (a-z 0-9 . _ -).")
@click.option("--tenant-name", default="", help="Display name of the client.")
@click.option(
    "--layout",
    type=click.Choice(["client", "flat"]),
    default="client",
    show_default=True,
    help="client: DIRECTORY/{hcm,config,logs}; flat: DIRECTORY is the HCM folder itself.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def init(obj: Context, directory: str, tenant_id: str, tenant_name: str, layout: str, as_json: bool) -> None:
    """Create a client folder with a new HCM, or adopt an HCM folder that has no history yet.

    \b
    Never overwrites: an HCM that already has its .git is refused.
    Examples:
      arka-hcm init ./arka-client --tenant-id acme --tenant-name "ACME Corp"
      arka-hcm --config /config --logs /logs init /hcm --layout flat --tenant-id acme
    """
    if layout == "client":
        settings = load_settings(client=directory)
    else:
        args = obj._args | {"client": None, "hcm": directory}
        settings = load_settings(**args)
    with progress_bars(not as_json, min_total=200) as report:
        result = init_hcm(
            settings,
            tenant_id,
            tenant_name,
            on_progress=lambda done, total: report("adopting files", done, total),
        )

    def human() -> None:
        verb = "adopted the existing HCM" if result.adopted else "created a new HCM"
        click.echo(f"{verb} at {result.hcm_path} ({result.files} files, first commit {result.revision[:12]})")
        click.echo(f"config: {result.config_path}   logs: {result.log_path}")
        print_findings(result.warnings)

    emit(result.to_json(), as_json, human)


def print_findings(findings: list[Finding]) -> None:
    """Errors one by one; a warning shared by many files (an older HCM's formatting) is shown for
    three of them, then counted, so the real quirks are not buried."""
    shown: dict[tuple[str, str], int] = {}
    for finding in findings:
        key = (finding.severity, finding.message)
        shown[key] = shown.get(key, 0) + 1
        if finding.severity == "error" or shown[key] <= 3:
            click.echo(f"{finding.severity}: {finding.path}: {finding.message}")
    for (severity, message), count in shown.items():
        if severity == "warning" and count > 3:
            click.echo(f"warning: ... and {count - 3} more files: {message} (--json lists all)")


def _read_envelopes(source: Any, max_bytes: int, max_depth: int) -> list[tuple[bytes, str] | HcmError]:
    """Split the input into envelopes, as raw bytes for the store to parse: one JSON envelope
    (possibly pretty-printed), or JSON lines with one envelope each (named "line N" in errors)."""
    raw = source.read()
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    lines = [line for line in raw.split(b"\n") if line.strip()]
    if not lines:
        return [InvalidPayload("no envelope on input: give one JSON object, or JSON lines")]
    if len(lines) > 1:
        try:
            parse_json(lines[0], max_bytes=max_bytes, max_depth=max_depth, what="line 1")
        except HcmError:
            return [(raw, "envelope")]  # one pretty-printed envelope over several lines
        return [(line, f"line {n}") for n, line in enumerate(lines, start=1)]
    return [(raw, "envelope")]


@main.command("exec")
@click.option(
    "--file",
    "file_",
    type=click.File("rb"),
    default="-",
    help="Read envelopes from this file instead of standard input.",
)
@pass_context
def exec_(obj: Context, file_: Any) -> None:
    """Run operation envelopes and print one JSON response per envelope (one per line).

    \b
    Input is one envelope, or JSON lines with one envelope each:
      {"op": "HCM_APPEND_JOURNAL", "request_id": "journal-2026-11-26-001",
       "caller": {"type": "agent", "id": "arka-pmo-01", "roles": ["writer"]},
       "payload": {"mission_id": "acme-audit", "entry": {"author_type": "agent",
                   "author_id": "arka-pmo-01", "entry_type": "note", "message": "Kick-off done"}}}
    Exit code: 0 when every answer is ok, else the code of the first error
    (3 INVALID_PAYLOAD, 6 NOT_FOUND, 7 CONFLICTING_UPDATE, ... see README).
    Examples:
      arka-hcm --client ./arka-client exec --file envelopes.jsonl
      cat envelope.json | arka-hcm --client ./arka-client exec
    """
    limits = obj.settings.file.limits
    items = _read_envelopes(file_, limits.max_envelope_bytes, limits.max_json_depth)
    exit_code = 0
    with HcmStore.open(obj.settings) as store:
        # HCM_SEARCH / HCM_MEMORY_QUERY envelopes: the index is brought up to date when asked
        attach_search(store, interval_s=None, wait_s=600.0, start=False, follow_writes=False)
        for item in items:
            if isinstance(item, HcmError):
                response = error_response(None, item, store.tip())
            else:
                data, what = item
                response = store.execute(data, what=what)
            click.echo(line_dumps(response))
            if response["status"] != "ok" and exit_code == 0:
                exit_code = error_for_code(response["error"]["code"]).exit_code
    sys.exit(exit_code)


def run_operation(
    obj: Context,
    op: str,
    payload: dict[str, Any],
    caller: dict[str, Any] | None = None,
    *,
    scan_hand_edits: bool = True,
) -> dict[str, Any]:
    with HcmStore.open(obj.settings, scan_hand_edits=scan_hand_edits) as store:
        response = store.execute(
            {
                "op": op,
                "request_id": f"cli-{uuid.uuid4().hex[:12]}",
                "caller": caller or obj.caller,
                "payload": payload,
            }
        )
    if response["status"] != "ok":
        error = error_for_code(response["error"]["code"])(response["error"]["message"])
        raise error
    return response


@main.group()
def missions() -> None:
    """List and show missions (read-only)."""


@missions.command("list")
@click.option("--status", help="Only missions with this status (planned, in_progress, ...).")
@click.option("--client-id", help="Only missions of this client.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def missions_list(obj: Context, status: str | None, client_id: str | None, as_json: bool) -> None:
    """List missions.

    \b
    Example:
      arka-hcm --client ./arka-client missions list --status in_progress
    """
    filters = {k: v for k, v in {"status": status, "client_id": client_id}.items() if v}
    response = run_operation(obj, "HCM_LIST_MISSIONS", {"filters": filters})
    rows = response["data"]["missions"]

    def human() -> None:
        if not rows:
            click.echo("no missions")
            return
        width = max(len("MISSION"), *(len(r["mission_id"]) for r in rows))
        click.echo(f"{'MISSION':<{width}}  {'STATUS':<11}  {'PHASE':<12}  {'HEALTH':<8}  TITLE")
        for r in rows:
            click.echo(
                f"{r['mission_id']:<{width}}  {r['status'] or '-':<11}  {r['phase'] or '-':<12}  "
                f"{r['health'] or '-':<8}  {r['title']}"
            )

    emit(response["data"], as_json, human)


@missions.command("show")
@click.argument("mission_id")
@click.option("--entries", default=10, show_default=True, help="How many last journal entries.")
@click.option("--at", help="Show the mission as of a revision, snapshot name or ISO date/time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def missions_show(obj: Context, mission_id: str, entries: int, at: str | None, as_json: bool) -> None:
    """Show one mission: meta, status, decisions, next actions and the last journal entries.

    \b
    Example:
      arka-hcm --client ./arka-client missions show acme-audit --entries 5
    """
    payload: dict[str, Any] = {
        "mission_id": mission_id,
        "options": {"include_last_entries": entries, "include_decisions": True, "include_next_actions": True},
    }
    if at:
        payload["at"] = at
    response = run_operation(obj, "HCM_GET_MISSION_CONTEXT", payload)
    data = response["data"]

    def human() -> None:
        meta, status = data["meta"], data["status"]
        click.echo(f"{mission_id}: {meta.get('title')}  ({meta.get('mission_type')})")
        click.echo(
            f"  status {status.get('status')} / phase {status.get('phase')} / health "
            f"{status.get('health')} / progress {status.get('progress')}"
        )
        click.echo(f"  revision {str(response['revision'])[:12]}")
        click.echo(
            f"  decisions: {len(data.get('decisions', []))}   next actions: "
            f"{len(data.get('next_actions', []))}"
        )
        for action in data.get("next_actions", []):
            click.echo(f"    [{action.get('status')}] {action.get('action_id')}: {action.get('title')}")
        click.echo("  last journal entries:")
        for entry in data["last_journal_entries"]:
            click.echo(
                f"    {entry.get('timestamp')}  {entry.get('author_id')}  "
                f"{entry.get('entry_type')}: {entry.get('message')}"
            )

    emit(data, as_json, human)


@main.command()
@click.option("--no-fsck", is_flag=True, help="Skip `git fsck --strict` (faster on huge histories).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def verify(obj: Context, no_fsck: bool, as_json: bool) -> None:
    """Check the repository (git fsck --strict), that the work tree equals HEAD, and that every
    file matches its model. Exit 1 when an error is found; warnings alone exit 0.

    \b
    Example:
      arka-hcm --client ./arka-client verify
    """
    hcm = Path(obj.settings.hcm_path)
    if not (hcm / ".git").is_dir():
        raise error_for_code("NOT_FOUND")(f"no HCM repository at {hcm}; {init_hint(hcm)}")
    with progress_bars(not as_json) as bars:
        report = verify_hcm(
            hcm, fsck=not no_fsck, on_progress=lambda done, total: bars("verifying", done, total)
        )

    def human() -> None:
        print_findings(report.findings)
        verdict = "OK" if report.ok else "DAMAGED"
        click.echo(
            f"{verdict}: {report.files} files at {str(report.revision)[:12]}, "
            f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        )

    emit(report.to_json(), as_json, human)
    sys.exit(0 if report.ok else 1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def status(obj: Context, as_json: bool) -> None:
    """Say whether an HCM exists at the configured place and is usable (exit 0) or not (exit 6).

    \b
    Example:
      arka-hcm --client ./arka-client status --json
    """
    try:
        store = HcmStore.open(obj.settings, scan_hand_edits=False)
    except HcmError as exc:
        if as_json:
            click.echo(json.dumps({"hcm": str(obj.settings.hcm_path), "ok": False, "error": exc.to_dict()}))
        raise
    with store:
        tip = store.tip()
        meta = store.view(tip).read_json("meta.json") or {}
        info = {
            "ok": True,
            "hcm": str(obj.settings.hcm_path),
            "tenant_id": meta.get("tenant_id") if isinstance(meta, dict) else None,
            "revision": tip,
            "branch": store.branch_ref,
            "durability": obj.settings.file.store.durability,
            "recovery": store.open_report["recovery"],
        }
    emit(info, as_json, f"HCM at {info['hcm']}: {info['branch']} at {str(tip)[:12]}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def adopt(obj: Context, as_json: bool) -> None:
    """Commit files edited by hand in the HCM folder as one HCM_EXTERNAL_EDIT commit.

    \b
    Example (after editing stable/glossary/core.json in an editor):
      arka-hcm --client ./arka-client adopt
    """
    who = obj.caller
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        report = store.scan_hand_edits(adopt=True, by=(who["type"], who["id"]))

    def human() -> None:
        if not report["paths"] and not report["unsafe"]:
            click.echo("nothing to adopt: the work tree equals HEAD")
        if report["adopted"]:
            click.echo(f"adopted {len(report['paths'])} file(s) in {report['adopted'][:12]}")
        for path in report["unsafe"]:
            click.echo(f"refused (unsafe name or symlink): {path}")

    emit(report, as_json, human)


@main.command("accept-rewind")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def accept_rewind(obj: Context, as_json: bool) -> None:
    """Keep the HCM branch where a person moved it back by hand, and allow writes again.

    The store refuses writes after the branch went backwards (`git reset`, `git update-ref`):
    a retried request whose commit was dropped would be applied twice. This keeps the rewind:
    the dropped commits stay in git's reflog, their request ids are remembered (a retry is
    refused), and the decision is written to the reflog. To undo the rewind instead, move the
    branch back to the old tip that `arka-hcm verify` names.

    \b
    Example:
      arka-hcm --client ./arka-client verify          # says the branch went backwards
      arka-hcm --client ./arka-client --as human/alice accept-rewind
    """
    who = obj.caller
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        result = store.accept_rewind((who["type"], who["id"]))
    emit(
        result,
        as_json,
        f"kept the branch at {result['new'][:12]} (was {result['old'][:12]}); "
        f"{result['dropped_requests']} dropped request id(s) will be refused if retried",
    )
