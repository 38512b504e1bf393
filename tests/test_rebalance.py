"""Rebalancing under live traffic: 6 -> 9 servers and 9 -> 6, with ``previous=`` and repair.

The procedure of docs/operations.md, run against nine real redis-server
processes: data written on the old layout; then every client is moved to a
pool over the new servers with ``previous=`` the old ones, while writers and
readers keep running, and ``trio-redisha repair --replicas 3 --previous ...``
(the command line, in a worker thread with its own event loop) completes the
migration; then the old layout is dropped. Every read is checked against what
was acknowledged before it started; afterwards every key is on exactly its
owners, checked on each server directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from tests.conftest import RedisFactory
from tests.harness.helpers import pttls, raw_hash, urls, wait_until
from tests.test_pool import ready_pool
from trio_redisha import Counter, HashMap, Pool, QuorumError, ServerState, SessionStore, Set
from trio_redisha.cli import main
from trio_redisha.crdt import repair_key
from trio_redisha.crdt._digest import TREE_PREFIX
from trio_redisha.placement import PARTITIONS, Placement
from trio_redisha.testing import RedisServer, decode_reply

TIMEOUT = 1.0
KEYS = 60  # counters and as many maps
REPLICAS = 3


@pytest.fixture
def nine(redis_factory: RedisFactory) -> list[RedisServer]:
    """Nine fresh servers (no persistence), started concurrently."""
    return redis_factory.many(9)


def moved_fraction(old: Placement, new: Placement) -> tuple[float, set[str]]:
    """Fraction of the N x partitions placements whose server changed, and where they went."""
    moved = 0
    to: set[str] = set()
    for p in range(PARTITIONS):
        gained = set(new.owner_labels(p)) - set(old.owner_labels(p))
        moved += len(gained)
        to |= gained
    return moved / (PARTITIONS * REPLICAS), to


class Traffic:
    """Writers and readers of counters and maps, checking every read.

    ``acked[key]`` is the highest value acknowledged for the key; a read that
    started after it must see at least that much.
    """

    def __init__(self) -> None:
        self.acked: dict[str, int] = {}
        self.reads = 0
        self.writes = 0
        self.stop = trio.Event()

    async def write(self, pool: Pool, key: str) -> None:
        n = self.acked.get(key, 0) + 1
        if key.startswith("c:"):
            await Counter(pool, key, write_quorum=2).incr(1)
        else:
            await HashMap(pool, key, write_quorum=2).set({"n": n})
        self.acked[key] = n
        self.writes += 1

    async def read(self, pool: Pool, key: str) -> None:
        floor = self.acked.get(key, 0)
        if key.startswith("c:"):
            got = await Counter(pool, key).get()
        else:
            got = (await HashMap(pool, key).get()).get("n", 0)
        assert got >= floor, f"{key}: read {got}, {floor} acknowledged before the read"
        self.reads += 1

    async def writer(self, pool: Pool, keys: Sequence[str]) -> None:
        while not self.stop.is_set():
            for key in keys:
                await self.write(pool, key)
            await trio.lowlevel.checkpoint()

    async def reader(self, pool: Pool, keys: Sequence[str]) -> None:
        while not self.stop.is_set():
            for key in keys:
                await self.read(pool, key)
            await trio.lowlevel.checkpoint()


def all_keys() -> list[str]:
    return [f"c:{i}" for i in range(KEYS)] + [f"m:{i}" for i in range(KEYS)]


async def placed_exactly(pool: Pool, servers: Sequence[RedisServer]) -> None:
    """Every key of every server (the pool's and the others) is on exactly its owners."""
    by_url = {s.url: s for s in servers}
    where: dict[bytes, set[str]] = {}
    for s in servers:
        keys = decode_reply(await s.acommand("KEYS", "*"))
        assert isinstance(keys, list)
        for k in keys:
            if not bytes(k).startswith(TREE_PREFIX):  # the digest tree's own keys
                where.setdefault(bytes(k), set()).add(s.url)
    assert set(where) == {k.encode() for k in all_keys()}
    for k, found in where.items():
        assert found == set(pool.owners(k)), k
    assert set(by_url) >= set(pool.servers)


async def migrate(
    old: Sequence[RedisServer], new: Sequence[RedisServer], every: Sequence[RedisServer]
) -> None:
    keys = all_keys()
    traffic = Traffic()
    async with ready_pool(*urls(old), replicas=REPLICAS, timeout=TIMEOUT) as before:
        for key in keys:
            await traffic.write(before, key)
        await placed_exactly(before, every)
    async with ready_pool(
        *urls(new), replicas=REPLICAS, previous=urls(old), timeout=TIMEOUT
    ) as during:
        assert during.placement is not None and during.previous is not None
        moved, to = moved_fraction(during.previous, during.placement)
        added = {s.url for s in new} - {s.url for s in old}
        removed = {s.url for s in old} - {s.url for s in new}
        ideal = len(added or removed) / max(len(old), len(new))
        assert abs(moved - ideal) < 0.1 * ideal, (moved, ideal)
        if added:
            assert to == added  # placements move only to the new servers
        argv = ["repair", "--rate", "0", "--replicas", str(REPLICAS), "--progress", "never"]
        for s in new:
            argv += ["-s", s.url]
        for s in old:
            argv += ["--previous", s.url]
        codes: list[int] = []
        async with trio.open_nursery() as nursery:
            # A writer and a reader per half of the keys, all through the migrating pool.
            half = len(keys) // 2
            for part in (keys[:half], keys[half:]):
                nursery.start_soon(traffic.writer, during, part)
                nursery.start_soon(traffic.reader, during, part)
            for _ in range(2):  # the second pass finds nothing left
                codes.append(await trio.to_thread.run_sync(main, argv))
            traffic.stop.set()
        assert codes == [0, 0]
        assert traffic.reads > len(keys) and traffic.writes > len(keys)
        for key in keys:
            await traffic.read(during, key)
    async with ready_pool(*urls(new), replicas=REPLICAS, timeout=TIMEOUT) as after:
        await placed_exactly(after, every)
        for key in keys:
            await traffic.read(after, key)
        # Exactly what was acknowledged, no more: nothing was counted twice.
        for key in keys[:KEYS]:
            assert await Counter(after, key, read_quorum=3).get() == traffic.acked[key]


async def test_grow_from_six_to_nine_servers_under_live_traffic(
    nine: list[RedisServer],
) -> None:
    await migrate(nine[:6], nine, nine)


async def test_shrink_from_nine_to_six_servers_under_live_traffic(
    nine: list[RedisServer],
) -> None:
    await migrate(nine, nine[:6], nine)
    for s in nine[6:]:
        assert decode_reply(await s.acommand("DBSIZE")) == 0


# ---------------------------------------- writes, expiry and reads of keys not moved yet
#
# Growing from two servers to four with replicas=2: a key whose new owners are the two
# new servers is, until the walker moves it, only on its old owners (servers 0 and 1).


@pytest.fixture
def four(redis_factory: RedisFactory) -> list[RedisServer]:
    """Four fresh servers: the old layout is the first two."""
    return redis_factory.many(4)


def on_new_servers_only(prefix: str, new: Sequence[str], count: int = 1) -> list[str]:
    """``count`` names ``prefix + n`` whose owners (replicas=2) are servers 2 and 3 only."""
    placement = Placement(list(new), 2)
    found = [
        name
        for name in (f"{prefix}{n:06d}" for n in range(100_000))
        if set(placement.owners(name)) == {2, 3}
    ]
    return found[:count]


SID_PREFIX = "a" * 22  # session ids of 28 characters
#: A migrating pool whose read repair budget is spent (a busy site): a read never
#: copies a key to its new owners, so writes meet keys the walker has not moved yet.
NO_REPAIR = {"repair_rate": 1e-6}


def moved_sids(new: Sequence[str], count: int = 1) -> list[str]:
    """Session ids whose key's new owners are servers 2 and 3 only."""
    keys = on_new_servers_only("session:" + SID_PREFIX, new, count)
    return [k.removeprefix("session:") for k in keys]


async def test_save_during_a_migration_writes_into_a_session_only_the_old_owners_hold(
    four: list[RedisServer],
) -> None:
    old, new = urls(four[:2]), urls(four)
    live, deleted = moved_sids(new, 2)
    async with ready_pool(*old, replicas=2, timeout=TIMEOUT) as before:
        for sid in (live, deleted):
            await SessionStore(before, ttl=600).save(sid, {"user": "alice", "cart": []})
    async with ready_pool(*new, replicas=2, previous=old, timeout=TIMEOUT, **NO_REPAIR) as pool:
        store = SessionStore(pool, ttl=600)
        session = await store.load(live)
        assert session == {"user": "alice", "cart": []}
        session["cart"] = ["book"]
        # The new owners hold nothing of it yet: the old ones say it is live.
        assert await store.save(live, session) is True
        assert await store.load(live) == {"user": "alice", "cart": ["book"]}
        assert (await raw_hash(four[2], "session:" + live)) != {}  # written to the new owners
        # A session deleted since it was loaded is still refused (the clear is on
        # the new owners, the old copies still hold the data).
        stale = await store.load(deleted)
        await SessionStore(pool, ttl=600).delete(deleted)
        stale["cart"] = ["book"]
        assert await store.save(deleted, stale) is False
        assert await store.load(deleted) == {}
        # Once moved, with the old owners down, the new owners alone say it is live.
        assert await repair_key(pool, "session:" + live)
        session = await store.load(live)
        for s in four[:2]:
            await s.afreeze()
        try:
            session["cart"] = ["book", "pen"]
            assert await store.save(live, session) is True
            assert (await store.load(live))["cart"] == ["book", "pen"]
        finally:
            for s in four[:2]:
                await s.athaw()


async def test_save_during_a_migration_with_the_old_owners_down_is_no_logout(
    four: list[RedisServer],
) -> None:
    old, new = urls(four[:2]), urls(four)
    (sid,) = moved_sids(new)
    async with ready_pool(*old, replicas=2, timeout=TIMEOUT) as before:
        await SessionStore(before, ttl=600).save(sid, {"user": "alice"})
    async with ready_pool(*new, replicas=2, previous=old, timeout=TIMEOUT, **NO_REPAIR) as pool:
        store = SessionStore(pool, ttl=600)
        session = await store.load(sid)
        for s in four[:2]:
            await s.afreeze()
        try:
            session["user"] = "bob"
            # Nobody that could hold it said it is gone: not "deleted", a QuorumError.
            with pytest.raises(QuorumError):
                await store.save(sid, session)
        finally:
            for s in four[:2]:
                await s.athaw()
        await wait_until(lambda: pool.available == len(pool), what="old owners back")
        assert await store.load(sid) == {"user": "alice"}


async def test_writes_during_a_migration_refresh_the_expiry_of_the_old_copies(
    four: list[RedisServer],
) -> None:
    old, new = urls(four[:2]), urls(four)
    ck, sk, mk, fresh, plain = on_new_servers_only("k:", new, 5)
    touched, saved = moved_sids(new, 2)
    long = 5000.0  # the migrating pool's writes: far longer than the old layout's 1000 s
    async with ready_pool(*old, replicas=2, timeout=TIMEOUT) as before:
        await Counter(before, ck, ttl=1000).incr(10)
        await Set(before, sk, ttl=1000).add("a", "b", "c")
        await HashMap(before, mk, ttl=1000).set({"a": 1})
        for sid in (touched, saved):
            await SessionStore(before, ttl=1000).save(sid, {"user": "alice"})
    await four[0].acommand("SET", plain, "not ours")  # a foreign value on an old owner
    async with ready_pool(*new, replicas=2, previous=old, timeout=TIMEOUT, **NO_REPAIR) as pool:
        store = SessionStore(pool, ttl=long)
        await Counter(pool, ck, ttl=long).incr(1)
        await Set(pool, sk, ttl=long).add("d")
        await HashMap(pool, mk, ttl=long).set({"b": 2})
        await Counter(pool, fresh, ttl=long).incr(1)  # on no old owner
        await HashMap(pool, plain, ttl=long).set({"x": 1})
        await store.touch(touched)
        session = await store.load(saved)
        session["cart"] = ["book"]
        assert await store.save(saved, session) is True
        keys = [ck, sk, mk, "session:" + touched, "session:" + saved]

        async def refreshed() -> bool:
            return all([min(await pttls(four[:2], k)) > 1000_000 for k in keys])

        await wait_until(refreshed, what="the old copies' expiry refreshed")
        await wait_until(lambda: pool._background == 0, what="background work done")
        assert await pttls(four[:2], fresh) == [-2, -2]  # no key created there
        assert await pttls(four[:1], plain) == [-1]  # a foreign value left as it is
        assert await Counter(pool, ck).get() == 11
        assert await Set(pool, sk).get() == {"a", "b", "c", "d"}
        assert await HashMap(pool, mk).get() == {"a": 1, "b": 2}


async def test_reads_during_a_migration_with_the_old_owners_down_raise(
    four: list[RedisServer],
) -> None:
    old, new = urls(four[:2]), urls(four)
    held, moved = moved_sids(new, 2)
    (never,) = on_new_servers_only("never:", new)
    async with ready_pool(*old, replicas=2, timeout=TIMEOUT) as before:
        for sid in (held, moved):
            await SessionStore(before).save(sid, {"user": "alice"})
    async with ready_pool(*new, replicas=2, previous=old, timeout=TIMEOUT, **NO_REPAIR) as pool:
        store = SessionStore(pool)
        # Every owner answers: an absent key is absent.
        assert await HashMap(pool, never).get() == {}
        assert await HashMap(pool, never, read_quorum=2, hedged=True).get() == {}
        assert await repair_key(pool, "session:" + moved)

        async def gone_from_old() -> bool:
            return await pttls(four[:2], "session:" + moved) == [-2, -2]

        await wait_until(gone_from_old, what="the moved copy removed from the old owners")
        for s in four[:2]:
            await s.afreeze()
        try:
            # The new owners hold nothing of it, and nobody that may hold it answered.
            with pytest.raises(QuorumError):
                await store.load(held)
            with pytest.raises(QuorumError):
                await SessionStore(pool, hedged=True).load(held)
            with pytest.raises(QuorumError):
                await HashMap(pool, never).get()
            # Moved: the new owners hold it, and count.
            assert await store.load(moved) == {"user": "alice"}
            assert await SessionStore(pool, read_quorum=2, hedged=True).load(moved) == {
                "user": "alice"
            }
        finally:
            for s in four[:2]:
                await s.athaw()
        await wait_until(
            lambda: all(st.state is ServerState.UP for st in pool.status()), what="all up"
        )
        # The mirror: the new owners down. The old owners' "no such key" of the
        # moved session said it was absent (a logout); the walker moved it away.
        for s in four[2:]:
            await s.afreeze()
        try:
            with pytest.raises(QuorumError):
                await store.load(moved)
            with pytest.raises(QuorumError):
                await SessionStore(pool, hedged=True).load(moved)
            assert await store.load(held) == {"user": "alice"}  # not moved: held there
        finally:
            for s in four[2:]:
                await s.athaw()


async def test_growing_from_one_server_an_absent_key_reads_absent_once_the_old_owner_answers(
    four: list[RedisServer],
) -> None:
    old, new = urls(four[:1]), urls(four[:3])
    placement = Placement(new, 2)
    key = next(k for k in (f"none:{n}" for n in range(10_000)) if 0 not in placement.owners(k))
    async with ready_pool(*new, replicas=2, previous=old, timeout=TIMEOUT, **NO_REPAIR) as pool:
        # One old owner, read_quorum=2: the new owners' "no such key" counts once it answered.
        assert await HashMap(pool, key, read_quorum=2).get() == {}
        assert await HashMap(pool, key, read_quorum=2, hedged=True).get() == {}
        await four[0].afreeze()
        try:
            with pytest.raises(QuorumError):
                await HashMap(pool, key, read_quorum=2).get()
        finally:
            await four[0].athaw()
