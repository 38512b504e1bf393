"""Digest reads on real servers: the same values as full reads, at a fraction of the bytes.

A CRDT read sends ``HGETALL`` to one server and a read-only digest script to
the others; only servers whose digest differs are read in full. These tests
check the values against what was written (a model), across partitions
through the fault proxy, servers restarted empty, keys expired on some
servers, and hung servers, and count on the servers themselves what was read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

import trio_redisha
from tests.harness.helpers import (
    FAST,
    command_calls,
    eventually,
    raw,
    raw_hash,
    urls,
    wait_until,
)
from tests.test_crdt_faults import Cluster, alone, assert_each_alone, cluster
from trio_redisha import ConfigurationError, Counter, HashMap, Pool, QuorumError, Set
from trio_redisha.crdt import _read, context_for
from trio_redisha.crdt._digest import tree_key
from trio_redisha.crdt._read import DIGEST_READ
from trio_redisha.crdt._storage import DIGEST_FIELD
from trio_redisha.placement import key_partition
from trio_redisha.testing import RedisServer


@asynccontextmanager
async def pool_on(servers: Sequence[RedisServer], **kwargs: object) -> AsyncIterator[Pool]:
    options = {**FAST, **kwargs}
    async with trio_redisha.open_pool(*urls(servers), **options) as pool:
        with trio.fail_after(5):
            while pool.available < len(servers):  # noqa: ASYNC110 - no "connected" event
                await trio.sleep(0.01)
        yield pool


async def full_reads(servers: Sequence[RedisServer]) -> list[int]:
    return [await command_calls(s, "hgetall") for s in servers]


async def test_agreeing_servers_send_one_full_copy(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers) as pool:
        await HashMap(pool, "m").set({"a": 1, "b": "two"})
        await Set(pool, "s").add("x", "y")
        await Counter(pool, "c").incr(5)
        # The first read meets NOSCRIPT (a fresh server) and loads the digest
        # script in the background, reading in full meanwhile.
        await Counter(pool, "warm-up").get()
        sha = DIGEST_READ.sha
        await wait_until(
            lambda: all(
                s.command("SCRIPT", "EXISTS", sha) == b"*1\r\n:1\r\n" for s in redis_servers
            ),
            what="the digest script to be loaded everywhere",
        )
        before = await full_reads(redis_servers)
        digests = [await command_calls(s, "evalsha_ro", "eval_ro") for s in redis_servers]
        assert await HashMap(pool, "m").get() == {"a": 1, "b": "two"}
        assert await Set(pool, "s").get() == {"x", "y"}
        assert await Counter(pool, "c").get() == 5
        after = await full_reads(redis_servers)
        digests_after = [await command_calls(s, "evalsha_ro", "eval_ro") for s in redis_servers]
    # Three reads: one full copy each, from one server; digests from the other two.
    assert sum(after) - sum(before) == 3
    assert sum(digests_after) - sum(digests) == 6


async def test_partition_with_writers_on_both_sides(redis_servers: list[RedisServer]) -> None:
    async with cluster(redis_servers) as c1, cluster(redis_servers) as c2:
        await HashMap(c1.pool, "m").set({"base": 0})
        await c1.cut(0)
        await c2.cut(2)
        await Counter(c1.pool, "c").incr(1)
        await Counter(c2.pool, "c").incr(10)
        await HashMap(c1.pool, "m").set({"a": 1})
        await HashMap(c2.pool, "m").set({"b": 2})
        await Set(c1.pool, "s").add("x")
        await Set(c2.pool, "s").add("y")
        # Server 2 got both sides' writes, servers 1 and 3 one side each: the
        # digests differ, and each side merges what it reaches.
        assert await HashMap(c1.pool, "m").get() == {"base": 0, "a": 1, "b": 2}
        assert await Counter(c2.pool, "c").get() == 11
        await c1.heal(0)
        await c2.heal(2)
        # Healed: the digests differ, the differing servers are read in full and merged.
        assert await Counter(c1.pool, "c").get() == 11
        assert await HashMap(c1.pool, "m").get() == {"base": 0, "a": 1, "b": 2}
        assert await Set(c1.pool, "s").get() == {"x", "y"}

    async def converged() -> bool:
        for s in redis_servers:
            async with pool_on([s]) as alone:
                if await HashMap(alone, "m").get() != {"base": 0, "a": 1, "b": 2}:
                    return False
                if await Counter(alone, "c").get() != 11 or await Set(alone, "s").get() != {
                    "x",
                    "y",
                }:
                    return False
        return True

    await eventually(converged, "read repair to bring every server up to date")


async def test_a_server_restarted_empty(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers) as pool:
        await HashMap(pool, "m").set({"a": 1})
        await Counter(pool, "c").incr(3)
    for s in redis_servers:  # whichever one the reads would pick first
        await s.arestart_empty()
        async with pool_on(redis_servers) as pool:
            assert await HashMap(pool, "m").get() == {"a": 1}
            assert await Counter(pool, "c").get() == 3
        await wait_until(
            lambda s=s: s.command("EXISTS", "m", "c") == b":2\r\n",
            what="read repair to refill the emptied server",
        )


async def test_expired_on_some_servers_or_on_all(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers) as pool:
        await HashMap(pool, "m", ttl=600).set({"a": 1})
        await HashMap(pool, "gone", ttl=0.05).set({"a": 1})
        for s in redis_servers[:2]:
            await raw(s, "PEXPIRE", "m", 1)
        await wait_until(
            lambda: all(s.command("EXISTS", "m") == b":0\r\n" for s in redis_servers[:2]),
            what="m to expire on two servers",
        )
        assert await HashMap(pool, "m").get() == {"a": 1}  # the third still holds it
        await wait_until(
            lambda: all(s.command("EXISTS", "gone") == b":0\r\n" for s in redis_servers),
            what="gone to expire everywhere",
        )
        assert await HashMap(pool, "gone").get() == {}  # absent everywhere: empty, no error


async def test_a_hung_server_costs_at_most_the_deadline(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers, timeout=1.0) as pool:
        await HashMap(pool, "m").set({"a": 1})
        await HashMap(pool, "m").get()  # latencies measured
        for frozen in redis_servers:
            frozen.freeze()
            try:
                start = trio.current_time()
                assert await HashMap(pool, "m").get() == {"a": 1}
                assert trio.current_time() - start < 1.0 + 0.5  # never past the deadline
            finally:
                frozen.thaw()
        for s in redis_servers:
            s.freeze()
        try:
            with pytest.raises(QuorumError):  # never an empty value in place of an unknown one
                await HashMap(pool, "m").get()
        finally:
            for s in redis_servers:
                s.thaw()


async def test_a_hung_server_s_circuit_is_open_when_the_read_returns(
    redis_servers: list[RedisServer],
) -> None:
    # The read returned at its deadline without the frozen server, but the pool
    # judged the server only later (its late-reply watcher): the write made
    # next was sent to it and waited a whole deadline more (1.5 deadlines for
    # a session's load and save).
    async with warm_cluster(redis_servers) as c:
        pool = c.pool
        # 20 ms each way: never the fastest, so it is asked for a digest only. (A
        # full copy's server that hangs ends the first round at half the
        # deadline; it is judged at the deadline, as a hedged read's are.)
        c.proxies[2].set_latency(0.02)
        await HashMap(pool, "m").set({"a": 1})
        assert await HashMap(pool, "m").get() == {"a": 1}
        redis_servers[2].freeze()
        try:
            start = trio.current_time()
            assert await HashMap(pool, "m").get() == {"a": 1}
            assert pool.available == 2  # judged before the read returned
            await HashMap(pool, "m").set({"b": 2})
            took = trio.current_time() - start
            assert took < 0.5 + 0.2  # one deadline for both, not one and a half
        finally:
            redis_servers[2].thaw()


async def test_a_digest_that_differs_still_gets_its_full_read_beside_a_hung_server(
    redis_servers: list[RedisServer],
) -> None:
    # The first round waits past half the deadline only while the replies in
    # agree: one that differs needs the rest of it for its full read.
    async with warm_cluster(redis_servers) as c:
        pool = c.pool
        c.proxies[2].set_latency(0.02)  # never the fastest: asked for a digest
        await HashMap(pool, "m").set({"a": 1})
        async with alone(redis_servers[1]) as other:
            await HashMap(other, "m").set({"b": 2})
        redis_servers[2].freeze()
        try:
            got = await HashMap(pool, "m", read_quorum=2).get()
        finally:
            redis_servers[2].thaw()
        assert got == {"a": 1, "b": 2}


@pytest.mark.parametrize("differs", [False, True], ids=["same-state", "other-state"])
async def test_a_server_slower_than_half_the_deadline_counts(
    redis_servers: list[RedisServer], differs: bool
) -> None:
    # The first round waited half the deadline: a server answering in 0.4 s of
    # 0.6 was left out, though a plain GET waited for it. A read_quorum=3 read
    # failed, and a field only that server held was missing.
    async with warm_cluster(redis_servers) as c:
        pool = c.pool
        await HashMap(pool, "m").set({"a": 1})
        if differs:
            async with alone(redis_servers[2]) as other:
                await HashMap(other, "m").set({"b": 2})
        c.proxies[2].set_latency(0.2)  # each way: 0.4 s a reply
        replies = await pool.get("plain", timeout=0.6)
        assert replies.ok_count == 3
        expected = {"a": 1, "b": 2} if differs else {"a": 1}
        start = trio.current_time()
        assert await HashMap(pool, "m", read_quorum=3, timeout=0.6).get() == expected
        assert trio.current_time() - start < 0.6 + 0.2


async def load_digest_script(pool: Pool, servers: Sequence[RedisServer]) -> None:
    """Have a read load the digest script, and wait until every server has it (see above)."""
    await Counter(pool, "warm-up").get()
    await wait_until(
        lambda: all(
            s.command("SCRIPT", "EXISTS", DIGEST_READ.sha) == b"*1\r\n:1\r\n" for s in servers
        ),
        what="the digest script to be loaded everywhere",
    )


@asynccontextmanager
async def warm_cluster(servers: list[RedisServer]) -> AsyncIterator[Cluster]:
    """:func:`cluster`, every server connected and holding the digest script."""
    async with cluster(servers) as c:
        await wait_until(lambda: c.pool.available == len(servers), what="every server connected")
        await load_digest_script(c.pool, servers)
        yield c


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("script", ["loaded", "flushed"])
async def test_a_read_gives_old_data_its_digest(
    redis_servers: list[RedisServer], script: str, protocol: int
) -> None:
    # "flushed": the servers answer the digest script NOSCRIPT, and are read in
    # full in the second round; they were not given their digest then (only
    # the server read in full at once was), so every read stayed a full read.
    # Over RESP3 (HGETALL answers a map) neither was found.
    async with pool_on(redis_servers, protocol=protocol) as pool:
        await HashMap(pool, "old-map").set({"a": 1})
        await Set(pool, "old-set").add("x", "y")
        await load_digest_script(pool, redis_servers)
        if script == "flushed":
            for s in redis_servers:
                await raw(s, "SCRIPT", "FLUSH")
        keys = ("old-map", "old-set")
        # Data from before digests: the same hashes, without digest or tree entry.
        for s in redis_servers:
            for k in keys:
                await raw(s, "HDEL", k, DIGEST_FIELD)
                await raw(s, "HDEL", tree_key(key_partition(k)), b"k" + k.encode())
        before = await full_reads(redis_servers)
        assert await HashMap(pool, "old-map").get() == {"a": 1}
        assert await Set(pool, "old-set").get() == {"x", "y"}
        # Without digests nothing can be compared: every server was read in full
        # (6), and the rehash script's own HGETALLs may already count too...
        assert sum(await full_reads(redis_servers)) - sum(before) >= 6

        async def digested() -> bool:
            for s in redis_servers:
                for k in keys:
                    if not await raw(s, "HEXISTS", k, DIGEST_FIELD):
                        return False
                    if not await raw(s, "HEXISTS", tree_key(key_partition(k)), b"k" + k.encode()):
                        return False
            return True

        # ... and the reads gave each key its digest and tree entry, in the background.
        await eventually(digested, "the reads to rehash the old keys")
        assert pool.stats.digests_rehashed == 2
        before = await full_reads(redis_servers)
        assert await HashMap(pool, "old-map").get() == {"a": 1}
        assert await Set(pool, "old-set").get() == {"x", "y"}
        assert sum(await full_reads(redis_servers)) - sum(before) == 2  # digest reads now
    # The digests are the stored states' (raw_hash checks each against its hash).
    for k in keys:
        states = [await raw_hash(s, k) for s in redis_servers]
        assert states[0] == states[1] == states[2]


async def test_rehash_on_read_takes_repair_tokens(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers, repair_rate=0.001) as pool:
        await Counter(pool, "c").incr(1)
        for s in redis_servers:
            await raw(s, "HDEL", "c", DIGEST_FIELD)
        ctx = context_for(pool)
        ctx._tokens = 0  # the bucket is empty: the reads may not rehash
        for _ in range(3):
            assert await Counter(pool, "c").get() == 1
        assert not ctx.rehashing
        assert pool.stats.digests_rehashed == 0
        assert [await raw(s, "HEXISTS", "c", DIGEST_FIELD) for s in redis_servers] == [0, 0, 0]


async def test_reads_do_not_rehash_a_foreign_value(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers) as pool:
        await load_digest_script(pool, redis_servers)
        # A hash with a later version's marker and no digest, and an old set,
        # on every server: whichever server is read in full, a read that finds
        # a value not of its type must not give it a digest.
        for s in redis_servers:
            await raw(s, "HSET", "later", "__redisha__", "map:9", "f:a", "1:x:+1")
            await raw(s, "HSET", "old-set", "__redisha__", "set:1", "m:a", "1:x:+")
        keys = ("later", "old-set")
        before = [await raw(s, "DUMP", k) for s in redis_servers for k in keys]
        for cls in (HashMap, Set, Counter):
            with pytest.raises(trio_redisha.ForeignValueError):
                await cls(pool, "later").get()
        for cls in (HashMap, Counter):
            with pytest.raises(trio_redisha.ForeignValueError):
                await cls(pool, "old-set").get()
        assert not context_for(pool).rehashing  # nothing was started ...
    assert pool.stats.digests_rehashed == 0
    after = [await raw(s, "DUMP", k) for s in redis_servers for k in keys]
    assert after == before  # ... or written


# --- hedged reads ----------------------------------------------------------------


def _full_copy_server(pool: Pool) -> int:
    """The server a digest read takes its full copy from: the fastest of late."""
    servers = pool._servers
    return min(range(len(servers)), key=lambda i: servers[i].latency)


@pytest.mark.parametrize("frozen", ["full copy", "digest"])
async def test_a_hedged_read_does_not_wait_for_a_hung_server(
    redis_servers: list[RedisServer], frozen: str
) -> None:
    # timeout=2: a read that waited for the hung server would take half of it
    # (the first round) at least; a hedged one returns with the other two.
    async with pool_on(redis_servers, timeout=2.0) as pool:
        await load_digest_script(pool, redis_servers)
        m = HashMap(pool, "m", read_quorum=2, hedged=True)
        assert m.hedged and not HashMap(pool, "m").hedged
        await m.set({"a": 1, "b": [2]})
        for _ in range(3):
            assert await HashMap(pool, "m").get() == {"a": 1, "b": [2]}  # latencies measured
        full = _full_copy_server(pool)
        hung = full if frozen == "full copy" else (full + 1) % 3
        redis_servers[hung].freeze()
        try:
            start = trio.current_time()
            assert await m.get() == {"a": 1, "b": [2]}
            assert trio.current_time() - start < 0.9  # not the first round's 1 s
            # Not awaited is not merged: a read needing all three still fails.
            with pytest.raises(QuorumError):
                await HashMap(pool, "m", read_quorum=3, hedged=True).get()
        finally:
            redis_servers[hung].thaw()


async def test_a_hedged_quorum_read_sees_every_acknowledged_write(
    redis_servers: list[RedisServer],
) -> None:
    # write_quorum + read_quorum > 3: any two servers that answer hold every
    # acknowledged write, here the one server 0 missed while cut off.
    async with cluster(redis_servers) as c:
        await eventually(lambda: c.pool.available == 3, "the pool to connect")
        s = Set(c.pool, "s", write_quorum=2, read_quorum=2, hedged=True)
        await s.add("before")
        await c.cut(0)
        await s.add("while-cut")  # acknowledged by servers 1 and 2
        await c.heal(0)
        redis_servers[1].freeze()
        try:
            assert await s.get() == {"before", "while-cut"}  # servers 0 and 2
        finally:
            redis_servers[1].thaw()


async def hedged_set(
    pool: Pool, servers: Sequence[RedisServer], members: set[str], read_quorum: int = 1
) -> Set:
    """The digest script loaded; a hedged set ``big`` holding ``members``."""
    await load_digest_script(pool, servers)
    big = Set(pool, "big", read_quorum=read_quorum, hedged=True)
    await big.add(*members)
    return big


async def test_a_hedged_read_of_a_cached_key_needs_only_digests(
    redis_servers: list[RedisServer],
) -> None:
    members = {f"member-{i:04d}" for i in range(300)}
    async with pool_on(redis_servers, timeout=2.0) as pool:
        big = await hedged_set(pool, redis_servers, members, read_quorum=2)
        assert await big.get() == members  # kept by the read cache
        before = await full_reads(redis_servers)
        hung = redis_servers[_full_copy_server(pool)]
        hung.freeze()
        try:
            start = trio.current_time()
            assert await big.get() == members
            assert trio.current_time() - start < 0.9
            assert pool.stats.reads_cached == 1
        finally:
            hung.thaw()
        assert await full_reads(redis_servers) == before  # digests only, everywhere


@pytest.mark.parametrize("bad", [1, 0, None, "yes"])
async def test_hedged_must_be_a_bool(redis_servers: list[RedisServer], bad: object) -> None:
    async with pool_on(redis_servers) as pool:
        for cls in (Counter, HashMap, Set):
            with pytest.raises(ConfigurationError, match="hedged"):
                cls(pool, "k", hedged=bad)  # type: ignore[arg-type]


async def test_a_hedged_read_waits_for_its_full_copy_on_a_healthy_fleet(
    redis_servers: list[RedisServer],
) -> None:
    # read_quorum=1: the first reply would do, but a digest alone is no value;
    # the read waits for the full copy (a few of its server's reply times), so
    # healthy servers cost one full read per read, as without hedging.
    members = {f"member-{i:04d}" for i in range(2000)}
    async with pool_on(redis_servers, read_cache=0) as pool:
        big = await hedged_set(pool, redis_servers, members)
        for _ in range(3):
            assert await big.get() == members
        before = sum(await full_reads(redis_servers))
        for _ in range(40):
            assert await big.get() == members
        # A reply later than the wait (a stall of the machine) may cost a second one.
        assert sum(await full_reads(redis_servers)) - before <= 46


async def hedged_map(pool: Pool, servers: Sequence[RedisServer]) -> HashMap:
    """The digest script loaded; a hedged map ``m`` (read_quorum=2) holding
    ``{"a": 1}``, read a few times (the servers' reply times measured)."""
    await load_digest_script(pool, servers)
    m = HashMap(pool, "m", read_quorum=2, hedged=True)
    await m.set({"a": 1})
    for _ in range(3):
        assert await m.get() == {"a": 1}
    return m


async def test_hedged_reads_do_not_wait_for_a_server_already_late(
    redis_servers: list[RedisServer],
) -> None:
    # Once a server owes a reply for longer than the hedge waits, the next
    # hedged reads do not wait for it at all (nor ask it for the full copy).
    async with pool_on(redis_servers, timeout=2.0) as pool:
        m = await hedged_map(pool, redis_servers)
        hung = redis_servers[_full_copy_server(pool)]
        before = await command_calls(hung, "hgetall"), await command_calls(hung, "evalsha_ro")
        after = _read._hedge_after(pool._servers, range(3), 2)
        reads = 40
        hung.freeze()
        try:
            assert await m.get() == {"a": 1}  # waits for the hedge, once
            start = trio.current_time()
            for _ in range(reads):
                assert await m.get() == {"a": 1}
            took = trio.current_time() - start
        finally:
            hung.thaw()
        # Each read that waited for the hedge would take `after` at least.
        assert took < reads * after * 0.75, (took, after)

        async def caught_up() -> bool:
            got = await command_calls(hung, "hgetall"), await command_calls(hung, "evalsha_ro")
            return sum(got) - sum(before) == reads + 1

        await eventually(caught_up, "the thawed server to answer every read")
        assert await command_calls(hung, "hgetall") - before[0] == 1  # the first read's


async def late_replies_taken(pool: Pool) -> None:
    """Wait until every late-reply watcher of the pool's hedged reads has ended."""

    def none_left() -> bool:
        nursery = pool._nursery
        return nursery is None or not any(
            t.name.startswith("redisha-late") for t in nursery.child_tasks
        )

    await wait_until(none_left, what="the late replies to be taken")


Call = Callable[[], Awaitable[object]]


async def written_and_read(c: Cluster, write: Call, read: Call, value: object) -> None:
    """Once the pool is connected and the digest script loaded, write, then read a
    few times (the servers' reply times measured, for the hedge)."""
    await eventually(lambda: c.pool.available == 3, "the pool to connect")
    await load_digest_script(c.pool, c.servers)
    await write()
    for _ in range(3):
        assert await read() == value


async def while_cut(c: Cluster, cut: Sequence[int], write: Call) -> None:
    """``write`` with the servers ``cut`` partitioned away (they miss it), then heal."""
    for i in cut:
        await c.cut(i)
    await write()
    for i in cut:
        await c.heal(i)
    await eventually(lambda: c.pool.available == 3, "the pool to reconnect")


@pytest.mark.parametrize("late_server", ["behind", "ahead"])
async def test_a_late_server_holding_another_state_is_read_again_and_repaired(
    redis_servers: list[RedisServer], late_server: str
) -> None:
    # A hedged read does not wait for a frozen server, so it neither merges
    # nor repairs it. Once thawed, its late reply shows another state: the key
    # is read again from every server in the background, and repaired, whether
    # the late server missed a write or holds one the others missed.
    async with cluster(redis_servers) as c:
        pool = c.pool
        m = HashMap(pool, "m", read_quorum=2, hedged=True)
        await written_and_read(c, lambda: m.set({"a": 1}), m.get, {"a": 1})
        cut = [2] if late_server == "behind" else [0, 1]
        await while_cut(c, cut, lambda: m.set({"b": 2}))  # acknowledged by the others only
        assert pool.stats.hedged_rechecks == 0
        redis_servers[2].freeze()
        try:
            got = await m.get()
        finally:
            redis_servers[2].thaw()
        # read_quorum=2 with write_quorum=1: servers 0 and 1 may lack a write.
        assert got == ({"a": 1, "b": 2} if late_server == "behind" else {"a": 1})
        await assert_each_alone(redis_servers, lambda p: HashMap(p, "m").get(), {"a": 1, "b": 2})
        assert pool.stats.hedged_rechecks == 1
        assert await m.get() == {"a": 1, "b": 2}


async def test_a_late_server_restarted_empty_is_refilled_by_hedged_reads(
    redis_servers: list[RedisServer],
) -> None:
    # Its late reply was NOSCRIPT (the restart flushed the digest script), which
    # was not compared; and the servers awaited have the script, so nothing
    # loaded it there: hedged reads never refilled it.
    async with warm_cluster(redis_servers) as c:
        pool = c.pool
        m = HashMap(pool, "m", hedged=True)
        await m.set({"a": 1})
        await redis_servers[2].arestart_empty()
        c.proxies[2].set_latency(0.02)  # a little slower than the others: not awaited
        await wait_until(lambda: pool.available == 3, what="server 2 reconnected")

        async def refilled() -> bool:
            assert await m.get() == {"a": 1}
            async with alone(redis_servers[2]) as p:
                return await HashMap(p, "m").get() == {"a": 1}

        await wait_until(refilled, what="server 2 refilled by hedged reads")
        assert pool.stats.hedged_rechecks >= 1


async def test_a_late_server_that_agrees_costs_no_second_read(
    redis_servers: list[RedisServer],
) -> None:
    # Each server in turn is late (the full copy's or a digest's), holding the
    # same state as the others, or no key like them: nothing is read again.
    async with pool_on(redis_servers, timeout=2.0) as pool:
        m = await hedged_map(pool, redis_servers)
        absent = HashMap(pool, "absent", read_quorum=2, hedged=True)
        before = sum(await full_reads(redis_servers))
        for server in redis_servers:
            for obj, value in ((m, {"a": 1}), (absent, {})):
                server.freeze()
                try:
                    assert await obj.get() == value
                finally:
                    server.thaw()
                await late_replies_taken(pool)
        assert pool.stats.hedged_rechecks == 0
        # At most one full read per read (a frozen full copy: one more each).
        assert sum(await full_reads(redis_servers)) - before <= 12


async def test_a_late_server_is_read_again_when_the_servers_awaited_disagreed(
    redis_servers: list[RedisServer],
) -> None:
    # Server 0 holds a, b, c; server 1 a, b; server 2 (late) a, c. The hedged
    # read merges 0 and 1 and repairs 1; the late digest cannot be compared
    # with a merge no server held, so the key is read again, and 2 gets b.
    async with cluster(redis_servers) as c:
        pool = c.pool
        s = Set(pool, "s", read_quorum=2, hedged=True)
        await written_and_read(c, lambda: s.add("a"), s.get, {"a"})
        await while_cut(c, [2], lambda: s.add("b"))
        await while_cut(c, [1], lambda: s.add("c"))
        redis_servers[2].freeze()
        try:
            assert await s.get() == {"a", "b", "c"}
        finally:
            redis_servers[2].thaw()
        await assert_each_alone(redis_servers, lambda p: Set(p, "s").get(), {"a", "b", "c"})
        assert pool.stats.hedged_rechecks == 1
