"""The hindex rules of search: scopes per class, sensitivity of a document, who sees which level."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arka_git_hcm.domain.envelope import Caller
from arka_git_hcm.domain.layout import skeleton
from arka_git_hcm.search.rules import ALL_CLASSES, UNREADABLE, compile_glob, load_rules

from .conftest import FIXTURE_HCM


def _rules(files: dict[str, Any]) -> Any:
    raw = {path: (v if isinstance(v, bytes) else json.dumps(v).encode()) for path, v in files.items()}
    return load_rules(raw.get)


def _caller(label: str, *roles: str) -> Caller:
    kind, _, ident = label.partition("/")
    return Caller.model_validate({"type": kind, "id": ident, "roles": list(roles)})


def test_globs() -> None:
    assert compile_glob("domain/**").match("domain/a/b.json")
    assert compile_glob("state/missions/*/meta.json").match("state/missions/m1/meta.json")
    assert not compile_glob("state/missions/*/meta.json").match("state/missions/m1/x/meta.json")
    assert compile_glob("**/journal.jsonl").match("journal.jsonl")
    assert compile_glob("a/**/b").match("a/x/y/b") and compile_glob("a/**/b").match("a/b")
    assert not compile_glob("a.json").match("aXjson")  # dots are literal


def test_the_v1_fixture_scopes() -> None:
    files = {p: (FIXTURE_HCM / p).read_bytes() for p in ("hindex/classification.json", "hindex/scopes.json")}
    index, _ = _rules(files)
    assert index.classes_of("state/missions/m1/journal.jsonl") == ("mission_history",)
    assert index.classes_of("state/missions/m1/decisions.json") == ()  # not in v1's scopes
    assert index.classes_of("stable/glossary/core.json") == ("core_reference",)
    assert index.classes_of("stable/procedures/p.json") == ()
    assert index.routed_classes("Quelle définition dans le glossaire ?") == ["core_reference"]
    assert index.routed_classes("ce que nous avons fait hier") == ["mission_history"]


def test_no_classes_means_everything_outside_hindex() -> None:
    index, _ = _rules({})
    assert index.classes_of("domain/a.json") == (ALL_CLASSES,)
    assert index.classes_of("hindex/scopes.json") == ()


def test_sensitivity_path_rule_then_own_field_then_default() -> None:
    meta = {
        "rules": {
            "default_visibility": "internal",
            "path_sensitivity": {"domain/**": "public", "domain/constraints/**": "restricted"},
        }
    }
    index, _ = _rules({"hindex/meta_rules.json": meta})
    assert index.sensitivity_of("domain/constraints/sec.json", "public") == "restricted"  # longest glob
    assert index.sensitivity_of("domain/org/a.json", "restricted") == "public"  # the admin's word
    assert index.sensitivity_of("state/missions/m1/meta.json", "restricted") == "restricted"
    assert index.sensitivity_of("state/missions/m1/meta.json", None) == "internal"


def test_who_sees_which_level_with_the_default_rules() -> None:
    defaults = {
        p: v
        for p, v in skeleton("t", "T", "development", "2026-01-01T00:00:00Z").items()
        if p.startswith("hindex/")
    }
    _, access = _rules(defaults)
    assert access.visible_levels(_caller("agent/a", "reader")) == ("internal", "public")
    assert access.visible_levels(_caller("human/h", "writer")) == ("internal", "public")
    assert access.visible_levels(_caller("human/root", "admin")) is None


def test_roles_grants_labels_and_implicit_roles() -> None:
    meta = {
        "rules": {
            "sensitivity_levels": {
                "public": [],
                "internal": ["human_user"],
                "restricted": ["executive"],
                "board": ["human/ceo"],
            },
            "implicit_roles": {"human": ["human_user"], "agent": []},
            "role_grants": {"human/alice": ["executive"]},
        }
    }
    _, access = _rules({"hindex/meta_rules.json": meta})
    assert access.visible_levels(_caller("agent/bot", "reader")) == ("public",)
    assert access.visible_levels(_caller("human/bob", "reader")) == ("internal", "public")
    assert access.visible_levels(_caller("human/alice", "reader")) == ("internal", "public", "restricted")
    assert access.visible_levels(_caller("human/ceo", "reader")) == ("board", "internal", "public")


def test_an_unreadable_meta_rules_file_shows_nothing_but_to_admins() -> None:
    index, access = _rules({"hindex/meta_rules.json": b"{not json"})
    assert index.sensitivity_of("domain/a.json", "public") == UNREADABLE
    # every document has the unreadable level, which nobody but an admin sees
    assert access.visible_levels(_caller("human/h", "writer")) == ("public",)
    assert access.visible_levels(_caller("human/root", "admin")) is None


def test_the_fingerprint_follows_what_the_index_stores_only(tmp_path: Path) -> None:
    base = {"rules": {"default_visibility": "internal"}}
    first, _ = _rules({"hindex/meta_rules.json": base})
    grants = {"rules": {"default_visibility": "internal", "role_grants": {"human/x": ["admin"]}}}
    second, _ = _rules({"hindex/meta_rules.json": grants})
    third, _ = _rules({"hindex/meta_rules.json": {"rules": {"default_visibility": "public"}}})
    assert first.fingerprint() == second.fingerprint() != third.fingerprint()
