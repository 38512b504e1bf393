"""The pool's public face: :class:`Pool` and :func:`open_pool`.

The path of one command (see ``docs/design.md``):

1. :meth:`Pool.execute` checks the command (``_guard.py``) and encodes it once;
2. :meth:`Pool._fanout` queues the bytes on every chosen server's connection
   synchronously (:meth:`Connection.submit <trio_redisha.connection.Connection.submit>`);
   a server that is skipped (down, connecting, circuit open) gets its
   :class:`ServerUnavailable` entry at once and costs nothing;
3. the caller parks once on one :class:`~trio_redisha.connection.Waiter`; each
   connection's reader fills its slot, and one timer task per pool
   (``_deadlines.py``) wakes the caller at the deadline if replies are missing;
4. each slot becomes the server's entry in :class:`Replies`, and each server's
   bookkeeping (``_server.py``) records the reply or the timeout; a timeout
   may open the server's circuit and start a probe (``_upkeep.py``).

The design card's shape is "a nursery per command with a task per server, each
in ``move_on_after``". All servers of one command share one start time and one
deadline, so one wait with one deadline gives exactly the same per-server
deadlines without spawning a task per server or entering a cancel scope per
call (docs/design.md has the measurements). Work that must outlive a call (the
rest of a hedged read, read repair) runs in the pool's own nursery, so nothing
outlives the pool.
"""

from __future__ import annotations

import contextvars
import logging
import math
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import trio

from .._deadlines import GRANULARITY, Deadlines
from .._util import open_owned_nursery
from ..config import ServerSpec, parse_server
from ..connection import (
    DEFAULT_MAX_PENDING,
    DEFAULT_STALL_TIMEOUT,
    DONE,
    FAILED,
    Slot,
    Waiter,
)
from ..exceptions import (
    ConfigurationError,
    PoolClosed,
    QuorumError,
    ReplyError,
    ServerTimeout,
    ServerUnavailable,
)
from ..hlc import HybridLogicalClock
from ..replies import Replies
from ..resp import DEFAULT_LIMITS, Limits, encode_command
from ..scripts import Script
from ._guard import check_command
from ._server import Server, ServerState, ServerStatus
from ._stats import PoolStats
from ._upkeep import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TRIP_AFTER,
    Connector,
    Upkeep,
)

if TYPE_CHECKING:
    from ..otel import PoolMetrics

__all__ = ["Pool", "open_pool"]

logger = logging.getLogger("trio_redisha.pool")

#: True in tasks started by Pool._start_background: their calls may still run
#: while aclose() waits for them.
_IN_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "trio_redisha_in_background", default=False
)

#: Default per-command deadline; the seed gem's read_timeout.
DEFAULT_TIMEOUT: Final = 0.5
#: Read repairs allowed per second per pool (Roshi's default rate).
DEFAULT_REPAIR_RATE: Final = 1000.0
#: How long leaving the pool waits for background work (repairs) already started.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0


def _decode(value: Any) -> Any:
    """Bulk strings to ``str``, inside every container a reply can hold."""
    kind = type(value)
    if kind is bytes:
        return value.decode("utf-8", "replace")
    if kind is list:
        return [_decode(v) for v in value]
    if kind is dict:
        return {_decode(k): _decode(v) for k, v in value.items()}
    if kind is set:  # RESP3 set replies, and map keys that were aggregates
        return {_decode(v) for v in value}
    if kind is tuple:
        return tuple(_decode(v) for v in value)
    return value


def _positive(name: str, value: object) -> float:
    """``value`` as a float, if it is a finite number above zero."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _count(name: str, value: object, most: int) -> int:
    """``value`` if it is an int in ``1..most``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ConfigurationError(f"{name} must be an int in 1..{most}, got {value!r}")
    return value


