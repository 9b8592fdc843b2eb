"""Nothing a caller sends can create, end or override a commit trailer, or split a subject.

An attack seen on the landed store: a display name holding ``\\u2028Hcm-Request-Id: ev-1...``
reached the ``Hcm-Result`` trailer raw, and ``str.splitlines`` made it trailers of their own:
history showed another operation by another caller, and an agent's real request ``ev-1`` was
then answered ``replayed`` without ever being committed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from arka_git_hcm.config import Settings
from arka_git_hcm.domain.commit_message import OperationTrailers, build_message, parse_result, parse_trailers
from arka_git_hcm.jsonio import compact_dumps, line_dumps
from arka_git_hcm.services.store import HcmStore

from .conftest import ADMIN, AGENT, commit_count, create_mission, envelope, git, ok

# Every code point some reader takes for a line end: \n and \r for git, the rest for
# str.splitlines, JavaScript, or log shippers.
LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def forged(lb: str, paragraph: bool = False) -> str:
    """Trailer lines after a line break (and, with ``paragraph``, a blank line first)."""
    return (
        f"Eve{lb}{lb if paragraph else ''}Hcm-Op: HCM_FORGED{lb}Hcm-Request-Id: ev-1{lb}"
        f"Hcm-Caller: agent/agent1{lb}Hcm-Payload-Sha256: {'0' * 64}{lb}Hcm-Result: {{}}"
    )


def git_trailers(hcm: Path, revision: str) -> list[str]:
    """git's own reading of the trailers (the oracle): `git interpret-trailers --parse`."""
    message = git(hcm, "log", "-1", "--format=%B", revision)
    proc = subprocess.run(
        ["git", "interpret-trailers", "--parse"], input=message, capture_output=True, text=True, check=True
    )
    return [line.split(": ", 1)[0] for line in proc.stdout.splitlines() if line]


def check_commit(store: HcmStore, hcm: Path, response: dict[str, Any], op: str, caller: str) -> None:
    revision = response["revision"]
    message = git(hcm, "log", "-1", "--format=%B", revision)
    subject, _, rest = message.partition("\n\n")
    assert "\n" not in subject and "\r" not in subject, subject
    trailers = parse_trailers(message)
    assert trailers["Hcm-Op"] == op
    assert trailers["Hcm-Request-Id"] == response["request_id"]
    assert trailers["Hcm-Caller"] == caller
    keys = git_trailers(hcm, revision)
    assert "HCM_FORGED" not in message.split("\n\n")[-1].split("\n")[0]
    assert keys.count("Hcm-Op") == 1 and keys.count("Hcm-Request-Id") == 1, keys
    assert all(line.isascii() for line in rest.split("\n")), "trailers are ASCII-only"
    history = ok(store, "HCM_HISTORY", {"limit": 1, "at": revision}, ADMIN)["data"]["commits"][0]
    assert (history["op"], history["caller"], history["request_id"]) == (op, caller, response["request_id"])


