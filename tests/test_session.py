"""SessionStore (and the HashMap.clear under its delete) on real redis-servers.

Servers that must really miss a write (the delete) are reached through a fault
proxy, whose ``partition()`` drops the bytes in flight; "two app processes" are
two pools, each with its own actor id and clock.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

import trio_redisha
from tests.conftest import RedisFactory
from tests.harness.fault_proxy import FaultProxy, open_fault_proxy
from tests.harness.helpers import FAST, eventually, pttls, raw, raw_hash, urls
from tests.test_pool_placement import wait_state
from trio_redisha import (
    CodecError,
    CodecTypeError,
    ConfigurationError,
    ForeignValueError,
    HashMap,
    HybridLogicalClock,
    Pool,
    QuorumError,
    Replies,
    ReplyError,
    ServerState,
    SessionStore,
)
from trio_redisha.crdt import MARKER_FIELD, Entry, context_for, detect_type, repair_key
from trio_redisha.session import DEFAULT_TTL, Session, _scrub
from trio_redisha.testing import RedisServer


@asynccontextmanager
async def pool_on(*urls: str, clock_offset: float = 0.0, **options: Any) -> AsyncIterator[Pool]:
    """A pool ("an app process") on the given servers; ``clock_offset`` skews its clock."""
    async with trio_redisha.open_pool(*urls, **{**FAST, **options}) as pool:
        if clock_offset:
            context_for(pool).clock = HybridLogicalClock(wall=lambda: time.time() + clock_offset)
        yield pool


async def load_alone(server: RedisServer, sid: str) -> dict[str, Any]:
    """What one server holds for a session, by itself."""
    async with pool_on(server.url) as pool:
        return await SessionStore(pool).load(sid)


# --- ids ---------------------------------------------------------------------------


def test_new_ids_are_unique_long_and_valid() -> None:
    ids = {SessionStore.new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for sid in list(ids)[:50]:
        assert len(sid) == 43
        assert len(base64.urlsafe_b64decode(sid + "=")) == 32  # 256 random bits
        assert SessionStore.is_valid_id(sid)


INVALID_IDS: list[Any] = [
    "",
    "short",
    "a" * 21,  # < 128 bits
    "a" * 129,  # too long
    "a" * 10_000,
    "abc/def" + "a" * 30,
    "../../etc/passwd" + "a" * 20,
    "a" * 30 + " ",
    "a" * 30 + "\n",
    "a" * 30 + "*",  # a glob character
    "é" * 30,
    None,
    b"a" * 43,
    43,
]


async def test_invalid_ids_are_unknown_and_never_sent(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        for server in redis_servers:
            server.kill()
        # Every server is down: anything sent would raise QuorumError.
        with pytest.raises(QuorumError):
            await store.load(store.new_id())
        for sid in INVALID_IDS:
            assert await store.load(sid) == {}
            await store.delete(sid)
            await store.touch(sid)
            with pytest.raises(ConfigurationError):
                await store.save(sid, {"a": 1})
    assert SessionStore.is_valid_id("a" * 22) and SessionStore.is_valid_id("-_" * 64)


# --- save and load --------------------------------------------------------------------


async def test_round_trip(redis_servers: list[RedisServer]) -> None:
    data = {"user": "alice", "n": 1, "cart": ["a", "b"], "prefs": {"x": None, "y": 1.5}}
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool, prefix="app:s:")
        assert store.ttl == DEFAULT_TTL == 14 * 24 * 3600
        sid = store.new_id()
        assert await store.load(sid) == {}
        await store.save(sid, data)
        loaded = await store.load(sid)
        assert loaded == data and isinstance(loaded, dict) and loaded.sid == sid
    for server in redis_servers:
        stored = await raw_hash(server, "app:s:" + sid)
        assert stored[MARKER_FIELD] == b"map:1"
        assert stored[b"f:user"].endswith(b':+"alice"')
        assert detect_type(stored) == "map"


async def test_save_writes_only_what_changed(redis_servers: list[RedisServer]) -> None:
    server = redis_servers[0]
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        sid = store.new_id()
        key = store.key(sid)
        await store.save(sid, {"user": "alice", "n": 1, "cart": ["a"], "tmp": 0})
        before = await raw_hash(server, key)
        session = await store.load(sid)
        session["n"] += 1
        session["cart"].append("b")  # changed in place: still seen
        del session["tmp"]
        await store.save(sid, session)
        after = await raw_hash(server, key)
        assert after[b"f:user"] == before[b"f:user"]  # untouched: not rewritten
        assert after[b"f:n"] != before[b"f:n"] and after[b"f:cart"].endswith(b':+["a","b"]')
        assert after[b"f:tmp"].endswith(b":-")  # a tombstone
        assert await store.load(sid) == {"user": "alice", "n": 2, "cart": ["a", "b"]}
        # Saving again without changes sends no merge script (only a TTL refresh).
        await store.save(sid, session)
        assert await raw_hash(server, key) == after
        # A plain mapping writes every key it has, deletes none.
        await store.save(sid, {"n": 2})
        assert (await raw_hash(server, key))[b"f:n"] != after[b"f:n"]
        assert await store.load(sid) == {"user": "alice", "n": 2, "cart": ["a", "b"]}
        # Keys are str; values must encode (nothing is sent otherwise).
        with pytest.raises(CodecTypeError):  # a CodecError and a TypeError
            await store.save(sid, {"n": 3, 1: "x"})  # type: ignore[dict-item]
        with pytest.raises(CodecError):
            await store.save(sid, {"n": 3, "x": object()})
        assert (await store.load(sid))["n"] == 2


async def test_concurrent_requests_keep_each_others_changes(
    redis_servers: list[RedisServer],
) -> None:
    """Two app processes change different keys of one session at once: both survive.

    Had each written its whole dict, the later one's stale copy of the other key
    would have won."""
    async with (
        pool_on(*urls(redis_servers)) as app1,
        pool_on(*urls(redis_servers)) as app2,
        pool_on(*urls(redis_servers)) as reader,
    ):
        one, two = SessionStore(app1), SessionStore(app2)
        sid = one.new_id()
        await one.save(sid, {"user": "alice", "cart": [], "theme": "light", "visits": 1})
        for round_ in range(5):
            s1 = await one.load(sid)
            s2 = await two.load(sid)
            s1["cart"] = [*s1["cart"], f"item{round_}"]
            s2["theme"] = f"dark{round_}"
            s2["visits"] += 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one.save, sid, s1)
                nursery.start_soon(two.save, sid, s2)
        assert await SessionStore(reader).load(sid) == {
            "user": "alice",
            "cart": [f"item{i}" for i in range(5)],
            "theme": "dark4",
            "visits": 6,
        }


# --- expiry ------------------------------------------------------------------------------


async def test_ttl_is_set_on_every_server_and_slides_with_touch_and_save(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool, ttl=3.0)
        sid = store.new_id()
        key = store.key(sid)
        await store.save(sid, {"user": "alice"})
        assert all(2500 < t <= 3000 for t in await pttls(redis_servers, key))

        async def aged() -> bool:
            return all(0 < t < 2600 for t in await pttls(redis_servers, key))

        await eventually(aged, "the expiry to run down")
        await store.touch(sid)
        assert all(2800 < t <= 3000 for t in await pttls(redis_servers, key))
        await eventually(aged, "the expiry to run down")
        await store.save(sid, await store.load(sid))  # nothing changed: still refreshed
        assert all(2800 < t <= 3000 for t in await pttls(redis_servers, key))
        await eventually(aged, "the expiry to run down")
        session = await store.load(sid)
        session["n"] = 1
        await store.save(sid, session)
        assert all(2800 < t <= 3000 for t in await pttls(redis_servers, key))
        # The default: two weeks.
        sid2 = store.new_id()
        await SessionStore(pool).save(sid2, {"a": 1})
        assert all(
            DEFAULT_TTL * 1000 - 5000 < t <= DEFAULT_TTL * 1000
            for t in await pttls(redis_servers, store.key(sid2))
        )


async def test_expired_session_is_empty(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool, ttl=0.3)
        sid = store.new_id()
        await store.save(sid, {"user": "alice"})
        assert await store.load(sid) == {"user": "alice"}

        async def gone() -> bool:
            return await store.load(sid) == {}

        await eventually(gone, "the session to expire")
        for server in redis_servers:
            assert await raw(server, "EXISTS", store.key(sid)) == 0
        await store.touch(sid)  # touching an expired session does not revive it
        assert await store.load(sid) == {}


async def test_loads_never_give_an_expiring_session_a_new_life(
    redis_servers: list[RedisServer],
) -> None:
    """Server 0's copy expires first (as if it had missed the last refresh). Loads in
    between find it behind and repair it, with the others' remaining expiry, never a
    fresh ttl: else every load would revive the session, and it would never expire."""
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool, ttl=0.6)
        sid = store.new_id()
        await store.save(sid, {"user": "alice"})
        await raw(redis_servers[0], "PEXPIRE", store.key(sid), 100)
        start = trio.current_time()

        async def gone() -> bool:
            return await store.load(sid) == {}

        await eventually(gone, "the session to expire despite the loads")
        assert trio.current_time() - start < 1.0
        for server in redis_servers:
            assert await raw(server, "EXISTS", store.key(sid)) == 0


# --- delete --------------------------------------------------------------------------------


class Cluster:
    """Three servers, each behind a fault proxy; ``urls`` go through the proxies."""

    def __init__(self, servers: list[RedisServer], proxies: list[FaultProxy]) -> None:
        self.servers = servers
        self.proxies = proxies
        self.urls = [p.url for p in proxies]


@asynccontextmanager
async def cluster(servers: list[RedisServer]) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(open_fault_proxy(s.host, s.port)) for s in servers
        ]
        yield Cluster(servers, proxies)


async def partition(pool: Pool, proxy: FaultProxy, i: int) -> None:
    proxy.partition()
    await eventually(lambda: not pool.status()[i].available, "the pool to notice the partition")


async def heal(pool: Pool, proxy: FaultProxy, i: int) -> None:
    proxy.heal()
    await eventually(lambda: pool.status()[i].available, "the pool to reconnect")


async def test_delete_missed_by_a_partitioned_server_never_comes_back(
    redis_servers: list[RedisServer],
) -> None:
    """Server 0 misses the logout, and meanwhile another app process, whose clock lags,
    writes the session on server 0 alone (it had loaded it before the logout): older
    timestamps than the delete. After healing, one load through the pool shows
    nothing and repairs server 0, which then holds nothing of the session either."""
    s0 = redis_servers[0]
    async with (
        cluster(redis_servers) as c,
        pool_on(*c.urls) as app,
        pool_on(s0.url, clock_offset=-30.0) as laggard,
    ):
        store = SessionStore(app)
        sid = store.new_id()
        key = store.key(sid)
        await store.save(sid, {"user": "alice", "cart": ["book"], "csrf": "t0k3n"})
        stale = await SessionStore(laggard).load(sid)  # the other request's copy

        await partition(app, c.proxies[0], 0)
        await store.delete(sid)  # logout: servers 1 and 2 only
        stale["cart"] = ["book", "pen"]
        stale["late"] = True
        await SessionStore(laggard).save(sid, stale)  # server 0 only, concurrently

        clear = Entry.decode((await raw_hash(redis_servers[1], key))[b"c:"])
        late = Entry.decode((await raw_hash(s0, key))[b"f:late"])
        assert clear is not None and late is not None
        assert late.ts < clear.ts  # the racing write is older than the delete
        assert await load_alone(s0, sid) == {
            "user": "alice",
            "cart": ["book", "pen"],
            "csrf": "t0k3n",
            "late": True,
        }

        await heal(app, c.proxies[0], 0)
        assert await store.load(sid) == {}  # merged: the clear kills everything

        async def s0_clean() -> bool:
            return await raw_hash(s0, key) == {MARKER_FIELD: b"map:1", b"c:": clear.encode()}

        await eventually(s0_clean, "server 0 to be repaired")  # fields physically gone
        assert await load_alone(s0, sid) == {}
        # Nothing brings them back: not the laggard re-sending its whole stale copy
        # (its clock is still behind the delete), not repair walks, not more reads.
        await SessionStore(laggard).save(sid, dict(stale))
        assert await repair_key(app, key) is False
        assert await store.load(sid) == {}
        for server in redis_servers:
            assert await load_alone(server, sid) == {}

        # A later save creates a fresh session under the same id.
        await store.save(sid, {"user": "bob"})
        assert await store.load(sid) == {"user": "bob"}
        assert await load_alone(s0, sid) == {"user": "bob"}


async def test_writes_later_than_the_delete_survive_it(redis_servers: list[RedisServer]) -> None:
    """A request writing after the logout (a later timestamp) keeps what it wrote, and
    only that: the keys written before the delete stay dead."""
    s0 = redis_servers[0]
    async with (
        cluster(redis_servers) as c,
        pool_on(*c.urls) as app,
        pool_on(s0.url, clock_offset=+30.0) as ahead,
    ):
        store = SessionStore(app)
        sid = store.new_id()
        await store.save(sid, {"user": "alice", "cart": ["book"]})
        await partition(app, c.proxies[0], 0)
        await store.delete(sid)
        await SessionStore(ahead).save(sid, {"flash": "bye"})  # server 0, later stamp
        await heal(app, c.proxies[0], 0)
        assert await store.load(sid) == {"flash": "bye"}
        for server in redis_servers:

            async def repaired(server: RedisServer = server) -> bool:
                return await load_alone(server, sid) == {"flash": "bye"}

            await eventually(repaired, f"{server!r} to be repaired")


async def test_a_save_of_a_loaded_session_never_brings_a_deleted_one_back(
    redis_servers: list[RedisServer],
) -> None:
    """A request loaded the session, another logged out, the first saved a change:
    nothing is written, on any server, and the save says so."""
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        sid = store.new_id()
        await store.save(sid, {"user": {"name": "ada", "role": "admin"}})
        tab2 = await store.load(sid)
        untouched = await store.load(sid)
        await store.delete(sid)
        tab2["user"]["theme"] = "dark"  # a later timestamp than the logout's stamp
        assert await store.save(sid, tab2) is False
        assert await store.save(sid, untouched) is False  # nothing changed: no touch either
        assert await store.load(sid) == {}
        for server in redis_servers:
            assert not any(k.startswith(b"f:") for k in await raw_hash(server, store.key(sid)))
        # A whole mapping under the deleted id is a fresh session, as before.
        assert await store.save(sid, {"flash": "bye"}) is True
        assert await store.load(sid) == {"flash": "bye"}


async def test_a_session_saved_anew_after_a_delete_survives_a_server_that_missed_it(
    redis_servers: list[RedisServer],
) -> None:
    """The session is deleted everywhere, saved anew under its id while server 2
    is cut off, then a loaded copy of it saved with a change: server 2, holding
    the clear alone, was taken for a sign of a delete, and the undoing clear
    killed the acknowledged new session everywhere."""
    async with cluster(redis_servers) as c, pool_on(*c.urls, write_quorum=2) as pool:
        store = SessionStore(pool, write_quorum=2)
        sid = store.new_id()
        await store.save(sid, {"old": 1})
        await store.delete(sid)
        await partition(pool, c.proxies[2], 2)
        assert await store.save(sid, {"a": 1}) is True  # a fresh session, on 0 and 1
        session = await store.load(sid)
        await heal(pool, c.proxies[2], 2)
        session["b"] = 2
        assert await store.save(sid, session) is True
        assert await store.load(sid) == {"a": 1, "b": 2}
        for server in redis_servers:  # server 2 got the write; the reads repair the rest
            assert await load_alone(server, sid) in ({"a": 1, "b": 2}, {"b": 2})
        # The same when the change overwrites the only key written since the
        # delete: nothing of the re-creation is left but its clear on the servers
        # that wrote, and that is the proof.
        sid = store.new_id()
        await store.save(sid, {"old": 1})
        await store.delete(sid)
        await partition(pool, c.proxies[2], 2)
        assert await store.save(sid, {"a": 1}) is True
        session = await store.load(sid)
        await heal(pool, c.proxies[2], 2)
        session["a"] = 2
        assert await store.save(sid, session) is True
        assert await store.load(sid) == {"a": 2}


async def test_concurrent_saves_of_requests_loaded_before_a_logout_never_bring_it_back(
    redis_servers: list[RedisServer],
) -> None:
    """The logout reached servers 0 and 1 only; two requests that loaded the
    session before it save at once: each found the other's write on server 2,
    later than the clear, took it for the session saved anew, and wrote it back."""
    async with (
        pool_on(*urls(redis_servers), write_quorum=2) as app,
        pool_on(*urls(redis_servers)[:2], write_quorum=2) as logout,
    ):
        store = SessionStore(app, write_quorum=2)
        sid = store.new_id()
        await store.save(sid, {"user": "alice"})
        first, second = await store.load(sid), await store.load(sid)
        await SessionStore(logout, write_quorum=2).delete(sid)
        first["a"], second["b"] = 1, 2
        saved: list[bool] = []

        async def save(session: Session) -> None:
            saved.append(await store.save(sid, session))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(save, first)
            nursery.start_soon(save, second)
        assert saved == [False, False]
        assert await store.load(sid) == {}
        for server in redis_servers:
            assert await load_alone(server, sid) == {}


async def test_a_save_of_a_loaded_session_never_revives_an_expired_one(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool, ttl=0.3)
        sid = store.new_id()
        await store.save(sid, {"user": "ada", "csrf": "t0k"})
        request = await store.load(sid)

        async def expired() -> bool:
            return all([await raw(s, "EXISTS", store.key(sid)) == 0 for s in redis_servers])

        await eventually(expired, "the session to expire")
        request["cart"] = ["book"]
        assert await store.save(sid, request) is False
        for server in redis_servers:  # not even a key holding the marker
            assert await raw(server, "EXISTS", store.key(sid)) == 0
        assert await store.load(sid) == {}


async def test_a_save_reaches_servers_that_lost_the_session_through_the_others(
    redis_servers: list[RedisServer],
) -> None:
    """A server restarted empty refuses a loaded session's change (it holds nothing
    live), the others take it: saved, and the read repairs the empty one."""
    a = redis_servers[0]
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        sid = store.new_id()
        await store.save(sid, {"user": "ada"})
        session = await store.load(sid)
        await raw(a, "DEL", store.key(sid))  # as a server restarted empty
        session["cart"] = ["book"]
        assert await store.save(sid, session) is True
        assert await store.load(sid) == {"user": "ada", "cart": ["book"]}

        async def repaired() -> bool:
            return await load_alone(a, sid) == {"user": "ada", "cart": ["book"]}

        await eventually(repaired, "the emptied server to be repaired")


async def test_a_save_missed_by_the_delete_on_one_server_is_undone(
    redis_servers: list[RedisServer],
) -> None:
    """Server C missed the logout; a request that loaded the session before it saves
    with every server reachable: the ones that applied the delete say so, C's write is
    undone by a later clear, and nothing comes back."""
    a, b, _ = redis_servers
    for quorum in (1, 2):
        async with (
            pool_on(*urls(redis_servers), write_quorum=quorum) as pool,
            pool_on(a.url, b.url, write_quorum=2) as without_c,
        ):
            store = SessionStore(pool)
            sid = store.new_id()
            await store.save(sid, {"user": "ada", "role": "admin"})
            late = await store.load(sid)
            await SessionStore(without_c).delete(sid)
            late["theme"] = "dark"
            assert await store.save(sid, late) is False, quorum
            assert await store.load(sid) == {}
            for server in redis_servers:
                assert await load_alone(server, sid) == {}, (quorum, server)


async def test_a_save_with_placement_and_an_owner_down_goes_to_a_fallback(
    redis_factory: RedisFactory,
) -> None:
    """The fallback standing in for the owner holds no copy: it takes the write as it is
    (before, its refusal failed every changed save with write_quorum=2: a 503)."""
    servers = redis_factory.many(4)
    async with pool_on(*urls(servers), replicas=2, write_quorum=2) as pool:
        store = SessionStore(pool)
        sid = store.new_id()
        await store.save(sid, {"user": "ada"})
        session = await store.load(sid)
        first = pool.owners(store.key(sid))[0]
        owner = next(s for s in servers if s.url == first)
        await owner.akill()
        await wait_state(pool, pool.servers.index(first), ServerState.DOWN)
        session["cart"] = ["book"]
        assert await store.save(sid, session) is True
        assert await store.save(sid, await store.load(sid)) is True  # unchanged: the expiry
        assert await store.load(sid) == {"user": "ada", "cart": ["book"]}


async def test_a_session_loaded_empty_is_saved_as_a_new_one(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        sid = store.new_id()
        session = await store.load(sid)  # unknown: {}
        session["visits"] = 1
        assert await store.save(sid, session) is True
        assert await store.load(sid) == {"visits": 1}


async def test_delete_reads_first_so_it_kills_what_it_can_see(
    redis_servers: list[RedisServer],
) -> None:
    """A session written by a process whose clock runs ahead is still deleted: the
    delete reads first, and its clock moves past every timestamp it saw."""
    async with (
        pool_on(*urls(redis_servers)) as app,
        pool_on(*urls(redis_servers), clock_offset=+30.0) as ahead,
    ):
        store = SessionStore(app)
        sid = store.new_id()
        await SessionStore(ahead).save(sid, {"user": "alice"})
        await store.delete(sid)
        assert await store.load(sid) == {}
        assert await SessionStore(ahead).load(sid) == {}


async def test_a_delete_that_cannot_win_raises_and_never_returns_as_done(
    redis_servers: list[RedisServer],
) -> None:
    """Two clocks each within the skew bound may be further apart than it: A's
    stamps, 3,590 s ahead, are 3,610 s ahead of C's clock, which ignores them.
    C's delete was stamped older than the data it had just read, returned, and
    the session stayed alive for everyone (a logout that did nothing)."""
    async with (
        pool_on(*urls(redis_servers), clock_offset=+3590.0) as a,
        pool_on(*urls(redis_servers), clock_offset=-20.0) as c,
    ):
        sid = SessionStore.new_id()
        await SessionStore(a).save(sid, {"user": "alice"})
        with pytest.raises(CodecError, match="clock-skew bound") as info:
            await SessionStore(c).delete(sid)
        assert sid not in str(info.value) and sid[:8] not in str(info.value)
        assert await SessionStore(a).load(sid) == {"user": "alice"}  # nothing was written
        await SessionStore(a).delete(sid)  # a clock that sees the data deletes it
        assert await SessionStore(c).load(sid) == {}
        await SessionStore(c).delete(sid)  # dead already: the clear ahead kills nothing
        # Only what is live needs beating: C's data, with a key A removed.
        sid = SessionStore.new_id()
        await SessionStore(c).save(sid, {"user": "bob", "csrf": "x"})
        session = await SessionStore(a).load(sid)
        del session["csrf"]
        await SessionStore(a).save(sid, session)  # a tombstone stamped ahead
        await SessionStore(c).delete(sid)
        assert await SessionStore(a).load(sid) == {} == await SessionStore(c).load(sid)


async def test_load_raises_when_no_server_answers(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        sid = store.new_id()
        await store.save(sid, {"user": "alice"})
        redis_servers[0].kill()
        redis_servers[1].kill()
        assert await store.load(sid) == {"user": "alice"}  # one server is enough
        redis_servers[2].kill()
        with pytest.raises(QuorumError) as info:
            await store.load(sid)
        assert info.value.may_have_applied is False
        for op in (store.save(sid, {"a": 1}), store.delete(sid), store.touch(sid)):
            with pytest.raises(QuorumError):
                await op


def everything_shown(exc: BaseException) -> str:
    """All an error carries: text, repr, args, attributes (with their errors), cause, context."""
    parts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
    for value in vars(exc).values():
        if isinstance(value, list):  # Replies: the per-server errors
            parts += [everything_shown(e) for e in value if isinstance(e, BaseException)]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            parts.append(everything_shown(linked))
    return "\n".join(parts)


async def test_errors_never_show_the_session_id(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        foreign = store.new_id()
        for server in redis_servers:
            await server.acommand("SET", "session:" + foreign, "junk")
        # The CRDT layer names the key in full (right for a general key)...
        with pytest.raises(ForeignValueError) as crdt:
            await HashMap(pool, "session:" + foreign).get()
        assert foreign in str(crdt.value) and crdt.value.key == "session:" + foreign
        # ... the session layer shows the id's end only, with nothing chained.
        ops: list[Awaitable[object]] = [
            store.load(foreign),
            store.save(foreign, {"a": 1}),
            store.delete(foreign),
        ]
        for op in ops:
            with pytest.raises(ForeignValueError) as info:
                await op
            foreign_error = info.value
            assert foreign not in everything_shown(foreign_error)
            assert "'session:\u2026" + foreign[-4:] + "'" in str(foreign_error)
            assert foreign_error.key == "session:\u2026" + foreign[-4:]
            assert foreign_error.__cause__ is None and foreign_error.__context__ is None

        sid = store.new_id()
        await store.save(sid, {"user": "ada"})
        for server in redis_servers:
            server.kill()
        with pytest.raises(QuorumError) as crdt_quorum:
            await HashMap(pool, "session:" + sid).get()
        assert sid in str(crdt_quorum.value)
        named: dict[str, Awaitable[object]] = {
            "load": store.load(sid),
            "save": store.save(sid, {"user": "bob"}),
            "delete": store.delete(sid),
            "touch": store.touch(sid),
        }
        for name, op in named.items():
            with pytest.raises(QuorumError) as quorum:
                await op
            error = quorum.value
            assert sid not in everything_shown(error), name
            assert error.__cause__ is None and error.__context__ is None, name
            assert isinstance(error.replies, Replies) and len(error.replies) == 3, name
            assert error.replies.servers == crdt_quorum.value.replies.servers
        # The load's error has the CRDT layer's attributes; its text shows the id's end.
        with pytest.raises(QuorumError) as quorum:
            await store.load(sid)
        error, original = quorum.value, crdt_quorum.value
        assert str(error) == str(original).replace(sid, "\u2026" + sid[-4:])
        assert (error.required, error.succeeded, error.may_have_applied) == (
            original.required,
            original.succeeded,
            original.may_have_applied,
        )
        assert [type(r) for r in error.replies] == [type(r) for r in original.replies]


async def test_a_hedged_store_does_not_wait_for_a_hung_server(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*urls(redis_servers), timeout=2.0) as pool:
        store = SessionStore(pool, read_quorum=2, write_quorum=2, hedged=True)
        sid = store.new_id()
        await store.save(sid, {"user": "alice"})
        for _ in range(3):
            assert await store.load(sid) == {"user": "alice"}  # latencies measured
        for hung in redis_servers:
            hung.freeze()
            try:
                start = trio.current_time()
                assert await store.load(sid) == {"user": "alice"}
                # A read waiting for the hung server takes half the deadline (1 s).
                assert trio.current_time() - start < 0.9
            finally:
                hung.thaw()
        with pytest.raises(ConfigurationError, match="hedged"):
            SessionStore(pool, hedged="yes")  # type: ignore[arg-type]


async def test_store_arguments(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        bad: Any
        for bad in (0, -1, float("inf"), float("nan"), True, "60"):
            with pytest.raises(ConfigurationError):
                SessionStore(pool, ttl=bad)
        with pytest.raises(ConfigurationError):
            SessionStore(pool, prefix=b"s:")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            SessionStore(pool, write_quorum=4)
        with pytest.raises(ConfigurationError):
            SessionStore(pool, read_quorum=0)
        store = SessionStore(pool, 60, "s:", write_quorum=3, read_quorum=3)
        assert store.prefix == "s:" and store.ttl == 60.0 and store.pool is pool
        sid = store.new_id()
        await store.save(sid, {"a": 1})
        redis_servers[0].kill()
        with pytest.raises(QuorumError):
            await store.load(sid)  # read_quorum=3
        with pytest.raises(QuorumError):
            await store.save(sid, {"a": 2})  # write_quorum=3
        assert repr(store).startswith("<SessionStore prefix='s:' ttl=60s")


def test_session_is_a_dict() -> None:
    s = Session({"a": 1})
    assert s == {"a": 1} and isinstance(s, dict) and s.sid is None


# --- HashMap.clear, underneath -----------------------------------------------------------------


async def test_map_clear_and_update(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        m = HashMap(pool, "m")
        await m.set({"a": 1, "b": 2})
        await m.delete("b")
        await m.clear()
        assert await m.get() == {}
        for server in redis_servers:
            stored = await raw_hash(server, "m")
            assert set(stored) == {MARKER_FIELD, b"c:"}  # the fields and tombstone dropped
            assert stored[b"c:"].endswith(b":" + context_for(pool).actor + b":-")
        await m.update({"c": 3, "d": 4}, delete=["e"])
        await m.update({"c": 5}, delete=["d"])
        await m.update()
        assert await m.get() == {"c": 5}
        with pytest.raises(CodecError):
            await m.update({"c": 1}, delete=["c"])
        await m.clear()
        await m.clear()  # a second clear is a later stamp: fine
        assert await m.get() == {}


async def test_repair_key_spreads_a_clear(redis_servers: list[RedisServer]) -> None:
    """A repair walk gives the clear to a server that missed it (fields a late, older
    write left there included), with the others' remaining expiry."""
    s0 = redis_servers[0]
    async with pool_on(*urls(redis_servers)) as pool:
        m = HashMap(pool, "m", ttl=60)
        await m.set({"a": 1})
        await m.clear()
        await raw(s0, "DEL", "m")
        await raw(s0, "HSET", "m", "__redisha__", "map:1", "f:a", b"1:zz:+1", "f:b", b"2:zz:+2")
        await raw(s0, "PEXPIRE", "m", 10_000)  # an older expiry, from an older write
        assert await repair_key(pool, "m") is True
        assert await repair_key(pool, "m") is False
        stored = [await raw_hash(s, "m") for s in redis_servers]
        assert stored[0] == stored[1] == stored[2]
        assert set(stored[0]) == {MARKER_FIELD, b"c:"}
        assert detect_type(stored[0]) == "map"
        assert all(50_000 < t <= 60_000 for t in await pttls(redis_servers, "m"))
        assert await m.get() == {}


