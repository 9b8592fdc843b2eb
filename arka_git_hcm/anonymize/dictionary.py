"""The set of sensitive values of one HCM, and the one matcher that both replaces them and, after
the bundle is written, searches for them.

Values are gathered during the analysis pass (:meth:`SensitiveSet.add`), then frozen into an
Aho-Corasick automaton over their folded forms (pyahocorasick: one pass over a text finds every
value at once, in time linear in the text, whatever the number of values; ``bench`` compares it
with a regular-expression alternation and a loop). A match counts only as a whole word
(:func:`~.normalize.is_boundary`), and overlapping matches resolve to the leftmost, then longest.

What is never a needle, so that the bundle stays a valid HCM that support can read:

- values shorter than 3 characters (``al``, ``jo``: replacing every such word is noise, and
  searching them would refuse most bundles);
- words of the layout itself (field names and enum values of the models, folder names, git's
  object headers): a person called "Planned" must not turn every mission status into a name;
- ids of agents (agents are not people).

These limits are the documented ones (docs/anonymize.md).
"""

from __future__ import annotations

import functools
import typing
from collections import Counter
from collections.abc import Callable, Iterable

import ahocorasick

from ..domain import models
from ..ids import is_valid_id
from .detectors import CATEGORIES
from .normalize import fold, is_boundary, nfc
from .pseudonyms import Pseudonyms

__all__ = ["MIN_LENGTH", "SensitiveSet", "layout_words"]

MIN_LENGTH = 3
_PRIORITY = {name: rank for rank, name in enumerate(CATEGORIES)}
_TEXT_SHAPED = frozenset({"human_id", "person_name", "tenant", "client", "note", "term", "pattern"})
_NAME_PARTICLES = frozenset({"del", "des", "van", "von", "der", "den", "les", "dos", "das", "the", "and"})
_STRUCTURAL = (
    "tree",
    "parent",
    "author",
    "committer",
    "tagger",
    "object",
    "type",
    "commit",
    "tag",
    "encoding",
    "mergetag",
    "gpgsig",
    "main",
    "master",
    "head",
    "refs",
    "heads",
    "tags",
    "hcm",
    "arka",
    "json",
    "jsonl",
    "readme",
    "state",
    "missions",
    "mission",
    "team",
    "stable",
    "domain",
    "hindex",
    "evidence",
    "snapshots",
    "snapshot",
    "journal",
    "archives",
    "glossary",
    "referentials",
    "procedures",
    "patterns",
    "examples",
    "org",
    "business",
    "systems",
    "constraints",
    "projects",
    "meta",
    "status",
    "decisions",
    "next_actions",
    "humans",
    "agents",
    "human",
    "agent",
    "system",
    "null",
    "true",
    "false",
    "none",
    "hcm-op",
    "hcm-request-id",
    "hcm-caller",
    "hcm-mission",
    "hcm-payload-sha256",
    "hcm-result",
    "utc",
    "example",
)


@functools.cache
def layout_words() -> frozenset[str]:
    """Field names and enum values of every model of the layout, and git's and the layout's own
    words, folded."""
    words = set(_STRUCTURAL)
    for name in models.__all__:
        model = getattr(models, name)
        fields = getattr(model, "model_fields", None)
        if fields is None:
            words.update(str(arg) for arg in typing.get_args(model))
            continue
        for field_name, field in fields.items():
            words.add(field_name)
            stack: list[object] = [field.annotation]
            while stack:
                annotation = stack.pop()
                if typing.get_origin(annotation) is typing.Literal:
                    words.update(str(arg) for arg in typing.get_args(annotation))
                else:
                    stack.extend(typing.get_args(annotation))
    return frozenset(fold(w) for w in words)


