"""The hooks/ folder, for real: `git push` into a bare repository with the pre-receive hook
installed, `git commit` in a clone and in the HCM folder with pre-commit. A valid hand edit
passes; a broken file, a path escape, a symlink, a force push and deletions are refused, each
with the rule named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from click.testing import CliRunner

from arka_git_hcm.admin.snapshots import create_snapshot
from arka_git_hcm.cli import main
from arka_git_hcm.custody.hooks import PRE_COMMIT, PRE_RECEIVE
from arka_git_hcm.custody.validate import validate_rev
from arka_git_hcm.services.store import HcmStore

from .conftest import REPO_ROOT, create_mission, git, journal
from .git_servers import bare_repo

ME = ["-c", "user.name=Pat", "-c", "user.email=pat@example.invalid"]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, capture_output=True, text=True)


def commit(clone: Path, message: str) -> None:
    git(clone, *ME, "commit", "-q", "--no-verify", "-m", message)


def install(repo: Path) -> str:
    result = CliRunner().invoke(main, ["hooks", "install", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    return result.output


def served_clone(store: HcmStore, tmp_path: Path) -> tuple[Path, Path]:
    create_mission(store, "m1")
    journal(store, "first")
    create_snapshot(store, "s1")
    server = bare_repo(tmp_path / "server.git")
    git(store.settings.hcm_path, "push", "-q", str(server), "main", "refs/tags/snapshot/s1")
    assert "pre-receive" in install(server)
    git(tmp_path, "clone", "-q", str(server), "clone")
    return server, tmp_path / "clone"


def test_the_hooks_folder_is_what_hooks_install_writes() -> None:
    assert (REPO_ROOT / "hooks" / "pre-receive").read_text() == PRE_RECEIVE
    assert (REPO_ROOT / "hooks" / "pre-commit").read_text() == PRE_COMMIT


def test_pre_receive_passes_a_valid_hand_edit_and_refuses_broken_files(
    store: HcmStore, tmp_path: Path
) -> None:
    server, clone = served_clone(store, tmp_path)
    journal_file = clone / "state" / "missions" / "m1" / "journal.jsonl"
    entry = {
        "author_id": "pat",
        "author_type": "human",
        "entry_type": "note",
        "message": "by hand",
        "timestamp": "2026-11-26T10:00:00Z",
    }
    with journal_file.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
    git(clone, "add", "-A")
    commit(clone, "a hand edit")
    ok = run(clone, "push", "origin", "main")
    assert ok.returncode == 0, ok.stderr
    (clone / "state" / "missions" / "m1" / "status.json").write_text("{not json\n")
    git(clone, "add", "-A")
    commit(clone, "broken")
    refused = run(clone, "push", "origin", "main")
    bad = git(clone, "rev-parse", "HEAD").strip()
    assert refused.returncode != 0
    assert (
        "[model]" in refused.stderr
        and "state/missions/m1/status.json" in refused.stderr
        and bad[:12] in refused.stderr
    )
    assert git(server, "rev-parse", "main").strip() != bad


def _tree_with(clone: Path, entries: list[tuple[str, str, str]]) -> str:
    """HEAD's tree plus raw entries (mode, name, object id), written byte for byte (git's own
    commands refuse these names: a hostile client can still send them)."""
    raw = b""
    current = git(clone, "ls-tree", "HEAD").splitlines()
    items = []
    for line in current:
        meta, name = line.split("\t")
        mode, _kind, oid = meta.split(" ")
        items.append((mode.lstrip("0"), name, oid))
    items += entries
    for mode, name, oid in sorted(items, key=lambda e: e[1] + ("/" if e[0] == "40000" else "")):
        raw += f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)
    proc = subprocess.run(
        ["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        cwd=clone,
        input=raw,
        capture_output=True,
    )
    return proc.stdout.decode().strip()


def _push_tree(clone: Path, tree: str) -> subprocess.CompletedProcess[str]:
    parent = git(clone, "rev-parse", "HEAD").strip()
    new = git(clone, *ME, "commit-tree", tree, "-p", parent, "-m", "crafted").strip()
    return run(clone, "push", "origin", f"{new}:refs/heads/main")


def test_pre_receive_refuses_path_escapes_and_symlinks(store: HcmStore, tmp_path: Path) -> None:
    _server, clone = served_clone(store, tmp_path)
    blob = (
        subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=clone, input=b"{}\n", capture_output=True)
        .stdout.decode()
        .strip()
    )
    inner = (
        subprocess.run(
            ["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
            cwd=clone,
            input=b"100644 config\0" + bytes.fromhex(blob),
            capture_output=True,
        )
        .stdout.decode()
        .strip()
    )
    for name, rule in ((".GIT", "[path]"), ("..", "[path]")):
        refused = _push_tree(clone, _tree_with(clone, [("40000", name, inner)]))
        assert refused.returncode != 0 and rule in refused.stderr, refused.stderr
    target = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], cwd=clone, input=b"../../etc/passwd", capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    git(clone, "update-index", "--add", "--cacheinfo", f"120000,{target},stable/glossary/link.json")
    commit(clone, "a symlink")
    refused = run(clone, "push", "origin", "main")
    assert (
        refused.returncode != 0
        and "[symlink]" in refused.stderr
        and "stable/glossary/link.json" in refused.stderr
    )


def test_pre_receive_refuses_rewrites_and_deletions(store: HcmStore, tmp_path: Path) -> None:
    server, clone = served_clone(store, tmp_path)
    git(clone, *ME, "commit", "-q", "--amend", "-m", "rewritten")
    forced = run(clone, "push", "--force", "origin", "main")
    assert forced.returncode != 0 and "[non-fast-forward]" in forced.stderr
    deleted = run(clone, "push", "origin", ":main")
    assert deleted.returncode != 0 and "[delete-branch]" in deleted.stderr
    tag = run(clone, "push", "origin", ":refs/tags/snapshot/s1")
    assert tag.returncode != 0 and "[delete-snapshot]" in tag.stderr
    assert git(server, "rev-parse", "main").strip() == store.tip()


def test_pre_commit_in_a_clone_checks_what_is_staged(store: HcmStore, tmp_path: Path) -> None:
    _server, clone = served_clone(store, tmp_path)
    assert "pre-commit" in install(clone)
    (clone / "stable" / "glossary" / "terms.json").write_text('{"term": "HCM"}\n')
    git(clone, "add", "-A")
    assert run(clone, *ME, "commit", "-q", "-m", "valid").returncode == 0
    (clone / "notes.txt").write_text("outside the layout\n")
    git(clone, "add", "-A")
    refused = run(clone, *ME, "commit", "-q", "-m", "stray file")
    assert refused.returncode != 0 and "[layout]" in refused.stderr and "notes.txt" in refused.stderr


def test_pre_commit_in_the_hcm_folder_runs_after_the_store_guard(store: HcmStore, tmp_path: Path) -> None:
    create_mission(store, "m1")
    store.close()
    hcm = store.settings.hcm_path
    output = CliRunner().invoke(main, ["--client", str(hcm.parent), "hooks", "install"]).output
    assert "arka-hcm-validate" in output
    with HcmStore.open(store.settings, scan_hand_edits=False):
        pass  # the store rewrites its guard on open: the chain must survive that
    (hcm / "state" / "missions" / "m1" / "decisions.json").write_text('{"decisions": "nope"}\n')
    git(hcm, "add", "-A")
    refused = run(hcm, *ME, "commit", "-q", "-m", "by hand")
    assert refused.returncode != 0 and "[model]" in refused.stderr
    git(hcm, "checkout", "-q", "HEAD", "--", ".")
    assert validate_rev(hcm, "HEAD") == []


def test_validate_rev_names_every_refusal(store: HcmStore) -> None:
    create_mission(store, "m1")
    result = CliRunner().invoke(
        main, ["validate", "--rev", "HEAD", "--repo", str(store.settings.hcm_path), "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True
    usage = CliRunner().invoke(main, ["validate"])
    assert usage.exit_code == 2
