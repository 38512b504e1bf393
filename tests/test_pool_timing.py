"""The pool's timing on virtual time: deadlines, the circuit breaker, probes, backoff.

Every server here is a :class:`~tests.harness.memory_server.MemoryServer` in the
test's own trio run, reached through the pool's ``connector``, and the clock is
trio's ``autojump_clock``: so each assertion is about an exact virtual time, as
trio tests its own timeouts. What only a real server shows (a SIGSTOPped
process, a partition) is tested against real servers in ``test_pool_faults.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from tests.harness.helpers import timed
from tests.harness.memory_server import MemoryServer, memory_connector
from trio_redisha import (
    Pool,
    PoolClosed,
    ServerState,
    ServerTimeout,
    ServerUnavailable,
    open_pool,
)
from trio_redisha._deadlines import GRANULARITY

LABELS = ("redis://a:6379", "redis://b:6379", "redis://c:6379")


@asynccontextmanager
async def memory_pool(n: int = 3, **options: Any) -> AsyncIterator[tuple[Pool, list[MemoryServer]]]:
    """A pool over ``n`` in-memory servers, every one connected before the block."""
    async with trio.open_nursery() as nursery:
        servers = {label: MemoryServer(nursery, label) for label in LABELS[:n]}
        async with open_pool(*LABELS[:n], connector=memory_connector(servers), **options) as pool:
            await until(lambda: pool.available == n)
            yield pool, list(servers.values())
        nursery.cancel_scope.cancel()


async def until(check: Callable[[], bool]) -> None:
    """Poll ``check`` on virtual time (autojump makes each step free)."""
    while not check():  # noqa: ASYNC110 - pool state has no event to wait on
        await trio.sleep(0.001)


# --------------------------------------------------------------------------- deadlines


async def test_a_hung_server_costs_exactly_one_deadline(autojump_clock: Any) -> None:
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[2].hang()
        replies, took = await timed(pool.ping())
        assert replies[:2] == ["PONG", "PONG"]
        assert isinstance(replies[2], ServerTimeout)
        assert 0.5 <= took <= 0.5 + GRANULARITY
        # The circuit is open: the next call does not wait for it at all.
        assert pool.status()[2].state is ServerState.SUSPECT
        replies, took = await timed(pool.ping())
        assert took == 0
        assert isinstance(replies[2], ServerUnavailable)
        assert "circuit open" in str(replies[2])


async def test_per_call_deadline(autojump_clock: Any) -> None:
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[2].delay = 0.2
        replies, took = await timed(pool.ping(timeout=0.1))
        assert isinstance(replies[2], ServerTimeout) and "0.1 s" in str(replies[2])
        assert 0.1 <= took <= 0.1 + GRANULARITY


async def test_a_short_call_deadline_does_not_open_a_healthy_server_s_circuit(
    autojump_clock: Any,
) -> None:
    # One timeout=0.1 call counted a timeout against a server answering in 0.2
    # s, well within the pool's 0.5: with trip_after=1 every caller then skipped it.
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[2].delay = 0.2
        for _ in range(3):
            replies, took = await timed(pool.ping(timeout=0.1))
            assert isinstance(replies[2], ServerTimeout)
            assert 0.1 <= took <= 0.1 + GRANULARITY
        await trio.sleep(0.5)  # the late replies come
        status = pool.status()[2]
        assert status.state is ServerState.UP
        assert status.consecutive_timeouts == 0
        assert await pool.ping() == ["PONG", "PONG", "PONG"]


SHORT = 0.07


async def short_call(pool: Pool, bound: str) -> None:
    """A call bounded to 0.07 s by its own ``timeout=``, or by its scope (a request budget).

    Not a divisor of the pool's timeout: no call ends at the instant the server
    is judged (which of the two trio runs first there is left to chance).
    """
    if bound == "timeout":
        replies = await pool.ping(timeout=SHORT)
        assert isinstance(replies[2], ServerTimeout)
    else:
        with trio.move_on_after(SHORT) as budget:
            await pool.ping()
        assert budget.cancelled_caught


@pytest.mark.parametrize("bound", ["timeout", "cancelled"])
async def test_a_server_missing_the_pool_s_timeout_is_judged_then_after_short_calls(
    autojump_clock: Any, bound: str
) -> None:
    # Cancelled: a call its own scope cancelled left its missed replies
    # unjudged, so the circuit never opened, and each call waited its whole
    # budget on the hung server.
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[2].hang()
        start = trio.current_time()
        # Calls with a short deadline, one after another: the server is judged
        # at the first one's send plus the pool's timeout, and only once.
        while pool.status()[2].state is ServerState.UP:
            await short_call(pool, bound)
            assert trio.current_time() - start <= 0.5 + SHORT + GRANULARITY
        opened = trio.current_time() - start
        assert 0.5 <= opened <= 0.5 + SHORT + GRANULARITY
        assert pool.status()[2].consecutive_timeouts == 1
        replies, took = await timed(pool.ping(timeout=0.1))
        assert took == 0 and "circuit open" in str(replies[2])
        servers[2].unhang()
        await until(lambda: pool.status()[2].state is ServerState.UP)


async def test_a_cancelled_call_does_not_open_a_healthy_server_s_circuit(
    autojump_clock: Any,
) -> None:
    async with memory_pool(timeout=0.5, trip_after=1) as (pool, servers):
        servers[2].delay = 0.2
        for _ in range(3):
            with trio.move_on_after(0.1):
                await pool.ping()
        await trio.sleep(0.5)  # the late replies come, in the pool's timeout
        assert pool.status()[2].state is ServerState.UP
        assert await pool.ping() == ["PONG", "PONG", "PONG"]


async def test_every_reply_a_short_call_missed_counts_towards_trip_after(
    autojump_clock: Any,
) -> None:
    # One watcher per server judged one missed reply per window: with
    # trip_after=3, short calls kept a hung server in use three times as long.
    async with memory_pool(timeout=0.5, trip_after=3) as (pool, servers):
        servers[2].hang()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(partial(pool.ping, timeout=0.1))
        await until(lambda: pool.status()[2].state is not ServerState.UP)
        assert trio.current_time() - start <= 0.5 + GRANULARITY
        assert pool.status()[2].consecutive_timeouts == 3


async def test_each_missed_reply_is_judged_at_its_own_time(autojump_clock: Any) -> None:
    # The queue was judged in the order the calls returned: a short call sent
    # later, returning first, held back the judgment of an earlier send.
    async with memory_pool(timeout=1.0) as (pool, servers):
        servers[2].hang()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(pool.ping, timeout=0.9))  # judged at 1.0

            async def later() -> None:
                await trio.sleep(0.5)
                await pool.ping(timeout=0.05)  # returns first; judged at 1.5

            nursery.start_soon(later)
        await until(lambda: pool.status()[2].state is not ServerState.UP)
        assert trio.current_time() - start <= 1.0 + GRANULARITY


async def test_a_reply_after_a_short_call_s_deadline_is_not_counted_as_received(
    autojump_clock: Any,
) -> None:
    # It was (replies_received, and a success in the duration metric), while
    # the caller got a ServerTimeout.
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[2].delay = 0.2
        before = pool.stats.replies_received
        replies = await pool.ping(timeout=0.1)
        assert isinstance(replies[2], ServerTimeout)
        await trio.sleep(0.5)  # the late reply came, and the server was judged
        assert pool.stats.replies_received - before == 2
        assert pool.status()[2].state is ServerState.UP


async def test_a_short_hedged_read_still_judges_a_slow_server_by_the_pool_s_timeout(
    autojump_clock: Any,
) -> None:
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[1].delay = 0.2
        servers[2].delay = 0.7
        start = trio.current_time()
        replies = await pool.execute("PING", wait_for=1, timeout=0.1)
        assert replies[0] == "PONG"
        assert all(isinstance(r, ServerTimeout) for r in replies[1:])
        # Past the call's deadline, before the pool's: neither is judged yet.
        await trio.sleep_until(start + 0.15)
        assert [st.state for st in pool.status()] == [ServerState.UP] * 3
        await trio.sleep_until(start + 0.5 + GRANULARITY)
        states = [st.state for st in pool.status()]
        assert states == [ServerState.UP, ServerState.UP, ServerState.SUSPECT]
        assert pool.status()[1].consecutive_timeouts == 0


async def test_slow_but_in_time_server_waits_for_its_reply(autojump_clock: Any) -> None:
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[2].delay = 0.3
        replies, took = await timed(pool.ping())
        assert replies == ["PONG", "PONG", "PONG"]
        assert took == pytest.approx(0.3)
        assert pool.status()[2].state is ServerState.UP


async def test_hedged_read_returns_at_the_first_reply_and_still_judges_the_rest(
    autojump_clock: Any,
) -> None:
    async with memory_pool(timeout=0.5) as (pool, servers):
        servers[1].delay = 0.1
        servers[2].hang()
        replies, took = await timed(pool.execute("PING", wait_for=1))
        assert took == 0 or took < 0.01
        assert replies[0] == "PONG"
        # b's reply comes at 0.1 and c's never: c trips once its deadline passes.
        await trio.sleep(0.5 + GRANULARITY)
        states = [st.state for st in pool.status()]
        assert states == [ServerState.UP, ServerState.UP, ServerState.SUSPECT]


# --------------------------------------------------------------------------- circuit and probe


async def test_circuit_closes_once_a_probe_is_answered(autojump_clock: Any) -> None:
    async with memory_pool(timeout=0.5, backoff_cap=1.0) as (pool, servers):
        servers[2].hang()
        await pool.ping()
        assert pool.status()[2].state is ServerState.SUSPECT
        opened = trio.current_time()
        await trio.sleep(3.0)
        # Still hung: still open, probed all along.
        assert pool.status()[2].state is ServerState.SUSPECT
        probes = [t for t, cmd in servers[2].commands if t > opened and cmd == [b"PING"]]
        assert len(probes) >= 2
        servers[2].unhang()
        thawed = trio.current_time()
        await until(lambda: pool.status()[2].state is ServerState.UP)
        # Answered by the probe in flight, or by the next one after its backoff.
        assert trio.current_time() - thawed <= 1.0 + 1e-9
        assert await pool.ping() == ["PONG", "PONG", "PONG"]


async def test_trip_after_counts_consecutive_timeouts(autojump_clock: Any) -> None:
    async with memory_pool(timeout=0.5, trip_after=3) as (pool, servers):
        servers[2].delay = 0.6  # always late, never lost
        for _ in range(2):
            replies = await pool.ping()
            assert isinstance(replies[2], ServerTimeout)
            assert pool.status()[2].state is ServerState.UP
        servers[2].delay = 0.0
        await trio.sleep(1.0)  # the late replies drain
        assert await pool.ping() == ["PONG", "PONG", "PONG"]  # resets the count
        assert pool.status()[2].consecutive_timeouts == 0
        servers[2].delay = 0.6
        for expected in (ServerState.UP, ServerState.UP, ServerState.SUSPECT):
            await pool.ping()
            assert pool.status()[2].state is expected


# --------------------------------------------------------------------------- reconnecting


async def test_reconnect_backoff_is_bounded_and_grows(autojump_clock: Any) -> None:
    base, cap = 0.05, 1.0
    async with memory_pool(timeout=0.5, backoff_base=base, backoff_cap=cap) as (pool, servers):
        pool._upkeep.random.seed(7)  # the jitter, replayable
        servers[2].refusing = True
        servers[2].drop_connections()
        await until(lambda: len(servers[2].attempts) >= 12)
        assert pool.status()[2].state is ServerState.DOWN
        attempts = servers[2].attempts[1:]  # from the first reconnect on
        gaps = [t1 - t0 for t0, t1 in itertools.pairwise(attempts)]
        for k, gap in enumerate(gaps):
            assert 0 <= gap <= min(cap, base * 2**k) + 1e-9, (k, gaps)
        assert max(gaps[6:]) > base * 2, gaps  # it backs off, not a fixed short wait
        # Back: connected again within one capped delay.
        servers[2].refusing = False
        refused_until = trio.current_time()
        await until(lambda: pool.status()[2].state is ServerState.UP)
        assert trio.current_time() - refused_until <= cap + 1e-9
        assert await pool.ping() == ["PONG", "PONG", "PONG"]


@asynccontextmanager
async def slow_and_hung_to_connect() -> AsyncIterator[tuple[Pool, list[MemoryServer]]]:
    """A pool on three servers: one fine, one slow to connect (0.2 s), one hanging."""
    async with trio.open_nursery() as nursery:
        servers = {label: MemoryServer(nursery, label) for label in LABELS}
        servers[LABELS[1]].connect_delay = 0.2  # slow to connect, then fine
        servers[LABELS[2]].connect_delay = 10.0  # hangs on connect
        async with open_pool(*LABELS, connector=memory_connector(servers), timeout=0.5) as pool:
            yield pool, list(servers.values())
        nursery.cancel_scope.cancel()


async def test_first_calls_wait_for_a_first_connect_within_their_deadline(
    autojump_clock: Any,
) -> None:
    async with slow_and_hung_to_connect() as (pool, _):
        replies, took = await timed(pool.ping())
        assert replies[:2] == ["PONG", "PONG"]
        assert isinstance(replies[2], ServerUnavailable)
        assert took == pytest.approx(0.5, abs=GRANULARITY)
        # After the first deadline a server not connected yet costs nothing.
        replies, took = await timed(pool.ping())
        assert took == 0 and isinstance(replies[2], ServerUnavailable)


async def test_first_calls_with_enough_replies_do_not_wait_for_a_first_connect(
    autojump_clock: Any,
) -> None:
    # A wait_for= call (or a hedged read) with its replies in waited out the
    # first-connect window for a server whose connect hung.
    async with slow_and_hung_to_connect() as (pool, servers):
        await until(lambda: pool.status()[0].state is ServerState.UP)
        replies, took = await timed(pool.execute("ECHO", "a", wait_for=1))
        assert took == 0 and replies[0] == b"a"
        # Not awaited: still sent to each server once it connects (in time).
        assert all(isinstance(r, ServerTimeout) and r.sent for r in replies[1:])
        # Two replies needed: it waits for the slow server, not the hung one.
        replies, took = await timed(pool.execute("ECHO", "b", wait_for=2))
        assert replies[:2] == [b"b", b"b"] and isinstance(replies[2], ServerTimeout)
        assert took == pytest.approx(0.2, abs=GRANULARITY)
        await trio.sleep(0.5)  # past the first-connect window
        echoed = [sorted(c[1] for _, c in s.commands if c[0] == b"ECHO") for s in servers]
        assert echoed == [[b"a", b"b"], [b"a", b"b"], []]  # the hung one never connected


async def test_connect_timeout_bounds_a_hanging_connect(autojump_clock: Any) -> None:
    async with trio.open_nursery() as nursery:
        server = MemoryServer(nursery)
        server.connect_delay = 100.0
        pool = Pool(LABELS[0], connector=memory_connector({LABELS[0]: server}), connect_timeout=2.0)
        await nursery.start(pool.run)
        await until(lambda: len(server.attempts) >= 3)
        first, second, third = server.attempts[:3]
        assert second - first >= 2.0 and third - second >= 2.0
        assert pool.status()[0].last_error == "connect timed out"
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_closing_wakes_a_call_waiting_on_a_hung_server(autojump_clock: Any) -> None:
    async with memory_pool(timeout=2.0) as (pool, servers):
        servers[2].hang()
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await pool.ping()
            except PoolClosed as exc:
                errors.append(exc)

        async with trio.open_nursery() as callers:
            callers.start_soon(call)
            await trio.sleep(0.5)
            closed_at = trio.current_time()
            await pool.aclose()
        assert trio.current_time() == closed_at
        assert len(errors) == 1
