"""How a sensitive value is recognised whatever its spelling: case, accents (NFC or NFD), JSON
escapes.

Folding maps every character to exactly one character (``É`` -> ``e``, ``A`` -> ``a``),
so an offset in the folded text is the same offset in the original: the rewriter finds a value in
the folded text and replaces that span of the original, keeping everything around it byte for
byte. Characters whose folding would take several characters (``ß``, ``ﬁ``) are only lower-cased:
the scan folds the same way, so what the rewriter cannot see, the scan cannot miss silently (it
would find the value and refuse the bundle).

A value matches only as a whole word: the characters around it must not be letters or digits
(``ana`` is found in ``Ana,`` and ``ana-audit``, not in ``banana``).
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["fold", "is_boundary", "json_unescape", "nfc", "scan_form"]


# Combining marks (accents of decomposed letters); unicodedata.combining() decides in the table.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def _fold_one(char: str) -> str:
    lowered = char.lower()
    if len(lowered) != 1:
        return char
    base = "".join(c for c in unicodedata.normalize("NFD", lowered) if not unicodedata.combining(c))
    return base if len(base) == 1 else lowered


@functools.cache
def _fold_table() -> dict[int, str]:
    """Single-character folds of every character that has one (built once, ~40 ms)."""
    table: dict[int, str] = {}
    for block in (range(0x41, 0x5B), range(0x80, 0x3000), range(0xFF00, 0xFFF0)):
        for code in block:
            char = chr(code)
            if unicodedata.category(char) == "Cs":
                continue
            folded = _fold_one(char)
            if folded != char:
                table[code] = folded
    return table


def fold(text: str) -> str:
    """Lower-case, accents removed; same length as ``text``.

    Fast path, all in C: ``lower``, NFD, combining marks dropped; it is the per-character fold
    whenever the lengths agree and the text had no loose combining mark (each character then
    became exactly one). Otherwise character by character through the table (measured 5x
    slower on French journals)."""
    if text.isascii():
        return text.lower()
    lowered = text.lower()
    if len(lowered) == len(text) and _COMBINING.search(lowered) is None:
        stripped = _COMBINING.sub("", unicodedata.normalize("NFD", lowered))
        if len(stripped) == len(lowered):
            return stripped
    return text.translate(_fold_table())


def nfc(text: str) -> str:
    """NFC form (``e`` + U+0301 -> ``é``): callers compose before folding, so a value written in
    decomposed form folds like its composed form."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape_one(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return chr(int(match.group(1), 16))
    return _SIMPLE[match.group(2)]


def json_unescape(text: str) -> str:
    """JSON string escapes decoded wherever they appear (``Jos\\u00e9`` -> ``José``); surrogate
    pairs are joined, lone surrogates become U+FFFD."""
    if "\\" not in text:
        return text
    decoded = _ESCAPE.sub(_unescape_one, text)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in decoded if ord(c) >= 0xD800):
        decoded = decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return decoded


def scan_form(text: str) -> str:
    """What the leak scan searches: escapes decoded, NFC, then folded."""
    return fold(nfc(json_unescape(text)))


def _wordish(char: str) -> bool:
    return char.isalnum() or (not char.isascii() and unicodedata.combining(char) != 0)


def is_boundary(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is a whole word: no letter, digit or combining mark right
    before or after it."""
    return (start == 0 or not _wordish(text[start - 1])) and (end >= len(text) or not _wordish(text[end]))
