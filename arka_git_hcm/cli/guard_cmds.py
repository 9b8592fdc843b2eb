"""Commands that guard and account for the history: validate, hooks install, audit export,
history reindex."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..clock import parse_iso
from ..custody.audit import HistoryFilters, audit_rows, write_audit
from ..custody.hooks import install_git_hooks
from ..custody.validate import validate_push, validate_rev, validate_staged
from ..errors import InvalidPayload
from ..services.store import HcmStore
from . import Context, emit, main, pass_context
from .progress import progress_bars


@main.command()
@click.option("--rev", help="Check every file of this commit's tree.")
@click.option("--staged", is_flag=True, help="Check what is staged for the next commit (pre-commit).")
@click.option("--push", nargs=3, metavar="OLD NEW REF", help="Check one pushed ref.")
@click.option("--pre-receive", is_flag=True, help="Check every 'OLD NEW REF' line on standard input.")
@click.option("--branch", default="main", show_default=True, help="The HCM branch.")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=".", help="The repository.")
@click.option("--json", "as_json", is_flag=True, help="Print the refusals as JSON.")
def validate(
    rev: str | None,
    staged: bool,
    push: tuple[str, str, str] | None,
    pre_receive: bool,
    branch: str,
    repo: Path,
    as_json: bool,
) -> None:
    """Check commits against the HCM's rules (history never rewritten, path rules, layout, file
    models): what the git hooks in hooks/ call. Exit 1 and one line per refusal (commit, file,
    rule) when something is refused.

    \b
    Examples:
      arka-hcm validate --rev HEAD
      arka-hcm validate --staged
      arka-hcm validate --push 1a2b... 3c4d... refs/heads/main
      echo "$old $new refs/heads/main" | arka-hcm validate --pre-receive
    """
    if sum([rev is not None, staged, push is not None, pre_receive]) != 1:
        raise click.UsageError("give exactly one of --rev REV, --staged, --push OLD NEW REF, --pre-receive")
    if pre_receive:
        refusals = []
        for line in sys.stdin.read().splitlines():
            parts = line.split()
            if len(parts) == 3:
                refusals += validate_push(repo, parts[0], parts[1], parts[2], branch=branch)
    elif push is not None:
        refusals = validate_push(repo, *push, branch=branch)
    elif staged:
        refusals = validate_staged(repo)
    else:
        assert rev is not None
        refusals = validate_rev(repo, rev)
    if as_json:
        click.echo(json.dumps({"ok": not refusals, "refusals": [r.to_json() for r in refusals]}, indent=2))
    else:
        for refusal in refusals:
            click.echo(f"arka-hcm: {refusal.line()}", err=True)
    sys.exit(1 if refusals else 0)


@main.group()
def hooks() -> None:
    """The git hooks of the HCM (see the hooks/ folder)."""


@hooks.command("install")
@click.option(
    "--repo", type=click.Path(file_okay=False, path_type=Path), help="Repository [default: the HCM's]."
)
@click.option("--force", is_flag=True, help="Replace a hook arka-hcm did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def hooks_install(obj: Context, repo: Path | None, force: bool, as_json: bool) -> None:
    """Install pre-receive (a bare repository: the client's Git server) or pre-commit (a clone;
    in the HCM's own repository, after the store's index guard).

    \b
    Examples:
      arka-hcm hooks install --repo /srv/git/acme-hcm.git
      arka-hcm --client ./arka-client hooks install
    """
    info = install_git_hooks(repo or obj.settings.hcm_path, force=force)
    emit(info, as_json, f"installed {', '.join(info['installed'])} in {info['repo']}")


def _moment(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso(value).timestamp()
    except ValueError:
        raise InvalidPayload(f"--{name} {value!r} is not an ISO date/time (e.g. 2026-11-01)") from None


@main.group()
def audit() -> None:
    """Exports for auditors."""


@audit.command("export")
@click.option("--since", help="From this ISO date/time.")
@click.option("--until", help="Up to this ISO date/time.")
@click.option("--caller", help="Only this caller (type/id).")
@click.option("--op", help="Only this operation.")
@click.option("--mission", help="Only commits that changed this mission.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@pass_context
def audit_export(
    obj: Context,
    since: str | None,
    until: str | None,
    caller: str | None,
    op: str | None,
    mission: str | None,
    fmt: str,
    out: Path | None,
) -> None:
    """Write who did what and when (time, revision, op, caller, request id, mission, summary),
    newest first, one row per write operation.

    \b
    Example:
      arka-hcm --client ./arka-client audit export --since 2026-01-01 --until 2026-03-31 \\
          --format csv --out q1-audit.csv
    """
    flt = HistoryFilters(
        mission=mission, caller=caller, op=op, since=_moment(since, "since"), until=_moment(until, "until")
    )
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store:
        rows = audit_rows(store, flt)
        if out is None:
            write_audit(rows, fmt, sys.stdout)
            return
        with open(out, "w", encoding="utf-8", newline="") as fh:
            count = write_audit(rows, fmt, fh)
    click.echo(f"{count} row(s) written to {out}", err=True)


@main.group()
def history() -> None:
    """The history index (per mission, per day, request ids) that keeps history fast."""


@history.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def history_reindex(obj: Context, as_json: bool) -> None:
    """Build the history index from the history (or bring it up to date). The service keeps it
    up to date by itself; this is for a first build before serving, or after a restore.

    \b
    Example:
      arka-hcm --client ./arka-client history reindex
    """
    with HcmStore.open(obj.settings, scan_hand_edits=False) as store, progress_bars(not as_json) as report:
        info = store.reindex_history(lambda d, t: report("Indexing", d, t))
    emit(info, as_json, f"history index: {info['commits']:,} commits ({info['added']:,} added)")
