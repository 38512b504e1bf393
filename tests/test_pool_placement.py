"""The pool with placement (``replicas=N``) against nine real redis-server processes.

What is on each server is checked on the server itself, over a raw socket, never
through the pool under test. Every wait for a state change polls with a deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio

from tests.conftest import RedisFactory
from tests.harness.helpers import command_calls, urls, wait_until
from tests.test_pool import holds, ready_pool
from trio_redisha import (
    ConfigurationError,
    CrossSlotError,
    Pool,
    QuorumError,
    Script,
    ServerState,
    ServerTimeout,
    ServerUnavailable,
    UnsupportedCommand,
    open_pool,
)
from trio_redisha.placement import canonical_identity, key_partition
from trio_redisha.testing import RedisServer, decode_reply

#: A pool deadline roomy enough for a loaded 2-core machine.
TIMEOUT = 1.0


@pytest.fixture
def nine(redis_factory: RedisFactory) -> list[RedisServer]:
    """Nine fresh servers (no persistence), started concurrently."""
    return redis_factory.many(9)


async def keys_on(server: RedisServer) -> set[bytes]:
    """Every key the server holds, read on the server itself."""
    value = decode_reply(await server.acommand("KEYS", "*"))
    assert isinstance(value, list)
    return {k for k in value if isinstance(k, bytes)}


async def raw_get(server: RedisServer, key: str) -> object:
    return decode_reply(await server.acommand("GET", key))


def by_label(servers: Sequence[RedisServer]) -> dict[str, RedisServer]:
    return {s.url: s for s in servers}


def keys_with_other_owners(pool: Pool, first: str) -> str:
    """A key whose owners differ from ``first``'s."""
    for n in range(1000):
        key = f"other{n}"
        if pool.owners(key) != pool.owners(first):
            return key
    raise AssertionError("no key with other owners")


# --------------------------------------------------------------------- configuration


@pytest.mark.parametrize("replicas", [0, 4, -1, True, 2.0, "2"])
def test_replicas_out_of_range_is_refused(replicas: object) -> None:
    with pytest.raises(ConfigurationError, match="replicas"):
        Pool("redis://127.0.0.1:1", "redis://127.0.0.1:2", "redis://127.0.0.1:3", replicas=replicas)  # type: ignore[arg-type]


def test_write_quorum_counts_owners() -> None:
    servers = [f"redis://127.0.0.1:{p}" for p in range(1, 10)]
    with pytest.raises(ConfigurationError, match=r"write_quorum must be an int in 1\.\.3"):
        Pool(*servers, replicas=3, write_quorum=4)
    assert Pool(*servers, replicas=3, write_quorum=3).write_quorum == 3


def test_previous_needs_replicas() -> None:
    with pytest.raises(ConfigurationError, match="replicas"):
        Pool("redis://127.0.0.1:1", previous=("redis://127.0.0.1:2",))
    with pytest.raises(ConfigurationError, match="sequence"):
        Pool("redis://127.0.0.1:1", replicas=1, previous="redis://127.0.0.1:2")


@pytest.mark.parametrize(
    "pair",
    [
        ("redis://localhost:6379", "redis://127.0.0.1:6379"),
        ("redis://127.0.0.1", "rediss://127.0.0.1:6379/0"),
        ("redis://[::1]:6379", "redis://[0:0::1]:6379"),
        ("unix:///tmp//r.sock", "unix:///tmp/x/../r.sock"),
    ],
)
@pytest.mark.parametrize("replicas", [None, 1])
def test_one_identity_rule_for_duplicates(pair: tuple[str, str], replicas: int | None) -> None:
    # The pool's duplicate check and placement use the same canonical identity.
    with pytest.raises(ConfigurationError, match="twice"):
        Pool(*pair, replicas=replicas)


def test_every_spelling_of_a_command_routes_alike() -> None:
    pool = Pool(*[f"redis://127.0.0.1:{p}" for p in range(7001, 7010)], replicas=3)
    assert pool.placement is not None
    owners = pool.placement.owners(b"k1")
    for args in (["GET", "k1"], [b"get", b"k1"], ["Get", bytearray(b"k1")], ["SET", "k1", 1]):
        assert pool.targets(args) == owners, args
    assert pool.targets(["GET", 42]) == pool.placement.owners(b"42")
    # Multi-key and container commands take the slow path, to the same owners.
    assert pool.targets(["MGET", "{k1}a", "{k1}b"]) == pool.placement.owners(b"k1")
    assert pool.targets(["OBJECT", "ENCODING", "k1"]) == owners
    with pytest.raises(UnsupportedCommand, match="wrong number of arguments"):
        pool.targets(["GET"])
    with pytest.raises(UnsupportedCommand, match="wrong number of arguments"):
        pool.targets(["GET", "k1", "extra"])


