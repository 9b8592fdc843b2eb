"""Keyed pseudonyms that keep the shape of what they replace.

Every pseudonym is derived with HMAC-SHA256 under the client's key from the *folded* value (see
:mod:`.normalize`), so ``José``, ``JOSÉ`` and ``Jose`` get the same pseudonym in every file, path,
author and message, in every bundle of that client; another key gives unrelated ones. Nothing
random is drawn: the same input gives the same bundle.

Shapes:

- names, ids, terms: token by token. A run of letters becomes a pronounceable word (its case
  mirrored: ``DUPONT`` -> ``KAVORI``, ``Jean`` -> ``Mela``), a run of digits becomes digits of
  the same length, separators are kept. So ``jean.dupont`` (an id) and ``Jean Dupont`` (a name)
  stay recognisably the same person, and an id stays a valid id. Words are chosen injectively
  within one run (:class:`WordTable`), digits by a keyed permutation: two ids never merge.
- email -> ``word@word.example``; phone -> same format, country prefix kept, digits keyed;
  IBAN -> same country and length with valid check digits; card number -> same grouping, valid
  Luhn digit, leading ``9`` (never a real network); French social security number -> valid key;
  IP -> an address of the documentation ranges (RFC 5737, RFC 3849); URL with credentials ->
  ``scheme://user-word:redacted@word.example``; secret -> ``redacted-<12 hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable

from .normalize import fold

__all__ = ["Pseudonyms", "WordTable", "luhn_ok", "nir_ok"]

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_RUN = re.compile(r"[^\W_]+", re.UNICODE)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _luhn_digit(body: str) -> str:
    for digit in "0123456789":
        if luhn_ok(body + digit):
            return digit
    raise AssertionError("unreachable")


def nir_ok(compact: str) -> bool:
    """A 15-character French NIR (Corsica's 2A/2B allowed) whose key matches."""
    if len(compact) != 15:
        return False
    body = compact[:13].upper().replace("2A", "19").replace("2B", "18")
    if not body.isdigit() or not compact[13:].isdigit():
        return False
    return 97 - int(body) % 97 == int(compact[13:])


def _iban_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{98 - number % 97:02d}"


class WordTable:
    """token (folded) -> word, injective: a word already given to another token is never given
    again (the next HMAC candidate is taken). Tokens are registered in sorted order before any
    rewriting (:meth:`Pseudonyms.prepare`), so the table depends only on the set of tokens."""

    def __init__(self) -> None:
        self.word_of: dict[str, str] = {}
        self.token_of: dict[str, str] = {}


class Pseudonyms:
    def __init__(self, key: bytes) -> None:
        self._key = key
        self.words = WordTable()
        self._avoid: Callable[[str], bool] = lambda text: False
        self._digit_perm: dict[int, tuple[int, int]] = {}

    def set_avoid(self, avoid: Callable[[str], bool]) -> None:
        """``avoid(word)`` True: the word contains a sensitive value (the scan would find it),
        so the next candidate is taken."""
        self._avoid = avoid

    # --- primitives ------------------------------------------------------------------------
    def digest(self, domain: str, value: str, attempt: int = 0) -> bytes:
        message = f"{domain}\0{attempt}\0{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def hex(self, domain: str, value: str, length: int) -> str:
        return self.digest(domain, value).hex()[:length]

    def _number(self, domain: str, value: str, attempt: int = 0) -> int:
        return int.from_bytes(self.digest(domain, value, attempt), "big")

    def _make_word(self, token: str, attempt: int) -> str:
        number = self._number("word", token, attempt)
        syllables = 3 if len(token) <= 4 else 4 if len(token) <= 8 else 5
        parts = []
        for _ in range(syllables):
            number, pick = divmod(number, len(_CONSONANTS) * len(_VOWELS))
            parts.append(_CONSONANTS[pick % len(_CONSONANTS)] + _VOWELS[pick // len(_CONSONANTS)])
        return "".join(parts)

    def word(self, token: str) -> str:
        """The word of a folded token; injective within this object."""
        known = self.words.word_of.get(token)
        if known is not None:
            return known
        attempt = 0
        while True:
            candidate = self._make_word(token, attempt)
            if candidate not in self.words.token_of and not self._avoid(candidate):
                break
            attempt += 1
        self.words.word_of[token] = candidate
        self.words.token_of[candidate] = token
        return candidate

    def prepare(self, tokens: list[str]) -> None:
        """Give words to ``tokens`` in sorted order (see :class:`WordTable`)."""
        for token in sorted(set(tokens)):
            self.word(token)

    def digits(self, run: str) -> str:
        """A keyed permutation of the strings of ``len(run)`` digits: injective, so two ids that
        differ by a counter still differ."""
        size = len(run)
        if size > 18:
            number = self._number("digits-long", run)
            return str(number % 10**size).zfill(size)
        if size not in self._digit_perm:
            number = self._number("digits", str(size))
            multiplier = (number % 10**size) | 1
            while multiplier % 5 == 0:
                multiplier += 2
            self._digit_perm[size] = (multiplier % 10**size or 1, (number >> 64) % 10**size)
        multiplier, offset = self._digit_perm[size]
        return str((int(run) * multiplier + offset) % 10**size).zfill(size)

    def _keyed_digits(self, domain: str, value: str, count: int) -> str:
        number = self._number(domain, value)
        return str(number % 10**count).zfill(count) if count else ""

    # --- shapes ----------------------------------------------------------------------------
    def text(self, original: str) -> str:
        """Token by token, separators kept (names, ids, terms, notes)."""
        out = []
        pos = 0
        for match in _RUN.finditer(original):
            out.append(original[pos : match.start()])
            run = match.group(0)
            if run.isdigit() and run.isascii():
                out.append(self.digits(run))
            else:
                word = self.word(fold(run))
                if run.isupper() and len(run) > 1:
                    word = word.upper()
                elif run[0].isupper():
                    word = word.capitalize()
                out.append(word)
            pos = match.end()
        out.append(original[pos:])
        return "".join(out)

    def email(self, original: str) -> str:
        local, _, domain = original.rpartition("@")
        local_out = self.text(local) if local else "user"
        labels = [_LABEL_UNSAFE.sub("-", self.text(label)).strip("-") for label in domain.split(".")[:-1]]
        head = ".".join(label for label in labels if label) or self.word(fold(domain))
        return f"{local_out}@{head}.example"

    def phone(self, original: str) -> str:
        digits = [i for i, c in enumerate(original) if c.isdigit()]
        keep = 0
        if original.startswith("+33") or original.startswith("0033"):
            keep = 3 if original.startswith("+") else 4
            keep += 1  # the digit after the country code (mobile 6/7, region 1-5, 9)
        elif original.startswith("+"):
            keep = min(3, len(digits) - 6) if len(digits) > 8 else 1
        elif original.startswith("0"):
            keep = 2  # 06, 01...
        fresh = self._keyed_digits("phone", fold(original), len(digits))
        chars = list(original)
        for n, index in enumerate(digits):
            if n >= keep:
                chars[index] = fresh[n]
        return "".join(chars)

    def iban(self, original: str) -> str:
        compact = original.replace(" ", "").upper()
        country, bban = compact[:2], compact[4:]
        number = self._number("iban", compact)
        fake = []
        for char in bban:
            number, pick = divmod(number, 36)
            fake.append(str(pick % 10) if char.isdigit() else chr(ord("A") + pick % 26))
        new_bban = "".join(fake)
        new = country + _iban_check(country, new_bban) + new_bban
        return _regroup(new, original)

    def card(self, original: str) -> str:
        digits = [c for c in original if c.isdigit()]
        body = "9" + self._keyed_digits("card", fold(original), len(digits) - 2)
        compact = body + _luhn_digit(body)
        return _regroup(compact, original)

    def nir(self, original: str) -> str:
        number = self._number("nir", fold(original))
        sex = 1 + number % 2
        number //= 2
        year = number % 100
        number //= 100
        month = 1 + number % 12
        number //= 12
        dept = 1 + number % 95
        number //= 95
        rest = number % 10**6
        body = f"{sex}{year:02d}{month:02d}{dept:02d}{rest:06d}"
        key = 97 - int(body) % 97
        return _regroup(f"{body}{key:02d}", original)

    def ip(self, original: str) -> str:
        number = self._number("ip", fold(original))
        address = ipaddress.ip_address(original)
        if address.version == 4:
            net = ("192.0.2", "198.51.100", "203.0.113")[number % 3]
            return f"{net}.{1 + (number >> 8) % 254}"
        groups = ":".join(f"{(number >> (16 * i)) & 0xFFFF:x}" for i in range(4))
        return f"2001:db8::{groups}"

    def url_credentials(self, original: str) -> str:
        scheme, _, rest = original.partition("://")
        _, _, host = rest.rpartition("@")
        host_name = host.split("/", 1)[0].split(":", 1)[0]
        user = "user-" + self.word(fold(rest.partition("@")[0]))
        return f"{scheme}://{user}:redacted@{self.word(fold(host_name))}.example"

    def secret(self, original: str) -> str:
        return "redacted-" + self.hex("secret", original, 12)

    def hexdigest_like(self, original: str) -> str:
        """A keyed hex string of the same length (payload hashes in trailers: a plain hash of a
        payload would let anyone confirm a guessed payload)."""
        out = ""
        attempt = 0
        while len(out) < len(original):
            out += self.digest("hex", original, attempt).hex()
            attempt += 1
        return out[: len(original)]


def _regroup(compact: str, original: str) -> str:
    """``compact`` laid out with the separators of ``original`` (same number of characters
    outside separators)."""
    out = []
    chars = iter(compact)
    for char in original:
        out.append(char if char in " -." else next(chars, ""))
    out.extend(chars)
    return "".join(out)
