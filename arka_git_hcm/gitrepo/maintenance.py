"""Keeping the pack folder small and libgit2's view of it current: folding this process's own
packs, git's geometric repack, and reopening the handle when packs were replaced."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from ..durable import write_atomic
from ..errors import IoError, from_os_error
from . import gitbin, loose, packs
from .history_reads import HistoryReads

__all__ = ["PackMaintenance"]
PACK_LIST_CHECK_S = 1.0  # how often notice_rollups lists the pack folder


class PackMaintenance(HistoryReads):
    def fold_own_packs(self) -> int:
        """Fold the packs this process wrote (one per batch) into one, from the objects it
        still holds in memory: no git process, no pack read back, and each wide tree stored
        as a delta of its previous version (the successive batches' missions trees differ by
        one entry). The new pack is synced before the folded ones are deleted, whatever the
        durability: they may hold history acknowledged long ago. Returns how many packs were
        folded (0 when fewer than two, or while git repacks, gc runs or fsck reads packs)."""
        with self._pack_lock:
            folding = list(self._own_packs)
        if len(folding) < 2:
            return 0
        seen: set[bytes] = set()
        objects = []
        for _name, held in folding:  # in writing order: a delta base always comes first
            for entry in held:
                if entry[0] not in seen:
                    seen.add(entry[0])
                    objects.append(entry)
        with gitbin.maintenance_lock(self.workdir, exclusive=True, wait=False) as fd:
            if fd is None:
                return 0
            try:
                name = packs.write_pack(self.pack_dir, objects)
                packs.sync_pack(self.pack_dir, name)
                for old, _held in folding:
                    if old != name:
                        packs.remove_pack(self.pack_dir, old)
            except OSError as exc:
                raise from_os_error(exc, "folding small packs") from None
        folded = {old for old, _held in folding}
        self._keep_own_packs(lambda name: name not in folded)
        self.announce_repack()
        return len(folding)

    def _keep_own_packs(self, keep: Callable[[str], bool]) -> None:
        """Forget the objects of own packs no longer to fold (folded, or gone in a git repack)."""
        with self._pack_lock:
            self._own_packs = [item for item in self._own_packs if keep(item[0])]
            self._own_bytes = sum(len(e[2]) for _n, held in self._own_packs for e in held)

    def repack(self) -> None:
        """Fold the small packs (and any loose objects) with `git repack --geometric=2 -d`, then
        tell every store process to reopen its libgit2 handle. Safe beside writers: git folds
        only packs it listed when it started and keeps every object of them."""
        try:
            if not gitbin.repack_geometric(self.workdir):
                return  # another process is folding packs right now
        except subprocess.TimeoutExpired as exc:
            raise IoError(f"git repack took too long: {exc}") from None
        present = set(packs.pack_names(self.pack_dir))
        self._keep_own_packs(present.__contains__)
        self.announce_repack()

    def announce_repack(self) -> None:
        """Packs were replaced (repack, gc): every store process reopens its libgit2 handle,
        which would otherwise keep the deleted packs mapped (their disk space not freed)."""
        self._stamp_rollup()
        if not self._closed:
            self._reopen()

    def pack_count(self) -> int:
        return len(packs.pack_names(self.pack_dir))

    def remove_pack_leftovers(self) -> list[str]:
        """Half-written pack files of killed processes (call under the store's write lock)."""
        return packs.remove_leftovers(self.pack_dir)

    def move_damaged_packs(self) -> list[dict[str, str]]:
        """Packs that cannot be read (see packs.unreadable), moved to
        ``.git/arka-hcm/damaged-packs/`` and kept there for an admin; git and the store no longer
        trip over them. Objects the history needs from one of them then show as a history that
        cannot be read (the store refuses writes and says so). Returns ``{name, reason}`` each
        (call under the store's write lock)."""
        moved = []
        for name in packs.pack_names(self.pack_dir):
            reason = packs.unreadable(self.pack_dir, name)
            if reason is not None:
                packs.move_pack(self.pack_dir, name, self.state_dir / "damaged-packs")
                moved.append({"name": name, "reason": reason})
        if moved:
            self._reopen()
        return moved

    def move_damaged_loose_objects(self) -> list[dict[str, str]]:
        """Loose objects that cannot be read (see loose.py: libgit2 would hang on one cut
        short), moved to ``.git/arka-hcm/damaged-objects/`` for an admin; the history that needs
        one then reads as damaged (writes refused, with the reason). Returns ``{id, reason}``
        each (before anything reads history; safe beside other processes: git writes a loose
        object whole under a temp name, so a damaged one stays damaged)."""
        objects_dir = self.git_dir / "objects"
        moved = []
        for object_id, reason in loose.damaged_loose_objects(objects_dir):
            loose.move_loose_object(objects_dir, object_id, self.state_dir / "damaged-objects")
            moved.append({"id": object_id, "reason": reason})
        if moved:
            self._reopen()
        return moved

    def _stamp_rollup(self) -> None:
        write_atomic(self._rollup_stamp, f"{time.time_ns()}\n".encode(), root=self.git_dir)

    def notice_rollups(self) -> None:
        """Reopen libgit2's handle if packs were folded since it was opened: libgit2 keeps
        deleted packs mapped, holding their disk space and their memory. A store process that
        folds packs stamps it (cheap to check on every operation); at most once a second the
        pack folder is listed too, for packs deleted by a hand-run `git gc` or `git repack`."""
        if self._stamp() != self._seen_rollup:
            self._reopen()
            return
        now = time.monotonic()
        if now - self._packs_checked_at < PACK_LIST_CHECK_S:
            return
        self._packs_checked_at = now
        present = set(packs.pack_names(self.pack_dir))
        if self._packs_seen - present:
            self._reopen()
        else:
            self._packs_seen = present

    def _reopen(self) -> None:
        self._seen_rollup = self._stamp()
        self._packs_seen = set(packs.pack_names(self.pack_dir))
        self._packs_checked_at = time.monotonic()
        old, self._repo = self._repo, self._open_libgit2()
        # Release the old handle's open packs now (deleted ones included): waiting for the last
        # reference to go left hundreds of descriptors to deleted packs open under load. A thread
        # still using the old handle is safe: libgit2 reopens what it needs on its next use.
        old.free()
