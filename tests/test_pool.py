"""The HA pool against real redis-server processes: API, errors, auth, logs, status.

Failure injection under load (hung servers, reconnects, faults during a workload,
hedged reads, closing under load) is in ``test_pool_faults.py``; the helpers
both modules use live here.

Every wait for a state change polls with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import trio

from tests.conftest import RedisFactory
from tests.harness.helpers import (
    Sleeps,
    command_calls,
    timed,
    urls,
    wait_no_clients,
    wait_until,
)
from tests.harness.hostile import (
    SETUP_COMMANDS,
    HostileConnection,
    answer_handshake,
    open_hostile_server,
)
from trio_redisha import (
    ConfigurationError,
    HashMap,
    Limits,
    Pool,
    PoolClosed,
    QuorumError,
    Replies,
    ReplyError,
    ReplyTooLarge,
    Script,
    ServerState,
    ServerTimeout,
    ServerUnavailable,
    UnsupportedCommand,
    open_pool,
)
from trio_redisha.connection import _SOLO, SPIN_MISSES, SPIN_PAUSE
from trio_redisha.testing import RedisServer, decode_reply, free_port

#: How often state is polled.
POLL = 0.01
#: "Used again within 5 s with defaults"; also the bound of other state polls.
RECOVERY = 5.0
#: "Within milliseconds", with room for a loaded 2-core machine.
FAST = 0.2
#: Slack allowed beyond a deadline before a call counts as having waited too long.
SLACK = 0.3

PONG3 = ["PONG", "PONG", "PONG"]


# --------------------------------------------------------------------------- helpers


def holds(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """Make a synchronous check usable with :func:`wait_until`."""

    async def predicate() -> bool:
        return check()

    return predicate


async def answers(pool: Pool, index: int) -> bool:
    """Whether server ``index`` answers a PING through the pool right now."""
    replies = await pool.ping()
    return bool(replies[index] == "PONG")


@asynccontextmanager
async def ready_pool(*servers: str | tuple[str, int], **options: Any) -> AsyncIterator[Pool]:
    """:func:`open_pool`, then wait until every server is connected.

    For tests about something other than start-up: on a loaded machine a first
    connect may take longer than the start-up grace of one ``timeout``.
    """
    async with open_pool(*servers, **options) as pool:
        await wait_until(holds(lambda: pool.available == len(pool)), what="all connected")
        yield pool


async def wait_ready(pool: Pool) -> None:
    """Wait until every server of a pool started by hand is connected."""
    await wait_until(holds(lambda: pool.available == len(pool)), what="all connected")


def fd_count() -> int:
    """File descriptors open in this process."""
    return len(os.listdir("/proc/self/fd"))


def tasks_living() -> int:
    """Tasks alive in this trio run."""
    return trio.lowlevel.current_statistics().tasks_living


# --------------------------------------------------------------------------- the seed


async def test_seed_examples(redis_servers: list[RedisServer]) -> None:
    # The first call right after entering waits for the first connects (within
    # one timeout); 2 s leaves room for a loaded machine.
    async with open_pool(*urls(redis_servers), timeout=2.0) as pool:
        assert await pool.ping() == ["PONG", "PONG", "PONG"]
        assert await pool.setnx("fnord", 1) == [1, 1, 1]
        assert await pool.setnx("fnord", 2) == [0, 0, 0]
        replies = await pool.get("fnord")
        assert isinstance(replies, Replies)
        assert isinstance(replies, list)
        assert replies == [b"1", b"1", b"1"]
        assert replies.servers == pool.servers == tuple(urls(redis_servers))
        # Any command as a method, as in the seed.
        assert await pool.hset("h", "f", "v") == [1, 1, 1]
        assert await pool.hget("h", "f") == [b"v", b"v", b"v"]
    for server in redis_servers:
        assert decode_reply(await server.acommand("GET", "fnord")) == b"1"


async def test_entries_follow_server_order_urls_and_tuples(
    redis_servers: list[RedisServer],
) -> None:
    # A different value on each server, written behind the pool's back.
    for i, server in enumerate(redis_servers):
        await server.acommand("SET", "who", f"server{i}")
    a, b, c = redis_servers
    async with ready_pool(a.url, (b.host, b.port), c.url) as pool:
        assert await pool.get("who") == [b"server0", b"server1", b"server2"]
    async with ready_pool((c.host, c.port), a.url, (b.host, b.port)) as pool:
        assert await pool.get("who") == [b"server2", b"server0", b"server1"]
        assert pool.servers == (c.url, a.url, b.url)
        # execute_on runs on the listed servers only, in that order.
        assert await pool.execute_on([2, 0], "GET", "who") == [b"server1", b"server2"]


async def test_decode_responses(redis_servers: list[RedisServer]) -> None:
    async with ready_pool(*urls(redis_servers), decode_responses=True) as pool:
        await pool.set("k", "vé")
        assert await pool.get("k") == ["vé", "vé", "vé"]


# --------------------------------------------------------------------------- one server: solo reads


class IOWaits(trio.abc.Instrument):
    """Counts the scheduler's trips: one wait for I/O per pass of trio's run loop."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def io_waits_of_gets(pool: Pool, n: int, expected: list[bytes]) -> int:
    """The scheduler's trips while ``n`` sequential GETs of ``k`` return ``expected``."""
    waits = IOWaits()
    trio.lowlevel.add_instrument(waits)
    try:
        for _ in range(n):
            assert await pool.get("k") == expected
    finally:
        trio.lowlevel.remove_instrument(waits)
    return waits.count


async def test_one_server_command_takes_one_trip_through_the_scheduler(
    redis_server: RedisServer,
) -> None:
    """The caller reads its own reply (connection.py's solo read): no reader task between."""
    async with ready_pool(redis_server.url) as pool:
        await pool.set("k", "v")
        n = 500
        count = await io_waits_of_gets(pool, n, [b"v"])
        assert count < 1.2 * n, count  # two per command through the reader


async def sleeps_of_gets(pool: Pool, n: int, expected: list[bytes]) -> int:
    """How often the run loop could sleep while ``n`` sequential GETs return ``expected``."""
    sleeps = Sleeps()
    trio.lowlevel.add_instrument(sleeps)
    try:
        for _ in range(n):
            assert await pool.get("k") == expected
    finally:
        trio.lowlevel.remove_instrument(sleeps)
    return sleeps.count