def test_owners_are_the_same_in_any_order_and_spelling() -> None:
    ports = range(7001, 7010)
    a = Pool(*[f"redis://localhost:{p}" for p in ports], replicas=3)
    b = Pool(*[f"redis://127.0.0.1:{p}/0" for p in reversed(ports)], replicas=3)
    for n in range(200):
        key = f"user:{n}"
        assert [canonical_identity(x) for x in a.owners(key)] == [
            canonical_identity(x) for x in b.owners(key)
        ]
    assert len(a.owners("k")) == 3 and len(set(a.owners("k"))) == 3
    assert a.owners("{user42}:cart") == a.owners("{user42}:profile")
    # Without placement every server owns every key.
    assert Pool("redis://127.0.0.1:1", "redis://127.0.0.1:2").owners("k") == (
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
    )


# ------------------------------------------------------------------------ routing


async def test_keys_live_on_exactly_their_owners(nine: list[RedisServer]) -> None:
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        expected: dict[str, set[bytes]] = {s.url: set() for s in nine}
        for n in range(120):
            key = f"k{n}"
            replies = await pool.set(key, n, quorum=3)
            assert replies == ["OK", "OK", "OK"]
            assert replies.servers == pool.owners(key)
            for label in replies.servers:
                expected[label].add(key.encode())
            got = await pool.get(key)
            assert got.servers == pool.owners(key) and got == [str(n).encode()] * 3
        for label, keys in expected.items():
            assert await keys_on(servers[label]) == keys, label
        # Every server got a share: the layout spreads the keys.
        assert all(keys for keys in expected.values())


async def test_hash_tags_and_multi_key_commands(nine: list[RedisServer]) -> None:
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        owners = pool.owners("{user42}:cart")
        assert owners == pool.owners("{user42}:profile")
        replies = await pool.execute("MSET", "{user42}:cart", "c", "{user42}:profile", "p")
        assert replies.servers == owners and replies == ["OK"] * 3
        got = await pool.execute("MGET", "{user42}:cart", "{user42}:profile")
        assert got.servers == owners and got == [[b"c", b"p"]] * 3
        for label, server in servers.items():
            want = {b"{user42}:cart", b"{user42}:profile"} if label in owners else set()
            assert await keys_on(server) == want


async def test_cross_slot_raises_before_anything_is_sent(nine: list[RedisServer]) -> None:
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        other = keys_with_other_owners(pool, "a")
        with pytest.raises(CrossSlotError, match="MSET: key 2 of 2") as caught:
            await pool.execute("MSET", "a", 1, other, 2)
        assert caught.value.command == "MSET"
        with pytest.raises(CrossSlotError):
            await pool.execute_script(Script("return 1"), keys=["a", other])
        # An unknown command cannot be routed: its keys cannot be found.
        with pytest.raises(UnsupportedCommand, match="unknown command"):
            await pool.execute("NOSUCHCMD", "a")
        # A quorum above N is refused before anything is sent.
        with pytest.raises(ConfigurationError, match="quorum"):
            await pool.execute("SET", "a", 1, quorum=4)
        for server in nine:
            assert await command_calls(server, "mset") == 0
            assert await command_calls(server, "eval") == 0
            assert await command_calls(server, "evalsha") == 0
            assert await command_calls(server, "set") == 0
            assert await keys_on(server) == set()


async def test_sort_patterns_must_share_the_key_s_owners(nine: list[RedisServer]) -> None:
    # SORT ... BY w_* GET o_* went to the list's owners, which do not hold the
    # weights and objects: the answer was [None, None, None], silently.
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        for suffix, weight in (("a", 3), ("b", 1), ("c", 2)):
            await pool.execute("RPUSH", "{t}:ids", suffix)
            await pool.execute("SET", f"{{t}}:w_{suffix}", weight)
            await pool.execute("SET", f"{{t}}:o_{suffix}", f"obj-{suffix}")
        for name in ("SORT", "sort_ro"):
            got = await pool.execute(name, "{t}:ids", "BY", "{t}:w_*", "GET", "{t}:o_*", "GET", "#")
            assert got.servers == pool.owners("{t}:ids")
            assert got == [[b"obj-b", b"b", b"obj-c", b"c", b"obj-a", b"a"]] * 3
            for pattern in (["BY", "w_*"], ["GET", "o_*"], ["BY", "{t}:w_*", "GET", "*"]):
                with pytest.raises(CrossSlotError, match="pattern") as caught:
                    await pool.execute(name, "{t}:ids", *pattern)
                # Its position, never what it holds (a pattern names keys).
                assert pattern[-1] not in str(caught.value).split("e.g.")[0]
        other = keys_with_other_owners(pool, "{t}:ids")
        with pytest.raises(CrossSlotError):  # a tag of other owners
            await pool.execute("SORT", "{t}:ids", "BY", "{" + other + "}:w_*")
        # No key named: BY nosort (no '*'), GET # and a LIMIT's numbers.
        got = await pool.execute("SORT", "{t}:ids", "BY", "nosort", "LIMIT", 0, 2, "GET", "#")
        assert got == [[b"a", b"b"]] * 3
        assert await pool.execute("SORT", "{t}:ids", "ALPHA") == [[b"a", b"b", b"c"]] * 3


