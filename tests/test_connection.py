"""One multiplexed connection against real redis-server processes (and hostile fakes).

The heart of this file is cancellation safety: a caller may be cancelled at any
point (before its command is sent, right after, in the middle of its reply) and no
other caller may ever receive its reply (redis-py's CVE-2023-28858/28859), while the
connection stays up and aligned.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
import trustme

from tests.conftest import RedisFactory
from tests.harness.helpers import DEADLINE, Sleeps, error_text, wait_until
from tests.harness.hostile import (
    SETUP_COMMANDS,
    HostileConnection,
    answer_handshake,
    handshake_reply,
    never_reply,
    open_hostile_server,
    reply_with,
)
from tests.harness.memory_server import MemoryServer
from tests.harness.tls import TLSFiles
from trio_redisha import (
    AuthenticationError,
    ConfigurationError,
    Connection,
    Limits,
    PoolClosed,
    ProtocolError,
    RedisHAError,
    ReplyError,
    ReplyTooLarge,
    ServerTimeout,
    ServerUnavailable,
    UnsupportedCommand,
    connect,
    open_connection,
    parse_server,
)
from trio_redisha.config import ServerSpec
from trio_redisha.connection import (
    _READER,
    _SOLO,
    FLUSH_AT,
    SPIN_MISSES,
    SPIN_PAUSE,
    Waiter,
    _SocketTransport,
    _Spinner,
    _Transport,
    connect_stream,
)
from trio_redisha.resp import Parser, RespParser, encode_command
from trio_redisha.testing import RedisServer, decode_reply, free_port, open_raw_connection

#: Upper bound for anything that should happen "promptly"; generous for a loaded CI box.
PROMPT = 3.0
SECRET = "Pw-Distinctive-8Jq2"


# --------------------------------------------------------------------------- helpers


async def run_many(fn: Callable[[int], Awaitable[None]], n: int) -> None:
    """Run ``fn(0)`` ... ``fn(n - 1)`` concurrently and wait for all of them."""
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(fn, i)


def count_tasks() -> int:
    """How many tasks exist in this trio run (a leak shows up as a larger count)."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def client_names(server: RedisServer) -> list[str]:
    """Names of the clients connected to ``server`` ("" if unnamed), the asker excluded."""
    raw = await server.acommand("CLIENT", "LIST")
    listing = decode_reply(raw)
    assert isinstance(listing, bytes)
    names = []
    for line in listing.decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("cmd") != "client|list":
            names.append(fields.get("name", ""))
    return names


async def other_clients(server: RedisServer) -> int:
    """Clients connected to ``server``, not counting the one asking."""
    return len(await client_names(server))


async def wait_for_no_clients(server: RedisServer, timeout: float = 5.0) -> None:
    """Wait until the server sees no client but the one asking."""
    with trio.fail_after(timeout):
        while await other_clients(server):  # noqa: ASYNC110 - state lives in the server
            await trio.sleep(0.01)


# --------------------------------------------------------------------------- basics


async def test_set_get_incr(redis_server: RedisServer) -> None:
    async with open_connection(redis_server.url) as conn:
        assert isinstance(conn, Connection)
        assert await conn.execute("PING") == "PONG"
        assert await conn.execute("SET", "greeting", "hello") == "OK"
        assert await conn.execute("GET", "greeting") == b"hello"
        assert await conn.execute("GET", "missing") is None
        assert await conn.execute("INCR", "n") == 1
        assert await conn.execute("INCRBY", "n", 41) == 42
        assert await conn.execute("SET", b"bin\x00key", b"\x00\xff\r\n") == "OK"
        assert await conn.execute("GET", b"bin\x00key") == b"\x00\xff\r\n"
        assert await conn.execute("SET", "f", 1.5) == "OK"
        assert await conn.execute("INCRBYFLOAT", "f", 1) == b"2.5"
        assert conn.pending == 0
    assert decode_reply(await redis_server.acommand("GET", "n")) == b"42"


async def test_unicode_keys_and_values_use_byte_lengths(redis_server: RedisServer) -> None:
    key = "ключ:🔑:日本語"
    value = "значение ✓ 😀 ünïcödé 漢字"
    encoded = value.encode()
    assert len(encoded) > len(value)  # multibyte: bytes and characters differ
    async with open_connection(redis_server.url) as conn:
        assert await conn.execute("SET", key, value) == "OK"
        assert await conn.execute("GET", key) == encoded
        assert await conn.execute("STRLEN", key) == len(encoded)
        assert await conn.execute("APPEND", key, "€") == len(encoded) + 3
        # The stream is still aligned after those multibyte frames.
        assert await conn.execute("ECHO", "après") == "après".encode()
        assert await conn.execute("PING") == "PONG"
    raw = await redis_server.acommand("GET", key)
    assert decode_reply(raw) == (value + "€").encode()
    assert decode_reply(await redis_server.acommand("STRLEN", key)) == len(encoded) + 3


async def test_reply_error_keeps_connection_usable(redis_server: RedisServer) -> None:
    async with open_connection(redis_server.url) as conn:
        assert await conn.execute("RPUSH", "a-list", "x") == 1
        with pytest.raises(ReplyError) as info:
            await conn.execute("GET", "a-list")
        assert info.value.code == "WRONGTYPE"
        assert isinstance(info.value, RedisHAError)
        with pytest.raises(ReplyError) as info:
            await conn.execute("NOSUCHCOMMAND", "x")
        assert info.value.code == "ERR"
        # Errors interleaved with good commands from other tasks stay with their callers.
        results: dict[int, Any] = {}

        async def call(i: int) -> None:
            try:
                results[i] = await conn.execute("GET" if i % 3 else "INCR", "a-list")
            except ReplyError as exc:
                results[i] = exc.code

        await run_many(call, 30)
        assert all(results[i] == "WRONGTYPE" for i in range(30))
        assert not conn.is_closed
        assert await conn.execute("LRANGE", "a-list", 0, -1) == [b"x"]
        assert await conn.execute("PING") == "PONG"


async def test_exceptions_from_the_block_are_not_wrapped(redis_server: RedisServer) -> None:
    with pytest.raises(ReplyError):
        async with open_connection(redis_server.url) as conn:
            await conn.execute("SET", "s", "not a number")
            await conn.execute("INCR", "s")
    with pytest.raises(KeyError):
        async with open_connection(redis_server.url):
            raise KeyError("mine")


async def test_many_tasks_share_one_connection(redis_server: RedisServer) -> None:
    n_tasks, n_ops = 50, 40
    async with open_connection(redis_server.url) as conn:

        async def worker(t: int) -> None:
            for j in range(n_ops):
                key = f"w{t}:{j}"
                value = f"value of {key} " * (1 + (t * j) % 7)
                assert await conn.execute("SET", key, value) == "OK"
                assert await conn.execute("INCR", f"count:{t}") == j + 1
                assert await conn.execute("GET", key) == value.encode()
                assert await conn.execute("INCR", "total") > 0

        await run_many(worker, n_tasks)
        assert await conn.execute("GET", "total") == str(n_tasks * n_ops).encode()
        counts = await conn.execute("MGET", *[f"count:{t}" for t in range(n_tasks)])
        assert counts == [str(n_ops).encode()] * n_tasks
        assert conn.pending == 0
        assert not conn.is_closed


