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
from tests.harness.helpers import urls
from tests.test_pool import ready_pool
from trio_redisha import Counter, HashMap, Pool
from trio_redisha.cli import main
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