class Pool:
    """Runs every command on several Redis servers at once.

    Most code opens one with :func:`open_pool`. Code that owns a nursery can
    create one and start it there instead (the second tier)::

        pool = Pool("redis://a:6379", "redis://b:6379")
        await nursery.start(pool.run)
        ...
        await pool.aclose()

    Args:
        *servers: URLs (``redis://``, ``rediss://``, ``unix://``) or ``(host, port)``.
            Each server may be given once.
        timeout: Default per-command deadline, in seconds (at most ``stall_timeout``).
        write_quorum: Acknowledgements a CRDT write needs by default.
        connect_timeout: Seconds allowed for a connect and its handshake.
        backoff_base: First reconnect delay bound, in seconds.
        backoff_cap: Largest reconnect delay bound, in seconds.
        trip_after: Consecutive timeouts that open a server's circuit.
        probe_interval: Seconds between PING probes of a server whose circuit is
            open (defaults to ``max(timeout, 0.1)``).
        stall_timeout: A connection whose oldest outstanding reply is older than
            this is closed and rebuilt; no call may wait longer than this.
        max_pending: Outstanding replies allowed per connection; beyond it the
            server counts as unavailable for further commands.
        decode_responses: Decode bulk strings to ``str`` (UTF-8).
        repair_rate: Read repairs allowed per second (token bucket).
        close_timeout: How long leaving the pool waits for started repairs.
        password: Password for servers whose URL sets none.
        username: ACL user name for servers whose URL sets none.
        protocol: RESP version (2 or 3) for servers whose URL sets none.
        client_name: Name sent with ``CLIENT SETNAME`` by servers whose URL sets none.
        ssl_context: TLS context for ``rediss://`` URLs that carry no ``ssl_*`` option.
        limits: Parser safety limits.
        use_hiredis: Parser choice; ``None`` uses the fastest one installed.
        connector: How to open a connection to one server (an async function of
            a :class:`ServerSpec` returning a handshaken
            :class:`~trio_redisha.Connection`, e.g. over
            :func:`~trio_redisha.connection.connect_stream`); ``None`` connects
            over the network. For tests and custom transports, as httpcore's
            ``network_backend``.
        meter_provider: An OpenTelemetry ``MeterProvider``: report the metrics of
            :mod:`trio_redisha.otel` through it (needs the ``otel`` extra).
            ``None`` (the default) records nothing.

    Attributes:
        stats: Running totals (:class:`~trio_redisha.pool.PoolStats`).
    """

    def __init__(
        self,
        *servers: str | tuple[str, int] | ServerSpec,
        timeout: float = DEFAULT_TIMEOUT,
        write_quorum: int = 1,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        trip_after: int = DEFAULT_TRIP_AFTER,
        probe_interval: float | None = None,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        max_pending: int = DEFAULT_MAX_PENDING,
        decode_responses: bool = False,
        repair_rate: float = DEFAULT_REPAIR_RATE,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        password: str | None = None,
        username: str | None = None,
        protocol: int | None = None,
        client_name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits = DEFAULT_LIMITS,
        use_hiredis: bool | None = None,
        connector: Connector | None = None,
        meter_provider: Any = None,
    ) -> None:
        if not servers:
            raise ConfigurationError("a pool needs at least one server")
        stall_timeout = _positive("stall_timeout", stall_timeout)
        timeout = _positive("timeout", timeout)
        if timeout > stall_timeout:
            raise ConfigurationError(
                f"timeout ({timeout!r} s) must not exceed stall_timeout ({stall_timeout!r} s):"
                " a connection silent that long is rebuilt; raise stall_timeout too"
            )
        connect_timeout = _positive("connect_timeout", connect_timeout)
        backoff_base = _positive("backoff_base", backoff_base)
        backoff_cap = _positive("backoff_cap", backoff_cap)
        repair_rate = _positive("repair_rate", repair_rate)
        close_timeout = _positive("close_timeout", close_timeout)
        if probe_interval is not None:
            probe_interval = _positive("probe_interval", probe_interval)
        if not isinstance(trip_after, int) or isinstance(trip_after, bool) or trip_after < 1:
            raise ConfigurationError(f"trip_after must be an int >= 1, got {trip_after!r}")
        _count("write_quorum", write_quorum, len(servers))
        specs = [
            parse_server(
                s,
                ssl_context=ssl_context,
                password=password,
                username=username,
                protocol=protocol,
                client_name=client_name,
            )
            for s in servers
        ]
        _check_distinct(specs)
        self._servers = [Server(i, spec) for i, spec in enumerate(specs)]
        self._labels = tuple(s.label for s in self._servers)
        self._all = tuple(range(len(specs)))
        self.timeout = timeout
        self.write_quorum = write_quorum
        self._stall_timeout = stall_timeout
        self.clock = HybridLogicalClock()
        #: This pool's CRDT actor id: random, so two pools never share totals.
        self.actor_id = secrets.token_hex(8)
        self._upkeep = Upkeep(
            connect_timeout=connect_timeout,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            trip_after=trip_after,
            probe_interval=probe_interval or max(timeout, 0.1),
            connector=connector,
            limits=limits,
            use_hiredis=use_hiredis,
            max_pending=max_pending,
            stall_timeout=stall_timeout,
            on_change=self._notify_settled,
            on_stop=self._mark_closed,
        )
        self._decode = decode_responses
        self._close_timeout = close_timeout
        self._repair_rate = repair_rate
        self._repair_tokens = repair_rate
        self._repair_stamp = 0.0
        self._nursery: trio.Nursery | None = None
        self._run_scope: trio.CancelScope | None = None
        self._closing = False
        self._closed = False
        #: Until then, calls wait (within their deadline) for servers whose first
        #: connection attempt is still under way; set when the pool starts.
        self._first_connect_until = 0.0
        self._settled_any = trio.Event()  # set (and replaced) when a server connects or fails
        self._background = 0
        self._background_idle = trio.Event()
        self._background_idle.set()
        self._stopped = trio.Event()
        self._deadlines = Deadlines(granularity=min(GRANULARITY, timeout / 50))
        self.stats = PoolStats()
        self._metrics: PoolMetrics | None = None
        if meter_provider is not None:
            from ..otel import PoolMetrics

            self._metrics = PoolMetrics(self, meter_provider)

    # -- introspection

    def __len__(self) -> int:
        return len(self._servers)

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers' URLs without credentials, in order."""
        return self._labels

    def status(self) -> list[ServerStatus]:
        """Return a health snapshot of every server, in order."""
        return [s.status() for s in self._servers]

    @property
    def available(self) -> int:
        """How many servers commands are currently sent to."""
        return sum(1 for s in self._servers if s.usable() is not None)

    def __repr__(self) -> str:
        if self._closed:
            return f"<Pool closed, {len(self._servers)} servers>"
        parts = []
        for st in self.status():
            text = f"{st.label} {st.state.value}"
            if st.latency_p50 is not None and st.state is ServerState.UP:
                text += f" p50={st.latency_p50 * 1000:.2f}ms"
            if st.state is not ServerState.UP and st.last_error:
                text += f" ({st.last_error})"
            parts.append(text)
        return f"<Pool {self.available}/{len(self._servers)} up: {', '.join(parts)}>"

    # -- running

    async def run(self, *, task_status: trio.TaskStatus[Pool] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the connections alive until :meth:`aclose` or cancellation.

        Start it with ``await nursery.start(pool.run)``; it reports the pool as
        started at once, without waiting for any server ("connect does not
        block"). Calls made during the first ``timeout`` seconds wait, within
        their own deadline, for a first connection attempt still under way;
        after that a server not connected yet counts as unavailable at once, so
        a server that hangs on connect costs at most one deadline.
        """
        if self._nursery is not None or self._closed:
            raise RuntimeError("a Pool can be run only once")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._run_scope = nursery.cancel_scope
                self._first_connect_until = trio.current_time() + self.timeout
                if self._closing:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._deadlines.run, name="redisha-deadlines")
                for server in self._servers:
                    nursery.start_soon(
                        self._upkeep.keep, server, name=f"redisha-upkeep {server.label}"
                    )
                task_status.started(self)
        finally:
            self._shutdown()

    def _mark_closed(self) -> None:
        self._closing = self._closed = True

    def _close_connections(self) -> None:
        """Mark the pool closed and close every connection, synchronously.

        Calls waiting for replies or for a first connection are woken and raise
        :class:`PoolClosed`.
        """
        self._mark_closed()
        self._notify_settled()
        for server in self._servers:
            conn = server.closed()
            if conn is not None:
                conn.close_now()

    def _shutdown(self) -> None:
        self._close_connections()
        self._stopped.set()

    async def aclose(self) -> None:
        """Close the pool: wait (bounded) for started repairs, then stop everything.

        Calls still waiting get :class:`PoolClosed`. No task or socket outlives
        this call.
        """
        if self._closed and self._nursery is None:
            return
        self._closing = True
        if self._background:
            with trio.move_on_after(self._close_timeout):
                await self._background_idle.wait()
        if self._run_scope is not None:
            # Close the connections before cancelling their tasks, so that calls in
            # flight see a closed pool and every slot fails with PoolClosed.
            self._close_connections()
            self._run_scope.cancel()
            with trio.CancelScope(shield=True):
                await self._stopped.wait()
        else:
            self._shutdown()

    # -- background work

    def _start_background(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``async_fn(*args)`` in the pool's nursery; return False if closing.

        Leaving the pool waits (up to ``close_timeout``) for work started here.
        Exceptions are logged, never propagated into the pool.
        """
        if self._closing or self._nursery is None:
            return False
        self._background += 1
        if self._background_idle.is_set():
            self._background_idle = trio.Event()
        self._nursery.start_soon(self._background_task, async_fn, args)
        return True

    async def _background_task(self, async_fn: Callable[..., Awaitable[Any]], args: Any) -> None:
        _IN_BACKGROUND.set(True)  # this task's context only: see _fanout
        try:
            await async_fn(*args)
        except Exception:
            logger.exception("background task %r failed", getattr(async_fn, "__name__", async_fn))
        finally:
            self._background -= 1
            if not self._background:
                self._background_idle.set()

    def repair_allowed(self) -> bool:
        """Take one token of the read-repair rate limit; False when exhausted."""
        now = trio.current_time()
        self._repair_tokens = min(
            self._repair_rate, self._repair_tokens + (now - self._repair_stamp) * self._repair_rate
        )
        self._repair_stamp = now
        if self._repair_tokens >= 1:
            self._repair_tokens -= 1
            return True
        return False

    # -- commands

    def targets(self, args: Sequence[Any]) -> tuple[int, ...]:
        """The servers a command goes to: the one place that chooses them.

        Every server, today. A consistent-hash ring placing each key on N of M
        servers would override this.
        """
        return self._all

    async def execute(
        self,
        *args: Any,
        timeout: float | None = None,
        quorum: int | None = None,
        wait_for: int | None = None,
        decode: bool | None = None,
    ) -> Replies:
        """Run one command on every server at once.

        Args:
            *args: The command and its arguments (str, bytes, int, float).
            timeout: Deadline in seconds for this call (default: the pool's; at
                most the pool's ``stall_timeout``).
            quorum: Raise :class:`QuorumError` if fewer servers succeed (1 up to
                the number of servers).
            wait_for: Hedged read: return as soon as this many servers (and at
                least ``quorum``) replied successfully; the other replies still
                arrive in the background and feed the health figures. Their
                entries are :class:`ServerTimeout` instances saying they were
                not awaited.
            decode: Decode bulk strings to ``str`` for this call (``None``: the
                pool's ``decode_responses``; ``False`` for binary values).

        Returns:
            One entry per server, in order: its reply, or an exception instance.

        Raises:
            QuorumError: ``quorum`` was given and not met.
            ConfigurationError: ``timeout``, ``quorum`` or ``wait_for`` is out of range.
            CommandEncodeError: An argument cannot be sent.
            UnsupportedCommand: The command blocks or changes connection state.
            PoolClosed: The pool is closed.
        """
        check_command(args)
        return await self._fanout(
            encode_command(args), self.targets(args), timeout, quorum, wait_for, decode, args[0]
        )

    async def execute_on(
        self, servers: Sequence[int], *args: Any, timeout: float | None = None
    ) -> Replies:
        """Run one command on the listed servers only (by index, in that order)."""
        check_command(args)
        return await self._fanout(
            encode_command(args), self._check_indices(servers), timeout, None, None, None, args[0]
        )

    def _check_indices(self, servers: Iterable[int]) -> tuple[int, ...]:
        out = tuple(servers)
        for i in out:
            if not isinstance(i, int) or not 0 <= i < len(self._servers):
                raise ConfigurationError(f"no server with index {i!r}")
        return out

    async def execute_script(
        self,
        script: Script,
        keys: Sequence[Any] = (),
        args: Sequence[Any] = (),
        *,
        timeout: float | None = None,
        quorum: int | None = None,
        servers: Sequence[int] | None = None,
    ) -> Replies:
        """Run a Lua script with EVALSHA, falling back to EVAL where it is missing.

        One round trip where the script is cached; servers answering
        ``NOSCRIPT`` get ``EVAL`` with the source, which caches it there.
        """
        targets = self._all if servers is None else self._check_indices(servers)
        if quorum is not None:
            _count("quorum", quorum, len(targets))
        head: list[Any] = ["EVALSHA", script.sha, len(keys), *keys, *args]
        replies = await self._fanout(
            encode_command(head), targets, timeout, None, None, None, "EVALSHA"
        )
        missing = [
            pos
            for pos, r in enumerate(replies)
            if isinstance(r, ReplyError) and r.code == "NOSCRIPT"
        ]
        if missing:
            head[0:2] = ["EVAL", script.source]
            again = await self._fanout(
                encode_command(head), tuple(targets[p] for p in missing), timeout, None, None,
                None, "EVAL",
            )  # fmt: skip
            for pos, r in zip(missing, again, strict=True):
                replies[pos] = r
        return self._check_quorum(replies, quorum)

    def _check_quorum(self, replies: Replies, quorum: int | None) -> Replies:
        """``replies.check_quorum(quorum)``, counting failures in :attr:`stats`."""
        if quorum is None:
            return replies
        try:
            return replies.check_quorum(quorum)
        except QuorumError:
            self.stats.quorum_failures += 1
            raise

    def _call_timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        timeout = _positive("timeout", timeout)
        if timeout > self._stall_timeout:
            raise ConfigurationError(
                f"timeout ({timeout!r} s) must not exceed the pool's stall_timeout"
                f" ({self._stall_timeout!r} s)"
            )
        return timeout

    async def _fanout(
        self,
        data: bytes,
        targets: tuple[int, ...],
        timeout: float | None,
        quorum: int | None,
        wait_for: int | None,
        decode: bool | None = None,
        op: Any = None,
    ) -> Replies:
        n = len(targets)
        if timeout is not None:
            timeout = self._call_timeout(timeout)
        need = n
        if wait_for is not None:
            need = _count("wait_for", wait_for, n)
            if quorum is not None:
                need = max(need, _count("quorum", quorum, n))
        elif quorum is not None:
            _count("quorum", quorum, n)
        # Trio's rule: a call that raises Cancelled did nothing. Nothing is sent
        # from an already-cancelled scope; once sent, cancellation only stops the wait.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closing and not _IN_BACKGROUND.get():
            # Background work started before the close (read repair) may finish
            # its calls while aclose() waits for it; nothing else may start.
            raise PoolClosed("the pool is closed")
        servers = self._servers
        now = trio.current_time()
        deadline = now + (self.timeout if timeout is None else timeout)
        waiter = Waiter(need)
        slots: list[Slot | ServerUnavailable | None] = []
        connecting = False
        early = now < self._first_connect_until
        for idx in targets:
            server = servers[idx]
            conn = server.usable()
            if conn is not None:
                slots.append(conn.submit(data, waiter, idx, now))
            elif early and server.state is ServerState.CONNECTING:
                # Entering the pool does not wait for connections; calls in its
                # first `timeout` seconds wait for a first attempt still under way,
                # within their deadline, while the connected servers already work.
                slots.append(None)
                connecting = True
            else:
                slots.append(server.unavailable_error())
        if connecting:
            await self._submit_when_connected(data, targets, slots, waiter, deadline)
        if not waiter.satisfied:
            # One timer task expires waiters for the whole pool: cheaper than a
            # cancel scope per call (see _deadlines.py).
            self._deadlines.add(deadline, waiter)
            await waiter.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self._closed:
            raise PoolClosed("the pool was closed during the call")
        decoding = self._decode if decode is None else decode
        out: list[Any] = []
        received = 0
        for idx, entry in zip(targets, slots, strict=True):
            if type(entry) is not Slot:
                out.append(entry)
                continue
            state = entry.state
            if state is DONE:
                received += 1
                servers[idx].replied(entry)
                value = entry.value
                out.append(_decode(value) if decoding else value)
            elif state is FAILED:
                out.append(entry.value)
            else:
                entry.detach()
                out.append(self._missed(servers[idx], entry, deadline, wait_for, timeout))
        stats = self.stats
        stats.replies_expected += n
        stats.replies_received += received
        if self._metrics is not None:
            self._metrics.fanout(op, targets, slots, trio.current_time(), wait_for is not None)
        labels = self._labels if targets is self._all else tuple(self._labels[i] for i in targets)
        replies = Replies(out, labels)
        return self._check_quorum(replies, quorum) if quorum is not None else replies

    def _missed(
        self,
        server: Server,
        slot: Slot,
        deadline: float,
        wait_for: int | None,
        timeout: float | None,
    ) -> ServerTimeout:
        """The entry of a server whose reply had not arrived when the call returned."""
        if wait_for is not None:
            self._watch_late(server, slot, deadline)
            return ServerTimeout(f"{server.label}: not awaited (hedged read)")
        self._upkeep.timed_out(server, None if self._closing else self._nursery)
        return ServerTimeout(
            f"{server.label} did not reply within {self.timeout if timeout is None else timeout} s"
        )

    def _notify_settled(self) -> None:
        self._settled_any.set()
        self._settled_any = trio.Event()

    async def _submit_when_connected(
        self,
        data: bytes,
        targets: tuple[int, ...],
        slots: list[Slot | ServerUnavailable | None],
        waiter: Waiter,
        deadline: float,
    ) -> None:
        """Send to servers still on their first connect as each one connects.

        Fills the ``None`` entries of ``slots``.
        """
        servers = self._servers
        limit = min(deadline, self._first_connect_until)
        waiting = [pos for pos, slot in enumerate(slots) if slot is None]
        while True:
            now = trio.current_time()
            still = []
            for pos in waiting:
                server = servers[targets[pos]]
                if server.state is ServerState.CONNECTING and now < limit:
                    still.append(pos)
                    continue
                conn = server.usable()
                if conn is None or now >= deadline:
                    slots[pos] = server.unavailable_error()
                else:
                    slots[pos] = conn.submit(data, waiter, targets[pos], now)
            waiting = still
            if not waiting:
                return
            with trio.move_on_at(limit):
                await self._settled_any.wait()
            if self._closing and not _IN_BACKGROUND.get():
                raise PoolClosed("the pool was closed during the call")

    def _watch_late(self, server: Server, slot: Slot, deadline: float) -> None:
        """After a hedged return, still judge the server by its late reply.

        The watcher is bookkeeping only: it runs in the pool's nursery but is not
        background work that closing waits for; closing cancels it.
        """
        if self._nursery is not None and not self._closing:
            self._nursery.start_soon(
                self._late_reply, server, slot, deadline, name=f"redisha-late {server.label}"
            )

    async def _late_reply(self, server: Server, slot: Slot, deadline: float) -> None:
        waiter = Waiter(1)
        slot.watch(waiter)
        try:
            with trio.move_on_at(deadline):
                await waiter.wait()
        finally:
            slot.detach()
        if slot.state is DONE:
            server.replied(slot)
        elif slot.state is not FAILED:
            self._upkeep.timed_out(server, None if self._closing else self._nursery)

    # -- thin helpers (the seed's examples)

    async def ping(self, *, timeout: float | None = None) -> Replies:
        """PING every server: ``["PONG", "PONG", "PONG"]`` when all are well."""
        return await self.execute("PING", timeout=timeout)

    async def get(self, key: str | bytes, *, timeout: float | None = None) -> Replies:
        """GET on every server."""
        return await self.execute("GET", key, timeout=timeout)

    async def set(
        self,
        key: str | bytes,
        value: Any,
        *,
        timeout: float | None = None,
        quorum: int | None = None,
    ) -> Replies:
        """SET on every server."""
        return await self.execute("SET", key, value, timeout=timeout, quorum=quorum)

    async def setnx(self, key: str | bytes, value: Any, *, timeout: float | None = None) -> Replies:
        """SETNX on every server: ``[1, 1, 1]`` where the key was new."""
        return await self.execute("SETNX", key, value, timeout=timeout)

    async def delete(self, *keys: str | bytes, timeout: float | None = None) -> Replies:
        """DEL on every server."""
        return await self.execute("DEL", *keys, timeout=timeout)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Replies]]:
        """Any other command as a method, as in the seed: ``await pool.hset(k, f, v)``."""
        if name.startswith("_") or not name.isidentifier():
            raise AttributeError(name)
        words = name.upper().split("_")

        async def command(
            *args: Any, timeout: float | None = None, quorum: int | None = None
        ) -> Replies:
            return await self.execute(*words, *args, timeout=timeout, quorum=quorum)

        command.__name__ = name
        return command


