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
import difflib
import heapq
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final, Protocol, TypedDict

import trio

from .._commands import COMMANDS as _COMMAND_TABLE
from .._commands import CONTAINERS as _CONTAINERS
from .._commands import REDIS_VERSION, command_info, command_keys, pattern_keys
from .._deadlines import GRANULARITY, Deadlines
from .._util import finite_seconds, open_owned_nursery, takes_arguments_of
from ..config import ServerSpec, parse_server
from ..connection import (
    DEFAULT_BUSY_POLL,
    DEFAULT_MAX_PENDING,
    DEFAULT_STALL_TIMEOUT,
    DONE,
    FAILED,
    WAITING,
    Connection,
    Cutoff,
    Hedge,
    Slot,
    SoloGroup,
    Waiter,
    check_busy_poll,
    check_limits,
    check_max_pending,
    solo_group,
)
from ..exceptions import (
    ConfigurationError,
    PoolClosed,
    QuorumError,
    ReplyError,
    ServerTimeout,
    ServerUnavailable,
    timeout_before_send,
)
from ..placement import (
    Placement,
    canonical_identity,
    key_partition,
    keys_partition,
    read_targets,
    write_targets,
)
from ..replies import Replies
from ..resp import DEFAULT_LIMITS, Limits, arg_bytes, encode_command
from ..scripts import Script
from ._guard import check_command
from ._hints import Hints
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
    from typing_extensions import Unpack

    from ..otel import PoolMetrics

__all__ = ["Pool", "open_pool"]

logger = logging.getLogger("trio_redisha.pool")

_UP: Final = ServerState.UP
#: The fan-outs whose commands a connection sends early (Connection.submit).
_SCRIPT_OPS: Final = frozenset(("EVALSHA", "EVAL", "FCALL"))

#: What FCALL answers for a function the server does not have (it restarted
#: empty, or never saw the library): the whole message, compared exactly. A
#: script's own error reply may begin so ("ERR Function not found here"): taken
#: for a missing one, the script ran a second time.
_NO_FUNCTION: Final = "ERR Function not found"
#: What EVALSHA answers for a script the server does not have, exactly (a
#: script's error_reply("NOSCRIPT ...") is its own error: it ran).
_NO_SCRIPT: Final = "NOSCRIPT No matching script. Please use EVAL."


#: How FUNCTION LOAD begins its answer to a library it cannot compile or run:
#: a fault of that Script's library form (the same on every server), not of the
#: server, which runs other libraries.
#: (A chunk that returns before registering: "No functions registered"; one
#: whose function name another library registers: "Function ... already exists".)
_LOAD_FAILED: Final = (
    "ERR Error compiling function",
    "ERR Error registering functions",
    "ERR No functions registered",
    "ERR Function ",
)
#: How an ACL's refusal of FCALL or FUNCTION LOAD ends (Redis 7.0: "NOPERM this
#: user has no permissions to run the 'fcall' command", 7.2: "NOPERM User <name>
#: has ..."). A NOPERM about a key ("... to access one of the keys ...") is that
#: call's error only: taken for a refusal, it switched the server to EVALSHA.
_DENIED_FUNCTIONS: Final = ("to run the 'fcall' command", "to run the 'function|load' command")
#: How a server without functions (before Redis 7, or the command renamed away)
#: begins its answer, lowercased: 'FCALL' in quotes, or in backquotes before 7.0.
_UNKNOWN_FUNCTIONS: Final = tuple(
    f"err unknown command {q}{name}{q}" for name in ("fcall", "function") for q in "'`"
)


def _refuses_functions(r: ReplyError) -> bool:
    """Whether ``r`` says the server runs no functions for us: an unknown command, an ACL."""
    if r.code == "NOPERM":
        return r.message.endswith(_DENIED_FUNCTIONS)
    return r.message.lower().startswith(_UNKNOWN_FUNCTIONS)


class CallOptions(TypedDict, total=False):
    """The keywords of :meth:`Pool.execute`, taken by every command method too."""

    timeout: float | None
    quorum: int | None
    wait_for: int | None
    decode: bool | None


class CommandMethod(Protocol):
    """A Redis command as a method of the pool (``pool.hset``): see :meth:`Pool.__getattr__`.

    Its arguments, then :meth:`Pool.execute`'s keywords (:class:`CallOptions`),
    so that a type checker catches a misspelled one where it is written.
    """

    def __call__(self, *args: Any, **options: Unpack[CallOptions]) -> Awaitable[Replies]:
        """Run the command with ``args`` (see :meth:`Pool.execute`)."""
        ...


#: Called with a server's index and its raw reply when the reply of a server a
#: call did not wait for (a hedged read) comes after all, before the deadline.
LateHook = Callable[[int, Any], None]

#: True in tasks started by Pool._start_background: their calls may still run
#: while aclose() waits for them.
_IN_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "trio_redisha_in_background", default=False
)

#: Default per-command deadline; the seed gem's read_timeout.
DEFAULT_TIMEOUT: Final = 0.5
#: Read repairs allowed per second per pool (Roshi's default rate).
DEFAULT_REPAIR_RATE: Final = 1000.0
#: Bytes (estimated) of large CRDT copies a pool keeps, validated by digests.
DEFAULT_READ_CACHE: Final = 16 * 2**20
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


def _partitions(first: int, keys: Sequence[bytes]) -> dict[int, list[bytes]]:
    """The keys of a command by partition, ``first`` (the first key's) first."""
    if len(keys) == 1:
        return {first: list(keys)}
    out: dict[int, list[bytes]] = {first: []}
    for key in keys:
        out.setdefault(key_partition(key), []).append(key)
    return out


def _script_arguments(name: str, values: object) -> tuple[Any, ...]:
    """``values`` (a script's keys or args) as a tuple: a list, tuple or other sequence.

    Raises:
        ConfigurationError: A single str or bytes (its characters would be the
            keys), or not a sequence.
    """
    if isinstance(values, (str, bytes, bytearray, memoryview)) or not isinstance(values, Sequence):
        raise ConfigurationError(
            f"execute_script's {name} must be a list or tuple, not {type(values).__name__}"
            f"{' (one key? [key])' if isinstance(values, (str, bytes)) else ''}"
        )
    return tuple(values)


def _is_script(op: Any) -> bool:
    """Whether a command name (any case, str or bytes) is EVAL, EVALSHA or FCALL."""
    if isinstance(op, (bytes, bytearray, memoryview)):
        op = bytes(op).decode("latin-1")
    return isinstance(op, str) and op.upper() in _SCRIPT_OPS


def _op(name: Any) -> Any:
    """A command name as the fan-out keeps it (for the script check and metrics): hashable.

    The encoder takes a ``bytearray`` or a ``memoryview`` as well as ``str`` and
    ``bytes``; those two are copied to ``bytes``.
    """
    if type(name) is str or type(name) is bytes:
        return name
    if isinstance(name, (bytearray, memoryview)):
        return bytes(name)
    return name


