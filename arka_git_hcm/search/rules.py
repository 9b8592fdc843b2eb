"""What the hindex decides for search: default scopes, sensitivity, and who sees what.

Scopes (not access control: they decide where a search looks by default)
  ``hindex/scopes.json`` ``{"scopes": {class: {"include": [glob], "exclude": [glob]}}}`` and
  ``hindex/classification.json`` ``{"classifications": [{class, keywords, targets, priority}]}``.
  A path is in a class when one of its include globs matches and none of its exclude globs does
  (a class with no scopes entry uses its ``targets`` as folder prefixes). A search that names no
  scope looks at the paths in at least one class. With no class at all (both files missing or
  unreadable), it looks at every path outside ``hindex/``. A query that contains a class keyword
  ranks that class's documents higher (routing).

Sensitivity of a document (first that applies)
  1. ``meta_rules.json`` -> ``rules.path_sensitivity`` ``{glob: level}``: the longest matching
     glob (an admin's word: content cannot override it);
  2. the document's own ``"sensitivity"`` field (a journal line: its own or its context's; a
     record: its own, else its file's);
  3. ``rules.default_visibility`` (``"internal"`` when meta_rules.json is missing).

Who sees a level (``rules.sensitivity_levels`` ``{level: [role]}``)
  - ``public`` is visible to every caller; any other level to callers holding one of its roles;
  - ``admin`` sees every level; a level not listed (a typo in a document) is admin-only;
  - a caller holds: its roles (token + ``role_grants``), any other names ``role_grants`` gives it
    (``{"human/alice": ["executive"]}``), its own label (``"agent/arka-pmo-01"``), and the roles
    its type implies, ``rules.implicit_roles`` ``{"human": [...], "agent": [...], "system":
    [...]}``, by default ``human_user`` for all three (v1's name for "a user of this HCM": every
    caller the client gave a token acts for its users).
  - meta_rules.json present but unreadable: no level is known, so only admins see anything
    (a broken file must never widen access).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..domain.envelope import Caller
from .fold import words

__all__ = ["RULE_FILES", "AccessRules", "IndexRules", "compile_glob", "load_rules"]

CLASSIFICATION = "hindex/classification.json"
SCOPES = "hindex/scopes.json"
META_RULES = "hindex/meta_rules.json"
RULE_FILES = (CLASSIFICATION, SCOPES, META_RULES)
ALL_CLASSES = "*"  # the one class of every non-hindex path when the hindex defines none
PUBLIC = "public"
_DEFAULT_LEVELS: dict[str, tuple[str, ...]] = {"public": (), "internal": ("human_user",), "restricted": ()}
_DEFAULT_IMPLICIT: dict[str, tuple[str, ...]] = {
    "human": ("human_user",),
    "agent": ("human_user",),
    "system": ("human_user",),
}
UNREADABLE = "unreadable-meta-rules"  # the level every document gets while meta_rules.json is broken


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """``*`` within a folder, ``**`` across folders (``a/**`` is everything under ``a``), ``?``
    one character; the whole path must match."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@functools.lru_cache(maxsize=256)
def _any_of(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a list of globs (one match call per path, not one per glob)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{compile_glob(p).pattern})" for p in patterns))


@dataclass(frozen=True)
class ClassRule:
    name: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    targets: tuple[str, ...]
    keywords: tuple[tuple[str, ...], ...]  # folded words of each keyword

    def contains(self, path: str) -> bool:
        exclude = _any_of(self.exclude)
        if exclude is not None and exclude.match(path):
            return False
        if self.include:
            include = _any_of(self.include)
            return include is not None and include.match(path) is not None
        return any(path == t or path.startswith(t.rstrip("/") + "/") for t in self.targets)


@dataclass(frozen=True)
class IndexRules:
    """What the index stores per document: its classes and its sensitivity level."""

    classes: tuple[ClassRule, ...] = ()
    path_levels: tuple[tuple[str, str], ...] = ()  # (glob, level), longest glob first
    default_level: str = "internal"

    def classes_of(self, path: str) -> tuple[str, ...]:
        if path.startswith("hindex/"):
            return tuple(c.name for c in self.classes if c.contains(path))
        if not self.classes:
            return (ALL_CLASSES,)
        return tuple(c.name for c in self.classes if c.contains(path))

    def sensitivity_of(self, path: str, own: str | None) -> str:
        level = self.path_level(path)
        return level if level is not None else own or self.default_level

    def path_level(self, path: str) -> str | None:
        """The level ``path_sensitivity`` forces on every document of ``path``; None when no
        glob matches (a document's own level applies, else the default)."""
        for pattern, level in self._path_patterns:
            if pattern.match(path):
                return level
        return None

    @functools.cached_property
    def _path_patterns(self) -> tuple[tuple[re.Pattern[str], str], ...]:
        return tuple((compile_glob(pattern), level) for pattern, level in self.path_levels)

    def fingerprint(self) -> str:
        """Changes exactly when what the index stores per document would change."""
        described = {
            "classes": [[c.name, c.include, c.exclude, c.targets] for c in self.classes],
            "path_levels": self.path_levels,
            "default": self.default_level,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]

    def routed_classes(self, query: str) -> list[str]:
        """Classes one of whose keywords appears (as whole words) in the query."""
        query_words = words(query)
        found = []
        for rule in self.classes:
            for keyword in rule.keywords:
                if keyword and _contains_run(query_words, keyword):
                    found.append(rule.name)
                    break
        return found


@dataclass(frozen=True)
class AccessRules:
    levels: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(_DEFAULT_LEVELS))
    implicit: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(_DEFAULT_IMPLICIT))
    grants: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def audience(self, caller: Caller) -> set[str]:
        held = {*caller.roles, caller.label, *self.grants.get(caller.label, ())}
        held.update(self.implicit.get(caller.type, ()))
        return held

    def visible_levels(self, caller: Caller) -> tuple[str, ...] | None:
        """The levels ``caller`` may see; None: all of them (admin)."""
        if "admin" in caller.roles or "admin" in self.grants.get(caller.label, ()):
            return None
        held = self.audience(caller)
        seen = {level for level, roles in self.levels.items() if held & set(roles)}
        return tuple(sorted(seen | {PUBLIC}))


def load_rules(read: Callable[[str], bytes | None]) -> tuple[IndexRules, AccessRules]:
    """The rules of the hindex files that ``read(path)`` returns (None: the file is missing)."""
    classes = _classes(_load(read(CLASSIFICATION)), _load(read(SCOPES)))
    raw_meta = read(META_RULES)
    if raw_meta is None:
        return IndexRules(classes), AccessRules()
    meta = _load(raw_meta)
    rules = meta.get("rules") if isinstance(meta, dict) else None
    if not isinstance(rules, dict):
        # unreadable: every document gets a level nobody holds, and no level is known
        return IndexRules(classes, (("**", UNREADABLE),), UNREADABLE), AccessRules(
            levels={}, implicit={}, grants={}
        )
    levels = _string_lists(rules.get("sensitivity_levels"), dict(_DEFAULT_LEVELS))
    default = rules.get("default_visibility")
    paths = rules.get("path_sensitivity")
    path_levels = tuple(
        sorted(
            ((p, v) for p, v in paths.items() if isinstance(p, str) and isinstance(v, str) and p),
            key=lambda item: (-len(item[0]), item[0]),
        )
        if isinstance(paths, dict)
        else ()
    )
    index_rules = IndexRules(
        classes, path_levels, default if isinstance(default, str) and default else "internal"
    )
    implicit = _string_lists(rules.get("implicit_roles"), dict(_DEFAULT_IMPLICIT))
    grants = _string_lists(rules.get("role_grants"), {})
    return index_rules, AccessRules(levels, implicit, grants)


def _load(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _string_lists(value: Any, default: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        return default
    return {
        key: tuple(v for v in items if isinstance(v, str))
        for key, items in value.items()
        if isinstance(key, str) and isinstance(items, list)
    }


def _classes(classification: Any, scopes: Any) -> tuple[ClassRule, ...]:
    declared: dict[str, dict[str, Any]] = {}
    entries = classification.get("classifications") if isinstance(classification, dict) else None
    for item in entries if isinstance(entries, list) else []:
        if isinstance(item, dict) and isinstance(item.get("class"), str):
            declared[item["class"]] = item
    scope_map = scopes.get("scopes") if isinstance(scopes, dict) else None
    scope_map = scope_map if isinstance(scope_map, dict) else {}
    rules = []
    for name in sorted(set(declared) | {k for k in scope_map if isinstance(k, str)}):
        found = scope_map.get(name)
        scope: dict[str, Any] = found if isinstance(found, dict) else {}
        info = declared.get(name, {})
        rules.append(
            ClassRule(
                name=name,
                include=_strings(scope.get("include")),
                exclude=_strings(scope.get("exclude")),
                targets=_strings(info.get("targets")),
                keywords=tuple(tuple(words(k)) for k in _strings(info.get("keywords"))),
            )
        )
    return tuple(rules)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str) and v) if isinstance(value, list) else ()


def _contains_run(haystack: list[str], needle: Iterable[str]) -> bool:
    run = list(needle)
    return any(haystack[i : i + len(run)] == run for i in range(len(haystack) - len(run) + 1))