def _check_distinct(specs: Sequence[ServerSpec]) -> None:
    """Refuse a server given twice: it would count twice towards every quorum."""
    seen: dict[tuple[Any, ...], str] = {}
    for spec in specs:
        host = spec.host.lower().rstrip(".") if spec.host is not None else None
        place = (host, spec.port, spec.path, spec.db)
        if place in seen:
            raise ConfigurationError(
                f"server {spec.label} is given twice (as {seen[place]} too): each server"
                " may appear once, or it would count twice towards every quorum"
            )
        seen[place] = spec.label


@asynccontextmanager
async def open_pool(
    *servers: str | tuple[str, int] | ServerSpec,
    timeout: float = DEFAULT_TIMEOUT,
    **options: Any,
) -> AsyncIterator[Pool]:
    """Open a pool over several Redis servers; every command runs on all of them.

    Entering never waits for a server: one not connected yet counts as
    unavailable. Leaving waits (bounded) for started read repairs, then cancels
    everything the pool started and closes every socket.

    Example::

        async with open_pool("redis://127.0.0.1:6379", ("127.0.0.1", 6380)) as pool:
            print(await pool.ping())          # ['PONG', 'PONG']

    Args:
        *servers: URLs in redis-py's syntax or ``(host, port)`` tuples.
        timeout: Default per-command deadline, in seconds.
        **options: See :class:`Pool`.
    """
    pool = Pool(*servers, timeout=timeout, **options)
    async with open_owned_nursery() as nursery:
        await nursery.start(pool.run)
        try:
            yield pool
        finally:
            with trio.CancelScope(shield=True):
                await pool.aclose()
