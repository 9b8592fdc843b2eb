"""The `arka-hcm` command line: thin commands over the operation layer and the services.

Exit codes: 0 ok; 1 `verify` found damage; 2 usage or configuration error; 3-14 the contract's
error codes (see arka_git_hcm.errors: INVALID_PAYLOAD 3 ... INTERNAL_ERROR 14).
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import TYPE_CHECKING, Any

import click

from ..environment import Roots, cli_identity, resolve_roots
from ..errors import HcmError
from ..ids import ROLES

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["main"]

EPILOG = """\b
Examples:
  arka-hcm init ./arka-client --tenant-id acme
  arka-hcm --client ./arka-client missions list
  arka-hcm --client ./arka-client exec --file envelopes.jsonl
  arka-hcm --client ./arka-client serve --port 8080
  arka-hcm --client ./arka-client --as human/alice rollback HEAD~1 --reason "bad import"
"""


# Each command's module, imported only when the command runs (or --help lists them all): a
# command does not pay for the others' imports (`log` once spent most of its 1.5 s importing
# backup, anonymize and search code). tests/test_cli.py checks this map against the modules.
# This module itself imports neither pydantic nor pygit2 (config.py loads with the settings):
# `log` answers without them when it can (log_cmds.py).
COMMAND_MODULES = {
    "accept-rewind": "store_cmds",
    "adopt": "store_cmds",
    "anonymize": "anonymize_cmds",
    "audit": "guard_cmds",
    "backup": "custody_cmds",
    "diff": "history_cmds",
    "exec": "store_cmds",
    "gc": "history_cmds",
    "history": "guard_cmds",
    "hooks": "guard_cmds",
    "index": "search_cmds",
    "init": "store_cmds",
    "log": "log_cmds",
    "missions": "store_cmds",
    "push": "custody_cmds",
    "remote": "custody_cmds",
    "restore": "custody_cmds",
    "rollback": "history_cmds",
    "search": "search_cmds",
    "serve": "service_cmds",
    "snapshot": "history_cmds",
    "status": "store_cmds",
    "token": "service_cmds",
    "validate": "guard_cmds",
    "verify": "store_cmds",
}


class HcmGroup(click.Group):
    """Loads a command's module when it is asked for, and translates HcmError once: a clear
    message on stderr and the error's exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(f"{__name__}.{module}")  # its decorators register it on main
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HcmError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)


class Context:
    """What the global options resolve to; commands ask for settings lazily."""

    def __init__(
        self, client: str | None, hcm: str | None, config: str | None, logs: str | None, as_: str | None
    ) -> None:
        self._args: dict[str, Any] = {"client": client, "hcm": hcm, "config": config, "logs": logs}
        self._as = as_
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings  # pydantic: only for the commands that need it

            self._settings = load_settings(**self._args)
        return self._settings

    def roots(self) -> Roots:
        """The folders the global options and ``ARKA_*`` name, without reading the config file
        (ConfigError for a bad ``ARKA_ENV``, as :attr:`settings` would raise)."""
        return resolve_roots(**self._args)

    @property
    def caller(self) -> dict[str, Any]:
        """Who runs this command, as an envelope's caller: the history names them. Someone who
        can run the command line on the HCM folder holds every role there."""
        kind, ident = cli_identity(self._as)
        return {"type": kind, "id": ident, "roles": list(ROLES)}


pass_context = click.make_pass_decorator(Context)


def emit(value: Any, as_json: bool, human: Any = None) -> None:
    """Print JSON for scripts, or the human rendering (a string or a callable that prints)."""
    if as_json or human is None:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False))
    elif callable(human):
        human()
    else:
        click.echo(human)


@click.group(cls=HcmGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--client", type=click.Path(file_okay=False), help="A client folder holding hcm/, config/, logs/."
)
@click.option("--hcm", type=click.Path(file_okay=False), help="HCM folder [env ARKA_HCM_PATH, default /hcm].")
@click.option(
    "--config",
    type=click.Path(file_okay=False),
    help="Config folder [env ARKA_CONFIG_PATH, default /config].",
)
@click.option(
    "--logs", type=click.Path(file_okay=False), help="Log folder [env ARKA_LOG_PATH, default /logs]."
)
@click.option(
    "--as",
    "as_",
    metavar="TYPE/ID",
    help="Who runs the command, as the history will name them (e.g. human/alice) "
    "[env ARKA_CALLER, default human/<your user name>].",
)
@click.version_option(package_name="arka-git-hcm")
@click.pass_context
def main(
    ctx: click.Context,
    client: str | None,
    hcm: str | None,
    config: str | None,
    logs: str | None,
    as_: str | None,
) -> None:
    """Arka HCM: the client's shared memory as a git-backed versioned store.

    Every write operation is exactly one git commit in the HCM folder.
    """
    ctx.obj = Context(client, hcm, config, logs, as_)