@pytest.mark.parametrize("paragraph", [False, True], ids=["lines", "paragraph"])
@pytest.mark.parametrize("lb", LINE_BREAKS, ids=[f"U+{ord(lb[-1]):04X}" for lb in LINE_BREAKS])
def test_no_payload_field_can_forge_a_trailer_or_split_the_subject(
    store: HcmStore, settings: Settings, lb: str, paragraph: bool
) -> None:
    hcm = settings.hcm_path
    text = forged(lb, paragraph)
    response = ok(
        store,
        "HCM_CREATE_MISSION",
        {"mission_id": "m1", "meta": {"title": text, "mission_type": "audit", "client_name": text}},
    )
    check_commit(store, hcm, response, "HCM_CREATE_MISSION", "human/alice")
    member = {"human_id": "eve", "display_name": text, "notes": text}
    response = ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "human", "member": member})
    check_commit(store, hcm, response, "HCM_UPSERT_TEAM_MEMBER", "human/alice")
    entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": text}
    response = ok(store, "HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry}, AGENT)
    check_commit(store, hcm, response, "HCM_APPEND_JOURNAL", "agent/arka-pmo-01")
    response = ok(
        store, "HCM_ADD_EVIDENCE", {"mission_id": "m1", "evidence": {"type": "doc", "title": text}}, AGENT
    )
    check_commit(store, hcm, response, "HCM_ADD_EVIDENCE", "agent/arka-pmo-01")
    response = ok(store, "HCM_SNAPSHOT_MISSION", {"mission_id": "m1", "reason": text})
    check_commit(store, hcm, response, "HCM_SNAPSHOT_MISSION", "human/alice")
    response = ok(store, "HCM_ROLLBACK", {"target": "HEAD~1", "reason": text}, ADMIN)
    check_commit(store, hcm, response, "HCM_ROLLBACK", "human/root-admin")


@pytest.mark.parametrize("lb", ["\u2028", "\u2029", "\x85", "\x1c"])
def test_a_forged_request_id_is_never_taken_for_a_real_request_after_a_restart(
    store: HcmStore, settings: Settings, lb: str
) -> None:
    create_mission(store)
    member = {"human_id": "eve", "display_name": forged(lb)}
    ok(store, "HCM_UPSERT_TEAM_MEMBER", {"kind": "human", "member": member})
    store.close()
    with HcmStore.open(settings) as reopened:  # the request index is rebuilt from history
        before = commit_count(settings.hcm_path)
        entry = {"author_type": "agent", "author_id": "arka-pmo-01", "entry_type": "note", "message": "real"}
        response = reopened.execute(
            envelope("HCM_APPEND_JOURNAL", {"mission_id": "m1", "entry": entry}, AGENT, request_id="ev-1")
        )
        assert response["status"] == "ok" and "replayed" not in response, response
        assert commit_count(settings.hcm_path) == before + 1
        journal = (settings.hcm_path / "state/missions/m1/journal.jsonl").read_text()
        assert '"message":"real"' in journal


def test_results_with_any_code_point_round_trip_through_the_trailer() -> None:
    value = {"member": {"display_name": "José\u2028\u2029\x85\r\n\x00\u202e", "n": 1}}
    message = build_message(
        "state/team/humans.json",
        "add human eve",
        OperationTrailers("HCM_UPSERT_TEAM_MEMBER", "r-1", "human/alice", result=value),
    )
    assert parse_result(parse_trailers(message)) == value


def test_trailer_blocks_the_store_did_not_write_are_not_trusted() -> None:
    good = "HCM_X m1: s\n\nHcm-Op: HCM_X\nHcm-Request-Id: r-1\nHcm-Caller: human/a\n"
    assert parse_trailers(good)["Hcm-Request-Id"] == "r-1"
    duplicated = good + "Hcm-Request-Id: r-2\n"
    assert parse_trailers(duplicated) == {}
    out_of_order = "s\n\nHcm-Request-Id: r-1\nHcm-Op: HCM_X\nHcm-Caller: human/a\n"
    assert parse_trailers(out_of_order) == {}
    after_result = good + 'Hcm-Result: {"a":1}\nHcm-Mission: m1\n'
    assert parse_trailers(after_result) == {}
    unknown = good + "Signed-off-by: someone\n"
    assert parse_trailers(unknown) == {}
    with_control = good.replace("r-1", "r\x1e1")
    assert parse_trailers(with_control) == {}
    # an older version wrote the result with raw non-ASCII (U+2028 included): still one trailer
    legacy = good + 'Hcm-Result: {"member":{"display_name":"Eve\u2028Hcm-Op: X"}}\n'
    assert parse_trailers(legacy)["Hcm-Op"] == "HCM_X"
    assert parse_result(parse_trailers(legacy)) == {"member": {"display_name": "Eve\u2028Hcm-Op: X"}}


def test_values_the_store_builds_are_checked_before_they_are_written() -> None:
    with pytest.raises(ValueError):
        build_message("m1", "s", OperationTrailers("HCM_X", "r-1\nHcm-Op: Y", "human/a"))


@pytest.mark.parametrize("lb", ["\u2028", "\u2029", "\x85"])
def test_json_lines_stay_one_line_for_every_reader(lb: str) -> None:
    for text in (compact_dumps({"m": f"a{lb}b"}), line_dumps({"m": f"a{lb}b"})):
        assert len(text.splitlines()) == 1
        assert lb not in text