async def test_a_sort_without_store_is_routed_as_a_read(nine: list[RedisServer]) -> None:
    # SORT is flagged a write (for STORE): with owners down, a plain SORT went
    # to a fallback as a sloppy write and left a hint for a read.
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        key = "{s}:ids"
        await pool.execute("RPUSH", key, 2, 1)
        owners = pool._owner_indices(key)
        await servers[pool.servers[owners[0]]].akill()
        await wait_state(pool, owners[0], ServerState.DOWN)
        got = await pool.execute("SORT", key)
        # A read: the owners up, and a fallback for the one down (it holds nothing).
        assert got.values == [[b"1", b"2"], [b"1", b"2"], []]
        assert pool._hinted(key) == () and pool.stats.sloppy_writes == 0
        stored = await pool.execute("SORT", key, "STORE", "{s}:sorted", quorum=3)
        assert stored.values == [2, 2, 0]  # a write: a fallback stands in for the owner
        assert pool.stats.sloppy_writes == 1


@pytest.mark.parametrize(
    "search",
    [
        ("GEORADIUS", "{g}:geo", 13.36, 38.11, 10, "km"),
        ("GEORADIUSBYMEMBER", "{g}:geo", "a", 10, "km"),
    ],
)
async def test_a_georadius_without_store_is_routed_as_a_read(
    nine: list[RedisServer], search: tuple[object, ...]
) -> None:
    # GEORADIUS is flagged a write for its STORE, as SORT is: a plain search
    # with an owner down went to a fallback as a sloppy write.
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        key = "{g}:geo"
        await pool.execute("GEOADD", key, 13.36, 38.11, "a")
        owners = pool._owner_indices(key)
        await servers[pool.servers[owners[0]]].akill()
        await wait_state(pool, owners[0], ServerState.DOWN)
        got = await pool.execute(*search)
        assert got.values == [[b"a"], [b"a"], []]
        assert pool._hinted(key) == () and pool.stats.sloppy_writes == 0
        stored = await pool.execute(*search, "STORE", "{g}:found", quorum=3)
        assert stored.values == [1, 1, 0]
        assert pool.stats.sloppy_writes == 1


async def test_keyless_commands_go_to_every_server(nine: list[RedisServer]) -> None:
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        ping = await pool.ping()
        assert ping == ["PONG"] * 9 and ping.servers == pool.servers
        await pool.set("x", 1)
        sizes = await pool.execute("DBSIZE")
        assert sizes.servers == pool.servers and sorted(sizes) == [0] * 6 + [1] * 3
        # A keyless command's quorum counts every server, a keyed one's the owners.
        assert (await pool.execute("PING", quorum=9)).ok_count == 9
        with pytest.raises(ConfigurationError, match=r"quorum must be an int in 1\.\.3"):
            await pool.execute("MGET", "x", quorum=5)
        # EVAL with no keys is keyless too.
        assert await pool.execute("EVAL", "return 7", 0) == [7] * 9
        assert await pool.execute("FLUSHALL") == ["OK"] * 9
        assert await pool.execute("DBSIZE") == [0] * 9


async def test_scripts_route_by_their_keys(nine: list[RedisServer]) -> None:
    script = Script("return redis.call('SET', KEYS[1], ARGV[1])")
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        replies = await pool.execute_script(script, keys=["s"], args=["v"], quorum=3)
        assert replies.servers == pool.owners("s") and replies == ["OK"] * 3
        # Explicit indices still go where they say.
        explicit = await pool.execute_script(script, keys=["s"], args=["w"], servers=[0, 8])
        assert explicit.servers == (pool.servers[0], pool.servers[8])
        assert pool._read_targets("s") == pool._owner_indices("s")
        assert pool._write_targets("s") == pool._owner_indices("s")
        assert tuple(pool.servers[i] for i in pool._owner_indices("s")) == pool.owners("s")


