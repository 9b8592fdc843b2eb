"""What the program takes from its process environment: where the HCM, the config and the logs
are (``--client``/``--hcm``/``--config``/``--logs``, else ``ARKA_*``, else the container's
defaults), the deployment mode (``ARKA_ENV``) and who runs the command line (``ARKA_CALLER``).

This is the only module that reads ``os.environ``; it imports the standard library and the
error tree only, so a command that must start fast (``arka-hcm log``, see
services/quick_history.py) resolves its roots without loading the pydantic models of
config.py, which builds :class:`~arka_git_hcm.config.Settings` on top of :func:`resolve_roots`.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from typing import Literal, NamedTuple

from .errors import ConfigError
from .ids import CALLER_TYPES

__all__ = [
    "CONFIG_FILE_NAME",
    "ENVIRONMENTS",
    "Environment",
    "Roots",
    "cli_identity",
    "export_roots",
    "resolve_roots",
]

CONFIG_FILE_NAME = "arka-os.config.json"
Environment = Literal["development", "staging", "production"]
ENVIRONMENTS: tuple[Environment, ...] = ("development", "staging", "production")
# The envelope's caller id (domain/envelope.py holds the same rule for every caller)
_CALLER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class Roots(NamedTuple):
    """The three folders as named (absolute, or relative to the working directory) and the
    deployment mode. Strings in a NamedTuple, not Paths in a dataclass: importing pathlib and
    creating a dataclass would cost `arka-hcm log` ~8 ms of its start; load_settings makes
    them absolute Paths."""

    hcm_path: str
    config_path: str
    log_path: str
    env: Environment

    @property
    def config_file(self) -> str:
        return os.path.join(self.config_path, CONFIG_FILE_NAME)


def resolve_roots(
    *,
    client: str | os.PathLike[str] | None = None,
    hcm: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    logs: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Roots:
    """The folders from explicit values (or a client folder), else ``ARKA_*`` variables, else the
    container defaults (/hcm, /config, /logs). ConfigError for an unknown ``ARKA_ENV``."""
    env = os.environ if environ is None else environ
    if client is not None:
        # a client folder as laid out by `arka-hcm init DIR`: DIR/hcm, DIR/config, DIR/logs
        hcm = hcm or os.path.join(client, "hcm")
        config = config or os.path.join(client, "config")
        logs = logs or os.path.join(client, "logs")
    mode = env.get("ARKA_ENV") or "production"
    if mode not in ENVIRONMENTS:
        raise ConfigError(f"ARKA_ENV={mode!r} is invalid: use development, staging or production")
    return Roots(
        hcm_path=os.fspath(hcm or env.get("ARKA_HCM_PATH") or "/hcm"),
        config_path=os.fspath(config or env.get("ARKA_CONFIG_PATH") or "/config"),
        log_path=os.fspath(logs or env.get("ARKA_LOG_PATH") or "/logs"),
        env=mode,
    )


def export_roots(roots: Roots) -> None:
    """Put the resolved roots in ``ARKA_*`` variables so worker processes started by uvicorn
    (which re-import the app) load the same settings as the command that started them."""
    os.environ["ARKA_HCM_PATH"] = str(roots.hcm_path)
    os.environ["ARKA_CONFIG_PATH"] = str(roots.config_path)
    os.environ["ARKA_LOG_PATH"] = str(roots.log_path)
    os.environ["ARKA_ENV"] = roots.env


def cli_identity(given: str | None = None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Who runs a command of the command line, as (type, id), for the history's author: ``given``
    (``--as TYPE/ID``), else ``ARKA_CALLER``, else ``human/<the OS user>``. ConfigError when a
    given identity is malformed; an OS user name that is not a valid id falls back to ``cli``."""
    env = os.environ if environ is None else environ
    text = given or env.get("ARKA_CALLER")
    if text:
        kind, _, ident = text.partition("/")
        if kind not in CALLER_TYPES or not _CALLER_ID.fullmatch(ident):
            raise ConfigError(
                f"--as / ARKA_CALLER {text[:80]!r} is not TYPE/ID: TYPE is human, agent or system, "
                "ID 1-128 of letters, digits, . _ @ - (e.g. --as human/alice)"
            )
        return kind, ident
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container's arbitrary uid)
        user = ""
    return "human", user if _CALLER_ID.fullmatch(user) else "cli"