class SensitiveSet:
    def __init__(self) -> None:
        self._values: dict[str, str] = {}  # folded value -> category
        self._agents: set[str] = set()
        self._owners: set[str] = set()
        self._automaton: typing.Any = None
        self._needles: list[tuple[int, str]] = []  # index -> (length, category)
        self._render_cache: dict[tuple[str, str], str] = {}
        self.pseudonyms: Pseudonyms | None = None

    # --- gathering -------------------------------------------------------------------------
    def add(self, category: str, value: str) -> None:
        if category == "agent":
            self._agents.add(fold(nfc(value.strip())))
            return
        if category == "owner":
            self._owners.add(value)
            return
        folded = fold(nfc(value.strip()))
        self._put(category, folded)
        if category == "person_name":
            for token in _tokens(folded):
                if len(token) >= MIN_LENGTH and token not in _NAME_PARTICLES:
                    self._put(category, token)

    def add_all(self, hits: Iterable[tuple[str, str]]) -> None:
        for category, value in hits:
            self.add(category, value)

    def _put(self, category: str, folded: str) -> None:
        known = self._values.get(folded)
        if known is None or _PRIORITY[category] < _PRIORITY[known]:
            self._values[folded] = category

    # --- freezing --------------------------------------------------------------------------
    def freeze(self, pseudonyms: Pseudonyms) -> None:
        """Build the matcher, then give words to every token of every text-shaped value, in
        sorted order (so the words depend only on the set of values)."""
        for owner in self._owners:
            folded = fold(nfc(owner.strip()))
            if folded not in self._agents:
                self.add("human_id" if is_valid_id(owner) else "person_name", owner)
        stop = layout_words()
        automaton = ahocorasick.Automaton()
        for folded, category in sorted(self._values.items()):
            if len(folded) < MIN_LENGTH or folded in stop:
                continue
            if category in ("human_id", "person_name") and folded in self._agents:
                continue
            self._needles.append((len(folded), category))
            automaton.add_word(folded, len(self._needles) - 1)
        if self._needles:
            automaton.make_automaton()
            self._automaton = automaton
        self.pseudonyms = pseudonyms
        pseudonyms.set_avoid(self.has_hit)
        tokens = [
            token
            for folded, category in self._values.items()
            if category in _TEXT_SHAPED or category == "email"
            for token in _tokens(folded)
        ]
        pseudonyms.prepare(tokens)

    @property
    def size(self) -> int:
        return len(self._needles)

    def distinct(self) -> Counter[str]:
        """How many distinct values each category holds (never the values)."""
        return Counter(category for _, category in self._needles)

    def needles(self) -> list[tuple[str, str]]:
        """(category, folded value) of every needle: for the bench and tests only, never printed."""
        if self._automaton is None:
            return []
        return [(self._needles[idx][1], key) for key, idx in self._automaton.items()]

    # --- matching --------------------------------------------------------------------------
    def matches(self, folded: str) -> list[tuple[int, int, str]]:
        """(start, end, category) of the whole-word needles in ``folded``, leftmost-longest,
        not overlapping."""
        if self._automaton is None:
            return []
        found = []
        for last, index in self._automaton.iter(folded):
            length, category = self._needles[int(index)]
            start = last - length + 1
            if is_boundary(folded, start, last + 1):
                found.append((start, last + 1, category))
        if len(found) > 1:
            found.sort(key=lambda m: (m[0], m[0] - m[1]))
            kept: list[tuple[int, int, str]] = []
            reach = -1
            for match in found:
                if match[0] >= reach:
                    kept.append(match)
                    reach = match[1]
            return kept
        return found

    def first_hit(self, folded: str) -> str | None:
        """The category of the first needle found in ``folded`` (the scan), or None."""
        if self._automaton is None:
            return None
        for last, index in self._automaton.iter(folded):
            length, category = self._needles[int(index)]
            if is_boundary(folded, last - length + 1, last + 1):
                return category
        return None

    @property
    def spans_lines(self) -> bool:
        """Whether some value holds a line break (then the scan searches every version whole)."""
        return any("\n" in value for value in self._values)

    def has_hit(self, text: str) -> bool:
        return self.first_hit(fold(nfc(text))) is not None

    # --- replacing -------------------------------------------------------------------------
    def rewrite(self, text: str, counts: Counter[str] | None = None, ends: list[int] | None = None) -> str:
        """``text`` with every needle replaced by its pseudonym (unchanged text is returned as
        is, so callers can tell by identity). ``ends`` receives where each replaced span ended
        in ``text``."""
        if self._automaton is None:
            return text
        composed = nfc(text)
        found = self.matches(fold(composed))
        if not found:
            return text
        out = []
        pos = 0
        for start, end, category in found:
            out.append(composed[pos:start])
            out.append(self.render(category, composed[start:end]))
            pos = end
            if counts is not None:
                counts[category] += 1
            if ends is not None:
                ends.append(end)
        out.append(composed[pos:])
        return "".join(out)

    def render(self, category: str, original: str) -> str:
        key = (category, original)
        cached = self._render_cache.get(key)
        if cached is None:
            cached = self._render(category, original)
            if len(self._render_cache) > 500_000:
                self._render_cache.clear()
            self._render_cache[key] = cached
        return cached

    def _render(self, category: str, original: str) -> str:
        assert self.pseudonyms is not None
        p = self.pseudonyms
        shape: Callable[[str], str] = _SHAPES.get(category, Pseudonyms.text).__get__(p)
        if category == "email" and "@" not in original:
            shape = p.text
        if category == "phone" and sum(c.isdigit() for c in original) < 6:
            shape = p.text
        try:
            rendered = shape(original)
        except (ValueError, IndexError):
            rendered = p.secret(original)
        # A pseudonym that happens to contain a sensitive value would be found by the scan.
        attempt = 0
        while self.has_hit(rendered):
            attempt += 1
            rendered = "redacted-" + p.hex(f"fallback-{attempt}", original, 12)
        return rendered


_SHAPES: dict[str, typing.Any] = {
    "email": Pseudonyms.email,
    "phone": Pseudonyms.phone,
    "iban": Pseudonyms.iban,
    "card": Pseudonyms.card,
    "nir": Pseudonyms.nir,
    "ip": Pseudonyms.ip,
    "url_credentials": Pseudonyms.url_credentials,
    "secret": Pseudonyms.secret,
}


def _tokens(folded: str) -> list[str]:
    out = []
    current = []
    for char in folded:
        if char.isalnum() and char != "_":
            current.append(char)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return [t for t in out if not t.isdigit()]
