"""The replay against git itself: a history with nothing sensitive comes out with the same trees,
the same shape (merges, roots), odd paths intact; the stream parser reads what fast-export
writes, including a message without a final newline."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from arka_git_hcm.anonymize import AnonymizeOptions, anonymize_hcm
from arka_git_hcm.anonymize.stream import Blob, Commit, parse_stream, quote_path, unquote_path
from arka_git_hcm.config import FileConfig, Settings, StoreConfig

from .conftest import git

ODD = ['dossier été/"quoted" name.json', "a\\b.json", "tab\there.txt", "line\nbreak.txt", "plain.json"]


def commit_all(repo: Path, message: str, when: str, *parents: str) -> str:
    git(repo, "add", "-A")
    tree = git(repo, "write-tree").strip()
    args = [a for p in parents for a in ("-p", p)]
    env_date = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    proc = subprocess.run(
        ["git", "-c", "user.name=Bot", "-c", "user.email=bot@ci.example", "commit-tree", tree, *args],
        cwd=repo,
        input=message.encode(),
        capture_output=True,
        check=True,
        env={**_env(), **env_date},
    )
    return proc.stdout.decode().strip()


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def odd_history(repo: Path) -> None:
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    for n, name in enumerate(ODD):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(f'{{"n": {n}}}\n')
    root = commit_all(repo, "first\n", "1700000000 +0200")
    (repo / "plain.json").write_text('{"n": 10}\n')
    side = commit_all(repo, "no final newline", "1700000100 -0500", root)
    git(repo, "read-tree", root)
    git(repo, "checkout-index", "-a", "-f")
    (repo / "other.json").write_text("{}\n")
    main_line = commit_all(repo, "main line\n", "1700000200 +0000", root)
    (repo / "plain.json").write_text('{"n": 10}\n')
    merge = commit_all(repo, "merge\n", "1700000300 +0100", main_line, side)
    git(repo, "update-ref", "refs/heads/main", merge)
    git(repo, "reset", "-q", "--hard", "main")


def test_nothing_sensitive_gives_the_same_trees_and_shape(tmp_path: Path) -> None:
    repo = tmp_path / "hcm"
    odd_history(repo)
    settings = Settings(
        hcm_path=repo,
        config_path=tmp_path / "config",
        log_path=tmp_path / "logs",
        file=FileConfig(store=StoreConfig()),
    )
    report = anonymize_hcm(settings, AnonymizeOptions(out=tmp_path / "out.bundle"))
    assert report.commits_replayed == 4 and report.files == {}  # only the author (a person) was replaced
    assert set(report.replacements) == {"person_name", "email"}
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tmp_path / "out.bundle"), str(clone))
    raw_trees = git(repo, "log", "--format=%T %s", "main").splitlines()
    new_trees = git(clone, "log", "--format=%T %s", "main").splitlines()
    assert new_trees == raw_trees  # byte-identical trees, same order, same subjects
    shape = "--format=%p"
    assert [len(p.split()) for p in git(clone, "log", shape).splitlines()] == [
        len(p.split()) for p in git(repo, "log", shape).splitlines()
    ]
    assert "no final newline" in git(clone, "log", "--format=%B")
    assert set(git(clone, "log", "--format=%ai %ci").split()) >= {"+0000"}
    assert "+0200" not in git(clone, "log", "--format=%ai %ci")  # time zones become UTC
    for name in ODD:
        assert (clone / name).read_bytes() == (repo / name).read_bytes()


def test_quoted_paths_round_trip() -> None:
    for path in ODD + ['"starts with a quote', "ümlaut/ß.json"]:
        assert unquote_path(quote_path(path)) == path


def test_the_parser_reads_counted_data_not_lines() -> None:
    stream = (
        b"feature done\nblob\nmark :1\ndata 3\nab\n\n"
        b"commit refs/heads/main\nmark :2\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n"
        b"data 2\nhiM 100644 :1 x.json\n\ndone\n"
    )
    events = list(parse_stream(io.BytesIO(stream)))
    assert isinstance(events[0], Blob) and events[0].data == b"ab\n"
    commit = events[1]
    assert isinstance(commit, Commit) and commit.message == b"hi" and commit.ops[0].path == "x.json"
