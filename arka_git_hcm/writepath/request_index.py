"""The request index: which request ids the history holds (a retry is answered with the first
answer, ``replayed``), and which left it when a person moved the branch back by hand.

Ids are read from the trailers of the store's own commits (parse_trailers trusts only blocks in
the store's exact shape). The index follows the branch: each new tip must descend from the last
one seen. A tip that does not (``git reset --hard main~5``, ``git update-ref``) is a rewind: the
store refuses to write until an admin decides (``arka-hcm accept-rewind`` keeps it; moving the
branch back to the old tip undoes it), because a retried request whose commit was dropped would
otherwise be committed a second time. Once accepted, the dropped commits' request ids are kept in
``dropped-requests.jsonl`` and a retry of one is refused, never applied twice.

Detection also works across restarts: git writes a reflog line for every move of the branch, so
a last line that moved it to an ancestor of where it was is a rewind nobody accepted yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .. import durable
from ..domain.commit_message import parse_trailers
from ..errors import ConflictingUpdate
from ..gitrepo import GitRepo
from ..history.index import HistoryIndex
from ..jsonio import compact_dumps, parse_json

__all__ = ["REWIND_ACCEPTED", "RequestIndex", "Rewound"]

log = logging.getLogger("arka_git_hcm.requests")
DROPPED_FILE = "dropped-requests.jsonl"
REWIND_ACCEPTED = "arka-hcm: rewind accepted"
_DROPPED_WALK_MAX = 1_000_000


@dataclass
class Rewound(Exception):
    """The branch went backwards, from ``old`` to its ancestor ``new``."""

    old: str
    new: str

    def message(self) -> str:
        return (
            f"the HCM branch was moved back by hand from {self.old[:12]} to {self.new[:12]}: writes are "
            "refused until an admin decides. Keep it with `arka-hcm accept-rewind`, or undo it with "
            f"`git -C <hcm> update-ref <branch> {self.old}` (see `arka-hcm verify`)"
        )


class RequestIndex:
    """Request ids of the branch's history: the ones the history index (``history``, kept up to
    date off the write path) holds up to the newest of its commits on this branch (the anchor),
    plus the ones of the commits above it, read from their trailers when the store opens and
    recorded as batches land. Without a history index, the whole history is read once per
    process (~50 s at 1,000,000 commits, measured: why the anchor)."""

    def __init__(self, repo: GitRepo, ref: str, state_dir: Path, history: HistoryIndex | None = None) -> None:
        self.repo = repo
        self.ref = ref
        self.state_dir = state_dir
        self.history = history
        self._known: dict[str, str] = {}  # ids of the commits above the anchor (all, without one)
        self._anchor_seq: int | None = None  # the anchor's depth in the history index
        self._dropped: dict[str, str] | None = None
        self.tip_seen: str | None = None

    # --- following the branch -------------------------------------------------------------------
    def catch_up(self, tip: str) -> None:
        """Learn the request ids of the commits since the last tip seen. Raises Rewound when the
        branch went backwards (now, or in a move the reflog shows and nobody accepted)."""
        if tip == self.tip_seen:
            return
        if self.tip_seen is None:
            backwards = self.unaccepted_rewind(tip)
            if backwards is not None:
                raise backwards
        elif not self.repo.is_ancestor(self.tip_seen, tip):
            raise Rewound(self.tip_seen, tip)
        fresh: dict[str, str] = {}
        reached = False
        anchor: int | None = None
        history = self.history if self.tip_seen is None else None
        if history is not None and history.stamp() is None:
            history = None  # no index (yet): not one look-up per commit for nothing
        for info in self.repo.walk(tip):
            if info.id == self.tip_seen:
                reached = True
                break
            if history is not None:
                anchor = history.seq_of(info.id)
                if anchor is not None:  # this commit and all below it: the history index's rows
                    break
            rid = parse_trailers(info.message).get("Hcm-Request-Id")
            if rid:
                fresh[rid] = info.id  # walking newest-first: the oldest commit of an id wins
        if reached:
            for rid, commit in fresh.items():
                self._known.setdefault(rid, commit)
        else:
            self._known = fresh
            self._anchor_seq = anchor
        self.tip_seen = tip

    def unaccepted_rewind(self, tip: str) -> Rewound | None:
        """The reflog's last move of the branch, if it went backwards and was not accepted."""
        entry = self.repo.last_reflog_entry(self.ref)
        if entry is None:
            return None
        old, new, message = entry
        if new != tip or old == new or set(old) == {"0"}:
            return None  # moved forward, accepted (an old == new line), or created
        if self.history is not None:
            # both on the history index's first-parent line: their depths say which way it
            # moved, where asking git walks every commit between them (a jump of a million
            # commits, a fetch or a fast-import, took 18 s)
            old_seq, new_seq = self.history.seq_of(old), self.history.seq_of(new)
            if old_seq is not None and new_seq is not None:
                return Rewound(old, new) if new_seq < old_seq else None
        return Rewound(old, new) if self.repo.is_ancestor(new, old) else None

    def record(self, request_id: str, commit: str) -> None:
        self._known[request_id] = commit

    def landed(self, tip: str) -> None:
        self.tip_seen = tip

    def forget_tip(self) -> None:
        """History moved in a way the index cannot follow: relearn it from the next tip."""
        self.tip_seen = None
        self._known = {}
        self._anchor_seq = None

    # --- lookups ------------------------------------------------------------------------------------
    def lookup(self, request_id: str) -> str | None:
        """The commit that holds this request, or None. ConflictingUpdate when its commit was
        dropped from the history by an accepted rewind: applying it again could double it."""
        if self._anchor_seq is not None and self.history is not None:
            row = self.history.request_seq(request_id)  # older than any commit above the anchor
            if row is not None and row.seq <= self._anchor_seq:
                return row.id
        commit = self._known.get(request_id)
        if commit is not None:
            return commit
        dropped = self._dropped_ids().get(request_id)
        if dropped is not None:
            raise ConflictingUpdate(
                f"request {request_id!r} was applied in commit {dropped[:12]}, which is no longer in the "
                "branch's history (it was moved back by hand); use a new request_id to apply it again",
                {"request_id": request_id, "revision": dropped},
            )
        return None

    # --- accepting a rewind ----------------------------------------------------------------------------
    def accept_rewind(self, rewound: Rewound) -> int:
        """Keep the branch where it is: the request ids of the dropped commits (from the old tip
        back to where the two histories meet) are remembered as dropped. Returns how many."""
        base = self.repo.merge_base(rewound.old, rewound.new)
        lines = []
        for count, info in enumerate(self.repo.walk(rewound.old, stop=base)):
            if count >= _DROPPED_WALK_MAX:
                break
            rid = parse_trailers(info.message).get("Hcm-Request-Id")
            if rid:
                lines.append(compact_dumps({"request_id": rid, "commit": info.id}) + "\n")
        if lines:
            durable.append_line(
                self.state_dir / DROPPED_FILE, "".join(lines).encode("utf-8"), root=self.state_dir.parent
            )
        self._dropped = None  # reread
        self.forget_tip()
        log.warning(
            "a rewind from %s to %s was accepted; %d request id(s) dropped",
            rewound.old,
            rewound.new,
            len(lines),
        )
        return len(lines)

    def _dropped_ids(self) -> dict[str, str]:
        if self._dropped is None:
            found: dict[str, str] = {}
            try:
                raw = durable.read_file(self.state_dir / DROPPED_FILE, root=self.state_dir.parent)
            except FileNotFoundError:
                raw = b""
            for line in raw.split(b"\n"):
                if line.strip():
                    try:
                        record = parse_json(line, what=DROPPED_FILE)
                        found.setdefault(str(record["request_id"]), str(record["commit"]))
                    except Exception:  # a torn last line of a crash: skip it
                        continue
            self._dropped = found
        return self._dropped
