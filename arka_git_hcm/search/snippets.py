"""Text as FTS5's ``highlight()`` marks it, and what ranking reads from the marks.

Each matched span of a document's title or text comes back between ``OPEN`` and ``CLOSE``.
FTS5 matched it through stems, which Python does not have, so each span is attributed here to
the query term it most resembles (the longest common start, word by word); a prefix term claims
only words that really start with its prefix. The attributed spans give the term frequencies
BM25 needs, and the snippet shown for a hit.
"""

from __future__ import annotations

import re

from .fold import fold, words
from .query import Term

__all__ = ["CLOSE", "OPEN", "frequencies", "mark_prefixes", "plain", "snippet"]

OPEN, CLOSE = "\x01", "\x02"
_SNIPPET_BEFORE, _SNIPPET_AFTER = 60, 160


_WORD_SPAN = re.compile(r"[^\W_]+")
_MARKED = re.compile(f"({OPEN}[^{CLOSE}]*{CLOSE})")


def mark_prefixes(marked: str, prefixes: list[str]) -> str:
    """Mark (as highlight() would) the words of ``marked`` that start with one of the folded
    ``prefixes``, outside the spans already marked."""
    wanted = tuple(prefixes)

    def mark(match: re.Match[str]) -> str:
        word = match.group()
        return f"{OPEN}{word}{CLOSE}" if fold(word).startswith(wanted) else word

    return "".join(
        part if part.startswith(OPEN) else _WORD_SPAN.sub(mark, part) for part in _MARKED.split(marked)
    )


def _spans(marked: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    at = 0
    while True:
        start = marked.find(OPEN, at)
        if start < 0:
            return spans
        end = marked.find(CLOSE, start)
        if end < 0:
            return spans
        spans.append((start, end))
        at = end + 1


def _attribute(span_text: str, terms: tuple[Term, ...]) -> Term | None:
    """The query term a matched span stands for: FTS5 matched it through stems, which Python
    does not have, so the term whose words share the longest start with the span's wins; a
    prefix term claims a span only when its word really starts with the prefix."""
    found = words(span_text)
    best, best_score = None, 0
    for term in terms:
        wanted = term.text.split(" ")
        if len(wanted) != len(found):
            continue
        if term.kind == "prefix":
            if found[:-1] == wanted[:-1] and found[-1].startswith(wanted[-1]):
                return term
            continue
        forms = [wanted] + [fold(f).split(" ") for f in term.forms[1:]]
        score = max(sum(_common_prefix(a, b) for a, b in zip(found, form, strict=False)) for form in forms)
        if score > best_score:
            best, best_score = term, score
    return best


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def frequencies(marked: str, terms: tuple[Term, ...]) -> dict[Term, int]:
    counts = dict.fromkeys(terms, 0)
    for start, end in _spans(marked):
        term = _attribute(marked[start + 1 : end], terms)
        if term is not None:
            counts[term] += 1
    return counts


def snippet(marked: str, terms: tuple[Term, ...]) -> str:
    """A window of the text around its first attributed match, matches in **bold**."""
    for start, end in _spans(marked):
        if _attribute(marked[start + 1 : end], terms) is None:
            continue
        left = max(0, start - _SNIPPET_BEFORE)
        right = min(len(marked), end + _SNIPPET_AFTER)
        if left > 0:
            space = marked.find(" ", left, start)
            left = space + 1 if space >= 0 else left
        if right < len(marked):
            space = marked.rfind(" ", end, right)
            right = space if space > end else right
        piece = marked[left:right].replace(OPEN, "**").replace(CLOSE, "**")
        piece = " ".join(piece.split())
        return ("…" if left > 0 else "") + piece + ("…" if right < len(marked) else "")
    return ""


def plain(marked: str) -> str:
    return " ".join(marked.replace(OPEN, "").replace(CLOSE, "").split())