# ------------------------------------------------------------------ sloppy quorum


async def wait_state(pool: Pool, index: int, state: ServerState) -> None:
    await wait_until(
        holds(lambda: pool.status()[index].state is state),
        what=f"server {index} {state.value}",
    )


async def test_sloppy_writes_land_on_fallbacks_and_reads_see_them(
    nine: list[RedisServer],
) -> None:
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        key = "cart:7"
        owners = pool._owner_indices(key)
        preference = pool.placement.preference(key) if pool.placement else ()
        fallback = preference[3]
        down = owners[:2]
        for i in down:
            await servers[pool.servers[i]].akill()
        for i in down:
            await wait_state(pool, i, ServerState.DOWN)
        replies = await pool.set(key, "v1", quorum=2)
        # Every owner has its entry (two unavailable), then the one fallback needed.
        assert replies.servers == tuple(pool.servers[i] for i in (*owners, fallback))
        assert [type(r) for r in replies[:2]] == [ServerUnavailable] * 2
        assert replies[2:] == ["OK", "OK"]
        assert pool.stats.sloppy_writes == 1
        assert await raw_get(servers[pool.servers[fallback]], key) == b"v1"
        assert pool._hinted(key) == (fallback,)
        # A read while the owners are down includes a fallback per owner down.
        read = await pool.get(key)
        assert read.servers == tuple(pool.servers[i] for i in (*owners, *preference[3:5]))
        assert read.values == [b"v1", b"v1", None]
        # The owners come back empty: the read still sees the value, from the hint.
        for i in down:
            await servers[pool.servers[i]].astart()
        for i in down:
            await wait_state(pool, i, ServerState.UP)
        read = await pool.get(key)
        assert read.servers == tuple(pool.servers[i] for i in (*owners, fallback))
        assert read == [None, None, b"v1", b"v1"]
        # Once handed back (the CRDT layer and repair do it), reads use the owners only.
        pool._handed_back(key)
        assert (await pool.get(key)).servers == pool.owners(key)
        # Nothing went to servers that are neither owners nor the fallback.
        for i, label in enumerate(pool.servers):
            if i not in (*owners, fallback):
                assert await keys_on(servers[label]) == set()


async def test_a_refused_or_cancelled_write_records_no_hint(nine: list[RedisServer]) -> None:
    # targets() recorded the hint and counted a sloppy write before the
    # options were checked, and before the cancel checkpoint: every later
    # read of the key went to a fallback that never got anything.
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=TIMEOUT) as pool:
        key = "cart:8"
        owners = pool._owner_indices(key)
        for i in owners[:2]:
            await servers[pool.servers[i]].akill()
        for i in owners[:2]:
            await wait_state(pool, i, ServerState.DOWN)
        bad: list[dict[str, Any]] = [{"timeout": -1}, {"decode": "yes"}, {"wait_for": 10}]
        for options in bad:
            with pytest.raises(ConfigurationError):
                await pool.execute("SET", key, "v", quorum=2, **options)
        with trio.CancelScope() as scope:
            scope.cancel()
            await pool.execute("SET", key, "v", quorum=2)
        script = Script("return redis.call('SET', KEYS[1], ARGV[1])")
        with trio.CancelScope() as scope:
            scope.cancel()
            await pool.execute_script(script, [key], ["v"], quorum=2)
        assert pool._hinted(key) == ()
        assert pool.stats.sloppy_writes == 0
        assert pool.stats.replies_expected == 0  # nothing was sent


