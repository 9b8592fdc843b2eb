"""Text as search compares it: accents and case removed, split into words.

The index itself folds with SQLite's ``unicode61 remove_diacritics 2`` tokenizer; this is the same
idea on the Python side, for what Python must compare: hindex keywords against a query, a matched
span against the query term it came from, a prefix against the words it must start.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["fold", "words"]

# unicode61 splits on everything that is not a letter, a digit or a private-use code point;
# \w adds the underscore, which is close enough for the comparisons made here.
_WORD = re.compile(r"[^\W_]+")


@functools.lru_cache(maxsize=8192)
def fold(text: str) -> str:
    """``text`` without accents, in lower case: ``Décisions`` -> ``decisions``."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()


def words(text: str) -> list[str]:
    """The folded words of ``text``, in order: ``"L'équipe (Support)"`` -> ``["l", "equipe", "support"]``."""
    return _WORD.findall(fold(text))
