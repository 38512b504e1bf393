"""Counter, HashMap and Set through a real pool on three real redis-servers.

Failures that need a server to really miss a write (a partition) are in
``test_crdt_faults.py``; here the servers are healthy, killed, restarted empty
or hold foreign values.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

import trio_redisha
from tests.harness.fault_proxy import open_fault_proxy
from tests.harness.helpers import (
    FAST,
    command_calls,
    eventually,
    pttls,
    raw,
    raw_hash,
    writes_done,
)
from trio_redisha import (
    CodecError,
    CodecTypeError,
    ConfigurationError,
    Counter,
    ForeignValueError,
    HashMap,
    Pool,
    QuorumError,
    SessionStore,
    Set,
)
from trio_redisha.crdt import (
    MARKER_FIELD,
    BytesCodec,
    JSONCodec,
    StrCodec,
    context_for,
    detect_type,
    repair_key,
)
from trio_redisha.crdt._plan import RepairPlan
from trio_redisha.crdt._read import read_key
from trio_redisha.crdt._storage import MAP, PACK_MIN_FIELDS, SET
from trio_redisha.testing import RedisServer, decode_reply


@asynccontextmanager
async def pool_on(*servers: RedisServer, **options: Any) -> AsyncIterator[Pool]:
    options.setdefault("timeout", 0.5)
    options.setdefault("backoff_cap", 0.05)
    options.setdefault("connect_timeout", 0.5)
    async with trio_redisha.open_pool(*(s.url for s in servers), **options) as pool:
        yield pool


# --- the seed's examples --------------------------------------------------------


async def test_readme_examples(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        ctr = Counter(pool, "my-counter")
        await ctr.set(3)
        await ctr.incr()
        assert await ctr.get() == 4
        await ctr.incr(2)
        await ctr.decr()
        await ctr.decr(5)
        assert await ctr.get() == 0
        await ctr.set(-7)
        assert await ctr.get() == -7

        m = HashMap(pool, "my-hashmap")
        await m.set({"fnord": 1, "fubar": 2})
        assert await m.get() == {"fnord": 1, "fubar": 2}
        await m.delete("fnord")
        assert await m.get() == {"fubar": 2}

        s = Set(pool, "my-set")
        await s.add("fnord", "bar")
        await s.rem("bar")
        assert await s.get() == {"fnord"}

    for server in redis_servers:
        stored = await raw_hash(server, "my-counter")
        actor = context_for(pool).actor
        assert stored == {MARKER_FIELD: b"counter:1", b"p:" + actor: b"6", b"n:" + actor: b"13"}
        stored = await raw_hash(server, "my-hashmap")
        assert stored[MARKER_FIELD] == b"map:1"
        assert stored[b"f:fubar"].endswith(b":" + actor + b":+2")
        assert stored[b"f:fnord"].endswith(b":" + actor + b":-")
        stored = await raw_hash(server, "my-set")
        assert stored[MARKER_FIELD] == b"set:1"
        assert stored[b"m:fnord"].endswith(b":+")
        assert stored[b"m:bar"].endswith(b":-")


async def test_a_counter_write_keeps_the_digest_where_the_unchanged_total_is_missing(
    redis_servers: list[RedisServer],
) -> None:
    # A replica that lost the key writes both totals on the next increment, the
    # unchanged one too. raw_hash checks each stored digest against its state.
    async with pool_on(*redis_servers) as pool:
        ctr = Counter(pool, "c")
        await ctr.incr(3)
        await ctr.decr(1)
        await raw(redis_servers[0], "DEL", "c")  # lost by one server
        await ctr.incr(1)
        await ctr.decr(2)
        actor = context_for(pool).actor
        for server in redis_servers:
            stored = await raw_hash(server, "c")
            assert stored[b"p:" + actor] == b"4" and stored[b"n:" + actor] == b"3"
        assert await ctr.get() == 1


async def test_a_bulk_write_sends_its_hashes_and_keeps_the_digests_right(
    redis_servers: list[RedisServer],
) -> None:
    # From PACK_MIN_FIELDS fields on, a write carries the fields' hashes (the
    # pack): every server's stored digest is still its state's (raw_hash checks).
    members = [f"member-{i}" for i in range(PACK_MIN_FIELDS + 4)]
    async with pool_on(*redis_servers) as pool:
        s = Set(pool, "bulk")
        await s.add(*members)
        await s.rem(*members[:PACK_MIN_FIELDS])
        m = HashMap(pool, "bulk-map")
        await m.set({name: i for i, name in enumerate(members)})
        await m.set({name: -i for i, name in enumerate(members)})  # every field overwritten
        for server in redis_servers:
            assert len(await raw_hash(server, "bulk")) == len(members) + 1
            assert len(await raw_hash(server, "bulk-map")) == len(members) + 1
        assert await s.get() == set(members[PACK_MIN_FIELDS:])
        assert await m.get() == {name: -i for i, name in enumerate(members)}


async def test_absent_keys_are_empty(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        assert await Counter(pool, "none").get() == 0
        assert await HashMap(pool, "none").get() == {}
        assert await Set(pool, "none").get() == set()
        # No-op writes send nothing and create nothing.
        await HashMap(pool, "none").set({})
        await HashMap(pool, "none").delete()
        await Set(pool, "none").add()
    for server in redis_servers:
        assert decode_reply(await server.acommand("EXISTS", "none")) == 0


async def test_later_write_wins_and_survives_other_fields(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as a, pool_on(*redis_servers) as b:
        ma, mb = HashMap(a, "m"), HashMap(b, "m")
        await ma.set({"x": 1, "y": 1})
        await mb.get()  # b's clock moves past a's writes
        await mb.set({"x": 2})
        await ma.set({"y": 3})
        assert await ma.get() == await mb.get() == {"x": 2, "y": 3}
        await ma.delete("x")
        await mb.set({"z": None})
        assert await mb.get() == {"y": 3, "z": None}
        sa, sb = Set(a, "s"), Set(b, "s")
        await sa.add("p")
        await sb.rem("p")
        await sa.add("p")
        assert await sb.get() == {"p"}


# --- codecs ------------------------------------------------------------------------


async def test_codecs(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "json")
        value = {"list": [1, 2.5, None, True], "text": "h\u00e9\u2603\U0001f600", "n": -3}
        await m.set({"a": value, "\u00fc": "x"})
        assert await m.get() == {"a": value, "\u00fc": "x"}
        raw = await raw_hash(redis_servers[0], "json")
        assert raw["f:\u00fc".encode()].endswith(b':+"x"')

        b = HashMap(pool, "bytes", codec=BytesCodec())
        await b.set({"blob": bytes(range(256)), "e": b""})
        assert await b.get() == {"blob": bytes(range(256)), "e": b""}

        t = HashMap(pool, "str", codec=StrCodec())
        await t.set({"a": "\u2603"})
        assert await t.get() == {"a": "\u2603"}

        s = Set(pool, "bset", codec=BytesCodec())
        await s.add(b"\x00", b"\xff")
        await s.rem(b"\x00")
        assert await s.get() == {b"\xff"}

        j = Set(pool, "jset", codec=JSONCodec())
        await j.add(1, "1", 2)
        assert await j.get() == {1, "1", 2}


@pytest.mark.parametrize(
    ("added", "removed"),
    [
        ((1, True, 1.0), 1),
        ((1, True, 1.0), True),
        ((1, 1.0), 1.0),
        ((0, False, 0.0, -0.0), -0.0),
        ((False,), 0),
        ((2**60, float(2**60)), float(2**60)),
        ((10**16,), 1e16),
    ],
)
async def test_a_json_set_removes_every_member_equal_to_the_removed_one(
    redis_servers: list[RedisServer], added: tuple[Any, ...], removed: Any
) -> None:
    # Members are stored by their encoding, and JSON encodes values Python
    # holds equal differently (1, 1.0, true): get() merged them into one, and
    # rem(1) left True behind, so 1 was still in the set. As with a Python
    # set, a remove takes every member equal to it; unequal ones stay.
    async with pool_on(*redis_servers) as pool:
        s = Set(pool, "s", codec=JSONCodec())
        await s.add(*added, 2, "1", 1.5)
        got = await s.get()
        assert removed in got and len(got) == 4
        await s.rem(removed)
        got = await s.get()
        assert removed not in got
        assert got == {2, "1", 1.5}
        # Added again after the remove, it is a member again.
        await s.add(added[-1])
        assert await s.get() == {added[-1], 2, "1", 1.5}
        stored = await raw_hash(redis_servers[0], "s")
        assert len([f for f, v in stored.items() if f.startswith(b"m:") and v.endswith(b"+")]) == 4


@pytest.mark.parametrize(
    ("codec", "good", "bad"),
    [
        (JSONCodec(), "x", object()),
        (JSONCodec(), "x", math.nan),
        (JSONCodec(), "x", "\ud800"),
        (BytesCodec(), b"x", "text"),
        (StrCodec(), "x", b"bytes"),
    ],
)
async def test_unencodable_value_sends_nothing(
    redis_servers: list[RedisServer], codec: Any, good: Any, bad: Any
) -> None:
    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "m", codec=codec)
        with pytest.raises(CodecError):
            await m.set({"ok": good, "bad": bad})
        with pytest.raises(CodecTypeError):  # a TypeError too
            await m.set({1: good})  # type: ignore[arg-type]
        s = Set(pool, "s", codec=codec)
        with pytest.raises(CodecError):
            await s.add(good, bad)
    for server in redis_servers:
        assert decode_reply(await server.acommand("DBSIZE")) == 0


@pytest.mark.parametrize("member", [[1, 2], (1, 2), {"a": 1}, ["x"]])
async def test_a_member_that_decodes_unhashable_sends_nothing(
    redis_servers: list[RedisServer], member: Any
) -> None:
    # A JSON list was stored, and then every read of the set failed
    # ("unhashable type: 'list'") until it was removed.
    async with pool_on(*redis_servers) as pool:
        s = Set(pool, "s", codec=JSONCodec())
        for write in (s.add, s.rem):
            with pytest.raises(CodecTypeError, match="hashable"):
                await write("ok", member)
        await s.add("ok", 1, None, 2.5)
        assert await s.get() == {"ok", 1, None, 2.5}
    for server in redis_servers:
        assert decode_reply(await server.acommand("EXISTS", "s")) == 1


async def test_undecodable_stored_value_raises_codec_error(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*redis_servers) as pool:
        await HashMap(pool, "m", codec=BytesCodec()).set({"a": b"\xff not json"})
        with pytest.raises(CodecError, match="'a'"):
            await HashMap(pool, "m").get()


async def test_undecodable_stored_member_raises_codec_error(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*redis_servers) as pool:
        await Set(pool, "s", codec=BytesCodec()).add(b"ok", b"\xff\xfe")
        assert await Set(pool, "s", codec=BytesCodec()).get() == {b"ok", b"\xff\xfe"}
        with pytest.raises(CodecError, match=r"member b'\\xff\\xfe'"):
            await Set(pool, "s").get()  # StrCodec: strict UTF-8
        with pytest.raises(CodecError, match="not JSON"):
            await Set(pool, "s", codec=JSONCodec()).get()


async def test_custom_codec(redis_servers: list[RedisServer]) -> None:
    class Upper:
        def encode(self, value: Any) -> str:
            return json.dumps(value).upper()

        def decode(self, data: bytes) -> Any:
            return json.loads(data.lower())

    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "m", codec=Upper())
        await m.set({"a": "xy"})
        assert (await raw_hash(redis_servers[1], "m"))[b"f:a"].endswith(b'+"XY"')
        assert await m.get() == {"a": "xy"}


# --- counters: concurrency and actors ----------------------------------------------


async def test_concurrent_increments_are_all_counted(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as p1, pool_on(*redis_servers) as p2:
        counters = [Counter(p1, "c"), Counter(p1, "c"), Counter(p2, "c")]
        async with trio.open_nursery() as nursery:
            for i in range(60):
                ctr = counters[i % 3]
                nursery.start_soon(ctr.incr if i % 4 else ctr.decr, 2)
        assert await Counter(p2, "c").get() == 2 * (45 - 15)
    # Two actors, each with its own totals, identical on every server.
    stored = [await raw_hash(s, "c") for s in redis_servers]
    assert stored[0] == stored[1] == stored[2]
    assert len(stored[0]) == 5


async def test_a_counter_that_expired_counts_from_zero_again(
    redis_servers: list[RedisServer],
) -> None:
    # A counter's totals are absolute: sent again to the expired key they
    # brought back every increment that expired with it (a rate-limit window
    # never reset: 5 increments, expiry, one more read 6).
    async with pool_on(*redis_servers) as pool:
        ctr = Counter(pool, "window", ttl=0.05)
        for _ in range(5):
            await ctr.incr()
        assert await ctr.get() == 5

        async def expired() -> bool:
            found = [decode_reply(await s.acommand("EXISTS", "window")) for s in redis_servers]
            return found == [0, 0, 0]

        await eventually(expired, "the counter to expire everywhere")
        assert await ctr.get() == 0
        await Counter(pool, "window", ttl=0.05).incr()
        assert await ctr.get() == 1
        # Written more often than its ttl, it counts on as before.
        hot = Counter(pool, "hot", ttl=30)
        for _ in range(5):
            await hot.incr()
        assert await hot.get() == 5


async def test_a_process_using_a_counter_per_window_does_not_keep_every_window_s_totals(
    redis_servers: list[RedisServer],
) -> None:
    # A rate limiter (one ttl counter per client and minute) kept each key's
    # totals in the pool's context for the pool's life: about 200 bytes a key.
    async with pool_on(*redis_servers) as pool:
        ctx = context_for(pool)
        for i in range(40):
            await Counter(pool, f"rate:{i}", ttl=0.05).incr()
        assert len(ctx.totals) == 40

        windows = [f"rate:{i}" for i in range(40)]

        async def expired() -> bool:
            found = [decode_reply(await s.acommand("EXISTS", *windows)) for s in redis_servers]
            return found == [0, 0, 0]

        await eventually(expired, "the windows to expire everywhere")
        for i in range(40, 50):  # the next windows' writes forget the old ones
            await Counter(pool, f"rate:{i}", ttl=0.05).incr()
        assert len(ctx.totals) <= 10 and len(ctx.sent) <= 10 and len(ctx.ttls) <= 10
        assert await Counter(pool, "rate:45").get() == 1


async def test_totals_forgotten_while_another_writer_kept_the_key_alive_still_count(
    redis_servers: list[RedisServer],
) -> None:
    # This writer's totals start from zero again once forgotten: under new
    # field names (p:<actor>.<generation>), or the server, keeping the larger
    # total, would drop the increments sent after.
    async with pool_on(*redis_servers) as a, pool_on(*redis_servers) as b:
        ctx = context_for(a)
        await Counter(a, "shared", ttl=0.05).incr(5)
        keeper = Counter(b, "shared", ttl=30)
        await keeper.incr()  # keeps it alive, for a long time
        await Counter(a, "probe", ttl=0.05).incr()

        async def probe_expired() -> bool:  # and so a's ttl passed since it wrote "shared"
            found = [decode_reply(await s.acommand("EXISTS", "probe")) for s in redis_servers]
            return found == [0, 0, 0]

        await eventually(probe_expired, "a window of a's to expire")
        for i in range(3):  # a's writes of other keys forget its totals of "shared"
            await Counter(a, f"other:{i}", ttl=0.05).incr()
        assert b"shared" not in ctx.totals and ctx.generation >= 1
        await Counter(a, "shared", ttl=0.05).incr(2)
        assert await keeper.get() == 5 + 1 + 2
        fields = await raw_hash(redis_servers[0], "shared")
        actor = ctx.actor
        assert fields[b"p:" + actor] == b"5" and fields[b"p:%b.1" % actor] == b"2"


async def test_totals_forgotten_during_the_read_after_an_expiry_are_not_sent_again(
    redis_servers: list[RedisServer],
) -> None:
    # A write of an expired ttl counter reads first; another counter's write
    # forgetting its totals meanwhile left it with the old totals, sent again
    # under the old fields: the expired count came back (5 + 1 read 6).
    async with pool_on(*redis_servers) as pool:
        ctx = context_for(pool)

        class Racing(Counter):
            async def _read_snapshot(self) -> Any:
                snap = await super()._read_snapshot()
                ctx.forget_counters(trio.current_time())  # another counter's write, meanwhile
                return snap

        hits = Racing(pool, "hits", ttl=0.05)
        await hits.incr(5)

        async def expired() -> bool:
            found = [decode_reply(await s.acommand("EXISTS", "hits")) for s in redis_servers]
            return found == [0, 0, 0]

        await eventually(expired, "the counter to expire everywhere")
        await hits.incr()
        assert await Counter(pool, "hits").get() == 1


@pytest.mark.parametrize("fault", ["refused", "lost"])
async def test_a_counter_write_that_reached_no_server_does_not_keep_its_totals_alive(
    redis_server: RedisServer, fault: str
) -> None:
    # A failed increment stamped the counter as written before it was sent:
    # after the key expired, the next increment skipped the read that resets
    # the totals and brought back the expired ones (incr(5), a failed incr(1),
    # expiry, incr(1) read 6, not 1). Refused: QuorumError may_have_applied
    # False; lost: sent, then dropped by the partition (unknown outcome, but
    # it reached no server either).
    ttl = 1.5
    async with AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(
            open_fault_proxy(redis_server.host, redis_server.port)
        )
        pool = await stack.enter_async_context(trio_redisha.open_pool(proxy.url, **FAST))
        ctr = Counter(pool, "window", ttl=ttl)
        start = trio.current_time()
        await ctr.incr(5)
        # Time passing, not a state: the failed write comes late in the key's life.
        await trio.sleep_until(start + ttl / 2)
        failed = trio.current_time()
        if fault == "refused":
            proxy.partition()
            await eventually(lambda: not pool.status()[0].available, "the pool to notice")
        else:
            proxy.blackhole()
        with pytest.raises(QuorumError) as info:
            await ctr.incr(1)
        assert info.value.may_have_applied is (fault == "lost")
        proxy.partition()  # what the blackhole held never arrives
        actor = context_for(pool).actor
        assert (await raw_hash(redis_server, "window"))[b"p:" + actor] == b"5"

        async def expired() -> bool:
            return bool(await raw(redis_server, "EXISTS", "window") == 0)

        await eventually(expired, "the counter to expire")
        proxy.heal()
        await eventually(lambda: pool.status()[0].available, "the pool to reconnect")
        await ctr.incr(1)
        # Within ttl of the failed write: the case that skipped the read.
        assert trio.current_time() - failed < ttl
        assert await ctr.get() == 1
        assert (await raw_hash(redis_server, "window"))[b"p:" + actor] == b"1"


async def test_a_counter_read_that_found_its_key_alive_does_not_keep_its_totals_alive(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After ttl of silence an increment reads first. The read found the key
    # (another writer kept it alive), and was counted as a write of ours: its
    # own write then failed, the key expired, and the next increment, within
    # ttl of that read, skipped the read and brought the expired totals back.
    ttl = 1.2
    async with AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(
            open_fault_proxy(redis_server.host, redis_server.port)
        )
        pool = await stack.enter_async_context(trio_redisha.open_pool(proxy.url, **FAST))
        other = await stack.enter_async_context(pool_on(redis_server))
        ctr = Counter(pool, "window", ttl=ttl)
        read = Counter._read_snapshot

        async def read_then_cut(self: Counter) -> Any:
            snap = await read(self)
            if self is ctr:
                proxy.partition()  # the write that follows the read fails
            return snap

        start = trio.current_time()
        await ctr.incr(5)
        # Time passing, not states: the other writer refreshes the key, then
        # this one writes after ttl of silence.
        await trio.sleep_until(start + ttl / 2)
        await Counter(other, "window", ttl=ttl).incr(1)
        await trio.sleep_until(start + ttl + 0.05)
        monkeypatch.setattr(Counter, "_read_snapshot", read_then_cut)
        read_at = trio.current_time()
        with pytest.raises(QuorumError):
            await ctr.incr(1)
        monkeypatch.undo()

        async def expired() -> bool:
            return bool(await raw(redis_server, "EXISTS", "window") == 0)

        await eventually(expired, "the counter to expire")
        proxy.heal()
        await eventually(lambda: pool.status()[0].available, "the pool to reconnect")
        await ctr.incr(1)
        assert trio.current_time() - read_at < ttl  # the case that skipped the read
        assert await ctr.get() == 1


async def test_concurrent_increments_after_the_key_expired_are_each_counted_once(
    redis_servers: list[RedisServer],
) -> None:
    # Each of them reads first (none has been acknowledged yet): the one whose
    # read ends first resets the totals, the others see it and count on.
    async with pool_on(*redis_servers) as pool:
        ctr = Counter(pool, "window", ttl=0.2)
        await ctr.incr(5)

        async def expired() -> bool:
            found = [await raw(s, "EXISTS", "window") for s in redis_servers]
            return found == [0, 0, 0]

        await eventually(expired, "the counter to expire everywhere")
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(Counter(pool, "window", ttl=0.2).incr, 1 + i % 2)
        assert await ctr.get() == 30


async def test_a_deadline_the_pool_would_refuse_is_refused_by_the_constructor(
    redis_servers: list[RedisServer],
) -> None:
    # Counter(pool, "c", timeout=10) over a pool with a 5 s stall_timeout was
    # accepted, then every incr() was refused by the pool, after reserving its
    # totals: the refused increments came back with the next good one.
    async with pool_on(*redis_servers) as pool:
        for cls in (Counter, HashMap, Set):
            with pytest.raises(ConfigurationError, match="stall_timeout"):
                cls(pool, "k", timeout=10)
        ctr = Counter(pool, "c", timeout=5)  # the bound itself is fine
        await ctr.incr(1)
        assert await ctr.get() == 1


async def test_writes_from_a_cancelled_scope_do_nothing(
    redis_servers: list[RedisServer],
) -> None:
    # Trio's rule: a call that raises Cancelled did nothing. A counter's
    # increment from an already-cancelled scope must not be carried by the
    # next one (the counter reserves its totals before it sends).
    async with pool_on(*redis_servers) as pool:
        ctr = Counter(pool, "c")
        m = HashMap(pool, "m")
        s = Set(pool, "s")
        await ctr.incr(5)
        await m.set({"a": 1})
        await s.add("x")
        assert (await ctr.get(), await m.get(), await s.get()) == (5, {"a": 1}, {"x"})
        for _ in range(3):
            for write in (ctr.incr(1), ctr.decr(2), ctr.set(100), m.set({"a": 2}), s.add("y")):
                with trio.move_on_after(0) as scope:
                    await write
                assert scope.cancelled_caught
        assert (await ctr.get(), await m.get(), await s.get()) == (5, {"a": 1}, {"x"})
        await ctr.incr(1)
        assert await ctr.get() == 6  # not 6 + 3 * (1 - 2)
        for server in redis_servers:
            assert (await raw_hash(server, "c")) == (await raw_hash(redis_servers[0], "c"))
    async with pool_on(*redis_servers) as pool:
        assert await Counter(pool, "c").get() == 6


async def test_counter_arguments(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        ctr = Counter(pool, b"bytes-key")
        await ctr.incr(-3)
        await ctr.decr(-1)
        assert await ctr.get() == -2
        await ctr.incr(0)  # re-sends the totals, changes nothing
        assert await ctr.get() == -2
        # Refused before anything is sent, with an error of the library's
        # hierarchy that is also the TypeError Python's own checks raise.
        for wrong in (1.5, True, "3", None, float("nan")):
            for call in (ctr.incr, ctr.decr, ctr.set):
                with pytest.raises(CodecTypeError) as info:
                    await call(wrong)  # type: ignore[arg-type]
                assert isinstance(info.value, TypeError)
                assert isinstance(info.value, CodecError)
                assert type(wrong).__name__ in str(info.value)
        with pytest.raises(CodecError):
            await ctr.incr(10**19)
        assert await ctr.get() == -2
        for bad in ({"ttl": 0}, {"ttl": -1.0}, {"write_quorum": 4}, {"read_quorum": 0}):
            with pytest.raises(ConfigurationError):
                Counter(pool, "k", **bad)
        with pytest.raises(ConfigurationError):
            HashMap(pool, "k", tombstone_grace=-1)
        with pytest.raises(ConfigurationError):
            Set(pool, "")
        assert Counter(pool, "k").write_quorum == context_for(pool).write_quorum == 1
        assert Counter(pool, "k", write_quorum=3).write_quorum == 3
        assert repr(Counter(pool, "k")) == "<Counter 'k'>"


# --- quorum and unavailable servers -------------------------------------------------


async def test_no_server_answering_raises(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        ctr, m, s = Counter(pool, "c"), HashMap(pool, "m"), Set(pool, "s")
        await ctr.incr(5)
        for server in redis_servers:
            await server.akill()
        for read in (ctr.get, m.get, s.get):
            with pytest.raises(QuorumError) as info:
                await read()
            assert info.value.succeeded == 0
        with pytest.raises(QuorumError) as info:
            await ctr.incr(100)
        assert info.value.may_have_applied is False
        with pytest.raises(QuorumError):
            await m.set({"a": 1})
        with pytest.raises(QuorumError):
            await s.add("a")
        with pytest.raises(QuorumError):
            await repair_key(pool, "c")


async def test_quorums(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers, write_quorum=2) as pool:
        ctr = Counter(pool, "c")
        await ctr.incr()
        await redis_servers[2].akill()
        await ctr.incr()  # 2 of 3: the pool's quorum is met
        with pytest.raises(QuorumError) as info:
            await Counter(pool, "c", write_quorum=3).incr()
        assert info.value.may_have_applied is True and info.value.succeeded == 2
        # The increment was applied where it arrived: it counts.
        assert await ctr.get() == 3
        assert await Counter(pool, "c", read_quorum=2).get() == 3
        with pytest.raises(QuorumError):
            await Counter(pool, "c", read_quorum=3).get()
        with pytest.raises(QuorumError):
            await HashMap(pool, "m", write_quorum=3).set({"a": 1})
        assert await HashMap(pool, "m").get() == {"a": 1}


# --- TTL ---------------------------------------------------------------------------


async def test_ttl_set_and_refreshed(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        objs: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        ctr = Counter(pool, "c", ttl=30)
        m = HashMap(pool, "m", ttl=30)
        s = Set(pool, "s", ttl=30.0)
        objs = [("c", ctr.incr), ("m", lambda: m.set({"a": 1})), ("s", lambda: s.add("a"))]
        for key, write in objs:
            await write()
            assert all(29_000 < t <= 30_000 for t in await pttls(redis_servers, key))
            for server in redis_servers:
                await server.acommand("PEXPIRE", key, 1000)
            await write()  # refreshes even when nothing changes (the set's add)
            assert all(29_000 < t <= 30_000 for t in await pttls(redis_servers, key))
        # Without ttl= the expiry is left as it is, on writes and repairs.
        await Counter(pool, "c").incr()
        assert all(20_000 < t <= 30_000 for t in await pttls(redis_servers, "c"))
        await Counter(pool, "plain").incr()
        assert await pttls(redis_servers, "plain") == [-1, -1, -1]


async def test_ttl_expires(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        s = Set(pool, "s", ttl=0.05)
        await s.add("a")
        assert await s.get() == {"a"}

        async def gone() -> bool:
            return await s.get() == set()

        await eventually(gone, "the key to expire")


async def test_read_repair_by_an_object_without_ttl_gives_the_survivors_expiry(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*redis_servers) as pool:
        await HashMap(pool, "m", ttl=60).set({"a": 1})
        victim = redis_servers[0]
        await victim.arestart_empty()
        plain = HashMap(pool, "m")  # no ttl=: its own writes leave the expiry alone

        async def refilled() -> bool:
            assert await plain.get() == {"a": 1}
            return bool(decode_reply(await victim.acommand("EXISTS", "m")))

        await eventually(refilled, "read repair to refill the server")
        # The refilled copy expires with the others (docs/consistency.md, TTL),
        # rather than living forever (-1). The PTTLs are read one after the
        # other, the refilled copy's first: a few ms of slack.
        ttls = await pttls(redis_servers, "m")
        assert 0 < ttls[0] <= max(ttls[1:]) + 100, ttls


# --- foreign values ----------------------------------------------------------------


FOREIGN_SETUPS = [
    ("SET", "k", "someone else's"),
    ("HSET", "k", "field", "value"),
    ("HSET", "k", "__redisha__", "map:9", "f:a", "1:x:+1"),
    ("SADD", "k", "member"),
]


@pytest.mark.parametrize("setup", FOREIGN_SETUPS, ids=["string", "hash", "version", "set"])
@pytest.mark.parametrize("cls", [Counter, HashMap, Set])
async def test_foreign_value(
    redis_servers: list[RedisServer], cls: type[Any], setup: tuple[str, ...]
) -> None:
    target = redis_servers[1]  # only one server holds it: still refused
    await target.acommand(*setup)
    before = await target.acommand("DUMP", "k")
    async with pool_on(*redis_servers) as pool:
        obj = cls(pool, "k")
        with pytest.raises(ForeignValueError) as info:
            await obj.get()
        assert info.value.key == "k" and "'k'" in str(info.value)
        with pytest.raises(ForeignValueError):
            if cls is Counter:
                await obj.incr()
            elif cls is HashMap:
                await obj.set({"a": 1})
            else:
                await obj.add("a")
        with pytest.raises(ForeignValueError):
            await repair_key(pool, "k")
    assert await target.acommand("DUMP", "k") == before


async def test_other_crdt_type_is_foreign(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        await HashMap(pool, "k").set({"a": 1})
        with pytest.raises(ForeignValueError, match="map:1"):
            await Set(pool, "k").get()
        with pytest.raises(ForeignValueError):
            await Counter(pool, "k").incr()
        assert await HashMap(pool, "k").get() == {"a": 1}


# --- read repair -------------------------------------------------------------------


async def test_restarted_empty_server_is_refilled_by_reads(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*redis_servers) as pool:
        ctr, m, s = Counter(pool, "c", ttl=60), HashMap(pool, "m"), Set(pool, "s")
        await ctr.incr(7)
        await m.set({"a": [1]})
        await m.delete("b")
        await s.add("x")
        before = {k: await raw_hash(redis_servers[0], k) for k in ("c", "m", "s")}
        victim = redis_servers[0]
        await victim.arestart_empty()
        assert decode_reply(await victim.acommand("DBSIZE")) == 0

        async def back() -> bool:
            return pool.status()[0].available

        await eventually(back, "the pool to reconnect")
        assert await ctr.get() == 7
        assert await m.get() == {"a": [1]}
        assert await s.get() == {"x"}

        async def refilled() -> bool:
            # Read again while the server is behind: each read that finds it so
            # starts a repair (one started under load may have timed out).
            if all([await raw_hash(victim, k) == before[k] for k in before]):
                return True
            assert (await ctr.get(), await m.get(), await s.get()) == (7, {"a": [1]}, {"x"})
            return False

        await eventually(refilled, "read repair to refill the server")
        # The copy keeps the others' expiry (the longest one left), not a fresh
        # 60 s life: measured after theirs, its PTTL is no longer, but for the
        # repair script's trip to the server (a few ms at most; a fresh life would
        # be longer by the restart and reconnect). Not against the clock:
        # restarting a server can take a second on a loaded machine.
        others = max(await pttls(redis_servers[1:], "c"))
        (mine,) = await pttls([victim], "c")
        assert 50_000 < mine <= others + 10
    # The writer's totals never went back: the next increment is counted once.
    async with pool_on(*redis_servers) as other:
        assert await Counter(other, "c").get() == 7


async def test_agreeing_replicas_trigger_no_repair(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        ctr, m, s = Counter(pool, "c"), HashMap(pool, "m"), Set(pool, "s")
        await ctr.incr()
        await m.set({"a": 1})
        await m.delete("b")
        await s.add("x")
        await s.rem("y")
        before = [await writes_done(srv) for srv in redis_servers]
        for _ in range(20):
            await ctr.get()
            await m.get()
            await s.get()
            assert await repair_key(pool, "m") is False
    # aclose waited for any background repair: there was none (digest reads
    # run a read-only script, so the servers' dirty counters tell writes apart).
    assert [await writes_done(srv) for srv in redis_servers] == before


async def test_reads_of_agreeing_replicas_build_no_state(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*redis_servers) as pool:
        s, m = Set(pool, "s"), HashMap(pool, "m")
        await s.add("a", "b", "\u2603")
        await s.rem("b")
        await m.set({"x": 1, "y": [2]})
        await m.delete("x")
        for key, kind, value in (("s", SET, {"a", "\u2603"}), ("m", MAP, {"y": [2]})):
            snap = await read_key(pool, key, kind)
            assert snap.stored is not None  # every server holds the same hash
            assert snap.plan(0) == RepairPlan()  # and nothing to purge yet
            assert snap.merged == kind.parse(await raw_hash(redis_servers[0], key))
            assert snap.states == tuple((i, snap.merged) for i in range(3))
            assert await (s if kind is SET else m).get() == value
            assert snap.plan(time.time_ns() // 1000 + 1).purge == (0, 1, 2)  # the tombstone
        # One server lost the key: the states are built and merged, and repaired.
        await redis_servers[1].acommand("DEL", "s")
        snap = await read_key(pool, "s", SET)
        assert snap.stored is None and snap.plan(0).behind == (1,)
        assert await s.get() == {"a", "\u2603"}

        async def repaired() -> bool:
            return (await read_key(pool, "s", SET)).stored is not None

        await eventually(repaired, "read repair to refill the server")


async def test_repair_is_rate_limited(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers, repair_rate=1) as pool:
        ctr = Counter(pool, "c")
        await ctr.incr()
        # Take the only token; the server behind stays behind until the next one.
        assert context_for(pool).repair_allowed()
        await redis_servers[2].acommand("DEL", "c")
        before = await command_calls(redis_servers[2], "fcall", "evalsha", "eval")
        assert await ctr.get() == 1
        assert await command_calls(redis_servers[2], "fcall", "evalsha", "eval") == before


async def test_tombstones_are_purged_after_the_grace(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "m", tombstone_grace=0)
        await m.set({"a": 1, "b": 2})
        await m.delete("a")
        assert await m.get() == {"b": 2}

        async def purged() -> bool:
            return all([b"f:a" not in await raw_hash(srv, "m") for srv in redis_servers])

        await eventually(purged, "the tombstone to be purged")
        s = Set(pool, "s", tombstone_grace=0)
        await s.add("x")
        await s.rem("x")
        assert await s.get() == set()

        async def key_gone() -> bool:
            return all([await srv.acommand("EXISTS", "s") == b":0\r\n" for srv in redis_servers])

        await eventually(key_gone, "an all-tombstone set to be deleted")
        # A long grace keeps them.
        m7 = HashMap(pool, "m7")
        await m7.set({"a": 1})
        await m7.delete("a")
        assert await m7.get() == {}
    assert b"f:a" in await raw_hash(redis_servers[0], "m7")


# --- the clock ---------------------------------------------------------------------


async def test_reads_pull_the_clock_forward_within_the_skew_bound(
    redis_servers: list[RedisServer],
) -> None:
    ahead = int((time.time() + 60) * 1_000_000)  # a writer whose clock is 1 min fast
    far = int((time.time() + 10 * 365 * 86400) * 1_000_000)  # ten years: refused
    for srv in redis_servers:
        await srv.acommand(
            "HSET", "m", "__redisha__", "map:1", "f:a", b"%d:fast:+1" % ahead,
            "f:b", b"%d:broken:+1" % far,
        )  # fmt: skip
    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "m")
        assert await m.get() == {"a": 1, "b": 1}
        assert ahead < context_for(pool).clock.now() < far
        await m.set({"a": 2})  # ordered after what we read: wins
        assert (await m.get())["a"] == 2


# --- repair_key and detect_type -----------------------------------------------------


async def test_repair_key(redis_servers: list[RedisServer]) -> None:
    async with pool_on(*redis_servers) as pool:
        await Counter(pool, "c").incr(4)
        await HashMap(pool, "m").set({"a": 1})
        await Set(pool, "s").add("x")
        for key in ("c", "m", "s"):
            await redis_servers[0].acommand("DEL", key)
            await redis_servers[1].acommand("PEXPIRE", key, 50_000)
            await redis_servers[2].acommand("PEXPIRE", key, 80_000)
            assert await repair_key(pool, key) is True
            assert await repair_key(pool, key) is False
            stored = [await raw_hash(srv, key) for srv in redis_servers]
            assert stored[0] == stored[1] == stored[2]
            assert detect_type(stored[0]) == {"c": "counter", "m": "map", "s": "set"}[key]
            assert 70_000 < (await pttls(redis_servers, key))[0] <= 80_000
        assert await repair_key(pool, "absent") is False
        replies = await pool.execute("HGETALL", "m")
        assert [detect_type(r) for r in replies] == ["map"] * 3
        # Different types on different servers: not merged.
        await redis_servers[0].acommand("DEL", "c")
        await redis_servers[0].acommand("HSET", "c", "__redisha__", "set:1")
        with pytest.raises(ForeignValueError, match="different types"):
            await repair_key(pool, "c")


# --- pool options and exports ------------------------------------------------------


@pytest.mark.parametrize(
    "options", [{"protocol": 3}, {"decode_responses": True}], ids=["resp3", "decoded"]
)
async def test_pool_reply_options(redis_servers: list[RedisServer], options: Any) -> None:
    async with pool_on(*redis_servers, **options) as pool:
        ctr = Counter(pool, "c")
        await ctr.set(3)
        await ctr.incr()
        assert await ctr.get() == 4
        m = HashMap(pool, "m")
        await m.set({"fnord": 1, "fubar": "\u2603"})
        await m.delete("fnord")
        assert await m.get() == {"fubar": "\u2603"}
        s = Set(pool, "s")
        await s.add("fnord", "bar")
        await s.rem("bar")
        assert await s.get() == {"fnord"}
        await redis_servers[0].acommand("DEL", "c", "m", "s")
        for key, name in (("c", "counter"), ("m", "map"), ("s", "set")):
            assert await repair_key(pool, key) is True
            assert [detect_type(r) for r in await pool.execute("HGETALL", key)] == [name] * 3
        assert await ctr.get() == 4


async def test_binary_values_survive_a_decoding_pool(redis_servers: list[RedisServer]) -> None:
    # CRDT reads ask the pool for raw bytes whatever its decode_responses says.
    from trio_redisha.crdt import BytesCodec

    blob = bytes(range(256))
    async with pool_on(*redis_servers, decode_responses=True) as pool:
        m = HashMap(pool, "bin", codec=BytesCodec())
        await m.set({"blob": blob})
        assert await m.get() == {"blob": blob}
        assert await pool.execute("PING") == ["PONG"] * 3


def test_exports() -> None:
    import trio_redisha.crdt as crdt

    for name in crdt.__all__:
        assert getattr(crdt, name) is not None
    for name in ("Counter", "HashMap", "Set", "JSONCodec", "BytesCodec", "StrCodec",
                 "repair_key", "detect_type"):  # fmt: skip
        assert name in crdt.__all__
    assert trio_redisha.Counter is crdt.Counter
    assert trio_redisha.HashMap is crdt.HashMap
    assert trio_redisha.Set is crdt.Set


async def test_repair_ttl_of_a_key_in_its_last_millisecond() -> None:
    # PTTL answers 0 when less than a millisecond is left. Repair must still give
    # the copies it writes an expiry (1 ms), never 0, which the merge script reads
    # as "leave the expiry alone": the repaired copy would then live forever.
    from tests.harness.hostile import open_hostile_server, reply_with
    from trio_redisha.crdt._plan import longest_ttl

    async with (
        open_hostile_server(reply_with(b":0\r\n")) as server,
        trio_redisha.open_pool(server.url, timeout=2.0) as pool,
    ):
        assert await longest_ttl(pool, "k", [0], None) == 1


# --- a replica answering nonsense -------------------------------------------------

WRONG_SHAPES = [
    b":1\r\n",  # an integer
    b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",  # a flat list of odd length
    b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n",  # nested arrays
    b"%1\r\n$11\r\n__redisha__\r\n*1\r\n:1\r\n",  # a map holding an array
    b"$-1\r\n",  # nil
]


@pytest.mark.parametrize("raw", WRONG_SHAPES, ids=["int", "odd", "nested", "map", "nil"])
async def test_a_replica_of_the_wrong_shape_costs_only_its_own_entry(
    redis_servers: list[RedisServer], raw: bytes
) -> None:
    from tests.harness.hostile import open_hostile_server, reply_with

    a, b, _ = redis_servers
    async with pool_on(a, b) as healthy:
        await Counter(healthy, "c").incr(3)
        await HashMap(healthy, "m").set({"x": 1})
        await Set(healthy, "s").add("y")
    async with (
        open_hostile_server(reply_with(raw)) as hostile,
        trio_redisha.open_pool(a.url, b.url, hostile.url, timeout=0.5) as pool,
    ):
        # Delete one healthy copy, so that the read finds a replica behind.
        for key in ("c", "m", "s"):
            await b.acommand("DEL", key)
        assert await repair_key(pool, "m") is True  # the walker's read
        assert await Counter(pool, "c").get() == 3  # reads, and read repair
        assert await HashMap(pool, "m").get() == {"x": 1}
        assert await Set(pool, "s").get() == {"y"}
        with pytest.raises(QuorumError):
            await HashMap(pool, "m", read_quorum=3).get()
        await pool.aclose()  # waits for the background repairs
        # The healthy replica behind was repaired; the broken one was never written.
        for key in ("c", "m", "s"):
            assert (await raw_hash(b, key)) == (await raw_hash(a, key))
        for name in (b"FCALL", b"FUNCTION", b"EVALSHA", b"EVAL"):
            assert name not in hostile.command_names()


# --- text that cannot be sent -----------------------------------------------------

#: Lone surrogates: what json.loads gives for "\udcff", and os.fsdecode for b"\xff".
UNENCODABLE = ["\udcff", "\ud800", "ok\udc80"]


@pytest.mark.parametrize("bad", UNENCODABLE)
async def test_unencodable_names_keys_and_members_send_nothing(
    redis_servers: list[RedisServer], bad: str
) -> None:
    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "m")
        writes: list[Callable[[], Awaitable[None]]] = [
            lambda: m.set({"ok": 1, bad: 2}),
            lambda: m.delete("ok", bad),
            lambda: m.update({"ok": 1}, delete=[bad]),
            lambda: m.update({bad: 1}),
            lambda: Set(pool, "s").add("ok", bad),
            lambda: Set(pool, "s").rem(bad),
            lambda: HashMap(pool, "m", codec=StrCodec()).set({"ok": bad}),
        ]
        for write in writes:
            with pytest.raises(CodecError):
                await write()
        for cls in (Counter, HashMap, Set):
            with pytest.raises(ConfigurationError, match="UTF-8"):
                cls(pool, bad)
        with pytest.raises(ConfigurationError, match="UTF-8"):
            await repair_key(pool, bad)
    for server in redis_servers:
        assert decode_reply(await server.acommand("DBSIZE")) == 0


@pytest.mark.parametrize("key", ["__redisha__:totals", b"__redisha__:tree:{x}", "__redisha__:"])
async def test_keys_in_the_librarys_own_namespace_are_refused(
    redis_servers: list[RedisServer], key: str | bytes
) -> None:
    # The walker skips the digest tree's keys by their prefix: a CRDT under
    # such a key was written but never repaired.
    ok_keys = ("__redisha__", "__redisha_x", "x:__redisha__:")
    async with pool_on(*redis_servers) as pool:
        for cls in (Counter, HashMap, Set):
            with pytest.raises(ConfigurationError, match="reserved"):
                cls(pool, key)
        with pytest.raises(ConfigurationError, match="reserved"):
            await repair_key(pool, key)
        # Only that namespace: the marker's name itself, and look-alikes, are keys.
        for ok in ok_keys:
            await Counter(pool, ok).incr(1)
            assert await Counter(pool, ok).get() == 1
    for server in redis_servers:
        assert decode_reply(await server.acommand("EXISTS", key)) == 0
        assert decode_reply(await server.acommand("EXISTS", *ok_keys)) == 3


async def test_map_names_of_both_types_in_one_mapping(redis_servers: list[RedisServer]) -> None:
    # They were written, but did not type-check: the annotation took a mapping
    # of str names or one of bytes names only (Mapping's key is invariant).
    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "m")
        mixed: dict[str | bytes, Any] = {"x": 1, b"y": 2}
        await m.set(mixed)
        await m.update(mixed, delete=["z"])
        assert await m.get() == {"x": 1, "y": 2}


async def test_map_arguments_of_the_wrong_kind_send_nothing(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(*redis_servers) as pool:
        m = HashMap(pool, "m")
        with pytest.raises(CodecError, match="single"):
            await m.update({"a": 1}, delete="abc")  # not the fields "a", "b", "c"
        with pytest.raises(CodecError, match="single"):
            await m.update(delete=b"abc")  # type: ignore[arg-type]
        with pytest.raises(CodecError, match="mapping"):
            await m.set([("a", 1)])  # type: ignore[arg-type]
        # Not an iterable of names: a bare TypeError ("'int' object is not
        # iterable") was raised, outside the library's hierarchy.
        for bad in (5, object()):
            with pytest.raises(CodecTypeError, match="iterable"):
                await m.update({"a": 1}, delete=bad)  # type: ignore[arg-type]
            with pytest.raises(CodecTypeError, match="iterable"):
                await m._update_if_live(delete=bad)  # type: ignore[arg-type]
        # One field named twice, as str and as bytes: two registers of one
        # timestamp were written, and the larger payload won.
        twice: dict[Any, Any] = {"a": 1, b"a": 2}
        with pytest.raises(CodecError, match="twice"):
            await m.set(twice)
        with pytest.raises(CodecError, match="twice"):
            await m.update(twice, delete=["b"])
    for server in redis_servers:
        assert decode_reply(await server.acommand("DBSIZE")) == 0
    async with pool_on(*redis_servers) as pool:
        # delete=None deletes nothing, as fields=None writes nothing.
        m = HashMap(pool, "m")
        await m.update(None, delete=None)
        assert await raw(redis_servers[0], "DBSIZE") == 0
        await m.update({"a": 1, "b": 2}, delete=None)
        await m.update(delete=None)
        assert await m.get() == {"a": 1, "b": 2}


BAD_OPTIONS: list[dict[str, Any]] = [
    {"write_quorum": True},
    {"read_quorum": True},
    {"timeout": "1"},
    {"timeout": True},
    {"timeout": math.inf},
    {"timeout": 10**400},  # float() cannot hold it: a bare OverflowError
    {"tombstone_grace": "1"},
    {"tombstone_grace": math.inf},
    {"tombstone_grace": 10**400},
    {"ttl": "1"},
    {"ttl": 1e300},  # every server would refuse the expiry
    {"codec": object()},
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda o: f"{o}")
async def test_bad_options_are_configuration_errors(
    redis_servers: list[RedisServer], bad: dict[str, Any]
) -> None:
    async with pool_on(*redis_servers) as pool:
        for cls in (HashMap, Set):
            with pytest.raises(ConfigurationError):
                cls(pool, "k", **bad)
        if "codec" not in bad and "tombstone_grace" not in bad:
            with pytest.raises(ConfigurationError):
                Counter(pool, "k", **bad)
        store_bad = {k: v for k, v in bad.items() if k != "ttl"}
        with pytest.raises(ConfigurationError):
            trio_redisha.SessionStore(pool, **({"ttl": bad["ttl"]} if "ttl" in bad else store_bad))
        if "timeout" in bad or "tombstone_grace" in bad:
            with pytest.raises(ConfigurationError):
                await repair_key(pool, "k", **bad)
            with pytest.raises(ConfigurationError):
                await trio_redisha.crdt.repair_all(pool, **bad)
        with pytest.raises(ConfigurationError, match="single key"):
            await trio_redisha.crdt.repair_all(pool, keys="abc")
    for server in redis_servers:
        assert decode_reply(await server.acommand("DBSIZE")) == 0


@pytest.mark.parametrize("pool", [None, "redis://127.0.0.1:6379", object()])
def test_a_crdt_or_session_store_needs_a_pool(pool: Any) -> None:
    # A bare AttributeError ("'NoneType' object has no attribute 'replicas'").
    for make in (
        lambda: Counter(pool, "k"),
        lambda: HashMap(pool, "k"),
        lambda: Set(pool, "k"),
        lambda: SessionStore(pool),
    ):
        with pytest.raises(ConfigurationError, match=r"trio_redisha\.Pool"):
            make()
