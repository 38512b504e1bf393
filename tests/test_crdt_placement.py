"""CRDT objects, sessions and the repair walker over placement (``replicas=N``).

Nine real redis-server processes. Where each key lives is checked on the
servers themselves, never through the pool under test. Waits for background
read repair poll with a deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest
import trio

from tests.conftest import RedisFactory
from tests.harness.fault_proxy import FaultProxy, open_fault_proxy
from tests.harness.helpers import raw_hash, urls, wait_until
from tests.test_pool import holds, ready_pool
from tests.test_pool_placement import by_label, keys_on, wait_state
from trio_redisha import (
    ConfigurationError,
    Counter,
    HashMap,
    Pool,
    QuorumError,
    ServerState,
    SessionStore,
    Set,
)
from trio_redisha._demo import run_demo
from trio_redisha.cli import main
from trio_redisha.crdt import RepairReport, repair_all
from trio_redisha.crdt._plan import remove_copies
from trio_redisha.crdt._storage import hash_fields
from trio_redisha.pool._hints import Hints
from trio_redisha.testing import RedisServer, decode_reply

TIMEOUT = 1.0


@pytest.fixture
def nine(redis_factory: RedisFactory) -> list[RedisServer]:
    """Nine fresh servers (no persistence), started concurrently."""
    return redis_factory.many(9)


async def holders(pool: Pool, servers: dict[str, RedisServer], key: str) -> set[int]:
    """Indices of the pool's servers holding ``key``, asked on each server directly."""
    out = set()
    for i, label in enumerate(pool.servers):
        if int(decode_reply(await servers[label].acommand("EXISTS", key))):  # type: ignore[call-overload]
            out.add(i)
    return out


async def on_exactly_owners(pool: Pool, servers: dict[str, RedisServer], key: str) -> bool:
    return await holders(pool, servers, key) == set(pool._owner_indices(key))


async def test_crdts_and_sessions_live_on_exactly_their_owners(nine: list[RedisServer]) -> None:
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        counter = Counter(pool, "c:1", write_quorum=3)
        await counter.incr(5)
        await counter.decr(2)
        hmap = HashMap(pool, "m:1", write_quorum=2)
        await hmap.set({"a": 1, "b": "x"})
        await hmap.delete("b")
        members = Set(pool, "s:1")
        await members.add("x", "y")
        await members.rem("y")
        store = SessionStore(pool, ttl=60, write_quorum=2)
        sid = store.new_id()
        await store.save(sid, {"user": 42})
        await store.touch(sid)
        assert await counter.get() == 3
        assert await hmap.get() == {"a": 1}
        assert await members.get() == {"x"}
        assert dict(await store.load(sid)) == {"user": 42}
        for key in ("c:1", "m:1", "s:1", store.key(sid)):
            assert await on_exactly_owners(pool, servers, key), key
        # Nine servers, three owners per key: every server's keys are keys it owns.
        for i, label in enumerate(pool.servers):
            for k in await keys_on(servers[label]):
                assert i in pool._owner_indices(k)


async def test_quorums_count_owners(nine: list[RedisServer]) -> None:
    async with ready_pool(*urls(nine[:4]), replicas=3, timeout=TIMEOUT) as pool:
        Counter(pool, "c", write_quorum=3, read_quorum=3)
        with pytest.raises(ConfigurationError, match=r"write_quorum must be an int in 1\.\.3"):
            Counter(pool, "c", write_quorum=4)
        with pytest.raises(ConfigurationError, match=r"read_quorum must be an int in 1\.\.3"):
            HashMap(pool, "m", read_quorum=4)
        with pytest.raises(ConfigurationError, match="write_quorum"):
            SessionStore(pool, write_quorum=4)