async def test_runs_of_pipelined_bulk_replies_reach_their_callers(
    redis_server: RedisServer,
) -> None:
    """Many GETs owed at once: their replies are taken in runs (next_bulks), values
    that look like RESP framing and absent keys among them, each to its caller."""
    n_tasks, n_ops = 60, 30
    tricky = ["\r\n$3\r\nabc\r\n", "$-1\r\n", "*2\r\n", "plain", ""]
    async with open_connection(redis_server.url) as conn:
        for t in range(n_tasks):
            await conn.execute("SET", f"g{t}", f"{tricky[t % len(tricky)]}{t}" * (1 + t % 3))
        taken = 0
        take = conn._take_bulks
        assert take is not None

        def counting(limit: int) -> list[bytes]:
            nonlocal taken
            run = take(limit)
            taken += len(run)
            return run

        conn._take_bulks = counting

        async def worker(t: int) -> None:
            want = f"{tricky[t % len(tricky)]}{t}".encode() * (1 + t % 3)
            for j in range(n_ops):
                if j % 5 == 4:
                    assert await conn.execute("GET", f"absent{t}") is None
                else:
                    assert await conn.execute("GET", f"g{t}") == want

        await run_many(worker, n_tasks)
        assert taken > 0  # the runs were taken at once, not only one by one
        assert conn.pending == 0 and not conn.is_closed


# --------------------------------------------------------------------------- cancellation


async def test_cancellation_storm_never_misroutes_a_reply(redis_server: RedisServer) -> None:
    """>= 5,000 GETs, many cancelled at random instants; every reply reaches its own caller."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    n_keys, n_tasks, n_ops = 200, 40, 150
    values: dict[str, bytes] = {}
    for i in range(n_keys):
        size = 70_000 if i % 25 == 0 else rng.randrange(0, 200)  # some span many reads
        values[f"key:{i}"] = f"<{i}>".encode() + rng.randbytes(size) + f"</{i}>".encode()
    assert len(set(values.values())) == n_keys
    keys = list(values)
    stats = {"done": 0, "done_under_deadline": 0, "cancelled": 0, "timeouts": 0}
    async with open_connection(redis_server.url) as conn:
        for key, value in values.items():
            assert await conn.execute("SET", key, value) == "OK"
        clients_before = await other_clients(redis_server)

        async def worker(wid: int) -> None:
            r = random.Random(seed + wid)
            for _ in range(n_ops):
                key = r.choice(keys)
                mode = r.random()
                if mode < 0.45:
                    got: Any = None
                    with trio.move_on_after(r.uniform(0, 0.001)) as scope:
                        got = await conn.execute("GET", key)
                    if scope.cancelled_caught:
                        stats["cancelled"] += 1
                        continue
                    stats["done_under_deadline"] += 1
                elif mode < 0.55:
                    try:
                        got = await conn.execute("GET", key, timeout=r.uniform(0, 0.001))
                    except ServerTimeout:
                        stats["timeouts"] += 1
                        continue
                else:
                    got = await conn.execute("GET", key)
                assert got == values[key], f"seed={seed}: {key} got another key's value"
                stats["done"] += 1

        await run_many(worker, n_tasks)
        total = stats["done"] + stats["cancelled"] + stats["timeouts"]
        assert total == n_tasks * n_ops >= 5000
        assert stats["cancelled"] + stats["timeouts"] > 0, stats
        assert stats["done"] > 0, stats
        # Still the same, healthy connection: no reconnect, nothing left in flight.
        await wait_until(lambda: conn.pending == 0)
        assert not conn.is_closed
        assert await conn.execute("PING") == "PONG"
        for key in rng.sample(keys, 20):
            assert await conn.execute("GET", key) == values[key]
        assert await other_clients(redis_server) == clients_before == 1


async def test_cancelled_before_send_does_nothing(redis_server: RedisServer) -> None:
    async with open_connection(redis_server.url) as conn:
        with trio.CancelScope() as scope:
            scope.cancel()
            await conn.execute("INCR", "counter")
        assert scope.cancelled_caught
        assert conn.pending == 0  # nothing was queued...
        assert await conn.execute("GET", "counter") is None  # ...nor applied
        with trio.move_on_at(trio.current_time() - 1) as scope:  # deadline already past
            await conn.execute("INCR", "counter")
        assert scope.cancelled_caught
        assert await conn.execute("INCR", "counter") == 1
        assert not conn.is_closed


async def test_cancelled_right_after_submit(redis_server: RedisServer) -> None:
    """Callers cancelled while their command is queued: the others still get their own."""
    async with open_connection(redis_server.url) as conn:
        for i in range(10):
            await conn.execute("SET", f"k{i}", f"v{i}")
        await redis_server.afreeze()  # commands reach the kernel buffer, no reply yet
        try:
            scopes = [trio.CancelScope() for _ in range(10)]
            results: dict[int, Any] = {}

            async def getter(i: int) -> None:
                with scopes[i]:
                    results[i] = await conn.execute("GET", f"k{i}")

            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(getter, i)
                await wait_until(lambda: conn.pending == 10)
                for i in range(0, 10, 2):
                    scopes[i].cancel()
                # The cancelled callers return at once although their replies are owed.
                await wait_until(lambda: all(scopes[i].cancelled_caught for i in range(0, 10, 2)))
                assert conn.pending == 10
                await redis_server.athaw()
        finally:
            if redis_server.frozen:
                await redis_server.athaw()
        assert results == {i: f"v{i}".encode() for i in range(1, 10, 2)}
        await wait_until(lambda: conn.pending == 0)
        assert await conn.execute("GET", "k0") == b"v0"
        assert await conn.execute("GET", "k7") == b"v7"
        assert not conn.is_closed


class ChunkSpy(_Transport):
    """Wraps a connection's transport to see each chunk the reader receives."""

    def __init__(self, inner: _Transport) -> None:
        self.inner = inner
        self.on_chunk: Callable[[bytes], None] | None = None

    def send_nowait(self, data: bytes) -> int:
        return self.inner.send_nowait(data)

    async def send_all(self, data: bytes) -> None:
        await self.inner.send_all(data)

    async def receive_some(self) -> bytes:
        data = await self.inner.receive_some()
        if self.on_chunk is not None:
            self.on_chunk(data)
        return data

    def close_now(self) -> None:
        self.inner.close_now()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_cancelled_in_the_middle_of_a_large_reply(redis_server: RedisServer) -> None:
    """Cancel a GET of a few MB after its reply started arriving, at varying depths."""
    big = random.Random(7).randbytes(6 * 1024 * 1024)
    conn = await connect(redis_server.url)
    spy = ChunkSpy(conn._transport)
    conn._transport = spy  # before run(): the reader reads through the spy
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        assert await conn.execute("SET", "big", big) == "OK"
        assert await conn.execute("SET", "small", "tiny") == "OK"
        for after_chunks in (1, 2, 5, 20, 60):
            scope = trio.CancelScope()
            received = 0
            cancelled_mid_reply = False

            def on_chunk(
                data: bytes, scope: trio.CancelScope = scope, n: int = after_chunks
            ) -> None:
                nonlocal received, cancelled_mid_reply
                received += 1
                if received == n:
                    assert conn.pending == 1  # the reply is not complete yet
                    cancelled_mid_reply = True
                    scope.cancel()

            async def fetch(scope: trio.CancelScope = scope) -> None:
                with scope:
                    await conn.execute("GET", "big")
                    raise AssertionError("the big GET was not cancelled")

            spy.on_chunk = on_chunk
            with trio.fail_after(PROMPT):
                await fetch()
            spy.on_chunk = None
            assert cancelled_mid_reply and scope.cancelled_caught
            # The rest of the big reply is read and dropped; the next caller gets its own.
            with trio.fail_after(PROMPT):
                assert await conn.execute("GET", "small") == b"tiny"
            assert conn.pending == 0
        # Two big replies pipelined, the first one cancelled part way: the second is intact.
        first = trio.CancelScope()
        got: list[bytes] = []

        async def cancelled_fetch() -> None:
            with first:
                await conn.execute("GET", "big")

        async def full_fetch() -> None:
            got.append(await conn.execute("GET", "big"))

        count = 0

        def cancel_on_third(data: bytes) -> None:
            nonlocal count
            assert conn.pending == 2  # the first reply is still incomplete
            count += 1
            if count == 3:
                first.cancel()
                spy.on_chunk = None

        await redis_server.afreeze()  # both GETs are queued before any reply starts
        try:
            with trio.fail_after(PROMPT):
                async with trio.open_nursery() as inner:
                    inner.start_soon(cancelled_fetch)
                    await wait_until(lambda: conn.pending == 1)
                    inner.start_soon(full_fetch)
                    await wait_until(lambda: conn.pending == 2)
                    spy.on_chunk = cancel_on_third
                    await redis_server.athaw()
        finally:
            if redis_server.frozen:
                await redis_server.athaw()
        assert count == 3
        assert first.cancelled_caught
        assert got == [big]
        assert await conn.execute("GET", "big") == big
        assert not conn.is_closed
        await conn.aclose()
    assert conn.is_closed


