"""A trio TCP proxy that injects network faults between a client and a server.

::

    async with open_fault_proxy(server.host, server.port) as proxy:
        client connects to proxy.url ...
        proxy.set_latency(0.05)   # every forwarded chunk is delayed 50 ms
        proxy.blackhole()         # nothing forwarded; connections stay open, stall
        proxy.partition()         # every connection RST on both sides; new ones hang
        proxy.heal()              # forward again; hung connections are reset

Semantics, which tests can rely on:

* **latency**: each chunk is forwarded ``seconds`` after it was read (chunks stay in
  order and are pipelined; the delay is fixed when the chunk is read).
* **blackhole**: open connections stay open but nothing is forwarded in either
  direction; bytes already read by the proxy are held, not dropped, and flow again
  after :meth:`FaultProxy.heal` (like a network stall TCP recovers from). New
  connections are accepted but never connected upstream ("hung").
* **partition**: every open connection is aborted with an RST on both sides
  (``SO_LINGER (1, 0)`` then close), and whatever the proxy had buffered is discarded:
  bytes a client wrote that had not reached the server never will. New connections
  are accepted and hang, nothing read from them.
* **heal**: forwarding resumes for new and stalled connections; hung connections
  (accepted while not forwarding) are reset, since they were never connected.

Upstream resets are passed on as resets, upstream EOF as EOF (half-close).
The controls are plain sync methods, callable from any task of the trio run.
"""

from __future__ import annotations

import enum
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import trio

__all__ = ["FaultProxy", "ProxyMode", "abort_stream", "open_fault_proxy"]

CHUNK_SIZE = 65536
#: Chunks buffered per direction before the proxy stops reading (backpressure).
BUFFER_CHUNKS = 16
CONNECT_TIMEOUT = 10.0


class ProxyMode(enum.Enum):
    """What the proxy does with traffic."""

    NORMAL = "normal"
    BLACKHOLE = "blackhole"
    PARTITION = "partition"


def abort_stream(stream: trio.SocketStream) -> None:
    """Close a socket stream with an RST instead of a FIN (unsent data discarded).

    Args:
        stream: The stream to abort; closing an already closed one is a no-op.
    """
    sock = stream.socket
    if sock.fileno() == -1:
        return
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Connection:
    """One client connection and, once connected, its upstream twin."""

    def __init__(self, client: trio.SocketStream) -> None:
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.hung = False
        self.done = False
        self.scope = trio.CancelScope()

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        abort_stream(self.client)
        if self.upstream is not None:
            abort_stream(self.upstream)
        self.scope.cancel()

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        self.client.socket.close()
        if self.upstream is not None:
            self.upstream.socket.close()
        self.scope.cancel()