async def kill_owners_and_write(
    pool: Pool, servers: dict[str, RedisServer], key: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Kill two of the key's owners, write with W=2 (a fallback takes one), restart them empty."""
    owners = pool._owner_indices(key)
    down = owners[:2]
    counter = Counter(pool, key, write_quorum=2)
    await counter.incr(1)
    for i in down:
        await servers[pool.servers[i]].akill()
    for i in down:
        await wait_state(pool, i, ServerState.DOWN)
    await counter.incr(10)
    await HashMap(pool, key + ":m", write_quorum=2).set({"f": "v"})
    assert pool._hinted(key)
    for i in down:
        await servers[pool.servers[i]].astart()  # no persistence: empty
    for i in down:
        await wait_state(pool, i, ServerState.UP)
    return owners, down


async def test_a_read_hands_back_a_fallback_copy_to_owners_restarted_empty(
    nine: list[RedisServer],
) -> None:
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        key = "{handback}"
        await kill_owners_and_write(pool, servers, key)
        # The owners are back empty; the read sees the value through the hint.
        assert await Counter(pool, key).get() == 11
        await wait_until(holds(lambda: not pool._hinted(key)), what="handed back")
        assert await on_exactly_owners(pool, servers, key)
        # Once handed back, reads go to the owners only and still see the value.
        assert await Counter(pool, key).get() == 11
        for i in pool._owner_indices(key):
            raw = decode_reply(await servers[pool.servers[i]].acommand("HGETALL", key))
            assert isinstance(raw, list) and raw


async def test_repair_hands_back_what_another_process_wrote(nine: list[RedisServer]) -> None:
    servers = by_label(nine)
    key = "{walk}"  # the counter and the map ({walk}:m) share owners
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as writer:
        await kill_owners_and_write(writer, servers, key)
    # A fresh process knows no hint: only the walker finds the fallback's copy.
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        report = await repair_all(pool, rate=0)
        assert report.ok, report.messages
        assert report.removed == 2 and report.moved == 2  # the counter and the map
        for k in (key, key + ":m"):
            assert await on_exactly_owners(pool, servers, k), k
        assert await Counter(pool, key, read_quorum=3).get() == 11
        assert await HashMap(pool, key + ":m", read_quorum=3).get() == {"f": "v"}
        again = await repair_all(pool, rate=0)
        assert (again.repaired, again.removed, again.left) == (0, 0, 0)


async def test_repair_purges_no_tombstone_while_a_fallback_holds_what_it_deletes(
    redis_factory: RedisFactory,
) -> None:
    five = redis_factory.many(5)
    servers = by_label(five)
    key = "{tomb}"
    async with ready_pool(*urls(five), replicas=3, timeout=TIMEOUT) as writer:
        # f=v on the one live owner and a fallback; the other owners come back empty.
        await kill_owners_and_write(writer, servers, key)
    async with ready_pool(*urls(five), replicas=3, timeout=TIMEOUT) as other:
        # Another process, which knows no fallback, deletes f on the owners.
        await HashMap(other, key + ":m", write_quorum=3).delete("f")
    async with ready_pool(*urls(five), replicas=3, timeout=TIMEOUT) as pool:
        owners = set(pool._owner_indices(key))
        # Every tombstone is past its grace at once. The walker used to purge it
        # on the owners, then read the fallback's f=v and write it back to them.
        for _ in range(2):
            report = await repair_all(pool, rate=0, tombstone_grace=0)
            assert report.ok, report.messages
            assert await HashMap(pool, key + ":m", read_quorum=3).get() == {}
        assert await holders(pool, servers, key + ":m") <= owners
        # With the fallback's copy gone, a reading walk purges the tombstone
        # (a tree walk reads no converged key).
        report = await repair_all(pool, rate=0, tombstone_grace=0, full=True)
        assert report.ok, report.messages
        for i in owners:
            raw = decode_reply(
                await servers[pool.servers[i]].acommand("HEXISTS", key + ":m", "f:f")
            )
            assert raw == 0, i


async def test_fallbacks_holding_nothing_do_not_make_a_read_quorum(
    redis_factory: RedisFactory,
) -> None:
    # Both owners hung: the read went to a fallback per owner, which answered
    # "no such key", and that counted: load() gave {} (a 503 turned into a
    # logout, the session back once the owners returned).
    five = redis_factory.many(5)
    servers = by_label(five)
    async with ready_pool(*urls(five), replicas=2, timeout=0.3, trip_after=1) as pool:
        store = SessionStore(pool, write_quorum=2)
        sid = store.new_id()
        await store.save(sid, {"user": "ada"})
        owners = pool._owner_indices(store.key(sid))
        for i in owners:
            await servers[pool.servers[i]].afreeze()
        try:
            with pytest.raises(QuorumError):
                await store.load(sid)  # times out on both: their circuits open
            for i in owners:
                await wait_state(pool, i, ServerState.SUSPECT)
            # Now the read goes to a fallback per owner, which hold nothing.
            for quorum in (1, 2):
                with pytest.raises(QuorumError, match="fallbacks holding nothing"):
                    await HashMap(pool, store.key(sid), read_quorum=quorum).get()
            with pytest.raises(QuorumError):
                await store.load(sid)
        finally:
            for i in owners:
                await servers[pool.servers[i]].athaw()
        for i in owners:
            await wait_state(pool, i, ServerState.UP)
        assert await store.load(sid) == {"user": "ada"}
        # A fallback that does hold the key (a sloppy write) still counts.
        key = "{sloppy}"
        kill = pool._owner_indices(key)
        for i in kill:
            await servers[pool.servers[i]].akill()
        for i in kill:
            await wait_state(pool, i, ServerState.DOWN)
        await HashMap(pool, key, write_quorum=2).set({"f": "v"})
        assert await HashMap(pool, key).get() == {"f": "v"}


async def test_a_copy_changed_since_it_was_read_is_not_removed(nine: list[RedisServer]) -> None:
    async with ready_pool(*urls(nine[:3]), replicas=1, timeout=TIMEOUT) as pool:
        key = "h"
        await HashMap(pool, key).set({"a": 1})
        owner = pool._owner_indices(key)[0]
        other = next(i for i in range(3) if i != owner)
        # A copy on a non-owner, then read, then changed before the removal.
        await pool.execute_on([other], "HSET", key, "x", "1")
        read = {b"x": b"1"}
        await pool.execute_on([other], "HSET", key, "y", "2")
        assert await remove_copies(pool, key, [(other, read)], TIMEOUT) == ()
        assert (await pool.execute_on([other], "EXISTS", key))[0] == 1
        assert await remove_copies(pool, key, [(other, {b"x": b"1", b"y": b"2"})], TIMEOUT) == (
            other,
        )
        assert (await pool.execute_on([other], "EXISTS", key))[0] == 0


async def test_two_owners_killed_during_writes_then_restarted_empty_then_repair(
    nine: list[RedisServer],
) -> None:
    servers = by_label(nine)
    keys = [f"{{k}}:{i}" for i in range(8)]  # one partition: the same three owners
    acked = dict.fromkeys(keys, 0)
    maybe = dict.fromkeys(keys, 0)
    async with ready_pool(*urls(nine), replicas=3, timeout=0.3) as pool:
        owners = pool._owner_indices(keys[0])
        stop = trio.Event()

        async def writer() -> None:
            while not stop.is_set():
                for key in keys:
                    try:
                        await Counter(pool, key, write_quorum=2).incr(1)
                    except QuorumError as exc:
                        assert exc.may_have_applied is not False
                        maybe[key] += 1
                    else:
                        acked[key] += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await wait_until(holds(lambda: min(acked.values()) >= 3), what="writes")
            for i in owners[:2]:
                await servers[pool.servers[i]].akill()
            for i in owners[:2]:
                await wait_state(pool, i, ServerState.DOWN)
            floor = sum(acked.values())
            await wait_until(holds(lambda: sum(acked.values()) > floor + 16), what="sloppy")
            for i in owners[:2]:
                await servers[pool.servers[i]].astart()  # empty
            for i in owners[:2]:
                await wait_state(pool, i, ServerState.UP)
            stop.set()
        assert pool.stats.sloppy_writes > 0
    # Another process, with no hints: the walker alone puts everything back.
    argv = ["repair", "--rate", "0", "--replicas", "3", "--progress", "never"]
    for s in nine:
        argv += ["-s", s.url]
    assert await trio.to_thread.run_sync(main, argv) == 0
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        for key in keys:
            assert await holders(pool, servers, key) == set(owners), key
    for i in owners:  # each owner alone holds the whole value
        async with ready_pool(nine[i].url, timeout=TIMEOUT) as alone:
            for key in keys:
                got = await Counter(alone, key).get()
                assert acked[key] <= got <= acked[key] + maybe[key], (key, i)


def test_repair_previous_needs_replicas(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["repair", "-s", "redis://127.0.0.1:1", "--previous", "redis://127.0.0.1:2"]
    assert main(argv) == 2
    assert "--previous needs --replicas N" in capsys.readouterr().err


async def test_demo_with_placement_loses_no_acknowledged_write() -> None:
    report = await run_demo(duration=3.0, clients=3, servers=6, replicas=3)
    assert report.lost == 0 and report.ok
    assert report.acknowledged > 0 and report.reads > 0
    texts = " | ".join(text for _, text in report.events)
    for what in ("killed server A", "killed server B", "froze server C", "restarted server D"):
        assert what in texts
    assert report.sloppy_writes > 0  # A and B down together: their sessions went sloppy
    assert report.in_sync == report.sessions  # on exactly their owners, nowhere else
    assert ("sessions on exactly their owners", f"{report.sessions} of {report.sessions}") in (
        report.rows()
    )


def test_demo_replicas_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--servers", "4", "--replicas", "5"]) == 2
    assert "--replicas must be in 2..--servers (4)" in capsys.readouterr().err


async def test_a_write_to_a_copy_while_the_walker_waits_to_remove_it_is_kept(
    nine: list[RedisServer],
) -> None:
    servers = by_label(nine)
    key = "c:late"
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        await Counter(pool, key).incr(1)
        stray = next(i for i in range(9) if i not in pool._owner_indices(key))
        async with ready_pool(pool.servers[stray], timeout=TIMEOUT) as alone:
            await Counter(alone, key).incr(10)  # a copy on a non-owner, another writer
            first_round = trio.Event()

            def progress(report: RepairReport) -> None:
                if report.processed == 1:
                    first_round.set()

            async with trio.open_nursery() as nursery:

                async def walk() -> None:
                    report = await repair_all(
                        pool, keys=[key], rate=0, removal_delay=0.5, on_progress=progress
                    )
                    assert (report.removed, report.left) == (1, 0)

                nursery.start_soon(walk)
                await first_round.wait()
                # The owners hold the merge; the walker waits before removing the copy.
                assert await holders(pool, servers, key) == {*pool._owner_indices(key), stray}
                await Counter(alone, key).incr(100)  # lands on the copy meanwhile
        assert await on_exactly_owners(pool, servers, key)
        assert await Counter(pool, key, read_quorum=3).get() == 111


async def test_a_hedged_read_with_placement_does_not_wait_for_a_hung_owner(
    nine: list[RedisServer],
) -> None:
    servers = by_label(nine[:5])
    async with ready_pool(*urls(nine[:5]), replicas=3, timeout=2.0) as pool:
        m = HashMap(pool, "m", write_quorum=2, read_quorum=2, hedged=True)
        await m.set({"a": 1, "b": 2})
        for _ in range(3):
            assert await m.get() == {"a": 1, "b": 2}
        owners = pool._owner_indices("m")
        hung = servers[pool.servers[owners[0]]]
        hung.freeze()
        try:
            for _ in range(3):
                start = trio.current_time()
                assert await m.get() == {"a": 1, "b": 2}  # the two other owners
                # A read that waited for the hung owner would take half the deadline.
                assert trio.current_time() - start < 0.9
        finally:
            hung.thaw()


async def lacks(server: RedisServer, key: str) -> bool:
    """Whether ``server`` holds no ``key``, asked on the server itself."""
    return not await raw_hash(server, key)


def _preference_key(pool: Pool, prefix: str) -> str:
    """A key whose first fallback has a lower index than its second."""
    placement = pool.placement
    assert placement is not None
    for n in range(10_000):
        key = f"{prefix}{n}"
        pref = placement.preference(key)
        if pref[1] < pref[2]:
            return key
    raise AssertionError("no such key")


async def test_a_write_landing_on_a_fallback_during_its_hand_back_keeps_its_hint(
    redis_factory: RedisFactory,
) -> None:
    # The removal of X's copy succeeded, then (while the removal of another copy
    # waited on a hung server) a sloppy write landed on X again: the hand-back
    # forgot X's hint at the end, and the writer's reads lost that write.
    three = redis_factory.many(3)
    servers = by_label(three)
    async with ready_pool(*urls(three), replicas=1, timeout=0.5) as pool:
        assert pool.placement is not None
        key = _preference_key(pool, "race")
        o, x, y = pool.placement.preference(key)[:3]
        owner, fallback, hung = (servers[pool.servers[i]] for i in (o, x, y))
        await owner.akill()
        await wait_state(pool, o, ServerState.DOWN)
        m = HashMap(pool, key)
        await m.set({"a": 1})
        assert pool._hinted(key) == (x,)
        read = hash_fields(decode_reply(await fallback.acommand("HGETALL", key)))
        await hung.afreeze()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(remove_copies, pool, key, [(x, read), (y, {})], 5.0)
                await wait_until(partial(lacks, fallback, key), what="the fallback's copy removed")
                await m.set({"c": 3})  # the owner is still down: to the fallback again
                assert await raw_hash(fallback, key)
                await hung.athaw()
        finally:
            await hung.athaw()
        assert pool._hinted(key) == (x,)
        await owner.astart()  # empty: only the fallback holds c
        await wait_state(pool, o, ServerState.UP)
        assert await HashMap(pool, key).get() == {"c": 3}


async def test_read_repair_keeps_the_copy_when_an_owner_restarted_empty_before_removal(
    redis_factory: RedisFactory,
) -> None:
    # The owners acknowledged the repair, then restarted empty during the delay
    # before the hand-back: the fallback's copy was removed all the same, and the
    # acknowledged increment was gone from every server.
    three = redis_factory.many(3)
    servers = by_label(three)
    async with ready_pool(*urls(three), replicas=1, timeout=TIMEOUT) as pool:
        key = "visits"
        assert pool.placement is not None
        o, f = pool.placement.preference(key)[:2]
        owner, fallback = servers[pool.servers[o]], servers[pool.servers[f]]
        await owner.akill()
        await wait_state(pool, o, ServerState.DOWN)
        await Counter(pool, key).incr(42)
        await owner.astart()
        await wait_state(pool, o, ServerState.UP)
        assert await Counter(pool, key).get() == 42  # read repair: owner written, then wait
        await wait_until(partial(raw_hash, owner, key), what="the owner repaired")
        assert pool._background  # the hand-back waits its delay
        await owner.arestart_empty()
        await wait_state(pool, o, ServerState.UP)
        await wait_until(lambda: not pool._background, what="read repair done")
        assert await raw_hash(fallback, key), "the copy was removed though the owner lost it"
        assert await Counter(pool, key).get() == 42
        # The next read hands it back, the owner keeping it this time.
        await wait_until(lambda: not pool._hinted(key), what="handed back")
        assert not await raw_hash(fallback, key) and await raw_hash(owner, key)
        assert await Counter(pool, key).get() == 42


async def test_a_partition_hint_is_forgotten_once_the_fallback_holds_none_of_its_keys(
    redis_factory: RedisFactory,
) -> None:
    three = redis_factory.many(3)
    servers = by_label(three)
    async with ready_pool(*urls(three), replicas=1, timeout=0.5) as pool:
        assert pool.placement is not None
        pool._hints = Hints(max_keys=1)  # the first key one by one, then per partition
        first, second, other = "{p}first", "{p}m", "{p}other"
        o = pool._owner_indices(first)[0]
        f = pool.placement.preference(first)[1]
        owner, fallback = servers[pool.servers[o]], servers[pool.servers[f]]
        await owner.akill()
        await wait_state(pool, o, ServerState.DOWN)
        await HashMap(pool, first).set({"a": 1})
        await HashMap(pool, second).set({"b": 2})  # hinted for the whole partition
        assert pool._hinted(other) == (f,)
        await owner.astart()
        await wait_state(pool, o, ServerState.UP)
        assert await HashMap(pool, second).get() == {"b": 2}
        await wait_until(partial(lacks, fallback, second), what="second handed back")
        await wait_until(lambda: not pool._background, what="read repair done")
        # The fallback still holds a key of the partition: the hint stays.
        assert await raw_hash(fallback, first)
        assert pool._hinted(other) == (f,)
        assert await HashMap(pool, first).get() == {"a": 1}
        await wait_until(partial(lacks, fallback, first), what="first handed back")
        await wait_until(lambda: not pool._hinted(other), what="partition hint forgotten")
        assert pool._read_targets(other) == (o,)
        assert await HashMap(pool, first).get() == {"a": 1}
        assert await HashMap(pool, second).get() == {"b": 2}


async def lose_fallback_copy(
    pool: Pool,
    servers: dict[str, RedisServer],
    key: str,
    *,
    during: Callable[[tuple[int, ...]], Awaitable[None]] | None = None,
    back: int = 2,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Kill two of ``key``'s owners, write a map (W=2: a fallback takes it), restart
    that fallback empty, then start ``back`` of the owners again (empty).

    ``during`` runs while the owners are down, given them. Returns the owners and
    the fallbacks hinted.
    """
    owners = pool._owner_indices(key)
    down = owners[:2]
    for i in down:
        await servers[pool.servers[i]].akill()
    for i in down:
        await wait_state(pool, i, ServerState.DOWN)
    await HashMap(pool, key, write_quorum=2).set({"f": "v"})
    if during is not None:
        await during(down)
    hinted = pool._hinted(key)
    assert hinted and not set(hinted) & set(owners)
    for i in hinted:
        await servers[pool.servers[i]].arestart_empty()  # its copy is gone
    for i in down[:back]:
        await servers[pool.servers[i]].astart()  # no persistence: empty
    for i in (*down[:back], *hinted):
        await wait_state(pool, i, ServerState.UP)
    return owners, hinted


@pytest.mark.parametrize("by", ["read", "reading walk"])
async def test_a_check_forgets_the_hint_of_a_fallback_that_lost_its_copy(
    redis_factory: RedisFactory, by: str
) -> None:
    # The fallback restarted empty: its hint was kept for the pool's life, every
    # read of the key went to it, and the read fast path was off for every key.
    five = redis_factory.many(5)
    servers = by_label(five)
    async with ready_pool(*urls(five), replicas=3, write_quorum=2, timeout=0.3) as pool:
        key = "m:1"

        async def check() -> None:
            if by == "read":
                assert await HashMap(pool, key).get() == {"f": "v"}
                await wait_until(lambda: not pool._background, what="read repair done")
            else:
                await repair_all(pool, rate=0, full=True)

        owners, hinted = await lose_fallback_copy(pool, servers, key, back=1)
        # An owner still down: it did not answer, so the hint stays.
        await check()
        assert pool._hinted(key) == hinted
        await servers[pool.servers[owners[1]]].astart()
        await wait_state(pool, owners[1], ServerState.UP)
        # Every owner answers and holds the merge; the fallback holds nothing.
        await check()
        await wait_until(lambda: not pool._hints, what="the hint forgotten")
        assert pool._read_targets(key) == owners
        for i in owners:
            assert await raw_hash(servers[pool.servers[i]], key), i
        assert await HashMap(pool, key, read_quorum=3).get() == {"f": "v"}


@pytest.mark.parametrize("full", [False, True], ids=["tree walk", "reading walk"])
async def test_a_walk_forgets_the_hints_of_copies_gone_from_their_fallbacks(
    redis_factory: RedisFactory, full: bool
) -> None:
    # Sessions saved during an outage expired before they were read again, and a
    # map's fallback restarted empty: the walk checked every server, yet every
    # hint stayed (past the bound, per partition) for the pool's life.
    five = redis_factory.many(5)
    servers = by_label(five)
    async with ready_pool(*urls(five), replicas=3, write_quorum=2, timeout=0.3) as pool:
        pool._hints = Hints(max_keys=3)  # the map and two sessions, then per partition
        key = "m:1"
        store = SessionStore(pool, ttl=1, write_quorum=2)
        sids: list[str] = []

        async def save_sessions(down: tuple[int, ...]) -> None:
            while len(sids) < 6:
                sid = store.new_id()
                if set(down) <= set(pool._owner_indices(store.key(sid))):  # a sloppy save
                    await store.save(sid, {"u": 1})
                    sids.append(sid)

        owners, hinted = await lose_fallback_copy(pool, servers, key, during=save_sessions, back=1)
        assert any(isinstance(k, int) for k, _ in pool._hints.items())  # partition hints

        up = [servers[label] for i, label in enumerate(pool.servers) if i != owners[1]]

        async def sessions_gone() -> bool:  # the owner still down holds nothing
            for s in up:
                for sid in sids:
                    if int(decode_reply(await s.acommand("EXISTS", store.key(sid)))):  # type: ignore[call-overload]
                        return False
            return True

        await wait_until(sessions_gone, what="the sessions expired")
        # An owner of the map still down: its hint stays.
        await repair_all(pool, rate=0, full=full)
        assert pool._hinted(key) == hinted
        await servers[pool.servers[owners[1]]].astart()
        await wait_state(pool, owners[1], ServerState.UP)
        report = await repair_all(pool, rate=0, full=full)
        assert report.ok, report.messages
        assert not pool._hints, pool._hints.items()
        for i in owners:
            assert await raw_hash(servers[pool.servers[i]], key), i
        assert await HashMap(pool, key, read_quorum=3).get() == {"f": "v"}


@contextlib.asynccontextmanager
async def owner_down(
    redis_factory: RedisFactory, replicas: int
) -> AsyncIterator[tuple[Pool, list[FaultProxy], tuple[int, ...], str]]:
    """Four servers behind proxies, a map "hk" written, its first owner cut off.

    Yields the pool, the proxies, the key's owners and the key; the read of
    the key then also asks a fallback, which holds nothing.
    """
    four = redis_factory.many(4)
    async with contextlib.AsyncExitStack() as stack:
        proxies = [await stack.enter_async_context(open_fault_proxy(s.host, s.port)) for s in four]
        pool = await stack.enter_async_context(
            ready_pool(*(p.url for p in proxies), replicas=replicas, write_quorum=replicas - 1)
        )
        key = "hk"
        owners = pool._owner_indices(key)
        await HashMap(pool, key).set({"a": 1})
        proxies[owners[0]].partition()
        await wait_until(
            holds(lambda: pool._servers[owners[0]].usable() is None), what="owner 0 skipped"
        )
        assert len(pool.targets(("HGETALL", key))) == replicas + 1  # a fallback stands in
        yield pool, proxies, owners, key


async def test_a_hedged_read_waits_for_owners_while_a_fallback_answers_empty(
    redis_factory: RedisFactory,
) -> None:
    # An owner down: the read also asks a fallback, which holds nothing and
    # does not count towards the quorum. The hedge of read_quorum replies
    # stopped at the fast owner and that fallback: QuorumError, every read,
    # while the second owner answered well within the deadline.
    async with owner_down(redis_factory, replicas=3) as (pool, proxies, owners, key):
        proxies[owners[2]].set_latency(0.06)  # in time: the deadline is 0.5 s
        hedged = HashMap(pool, key, read_quorum=2, hedged=True)
        for _ in range(3):
            assert await hedged.get() == {"a": 1}


async def test_a_hedged_read_does_not_wait_for_a_slow_fallback_once_an_owner_answered(
    redis_factory: RedisFactory,
) -> None:
    # The hedge waited for read_quorum replies plus one per fallback: every read
    # took the slow fallback's time, though the owner's reply counted at once.
    async with owner_down(redis_factory, replicas=2) as (pool, proxies, owners, key):
        (fallback,) = (i for i in pool.targets(("HGETALL", key)) if i not in owners)
        proxies[fallback].set_latency(0.1)  # 0.2 s a round trip, in the 0.5 s deadline
        hedged = HashMap(pool, key, read_quorum=1, hedged=True)
        took = []
        for _ in range(5):
            start = trio.current_time()
            assert await hedged.get() == {"a": 1}
            took.append(trio.current_time() - start)
        assert sorted(took)[2] < 0.1, took  # the median read: the owner's time, not 0.2 s