async def test_close_while_the_reader_holds_part_of_a_reply(redis_server: RedisServer) -> None:
    """close_now() while the reader is mid-reply: waiters get PoolClosed, run() returns."""
    big = b"z" * (2 * 1024 * 1024)
    conn = await connect(redis_server.url)
    spy = ChunkSpy(conn._transport)
    conn._transport = spy
    outcome: list[BaseException] = []
    with trio.fail_after(PROMPT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run)  # must return normally: the close was deliberate
            assert await conn.execute("SET", "big", big) == "OK"
            spy.on_chunk = lambda data: conn.close_now()  # in the reader, between two reads

            async def getter() -> None:
                try:
                    await conn.execute("GET", "big")
                except PoolClosed as exc:
                    outcome.append(exc)

            nursery.start_soon(getter)
    assert len(outcome) == 1
    assert conn.is_closed


# --------------------------------------------------------------------------- solo reads


class IOWaits(trio.abc.Instrument):
    """Counts the scheduler's trips: one wait for I/O per pass of trio's run loop."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def gets_under(conn: Connection, instrument: trio.abc.Instrument, n: int) -> None:
    """``n`` sequential GETs of ``k`` (holding ``v``) with ``instrument`` watching the run loop."""
    trio.lowlevel.add_instrument(instrument)
    try:
        for _ in range(n):
            assert await conn.execute("GET", "k") == b"v"
    finally:
        trio.lowlevel.remove_instrument(instrument)


class ParserSpy:
    """Wraps a connection's parser to see each chunk fed to it, by whichever task reads."""

    def __init__(self, inner: Parser) -> None:
        self.inner = inner
        self.on_feed: Callable[[bytes], None] | None = None

    def feed(self, data: bytes) -> None:
        self.inner.feed(data)
        if self.on_feed is not None:
            self.on_feed(data)

    def next_reply(self) -> Any:
        return self.inner.next_reply()


async def test_a_sequential_command_takes_one_trip_through_the_scheduler(
    redis_server: RedisServer,
) -> None:
    """A caller alone on the connection reads its own reply: no reader wake-up in between."""
    async with open_connection(redis_server.url) as conn:
        await conn.execute("SET", "k", "v")
        n = 500
        waits = IOWaits()
        await gets_under(conn, waits, n)
        # Two per command through the reader task; a few more for its rechecks.
        assert waits.count < 1.2 * n, waits.count
        assert conn.pending == 0


async def test_cancelled_in_the_middle_of_its_own_large_reply(redis_server: RedisServer) -> None:
    """A solo caller cancelled part way through its reply: the reader drops the rest."""
    big = random.Random(8).randbytes(6 * 1024 * 1024)
    conn = await connect(redis_server.url)
    spy = ParserSpy(conn._parser)
    conn._parser = spy  # before run(): every reader feeds the spy
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        assert await conn.execute("SET", "big", big) == "OK"
        assert await conn.execute("SET", "small", "tiny") == "OK"
        for after_chunks in (1, 3, 10, 40):
            scope = trio.CancelScope()
            fed = 0
            solo_at_cancel: list[bool] = []

            def on_feed(
                data: bytes,
                scope: trio.CancelScope = scope,
                n: int = after_chunks,
                seen: list[bool] = solo_at_cancel,
            ) -> None:
                nonlocal fed
                fed += 1
                if fed == n:
                    assert conn.pending == 1  # the reply is not complete yet
                    seen.append(conn._owner == _SOLO)
                    scope.cancel()

            spy.on_feed = on_feed
            with trio.fail_after(PROMPT), scope:
                await conn.execute("GET", "big")
                raise AssertionError("the big GET was not cancelled")
            spy.on_feed = None
            assert scope.cancelled_caught and solo_at_cancel == [True]
            # The socket went back to the reader, which reads and drops the rest;
            # the next caller gets its own reply.
            with trio.fail_after(PROMPT):
                assert await conn.execute("GET", "small") == b"tiny"
            assert conn.pending == 0
        # A second caller queued behind a solo caller that is cancelled part way.
        first = trio.CancelScope()
        got: list[bytes] = []
        count = 0

        def cancel_on_third(data: bytes) -> None:
            nonlocal count
            count += 1
            if count == 3:
                assert conn.pending == 2
                first.cancel()
                spy.on_feed = None

        async def cancelled_fetch() -> None:
            with first:
                await conn.execute("GET", "big")

        async def full_fetch() -> None:
            got.append(await conn.execute("GET", "big"))

        await redis_server.afreeze()  # both GETs are queued before any reply starts
        try:
            with trio.fail_after(PROMPT):
                async with trio.open_nursery() as inner:
                    inner.start_soon(cancelled_fetch)
                    await wait_until(lambda: conn._owner == _SOLO)
                    inner.start_soon(full_fetch)
                    await wait_until(lambda: conn.pending == 2)
                    spy.on_feed = cancel_on_third
                    await redis_server.athaw()
        finally:
            if redis_server.frozen:
                await redis_server.athaw()
        assert count == 3 and first.cancelled_caught
        assert got == [big]
        assert await conn.execute("GET", "big") == big
        assert not conn.is_closed
        await conn.aclose()


async def test_replies_behind_a_solo_caller_reach_their_own_callers(
    redis_server: RedisServer,
) -> None:
    """Commands queued while a caller reads solo: the solo caller leaves, the reader goes on."""
    async with open_connection(redis_server.url) as conn:
        for i in range(20):
            await conn.execute("SET", f"k{i}", f"v{i}")
        await redis_server.afreeze()
        try:
            results: dict[int, Any] = {}

            async def getter(i: int) -> None:
                results[i] = await conn.execute("GET", f"k{i}")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(getter, 0)
                await wait_until(lambda: conn._owner == _SOLO)
                for i in range(1, 20):
                    nursery.start_soon(getter, i)
                await wait_until(lambda: conn.pending == 20)
                await redis_server.athaw()
        finally:
            if redis_server.frozen:
                await redis_server.athaw()
        assert results == {i: f"v{i}".encode() for i in range(20)}
        assert conn.pending == 0
        assert not conn.is_closed


