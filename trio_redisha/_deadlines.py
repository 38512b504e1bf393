"""Deadlines for fan-outs, kept by one timer task instead of a cancel scope per call.

Entering and leaving a :class:`trio.CancelScope` with a deadline costs more
than the rest of a fan-out's bookkeeping together (it registers and removes
the deadline in the run loop's heap each time). A pool instead hands each
waiter to :class:`Deadlines`, whose single timer task wakes the waiters whose
deadline has passed. Calls with the pool's default timeout have increasing
deadlines, so they go into a FIFO (O(1)); others into a heap. Finished waiters
are dropped lazily when they reach the front.

A deadline may fire up to ``granularity`` late (at most :data:`GRANULARITY`):
the timer never wakes more often than that, however many calls are in flight.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Final, Protocol

import trio

__all__ = ["GRANULARITY", "Deadlines"]

#: The timer's default resolution: it wakes at most this often, and deadlines
#: fire at most this late. Pools with short timeouts use a finer one.
GRANULARITY: Final = 0.002


class Expiring(Protocol):
    """What the timer expires: a :class:`~trio_redisha.connection.Waiter`, or a
    :class:`~trio_redisha.connection.Hedge`."""

    @property
    def filled(self) -> bool:
        """Whether it needs nothing more (a finished entry is dropped)."""
        ...  # pragma: no cover

    def expire(self) -> None:
        """Its deadline passed."""
        ...  # pragma: no cover


class Deadlines:
    """Expires :class:`~trio_redisha.connection.Waiter` objects at their deadlines."""

    __slots__ = ("_fifo", "_granularity", "_heap", "_scope", "_seq")

    def __init__(self, *, granularity: float = GRANULARITY) -> None:
        self._granularity = granularity
        self._fifo: deque[tuple[float, Expiring]] = deque()
        self._heap: list[tuple[float, int, Expiring]] = []
        self._seq = 0
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._fifo) + len(self._heap)

    def add(self, deadline: float, waiter: Expiring) -> None:
        """Wake ``waiter`` (with :meth:`Waiter.expire`) once ``deadline`` passes."""
        fifo = self._fifo
        if not fifo or fifo[-1][0] <= deadline:
            fifo.append((deadline, waiter))
        else:
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, waiter))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = max(deadline, trio.current_time() + self._granularity)

    def _expire_due(self, now: float) -> float:
        """Wake every waiter whose deadline passed; return the next deadline."""
        fifo = self._fifo
        while fifo:
            deadline, waiter = fifo[0]
            if waiter.filled:
                fifo.popleft()
            elif deadline <= now:
                fifo.popleft()
                waiter.expire()
            else:
                break
        heap = self._heap
        while heap:
            deadline, _, waiter = heap[0]
            if waiter.filled:
                heapq.heappop(heap)
            elif deadline <= now:
                heapq.heappop(heap)
                waiter.expire()
            else:
                break
        nxt = fifo[0][0] if fifo else math.inf
        if heap and heap[0][0] < nxt:
            nxt = heap[0][0]
        return nxt

    @trio.lowlevel.enable_ki_protection  # it expires waiters (connection._ki_protected)
    async def run(self) -> None:
        """The timer task: run it in the pool's nursery."""
        while True:
            now = trio.current_time()
            nxt = self._expire_due(now)
            with trio.CancelScope(deadline=max(nxt, now + self._granularity)) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