def _positive(name: str, value: object) -> float:
    """``value`` as a float, if it is a finite number above zero."""
    seconds = finite_seconds(value)
    if seconds is None:
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}")
    return seconds


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

    Placement: with ``replicas=None`` (the default) every command goes to every
    server. With ``replicas=N`` each key lives on N of the servers, its *owners*
    (:meth:`owners`, see :mod:`trio_redisha.placement`): a keyed command goes to
    its keys' owners, a keyless one (``PING``, ``INFO``, ``FLUSHALL``...) to every
    server, and a multi-key command whose keys do not share owners raises
    :class:`~trio_redisha.CrossSlotError` before anything is sent. A write (any
    keyed command Redis does not flag ``readonly``: ``EVAL`` may write) that finds
    fewer than W owners usable goes on to the next usable servers of the key's
    preference order (sloppy quorum); W is the call's ``quorum``, else the
    pool's ``write_quorum``. A read goes to the owners, one usable fallback per
    unusable owner, the fallbacks this pool wrote for the key and has not
    handed back yet, and, with ``previous``, the key's owners in the old layout.
    ``Replies`` has one entry per server the call went to, named in the same
    order by ``Replies.servers``.

    Server identity: two addresses are the same server when their canonical
    identities (:func:`~trio_redisha.placement.canonical_identity`) are equal:
    host lower-cased without a trailing dot, ``localhost`` as ``127.0.0.1``, IP
    addresses in canonical form, port 6379 when none is given, database 0 when
    none is given; the scheme, credentials and options are ignored. A server
    given twice is refused, with or without placement, and placement draws
    each server's weights from its identity, so every process computes the same
    owners from the same servers in any order and spelling.

    Args:
        *servers: URLs (``redis://``, ``rediss://``, ``unix://``) or ``(host, port)``.
            Each server may be given once.
        timeout: Default per-command deadline, in seconds (at most ``stall_timeout``).
        write_quorum: Acknowledgements a write needs by default: a CRDT write's,
            and with placement the W of the sloppy quorum (1..N).
        replicas: ``None``: every key on every server. N (1 up to the number of
            servers): each key on N of them.
        previous: With ``replicas``, the servers of the layout being moved away
            from (a migration): writes go to the new owners, reads also to the
            old owners (with N, or all of them if fewer). Servers only in
            ``previous`` are connected too and come after ``servers``.
        connect_timeout: Seconds allowed for a connect and its handshake.
        backoff_base: First reconnect delay bound, in seconds.
        backoff_cap: Largest reconnect delay bound, in seconds.
        trip_after: Consecutive timeouts that open a server's circuit.
        probe_interval: The deadline of each PING probe of a server whose
            circuit is open (defaults to ``max(timeout, 0.1)``); between probes
            the reconnect backoff is waited.
        stall_timeout: A connection whose oldest outstanding reply is older than
            this is closed and rebuilt; no call may wait longer than this.
        max_pending: Outstanding replies allowed per connection; beyond it the
            server counts as unavailable for further commands.
        decode_responses: Decode bulk strings to ``str`` (UTF-8). Bytes that are
            not UTF-8 become U+FFFD, so keep it off for binary values: a map or
            set reply whose keys differ only in such bytes would collapse.
        repair_rate: Read repairs allowed per second (token bucket).
        close_timeout: How long leaving the pool waits for started repairs.
        password: Password for servers whose URL sets none.
        username: ACL user name for servers whose URL sets none.
        protocol: RESP version (2 or 3) for servers whose URL sets none.
        client_name: Name sent with ``CLIENT SETNAME`` by servers whose URL sets none.
        ssl_context: TLS context for ``rediss://`` URLs that carry no ``ssl_*`` option.
        limits: Parser safety limits.
        use_hiredis: Deprecated and ignored (see :func:`~trio_redisha.resp.make_parser`).
        connector: How to open a connection to one server (an async function of
            a :class:`ServerSpec` returning a handshaken
            :class:`~trio_redisha.Connection`, e.g. over
            :func:`~trio_redisha.connection.connect_stream`); ``None`` connects
            over the network. For tests and custom transports, as httpcore's
            ``network_backend``.
        meter_provider: An OpenTelemetry ``MeterProvider``: report the metrics of
            :mod:`trio_redisha.otel` through it (needs the ``otel`` extra).
            ``None`` (the default) records nothing.
        busy_poll: Seconds a caller alone on idle connections polls them for
            its replies before sleeping (only when no other task is runnable,
            and not on connections whose replies keep coming later than
            that); 0 turns it off. Default 150 us: on loopback and in a data
            center a reply often comes sooner than a sleeping process wakes.
        read_cache: Bytes (an estimate of the memory held) of large CRDT keys'
            full copies kept between reads, 16 MiB by default; 0 keeps none.
            Only keys of at least 256 fields are kept, and a read of a kept key
            still asks every server for its digest: those that hold the kept
            state send nothing more, any other is read in full (see
            :mod:`trio_redisha.crdt`). Reads return exactly what they would
            without it.

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
        replicas: int | None = None,
        previous: Sequence[str | tuple[str, int] | ServerSpec] = (),
        busy_poll: float = DEFAULT_BUSY_POLL,
        read_cache: int = DEFAULT_READ_CACHE,
    ) -> None:
        if not servers:
            raise ConfigurationError("a pool needs at least one server")
        if replicas is not None:
            _count("replicas", replicas, len(servers))
        if isinstance(previous, (str, bytes)) or not isinstance(previous, Sequence):
            raise ConfigurationError(
                "previous must be a sequence of servers, e.g. previous=(url1, url2)"
            )
        if previous and replicas is None:
            raise ConfigurationError(
                "previous= needs replicas=N: without placement every key is on every server"
            )
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
        self._busy_poll = check_busy_poll(busy_poll)
        check_max_pending(max_pending)
        check_limits(limits)
        if not isinstance(read_cache, int) or isinstance(read_cache, bool) or read_cache < 0:
            raise ConfigurationError(f"read_cache must be an int >= 0 (bytes), got {read_cache!r}")
        self._read_cache = read_cache
        if probe_interval is not None:
            probe_interval = _positive("probe_interval", probe_interval)
        if not isinstance(trip_after, int) or isinstance(trip_after, bool) or trip_after < 1:
            raise ConfigurationError(f"trip_after must be an int >= 1, got {trip_after!r}")
        if replicas is None:
            _count("write_quorum", write_quorum, len(servers))
        elif (
            not isinstance(write_quorum, int)
            or isinstance(write_quorum, bool)
            or not 1 <= write_quorum <= replicas
        ):
            raise ConfigurationError(
                f"write_quorum must be an int in 1..{replicas} (replicas: the owners of a"
                f" key), got {write_quorum!r}"
            )

        def parse(s: str | tuple[str, int] | ServerSpec) -> ServerSpec:
            return parse_server(
                s,
                ssl_context=ssl_context,
                password=password,
                username=username,
                protocol=protocol,
                client_name=client_name,
            )

        specs = [parse(s) for s in servers]
        idents = _check_distinct(specs)
        self._placement: Placement | None = None
        self._previous: Placement | None = None
        #: The previous layout's server indices, as the pool's indices.
        self._previous_index: tuple[int, ...] = ()
        self._hints = Hints()
        if replicas is not None:
            self._placement = Placement(specs, replicas)
            if previous:
                old = [parse(s) for s in previous]
                old_idents = _check_distinct(old)
                self._previous = Placement(old, min(replicas, len(old)))
                position = {ident: i for i, ident in enumerate(idents)}
                index = []
                for spec, ident in zip(old, old_idents, strict=True):
                    if ident not in position:  # only in the old layout: connect too
                        position[ident] = len(specs)
                        specs.append(spec)
                    index.append(position[ident])
                self._previous_index = tuple(index)
        self._servers = [Server(i, spec) for i, spec in enumerate(specs)]
        self._labels = tuple(s.label for s in self._servers)
        self._all = tuple(range(len(specs)))
        # The servers found to have no functions (before Redis 7, or denied by
        # an ACL): scripts run there with EVALSHA for the pool's life.
        self._no_functions: set[int] = set()
        # The library names (Script.function) of the library forms a server
        # could not load: those Scripts run with EVALSHA everywhere.
        self._unloadable: set[str] = set()
        self.timeout = timeout
        self.write_quorum = write_quorum
        self._stall_timeout = stall_timeout
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
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None  # of the run that started it
        self._run_scope: trio.CancelScope | None = None
        self._closing = False
        self._closed = False
        #: Until then, calls wait (within their deadline) for servers whose first
        #: connection attempt is still under way; set when the pool starts.
        self._first_connect_until = 0.0
        # The calls waiting for servers on their first connect: each is set when
        # a server connects or fails (or by the call's own waiter, see Waiter.early).
        self._settle_waits: set[trio.Event] = set()
        self._background = 0
        self._background_idle = trio.Event()
        self._background_idle.set()
        self._stopped = trio.Event()
        #: For fan-outs over idle connections read by the caller (_read_solo_group);
        #: made when the pool starts, closed when it stops.
        self._solo_group: SoloGroup | None = None
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
        """The servers' URLs without credentials, in order (``previous``-only ones last)."""
        return self._labels

    @property
    def replicas(self) -> int | None:
        """N, the servers that hold each key; ``None`` when every server holds every key."""
        return None if self._placement is None else self._placement.replicas

    @property
    def placement(self) -> Placement | None:
        """The layout keys are placed by (``None`` without placement)."""
        return self._placement

    @property
    def previous(self) -> Placement | None:
        """The layout being moved away from (``previous=``), if any."""
        return self._previous

    def owners(self, key: str | bytes) -> tuple[str, ...]:
        """Return the labels of the key's owners, in preference order.

        As in :attr:`Replies.servers <trio_redisha.Replies.servers>`. Every server
        without placement. Hash tags count: ``{user42}:a`` and ``{user42}:b``
        have the same owners.

        Raises:
            CommandEncodeError: The key is neither str nor bytes, or a str that
                cannot be sent (with placement or without).
        """
        if self._placement is None:
            key_partition(key)  # the same check: a key no command could carry
            return self._labels
        labels = self._labels
        return tuple(labels[i] for i in self._placement.owners(key))

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

        A pool closed before it ran (its owner gave up while this task was
        still starting) reports itself started and returns at once.

        Raises:
            ConfigurationError: The pool is already running.
            PoolClosed: The pool already ran and was closed.
        """
        # _nursery is set by the first run and never cleared: it means "has run".
        if self._nursery is not None:
            if self._closed:
                raise PoolClosed("the pool is closed: a Pool runs only once")
            raise ConfigurationError("the pool is already running: a Pool runs only once")
        if self._closed:
            task_status.started(self)
            return
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                self._run_scope = nursery.cancel_scope
                self._first_connect_until = trio.current_time() + self.timeout
                if len(self._servers) > 1:
                    self._solo_group = solo_group()
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
        if self._solo_group is not None:
            self._solo_group.close()
        self._stopped.set()

    async def aclose(self) -> None:
        """Close the pool: wait (bounded) for started repairs, then stop everything.

        Calls still waiting get :class:`PoolClosed`. No task or socket outlives
        this call. Cancelled, it skips the wait for repairs and closes at once
        (as trio's ``aclose`` methods do), then lets the cancellation through.
        """
        if self._closed and self._nursery is None:
            return
        self._closing = True
        try:
            if self._background:
                with trio.move_on_after(self._close_timeout):
                    await self._background_idle.wait()
        finally:
            # However the wait ended: a Cancelled escaping here must not leave the
            # pool running, or the nursery that runs it never exits.
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

    # -- commands

    def targets(self, args: Sequence[Any], quorum: int | None = None) -> tuple[int, ...]:
        """Return the servers (indices) a command goes to: the one place that chooses them.

        Every server without placement, or for a keyless command; otherwise the
        keys' owners and the fallbacks the command needs now (see the class
        notes). A write chosen here with fallbacks is recorded as a hint.

        Raises:
            CrossSlotError: The keys do not all share their owners.
            UnsupportedCommand: With placement, the command's keys cannot be found.
            ConfigurationError: ``quorum`` is above N.
        """
        placement = self._placement
        if placement is None:
            return self._all
        # The common case, one fixed key (GET, SET, HSET...): a cached lookup,
        # one CRC16, and a look at the owners' states.
        name = args[0] if args else None
        fast = _SINGLE_KEY.get(name) if type(name) is str or type(name) is bytes else None
        if fast is None:
            return self._targets_slow(args, quorum)
        position, arity, readonly = fast
        argc = len(args)
        if position >= argc or (argc != arity if arity > 0 else argc < -arity):
            return self._targets_slow(args, quorum)  # the slow path reports it
        if quorum is not None:
            _count("quorum", quorum, placement.replicas)
        key = args[position]
        kb = key if type(key) is bytes else arg_bytes(position, key)
        partition = key_partition(kb)
        owners = placement._owners[partition]
        servers = self._servers
        if readonly:
            if self._previous is None and not self._hints:
                for i in owners:
                    if servers[i].state is not _UP:
                        break
                else:
                    return owners
            return self._read_partition(partition, (kb,))
        need = self.write_quorum if quorum is None else quorum
        for i in owners:
            if servers[i].state is _UP:
                need -= 1
        if need <= 0:
            return owners
        return self._write_partition(partition, (kb,), quorum)

    def _targets_slow(self, args: Sequence[Any], quorum: int | None) -> tuple[int, ...]:
        """:meth:`targets` for every command: keys from the key specs, cross-slot check."""
        placement = self._placement
        assert placement is not None
        keys = command_keys(args)
        if not keys:
            return self._all
        # SORT's BY/GET patterns read keys too: they must share the owners.
        routed = [*keys, *pattern_keys(args)] if len(args) > 3 else keys
        partition = keys_partition(placement, routed, args[0], self._previous)
        if quorum is not None:
            _count("quorum", quorum, placement.replicas)
        if len(keys) == 1 and isinstance(args[0], (str, bytes)):
            _remember_single_key(args[0])
        info = command_info(args)
        # SORT and GEORADIUS without STORE read (the table flags them writes
        # for their STORE): only their one source key is found.
        if "readonly" in info.flags or (info.name in _READ_UNLESS_STORE and len(keys) == 1):
            return self._read_partition(partition, keys)
        return self._write_partition(partition, keys, quorum)

    def _usable_flags(self) -> list[bool]:
        """Whether each server can take a command now (or will, on its first connect)."""
        early = self._nursery is not None and trio.current_time() < self._first_connect_until
        return [
            s.usable() is not None or (early and s.state is ServerState.CONNECTING)
            for s in self._servers
        ]

    def _write_partition(
        self, partition: int, keys: Sequence[bytes], quorum: int | None, indexed: bool = False
    ) -> tuple[int, ...]:
        placement = self._placement
        assert placement is not None
        owners = placement._owners[partition]
        need = self.write_quorum if quorum is None else quorum
        servers = self._servers
        if sum(1 for i in owners if servers[i].state is _UP) >= need:
            return owners
        usable = self._usable_flags()
        parts = _partitions(partition, keys)
        # Keys of several partitions may share a command when they share their
        # owners, but each partition has its own fallbacks, and a read of one
        # key walks its own. So the write goes to the fallbacks each partition
        # would choose, and every key is hinted at all of them.
        fallbacks: list[int] = []
        for p in parts:
            chosen = write_targets(
                placement.preference_of_partition(p), placement.replicas, need, usable
            )
            fallbacks.extend(i for i in chosen.fallbacks if i not in fallbacks)
        if fallbacks:
            for p, mine in parts.items():
                self._hints.add(mine, p, fallbacks, indexed=indexed)
            self.stats.sloppy_writes += 1
        return (*owners, *fallbacks)

    def _read_partition(self, partition: int, keys: Sequence[bytes]) -> tuple[int, ...]:
        placement = self._placement
        assert placement is not None
        owners = placement._owners[partition]
        previous = self._previous
        hints = self._hints
        if not hints and previous is None:
            servers = self._servers
            if all(servers[i].usable() is not None for i in owners):
                return owners
        also: list[int] = []
        if previous is not None:
            index = self._previous_index
            also.extend(index[i] for i in previous._owners[partition])
        parts = _partitions(partition, keys)
        if hints:
            found: set[int] = set()
            for p, mine in parts.items():
                found |= hints.servers(mine, p)
            also.extend(sorted(found))
        usable = self._usable_flags()
        # The owners, the fallbacks each partition's read would reach (see
        # _write_partition), then the other servers to read.
        out = list(owners)
        for p in parts:
            chosen = read_targets(placement.preference_of_partition(p), placement.replicas, usable)
            out.extend(i for i in chosen.fallbacks if i not in out)
        out.extend(i for i in also if i not in out)
        return tuple(out)

    # -- for the CRDT layer and repair: server indices, not labels

    def _read_targets(self, key: str | bytes) -> tuple[int, ...]:
        """The servers (indices) a read of ``key`` goes to now (every server without placement)."""
        if self._placement is None:
            return self._all
        kb = arg_bytes(1, key)
        return self._read_partition(self._placement.partition(kb), [kb])

    def _write_targets(self, key: str | bytes, quorum: int | None = None) -> tuple[int, ...]:
        """The servers (indices) a write of ``key`` needing ``quorum`` goes to now.

        Records a hint when fallbacks are chosen, as :meth:`targets` does.

        Raises:
            ConfigurationError: ``quorum`` is out of 1..N.
        """
        if self._placement is None:
            return self._all
        if quorum is not None:
            _count("quorum", quorum, self._placement.replicas)
        kb = arg_bytes(1, key)
        # The CRDT layer's write scripts enter the key in the fallback's digest
        # tree, which is what lets a partition-wide hint be cleared later.
        return self._write_partition(self._placement.partition(kb), [kb], quorum, indexed=True)

    def _previous_owner_indices(self, key: str | bytes) -> tuple[int, ...]:
        """The key's owners in the layout being moved away from, as this pool's indices."""
        previous = self._previous
        if previous is None:
            return ()
        index = self._previous_index
        return tuple(index[i] for i in previous.owners(key))

    def _owner_indices(self, key: str | bytes) -> tuple[int, ...]:
        """The key's owners as indices, in preference order (every server without placement)."""
        if self._placement is None:
            return self._all
        return self._placement.owners(arg_bytes(1, key))

    def _hinted(self, key: str | bytes) -> tuple[int, ...]:
        """The fallbacks (indices) this pool wrote ``key`` to and has not handed back."""
        kb = arg_bytes(1, key)
        return tuple(sorted(self._hints.servers([kb], Placement.partition(kb))))

    def _hint_generation(self) -> int:
        """The hints' generation now: a hand-back's ``since`` (see :meth:`_handed_back`)."""
        return self._hints.generation

    def _handed_back(
        self, key: str | bytes, servers: Iterable[int] | None = None, since: int | None = None
    ) -> None:
        """Forget the hints of ``key`` (on ``servers`` only, if given): copies handed back.

        With ``since`` (a :meth:`_hint_generation` taken when the hand-back
        began), a hint added after it stays: it may stand for a write the
        hand-back did not see.
        """
        self._hints.handed_back(arg_bytes(1, key), servers, since=since)

    def _partition_hinted(self, partition: int) -> tuple[int, ...]:
        """The fallbacks hinted for ``partition`` as a whole that a segment check may clear."""
        return tuple(sorted(self._hints.partition_servers(partition)))

    def _partition_emptied(self, partition: int, server: int, since: int) -> None:
        """``server`` was found, after generation ``since``, to hold no indexed key of
        ``partition``: forget its partition-wide hint (see :meth:`Hints.partition_emptied`)."""
        self._hints.partition_emptied(partition, server, since=since)

    async def execute(
        self,
        *args: Any,
        timeout: float | None = None,
        quorum: int | None = None,
        wait_for: int | None = None,
        decode: bool | None = None,
    ) -> Replies:
        """Run one command on its servers at once: every server, or with placement its keys' owners.

        Args:
            *args: The command and its arguments (str, bytes, int, float).
            timeout: Deadline in seconds for this call (default: the pool's; at
                most the pool's ``stall_timeout``).
            quorum: Raise :class:`QuorumError` if fewer servers succeed (1 up to
                the number of servers; with placement, up to N for a keyed
                command, and a write goes to fallbacks when fewer than this many
                owners are usable).
            wait_for: Hedged read: return as soon as this many servers (and at
                least ``quorum``) replied successfully; the other replies still
                arrive in the background and feed the health figures. Their
                entries are :class:`ServerTimeout` instances saying they were
                not awaited.
            decode: Decode bulk strings to ``str`` for this call (``None``: the
                pool's ``decode_responses``; ``False`` for binary values).

        Returns:
            One entry per server the command went to (see :meth:`targets`), named
            in the same order by ``Replies.servers``: its reply, or an exception
            instance.

        Raises:
            QuorumError: ``quorum`` was given and not met.
            CrossSlotError: With placement, the keys do not share their owners.
            ConfigurationError: ``timeout``, ``quorum``, ``wait_for`` or ``decode`` is out
                of range.
            CommandEncodeError: An argument cannot be sent.
            UnsupportedCommand: The command blocks or changes connection state;
                with placement, also a command whose keys cannot be found.
            PoolClosed: The pool is closed.
        """
        check_command(args)
        data = encode_command(args)
        if self._placement is None:
            targets = self._all
        else:
            # targets() records the hints of a write that goes to fallbacks:
            # only for a call that is sent.
            await self._before_placing(timeout, wait_for, decode)
            targets = self.targets(args, quorum)
        return await self._fanout(data, targets, timeout, quorum, wait_for, decode, _op(args[0]))

    async def _before_placing(
        self, timeout: float | None, wait_for: int | None, decode: bool | None
    ) -> None:
        """What :meth:`_fanout` checks first, for a call about to record hints.

        Raises:
            ConfigurationError: An option out of range (as :meth:`_fanout`).
            PoolClosed: The pool is closed.
            trio.Cancelled: The scope is cancelled: nothing is sent, nor recorded.
        """
        if timeout is not None:
            self._call_timeout(timeout)
        if wait_for is not None:
            _count("wait_for", wait_for, len(self._servers))
        if decode is not None and type(decode) is not bool:
            raise ConfigurationError(f"decode must be True, False or None, got {decode!r}")
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closing and not _IN_BACKGROUND.get():
            raise PoolClosed("the pool is closed")

    async def execute_on(
        self, servers: Sequence[int], *args: Any, timeout: float | None = None
    ) -> Replies:
        """Run one command on the listed servers only (by index, in that order)."""
        check_command(args)
        return await self._fanout(
            encode_command(args),
            self._check_indices(servers),
            timeout,
            None,
            None,
            None,
            _op(args[0]),
        )

    async def _execute_each(
        self,
        targets: Sequence[int],
        datas: Sequence[bytes],
        *,
        timeout: float | None = None,
        wait_for: int | None = None,
        watch_until: float | None = None,
        op: str = "",
        hedge: tuple[int, float] | None = None,
        late: LateHook | None = None,
        cutoff: tuple[float, Callable[[list[Any]], bool]] | None = None,
        sparse: frozenset[int] = frozenset(),
    ) -> Replies:
        """One fan-out of a different command to each server, raw replies (never decoded).

        For the CRDT digest reads: the full state from one server, digests from
        the others, under one waiter and one deadline. ``datas[i]``, an encoded
        command that may run on the shared connections (:func:`check_command`),
        goes to ``targets[i]``; the other arguments are as for :meth:`_fanout`.
        """
        return await self._fanout(
            datas,
            tuple(targets),  # the CRDT layer's own choice: distinct, in range
            timeout,
            None,
            wait_for,
            False,
            op,
            watch_until,
            hedge,
            late,
            cutoff,
            sparse,
        )

    def _check_indices(self, servers: Iterable[int]) -> tuple[int, ...]:
        """``servers`` as distinct indices of this pool's servers.

        Raises:
            ConfigurationError: Not an iterable of ints (a bool is no index), an
                index out of range, or one given twice (the command would run
                twice there, and count twice towards a quorum).
        """
        if isinstance(servers, (str, bytes)) or not isinstance(servers, Iterable):
            raise ConfigurationError(f"servers must be a sequence of indices, got {servers!r}")
        out = tuple(servers)
        for i in out:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._servers):
                raise ConfigurationError(f"no server with index {i!r}")
        if len(set(out)) != len(out):
            raise ConfigurationError(f"a server index is given twice in {list(out)!r}")
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
        decode: bool | None = None,
    ) -> Replies:
        """Run a Lua script: as a Redis function if it has a library form, else with EVALSHA.

        One round trip where the script is cached. With EVALSHA, servers
        answering ``NOSCRIPT`` get ``EVAL`` with the source, which caches it
        there. With a library form (:class:`~trio_redisha.Script`), servers
        answering that the function is missing get ``FUNCTION LOAD``, then the
        ``FCALL`` again; a server that has no functions (it refuses them: before
        Redis 7, or an ACL) gets ``EVALSHA`` from then on, and so does every
        call that goes to it.

        Args:
            script: The script.
            keys: Its keys (``KEYS``).
            args: Its other arguments (``ARGV``).
            timeout: Deadline in seconds for this call. Where the script must
                first be loaded (after a restart or a ``FLUSH``), the rounds
                that load it share one more: such a call takes at most twice it.
            quorum: Raise :class:`QuorumError` if fewer servers succeed.
            servers: The servers to run on, by index. ``None``: every server
                without placement or without keys; with placement, the keys'
                owners as for a write (a script may write), with fallbacks.
            decode: Decode bulk strings to ``str`` (``None``: the pool's
                ``decode_responses``; ``False`` for binary replies).

        Raises:
            CrossSlotError: ``servers`` is None, and with placement the keys do
                not share their owners; nothing is sent.
            ConfigurationError: ``script`` is not a :class:`~trio_redisha.Script`,
                ``keys`` or ``args`` is not a list or tuple (a str would be
                split into keys), or an option is out of range; nothing is sent.
        """
        if not isinstance(script, Script):
            raise ConfigurationError(
                f"execute_script takes a trio_redisha.Script, not {type(script).__name__}"
                " (wrap the source: Script(source))"
            )
        keys, args = _script_arguments("keys", keys), _script_arguments("args", args)
        if servers is not None:
            targets = self._check_indices(servers)
        elif self._placement is None or not keys:
            targets = self._all
        else:
            kb = [arg_bytes(i, k) for i, k in enumerate(keys, start=3)]
            partition = keys_partition(self._placement, kb, "EVALSHA", self._previous)
            if quorum is not None:
                _count("quorum", quorum, self._placement.replicas)
            await self._before_placing(timeout, None, decode)
            targets = self._write_partition(partition, kb, quorum)
        if quorum is not None:
            _count("quorum", quorum, len(targets))
        tail: list[Any] = [len(keys), *keys, *args]
        if script.function is None or not self._no_functions.isdisjoint(targets):
            replies = await self._evalsha(script, tail, targets, timeout, decode)
        else:
            replies = await self._fcall(script, tail, targets, timeout, decode)
        return self._check_quorum(replies, quorum)

    async def _evalsha(
        self,
        script: Script,
        tail: list[Any],
        targets: tuple[int, ...],
        timeout: float | None,
        decode: bool | None,
        deadline: float | None = None,
    ) -> Replies:
        """``EVALSHA`` on ``targets``, then ``EVAL`` where the script is missing.

        ``deadline``: given by :meth:`_fcall`, whose follow-up rounds this is;
        otherwise the ``EVAL`` round gets one ``timeout`` from when the first
        returned (see :meth:`_follow_ups`).
        """
        replies = await self._fanout(
            encode_command(["EVALSHA", script.sha, *tail]), targets,
            timeout if deadline is None else self._left(deadline), None, None, decode, "EVALSHA",
        )  # fmt: skip
        missing = [
            pos
            for pos, r in enumerate(replies)
            if isinstance(r, ReplyError) and r.message == _NO_SCRIPT
        ]
        if missing:
            if deadline is None:
                deadline = self._follow_ups(timeout)
            again = await self._retry(
                encode_command(["EVAL", script.source, *tail]),
                tuple(targets[p] for p in missing), deadline, decode, "EVAL",
            )  # fmt: skip
            for pos, r in zip(missing, again, strict=True):
                replies[pos] = r
        return replies

    def _follow_ups(self, timeout: float | None) -> float:
        """The one deadline that every follow-up round of a script call shares.

        Loading a script where it is missing (after a restart, a ``FLUSH``)
        takes up to three more rounds: they share one ``timeout`` from when the
        first round returned, so such a call takes at most twice its timeout
        (each had a fresh one: five times). Not the first round's deadline: that
        round may have spent it all on a hung server, or on a first connection,
        while the servers that answered only lacked the script.
        """
        return trio.current_time() + (self.timeout if timeout is None else timeout)

    @staticmethod
    def _left(deadline: float) -> float:
        """What is left of ``deadline`` for the next round (a sliver at least)."""
        return max(deadline - trio.current_time(), 1e-3)

    async def _retry(
        self,
        data: bytes,
        targets: tuple[int, ...],
        deadline: float,
        decode: bool | None,
        op: str,
    ) -> Replies:
        """A follow-up round of a script call, within what is left of its deadline."""
        if trio.current_time() >= deadline:
            return Replies(
                [
                    timeout_before_send(
                        f"{self._labels[i]}: no time left for {op} in the call's deadline"
                    )
                    for i in targets
                ],
                tuple(self._labels[i] for i in targets),
            )
        return await self._fanout(data, targets, self._left(deadline), None, None, decode, op)

    async def _fcall(
        self,
        script: Script,
        tail: list[Any],
        targets: tuple[int, ...],
        timeout: float | None,
        decode: bool | None,
    ) -> Replies:
        """``FCALL`` on ``targets``; ``FUNCTION LOAD`` where missing, EVALSHA where refused.

        A library form that a server cannot compile or register makes that
        Script, not the server, run with EVALSHA from then on (its ``source``
        does the same): other Scripts still run as functions there.
        """
        if script.function in self._unloadable:
            return await self._evalsha(script, tail, targets, timeout, decode)
        fcall = encode_command(["FCALL", script.function, *tail])
        replies = await self._fanout(fcall, targets, timeout, None, None, decode, "FCALL")
        missing: list[int] = []
        refused: dict[int, str] = {}  # position to the server's reason
        unloadable: list[int] = []  # positions whose server could not load the library
        for pos, r in enumerate(replies):
            if isinstance(r, ReplyError):
                if r.message == _NO_FUNCTION:
                    missing.append(pos)
                elif _refuses_functions(r):
                    refused[pos] = r.message
        if not missing and not refused:
            return replies
        deadline = self._follow_ups(timeout)
        if missing:
            # REPLACE: the library's name is its code's hash, so a library of
            # that name that does not define the function is not ours (loaded by
            # hand): without it, that server refused every write from then on.
            load = encode_command(("FUNCTION", "LOAD", "REPLACE", script.library_code))
            loaded = await self._retry(
                load, tuple(targets[p] for p in missing), deadline, False, "FUNCTION"
            )
            ready: list[int] = []
            for pos, r in zip(missing, loaded, strict=True):
                if not isinstance(r, Exception):
                    ready.append(pos)  # loaded (REPLACE: also if a call alongside loaded it)
                elif isinstance(r, ReplyError) and _refuses_functions(r):
                    refused[pos] = r.message  # it runs no functions for us
                elif isinstance(r, ReplyError) and r.message.startswith(_LOAD_FAILED):
                    unloadable.append(pos)  # this library's fault, not the server's
                    self._library_fails(script, targets[pos], r.message)
                else:
                    replies[pos] = r  # no answer, or not now (OOM...): this server's entry
            if ready:
                again = await self._retry(
                    fcall, tuple(targets[p] for p in ready), deadline, decode, "FCALL"
                )
                for pos, r in zip(ready, again, strict=True):
                    replies[pos] = r
        for pos, why in refused.items():
            idx = targets[pos]
            if idx not in self._no_functions:
                self._no_functions.add(idx)
                logger.info(
                    "redis server %s runs no functions for us (%s); scripts use EVALSHA there",
                    self._labels[idx], why[:200],
                )  # fmt: skip
        fallback = sorted((*refused, *unloadable))
        if fallback:
            again = await self._evalsha(
                script, tail, tuple(targets[p] for p in fallback), timeout, decode, deadline
            )
            for pos, r in zip(fallback, again, strict=True):
                replies[pos] = r
        return replies

    def _library_fails(self, script: Script, idx: int, why: str) -> None:
        """Remember that ``script``'s library form does not load; log it once."""
        assert script.function is not None
        if script.function not in self._unloadable:
            self._unloadable.add(script.function)
            logger.warning(
                "the library form of script %s (%s) does not load on %s (%s);"
                " that script runs with EVALSHA",
                script.sha, script.function, self._labels[idx], why[:200],
            )  # fmt: skip

    def _check_quorum(self, replies: Replies, quorum: int | None) -> Replies:
        """``replies.check_quorum(quorum)``, counting failures in :attr:`stats`."""
        if quorum is None:
            return replies
        try:
            return replies._check_quorum(quorum)  # quorum checked by the caller (_count)
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

    @trio.lowlevel.enable_ki_protection  # (see connection._ki_protected)
    async def _fanout(
        self,
        data: bytes | Sequence[bytes],
        targets: tuple[int, ...],
        timeout: float | None,
        quorum: int | None,
        wait_for: int | None,
        decode: bool | None = None,
        op: Any = None,
        watch_until: float | None = None,
        hedge: tuple[int, float] | None = None,
        late: LateHook | None = None,
        cutoff: tuple[float, Callable[[list[Any]], bool]] | None = None,
        sparse: frozenset[int] = frozenset(),
    ) -> Replies:
        """Send ``data`` to ``targets``, wait for the replies, return them in order.

        ``data`` is one encoded command for every target, or one per target
        (:meth:`_execute_each`). ``watch_until``: with ``wait_for``, how long
        the replies not awaited are still watched for the health figures
        (``None``: the call's deadline). ``hedge``: ``(k, seconds)``, with
        ``wait_for``: that many seconds after the send (0: from the start),
        ``k`` successful replies will do (:class:`~trio_redisha.connection.Hedge`).
        ``late``: with ``wait_for``, called with the index and the raw reply of
        each server not awaited whose reply still came before the deadline.
        ``cutoff``: ``(seconds, done)``: that many seconds after the send, the
        wait ends if ``done`` says so, given the replies in so far
        (:class:`~trio_redisha.connection.Cutoff`). ``sparse``: the targets
        whose empty reply (no such key) counts as no success for the waiter
        (placement fallbacks of a CRDT read: ``Slot.needs_key``).
        """
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
        if decode is not None and type(decode) is not bool:
            raise ConfigurationError(f"decode must be True, False or None, got {decode!r}")
        # Trio's rule: a call that raises Cancelled did nothing. Nothing is sent
        # from an already-cancelled scope; once sent, cancellation only stops the wait.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._token is not None and trio.lowlevel.current_trio_token() is not self._token:
            # Its connections, timers and tasks belong to the run that started
            # it: driven from another, they crashed that run (trio's own assert).
            raise ConfigurationError(
                "this pool runs in another Trio run (another trio.run, or another "
                "thread): use it only from the run whose nursery started it"
            )
        if self._closing and not _IN_BACKGROUND.get():
            # Background work started before the close (read repair) may finish
            # its calls while aclose() waits for it; nothing else may start.
            raise PoolClosed("the pool is closed")
        servers = self._servers
        now = trio.current_time()
        deadline = now + (self.timeout if timeout is None else timeout)
        if hedge is not None and hedge[1] <= 0:
            need = min(need, hedge[0])
        waiter = Waiter(need)
        slots: list[Slot | ServerUnavailable | ServerTimeout | None] = []
        connecting = False
        early = now < self._first_connect_until
        datas: Iterable[bytes] = repeat(data) if isinstance(data, bytes) else data
        # Whether the caller may read the replies itself: a solo read on one
        # server, or a solo group when every server is awaited (connection.py).
        # It does only if every connection is idle; the moment one is not, the
        # connections seen so far go back to their readers.
        solo = n == 1 or (need == n and self._solo_group is not None)
        mine: list[tuple[Connection, Slot]] = []
        # Long work for the servers: sent as soon as it piles up. (And their
        # error replies may follow some writes: Replies.script.)
        scripts = op in _SCRIPT_OPS or (
            (type(op) is not str or not op.isupper()) and _is_script(op)
        )
        for idx, cmd in zip(targets, datas, strict=False):
            server = servers[idx]
            conn = server.conn if server.state is _UP else None
            if conn is not None:
                slot = conn.submit(cmd, waiter, idx, now, solo=solo, early=scripts)
                if sparse and idx in sparse:
                    slot.needs_key = True
                slots.append(slot)
                if solo and slot.state is WAITING:
                    if conn.can_solo(slot):
                        mine.append((conn, slot))
                    else:
                        solo = False
                        conn.ensure_reader()
                        for other, _ in mine:
                            other.ensure_reader()
            elif early and server.state is ServerState.CONNECTING:
                # Entering the pool does not wait for connections; calls in its
                # first `timeout` seconds wait for a first attempt still under way,
                # within their deadline, while the connected servers already work.
                slots.append(None)
                connecting = True
            else:
                slots.append(server.unavailable_error())
        if hedge is not None and hedge[0] < need:
            self._deadlines.add(min(now + hedge[1], deadline), Hedge(waiter, hedge[0]))
        if cutoff is not None and cutoff[0] < deadline - now:
            self._deadlines.add(now + cutoff[0], Cutoff(waiter, slots, cutoff[1]))
        if mine and (connecting or not solo):
            for other, _ in mine:
                other.ensure_reader()
            mine = []
        try:
            if connecting:
                await self._submit_when_connected(data, targets, slots, waiter, deadline, sparse)
            if mine:
                # The caller reads its replies itself: one trip through the scheduler
                # per batch of arrivals; the timer task interrupts it at the deadline
                # (Waiter.expire).
                await self._read_mine(mine, waiter, deadline)
            elif not waiter.satisfied:
                # One timer task expires waiters for the whole pool: cheaper than a
                # cancel scope per call (see _deadlines.py).
                self._deadlines.add(deadline, waiter)
                await waiter.wait()
            else:
                await trio.lowlevel.checkpoint()
        except BaseException:
            self._judge_abandoned(targets, slots)
            raise
        if self._closed:
            raise _closed_during(slots)
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
                out.append(
                    self._missed(
                        servers[idx],
                        entry,
                        watch_until or deadline,
                        wait_for,
                        timeout,
                        late,
                        waiter.ok < waiter.need,
                    )
                )
        stats = self.stats
        stats.replies_expected += n
        stats.replies_received += received
        if self._metrics is not None:
            self._metrics.fanout(op, targets, slots, trio.current_time())
        labels = self._labels if targets is self._all else tuple(self._labels[i] for i in targets)
        replies = Replies(out, labels, script=scripts)
        return self._check_quorum(replies, quorum) if quorum is not None else replies

    @trio.lowlevel.enable_ki_protection  # (see connection._ki_protected)
    async def _read_mine(
        self, mine: list[tuple[Connection, Slot]], waiter: Waiter, deadline: float
    ) -> None:
        """Read the replies of idle connections in the caller (see :meth:`_fanout`).

        One connection: :meth:`Connection.read_solo`. Several: the pool's
        :class:`~trio_redisha.connection.SoloGroup`, which waits for all of
        them at once; if another call is using it, the readers read instead.
        """
        group = self._solo_group
        if len(mine) > 1 and (group is None or group.busy):
            for conn, _ in mine:
                conn.ensure_reader()
            self._deadlines.add(deadline, waiter)
            await waiter.wait()
            return
        for conn, slot in mine:
            conn.take_solo(slot)
        self._deadlines.add(deadline, waiter)
        try:
            if len(mine) == 1:
                conn, slot = mine[0]
                waiter.solo = conn
                await conn.read_solo(slot, self._busy_poll)
            else:
                assert group is not None
                waiter.solo = group
                if not await group.read(mine, self._busy_poll, waiter):
                    waiter.solo = None
                    await waiter.wait()  # the set could not be built: the readers read
        finally:
            waiter.solo = None
            waiter.filled = True

    def _missed(
        self,
        server: Server,
        slot: Slot,
        deadline: float,
        wait_for: int | None,
        timeout: float | None,
        late: LateHook | None = None,
        expired: bool = True,
    ) -> ServerTimeout:
        """The entry of a server whose reply had not arrived when the call returned.

        ``expired``: the call returned at its deadline, not because enough
        replies came (a hedged read's entries then say it was waited for).
        """
        seconds = self.timeout if timeout is None else timeout
        now = trio.current_time()
        # A deadline shorter than the pool's says nothing of the server by the
        # pool's standard (one timeout=1e-5 call opened a healthy server's
        # circuit for every caller): it is judged by its reply up to the pool's
        # timeout from the send (_judge_later). The call itself, its counts
        # and its metrics, still see a timeout at its own deadline.
        short = seconds < self.timeout and not self._closing and self._nursery is not None
        if wait_for is not None and (not expired or now < deadline):
            # Its reply may still come in time: the watcher judges the server then.
            # (Past that time, it is judged now: a call made next must find the
            # circuit open, not race the watcher.)
            self._watch_late(server, slot, deadline, late, judge=not short)
            if short:
                self._judge_later(server, slot, deadline)
            if expired:
                return ServerTimeout(f"{server.label} did not reply within {seconds:.3g} s")
            return ServerTimeout(f"{server.label}: not awaited (hedged read)")
        if short and now < slot.sent_at + self.timeout:
            self._judge_later(server, slot, deadline)
            return ServerTimeout(f"{server.label} did not reply within {seconds:.3g} s")
        self._upkeep.timed_out(server, None if self._closing else self._nursery)
        return ServerTimeout(f"{server.label} did not reply within {seconds:.3g} s")

    def _judge_abandoned(
        self, targets: Sequence[int], slots: Sequence[Slot | BaseException | None]
    ) -> None:
        """A call left its wait (its scope was cancelled): judge the replies it missed.

        As a call's own short ``timeout=`` is (:meth:`_missed`): at the pool's
        timeout from the send, a timeout if no reply came by then. Else callers
        whose request budget (``move_on_after``) is shorter than the pool's
        timeout never opened a hung server's circuit, and each waited its whole
        budget on it until the stall watchdog.
        """
        if self._closing or self._nursery is None:
            return
        now = trio.current_time()
        for idx, slot in zip(targets, slots, strict=False):
            if type(slot) is Slot and slot.state is WAITING:
                slot.detach()
                server = self._servers[idx]
                if now < slot.sent_at + self.timeout:
                    self._judge_later(server, slot, now)
                else:
                    self._upkeep.timed_out(server, self._nursery)

    def _judge_later(self, server: Server, slot: Slot, deadline: float) -> None:
        """Judge ``server`` by ``slot`` at the pool's timeout from its send (see :meth:`_missed`).

        Each such slot counts, once, as :meth:`_missed` counts a slot at the
        pool's own deadline: a timeout if no reply came by then, a reply (a
        latency sample) if one came after the call's ``deadline``. One task per
        server judges them all, each at its time (a heap): the number of tasks
        stays one per server, however many short calls miss.
        """
        # A heap by the time to judge: calls of different deadlines return in
        # another order than they were sent.
        server.late_count += 1
        entry = (slot.sent_at + self.timeout, server.late_count, slot, deadline)
        heapq.heappush(server.late_slots, entry)
        if server.late_slots[0] is entry and server.late_wake is not None:
            server.late_wake.cancel()  # the task sleeps until a later time: look again
        if not server.late_watch and self._nursery is not None:
            server.late_watch = True
            self._nursery.start_soon(self._judge, server, name=f"redisha-judge {server.label}")

    async def _judge(self, server: Server) -> None:
        """The task of :meth:`_judge_later` for ``server``: it ends with its queue."""
        queue = server.late_slots
        try:
            while queue:
                when = queue[0][0]
                if trio.current_time() < when:
                    with trio.CancelScope() as wake:
                        server.late_wake = wake
                        await trio.sleep_until(when)
                    server.late_wake = None
                    continue
                _, _, slot, deadline = heapq.heappop(queue)
                if slot.state is DONE:
                    if slot.done_at > deadline:  # (a hedged call's own watcher took one in time)
                        server.replied(slot)
                elif slot.state is not FAILED:
                    self._upkeep.timed_out(server, None if self._closing else self._nursery)
        finally:
            server.late_watch = False
            server.late_wake = None
            if self._closing:
                queue.clear()

    def _notify_settled(self) -> None:
        for event in self._settle_waits:
            event.set()

    @trio.lowlevel.enable_ki_protection  # (see connection._ki_protected)
    async def _submit_when_connected(
        self,
        data: bytes | Sequence[bytes],
        targets: tuple[int, ...],
        slots: list[Slot | ServerUnavailable | ServerTimeout | None],
        waiter: Waiter,
        deadline: float,
        sparse: frozenset[int] = frozenset(),
    ) -> None:
        """Send to servers still on their first connect as each one connects.

        Fills the ``None`` entries of ``slots``. Once the replies in will do
        (``wait_for``, a hedge, a cutoff), the servers still connecting are not
        waited for: they get the command when they connect, in the background,
        as servers a ``wait_for`` call did not wait for still get theirs; their
        entries say so (:class:`ServerTimeout`, sent).
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
                    cmd = data if isinstance(data, bytes) else data[pos]
                    slot = conn.submit(cmd, waiter, targets[pos], now)
                    slot.needs_key = targets[pos] in sparse
                    slots[pos] = slot
            waiting = still
            if not waiting:
                return
            if waiter.filled or waiter.ok >= waiter.need:
                later = [
                    (targets[pos], data if isinstance(data, bytes) else data[pos])
                    for pos in waiting
                ]
                handed = self._start_background(self._send_when_connected, later, deadline)
                for pos in waiting:
                    server = servers[targets[pos]]
                    slots[pos] = (
                        ServerTimeout(f"{server.label}: not awaited (still connecting)")
                        if handed
                        else server.unavailable_error()
                    )
                return
            # Woken by a server settling, or by the replies in being enough.
            event = waiter.early = trio.Event()
            self._settle_waits.add(event)
            try:
                with trio.move_on_at(limit):
                    await event.wait()
            finally:
                waiter.early = None
                self._settle_waits.discard(event)
            if self._closing and not _IN_BACKGROUND.get():
                raise _closed_during(slots)

    async def _send_when_connected(self, later: list[tuple[int, bytes]], deadline: float) -> None:
        """:meth:`_submit_when_connected`'s servers not waited for: each gets its
        command once connected, in time; nobody waits for the replies (a waiter
        of them all, which never ends the loop early)."""
        targets = tuple(idx for idx, _ in later)
        cmds = [cmd for _, cmd in later]
        slots: list[Slot | ServerUnavailable | ServerTimeout | None] = [None] * len(later)
        await self._submit_when_connected(cmds, targets, slots, Waiter(len(later)), deadline)

    def _watch_late(
        self,
        server: Server,
        slot: Slot,
        deadline: float,
        late: LateHook | None = None,
        *,
        judge: bool = True,
    ) -> None:
        """After a hedged return, still judge the server by its late reply.

        The watcher is bookkeeping only: it runs in the pool's nursery but is not
        background work that closing waits for; closing cancels it. A reply that
        comes before ``deadline`` goes to ``late`` too, with the server's index
        (the slot's ``index``). ``judge=False``: no reply by ``deadline`` is not
        counted here (the call's deadline was shorter than the pool's:
        :meth:`_judge_later` counts it).
        """
        if self._nursery is not None and not self._closing:
            self._nursery.start_soon(
                self._late_reply,
                server,
                slot,
                deadline,
                late,
                judge,
                name=f"redisha-late {server.label}",
            )

    def _late_reply(
        self, server: Server, slot: Slot, deadline: float, late: LateHook | None, judge: bool
    ) -> Awaitable[None]:
        """The watcher task of :meth:`_watch_late`: returns its coroutine.

        A plain function, so that ``start_soon`` runs this part at once, inside
        :meth:`_missed`: the slot is claimed for the metrics before the call
        records its own, which then leave it to the watcher (measured once: its
        late reply, or a timeout at ``deadline``; see ``PoolMetrics.watched``).
        """
        metrics = self._metrics
        if metrics is not None:
            metrics.watching(slot)

        async def watch() -> None:
            waiter = Waiter(1)
            slot.watch(waiter)
            ended = False
            try:
                with trio.move_on_at(deadline):
                    await waiter.wait()
                ended = True
            finally:
                slot.detach()
                if metrics is not None:
                    metrics.watched(slot, ended)
            if slot.state is DONE and slot.done_at <= deadline:
                server.replied(slot)
                self.stats.replies_received += 1  # in time, though not awaited
                if late is not None and not self._closing:
                    try:
                        late(slot.index, slot.value)
                    except Exception:  # a hook's bug must not take the pool down
                        logger.exception("the late-reply hook of a hedged read failed")
            elif slot.state is DONE:
                # Filled in the tick of the deadline, after it: not in time, a
                # health sample only (or left to _judge, which counts it).
                if judge:
                    server.replied(slot)
            elif slot.state is not FAILED and judge:
                self._upkeep.timed_out(server, None if self._closing else self._nursery)

        return watch()

    # -- thin helpers (the seed's examples)

    # Each takes the keywords of execute() (CallOptions), as the methods of
    # __getattr__ do.

    async def ping(self, *message: Any, **options: Unpack[CallOptions]) -> Replies:
        """PING every server: ``["PONG", "PONG", "PONG"]`` when all are well.

        ``message``: at most one, echoed back instead of ``PONG``. The keywords
        are :meth:`execute`'s.
        """
        return await self.execute("PING", *message, **options)

    async def get(self, key: str | bytes, **options: Unpack[CallOptions]) -> Replies:
        """GET on every server (with placement: the key's owners, as :meth:`execute`).

        The keywords are :meth:`execute`'s: ``wait_for=1`` returns with the first reply.
        """
        return await self.execute("GET", key, **options)

    async def set(
        self, key: str | bytes, value: Any, *args: Any, **options: Unpack[CallOptions]
    ) -> Replies:
        """SET on every server (with placement: the key's owners, as :meth:`execute`).

        ``args``: SET's own options, as Redis spells them: ``pool.set(k, v, "EX", 60,
        "NX")``. The keywords are :meth:`execute`'s.
        """
        return await self.execute("SET", key, value, *args, **options)

    async def setnx(self, key: str | bytes, value: Any, **options: Unpack[CallOptions]) -> Replies:
        """SETNX on every server (or the key's owners): ``[1, 1, 1]`` where the key was new.

        The keywords are :meth:`execute`'s.
        """
        return await self.execute("SETNX", key, value, **options)

    async def delete(self, *keys: str | bytes, **options: Unpack[CallOptions]) -> Replies:
        """DEL on every server (with placement: the keys' owners, as :meth:`execute`).

        The keywords are :meth:`execute`'s.
        """
        return await self.execute("DEL", *keys, **options)

    def __getattr__(self, name: str) -> CommandMethod:
        """Any other Redis command as a method, as in the seed: ``await pool.hset(k, f, v)``.

        Only names of Redis's command table (:func:`command_method` maps them):
        ``pool.hset`` is ``HSET``, ``pool.sort_ro`` is ``SORT_RO``, and a
        container's subcommand joins the two names with an underscore:
        ``pool.client_list()`` is ``CLIENT LIST``, ``pool.config_get("maxmemory")``
        is ``CONFIG GET maxmemory``, ``pool.client_no_evict("on")`` is
        ``CLIENT NO-EVICT on``. Any other name raises :class:`AttributeError`, so
        a typo (``pool.pign``) fails at once and ``pool.close()`` is not sent to
        Redis as a command (use :meth:`aclose`). A real command that cannot run
        on shared connections (``pool.blpop``) raises :class:`UnsupportedCommand`
        when called, as :meth:`execute` does.

        Raises:
            AttributeError: The name is no Redis command.
        """
        words = command_method(name)
        if words is None:
            raise AttributeError(_no_command(self, name), name=name, obj=self)

        async def command(
            *args: Any,
            timeout: float | None = None,
            quorum: int | None = None,
            wait_for: int | None = None,
            decode: bool | None = None,
        ) -> Replies:
            return await self.execute(
                *words, *args, timeout=timeout, quorum=quorum, wait_for=wait_for, decode=decode
            )

        command.__name__ = name
        command.__qualname__ = f"Pool.{name}"
        command.__doc__ = f"Run ``{' '.join(words)}`` (see :meth:`Pool.execute`)."
        return command


def command_method(name: str) -> tuple[str, ...] | None:
    """Map a method name to the Redis command words it runs, or None.

    The name is lower case: a command's name (``hset``, ``sort_ro``), or a
    container and its subcommand joined by ``_`` (``client_list``,
    ``config_get``), where a ``-`` of the subcommand is written ``_``
    (``client_no_evict``: ``CLIENT NO-EVICT``). A container alone
    (``pool.client("LIST")``) is its command too.

    Args:
        name: An attribute name.

    Returns:
        The command's words (``("CLIENT", "LIST")``), or None when the name is
        no command of Redis's table.
    """
    if not name.isidentifier() or name.startswith("_") or name != name.lower():
        return None
    if name in _COMMAND_TABLE:
        return (name.upper(),)
    head, _, sub = name.partition("_")
    if sub and head in _CONTAINERS:
        for candidate in (sub, sub.replace("_", "-")):
            if f"{head}|{candidate}" in _COMMAND_TABLE:
                return (head.upper(), candidate.upper())
    dashed = name.replace("_", "-")
    if dashed in _COMMAND_TABLE and "|" not in dashed:
        return (dashed.upper(),)
    return None


def _method_names() -> list[str]:
    return [n.replace("|", "_").replace("-", "_") for n in _COMMAND_TABLE]


def _no_command(pool: Pool, name: str) -> str:
    """A helpful AttributeError message for a name that is no Redis command."""
    text = f"'Pool' object has no attribute {name!r}"
    if name.startswith("_") or not name.isidentifier():
        return text
    if name == "close":
        return text + ": to close the pool, use 'await pool.aclose()'"
    if name != name.lower() and command_method(name.lower()) is not None:
        return text + f": command methods are lower case, 'pool.{name.lower()}'"
    names = {n for n in dir(pool) if not n.startswith("_")}.union(_method_names())
    close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.75)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"{text} (not a Redis {REDIS_VERSION} command; a subcommand is written"
        f" container_sub, as pool.client_list()){hint}"
    )


#: Commands the table flags writes only for a STORE (or STOREDIST) option.
_READ_UNLESS_STORE: Final = frozenset({"sort", "georadius", "georadiusbymember"})

#: Routing facts of commands with one fixed key, by the name as given (``"SET"``,
#: ``b"get"``): (the key's position, arity, readonly). Filled on first use by
#: the slow path; bounded, since a name may be spelled in many cases.
_SINGLE_KEY: dict[str | bytes, tuple[int, int, bool]] = {}
_SINGLE_KEY_MAX: Final = 4096


def _closed_during(slots: Sequence[Slot | BaseException | None]) -> PoolClosed:
    """The error of a call the pool's close ended, ``sent`` if any server may have run it.

    A reply that came, a command still waiting for its reply, or one whose
    connection broke after sending it: the command may have been applied, and a
    caller deciding whether to retry must know.
    """
    exc = PoolClosed("the pool was closed during the call")
    exc.sent = any(
        type(slot) is Slot
        and (slot.state is not FAILED or getattr(slot.value, "sent", True) is not False)
        for slot in slots
    )
    return exc


def _remember_single_key(name: str | bytes) -> None:
    lower = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
    info = _COMMAND_TABLE.get(lower)
    if info is None or lower in _CONTAINERS or not info.single_key:
        return
    if len(_SINGLE_KEY) < _SINGLE_KEY_MAX:
        _SINGLE_KEY[name] = (info.single_key, info.arity, "readonly" in info.flags)


def _check_distinct(specs: Sequence[ServerSpec]) -> list[str]:
    """Refuse a server given twice: it would count twice towards every quorum.

    Servers are compared by their canonical identity, the one placement uses.

    Returns:
        Each server's identity, in order.
    """
    seen: dict[str, str] = {}
    idents = []
    for spec in specs:
        ident = canonical_identity(spec)
        if ident in seen:
            raise ConfigurationError(
                f"server {spec.label} is given twice (as {seen[ident]} too, both {ident}):"
                " each server may appear once, or it would count twice towards every quorum"
            )
        seen[ident] = spec.label
        idents.append(ident)
    return idents


@takes_arguments_of(Pool)  # a type checker sees Pool's options here
@asynccontextmanager
async def open_pool(
    *servers: str | tuple[str, int] | ServerSpec,
    timeout: float = DEFAULT_TIMEOUT,
    **options: Any,
) -> AsyncIterator[Pool]:
    """Open a pool over several Redis servers; every command runs on all of them.

    With ``replicas=N``, each key lives on N of them instead (see :class:`Pool`).

    Entering never waits for a server: one not connected yet counts as
    unavailable. Leaving waits (bounded) for started read repairs, then cancels
    everything the pool started and closes every socket.

    Example::

        async with open_pool("redis://127.0.0.1:6379", ("127.0.0.1", 6380)) as pool:
            print(await pool.ping())          # ['PONG', 'PONG']

    Args:
        *servers: URLs in redis-py's syntax or ``(host, port)`` tuples.
        timeout: Default per-command deadline, in seconds.
        **options: See :class:`Pool`: among them ``replicas`` (``None``: every
            key on every server; N: each key on N of them) and ``previous``
            (with ``replicas``, the servers of the layout being moved away from).
    """
    pool = Pool(*servers, timeout=timeout, **options)
    async with open_owned_nursery() as nursery:
        await nursery.start(pool.run)
        try:
            yield pool
        finally:
            with trio.CancelScope(shield=True):
                await pool.aclose()
