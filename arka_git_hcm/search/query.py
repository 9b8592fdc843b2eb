"""A user's query, turned into an FTS5 MATCH expression that this code writes itself.

User text is never handed to FTS5 as query syntax: ``AND``, ``OR``, ``NOT``, ``NEAR``, ``-``,
``:``, ``^``, ``*`` in the middle, parentheses and stray quotes are plain text here. The text is
split into terms, and every term reaches FTS5 as a quoted string (quotes doubled), which FTS5
only tokenizes, never parses. What the user may write:

- words: all of them must match (if no document has them all, any of them may: ``matched:
  "any"``); French and English stop words are left out unless they are all there is;
- ``"a phrase in quotes"``: those words, in that order (accents and case still ignored);
- ``décis*``: words starting with ``décis`` (at least 3 letters before the star).

The tokenizer (``porter unicode61 remove_diacritics 2``) ignores accents and case and reduces
English inflections (decisions -> decis). The Porter stemmer knows no French: plurals in -s
work, but -aux/-eux/-eaux plurals and feminine participles do not reduce to the same stem, so
each word also searches its French forms: journaux <-> journal, travaux <-> travail, bureaux <->
bureau, validée(s) <-> validé(s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .fold import fold, words

__all__ = ["ParsedQuery", "Term", "fts_string", "match_expression", "parse_query"]

MAX_TERMS = 16
MIN_PREFIX = 3
_STOPWORDS = frozenset(
    {
        # French
        *("le", "la", "les", "l", "un", "une", "des", "de", "du", "d", "et", "ou", "en", "au", "aux"),
        *("a", "dans", "par", "pour", "sur", "ce", "ces", "cet", "cette", "qui", "que", "qu", "est"),
        *("sont", "se", "sa", "son", "ses", "leur", "leurs", "il", "elle", "ils", "elles", "nous"),
        *("vous", "je", "tu", "on", "ne", "pas", "plus", "avec", "sans"),
        # English
        *("the", "an", "of", "and", "or", "to", "in", "on", "for", "with", "is", "are", "was"),
        *("were", "be", "by", "at", "as", "it", "its", "this", "that", "from"),
    }
)
_CHUNK = re.compile(r'"([^"]*)"|(\S+)')


@dataclass(frozen=True)
class Term:
    kind: str  # "word" | "phrase" | "prefix"
    text: str  # folded words (space separated); for a prefix, the folded prefix
    forms: tuple[str, ...]  # what FTS5 is given, each as one quoted string

    def expression(self) -> str:
        suffix = "*" if self.kind == "prefix" else ""
        parts = [fts_string(form) + suffix for form in self.forms]
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


@dataclass(frozen=True)
class ParsedQuery:
    terms: tuple[Term, ...]
    ignored: tuple[str, ...]  # stop words left out, terms past MAX_TERMS

    def to_json(self) -> list[str]:
        return [
            ('"' + t.text + '"') if t.kind == "phrase" else t.text + ("*" if t.kind == "prefix" else "")
            for t in self.terms
        ]


def fts_string(text: str) -> str:
    """``text`` as an FTS5 string literal: tokenized by FTS5, never parsed as syntax."""
    return '"' + text.replace('"', '""') + '"'


def match_expression(terms: tuple[Term, ...], mode: str) -> str:
    joiner = " AND " if mode == "all" else " OR "
    return "{title body} : (" + joiner.join(t.expression() for t in terms) + ")"


def parse_query(text: str) -> ParsedQuery:
    terms: list[Term] = []
    for match in _CHUNK.finditer(text):
        quoted, bare = match.group(1), match.group(2)
        term = _phrase(quoted) if quoted is not None else _bare(bare)
        if term is not None and term not in terms:
            terms.append(term)
    content = [t for t in terms if not (t.kind == "word" and t.text in _STOPWORDS)]
    kept = content or terms
    ignored = [t.text for t in terms if t not in kept]
    ignored += [t.text for t in kept[MAX_TERMS:]]
    return ParsedQuery(tuple(kept[:MAX_TERMS]), tuple(ignored))


def _phrase(text: str) -> Term | None:
    found = words(text)
    if not found:
        return None
    if len(found) == 1:
        return _word(found[0], text)
    return Term("phrase", " ".join(found), (text,))


def _bare(chunk: str) -> Term | None:
    star = chunk.endswith("*")
    found = words(chunk)
    if not found:
        return None
    if star and len(found[-1]) >= MIN_PREFIX:
        return _prefix(found)
    if len(found) == 1:
        return _word(found[0], chunk.rstrip("*"))
    # l'équipe, dec-0003, AND/OR: the words in that order, as FTS5 would split them
    return Term("phrase", " ".join(found), (" ".join(found),))


def _word(folded: str, original: str) -> Term:
    # the user's own spelling first: FTS5 folds it exactly as it folded the documents
    original = original.strip().strip('"')
    forms = [original if fold(original).strip() == folded else folded]
    forms += [f for f in french_forms(folded) if f != folded]
    return Term("word", folded, tuple(dict.fromkeys(forms)))


def _prefix(found: list[str]) -> Term:
    """FTS5 stems a prefix too (``decisions*`` finds decision), but a prefix longer than the
    word's stem finds nothing (``validat*`` against "validation", stem ``valid``): the prefix
    is also searched shortened by up to three letters, and the ranker keeps only documents
    with a word that really starts with it."""
    *head, last = found
    shorter = [last[:-n] for n in range(1, 4) if len(last) - n >= MIN_PREFIX]
    forms = [" ".join([*head, p]) for p in [last, *shorter]]
    return Term("prefix", " ".join(found), tuple(forms))


def french_forms(word: str) -> list[str]:
    """Other forms of a French word that the Porter stemmer would not reduce to its stem."""
    if len(word) <= 4:
        return []
    forms = []
    if word.endswith("aux"):
        forms += [word[:-3] + "al", word[:-3] + "ail"]
    if word.endswith(("eux", "oux", "aux")):
        forms.append(word[:-1])
    if word.endswith("al"):
        forms.append(word[:-2] + "aux")
    if word.endswith("ail"):
        forms.append(word[:-3] + "aux")
    if word.endswith(("eau", "eu", "ou")):
        forms.append(word + "x")
    if word.endswith("ees"):
        forms += [word[:-2], word[:-1]]
    elif word.endswith("ee"):
        forms += [word[:-1], word + "s"]
    elif word.endswith("es"):
        forms += [word[:-1] + "e", word[:-1]]
    elif word.endswith("e"):
        forms += [word + "e", word + "es"]
    return forms
