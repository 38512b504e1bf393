"""A hostile fake Redis server: answers with whatever bytes a test chooses.

::

    async with open_hostile_server(reply_with(b"-ERR nope\\r\\n")) as srv:
        client connects to srv.url; its handshake (HELLO, AUTH, SELECT, CLIENT,
        PING...) is answered plausibly, then every other command gets the reply.

    # PING itself hostile: answer only the setup commands plausibly.
    reply_with(b"$99999999999\\r\\n", handshake=SETUP_COMMANDS)

A handler is an async callable taking a :class:`HostileConnection`; it runs once per
accepted connection, and returning (or the client going away) ends that connection.
Ready-made behaviours: :func:`reply_with`, :func:`never_reply`, :func:`close_after`,
:func:`wrong_reply_count`; :func:`answer_handshake` lets a custom handler answer
HELLO/AUTH/SELECT/CLIENT/PING like a real server before turning hostile.
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager, suppress

import trio

__all__ = [
    "HANDSHAKE_COMMANDS",
    "SETUP_COMMANDS",
    "ClientGoneError",
    "Handler",
    "HostileConnection",
    "HostileServer",
    "answer_handshake",
    "close_after",
    "handshake_reply",
    "never_reply",
    "open_hostile_server",
    "parse_command",
    "reply_with",
    "wrong_reply_count",
]

#: Commands a client may send while setting a connection up, PING included.
HANDSHAKE_COMMANDS: frozenset[bytes] = frozenset(
    {b"HELLO", b"AUTH", b"SELECT", b"CLIENT", b"PING", b"READONLY", b"ECHO"}
)
#: The handshake commands without PING: use it to make PING itself hostile.
SETUP_COMMANDS: frozenset[bytes] = HANDSHAKE_COMMANDS - {b"PING", b"ECHO"}

REDIS_VERSION = b"7.0.15"


class ClientGoneError(Exception):
    """The client closed or reset the connection."""


def parse_command(buf: bytes | bytearray) -> tuple[list[bytes], int] | None:
    """Parse one client command: a RESP array of bulk strings, or an inline command.

    Args:
        buf: Bytes received so far.

    Returns:
        ``(arguments, bytes consumed)``, or None when the command is incomplete.

    Raises:
        ValueError: On bytes no client should send.
    """
    if not buf:
        return None
    eol = buf.find(b"\r\n")
    if eol < 0:
        return None
    if buf[:1] != b"*":  # inline command, as typed into telnet
        return [bytes(p) for p in bytes(buf[:eol]).split()], eol + 2
    count = int(buf[1:eol])
    pos = eol + 2
    args: list[bytes] = []
    for _ in range(max(count, 0)):
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        if buf[pos : pos + 1] != b"$":
            raise ValueError(f"expected a bulk string at {pos}: {bytes(buf[pos : pos + 20])!r}")
        size = int(buf[pos + 1 : eol])
        start = eol + 2
        end = start + size
        if len(buf) < end + 2:
            return None
        args.append(bytes(buf[start:end]))
        pos = end + 2
    return args, pos


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def handshake_reply(command: list[bytes], client_id: int = 1) -> bytes | None:
    """Reply plausibly to a connection-setup command, as Redis 7.0 would.

    Args:
        command: The parsed command.
        client_id: What ``CLIENT ID`` and ``HELLO`` report.

    Returns:
        The raw reply, or None when the command is not a handshake command.
    """
    if not command:
        return None
    name = command[0].upper()
    if name == b"HELLO":
        proto = 2
        if len(command) > 1 and command[1].isdigit():
            proto = int(command[1])
        if proto not in (2, 3):
            return b"-NOPROTO unsupported protocol version\r\n"
        fields = [
            (b"server", _bulk(b"redis")),
            (b"version", _bulk(REDIS_VERSION)),
            (b"proto", b":%d\r\n" % proto),
            (b"id", b":%d\r\n" % client_id),
            (b"mode", _bulk(b"standalone")),
            (b"role", _bulk(b"master")),
            (b"modules", b"*0\r\n"),
        ]
        head = b"%%%d\r\n" % len(fields) if proto == 3 else b"*%d\r\n" % (2 * len(fields))
        return head + b"".join(_bulk(k) + v for k, v in fields)
    if name == b"PING":
        return _bulk(command[1]) if len(command) > 1 else b"+PONG\r\n"
    if name == b"ECHO" and len(command) > 1:
        return _bulk(command[1])
    if name == b"CLIENT":
        sub = command[1].upper() if len(command) > 1 else b""
        if sub == b"ID":
            return b":%d\r\n" % client_id
        if sub == b"GETNAME":
            return b"$-1\r\n"
        return b"+OK\r\n"
    if name in (b"AUTH", b"SELECT", b"READONLY"):
        return b"+OK\r\n"
    return None


class HostileConnection:
    """One accepted client connection, as seen by a handler.

    Attributes:
        id: 1 for the server's first connection, then 2, 3...
        stream: The underlying trio stream.
        commands: Every command read on this connection, in order.
    """

    def __init__(self, stream: trio.SocketStream, server: HostileServer, conn_id: int) -> None:
        """Wrap an accepted stream."""
        self.id = conn_id
        self.stream = stream
        self.commands: list[list[bytes]] = []
        self._server = server
        self._buf = bytearray()
        self._closed = False

    async def read_command(self) -> list[bytes]:
        """Wait for the next whole command from the client.

        Returns:
            The command's arguments, e.g. ``[b"SET", b"k", b"v"]``.

        Raises:
            ClientGoneError: The client closed or reset the connection.
        """
        while True:
            parsed = parse_command(self._buf)
            if parsed is not None:
                command, used = parsed
                del self._buf[:used]
                self.commands.append(command)
                self._server.commands.append(command)
                return command
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientGoneError from exc
            if not data:
                raise ClientGoneError
            self._buf += data

    async def send(self, raw: bytes) -> None:
        """Send raw bytes to the client.

        Args:
            raw: Anything, valid RESP or not.

        Raises:
            ClientGoneError: The client is gone.
        """
        try:
            await self.stream.send_all(raw)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientGoneError from exc

    def close(self) -> None:
        """Close the connection with a normal FIN."""
        if not self._closed:
            self._closed = True
            self.stream.socket.close()

    def abort(self) -> None:
        """Close the connection with an RST."""
        if not self._closed:
            self._closed = True
            with suppress(OSError):
                self.stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.stream.socket.close()


#: What :func:`open_hostile_server` runs for each connection.
Handler = Callable[[HostileConnection], Awaitable[None]]


class HostileServer:
    """A running hostile server; get one from :func:`open_hostile_server`.

    Attributes:
        host: ``127.0.0.1``.
        port: The listening port.
        commands: Every command received, over all connections.
        accepted_total: Connections accepted so far.
    """

    def __init__(self, host: str, port: int) -> None:
        """Set up the state; serving is started by :func:`open_hostile_server`."""
        self.host = host
        self.port = port
        self.commands: list[list[bytes]] = []
        self.accepted_total = 0
        self.connections: list[HostileConnection] = []

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port``."""
        return f"redis://{self.host}:{self.port}"

    @property
    def live_connections(self) -> int:
        """Connections whose handler is still running."""
        return len(self.connections)

    def command_names(self) -> list[bytes]:
        """Return the upper-cased name of every command received, in order."""
        return [c[0].upper() for c in self.commands if c]

    async def _run(self, stream: trio.SocketStream, handler: Handler) -> None:
        self.accepted_total += 1
        conn = HostileConnection(stream, self, self.accepted_total)
        self.connections.append(conn)
        try:
            await handler(conn)
        except (ClientGoneError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            conn.close()
            self.connections.remove(conn)


@asynccontextmanager
async def open_hostile_server(
    handler: Handler, *, host: str = "127.0.0.1"
) -> AsyncIterator[HostileServer]:
    """Serve ``handler`` on a free loopback port for the duration of the block.

    Args:
        handler: Run once per connection; see the ready-made behaviours.
        host: Loopback address to listen on.

    Yields:
        The running :class:`HostileServer`.
    """
    listeners = await trio.open_tcp_listeners(0, host=host)
    listener = listeners[0]
    for extra in listeners[1:]:
        await extra.aclose()
    port: int = listener.socket.getsockname()[1]
    server = HostileServer(host, port)

    async def serve(nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError:
                    await trio.sleep(0.01)
                    continue
                nursery.start_soon(server._run, stream, handler)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, nursery)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
            for conn in list(server.connections):
                conn.close()


# ------------------------------------------------------------------ behaviours


async def answer_handshake(
    conn: HostileConnection, commands: Collection[bytes] = HANDSHAKE_COMMANDS
) -> list[bytes]:
    """Answer setup commands like a real server until another command arrives.

    Args:
        conn: The connection.
        commands: Upper-case names treated as handshake (empty: none).

    Returns:
        The first command that is not a handshake command (still unanswered).

    Raises:
        ClientGoneError: The client went away.
    """
    while True:
        command = await conn.read_command()
        reply = None
        if command and command[0].upper() in commands:
            reply = handshake_reply(command, conn.id)
        if reply is None:
            return command
        await conn.send(reply)


def reply_with(raw: bytes, *, handshake: Collection[bytes] = HANDSHAKE_COMMANDS) -> Handler:
    """Answer every non-handshake command with ``raw``.

    Args:
        raw: The bytes sent for each command (e.g. ``b"$99999999999\\r\\n"``).
        handshake: Commands answered plausibly first; pass :data:`SETUP_COMMANDS`
            to make PING hostile too, or ``()`` to answer everything with ``raw``.

    Returns:
        The handler.
    """

    async def handler(conn: HostileConnection) -> None:
        await answer_handshake(conn, handshake)
        while True:
            await conn.send(raw)
            await conn.read_command()

    return handler


def never_reply(*, handshake: Collection[bytes] = HANDSHAKE_COMMANDS) -> Handler:
    """Read every non-handshake command and never answer (the connection stays open).

    Args:
        handshake: Commands answered plausibly first.

    Returns:
        The handler.
    """

    async def handler(conn: HostileConnection) -> None:
        await answer_handshake(conn, handshake)
        while True:
            await conn.read_command()

    return handler


def close_after(
    n: int,
    *,
    reply: bytes = b"+OK\r\n",
    abort: bool = False,
    handshake: Collection[bytes] = HANDSHAKE_COMMANDS,
) -> Handler:
    """Answer ``n`` non-handshake commands with ``reply``, then close on the next one.

    Args:
        n: Commands answered before closing (0: close on the first one).
        reply: What each answered command gets.
        abort: Close with an RST instead of a FIN.
        handshake: Commands answered plausibly first (not counted).

    Returns:
        The handler.
    """

    async def handler(conn: HostileConnection) -> None:
        await answer_handshake(conn, handshake)
        for i in range(n):
            await conn.send(reply)
            if i < n - 1:
                await conn.read_command()
        if n:
            await conn.read_command()
        if abort:
            conn.abort()
        else:
            conn.close()

    return handler


def wrong_reply_count(
    replies_per_command: int | Callable[[int], int] = 2,
    *,
    reply: bytes = b"+OK\r\n",
    handshake: Collection[bytes] = HANDSHAKE_COMMANDS,
) -> Handler:
    """Answer each non-handshake command with the wrong number of replies.

    Args:
        replies_per_command: How many copies of ``reply`` each command gets (2: one
            too many, 0: none), or a function of the command's index (0-based)
            returning that count, e.g. ``lambda i: i % 2`` to skip every other one.
        reply: The reply repeated.
        handshake: Commands answered plausibly first.

    Returns:
        The handler.
    """

    def count(i: int) -> int:
        if callable(replies_per_command):
            return replies_per_command(i)
        return replies_per_command

    async def handler(conn: HostileConnection) -> None:
        await answer_handshake(conn, handshake)
        for i in itertools.count():
            k = count(i)
            if k:
                await conn.send(reply * k)
            await conn.read_command()

    return handler