async def test_an_idle_connection_after_a_solo_read_notices_a_close(
    redis_server: RedisServer,
) -> None:
    """Nobody holds the socket after a solo read: the reader takes it back and sees EOF."""
    async with open_connection(redis_server.url, client_name="solo") as conn:
        for _ in range(2):  # the first may come before the reader task started
            assert await conn.execute("PING") == "PONG"
        assert conn._owner != _READER  # the last read was solo
        await redis_server.acommand("CLIENT", "KILL", "SKIPME", "yes")
        await wait_until(lambda: conn.is_closed, PROMPT)
        with pytest.raises(ServerUnavailable):
            await conn.execute("PING")


# --------------------------------------------------------------------------- transports


async def test_unix_socket(redis_factory: RedisFactory) -> None:
    server = redis_factory(unix_socket=True)
    async with open_connection(server.unix_url + "?db=2") as conn:
        assert conn.spec.path == server.unix_path
        assert await conn.execute("SET", "over-unix", "yes") == "OK"
        assert await conn.execute("GET", "over-unix") == b"yes"
        info = await conn.execute("CLIENT", "INFO")
        assert b"db=2" in info
    assert "db2" in server.info("keyspace")
    assert "db0" not in server.info("keyspace")


async def test_missing_unix_socket_is_unavailable(tmp_path: Any) -> None:
    with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable):
        await connect(f"unix://{tmp_path}/nothing-here.sock")


async def test_tls_with_the_harness_ca(tls_redis_server: RedisServer, tls_files: TLSFiles) -> None:
    server = tls_redis_server
    assert server.url.startswith("rediss://")
    async with open_connection(server.url, ssl_context=tls_files.client_context()) as conn:
        assert await conn.execute("SET", "secure", "yes") == "OK"
        assert await conn.execute("GET", "secure") == b"yes"
        big = b"t" * 300_000  # many TLS records
        assert await conn.execute("SET", "big", big) == "OK"
        got = await conn.execute("GET", "big")
        assert got == big
        # Many tasks over TLS: the writer task path (TLS cannot send without blocking).
        results = {}

        async def incr(i: int) -> None:
            results[i] = await conn.execute("INCR", f"c{i % 5}")

        await run_many(incr, 100)
        assert sorted(results.values()) == sorted(list(range(1, 21)) * 5)
    # The CA file given in the URL works as well, and localhost matches the certificate.
    url = f"rediss://localhost:{server.port}?ssl_ca_certs={tls_files.ca_file}"
    async with open_connection(url) as conn:
        assert await conn.execute("GET", "secure") == b"yes"


async def test_tls_rejects_untrusted_certificates(tls_redis_server: RedisServer) -> None:
    server = tls_redis_server
    # Default verification (system CAs): the harness's private CA is not trusted.
    with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable) as info:
        await connect(server.url)
    assert "certificate" in error_text(info.value).lower()
    # A context trusting some other CA is refused too.
    stranger = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    stranger.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())
    with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable):
        await connect(server.url, ssl_context=stranger)
    # Plain text against the TLS port fails rather than hangs.
    with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable):
        async with open_connection(f"redis://127.0.0.1:{server.port}", connect_timeout=1.0) as conn:
            await conn.execute("PING")
    # Verification off only when asked for explicitly.
    async with open_connection(server.url + "?ssl_cert_reqs=none") as conn:
        assert await conn.execute("PING") == "PONG"


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback(redis_factory: RedisFactory) -> None:
    # The harness binds 127.0.0.1 only; a later --bind replaces it with both addresses.
    server = redis_factory(extra_args=["--bind", "127.0.0.1", "::1"])
    async with open_connection(f"redis://[::1]:{server.port}") as conn:
        assert conn.label == f"redis://[::1]:{server.port}"
        assert await conn.execute("SET", "v6", "yes") == "OK"
        assert await conn.execute("GET", "v6") == b"yes"
        assert b"::1" in await conn.execute("CLIENT", "INFO")


# --------------------------------------------------------------------------- handshake


async def test_password(redis_factory: RedisFactory) -> None:
    server = redis_factory(password=SECRET)
    for protocol in (2, 3):
        url = f"redis://:{SECRET}@127.0.0.1:{server.port}?protocol={protocol}"
        async with open_connection(url) as conn:
            assert await conn.execute("SET", "authed", protocol) == "OK"
            assert await conn.execute("GET", "authed") == str(protocol).encode()
        # The password given as an option works as well.
        async with open_connection(server.url, password=SECRET, protocol=protocol) as conn:
            assert await conn.execute("PING") == "PONG"


@pytest.mark.parametrize("protocol", [2, 3])
async def test_wrong_or_missing_password(redis_factory: RedisFactory, protocol: int) -> None:
    server = redis_factory(password=SECRET)
    wrong = "Wrong-Guess-77Xp"
    with trio.fail_after(PROMPT), pytest.raises(AuthenticationError) as info:
        await connect(f"redis://:{wrong}@127.0.0.1:{server.port}?protocol={protocol}")
    assert isinstance(info.value, ServerUnavailable)
    for secret in (wrong, SECRET):
        assert secret not in error_text(info.value)
    with trio.fail_after(PROMPT), pytest.raises(AuthenticationError) as info:
        async with open_connection(f"{server.url}?protocol={protocol}"):
            pass
    assert SECRET not in error_text(info.value)
    await wait_for_no_clients(server)


async def test_acl_user(redis_factory: RedisFactory) -> None:
    password = "Alice-Pw-31337"
    server = redis_factory(acl_users=[f"alice on >{password} ~* +@all"])
    for protocol in (2, 3):
        url = f"redis://alice:{password}@127.0.0.1:{server.port}?protocol={protocol}"
        async with open_connection(url) as conn:
            assert await conn.execute("ACL", "WHOAMI") in (b"alice", "alice")
            assert await conn.execute("SET", "by-alice", "1") == "OK"
        with trio.fail_after(PROMPT), pytest.raises(AuthenticationError) as info:
            await connect(f"redis://alice:nope-Wr0ng@127.0.0.1:{server.port}?protocol={protocol}")
        assert "nope-Wr0ng" not in error_text(info.value)
        assert password not in error_text(info.value)


async def test_select_db_from_url(redis_server: RedisServer) -> None:
    async with open_connection(f"{redis_server.url}/5") as conn:
        assert conn.spec.db == 5
        assert await conn.execute("SET", "in-db-5", "here") == "OK"
        assert await conn.execute("GET", "in-db-5") == b"here"
    # Invisible in db 0, visible in db 5 (checked with the harness's raw client).
    assert decode_reply(await redis_server.acommand("GET", "in-db-5")) is None
    async with await open_raw_connection(redis_server.host, redis_server.port) as raw:
        assert await raw.call("SELECT", "5") == b"+OK\r\n"
        assert decode_reply(await raw.call("GET", "in-db-5")) == b"here"
    async with open_connection(f"{redis_server.url}?db=5&protocol=3") as conn:
        assert await conn.execute("GET", "in-db-5") == b"here"


async def test_client_name(redis_server: RedisServer) -> None:
    async with (
        open_connection(f"{redis_server.url}?client_name=worker-resp2") as c2,
        open_connection(f"{redis_server.url}?client_name=worker-resp3&protocol=3") as c3,
    ):
        assert await c2.execute("CLIENT", "GETNAME") == b"worker-resp2"
        assert await c3.execute("CLIENT", "GETNAME") == b"worker-resp3"
        names = await client_names(redis_server)
        assert sorted(names) == ["worker-resp2", "worker-resp3"]


