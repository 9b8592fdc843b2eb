"""Configuration: ``arka-os.config.json`` and the roots resolved from the environment.

Everything else receives a :class:`Settings` object, so tests build one explicitly and nothing
reads files or the environment at import time. The ``ARKA_*`` variables are read by one module,
environment.py (standard library only, for commands that must start fast); the file's models are
pydantic's, here. An invalid configuration stops the program with a message naming the field
(contract section 1).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .durable import flocked, write_atomic
from .environment import CONFIG_FILE_NAME, Environment, Roots, cli_identity, export_roots, resolve_roots
from .errors import ConfigError
from .ids import CallerType, Role
from .jsonio import canonical_bytes, parse_json

__all__ = [
    "ANONYMIZE_KEY_FILE",
    "locked_file_config",
    "CONFIG_FILE_NAME",
    "cli_identity",
    "FileConfig",
    "Settings",
    "default_file_config",
    "ensure_anonymize_key",
    "load_settings",
]

ANONYMIZE_KEY_FILE = "anonymize.key"


def check_anonymize_terms(terms: list[str]) -> None:
    for term in terms:
        if not 3 <= len(term.strip()) <= 200:
            raise ValueError(f"term {term[:40]!r} must be 3 to 200 characters")


def check_anonymize_patterns(patterns: list[str]) -> None:
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern[:60]!r} is not a valid regular expression: {exc}") from None
        if compiled.fullmatch(""):
            raise ValueError(f"pattern {pattern[:60]!r} matches the empty string")


def custody_problem(
    remote_names: list[str],
    mirror_enabled: bool,
    mirror_remote: str,
    backup_enabled: bool,
    backup_folder: str,
) -> str | None:
    """What the remotes, the mirror and the scheduled backups disagree on (FileConfig's check)."""
    if len(set(remote_names)) != len(remote_names):
        return "remotes: two remotes have the same name"
    if mirror_enabled and mirror_remote not in remote_names:
        return f"mirror.remote: {mirror_remote!r} is not a remote (add it with `arka-hcm remote add`)"
    if backup_enabled and not backup_folder:
        return "backup.folder: scheduled backups need a folder"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class CommitterConfig(_Strict):
    name: str = Field("Arka HCM", min_length=1, max_length=200)
    email: str = Field("hcm@arka-os.local", min_length=3, max_length=200)


class StoreConfig(_Strict):
    branch: str = Field("main", pattern=r"^[a-z0-9][a-z0-9._/-]{0,99}$")
    durability: Literal["full", "fast"] = "full"
    external_edits: Literal["adopt", "refuse"] = "adopt"
    committer: CommitterConfig = CommitterConfig()
    batch_max: int = Field(32, ge=1, le=1024)
    lock_timeout_s: float = Field(10.0, gt=0, le=600)
    index_refresh_delay_s: float = Field(0.2, ge=0, le=60)


class LimitsConfig(_Strict):
    max_envelope_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_journal_line_bytes: int = Field(64 * 1024, ge=256, le=16 * 1024 * 1024)
    max_document_bytes: int = Field(512 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_json_depth: int = Field(64, ge=4, le=512)
    max_last_entries: int = Field(500, ge=1, le=100_000)


class ServerConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # open connections per worker; at the cap the oldest one still sending its headers is closed
    max_connections: int = Field(1000, ge=8, le=100_000)
    # a request's headers must be complete this long after its first byte
    header_timeout_s: float = Field(10.0, gt=0, le=300)


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(10 * 1024 * 1024, ge=4096)
    backups: int = Field(5, ge=0, le=100)


class TokenRecord(_Strict):
    id: str
    type: CallerType
    roles: list[Role]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str
    label: str = ""
    expires_at: str | None = None  # ISO date-time; refused from then on


class RemoteRecord(_Strict):
    """A Git remote of the client (``arka-hcm remote add``); its credentials live in the 0600
    secrets file beside the config, never here."""

    name: str = Field(pattern=r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
    url: str = Field(min_length=1, max_length=2000)


class BackupConfig(_Strict):
    """Scheduled backups run by the service (``arka-hcm serve``)."""

    enabled: bool = False
    folder: str = Field("", max_length=4096)  # an absolute path, or relative to CONFIG_ROOT's parent
    interval_s: float = Field(86400.0, ge=1, le=90 * 86400)
    keep: int = Field(7, ge=1, le=10_000)  # full backups kept, each with its incrementals
    incrementals: int = Field(0, ge=0, le=10_000)  # incremental backups between two full ones
    with_config: bool = True  # the config file (token hashes) goes in each manifest; never secrets


class MirrorConfig(_Strict):
    """Mirror mode: the service pushes to the remote ``remote`` after commits, in the background."""

    enabled: bool = False
    remote: str = Field("", max_length=64)
    interval_s: float = Field(60.0, ge=1, le=86400)  # how often it looks for other processes' commits
    max_backoff_s: float = Field(300.0, ge=1, le=86400)  # longest pause between retries


class AnonymizeConfig(_Strict):
    """`arka-hcm anonymize`: what the client adds to the built-in detectors."""

    # words or names replaced wherever they appear (project code names, a product, a city)
    terms: list[str] = Field(default_factory=list, max_length=10_000)
    # Python regular expressions; every match is replaced (an internal ticket id, a matricule)
    patterns: list[str] = Field(default_factory=list, max_length=1_000)
    # timestamps (commit dates and ISO times in files) cut to the day; time zones are always UTC
    coarsen_timestamps: bool = False

    @field_validator("terms")
    @classmethod
    def _terms(cls, terms: list[str]) -> list[str]:
        check_anonymize_terms(terms)
        return terms

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        check_anonymize_patterns(patterns)
        return patterns


class FileConfig(_Strict):
    """The content of ``arka-os.config.json`` (every key is documented in the README)."""

    config_version: Literal[1] = 1
    tenant_id: str = Field("", max_length=128)
    store: StoreConfig = StoreConfig()
    limits: LimitsConfig = LimitsConfig()
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    tokens: list[TokenRecord] = []
    remotes: list[RemoteRecord] = []
    backup: BackupConfig = BackupConfig()
    mirror: MirrorConfig = MirrorConfig()
    anonymize: AnonymizeConfig = AnonymizeConfig()

    @model_validator(mode="after")
    def _custody_settings_agree(self) -> FileConfig:
        problem = custody_problem(
            [remote.name for remote in self.remotes],
            self.mirror.enabled,
            self.mirror.remote,
            self.backup.enabled,
            self.backup.folder,
        )
        if problem is not None:
            raise ValueError(problem)
        return self


class Settings(BaseModel):
    """Everything the program needs to run, resolved once at start."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    hcm_path: Path
    config_path: Path
    log_path: Path
    env: Environment = "production"
    file: FileConfig = FileConfig()

    @property
    def config_file(self) -> Path:
        return self.config_path / CONFIG_FILE_NAME

    def with_file(self, file: FileConfig) -> Settings:
        return self.model_copy(update={"file": file})


def default_file_config(tenant_id: str = "") -> FileConfig:
    return FileConfig(tenant_id=tenant_id)


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def read_file_config(path: Path) -> FileConfig:
    """Load and validate ``arka-os.config.json``; a missing file means all defaults."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return FileConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = parse_json(raw, what=str(path))
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration in {path}: {_describe(exc)}") from None
    except Exception as exc:  # InvalidPayload from the strict parser
        raise ConfigError(f"invalid configuration in {path}: {exc}") from None


@contextlib.contextmanager
def locked_file_config(path: Path) -> Iterator[FileConfig]:
    """The config, read under an exclusive lock held until the block ends, for a read-modify-write
    (tokens, remotes): two commands writing at once would otherwise each write back what they
    read, and one token or remote would silently vanish. Write it with write_file_config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with flocked(path.with_name(f".{path.name}.lock"), mode=0o600):
        yield read_file_config(path)


def write_file_config(path: Path, config: FileConfig) -> None:
    """Write the config atomically and durably (temp + fsync + rename, mode 0600): token hashes
    live in it. The temp file is never reached through a link (see durable.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = canonical_bytes(config.model_dump(mode="json"))
    write_atomic(path, data, mode=0o600, sync=True)


def ensure_anonymize_key(config_path: Path) -> bytes:
    """The client's anonymization key: 32 random bytes, hex in ``CONFIG_ROOT/anonymize.key``
    (mode 0600), created on first use. It never leaves CONFIG_ROOT: pseudonyms are HMACs under
    it, so whoever holds it could confirm a guessed value. Created through a temp file linked
    into place (``os.link`` fails if the name exists), so two processes starting at once agree
    on one key; a key readable by other users is refused."""
    path = config_path / ANONYMIZE_KEY_FILE
    if not path.exists():
        config_path.mkdir(parents=True, exist_ok=True)
        tmp = config_path / f".{ANONYMIZE_KEY_FILE}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the anonymization key {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by other users; run `chmod 600 {path}`")
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ConfigError(
            f"{path} is not an anonymization key (64 hex digits); move it away to get a new one"
        )
    return bytes.fromhex(text)


def export_to_environment(settings: Settings) -> None:
    """Put the resolved roots in ``ARKA_*`` variables so worker processes started by uvicorn
    (which re-import the app) load the same settings as the command that started them."""
    export_roots(
        Roots(str(settings.hcm_path), str(settings.config_path), str(settings.log_path), settings.env)
    )


def load_settings(
    *,
    client: str | os.PathLike[str] | None = None,
    hcm: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    logs: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from explicit values (or a client folder), else ``ARKA_*`` variables, else the
    container defaults (/hcm, /config, /logs)."""
    roots = resolve_roots(client=client, hcm=hcm, config=config, logs=logs, environ=environ)
    config_path = Path(roots.config_path).absolute()
    return Settings(
        hcm_path=Path(roots.hcm_path).absolute(),
        config_path=config_path,
        log_path=Path(roots.log_path).absolute(),
        env=roots.env,
        file=read_file_config(config_path / CONFIG_FILE_NAME),
    )
