"""Commands of the service: serve, token create/list/revoke."""

from __future__ import annotations

from typing import Any

import click

from ..admin import tokens
from ..config import export_to_environment
from ..errors import NotFound
from ..ids import CALLER_TYPES
from . import Context, emit, main, pass_context


@main.command()
@click.option("--host", default=None, help="Address to listen on [config server.host, default 0.0.0.0].")
@click.option("--port", type=int, default=None, help="Port [config server.port, default 8080].")
@click.option(
    "--workers", type=int, default=None, help="Worker processes [config server.workers, default 1]."
)
@pass_context
def serve(obj: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HCM over HTTP: the operations at POST /v1/hcm/execute, /health, /ready,
    OpenAPI at /docs, and the history read-only at /git/hcm.git.

    \b
    Example:
      arka-hcm --client ./arka-client serve --port 8080 --workers 2
    """
    settings = obj.settings
    if not (settings.hcm_path / ".git").is_dir():  # no HCM at all: say so instead of serving errors
        raise NotFound(f"no HCM repository at {settings.hcm_path}; create one with `arka-hcm init`")
    export_to_environment(settings)  # worker processes rebuild the same settings from ARKA_*
    server = settings.file.server
    raise_open_files_limit(server.max_connections)
    run_uvicorn(
        host=host or server.host,
        port=port or server.port,
        workers=workers or server.workers,
        log_level=settings.file.logging.level,
    )


def raise_open_files_limit(connections: int) -> None:
    """Each connection is a descriptor, and the store keeps packs and logs open: raise the soft
    limit toward the hard one (the default soft limit, 1024 on many hosts, is below the cap)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            click.echo(
                f"warning: the open-files limit ({hard}) is low for {connections} connections; "
                "lower server.max_connections or raise the limit (ulimit -n, docker --ulimit nofile)",
                err=True,
            )


class _CannotStart(click.ClickException):
    exit_code = 2  # a configuration error (the README's exit codes), not "verify found damage"


def run_uvicorn(host: str, port: int, workers: int, log_level: str) -> None:
    """uvicorn, given the app as an import string (workers re-import it; the CLI never imports the
    server). With several workers uvicorn binds the listening socket itself with protocol 0, so
    accepted connections miss TCP_NODELAY and every response waits for the client's delayed ACK
    (~40 ms, measured; uvicorn issue #3149): the socket is re-wrapped as IPPROTO_TCP first."""
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "arka_git_hcm.server.app:app_from_environment",
        factory=True,
        # uvicorn's httptools protocol plus a header deadline and a connection cap (an import
        # string, as the app: the command line never imports the server)
        http="arka_git_hcm.server.connections:GuardedHttpProtocol",
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the service writes its own request log, without tokens
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )
    try:
        if workers <= 1:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                raise SystemExit(3)
            return
        sock = config.bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
        Multiprocess(config, sockets=[sock]).run()
    except SystemExit as exc:
        if exc.code not in (0, None):
            # uvicorn exits 3 (or 1) when it cannot start; its log line above says why
            raise _CannotStart(
                f"the server could not start on {host}:{port} (port in use? choose another with --port)"
            ) from None
        raise


@main.group()
def token() -> None:
    """Create, list and revoke the bearer tokens of HTTP callers."""


@token.command("create")
@click.option("--id", "id_", required=True, help="The caller id the token stands for (e.g. arka-pmo-01).")
@click.option("--type", "type_", type=click.Choice(CALLER_TYPES), required=True)
@click.option("--roles", default="reader", show_default=True, help="Comma-separated: reader, writer, admin.")
@click.option("--label", default="", help="A note for admins (who holds it).")
@click.option("--expires", help="Refuse it after this: a duration (12h, 90d, 4w) or an ISO date/time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def token_create(
    obj: Context, id_: str, type_: str, roles: str, label: str, expires: str | None, as_json: bool
) -> None:
    """Create a token; it is printed once and only its hash is stored in the config.

    \b
    Examples:
      arka-hcm --client ./arka-client token create --id arka-pmo-01 --type agent --roles writer
      arka-hcm --client ./arka-client token create --id alice --type human --roles writer --expires 90d
    """
    tokens.ensure_config(obj.settings)
    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    secret, record = tokens.create_token(obj.settings, id_, type_, role_list, label, expires=expires)
    info = {
        "token": secret,
        "id": record.id,
        "type": record.type,
        "roles": list(record.roles),
        "expires_at": record.expires_at,
    }
    until = f", expires {record.expires_at}" if record.expires_at else ""
    emit(
        info,
        as_json,
        f"token for {record.type}/{record.id} ({','.join(record.roles)}{until}), shown once:\n{secret}",
    )


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def token_list(obj: Context, as_json: bool) -> None:
    """List tokens (ids, types, roles, expiry, last use; never the tokens themselves). The last
    use comes from the server's request log.

    \b
    Example:
      arka-hcm --client ./arka-client token list
    """
    tokens.ensure_config(obj.settings)
    rows: list[dict[str, Any]] = [dict(row) for row in tokens.list_tokens(obj.settings)]
    used = tokens.last_used(obj.settings, tokens.load_tokens(obj.settings))
    for row in rows:
        row["last_used_at"] = used.get(f"{row['type']}/{row['id']}")

    def human() -> None:
        if not rows:
            click.echo("no tokens")
        for row in rows:
            click.echo(
                f"{row['type']}/{row['id']}  roles={','.join(row['roles'])}  created {row['created_at']}"
                + (f"  expires {row['expires_at']}" if row.get("expires_at") else "")
                + f"  last used {row['last_used_at'] or 'never (in the logs kept)'}"
                + (f"  ({row['label']})" if row.get("label") else "")
            )

    emit({"tokens": rows}, as_json, human)


@token.command("revoke")
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def token_revoke(obj: Context, token_id: str, as_json: bool) -> None:
    """Revoke the token of a caller id; requests with it are refused from then on.

    \b
    Example:
      arka-hcm --client ./arka-client token revoke arka-pmo-01
    """
    tokens.ensure_config(obj.settings)
    tokens.revoke_token(obj.settings, token_id)
    emit({"revoked": token_id}, as_json, f"revoked {token_id}")
