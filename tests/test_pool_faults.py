"""The HA pool under failures: hung servers, reconnects, faults during a workload,
hedged reads, and closing the pool under load. Real redis-server processes.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import RedisFactory
from tests.harness.fault_proxy import FaultProxy, open_fault_proxy
from tests.harness.helpers import command_calls, timed, urls, wait_no_clients, wait_until
from tests.harness.hostile import (
    SETUP_COMMANDS,
    HostileConnection,
    answer_handshake,
    handshake_reply,
    open_hostile_server,
)
from tests.harness.memory_server import MemoryServer
from tests.test_pool import (
    FAST,
    PONG3,
    RECOVERY,
    SLACK,
    _records_about,
    answers,
    fd_count,
    holds,
    ready_pool,
    tasks_living,
    wait_ready,
)
from trio_redisha import (
    Connection,
    HashMap,
    Pool,
    PoolClosed,
    ServerSpec,
    ServerState,
    ServerTimeout,
    ServerUnavailable,
    open_pool,
)
from trio_redisha.crdt import Counter as CounterCRDT
from trio_redisha.pool._upkeep import DEFAULT_SETTLE_TIME
from trio_redisha.testing import RedisServer

TIMEOUT = 0.5  # the pool's default deadline
#: Labels of in-memory servers (reached through a pool's connector, on virtual time).
MEMORY_LABELS = ("redis://a:6379", "redis://b:6379")


@asynccontextmanager
async def proxied(server: RedisServer) -> AsyncIterator[FaultProxy]:
    async with open_fault_proxy(server.host, server.port) as proxy:
        yield proxy


# --------------------------------------------------------------------------- entering


async def test_entering_never_waits_for_a_blackholed_server(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    async with proxied(c) as proxy:
        proxy.blackhole()  # connects are accepted, then nothing ever answers
        start = trio.current_time()
        async with open_pool(a.url, b.url, proxy.url) as pool:
            assert trio.current_time() - start < FAST
            # The first call waits at most one deadline for the hung server.
            replies, took = await timed(pool.ping())
            assert took < TIMEOUT + SLACK
            assert isinstance(replies[2], (ServerUnavailable, ServerTimeout))
            await wait_until(
                holds(lambda: [st.state for st in pool.status()][:2] == [ServerState.UP] * 2),
                what="a and b up",
            )
            # Later calls do not wait for it at all.
            for _ in range(20):
                replies, took = await timed(pool.ping())
                assert took < FAST
                assert replies[:2] == ["PONG", "PONG"]
                assert isinstance(replies[2], ServerUnavailable)
            proxy.heal()
            await wait_until(lambda: answers(pool, 2), what="healed server used")
            assert await pool.ping() == PONG3


# --------------------------------------------------------------------------- hung servers


async def _check_hung_then_recovers(pool: Pool, index: int) -> None:
    """Server ``index`` just hung: one call waits, later ones skip it at once."""
    replies, took = await timed(pool.ping())
    assert TIMEOUT - 0.05 <= took < TIMEOUT + SLACK
    assert isinstance(replies[index], ServerTimeout)
    assert [r for i, r in enumerate(replies) if i != index] == ["PONG", "PONG"]
    assert pool.status()[index].state is ServerState.SUSPECT
    for _ in range(20):
        replies, took = await timed(pool.ping())
        assert took < FAST
        assert isinstance(replies[index], ServerUnavailable)
        assert "circuit open" in str(replies[index])
        assert [r for i, r in enumerate(replies) if i != index] == ["PONG", "PONG"]


async def test_frozen_server_costs_one_deadline_then_recovers(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_redisha")
    victim = redis_servers[1]
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.ping() == PONG3
        await victim.afreeze()
        try:
            await _check_hung_then_recovers(pool, 1)
        finally:
            await victim.athaw()
        took = await wait_until(lambda: answers(pool, 1), what="thawed server used again")
        assert took < RECOVERY
        assert pool.status()[1].state is ServerState.UP
        assert await pool.ping() == PONG3
    label = pool.servers[1]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [line for line in lines if label in line and "timed out" in line] != []
    assert len([line for line in lines if label in line]) == 2, lines


async def test_blackholed_server_costs_one_deadline_then_recovers(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    async with proxied(b) as proxy, ready_pool(a.url, proxy.url, c.url) as pool:
        assert await pool.ping() == PONG3
        proxy.blackhole()
        await _check_hung_then_recovers(pool, 1)
        proxy.heal()
        await wait_until(lambda: answers(pool, 1), what="healed server used again")
        assert await pool.ping() == PONG3


async def test_killed_server_restarted_is_used_again_within_5s(
    redis_servers: list[RedisServer],
) -> None:
    victim = redis_servers[0]
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.ping() == PONG3
        await victim.akill()
        await wait_until(
            holds(lambda: pool.status()[0].state is ServerState.DOWN), what="seen down"
        )
        # Stay down long enough for the reconnect backoff to grow. The down server
        # costs nothing: no call waits for its deadline, and calls stay fast (the
        # median: one slow call among thousands is the shared machine, not the pool).
        start = trio.current_time()
        times = []
        while trio.current_time() - start < 1.0:
            replies, took = await timed(pool.ping())
            times.append(took)
            assert took < pool.timeout
            assert isinstance(replies[0], ServerUnavailable)
        assert statistics.median(times) < FAST / 10
        await victim.astart()  # same port, empty
        took = await wait_until(lambda: answers(pool, 0), what="restarted server used")
        assert took < RECOVERY
        assert await pool.setnx("after", 1) == [1, 1, 1]


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    """20 tasks doing SET/GET of their own keys; every reply checked."""

    pool: Pool
    victim: int
    tasks: int = 20
    ops: int = 0
    victim_errors: int = 0
    victim_ok: int = 0
    slowest: float = 0.0
    problems: list[str] = field(default_factory=list)
    stop: trio.Event = field(default_factory=trio.Event)

    def _check(self, what: str, replies: list[object], expected: object, mine: bytes) -> None:
        for i, entry in enumerate(replies):
            if i != self.victim:
                if entry != expected:
                    self.problems.append(f"healthy server {i}: {what} gave {entry!r}")
            elif isinstance(entry, (ServerUnavailable, ServerTimeout)):
                self.victim_errors += 1
            elif entry == expected:
                self.victim_ok += 1
            elif entry is None or (isinstance(entry, bytes) and entry.startswith(mine)):
                pass  # a write it missed (restart) or one still in flight (hang)
            else:
                self.problems.append(f"victim: {what} gave {entry!r}")

    async def worker(self, n: int) -> None:
        key = f"wl:{n}"
        mine = f"{n}:".encode()
        i = 0
        while not self.stop.is_set():
            i += 1
            value = mine + str(i).encode()
            start = trio.current_time()
            replies = await self.pool.set(key, value)
            self._check(f"SET {key}", replies, "OK", mine)
            replies = await self.pool.get(key)
            self._check(f"GET {key}", replies, value, mine)
            self.slowest = max(self.slowest, (trio.current_time() - start) / 2)
            self.ops += 1

    async def more_ops(self, n: int) -> None:
        target = self.ops + n
        await wait_until(holds(lambda: self.ops >= target), what=f"{n} more operations")

    async def victim_used(self) -> None:
        before = self.victim_ok
        await wait_until(holds(lambda: self.victim_ok > before + 100), what="victim used again")


@pytest.mark.parametrize("fault", ["kill", "freeze", "blackhole", "restart_empty"])
async def test_one_server_fails_during_concurrent_workload(
    redis_servers: list[RedisServer], fault: str
) -> None:
    a, b, victim = redis_servers
    async with proxied(victim) as proxy, ready_pool(a.url, b.url, proxy.url) as pool:
        work = Workload(pool, victim=2)
        async with trio.open_nursery() as nursery:
            for n in range(work.tasks):
                nursery.start_soon(work.worker, n)
            await work.more_ops(200)
            assert work.victim_errors == 0
            assert work.victim_ok > 0
            if fault == "kill":
                await victim.akill()
            elif fault == "freeze":
                await victim.afreeze()
            elif fault == "blackhole":
                proxy.blackhole()
            else:
                await victim.arestart_empty()
            if fault != "restart_empty":
                await wait_until(holds(lambda: work.victim_errors > 0), what="the fault is noticed")
                await work.more_ops(200)  # the healthy servers keep serving
                if fault == "kill":
                    await victim.astart()
                elif fault == "freeze":
                    await victim.athaw()
                else:
                    proxy.heal()
            await work.victim_used()
            await work.more_ops(200)
            work.stop.set()
        assert work.problems == [], work.problems[:10]
        # No call waited for the failed server longer than about one deadline.
        assert work.slowest < TIMEOUT + 2 * SLACK
        assert await pool.ping() == PONG3


# --------------------------------------------------------------------------- hedged reads


async def test_replies_of_a_hedged_read_not_awaited_still_count_as_received(
    redis_servers: list[RedisServer],
) -> None:
    async with ready_pool(*urls(redis_servers), timeout=2.0) as pool:
        await pool.set("h", "v")
        expected, received = pool.stats.replies_expected, pool.stats.replies_received
        for _ in range(50):
            await pool.execute("GET", "h", wait_for=1)
        # Every server answered in time: the ones the calls did not wait for are
        # recorded by the tasks watching for them. (They went uncounted: a
        # healthy fleet looked as if it lost a third of its replies.)
        await wait_until(
            holds(lambda: pool.stats.replies_received - received == 150), what="late replies"
        )
        assert pool.stats.replies_expected - expected == 150


async def test_hedged_read_returns_on_first_reply_and_leaks_nothing(
    redis_servers: list[RedisServer],
) -> None:
    victim = redis_servers[2]
    outside = tasks_living()
    async with ready_pool(*urls(redis_servers), timeout=2.0) as pool:
        await pool.set("h", "v")
        assert await pool.execute("GET", "h", wait_for=1) != []
        baseline = tasks_living()
        await victim.afreeze()
        try:
            for _ in range(5):
                replies, took = await timed(pool.execute("GET", "h", wait_for=1))
                assert took < FAST  # did not wait for the frozen server's 2 s
                assert b"v" in replies[:2]
                for entry in replies[:2]:
                    assert entry == b"v" or isinstance(entry, ServerTimeout)
                assert isinstance(replies[2], ServerTimeout)
                assert "hedged" in str(replies[2])
            replies = await pool.execute("GET", "h", wait_for=2)
            assert replies[:2] == [b"v", b"v"]
            # Waited for (wait_for=3) until the deadline: not "not awaited".
            replies = await pool.execute("GET", "h", wait_for=3, timeout=0.2)
            assert replies[:2] == [b"v", b"v"]
            assert isinstance(replies[2], ServerTimeout)
            assert "did not reply within 0.2 s" in str(replies[2])
            before = pool.status()[2].replies
        finally:
            await victim.athaw()
        # The late replies still arrive and feed the health figures ...
        await wait_until(
            holds(lambda: pool.status()[2].replies >= before + 6), what="late replies counted"
        )
        assert pool.status()[2].state is ServerState.UP
        # ... and the tasks watching for them are gone.
        await wait_until(holds(lambda: tasks_living() <= baseline), what="watchers gone")
        assert await pool.execute("GET", "h", wait_for=3) == [b"v", b"v", b"v"]

        # Leaving the pool right after a hedged read on a hung server does not wait
        # for the hung server's deadline.
        await victim.afreeze()
        try:
            replies = await pool.execute("GET", "h", wait_for=1)
            assert isinstance(replies[2], ServerTimeout)
            leaving = trio.current_time()
        except BaseException:
            await victim.athaw()
            raise
    try:
        assert trio.current_time() - leaving < FAST
        assert tasks_living() == outside
    finally:
        await victim.athaw()


# --------------------------------------------------------------------------- probes


async def test_probe_answered_by_an_error_reply_keeps_probing() -> None:
    """A server answering the probe's PING with -BUSY (a long script) is probed until PONG."""
    seen: list[ServerState] = []  # the server's state as each probe arrives
    pools: list[Pool] = []

    async def busy_for_a_while(conn: HostileConnection) -> None:
        await answer_handshake(conn, SETUP_COMMANDS)  # returns the handshake's PING
        await conn.send(b"+PONG\r\n")
        held = 0  # GETs left unanswered: the pool times out and opens the circuit
        while True:
            command = await conn.read_command()
            if command[0].upper() != b"PING":
                held += 1
                continue
            seen.append(pools[0].status()[0].state)
            if held or len(seen) <= 3:
                # The late GET replies first (replies come in order), then BUSY.
                await conn.send(b"$-1\r\n" * held + b"-BUSY Redis is busy running a script\r\n")
                held = 0
            else:
                await conn.send(b"+PONG\r\n")

    async with (
        open_hostile_server(busy_for_a_while) as hostile,
        ready_pool(hostile.url, timeout=0.2, probe_interval=0.2, backoff_cap=0.05) as pool,
    ):
        pools.append(pool)
        (entry,) = await pool.get("k")
        assert isinstance(entry, ServerTimeout)
        assert pool.status()[0].state is ServerState.SUSPECT
        await wait_until(
            holds(lambda: pool.status()[0].state is ServerState.UP), what="circuit closed"
        )
        # Every probe that got BUSY left the circuit open; the PONG closed it.
        assert seen == [ServerState.SUSPECT] * 4
        assert await pool.ping() == ["PONG"]


