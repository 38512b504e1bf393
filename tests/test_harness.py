"""Tests of the test harness itself: fault proxy, hostile server, TLS.

The server manager, ``trio_redisha.testing``, has its own tests in test_testing.py.
"""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st

from tests.harness.fault_proxy import ProxyMode, open_fault_proxy
from tests.harness.helpers import eventually, no_leaked_processes
from tests.harness.hostile import (
    SETUP_COMMANDS,
    HostileConnection,
    answer_handshake,
    close_after,
    never_reply,
    open_hostile_server,
    parse_command,
    reply_with,
    wrong_reply_count,
)
from tests.harness.tls import TLSFiles
from trio_redisha.testing import (
    RawConnection,
    RedisServer,
    decode_reply,
    encode_command,
    open_raw_connection,
)

DEADLINE = 5.0

pytestmark = pytest.mark.usefixtures(no_leaked_processes.__name__)


# ---------------------------------------------------------------- RESP helpers


@given(
    st.lists(st.lists(st.binary(max_size=20), min_size=1, max_size=5), min_size=1, max_size=5),
    st.integers(min_value=1, max_value=7),
)
def test_parse_command_roundtrip_any_chunking(commands: list[list[bytes]], step: int) -> None:
    wire = b"".join(encode_command(*c) for c in commands)
    buf = bytearray()
    parsed: list[list[bytes]] = []
    for i in range(0, len(wire), step):
        buf += wire[i : i + step]
        while (result := parse_command(buf)) is not None:
            cmd, used = result
            del buf[:used]
            parsed.append(cmd)
    assert parsed == commands
    assert not buf


def test_parse_inline_command() -> None:
    assert parse_command(b"PING\r\n") == ([b"PING"], 6)
    assert parse_command(b"SET a  b\r\nGET") == ([b"SET", b"a", b"b"], 10)


# --------------------------------------------------------------------- proxy


async def test_proxy_forwards(redis_server: RedisServer) -> None:
    async with open_fault_proxy(redis_server.host, redis_server.port) as proxy:
        assert proxy.url == f"redis://127.0.0.1:{proxy.port}"
        async with await open_raw_connection(proxy.host, proxy.port) as conn:
            assert await conn.call("SET", "k", "v" * 100_000) == b"+OK\r\n"
            assert await conn.call("STRLEN", "k") == b":100000\r\n"
            assert proxy.live_connections == 1
            assert proxy.mode is ProxyMode.NORMAL
            assert redis_server.client_count() == 1
        await eventually(lambda: proxy.live_connections == 0, "proxy connection closed")
        await eventually(lambda: redis_server.client_count() == 0, "upstream closed")


async def _hangs(conn: RawConnection, seconds: float = 0.2) -> bool:
    """True when no reply arrives within ``seconds``."""
    with trio.move_on_after(seconds):
        await conn.read_reply()
        return False
    return True


async def test_partition_loses_writes_in_flight(redis_server: RedisServer) -> None:
    async with open_fault_proxy(redis_server.host, redis_server.port) as proxy:
        old = await open_raw_connection(proxy.host, proxy.port)
        assert await old.call("PING") == b"+PONG\r\n"
        assert redis_server.client_count() == 1

        proxy.partition()
        assert proxy.mode is ProxyMode.PARTITION
        # The old connection was reset: the write fails or vanishes, never arrives.
        with pytest.raises((trio.BrokenResourceError, ConnectionError)):
            await old.send_command("SET", "old", "1")
            await old.read_reply()
        await eventually(lambda: redis_server.client_count() == 0, "upstream reset")

        # A new connection is accepted but hangs; its write is never forwarded.
        new = await open_raw_connection(proxy.host, proxy.port)
        await new.send_command("SET", "new", "1")
        assert await _hangs(new)
        await eventually(lambda: proxy.hung_connections == 1, "hung connection")
        assert redis_server.client_count() == 0

        proxy.heal()
        with pytest.raises((trio.BrokenResourceError, ConnectionError)):
            await new.read_reply()  # hung connections are reset on heal
        assert redis_server.command("GET", "old") == b"$-1\r\n"
        assert redis_server.command("GET", "new") == b"$-1\r\n"

        async with await open_raw_connection(proxy.host, proxy.port) as conn:
            assert await conn.call("SET", "after", "1") == b"+OK\r\n"
        assert redis_server.command("GET", "after") == b"$1\r\n1\r\n"
        await old.aclose()
        await new.aclose()


