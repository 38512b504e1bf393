"""The HA pool: every command on every server in parallel, never blocked by one.

Each server has one multiplexed :class:`~trio_redisha.connection.Connection`,
kept alive by an upkeep task in the pool's nursery (connect, handshake, run,
reconnect with exponential backoff and full jitter). A command is fanned out
by :meth:`Pool.execute`:

1. its bytes are encoded once and queued on every chosen server's connection
   synchronously (a server that is not connected, or whose circuit is open,
   gets :class:`ServerUnavailable` at once and costs nothing);
2. the caller parks once; each connection's reader delivers its reply
   straight into the caller's slot, and one timer task per pool wakes the
   caller at the deadline if replies are missing (``_deadlines.py``);
3. whatever arrived before the deadline becomes the :class:`Replies`; a server
   that missed the deadline gets :class:`ServerTimeout` and, after
   ``trip_after`` consecutive timeouts, an open circuit: later calls skip it at
   once until a background PING probe gets an answer.

The design card's shape is "a nursery per command with a task per server, each
in ``move_on_after``". All servers of one command share one start time and
one deadline, so one wait with one deadline gives exactly the same
per-server deadlines without spawning a task per server or entering a cancel
scope per call. Both cost more than the rest of a fan-out together: the
throwaway prototype in REFERENCES.md measured ~43,000 fan-out ops/s without a
task per server against ~8,000-9,400 with one, and replacing the per-call
cancel scope with the timer task took the one-server pool from ~1.45x to
~1.07x a bare connection's latency. Work that must outlive a call (the rest
of a hedged read, read repair) runs in the pool's own nursery, so nothing
outlives the pool.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import math
import random
import secrets
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import trio

from ._deadlines import GRANULARITY, Deadlines
from ._util import sole_exception
from .config import ServerSpec, parse_server
from .connection import (
    DEFAULT_MAX_PENDING,
    DEFAULT_STALL_TIMEOUT,
    Connection,
    Slot,
    Waiter,
    connect,
)
from .exceptions import (
    ConfigurationError,
    PoolClosed,
    RedisHAError,
    ReplyError,
    ServerTimeout,
    ServerUnavailable,
    UnsupportedCommand,
)
from .hlc import HybridLogicalClock
from .replies import Replies
from .resp import DEFAULT_LIMITS, Limits, encode_command
from .scripts import Script

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Pool", "ServerState", "ServerStatus", "open_pool"]

logger = logging.getLogger("trio_redisha.pool")

#: True in tasks started by Pool.start_background: their calls may still run
#: while aclose() waits for them.
_IN_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "trio_redisha_in_background", default=False
)

#: Default per-command deadline; the seed gem's read_timeout.
DEFAULT_TIMEOUT: Final = 0.5
#: Reconnect backoff: first retry after up to BASE, doubling to at most CAP
#: (full jitter, as in the AWS architecture blog's "Exponential Backoff and
#: Jitter"). A cap of 2 s keeps "a server that is back is used again within 5 s".
DEFAULT_BACKOFF_BASE: Final = 0.05
DEFAULT_BACKOFF_CAP: Final = 2.0
#: Seconds allowed to connect and run the handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 2.0
#: Consecutive timeouts after which a server's circuit opens ("a hung server
#: costs at most one deadline").
DEFAULT_TRIP_AFTER: Final = 1
#: Read repairs allowed per second per pool (Roshi's default rate).
DEFAULT_REPAIR_RATE: Final = 1000.0
#: How long leaving the pool waits for background work (repairs) already started.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
#: Latency samples kept per server for the p50/p99 figures.
LATENCY_SAMPLES: Final = 1024

# Commands that block, or change the state of the connection they run on: on a
# connection shared by every caller they would corrupt it for everyone.
_STATEFUL: Final = frozenset(
    {
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
        "BZMPOP", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "MULTI", "EXEC",
        "DISCARD", "WATCH", "UNWATCH", "SELECT", "QUIT", "RESET", "HELLO", "AUTH",
        "WAIT", "WAITAOF", "SWAPDB", "REPLICAOF", "SLAVEOF",
    }
)  # fmt: skip
_STATEFUL_CLIENT: Final = frozenset({"REPLY", "TRACKING", "SETNAME", "KILL", "PAUSE"})


class ServerState(str, enum.Enum):
    """Where a server stands, as seen by the pool."""

    CONNECTING = "connecting"  #: never connected yet
    UP = "up"  #: connected and answering
    SUSPECT = "suspect"  #: connected but timed out: circuit open, being probed
    DOWN = "down"  #: not connected; reconnecting with backoff
    CLOSED = "closed"  #: the pool is closed


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """A snapshot of one server's health.

    Attributes:
        label: The server's URL without credentials.
        state: See :class:`ServerState`.
        last_error: The last failure, as text (never containing a password).
        latency_p50: Median reply latency over recent commands, in seconds.
        latency_p99: 99th percentile of the same.
        consecutive_timeouts: Timeouts since the last successful reply.
        pending: Replies outstanding on its connection.
        replies: Replies received since the pool opened.
    """

    label: str
    state: ServerState
    last_error: str | None
    latency_p50: float | None
    latency_p99: float | None
    consecutive_timeouts: int
    pending: int
    replies: int

    @property
    def available(self) -> bool:
        """Whether commands are sent to this server right now."""
        return self.state is ServerState.UP


def _quantile(samples: Sequence[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class _Server:
    """The pool's bookkeeping for one server. Plain synchronous state changes."""

    __slots__ = (
        "circuit_open",
        "conn",
        "consecutive_timeouts",
        "index",
        "label",
        "last_error",
        "latencies",
        "probing",
        "replies",
        "spec",
        "state",
    )

    def __init__(self, index: int, spec: ServerSpec) -> None:
        self.index = index
        self.spec = spec
        self.label = spec.label
        self.conn: Connection | None = None
        self.state = ServerState.CONNECTING
        self.circuit_open = False
        self.probing = False
        self.consecutive_timeouts = 0
        self.last_error: str | None = None
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.replies = 0

    def usable(self) -> Connection | None:
        if self.circuit_open:
            return None
        return self.conn

    def unavailable_error(self) -> ServerUnavailable:
        if self.circuit_open:
            return ServerUnavailable(
                f"{self.label}: circuit open after a timeout; skipped until a probe succeeds"
            )
        if self.state is ServerState.CONNECTING:
            return ServerUnavailable(f"{self.label}: not connected yet")
        return ServerUnavailable(f"{self.label} is down: {self.last_error or 'not connected'}")

    def connected(self, conn: Connection) -> bool:
        """Record a new connection; return whether this is a recovery."""
        recovered = self.state in (ServerState.DOWN, ServerState.SUSPECT)
        self.conn = conn
        self.state = ServerState.UP
        self.circuit_open = False
        self.consecutive_timeouts = 0
        return recovered

    def disconnected(self, error: BaseException | str) -> bool:
        """Record a lost connection or failed attempt; return whether it was news."""
        self.conn = None
        self.last_error = str(error)
        news = self.state in (ServerState.UP, ServerState.SUSPECT, ServerState.CONNECTING)
        self.state = ServerState.DOWN
        self.circuit_open = False
        return news

    def timed_out(self, trip_after: int) -> bool:
        """Record a timeout; return whether the circuit just opened."""
        self.consecutive_timeouts += 1
        self.last_error = "timed out"
        if not self.circuit_open and self.consecutive_timeouts >= trip_after and self.conn:
            self.circuit_open = True
            self.state = ServerState.SUSPECT
            return True
        return False

    def probe_succeeded(self) -> bool:
        """Close the circuit after a successful probe; return whether it was open."""
        self.consecutive_timeouts = 0
        if self.circuit_open:
            self.circuit_open = False
            self.state = ServerState.UP
            return True
        return False

    def status(self) -> ServerStatus:
        lat = list(self.latencies)
        conn = self.conn
        return ServerStatus(
            label=self.label,
            state=self.state,
            last_error=self.last_error,
            latency_p50=_quantile(lat, 0.50),
            latency_p99=_quantile(lat, 0.99),
            consecutive_timeouts=self.consecutive_timeouts,
            pending=conn.pending if conn is not None else 0,
            replies=self.replies,
        )


