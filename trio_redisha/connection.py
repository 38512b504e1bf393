"""One multiplexed, cancellation-safe connection to one Redis server.

Many tasks share one connection. A caller's command is queued *synchronously*:
its request slot joins the FIFO of outstanding replies in the same step as its
bytes join the output, so the order of slots always matches the order of bytes
on the wire, whatever happens to the caller afterwards. One reader task hands
each reply to the slot at the head of the FIFO. A caller that is cancelled
before, during or after the send simply stops waiting: its slot stays in the
FIFO, its reply is read and dropped, and no other caller can ever receive it
(redis-py's CVE-2023-28858/28859 came from breaking exactly this invariant).

When the connection is idle the caller sends its bytes itself with a
non-blocking ``send`` (no task switch); under load, commands queued while a
send is in progress are joined into one ``send`` by the writer task
(auto-pipelining).

A caller alone on an idle plain-socket connection also reads its own reply
(a *solo read*): it waits on the socket itself, so a sequential command costs
one trip through trio's scheduler instead of two (the reader waking, then
waking the caller). The socket's read side has one owner at a time
(``_owner``): the reader task, a solo caller, or nobody (idle after a solo
read, until the reader takes it back within :data:`SOLO_RECHECK`). A solo
caller fills slots in FIFO order exactly as the reader does; when it stops
(its reply came, it was cancelled, it timed out) with replies still owed, it
hands the socket back to the reader at once, which reads and drops the
cancelled caller's reply as it always did.

A connection whose server stops answering (the oldest outstanding reply is
older than ``stall_timeout``) is closed; when a connection breaks every waiter
gets an error at once.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import trio

from ._util import finite_seconds, is_cancellation, open_owned_nursery, word
from .config import ServerOptions, ServerSpec, parse_server
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    PoolClosed,
    ProtocolError,
    RedisHAError,
    ReplyError,
    ReplyTooLarge,
    ServerTimeout,
    ServerUnavailable,
    UnsupportedCommand,
    timeout_before_send,
)
from .resp import DEFAULT_LIMITS, NEED_DATA, Limits, Parser, Push, encode_command, make_parser

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DONE",
    "FAILED",
    "WAITING",
    "ConnectOptions",
    "Connection",
    "Cutoff",
    "Hedge",
    "Slot",
    "SlotState",
    "SoloGroup",
    "SpecOptions",
    "Waiter",
    "connect",
    "connect_stream",
    "open_connection",
    "solo_group",
]

logger = logging.getLogger("trio_redisha.connection")

RECEIVE_SIZE: Final = 65536
#: The fewest replies owed for :meth:`Connection._received` to try taking a run
#: of them at once (the parser's ``next_bulks``, which needs 8 itself).
_BULK_RUN_MIN: Final = 8
#: Outstanding requests allowed on one connection before callers must wait.
DEFAULT_MAX_PENDING: Final = 16384
#: A server that has not answered the oldest outstanding request for this long is
#: considered gone and its connection is closed (and rebuilt by the pool).
DEFAULT_STALL_TIMEOUT: Final = 5.0
#: While callers read their own replies, the reader task checks this often
#: whether the connection went idle, and then watches the socket again: an idle
#: connection notices a server's close (or a push) at most this late.
SOLO_RECHECK: Final = 0.01
#: How long a caller alone on idle connections polls them for its replies
#: before it sleeps in epoll (seconds; ``open_pool(busy_poll=...)``). A reply
#: from a nearby server often comes sooner than a sleeping process can be
#: woken, and polling for it costs less CPU than sleeping and waking does
#: (figures in docs/design.md, "Busy polling").
DEFAULT_BUSY_POLL: Final = 150e-6
#: The most ``busy_poll`` may be: polling holds the event loop (no other task runs).
MAX_BUSY_POLL: Final = 0.01
#: Scripts queued behind a busy connection (``submit(early=True)``) are sent at
#: once, without waiting for the writer task, when this many are waiting: the
#: server starts on them while the callers of the same scheduler batch are
#: still queueing theirs (figures in docs/design.md, "Early flush").
FLUSH_AT: Final = 16


def check_busy_poll(value: object) -> float:
    """``value`` as a busy-poll budget in seconds: 0 (off) or in ``(0, MAX_BUSY_POLL]``.

    Raises:
        ConfigurationError: Anything else (a bool, a string, NaN, a negative
            number, more than :data:`MAX_BUSY_POLL`).
    """
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0 <= value <= MAX_BUSY_POLL
    ):
        raise ConfigurationError(
            f"busy_poll must be 0 (off) or a number of seconds up to {MAX_BUSY_POLL}"
            f" (it holds the event loop), got {value!r}"
        )
    return float(value)


def check_max_pending(value: object) -> int:
    """``value`` as a bound on a connection's outstanding replies: an int >= 1.

    Raises:
        ConfigurationError: Anything else (with 0, every call would wait for
            room forever).
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"max_pending must be an int >= 1, got {value!r}")
    return value


def check_limits(value: object) -> Limits:
    """``value`` as the reply parser's limits: a :class:`~trio_redisha.Limits`.

    Raises:
        ConfigurationError: Anything else (``None`` included: the defaults are
            :data:`~trio_redisha.resp.DEFAULT_LIMITS`).
    """
    if not isinstance(value, Limits):
        raise ConfigurationError(
            f"limits must be a trio_redisha.Limits, got {type(value).__name__}"
        )
    return value


#: Commands whose replies are not one per command (a confirmation per channel,
#: then messages; a stream of events; none at all, as ``REPLCONF ACK``, which
#: only a replica sends): a connection pairs each command with one reply, so
#: none of them can run on one, a dedicated one included.
_NOT_ONE_REPLY: Final = frozenset(
    {
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "REPLCONF",
    }
)  # fmt: skip


def check_dedicated(args: Sequence[Any]) -> None:
    """Refuse a command whose replies are not one per command.

    Publish/subscribe, ``MONITOR``, replication and ``CLIENT REPLY OFF|SKIP``
    break the pairing of each command with one reply (a reply nobody asked
    for, or none at all), on any connection.

    Raises:
        UnsupportedCommand: The command is one of those.
    """
    name = word(args[0]) if args else None
    if name is not None:
        check_one_reply(name, args)


def check_one_reply(name: str, args: Sequence[Any]) -> None:
    """:func:`check_dedicated` for a caller that has the upper-case ``name`` already."""
    if name in _NOT_ONE_REPLY or (
        name == "CLIENT"
        and len(args) > 2
        and word(args[1]) == "REPLY"
        and word(args[2]) in ("OFF", "SKIP")
    ):
        raise UnsupportedCommand(
            f"{name}: its replies are not one per command, which no trio-redisha "
            "connection can carry (use a publish/subscribe client for it)"
        )


def check_stall_timeout(value: object) -> float:
    """``value`` as a stall timeout in seconds: a finite number above zero.

    Raises:
        ConfigurationError: Anything else.
    """
    seconds = finite_seconds(value)
    if seconds is None:
        raise ConfigurationError(f"stall_timeout must be a positive finite number, got {value!r}")
    return seconds


