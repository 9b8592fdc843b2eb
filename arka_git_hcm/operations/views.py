"""Read views of the HCM at one commit, and the draft a write operation edits.

Operations never touch the disk: they read a :class:`TreeView` (the tree of one commit, so an
answer is consistent with the revision it reports) and write into a :class:`Draft` (changes in
memory, turned into one commit by the engine).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import IoError, NotFound
from ..gitrepo import GitRepo
from ..jsonio import canonical_bytes, parse_json
from ..paths import check_relative

__all__ = ["Draft", "TreeView"]

M = TypeVar("M", bound=BaseModel)


class TreeView:
    def __init__(self, repo: GitRepo, tree_id: str | None, commit_id: str | None) -> None:
        self.repo = repo
        self.tree_id = tree_id
        self.commit_id = commit_id

    def read(self, path: str) -> bytes | None:
        return self.repo.read_blob(self.tree_id, check_relative(path))

    def exists(self, path: str) -> bool:
        return self.repo.entry_id(self.tree_id, check_relative(path)) is not None

    def list_dir(self, path: str) -> list[tuple[str, bool]]:
        return self.repo.list_dir(self.tree_id, check_relative(path) if path else "")

    def read_json(self, path: str) -> Any | None:
        raw = self.read(path)
        if raw is None:
            return None
        try:
            return parse_json(raw, what=path, max_depth=512)
        except Exception:
            raise IoError(
                f"{path} is not valid JSON in the HCM; run `arka-hcm verify` and repair or roll it back",
                {"path": path},
            ) from None

    def load(self, path: str, model: type[M], missing: Exception | None = None) -> M:
        """The file at ``path`` as ``model``; ``missing`` (default NOT_FOUND) when absent."""
        value = self.read_json(path)
        if value is None:
            raise missing or NotFound(f"{path} does not exist", {"path": path})
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise IoError(
                f"{path} does not match the HCM layout ({where}: {first['msg']}); run `arka-hcm verify`",
                {"path": path},
            ) from None

    def read_lines(self, path: str) -> list[dict[str, Any]]:
        """The JSON objects of a JSONL file; blank lines (HCM v1 left some) are skipped."""
        raw = self.read(path)
        if raw is None:
            return []
        entries: list[dict[str, Any]] = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            value = _parse_line(path, number, line)
            if value is not None:
                entries.append(value)
        return entries

    def read_last_lines(self, path: str, count: int) -> list[dict[str, Any]]:
        """The last ``count`` JSON objects of a JSONL file, parsing only those lines: a context
        read must not cost in proportion to the whole journal."""
        raw = self.read(path)
        if raw is None or count <= 0:
            return []
        budget = count + 1
        while True:
            pieces = raw.rsplit(b"\n", budget)
            complete = len(pieces) <= budget  # the split reached the start of the file
            tail = pieces if complete else pieces[1:]
            lines = [line for line in tail if line.strip()]
            if len(lines) >= count or complete:
                break
            budget *= 4  # blank lines took the room: look further back
        first_number = raw.count(b"\n") - len(tail) + 2
        entries = []
        for offset, line in enumerate(tail):
            value = _parse_line(path, first_number + offset, line)
            if value is not None:
                entries.append(value)
        return entries[-count:]


def _parse_line(path: str, number: int, line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = parse_json(line, what=f"{path} line {number}")
    except Exception:
        raise IoError(
            f"{path} line {number} is not valid JSON; run `arka-hcm verify`",
            {"path": path, "line": number},
        ) from None
    return value if isinstance(value, dict) else None


class Draft(TreeView):
    """A tree view plus in-memory changes: path -> new bytes, or None for a deletion."""

    def __init__(self, repo: GitRepo, tree_id: str | None, commit_id: str | None) -> None:
        super().__init__(repo, tree_id, commit_id)
        self.changes: dict[str, bytes | None] = {}

    def read(self, path: str) -> bytes | None:
        check_relative(path)
        if path in self.changes:
            return self.changes[path]
        return super().read(path)

    def exists(self, path: str) -> bool:
        check_relative(path)
        if path in self.changes:
            return self.changes[path] is not None
        prefix = path + "/"
        if any(p.startswith(prefix) and v is not None for p, v in self.changes.items()):
            return True
        return super().exists(path)

    def list_dir(self, path: str) -> list[tuple[str, bool]]:
        entries = dict(super().list_dir(path))
        prefix = path + "/" if path else ""
        for changed, value in self.changes.items():
            if not changed.startswith(prefix):
                continue
            rest = changed[len(prefix) :].split("/")
            if len(rest) == 1:
                if value is None:
                    entries.pop(rest[0], None)
                else:
                    entries[rest[0]] = False
            elif value is not None:
                entries[rest[0]] = True
        return sorted(entries.items())

    def write(self, path: str, data: bytes) -> None:
        self.changes[check_relative(path)] = data

    def write_json(self, path: str, value: Any) -> None:
        self.write(path, canonical_bytes(value))

    def delete(self, path: str) -> None:
        self.changes[check_relative(path)] = None