# --------------------------------------------------------------------------- closing


async def test_aclose_closes_the_pool_even_when_cancelled(redis_factory: RedisFactory) -> None:
    """aclose() in a cancelled scope while a read repair waits: closed at once, owner exits."""
    a, b = redis_factory.many(2)
    async with proxied(b) as proxy:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                pool = Pool(a.url, proxy.url, timeout=2.0, stall_timeout=10.0)
                await nursery.start(pool.run)
                await wait_ready(pool)
                counter = CounterCRDT(pool, "ctr")
                await counter.incr(5)
                await b.acommand("DEL", "ctr")  # b falls behind
                assert await counter.get() == 5  # starts a read repair of b
                proxy.blackhole()  # the repair waits for b
                assert pool._background  # the repair is under way
                with trio.CancelScope() as scope:
                    scope.cancel()  # the caller was cancelled: aclose() must close all the same
                    await pool.aclose()
                closed_at = trio.current_time()
                assert "closed" in repr(pool)
            assert trio.current_time() - closed_at < FAST
        with pytest.raises(PoolClosed):
            await pool.ping()
        assert await a.aclient_count() == 0


async def test_closing_during_the_digest_script_load_logs_no_error(
    redis_factory: RedisFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Reads seeing NOSCRIPT start one SCRIPT LOAD; closing while it waits is quiet."""
    a, b = redis_factory.many(2)
    async with proxied(b) as proxy:
        with caplog.at_level(logging.DEBUG, logger="trio_redisha"):
            async with ready_pool(a.url, proxy.url, timeout=2.0, close_timeout=0.3) as pool:
                hm = HashMap(pool, "hm", timeout=1.5)
                await hm.set({"x": 1})
                loads = await command_calls(a, "script|load")
                proxy.set_latency(0.3)  # b is slow: the load is under way for a while
                async with trio.open_nursery() as readers:
                    for _ in range(5):
                        readers.start_soon(hm.get)  # each meets NOSCRIPT on b

                    async def load_started() -> bool:
                        return await command_calls(a, "script|load") > loads

                    await wait_until(load_started, what="a load started")
                    proxy.blackhole()  # the load (and the reads) now wait for b
                # The reads gave up on b at their deadline; the load, on the pool's
                # longer one, is still waiting when the pool closes.
                assert await command_calls(a, "script|load") == loads + 1  # one, not five
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]


async def _incr_until_closed(
    pool: Pool, n: int, progress: list[int], outcome: Counter[str]
) -> None:
    """Run INCR until the pool closes; record how the end was reported."""
    while True:
        try:
            replies = await pool.execute("INCR", f"c:{n}")
        except PoolClosed as exc:
            outcome["in flight" if "during" in str(exc) else "after close"] += 1
            return
        if any(isinstance(r, PoolClosed) for r in replies):
            outcome["closed entries instead of PoolClosed"] += 1
        elif not all(isinstance(r, int) for r in replies):
            outcome[f"bad replies {replies!r}"] += 1
        progress[0] += 1


async def test_open_close_100_times_under_load_leaks_nothing(
    redis_servers: list[RedisServer],
) -> None:
    addresses = urls(redis_servers)
    fds = fd_count()
    tasks = tasks_living()
    outcome: Counter[str] = Counter()
    for _ in range(100):
        progress = [0]
        with trio.fail_after(10):
            # Leaving the block closes the pool first, while the workers' calls are
            # in flight: each gets PoolClosed and returns, so the nursery's exit
            # does not hang.
            async with trio.open_nursery() as workers, ready_pool(*addresses) as pool:
                for n in range(5):
                    workers.start_soon(_incr_until_closed, pool, n, progress, outcome)
                await wait_until(
                    holds(lambda p=progress: p[0] >= 10),  # type: ignore[misc]
                    what="workload running",
                )
    assert set(outcome) <= {"in flight", "after close"}, outcome
    assert outcome["in flight"] > 0
    assert sum(outcome.values()) == 500
    assert tasks_living() == tasks
    assert fd_count() == fds
    await wait_no_clients(redis_servers)


async def test_cancelling_the_nursery_running_the_pool_fails_calls_with_pool_closed(
    redis_servers: list[RedisServer],
) -> None:
    addresses = urls(redis_servers)
    fds = fd_count()
    tasks = tasks_living()
    outcome: Counter[str] = Counter()
    for _ in range(20):
        progress = [0]
        with trio.fail_after(10):
            async with trio.open_nursery() as workers:
                pool = Pool(*addresses)
                async with trio.open_nursery() as runner:
                    await runner.start(pool.run)
                    await wait_ready(pool)
                    for n in range(5):
                        workers.start_soon(_incr_until_closed, pool, n, progress, outcome)
                    await wait_until(
                        holds(lambda p=progress: p[0] >= 10),  # type: ignore[misc]
                        what="workload running",
                    )
                    runner.cancel_scope.cancel()  # no aclose(): the second tier's other exit
    assert set(outcome) <= {"in flight", "after close"}, outcome
    assert outcome["in flight"] > 0
    assert sum(outcome.values()) == 100
    assert tasks_living() == tasks
    assert fd_count() == fds
    await wait_no_clients(redis_servers)


async def test_pool_closed_while_waiting_for_first_connect(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    async with proxied(c) as proxy:
        proxy.blackhole()
        async with trio.open_nursery() as nursery:
            result: list[BaseException] = []

            async def call(pool: Pool) -> None:
                try:
                    await pool.ping(timeout=10.0)
                except PoolClosed as exc:
                    result.append(exc)

            async with open_pool(a.url, b.url, proxy.url, stall_timeout=20.0) as pool:
                nursery.start_soon(call, pool)
                await trio.testing.wait_all_tasks_blocked()
            closed_at = trio.current_time()
        # The call got PoolClosed as soon as the pool closed, not at its deadline.
        assert trio.current_time() - closed_at < FAST
        assert len(result) == 1


async def test_call_waiting_on_hung_server_gets_pool_closed_at_close(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    async with proxied(c) as proxy, trio.open_nursery() as nursery:
        errors: list[BaseException] = []

        async def call(pool: Pool) -> None:
            try:
                await pool.ping(timeout=10.0)
            except PoolClosed as exc:
                errors.append(exc)

        async with ready_pool(a.url, b.url, proxy.url, stall_timeout=20.0) as pool:
            assert await pool.ping() == PONG3
            proxy.blackhole()
            nursery.start_soon(call, pool)
            await trio.testing.wait_all_tasks_blocked()
            closing = trio.current_time()
        assert trio.current_time() - closing < FAST
        await wait_until(holds(lambda: len(errors) == 1), what="PoolClosed", deadline=FAST)


# --------------------------------------------------------------------------- flapping servers


async def _close_after_handshake(conn: HostileConnection) -> None:
    """Answer the handshake like a real server, then close (a proxy dropping clients)."""
    while True:
        command = await conn.read_command()
        reply = handshake_reply(command, conn.id)
        assert reply is not None, command
        await conn.send(reply)
        if command[0].upper() == b"PING":  # the handshake's last command
            conn.close()
            return


async def test_a_server_closing_after_the_handshake_is_reconnected_with_backoff(
    redis_factory: RedisFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_redisha")
    a = redis_factory()
    async with (
        open_hostile_server(_close_after_handshake) as flappy,
        open_pool(a.url, flappy.url) as pool,
    ):
        label = pool.servers[1]
        await wait_until(holds(lambda: flappy.accepted_total >= 1), what="a first connect")
        # Over a second the default backoff (0.05 s doubling to 2 s) allows a handful of
        # attempts; with no backoff they were hundreds. Polled under a deadline, so a
        # storm fails the test as soon as it shows.
        with trio.move_on_after(1.0):
            await wait_until(holds(lambda: flappy.accepted_total > 20), deadline=2.0)
        assert flappy.accepted_total <= 20, flappy.accepted_total
        assert pool.status()[0].state is ServerState.UP
    # One "is down" line for the whole episode, not a down/up pair per connection.
    lines = _records_about(caplog, label, logging.WARNING)
    assert len(lines) == 1, lines
    assert "is down" in lines[0]


@asynccontextmanager
async def _flapping_memory_pool(
    **options: Any,
) -> AsyncIterator[tuple[Pool, MemoryServer, list[bool]]]:
    """A pool over two in-memory servers; the second closes each connection after its
    handshake while ``flapping[0]`` is true. Its connector refuses after 200 attempts,
    so that a reconnect loop with no backoff cannot spin forever on virtual time."""
    async with trio.open_nursery() as nursery:
        servers = {label: MemoryServer(nursery, label) for label in MEMORY_LABELS}
        flappy = servers[MEMORY_LABELS[1]]
        flapping = [True]

        async def connect(spec: ServerSpec) -> Connection:
            server = servers[spec.label]
            if len(server.attempts) >= 200:
                raise ServerUnavailable("reconnect storm: the test stops it here")
            conn = await server.connect(spec)
            if server is flappy and flapping[0]:
                flappy.drop_connections()  # the handshake went through; now close
            return conn

        async with open_pool(*MEMORY_LABELS, connector=connect, **options) as pool:
            pool._upkeep.random.seed(7)  # the jitter, replayable
            yield pool, flappy, flapping
        nursery.cancel_scope.cancel()


async def test_flapping_connections_back_off_like_failed_attempts(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_redisha")
    base, cap = 0.05, 2.0
    async with _flapping_memory_pool(backoff_base=base, backoff_cap=cap) as (pool, flappy, flap):
        label = pool.servers[1]
        await trio.sleep(20.0)
        attempts = list(flappy.attempts)
        # Each reconnect after a connection that closed at once waits like a failed
        # attempt: at most min(cap, base * 2**k), growing; about cap / 2 once capped.
        assert len(attempts) < 50, len(attempts)
        gaps = [t1 - t0 for t0, t1 in itertools.pairwise(attempts)]
        for k, gap in enumerate(gaps):
            assert 0 <= gap <= min(cap, base * 2**k) + 1e-9, (k, gaps)
        assert statistics.mean(gaps[6:]) > cap / 4, gaps
        down = _records_about(caplog, label, logging.WARNING)
        assert len(down) == 1 and "is down" in down[0], down
        # It stops flapping: the next connection stays, and "is back up" is logged once
        # it has lasted (not for every connection that closed at once).
        flap[0] = False
        await wait_until(lambda: pool.status()[1].state is ServerState.UP, deadline=cap + 1)
        await trio.sleep(DEFAULT_SETTLE_TIME)
        assert await pool.ping() == ["PONG", "PONG"]
        lines = _records_about(caplog, label, logging.WARNING)
        assert len(lines) == 2 and "is back up" in lines[1], lines
        # A connection that lasted drops: the first reconnect is immediate, as before.
        before = len(flappy.attempts)
        dropped_at = trio.current_time()
        flappy.drop_connections()
        await wait_until(lambda: len(flappy.attempts) > before)
        assert flappy.attempts[before] == dropped_at
        await wait_until(lambda: pool.status()[1].state is ServerState.UP)
        lines = _records_about(caplog, label, logging.WARNING)
        assert len(lines) == 4 and "is down" in lines[2] and "is back up" in lines[3], lines


async def test_a_server_closing_idle_connections_is_reconnected_at_once(
    redis_factory: RedisFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # redis-server --timeout 1 closes a client idle for more than a second: a
    # connection that lasted, not a flap. Reconnects stay immediate (so the server
    # stays usable), at one down/up pair per idle period, not a storm.
    caplog.set_level(logging.INFO, logger="trio_redisha")
    a, b = redis_factory(), redis_factory(extra_args=["--timeout", "1"])
    async with ready_pool(a.url, b.url) as pool:
        label = pool.servers[1]
        start = trio.current_time()

        def downs() -> list[str]:
            return [
                line for line in _records_about(caplog, label, logging.WARNING) if "down" in line
            ]

        for closes in (1, 2):
            await wait_until(holds(lambda n=closes: len(downs()) >= n), what="idle close")  # type: ignore[misc]
            took = await wait_until(lambda: answers(pool, 1), what="reconnected")
            assert took < FAST
        elapsed = trio.current_time() - start
    lines = _records_about(caplog, label, logging.WARNING)
    assert len(lines) <= 2 * (elapsed + 1), (elapsed, lines)
    assert len(downs()) == len([line for line in lines if "back up" in line]), lines
