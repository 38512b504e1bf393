"""An in-memory Redis stand-in on trio's memory streams, for tests on virtual time.

A real server runs in another process, so trio's ``autojump_clock`` cannot
know when its reply will come. :class:`MemoryServer` runs in the test's own
trio run: a pool gets it through its ``connector`` option, every byte goes
through :func:`trio.testing.memory_stream_pair`, and so deadlines, circuits,
probes and backoff can be asserted at exact virtual times.

Behaviour is set by the test at any moment: ``hung`` (read commands, answer
none until unhung, then answer them all in order, as a thawed server does),
``delay`` (seconds before each reply), ``refusing`` (connect attempts fail),
``connect_delay`` (seconds each connect attempt takes).
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from tests.harness.hostile import handshake_reply, parse_command
from trio_redisha import Connection, ServerSpec, ServerUnavailable
from trio_redisha.connection import connect_stream

__all__ = ["MemoryServer", "memory_connector"]


class MemoryServer:
    """One fake server; see the module docstring.

    Args:
        nursery: Where the server side of each connection runs.
        name: A label for messages.
    """

    def __init__(self, nursery: trio.Nursery, name: str = "memory") -> None:
        self.nursery = nursery
        self.name = name
        self.hung = False
        self.delay = 0.0
        self.refusing = False
        self.connect_delay = 0.0
        #: Virtual times of every connect attempt.
        self.attempts: list[float] = []
        #: Every command received after the handshake: (virtual time, arguments).
        self.commands: list[tuple[float, list[bytes]]] = []
        self._unhung = trio.Event()
        self._streams: list[trio.testing.MemorySendStream] = []

    def hang(self) -> None:
        """Stop answering (the commands are still read and kept in order)."""
        self.hung = True
        self._unhung = trio.Event()

    def unhang(self) -> None:
        """Answer again, the commands that waited first."""
        self.hung = False
        self._unhung.set()

    def drop_connections(self) -> None:
        """Close every connection from the server side."""
        for stream in self._streams:
            stream.close()
        self._streams.clear()

    async def connect(self, spec: ServerSpec, **options: Any) -> Connection:
        """A pool's connector: one connection to this server.

        Args:
            spec: The server, as the pool names it.
            **options: For :func:`~trio_redisha.connection.connect_stream`.
        """
        self.attempts.append(trio.current_time())
        if self.connect_delay:
            await trio.sleep(self.connect_delay)
        if self.refusing:
            raise ServerUnavailable(f"{self.name}: connection refused")
        client, server = trio.testing.memory_stream_pair()
        self._streams.append(server.send_stream)
        self.nursery.start_soon(self._serve, server)
        return await connect_stream(client, spec, **options)

    async def _serve(self, stream: trio.StapledStream[Any, Any]) -> None:
        # One task reads (so every command is seen, in order, even while hung);
        # another answers in the same order.
        send, receive = trio.open_memory_channel[bytes](float("inf"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._answer_in_order, stream, receive, nursery.cancel_scope)
            buf = b""
            handshaking = True
            try:
                while True:
                    data = await stream.receive_some()
                    if not data:
                        break
                    buf += data
                    while (parsed := parse_command(buf)) is not None:
                        command, used = parsed
                        buf = buf[used:]
                        reply = handshake_reply(command) if handshaking else None
                        if reply is not None:
                            # The handshake ends with a PING; it is answered at once.
                            handshaking = command[0].upper() != b"PING"
                            await stream.send_all(reply)
                            continue
                        self.commands.append((trio.current_time(), command))
                        send.send_nowait(self._answer(command))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()

    async def _answer_in_order(
        self,
        stream: trio.StapledStream[Any, Any],
        replies: trio.MemoryReceiveChannel[bytes],
        scope: trio.CancelScope,
    ) -> None:
        try:
            async for reply in replies:
                while self.hung:
                    await self._unhung.wait()
                if self.delay:
                    await trio.sleep(self.delay)
                await stream.send_all(reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    def _answer(self, command: list[bytes]) -> bytes:
        name = command[0].upper()
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"ECHO":
            return b"$%d\r\n%s\r\n" % (len(command[1]), command[1])
        return b"+OK\r\n"


def memory_connector(servers: dict[str, MemoryServer]) -> Any:
    """A connector routing each server label to its :class:`MemoryServer`."""

    async def connect(spec: ServerSpec) -> Connection:
        return await servers[spec.label].connect(spec)

    return connect