async def test_partition_drops_bytes_the_proxy_still_holds(redis_server: RedisServer) -> None:
    async with open_fault_proxy(redis_server.host, redis_server.port) as proxy:
        conn = await open_raw_connection(proxy.host, proxy.port)
        assert await conn.call("PING") == b"+PONG\r\n"
        proxy.set_latency(30)  # the SET will sit in the proxy's delay line
        read_before, sent_before = proxy.bytes_from_clients, proxy.bytes_to_servers
        await conn.send_command("SET", "k", "v")
        await eventually(lambda: proxy.bytes_from_clients > read_before, "proxy read the SET")
        proxy.partition()
        proxy.set_latency(0)
        proxy.heal()
        assert proxy.bytes_to_servers == sent_before
        with pytest.raises((trio.BrokenResourceError, ConnectionError)):
            await conn.read_reply()
        await conn.aclose()
        await eventually(lambda: redis_server.client_count() == 0, "upstream reset")
        assert redis_server.command("GET", "k") == b"$-1\r\n"


async def test_sigstop_does_not_lose_writes(redis_server: RedisServer) -> None:
    async with open_fault_proxy(redis_server.host, redis_server.port) as proxy:
        async with await open_raw_connection(proxy.host, proxy.port) as conn:
            assert await conn.call("PING") == b"+PONG\r\n"
            await redis_server.afreeze()
            await conn.send_command("SET", "k", "v")
            assert await _hangs(conn)  # the kernel holds the bytes for the frozen server
            await redis_server.athaw()
            with trio.fail_after(DEADLINE):
                assert await conn.read_reply() == b"+OK\r\n"
        assert redis_server.command("GET", "k") == b"$1\r\nv\r\n"

    # Same without the proxy in between.
    async with await open_raw_connection(redis_server.host, redis_server.port) as conn:
        await redis_server.afreeze()
        await conn.send_command("SET", "direct", "v")
        assert await _hangs(conn)
        await redis_server.athaw()
        with trio.fail_after(DEADLINE):
            assert await conn.read_reply() == b"+OK\r\n"
    assert redis_server.command("GET", "direct") == b"$1\r\nv\r\n"


async def test_blackhole_hangs_then_heal_resumes(redis_server: RedisServer) -> None:
    async with (
        open_fault_proxy(redis_server.host, redis_server.port) as proxy,
        await open_raw_connection(proxy.host, proxy.port) as conn,
    ):
        assert await conn.call("PING") == b"+PONG\r\n"
        proxy.blackhole()
        await conn.send_command("SET", "k", "v")
        assert await _hangs(conn, 0.3)
        assert proxy.live_connections == 1
        assert redis_server.command("GET", "k") == b"$-1\r\n"  # nothing forwarded

        hung = await open_raw_connection(proxy.host, proxy.port)
        await hung.send_command("PING")
        assert await _hangs(hung)
        assert proxy.hung_connections == 1

        proxy.heal()
        with trio.fail_after(DEADLINE):
            assert await conn.read_reply() == b"+OK\r\n"  # the stalled one resumes
        with pytest.raises((trio.BrokenResourceError, ConnectionError)):
            await hung.read_reply()
        await hung.aclose()
        assert await conn.call("GET", "k") == b"$1\r\nv\r\n"


