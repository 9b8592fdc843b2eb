"""Group commit: writes queue in-process and one leader at a time commits a batch of them.

A thread that submits waits for its answer and leads a batch itself when nobody is leading; an
asyncio caller (the HTTP server) hands its write to the committer, a background worker that
leads the batches for it, so the event loop never blocks and no write gets a thread of its own.
This module knows nothing of git: the engine gives it the function that commits a batch.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..errors import ReadOnly
from ..worker import BackgroundWorker
from .requests import WriteRequest, WriteResult, outcome_of

__all__ = ["GroupCommit"]

# commits ``taken`` (and may take more from the queue meanwhile, see GroupCommit.take_more);
# every request it was given is done when it returns
RunBatches = Callable[[list[WriteRequest]], None]


class _Committer(BackgroundWorker):
    """Leads the batches of asyncio callers' writes (and whatever else queued)."""

    name = "arka-hcm-committer"

    def __init__(self, group: GroupCommit) -> None:
        super().__init__()
        self.group = group

    def work(self) -> None:
        self.group.drain()

    def has_pending(self) -> bool:
        return self.group.queued()  # queued writes are committed even once closing has begun


class GroupCommit:
    def __init__(self, run_batches: RunBatches, batch_max: int) -> None:
        self._run_batches = run_batches
        self.batch_max = batch_max
        self._cond = threading.Condition()
        self._queue: list[WriteRequest] = []
        self._leader = False
        self._closing = False
        self._committer = _Committer(self)

    def submit(self, request: WriteRequest) -> WriteResult:
        """Run one write (possibly batched with others waiting) and return its result or raise.
        The calling thread waits; it leads a batch itself when no other thread is leading."""
        with self._cond:
            self._queue.append(request)
            while not request.done:
                if self._leader:
                    self._cond.wait()
                    continue
                self._lead()
        return outcome_of(request)

    async def submit_async(self, request: WriteRequest) -> WriteResult:
        """The same as :meth:`submit` for an asyncio caller: the committer leads the batch."""
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def settle() -> None:
            if not finished.done():
                finished.set_result(None)

        def wake() -> None:  # runs in the committing thread
            loop.call_soon_threadsafe(settle)

        request.on_done = wake
        with self._cond:
            if self._closing:
                raise ReadOnly("the store is closing; retry")
            self._queue.append(request)
            self._cond.notify_all()
        self._committer.wake()
        await finished
        return outcome_of(request)

    def queued(self) -> bool:
        with self._cond:
            return bool(self._queue)

    def drain(self) -> None:
        """Lead batches while writes are queued and nobody else leads (the committer's round)."""
        with self._cond:
            while self._queue and not self._leader:
                self._lead()

    def _lead(self) -> None:
        """Take a batch off the queue and commit it (``self._cond`` held on entry and exit)."""
        self._leader = True
        taken = self._queue[: self.batch_max]
        del self._queue[: len(taken)]
        self._cond.release()
        try:
            self._run_batches(taken)
        finally:
            self._cond.acquire()
            self._leader = False
            # a request no batch could settle (never expected) waits for the next leader
            self._queue[:0] = [r for r in taken if not r.done]
            self._cond.notify_all()
            if self._queue:
                self._committer.wake()  # an asyncio caller's write queued while this one led

    def take_more(self, taken: list[WriteRequest]) -> list[WriteRequest]:
        """The next batch for a leader going on under the same lock (added to ``taken``)."""
        with self._cond:
            more = self._queue[: self.batch_max]
            del self._queue[: len(more)]
        taken.extend(more)
        return more

    def acknowledge(self, requests: list[WriteRequest]) -> None:
        """Requests whose answer is final (and durable): mark them done, wake their waiters."""
        with self._cond:
            for request in requests:
                request.done = True
        self.wake(requests)

    def wake(self, requests: list[WriteRequest]) -> None:
        """Wake the waiters of ``requests`` that are done: threads in submit, and the callbacks
        of submit_async (each called once)."""
        if not requests:
            return
        with self._cond:
            self._cond.notify_all()
        for request in requests:
            if request.done and request.on_done is not None:
                callback, request.on_done = request.on_done, None
                callback()

    def close(self) -> None:
        """Refuse new asyncio writes; the committer commits what is queued, then stops."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._committer.close()