@pytest.mark.parametrize("servers", [1, 3])
async def test_busy_poll_takes_replies_without_sleeping(
    redis_servers: list[RedisServer], servers: int
) -> None:
    """A caller alone polls for its replies (busy_poll): the loop passes without sleeping."""
    urls = [s.url for s in redis_servers[:servers]]
    n = 300
    async with ready_pool(*urls, busy_poll=0) as pool:
        await pool.set("k", "v")
        assert await sleeps_of_gets(pool, n, [b"v"] * servers) > 0.8 * n  # one per command
    # 10 ms: on loopback every reply comes in time. The few sleeps left are the
    # passes where a reader task was runnable (its SOLO_RECHECK): no polling then.
    async with ready_pool(*urls, busy_poll=0.01) as pool:
        assert await sleeps_of_gets(pool, n, [b"v"] * servers) < 0.2 * n


async def test_busy_poll_stops_for_a_server_slower_than_its_budget(
    redis_server: RedisServer,
) -> None:
    """Replies that keep coming after the budget pause polling on that connection."""
    # About 2 ms of server time per call, far beyond the 20 us budget.
    slow = (
        "local t = redis.call('TIME') repeat local u = redis.call('TIME') "
        "until (u[1] - t[1]) * 1000000 + u[2] - t[2] > 2000 return 1"
    )
    async with ready_pool(redis_server.url, busy_poll=20e-6) as pool:
        conn = pool._servers[0].conn
        assert conn is not None
        spinner = conn._spinner
        calls = 0
        while not spinner.pause:  # a call is not polled if a reader task was runnable
            assert await pool.execute("EVAL", slow, 0) == [1]
            calls += 1
            assert calls < 4 * SPIN_MISSES
        assert calls >= SPIN_MISSES and spinner.pause == SPIN_PAUSE
        for _ in range(3):
            await pool.set("k", "v")  # fast replies, but polling is paused for a while
        assert SPIN_PAUSE - 3 <= spinner.pause < SPIN_PAUSE


async def test_one_server_deadline_interrupts_a_solo_read(redis_server: RedisServer) -> None:
    """A solo read ends at the call's deadline; the late reply is dropped, not misrouted."""
    async with ready_pool(redis_server.url, timeout=0.2, trip_after=3) as pool:
        await pool.set("a", "A")
        await pool.set("b", "B")
        conn = pool._servers[0].conn
        assert conn is not None
        await redis_server.afreeze()
        try:
            outcome: list[tuple[Replies, float]] = []

            async def call() -> None:
                outcome.append(await timed(pool.get("a")))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                await wait_until(holds(lambda: conn._owner == _SOLO), what="a solo read")
            ((replies, took),) = outcome
            assert isinstance(replies[0], ServerTimeout)
            assert 0.2 <= took <= 0.2 + SLACK
            assert conn.pending == 1  # the reply is still owed...
        finally:
            await redis_server.athaw()
        # ...and the reader, which has the socket back, drops it when it comes.
        await wait_until(holds(lambda: conn.pending == 0), what="the late reply read")
        assert await pool.get("b") == [b"B"]
        assert pool._servers[0].conn is conn and not conn.is_closed


async def test_fan_out_over_idle_connections_takes_one_trip_per_arrival(
    redis_servers: list[RedisServer],
) -> None:
    """The caller reads all three replies itself (connection.SoloGroup): no reader tasks."""
    async with ready_pool(*urls(redis_servers)) as pool:
        await pool.set("k", "v")
        n = 500
        count = await io_waits_of_gets(pool, n, [b"v", b"v", b"v"])
        # Through the readers: about three (one per batch of readers woken, one
        # for the caller); read by the caller, one per batch of replies arriving.
        assert count < 1.8 * n, count
        assert all(st.latency_p50 is not None for st in pool.status())


async def test_fan_out_deadline_interrupts_the_callers_own_reads(
    redis_servers: list[RedisServer],
) -> None:
    """One of three servers frozen: the others' replies count, the late one is dropped."""
    async with ready_pool(*urls(redis_servers), timeout=0.2, trip_after=3) as pool:
        await pool.set("a", "A")
        await pool.set("b", "B")
        frozen = redis_servers[2]
        conn = pool._servers[2].conn
        assert conn is not None
        await frozen.afreeze()
        try:
            replies, took = await timed(pool.get("a"))
            assert replies[:2] == [b"A", b"A"]
            assert isinstance(replies[2], ServerTimeout)
            assert 0.2 <= took <= 0.2 + SLACK
            assert conn.pending == 1
        finally:
            await frozen.athaw()
        await wait_until(holds(lambda: conn.pending == 0), what="the late reply read")
        assert await pool.get("b") == [b"B", b"B", b"B"]
        assert pool._servers[2].conn is conn and not conn.is_closed