def _check_command(args: Sequence[Any]) -> None:
    if not args:
        raise UnsupportedCommand("empty command")
    name = args[0]
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        return  # encode_command reports the bad type
    upper = name.upper()
    if upper in _STATEFUL or (
        upper == "CLIENT"
        and len(args) > 1
        and str(args[1] if not isinstance(args[1], bytes) else args[1].decode()).upper()
        in _STATEFUL_CLIENT
    ):
        raise UnsupportedCommand(
            f"{upper} blocks or changes connection state; it cannot run on the pool's "
            "shared connections (open a dedicated connection with open_connection())"
        )
    if upper in ("XREAD", "XREADGROUP") and any(
        isinstance(a, (str, bytes)) and (a.upper() in ("BLOCK", b"BLOCK")) for a in args[1:]
    ):
        raise UnsupportedCommand(f"{upper} with BLOCK blocks the shared connection")


def _decode(value: Any) -> Any:
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    if type(value) is list:
        return [_decode(v) for v in value]
    if type(value) is dict:
        return {_decode(k): _decode(v) for k, v in value.items()}
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
        timeout: Default per-command deadline, in seconds.
        write_quorum: Acknowledgements a CRDT write needs by default.
        connect_timeout: Seconds allowed for a connect and its handshake.
        backoff_base: First reconnect delay bound, in seconds.
        backoff_cap: Largest reconnect delay bound, in seconds.
        trip_after: Consecutive timeouts that open a server's circuit.
        probe_interval: Seconds between PING probes of a server whose circuit is
            open (defaults to ``max(timeout, 0.1)``).
        stall_timeout: A connection whose oldest outstanding reply is older than
            this is closed and rebuilt.
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
        use_hiredis: Deprecated and ignored (see :func:`~trio_redisha.resp.make_parser`).
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
    ) -> None:
        if not servers:
            raise ConfigurationError("a pool needs at least one server")
        _positive("timeout", timeout)
        _positive("connect_timeout", connect_timeout)
        _positive("backoff_base", backoff_base)
        _positive("backoff_cap", backoff_cap)
        _positive("stall_timeout", stall_timeout)
        _positive("repair_rate", repair_rate)
        if not isinstance(trip_after, int) or trip_after < 1:
            raise ConfigurationError(f"trip_after must be an int >= 1, got {trip_after!r}")
        if not isinstance(write_quorum, int) or not 1 <= write_quorum <= len(servers):
            raise ConfigurationError(
                f"write_quorum must be in 1..{len(servers)}, got {write_quorum!r}"
            )
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
        self._servers = [_Server(i, spec) for i, spec in enumerate(specs)]
        self._labels = tuple(s.label for s in self._servers)
        self._all = tuple(range(len(specs)))
        self.timeout = float(timeout)
        self.write_quorum = write_quorum
        self.clock = HybridLogicalClock()
        #: This pool's CRDT actor id: random, so two pools never share totals.
        self.actor_id = secrets.token_hex(8)
        self._connect_timeout = connect_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._trip_after = trip_after
        self._probe_interval = probe_interval if probe_interval else max(timeout, 0.1)
        self._stall_timeout = stall_timeout
        self._max_pending = max_pending
        self._decode = decode_responses
        self._limits = limits
        self._use_hiredis = use_hiredis
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
                    nursery.start_soon(self._upkeep, server, name=f"redisha-upkeep {server.label}")
                task_status.started(self)
        finally:
            self._shutdown()

    def _close_connections(self) -> None:
        """Mark the pool closed and close every connection, synchronously.

        Calls waiting for replies or for a first connection are woken and raise
        :class:`PoolClosed`.
        """
        self._closing = True
        self._closed = True
        self._notify_settled()
        for server in self._servers:
            server.state = ServerState.CLOSED
            conn = server.conn
            server.conn = None
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

    # -- connection upkeep

    def _backoff(self, attempt: int) -> float:
        bound = min(self._backoff_cap, self._backoff_base * (2 ** min(attempt, 30)))
        return random.uniform(0, bound)

    async def _upkeep(self, server: _Server) -> None:
        attempt = 0
        while True:
            try:
                with trio.fail_after(self._connect_timeout):
                    conn = await connect(
                        server.spec,
                        limits=self._limits,
                        use_hiredis=self._use_hiredis,
                        max_pending=self._max_pending,
                        stall_timeout=self._stall_timeout,
                    )
            except (RedisHAError, trio.TooSlowError, OSError) as exc:
                text = "connect timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
                self._notify_settled()
                if server.disconnected(text):
                    logger.warning("redis server %s is down: %s", server.label, text)
                await trio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            recovered = server.connected(conn)
            self._notify_settled()
            if recovered:
                logger.warning("redis server %s is back up", server.label)
            else:
                logger.info("connected to redis server %s", server.label)
            error: BaseException | str = "connection closed"
            try:
                await conn.run()
            except RedisHAError as exc:
                error = exc
            except BaseException:
                # Only the pool's shutdown cancels this task (the nursery running
                # the pool was cancelled). Calls that the connection's teardown
                # just woke must see a closed pool.
                self._closing = self._closed = True
                raise
            finally:
                conn.close_now()
                server.conn = None
            if server.disconnected(error):
                logger.warning("redis server %s is down: %s", server.label, error)

    def _trip(self, server: _Server) -> None:
        if server.timed_out(self._trip_after):
            logger.warning(
                "redis server %s timed out; skipping it until it answers a probe",
                server.label,
            )
            if not server.probing and self._nursery is not None and not self._closing:
                server.probing = True
                self._nursery.start_soon(self._probe, server, name=f"redisha-probe {server.label}")

    async def _probe(self, server: _Server) -> None:
        """PING a suspect server until it answers, then close its circuit."""
        try:
            attempt = 0
            while server.circuit_open:
                conn = server.conn
                if conn is None:
                    return  # upkeep reconnects; a new connection starts healthy
                try:
                    await conn.execute("PING", timeout=self._probe_interval)
                except ServerTimeout:
                    await trio.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                except RedisHAError:
                    return
                if server.probe_succeeded():
                    logger.warning("redis server %s answers again", server.label)
        finally:
            server.probing = False

    # -- background work

    def start_background(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
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
            timeout: Deadline in seconds for this call (default: the pool's).
            quorum: Raise :class:`QuorumError` if fewer servers succeed.
            wait_for: Hedged read: return as soon as this many servers replied
                successfully; the other replies still arrive in the background
                and feed the health figures. Their entries are
                :class:`ServerTimeout` instances saying they were not awaited.
            decode: Decode bulk strings to ``str`` for this call (``None``: the
                pool's ``decode_responses``; ``False`` for binary values).

        Returns:
            One entry per server, in order: its reply, or an exception instance.

        Raises:
            QuorumError: ``quorum`` was given and not met.
            CommandEncodeError: An argument cannot be sent.
            UnsupportedCommand: The command blocks or changes connection state.
            PoolClosed: The pool is closed.
        """
        _check_command(args)
        return await self._fanout(
            encode_command(args), self.targets(args), timeout, quorum, wait_for, decode
        )

    async def execute_on(
        self, servers: Sequence[int], *args: Any, timeout: float | None = None
    ) -> Replies:
        """Run one command on the listed servers only (by index, in that order)."""
        _check_command(args)
        return await self._fanout(
            encode_command(args), self._check_indices(servers), timeout, None, None
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
        head: list[Any] = ["EVALSHA", script.sha, len(keys), *keys, *args]
        replies = await self._fanout(encode_command(head), targets, timeout, None, None)
        missing = [
            pos
            for pos, r in enumerate(replies)
            if isinstance(r, ReplyError) and r.code == "NOSCRIPT"
        ]
        if missing:
            head[0:2] = ["EVAL", script.source]
            again = await self._fanout(
                encode_command(head), tuple(targets[p] for p in missing), timeout, None, None
            )
            for pos, r in zip(missing, again, strict=True):
                replies[pos] = r
        return replies.check_quorum(quorum)

    async def _fanout(
        self,
        data: bytes,
        targets: tuple[int, ...],
        timeout: float | None,
        quorum: int | None,
        wait_for: int | None,
        decode: bool | None = None,
    ) -> Replies:
        if self._closing and not _IN_BACKGROUND.get():
            # Background work started before the close (read repair) may finish
            # its calls while aclose() waits for it; nothing else may start.
            raise PoolClosed("the pool is closed")
        servers = self._servers
        now = trio.current_time()
        deadline = now + (self.timeout if timeout is None else timeout)
        n = len(targets)
        waiter = Waiter(n, wait_for if wait_for is not None else n)
        slots: list[Slot | ServerUnavailable | None] = []
        live = 0
        connecting = False
        early = now < self._first_connect_until
        for idx in targets:
            server = servers[idx]
            conn = server.usable()
            if conn is None:
                if early and server.state is ServerState.CONNECTING:
                    # Entering the pool does not wait for connections; calls in
                    # its first `timeout` seconds wait for a first attempt still
                    # under way, within their deadline, while the connected
                    # servers already work on the command.
                    slots.append(None)
                    connecting = True
                    continue
                slots.append(server.unavailable_error())
                waiter.outstanding -= 1
                continue
            slot = conn.submit(data, waiter, idx, now)
            if slot.state == 2:  # failed at once: broken connection or full backlog
                waiter.outstanding -= 1
            else:
                live += 1
            slots.append(slot)
        if connecting:
            live += await self._submit_when_connected(data, targets, slots, waiter, deadline)
        if live and waiter.outstanding > 0 and waiter.ok < waiter.need:
            # One timer task expires waiters for the whole pool: cheaper than a
            # cancel scope per call (see _deadlines.py).
            self._deadlines.add(deadline, waiter)
            await waiter.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self._closed:
            raise PoolClosed("the pool was closed during the call")
        hedged = wait_for is not None
        if decode is None:
            decode = self._decode
        out: list[Any] = []
        for idx, entry in zip(targets, slots, strict=True):
            if not isinstance(entry, Slot):
                out.append(entry)
                continue
            slot = entry
            server = servers[idx]
            state = slot.state
            if state == 1:
                value = slot.value
                server.replies += 1
                server.latencies.append(slot.done_at - slot.sent_at)
                if server.consecutive_timeouts:
                    server.consecutive_timeouts = 0
                out.append(_decode(value) if decode else value)
            elif state == 2:
                out.append(slot.value)
            else:
                slot.waiter = None
                if hedged:
                    out.append(ServerTimeout(f"{server.label}: not awaited (hedged read)"))
                    self._watch_late(server, slot, deadline)
                else:
                    out.append(
                        ServerTimeout(
                            f"{server.label} did not reply within "
                            f"{self.timeout if timeout is None else timeout} s"
                        )
                    )
                    self._trip(server)
        labels = self._labels if targets is self._all else tuple(self._labels[i] for i in targets)
        replies = Replies(out, labels)
        return replies.check_quorum(quorum) if quorum is not None else replies

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
    ) -> int:
        """Send to servers still on their first connect as each one connects.

        Fills the ``None`` entries of ``slots``; returns how many were sent.
        """
        servers = self._servers
        limit = min(deadline, self._first_connect_until)
        sent = 0
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
                    waiter.outstanding -= 1
                    continue
                slot = conn.submit(data, waiter, targets[pos], now)
                if slot.state == 2:
                    waiter.outstanding -= 1
                else:
                    sent += 1
                slots[pos] = slot
            waiting = still
            if not waiting:
                return sent
            with trio.move_on_at(limit):
                await self._settled_any.wait()
            if self._closing and not _IN_BACKGROUND.get():
                raise PoolClosed("the pool was closed during the call")

    def _watch_late(self, server: _Server, slot: Slot, deadline: float) -> None:
        """After a hedged return, still judge the server by its late reply.

        The watcher is bookkeeping only: it runs in the pool's nursery but is not
        background work that closing waits for; closing cancels it.
        """
        if self._nursery is not None and not self._closing:
            self._nursery.start_soon(
                self._late_reply, server, slot, deadline, name=f"redisha-late {server.label}"
            )

    async def _late_reply(self, server: _Server, slot: Slot, deadline: float) -> None:
        waiter = Waiter(1, 1)
        slot.waiter = waiter
        if slot.state != 0:
            waiter.filled = True
        try:
            with trio.move_on_at(deadline):
                await waiter.wait()
        finally:
            slot.waiter = None
        if slot.state == 1:
            server.replies += 1
            server.latencies.append(slot.done_at - slot.sent_at)
        elif slot.state == 0:
            self._trip(server)

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


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


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
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            try:
                yield pool
            finally:
                with trio.CancelScope(shield=True):
                    await pool.aclose()
    except BaseExceptionGroup as group:
        # Hand the caller back the exception its block raised, not a group.
        error = sole_exception(group)
        if error is None:
            raise
    if error is not None:
        raise error
