"""Keeping the pack folder small and libgit2's view of it current: folding this process's own
packs, git's geometric repack, and reopening the handle when packs were replaced."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pygit2

from ..durable import write_atomic
from ..errors import IoError, from_os_error
from . import gitbin, loose, packs
from .history_reads import HistoryReads
from .objects import OWN_OBJECTS_KEPT, OWN_PACK_BYTES_KEPT

__all__ = ["PackMaintenance"]
PACK_LIST_CHECK_S = 1.0  # how often notice_rollups lists the pack folder
FOLD_FACTOR = 2  # an older own pack joins a fold while smaller than this times the packs taken


class PackMaintenance(HistoryReads):
    def fold_own_packs(self) -> int:
        """Fold the newest packs this process wrote into one, from the objects it still holds
        in memory: no git process, no pack read back. The folds form a geometric series, as
        `git repack --geometric=2` does: the packs written since the last fold, plus each older
        fold holding fewer than FOLD_FACTOR times the objects folded already. So an object is
        copied about log2(n) times over n writes, as the compressed bytes its batch wrote (not
        deflated again), and each new version of a journal or a wide tree becomes a delta of
        the previous one as soon as both are in one pack: an append then costs the pack what
        it added, even when writes spread over hundreds of missions.

        The new pack is synced before the folded ones are deleted, whatever the durability:
        they may hold history acknowledged long ago. Returns how many packs were folded (0 when
        fewer than two, or while git repacks, gc runs or fsck reads packs)."""
        with self._pack_lock:
            folding = self._geometric_run(list(self._own_packs))
        if len(folding) < 2:
            return 0
        seen: set[bytes] = set()
        objects = []
        for pack in folding:  # oldest first: a delta base always comes before its object
            for item in pack.objects:
                if item.oid not in seen:
                    seen.add(item.oid)
                    objects.append(item)
        with gitbin.maintenance_lock(self.workdir, exclusive=True, wait=False) as fd:
            if fd is None:
                return 0
            try:
                written = packs.write_held(self.pack_dir, objects, self._whole_again)
                packs.sync_pack(self.pack_dir, written.name)
                for old in folding:
                    if old.name != written.name:
                        packs.remove_pack(self.pack_dir, old.name)
            except OSError as exc:
                raise from_os_error(exc, "folding small packs") from None
        weight = 0
        for item, as_delta in zip(objects, written.as_delta, strict=True):
            if as_delta:
                item.stream = None  # a delta now, and stays one in the next folds (its base comes along)
            weight += item.weight()
        self._replace_own_packs(folding, packs.OwnPack(written.name, objects, written.size, weight))
        self.announce_repack()
        return len(folding)

    @staticmethod
    def _geometric_run(own: list[packs.OwnPack]) -> list[packs.OwnPack]:
        """The newest own packs to fold: going back from the newest, each older pack joins
        while it holds fewer than FOLD_FACTOR times the objects taken so far. (Counted in
        objects, not bytes: a fold shrinks what it folds, deltas replacing whole versions, so
        by bytes the new packs always looked large next to older folds, and every fold
        rewrote most of them: 77 ms a fold at 20,000 writes, measured.)"""
        start, total = len(own), 0
        while start > 0 and (total == 0 or len(own[start - 1].objects) < FOLD_FACTOR * total):
            start -= 1
            total += len(own[start].objects)
        return own[start:]

    def _replace_own_packs(self, folded: list[packs.OwnPack], new: packs.OwnPack) -> None:
        """Put ``new`` where the run of ``folded`` packs was (packs written meanwhile stay after
        it), then let go of the oldest packs' objects beyond OWN_PACK_BYTES_KEPT or
        OWN_OBJECTS_KEPT: they stay on disk, and git's repack folds them when packs pile up.
        (The object bound keeps each fold short: the largest fold rewrites about as many
        objects as are held, and the writer waits for folds that fall far behind.)"""
        names = {pack.name for pack in folded}
        with self._pack_lock:
            own = self._own_packs
            at = next((i for i, pack in enumerate(own) if pack.name in names), len(own))
            own = [pack for pack in own[:at] if pack.name not in names] + [new]
            own += [pack for pack in self._own_packs[at:] if pack.name not in names]
            while len(own) > 1 and (
                sum(pack.weight for pack in own) > OWN_PACK_BYTES_KEPT
                or sum(len(pack.objects) for pack in own) > OWN_OBJECTS_KEPT
            ):
                own.pop(0)
            self._own_packs = own
            self._own_bytes = sum(pack.weight for pack in own)

    def _whole_again(self, item: packs.Held) -> list[bytes | memoryview]:
        """An object a fold must write whole though it did not keep its whole stream (its base
        is not in this fold, or its delta chain grew too long): read back and compressed."""
        self.objects_read_back += 1
        try:
            _kind, data = self._repo.odb.read(item.oid.hex())
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise OSError(f"object {item.oid.hex()} to fold cannot be read: {exc}") from None
        return item.whole_from(data)

    def _keep_own_packs(self, keep: Callable[[str], bool]) -> None:
        """Forget the objects of own packs no longer on disk (gone in a git repack)."""
        with self._pack_lock:
            self._own_packs = [pack for pack in self._own_packs if keep(pack.name)]
            self._own_bytes = sum(pack.weight for pack in self._own_packs)

    def repack(self) -> None:
        """Fold the small packs (and any loose objects) into one (gitbin.repack_geometric), then
        tell every store process to reopen its libgit2 handle. Safe beside writers: only the
        packs listed when it starts are folded, and every object of them is kept."""
        try:
            if not gitbin.repack_geometric(self.workdir):
                return  # another process is folding packs right now
        except subprocess.TimeoutExpired as exc:
            raise IoError(f"folding small packs took too long: {exc}") from None
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
        checked = packs.CheckedPacks(self.state_dir / "packs-checked", self.state_dir.parent)
        for name in packs.pack_names(self.pack_dir):
            reason = checked.why_unreadable(self.pack_dir, name)
            if reason is not None:
                packs.move_pack(self.pack_dir, name, self.state_dir / "damaged-packs")
                moved.append({"name": name, "reason": reason})
        checked.save()
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