async def test_resp3(redis_server: RedisServer) -> None:
    async with open_connection(redis_server.url + "?protocol=3") as conn:
        assert conn.spec.protocol == 3
        assert b"resp=3" in await conn.execute("CLIENT", "INFO")
        await conn.execute("HSET", "h", "f1", "v1", "f2", "v2")
        assert await conn.execute("HGETALL", "h") == {b"f1": b"v1", b"f2": b"v2"}
        await conn.execute("SADD", "s", "a", "b")
        assert await conn.execute("SMEMBERS", "s") == {b"a", b"b"}
        assert await conn.execute("GET", "nothing") is None
        assert await conn.execute("SET", "n", 5) == "OK"
        assert await conn.execute("GET", "n") == b"5"
        with pytest.raises(ReplyError):
            await conn.execute("HGETALL", "n")
        assert await conn.execute("PING") == "PONG"
    async with open_connection(redis_server.url) as conn:
        assert await conn.execute("HGETALL", "h") in (
            [b"f1", b"v1", b"f2", b"v2"],
            [b"f2", b"v2", b"f1", b"v1"],
        )


# --------------------------------------------------------------------------- hostile peers


@pytest.mark.parametrize(
    "raw",
    [
        b"$99999999999\r\n",  # a bulk string bigger than any limit
        b"*4294967295\r\n",  # an array bigger than any limit
        b"?what is this\r\n",  # not a RESP type byte
        b"*1\r\n" * 500 + b":1\r\n",  # nesting bomb
        b":not-a-number\r\n",
    ],
    ids=["huge-bulk", "huge-array", "garbage-type", "deep-nesting", "bad-integer"],
)
async def test_hostile_replies_fail_the_caller_and_close(raw: bytes) -> None:
    async with (
        open_hostile_server(reply_with(raw)) as hostile,
        open_connection(hostile.url) as conn,
    ):
        errors: list[BaseException] = []

        async def call(i: int) -> None:
            try:
                await conn.execute("GET", f"k{i}")
            except (ServerUnavailable, ProtocolError) as exc:
                errors.append(exc)

        with trio.fail_after(PROMPT):
            await run_many(call, 5)
        assert len(errors) == 5
        await wait_until(lambda: conn.is_closed, PROMPT)
        with pytest.raises(ServerUnavailable):
            await conn.execute("PING")


async def test_server_closing_mid_reply_fails_every_waiter_at_once() -> None:
    n = 20

    async def handler(hc: HostileConnection) -> None:
        await answer_handshake(hc)  # returns the first GET, unanswered
        for _ in range(n - 1):
            await hc.read_command()
        await hc.send(b"$1000\r\n" + b"x" * 100)  # part of the first reply...
        hc.close()  # ...then goodbye

    async with open_hostile_server(handler) as hostile, open_connection(hostile.url) as conn:
        failed_at: list[float] = []

        async def call(i: int) -> None:
            with pytest.raises(ServerUnavailable):
                await conn.execute("GET", f"k{i}")
            failed_at.append(trio.current_time())

        with trio.fail_after(PROMPT):
            await run_many(call, n)
        assert len(failed_at) == n
        assert max(failed_at) - min(failed_at) < 0.5
        assert conn.is_closed
        assert conn.pending == 0


async def test_stall_detection_on_a_frozen_server(redis_server: RedisServer) -> None:
    async with open_connection(redis_server.url, stall_timeout=0.5) as conn:
        assert await conn.execute("SET", "k", "v") == "OK"
        await redis_server.afreeze()
        try:
            outcomes: list[BaseException] = []

            async def call(i: int) -> None:
                try:
                    await conn.execute("GET", "k")  # no timeout: only stall detection helps
                except ServerUnavailable as exc:
                    outcomes.append(exc)

            with trio.fail_after(PROMPT):
                await run_many(call, 10)
            assert len(outcomes) == 10
            assert conn.is_closed
            with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable):
                await conn.execute("GET", "k")
        finally:
            await redis_server.athaw()


async def test_per_call_timeout_then_late_reply_is_dropped(redis_server: RedisServer) -> None:
    async with open_connection(redis_server.url) as conn:
        await conn.execute("SET", "a", "A")
        await conn.execute("SET", "b", "B")
        await redis_server.afreeze()
        try:
            with pytest.raises(ServerTimeout):
                await conn.execute("GET", "a", timeout=0.05)
        finally:
            await redis_server.athaw()
        assert await conn.execute("GET", "b") == b"B"
        assert conn.pending == 0


async def test_a_misspelled_option_is_refused_before_dialling() -> None:
    # Port 1 is never dialled: the option is checked first. A type checker
    # sees the options too: strict mypy reports these ignores as unused if
    # connect's and open_connection's options lose their types.
    with pytest.raises(ConfigurationError, match="pasword"):
        await connect("redis://127.0.0.1:1", pasword=SECRET)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="stall_timout"):
        async with open_connection("redis://127.0.0.1:1", stall_timout=1.0):  # type: ignore[call-arg]
            pass


async def test_connect_to_a_frozen_server_times_out(redis_server: RedisServer) -> None:
    await redis_server.afreeze()
    try:
        with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable):
            async with open_connection(redis_server.url, connect_timeout=0.3):
                pass
    finally:
        await redis_server.athaw()


async def test_hung_peer_never_blocks_forever() -> None:
    async with (
        open_hostile_server(never_reply()) as hostile,
        open_connection(hostile.url, stall_timeout=0.4) as conn,
    ):
        with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable):
            await conn.execute("GET", "k")


# --------------------------------------------------------------------------- backpressure


async def test_backpressure_callers_wait_instead_of_queueing(redis_server: RedisServer) -> None:
    limit = 4
    async with open_connection(redis_server.url, max_pending=limit) as conn:
        await redis_server.afreeze()
        try:
            done: list[int] = []

            async def incr() -> None:
                done.append(await conn.execute("INCR", "ctr"))

            async with trio.open_nursery() as callers:
                for _ in range(20):
                    callers.start_soon(incr)
                await wait_until(lambda: conn.pending == limit)
                # Let every caller run until all are blocked: none may go past the limit.
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                assert conn.pending == limit
                assert not done
                await redis_server.athaw()
        finally:
            if redis_server.frozen:
                await redis_server.athaw()
        assert sorted(done) == list(range(1, 21))
        assert not conn.is_closed

        # Under real load as well.
        async def worker(i: int) -> None:
            for _ in range(50):
                await conn.execute("INCR", "load")
                assert conn.pending <= limit

        await run_many(worker, 30)
        assert await conn.execute("GET", "load") == b"1500"


async def test_execute_timeout_covers_the_wait_for_room_in_the_backlog(
    autojump_clock: Any,
) -> None:
    # The wait for room ran outside the timeout: a call on a full connection to a
    # hung server waited for the stall watchdog (30 s here), not its 0.5 s.
    async with trio.open_nursery() as nursery:
        server = MemoryServer(nursery)
        conn = await server.connect(
            parse_server("redis://memory:6379"), max_pending=4, stall_timeout=30.0
        )
        nursery.start_soon(conn.run)
        assert await conn.execute("PING") == "PONG"
        server.hang()
        echoed: list[bytes] = []

        async def echo(word: str) -> None:
            echoed.append(await conn.execute("ECHO", word))

        for i in range(4):
            nursery.start_soon(echo, f"stuck{i}")
        await trio.testing.wait_all_tasks_blocked()
        assert conn.pending == 4
        start = trio.current_time()
        with pytest.raises(ServerTimeout, match="nothing was sent") as info:
            await conn.execute("ECHO", "never", timeout=0.5)
        assert info.value.sent is False
        assert trio.current_time() - start == pytest.approx(0.5)
        assert conn.pending == 4
        server.unhang()
        await wait_until(lambda: len(echoed) == 4)
        assert sorted(echoed) == [b"stuck0", b"stuck1", b"stuck2", b"stuck3"]
        # The server never saw the command that timed out.
        assert sorted(c for _, c in server.commands) == [
            [b"ECHO", b"stuck%d" % i] for i in range(4)
        ] + [[b"PING"]]

        # The deadline counts from the call: room that comes late leaves only
        # the rest of it for the reply (each reply takes 0.4 s: room at 0.4,
        # this reply at 2.0; it was sent, so the timeout says nothing else).
        server.delay = 0.4
        for i in range(4):
            nursery.start_soon(echo, f"slow{i}")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        with pytest.raises(ServerTimeout, match=r"did not reply within 1\.0 s"):
            await conn.execute("ECHO", "late", timeout=1.0)
        assert trio.current_time() - start == pytest.approx(1.0)
        await wait_until(lambda: len(echoed) == 8)
        assert not conn.is_closed
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- early flush


