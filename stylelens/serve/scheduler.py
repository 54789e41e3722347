"""Latest-wins work queue: one worker thread runs renders off the request threads, and a newer request for a
lane replaces the one still waiting there, so a dragged slider never queues stale work."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Callable


class Superseded(Exception):
    """The job was replaced by a newer one for the same lane before it started."""


class LatestWins:
    """One worker thread and, per lane, at most one waiting job: submitting to a lane supersedes its waiting job.

    A job already running finishes (torch cannot be interrupted); lanes are served in the order they first
    became busy, so a busy lane cannot starve another.
    """

    def __init__(self, name: str = 'stylelens-render') -> None:
        self._pending: dict[str, tuple[Callable[[], Any], Future]] = {}
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, lane: str, job: Callable[[], Any]) -> Future:
        """Queue `job` on `lane`, superseding the lane's waiting job (its future raises Superseded)."""
        future: Future = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError('the render queue is closed')
            old = self._pending.get(lane)
            self._pending[lane] = (job, future)  # an existing key keeps its place in the order
            self._wake.notify()
        if old is not None:
            old[1].set_exception(Superseded(f'a newer {lane} request replaced this one'))
        return future

    def close(self) -> None:
        """Stop after the running job; waiting jobs are superseded."""
        with self._wake:
            self._closed = True
            waiting, self._pending = list(self._pending.values()), {}
            self._wake.notify()
        for _, future in waiting:
            future.set_exception(Superseded('the server is shutting down'))
        self._thread.join(timeout=30)

    def _work(self) -> None:
        """Take the oldest busy lane's job, run it, deliver its result or exception; forever until closed."""
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                lane = next(iter(self._pending))
                job, future = self._pending.pop(lane)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as err:  # delivered to the waiting request, never lost in the thread
                future.set_exception(err)
