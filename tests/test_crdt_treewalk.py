"""The digest-tree walk of ``repair_all``, on real servers.

Each test builds a fleet in a known state by writing through pools over some
of the servers (so a server really missed the writes), by restarting servers
empty, by expiry, or by writing old, digest-less hashes by hand, then checks
what the walk read and wrote, and that afterwards every server holds the same
bytes. Bytes on the wire are the servers' own counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import trio_redisha
from tests.harness.helpers import raw, raw_hash, urls, wait_until
from trio_redisha import Counter, HashMap, Pool, Set
from trio_redisha.crdt import RepairReport, repair_all
from trio_redisha.crdt._digest import TREE_PREFIX, tree_key
from trio_redisha.crdt._storage import DIGEST_FIELD
from trio_redisha.placement import PARTITIONS, key_partition
from trio_redisha.testing import RedisServer

N = 60


@asynccontextmanager
async def pool_on(servers: Sequence[RedisServer], **kwargs: Any) -> AsyncIterator[Pool]:
    async with trio_redisha.open_pool(*urls(servers), timeout=1.0, **kwargs) as pool:
        with trio.fail_after(5):
            while pool.available < len(servers):  # noqa: ASYNC110 - no "connected" event
                await trio.sleep(0.01)
        yield pool


async def write_all(servers: Sequence[RedisServer], n: int = N, ttl: float | None = None) -> None:
    """``n`` keys of each kind through a pool over ``servers``."""
    async with pool_on(servers) as pool:
        for i in range(n):
            await HashMap(pool, f"m:{i}", ttl=ttl).set({"a": i, "b": "x" * 20})
            await Set(pool, f"s:{i}", ttl=ttl).add(f"e{i}", "common")
            await Counter(pool, f"c:{i}", ttl=ttl).incr(i + 1)


def data_keys(n: int = N) -> list[str]:
    return [f"{kind}:{i}" for i in range(n) for kind in ("m", "s", "c")]


async def stored(server: RedisServer, key: str) -> dict[bytes, bytes]:
    flat = await raw(server, "HGETALL", key)
    return dict(zip(flat[0::2], flat[1::2], strict=True))


async def assert_identical(servers: Sequence[RedisServer], keys: Sequence[str]) -> None:
    """Every key is byte-identical on every server, its digest field included."""
    for k in keys:
        first = await stored(servers[0], k)
        assert first.get(DIGEST_FIELD), f"{k} is missing or has no digest on {servers[0].url}"
        await raw_hash(servers[0], k)  # checks the digest is the state's
        for s in servers[1:]:
            assert await stored(s, k) == first, f"{k} differs on {s.url}"


async def out_bytes(servers: Sequence[RedisServer]) -> list[int]:
    return [int((await s.ainfo("stats"))["total_net_output_bytes"]) for s in servers]


async def walk(servers: Sequence[RedisServer], **kwargs: object) -> RepairReport:
    async with pool_on(servers) as pool:
        return await repair_all(pool, rate=0, **kwargs)  # type: ignore[arg-type]


async def test_a_converged_fleet_reads_no_key_and_costs_a_sliver(
    redis_servers: list[RedisServer],
) -> None:
    await write_all(redis_servers)
    keys = data_keys()
    # What reading every key once costs: HGETALL of each from one server.
    before = await out_bytes(redis_servers[:1])
    for k in keys:
        await raw(redis_servers[0], "HGETALL", k)
    read_once = (await out_bytes(redis_servers[:1]))[0] - before[0]

    before = await out_bytes(redis_servers)
    report = await walk(redis_servers)
    after = await out_bytes(redis_servers)
    assert report.ok, report.messages
    assert (report.read, report.repaired, report.differing, report.rehashed) == (0, 0, 0, 0)
    assert report.segments == PARTITIONS
    assert report.scanned == len(keys)
    # Each server sent a few kilobytes (256 group digests, the scan cursors,
    # INFO's own reply), far less than one read of every key.
    sent = [a - b for a, b in zip(after, before, strict=True)]
    assert max(sent) < read_once / 4, (sent, read_once)
    full = await walk(redis_servers, full=True)
    assert (full.read, full.repaired, full.segments) == (len(keys), 0, 0)


async def test_missed_updates_are_the_only_keys_read(redis_servers: list[RedisServer]) -> None:
    await write_all(redis_servers)
    # Server 3 misses updates to a few keys: they are written with it absent.
    missed = [f"m:{i}" for i in range(0, N, 7)] + [f"c:{i}" for i in range(0, N, 11)]
    async with pool_on(redis_servers[:2]) as pool:
        for k in missed:
            if k.startswith("m:"):
                await HashMap(pool, k).set({"b": "changed"})
            else:
                await Counter(pool, k).incr(100)
    report = await walk(redis_servers)
    assert report.ok, report.messages
    assert report.read == report.repaired == len(missed)
    assert 0 < report.differing <= len(missed)
    await assert_identical(redis_servers, data_keys())
    async with pool_on(redis_servers[2:]) as pool:  # the server alone has it all now
        assert (await HashMap(pool, "m:0").get())["b"] == "changed"
        assert await Counter(pool, "c:0").get() == 101
    again = await walk(redis_servers)
    assert (again.read, again.repaired, again.differing) == (0, 0, 0)


async def test_a_server_restarted_empty_gets_every_key_back(
    redis_servers: list[RedisServer],
) -> None:
    await write_all(redis_servers)
    await redis_servers[1].arestart_empty()
    report = await walk(redis_servers)
    keys = data_keys()
    assert report.ok, report.messages
    assert report.read == report.repaired == len(keys)
    await assert_identical(redis_servers, keys)
    # Its digest tree is rebuilt with the keys: the next walk finds nothing.
    assert (await walk(redis_servers)).read == 0


async def test_expiry_on_all_servers_and_on_one(redis_servers: list[RedisServer]) -> None:
    async with pool_on(redis_servers) as pool:
        for i in range(10):
            await HashMap(pool, f"gone:{i}", ttl=0.05).set({"a": 1})
            await HashMap(pool, f"live:{i}", ttl=600).set({"a": 1})
    gone = [f"gone:{i}" for i in range(10)]
    await wait_until(
        lambda: all(s.command("EXISTS", *gone) == b":0\r\n" for s in redis_servers),
        what="the short-lived keys to expire everywhere",
    )
    # Expired early on one server only (its clock, say): the others still hold it.
    for i in range(3):
        await raw(redis_servers[0], "PEXPIRE", f"live:{i}", 1)
    await wait_until(
        lambda: redis_servers[0].command("EXISTS", "live:0", "live:1", "live:2") == b":0\r\n",
        what="three keys to expire on server 1",
    )
    report = await walk(redis_servers)
    assert report.ok, report.messages
    assert report.repaired == 3
    assert report.read == 3  # the expired keys' index entries are not read as keys
    for s in redis_servers:
        assert int(await raw(s, "EXISTS", *gone)) == 0  # nothing came back
        ttl = int(await raw(s, "PTTL", "live:0"))
        assert 0 < ttl <= 600_000  # restored with the longest expiry, not without one
    await assert_identical(redis_servers, [f"live:{i}" for i in range(10)])
    assert (await walk(redis_servers)).read == 0


async def test_old_digest_less_data_is_rehashed_then_compared(
    redis_servers: list[RedisServer],
) -> None:
    await write_all(redis_servers, n=5)
    # Written before digests existed: the marker and fields, no digest, no tree entry.
    for s in redis_servers:
        await raw(s, "HSET", "old:same", "__redisha__", "map:1", "f:a", "1:x:+1")
        await raw(s, "HSET", "old:diff", "__redisha__", "map:1", "f:a", "1:x:+1")
    await raw(redis_servers[2], "HSET", "old:diff", "f:b", "2:y:+2")  # only server 3 has b
    report = await walk(redis_servers)
    assert report.ok, report.messages
    assert report.rehashed == 6  # two keys on three servers
    assert report.read == report.repaired == 1  # only old:diff differed
    await assert_identical(redis_servers, [*data_keys(5), "old:same", "old:diff"])
    async with pool_on(redis_servers[:1]) as pool:
        assert await HashMap(pool, "old:diff").get() == {"a": 1, "b": 2}
    again = await walk(redis_servers)
    assert (again.rehashed, again.read) == (0, 0)


async def test_foreign_hashes_are_skipped_and_left_alone(
    redis_servers: list[RedisServer],
) -> None:
    await write_all(redis_servers, n=3)
    await raw(redis_servers[0], "HSET", "theirs", "name", "not ours")
    # A later version's marker, without a digest: not ours either, not rehashed.
    await raw(redis_servers[0], "HSET", "later", "__redisha__", "map:9", "f:a", "1:x:+1")
    later = await raw(redis_servers[0], "DUMP", "later")
    report = await walk(redis_servers)
    assert report.ok and report.skipped == 2 and report.read == 0 and report.rehashed == 0
    assert report.scanned == len(data_keys(3)) + 2
    assert await raw(redis_servers[0], "HGETALL", "theirs") == [b"name", b"not ours"]
    assert await raw(redis_servers[0], "DUMP", "later") == later
    assert int(await raw(redis_servers[1], "EXISTS", "theirs")) == 0


async def test_a_server_down_is_reported_and_the_others_repaired(
    redis_servers: list[RedisServer],
) -> None:
    await write_all(redis_servers, n=10)
    a, b, c = redis_servers
    await a.arestart_empty()
    async with pool_on(redis_servers) as pool:
        c.kill()
        with trio.fail_after(5):
            while pool.available > 2:  # noqa: ASYNC110 - the pool notices by itself
                await trio.sleep(0.01)
        report = await repair_all(pool, rate=0, timeout=0.5)
    assert not report.ok
    assert report.unreachable == [c.url]
    assert any(c.url in m for m in report.messages)
    assert report.repaired == len(data_keys(10))
    await assert_identical([a, b], data_keys(10))


@pytest.mark.redis_servers(4)
async def test_with_placement_a_stray_copy_is_moved_to_the_owners(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(redis_servers, replicas=2) as pool:
        assert pool.placement is not None
        owners = pool.placement.owners("stray")
        other = next(i for i in range(4) if i not in owners)
        for i in range(20):
            await HashMap(pool, f"k:{i}").set({"v": i})
    # A fallback's copy, as a sloppy-quorum write leaves it (digest and tree entry).
    async with pool_on([redis_servers[other]]) as alone:
        await HashMap(alone, "stray").set({"v": "fallback"})
    async with pool_on(redis_servers, replicas=2) as pool:
        report = await repair_all(pool, rate=0, removal_delay=0)
    assert report.ok, report.messages
    assert report.read == 1 and report.moved == 1 and report.removed == 1
    assert int(await raw(redis_servers[other], "EXISTS", "stray")) == 0
    for i in owners:
        assert (await raw_hash(redis_servers[i], "stray")).get(b"f:v")
    # No tree entry is left behind on the non-owner either.
    fields = await raw(redis_servers[other], "HKEYS", tree_key(key_partition("stray")))
    assert b"kstray" not in fields
    async with pool_on(redis_servers, replicas=2) as pool:
        again = await repair_all(pool, rate=0)
    assert again.ok and (again.read, again.moved) == (0, 0)
    # Every data key on exactly its owners; the tree's keys are not data.
    placement = pool.placement
    assert placement is not None
    for i, s in enumerate(redis_servers):
        for k in await raw(s, "KEYS", "*"):
            if not k.startswith(TREE_PREFIX):
                assert i in placement.owners(k), (k, i)


async def test_after_a_partition_with_writers_on_both_sides(
    redis_servers: list[RedisServer],
) -> None:
    """Through fault proxies: each side misses the other's writes; the walk alone converges them.

    Half the keys are read first (digest reads see the differences and merge
    them); the other half are left to the walk, which no read has touched.
    """
    from tests.test_crdt_faults import cluster

    n = 12
    async with cluster(redis_servers) as c1, cluster(redis_servers) as c2:
        for i in range(n):
            await HashMap(c1.pool, f"m:{i}").set({"base": 0})
        await c1.cut(0)
        await c2.cut(2)
        for i in range(n):
            await Counter(c1.pool, f"c:{i}").incr(1)
            await Counter(c2.pool, f"c:{i}").incr(10)
            await HashMap(c1.pool, f"m:{i}").set({"a": 1})
            await HashMap(c2.pool, f"m:{i}").set({"b": 2})
            await Set(c1.pool, f"s:{i}").add("x")
            await Set(c2.pool, f"s:{i}").add("y")
        await c1.heal(0)
        await c2.heal(2)
    read = list(range(0, n, 2))
    async with pool_on(redis_servers) as pool:
        for i in read:
            assert await Counter(pool, f"c:{i}").get() == 11
            assert await HashMap(pool, f"m:{i}").get() == {"base": 0, "a": 1, "b": 2}
            assert await Set(pool, f"s:{i}").get() == {"x", "y"}
    report = await walk(redis_servers)
    assert report.ok, report.messages
    # Servers 1 and 3 each missed one side's writes to every key no read touched
    # (read repair of the others runs in the background and may not be done).
    assert report.read >= 3 * (n - len(read))
    keys = [f"{k}:{i}" for i in range(n) for k in ("c", "m", "s")]
    await assert_identical(redis_servers, keys)
    for s in redis_servers:
        async with pool_on([s]) as alone:
            for i in range(n):
                assert await Counter(alone, f"c:{i}").get() == 11
                assert await HashMap(alone, f"m:{i}").get() == {"base": 0, "a": 1, "b": 2}
                assert await Set(alone, f"s:{i}").get() == {"x", "y"}
    assert (await walk(redis_servers)).read == 0


async def index_entries(server: RedisServer) -> int:
    trees = [k for k in await raw(server, "KEYS", "*") if k.startswith(TREE_PREFIX)]
    return sum([int(await raw(server, "HLEN", t)) for t in trees])


async def test_a_walk_leaves_only_live_keys_in_the_index(
    redis_servers: list[RedisServer],
) -> None:
    """Sessions come and go: after a walk the index holds exactly the keys that exist."""
    async with pool_on(redis_servers) as pool:
        for i in range(20):
            await HashMap(pool, f"live:{i}", ttl=600).set({"a": 1})
        for round_ in range(3):
            short = [f"short:{round_}:{i}" for i in range(100)]
            for k in short:
                await HashMap(pool, k, ttl=0.02).set({"a": 1})
            await wait_until(
                lambda short=short: all(
                    s.command("EXISTS", *short) == b":0\r\n" for s in redis_servers
                ),
                what="the short-lived keys to expire",
            )
            report = await repair_all(pool, rate=0)
            assert report.ok and report.read == 0, report
            for s in redis_servers:
                assert await index_entries(s) == 20


async def test_keys_on_different_servers_are_all_counted(
    redis_servers: list[RedisServer],
) -> None:
    a, b, _c = redis_servers
    await write_all([a], n=4)
    async with pool_on([b]) as pool:
        for i in range(4, 6):
            await HashMap(pool, f"m:{i}").set({"only": "b"})
    report = await walk(redis_servers)
    assert report.ok, report.messages
    assert report.scanned == report.read == report.repaired == 3 * 4 + 2
    await assert_identical(redis_servers, [*data_keys(4), "m:4", "m:5"])


async def test_scanned_counts_each_key_once_when_the_largest_server_stops_answering(
    redis_servers: list[RedisServer],
) -> None:
    # b holds the most keys; it froze once the first key was repaired. Each key
    # read after that (b not answering) was counted as one b lacked, on top of
    # b's own count of them: 2n keys scanned out of n + 1.
    _a, b, c = redis_servers
    n = 20
    async with pool_on(redis_servers) as pool:
        for i in range(n):
            await HashMap(pool, f"k:{i}").set({"v": i})
    async with pool_on([b]) as pool:
        await HashMap(pool, "only-on-b").set({"v": 1})
    await c.arestart_empty()  # every key differs: all are read

    def progress(report: RepairReport) -> None:
        if report.processed == 1 and not b.frozen:
            b.freeze()

    try:
        async with pool_on(redis_servers) as pool:
            report = await repair_all(
                pool, rate=0, concurrency=1, timeout=0.3, on_progress=progress
            )
    finally:
        if b.frozen:
            b.thaw()
    assert b.url in report.unreachable and not report.ok
    assert report.processed > 1, report.summary()  # some read after b froze
    assert report.scanned == n + 1, report.summary()  # b's keys; none seen only elsewhere


@pytest.mark.parametrize("other", ["string", "foreign hash", "set"])
async def test_a_key_of_different_types_is_skipped_once(
    redis_servers: list[RedisServer], other: str
) -> None:
    # A map on a and b, something else on c: the tree walk counted it as skipped
    # nowhere (or, a hash without the marker, twice), the reading walk once.
    a, b, c = redis_servers
    await write_all([a, b], n=2)
    if other == "string":
        await raw(c, "SET", "m:0", "plain")
    elif other == "foreign hash":
        await raw(c, "HSET", "m:0", "name", "not ours")
    else:
        async with pool_on([c]) as pool:
            await Set(pool, "m:0").add("x")
    for full in (False, True):
        report = await walk(redis_servers, full=full)
        assert report.ok, report.messages
        assert report.skipped == 1, (full, report.summary())
        assert report.scanned == len(data_keys(2)), (full, report.summary())
        # The tree walk first: c gets every other key; nothing is left to the reading walk.
        assert report.repaired == (0 if full else len(data_keys(2)) - 1), report.summary()
    assert await raw(c, "TYPE", "m:0") == (b"hash" if other != "string" else b"string")
