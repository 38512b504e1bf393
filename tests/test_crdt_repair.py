"""The anti-entropy walker as a library call: ``trio_redisha.crdt.repair_all``.

The command line's ``repair`` (tests/test_cli.py) walks every server; here the
walker is restricted as placement and digests will restrict it: to given keys,
to source servers read, to target servers written (fixed, or per key). Real
servers throughout; the read-repair token bucket is timed on trio's virtual
clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import trio_redisha
from trio_redisha import ConfigurationError, Counter, HashMap, Limits, Pool, QuorumError, Set
from trio_redisha.crdt import CRDTContext, RepairReport, context_for, repair_all, repair_key
from trio_redisha.crdt._digest import TREE_PREFIX
from trio_redisha.crdt._storage import DIGEST_FIELD, state_digest
from trio_redisha.testing import RedisServer, decode_reply


@asynccontextmanager
async def pool_on(*servers: RedisServer, **options: Any) -> AsyncIterator[Pool]:
    options.setdefault("timeout", 0.5)
    async with trio_redisha.open_pool(*(s.url for s in servers), **options) as pool:
        yield pool


async def stored_keys(server: RedisServer) -> list[bytes]:
    """The server's keys, but for the digest tree's."""
    keys = decode_reply(await server.acommand("KEYS", "*"))
    assert isinstance(keys, list)
    return [k for k in keys if not k.startswith(TREE_PREFIX)]


async def dbsizes(servers: list[RedisServer]) -> list[int]:
    return [len(await stored_keys(s)) for s in servers]


async def fill(pool: Pool, n: int) -> None:
    for i in range(n):
        await HashMap(pool, f"m:{i}").set({"i": i})
        await Set(pool, f"s:{i}").add(str(i))
        await Counter(pool, f"c:{i}").incr(i + 1)


async def test_repair_all_refills_an_empty_server_and_reports(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*redis_servers) as pool:
        await fill(pool, 5)
        await redis_servers[1].acommand("FLUSHALL")
        seen: list[int] = []
        report = await repair_all(pool, rate=0, on_progress=lambda r: seen.append(r.processed))
        assert isinstance(report, RepairReport) and report.ok
        assert (report.servers, report.scanned, report.repaired) == (3, 15, 15)
        assert seen == list(range(1, 16))
        assert report.summary().startswith("repair: 15 keys scanned, 15 repaired, 0 skipped")
        assert await dbsizes(redis_servers) == [15, 15, 15]
        again = await repair_all(pool, rate=0)
        assert (again.scanned, again.repaired) == (15, 0)


async def raw_hashes(servers: list[RedisServer], key: str) -> list[list[Any]]:
    """Each server's stored hash, sorted by field: equal exactly when byte-identical."""
    out = []
    for s in servers:
        flat = decode_reply(await s.acommand("HGETALL", key))
        assert isinstance(flat, list)
        out.append(sorted(zip(flat[0::2], flat[1::2], strict=True)))
    return out


@pytest.mark.parametrize("full", [False, True])
async def test_one_pass_leaves_replicas_identical_when_it_purges(
    redis_servers: list[RedisServer], full: bool
) -> None:
    # Server 1 missed the deletes, which are past their grace when the walk
    # comes. The walk sent it the tombstones and purged them everywhere else:
    # server 1 kept them, and the replicas differed until the next pass.
    async with pool_on(*redis_servers) as pool:
        await HashMap(pool, "m").set({"a": 1, "b": 2})
        await Set(pool, "s").add("x", "y")
        await HashMap(pool, "m2").set({"a": 1})
    async with pool_on(redis_servers[0], redis_servers[2]) as partial:  # 1 cut off
        await HashMap(partial, "m").delete("a")
        await Set(partial, "s").rem("x")
        await HashMap(partial, "m2").clear()  # a clear stamp, purged like a tombstone
    async with pool_on(*redis_servers) as pool:
        report = await repair_all(pool, rate=0, tombstone_grace=0, full=full)
        assert report.ok and report.repaired == 3, report.summary()
        for key in ("m", "s", "m2"):
            first, *others = await raw_hashes(redis_servers, key)
            assert all(o == first for o in others), key
        assert await HashMap(pool, "m", read_quorum=3).get() == {"b": 2}
        assert await Set(pool, "s", read_quorum=3).get() == {"y"}
        assert await HashMap(pool, "m2", read_quorum=3).get() == {}
        again = await repair_all(pool, rate=0, tombstone_grace=0, full=full)
        assert again.repaired == 0, again.summary()


