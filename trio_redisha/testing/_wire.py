"""A minimal RESP client for checking a server's state from outside the library.

A test that asserts what a Redis server holds must not read it back through the
code under test: a bug in the codec or the pool would then confirm itself. So
this module carries its own small encoder, reply framing and decoder, written
for clarity rather than speed, and returns replies as the raw bytes the server
sent (``b"$-1\\r\\n"``), which tests can compare exactly.

:meth:`RedisServer.command <trio_redisha.testing.RedisServer.command>` uses it
over a fresh socket per call; :class:`RawConnection` keeps one trio stream open
for tests that need a long-lived client (pipelining, a connection held across a
freeze, counting clients).
"""

from __future__ import annotations

import ssl
from types import TracebackType

import trio

from ..exceptions import ReplyError

__all__ = [
    "Arg",
    "RawConnection",
    "decode_reply",
    "encode_command",
    "open_raw_connection",
    "reply_end",
]

#: One argument of a Redis command: str is UTF-8 encoded, numbers are formatted,
#: bytes-like ones are sent as they are. Any other type (bool and None too) is a TypeError.
Arg = str | bytes | bytearray | memoryview | int | float

#: Bytes read from a socket at a time.
_CHUNK = 65536


def _to_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, (bytearray, memoryview)):
        return bytes(arg)
    # bool is an int, but True sent as "True" (or None as "None") is surely a mistake.
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    if isinstance(arg, float):
        return float.__repr__(arg).encode()
    raise TypeError(f"a command argument must be str, bytes or a number, not {type(arg).__name__}")


def encode_command(*args: Arg) -> bytes:
    """Encode one command as a RESP array of bulk strings.

    Args:
        *args: The command name and its arguments (see :data:`Arg`).

    Returns:
        The wire bytes, e.g. ``b"*1\\r\\n$4\\r\\nPING\\r\\n"`` for ``"PING"``.

    Raises:
        TypeError: An argument is not an :data:`Arg` (a bool or None, say).
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _to_bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """Find where the RESP (2 or 3) reply starting at ``pos`` ends.

    Any nesting depth: the walk is iterative (a script can return a table nested
    thousands deep).

    Args:
        buf: Received bytes.
        pos: Offset of the first byte of the reply.

    Returns:
        The offset just past the reply, or None when it is not complete yet.

    Raises:
        ValueError: On bytes that are not RESP.
    """
    remaining = 1  # elements still to skip in the current aggregate
    outer: list[int] = []  # the same count of each enclosing aggregate
    while True:
        while remaining == 0:
            if not outer:
                return pos
            remaining = outer.pop()
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        kind = buf[pos : pos + 1]
        after = eol + 2
        remaining -= 1
        if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
            pos = after
            continue
        if kind not in (b"$", b"!", b"=", b"*", b"~", b">", b"%", b"|"):
            raise ValueError(f"not a RESP reply at offset {pos}: {bytes(buf[pos : pos + 20])!r}")
        count = int(buf[pos + 1 : eol])
        pos = after
        if count < 0:
            continue
        if kind in (b"$", b"!", b"="):
            pos = after + count + 2
            if len(buf) < pos:
                return None
            continue
        items = count * 2 if kind in (b"%", b"|") else count
        if kind == b"|":  # an attribute precedes the actual reply: one element more
            items += 1
        outer.append(remaining)
        remaining = items


def decode_reply(raw: bytes) -> object:
    """Decode one complete RESP2 reply into Python values (for test assertions).

    Simple strings and bulk strings become bytes, integers int, nil None, arrays
    lists; an error reply becomes a :class:`~trio_redisha.ReplyError` instance
    (returned, not raised), so ``decode_reply(server.command("GET", "k"))`` reads
    naturally in an assertion. Arrays may be nested to any depth.

    Args:
        raw: Exactly one reply, as returned by :meth:`RedisServer.command
            <trio_redisha.testing.RedisServer.command>`.

    Returns:
        The decoded value.

    Raises:
        ValueError: ``raw`` is not a RESP2 reply this decoder knows.
    """
    # Iterative, not recursive: a reply nested thousands deep is a real one.
    open_arrays: list[tuple[list[object], int]] = []  # (items so far, length)
    pos = 0
    while True:
        start = pos
        eol = raw.index(b"\r\n", pos)
        kind, line = raw[pos : pos + 1], raw[pos + 1 : eol]
        pos = eol + 2
        value: object
        if kind == b"+":
            value = line
        elif kind == b"-":
            value = ReplyError(line.decode(errors="replace"))
        elif kind == b":":
            value = int(line)
        elif kind == b"_":
            value = None
        elif kind == b"$":
            n = int(line)
            value = None if n < 0 else raw[pos : pos + n]
            if n >= 0:
                pos += n + 2
        elif kind in (b"*", b"~", b">"):
            n = int(line)
            if n > 0:
                open_arrays.append(([], n))
                continue
            value = None if n < 0 else []
        else:
            raise ValueError(f"cannot decode {raw[start : start + 20]!r}")
        while open_arrays:  # the value completes an array, which may complete its own
            items, n = open_arrays[-1]
            items.append(value)
            if len(items) < n:
                break
            open_arrays.pop()
            value = items
        else:
            return value


def split_replies(buf: bytearray, count: int) -> list[bytes] | None:
    """Take ``count`` whole replies off the front of ``buf``, or None if not there yet."""
    replies: list[bytes] = []
    pos = 0
    for _ in range(count):
        end = reply_end(buf, pos)
        if end is None:
            return None
        replies.append(bytes(buf[pos:end]))
        pos = end
    del buf[:pos]
    return replies


class RawConnection:
    """A minimal RESP client over a trio stream, independent of the library.

    Example::

        async with await open_raw_connection(server.host, server.port) as conn:
            assert await conn.call("PING") == b"+PONG\\r\\n"

    Attributes:
        stream: The underlying trio stream.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        """Wrap a connected stream.

        Args:
            stream: A connected trio stream; closed by :meth:`aclose`.
        """
        self.stream = stream
        self._buf = bytearray()

    async def send_command(self, *args: Arg) -> None:
        """Send one command (not waiting for the reply).

        Args:
            *args: Command name and arguments.

        Raises:
            TypeError: An argument is not an :data:`Arg`.
        """
        await self.stream.send_all(encode_command(*args))

    async def read_reply(self) -> bytes:
        """Wait for one whole reply.

        Returns:
            Its raw bytes.

        Raises:
            ConnectionError: The server closed the connection first (EOF).
            trio.BrokenResourceError: The connection was reset.
        """
        while True:
            replies = split_replies(self._buf, 1)
            if replies is not None:
                return replies[0]
            chunk = await self.stream.receive_some(_CHUNK)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buf += chunk

    async def call(self, *args: Arg) -> bytes:
        """Send one command and return its raw reply.

        Args:
            *args: Command name and arguments.

        Returns:
            The raw reply.
        """
        await self.send_command(*args)
        return await self.read_reply()

    async def aclose(self) -> None:
        """Close the stream."""
        await self.stream.aclose()

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_raw_connection(
    host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> RawConnection:
    """Connect a :class:`RawConnection` over TCP (or TLS with ``ssl_context``).

    Args:
        host: Server address.
        port: Server port.
        ssl_context: Speak TLS with this context (server name = ``host``).

    Returns:
        The connection; use it as an async context manager to close it.
    """
    stream: trio.abc.Stream
    if ssl_context is not None:
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context)
    else:
        stream = await trio.open_tcp_stream(host, port)
    return RawConnection(stream)
