"""CRDTs on real servers that really miss writes.

Each server is reached through a fault proxy. ``partition()`` resets the
connections and drops the bytes in flight, so a server cut off this way really
misses the operation (SIGSTOP would not do: the kernel buffers the bytes and
Redis applies them after SIGCONT). After healing, one read through the full
pool merges and repairs; then each server, read alone through a pool of its
own, shows the operation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

import trio_redisha
from tests.harness.fault_proxy import FaultProxy, open_fault_proxy
from tests.harness.helpers import FAST, eventually
from trio_redisha import Counter, HashMap, Pool, QuorumError, Set
from trio_redisha.testing import RedisServer, decode_reply


class Cluster:
    """A pool over three servers, each behind a fault proxy."""

    def __init__(self, pool: Pool, proxies: list[FaultProxy], servers: list[RedisServer]):
        self.pool = pool
        self.proxies = proxies
        self.servers = servers

    async def cut(self, *which: int) -> None:
        """Partition servers and wait until the pool has noticed."""
        for i in which:
            self.proxies[i].partition()
        await eventually(
            lambda: all(not self.pool.status()[i].available for i in which), "pool to notice"
        )

    async def heal(self, *which: int) -> None:
        """Heal servers and wait until the pool uses them again."""
        for i in which:
            self.proxies[i].heal()
        await eventually(
            lambda: all(self.pool.status()[i].available for i in which), "pool to reconnect"
        )


@asynccontextmanager
async def cluster(servers: list[RedisServer]) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(open_fault_proxy(s.host, s.port)) for s in servers
        ]
        pool = await stack.enter_async_context(
            trio_redisha.open_pool(*(p.url for p in proxies), **FAST)
        )
        yield Cluster(pool, proxies, servers)


@asynccontextmanager
async def alone(server: RedisServer) -> AsyncIterator[Pool]:
    """A pool on one server only (no proxy): what that server holds by itself."""
    async with trio_redisha.open_pool(server.url, **FAST) as pool:
        yield pool


async def values_alone(
    servers: list[RedisServer], read: Callable[[Pool], Awaitable[Any]]
) -> list[Any]:
    out = []
    for server in servers:
        async with alone(server) as pool:
            out.append(await read(pool))
    return out


async def assert_each_alone(
    servers: list[RedisServer], read: Callable[[Pool], Awaitable[Any]], expected: Any
) -> None:
    """Every server, read by itself, eventually shows ``expected`` (repair finished)."""
    for server in servers:
        async with alone(server) as pool:

            async def shows(pool: Pool = pool) -> bool:
                return bool(await read(pool) == expected)

            await eventually(shows, f"{server!r} to be repaired")


# --- counter -----------------------------------------------------------------------


async def test_counter_missed_increments_and_decrements(redis_servers: list[RedisServer]) -> None:
    def read(pool: Pool) -> Awaitable[int]:
        return Counter(pool, "c").get()

    async with cluster(redis_servers) as c:
        ctr = Counter(c.pool, "c")
        await c.cut(0)
        await ctr.incr(3)  # A misses +3
        await c.heal(0)
        await c.cut(1)
        await ctr.incr(2)  # B misses +2 and -1
        await ctr.decr(1)
        await c.heal(1)
        await c.cut(2)
        await ctr.decr(1)  # C misses -1
        await c.heal(2)
        before = await values_alone(redis_servers, read)
        # Every write carries both totals, so B got P=5 with the last decrement.
        assert before == [3, 3, 4]  # the gem's max-of-totals would read 4
        assert await Counter(c.pool, "c").get() == 3
        await assert_each_alone(redis_servers, read, 3)


async def test_counter_disjoint_increments_both_count(redis_servers: list[RedisServer]) -> None:
    def read(pool: Pool) -> Awaitable[int]:
        return Counter(pool, "c").get()

    async with cluster(redis_servers) as c:
        await c.cut(0)
        await Counter(c.pool, "c").incr()  # on B and C only
        async with alone(redis_servers[0]) as only_a:
            await Counter(only_a, "c").incr()  # on A only, another writer
        await c.heal(0)
        assert await values_alone(redis_servers, read) == [1, 1, 1]  # the gem reads 1
        assert await Counter(c.pool, "c").get() == 2
        await assert_each_alone(redis_servers, read, 2)


async def test_counter_never_reuses_a_total_after_an_empty_restart(
    redis_servers: list[RedisServer],
) -> None:
    def read(pool: Pool) -> Awaitable[int]:
        return Counter(pool, "c").get()

    async with cluster(redis_servers) as c:
        ctr = Counter(c.pool, "c")
        await ctr.incr(7)
        await c.cut(1, 2)
        await redis_servers[0].arestart_empty()
        await eventually(lambda: c.pool.status()[0].available, "A to come back")
        # Only the empty server answers: a read sees nothing ...
        assert await ctr.get() == 0
        # ... but the writer remembers its total and sends 8, not 1.
        await ctr.incr()
        await c.heal(1, 2)
        assert await ctr.get() == 8
        await assert_each_alone(redis_servers, read, 8)


async def test_unknown_outcome_increment_is_kept_not_doubled(
    redis_servers: list[RedisServer],
) -> None:
    def read(pool: Pool) -> Awaitable[int]:
        return Counter(pool, "c").get()

    async with cluster(redis_servers) as c:
        ctr = Counter(c.pool, "c", write_quorum=3, timeout=0.2)
        await ctr.incr(0)  # every server has the function loaded (else a late FCALL fails)
        c.proxies[2].blackhole()  # C gets the bytes only later
        with pytest.raises(QuorumError) as info:
            await ctr.incr()
        assert info.value.may_have_applied is True
        c.proxies[2].heal()
        # The held bytes arrive: C applies the increment late, and counts it once.
        await assert_each_alone(redis_servers, read, 1)
        await c.heal(2)
        await ctr.incr()
        assert await ctr.get() == 2
        await assert_each_alone(redis_servers, read, 2)


async def test_increment_that_reached_no_server_is_dropped(
    redis_servers: list[RedisServer],
) -> None:
    async with cluster(redis_servers) as c:
        ctr = Counter(c.pool, "c")
        await ctr.incr(10)
        await c.cut(0, 1, 2)
        with pytest.raises(QuorumError) as info:
            await ctr.incr(5)
        assert info.value.may_have_applied is False
        with pytest.raises(QuorumError):
            await ctr.get()  # no server answered: never 0
        await c.heal(0, 1, 2)
        await ctr.incr()
        assert await ctr.get() == 11


# --- set and map -------------------------------------------------------------------


async def test_set_remove_missed_is_repaired(redis_servers: list[RedisServer]) -> None:
    def read(pool: Pool) -> Awaitable[set[Any]]:
        return Set(pool, "s").get()

    async with cluster(redis_servers) as c:
        s = Set(c.pool, "s")
        await s.add("fnord", "bar")
        await c.cut(1)
        await s.rem("bar")
        with pytest.raises(QuorumError) as info:
            await Set(c.pool, "s", write_quorum=3).add("other")
        assert info.value.succeeded == 2
        await c.heal(1)
        assert await values_alone(redis_servers, read) == [
            {"fnord", "other"},
            {"fnord", "bar"},  # B missed the remove (and the add)
            {"fnord", "other"},
        ]
        assert await s.get() == {"fnord", "other"}
        await assert_each_alone(redis_servers, read, {"fnord", "other"})
        # A re-add later than the remove wins everywhere.
        await s.add("bar")
        assert await s.get() == {"fnord", "other", "bar"}


async def test_map_delete_and_update_missed_are_repaired(
    redis_servers: list[RedisServer],
) -> None:
    def read(pool: Pool) -> Awaitable[dict[str, Any]]:
        return HashMap(pool, "m").get()

    async with cluster(redis_servers) as c:
        m = HashMap(c.pool, "m")
        await m.set({"fnord": 1, "fubar": 2})
        await c.cut(1)
        await m.delete("fnord")
        await m.set({"fubar": 3})
        await c.heal(1)
        assert (await values_alone(redis_servers, read))[1] == {"fnord": 1, "fubar": 2}
        assert await m.get() == {"fubar": 3}
        await assert_each_alone(redis_servers, read, {"fubar": 3})


async def test_concurrent_writers_on_both_sides_of_a_partition(
    redis_servers: list[RedisServer],
) -> None:
    """Two writers, each cut off from a different server, converge on the later writes."""

    def read(pool: Pool) -> Awaitable[dict[str, Any]]:
        return HashMap(pool, "m").get()

    async with cluster(redis_servers) as c1, cluster(redis_servers) as c2:
        await c1.cut(0)
        await c2.cut(2)
        await HashMap(c1.pool, "m").set({"a": 1, "b": 1})
        await HashMap(c2.pool, "m").set({"b": 2})  # later: wins for b
        await HashMap(c1.pool, "m").delete("a")
        await c1.heal(0)
        await c2.heal(2)
        assert await HashMap(c1.pool, "m").get() == {"b": 2}
        await assert_each_alone(redis_servers, read, {"b": 2})


async def test_tombstone_is_not_purged_while_a_server_may_hold_the_value(
    redis_servers: list[RedisServer],
) -> None:
    def read(pool: Pool) -> Awaitable[dict[str, Any]]:
        return HashMap(pool, "m").get()

    async with cluster(redis_servers) as c:
        m = HashMap(c.pool, "m", tombstone_grace=0)  # purge as soon as it is safe
        await m.set({"a": 1, "b": 2})
        await c.cut(1)
        await m.delete("a")
        for _ in range(3):
            assert await m.get() == {"b": 2}  # B does not answer: keep the tombstone
        await c.pool.aclose()  # waits for any background repair
        for i in (0, 2):
            stored = decode_reply(await redis_servers[i].acommand("HGET", "m", "f:a"))
            assert isinstance(stored, bytes) and stored.endswith(b":-")
    async with cluster(redis_servers) as c:
        m = HashMap(c.pool, "m", tombstone_grace=0)
        assert await m.get() == {"b": 2}  # B gets the tombstone, then all purge

        async def purged() -> bool:
            replies = await c.pool.execute("HEXISTS", "m", "f:a")
            if replies != [0, 0, 0]:
                await m.get()
            return replies == [0, 0, 0]

        await eventually(purged, "the tombstone to be purged everywhere")
        await assert_each_alone(redis_servers, read, {"b": 2})
