"""Shape-keeping keyed pseudonyms, folding and detectors: properties (Hypothesis) and examples."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm.anonymize.detectors import PatternDetector, field_values, identity_values
from arka_git_hcm.anonymize.dictionary import SensitiveSet, layout_words
from arka_git_hcm.anonymize.leakscan import scan_objects
from arka_git_hcm.anonymize.normalize import fold, is_boundary, scan_form
from arka_git_hcm.anonymize.pseudonyms import Pseudonyms, luhn_ok, nir_ok
from arka_git_hcm.anonymize.rewriter import Rewriter
from arka_git_hcm.ids import is_valid_id

KEY = b"k" * 32
OTHER = b"o" * 32
ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[A-Za-z0-9.-]+\.example$")

ids = st.from_regex(r"[a-z0-9](?:[a-z0-9._-]{0,40}[a-z0-9])?", fullmatch=True).filter(is_valid_id)
names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzéèàçöñÉÈÀ"), min_size=1, max_size=12)
emails = st.builds(lambda a, b, tld: f"{a}@{b}.{tld}", ids, ids, st.sampled_from(["fr", "com", "io"]))
phones_fr = st.builds(
    lambda d, rest, sep: "0" + d + "".join(sep + f"{x:02d}" for x in rest),
    st.sampled_from("123456789"),
    st.lists(st.integers(0, 99), min_size=4, max_size=4),
    st.sampled_from([" ", ".", "-", ""]),
)


def frozen(*values: tuple[str, str], key: bytes = KEY) -> SensitiveSet:
    sensitive = SensitiveSet()
    sensitive.add_all(values)
    sensitive.freeze(Pseudonyms(key))
    return sensitive


# --- shapes -------------------------------------------------------------------------------------
@given(ids)
def test_an_id_stays_a_valid_id_and_is_deterministic(value: str) -> None:
    out = Pseudonyms(KEY).text(value)
    assert ID_RE.fullmatch(out) and is_valid_id(out), out
    assert out == Pseudonyms(KEY).text(value)
    assert [c for c in out if not c.isalnum()] == [c for c in value if not c.isalnum()]  # separators kept


@given(emails)
def test_an_email_stays_an_email(value: str) -> None:
    out = Pseudonyms(KEY).email(value)
    assert EMAIL_RE.fullmatch(out), out
    assert out == Pseudonyms(KEY).email(value) != Pseudonyms(OTHER).email(value)


@given(phones_fr)
def test_a_phone_keeps_its_format_and_prefix(value: str) -> None:
    out = Pseudonyms(KEY).phone(value)
    assert len(out) == len(value)
    assert [c.isdigit() for c in out] == [c.isdigit() for c in value]
    assert [c for c in out if not c.isdigit()] == [c for c in value if not c.isdigit()]
    assert out[:2] == value[:2]


@given(st.integers(0, 10**13 - 1))
def test_iban_card_and_nir_keep_valid_checksums(number: int) -> None:
    p = Pseudonyms(KEY)
    iban = p.iban(f"FR76 {number:013d} 0112 3456 789")
    compact = iban.replace(" ", "")
    assert int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1
    card = p.card(f"4{number:015d}"[:16])
    assert len(card) == 16 and card[0] == "9" and luhn_ok(card)
    nir = p.nir(f"1{number:014d}")
    assert nir_ok(nir.replace(" ", ""))


@given(st.lists(st.text(st.sampled_from("0123456789"), min_size=3, max_size=3), min_size=2, unique=True))
def test_digit_runs_never_collide(runs: list[str]) -> None:
    """A keyed permutation: ids that differ by a counter stay different."""
    p = Pseudonyms(KEY)
    outs = [p.digits(r) for r in runs]
    assert len(set(outs)) == len(outs)
    assert all(len(o) == 3 and o.isdigit() for o in outs)


def test_no_collision_on_a_small_domain_of_ids() -> None:
    """Where it matters (ids become paths and trailers): 5,000 user ids of one shape."""
    tokens = [f"user{n}" for n in range(5000)] + [f"u{n}" for n in range(5000)]
    p = Pseudonyms(KEY)
    p.prepare([fold(t) for t in tokens])
    outs = {p.text(f"mission-{t}") for t in tokens}
    assert len(outs) == len(tokens)
    words = [p.word(fold(t)) for t in tokens]
    assert len(set(words)) == len(words)


@given(names, names)
def test_the_same_value_in_any_spelling_gets_one_pseudonym(first: str, last: str) -> None:
    name = f"{first} {last}"
    sensitive = frozen(("person_name", name))
    spellings = [name, name.upper(), unicodedata.normalize("NFD", name), unicodedata.normalize("NFC", name)]
    outs = {fold(sensitive.rewrite(s)) for s in spellings}
    assert len(outs) == 1, outs
    if len(fold(name)) >= 3 and fold(name) not in layout_words():
        assert sensitive.rewrite(f"dit {name}.") != f"dit {name}."


@settings(max_examples=30)
@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)), st.integers(-12, 14))
def test_dates_stay_dates_in_utc(moment: datetime, hours: int) -> None:
    offset = f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + offset
    for coarsen in (False, True):
        out = Rewriter(frozen(), coarsen=coarsen).json_text(json.dumps({"t": stamp}), Counter())
        value = json.loads(out)["t"]
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert value.endswith("Z")
        expected = datetime.fromisoformat(stamp)
        if coarsen:
            assert value.endswith("T00:00:00Z") and parsed.date() == expected.astimezone(parsed.tzinfo).date()
        else:
            assert parsed == expected


def test_another_key_gives_other_pseudonyms() -> None:
    values = [
        ("person_name", "Zéphyrine Quatrefages"),
        ("email", "z.q@orsonnaud.fr"),
        ("phone", "06 12 34 56 78"),
    ]
    one, two = frozen(*values), frozen(*values, key=OTHER)
    for _, value in values:
        assert one.rewrite(value) != two.rewrite(value)
        assert one.rewrite(value) == frozen(*values).rewrite(value)


# --- folding and matching -----------------------------------------------------------------------
def test_folding_keeps_length_and_finds_every_spelling() -> None:
    for text in ("José", "JOSÉ", "Jose", "Jose\u0301", "Ǆemal", "İstanbul", "Straße"):
        assert len(fold(text)) == len(text)
    assert scan_form("Jos\\u00e9 JOSÉ Jose\u0301") == "jose jose jose"
    assert is_boundary("ana-audit", 0, 3) and not is_boundary("banana", 3, 6)
    sensitive = frozen(("person_name", "José Garcia"))
    for text in ("José Garcia", "JOSÉ GARCIA", "Jose Garcia", "jose\u0301 garcia"):
        assert sensitive.first_hit(scan_form(text)) == "person_name", text
    assert sensitive.first_hit(scan_form("Jos\\u00e9 Garc\\u00eda")) == "person_name"
    assert sensitive.first_hit(scan_form("joseph garciaz")) is None


def test_words_of_the_layout_are_never_needles() -> None:
    sensitive = frozen(("person_name", "Planned Status"), ("human_id", "agent"), ("tenant", "ab"))
    assert sensitive.rewrite('{"status": "planned", "author_type": "agent"}') == (
        '{"status": "planned", "author_type": "agent"}'
    )
    assert sensitive.size == 1  # only "planned status" itself


def test_a_pseudonym_never_contains_a_sensitive_value() -> None:
    p = Pseudonyms(KEY)
    probe = SensitiveSet()
    probe.freeze(p)
    word = p.word("dupont")
    sensitive = frozen(("person_name", "Dupont"), ("person_name", word))  # the word is taken: next one
    assert fold(sensitive.rewrite("Dupont")) not in (word, "dupont")


# --- detectors ----------------------------------------------------------------------------------
def test_patterns_find_what_they_should() -> None:
    text = (
        "mail jean.dupont@acme.fr, tel 06 12 34 56 78 or +33 6 12 34 56 79 or +44 20 7946 0958; "
        "IBAN FR76 3000 6000 0112 3456 7890 189; card 4111 1111 1111 1111; NIR 2 84 05 75 116 202 51; "
        "ip 10.42.17.9 and 2a01:e35:8bd3:1b20::1; https://bob:pw@git.acme.fr/x; "
        "ghp_Zq8kLmN0pQrStUvWxYz0123456789AbCdEf AKIAZ7QW3ERT5YUI8OPA "
        "arka_9fK2mQ7xL0pV3sD8hJ4nB6tR1yW5zC xK9mQ2vL8pW4nR7tY3hJ6bZ1cF5dG0sA2eU"
    )
    found = Counter(category for category, _ in set(PatternDetector().find(text)))
    assert found["email"] >= 1 and found["phone"] == 3 and found["iban"] == 1 and found["card"] == 1
    assert found["nir"] == 1 and found["ip"] == 2 and found["url_credentials"] == 1 and found["secret"] >= 4


def test_patterns_do_not_fire_on_what_they_should_not() -> None:
    text = (
        "version 1.0.0, 2026-11-26T09:00:00Z, 127.0.0.1, 192.0.2.10, card 4111 1111 1111 1112, "
        "NIR 2 84 05 75 116 202 52, IBAN FR76 3000 6000 0112 3456 7890 188, 1796656923000, "
        "sha 3f9a0c12d4e5b6a7980123456789abcdef012345, ev-3f9a0c12d4e5"
    )
    assert list(PatternDetector().find(text)) == []


def test_client_terms_and_patterns() -> None:
    detector = PatternDetector(terms=["Projet Phénix"], patterns=[r"MAT-\d{6}"])
    assert ("pattern", "MAT-884211") in list(detector.find("badge MAT-884211 ok"))


def test_fields_of_the_layout() -> None:
    doc = {
        "humans": [
            {"human_id": "jdoe", "display_name": "Jane Doe", "email": "j@d.fr", "notes": "n", "phone": "1"}
        ],
        "tenant_id": "acme",
        "client_name": "ACME Corp",
        "entry": {"author_type": "human", "author_id": "bob"},
        "agent": {"author_type": "agent", "author_id": "arka-pmo-01"},
        "rules": {"role_grants": {"human/alice": ["admin"]}},
        "risks": [{"risk_id": "r1", "owner": "carol"}],
        "password": "hunter22",
    }
    found = set(field_values(doc))
    for pair in [
        ("human_id", "jdoe"),
        ("person_name", "Jane Doe"),
        ("email", "j@d.fr"),
        ("note", "n"),
        ("tenant", "acme"),
        ("client", "ACME Corp"),
        ("human_id", "bob"),
        ("agent", "arka-pmo-01"),
        ("human_id", "alice"),
        ("owner", "carol"),
        ("secret", "hunter22"),
    ]:
        assert pair in found, pair
    service = {("Arka HCM", "hcm@arka-os.local")}
    assert identity_values("alice", "alice@human.arka", service) == [("human_id", "alice")]
    assert identity_values("arka-pmo-01", "arka-pmo-01@agent.arka", service) == [("agent", "arka-pmo-01")]
    assert identity_values("Arka HCM", "hcm@arka-os.local", service) == []
    assert identity_values("Jane Doe", "jane@corp.fr", service) == [
        ("person_name", "Jane Doe"),
        ("email", "jane@corp.fr"),
    ]


def test_json_files_keep_their_layout_and_stay_canonical() -> None:
    sensitive = frozen(("human_id", "alice.martin"), ("person_name", "Alice Martin"))
    rewriter = Rewriter(sensitive, coarsen=False)
    doc = {"rules": {"role_grants": {"human/alice.martin": ["admin"], "human/zz": ["writer"]}}, "n": 1.50}
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    out = rewriter.json_text(text, Counter(), whole=True)
    assert "alice" not in out and json.loads(out)["n"] == 1.5
    assert out == json.dumps(json.loads(out), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    escaped = '{"m": "Alice Mart\\u00efn \\"quoted\\" \\u00e9t\\u00e9", "k": 2}'
    assert (
        "Alice Martin"
        not in json.loads(rewriter.json_text(escaped.replace("\\u00efn", "in"), Counter()))["m"]
    )
    line = '{"message":"voir Alice Martin","timestamp":"2026-11-26T09:00:00Z"}\n'
    first = rewriter.content("j.jsonl", line.encode(), Counter())
    grown = rewriter.content("j.jsonl", (line + line).encode(), Counter())
    assert grown == first + first and b"Alice" not in grown


# --- the leak scan, journal versions searched from their growth ---------------------------------
def _blob(data: bytes) -> tuple[str, str, bytes]:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(), "blob", data


def test_a_grown_journal_is_searched_from_its_growth_and_still_finds_every_leak() -> None:
    sensitive = frozen(("person_name", "José Canari"))
    path = "state/missions/m1/journal.jsonl"
    v1 = _blob(b'{"message": "kickoff"}\n' * 200)
    v2 = _blob(v1[2] + b'{"message": "met Jos\\u00e9 CANARI"}\n')  # escaped and in capitals
    v3 = _blob(v2[2] + b'{"message": "done"}\n')
    paths = {v[0]: path for v in (v1, v2, v3)}
    scanned: list[int] = []
    # the leak is in v2's growth: found, with only the growth of v2 searched
    _, _, hit = scan_objects([v1, v2, v3], sensitive, paths, scanned)
    assert hit == ("person_name", "blob", v2[0])
    assert scanned[0] == len(v1[2]) + len(v2[2]) - len(v1[2])
    # v3 alone holds the leak in its first part, never searched before: searched whole
    scanned.clear()
    _, _, hit = scan_objects([v3], sensitive, paths, scanned)
    assert hit == ("person_name", "blob", v3[0]) and scanned == [len(v3[2])]
    # a clean history: every version read, the later ones searched from their growth
    clean1 = _blob(b'{"message": "kickoff"}\n' * 200)
    clean2 = _blob(clean1[2] + b'{"message": "done"}\n')
    scanned.clear()
    count, size, hit = scan_objects([clean1, clean2], sensitive, {clean1[0]: path, clean2[0]: path}, scanned)
    assert hit is None and count == 2 and size == len(clean1[2]) + len(clean2[2])
    assert scanned == [len(clean2[2])]


def test_a_version_that_does_not_extend_the_last_one_is_searched_whole() -> None:
    sensitive = frozen(("person_name", "José Canari"))
    path = "state/missions/m1/journal.jsonl"
    scanned: list[int] = []
    # rewritten below its first line (a rotation, a hand edit): not an extension
    v1 = _blob(b'{"m": "a"}\n{"m": "b"}\n')
    v2 = _blob(b'{"m": "a"}\n{"m": "x"}\n{"m": "more"}\n')
    _, _, hit = scan_objects([v1, v2], sensitive, {v1[0]: path, v2[0]: path}, scanned)
    assert hit is None and scanned == [len(v1[2]) + len(v2[2])]
    # bytes that are not what the earlier version's id says are not taken as searched
    honest = _blob(b'{"m": "a"}\n')
    fake = (honest[0], "blob", b'{"m": "b"}\n')  # same length, other bytes, the id lies
    grown = _blob(fake[2] + b'{"m": "c"}\n')
    scanned.clear()
    _, _, hit = scan_objects([fake, grown], sensitive, {fake[0]: path, grown[0]: path}, scanned)
    assert hit is None and scanned == [len(fake[2]) + len(grown[2])]
    # without paths (a caller that has none): every version whole
    v3 = _blob(v1[2] + b'{"m": "c"}\n')
    scanned.clear()
    scan_objects([v1, v3], sensitive, None, scanned)
    assert scanned == [len(v1[2]) + len(v3[2])]


def test_a_value_holding_a_line_break_turns_the_growth_search_off() -> None:
    sensitive = frozen(("person_name", "José Canari"), ("free_text", "line one\nline two"))
    assert sensitive.spans_lines
    path = "state/missions/m1/journal.jsonl"
    v1 = _blob(b"line one\n")
    v2 = _blob(v1[2] + b"line two\n")
    scanned: list[int] = []
    _, _, hit = scan_objects([v1, v2], sensitive, {v1[0]: path, v2[0]: path}, scanned)
    assert hit is not None and hit[2] == v2[0]  # the value spans v1's end: found in v2 whole


def _tree(*names: bytes) -> tuple[str, str, bytes]:
    data = b"".join(b"100644 " + name + b"\0" + hashlib.sha1(name).digest() for name in sorted(names))
    return hashlib.sha1(b"tree %d\0" % len(data) + data).hexdigest(), "tree", data


def test_tree_names_are_searched_once_each_and_a_new_one_is_always_searched() -> None:
    sensitive = frozen(("person_name", "José Canari"))
    wide = [b"m-%04d" % n for n in range(500)]
    first, second = _tree(*wide), _tree(*wide, b"m-0500")
    named = _tree(*wide, b"m-0500", "jos\u00e9-canari.json".encode())  # a file named after a person
    scanned: list[int] = []
    count, _, hit = scan_objects([first, second], sensitive, None, scanned)
    assert hit is None and count == 2
    assert scanned == [len(b"\n".join(wide)) + len(b"m-0500")]  # the second tree: its new name only
    scanned.clear()
    _, _, hit = scan_objects([first, second, named], sensitive, None, scanned)
    assert hit == ("person_name", "tree", named[0])
    # bytes that are not a well-formed tree are searched whole
    broken = ("0" * 40, "tree", named[2][:-3])
    _, _, hit = scan_objects([named, broken], frozen(("person_name", "Zoé Lointaine")), None, scanned)
    assert hit is None and scanned[-1] > len(named[2])
