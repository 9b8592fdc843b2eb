"""What is sensitive: personal fields of the HCM layout, and patterns in free text.

Two kinds of detection, both run over every version of every file in the analysis pass:

- **Fields** (:func:`field_values`): values of the layout's personal fields, found by key in any
  JSON file: team humans (``human_id``, ``display_name``, ``email``, ``notes``, phones), mission
  owners (``owner_human_id``), the id of a human wherever a ``*_type: "human"`` names one
  (journal authors, decision makers, action owners, evidence creators), ``client_id`` /
  ``client_name``, ``tenant_id`` / ``tenant_name``, role grants (``"human/<id>"`` keys), and
  values under secret-looking keys (``password``, ``token``, ``api_key``...).
- **Patterns** (:class:`PatternDetector`): emails, phone numbers (French national and ``+33``
  forms, international ``+<code>``), IBANs (mod-97 checked), card numbers (Luhn checked, issuer
  digit 2-6), French social security numbers (NIR, key checked), IPv4/IPv6 addresses (not
  loopback, private-use documentation or unspecified), URLs with credentials, tokens that look
  like secrets (``arka_``, ``ghp_``, ``AKIA``, ``xox?-``, ``sk-``, JWTs, PEM private keys, long
  high-entropy strings), plus the client's own terms and regular expressions from the config.

Every hit is a (category, value) pair; the values become the needles of
:class:`~.dictionary.SensitiveSet`, which replaces them everywhere.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from .pseudonyms import luhn_ok, nir_ok

__all__ = [
    "CATEGORIES",
    "PatternDetector",
    "field_values",
    "identity_values",
]

# Report order; also the priority when one value is found under several categories (the
# earlier, more specific one names it).
CATEGORIES = (
    "secret",
    "url_credentials",
    "email",
    "iban",
    "card",
    "nir",
    "phone",
    "ip",
    "human_id",
    "person_name",
    "tenant",
    "client",
    "note",
    "term",
    "pattern",
)

_SEP = r"[ .\-\u00a0]"
_PATTERNS: dict[str, str] = {
    "url_credentials": r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s/:@\"'<>]+:[^\s/@\"'<>]+@[^\s/\"'<>?#]+",
    "email": r"(?<![\w.+\-])[\w.%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}(?![\w\-])",
    "phone_fr": (
        rf"(?<![\w+])(?:(?:\+|00)33{_SEP}?\(?0?\)?{_SEP}?[1-9]|0[1-9])(?:{_SEP}?\d{{2}}){{4}}(?![\w])"
    ),
    "phone_intl": rf"(?<![\w+])\+[1-9]\d{{0,2}}(?:{_SEP}?\(?\d{{1,4}}\)?){{2,6}}(?![\w])",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    "card": r"(?<![\w\-])[2-6]\d{3}(?:[ \-]?\d{3,4}){2,4}(?:[ \-]?\d{1,4})?(?![\w\-])",
    "nir": r"(?<![\w])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}(?![\w])",
    "ipv4": r"(?<![\w.])(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}(?![\w.])",
    "ipv6": r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}:?(?:[0-9A-Fa-f]{1,4}:?){0,7}[0-9A-Fa-f]{1,4}(?![\w:])",
    "secret_known": (
        r"(?<![\w\-])(?:arka_[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9\-]{10,}|sk-[A-Za-z0-9_\-]{20,}"
        r"|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20,}"
        r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})(?![\w\-])"
    ),
    "pem": r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]{16,}?-----END [A-Z ]*PRIVATE KEY-----",
    "high_entropy": r"(?<![\w+/=\-])[A-Za-z0-9+/_\-]{32,}={0,2}(?![\w+/=\-])",
}
_KINDS = {
    "url_credentials": "url_credentials",
    "email": "email",
    "phone_fr": "phone",
    "phone_intl": "phone",
    "iban": "iban",
    "card": "card",
    "nir": "nir",
    "ipv4": "ip",
    "ipv6": "ip",
    "secret_known": "secret",
    "pem": "secret",
    "high_entropy": "secret",
}
# Cheap tests that rule a pattern out for a whole text before its regex runs.
_NEEDS = {
    "url_credentials": "://",
    "email": "@",
    "phone_intl": "+",
    "ipv6": ":",
    "pem": "-----BEGIN",
}


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _accept(kind: str, value: str) -> bool:
    """The checks a regex cannot make: checksums, real addresses, randomness."""
    if kind == "iban":
        compact = value.replace(" ", "")
        rearranged = compact[4:] + compact[:4]
        try:
            return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
        except ValueError:
            return False
    if kind == "card":
        digits = "".join(c for c in value if c.isdigit())
        return 13 <= len(digits) <= 19 and luhn_ok(digits)
    if kind == "nir":
        return nir_ok(value.replace(" ", ""))
    if kind in ("phone_fr", "phone_intl"):
        count = sum(c.isdigit() for c in value)
        return 8 <= count <= 15 if kind == "phone_intl" else count in (10, 11, 12)
    if kind in ("ipv4", "ipv6"):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return not (address.is_loopback or address.is_unspecified or _documentation(address))
    if kind == "high_entropy":
        has = (
            any(c.isdigit() for c in value),
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
        )
        return all(has) and _entropy(value) >= 4.0
    return True


_DOC_NETS = [
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]


def _documentation(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses reserved for examples: pseudonyms are drawn from them, never real hosts."""
    return any(address.version == net.version and address in net for net in _DOC_NETS)


