"""The one background-worker mechanism: woken rounds, periodic rounds, retries, close."""

from __future__ import annotations

import threading

from arka_git_hcm.worker import BackgroundWorker


class Recorder(BackgroundWorker):
    name = "test-recorder"

    def __init__(
        self, fail_times: int = 0, interval_s: float | None = None, max_backoff_s: float = 60.0
    ) -> None:
        super().__init__(interval_s=interval_s, max_backoff_s=max_backoff_s)
        self.calls = 0
        self.fail_times = fail_times
        self.called = threading.Event()

    def work(self) -> None:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise OSError("remote down")
        self.called.set()


def test_a_wake_runs_one_round_and_the_thread_starts_lazily() -> None:
    worker = Recorder()
    assert worker._thread is None
    worker.wake()
    assert worker.called.wait(10)
    assert worker.wait_idle(10)
    assert worker.calls == 1 and worker.rounds == 1
    worker.close()
    assert worker.calls == 1  # nothing pending at close: no extra round


def test_a_failing_round_is_retried_after_a_backoff_and_reported() -> None:
    worker = Recorder(fail_times=2, max_backoff_s=0.05)
    worker.wake()
    assert worker.called.wait(10)
    assert worker.calls == 3
    assert worker.wait_idle(10)
    assert worker.last_error is None  # cleared by the round that succeeded
    worker.close()


def test_periodic_rounds_without_wakes() -> None:
    worker = Recorder(interval_s=0.01)
    worker.start()
    assert worker.called.wait(10)
    worker.close(final_round=False)
    assert worker.calls >= 1


def test_close_runs_the_round_a_wake_asked_for() -> None:
    worker = Recorder()
    with worker._cond:  # a wake that the thread has not taken yet
        worker._woken = True
    worker.close()
    assert worker.calls == 1