#: After this many solo reads in a row whose reply did not come within the
#: busy-poll budget (a far or slow server), the next ones skip polling ...
SPIN_MISSES: Final = 4
#: ... this many of them, then it is tried again.
SPIN_PAUSE: Final = 64

_perf_counter = time.perf_counter

#: Marks the code that keeps the reply FIFO, the write buffer and the socket in
#: step. Trio raises KeyboardInterrupt at any bytecode of unprotected code: a
#: Ctrl-C just after a send, before the buffer was cleared, sent its commands
#: twice, and one between taking a slot off the FIFO and filling it gave every
#: later caller the reply of the one before. Protected, the interrupt comes at
#: the next checkpoint instead, where these methods are cancellation-safe. It
#: costs nothing per call: trio looks the code objects up only when a signal
#: arrives.
_ki_protected = trio.lowlevel.enable_ki_protection


class _Spinner:
    """Whether busy polling pays on one connection (or solo group): adaptive, per reader."""

    __slots__ = ("misses", "pause")

    def __init__(self) -> None:
        self.misses = 0
        self.pause = 0

    def allowed(self, budget: float) -> bool:
        """Whether to poll now: enabled, not paused, and no other task could run instead."""
        if budget <= 0:
            return False
        if self.pause:
            self.pause -= 1
            return False
        # Polling holds the scheduler: only when it would otherwise sleep.
        return trio.lowlevel.current_statistics().tasks_runnable == 0

    def outcome(self, hit: bool) -> None:
        """Record whether the replies came within the budget."""
        if hit:
            self.misses = 0
        else:
            self.misses += 1
            if self.misses >= SPIN_MISSES:
                self.misses = 0
                self.pause = SPIN_PAUSE


# Who reads the socket (``Connection._owner``).
_READER: Final = 0  #: the reader task (it is waiting on the socket or about to)
_SOLO: Final = 1  #: a caller alone on the connection, reading its own reply
_NOBODY: Final = 2  #: nobody: idle since a solo read; the reader takes it back soon


class SlotState(enum.IntEnum):
    """Where one command's reply stands."""

    WAITING = 0  #: in the reply FIFO; nothing arrived yet
    DONE = 1  #: the reply arrived (it may be a :class:`ReplyError`)
    FAILED = 2  #: no reply will come: the connection broke, or refused the command


# Module-level names for the hot paths: comparing with ``is`` costs one lookup.
WAITING: Final = SlotState.WAITING
DONE: Final = SlotState.DONE
FAILED: Final = SlotState.FAILED


class Slot:
    """The place where one command's reply lands.

    The connection fills it (:meth:`fill` or :meth:`fail`); whoever waits
    reads :attr:`state` and :attr:`value`, and calls :meth:`detach` when it
    stops waiting, or :meth:`watch` to hand the slot to another waiter.

    Attributes:
        state: See :class:`SlotState`.
        value: The reply (``DONE``), the exception (``FAILED``), else ``None``.
        waiter: Told when the slot is filled (``None`` once nobody waits).
        index: The caller's tag for this slot (the pool's server index).
        sent_at: ``trio.current_time()`` when it was queued.
        done_at: When it was filled.
    """

    __slots__ = ("done_at", "index", "needs_key", "sent_at", "state", "value", "waiter")

    def __init__(self, waiter: Waiter | None, index: int, now: float) -> None:
        self.state = WAITING
        self.value: Any = None
        self.waiter = waiter
        self.index = index
        self.sent_at = now
        self.done_at = 0.0
        #: An empty reply (no such key: ``0``, ``[]``, ``{}``) does not count as
        #: a success for the waiter (a placement fallback's read: see Pool._fanout).
        self.needs_key = False

    @property
    def latency(self) -> float:
        """Seconds from queueing to the reply (meaningful once ``DONE``)."""
        return self.done_at - self.sent_at

    @_ki_protected
    def fill(self, reply: Any, now: float) -> None:
        """Store the reply and tell the waiter, if any."""
        self.value = reply
        self.state = DONE
        self.done_at = now
        waiter = self.waiter
        if waiter is not None:
            kind = type(reply)
            waiter.slot_filled(
                kind is not ReplyError
                and kind is not ReplyTooLarge
                and (not self.needs_key or bool(reply))
            )

    @_ki_protected
    def fail(self, error: BaseException) -> None:
        """Record that no reply will come, and tell the waiter, if any."""
        self.value = error
        self.state = FAILED
        waiter = self.waiter
        if waiter is not None:
            waiter.slot_filled(False)

    @_ki_protected
    def detach(self) -> None:
        """Stop waiting: the reply, when it comes, is read and dropped."""
        self.waiter = None

    @_ki_protected
    def watch(self, waiter: Waiter) -> None:
        """Hand a slot still waiting to ``waiter`` (a slot already settled counts for nothing)."""
        if self.state is WAITING:
            self.waiter = waiter
            waiter.expect()


class Waiter:
    """Wakes one task when enough of its slots are filled.

    One waiter serves a whole fan-out: each slot queued for it counts as
    outstanding (:meth:`expect`, called by :meth:`Connection.submit`), the
    reader of each connection reports it filled (:meth:`slot_filled`), and the
    task is rescheduled once ``need`` successful replies arrived or no slot is
    outstanding, whichever comes first; or when :meth:`expire` is called at the
    deadline. Waking goes through :func:`trio.lowlevel.reschedule`; no task or
    event is created per server.

    Args:
        need: Successful replies that end the wait early.
    """

    __slots__ = ("_task", "early", "filled", "need", "ok", "outstanding", "solo")

    def __init__(self, need: int) -> None:
        self.outstanding = 0
        self.need = need
        self.ok = 0
        self.filled = False
        self._task: trio.lowlevel.Task | None = None
        #: What the task reads its replies through itself, if anything (a
        #: :class:`Connection` in :meth:`~Connection.read_solo`, or a
        #: :class:`SoloGroup`): :meth:`expire` interrupts it.
        self.solo: Connection | SoloGroup | None = None
        #: Set once the wait may end, while the task is not waiting yet: it is
        #: still sending to servers on their first connect (Pool._fanout), and
        #: needs not wait for them once enough replies are in.
        self.early: trio.Event | None = None

    @property
    def satisfied(self) -> bool:
        """Whether there is nothing to wait for: woken, enough replies, or none to come."""
        return self.filled or self.outstanding <= 0 or self.ok >= self.need

    @_ki_protected
    def expect(self) -> None:
        """Count one more slot that will be filled."""
        self.outstanding += 1

    @_ki_protected
    def slot_filled(self, success: bool) -> None:
        """One slot was filled, with a successful reply or not."""
        self.outstanding -= 1
        if success:
            self.ok += 1
        # Only a task already waiting is woken: before it waits, more slots may
        # still be queued (a server finishing its first connect), and a count
        # that touched zero meanwhile must not end the wait. wait() re-checks.
        if self._task is not None and (self.outstanding <= 0 or self.ok >= self.need):
            self._wake()
        elif self.early is not None and self.ok >= self.need:
            self.early.set()

    @_ki_protected
    def hedge(self, need: int) -> None:
        """From now on, ``need`` successful replies end the wait (see :class:`Hedge`)."""
        self.need = min(self.need, need)
        if self.filled or self.ok < self.need:
            return
        if self._task is not None:
            self._wake()
        elif isinstance(self.solo, SoloGroup):
            self.solo.wake()  # the caller reads its replies itself: it looks again
        elif self.early is not None:
            self.early.set()

    @_ki_protected
    def expire(self) -> None:
        """The deadline passed: wake the task with whatever has arrived."""
        if not self.filled:
            if self.solo is not None:
                self.filled = True
                self.solo.interrupt_solo()
            else:
                self._wake()

    @_ki_protected
    def _wake(self) -> None:
        self.filled = True
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)
        elif self.early is not None:
            self.early.set()

    async def wait(self) -> None:
        """Wait until enough slots are filled (a checkpoint either way)."""
        if self.satisfied:
            self.filled = True
            await trio.lowlevel.checkpoint()
            return
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class Hedge:
    """The timer entry of a hedged wait: when it expires, fewer replies will do.

    A hedged CRDT read waits for every server at first, as any read does, so a
    healthy fleet costs it nothing more; the pool's timer expires this entry a
    few reply times after the send, and from then on ``need`` successful
    replies end the wait (:meth:`Waiter.hedge`): a server that late is hung or
    overloaded, and the read does without it.

    Args:
        waiter: The fan-out's waiter.
        need: The successful replies that end the wait once it expires.
    """

    __slots__ = ("_need", "_waiter")

    def __init__(self, waiter: Waiter, need: int) -> None:
        self._waiter = waiter
        self._need = need

    @property
    def filled(self) -> bool:
        """Whether the wait is over (the timer then drops the entry)."""
        return self._waiter.filled

    def expire(self) -> None:
        """Its time is up: lower the waiter's need."""
        self._waiter.hedge(self._need)