async def test_blackhole_hides_server_death_until_heal(redis_server: RedisServer) -> None:
    async with (
        open_fault_proxy(redis_server.host, redis_server.port) as proxy,
        await open_raw_connection(proxy.host, proxy.port) as conn,
    ):
        assert await conn.call("PING") == b"+PONG\r\n"
        proxy.blackhole()
        await redis_server.akill()
        await conn.send_command("PING")
        assert await _hangs(conn)  # no reset or EOF leaks through the blackhole
        proxy.heal()
        with trio.fail_after(DEADLINE), pytest.raises((trio.BrokenResourceError, ConnectionError)):
            await conn.read_reply()


async def test_latency(redis_server: RedisServer) -> None:
    async with (
        open_fault_proxy(redis_server.host, redis_server.port) as proxy,
        await open_raw_connection(proxy.host, proxy.port) as conn,
    ):
        assert await conn.call("PING") == b"+PONG\r\n"
        proxy.set_latency(0.1)
        t0 = trio.current_time()
        assert await conn.call("PING") == b"+PONG\r\n"
        assert trio.current_time() - t0 >= 0.2  # both directions delayed
        proxy.set_latency(0)
        t0 = trio.current_time()
        assert await conn.call("PING") == b"+PONG\r\n"
        assert trio.current_time() - t0 < 0.1


async def test_proxy_passes_server_death_on(redis_server: RedisServer) -> None:
    async with open_fault_proxy(redis_server.host, redis_server.port) as proxy:
        async with await open_raw_connection(proxy.host, proxy.port) as conn:
            assert await conn.call("PING") == b"+PONG\r\n"
            await redis_server.akill()
            with (
                trio.fail_after(DEADLINE),
                pytest.raises((trio.BrokenResourceError, ConnectionError)),
            ):
                await conn.read_reply()
        # Nothing listens upstream: a new connection is reset at once.
        async with await open_raw_connection(proxy.host, proxy.port) as conn:
            with (
                trio.fail_after(DEADLINE),
                pytest.raises((trio.BrokenResourceError, ConnectionError)),
            ):
                await conn.call("PING")


async def test_proxy_exit_closes_everything(redis_server: RedisServer) -> None:
    async with open_fault_proxy(redis_server.host, redis_server.port) as proxy:
        conn = await open_raw_connection(proxy.host, proxy.port)
        assert await conn.call("PING") == b"+PONG\r\n"
        port = proxy.port
    with trio.fail_after(DEADLINE), pytest.raises((trio.BrokenResourceError, ConnectionError)):
        await conn.call("PING")
    await conn.aclose()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)
    await eventually(lambda: redis_server.client_count() == 0, "upstream closed")


# ------------------------------------------------------------------- hostile


async def test_hostile_reply_with_after_handshake() -> None:
    bad = b"$99999999999\r\n"
    async with open_hostile_server(reply_with(bad, handshake=SETUP_COMMANDS)) as srv:
        async with await open_raw_connection(srv.host, srv.port) as conn:
            hello = decode_reply(await conn.call("HELLO", "2"))
            assert isinstance(hello, list)
            assert hello[:4] == [b"server", b"redis", b"version", b"7.0.15"]
            assert await conn.call("CLIENT", "SETNAME", "x") == b"+OK\r\n"
            assert await conn.call("SELECT", "0") == b"+OK\r\n"
            await conn.send_command("PING")
            with trio.fail_after(DEADLINE):
                got = b""
                while len(got) < len(bad):
                    got += await conn.stream.receive_some(100)
            assert got == bad
        assert srv.command_names() == [b"HELLO", b"CLIENT", b"SELECT", b"PING"]


async def test_hostile_hello3_is_a_map() -> None:
    async with (
        open_hostile_server(reply_with(b"+OK\r\n")) as srv,
        await open_raw_connection(srv.host, srv.port) as conn,
    ):
        reply = await conn.call("HELLO", "3", "AUTH", "u", "p")
        assert reply.startswith(b"%7\r\n")
        assert await conn.call("PING") == b"+PONG\r\n"
        assert await conn.call("GET", "k") == b"+OK\r\n"


