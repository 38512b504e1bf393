"""Digest reads on real servers: the same values as full reads, at a fraction of the bytes.

A CRDT read sends ``HGETALL`` to one server and a read-only digest script to
the others; only servers whose digest differs are read in full. These tests
check the values against what was written (a model), across partitions
through the fault proxy, servers restarted empty, keys expired on some
servers, and hung servers, and count on the servers themselves what was read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
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
from tests.test_crdt_faults import cluster
from trio_redisha import Counter, HashMap, Pool, QuorumError, Set
from trio_redisha.crdt import context_for
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


async def load_digest_script(pool: Pool, servers: Sequence[RedisServer]) -> None:
    """Have a read load the digest script, and wait until every server has it (see above)."""
    await Counter(pool, "warm-up").get()
    await wait_until(
        lambda: all(
            s.command("SCRIPT", "EXISTS", DIGEST_READ.sha) == b"*1\r\n:1\r\n" for s in servers
        ),
        what="the digest script to be loaded everywhere",
    )


async def test_a_read_gives_old_data_its_digest(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers) as pool:
        await HashMap(pool, "old-map").set({"a": 1})
        await Set(pool, "old-set").add("x", "y")
        await load_digest_script(pool, redis_servers)
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
