"""Small helpers the test files share: waiting for a state, reading a server's state
directly, what an error shows, and leak checks.

Tests of a highly available client wait for states that live in other processes
(a server noticed as down, a connection closed, a replica repaired) and that
offer no event to wait on, so they poll, always under a deadline and never with
a fixed sleep. :func:`wait_until` is that loop, once.

What a server holds is read over a raw socket (:meth:`RedisServer.acommand
<trio_redisha.testing.RedisServer.acommand>`), never through the code under test.
"""

from __future__ import annotations

import inspect
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import pytest
import trio

from trio_redisha.crdt._storage import DIGEST_FIELD, state_digest
from trio_redisha.testing import (
    Arg,
    RedisServer,
    decode_reply,
    encode_command,
    live_servers,
    pid_alive,
    reply_end,
    spawned_pids,
)

__all__ = [
    "DEADLINE",
    "FAST",
    "POLL",
    "BlockingClient",
    "child_redis_pids",
    "command_calls",
    "error_text",
    "eventually",
    "hash_of",
    "no_leaked_processes",
    "pttls",
    "raw",
    "raw_hash",
    "timed",
    "urls",
    "wait_no_clients",
    "wait_until",
]

#: Default seconds a state may take to be reached; generous, as CI machines are slow.
DEADLINE = 5.0
#: Poll step, in seconds.
POLL = 0.005

#: Pool options for fault tests: a short deadline and quick reconnects.
FAST: dict[str, Any] = {"timeout": 0.5, "backoff_cap": 0.05, "connect_timeout": 0.3}

#: A check: a plain or async callable returning something truthy once the state holds.
Check = Callable[[], object] | Callable[[], Awaitable[object]]


async def wait_until(
    check: Check,
    deadline: float = DEADLINE,
    *,
    what: str | Callable[[], str] | None = None,
    poll: float = POLL,
) -> float:
    """Poll ``check`` until it returns something truthy.

    Args:
        check: A plain or async callable.
        deadline: Seconds before giving up.
        what: What is awaited, for the failure message (or a callable making it,
            to show the state at the time of failure).
        poll: Seconds between two checks.

    Returns:
        The seconds it took (trio's clock).

    Raises:
        AssertionError: The check did not hold within ``deadline``.
    """
    start = trio.current_time()
    with trio.move_on_after(deadline):
        # Polling is the point: the state lives in other processes, no event exists.
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return trio.current_time() - start
            await trio.sleep(poll)
    text = what() if callable(what) else what or getattr(check, "__name__", "the condition")
    raise AssertionError(f"{text}: not within {deadline} s")


async def eventually(check: Check, what: str, deadline: float = DEADLINE) -> None:
    """:func:`wait_until` with the description first: ``eventually(check, "repaired")``.

    Args:
        check: A plain or async callable.
        what: What is awaited, for the failure message.
        deadline: Seconds before giving up.

    Raises:
        AssertionError: The check did not hold within ``deadline``.
    """
    await wait_until(check, deadline, what=what)


T = TypeVar("T")