class Cutoff:
    """A timer entry that ends a wait early unless what has arrived so far will do.

    A CRDT digest read waits for every server up to its deadline when the
    replies in by half of it agree (the full copy came, and each digest so far
    matches it): the servers still to answer may only confirm that state, and
    count if they do. When they do not agree, the read needs the rest of its
    deadline for a second round of full reads, and this entry ends the wait.

    Args:
        waiter: The fan-out's waiter.
        slots: The fan-out's entries, in its targets' order (a :class:`Slot`, or
            the error of a server it could not send to, or ``None``).
        done: Called with the replies in so far, in that order (``None`` for a
            server that has not replied, or failed); True ends the wait.
    """

    __slots__ = ("_done", "_slots", "_waiter")

    def __init__(
        self,
        waiter: Waiter,
        slots: Sequence[Slot | BaseException | None],
        done: Callable[[list[Any]], bool],
    ) -> None:
        self._waiter = waiter
        self._slots = slots
        self._done = done

    @property
    def filled(self) -> bool:
        """Whether the wait is over (the timer then drops the entry)."""
        return self._waiter.filled

    def expire(self) -> None:
        """Its time is up: end the wait unless what arrived agrees."""
        got = [s.value if type(s) is Slot and s.state is DONE else None for s in self._slots]
        try:
            agree = not self._done(got)
        except Exception:  # a bug in the check must not stop the pool's timer
            logger.exception("a fan-out's cutoff check failed")
            agree = False
        if not agree:
            self._waiter.expire()


# --------------------------------------------------------------------------- transports


class _Transport:
    """Byte transport beneath a connection."""

    __slots__ = ()

    def send_nowait(self, data: bytes) -> int:
        """Send what can be sent without blocking; return the count sent."""
        return 0

    async def send_all(self, data: bytes) -> None:
        raise NotImplementedError

    async def receive_some(self) -> bytes:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def close_now(self) -> None:
        """Close without waiting (used when a connection breaks)."""