async def test_hostile_never_reply() -> None:
    async with open_hostile_server(never_reply()) as srv:
        async with await open_raw_connection(srv.host, srv.port) as conn:
            assert await conn.call("PING") == b"+PONG\r\n"
            await conn.send_command("GET", "k")
            assert await _hangs(conn)
            assert srv.live_connections == 1
        await eventually(lambda: srv.live_connections == 0, "handler ended")


async def test_hostile_close_after() -> None:
    async with (
        open_hostile_server(close_after(1)) as srv,
        await open_raw_connection(srv.host, srv.port) as conn,
    ):
        assert await conn.call("GET", "a") == b"+OK\r\n"
        with pytest.raises(ConnectionError):
            await conn.call("GET", "b")
    async with (
        open_hostile_server(close_after(0, abort=True)) as srv,
        await open_raw_connection(srv.host, srv.port) as conn,
    ):
        with pytest.raises(trio.BrokenResourceError):
            await conn.call("GET", "a")


async def test_hostile_wrong_reply_count() -> None:
    async with (
        open_hostile_server(wrong_reply_count(2, reply=b":7\r\n")) as srv,
        await open_raw_connection(srv.host, srv.port) as conn,
    ):
        assert await conn.call("INCR", "a") == b":7\r\n"
        with trio.fail_after(DEADLINE):
            assert await conn.read_reply() == b":7\r\n"
    async with (
        open_hostile_server(wrong_reply_count(lambda i: i % 2)) as srv,
        await open_raw_connection(srv.host, srv.port) as conn,
    ):
        await conn.send_command("GET", "a")  # index 0: no reply
        assert await conn.call("GET", "b") == b"+OK\r\n"


async def test_hostile_custom_handler() -> None:
    async def handler(conn: HostileConnection) -> None:
        first = await answer_handshake(conn)
        await conn.send(b"-ERR got %s\r\n" % first[0])
        conn.abort()

    async with open_hostile_server(handler) as srv:
        async with await open_raw_connection(srv.host, srv.port) as conn:
            assert await conn.call("AUTH", "pw") == b"+OK\r\n"
            assert await conn.call("MGET", "a") == b"-ERR got MGET\r\n"
        assert srv.accepted_total == 1


# ----------------------------------------------------------------------- TLS


def test_tls_files(tls_files: TLSFiles) -> None:
    for path in (tls_files.ca_file, tls_files.cert_file, tls_files.key_file):
        assert path.read_bytes().startswith(b"-----BEGIN")
    ctx = tls_files.client_context()
    assert ctx.check_hostname
    assert ctx.verify_mode is ssl.CERT_REQUIRED


async def test_tls_server_answers_ping(tls_redis_server: RedisServer, tls_files: TLSFiles) -> None:
    assert tls_redis_server.url.startswith("rediss://127.0.0.1:")
    ctx = tls_files.client_context()
    async with await open_raw_connection(
        tls_redis_server.host, tls_redis_server.port, ssl_context=ctx
    ) as conn:
        assert await conn.call("PING") == b"+PONG\r\n"
    assert tls_redis_server.command("PING") == b"+PONG\r\n"
    # Plain TCP gets no PONG from the TLS port.
    async with await open_raw_connection(tls_redis_server.host, tls_redis_server.port) as conn:
        await conn.send_command("PING")
        with trio.move_on_after(1):
            with pytest.raises((trio.BrokenResourceError, ConnectionError, ValueError)):
                await conn.read_reply()


async def test_tls_through_proxy(tls_redis_server: RedisServer, tls_files: TLSFiles) -> None:
    async with (
        open_fault_proxy(tls_redis_server.host, tls_redis_server.port) as proxy,
        await open_raw_connection(
            proxy.host, proxy.port, ssl_context=tls_files.client_context()
        ) as conn,
    ):
        assert await conn.call("PING") == b"+PONG\r\n"