class Sleeps(trio.abc.Instrument):
    """Counts the run loop's waits for I/O that may sleep (a timeout above zero)."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            self.count += 1


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    """Await ``call``; return its result and how long it took (trio's clock, virtual or not)."""
    start = trio.current_time()
    result = await call
    return result, trio.current_time() - start


def urls(servers: Iterable[RedisServer]) -> list[str]:
    """The servers' URLs, for ``open_pool(*urls(servers))``."""
    return [s.url for s in servers]


async def raw(server: RedisServer, *args: Arg) -> Any:
    """Run one command on ``server`` directly and return the decoded reply."""
    return decode_reply(await server.acommand(*args))


def _pairs(flat: object) -> dict[bytes, bytes]:
    assert isinstance(flat, list), flat
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def _state(flat: object) -> dict[bytes, bytes]:
    """A CRDT hash without its digest field, after checking the digest is the state's."""
    fields = _pairs(flat)
    if DIGEST_FIELD in fields:
        digest = fields.pop(DIGEST_FIELD)
        assert digest == state_digest(fields), (digest, fields)
    return fields


async def raw_hash(server: RedisServer, key: str) -> dict[bytes, bytes]:
    """What ``server`` holds at ``key``, a hash, read directly (``HGETALL``).

    The digest field of a CRDT hash is checked against the rest and left out.
    """
    return _state(await raw(server, "HGETALL", key))


def hash_of(server: RedisServer, key: str) -> dict[bytes, bytes]:
    """Blocking :func:`raw_hash`, for synchronous tests."""
    return _state(decode_reply(server.command("HGETALL", key)))


async def pttls(servers: Iterable[RedisServer], key: str) -> list[int]:
    """Each server's ``PTTL`` of ``key`` (-2: no key, -1: no expiry)."""
    return [int(await raw(s, "PTTL", key)) for s in servers]


async def writes_done(server: RedisServer) -> int:
    """How many changes ``server`` made to its data since it started (its dirty counter).

    ``INFO persistence`` ``rdb_changes_since_last_save``: every write moves it,
    reads (and read-only scripts) do not.
    """
    stats = await server.ainfo("persistence")
    return int(stats["rdb_changes_since_last_save"])


async def command_calls(server: RedisServer, *names: str) -> int:
    """How many times ``server`` ran the named commands, together (INFO commandstats).

    Args:
        server: The server.
        *names: Command names as commandstats spells them (``"evalsha"``, ``"client|reply"``).

    Returns:
        The sum of their ``calls``.
    """
    stats = await server.ainfo("commandstats")
    total = 0
    for name in names:
        entry = stats.get(f"cmdstat_{name.lower()}")
        if entry is not None:
            total += int(dict(part.split("=", 1) for part in entry.split(","))["calls"])
    return total


async def wait_no_clients(servers: Iterable[RedisServer]) -> None:
    """Wait until no server has a client connection left (a pool's are closed)."""
    for server in servers:

        async def gone(server: RedisServer = server) -> bool:
            return await server.aclient_count() == 0

        await wait_until(gone, what=f"{server!r} still has client connections")


class BlockingClient:
    """One blocking connection to a server, kept open for many commands.

    For synchronous tests that send thousands of commands (a fresh socket per
    command, as :meth:`RedisServer.command` opens, would dominate their time).

    Attributes:
        sock: The socket.
    """

    def __init__(self, server: RedisServer, timeout: float = 10.0) -> None:
        """Connect to ``server``."""
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self._buf = b""

    def call(self, *args: Arg) -> Any:
        """Send one command and return its decoded reply (an error reply as a ReplyError)."""
        self.sock.sendall(encode_command(*args))
        while True:
            end = reply_end(self._buf)
            if end is not None:
                raw, self._buf = self._buf[:end], self._buf[end:]
                return decode_reply(raw)
            chunk = self.sock.recv(1 << 20)
            assert chunk, "server closed the connection"
            self._buf += chunk

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def error_text(exc: BaseException) -> str:
    """Everything a user could see of an exception: message, repr, args, chained causes.

    Tests that a secret never shows assert it is not in this text.

    Args:
        exc: The exception.

    Returns:
        The text of the exception and of those linked to it, as a traceback shows them.
    """
    parts = [str(exc), repr(exc), *map(str, exc.args), repr(exc.args)]
    # What a traceback shows: the cause, and the context unless ``from None`` hid it.
    linked = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if linked is not None:
        parts.append(error_text(linked))
    return "\n".join(parts)


def child_redis_pids() -> set[int]:
    """redis-server processes whose parent is this test process (from /proc).

    Returns:
        Their pids (empty where /proc is missing).
    """
    me = os.getpid()
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")]
        fields = stat[stat.rindex(b")") + 2 :].split()
        if comm.startswith(b"redis-server") and int(fields[1]) == me and fields[0] != b"Z":
            found.add(int(entry))
    return found


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    """Check that every redis-server a test started is gone once its fixtures are torn down.

    Import it into a test module with ``autouse`` semantics by naming it in
    ``pytestmark = pytest.mark.usefixtures("no_leaked_processes")``.
    """
    before = set(spawned_pids())
    children_before = child_redis_pids()
    yield
    new = [pid for pid in spawned_pids() if pid not in before]
    leaked = [pid for pid in new if pid_alive(pid)]
    assert not leaked, f"redis-server processes left running: {leaked}"
    assert child_redis_pids() <= children_before
    assert not [s for s in live_servers() if s.process and s.process.pid in new]