async def test_queued_scripts_go_out_before_the_writer_task_runs(
    redis_server: RedisServer,
) -> None:
    # Callers of one scheduler batch queue behind a busy connection. Scripts
    # (early=True) go out FLUSH_AT at a time, so the server starts on them
    # before the batch ends; other commands wait for the writer task.
    n = 3 * FLUSH_AT + 5
    async with open_connection(redis_server.url) as conn:
        script = "return redis.call('INCR', KEYS[1])"
        sha = await conn.execute("SCRIPT", "LOAD", script)
        for early in (True, False):
            key = f"early-{early}"
            waiter = Waiter(n)
            slots = [
                conn.submit(encode_command(("EVALSHA", sha, 1, key)), waiter, early=early)
                for _ in range(n)
            ]  # no checkpoint since the first: the writer task has not run
            deadline = time.monotonic() + PROMPT

            def done(key: str = key) -> int:
                value = decode_reply(redis_server.command("GET", key))
                return int(value) if isinstance(value, bytes) else 0

            if early:
                # The first went out at once (idle), then FLUSH_AT at a time.
                sent = 1 + (n - 1) // FLUSH_AT * FLUSH_AT
                while done() < sent and time.monotonic() < deadline:
                    # Blocking on purpose: the writer task must not get to run.
                    time.sleep(0.001)  # noqa: ASYNC251
            assert done() == (1 + (n - 1) // FLUSH_AT * FLUSH_AT if early else 1)
            with trio.fail_after(PROMPT):
                await waiter.wait()
            assert [slot.value for slot in slots] == list(range(1, n + 1))  # in order


async def test_an_early_flush_that_fills_the_socket_leaves_the_rest_to_the_writer() -> None:
    # The peer reads nothing, so the socket fills mid-command. When the
    # connection breaks, the commands wholly sent count as sent; the one cut
    # short and those still in the buffer do not (a server runs no command it
    # has only part of).
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with ours, peer:
        conn = Connection(_SocketTransport(ours), RespParser(), parse_server("redis://x:1"))
        data = encode_command(("EVALSHA", "0" * 40, 0, "v" * 1000))
        waiter = Waiter(400)
        slots = [conn.submit(data, waiter, early=True) for _ in range(400)]
        peer.setblocking(False)
        accepted = 0
        with contextlib.suppress(BlockingIOError):
            while chunk := peer.recv(1 << 20):
                accepted += len(chunk)
        # More than the first command (sent at once, the connection idle) left,
        # and a flush was cut short.
        assert len(data) < accepted < len(data) * len(slots)
        conn._break(ServerUnavailable("gone"))
        whole = accepted // len(data)
        flags = [getattr(slot.value, "sent", None) for slot in slots]
        assert flags == [True] * whole + [False] * (len(slots) - whole)


# --------------------------------------------------------------------------- lifecycle


async def test_refused_port_is_unavailable_quickly() -> None:
    port = free_port()
    start = trio.current_time()
    with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable) as info:
        async with open_connection(f"redis://127.0.0.1:{port}"):
            pass
    assert trio.current_time() - start < 1.0
    assert not isinstance(info.value, AuthenticationError)


async def test_no_leaks_after_the_block(redis_server: RedisServer) -> None:
    before = count_tasks()
    async with open_connection(redis_server.url) as conn:
        assert count_tasks() > before  # the reader, writer and watchdog run meanwhile
        assert await conn.execute("PING") == "PONG"
        assert await other_clients(redis_server) == 1
    assert conn.is_closed
    assert count_tasks() == before
    await wait_for_no_clients(redis_server)
    with pytest.raises(PoolClosed):
        await conn.execute("PING")
    # Same after the connection broke inside the block.
    async with open_connection(redis_server.url, stall_timeout=0.3) as conn:
        await redis_server.afreeze()
        try:
            with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable):
                await conn.execute("PING")
        finally:
            await redis_server.athaw()
    assert count_tasks() == before


async def test_connect_and_run_by_hand(redis_server: RedisServer) -> None:
    conn = await connect(redis_server.url)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        assert await conn.execute("SET", "manual", "1") == "OK"
        waiting: list[BaseException] = []
        await redis_server.afreeze()
        try:

            async def blocked() -> None:
                try:
                    await conn.execute("GET", "manual")
                except PoolClosed as exc:
                    waiting.append(exc)

            nursery.start_soon(blocked)
            await wait_until(lambda: conn.pending == 1)
            await conn.aclose()  # outstanding callers get PoolClosed; run() returns
        finally:
            await redis_server.athaw()
    assert len(waiting) == 1
    assert conn.is_closed
    assert "closed" in repr(conn)


async def test_run_quietly_logs_a_broken_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_redisha.connection")
    async with (
        open_hostile_server(reply_with(b"?bad\r\n")) as hostile,
        open_connection(hostile.url) as conn,
    ):
        with pytest.raises((ServerUnavailable, ProtocolError)):
            await conn.execute("GET", "k")
        await wait_until(lambda: any(r.name == "trio_redisha.connection" for r in caplog.records))


@pytest.mark.parametrize("protocol", [2, 3])
async def test_handshake_error_that_echoes_the_command_shows_no_credentials(
    protocol: int,
) -> None:
    # Redis before 6 answers HELLO (and other commands it does not know) with
    # "unknown command ..., with args beginning with: ..." quoting the arguments.
    async def echo_handshake(conn: HostileConnection) -> None:
        while True:
            command = await conn.read_command()
            args = " ".join(f"'{a.decode()}'" for a in command[1:])
            await conn.send(
                f"-ERR unknown command '{command[0].decode()}', "
                f"with args beginning with: {args}\r\n".encode()
            )

    async with open_hostile_server(echo_handshake) as srv:
        url = srv.url.replace("redis://", f"redis://alice:{SECRET}@") + f"?protocol={protocol}"
        with trio.fail_after(PROMPT), pytest.raises(ServerUnavailable) as caught:
            await connect(url)
    seen = [str(caught.value), repr(caught.value)]
    cause = caught.value.__cause__ or caught.value.__context__
    while cause is not None:
        seen += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    assert all(SECRET not in text for text in seen), seen
    assert "ERR" in seen[0]


