"""Every input path of the pool: bad input gets a library error and nothing is sent.

Each test here was written against a defect found by trying the library as a new
user would, and failed before its fix. Real servers throughout: "nothing was
sent" is checked on the servers themselves.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import RedisFactory
from tests.harness.fault_proxy import open_fault_proxy
from tests.harness.helpers import urls, wait_until
from tests.test_pool import holds, ready_pool
from trio_redisha import (
    ConfigurationError,
    Limits,
    Pool,
    QuorumError,
    Replies,
    ReplyError,
    Script,
    ServerTimeout,
    ServerUnavailable,
    UnsupportedCommand,
    open_connection,
    open_pool,
)
from trio_redisha.connection import connect, connect_stream
from trio_redisha.exceptions import timeout_before_send
from trio_redisha.testing import RedisServer, decode_reply


async def stored(servers: list[RedisServer], key: str) -> list[Any]:
    """GET ``key`` on each server directly, bypassing the pool."""
    return [decode_reply(await s.acommand("GET", key)) for s in servers]


# --------------------------------------------------------------------------- the guard


@pytest.mark.parametrize(
    "command",
    [
        (bytearray(b"MULTI"),),
        (memoryview(b"multi"),),
        (b"MULTI",),
        ("multi",),
        (bytearray(b"CLIENT"), memoryview(b"reply"), "OFF"),
        ("XREAD", bytearray(b"block"), 0, "STREAMS", "s", "$"),
        (memoryview(b"SUBSCRIBE"), "ch"),
    ],
)
async def test_stateful_commands_refused_whatever_the_argument_type(
    redis_servers: list[RedisServer], command: tuple[Any, ...]
) -> None:
    async with ready_pool(*urls(redis_servers)) as pool:
        with pytest.raises(UnsupportedCommand):
            await pool.execute(*command)
        # The shared connections are untouched: the next caller's SET is not QUEUED.
        assert await pool.execute("SET", "k", "v") == ["OK", "OK", "OK"]


@pytest.mark.parametrize(
    "name", [bytearray(b"SET"), memoryview(b"set"), memoryview(bytearray(b"Set"))]
)
async def test_a_command_name_of_any_text_type_runs(
    redis_servers: list[RedisServer], name: Any
) -> None:
    # The guard and the encoder take these; the fan-out hashed the raw name
    # (the script check), so a bytearray raised a bare TypeError.
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.execute(name, "k", "v") == ["OK", "OK", "OK"]
        assert await pool.execute_on([1], name, "k2", "w") == ["OK"]
    async with ready_pool(*urls(redis_servers), replicas=2) as pool:
        assert await pool.execute(name, "k3", "x") == ["OK", "OK"]
    assert await stored(redis_servers, "k") == [b"v", b"v", b"v"]
    assert await stored(redis_servers, "k2") == [None, b"w", None]
    assert sum(v == b"x" for v in await stored(redis_servers, "k3")) == 2


# --------------------------------------------------------------------------- cancellation


async def test_execute_in_a_cancelled_scope_sends_nothing(
    redis_servers: list[RedisServer],
) -> None:
    async with ready_pool(*urls(redis_servers)) as pool:
        with trio.CancelScope() as scope:
            scope.cancel()
            await pool.execute("INCR", "counter")
        assert scope.cancelled_caught
        # Trio's rule: the call that raised Cancelled did nothing.
        assert await pool.execute("GET", "counter") == [None, None, None]
        assert await stored(redis_servers, "counter") == [None, None, None]


# --------------------------------------------------------------------------- per-call arguments


@pytest.mark.parametrize(
    "options",
    [
        {"quorum": 4},
        {"quorum": 0},
        {"quorum": True},
        {"quorum": 2.0},
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": math.nan},
        {"timeout": math.inf},
        {"timeout": 10**400},  # an int float() cannot hold: a bare OverflowError
        {"timeout": "1"},
        {"timeout": 6.0},  # beyond the pool's stall_timeout (5 s)
        {"wait_for": 0},
        {"wait_for": 4},
        {"wait_for": 1, "quorum": 4},
        {"decode": "no"},  # was taken as true
        {"decode": 0},
    ],
)
async def test_per_call_arguments_checked_before_anything_is_sent(
    redis_servers: list[RedisServer], options: dict[str, Any]
) -> None:
    async with ready_pool(*urls(redis_servers)) as pool:
        with pytest.raises(ConfigurationError):
            await pool.execute("INCR", "counter", **options)
        assert await stored(redis_servers, "counter") == [None, None, None]
        # The servers are as healthy as before: no circuit was opened.
        assert pool.available == 3


async def test_script_quorum_checked_before_anything_is_sent(
    redis_servers: list[RedisServer],
) -> None:
    script = Script("return redis.call('INCR', KEYS[1])")
    async with ready_pool(*urls(redis_servers)) as pool:
        with pytest.raises(ConfigurationError):
            await pool.execute_script(script, ["counter"], quorum=4)
        with pytest.raises(ConfigurationError):
            await pool.execute_script(script, ["counter"], servers=[0], quorum=2)
        assert await stored(redis_servers, "counter") == [None, None, None]


@pytest.mark.parametrize("servers", [[0, 0], [1, 2, 1], [True], 0, "0", [0.0], [-1], [3]])
async def test_server_indices_are_distinct_ints_in_range(
    redis_servers: list[RedisServer], servers: Any
) -> None:
    # [0, 0] ran INCR twice on server 0, and counted twice towards a quorum;
    # True was server 1; a bare 0 was a bare TypeError.
    script = Script("return redis.call('INCR', KEYS[1])")
    async with ready_pool(*urls(redis_servers)) as pool:
        with pytest.raises(ConfigurationError):
            await pool.execute_on(servers, "INCR", "counter")
        with pytest.raises(ConfigurationError):
            await pool.execute_script(script, ["counter"], servers=servers)
        assert await stored(redis_servers, "counter") == [None, None, None]
        assert await pool.execute_on((2, 0), "INCR", "counter") == [1, 1]


def test_write_quorum_true_is_refused_with_placement() -> None:
    with pytest.raises(ConfigurationError, match="write_quorum"):
        Pool("redis://127.0.0.1:1", "redis://127.0.0.1:2", replicas=2, write_quorum=True)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 6.0},  # beyond the default stall_timeout
        {"timeout": 2.0, "stall_timeout": 1.0},
        {"timeout": math.inf},
        {"timeout": 10**400},
        {"stall_timeout": 10**400},
        {"connect_timeout": 10**400},
        {"close_timeout": 0},
        {"probe_interval": -1},
        {"trip_after": True},
        {"write_quorum": True},
        {"busy_poll": -1e-4},
        {"busy_poll": 0.5},  # would hold the event loop for half a second
        {"busy_poll": True},
        {"busy_poll": "fast"},
        {"busy_poll": math.nan},
        {"max_pending": 0},  # every call would find the backlog full
        {"max_pending": -1},
        {"max_pending": 2.5},
        {"max_pending": True},
        {"max_pending": "many"},
    ],
)
def test_constructor_arguments_checked(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Pool("redis://127.0.0.1:1", "redis://127.0.0.1:2", **options)


async def test_long_deadline_allowed_with_a_longer_stall_timeout(
    redis_server: RedisServer,
) -> None:
    async with ready_pool(redis_server.url, stall_timeout=20.0) as pool:
        assert await pool.execute("PING", timeout=10.0) == ["PONG"]


@pytest.mark.parametrize(
    "pair",
    [
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379/"),
        ("redis://127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("redis://LOCALHOST:6379", "redis://localhost:6379"),
        ("redis://:pw@127.0.0.1:6379", "redis://alice:other@127.0.0.1:6379"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
    ],
)
def test_the_same_server_twice_is_refused(pair: tuple[Any, Any]) -> None:
    # Given twice, one server would count twice towards every quorum.
    with pytest.raises(ConfigurationError, match="twice") as caught:
        Pool(*pair)
    assert "pw" not in str(caught.value) and "other" not in str(caught.value)


def test_different_databases_of_one_server_are_distinct() -> None:
    pool = Pool("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1")
    assert len(pool) == 2


# --------------------------------------------------------------------------- hedging


async def test_hedged_read_waits_for_as_many_successes_as_the_quorum(
    redis_servers: list[RedisServer],
) -> None:
    a, b, c = redis_servers
    async with (
        open_fault_proxy(b.host, b.port) as pb,
        open_fault_proxy(c.host, c.port) as pc,
    ):
        pb.set_latency(0.05)
        pc.set_latency(0.05)
        async with ready_pool(a.url, pb.url, pc.url, timeout=2.0) as pool:
            replies = await pool.execute("PING", wait_for=1, quorum=2)
            assert replies.ok_count >= 2
            assert replies[0] == "PONG"


# --------------------------------------------------------------------------- decoding


async def test_decoded_resp3_sets_and_maps(redis_server: RedisServer) -> None:
    url = redis_server.url + "?protocol=3"
    async with ready_pool(url, decode_responses=True) as pool:
        await pool.execute("SADD", "s", "a", "é")
        await pool.execute("HSET", "h", "f", "v")
        assert await pool.execute("SMEMBERS", "s") == [{"a", "é"}]
        assert await pool.execute("HGETALL", "h") == [{"f": "v"}]
    async with ready_pool(url) as pool:
        assert await pool.execute("SMEMBERS", "s", decode=True) == [{"a", "é"}]
        assert await pool.execute("SMEMBERS", "s") == [{b"a", "é".encode()}]


# --------------------------------------------------------------------------- Replies.first


def test_first_chains_the_failure_and_says_what_happened() -> None:
    refused = ReplyError("ERR nope")
    both = Replies([refused, ReplyError("WRONGTYPE no")], ("a", "b"))
    with pytest.raises(ServerUnavailable, match="every server answered with an error") as e:
        both.first()
    assert e.value.__cause__ is refused
    down = ServerUnavailable("a is down")
    mixed = Replies([down, ReplyError("ERR x")], ("a", "b"))
    with pytest.raises(ServerUnavailable, match="no server replied successfully") as e:
        mixed.first()
    assert e.value.__cause__ is down
    assert Replies(["x"], ("a",)).first() == "x"


def test_a_timeout_before_sending_is_not_a_write_that_may_have_applied() -> None:
    # A deadline that passed before the command left (a full backlog, no time
    # left for a script's next round) cannot have applied it: counted as
    # applied, a Counter kept a reserved increment it could have given back.
    unsent = timeout_before_send("a: no room for the command within 0.5 s")
    assert unsent.sent is False
    assert ServerTimeout("b did not reply within 0.5 s").sent is True
    assert not Replies([unsent, ServerUnavailable("b refused")], ("a", "b")).may_have_applied()
    late = Replies([unsent, ServerTimeout("b did not reply within 0.5 s")], ("a", "b"))
    assert late.may_have_applied()
    with pytest.raises(QuorumError) as e:
        Replies([unsent], ("a",)).check_quorum(1)
    assert e.value.may_have_applied is False


@pytest.mark.parametrize("quorum", ["2", 0, -1, True, 1.5])
def test_check_quorum_refuses_a_quorum_that_is_not_a_count(quorum: object) -> None:
    # "2" raised a bare TypeError; 0 and -1 passed with no server succeeding.
    replies = Replies([ServerUnavailable("a is down")], ("a",))
    with pytest.raises(ConfigurationError, match="quorum"):
        replies.check_quorum(quorum)  # type: ignore[arg-type]


def test_a_script_s_error_reply_may_follow_its_writes() -> None:
    # Redis keeps what a script wrote before it failed: an error reply of
    # EVAL, EVALSHA or FCALL is a write that may have applied, unless it says
    # the script never ran. Any other command's error reply applied nothing.
    failed = ReplyError("ERR validation failed")
    assert Replies([failed], ("a",), script=True).may_have_applied()
    assert not Replies([failed], ("a",)).may_have_applied()
    for never_ran in (
        "NOSCRIPT No matching script. Please use EVAL.",
        "ERR Function not found",
        "BUSY Redis is busy running a script.",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "READONLY You can't write against a read only replica.",
        "REDISHA_FOREIGN the key holds a string",
    ):
        assert not Replies([ReplyError(never_ran)], ("a",), script=True).may_have_applied()


async def test_quorum_error_from_a_pool_call_lists_every_entry(
    redis_factory: RedisFactory,
) -> None:
    server = redis_factory()
    async with open_pool(server.url, "redis://127.0.0.1:1") as pool:
        await wait_until(holds(lambda: pool.status()[1].last_error is not None), what="tried")
        with pytest.raises(QuorumError) as caught:
            await pool.execute("PING", quorum=2)
        assert caught.value.replies[0] == "PONG"
        assert isinstance(caught.value.replies[1], ServerUnavailable)


async def test_open_pool_hands_back_the_blocks_own_exception(
    redis_server: RedisServer,
) -> None:
    with pytest.raises(KeyError):
        async with open_pool(redis_server.url):
            raise KeyError("mine")


# --------------------------------------------------------------------------- limits


async def connections_received(server: RedisServer) -> int:
    """How many connections ``server`` has accepted (one more for asking)."""
    info = decode_reply(await server.acommand("INFO", "stats"))
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("total_connections_received:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(info)  # pragma: no cover


BAD_LIMITS: list[Any] = [None, {}, "default", 1 << 20, Limits]


@pytest.mark.parametrize("limits", BAD_LIMITS)
def test_pool_refuses_limits_that_are_not_limits(limits: Any) -> None:
    with pytest.raises(ConfigurationError, match="limits"):
        Pool("redis://127.0.0.1:1", limits=limits)


@pytest.mark.parametrize("limits", BAD_LIMITS)
async def test_bad_limits_refused_before_connecting(redis_server: RedisServer, limits: Any) -> None:
    # A ConfigurationError, not an AttributeError nor a group around PoolClosed.
    before = await connections_received(redis_server)
    with pytest.raises(ConfigurationError, match="limits"):
        async with open_pool(redis_server.url, limits=limits):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError, match="limits"):
        async with open_connection(redis_server.url, limits=limits):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError, match="limits"):
        await connect(redis_server.url, limits=limits)
    # Nothing dialled the server: only the next INFO's own connection is new.
    assert await connections_received(redis_server) == before + 1


@pytest.mark.parametrize("limits", BAD_LIMITS)
async def test_connect_stream_refuses_bad_limits_before_the_handshake(limits: Any) -> None:
    client, server = trio.testing.memory_stream_pair()
    with pytest.raises(ConfigurationError, match="limits"):
        await connect_stream(client, "redis://127.0.0.1:6379", limits=limits)
    with trio.move_on_after(0.05):
        assert await server.receive_some() == b""  # pragma: no cover - nothing sent


async def test_a_host_name_no_resolver_can_look_up_is_refused_up_front(
    redis_servers: list[RedisServer],
) -> None:
    # The pool used to open, then die with a bare UnicodeError from its upkeep task.
    with pytest.raises(ConfigurationError, match="invalid host name"):
        Pool(redis_servers[0].url, "redis://" + "a" * 64 + ".example:6379")
    with pytest.raises(ConfigurationError, match="invalid host name"):
        async with open_pool(redis_servers[0].url, "redis://a..b:6379"):
            pass  # pragma: no cover


async def test_execute_script_takes_a_script(redis_servers: list[RedisServer]) -> None:
    async with ready_pool(*urls(redis_servers)) as pool:
        with pytest.raises(ConfigurationError, match="Script"):
            await pool.execute_script("return 1")  # type: ignore[arg-type]


async def test_the_rounds_that_load_a_script_share_one_more_timeout() -> None:
    # FCALL: no such function; FUNCTION LOAD: cannot compile (so EVALSHA from
    # then on); EVALSHA: NOSCRIPT; EVAL: the reply. Each round had a fresh
    # deadline, so with slow answers the call took several times its timeout.
    from tests.harness.hostile import HostileConnection, answer_handshake, open_hostile_server

    slow = 0.25
    answers = {
        b"FCALL": (0.0, b"-ERR Function not found\r\n"),
        b"FUNCTION": (slow, b"-ERR Error compiling function: no\r\n"),
        b"EVALSHA": (slow, b"-NOSCRIPT No matching script.\r\n"),
        b"EVAL": (slow, b":1\r\n"),
    }

    async def handler(conn: HostileConnection) -> None:
        command = await answer_handshake(conn)
        while True:
            delay, reply = answers.get(command[0].upper(), (0.0, b"+OK\r\n"))
            await trio.sleep(delay)
            await conn.send(reply)
            command = await conn.read_command()

    script = Script("return 1", library="local function main(KEYS, ARGV) return 1 end")
    timeout = 0.3
    async with (
        open_hostile_server(handler) as fake,
        ready_pool(fake.url, timeout=timeout, trip_after=10**6) as pool,
    ):
        started = trio.current_time()
        replies = await pool.execute_script(script)
        took = trio.current_time() - started
    # The loading rounds share one more timeout: the call gives up within it.
    assert isinstance(replies[0], ServerTimeout)
    assert b"FUNCTION" in fake.command_names() and b"EVALSHA" in fake.command_names()
    assert took < 2 * timeout, took  # three slow rounds used to take 0.75 s


async def test_a_library_of_our_name_loaded_by_hand_is_replaced(
    redis_servers: list[RedisServer],
) -> None:
    # Its name is its code's hash, so a library of that name without the function
    # is not ours. FUNCTION LOAD answered "already exists", the FCALL failed
    # again, and that server refused every write from then on.
    script = Script(
        "return redis.call('INCR', KEYS[1])",
        library="local function main(KEYS, ARGV) return redis.call('INCR', KEYS[1]) end",
    )
    impostor = (
        f"#!lua name={script.function}\n"
        "redis.register_function('something_else', function() return 0 end)"
    )
    await redis_servers[0].acommand("FUNCTION", "LOAD", impostor)
    async with ready_pool(*urls(redis_servers)) as pool:
        assert await pool.execute_script(script, ["n"]) == [1, 1, 1]
        assert await pool.execute_script(script, ["n"]) == [2, 2, 2]


async def test_a_pool_used_from_another_trio_run_refuses(
    redis_servers: list[RedisServer],
) -> None:
    # Its connections, timers and tasks belong to the run that started it:
    # driven from a second trio.run in another thread, it crashed the first
    # run with trio's own AssertionError.
    async with ready_pool(*urls(redis_servers)) as pool:

        async def elsewhere() -> None:
            await pool.execute("INCR", "n")

        with pytest.raises(ConfigurationError, match="another Trio run"):
            await trio.to_thread.run_sync(trio.run, elsewhere)
        assert await pool.execute("INCR", "n") == [1, 1, 1]  # nothing sent from there
