"""Custody commands: backup create/verify, restore, remote add/list/remove/status, push."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..custody.backup import create_backup
from ..custody.remotes import add_remote, list_remotes, push_to_remote, remote_status, remove_remote
from ..custody.restore import restore_backup, verify_backup
from . import Context, emit, main, pass_context
from .progress import progress_bars


@main.group()
def backup() -> None:
    """Back the HCM up as git bundles (full or incremental) with a manifest beside each."""


@backup.command("create")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "with_config", is_flag=True, help="Add the config file (token hashes, remotes).")
@click.option(
    "--with-secrets", is_flag=True, help="Add the secret files too (remote credentials, anonymization key)."
)
@click.option(
    "--since", help="Incremental: only what is new since this snapshot name or earlier bundle FILE."
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@pass_context
def backup_create(
    obj: Context, file: Path, with_config: bool, with_secrets: bool, since: str | None, as_json: bool
) -> None:
    """Write FILE, a git bundle of the branch and every snapshot tag, and FILE.manifest.json.

    The service may keep writing meanwhile: the bundle holds the head it started from.
    `git clone FILE` works on it with plain git.

    \b
    Examples:
      arka-hcm --client ./arka-client backup create /backups/acme-full.bundle --config
      arka-hcm --client ./arka-client backup create /backups/acme-incr1.bundle \\
          --since /backups/acme-full.bundle
    """
    with progress_bars(not as_json) as report:
        manifest = create_backup(
            obj.settings,
            file,
            with_config=with_config,
            with_secrets=with_secrets,
            since=since,
            on_progress=report,
        )
    emit(
        manifest,
        as_json,
        f"{manifest['kind']} backup {file} ({manifest['bytes']:,} bytes): head {manifest['head'][:12]}, "
        f"{manifest['commits']:,} commits, {manifest['snapshots']} snapshot(s)"
        + (f", since {manifest['since']}" if manifest["since"] else ""),
    )


@backup.command("verify")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def backup_verify(obj: Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Check a full backup, or a chain (the full one and its incrementals): checksums, the
    chain's order and gaps, git fsck of every object, the head's layout and file models.
    Exit 1 when a check fails.

    \b
    Example:
      arka-hcm backup verify /backups/acme-full.bundle /backups/acme-incr1.bundle
    """
    with progress_bars(not as_json) as report:
        result = verify_backup(list(files), on_progress=report)

    def human() -> None:
        for problem in result["errors"]:
            click.echo(f"error: {problem['path']}: {problem['message']}")
        verdict = "OK" if result["ok"] else "DAMAGED"
        click.echo(
            f"{verdict}: {len(files)} bundle(s), head {result['head'][:12]}, "
            f"{result['commits']:,} commits, {result['files']} files"
        )

    emit(result, as_json, human)
    sys.exit(0 if result["ok"] else 1)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="DIRECTORY is not empty: move its hcm/ and config/ aside first.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def restore(files: tuple[Path, ...], directory: Path, force: bool, as_json: bool) -> None:
    """Restore backups (one full, then its incrementals, in any order) into DIRECTORY as a
    client folder: hcm/ (repository and files), config/, logs/, then verify it. The commit ids
    are the source's. Moving an HCM to another host is a backup here and a restore there.

    \b
    Examples:
      arka-hcm restore /backups/acme-full.bundle ./arka-client
      arka-hcm restore /backups/acme-full.bundle /backups/acme-incr1.bundle /srv/acme
    """
    with progress_bars(not as_json) as report:
        result = restore_backup(list(files), directory, force=force, on_progress=report)

    def human() -> None:
        for finding in result["verify"]["findings"]:
            if finding["severity"] == "error":
                click.echo(f"error: {finding['path']}: {finding['message']}")
        for aside in result["moved_aside"]:
            click.echo(f"moved aside: {aside}")
        verdict = "restored" if result["ok"] else "restored, but verify found errors in"
        click.echo(f"{verdict} {result['client']}: head {result['head'][:12]}, {result['commits']:,} commits")
        click.echo(f"start it with: arka-hcm --client {result['client']} serve")

    emit(result, as_json, human)
    sys.exit(0 if result["ok"] else 1)


@main.group()
def remote() -> None:
    """The client's Git remotes the HCM pushes to (credentials in CONFIG_ROOT, mode 0600)."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--username", help="User name for an HTTP(S) remote.")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def remote_add(
    obj: Context, name: str, url: str, username: str | None, password_stdin: bool, as_json: bool
) -> None:
    """Add a remote. Never put a password in the URL: it would show in logs and listings.

    \b
    Examples:
      arka-hcm --client ./arka-client remote add backup-git /srv/git/acme-hcm.git
      echo "$GITLAB_TOKEN" | arka-hcm --client ./arka-client remote add gitlab \\
          https://gitlab.acme.internal/it/hcm.git --username hcm-bot --password-stdin
    """
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    info = add_remote(obj.settings, name, url, username=username, password=password)
    emit(info, as_json, f"remote {name} = {url}" + (" (with credentials)" if info["credentials"] else ""))


@remote.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def remote_list(obj: Context, as_json: bool) -> None:
    """List remotes (never their credentials).

    \b
    Example:
      arka-hcm --client ./arka-client remote list
    """
    rows = list_remotes(obj.settings)

    def human() -> None:
        if not rows:
            click.echo("no remotes")
        for row in rows:
            click.echo(f"{row['name']}  {row['url']}" + ("  (credentials set)" if row["credentials"] else ""))

    emit({"remotes": rows}, as_json, human)


@remote.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def remote_remove(obj: Context, name: str, as_json: bool) -> None:
    """Remove a remote and its credentials.

    \b
    Example:
      arka-hcm --client ./arka-client remote remove gitlab
    """
    emit(remove_remote(obj.settings, name), as_json, f"removed remote {name}")


@remote.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def remote_status_(obj: Context, name: str | None, as_json: bool) -> None:
    """How far each remote is behind the HCM (asks the remote), and the mirror's lag.

    \b
    Example:
      arka-hcm --client ./arka-client remote status
    """
    from ..custody.mirror import mirror_report

    rows = remote_status(obj.settings, name)
    mirror = mirror_report(obj.settings)

    def human() -> None:
        for row in rows:
            if not row["reachable"]:
                click.echo(f"{row['name']}: unreachable ({row['error']})")
            elif row["diverged"]:
                click.echo(f"{row['name']}: DIVERGED (its branch has commits the HCM does not have)")
            else:
                click.echo(
                    f"{row['name']}: {row['behind']} commit(s) behind, head {str(row['remote_head'])[:12]}"
                )
        if mirror["enabled"]:
            click.echo(
                f"mirror to {mirror['remote']}: {mirror.get('lag_commits')} commit(s), "
                f"{mirror.get('lag_seconds')} s behind; last push {mirror.get('last_push_at') or 'never'}"
                + (f"; last error: {mirror['last_error']}" if mirror.get("last_error") else "")
            )

    emit({"remotes": rows, "mirror": mirror}, as_json, human)


@main.command("push")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def push_(obj: Context, name: str | None, as_json: bool) -> None:
    """Push the branch and every snapshot tag to remote NAME (default: the mirror's remote, or
    the only one). Never forced: a remote that diverged is an error saying what to do.

    \b
    Example:
      arka-hcm --client ./arka-client push gitlab
    """
    with progress_bars(not as_json) as report:
        result = push_to_remote(obj.settings, name, on_progress=report)
    emit(
        result,
        as_json,
        f"pushed to {result['remote']}: {len(result['updated'])} ref(s) updated, "
        f"{len(result['up_to_date'])} up to date",
    )