@pytest.mark.parametrize("bad", ["\udcff", "\ud800"])
async def test_unencodable_session_keys_and_prefixes_send_nothing(
    redis_servers: list[RedisServer], bad: str
) -> None:
    async with pool_on(*urls(redis_servers)) as pool:
        store = SessionStore(pool)
        sid = store.new_id()
        with pytest.raises(CodecError):
            await store.save(sid, {"user": "alice", bad: 1})  # e.g. from json.loads
        session = await store.load(sid)
        session[bad] = 1
        with pytest.raises(CodecError):
            await store.save(sid, session)
        with pytest.raises(ConfigurationError, match="UTF-8"):
            SessionStore(pool, prefix=bad)
        with pytest.raises(CodecError, match="mapping"):
            await store.save(sid, [("user", "alice")])  # type: ignore[arg-type]
    for server in redis_servers:
        assert await raw(server, "DBSIZE") == 0


async def test_a_session_carried_into_another_store_is_saved_whole(
    redis_servers: list[RedisServer],
) -> None:
    """A session loaded from one store and saved into another (another prefix, or
    another pool) is saved whole there: what it held when loaded was the first
    store's, not the second's, so diffing against it would drop unchanged keys."""
    s0, s1, _ = redis_servers
    data = {"user": "alice", "cart": ["book"], "theme": "light"}
    async with pool_on(s0.url) as p0, pool_on(s1.url) as p1:
        old, new = SessionStore(p0, prefix="old:"), SessionStore(p0, prefix="new:")
        elsewhere = SessionStore(p1, prefix="old:")
        sid = old.new_id()
        await old.save(sid, data)
        session = await old.load(sid)
        session["theme"] = "dark"
        await new.save(sid, session)  # a migration to a new prefix
        assert await new.load(sid) == {**data, "theme": "dark"}
        await elsewhere.save(sid, session)  # same prefix, another pool
        assert await elsewhere.load(sid) == {**data, "theme": "dark"}
        # It now belongs to the last store: saved back into the first, it is written
        # whole again, like any mapping (every key written, none deleted).
        session["theme"] = "blue"
        del session["cart"]
        await old.save(sid, session)
        assert await old.load(sid) == {**data, "theme": "blue"}
        assert await elsewhere.load(sid) == {**data, "theme": "dark"}
        # A second store over the same pool and prefix holds the same data: diffs are fine.
        again = await old.load(sid)
        again["n"] = 1
        del again["cart"]
        await SessionStore(p0, prefix="old:").save(sid, again)
        assert await old.load(sid) == {"user": "alice", "theme": "blue", "n": 1}


