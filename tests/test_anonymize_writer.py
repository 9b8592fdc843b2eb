"""The anonymized repository is written by our own pack writer (not `git fast-import`): its
objects must be exactly the ones fast-import made from the same stream, so a bundle made before
the change still continues (``--since-bundle``) and ids stay deterministic.

The history here is made of a fixed fast-import stream (fixed dates, fixed key): wide folders,
journals growing line by line, a file deleted, a folder emptied, an executable, a symlink, a
merge, a second root, a message without a final newline, annotated and lightweight tags, and
sensitive values in paths, messages and contents. The expected ids were computed with the
fast-import replay (commit fcb7de3) and must never change without a reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from arka_git_hcm.anonymize import AnonymizeOptions, anonymize_hcm
from arka_git_hcm.config import ANONYMIZE_KEY_FILE, FileConfig, Settings, StoreConfig

from .conftest import git

PEOPLE = ["Zéphyrine Quatrefages", "Anatole Brissonneau", "Bérénice Chaumontel", "Hippolyte Dufayard"]


def _ident_id(name: str) -> str:
    import unicodedata

    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return plain.lower().replace(" ", ".")


class _Stream:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.when = 1_790_000_000
        self.mark = 0

    def commit(
        self,
        message: str,
        files: dict[str, bytes | None],
        *,
        author: str = "arka-pmo-01 <arka-pmo-01@agent.arka>",
        ref: str = "refs/heads/main",
        parent: str | None = None,
        merge: tuple[str, ...] = (),
        modes: dict[str, str] | None = None,
    ) -> str:
        self.mark += 1
        self.when += 37
        data = message.encode()
        out = [
            f"commit {ref}\nmark :{self.mark}\n".encode(),
            f"author {author} {self.when} +0200\n".encode(),
            f"committer Arka HCM <hcm@arka-os.local> {self.when} +0200\n".encode(),
            f"data {len(data)}\n".encode() + data + b"\n",
        ]
        if parent:
            out.append(f"from {parent}\n".encode())
        for other in merge:
            out.append(f"merge {other}\n".encode())
        for path, content in files.items():
            if content is None:
                out.append(f"D {path}\n".encode())
                continue
            mode = (modes or {}).get(path, "100644")
            out.append(f"M {mode} inline {path}\ndata {len(content)}\n".encode() + content + b"\n")
        out.append(b"\n")
        self.parts.extend(out)
        return f":{self.mark}"


def build(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    s = _Stream()
    humans = [
        {"human_id": _ident_id(p), "display_name": p, "email": f"{_ident_id(p)}@client-mail.fr"}
        for p in PEOPLE
    ]
    s.commit(
        "HCM_INIT .\n\nHcm-Op: HCM_INIT\nHcm-Caller: system/arka-hcm\n",
        {
            "meta.json": b'{"tenant_id": "acme", "tenant_name": "ACME Industries"}\n',
            "state/team/humans.json": json.dumps({"humans": humans}, indent=2, sort_keys=True).encode()
            + b"\n",
            "README.md": b"An HCM.\n",
            "tools/run.sh": b"#!/bin/sh\necho run\n",
            "tools/latest": b"run.sh",
        },
        modes={"tools/run.sh": "100755", "tools/latest": "120000"},
    )
    journals: dict[str, bytes] = {}
    for n in range(120):
        mission = f"acme-m{n % 40:03d}"
        person = PEOPLE[n % len(PEOPLE)]
        human = _ident_id(person)
        root = f"state/missions/{mission}"
        if mission not in journals:
            journals[mission] = b""
            meta = {"mission_id": mission, "owner_human_id": human, "client_name": "ACME Industries"}
            s.commit(
                f"HCM_CREATE_MISSION {mission}\n\nHcm-Caller: human/{human}\n",
                {
                    f"{root}/meta.json": json.dumps(meta, sort_keys=True).encode() + b"\n",
                    f"{root}/journal.jsonl": b"",
                    f"{root}/status.json": b'{"status": "planned"}\n',
                },
                author=f"{human} <{human}@human.arka>",
            )
            continue
        entry = {
            "author_type": "human",
            "author_id": human,
            "message": f"note {n} avec {PEOPLE[(n + 1) % 4]}",
        }
        journals[mission] += json.dumps(entry, ensure_ascii=n % 3 == 0).encode() + b"\n"
        files: dict[str, bytes | None] = {f"{root}/journal.jsonl": journals[mission]}
        if n % 7 == 0:
            files[f"{root}/evidence/ev-{n:04d}.json"] = f'{{"created_by_id": "{human}"}}\n'.encode()
        s.commit(
            f"HCM_APPEND_JOURNAL {mission}\n\nHcm-Caller: human/{human}\nHcm-Payload-Sha256: {n:064x}\n",
            files,
            author=f"{human} <{human}@human.arka>",
        )
    s.parts.append(b"tag snapshot/before-brissonneau\nfrom :%d\n" % s.mark)
    note = b"before Anatole Brissonneau\n"
    s.parts.append(b"tagger Arka HCM <hcm@arka-os.local> 1790009000 +0000\ndata %d\n%s\n" % (len(note), note))
    tagged = s.mark
    # a side line and a merge; a file deleted and a folder emptied on the way
    side = s.commit(
        "side edit by Bérénice",
        {"state/missions/acme-m001/status.json": b'{"status": "done"}\n'},
        author="Bérénice Chaumontel <berenice@client-mail.fr>",
        ref="refs/heads/side",
        parent=f":{tagged}",
    )
    main_line = s.commit(
        "remove the evidence of acme-m007\n",
        {"state/missions/acme-m007/evidence/ev-0007.json": None, "tools/latest": None},
        parent=f":{tagged}",
    )
    other_root = s.commit(
        "an unrelated root\n", {"other/notes.txt": b"Hippolyte was here\n"}, ref="refs/heads/other"
    )
    s.commit(
        "Merge side\n",
        {"state/missions/acme-m001/status.json": b'{"status": "done"}\n', "other/notes.txt": b"merged\n"},
        parent=main_line,
        merge=(side, other_root),
    )
    s.parts.append(f"reset refs/tags/snapshot/light-{_ident_id(PEOPLE[3])}\nfrom :{s.mark}\n\n".encode())
    s.parts.append(b"done\n")
    subprocess.run(
        ["git", "-C", str(repo), "fast-import", "--quiet", "--done", "--date-format=raw"],
        input=b"".join(s.parts),
        check=True,
    )
    git(repo, "branch", "-D", "side", "other")


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    client = tmp_path_factory.mktemp("pinned") / "client"
    build(client / "hcm")
    config = client / "config"
    config.mkdir()
    (config / ANONYMIZE_KEY_FILE).write_text("5a" * 32 + "\n")
    (config / ANONYMIZE_KEY_FILE).chmod(0o600)
    return Settings(
        hcm_path=client / "hcm",
        config_path=config,
        log_path=client / "logs",
        file=FileConfig(tenant_id="acme", store=StoreConfig()),
    )


# computed with the fast-import replay of fcb7de3 (see the module's docstring)
EXPECTED_REFS: dict[str, str] = {
    "refs/heads/main": "53849e31307abebf058d71647259908d8ba4a3e5",
    "refs/tags/snapshot/before-vidukunege": "1e9aeb616a52b00f475dae5156ca989de4f5323b",
}


def test_the_objects_are_the_ones_fast_import_made(pinned: Settings, tmp_path: Path) -> None:
    report = anonymize_hcm(pinned, AnonymizeOptions(out=tmp_path / "pinned.bundle"))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--mirror", str(tmp_path / "pinned.bundle"), str(clone))
    refs = dict(
        line.split(" ", 1)[::-1]
        for line in git(clone, "for-each-ref", "--format=%(objectname) %(refname)").splitlines()
    )
    assert refs == EXPECTED_REFS
    assert report.commits_replayed == 125
    git(clone, "fsck", "--strict", "--no-progress")