@pytest.mark.parametrize(
    ("after_pong", "later", "stray"),
    [
        (b"$5\r\nbogus\r\n", b"", True),  # a whole reply nobody asked for
        (b"$5\r\nbog", b"us\r\n", True),  # the start of one
        (b">2\r\n$3\r\nmsg\r\n$1\r\nx\r\n:7\r\n", b"", True),  # one behind a push
        (b">2\r\n$3\r\nmsg\r\n$1\r\nx\r\n", b"", False),  # a push is legitimate...
        (b">2\r\n$3\r\nms", b"g\r\n$1\r\nx\r\n", False),  # ...even a part of one
    ],
    ids=["whole-reply", "partial-reply", "reply-after-push", "push", "partial-push"],
)
async def test_a_reply_nobody_asked_for_during_the_handshake_fails_it(
    after_pong: bytes, later: bytes, stray: bool
) -> None:
    # The stray reply came in the same packet as the PONG: the parser kept it,
    # and the connection handed it to its first caller (GET k1 returned b"bogus").
    async def handler(hc: HostileConnection) -> None:
        while True:
            command = await hc.read_command()
            if command[0].upper() == b"PING":
                await hc.send(b"+PONG\r\n" + after_pong)
                break
            reply = handshake_reply(command, hc.id)
            assert reply is not None
            await hc.send(reply)
        rest = later  # the end of what followed the PONG, before the first reply
        while True:
            command = await hc.read_command()
            await hc.send(rest + b"$8\r\nright-" + command[-1] + b"\r\n")
            rest = b""

    async with open_hostile_server(handler) as hostile:
        url = hostile.url.replace("redis://", f"redis://alice:{SECRET}@") + "?protocol=3"
        with trio.fail_after(PROMPT):
            if stray:
                with pytest.raises(ServerUnavailable, match="nobody asked for") as caught:
                    async with open_connection(url):
                        pytest.fail("connected to a server that sent a stray reply")
                assert hostile.url in str(caught.value)
                assert SECRET not in str(caught.value)
                await wait_until(lambda: hostile.live_connections == 0, PROMPT)
            else:
                async with open_connection(url) as conn:
                    assert await conn.execute("GET", "k1") == b"right-k1"
                    assert await conn.execute("GET", "k2") == b"right-k2"


async def test_a_protocol_violation_during_the_handshake_is_unavailable() -> None:
    # connect() and open_connection() document ServerUnavailable for a failed
    # handshake; bytes that are not RESP in answer to the PING raised ProtocolError.
    async with open_hostile_server(reply_with(b"?garbage\r\n", handshake=SETUP_COMMANDS)) as srv:
        with trio.fail_after(PROMPT):
            with pytest.raises(ServerUnavailable, match="handshake") as caught:
                async with open_connection(srv.url):
                    pytest.fail("connected to a server that broke the protocol")
            assert srv.url in str(caught.value)
            assert isinstance(caught.value.__cause__, ProtocolError)
            with pytest.raises(ServerUnavailable, match="handshake"):
                await connect(srv.url)
            await wait_until(lambda: srv.live_connections == 0, PROMPT)


async def test_stall_watchdog_closes_a_silent_connection_on_virtual_time(
    autojump_clock: Any,
) -> None:
    async with trio.open_nursery() as nursery:
        server = MemoryServer(nursery)
        conn = await server.connect(parse_server("redis://memory:6379"), stall_timeout=2.0)
        broke: list[BaseException] = []

        async def run() -> None:
            try:
                await conn.run()
            except ServerUnavailable as exc:
                broke.append(exc)

        nursery.start_soon(run)
        assert await conn.execute("PING") == "PONG"
        server.hang()
        start = trio.current_time()
        with pytest.raises(ServerUnavailable):
            await conn.execute("PING")
        # The watchdog looks every stall_timeout / 4: closed within 2.0..2.5 s.
        assert 2.0 <= trio.current_time() - start <= 2.5 + 1e-9
        assert conn.is_closed
        await trio.testing.wait_all_tasks_blocked()
        assert len(broke) == 1 and "has not answered" in str(broke[0])
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("busy_poll", [0, 0.01])
async def test_execute_alone_busy_polls_for_its_reply(
    redis_server: RedisServer, busy_poll: float
) -> None:
    """With busy_poll, a caller alone takes its reply without the loop sleeping."""
    n = 300
    async with open_connection(redis_server.url, busy_poll=busy_poll) as conn:
        assert conn.busy_poll == busy_poll
        await conn.execute("SET", "k", "v")
        sleeps = Sleeps()
        await gets_under(conn, sleeps, n)
    if busy_poll:
        assert sleeps.count < 0.2 * n  # 10 ms: on loopback every reply comes in time
    else:
        assert sleeps.count > 0.8 * n  # one sleep per command


@pytest.mark.parametrize("bad", [-1e-4, 0.5, True, "fast", float("nan")])
async def test_busy_poll_is_checked(redis_server: RedisServer, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="busy_poll"):
        await connect(redis_server.url, busy_poll=bad)  # type: ignore[arg-type]
    stream, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ConfigurationError, match="busy_poll"):
        await connect_stream(stream, redis_server.url, busy_poll=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("max_pending", 0),  # execute() would wait for room forever
        ("max_pending", -1),
        ("max_pending", 2.5),
        ("max_pending", True),
        ("max_pending", "many"),
        ("stall_timeout", 0),
        ("stall_timeout", -1.0),
        ("stall_timeout", float("nan")),
        ("stall_timeout", float("inf")),
        ("stall_timeout", 10**400),
        ("stall_timeout", "5"),
    ],
)
async def test_backlog_and_stall_options_are_checked(
    redis_server: RedisServer, option: str, bad: object
) -> None:
    options: dict[str, Any] = {option: bad}
    with trio.fail_after(DEADLINE):
        with pytest.raises(ConfigurationError, match=option):
            await connect(redis_server.url, **options)
        stream, _ = trio.testing.memory_stream_pair()
        with pytest.raises(ConfigurationError, match=option):
            await connect_stream(stream, redis_server.url, **options)
        with pytest.raises(ConfigurationError, match=option):
            async with open_connection(redis_server.url, **options) as conn:
                await conn.execute("PING")


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(
    "command",
    [
        ("SUBSCRIBE", "a", "b"),
        (b"psubscribe", "n*"),
        ("SSUBSCRIBE", "s"),
        ("UNSUBSCRIBE",),
        (bytearray(b"MONITOR"),),
        ("CLIENT", "REPLY", "OFF"),
        ("client", b"reply", "skip"),
        ("REPLCONF", "ACK", "0"),  # never answered: the replies after it came one late
    ],
)
async def test_commands_whose_replies_are_not_one_per_command_are_refused(
    redis_server: RedisServer, protocol: int, command: tuple[Any, ...]
) -> None:
    # The pool sent users here for them. Over RESP3 SUBSCRIBE waited for the stall
    # watchdog (its confirmation is a push); over RESP2 a second channel's
    # confirmation was "a reply nobody asked for" and broke the connection.
    with trio.fail_after(DEADLINE):
        async with open_connection(f"{redis_server.url}?protocol={protocol}") as conn:
            with pytest.raises(UnsupportedCommand, match="not one per command"):
                await conn.execute(*command)
            assert await conn.execute("PING") in ("PONG", b"PONG")
            # Their blocking or stateful neighbours do run on a dedicated connection.
            assert await conn.execute("BLPOP", "nothing", "0.01") is None
            assert await conn.execute("CLIENT", "REPLY", "ON") in ("OK", b"OK")
    assert decode_reply(redis_server.command("PUBSUB", "NUMSUB", "a")) == [b"a", 0]


async def test_a_hand_made_spec_with_a_host_no_resolver_can_encode_is_unavailable() -> None:
    spec = ServerSpec(host="a" * 64 + ".example", port=6379)  # parse_server refuses it
    with trio.fail_after(DEADLINE):
        with pytest.raises(ServerUnavailable, match="cannot connect"):
            await connect(spec)