async def test_a_sloppy_write_of_keys_in_two_partitions_is_found_by_a_read_of_either(
    redis_factory: RedisFactory,
) -> None:
    seven = redis_factory.many(7)
    servers = by_label(seven)
    async with ready_pool(*urls(seven), replicas=2, timeout=TIMEOUT) as pool:
        placement = pool.placement
        assert placement is not None
        a = "a0"
        # Another partition with the same owners (so one command may hold both
        # keys) but other fallbacks.
        b = next(
            f"b{i}"
            for i in range(100_000)
            if key_partition(f"b{i}") != key_partition(a)
            and placement.owners(f"b{i}") == placement.owners(a)
            and set(placement.preference(f"b{i}")[2:4]).isdisjoint(placement.preference(a)[2:4])
        )
        for i in placement.owners(a):
            await servers[pool.servers[i]].akill()
        for i in placement.owners(a):
            await wait_state(pool, i, ServerState.DOWN)
        replies = await pool.execute("MSET", a, "1", b, "2", quorum=2)
        assert replies.ok_count >= 2
        for key, value in ((a, b"1"), (b, b"2")):
            # Another process, which knows no hint, with the same owners down
            # and the same fallbacks up: it reads the key's own fallbacks.
            async with open_pool(*urls(seven), replicas=2, timeout=TIMEOUT) as other:
                await wait_until(holds(lambda: other.available == 5), what="the others up")
                for i in placement.owners(a):
                    await wait_state(other, i, ServerState.DOWN)
                read = await other.execute("GET", key)
                assert value in read.values, (key, read.servers, list(read))
            # And this process, through its hints.
            assert value in (await pool.execute("GET", key)).values
        # A multi-key read of both keys reaches copies of each.
        read = await pool.execute("MGET", a, b)
        assert any(r == [b"1", b"2"] for r in read.values)


async def test_a_hung_owner_costs_one_deadline_once(nine: list[RedisServer]) -> None:
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=0.3) as pool:
        key = "session:9"
        owners = pool._owner_indices(key)
        frozen = [servers[pool.servers[i]] for i in owners[:2]]
        for s in frozen:
            await s.afreeze()
        try:
            start = trio.current_time()
            with pytest.raises(QuorumError):
                await pool.set(key, "a", quorum=2)
            first = trio.current_time() - start
            assert first < 0.3 + 0.5
            # Their circuits are open now: the next write goes sloppy at once.
            start = trio.current_time()
            replies = await pool.set(key, "b", quorum=2)
            assert trio.current_time() - start < 0.3
            assert replies.ok_count == 2 and len(replies) == 4
            assert isinstance(replies[0], ServerUnavailable)
            read = await pool.get(key)
            assert b"b" in read.values
        finally:
            for s in frozen:
                await s.athaw()


async def test_timeouts_are_entries_not_errors(nine: list[RedisServer]) -> None:
    servers = by_label(nine)
    async with ready_pool(*urls(nine), replicas=3, timeout=0.3, trip_after=5) as pool:
        key = "k"
        owner = pool._owner_indices(key)[0]
        await servers[pool.servers[owner]].afreeze()
        try:
            replies = await pool.set(key, 1)
            assert isinstance(replies[0], ServerTimeout) and replies[1:] == ["OK", "OK"]
        finally:
            await servers[pool.servers[owner]].athaw()


# -------------------------------------------------------------------- migrations


async def test_growing_from_six_to_nine_reads_the_old_layout(nine: list[RedisServer]) -> None:
    old, new = urls(nine[:6]), urls(nine)
    values = {f"user:{n}": f"v{n}".encode() for n in range(150)}
    async with ready_pool(*old, replicas=3, timeout=TIMEOUT) as pool:
        for key, value in values.items():
            assert (await pool.set(key, value, quorum=3)).ok_count == 3
    async with ready_pool(*new, replicas=3, previous=old, timeout=TIMEOUT) as pool:
        assert pool.servers == tuple(new)
        assert pool.previous is not None
        moved = 0
        for key, value in values.items():
            read = await pool.get(key)
            owners = pool.owners(key)
            before = tuple(pool.servers[pool._previous_index[i]] for i in pool.previous.owners(key))
            assert read.servers == owners + tuple(x for x in before if x not in owners)
            assert value in read.values
            moved += set(owners) != set(before)
        assert 0 < moved < len(values)
        # Writes go to the new owners only.
        write = await pool.set("user:0", "new", quorum=3)
        assert write.servers == pool.owners("user:0")
        assert b"new" in (await pool.get("user:0")).values


async def test_shrinking_keeps_reading_servers_being_removed(nine: list[RedisServer]) -> None:
    old, new = urls(nine), urls(nine[:6])
    async with ready_pool(*old, replicas=3, timeout=TIMEOUT) as pool:
        for n in range(60):
            await pool.set(f"k{n}", n, quorum=3)
    # The servers being removed are connected too, after the new ones.
    async with ready_pool(*new, replicas=3, previous=old, timeout=TIMEOUT) as pool:
        assert pool.servers == tuple(new) + tuple(old[6:])
        for n in range(60):
            read = await pool.get(f"k{n}")
            assert str(n).encode() in read.values
            write = await pool.set(f"k{n}", "x")
            assert set(write.servers) <= set(new)
        # Keyless commands go to every server the pool holds.
        assert await pool.ping() == ["PONG"] * 9
