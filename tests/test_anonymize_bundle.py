"""Anonymized support bundles, end to end: a history full of canaries written through the real
store (and plain git where the store cannot), anonymized, cloned with real git, and searched by a
scan written here, independently of the package's own matcher."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from arka_git_hcm.admin.snapshots import create_snapshot
from arka_git_hcm.anonymize import AnonymizeOptions, LeakFound, anonymize_hcm, check_bundle
from arka_git_hcm.cli import main
from arka_git_hcm.config import ANONYMIZE_KEY_FILE, Settings
from arka_git_hcm.services.store import HcmStore

from .conftest import ADMIN, AGENT, git, new_hcm, ok, open_store

FIRST = (
    "Zéphyrine Anatole Bérénice Hippolyte Ismérie Joséphin Léocadie Maximilienne Nolwenn Pétronille Quirin"
)
FIRST += " Rosalinde Séraphin Théodora Wandrille"
LAST = "Quatrefages Brissonneau Chaumontel Dufayard Escarbelle Fromentin Gaudriault Hérouvillette Isambert"
LAST += " Jacquemart Kerjeanic Lemarchandel Montcharmont Nivelleau Orsonnaud"


def ascii_of(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass
class Person:
    first: str
    last: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def human_id(self) -> str:
        return f"{ascii_of(self.first)}.{ascii_of(self.last)}".lower()

    @property
    def email(self) -> str:
        return f"{self.human_id}@clientmail-{ascii_of(self.last).lower()}.fr"


PEOPLE = [Person(f, last) for f, last in zip(FIRST.split(), LAST.split(), strict=True)]
PHONES = [f"06 {10 + i} 3{i % 10} 4{i % 10} 5{i % 10}" for i in range(15)]
INTL_PHONES = [f"+33 7 {20 + i} 6{i % 10} 7{i % 10} 8{i % 10}" for i in range(5)]
IBAN = "FR76 3000 6000 0112 3456 7890 189"
CARD = "4111 1111 1111 1111"
NIR = "2 84 05 75 116 202 51"
IP = "10.42.17.9"
SECRETS = [
    "ghp_Zq8kLmN0pQrStUvWxYz0123456789AbCdEf",
    "AKIAZ7QW3ERT5YUI8OPA",
    "arka_9fK2mQ7xL0pV3sD8hJ4nB6tR1yW5zC",
]
URL_CREDS = "https://deploy:S3cr3tPassw0rd@git.orsonnaud-bank.internal"
CLIENT = "Banque Orsonnaud Réunie"
CLIENT_ID = "orsonnaud-bank"
TERM = "Projet Phénix"
MATRICULE = "MAT-884211"
TENANT_NAME = "Groupe Quatrefages Industries"


def canaries() -> list[str]:
    values = [TENANT_NAME, CLIENT, CLIENT_ID, TERM, MATRICULE, IBAN, CARD, NIR, IP, URL_CREDS, *SECRETS]
    for person in PEOPLE:
        values += [person.name, person.first, person.last, person.human_id, person.email]
    values += PHONES + INTL_PHONES
    return values


# --- an independent scan ------------------------------------------------------------------------
_HEX_ID = re.compile(r"\b[0-9a-f]{40}\b")


def normal(text: str) -> str:
    """JSON escapes decoded, accents removed, case folded: written here, not imported."""
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).casefold()


def objects_of(repo: Path) -> Iterator[tuple[str, str, str]]:
    """(oid, type, text) of every object stored in ``repo`` (one `git cat-file --batch`), trees as
    their entry names, 40-hex ids blanked (digits of an id are not a phone number)."""
    command = ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    pos = 0
    while pos < len(raw):
        end = raw.index(b"\n", pos)
        oid, kind, size = raw[pos:end].decode().split()
        data = raw[end + 1 : end + 1 + int(size)]
        pos = end + 1 + int(size) + 1
        if kind == "tree":
            names = re.findall(rb"\d+ ([^\0]*)\0.{20}", data, re.S)
            yield oid, kind, b"\n".join(names).decode("utf-8", "replace")
        else:
            yield oid, kind, _HEX_ID.sub(" ", data.decode("utf-8", "replace"))


def leaks(repo: Path, values: list[str]) -> list[tuple[str, str, str]]:
    forms = sorted({normal(v) for v in values}, key=len, reverse=True)
    pattern = re.compile("|".join(rf"(?<![a-z0-9]){re.escape(f)}(?![a-z0-9])" for f in forms))
    found = []
    for oid, kind, text in objects_of(repo):
        match = pattern.search(normal(text))
        if match:
            found.append((kind, oid, match.group(0)))
    return found


# --- the history --------------------------------------------------------------------------------
def human(person: Person) -> dict[str, Any]:
    return {"type": "human", "id": person.human_id, "roles": ["writer", "admin"]}


def hand_commit(hcm: Path, files: dict[str, bytes | None], message: str, author: str) -> None:
    """A commit made with plain git, as a person editing the folder would (the store builds upon it)."""
    for path, data in files.items():
        target = hcm / path
        if data is None:
            git(hcm, "rm", "-q", path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        git(hcm, "add", path)
    git(
        hcm,
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "user.name=x",
        "-c",
        "user.email=x@x",
        "commit",
        "-q",
        "--author",
        author,
        "-m",
        message,
    )


def build_history(client: Path) -> Settings:
    settings = new_hcm(client)
    settings = settings.with_file(
        settings.file.model_copy(
            update={
                "anonymize": settings.file.anonymize.model_copy(
                    update={"terms": [TERM], "patterns": [r"MAT-\d{6}"]}
                )
            }
        )
    )
    store = open_store(settings)
    try:
        _writes(store, settings)
    finally:
        store.close()
    hcm = settings.hcm_path
    # plain git: a legacy file with JSON escapes (what a hand edit or another tool writes)...
    p = PEOPLE[14]
    legacy = json.dumps({"contact": p.name, "mail": p.email, "tel": PHONES[14]}, ensure_ascii=True)
    hand_commit(
        hcm,
        {f"domain/org/legacy-{ascii_of(p.last).lower()}/contacts.json": legacy.encode() + b"\n"},
        f"Import des contacts de {p.name} <{p.email}>",
        f"{PEOPLE[13].name} <{PEOPLE[13].email}>",
    )
    # ... and a file that lived only in the past: added, then deleted
    gone = f"domain/org/ancien-{ascii_of(PEOPLE[12].last).lower()}.json"
    body = json.dumps({"notes": f"{PEOPLE[12].name}, NIR {NIR}, tél {INTL_PHONES[4]}"}, ensure_ascii=False)
    hand_commit(
        hcm, {gone: body.encode() + b"\n"}, "ajout temporaire", f"{PEOPLE[12].name} <{PEOPLE[12].email}>"
    )
    hand_commit(
        hcm, {gone: None}, f"retrait du fichier de {PEOPLE[12].last}", "Agent Smith <ops@arka-os.local>"
    )
    meta = json.loads((hcm / "meta.json").read_text())
    meta["tenant_name"] = TENANT_NAME  # the tenant's display name, as a client would have it
    hand_commit(
        hcm,
        {"meta.json": (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()},
        "tenant name",
        "Arka HCM <hcm@arka-os.local>",
    )
    store = open_store(settings, start=datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    try:
        ok(
            store,
            "HCM_APPEND_JOURNAL",
            _entry(PEOPLE[0], "after the hand edits", "quatrefages-audit"),
            human(PEOPLE[0]),
        )
    finally:
        store.close()
    return settings


SYSTEM = {"type": "system", "id": "arka-os", "roles": ["writer"]}


def _entry(person: Person, message: str, mission: str) -> dict[str, Any]:
    return {
        "mission_id": mission,
        "entry": {
            "author_type": "human",
            "author_id": person.human_id,
            "entry_type": "note",
            "message": message,
        },
    }


def _writes(store: HcmStore, settings: Settings) -> None:
    ok(
        store,
        "HCM_PUT_DOCUMENT",
        {"path": "domain/org/org_profile.json", "content": {"name": TENANT_NAME}},
        ADMIN,
    )
    for i, person in enumerate(PEOPLE):
        member = {
            "human_id": person.human_id,
            "display_name": person.name,
            "email": person.email,
            "notes": f"Joignable au {PHONES[i]}",
        }
        ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "human", "member": member}, ADMIN)
    missions = []
    for i, person in enumerate(PEOPLE[:5]):
        mission = f"{ascii_of(person.last).lower()}-audit"
        missions.append(mission)
        meta = {
            "title": f"Audit {CLIENT}",
            "mission_type": "audit",
            "client_id": CLIENT_ID,
            "client_name": CLIENT,
            "owner_human_id": person.human_id,
        }
        ok(store, "HCM_CREATE_MISSION", {"mission_id": mission, "meta": meta}, human(person))
        other = PEOPLE[i + 5]
        forms = [
            other.name.upper(),
            ascii_of(other.name),
            unicodedata.normalize("NFD", other.name),
            other.last,
        ]
        for n, form in enumerate(forms):
            ok(
                store,
                "HCM_APPEND_JOURNAL",
                _entry(person, f"Réunion avec {form} ({other.email})", mission),
                human(person),
                request_id=f"req-{person.human_id}-{n}",
            )
        msg = f"Appeler {INTL_PHONES[i]} / {PHONES[i + 5]}; {TERM}; {MATRICULE}; {IP}; {SECRETS[i % 3]}"
        ok(store, "HCM_APPEND_JOURNAL", _entry(person, msg, mission), human(person))
        evidence = {
            "type": "doc",
            "title": f"RIB de {other.name}",
            "summary": f"IBAN {IBAN}, carte {CARD}",
            "source": {"origin": URL_CREDS, "details": f"NIR {NIR}"},
        }
        ok(store, "HCM_ADD_EVIDENCE", {"mission_id": mission, "evidence": evidence}, human(person))
        action = {
            "action_id": None,
            "title": f"Relancer {PEOPLE[i + 10].name}",
            "owner_type": "human",
            "owner_id": PEOPLE[i + 10].human_id,
        }
        ok(store, "HCM_UPDATE_NEXT_ACTIONS", {"mission_id": mission, "actions": [action]}, human(person))
        decision = {"title": f"Valider avec {PEOPLE[i + 10].email}", "status": "proposed"}
        ok(store, "HCM_RECORD_DECISION", {"mission_id": mission, "decision": decision}, human(person))
        # Arka OS (the system caller) names the person it writes for; an agent writes only as itself
        ok(store, "HCM_APPEND_JOURNAL", _entry(person, "agent note", mission), SYSTEM)
        agent_note = {"mission_id": mission, "entry": {"entry_type": "note", "message": "agent note"}}
        ok(store, "HCM_APPEND_JOURNAL", agent_note, AGENT)
    rules = {
        "rules": {"role_grants": {f"human/{PEOPLE[1].human_id}": ["admin"]}, "default_visibility": "internal"}
    }
    ok(store, "HCM_PUT_DOCUMENT", {"path": "hindex/meta_rules.json", "content": rules}, ADMIN)
    ok(store, "HCM_SNAPSHOT_MISSION", {"mission_id": missions[0], "reason": f"avant {PEOPLE[2].name}"}, ADMIN)
    create_snapshot(
        store, f"before-{ascii_of(PEOPLE[3].last).lower()}-import", f"état avant {PEOPLE[3].name}"
    )
    ok(
        store,
        "HCM_PUT_DOCUMENT",
        {
            "path": f"domain/projects/{ascii_of(PEOPLE[4].last).lower()}.json",
            "content": {"lead": PEOPLE[4].name, "phone": PHONES[4]},
        },
        ADMIN,
    )
    meta = store.execute(
        {
            "op": "HCM_GET_DOCUMENT",
            "request_id": "r-meta",
            "caller": ADMIN,
            "payload": {"path": "stable/glossary/README.json"},
        }
    )
    assert meta["status"] == "ok"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_history(tmp_path_factory.mktemp("anon") / "client")


@pytest.fixture(scope="module")
def bundle(history: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("out") / "support.bundle"
    report = anonymize_hcm(history, AnonymizeOptions(out=out))
    return out, report


def clone(bundle: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(bundle), str(dest)], check=True, capture_output=True)
    return dest


# --- tests --------------------------------------------------------------------------------------
def test_the_raw_history_holds_every_canary_somewhere(history: Settings) -> None:
    """The test is only worth something if the canaries are really there before."""
    raw = history.hcm_path
    values = canaries()
    assert len(values) >= 100
    found = {normal(v) for v in values if v}
    seen: set[str] = set()
    for _, _, text in objects_of(raw):
        haystack = normal(text)
        seen.update(f for f in found if f in haystack)
    missing = found - seen
    assert not missing, missing
    assert leaks(raw, values)  # the independent scan sees them


def test_no_canary_survives_in_any_object_of_the_bundle(bundle: tuple[Path, Any], tmp_path: Path) -> None:
    out, report = bundle
    support = clone(out, tmp_path / "support")
    assert leaks(support, canaries()) == []
    assert report.commits_replayed == int(git(support, "rev-list", "--count", "--all").strip())
    assert report.scan["status"] == "clean"
    assert report.scan["objects"] > 100


def test_the_bundle_is_self_contained_and_clones_to_a_checked_out_hcm(
    bundle: tuple[Path, Any], tmp_path: Path
) -> None:
    out, report = bundle
    git(tmp_path, "init", "-q", "--bare", "empty.git")
    git(tmp_path / "empty.git", "bundle", "verify", str(out))
    support = clone(out, tmp_path / "support")
    assert (support / "meta.json").is_file()
    assert git(support, "status", "--porcelain") == ""
    git(support, "fsck", "--strict", "--no-progress")
    tags = git(support, "tag", "--list").split()
    assert len(tags) == 2 and all(t.startswith("snapshot/") for t in tags)
    assert report.tags_replayed == 2


def test_support_can_verify_and_read_the_clone(bundle: tuple[Path, Any], tmp_path: Path) -> None:
    out, _ = bundle
    support = clone(out, tmp_path / "support")
    base = ["--hcm", str(support), "--config", str(tmp_path / "cfg"), "--logs", str(tmp_path / "logs")]
    runner = CliRunner()
    verified = runner.invoke(main, [*base, "verify"])
    assert verified.exit_code == 0, verified.output
    mission = next(p.name for p in (support / "state/missions").iterdir() if p.is_dir())
    reader = {"type": "human", "id": "support", "roles": ["reader"]}
    requests = [
        {
            "op": "HCM_GET_MISSION_CONTEXT",
            "request_id": "s1",
            "caller": reader,
            "payload": {
                "mission_id": mission,
                "options": {"include_decisions": True, "include_next_actions": True},
            },
        },
        {"op": "HCM_HISTORY", "request_id": "s2", "caller": reader, "payload": {"limit": 500}},
    ]
    result = runner.invoke(main, [*base, "exec"], input="\n".join(json.dumps(r) for r in requests))
    assert result.exit_code == 0, result.output
    context, history = (json.loads(line) for line in result.output.strip().splitlines())
    assert context["status"] == "ok" and context["data"]["last_journal_entries"]
    assert history["status"] == "ok"
    callers = {c["caller"] for c in history["data"]["commits"]}
    assert any(c.startswith("human/") for c in callers) and "agent/arka-pmo-01" in callers
    assert leaks(support, [c for c in callers if c.startswith("human/")]) != []  # pseudonyms are there


def test_pseudonyms_are_consistent_across_files_paths_authors_and_trailers(
    bundle: tuple[Path, Any], tmp_path: Path
) -> None:
    support = clone(bundle[0], tmp_path / "support")
    humans = json.loads((support / "state/team/humans.json").read_text())["humans"]
    assert len(humans) == len(PEOPLE)
    owner = json.loads(next((support / "state/missions").glob("*/meta.json")).read_text())["owner_human_id"]
    ids = {h["human_id"] for h in humans}
    assert owner in ids
    authors = set(git(support, "log", "--all", "--format=%an").split())
    trailers = set(re.findall(r"Hcm-Caller: human/(\S+)", git(support, "log", "--all", "--format=%B")))
    assert owner in trailers and owner in authors
    assert len(trailers - ids) == 1  # the admin caller (human/root-admin) is a human but not a team member
    for h in humans:
        assert re.fullmatch(r"[^@\s]+@[a-z0-9.-]+\.example", h["email"]), h["email"]
        assert h["human_id"].replace(".", "").isalnum()


def test_the_report_counts_without_values(bundle: tuple[Path, Any]) -> None:
    _, report = bundle
    data = report.to_json()
    text = json.dumps(data, ensure_ascii=False)
    for value in canaries():
        assert normal(value) not in normal(text)
    for category in (
        "email",
        "phone",
        "iban",
        "card",
        "nir",
        "ip",
        "secret",
        "human_id",
        "person_name",
        "client",
        "term",
        "pattern",
        "url_credentials",
    ):
        assert data["categories"][category]["replacements"] > 0, category
    assert re.fullmatch(r"[0-9a-f]{4}(:[0-9a-f]{4}){3}", data["key_fingerprint"])
    assert data["version"] and data["bundle"]["tip"]
    assert sum(sum(c.values()) for c in report.files.values()) > 0


def test_same_key_same_ids_other_key_other_pseudonyms(
    history: Settings, bundle: tuple[Path, Any], tmp_path: Path
) -> None:
    again = anonymize_hcm(history, AnonymizeOptions(out=tmp_path / "again.bundle"))
    assert again.bundle is not None and bundle[1].bundle is not None
    assert again.bundle["tip"] == bundle[1].bundle["tip"]
    first = git(clone(bundle[0], tmp_path / "a"), "show-ref")
    assert git(clone(tmp_path / "again.bundle", tmp_path / "b"), "show-ref") == first  # tags too
    other_config = tmp_path / "other-config"
    other_config.mkdir()
    (other_config / ANONYMIZE_KEY_FILE).write_text("ab" * 32 + "\n")
    (other_config / ANONYMIZE_KEY_FILE).chmod(0o600)
    other = anonymize_hcm(
        history.model_copy(update={"config_path": other_config}),
        AnonymizeOptions(out=tmp_path / "other.bundle"),
    )
    assert other.bundle is not None and other.bundle["tip"] != bundle[1].bundle["tip"]
    assert other.key_fingerprint != bundle[1].key_fingerprint
    a = json.loads((tmp_path / "a/state/team/humans.json").read_text())["humans"]
    c = json.loads((clone(tmp_path / "other.bundle", tmp_path / "c") / "state/team/humans.json").read_text())[
        "humans"
    ]
    assert {h["display_name"] for h in a}.isdisjoint({h["display_name"] for h in c})


def test_anonymizing_only_the_latest_state_is_caught_by_the_scan(
    history: Settings, bundle: tuple[Path, Any], tmp_path: Path
) -> None:
    """The naive way: the raw history plus one commit with anonymized files on top. The scan
    must refuse it (the old blobs, authors and messages are still there)."""
    support = clone(bundle[0], tmp_path / "anon")
    naive = tmp_path / "naive"
    subprocess.run(["git", "clone", "-q", str(history.hcm_path), str(naive)], check=True)
    for path in naive.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in support.iterdir():
        if path.name != ".git":
            (shutil.copytree if path.is_dir() else shutil.copy)(path, naive / path.name)
    git(naive, "add", "-A")
    git(naive, "-c", "user.name=x", "-c", "user.email=x@x.example", "commit", "-q", "-m", "anonymized state")
    assert leaks(naive, canaries()) != []
    git(naive, "bundle", "create", "-q", str(tmp_path / "naive.bundle"), "HEAD", "main")
    with pytest.raises(LeakFound) as caught:
        check_bundle(history, tmp_path / "naive.bundle")
    assert caught.value.exit_code == 14
    for value in canaries():
        assert normal(value) not in normal(caught.value.message)
    assert check_bundle(history, bundle[0]).objects > 100  # the real bundle passes the same check


def test_a_leak_the_rewriter_misses_leaves_no_bundle(tmp_path: Path) -> None:
    """A commit message with a JSON-escaped name (plain text is not JSON: the rewriter leaves it,
    the scan decodes it): the bundle is deleted, the exit code is 14, the message has no value."""
    settings = new_hcm(tmp_path / "client")
    with open_store(settings) as store:
        member = {"human_id": "wandrille.orsonnaud", "display_name": "Wandrille Orsonnaud", "email": "w@o.fr"}
        ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "human", "member": member}, ADMIN)
    hand_commit(
        settings.hcm_path,
        {"domain/x.json": b"{}\n"},
        "ping W\\u0061ndrille Orsonn\\u0061ud",
        "A B <a@b.example>",
    )
    out = tmp_path / "support.bundle"
    with pytest.raises(LeakFound) as caught:
        anonymize_hcm(settings, AnonymizeOptions(out=out))
    assert caught.value.category == "person_name" and caught.value.where.startswith("commit ")
    assert "andrille" not in caught.value.message.lower()
    assert not out.exists() and list(tmp_path.glob(".support.bundle*")) == []
    assert list((settings.hcm_path / ".git/arka-hcm/anonymized").iterdir()) == []
    result = CliRunner().invoke(main, ["--client", str(tmp_path / "client"), "anonymize", "--out", str(out)])
    assert result.exit_code == 14 and "person_name" in result.output and not out.exists()


def test_an_incremental_bundle_is_fetched_on_top_of_the_first(tmp_path: Path) -> None:
    settings = new_hcm(tmp_path / "client")
    person = PEOPLE[6]
    with open_store(settings) as store:
        ok(
            store,
            "HCM_UPSERT_TEAM_MEMBER",
            {
                "kind": "human",
                "member": {"human_id": person.human_id, "display_name": person.name, "email": person.email},
            },
            ADMIN,
        )
        ok(store, "HCM_CREATE_MISSION", {"mission_id": "m1", "meta": {"title": "t", "mission_type": "audit"}})
        ok(store, "HCM_APPEND_JOURNAL", _entry(person, f"hello {person.name}", "m1"), human(person))
    first = anonymize_hcm(settings, AnonymizeOptions(out=tmp_path / "first.bundle"))
    with open_store(settings, start=datetime(2026, 11, 28, tzinfo=UTC)) as store:
        for n in range(3):
            ok(store, "HCM_APPEND_JOURNAL", _entry(person, f"day {n}: {person.email}", "m1"), human(person))
        create_snapshot(store, "later", f"for {person.name}")
    second = anonymize_hcm(
        settings, AnonymizeOptions(out=tmp_path / "second.bundle", since_bundle=tmp_path / "first.bundle")
    )
    assert first.bundle is not None and second.bundle is not None
    assert second.bundle["prerequisites"] == [first.bundle["tip"]]
    assert second.commits_replayed == first.commits_replayed + 3
    support = clone(tmp_path / "first.bundle", tmp_path / "support")
    git(
        support,
        "fetch",
        "-q",
        str(tmp_path / "second.bundle"),
        "refs/heads/main:refs/remotes/origin/main",
        "refs/tags/*:refs/tags/*",
    )
    git(support, "merge", "-q", "--ff-only", "origin/main")
    assert git(support, "rev-parse", "HEAD").strip() == second.bundle["tip"]
    assert git(support, "tag", "--list").split() == ["snapshot/later"]
    assert leaks(support, [person.name, person.email, person.human_id]) == []
    full = anonymize_hcm(settings, AnonymizeOptions(out=tmp_path / "full.bundle"))
    assert full.bundle is not None and full.bundle["tip"] == second.bundle["tip"]
    # nothing new: no bundle; another key: the previous history does not continue
    result = CliRunner().invoke(
        main,
        [
            "--client",
            str(tmp_path / "client"),
            "anonymize",
            "--out",
            str(tmp_path / "third.bundle"),
            "--since-bundle",
            str(tmp_path / "second.bundle"),
        ],
    )
    assert result.exit_code == 6, result.output
    assert not (tmp_path / "third.bundle").exists()
    result = CliRunner().invoke(
        main,
        [
            "--client",
            str(tmp_path / "client"),
            "anonymize",
            "--out",
            str(tmp_path / "other.bundle"),
            "--since-bundle",
            str(tmp_path / "first.bundle"),
            "--coarsen-timestamps",
        ],
    )
    assert result.exit_code == 7, result.output
    assert "does not continue" in result.output


def test_since_snapshot_and_squashed_start_from_a_full_state(history: Settings, tmp_path: Path) -> None:
    total = int(git(history.hcm_path, "rev-list", "--count", "HEAD").strip())
    squashed = anonymize_hcm(history, AnonymizeOptions(out=tmp_path / "sq.bundle", history="squashed"))
    assert squashed.commits_replayed == 1
    one = clone(tmp_path / "sq.bundle", tmp_path / "sq")
    assert git(one, "rev-list", "--count", "HEAD").strip() == "1"
    assert leaks(one, canaries()) == []
    name = f"before-{ascii_of(PEOPLE[3].last).lower()}-import"
    tags = git(history.hcm_path, "tag", "--list").split()
    assert f"snapshot/{name}" in tags
    snap = anonymize_hcm(history, AnonymizeOptions(out=tmp_path / "snap.bundle", snapshot=name))
    assert 1 < snap.commits_replayed < total
    part = clone(tmp_path / "snap.bundle", tmp_path / "snap")
    root = git(part, "rev-list", "--max-parents=0", "HEAD").split()
    assert len(root) == 1 and (part / "state/team/humans.json").is_file()
    assert leaks(part, canaries()) == []
    moment = "2026-11-26T09:00:30Z"
    since = anonymize_hcm(history, AnonymizeOptions(out=tmp_path / "since.bundle", since=moment))
    base = git(history.hcm_path, "rev-list", "-1", "--first-parent", f"--before={moment}", "HEAD").strip()
    expected = int(git(history.hcm_path, "rev-list", "--count", "HEAD", f"^{base}^@").strip())
    assert 1 < since.commits_replayed == expected < total  # the state at that moment, then every later commit
    later = clone(tmp_path / "since.bundle", tmp_path / "since")
    assert (later / "state/team/humans.json").is_file() and leaks(later, canaries()) == []


def test_coarsened_timestamps_are_days_in_utc(history: Settings, tmp_path: Path) -> None:
    report = anonymize_hcm(history, AnonymizeOptions(out=tmp_path / "c.bundle", coarsen_timestamps=True))
    assert report.coarsen_timestamps
    support = clone(tmp_path / "c.bundle", tmp_path / "c")
    dates = set(git(support, "log", "--format=%ad %cd", "--date=raw").split())
    assert all(d == "+0000" or int(d) % 86400 == 0 for d in dates)
    journal = next((support / "state/missions").glob("*/journal.jsonl")).read_text()
    stamps = re.findall(r'"timestamp":"([^"]+)"', journal)
    assert stamps and all(s.endswith("T00:00:00Z") for s in stamps)


def test_a_dry_run_writes_nothing(history: Settings, tmp_path: Path) -> None:
    before = sorted(p.relative_to(history.hcm_path) for p in history.hcm_path.rglob("*"))
    report = anonymize_hcm(history, AnonymizeOptions(dry_run=True))
    assert report.dry_run and report.bundle is None and report.commits_replayed > 50
    assert report.scan is not None and report.scan["status"].startswith("would pass")
    assert sorted(p.relative_to(history.hcm_path) for p in history.hcm_path.rglob("*")) == before