async def test_busy_polling_pauses_after_misses_then_tries_again() -> None:
    spinner = _Spinner()
    assert not spinner.allowed(0)  # off
    for _ in range(SPIN_MISSES):
        assert spinner.allowed(1e-4)
        spinner.outcome(False)
    assert [spinner.allowed(1e-4) for _ in range(SPIN_PAUSE)] == [False] * SPIN_PAUSE
    assert spinner.allowed(1e-4)
    spinner.outcome(False)
    spinner.outcome(True)  # a hit forgets the misses before it
    for _ in range(SPIN_MISSES - 1):
        spinner.outcome(False)
    assert spinner.allowed(1e-4)


async def test_busy_polling_never_holds_a_runnable_task_back() -> None:
    spinner = _Spinner()
    assert spinner.allowed(1e-4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.lowlevel.checkpoint)
        assert not spinner.allowed(1e-4)  # that task could run: sleep instead


# --------------------------------------------------------------------------- Ctrl-C


class InterruptingTransport(_Transport):
    """Wraps a connection's transport to raise SIGINT right after a chosen send."""

    def __init__(self, inner: _Transport, when: Callable[[bytes], bool]) -> None:
        self.inner = inner
        self.when: Callable[[bytes], bool] | None = when

    def send_nowait(self, data: bytes) -> int:
        sent = self.inner.send_nowait(data)
        self._maybe_interrupt(data)
        return sent

    async def send_all(self, data: bytes) -> None:
        await self.inner.send_all(data)
        self._maybe_interrupt(data)

    def _maybe_interrupt(self, data: bytes) -> None:
        if self.when is not None and self.when(data):
            self.when = None
            # Trio's handler runs at the next bytecode: in unprotected code it
            # raises KeyboardInterrupt right here, the bytes already sent.
            signal.raise_signal(signal.SIGINT)

    async def receive_some(self) -> bytes:
        return await self.inner.receive_some()

    def close_now(self) -> None:
        self.inner.close_now()

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_ctrl_c_just_after_an_early_flush_runs_nothing_twice(redis_server: RedisServer) -> None:
    # KeyboardInterrupt raised in _flush_now after the send, before the buffer
    # was cleared: the writer task sent those commands again, the server ran
    # them twice, and every later reply went to the caller after its own (the
    # GET below got 18, an EVALSHA's reply). Protected, the interrupt comes at
    # the next checkpoint, where the connection is cancellation-safe.
    n = FLUSH_AT + 1  # the first goes out at once (idle), then FLUSH_AT early
    script = "return redis.call('INCR', KEYS[1])"
    after: list[Any] = []

    async def main() -> None:
        conn = await connect(redis_server.url)
        sha = decode_reply(redis_server.command("SCRIPT", "LOAD", script))
        conn._transport = InterruptingTransport(
            conn._transport, lambda data: data.count(b"EVALSHA") == FLUSH_AT
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run)
            try:
                waiter = Waiter(n)
                for _ in range(n):
                    conn.submit(encode_command(("EVALSHA", sha, 1, "n")), waiter, early=True)
                await waiter.wait()
            finally:
                # "Save on the way out": the connection must still be in step.
                with trio.CancelScope(shield=True), trio.move_on_after(PROMPT):
                    after.append(await conn.execute("GET", "n"))
                nursery.cancel_scope.cancel()

    raised: BaseException | None = None
    try:
        trio.run(main)
    except BaseException as exc:  # looked at below
        raised = exc
    assert after == [b"%d" % n]
    assert decode_reply(redis_server.command("GET", "n")) == b"%d" % n
    # The interrupt itself still reaches the caller, and nothing else does.
    assert pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True).matches(raised)


class ProtectionSpy(Waiter):
    """A waiter that records whether each fill of its slots ran KI-protected."""

    def __init__(self, need: int) -> None:
        super().__init__(need)
        self.protected: list[bool] = []

    def slot_filled(self, success: bool) -> None:
        self.protected.append(trio.lowlevel.currently_ki_protected())
        super().slot_filled(success)


async def test_slots_are_filled_ki_protected_by_the_reader_and_solo(
    redis_server: RedisServer,
) -> None:
    # A KeyboardInterrupt between taking a slot off the FIFO and filling it
    # gave every later caller the reply of the one before.
    async with open_connection(redis_server.url) as conn:
        assert await conn.execute("PING") == "PONG"
        readers = ProtectionSpy(5)
        for _ in range(5):
            conn.submit(encode_command(("PING",)), readers)  # the reader task reads
        with trio.fail_after(PROMPT):
            await readers.wait()
        solo = ProtectionSpy(1)
        slot = conn.submit(encode_command(("PING",)), solo, solo=True)
        assert conn.take_solo(slot)
        with trio.fail_after(PROMPT):
            await conn.read_solo(slot)
        assert readers.protected == [True] * 5
        assert solo.protected == [True]


@pytest.mark.parametrize("timeout", [-1, 0, "1", math.nan, math.inf, True])
async def test_a_bad_timeout_is_refused_before_the_send(
    redis_server: RedisServer, timeout: Any
) -> None:
    # Trio refused it only after the send: the write was applied, the caller
    # got a bare ValueError or TypeError, and the connection, left to a solo
    # reader that never read, hung every later command.
    async with open_connection(redis_server.url) as conn:
        with pytest.raises(ConfigurationError, match="timeout"):
            await conn.execute("SET", "k", "applied", timeout=timeout)
        with trio.fail_after(PROMPT):
            assert await conn.execute("GET", "k") is None
            assert await conn.execute("SET", "k", "v", timeout=1) == "OK"


async def test_a_connection_broken_by_a_protocol_error_names_its_server() -> None:
    # "ProtocolError: invalid integer b'abc'", with no server named, unlike
    # every other break ("connection to <server> lost: ...").
    async with (
        open_hostile_server(reply_with(b":abc\r\n")) as bad,
        open_connection(bad.url) as conn,
    ):
        with pytest.raises(ServerUnavailable) as caught:
            await conn.execute("GET", "x", timeout=PROMPT)
    text = str(caught.value)
    assert f"connection to {bad.url} lost" in text and "invalid integer" in text


async def test_a_push_over_the_element_limit_never_reaches_a_caller() -> None:
    # It came back as a plain ReplyTooLarge and filled the slot at the head of
    # the FIFO: each later caller got the reply of the one before.
    big_push = b">2\r\n$10\r\ninvalidate\r\n*4\r\n" + b"$1\r\nk\r\n" * 4  # 6 > 5 elements

    async def handler(conn: HostileConnection) -> None:
        command = await answer_handshake(conn, SETUP_COMMANDS)
        first = True
        while True:
            if command[0].upper() != b"GET":
                await conn.send(b"+OK\r\n")
            else:
                value = b"value-of-" + command[1]
                reply = b"$%d\r\n%s\r\n" % (len(value), value)
                await conn.send((big_push if first else b"") + reply)
                first = False
            command = await conn.read_command()

    pushes: list[Any] = []
    async with (
        open_hostile_server(handler) as bad,
        open_connection(bad.url, limits=Limits(max_reply_elements=5)) as conn,
    ):
        conn.on_push = pushes.append
        with trio.fail_after(PROMPT):
            for key in ("k1", "k2", "k3"):
                assert await conn.execute("GET", key) == b"value-of-" + key.encode()
    assert len(pushes) == 1 and isinstance(pushes[0][0], ReplyTooLarge)
