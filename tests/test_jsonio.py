"""Strict JSON in, canonical JSON out: the JSONTestSuite corpus and the HCM's own strict rules."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm.errors import HcmError, InvalidPayload, PayloadTooLarge
from arka_git_hcm.jsonio import DEFAULT_MAX_DEPTH, canonical_bytes, canonical_dumps, compact_dumps, parse_json

from .conftest import FIXTURES

# The public JSONTestSuite corpus (MIT, its LICENSE beside it), copied into the repository.
CORPUS = FIXTURES / "jsontestsuite" / "test_parsing"

# y_* files the suite calls valid JSON that the HCM refuses on purpose (contract + corpus README):
# duplicate keys are legal RFC 8259 syntax, but parsers disagree on which value wins, which makes
# them a smuggling vector between the validator and the consumer.
DELIBERATELY_REFUSED = {
    "y_object_duplicated_key.json": "duplicate key",
    "y_object_duplicated_key_and_value.json": "duplicate key",
}


def _corpus(prefix: str) -> list[Any]:
    files = sorted(CORPUS.glob(f"{prefix}_*.json")) if CORPUS.is_dir() else []
    if not files:
        # An empty parameter list would be a silent skip: make the absence one loud failure instead.
        return [pytest.param(None, id=f"{prefix}_CORPUS_MISSING")]
    return [pytest.param(path, id=path.name) for path in files]


def _read(path: Path | None) -> bytes:
    if path is None:
        pytest.fail(f"JSONTestSuite corpus not found at {CORPUS} (tests/fixtures/jsontestsuite)")
    return path.read_bytes()


def test_corpus_is_present_and_complete() -> None:
    assert CORPUS.is_dir(), f"JSONTestSuite corpus not found at {CORPUS}"
    names = [p.name for p in CORPUS.iterdir()]
    assert sum(n.startswith("y_") for n in names) >= 95
    assert sum(n.startswith("n_") for n in names) >= 188
    assert sum(n.startswith("i_") for n in names) >= 35
    for name in DELIBERATELY_REFUSED:
        assert name in names, f"stale exception list: {name} is not in the corpus"


@pytest.mark.parametrize("path", _corpus("y"))
def test_corpus_y_is_accepted(path: Path | None) -> None:
    data = _read(path)
    assert path is not None
    if path.name in DELIBERATELY_REFUSED:
        with pytest.raises(InvalidPayload, match=DELIBERATELY_REFUSED[path.name]):
            parse_json(data)
        return
    value = parse_json(data)
    # What we accept we can write back canonically and read again unchanged.
    assert parse_json(canonical_bytes(value)) == value


@pytest.mark.parametrize("path", _corpus("n"))
def test_corpus_n_is_refused_with_the_contract_error(path: Path | None) -> None:
    data = _read(path)
    with pytest.raises((InvalidPayload, PayloadTooLarge)):
        parse_json(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    with pytest.raises((InvalidPayload, PayloadTooLarge)):
        parse_json(text)  # the same document handed over as str


@pytest.mark.parametrize("path", _corpus("i"))
def test_corpus_i_is_accepted_or_refused_cleanly(path: Path | None) -> None:
    data = _read(path)
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(("ok", repr(parse_json(data))))
        except InvalidPayload as exc:
            outcomes.append(("refused", exc.message))
    assert outcomes[0] == outcomes[1]  # consistent


def test_corpus_any_size_limit_gives_payload_too_large() -> None:
    files = sorted(CORPUS.glob("*.json"))
    assert files, f"JSONTestSuite corpus not found at {CORPUS}"
    for path in files:
        data = path.read_bytes()
        if data:
            with pytest.raises(PayloadTooLarge):
                parse_json(data, max_bytes=len(data) - 1)


# --------------------------------------------------------------------------------------------------
# The strict rules
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"a": 1, "a": 2}', id="top level"),
        pytest.param('{"a": 1, "a": 1}', id="same value"),
        pytest.param('[{"x": {"k": 1, "k": null}}]', id="nested"),
        pytest.param('{"a": 1, "\\u0061": 2}', id="escaped spelling of the same key"),
        pytest.param('{"": 1, "": 2}', id="empty key"),
    ],
)
def test_duplicate_keys_are_refused(text: str) -> None:
    with pytest.raises(InvalidPayload, match="duplicate key"):
        parse_json(text)


def test_same_key_in_different_objects_is_fine() -> None:
    assert parse_json('[{"a": 1}, {"a": 2}, {"b": {"a": 3}}]') == [{"a": 1}, {"a": 2}, {"b": {"a": 3}}]


@pytest.mark.parametrize(
    "text",
    ["NaN", "Infinity", "-Infinity", "[NaN]", '{"x": Infinity}', "[1, -Infinity]", "nan", "inf"],
)
def test_non_finite_constants_are_refused(text: str) -> None:
    with pytest.raises(InvalidPayload):
        parse_json(text)


@pytest.mark.parametrize("text", ["1e999", "-1e999", "[1.5e308, 1e309]", '{"x": 123e100000}', "1E400"])
def test_numbers_that_overflow_are_refused(text: str) -> None:
    with pytest.raises(InvalidPayload, match="too large"):
        parse_json(text)


def test_finite_extremes_are_kept() -> None:
    assert parse_json("1.7976931348623157e308") == 1.7976931348623157e308
    assert parse_json("1e-400") == 0.0
    assert parse_json("-0") == 0
    assert parse_json(str(10**300)) == 10**300


def test_integer_with_too_many_digits_is_invalid_payload_not_value_error() -> None:
    # CPython refuses int() of more than 4300 digits with a bare ValueError (CVE-2020-10735 guard).
    with pytest.raises(InvalidPayload):
        parse_json("1" * 5000)


def _nested(depth: int, kind: str = "array") -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ["array", "object"])
def test_depth_64_is_accepted_and_65_refused(kind: str) -> None:
    assert DEFAULT_MAX_DEPTH == 64
    parse_json(_nested(64, kind))
    with pytest.raises(InvalidPayload, match="deeper than 64"):
        parse_json(_nested(65, kind))


def test_max_depth_parameter() -> None:
    parse_json("[[[1]]]", max_depth=3)
    with pytest.raises(InvalidPayload, match="deeper than 2"):
        parse_json("[[[1]]]", max_depth=2)
    parse_json("[1, [2], {}, []]", max_depth=2)  # siblings do not add up
    parse_json("1", max_depth=0)
    with pytest.raises(InvalidPayload):
        parse_json("[]", max_depth=0)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = json.dumps(["[" * 200, "{" * 200, '\\"[[[[', "]]]]"])
    assert parse_json(text) == ["[" * 200, "{" * 200, '\\"[[[[', "]]]]"]


def test_very_deep_input_is_invalid_payload_not_recursion_error() -> None:
    with pytest.raises(InvalidPayload):
        parse_json(_nested(100_000))
    # Even when the caller lifts the limit, Python's own recursion guard becomes InvalidPayload.
    with pytest.raises(InvalidPayload):
        parse_json(_nested(100_000), max_depth=10**9)


def test_max_bytes_counts_utf8_bytes_and_is_checked_before_parsing() -> None:
    doc = '"' + "\u00e9" * 10 + '"'  # 12 characters, 22 bytes
    assert parse_json(doc, max_bytes=22) == "\u00e9" * 10
    assert parse_json(doc.encode(), max_bytes=22) == "\u00e9" * 10
    with pytest.raises(PayloadTooLarge) as info:
        parse_json(doc, max_bytes=21)
    assert info.value.details == {"limit": 21, "size": 22}
    assert info.value.http_status == 413
    with pytest.raises(PayloadTooLarge):
        parse_json(b"[" * 1000 + b"not json at all", max_bytes=100)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'\xef\xbb\xbf{"a": 1}', id="UTF-8 BOM bytes"),
        pytest.param('\ufeff{"a": 1}', id="BOM in str"),
        pytest.param('{"a": 1}'.encode("utf-16"), id="UTF-16 with BOM"),
        pytest.param('{"a": 1}'.encode("utf-16-le"), id="UTF-16LE"),
        pytest.param('{"a": 1}'.encode("utf-16-be"), id="UTF-16BE"),
        pytest.param('["x"]'.encode("utf-32"), id="UTF-32"),
        pytest.param(b'["\xe9"]', id="latin-1"),
        pytest.param(b'["\xed\xa0\x80"]', id="CESU surrogate bytes"),
        pytest.param(b'["\xc0\xaf"]', id="overlong"),
        pytest.param(bytearray('{"a": 1}'.encode("utf-16")), id="UTF-16 bytearray"),
        pytest.param(memoryview('{"a": 1}'.encode("utf-16-le")), id="UTF-16 memoryview"),
    ],
)
def test_only_plain_utf8_is_accepted(data: bytes | str) -> None:
    with pytest.raises(InvalidPayload):
        parse_json(data)


def test_bytes_like_utf8_is_accepted() -> None:
    assert parse_json(bytearray(b'{"a": 1}')) == {"a": 1}
    assert parse_json(memoryview(b"[1]")) == [1]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param('"\\ud800"', id="lone high surrogate"),
        pytest.param('"\\udc00"', id="lone low surrogate"),
        pytest.param('["a\\ud800b"]', id="inside text"),
        pytest.param('{"\\ud800": 1}', id="in a key"),
        pytest.param('"\\ude00\\ud83d"', id="inverted pair"),
        pytest.param('"\ud800"', id="raw surrogate in str input"),
    ],
)
def test_lone_surrogates_are_refused(data: str) -> None:
    with pytest.raises(InvalidPayload, match="surrogate"):
        parse_json(data)


def test_surrogate_pairs_are_decoded() -> None:
    assert parse_json('"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "[1,]",
        "{'a': 1}",
        '{"a" 1}',
        "[1] [2]",
        "01",
        "1.",
        ".5",
        "+1",
        '"\t"',
        "[\x00]",
        "tru",
        "//x",
    ],
)
def test_malformed_documents_name_the_position(text: str) -> None:
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        parse_json(text, what="body")


# --------------------------------------------------------------------------------------------------
# Canonical output
# --------------------------------------------------------------------------------------------------
def test_canonical_dumps_shape() -> None:
    value = {"zeta": [1, {"b": True, "a": None}], "alpha": "\u00e9t\u00e9 \U0001f600", "mid": 1.5}
    assert canonical_dumps(value) == (
        "{\n"
        '  "alpha": "\u00e9t\u00e9 \U0001f600",\n'
        '  "mid": 1.5,\n'
        '  "zeta": [\n'
        "    1,\n"
        "    {\n"
        '      "a": null,\n'
        '      "b": true\n'
        "    }\n"
        "  ]\n"
        "}\n"
    )
    assert canonical_bytes(value) == canonical_dumps(value).encode("utf-8")
    assert b"\\u00e9" not in canonical_bytes(value)  # real UTF-8, not escapes
    assert (
        compact_dumps(value)
        == '{"alpha":"\u00e9t\u00e9 \U0001f600","mid":1.5,"zeta":[1,{"a":null,"b":true}]}'
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, [-math.inf], {"x": math.nan}])
def test_canonical_output_refuses_non_finite_numbers(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical_dumps(value)
    with pytest.raises(ValueError):
        compact_dumps(value)


_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_canonical_round_trip(value: Any) -> None:
    text = canonical_dumps(value)
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert parse_json(text) == value
    assert parse_json(canonical_bytes(value)) == value
    assert parse_json(compact_dumps(value)) == value
    assert "\n" not in compact_dumps(value)
    # Canonical means one spelling: writing what was read gives the same bytes.
    assert canonical_dumps(parse_json(text)) == text
    # Keys sorted and 2-space indented at every level: the standard library agrees with itself.
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        parse_json(data, max_bytes=30)
    except HcmError as exc:
        assert isinstance(exc, InvalidPayload | PayloadTooLarge)


@settings(max_examples=200, deadline=None)
@given(_json_values, st.data())
def test_mutated_documents_never_raise_anything_else(value: Any, data: st.DataObject) -> None:
    text = compact_dumps(value)
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    insert = data.draw(
        st.sampled_from(["[", "]", "{", "}", '"', "\\", ",", ":", "\ud800", "NaN", "1e999", "\x00"])
    )
    mutated = text[:at] + insert + text[at + 1 :]
    for candidate in (mutated, mutated.encode("utf-8", "surrogatepass")):
        with contextlib.suppress(InvalidPayload):
            parse_json(candidate)