class _SocketTransport(_Transport):
    """A plain TCP or unix socket driven directly with trio's I/O primitives.

    Owning the non-blocking socket lets a caller on an idle connection send its
    command synchronously, saving a task switch on every sequential command.
    """

    __slots__ = ("_closed", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False

    def send_nowait(self, data: bytes) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        sock = self._sock
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                if self._closed:  # trio cannot wait on a closed socket (ValueError)
                    raise trio.ClosedResourceError("the connection was closed") from None
                await trio.lowlevel.wait_writable(sock)
                continue
            view = view[sent:]
        await trio.lowlevel.checkpoint_if_cancelled()

    async def receive_some(self) -> bytes:
        sock = self._sock
        while True:
            if self._closed:  # trio cannot wait on a closed socket (ValueError)
                raise trio.ClosedResourceError("the connection was closed")
            await trio.lowlevel.wait_readable(sock)
            try:
                return sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                continue

    def close_now(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()


class _StreamTransport(_Transport):
    """Any trio stream: TLS, or an in-memory stream in tests."""

    __slots__ = ("_stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def receive_some(self) -> bytes:
        return bytes(await self._stream.receive_some(RECEIVE_SIZE))

    def close_now(self) -> None:
        # SSLStream has no synchronous close; closing the socket beneath is enough.
        stream: Any = self._stream
        inner = getattr(stream, "transport_stream", stream)
        sock = getattr(inner, "socket", None)
        if sock is not None:
            with contextlib.suppress(Exception):  # best effort: it may not be registered
                trio.lowlevel.notify_closing(sock)
            sock.close()
            return
        # In-memory streams (trio.testing) close synchronously, half by half.
        for half in (getattr(inner, "send_stream", None), getattr(inner, "receive_stream", None)):
            close = getattr(half, "close", None)
            if callable(close):
                close()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


# --------------------------------------------------------------------------- connection


def _broken_error(label: str, cause: BaseException | str) -> ServerUnavailable:
    return ServerUnavailable(f"connection to {label} lost: {cause}")


class Connection:
    """A multiplexed connection; create it with :func:`connect` or :func:`open_connection`.

    Concurrent tasks may call :meth:`execute` at once; their commands are
    pipelined on the one socket. Run :meth:`run` in a nursery to start the
    reader and writer tasks (:func:`open_connection` does that for you).
    """

    def __init__(
        self,
        transport: _Transport,
        parser: Parser,
        spec: ServerSpec,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        busy_poll: float = DEFAULT_BUSY_POLL,
    ) -> None:
        self.spec = spec
        #: How long :meth:`execute`, alone on the idle connection, polls the
        #: socket for its reply before it sleeps (see :data:`DEFAULT_BUSY_POLL`).
        self.busy_poll = check_busy_poll(busy_poll)
        self.label = spec.label
        self._transport = transport
        self._parser = parser
        # A run of pipelined bulk replies taken at once (RespParser.next_bulks).
        self._take_bulks: Callable[[int], list[bytes]] | None = getattr(parser, "next_bulks", None)
        self._pending: deque[Slot] = deque()
        self._wbuf: list[bytes] = []
        self._unsent = 0  # slots at the tail of _pending whose bytes are still in _wbuf
        self._writing = False
        self._writer_task: trio.lowlevel.Task | None = None
        # Whether submit(early=True) may send now: a plain socket, which took
        # all of the last such send (else the writer task sends, then it may).
        self._can_flush = isinstance(transport, _SocketTransport)
        self._flush_ok = self._can_flush
        self._error: ServerUnavailable | None = None
        self._max_pending = check_max_pending(max_pending)
        self._stall_timeout = check_stall_timeout(stall_timeout)
        self._space = trio.lowlevel.ParkingLot()
        self._cancel_scope: trio.CancelScope | None = None
        self._done = trio.Event()
        self.on_push: Callable[[Push], None] | None = None
        # The solo read (see the module notes). _sock is set by the reader task
        # when it starts on a plain socket; None means no solo reads.
        self._sock: socket.socket | None = None
        self._solo_fd = -1  # a duplicate of the socket's fd: only solo callers wait on it
        self._owner = _READER
        self._evict: trio.CancelScope | None = None  # the reader's scope while it owns the socket
        self._recheck: trio.CancelScope | None = None  # the reader's wait while it does not
        self._recheck_timed = False  # whether that wait ends by itself
        self._solo_group: SoloGroup | None = None  # the group a solo caller reads it in
        self._solo_after = 0.0  # no solo reads before then (see can_solo)
        self._spinner = _Spinner()

    # -- state

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed or broken."""
        return self._error is not None

    @property
    def pending(self) -> int:
        """How many replies are outstanding."""
        return len(self._pending)

    @property
    def oldest_pending_age(self) -> float:
        """Seconds since the oldest outstanding request was queued (0 if none)."""
        if not self._pending:
            return 0.0
        return trio.current_time() - self._pending[0].sent_at

    def __repr__(self) -> str:
        state = "closed" if self._error is not None else "open"
        return f"<Connection {self.label} {state} pending={len(self._pending)}>"

    # -- submitting

    @_ki_protected
    def submit(
        self,
        data: bytes,
        waiter: Waiter | None,
        index: int = 0,
        now: float | None = None,
        *,
        solo: bool = False,
        early: bool = False,
    ) -> Slot:
        """Queue an encoded command without blocking and return its slot.

        The slot is in the reply FIFO and its bytes are on their way before this
        returns; nothing the caller does afterwards can misalign the stream. If
        the connection is broken or full, the slot comes back already failed
        (and ``waiter`` does not count it); otherwise ``waiter`` expects it.
        ``now`` saves a clock read when the caller already has the time.
        ``solo=True``: the caller will try :meth:`take_solo` next, and call
        :meth:`ensure_reader` if it does not read solo after all; otherwise the
        reader task is made sure to read the reply. ``early=True`` (a script:
        long work for the server): once :data:`FLUSH_AT` commands wait for the
        writer task, they are sent now.
        """
        if not solo and self._owner is _NOBODY:
            self.ensure_reader()
        if now is None:
            now = trio.current_time()
        pending = self._pending
        if self._error is not None or len(pending) >= self._max_pending:
            # Failed before it was queued: the waiter has nothing to expect from it.
            slot = Slot(None, index, now)
            slot.fail(
                self._error
                or ServerUnavailable(
                    f"{self.label}: {len(pending)} requests outstanding (backlog full)"
                )
            )
            return slot
        slot = Slot(waiter, index, now)
        if waiter is not None:
            waiter.expect()
        idle = not pending
        pending.append(slot)
        if idle and not self._writing and not self._wbuf:
            try:
                sent = self._transport.send_nowait(data)
            except OSError as exc:
                self._break(_broken_error(self.label, exc))
                return slot
            if sent == len(data):
                return slot
            data = data[sent:]
        self._wbuf.append(data)
        self._unsent += 1
        if early and self._unsent >= FLUSH_AT and self._flush_ok and not self._writing:
            self._flush_now()
            if self._error is not None or not self._wbuf:
                return slot
        task = self._writer_task
        if task is not None:
            self._writer_task = None
            trio.lowlevel.reschedule(task)
        return slot

    @_ki_protected
    def _flush_now(self) -> None:
        """Send what the write buffer holds without blocking (see :data:`FLUSH_AT`).

        What the socket does not take stays in the buffer for the writer task,
        and every command not wholly sent still counts as unsent (:meth:`_break`):
        a server runs no command it has only part of.
        """
        wbuf = self._wbuf
        data = b"".join(wbuf)
        try:
            sent = self._transport.send_nowait(data)
        except OSError as exc:
            self._break(_broken_error(self.label, exc))
            return
        if sent == len(data):
            wbuf.clear()
            self._unsent = 0
            return
        self._flush_ok = False  # the socket is full: the writer waits for it
        if not sent:
            wbuf[:] = [data]
            return
        rest = len(data) - sent
        unsent = 0
        for chunk in reversed(wbuf):  # the commands with bytes in what is left
            if rest <= 0:
                break
            rest -= len(chunk)
            unsent += 1
        wbuf[:] = [data[sent:]]
        self._unsent = unsent

    async def execute(self, *args: Any, timeout: float | None = None) -> Any:
        """Run one command and return its reply.

        Args:
            *args: The command and its arguments.
            timeout: Seconds from the call to the reply, a wait for room in a
                full backlog (``max_pending``) included (``None``: no limit
                beyond the connection's stall detection).

        Raises:
            ReplyError: The server answered with an error.
            ServerTimeout: No reply before ``timeout``; the reply will be discarded.
                Or no room in the backlog before it: nothing was sent (the
                message says so).
            ServerUnavailable: The connection is closed or broke.
            UnsupportedCommand: The command's replies are not one per command
                (``SUBSCRIBE``, ``MONITOR``...); nothing was sent.
            ConfigurationError: ``timeout`` is not ``None`` or a positive finite
                number; nothing was sent.
        """
        check_dedicated(args)
        if timeout is not None:
            seconds = finite_seconds(timeout)
            if seconds is None:
                # Checked before the send: trio's own check came after it, and
                # left the connection to a solo reader that never read.
                raise ConfigurationError(
                    f"timeout must be None or a positive finite number, got {timeout!r}"
                )
            timeout = seconds
        data = encode_command(args)
        # Trio's rule: a call that raises Cancelled did nothing. Past this point
        # the command is queued, and a cancellation only stops the waiting.
        await trio.lowlevel.checkpoint_if_cancelled()
        left = timeout  # of the timeout, which counts from the call
        if len(self._pending) >= self._max_pending and self._error is None:
            left = await self._wait_for_room(timeout)
        waiter = Waiter(1)
        slot = self.submit(data, waiter, solo=True)
        if slot.state is WAITING:
            if self.take_solo(slot):
                try:
                    if left is None:
                        await self.read_solo(slot, self.busy_poll)
                    else:
                        with trio.move_on_after(left):
                            await self.read_solo(slot, self.busy_poll)
                finally:
                    # read_solo releases the socket itself; this covers anything
                    # that could fail before it runs.
                    self.release_solo(slot)
            else:
                self.ensure_reader()
                if left is None:
                    await waiter.wait()
                else:
                    with trio.move_on_after(left):
                        await waiter.wait()
        else:
            await trio.lowlevel.checkpoint()
        if slot.state is DONE:
            value = slot.value
            if isinstance(value, (ReplyError, ReplyTooLarge)):
                raise value
            return value
        if slot.state is FAILED:
            raise slot.value
        slot.detach()
        raise ServerTimeout(f"{self.label} did not reply within {timeout} s")

    async def _wait_for_room(self, timeout: float | None) -> float | None:
        """Wait until the backlog has room (or the connection broke), for :meth:`execute`.

        Returns:
            What is left of ``timeout``, which counts from the call.

        Raises:
            ServerTimeout: ``timeout`` passed first; nothing was sent.
        """
        space = self._space
        if timeout is None:
            while len(self._pending) >= self._max_pending and self._error is None:
                await space.park()
            return None
        deadline = trio.current_time() + timeout
        with trio.move_on_at(deadline):
            while len(self._pending) >= self._max_pending and self._error is None:
                await space.park()
        left = deadline - trio.current_time()
        if left <= 0 and self._error is None:
            raise timeout_before_send(
                f"{self.label}: no room for the command within {timeout} s"
                f" ({len(self._pending)} requests outstanding); nothing was sent"
            )
        return max(left, 0.0)

    # -- solo reads

    def can_solo(self, slot: Slot) -> bool:
        """Whether the caller of ``slot`` may read its own reply (:meth:`take_solo`).

        True when ``slot`` is the only one outstanding, its bytes are all sent,
        and no caller found others queued behind it in the last
        :data:`SOLO_RECHECK` seconds: under concurrent load the reader task
        serves everyone, and handing the socket to and fro would cost more
        than it saves.
        """
        return not (
            self._solo_fd < 0
            or self._owner is _SOLO
            or self._error is not None
            or self._unsent
            or self._writing
            or len(self._pending) != 1
            or self._pending[0] is not slot
            or slot.sent_at < self._solo_after
        )

    @_ki_protected
    def ensure_reader(self) -> None:
        """Make sure the reader task reads the socket (after a solo read left it idle)."""
        if self._owner is _NOBODY:
            self._owner = _READER
            wait = self._recheck
            if wait is not None:
                wait.cancel()

    @_ki_protected
    def take_solo(self, slot: Slot) -> bool:
        """Let the caller of ``slot`` read its own reply, if it is alone on the connection.

        True when :meth:`can_solo`; the socket's read side is then taken from
        the reader (or nobody held it), and the caller must await
        :meth:`read_solo` at once.
        """
        if not self.can_solo(slot):
            return False
        if self._owner is _READER:
            scope = self._evict
            if scope is not None:
                # Aborts the reader's wait on the socket synchronously; it checks
                # the owner before every recv, so it never reads behind our back.
                scope.cancel()
        self._owner = _SOLO
        return True

    @_ki_protected
    async def read_solo(self, slot: Slot, busy_poll: float = 0.0) -> None:
        """Read from the socket until ``slot`` is settled (after :meth:`take_solo`).

        Returns early when :meth:`interrupt_solo` is called (the slot is then
        still waiting). Cancellation (or a timeout around it) stops only the
        waiting, as with a :class:`Waiter`. Either way the slot stays in the
        FIFO and the reader task, to which the socket goes back, reads and
        drops its reply.

        ``busy_poll``: first poll the socket for up to this many seconds
        (when no other task is runnable, see :data:`DEFAULT_BUSY_POLL`); a
        reply that comes meanwhile costs one pass through the scheduler and
        no sleep. Always a schedule point.
        """
        try:
            spinner = self._spinner
            if spinner.allowed(busy_poll):
                end = _perf_counter() + busy_poll
                while True:
                    self._solo_recv()
                    if slot.state is not WAITING or self._solo_fd < 0:
                        break
                    if _perf_counter() >= end:
                        break
                spinner.outcome(slot.state is not WAITING)
                if slot.state is not WAITING:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return
            while slot.state is WAITING:
                fd = self._solo_fd
                if fd < 0:  # closed: _break has failed the slot
                    return
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError:
                    return  # interrupt_solo(), or _break (which failed the slot)
                self._solo_recv()
        finally:
            self.release_solo(slot)

    @_ki_protected
    def _solo_recv(self) -> None:
        """One non-blocking ``recv`` for a solo caller, and the slots it fills."""
        sock = self._sock
        if sock is None or self._error is not None:
            return
        try:
            data = sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._break(_broken_error(self.label, exc))
            return
        if not data:
            self._break(_broken_error(self.label, "closed by the server"))
            return
        try:
            self._received(data)
        except Exception as exc:  # a broken reply stream: as when the reader meets it
            self._break(_first_redisha_error(exc, self.label) or _broken_error(self.label, exc))

    @_ki_protected
    def release_solo(self, slot: Slot) -> None:
        """The solo caller of ``slot`` leaves; the reader gets the socket back (at once if owed)."""
        if self._owner is _SOLO:
            self._solo_group = None
            wait = self._recheck
            pending = self._pending
            if pending and self._error is None:
                self._owner = _READER  # replies still owed: the reader reads them
                if wait is not None:
                    wait.cancel()
                if len(pending) > 1 or pending[0] is not slot:
                    # Others queued behind us: the reader serves everyone for a while.
                    self._solo_after = trio.current_time() + SOLO_RECHECK
            else:
                self._owner = _NOBODY
                if wait is not None and not self._recheck_timed:
                    wait.cancel()  # the reader waits untimed for us to leave

    @_ki_protected
    def interrupt_solo(self) -> None:
        """Make the caller in :meth:`read_solo` return now (the pool's deadline passed).

        The solo caller waits on a duplicate of the socket's descriptor that
        nothing else waits on, so :func:`trio.lowlevel.notify_closing` on it
        wakes exactly that caller, without a cancel scope per call (which
        would cost more than the trip through the scheduler a solo read saves).
        A caller reading several connections at once (:class:`SoloGroup`) is
        woken to look at them again.
        """
        if self._owner is _SOLO:
            if self._solo_group is not None:
                self._solo_group.wake()
            elif self._solo_fd >= 0:
                trio.lowlevel.notify_closing(self._solo_fd)

    # -- running

    @_ki_protected
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader and writer until the connection closes or breaks.

        Returns normally when closed with :meth:`aclose`; raises
        :class:`ServerUnavailable` (or :class:`ProtocolError`) when the
        connection broke. Every outstanding slot is failed before it returns.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._cancel_scope = nursery.cancel_scope
                if self._error is not None:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._watchdog)
                task_status.started()
        except BaseException as exc:
            if is_cancellation(exc):
                self._break(PoolClosed(f"connection to {self.label} closed"))
                raise
            # Closed on purpose: the tasks' failures on the closed socket are expected.
            closed = isinstance(self._error, PoolClosed)
            err = _first_redisha_error(exc, self.label)
            self._break(err if err is not None else _broken_error(self.label, exc))
            if err is None:
                raise
            if not closed:
                raise err from None
        finally:
            self._break(PoolClosed(f"connection to {self.label} closed"))
            self._close_solo_fd()  # after _break: a solo caller wakes to a settled slot
            self._transport.close_now()
            self._done.set()
        if self._error is not None and not isinstance(self._error, PoolClosed):
            raise self._error

    @_ki_protected
    def _break(self, error: ServerUnavailable) -> None:
        """Fail every outstanding slot at once and stop the tasks."""
        if self._error is None:
            self._error = error
        pending = self._pending
        # Slots whose bytes never left the write buffer cannot have been applied.
        sent_count = len(pending) - self._unsent
        self._unsent = 0
        error_type = PoolClosed if isinstance(self._error, PoolClosed) else ServerUnavailable
        while pending:
            exc = error_type(str(self._error))
            exc.sent = sent_count > 0
            sent_count -= 1
            pending.popleft().fail(exc)
        self._wbuf.clear()
        self._space.unpark_all()
        self.interrupt_solo()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    @_ki_protected
    def close_now(self) -> None:
        """Close immediately: waiters get :class:`PoolClosed`."""
        self._break(PoolClosed(f"connection to {self.label} closed"))
        self._transport.close_now()

    async def aclose(self) -> None:
        """Close the connection; outstanding callers get :class:`PoolClosed`."""
        self.close_now()
        await trio.lowlevel.checkpoint()

    @_ki_protected
    def _received(self, data: bytes) -> None:
        """Parse ``data`` and fill the slots at the head of the FIFO, in order."""
        parser = self._parser
        pending = self._pending
        parser.feed(data)
        now = trio.current_time()
        bulks = self._take_bulks
        while True:
            if bulks is not None and len(pending) >= _BULK_RUN_MIN:
                # Many replies owed, as under concurrent load: a run of bulk
                # strings (GET, HGET...) is framed in a few C passes, not one by one.
                run = bulks(len(pending))
                if run:
                    for reply in run:
                        pending.popleft().fill(reply, now)
                    continue
            reply = parser.next_reply()  # ProtocolError propagates and breaks us
            if reply is NEED_DATA:
                break
            if type(reply) is Push:
                if self.on_push is not None:
                    self.on_push(reply)
                continue
            if not pending:
                raise ProtocolError(f"{self.label} sent a reply nobody asked for")
            pending.popleft().fill(reply, now)
        if self._space and len(pending) < self._max_pending:
            self._space.unpark_all()

    @_ki_protected
    async def _reader(self) -> None:
        transport = self._transport
        if type(transport) is _SocketTransport and not transport._closed:
            self._sock = transport._sock
            try:
                self._solo_fd = os.dup(self._sock.fileno())  # solo reads allowed from now on
            except OSError:  # out of descriptors: every read goes through this task
                self._solo_fd = -1
        timed = True
        while True:
            owner = self._owner
            if owner is _READER:
                with trio.CancelScope() as scope:
                    self._evict = scope
                    await self._read_while_owner()
                self._evict = None
                timed = True
            elif owner is _NOBODY:
                self._owner = _READER  # idle since a solo read: watch the socket again
            else:
                # A caller reads solo. Look again after SOLO_RECHECK (callers
                # reading one after the other do not wake us per command); if one
                # is still reading then, wait untimed until it leaves (nothing
                # ticks while a solo caller waits on a silent server). read_solo
                # wakes us at once when it leaves replies owed.
                with trio.CancelScope() as wait:
                    if timed:
                        wait.deadline = trio.current_time() + SOLO_RECHECK
                    self._recheck = wait
                    self._recheck_timed = timed
                    await trio.sleep_forever()
                self._recheck = None
                timed = not timed

    def _close_solo_fd(self) -> None:
        fd = self._solo_fd
        if fd >= 0:
            self._solo_fd = -1
            trio.lowlevel.notify_closing(fd)  # a solo caller still waiting wakes up
            os.close(fd)

    @_ki_protected
    async def _read_while_owner(self) -> None:
        """The reader's loop; returns when a solo caller took the socket."""
        transport = self._transport
        sock = self._sock
        while True:
            try:
                if sock is None:
                    data = await transport.receive_some()
                else:
                    if sock.fileno() < 0:  # trio cannot wait on a closed socket
                        raise trio.ClosedResourceError("the connection was closed")
                    await trio.lowlevel.wait_readable(sock)
                    if self._owner is not _READER:
                        return  # a solo caller took the socket while we were woken
                    try:
                        data = sock.recv(RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _broken_error(self.label, exc) from None
            if not data:
                raise _broken_error(self.label, "closed by the server")
            self._received(data)

    @_ki_protected
    async def _writer(self) -> None:
        transport = self._transport
        while True:
            if not self._wbuf:
                self._writer_task = trio.lowlevel.current_task()

                def abort(_: Any) -> trio.lowlevel.Abort:
                    self._writer_task = None
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)
                continue
            data = self._wbuf[0] if len(self._wbuf) == 1 else b"".join(self._wbuf)
            self._wbuf.clear()
            self._unsent = 0
            self._writing = True
            try:
                await transport.send_all(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _broken_error(self.label, exc) from None
            finally:
                self._writing = False
            self._flush_ok = self._can_flush

    @_ki_protected
    async def _watchdog(self) -> None:
        limit = self._stall_timeout
        while True:
            await trio.sleep(limit / 4)
            age = self.oldest_pending_age
            if age > limit:
                raise ServerTimeout(
                    f"{self.label} has not answered for {age:.1f} s; closing the connection"
                )


class SoloGroup:
    """Reads one fan-out's replies from several idle connections in the calling task.

    The solo read of :class:`Connection`, for a caller alone on several
    connections at once: their solo descriptors join one ``epoll`` set and the
    caller waits on that set, once per batch of arrivals, instead of each
    connection's reader task waking up and then waking the caller. Each reply
    is taken when the set reports it, so its latency is measured as the
    readers would. One caller at a time (:attr:`busy`); Linux only
    (:func:`solo_group` returns None elsewhere).
    """

    __slots__ = ("_closed", "_epoll", "_expired", "_spinner", "busy")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._spinner = _Spinner()
        self.busy = False
        self._expired = False
        self._closed = False

    @_ki_protected
    def interrupt_solo(self) -> None:
        """The caller's deadline passed: :meth:`read` returns now."""
        if self.busy:
            self._expired = True
            self.wake()

    @_ki_protected
    def wake(self) -> None:
        """Make :meth:`read` look at its connections again (one of them broke)."""
        if self.busy and not self._closed:
            trio.lowlevel.notify_closing(self._epoll.fileno())

    @_ki_protected
    def close(self) -> None:
        """Release the ``epoll`` set (a caller still in :meth:`read` returns)."""
        if not self._closed:
            self.wake()
            self._closed = True
            self._epoll.close()

    @_ki_protected
    async def read(
        self,
        pairs: Sequence[tuple[Connection, Slot]],
        busy_poll: float = 0.0,
        waiter: Waiter | None = None,
    ) -> bool:
        """Read until every slot is settled (or ``waiter`` is satisfied), the
        deadline passes or the group closes.

        Each connection must have been taken with :meth:`Connection.take_solo`
        for its slot; each is released when this returns, as by
        :meth:`Connection.read_solo`, which this matches on cancellation too,
        and on ``busy_poll``. Connections whose replies are still owed then go
        back to their readers (a hedged read that had enough).

        Returns:
            False if the set could not be built: the connections went back to
            their readers, which read what polling (``busy_poll``) did not.
        """
        epoll = self._epoll
        watched: dict[int, Connection] = {}
        self.busy = True
        self._expired = False
        try:
            for conn, _ in pairs:
                conn._solo_group = self
            spinner = self._spinner
            if spinner.allowed(busy_poll):
                # Polling tries a non-blocking recv on each connection still
                # owing its reply: no epoll registration (two syscalls per
                # connection) for the common read that ends here.
                end = _perf_counter() + busy_poll
                while True:
                    settled = True
                    for conn, slot in pairs:
                        if slot.state is WAITING:
                            conn._solo_recv()
                            if slot.state is WAITING:
                                settled = False
                    if settled or (waiter is not None and waiter.satisfied):
                        settled = True
                        break
                    if self._closed or _perf_counter() >= end:
                        break
                spinner.outcome(settled)
                if settled:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return True
            # Each connection stays in the set until the end: once its slot is
            # settled, more data on it is another caller's reply, which filling
            # in FIFO order (as its reader would) is right too.
            try:
                for conn, _ in pairs:
                    fd = conn._solo_fd
                    epoll.register(fd, select.EPOLLIN)
                    watched[fd] = conn
            except (OSError, ValueError):
                return False
            while True:
                if waiter is not None and waiter.satisfied:
                    return True
                for _, slot in pairs:
                    if slot.state is WAITING:
                        break
                else:
                    return True
                try:
                    await trio.lowlevel.wait_readable(epoll)
                except trio.ClosedResourceError:
                    if self._expired or self._closed:
                        return True
                    continue  # a connection broke: its slot has failed
                for fd, _ in epoll.poll(0):
                    ready = watched.get(fd)
                    if ready is not None:
                        ready._solo_recv()
        finally:
            for fd in watched:
                with contextlib.suppress(OSError, ValueError):
                    epoll.unregister(fd)
            for conn, slot in pairs:
                conn.release_solo(slot)
            self.busy = False


def solo_group() -> SoloGroup | None:
    """A :class:`SoloGroup`, or None where there is no ``epoll`` (not Linux)."""
    return SoloGroup() if hasattr(select, "epoll") else None


def _first_redisha_error(exc: BaseException, label: str) -> ServerUnavailable | None:
    """Find the error that broke ``label``'s connection inside a (possibly grouped) exception."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _first_redisha_error(sub, label)
            if found is not None:
                return found
        return None
    if isinstance(exc, ServerUnavailable):
        return exc
    if isinstance(exc, RedisHAError):
        # Named as every other break is ("connection to <label> lost: ...").
        err = _broken_error(label, f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err
    return None


# --------------------------------------------------------------------------- connecting


def _handshake_commands(spec: ServerSpec) -> list[tuple[str, Sequence[Any]]]:
    """The commands sent on every (re)connect, each with a label for errors."""
    commands: list[tuple[str, Sequence[Any]]] = []
    if spec.protocol == 3:
        hello: list[Any] = ["HELLO", 3]
        if spec.password is not None:
            hello += ["AUTH", spec.username or "default", spec.password]
        if spec.client_name:
            hello += ["SETNAME", spec.client_name]
        commands.append(("HELLO", hello))
    else:
        if spec.password is not None:
            if spec.username:
                commands.append(("AUTH", ["AUTH", spec.username, spec.password]))
            else:
                commands.append(("AUTH", ["AUTH", spec.password]))
        if spec.client_name:
            commands.append(("CLIENT SETNAME", ["CLIENT", "SETNAME", spec.client_name]))
    if spec.db:
        commands.append(("SELECT", ["SELECT", spec.db]))
    # A PING proves the server is alive: the kernel accepts TCP connections for
    # a frozen (SIGSTOP'd) process, so a bare connect proves nothing.
    commands.append(("PING", ["PING"]))
    return commands


async def _open_transport(spec: ServerSpec) -> _Transport:
    if spec.path is not None:
        stream = await trio.open_unix_socket(spec.path)
    else:
        assert spec.host is not None
        stream = await trio.open_tcp_stream(spec.host, spec.port)
    if spec.tls:
        ctx = spec.ssl_context or ssl.create_default_context()
        ssl_stream = trio.SSLStream(stream, ctx, server_hostname=spec.host)
        try:
            await ssl_stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(ssl_stream)
            raise
        return _StreamTransport(ssl_stream)
    tsock = stream.socket
    family, type_, proto = tsock.family, tsock.type, tsock.proto
    fd = tsock.detach()
    return _SocketTransport(socket.socket(family, type_, proto, fileno=fd))


async def _handshake(transport: _Transport, parser: Parser, spec: ServerSpec) -> None:
    commands = _handshake_commands(spec)
    await transport.send_all(b"".join(encode_command(args) for _, args in commands))
    replies: list[Any] = []
    data = b""
    while len(replies) < len(commands):
        data = await transport.receive_some()
        if not data:
            raise ServerUnavailable(f"{spec.label} closed the connection during the handshake")
        parser.feed(data)
        while len(replies) < len(commands):
            reply = parser.next_reply()
            if reply is NEED_DATA:
                break
            if type(reply) is Push:
                continue
            replies.append(reply)
    for (name, _), reply in zip(commands, replies, strict=True):
        if isinstance(reply, ReplyError):
            if reply.code == "NOAUTH" or (
                name in ("AUTH", "HELLO") and reply.code in ("WRONGPASS", "NOPERM")
            ):
                raise AuthenticationError(f"{spec.label} refused the credentials: {reply.code}")
            if name == "HELLO" and reply.code == "NOPROTO":
                raise ServerUnavailable(f"{spec.label} does not speak RESP3 (HELLO failed)")
            # A server's error text may echo the command back ("unknown command
            # 'HELLO', with args beginning with: ... 'AUTH' 'user' 'secret'"):
            # for a command that carried credentials, only the code is shown.
            secret = spec.password is not None and name in ("AUTH", "HELLO")
            detail = f"{reply.code} (details withheld: the command carried credentials)"
            raise ServerUnavailable(
                f"{spec.label}: {name} failed during the handshake: "
                + (detail if secret else str(reply))
            )
    if spec.protocol == 2 and spec.password is None:
        ping = replies[-1]
        if isinstance(ping, ReplyError):  # pragma: no cover - handled above
            raise ping
    _check_nothing_more(parser, data, spec)


def _check_nothing_more(parser: Parser, last: bytes, spec: ServerSpec) -> None:
    """Refuse a server that sent more than the handshake's replies (and pushes).

    The connection goes on with this parser, so a reply buffered behind the
    PING's would be handed to its first caller. Only a push may follow (the
    connection handles it as any push), whole or in part.

    Args:
        parser: The handshake's parser, past the handshake's replies.
        last: The last bytes received: every byte after the PING's reply is in
            them, since that reply ended in them.
        spec: The server.

    Raises:
        ServerUnavailable: A reply, or part of one, that no command asked for.
    """
    while True:
        reply = parser.next_reply()
        if reply is NEED_DATA:
            break
        if type(reply) is not Push:
            raise ServerUnavailable(
                f"{spec.label} sent a reply nobody asked for during the handshake"
            )
    # An incomplete reply stays buffered: it must be the start of a push.
    rest = getattr(parser, "buffered", 0)
    if rest and last[-rest:][:1] != b">":
        raise ServerUnavailable(
            f"{spec.label} sent part of a reply nobody asked for during the handshake"
        )


class SpecOptions(ServerOptions, total=False):
    """What :func:`connect` hands on to :func:`~trio_redisha.config.parse_server`."""

    ssl_context: ssl.SSLContext | None


class ConnectOptions(SpecOptions, total=False):
    """The options of :func:`connect`, which :func:`open_connection` hands on.

    For type checkers: a misspelled option is reported where it is written.
    """

    limits: Limits
    use_hiredis: bool | None
    max_pending: int
    stall_timeout: float
    busy_poll: float


async def connect(
    server: str | tuple[str, int] | ServerSpec,
    *,
    limits: Limits = DEFAULT_LIMITS,
    use_hiredis: bool | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    busy_poll: float = DEFAULT_BUSY_POLL,
    **spec_options: Unpack[SpecOptions],
) -> Connection:
    """Open a socket to one server and run the handshake (HELLO/AUTH/SELECT/SETNAME/PING).

    The returned connection does nothing until :meth:`Connection.run` runs in a
    nursery. Most code wants :func:`open_connection` or a pool instead.

    Args:
        server: A URL, ``(host, port)`` or a parsed spec.
        limits: The reply parser's limits.
        use_hiredis: Deprecated; the pure parser is always used.
        max_pending: Outstanding requests before callers must wait.
        stall_timeout: Seconds without an answer to the oldest request after
            which the connection is closed.
        busy_poll: Seconds :meth:`Connection.execute`, alone on the idle
            connection, polls the socket for its reply before it sleeps
            (0: off; at most :data:`MAX_BUSY_POLL`).
        **spec_options: Passed to :func:`~trio_redisha.config.parse_server`.

    Raises:
        ServerUnavailable: The server refused, closed, or failed the handshake
            (:class:`AuthenticationError` for bad credentials): an error reply,
            bytes that are not RESP (the :class:`ProtocolError` is the cause),
            or a reply nobody asked for.
        ConfigurationError: The address is malformed, or an option out of range.
    """
    check_limits(limits)
    check_busy_poll(busy_poll)
    check_max_pending(max_pending)
    check_stall_timeout(stall_timeout)
    spec = parse_server(server, **spec_options)
    try:
        transport = await _open_transport(spec)
    except (OSError, trio.BrokenResourceError, UnicodeError) as exc:
        # UnicodeError: a host name the resolver cannot encode (a ServerSpec made
        # by hand; parse_server refuses such names).
        raise ServerUnavailable(f"cannot connect: {_describe(exc)}") from None
    return await _handshaken(
        transport, spec, limits, use_hiredis, max_pending, stall_timeout, busy_poll
    )


async def connect_stream(
    stream: trio.abc.Stream,
    server: str | tuple[str, int] | ServerSpec,
    *,
    limits: Limits = DEFAULT_LIMITS,
    use_hiredis: bool | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    busy_poll: float = DEFAULT_BUSY_POLL,
    **spec_options: Unpack[SpecOptions],
) -> Connection:
    """Run the handshake over an open trio stream and return the connection.

    For transports this library does not open itself, and for tests: a
    :func:`trio.testing.memory_stream_pair` and a fake server make a pool's
    timing testable on trio's virtual clock (pass a connector using this to
    :class:`~trio_redisha.Pool`). ``server`` names the server (labels, handshake
    options); nothing is dialled.

    Raises:
        ServerUnavailable: The handshake failed, as with :func:`connect`.
        ConfigurationError: An option out of range, as with :func:`connect`.
    """
    check_limits(limits)
    check_busy_poll(busy_poll)
    check_max_pending(max_pending)
    check_stall_timeout(stall_timeout)
    spec = parse_server(server, **spec_options)
    return await _handshaken(
        _StreamTransport(stream), spec, limits, use_hiredis, max_pending, stall_timeout, busy_poll
    )


async def _handshaken(
    transport: _Transport,
    spec: ServerSpec,
    limits: Limits,
    use_hiredis: bool | None,
    max_pending: int,
    stall_timeout: float,
    busy_poll: float,
) -> Connection:
    """Run the handshake on ``transport``; the connection, or the transport closed."""
    parser = make_parser(limits, use_hiredis=use_hiredis)
    try:
        await _handshake(transport, parser, spec)
    except BaseException as exc:
        transport.close_now()
        if isinstance(exc, (OSError, trio.BrokenResourceError, trio.ClosedResourceError)):
            raise ServerUnavailable(f"handshake failed: {_describe(exc)}") from None
        if isinstance(exc, ProtocolError):
            # A failed handshake, as documented (the running connection wraps it too).
            raise ServerUnavailable(f"{spec.label}: handshake: {exc}") from exc
        raise
    return Connection(
        transport,
        parser,
        spec,
        max_pending=max_pending,
        stall_timeout=stall_timeout,
        busy_poll=busy_poll,
    )


def _describe(exc: BaseException) -> str:
    """A short cause such as "Connection refused", digging into trio's grouped errors."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        for sub in cause.exceptions:
            return _describe(sub)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    if not text and cause is not None:  # e.g. BrokenResourceError from a TLS failure
        return _describe(cause)
    return text or type(exc).__name__


@asynccontextmanager
async def open_connection(
    server: str | tuple[str, int] | ServerSpec,
    *,
    connect_timeout: float = 5.0,
    **options: Unpack[ConnectOptions],
) -> AsyncIterator[Connection]:
    """Connect to one server and run the connection for the block's duration.

    Example::

        async with open_connection("redis://localhost:6379") as conn:
            await conn.execute("SET", "k", "v")

    Args:
        server: A URL or ``(host, port)``.
        connect_timeout: Seconds allowed for connecting and the handshake.
        **options: Passed to :func:`connect`.

    Raises:
        ServerUnavailable: As :func:`connect`, or no answer within ``connect_timeout``.
    """
    try:
        with trio.fail_after(connect_timeout):
            conn = await connect(server, **options)
    except trio.TooSlowError:
        raise ServerUnavailable(f"cannot connect: no answer within {connect_timeout} s") from None
    async with open_owned_nursery() as nursery:
        nursery.start_soon(_run_quietly, conn)
        try:
            yield conn
        finally:
            conn.close_now()
            nursery.cancel_scope.cancel()


async def _run_quietly(conn: Connection) -> None:
    try:
        await conn.run()
    except RedisHAError as exc:
        logger.warning("%s", exc)
