"""The pool's deadline timer on virtual time: each waiter expires at its deadline."""

from __future__ import annotations

from typing import Any

import trio

from trio_redisha._deadlines import Deadlines
from trio_redisha.connection import Hedge, Slot, Waiter


def pending_waiter() -> Waiter:
    """A waiter with one slot outstanding, as a fan-out leaves it."""
    waiter = Waiter(1)
    waiter.expect()
    return waiter


async def test_waiters_expire_at_their_deadlines_in_any_order(autojump_clock: Any) -> None:
    deadlines = Deadlines(granularity=0.001)
    woke: dict[str, float] = {}

    async def wait(name: str, waiter: Waiter) -> None:
        await waiter.wait()
        woke[name] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        start = trio.current_time()
        # In order (the FIFO), then earlier than the last (the heap).
        for name, after in (("a", 0.5), ("b", 1.0), ("c", 0.25), ("d", 2.0)):
            waiter = pending_waiter()
            deadlines.add(start + after, waiter)
            nursery.start_soon(wait, name, waiter)
        await trio.sleep(3.0)
        nursery.cancel_scope.cancel()
    for name, after in (("a", 0.5), ("b", 1.0), ("c", 0.25), ("d", 2.0)):
        assert after <= woke[name] - start <= after + 0.001, (name, woke[name] - start)
    assert len(deadlines) == 0


async def test_filled_waiters_are_dropped_without_waking_anyone(autojump_clock: Any) -> None:
    deadlines = Deadlines(granularity=0.001)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        start = trio.current_time()
        done = pending_waiter()
        deadlines.add(start + 1.0, done)
        late = pending_waiter()
        deadlines.add(start + 2.0, late)
        done.slot_filled(True)
        done.filled = True  # as wait() leaves a waiter that returned
        await trio.sleep(1.5)
        assert len(deadlines) == 1  # the filled one is gone, the other still due
        assert not late.filled
        await trio.sleep(1.0)
        assert late.filled and len(deadlines) == 0
        nursery.cancel_scope.cancel()


async def test_timer_never_wakes_more_often_than_its_granularity(autojump_clock: Any) -> None:
    deadlines = Deadlines(granularity=0.01)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        start = trio.current_time()
        waiters = [pending_waiter() for _ in range(100)]
        for i, waiter in enumerate(waiters):
            deadlines.add(start + 0.001 * i, waiter)  # 100 deadlines within 0.1 s
        await trio.sleep(0.2)
        assert all(w.filled for w in waiters)
        nursery.cancel_scope.cancel()


async def test_an_earlier_deadline_moves_the_sleeping_timer(autojump_clock: Any) -> None:
    deadlines = Deadlines(granularity=0.001)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        start = trio.current_time()
        far = pending_waiter()
        deadlines.add(start + 100.0, far)
        await trio.sleep(0.1)  # the timer now sleeps until start + 100
        near = pending_waiter()
        deadlines.add(trio.current_time() + 0.2, near)
        await near.wait()
        assert trio.current_time() - start <= 0.3 + 0.001
        assert not far.filled
        nursery.cancel_scope.cancel()


async def test_a_hedge_lowers_the_need_when_it_expires(autojump_clock: Any) -> None:
    # A hedged read: it waits for all three replies at first, then, once its
    # hedge expires, two will do (the third server is late: do without it).
    deadlines = Deadlines(granularity=0.001)
    waiter = Waiter(3)
    slots = [Slot(waiter, i, 0.0) for i in range(3)]
    for _ in slots:
        waiter.expect()
    woke: list[float] = []

    async def wait() -> None:
        await waiter.wait()
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        start = trio.current_time()
        hedge = Hedge(waiter, 2)
        deadlines.add(start + 0.5, hedge)
        nursery.start_soon(wait)
        await trio.sleep(0.1)
        slots[0].fill(b"copy", trio.current_time())
        slots[1].fill(b"digest", trio.current_time())
        assert not waiter.satisfied and not hedge.filled  # two of three: not yet
        await trio.sleep(0.1)
        assert not woke
        await trio.sleep(0.5)
        assert woke and 0.5 <= woke[0] - start <= 0.502  # woken by the hedge
        assert hedge.filled and len(deadlines) == 0
        nursery.cancel_scope.cancel()


def test_a_hedge_never_raises_the_need_nor_wakes_too_early() -> None:
    waiter = Waiter(2)
    slots = [Slot(waiter, i, 0.0) for i in range(3)]
    for _ in slots:
        waiter.expect()
    Hedge(waiter, 3).expire()
    assert waiter.need == 2
    Hedge(waiter, 1).expire()  # no reply yet: nothing to wake with
    assert waiter.need == 1 and not waiter.satisfied
    slots[2].fill(b"late but first", 0.0)
    assert waiter.satisfied
