"""What the index holds: the searchable documents of an HCM file.

One file gives one or more documents:

- a ``.jsonl`` file (a mission journal, its archived days): one document per line, so that a hit
  names the entry (its line number, timestamp and author), never "somewhere in this journal";
- a JSON file that is one list of records (``{"decisions": [...]}``, ``{"next_actions": [...]}``,
  a glossary's ``{"entries": [...]}``, ``{"agents": [...]}``): one document per record, named by
  its position and its id;
- any other JSON file: one document (``.md`` and ``.txt`` files too, as plain text).

A document has a title (weighted above the text when ranking) and a text: every string value of
the JSON, keys left out, except timestamps (noise for a word search). Content that is not valid
JSON is indexed as plain text: the index reflects what is in git, damaged or not.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_TEXT_CHARS",
    "Document",
    "documents_of",
    "is_indexed",
    "journal_documents",
    "location",
]

MAX_FILE_BYTES = 4 * 1024 * 1024  # larger files are found by their name only
MAX_TEXT_CHARS = 64 * 1024  # of one document's text; the rest is not searchable
_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt")
_TITLE_KEYS = ("title", "name", "display_name", "term", "label", "subject", "tenant_name")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?\Z")
_LAYERS = frozenset({"stable", "domain", "state", "hindex"})
_STEM_SEPARATORS = re.compile(r"[._-]+")


class Document(NamedTuple):
    path: str
    kind: str  # "file" | "entry" (a journal line) | "record" (one element of a list file)
    title: str  # what a hit shows
    index_title: str  # what ranking weighs as the title
    text: str
    line: int | None = None  # journal lines: 1-based line number in the file
    record: int | None = None  # records: 0-based position in the list
    entry_id: str | None = None  # a record's id (decision_id, action_id, a glossary term...)
    timestamp: str | None = None  # a journal entry's
    author: str | None = None  # a journal entry's, "type/id"
    entry_type: str | None = None
    own_sensitivity: str | None = None  # the document's own "sensitivity" field, if any


def is_indexed(path: str) -> bool:
    return path.endswith(_TEXT_SUFFIXES)


def location(path: str) -> tuple[str, str | None]:
    """(layer, mission_id) of a path: ``state/missions/<id>/...`` belongs to mission ``<id>``."""
    parts = path.split("/", 3)
    layer = parts[0] if len(parts) > 1 and parts[0] in _LAYERS else "root"
    mission = parts[2] if len(parts) > 3 and parts[0] == "state" and parts[1] == "missions" else None
    return layer, mission


def documents_of(path: str, data: bytes) -> list[Document]:
    if len(data) > MAX_FILE_BYTES:
        return [Document(path, "file", _stem(path), _stem_words(path), "")]
    if path.endswith(".jsonl"):
        return journal_documents(path, data)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
    value: Any = None
    if path.endswith(".json"):
        try:
            value = _parse(text)
        except (ValueError, RecursionError):  # (nested deeper than Python parses: a hand edit)
            value = None
    if value is None:
        return [Document(path, "file", _stem(path), _stem_words(path), text[:MAX_TEXT_CHARS])]
    records = _records(value)
    if records is not None:
        return _record_documents(path, value, records)
    key, title = _title_of(value)
    return [
        Document(
            path,
            "file",
            title or _stem(path),
            title or _stem_words(path),
            _text(value, key),
            own_sensitivity=_own_sensitivity(value),
        )
    ]


def journal_documents(path: str, data: bytes, first_line: int = 1) -> list[Document]:
    """One document per non-blank line of ``data``, numbered from ``first_line`` (an append
    indexes only the new lines, numbered after the ones already indexed)."""
    lines = data.split(b"\n")
    numbered = [(first_line + i, raw) for i, raw in enumerate(lines) if raw.strip()]
    try:  # one parse for the whole file; line by line only when some line is not JSON
        values: list[Any] = json.loads(b"[" + b",".join(raw for _, raw in numbered) + b"]")
    except (ValueError, RecursionError):
        values = [_parse_line(raw) for _, raw in numbered]
    docs = []
    for (number, raw), value in zip(numbered, values, strict=True):
        if isinstance(value, dict):
            docs.append(_entry_document(path, number, value))
        else:
            text = raw.decode("utf-8", "replace")[:MAX_TEXT_CHARS]
            docs.append(Document(path, "entry", f"line {number}", "", text, number))
    return docs


_parse = json.JSONDecoder().decode  # json.loads of a str without its argument checks


def _parse_line(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _entry_document(path: str, number: int, value: dict[str, Any]) -> Document:
    get = value.get
    author = f"{get('author_type', '?')}/{get('author_id', '?')}"
    timestamp = get("timestamp")
    timestamp = timestamp if isinstance(timestamp, str) else None
    entry_type = get("entry_type")
    entry_type = entry_type if isinstance(entry_type, str) else None
    context = get("context")
    own = _own_sensitivity(value)
    parts: list[str] = []
    message = get("message")
    if isinstance(message, str):
        parts.append(message)
    if isinstance(context, dict):
        if own is None:
            own = _own_sensitivity(context)
        _strings(context, parts)
    title = f"{entry_type or 'entry'} by {author}" + (f" at {timestamp}" if timestamp else "")
    return Document(
        path, "entry", title, "", _joined(parts), number, None, None, timestamp, author, entry_type, own
    )


def _records(value: Any) -> list[Any] | None:
    """The list of a file that is one list of records (other values: plain strings or numbers,
    such as a file-wide "sensitivity"), else None."""
    if not isinstance(value, dict):
        return None
    found = None
    for item in value.values():
        if isinstance(item, list):
            if found is not None:
                return None
            found = item
        elif isinstance(item, dict):
            return None
    if not found:
        return None
    for item in found:
        if type(item) is not dict:  # json.loads makes exact dicts
            return None
    return found


def _record_documents(path: str, value: dict[str, Any], records: list[Any]) -> list[Document]:
    file_own = _own_sensitivity(value)
    stem = _stem(path)
    docs = []
    for position, record in enumerate(records):
        key, title = _title_of(record)
        record_id = _record_id(record)
        display = title or (f"{stem} {record_id}" if record_id else f"{stem} #{position + 1}")
        own = _own_sensitivity(record) or file_own
        docs.append(
            Document(
                path,
                "record",
                display,
                title,
                _text(record, key),
                record=position,
                entry_id=record_id,
                own_sensitivity=own,
            )
        )
    return docs


def _record_id(record: dict[str, Any]) -> str | None:
    for key, value in record.items():
        if key.endswith("_id") and isinstance(value, str):
            return value[:200]
    term = record.get("term")
    return term[:200] if isinstance(term, str) else None


def _title_of(value: Any) -> tuple[str | None, str]:
    """(the key, the title): the title goes to the title column, not again into the text."""
    if isinstance(value, dict):
        get = value.get
        for key in _TITLE_KEYS:
            found = get(key)
            if isinstance(found, str):
                found = found.strip()
                if found:
                    return key, found[:300]
    return None, ""


def _own_sensitivity(value: Any) -> str | None:
    found = value.get("sensitivity") if isinstance(value, dict) else None
    if not isinstance(found, str):
        return None
    found = found.strip()
    return found[:64] if found else None


def _text(value: Any, title_key: str | None = None) -> str:
    parts: list[str] = []
    if title_key is not None and isinstance(value, dict):
        value = [item for key, item in value.items() if key != title_key]
    _strings(value, parts)
    return _joined(parts)


def _strings(value: Any, out: list[str]) -> None:
    """Every string inside ``value`` (a value of json.loads: exact dicts, lists and strings;
    depth first, in order), timestamps left out."""
    stack = [value]
    pop, push, add, timestamp = stack.pop, stack.extend, out.append, _TIMESTAMP.match
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if item and not (item[0].isdigit() and 10 <= len(item) <= 35 and timestamp(item)):
                add(item)
        elif kind is dict:
            push(reversed(item.values()))
        elif kind is list:
            push(reversed(item))


def _joined(parts: list[str]) -> str:
    return "\n".join(parts)[:MAX_TEXT_CHARS]


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.split(".", 1)[0] if not name.startswith(".") else name


def _stem_words(path: str) -> str:
    return _STEM_SEPARATORS.sub(" ", _stem(path)).strip()
