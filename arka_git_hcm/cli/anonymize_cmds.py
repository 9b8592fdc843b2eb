"""`arka-hcm anonymize`: an anonymized support bundle of the HCM's history."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import Context, emit, main, pass_context

_STAGES = {"analyse": "analysing", "replay": "rewriting", "scan": "scanning the bundle"}


class _Bars:
    """One tqdm bar per stage on stderr (commits/s and ETA), only on a terminal. tqdm rather than
    click's progressbar: the rate is the figure a person waiting on 100,000 commits wants."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            from tqdm import tqdm

            self.close()
            self._stage = stage
            unit = "commit" if stage != "scan" else "step"
            self._bar = tqdm(
                total=total, desc=_STAGES.get(stage, stage), unit=unit, file=sys.stderr, leave=False
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="The bundle to write.")
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report (JSON) to this file.",
)
@click.option(
    "--history",
    type=click.Choice(["full", "squashed"]),
    default="full",
    show_default=True,
    help="full: every commit replayed; squashed: one commit holding the tip's state.",
)
@click.option("--since", metavar="DATE", help="Start at the state of DATE (ISO), then every later commit.")
@click.option("--snapshot", metavar="NAME", help="Start at snapshot NAME's state, then every later commit.")
@click.option(
    "--since-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Write only what is new since this earlier anonymized bundle (support fetches it on top).",
)
@click.option(
    "--push",
    "push_remote",
    metavar="REMOTE",
    help="Also push the anonymized branch and snapshot tags to REMOTE (see `arka-hcm remote add`; "
    "never forced).",
)
@click.option(
    "--coarsen-timestamps/--keep-timestamps",
    default=None,
    help="Cut dates to the day (default: config anonymize.coarsen_timestamps); zones are always UTC.",
)
@click.option(
    "--dry-run", is_flag=True, help="Analyse and rewrite in memory; print the report; write nothing."
)
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (no progress bar).")
@pass_context
def anonymize(
    obj: Context,
    out: Path | None,
    report_file: Path | None,
    history: str,
    since: str | None,
    snapshot: str | None,
    since_bundle: Path | None,
    push_remote: str | None,
    coarsen_timestamps: bool | None,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write an anonymized bundle of the HCM's history for support.

    \b
    The history is replayed into a NEW repository with every person, email, phone, IBAN, card,
    social security number, IP address, secret, client and tenant name replaced by a keyed
    pseudonym of the same shape (key: CONFIG_ROOT/anonymize.key). The bundle is then cloned as
    support would and every object is searched for every original value: one hit and no bundle
    is left (exit 14). The report counts what was replaced; it never shows a value.

    \b
    Examples:
      arka-hcm --client ./arka-client anonymize --dry-run
      arka-hcm --client ./arka-client anonymize --out acme-support.bundle --report report.json
      arka-hcm --client ./arka-client anonymize --out last-week.bundle --since 2026-11-01
      arka-hcm --client ./arka-client anonymize --out update.bundle --since-bundle acme-support.bundle
      arka-hcm --client ./arka-client remote add support-git https://git.acme.internal/it/hcm-support.git \\
          --username hcm-bot --password-stdin
      arka-hcm --client ./arka-client anonymize --out acme-support.bundle --push support-git
    Support side:
      git clone acme-support.bundle acme-hcm && arka-hcm --hcm acme-hcm verify
      git -C acme-hcm pull ../update.bundle main
    """
    from ..anonymize import AnonymizeOptions, anonymize_hcm  # loaded by this command only (~0.1 s)

    if dry_run and (out or report_file or push_remote):
        raise click.UsageError("--dry-run writes nothing: drop --out, --report and --push (use --json)")
    if not dry_run and out is None:
        raise click.UsageError("--out FILE is required (or --dry-run to see the report first)")
    if since and snapshot:
        raise click.UsageError("--since and --snapshot both choose where history starts: give one")
    if history == "squashed" and (since or snapshot):
        raise click.UsageError("--history squashed is one commit of the tip: --since/--snapshot do not apply")
    options = AnonymizeOptions(
        out=out.absolute() if out else None,
        history="squashed" if history == "squashed" else "full",
        since=since,
        snapshot=snapshot,
        since_bundle=since_bundle.absolute() if since_bundle else None,
        coarsen_timestamps=coarsen_timestamps,
        dry_run=dry_run,
        force=force,
        push_remote=push_remote,
    )
    bars = _Bars(enabled=not as_json and sys.stderr.isatty())
    try:
        report = anonymize_hcm(obj.settings, options, progress=bars)
    finally:
        bars.close()
    data = report.to_json()
    if report_file is not None:
        report_file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    emit(data, as_json, report.table())
