"""``arka-os.config.json`` checked without pydantic, for the commands that must start fast.

:func:`plain_file_config` answers "certainly valid" (the file's content with every default
filled in) or "not sure" (None). On "not sure" the command goes the normal way: load_settings
validates the file with the models of config.py and names what is wrong in its own words. So
this table may refuse more than the models do, never less: each rule is theirs, without
pydantic's lax conversions (a number written as a string, ``1.0`` for an int, ``1`` for a
bool, all read as "not sure"). tests/test_config_shape.py holds the table to the models (every
field, type, bound and default) and checks random files against them.

The checks that are code rather than bounds (anonymize terms and patterns, remotes against the
mirror and the backup) are functions here that the models call too: one rule, one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "FILE_RULES",
    "Rule",
    "check_anonymize_patterns",
    "check_anonymize_terms",
    "custody_problem",
    "plain_file_config",
]


class Rule(NamedTuple):  # not a dataclass: creating one costs every process ~2 ms of start
    """What one field of the file accepts. ``kind``: int, float, str, bool, choice (a Literal),
    optional_str, list (of ``item``), or model (an object of ``fields``)."""

    kind: str
    default: Any = None
    required: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[Any, ...] = ()
    item: Rule | None = None
    fields: Mapping[str, Rule] = {}  # never changed: each model gets its own in _model
    check: Callable[[Any], None] | None = None  # raises ValueError, as the model's validator


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


def _model(**fields: Rule) -> Rule:
    return Rule("model", fields=fields)


def _int(default: int, ge: int | None = None, le: int | None = None) -> Rule:
    return Rule("int", default, ge=ge, le=le)


def _float(
    default: float, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> Rule:
    return Rule("float", default, ge=ge, gt=gt, le=le)


def _str(default: str, min_length: int | None = None, max_length: int | None = None) -> Rule:
    return Rule("str", default, min_length=min_length, max_length=max_length)


_BOOL_FALSE = Rule("bool", False)

FILE_RULES = _model(
    config_version=Rule("choice", 1, choices=(1,)),
    tenant_id=_str("", max_length=128),
    store=_model(
        branch=Rule("str", "main", pattern=r"^[a-z0-9][a-z0-9._/-]{0,99}$"),
        durability=Rule("choice", "full", choices=("full", "fast")),
        external_edits=Rule("choice", "adopt", choices=("adopt", "refuse")),
        committer=_model(
            name=_str("Arka HCM", min_length=1, max_length=200),
            email=_str("hcm@arka-os.local", min_length=3, max_length=200),
        ),
        batch_max=_int(32, ge=1, le=1024),
        lock_timeout_s=_float(10.0, gt=0, le=600),
        index_refresh_delay_s=_float(0.2, ge=0, le=60),
    ),
    limits=_model(
        max_envelope_bytes=_int(1024 * 1024, ge=1024, le=64 * 1024 * 1024),
        max_journal_line_bytes=_int(64 * 1024, ge=256, le=16 * 1024 * 1024),
        max_document_bytes=_int(512 * 1024, ge=1024, le=64 * 1024 * 1024),
        max_json_depth=_int(64, ge=4, le=512),
        max_last_entries=_int(500, ge=1, le=100_000),
    ),
    server=_model(
        host=_str("0.0.0.0"),
        port=_int(8080, ge=1, le=65535),
        workers=_int(1, ge=1, le=64),
        max_connections=_int(1000, ge=8, le=100_000),
        header_timeout_s=_float(10.0, gt=0, le=300),
    ),
    logging=_model(
        level=Rule("choice", "info", choices=("debug", "info", "warning", "error")),
        max_bytes=_int(10 * 1024 * 1024, ge=4096),
        backups=_int(5, ge=0, le=100),
    ),
    tokens=Rule(
        "list",
        [],
        item=_model(
            id=Rule("str", required=True),
            type=Rule("choice", required=True, choices=("agent", "human", "system")),
            roles=Rule("list", required=True, item=Rule("choice", choices=("reader", "writer", "admin"))),
            sha256=Rule("str", required=True, pattern=r"^[0-9a-f]{64}$"),
            created_at=Rule("str", required=True),
            label=_str(""),
            expires_at=Rule("optional_str"),
        ),
    ),
    remotes=Rule(
        "list",
        [],
        item=_model(
            name=Rule("str", required=True, pattern=r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"),
            url=Rule("str", required=True, min_length=1, max_length=2000),
        ),
    ),
    backup=_model(
        enabled=_BOOL_FALSE,
        folder=_str("", max_length=4096),
        interval_s=_float(86400.0, ge=1, le=90 * 86400),
        keep=_int(7, ge=1, le=10_000),
        incrementals=_int(0, ge=0, le=10_000),
        with_config=Rule("bool", True),
    ),
    mirror=_model(
        enabled=_BOOL_FALSE,
        remote=_str("", max_length=64),
        interval_s=_float(60.0, ge=1, le=86400),
        max_backoff_s=_float(300.0, ge=1, le=86400),
    ),
    anonymize=_model(
        terms=Rule("list", [], max_length=10_000, item=Rule("str"), check=check_anonymize_terms),
        patterns=Rule("list", [], max_length=1_000, item=Rule("str"), check=check_anonymize_patterns),
        coarsen_timestamps=_BOOL_FALSE,
    ),
)


class _NotSure(Exception):
    pass


def _number(rule: Rule, value: Any) -> None:
    if rule.kind == "int" and type(value) is not int:
        raise _NotSure
    if rule.kind == "float":
        if type(value) not in (int, float):
            raise _NotSure
        try:
            if not math.isfinite(float(value)):
                raise _NotSure
        except OverflowError:
            raise _NotSure from None
    if (
        (rule.ge is not None and not value >= rule.ge)
        or (rule.gt is not None and not value > rule.gt)
        or (rule.le is not None and not value <= rule.le)
    ):
        raise _NotSure


def _sized(rule: Rule, value: str | list[Any]) -> None:
    if (rule.min_length is not None and len(value) < rule.min_length) or (
        rule.max_length is not None and len(value) > rule.max_length
    ):
        raise _NotSure


def _checked(rule: Rule, value: Any) -> Any:
    """``value`` as the model would hold it (defaults filled in), or _NotSure."""
    kind = rule.kind
    if kind in ("int", "float"):
        _number(rule, value)
    elif kind == "bool":
        if type(value) is not bool:
            raise _NotSure
    elif kind == "choice":
        if not any(type(value) is type(choice) and value == choice for choice in rule.choices):
            raise _NotSure
    elif kind == "optional_str":
        if value is not None and type(value) is not str:
            raise _NotSure
    elif kind == "str":
        if type(value) is not str:
            raise _NotSure
        _sized(rule, value)
        # fullmatch: "main\n" must not pass where the models' regex engine refuses it
        if rule.pattern is not None and re.fullmatch(rule.pattern, value) is None:
            raise _NotSure
    elif kind == "list":
        if type(value) is not list or rule.item is None:
            raise _NotSure
        _sized(rule, value)
        value = [_checked(rule.item, item) for item in value]
    else:
        value = _checked_model(rule, value)
    if rule.check is not None:
        try:
            rule.check(value)
        except ValueError:
            raise _NotSure from None
    return value


def _checked_model(rule: Rule, value: Any) -> dict[str, Any]:
    if type(value) is not dict or any(key not in rule.fields for key in value):
        raise _NotSure  # unknown keys are refused by the models (extra="forbid")
    filled: dict[str, Any] = {}
    for name, sub in rule.fields.items():
        if name in value:
            filled[name] = _checked(sub, value[name])
        elif sub.required:
            raise _NotSure
        elif sub.kind == "model":
            filled[name] = _checked_model(sub, {})
        else:  # a fresh list each time: the caller may keep what it gets
            filled[name] = list(sub.default) if isinstance(sub.default, list) else sub.default
    return filled


def plain_file_config(data: Any) -> dict[str, Any] | None:
    """The parsed file (a missing file is ``{}``) with every default filled in when the models
    of config.py certainly accept it; None when not sure."""
    try:
        config = _checked_model(FILE_RULES, data)
    except _NotSure:
        return None
    mirror, backup = config["mirror"], config["backup"]
    problem = custody_problem(
        [remote["name"] for remote in config["remotes"]],
        mirror["enabled"],
        mirror["remote"],
        backup["enabled"],
        backup["folder"],
    )
    return None if problem is not None else config