async def test_repair_all_of_given_keys_only(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        await fill(pool, 4)
        await redis_servers[2].acommand("FLUSHALL")

        async def some() -> AsyncIterator[str]:
            for key in ("m:0", "s:1"):
                yield key

        report = await repair_all(pool, keys=["c:2", b"c:3", "c:2"], rate=0)
        assert (report.scanned, report.repaired) == (2, 2)  # duplicates walked once
        report = await repair_all(pool, keys=some(), rate=0)
        assert (report.scanned, report.repaired) == (2, 2)
        stored = await stored_keys(redis_servers[2])
        assert sorted(stored) == [b"c:2", b"c:3", b"m:0", b"s:1"]


async def test_repair_all_reads_the_sources_and_writes_the_targets(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    async with pool_on(a, b) as two:
        await fill(two, 3)
    await b.acommand("DEL", "m:0")  # b behind on one key
    async with pool_on(*redis_servers) as pool:
        # Sources only: c is neither scanned nor written.
        report = await repair_all(pool, sources=[0, 1], rate=0)
        assert (report.servers, report.scanned, report.repaired) == (2, 9, 1)
        assert await dbsizes(redis_servers) == [9, 9, 0]
        # Read from a and b, write c only; then per key (a function of the key).
        await b.acommand("DEL", "m:1")
        report = await repair_all(pool, sources=[0, 1], targets=[2], rate=0)
        assert report.repaired == 9
        assert await dbsizes(redis_servers) == [9, 8, 9]  # b was only read from
        report = await repair_all(
            pool, sources=[0], targets=lambda key: [1] if key == b"m:1" else [], rate=0
        )
        assert report.repaired == 1
        assert await dbsizes(redis_servers) == [9, 9, 9]
        # repair_key takes the same restriction.
        await c.acommand("DEL", "s:0")
        assert await repair_key(pool, "s:0", sources=[0], targets=[1]) is False
        assert await repair_key(pool, "s:0", sources=[0], targets=[2]) is True
        assert await dbsizes(redis_servers) == [9, 9, 9]
        with pytest.raises(ConfigurationError):
            await repair_all(pool, sources=[3])
        with pytest.raises(ConfigurationError):
            await repair_key(pool, "s:0", sources=[7])


async def test_walker_over_a_decoding_pool_keeps_binary_values(
    redis_servers: list[RedisServer],
) -> None:
    blob = bytes(range(256))
    async with pool_on(*redis_servers) as pool:
        await HashMap(pool, "bin", codec=trio_redisha.crdt.BytesCodec()).set({"b": blob})
    await redis_servers[0].acommand("DEL", "bin")
    async with pool_on(*redis_servers, decode_responses=True) as pool:
        assert await repair_key(pool, "bin", sources=[1, 2], targets=[0]) is True
    stored = [decode_reply(await s.acommand("HGET", "bin", "f:b")) for s in redis_servers]
    assert stored[0] == stored[1] == stored[2]
    assert isinstance(stored[0], bytes) and stored[0].endswith(b":+" + blob)


# --- the per-pool context --------------------------------------------------------------


async def test_context_is_one_per_pool_and_reads_the_pools_settings(
    redis_servers: list[RedisServer],
) -> None:
    async with (
        pool_on(*redis_servers, write_quorum=2, repair_rate=5) as p1,
        pool_on(*redis_servers) as p2,
    ):
        c1, c2 = context_for(p1), context_for(p2)
        assert context_for(p1) is c1 and c1 is not c2
        assert (c1.write_quorum, c1.repair_rate) == (2, 5)
        assert (c2.write_quorum, c2.repair_rate) == (1, 1000)
        assert c1.actor_id != c2.actor_id and len(c1.actor_id) == 16
        assert c1.actor == c1.actor_id.encode()
        assert HashMap(p1, "m").write_quorum == 2
        assert repr(c1).startswith("<CRDTContext actor=")
    with pytest.raises(ConfigurationError):
        CRDTContext(repair_rate=1, actor_id="a:b")
    with pytest.raises(ConfigurationError):
        CRDTContext(repair_rate=1, actor_id="")


async def test_read_repair_budget_refills_at_the_rate(autojump_clock: trio.abc.Clock) -> None:
    ctx = CRDTContext(repair_rate=4)
    assert [ctx.repair_allowed() for _ in range(5)] == [True] * 4 + [False]
    await trio.sleep(0.25)  # one token back
    assert [ctx.repair_allowed() for _ in range(2)] == [True, False]
    await trio.sleep(10)  # never more than one second's worth
    assert sum(ctx.repair_allowed() for _ in range(10)) == 4


class Boom(Exception):
    pass


async def test_a_callback_that_raises_reaches_the_caller_as_it_is(
    redis_servers: list[RedisServer],
) -> None:
    # It came out wrapped in the walk's ExceptionGroup, so `except Boom` missed it.
    async with pool_on(*redis_servers) as pool:
        await fill(pool, 3)

        def progress(report: RepairReport) -> None:
            raise Boom("from the callback")

        with pytest.raises(Boom):
            await repair_all(pool, rate=0, full=True, on_progress=progress)
        with pytest.raises(ZeroDivisionError):
            await repair_all(pool, rate=0, targets=lambda key: [1 // 0])


@pytest.mark.parametrize("keys", [["m:0", 5], ["m:0", b""], 5])
async def test_bad_keys_are_refused_before_anything_is_sent(
    redis_servers: list[RedisServer], keys: Any
) -> None:
    async with pool_on(*redis_servers) as pool:
        await fill(pool, 1)
        await redis_servers[1].acommand("FLUSHALL")
        with pytest.raises(ConfigurationError):
            await repair_all(pool, rate=0, keys=keys)
    assert await dbsizes(redis_servers) == [3, 0, 3]  # m:0 was not repaired first


async def test_sources_given_as_a_generator_are_read(redis_servers: list[RedisServer]) -> None:
    # Checking the indices used the generator up: the walk scanned nothing, ok.
    async with pool_on(*redis_servers) as pool:
        await fill(pool, 2)
        await redis_servers[1].acommand("FLUSHALL")
        report = await repair_all(pool, rate=0, sources=(i for i in (0, 1, 2)))  # type: ignore[arg-type]
        assert report.ok and report.servers == 3 and report.repaired == 6
        with pytest.raises(ConfigurationError):
            await repair_key(pool, "m:0", sources=[])


async def test_a_server_restarted_during_the_pass_makes_it_not_ok(
    redis_servers: list[RedisServer],
) -> None:
    # What the pass wrote there is gone, and it said ok (the CLI's exit 0 says
    # every key is on every server).
    async with pool_on(*redis_servers) as pool:
        await fill(pool, 10)
        await redis_servers[1].acommand("FLUSHALL")
        restarted = False

        def progress(report: RepairReport) -> None:
            nonlocal restarted
            if not restarted and report.processed >= 5:
                restarted = True
                redis_servers[1].restart_empty()  # blocks the walk a few ms

        report = await repair_all(pool, rate=0, full=True, on_progress=progress)
        assert restarted
        assert not report.ok and report.restarted == [redis_servers[1].url], report.summary()
        assert "restarted during the pass" in report.summary()


@pytest.mark.parametrize("call", ["repair_all", "repair_key"])
async def test_sources_leaving_a_server_out_purge_no_tombstone(
    redis_servers: list[RedisServer], call: str
) -> None:
    # Server 2 missed the delete and still holds the field. The sources 0 and 1
    # answered and agreed, so the pass purged the tombstone there; the next walk
    # over every server then brought the deleted field back from server 2.
    async with pool_on(*redis_servers) as pool:
        await HashMap(pool, "m").set({"gone": 1, "kept": 2})
    async with pool_on(redis_servers[0], redis_servers[1]) as partial:  # 2 cut off
        await HashMap(partial, "m").delete("gone")
    async with pool_on(*redis_servers) as pool:
        if call == "repair_all":
            report = await repair_all(pool, rate=0, sources=[0, 1], tombstone_grace=0)
            assert report.ok, report.summary()
        else:
            await repair_key(pool, "m", sources=[0, 1], tombstone_grace=0)
        for s in redis_servers[:2]:  # the tombstone is kept where it was
            tombstone = decode_reply(await s.acommand("HGET", "m", "f:gone"))
            assert isinstance(tombstone, bytes) and tombstone.endswith(b":-")
        report = await repair_all(pool, rate=0, tombstone_grace=0)
        assert report.ok and report.repaired == 1, report.summary()
        assert await HashMap(pool, "m", read_quorum=3).get() == {"kept": 2}
        for s in redis_servers:  # purged everywhere by the pass that read every server
            assert decode_reply(await s.acommand("HEXISTS", "m", "f:gone")) == 0


@pytest.mark.redis_servers(4)
async def test_with_placement_sources_leaving_a_copy_out_purge_no_tombstone(
    redis_servers: list[RedisServer],
) -> None:
    # A copy on a server that is not an owner (as a fallback's) still holds the
    # deleted field; sources naming only the owners must not purge the tombstone.
    async with pool_on(*redis_servers) as everywhere:
        await HashMap(everywhere, "m").set({"gone": 1, "kept": 2})
    async with pool_on(*redis_servers, replicas=2) as pool:
        assert pool.placement is not None
        owners = sorted(pool._owner_indices("m"))
        others = [i for i in range(4) if i not in owners]
        await HashMap(pool, "m").delete("gone")  # the owners only
        report = await repair_all(pool, rate=0, sources=owners, tombstone_grace=0)
        assert report.ok, report.summary()
        for i in owners:
            stored = decode_reply(await redis_servers[i].acommand("HGET", "m", "f:gone"))
            assert isinstance(stored, bytes) and stored.endswith(b":-")
        report = await repair_all(pool, rate=0, tombstone_grace=0, removal_delay=0)
        assert report.ok and report.removed == len(others), report.summary()
        assert await HashMap(pool, "m", read_quorum=2).get() == {"kept": 2}
    for i in others:
        assert decode_reply(await redis_servers[i].acommand("EXISTS", "m")) == 0


async def test_the_reading_walk_reads_every_server_in_full_and_fixes_wrong_digests(
    redis_servers: list[RedisServer],
) -> None:
    # A server whose state changed without its digest (a writer from before
    # digests, or a collision) compared equal to the others: full=True still
    # read by digest, so nothing was ever repaired, and reads kept missing it.
    async with pool_on(*redis_servers) as pool:
        await Counter(pool, "ctr").incr(5)
        await Counter(pool, "warm").get()  # the digest script loaded everywhere
    c = redis_servers[2]
    await c.acommand("HSET", "ctr", "p:00000000000000aa", "7")  # the digest left as it was
    async with pool_on(*redis_servers) as pool:
        await Counter(pool, "warm").get()
        tree = await repair_all(pool, rate=0)
        assert tree.ok and tree.repaired == 0  # the digests agree: the tree walk cannot tell
        report = await repair_all(pool, rate=0, full=True)
        assert report.ok and report.repaired == 1 and report.rehashed == 1
        assert await Counter(pool, "ctr").get() == 12
    states: list[Any] = [decode_reply(await s.acommand("HGETALL", "ctr")) for s in redis_servers]
    assert states[0] == states[1] == states[2]
    fields = dict(zip(states[0][::2], states[0][1::2], strict=True))
    assert fields[DIGEST_FIELD] == state_digest(fields)
    for s in redis_servers:  # and reads by digest see the same on every server
        async with pool_on(s) as alone:
            assert await Counter(alone, "ctr").get() == 12


async def test_the_reading_walk_gives_every_old_key_its_digest(
    redis_servers: list[RedisServer],
) -> None:
    # The upgrade's `repair --full` left them to the reads' rehash, which
    # takes a read-repair token each: past the budget, none got a digest.
    keys = [f"old{i}" for i in range(20)]
    async with pool_on(*redis_servers) as pool:
        for k in keys:
            await HashMap(pool, k).set({"a": 1})
    for s in redis_servers:
        for k in keys:
            await s.acommand("HDEL", k, DIGEST_FIELD)  # data from before digests
    async with pool_on(*redis_servers, repair_rate=0.001) as pool:
        report = await repair_all(pool, rate=0, full=True)
        assert report.ok and report.rehashed == len(keys)
    for s in redis_servers:
        for k in keys:
            assert decode_reply(await s.acommand("HEXISTS", k, DIGEST_FIELD)) == 1, (s, k)


async def test_a_key_its_holders_could_not_be_read_for_is_an_error_not_absent(
    redis_servers: list[RedisServer],
) -> None:
    # The servers holding it failed the read (here: too large for the pool's
    # limits); the one restarted empty answered "no key", and repair took it
    # for absent everywhere: nothing repaired, no error, report.ok.
    a, b, c = redis_servers
    async with pool_on(a, b, c) as pool:
        await HashMap(pool, "big").set({f"f{i}": i for i in range(60)})
    await c.arestart_empty()
    async with pool_on(a, b, c, limits=Limits(max_reply_elements=100)) as pool:
        with pytest.raises(QuorumError, match="max_reply_elements"):
            await repair_key(pool, "big")
        report = await repair_all(pool, rate=0)
        assert not report.ok and report.errors == 1
        assert "big" in report.messages[0]