async def test_fan_out_read_by_the_caller_survives_a_server_dying(
    redis_servers: list[RedisServer],
) -> None:
    """A connection breaking while the caller reads the fan-out: the others still count."""
    async with ready_pool(*urls(redis_servers), timeout=2.0) as pool:
        await pool.set("a", "A")
        victim = redis_servers[1]
        await victim.afreeze()
        outcome: list[Replies] = []

        async def call() -> None:
            outcome.append(await pool.get("a"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            conn = pool._servers[1].conn
            assert conn is not None
            await wait_until(holds(lambda: conn.pending == 1), what="the GET sent")
            await victim.akill()
        (replies,) = outcome
        assert replies[0] == replies[2] == b"A"
        assert isinstance(replies[1], ServerUnavailable)


# --------------------------------------------------------------------------- errors


async def test_refused_server_is_unavailable_within_milliseconds(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    nothing = f"redis://127.0.0.1:{free_port()}"
    async with open_pool(a.url, nothing, b.url) as pool:
        await wait_until(
            holds(lambda: all(st.state is not ServerState.CONNECTING for st in pool.status())),
            what="every server tried",
        )
        for _ in range(20):
            replies, took = await timed(pool.ping())
            assert took < FAST
            assert replies[0] == replies[2] == "PONG"
            assert isinstance(replies[1], ServerUnavailable)
        assert pool.status()[1].state is ServerState.DOWN
        assert pool.status()[1].last_error

    # A server that dies while the pool is connected: its entry is an error at
    # once, and no later call waits for it.
    async with ready_pool(a.url, b.url, c.url) as pool:
        assert await pool.ping() == PONG3
        await b.akill()
        for _ in range(20):
            replies, took = await timed(pool.ping())
            assert took < FAST
            assert replies[0] == replies[2] == "PONG"
            assert isinstance(replies[1], ServerUnavailable)


async def test_quorum(redis_servers: list[RedisServer]) -> None:
    a, b, c = redis_servers
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.set("q", "1", quorum=3) == ["OK", "OK", "OK"]
        await c.akill()
        replies = await pool.set("q", "2", quorum=2)
        assert replies[:2] == ["OK", "OK"]
        assert isinstance(replies[2], ServerUnavailable)
        with pytest.raises(QuorumError) as caught:
            await pool.execute("SET", "q", "3", quorum=3)
        err = caught.value
        assert err.required == 3
        assert err.succeeded == 2
        assert err.may_have_applied  # two servers took it
        assert err.replies[:2] == ["OK", "OK"]
        assert isinstance(err.replies[2], ServerUnavailable)
        await a.akill()
        await b.akill()
        await wait_until(holds(lambda: pool.available == 0), what="all servers seen down")
        with pytest.raises(QuorumError) as caught:
            await pool.set("q", "4", quorum=1)
        # Nothing was sent anywhere: the write cannot have been applied.
        assert caught.value.succeeded == 0
        assert not caught.value.may_have_applied


async def test_reply_error_on_one_server_does_not_raise(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    await a.acommand("RPUSH", "wt", "x")  # a list on server 0 only
    await b.acommand("SET", "wt", "v")
    await c.acommand("SET", "wt", "v")
    async with ready_pool(*urls(redis_servers)) as pool:
        replies = await pool.get("wt")
        assert isinstance(replies[0], ReplyError)
        assert replies[0].code == "WRONGTYPE"
        assert replies[1:] == [b"v", b"v"]
        assert replies.values == [b"v", b"v"]
        assert await pool.get("wt", timeout=1.0) == replies  # ReplyError compares by message
        await pool.execute("GET", "wt", quorum=2)  # two successes: no raise
        with pytest.raises(QuorumError) as caught:
            await pool.execute("GET", "wt", quorum=3)
        assert caught.value.replies[0].code == "WRONGTYPE"
        # The connection that carried the error reply keeps working.
        assert await pool.ping() == PONG3


# --------------------------------------------------------------------------- refused commands

_STATEFUL_COMMANDS: list[tuple[Any, ...]] = [
    ("BLPOP", "l", 0),
    ("brpop", "l", 0),
    (b"BLMOVE", b"a", b"b", b"LEFT", b"RIGHT", b"0"),
    ("BZPOPMIN", "z", 0),
    ("SUBSCRIBE", "ch"),
    ("PSUBSCRIBE", "ch*"),
    ("MONITOR",),
    ("MULTI",),
    ("EXEC",),
    ("DISCARD",),
    ("WATCH", "k"),
    ("UNWATCH",),
    ("SELECT", 1),
    ("CLIENT", "REPLY", "OFF"),
    ("client", "reply", "skip"),
    (b"CLIENT", b"TRACKING", b"ON"),
    ("XREAD", "BLOCK", 0, "STREAMS", "s", "$"),
    ("xreadgroup", "GROUP", "g", "c", "block", "0", "STREAMS", "s", ">"),
    ("WAIT", 1, 0),
    ("HELLO", 3),
    ("AUTH", "x"),
    ("QUIT",),
    ("RESET",),
    ("REPLCONF", "ACK", 0),  # never answered: every later reply went to the wrong caller
    ("replconf", "GETACK", "*"),
    ("SCRIPT", "DEBUG", "YES"),  # every later reply came from the Lua debugger
    (b"script", b"debug", b"sync"),
]


async def test_stateful_commands_are_refused_and_connection_keeps_working(
    redis_servers: list[RedisServer],
) -> None:
    async with ready_pool(*urls(redis_servers)) as pool:
        await pool.set("k", "v")
        for command in _STATEFUL_COMMANDS:
            with pytest.raises(UnsupportedCommand):
                await pool.execute(*command)
            with pytest.raises(UnsupportedCommand):
                await pool.execute_on([0], *command)
            assert await pool.get("k") == [b"v", b"v", b"v"], command
        with pytest.raises(UnsupportedCommand):
            await pool.blpop("l", 0)
        with pytest.raises(UnsupportedCommand):
            await pool.execute()
        # Non-blocking forms of the same families still run.
        assert (await pool.execute("XREAD", "COUNT", 1, "STREAMS", "s", "0")) == [None] * 3
        # A stream, group or consumer named "block" is not the BLOCK option.
        assert (await pool.execute("XREAD", "COUNT", 1, "STREAMS", "BLOCK", "0")) == [None] * 3
        await pool.execute("XGROUP", "CREATE", "block", "block", "$", "MKSTREAM")
        assert (
            await pool.execute("XREADGROUP", "GROUP", "block", "block", "STREAMS", "block", ">")
        ) == [None] * 3
        assert await pool.client_getname() == [None] * 3
        assert await pool.ping() == PONG3
    # Nothing of the refused commands reached any server.
    for server in redis_servers:
        for name in ("blpop", "subscribe", "multi", "exec", "select", "watch", "hello"):
            assert await command_calls(server, name) == 0, (server, name)
        assert await command_calls(server, "client|reply") == 0


# --------------------------------------------------------------------------- auth

SECRET = "Pa55-w0rd-xyzzy-61"
ALICE_SECRET = "al1ce-Secret-quux-7"


async def test_auth_url_password_option_and_acl_user(redis_factory: RedisFactory) -> None:
    with_pass = redis_factory(password=SECRET)
    with_acl = redis_factory(acl_users=[f"alice on >{ALICE_SECRET} ~* +@all"])
    h = with_pass.host
    async with ready_pool(
        f"redis://:{SECRET}@{h}:{with_pass.port}",
        f"redis://alice:{ALICE_SECRET}@{h}:{with_acl.port}",
    ) as pool:
        assert await pool.ping() == ["PONG", "PONG"]
        assert await pool.acl_whoami() == [b"default", b"alice"]
        assert SECRET not in repr(pool) and ALICE_SECRET not in repr(pool)
        assert all(SECRET not in s and ALICE_SECRET not in s for s in pool.servers)
    # Both spellings take the pool's password (one pool each: a server may be given once).
    for spelling in ((h, with_pass.port), with_pass.url):
        async with ready_pool(spelling, password=SECRET) as pool:
            assert await pool.ping() == ["PONG"]
    async with ready_pool((h, with_acl.port), username="alice", password=ALICE_SECRET) as pool:
        assert await pool.acl_whoami() == [b"alice"]
    # RESP3 greets with HELLO ... AUTH instead.
    async with ready_pool(f"redis://alice:{ALICE_SECRET}@{h}:{with_acl.port}?protocol=3") as pool:
        assert await pool.acl_whoami() == [b"alice"]


def _texts_of(pool: Pool, *replies: Replies) -> list[str]:
    out = [repr(pool)]
    for st in pool.status():
        out += [repr(st), str(st.last_error)]
    for r in replies:
        out.append(repr(r))
        for entry in r:
            out += [str(entry), repr(entry)]
            if isinstance(entry, BaseException):
                cause = entry.__cause__ or entry.__context__
                if cause is not None:
                    out += [str(cause), repr(cause)]
    return out


async def test_password_never_leaks(
    redis_factory: RedisFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = redis_factory(password=SECRET)
    wrong = redis_factory(password="something-else")
    acl = redis_factory(acl_users=[f"alice on >{ALICE_SECRET} ~* +@all"])
    acl2 = redis_factory(acl_users=[f"alice on >{ALICE_SECRET} ~* +@all"])
    h = good.host
    seen: list[str] = []
    async with open_pool(
        f"redis://:{SECRET}@{h}:{good.port}",
        f"redis://:{SECRET}@{h}:{wrong.port}",  # refused credentials
        f"redis://alice:{SECRET}@{h}:{acl.port}",  # wrong ACL password
        f"redis://bob:{ALICE_SECRET}@{h}:{acl2.port}",  # no such user
        timeout=1.0,
    ) as pool:
        await wait_until(
            holds(lambda: all(st.state is not ServerState.CONNECTING for st in pool.status())),
            what="every server tried",
        )
        replies, took = await timed(pool.ping())
        assert took < FAST
        assert replies[0] == "PONG"
        for i in (1, 2, 3):
            assert isinstance(replies[i], ServerUnavailable), replies[i]
            assert "WRONGPASS" in str(replies[i])
            assert pool.status()[i].state is ServerState.DOWN
        with pytest.raises(QuorumError) as caught:
            await pool.execute("PING", quorum=4)
        seen += [str(caught.value), repr(caught.value)]
        seen += _texts_of(pool, replies, caught.value.replies)
        # The good server goes down too: its error text and log lines are clean.
        await good.akill()
        await wait_until(
            holds(lambda: pool.status()[0].state is ServerState.DOWN), what="server 0 down"
        )
        seen += _texts_of(pool, await pool.ping())
    seen.append(repr(pool))
    for record in caplog.records:
        seen.append(record.getMessage())
        if record.exc_info:
            seen.append(logging.Formatter().formatException(record.exc_info))
    seen.append(caplog.text)
    assert any("WRONGPASS" in t for t in seen)
    for text in seen:
        assert SECRET not in text
        assert ALICE_SECRET not in text


# --------------------------------------------------------------------------- logging, status


def _records_about(caplog: pytest.LogCaptureFixture, label: str, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("trio_redisha") and r.levelno >= level and label in r.getMessage()
    ]


async def test_down_and_back_up_logged_once_each(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_redisha")
    victim = redis_servers[1]
    async with ready_pool(*urls(redis_servers)) as pool:
        label = pool.servers[1]
        assert await pool.ping() == PONG3
        caplog.clear()
        await victim.akill()
        await wait_until(
            holds(lambda: pool.status()[1].state is ServerState.DOWN), what="victim seen down"
        )
        down = _records_about(caplog, label, logging.WARNING)
        assert len(down) == 1, down
        assert "down" in down[0]
        # Many calls (and reconnect attempts) while it is down add no log line.
        before = len(_records_about(caplog, label, logging.INFO))
        start = trio.current_time()
        calls = 0
        while calls < 200 or trio.current_time() - start < 0.5:
            replies = await pool.ping()
            assert isinstance(replies[1], ServerUnavailable)
            calls += 1
        assert len(_records_about(caplog, label, logging.INFO)) == before
        await victim.astart()
        await wait_until(lambda: answers(pool, 1), what="victim used again")
        for _ in range(50):
            assert await pool.ping() == PONG3
    lines = _records_about(caplog, label, logging.WARNING)
    assert len(lines) == 2, lines
    assert "down" in lines[0]
    assert "back" in lines[1] or "up" in lines[1]


async def test_status_and_repr(redis_servers: list[RedisServer]) -> None:
    _, b, c = redis_servers
    async with ready_pool(*urls(redis_servers), timeout=0.3) as pool:
        for _ in range(10):
            assert await pool.ping() == PONG3
        for st, url in zip(pool.status(), urls(redis_servers), strict=True):
            assert st.label == url
            assert st.state is ServerState.UP and st.available
            assert st.last_error is None
            assert st.latency_p50 is not None and st.latency_p99 is not None
            assert 0 < st.latency_p50 <= st.latency_p99 < 1.0
            assert st.replies >= 10
            assert st.consecutive_timeouts == 0
        text = repr(pool)
        assert "3/3 up" in text
        for url in urls(redis_servers):
            assert f"{url} up" in text
        assert "p50=" in text

        await b.akill()
        await wait_until(
            holds(lambda: pool.status()[1].state is ServerState.DOWN), what="b seen down"
        )
        st = pool.status()[1]
        assert not st.available
        assert st.last_error
        assert pool.available == 2
        text = repr(pool)
        assert "2/3 up" in text
        assert f"{b.url} down" in text
        assert st.last_error in text

        await c.afreeze()
        try:
            replies = await pool.ping()
            assert replies[0] == "PONG"
            st = pool.status()[2]
            assert st.state is ServerState.SUSPECT
            assert st.consecutive_timeouts >= 1
            assert st.last_error == "timed out"
            text = repr(pool)
            assert "1/3 up" in text
            assert f"{c.url} suspect" in text
        finally:
            await c.athaw()
    assert "closed" in repr(pool)
    assert all(st.state is ServerState.CLOSED for st in pool.status())


# --------------------------------------------------------------------------- hostile server


async def _hostile_ping(conn: HostileConnection) -> None:
    """Answer the handshake (its PING too) like Redis; answer later PINGs with a lie."""
    await answer_handshake(conn, SETUP_COMMANDS)  # returns the handshake's PING
    await conn.send(b"+PONG\r\n")
    while True:
        await conn.read_command()
        await conn.send(b"$99999999999\r\n")


async def test_hostile_server_is_an_error_entry_and_is_reconnected(
    redis_factory: RedisFactory,
) -> None:
    a, b = redis_factory.many(2)
    async with (
        open_hostile_server(_hostile_ping) as hostile,
        ready_pool(a.url, hostile.url, b.url) as pool,
    ):
        for round_ in range(3):
            await wait_until(
                holds(lambda: pool.status()[1].state is ServerState.UP),
                what="hostile server connected",
            )
            accepted = hostile.accepted_total
            replies, took = await timed(pool.ping())
            assert took < FAST
            assert replies[0] == replies[2] == "PONG", replies
            assert isinstance(replies[1], ServerUnavailable), replies
            # The other servers are unaffected meanwhile.
            assert (await pool.set("k", round_))[0::2] == ["OK", "OK"]
            assert (await pool.get("k"))[0::2] == [str(round_).encode()] * 2
            # The pool drops the corrupt connection and reconnects by itself.
            await wait_until(
                holds(lambda n=accepted: hostile.accepted_total > n),  # type: ignore[misc]
                what="reconnect",
            )
        assert pool.status()[0].state is ServerState.UP
        assert pool.status()[2].state is ServerState.UP


# --------------------------------------------------------------------------- scripts


async def test_execute_script_falls_back_after_script_flush(
    redis_servers: list[RedisServer],
) -> None:
    script = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    _, b, c = redis_servers
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.execute_script(script, ["n"], [1]) == [1, 1, 1]
        assert await pool.execute_script(script, ["n"], [1]) == [2, 2, 2]
        assert [await command_calls(s, "eval") for s in redis_servers] == [1, 1, 1]
        await b.acommand("SCRIPT", "FLUSH")
        assert await pool.execute_script(script, ["n"], [1], quorum=3) == [3, 3, 3]
        # Only the flushed server needed EVAL again.
        assert [await command_calls(s, "eval") for s in redis_servers] == [1, 2, 1]
        assert [await command_calls(s, "evalsha") for s in redis_servers] == [3, 3, 3]
        assert await pool.execute_script(script, ["n"], [1], servers=[2, 0]) == [4, 4]
        # A server that is down is an entry, not an exception.
        await c.akill()
        replies = await pool.execute_script(script, ["n"], [1])
        assert replies[:2] == [5, 4]
        assert isinstance(replies[2], ServerUnavailable)
        with pytest.raises(QuorumError):
            await pool.execute_script(script, ["n"], [1], quorum=3)
        # A script error is a ReplyError entry.
        bad = Script("return redis.call('NOSUCHCOMMAND')")
        replies = await pool.execute_script(bad)
        assert isinstance(replies[0], ReplyError)


#: A script with its library form: both add ARGV[1] to KEYS[1] and answer the
#: sum, the library through a helper of its top level (defined once, at load).
INCR = Script(
    "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    "local function add(k, n) return redis.call('INCRBY', k, n) end\n"
    "local function main(KEYS, ARGV) return add(KEYS[1], ARGV[1]) end",
)


async def test_execute_script_runs_a_library_as_a_function(
    redis_servers: list[RedisServer],
) -> None:
    _, b, _ = redis_servers
    assert INCR.function is not None and INCR.function.startswith("redisha_")
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.execute_script(INCR, ["n"], [1]) == [1, 1, 1]
        # A fresh server answered that the function is missing: loaded, then run.
        assert [await command_calls(s, "function|load") for s in redis_servers] == [1, 1, 1]
        assert await pool.execute_script(INCR, ["n"], [2]) == [3, 3, 3]
        assert [await command_calls(s, "fcall") for s in redis_servers] == [3, 3, 3]
        assert [await command_calls(s, "evalsha", "eval") for s in redis_servers] == [0, 0, 0]
        # A server that lost its functions (FUNCTION FLUSH, a restart) loads it again, alone.
        await b.acommand("FUNCTION", "FLUSH")
        assert await pool.execute_script(INCR, ["n"], [1], quorum=3) == [4, 4, 4]
        assert [await command_calls(s, "function|load") for s in redis_servers] == [1, 2, 1]
        listed = decode_reply(await b.acommand("FUNCTION", "LIST"))
        assert INCR.function.encode() in repr(listed).encode()


async def test_first_calls_at_once_load_the_library_once_each(
    redis_servers: list[RedisServer],
) -> None:
    async with ready_pool(*urls(redis_servers)) as pool:
        got: list[Any] = []

        async def call() -> None:
            got.append(await pool.execute_script(INCR, ["n"], [1], quorum=3))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(call)
        # Every call succeeded, though all but one found the library loaded by
        # another ("already exists"); each added once.
        assert sorted(r[0] for r in got) == list(range(1, 21))
        for s in redis_servers:
            assert decode_reply(await s.acommand("GET", "n")) == b"20"


async def test_a_server_refusing_functions_gets_evalsha(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    a, _, c = redis_servers
    for server in redis_servers:
        await server.acommand("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all")
    # c refuses functions to the pool's user (as a server before Redis 7 does).
    await c.acommand("ACL", "SETUSER", "app", "-fcall", "-function")
    servers = [f"redis://app:pw@127.0.0.1:{s.port}" for s in redis_servers]
    async with ready_pool(*servers) as pool:
        with caplog.at_level(logging.INFO, logger="trio_redisha.pool"):
            assert await pool.execute_script(INCR, ["n"], [1], quorum=3) == [1, 1, 1]
        (line,) = [r.getMessage() for r in caplog.records if "functions" in r.getMessage()]
        assert f":{c.port}" in line and "NOPERM" in line and "pw" not in line
        assert await command_calls(c, "evalsha", "eval") == 2  # NOSCRIPT, then EVAL
        assert await command_calls(a, "fcall") == 2  # missing, then run
        # From then on, a call that goes to c runs with EVALSHA everywhere.
        assert await pool.execute_script(INCR, ["n"], [1], quorum=3) == [2, 2, 2]
        assert [await command_calls(s, "fcall") for s in redis_servers] == [2, 2, 0]
        assert [await command_calls(s, "evalsha") for s in redis_servers] == [1, 1, 2]
        # A call that does not go to c still runs the function.
        assert await pool.execute_script(INCR, ["n"], [1], servers=[0, 1]) == [3, 3]
        assert [await command_calls(s, "fcall") for s in redis_servers] == [3, 3, 0]


# --------------------------------------------------------------------------- running it


async def test_a_call_the_close_ends_says_whether_it_was_sent(
    redis_servers: list[RedisServer],
) -> None:
    # A write in flight when the pool closed raised PoolClosed(sent=False),
    # though every server had it and ran it: a caller would retry it.
    frozen = redis_servers[2]
    async with ready_pool(*urls(redis_servers), timeout=5.0, stall_timeout=10.0) as pool:
        await frozen.afreeze()
        try:
            got: list[PoolClosed] = []

            async def incr() -> None:
                try:
                    await pool.execute("INCR", "n")
                except PoolClosed as exc:
                    got.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(incr)
                await wait_until(lambda: pool._servers[2].conn.pending == 1)  # type: ignore[union-attr]
                await pool.aclose()
        finally:
            await frozen.athaw()
    assert len(got) == 1 and got[0].sent is True
    assert [decode_reply(s.command("GET", "n")) for s in redis_servers] == [b"1"] * 3
    with pytest.raises(PoolClosed) as info:
        await pool.execute("INCR", "n")  # after the close: never sent
    assert info.value.sent is False


async def test_second_tier_nursery_start_and_aclose(redis_servers: list[RedisServer]) -> None:
    pool = Pool(*urls(redis_servers))
    assert "Pool" in repr(pool)
    async with trio.open_nursery() as nursery:
        started = await nursery.start(pool.run)
        assert started is pool
        await wait_ready(pool)
        assert await pool.ping() == PONG3
        await pool.aclose()
    with pytest.raises(PoolClosed):
        await pool.ping()
    await pool.aclose()  # idempotent
    async with trio.open_nursery() as nursery:
        with pytest.raises(PoolClosed, match="runs only once"):
            await nursery.start(pool.run)  # a pool runs once
    await wait_no_clients(redis_servers)

    # Cancelling the nursery that runs the pool closes it too.
    pool = Pool(*urls(redis_servers))
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        await wait_ready(pool)
        assert await pool.ping() == PONG3
        nursery.cancel_scope.cancel()
    with pytest.raises(PoolClosed):
        await pool.ping()
    await wait_no_clients(redis_servers)

    # aclose before running: nothing to stop, later calls refused.
    pool = Pool(*urls(redis_servers))
    await pool.aclose()
    with pytest.raises(PoolClosed):
        await pool.ping()


async def test_aclose_before_run_started_lets_run_return(redis_server: RedisServer) -> None:
    """The owner closes the pool before its run task got to run (e.g. its start-up failed)."""
    pool = Pool(redis_server.url)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run)  # not started yet...
            await pool.aclose()  # ...when the pool is closed: run() returns quietly
        # nursery.start() on a pool closed before it ran: started at once, nothing runs.
        async with trio.open_nursery() as nursery:
            assert await nursery.start(pool.run) is pool
    assert "closed" in repr(pool)
    with pytest.raises(PoolClosed):
        await pool.ping()
    assert await redis_server.aclient_count() == 0

    # Running a pool while it runs is still an error, of the library's hierarchy.
    pool = Pool(redis_server.url)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        with pytest.raises(ConfigurationError, match="runs only once"):
            await nursery.start(pool.run)
        await pool.aclose()


def test_works_inside_anyio_task_group_on_trio(redis_servers: list[RedisServer]) -> None:
    addresses = urls(redis_servers)
    victim = redis_servers[2]

    async def main() -> None:
        with anyio.fail_after(20):
            async with open_pool(*addresses) as pool:
                while pool.available < len(pool):  # noqa: ASYNC110 - polling by design
                    await anyio.sleep(POLL)
                results: list[Replies] = []

                async def incr() -> None:
                    results.append(await pool.execute("INCR", "anyio"))

                async with anyio.create_task_group() as tg:
                    for _ in range(20):
                        tg.start_soon(incr)
                assert sorted(r[0] for r in results) == list(range(1, 21))
                assert all(r[0] == r[1] == r[2] for r in results)
                victim.kill()
                replies = await pool.ping()
                assert replies[:2] == ["PONG", "PONG"]
                # Cancelling a call from an anyio scope leaves the pool usable.
                with anyio.move_on_after(0):
                    await pool.ping()
                assert (await pool.ping())[:2] == ["PONG", "PONG"]

            # The second tier through an anyio task group.
            pool2 = Pool(*addresses[:2])
            async with anyio.create_task_group() as tg:
                await tg.start(pool2.run)
                while pool2.available < len(pool2):  # noqa: ASYNC110 - polling by design
                    await anyio.sleep(POLL)
                assert await pool2.ping() == ["PONG", "PONG"]
                await pool2.aclose()

    anyio.run(main, backend="trio")


async def test_a_library_that_cannot_load_falls_back_to_evalsha(
    redis_servers: list[RedisServer],
) -> None:
    # The library's top level uses `string`, which Redis does not offer there.
    bad = Script(
        "return redis.call('INCRBY', KEYS[1], ARGV[1])",
        "local sub = string.sub\n"
        "local function main(KEYS, ARGV) return redis.call('INCRBY', KEYS[1], ARGV[1]) end",
    )
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.execute_script(bad, ["n"], [5], quorum=3) == [5, 5, 5]
        assert [await command_calls(s, "eval") for s in redis_servers] == [1, 1, 1]
        # That library is not sent again (other scripts' libraries still are:
        # test_a_library_that_cannot_load_demotes_that_script_only).
        assert await pool.execute_script(bad, ["n"], [1], quorum=3) == [6, 6, 6]
        assert [await command_calls(s, "function|load") for s in redis_servers] == [1, 1, 1]


WRITE_THEN_FAIL = Script(
    "redis.call('SET', KEYS[1], ARGV[1]) return redis.error_reply('ERR validation failed')"
)


async def test_a_script_that_wrote_then_failed_may_have_applied(
    redis_servers: list[RedisServer],
) -> None:
    # Its QuorumError said may_have_applied=False: a caller trusting it and
    # retrying applied the write twice.
    async with ready_pool(*urls(redis_servers)) as pool:
        with pytest.raises(QuorumError) as caught:
            await pool.execute_script(WRITE_THEN_FAIL, ["k"], ["written"], quorum=2)
        assert caught.value.may_have_applied
        assert caught.value.replies.script
        with pytest.raises(QuorumError) as caught:
            await pool.execute("eval", WRITE_THEN_FAIL.source, 1, "k", "again", quorum=2)
        assert caught.value.may_have_applied
        assert await pool.get("k") == [b"again"] * 3
        # Not a script: an error reply applied nothing.
        await pool.set("s", "text")
        with pytest.raises(QuorumError) as caught:
            await pool.execute("INCR", "s", quorum=2)
        assert not caught.value.may_have_applied


@pytest.mark.parametrize("form", ["evalsha", "function"])
async def test_a_script_s_own_error_that_reads_like_a_missing_script_runs_it_once(
    redis_servers: list[RedisServer], form: str
) -> None:
    # Any error beginning "NOSCRIPT" (or "ERR Function not found") was taken for
    # the server's "not loaded": the script ran again (EVAL, or FUNCTION LOAD
    # REPLACE and FCALL), and its write was applied twice.
    body = "redis.call('INCR', KEYS[1]) return redis.error_reply(ARGV[1])"
    script = (
        Script(body)
        if form == "evalsha"
        else Script(body, f"local function main(KEYS, ARGV) {body} end")
    )
    message = "NOSCRIPT user error" if form == "evalsha" else "ERR Function not found here"
    async with ready_pool(*urls(redis_servers)) as pool:
        for expected in (1, 2, 3):  # the first call loads it, then it is cached
            replies = await pool.execute_script(script, ["n"], [message])
            assert [str(r) for r in replies] == [message] * 3
            assert await pool.get("n") == [b"%d" % expected] * 3


#: A library form whose top level uses `string`, which Redis does not offer
#: there: FUNCTION LOAD answers "ERR Error registering functions".
UNLOADABLE = Script(
    "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    "local sub = string.sub\n"
    "local function main(KEYS, ARGV) return redis.call('INCRBY', KEYS[1], ARGV[1]) end",
)


async def test_a_library_that_cannot_load_demotes_that_script_only(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    # It made every server run every script with EVALSHA for the pool's life
    # (the CRDTs' included), logged as "runs no functions for us".
    async with ready_pool(*urls(redis_servers)) as pool:
        with caplog.at_level(logging.INFO, logger="trio_redisha.pool"):
            for expected in (5, 10):
                replies = await pool.execute_script(UNLOADABLE, ["n"], [5], quorum=3)
                assert replies == [expected] * 3
        # It runs with EVALSHA, its library not sent again after the first call.
        assert [await command_calls(s, "function|load") for s in redis_servers] == [1, 1, 1]
        assert [await command_calls(s, "evalsha") for s in redis_servers] == [2, 2, 2]
        # Logged once, at warning level, naming the script; no server is demoted.
        lines = [r for r in caplog.records if r.name == "trio_redisha.pool" and "EVALSHA" in r.msg]
        assert len(lines) == 1 and lines[0].levelno == logging.WARNING
        assert UNLOADABLE.sha in lines[0].getMessage()
        assert "string" in lines[0].getMessage()  # the server's reason
        assert not [r for r in caplog.records if "runs no functions" in r.getMessage()]
        # Other scripts still run as functions there.
        assert await pool.execute_script(INCR, ["n"], [1], quorum=3) == [11, 11, 11]
        assert await pool.execute_script(INCR, ["n"], [1], quorum=3) == [12, 12, 12]
        assert [await command_calls(s, "function|load") for s in redis_servers] == [2, 2, 2]
        assert [await command_calls(s, "fcall") for s in redis_servers] == [4, 4, 4]
        assert [await command_calls(s, "evalsha") for s in redis_servers] == [2, 2, 2]


#: A library form that compiles, but returns before the pool's registration
#: line runs: FUNCTION LOAD answers "ERR No functions registered".
REGISTERS_NOTHING = Script(
    "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    "local function main(KEYS, ARGV) return redis.call('INCRBY', KEYS[1], ARGV[1]) end\n"
    "do return end",
)


async def test_a_library_that_registers_nothing_falls_back_to_evalsha(
    redis_servers: list[RedisServer],
) -> None:
    # Every call failed with "ERR No functions registered", for good, unlogged.
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.execute_script(REGISTERS_NOTHING, ["n"], [2], quorum=3) == [2, 2, 2]
        assert await pool.execute_script(REGISTERS_NOTHING, ["n"], [2], quorum=3) == [4, 4, 4]
        assert [await command_calls(s, "function|load") for s in redis_servers] == [1, 1, 1]


@pytest.mark.parametrize("keys", ["user:1", b"user:1", None, 5, (k for k in ["a"])])
async def test_script_keys_that_are_not_a_list_are_refused(
    redis_servers: list[RedisServer], keys: Any
) -> None:
    # A str was split into one key per character (the wrong keys written);
    # None, 5 or a generator raised a bare TypeError.
    async with ready_pool(*urls(redis_servers)) as pool:
        with pytest.raises(ConfigurationError, match="keys must be a list or tuple"):
            await pool.execute_script(INCR, keys, [1])
        with pytest.raises(ConfigurationError, match="args must be a list or tuple"):
            await pool.execute_script(INCR, ["n"], keys)
        assert [await command_calls(s, "fcall", "evalsha", "eval") for s in redis_servers] == [
            0,
            0,
            0,
        ]


@pytest.mark.parametrize(
    ("source", "library"), [(None, None), (b"return 1", None), ("return 1", b"x"), ("\udcff", None)]
)
def test_a_script_of_something_else_than_lua_text_is_refused(source: Any, library: Any) -> None:
    with pytest.raises(ConfigurationError, match="Script's"):
        Script(source, library)


async def test_a_key_the_acl_denies_is_that_call_s_error_only(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    # A NOPERM about a key was taken for "this server runs no functions for us":
    # the call ran again with EVALSHA (NOPERM again), and every later call too.
    for server in redis_servers:
        await server.acommand("ACL", "SETUSER", "app", "on", ">pw", "~app:*", "&*", "+@all")
    servers = [f"redis://app:pw@127.0.0.1:{s.port}" for s in redis_servers]
    async with ready_pool(*servers) as pool:
        assert await pool.execute_script(INCR, ["app:n"], [1], quorum=3) == [1, 1, 1]
        with caplog.at_level(logging.INFO, logger="trio_redisha.pool"):
            replies = await pool.execute_script(INCR, ["secret:n"], [1])
        assert all(isinstance(r, ReplyError) and r.code == "NOPERM" for r in replies)
        assert "keys" in str(replies[0])
        assert not [r for r in caplog.records if "functions" in r.getMessage()]
        assert [await command_calls(s, "evalsha", "eval") for s in redis_servers] == [0, 0, 0]
        # The next calls still run the function.
        assert await pool.execute_script(INCR, ["app:n"], [1], quorum=3) == [2, 2, 2]
        # Missing then run, then run: the refused FCALL counts as rejected, not called.
        assert [await command_calls(s, "fcall") for s in redis_servers] == [3, 3, 3]
        assert [await command_calls(s, "evalsha", "eval") for s in redis_servers] == [0, 0, 0]


async def test_a_server_denying_function_load_gets_evalsha(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    # FCALL allowed, FUNCTION LOAD denied: FCALL finds the function missing,
    # FUNCTION LOAD answers NOPERM naming 'function|load': that server has no
    # functions for the pool (as one before Redis 7 answering "unknown command").
    _, _, c = redis_servers
    for server in redis_servers:
        await server.acommand("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all")
    await c.acommand("ACL", "SETUSER", "app", "-function|load")
    servers = [f"redis://app:pw@127.0.0.1:{s.port}" for s in redis_servers]
    async with ready_pool(*servers) as pool:
        with caplog.at_level(logging.INFO, logger="trio_redisha.pool"):
            assert await pool.execute_script(INCR, ["n"], [1], quorum=3) == [1, 1, 1]
        (line,) = [r.getMessage() for r in caplog.records if "functions" in r.getMessage()]
        assert f":{c.port}" in line and "function|load" in line
        assert await pool.execute_script(INCR, ["n"], [1], quorum=3) == [2, 2, 2]
        assert [await command_calls(s, "fcall") for s in redis_servers] == [2, 2, 1]
        assert [await command_calls(s, "evalsha") for s in redis_servers] == [1, 1, 2]


async def _redis_6(conn: HostileConnection) -> None:
    """Answer like a Redis 6: no functions (FCALL unknown, in its backquotes); EVAL adds 1."""
    command = await answer_handshake(conn, SETUP_COMMANDS)
    while True:
        name = command[0].upper()
        if name == b"FCALL":
            await conn.send(b"-ERR unknown command `FCALL`, with args beginning with: \r\n")
        elif name == b"EVALSHA":
            await conn.send(b"-NOSCRIPT No matching script. Please use EVAL.\r\n")
        elif name == b"EVAL":
            await conn.send(b":1\r\n")
        else:
            await conn.send(b"+PONG\r\n")
        command = await conn.read_command()


async def test_a_server_without_fcall_gets_evalsha(caplog: pytest.LogCaptureFixture) -> None:
    async with open_hostile_server(_redis_6) as old, ready_pool(old.url) as pool:
        with caplog.at_level(logging.INFO, logger="trio_redisha.pool"):
            assert await pool.execute_script(INCR, ["n"], [1]) == [1]
            assert await pool.execute_script(INCR, ["n"], [1]) == [1]
        names = [n for n in old.command_names() if n in (b"FCALL", b"EVALSHA", b"EVAL")]
        assert names == [b"FCALL", b"EVALSHA", b"EVAL", b"EVALSHA", b"EVAL"]
        (line,) = [r.getMessage() for r in caplog.records if "functions" in r.getMessage()]
        assert "unknown command" in line


async def test_a_reply_over_the_element_limit_fails_that_entry_only(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    # It broke the connection (a ProtocolError): one read of a big honest key
    # took every server down for every caller, and the servers were logged down.
    async with ready_pool(*urls(redis_servers), limits=Limits(max_reply_elements=100)) as pool:
        await HashMap(pool, "big").set({f"f{i}": i for i in range(60)})  # 120 + 4 elements
        with caplog.at_level(logging.WARNING, logger="trio_redisha"):
            replies = await pool.execute("HGETALL", "big")
            assert all(isinstance(r, ReplyTooLarge) for r in replies)
            assert "max_reply_elements" in str(replies[0])
            assert replies.may_have_applied()  # the command ran; only its reply was dropped
            assert await pool.ping() == PONG3  # the connections are in step and up
            with pytest.raises(QuorumError, match="max_reply_elements"):
                await HashMap(pool, "big").get()
            assert await pool.ping() == PONG3
        assert not [r for r in caplog.records if "down" in r.getMessage()]
    async with ready_pool(*urls(redis_servers)) as pool:  # the default limits read it
        assert len(await HashMap(pool, "big").get()) == 60
