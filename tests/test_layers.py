"""The architecture, enforced: imports only go downward, and a few doors have one key.

0  foundation  errors, ids, paths, jsonio, clock, environment, config, durable/,
               worker
1  domain/     layout, models, payloads, commit messages, file checks
1  gitrepo/    the git adapter (the only code importing pygit2)
2  history/    the index of commits (per mission, per day, request ids), rebuildable from git
3  operations/ what each operation does to a draft or reads from a view (never the write path)
3  search/     the search index (beside the operations: they reach it through OpContext.search)
4  writepath/  the commit engine: group commit, planning, landing, recovery, hand edits, work tree
5  services/   the store facade (HcmStore) and the operations log
6  admin/      init, verify, tokens, gc, snapshots
7  custody/    backup, restore, remotes, mirror, hooks, audit
8  anonymize/  support bundles (pushes through custody's remotes)
9  cli/, server/  the front-ends (never import each other; only the store's public surface)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "arka_git_hcm"
FOUNDATION = {
    "errors",
    "ids",
    "paths",
    "jsonio",
    "clock",
    "config",
    "durable",
    "environment",
    "worker",
    "__init__",
}
LEVEL = {
    "foundation": 0,
    "domain": 1,
    "gitrepo": 1,
    "history": 2,
    "operations": 3,
    "search": 3,
    "writepath": 4,
    "services": 5,
    "admin": 6,
    "custody": 7,
    "anonymize": 8,
    "cli": 9,
    "server": 9,
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "arka_git_hcm", module
    if len(parts) == 1 or parts[1] in FOUNDATION:
        return "foundation"
    if parts[1] == "__main__":
        return "cli"
    return parts[1]


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    this = module_name(path, root).split(".")
    package = this if path.name == "__init__.py" else this[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                target = node.module
            else:
                continue
            if not target.startswith("arka_git_hcm"):
                found.append(target)
                continue
            for alias in node.names:  # a submodule, or a name defined in the module itself
                sub = root.joinpath(*target.split("."), alias.name)
                is_module = sub.is_dir() or sub.with_suffix(".py").is_file()
                found.append(f"{target}.{alias.name}" if is_module else target)
    return found


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_layer() -> None:
    for path in all_modules():
        assert layer_of(module_name(path)) in LEVEL, path


def test_imports_only_go_downward() -> None:
    wrong = []
    for path in all_modules():
        mine = layer_of(module_name(path))
        for target in imports_of(path):
            if not target.startswith("arka_git_hcm"):
                continue
            theirs = layer_of(target)
            if theirs == mine:
                continue
            if LEVEL[theirs] >= LEVEL[mine]:
                wrong.append(f"{module_name(path)} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_domain_and_git_adapter_do_not_import_each_other() -> None:
    for path in all_modules():
        mine = layer_of(module_name(path))
        for target in imports_of(path):
            if target.startswith("arka_git_hcm") and mine in ("domain", "gitrepo"):
                assert layer_of(target) in (mine, "foundation"), f"{path}: {target}"


def test_only_the_git_adapter_imports_pygit2_or_dulwich() -> None:
    for path in all_modules():
        if layer_of(module_name(path)) == "gitrepo":
            continue
        for target in imports_of(path):
            assert target.split(".")[0] not in ("pygit2", "dulwich"), f"{path} imports {target}"


def test_only_the_environment_module_reads_the_environment() -> None:
    for path in all_modules():
        if module_name(path) in (
            "arka_git_hcm.environment",
            "arka_git_hcm.gitrepo.gitbin",
            "arka_git_hcm.gitrepo.gitcli",
        ):
            # gitbin only *scrubs* GIT_* from the environment it gives the git binary; gitcli
            # passes on, from a git hook, only the variables git set for that hook
            continue
        source = path.read_text()
        assert "os.environ" not in source and "getenv" not in source, f"{path} reads the environment"


def test_the_front_ends_do_not_import_each_other() -> None:
    for path in all_modules():
        mine = layer_of(module_name(path))
        for target in imports_of(path):
            # `arka-hcm serve` hands uvicorn an import *string*, so no arrow is needed
            if mine == "cli":
                assert not target.startswith("arka_git_hcm.server"), f"{path}: {target}"
            if mine == "server":
                assert not target.startswith("arka_git_hcm.cli"), f"{path}: {target}"


# What a front-end may not reach past the store: the write path, the operations, the history index
# and the git adapter are the store's to drive. One door is named: the smart-HTTP route is a
# pass-through to git's own upload-pack (gitrepo/http_export), it touches no store state.
BEHIND_THE_STORE = ("writepath", "operations", "history", "gitrepo", "durable")
FRONT_END_DOORS = {"arka_git_hcm.gitrepo.http_export"}


def test_the_front_ends_reach_the_store_only_through_its_public_surface() -> None:
    wrong = []
    for path in all_modules():
        if layer_of(module_name(path)) not in ("cli", "server"):
            continue
        for target in imports_of(path):
            parts = target.split(".")
            if target in FRONT_END_DOORS or len(parts) < 2 or parts[0] != "arka_git_hcm":
                continue
            if parts[1] in BEHIND_THE_STORE:
                wrong.append(f"{module_name(path)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_front_ends_use_no_private_part_of_the_store() -> None:
    """``store.engine`` and ``store.repo`` are the store's own: a front-end asks the store."""
    wrong = []
    for path in all_modules():
        if layer_of(module_name(path)) not in ("cli", "server"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            if node.value.id != "store":
                continue
            internal = node.attr in ("engine", "repo", "history", "oplog")
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if internal or private:
                wrong.append(f"{module_name(path)}:{node.lineno} uses store.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    """The test above is only worth something if it can fail: feed it a bad module. The probe is
    written under a temporary copy of the package layout, never into the package itself (other
    tests import the package in parallel)."""
    bad = tmp_path / "arka_git_hcm" / "domain" / "_probe_bad_arrow.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..services import store\n")
    targets = imports_of(bad, root=tmp_path)
    assert targets == ["arka_git_hcm.services"]
    assert LEVEL[layer_of(targets[0])] > LEVEL[layer_of(module_name(bad, root=tmp_path))]


def test_the_checker_sees_a_front_end_reaching_past_the_store(tmp_path: Path) -> None:
    probe = tmp_path / "arka_git_hcm" / "server" / "_probe.py"
    probe.parent.mkdir(parents=True)
    (tmp_path / "arka_git_hcm" / "writepath").mkdir()
    (tmp_path / "arka_git_hcm" / "writepath" / "engine.py").write_text("")
    probe.write_text("from ..writepath import engine\nfrom ..gitrepo.http_export import SERVICE\n")
    targets = imports_of(probe, root=tmp_path)
    assert targets == ["arka_git_hcm.writepath.engine", "arka_git_hcm.gitrepo.http_export"]
    assert targets[0].split(".")[1] in BEHIND_THE_STORE
    assert targets[1] in FRONT_END_DOORS
