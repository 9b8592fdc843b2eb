"""The config file checked without pydantic (config_shape.py) against the models of config.py:
the table names every field with the models' type, bounds and default, and on any file it says
"valid" only where the models accept it, with the same values."""

from __future__ import annotations

import copy
import json
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from arka_git_hcm.config import FileConfig, default_file_config
from arka_git_hcm.config_shape import FILE_RULES, Rule, plain_file_config

KINDS = {int: "int", float: "float", str: "str", bool: "bool"}


def _kind(annotation: Any) -> tuple[str, Any]:
    """The table's kind for a model field's annotation (and its inner model, item or choices)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", typing.get_args(annotation)
    if origin is list:
        return "list", typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType) and set(typing.get_args(annotation)) == {str, type(None)}:
        return "optional_str", None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    return KINDS[annotation], None


def _compare(rule: Rule, annotation: Any, info: Any, where: str) -> None:
    kind, inner = _kind(annotation)
    assert rule.kind == kind, where
    bounds: dict[str, Any] = {}
    for item in info.metadata if info is not None else ():
        if isinstance(item, annotated_types.Ge):
            bounds["ge"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            bounds["gt"] = item.gt
        elif isinstance(item, annotated_types.Le):
            bounds["le"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            bounds["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            bounds["max_length"] = item.max_length
        elif getattr(item, "pattern", None) is not None:
            bounds["pattern"] = item.pattern
        else:
            raise AssertionError(f"{where}: a constraint the table does not know: {item!r}")
    for name in ("ge", "gt", "le", "min_length", "max_length", "pattern"):
        assert getattr(rule, name) == bounds.get(name), f"{where}.{name}"
    if kind == "choice":
        assert rule.choices == inner, where
    elif kind == "list":
        assert rule.item is not None, where
        _compare(rule.item, inner, None, f"{where}[]")
    elif kind == "model":
        _compare_model(rule, inner, where)
    if info is not None:
        assert rule.required == info.is_required(), where
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                assert _defaults_of(rule) == default.model_dump(mode="json"), where
            else:
                assert rule.default == default and type(rule.default) is type(default), where


def _compare_model(rule: Rule, model: type[BaseModel], where: str) -> None:
    assert set(rule.fields) == set(model.model_fields), where
    assert model.model_config.get("extra") == "forbid", where
    for name, info in model.model_fields.items():
        _compare(rule.fields[name], info.annotation, info, f"{where}.{name}")


def _defaults_of(rule: Rule) -> Any:
    return {
        name: _defaults_of(sub) if sub.kind == "model" else sub.default for name, sub in rule.fields.items()
    }


def test_the_table_is_the_models() -> None:
    """Every field, type, bound and default of FileConfig, nested models included: a change to
    config.py that the table does not follow fails here."""
    _compare_model(FILE_RULES, FileConfig, "file")


def test_a_missing_file_and_the_files_init_writes_are_valid() -> None:
    assert plain_file_config({}) == FileConfig().model_dump(mode="json")
    written = json.loads(json.dumps(default_file_config("acme").model_dump(mode="json")))
    assert plain_file_config(written) == written


FULL = {
    "config_version": 1,
    "tenant_id": "acme",
    "store": {"branch": "hcm/main", "durability": "fast", "batch_max": 4, "lock_timeout_s": 2},
    "logging": {"level": "debug", "max_bytes": 8192, "backups": 0},
    "tokens": [
        {
            "id": "ci",
            "type": "agent",
            "roles": ["reader", "writer"],
            "sha256": "a" * 64,
            "created_at": "2026-12-01T00:00:00Z",
            "expires_at": None,
        }
    ],
    "remotes": [{"name": "origin", "url": "https://git.example.org/acme/hcm.git"}],
    "mirror": {"enabled": True, "remote": "origin"},
    "backup": {"enabled": True, "folder": "/backups", "keep": 3},
    "anonymize": {"terms": ["Projet Phénix"], "patterns": [r"TCK-\d+"], "coarsen_timestamps": True},
}


def test_a_full_file_reads_as_the_models_read_it() -> None:
    assert plain_file_config(FULL) == FileConfig.model_validate(FULL).model_dump(mode="json")


@pytest.mark.parametrize(
    ("where", "value"),
    [
        # refused by the models
        (("store", "batch_max"), 0),
        (("store", "branch"), "main\n"),
        (("store", "branch"), "Main"),
        (("store", "lock_timeout_s"), 0),
        (("store", "durability"), "slow"),
        (("tokens", 0, "sha256"), "A" * 64),
        (("anonymize", "patterns", 0), "a*"),
        (("anonymize", "terms", 0), "ab"),
        (("mirror", "remote"), "elsewhere"),
        (("store", "unknown"), 1),
        # accepted by the models' lax mode, but "not sure" here: the models decide
        (("server", "port"), "8080"),
        (("store", "batch_max"), 4.0),
        (("backup", "enabled"), 1),
        (("config_version",), True),
    ],
)
def test_anything_unusual_is_not_sure(where: tuple[Any, ...], value: Any) -> None:
    data = copy.deepcopy(FULL)
    target: Any = data
    for key in where[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[where[-1]] = value
    assert plain_file_config(data) is None


def test_a_mirror_without_remotes_and_twin_remotes_are_not_valid() -> None:
    assert plain_file_config({"remotes": [{"name": "a", "url": "u"}] * 2}) is None
    assert plain_file_config({"backup": {"enabled": True}}) is None
    assert plain_file_config({"tokens": [{"id": "x"}]}) is None  # required fields missing
    assert plain_file_config([]) is None


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for key, sub in value.items() for p in _leaves(sub, (*path, key))] or [path]
    if isinstance(value, list):
        return [p for n, sub in enumerate(value) for p in _leaves(sub, (*path, n))] or [path]
    return [path]


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 3, 4, 8, 60, 64, 100, 600, 1024, 4096, 65535, 65536, 86400, 10**9]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "main", "full", "fast", "adopt", "debug", "reader", "x" * 129, "a\n", "Main"]),
    st.text(max_size=12),
    st.lists(st.sampled_from(["reader", "writer", "abc", "x", r"\d+", "("]), max_size=3),
    st.just({}),
)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_what_it_accepts_the_models_accept_with_the_same_values(data: st.DataObject) -> None:
    """Random changes to a full file: "valid" here implies valid for the models, same values."""
    config = copy.deepcopy(FULL)
    paths = _leaves(config) + [("store", "new_key"), ("server", "port"), ("limits", "max_json_depth")]
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths))
        target: Any = config
        for key in where[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else target[key]
        if isinstance(target, (dict, list)) and where:
            target[where[-1]] = data.draw(ODD_VALUES)
    plain = plain_file_config(config)
    try:
        model = FileConfig.model_validate(config).model_dump(mode="json")
    except ValidationError:
        assert plain is None
        return
    assert plain is None or plain == model


def test_the_loaded_settings_use_the_same_roots(tmp_path: Path) -> None:
    """load_settings builds on environment.resolve_roots: the quick path's roots are its roots."""
    from arka_git_hcm.config import load_settings
    from arka_git_hcm.environment import resolve_roots

    env = {"ARKA_HCM_PATH": str(tmp_path / "h"), "ARKA_ENV": "staging"}
    roots = resolve_roots(config=tmp_path / "c", environ=env)
    settings = load_settings(config=tmp_path / "c", environ=env)
    assert settings.hcm_path == Path(roots.hcm_path).absolute() == tmp_path / "h"
    assert settings.config_path == Path(roots.config_path).absolute()
    assert settings.log_path == Path(roots.log_path).absolute() and settings.env == roots.env == "staging"
