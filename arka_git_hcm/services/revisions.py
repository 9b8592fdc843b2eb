"""Which commit an ``at`` names: ``HEAD``/``HEAD~N``, a commit id or prefix, a snapshot name,
or an ISO date/time. Only commits of the HCM's own history are answered."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from ..clock import OutOfRange, parse_iso
from ..errors import InvalidPayload, NotFound
from ..gitrepo import GitRepo
from ..history.index import HistoryIndex
from ..history.query import commit_at

__all__ = ["SNAPSHOT_TAG_PREFIX", "Revisions"]

_AT_RELATIVE = re.compile(r"^HEAD(?:~(\d{1,6}))?$")
_AT_HEX = re.compile(r"^[0-9a-f]{4,40}$")
SNAPSHOT_TAG_PREFIX = "snapshot/"
_AT_SNAPSHOT = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")


class Revisions:
    def __init__(self, repo: GitRepo, history: HistoryIndex, tip: Callable[[], str | None]) -> None:
        self.repo = repo
        self.history = history
        self.tip = tip

    def resolve_at(self, at: str | None) -> str | None:
        """``at`` as a commit: ``HEAD`` or ``HEAD~N`` (first parents of the branch tip), a commit
        id or a prefix of one, a snapshot name (``NAME`` or ``snapshot/NAME``, as `git tag` shows
        it), or an ISO date/time (the state then).

        Only commits of the HCM's history are answered: reachable from the branch or from a
        snapshot tag. A prefix of any other object in the database (a commit on another ref, a
        stash, an unreachable commit of a failed write, a blob) is not a revision of the HCM."""
        if at is None:
            return self.tip()
        tip = self.tip()
        relative = _AT_RELATIVE.match(at)
        if relative:
            return self._first_parent(tip, int(relative.group(1) or 0), at)
        if _AT_HEX.match(at):
            commit = self.repo.resolve_commit(at)
            if commit is not None and self._in_history(commit, tip):
                return commit
        name = at.removeprefix(SNAPSHOT_TAG_PREFIX)
        if _AT_SNAPSHOT.match(name):
            commit = self.repo.resolve_commit(f"refs/tags/{SNAPSHOT_TAG_PREFIX}{name}")
            if commit is not None:
                return commit
        try:
            moment = parse_iso(at)
        except OutOfRange as exc:
            raise InvalidPayload(str(exc), {"at": at[:200]}) from None
        except ValueError:
            raise NotFound(
                f"{at[:200]!r} is neither a revision of this HCM, a snapshot name nor an ISO date/time",
                {"at": at[:200]},
            ) from None
        commit = self.commit_at(moment)
        if commit is None:
            raise NotFound(f"the HCM has no history at {at}", {"at": at})
        return commit

    def _first_parent(self, tip: str | None, steps: int, at: str) -> str | None:
        current = tip
        for _ in range(steps):
            parents = self.repo.commit_info(current).parents if current else ()
            if not parents:
                raise NotFound(f"{at}: the history has fewer than {steps + 1} commits", {"at": at})
            current = parents[0]
        return current

    def _in_history(self, commit: str, tip: str | None) -> bool:
        """Reachable from the branch tip or from a snapshot tag."""
        if commit == tip or (tip is not None and self.repo.is_ancestor(commit, tip)):
            return True
        for _name, tagged, _when, _message in self.repo.list_tags(SNAPSHOT_TAG_PREFIX):
            if commit == tagged or self.repo.is_ancestor(commit, tagged):
                return True
        return False

    def commit_at(self, moment: datetime) -> str | None:
        """The newest first-parent commit at or before ``moment``, from the history index (the
        commits it has not indexed yet are walked)."""
        return commit_at(self.repo, self.history, self.tip(), moment)