async def test_the_librarys_debug_lines_never_show_a_session_id(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    # The CRDT and pool layers name keys at debug level (a read repair that
    # failed, a background task's traceback); a session's key holds its id.
    async with trio_redisha.open_pool(*urls(redis_servers), **FAST) as pool:
        store = SessionStore(pool, prefix="app:s:")
        sid = store.new_id()
        key = store.key(sid)
        caplog.set_level(logging.DEBUG, logger="trio_redisha")
        logging.getLogger("trio_redisha.crdt").debug("read repair of %r failed: %s", key, key)
        try:
            raise RuntimeError(f"HGETALL {key!r}")
        except RuntimeError:
            logging.getLogger("trio_redisha.pool").exception("background task failed")
        other = "x" * 30
        logging.getLogger("trio_redisha.crdt").debug("plain key %r", other)
    text = caplog.text
    assert sid not in text
    assert text.count("app:s:\u2026" + sid[-4:]) >= 3  # shown by its last characters
    assert other in text  # keys that are not sessions' are shown as they are


@pytest.mark.parametrize("prefix", ["app\\sess:", "tenant\tsess:", "sessión:"])
def test_ids_are_hidden_behind_prefixes_a_repr_escapes(
    caplog: pytest.LogCaptureFixture, prefix: str
) -> None:
    # The lines show keys with %r, which escapes a backslash, a control or a
    # non-ASCII character of the prefix: the filter, matching the raw prefix,
    # let the whole id through.
    store = SessionStore(trio_redisha.Pool("redis://127.0.0.1:1"), prefix=prefix)
    sid = store.new_id()
    caplog.set_level(logging.DEBUG, logger="trio_redisha")
    log = logging.getLogger("trio_redisha.crdt")
    log.debug("read repair of %r failed: %s", store.key(sid), "QuorumError")
    log.debug("rehash of %r failed", store.key(sid).encode())
    assert sid not in caplog.text and caplog.text.count("\u2026" + sid[-4:]) == 2


def test_an_error_with_the_id_hidden_keeps_what_its_replies_say() -> None:
    # The copy of the replies made to hide the id dropped Replies.script: a
    # script's error reply then said its write could not have applied.
    sid = "x" * 43
    replies = Replies([ReplyError(f"ERR failed for session:{sid}")], ("a",), script=True)
    shown = _scrub(replies, sid, "<id>")
    assert shown.script and shown.may_have_applied()
    assert sid not in str(shown[0]) and shown.servers == ("a",)
