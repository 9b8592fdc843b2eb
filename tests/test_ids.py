"""Ids become file and folder names: the contract rule, checked against an independent re-implementation."""

from __future__ import annotations

import itertools
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arka_git_hcm.errors import InvalidPayload
from arka_git_hcm.ids import ID_PATTERN, is_valid_id, new_id, validate_id, validate_request_id

# The contract's rule (section 2), written out by hand without the module's regex, so that a typo in
# either one shows up as a disagreement.
_FIRST_LAST = set(string.ascii_lowercase + string.digits)
_INNER = _FIRST_LAST | set("._-")
_DEVICES = (
    {"con", "nul", "aux", "prn"} | {f"com{n}" for n in range(1, 10)} | {f"lpt{n}" for n in range(1, 10)}
)


def reference_is_valid_id(value: str) -> bool:
    if not 1 <= len(value) <= 128:
        return False
    if value[0] not in _FIRST_LAST or value[-1] not in _FIRST_LAST:
        return False
    if any(ch not in _INNER for ch in value):
        return False
    if ".." in value:
        return False
    # "nul.json" opens the device on Windows like "nul": the part before the first dot counts.
    return value.split(".")[0] not in _DEVICES


def test_pattern_is_the_contracts() -> None:
    assert ID_PATTERN == r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$"


@pytest.mark.parametrize(
    "value",
    [
        "m1",
        "a",
        "0",
        "mission-2024.q3",
        "ev-3f9a0c12d4e5",
        "a_b",
        "a.b.c",
        "x" * 128,
        "console",
        "com10",
        "lpt",
        "nul1",
        "a.con",
        "connect",
    ],
)
def test_accepts(value: str) -> None:
    assert validate_id(value) == value
    assert is_valid_id(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 129, id="129 chars"),
        pytest.param("M1", id="upper case"),
        pytest.param("-a", id="leading dash (option injection in tools)"),
        pytest.param("a-", id="trailing dash"),
        pytest.param(".a", id="leading dot (hidden file)"),
        pytest.param("a.", id="trailing dot (dropped by Windows)"),
        pytest.param("a..b", id="double dot"),
        pytest.param("..", id="parent"),
        pytest.param("a/b", id="separator"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("a b", id="space"),
        pytest.param("m1\n", id="trailing newline ($ matches before it)"),
        pytest.param("\nm1", id="leading newline"),
        pytest.param("m\u00e9", id="non-ascii"),
        pytest.param("\uff4d1", id="fullwidth letter"),
        pytest.param("con", id="device con"),
        pytest.param("nul.json", id="device with extension"),
        pytest.param("com1", id="device com1"),
        pytest.param("lpt9.tar.gz", id="device lpt9 with two extensions"),
        pytest.param("aux", id="device aux"),
        pytest.param("prn", id="device prn"),
    ],
)
def test_refuses(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidPayload) as info:
        validate_id(value, "mission_id")
    assert info.value.details == {"field": "mission_id"}
    assert "mission_id" in info.value.message


@pytest.mark.parametrize("value", [None, 1, 1.5, b"m1", ["m1"], {"m1": 1}, True])
def test_refuses_non_strings(value: object) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidPayload):
        validate_id(value)


_ID_ALPHABET = string.ascii_lowercase[:6] + "0189._-" + "A/\\ \n\u00e9:~"
_ends = st.sampled_from("az09")
# Mostly well-formed ids (built cheaply instead of st.from_regex), then near misses and noise.
_well_formed = st.builds(
    lambda first, middle, last: first + middle + last, _ends, st.text(alphabet="az09._-", max_size=6), _ends
)
_candidate_ids = st.one_of(
    _well_formed,
    st.text(alphabet=_ID_ALPHABET, max_size=10),
    st.integers(min_value=120, max_value=131).map(lambda n: "a" * n),
    st.tuples(
        st.sampled_from(sorted(_DEVICES) + ["co", "comx", "lpt0"]), st.text(alphabet="abc.", max_size=4)
    ).map("".join),
    _well_formed.map(lambda s: s + "\n"),
    st.text(max_size=8),
)


@settings(max_examples=1000, deadline=None)
@given(_candidate_ids)
def test_validate_id_agrees_with_the_reference(value: str) -> None:
    expected = reference_is_valid_id(value)
    assert is_valid_id(value) is expected
    if expected:
        assert validate_id(value) == value
    else:
        with pytest.raises(InvalidPayload):
            validate_id(value)


def test_validate_id_agrees_with_the_reference_exhaustively_on_short_strings() -> None:
    alphabet = "az09._-A/ \n"
    for length in range(4):
        for chars in itertools.product(alphabet, repeat=length):
            value = "".join(chars)
            assert is_valid_id(value) is reference_is_valid_id(value), value
    for device in _DEVICES:
        for value in (device, device + ".json", device + ".a.b", device.upper(), device + "x", "x" + device):
            assert is_valid_id(value) is reference_is_valid_id(value), value


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abcxyz0189", min_size=1, max_size=10))
def test_new_id_is_a_valid_id(prefix: str) -> None:
    value = new_id(prefix)
    assert is_valid_id(value)
    assert value.startswith(prefix + "-")


def test_new_id_uses_the_injected_token() -> None:
    assert new_id("ev", "000abc") == "ev-000abc"
    assert re.fullmatch(r"ev-[0-9a-f]{12}", new_id("ev"))


@pytest.mark.parametrize(
    "prefix, token", [("EV", None), ("ev", "../x"), ("", "abc"), ("ev", "ABC"), ("ev", "a\n")]
)
def test_new_id_refuses_to_build_an_invalid_id(prefix: str, token: str | None) -> None:
    with pytest.raises(InvalidPayload):
        new_id(prefix, token)


@pytest.mark.parametrize(
    "value", ["req-42", "0b8c1f9e-5d3a-4a51-9d7b-2f0c6a1e7b11", "a", "a/b:c@d+e=f.g_h", "R" * 128]
)
def test_request_id_accepts(value: str) -> None:
    assert validate_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("R" * 129, id="too long"),
        pytest.param("req-1\n", id="trailing newline: would end the commit trailer block"),
        pytest.param("req-1\nHcm-Caller: system/root", id="forged trailer"),
        pytest.param("req 1", id="space"),
        pytest.param("-req", id="leading dash"),
        pytest.param("r\u00e9q", id="non-ascii"),
        pytest.param(None, id="None"),
        pytest.param(42, id="int"),
    ],
)
def test_request_id_refuses(value: object) -> None:
    with pytest.raises(InvalidPayload) as info:
        validate_request_id(value)
    assert info.value.details == {"field": "request_id"}