class PatternDetector:
    """The pattern detectors plus the client's terms and regular expressions."""

    def __init__(self, terms: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        self._regexes = [(kind, re.compile(rx)) for kind, rx in _PATTERNS.items()]
        self._client = [re.compile(rx) for rx in patterns]
        self.terms = [t for t in terms if t.strip()]

    def find(self, text: str) -> Iterator[tuple[str, str]]:
        """(category, value) of every pattern hit in ``text``."""
        for kind, regex in self._regexes:
            need = _NEEDS.get(kind)
            if need is not None and need not in text:
                continue
            for match in regex.finditer(text):
                value = match.group(0)
                if _accept(kind, value):
                    yield _KINDS[kind], value
        for regex in self._client:
            for match in regex.finditer(text):
                if match.group(0).strip():
                    yield "pattern", match.group(0)


# --- fields of the layout ------------------------------------------------------------------
_TYPED_IDS = (
    ("author_type", "author_id"),
    ("made_by_type", "made_by_id"),
    ("owner_type", "owner_id"),
    ("created_by_type", "created_by_id"),
)
_HUMAN_NAME_KEYS = ("display_name", "full_name", "first_name", "last_name", "name")
_PHONE_KEYS = ("phone", "mobile", "telephone", "phone_number")
_SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_token",
        "private_key",
        "client_secret",
    }
)


def _human_record(item: dict[str, Any], found: list[tuple[str, str]]) -> None:
    for key in _HUMAN_NAME_KEYS:
        if isinstance(item.get(key), str):
            found.append(("person_name", item[key]))
    if isinstance(item.get("notes"), str):
        found.append(("note", item["notes"]))


def field_values(value: Any) -> list[tuple[str, str]]:
    """(category, value) of the personal fields anywhere in a parsed JSON document. Agent ids
    found along the way are reported as ("agent", id) so they can be kept (agents are not
    people)."""
    found: list[tuple[str, str]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        for key, sub in item.items():
            if isinstance(sub, (dict, list)):
                stack.append(sub)
            elif isinstance(sub, str):
                _field(item, key, sub, found)
        grants = item.get("role_grants")
        if isinstance(grants, dict):
            for grantee in grants:
                kind, _, ident = grantee.partition("/")
                if kind == "human" and ident:
                    found.append(("human_id", ident))
        if isinstance(item.get("human_id"), str):
            _human_record(item, found)
        if isinstance(item.get("agent_id"), str):
            found.append(("agent", item["agent_id"]))
        for type_key, id_key in _TYPED_IDS:
            ident = item.get(id_key)
            if isinstance(ident, str):
                if item.get(type_key) == "human":
                    found.append(("human_id", ident))
                elif item.get(type_key) in ("agent", "system"):
                    found.append(("agent", ident))
        caller_type, caller_id = item.get("type"), item.get("id")
        if caller_type == "human" and isinstance(caller_id, str) and "roles" in item:
            found.append(("human_id", caller_id))
    return found


def _field(item: dict[str, Any], key: str, value: str, found: list[tuple[str, str]]) -> None:
    lowered = key.lower()
    if lowered in ("human_id", "owner_human_id"):
        found.append(("human_id", value))
    elif lowered == "email" or lowered.endswith("_email"):
        found.append(("email", value))
    elif lowered in ("tenant_id", "tenant_name"):
        found.append(("tenant", value))
    elif lowered in ("client_id", "client_name"):
        found.append(("client", value))
    elif lowered in _PHONE_KEYS:
        found.append(("phone", value))
    elif lowered in _SECRET_KEYS and len(value) >= 4:
        found.append(("secret", value))
    elif lowered == "owner" and "risk_id" in item:
        found.append(("owner", value))


_STORE_IDENT = re.compile(r"^(?P<id>[^<>@\s]+)@(?P<type>human|agent|system)\.arka$")


def identity_values(name: str, email: str, service: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """(category, value) of a commit's author, committer or a tag's tagger.

    The store writes callers as ``<id> <<id>@<type>.arka>``: a human's id is personal, an
    agent's or the system's is not. The service identity (the configured committer) is not a
    person. Anything else (a commit made with plain git) is a person: name and email."""
    if (name, email) in service:
        return []
    store = _STORE_IDENT.match(email)
    if store and store.group("id") == name:
        if store.group("type") == "human":
            return [("human_id", name)]
        return [("agent", name)]
    found: list[tuple[str, str]] = []
    if name.strip():
        found.append(("person_name", name))
    if email.strip():
        found.append(("email", email))
    return found