class FaultProxy:
    """A running proxy; get one from :func:`open_fault_proxy`.

    Attributes:
        host: Listening address (``127.0.0.1``).
        port: Listening port.
        target_host: Upstream host.
        target_port: Upstream port.
        accepted_total: Connections accepted so far.
        bytes_from_clients: Bytes the proxy read from clients.
        bytes_to_servers: Bytes the proxy wrote upstream.
        bytes_from_servers: Bytes the proxy read from upstream.
        bytes_to_clients: Bytes the proxy wrote to clients.
    """

    def __init__(self, target_host: str, target_port: int, host: str, port: int) -> None:
        """Set up the state; the accept loop is started by :func:`open_fault_proxy`."""
        self.host = host
        self.port = port
        self.target_host = target_host
        self.target_port = target_port
        self.accepted_total = 0
        self.bytes_from_clients = 0
        self.bytes_to_servers = 0
        self.bytes_from_servers = 0
        self.bytes_to_clients = 0
        self._latency = 0.0
        self._mode = ProxyMode.NORMAL
        self._changed = trio.Event()
        self._connections: set[_Connection] = set()

    # -------------------------------------------------------------- status

    @property
    def url(self) -> str:
        """``redis://host:port`` of the proxy (use ``rediss`` yourself for TLS upstreams)."""
        return f"redis://{self.host}:{self.port}"

    @property
    def mode(self) -> ProxyMode:
        """The current fault mode."""
        return self._mode

    @property
    def latency(self) -> float:
        """The delay added to each forwarded chunk, in seconds."""
        return self._latency

    @property
    def live_connections(self) -> int:
        """Client connections currently open (forwarding, stalled or hung)."""
        return len(self._connections)

    @property
    def hung_connections(self) -> int:
        """Open client connections accepted while not forwarding (never connected)."""
        return sum(1 for c in self._connections if c.hung)

    def __repr__(self) -> str:
        return (
            f"<FaultProxy {self.url} -> {self.target_host}:{self.target_port} "
            f"{self._mode.value} live={self.live_connections}>"
        )

    # ------------------------------------------------------------ controls

    def _set_mode(self, mode: ProxyMode) -> None:
        self._mode = mode
        old, self._changed = self._changed, trio.Event()
        old.set()

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk read from now on by ``seconds`` (0 disables).

        Args:
            seconds: The delay, not negative.
        """
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._latency = seconds

    def blackhole(self) -> None:
        """Forward nothing in either direction; keep connections open; new ones hang."""
        self._set_mode(ProxyMode.BLACKHOLE)

    def partition(self) -> None:
        """Reset every open connection (RST both sides, buffers dropped); new ones hang."""
        self._set_mode(ProxyMode.PARTITION)
        for conn in list(self._connections):
            conn.abort()

    def heal(self) -> None:
        """Forward normally again; stalled connections resume, hung ones are reset."""
        self._set_mode(ProxyMode.NORMAL)
        for conn in list(self._connections):
            if conn.hung:
                conn.abort()

    def reset_all(self) -> None:
        """Abort every open connection with an RST, without changing the mode."""
        for conn in list(self._connections):
            conn.abort()

    # ------------------------------------------------------------ plumbing

    async def _forwarding(self) -> None:
        while self._mode is not ProxyMode.NORMAL:
            await self._changed.wait()

    async def _serve(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError:  # e.g. EMFILE: try again shortly
                    await trio.sleep(0.01)
                    continue
                self.accepted_total += 1
                nursery.start_soon(self._handle, stream)

    async def _handle(self, client: trio.SocketStream) -> None:
        conn = _Connection(client)
        self._connections.add(conn)
        try:
            with conn.scope:
                if self._mode is not ProxyMode.NORMAL:
                    conn.hung = True
                    await trio.sleep_forever()
                try:
                    with trio.fail_after(CONNECT_TIMEOUT):
                        conn.upstream = await trio.open_tcp_stream(
                            self.target_host, self.target_port
                        )
                except (OSError, trio.TooSlowError):
                    conn.abort()  # the client sees a reset, as if refused
                    return
                if self.mode is ProxyMode.PARTITION:  # may have changed meanwhile
                    conn.abort()
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, conn, client, conn.upstream)
                    nursery.start_soon(self._pipe, conn, conn.upstream, client)
                conn.close()  # both directions ended with EOF
        finally:
            conn.abort()
            self._connections.discard(conn)

    async def _pipe(
        self, conn: _Connection, src: trio.SocketStream, dst: trio.SocketStream
    ) -> None:
        send_ch, recv_ch = trio.open_memory_channel[tuple[float, bytes]](BUFFER_CHUNKS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader, conn, src, send_ch)
            nursery.start_soon(self._writer, conn, dst, recv_ch)

    async def _reader(
        self,
        conn: _Connection,
        src: trio.SocketStream,
        send_ch: trio.MemorySendChannel[tuple[float, bytes]],
    ) -> None:
        async with send_ch:
            while True:
                try:
                    data = await src.receive_some(CHUNK_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    # Pass a reset on as a reset, but not through a blackhole.
                    await self._forwarding()
                    conn.abort()
                    return
                if src is conn.client:
                    self.bytes_from_clients += len(data)
                else:
                    self.bytes_from_servers += len(data)
                await send_ch.send((trio.current_time() + self._latency, data))
                if not data:
                    return

    async def _writer(
        self,
        conn: _Connection,
        dst: trio.SocketStream,
        recv_ch: trio.MemoryReceiveChannel[tuple[float, bytes]],
    ) -> None:
        async with recv_ch:
            async for due, data in recv_ch:
                await self._forwarding()
                await trio.sleep_until(due)
                await self._forwarding()
                try:
                    if not data:
                        await dst.send_eof()
                        return
                    await dst.send_all(data)
                    if dst is conn.client:
                        self.bytes_to_clients += len(data)
                    else:
                        self.bytes_to_servers += len(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    conn.abort()
                    return

    def _abort_everything(self) -> None:
        for conn in list(self._connections):
            conn.abort()


@asynccontextmanager
async def open_fault_proxy(
    target_host: str, target_port: int, *, host: str = "127.0.0.1"
) -> AsyncIterator[FaultProxy]:
    """Run a fault-injecting proxy to ``target_host:target_port`` for the block.

    The proxy owns its nursery; on exit every connection is reset and the
    listener closed.

    Args:
        target_host: Upstream address.
        target_port: Upstream port.
        host: Loopback address to listen on.

    Yields:
        The running :class:`FaultProxy` (``proxy.port``, ``proxy.url``).
    """
    listeners = await trio.open_tcp_listeners(0, host=host)
    listener = listeners[0]
    for extra in listeners[1:]:
        await extra.aclose()
    port: int = listener.socket.getsockname()[1]
    proxy = FaultProxy(target_host, target_port, host, port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(proxy._serve, listener, nursery)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
            proxy._abort_everything()
