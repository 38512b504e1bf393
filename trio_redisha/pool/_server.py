"""What the pool knows about one server: a synchronous state machine, no I/O.

Every fact about a server's health changes here, through named transitions,
so the fan-out path and the upkeep tasks (``_upkeep.py``) never edit fields
themselves:

.. code-block:: text

    CONNECTING --connected--> UP --timed_out (trip_after)--> SUSPECT
         |                     ^ \\                              |
         |                     |  `--disconnected--> DOWN <-----'
         `--disconnected--> DOWN --connected--'      (probe_succeeded: SUSPECT -> UP)

The circuit is open exactly when the state is ``SUSPECT``: a server whose
connection is up but that stopped answering. Commands skip it until a probe
gets an answer (``probe_succeeded``) or its connection is rebuilt.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

import trio

from .._util import quantile
from ..config import ServerSpec
from ..connection import Connection, Slot
from ..exceptions import ServerUnavailable

__all__ = ["LATENCY_SAMPLES", "ServerState", "ServerStatus"]

#: Latency samples kept per server for the p50/p99 figures.
LATENCY_SAMPLES: Final = 1024


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


class Server:
    """The pool's bookkeeping for one server.

    Args:
        index: The server's position in the pool.
        spec: Where and how to connect.
    """

    __slots__ = (
        "conn",
        "consecutive_timeouts",
        "index",
        "label",
        "last_error",
        "late_count",
        "late_slots",
        "late_wake",
        "late_watch",
        "latencies",
        "latency",
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
        self.probing = False
        # The slots that missed a call's deadline shorter than the pool's: a
        # heap of (when to judge, order, slot, that deadline) (Pool._judge_later),
        # and whether the task judging them runs.
        self.late_slots: list[tuple[float, int, Slot, float]] = []
        self.late_count = 0  # (the heap's tie-breaker)
        self.late_watch = False
        self.late_wake: trio.CancelScope | None = None  # the task's sleep, to cut short
        self.consecutive_timeouts = 0
        self.last_error: str | None = None
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        #: Moving average of the reply latency (seconds; 0.0 before any reply).
        self.latency = 0.0
        self.replies = 0

    # -- queries

    @property
    def circuit_open(self) -> bool:
        """Whether commands skip this server until a probe succeeds."""
        return self.state is ServerState.SUSPECT

    def usable(self) -> Connection | None:
        """The connection to send on, or None when the server is to be skipped."""
        return self.conn if self.state is ServerState.UP else None

    def unavailable_error(self) -> ServerUnavailable:
        """The entry a command gets in this server's place when it is skipped."""
        if self.state is ServerState.SUSPECT:
            return ServerUnavailable(
                f"{self.label}: circuit open after a timeout; skipped until a probe succeeds"
            )
        if self.state is ServerState.CONNECTING:
            return ServerUnavailable(f"{self.label}: not connected yet")
        if self.state is ServerState.CLOSED:
            return ServerUnavailable(f"{self.label}: the pool is closed")
        return ServerUnavailable(f"{self.label} is down: {self.last_error or 'not connected'}")

    def status(self) -> ServerStatus:
        """A snapshot for :meth:`Pool.status`."""
        lat = list(self.latencies)
        conn = self.conn
        return ServerStatus(
            label=self.label,
            state=self.state,
            last_error=self.last_error,
            latency_p50=quantile(lat, 0.50),
            latency_p99=quantile(lat, 0.99),
            consecutive_timeouts=self.consecutive_timeouts,
            pending=conn.pending if conn is not None else 0,
            replies=self.replies,
        )

    # -- transitions from the upkeep task

    def connected(self, conn: Connection) -> bool:
        """Record a new connection; return whether this is a recovery."""
        recovered = self.state in (ServerState.DOWN, ServerState.SUSPECT)
        self.conn = conn
        self.state = ServerState.UP
        self.consecutive_timeouts = 0
        return recovered

    def disconnected(self, error: BaseException | str) -> bool:
        """Record a lost connection or a failed attempt; return whether it was news."""
        self.conn = None
        self.last_error = str(error)
        if self.state is ServerState.CLOSED:
            return False
        news = self.state is not ServerState.DOWN
        self.state = ServerState.DOWN
        return news

    def closed(self) -> Connection | None:
        """The pool closed: forget the connection and return it, for closing."""
        conn = self.conn
        self.conn = None
        self.state = ServerState.CLOSED
        return conn

    # -- transitions from the fan-out path

    def replied(self, slot: Slot) -> None:
        """A reply arrived in ``slot`` (an error reply counts: the server answered)."""
        self.replies += 1
        lat = slot.done_at - slot.sent_at
        self.latencies.append(lat)
        self.latency = lat if not self.latency else self.latency + (lat - self.latency) * 0.25
        if self.consecutive_timeouts:
            self.consecutive_timeouts = 0

    def timed_out(self, trip_after: int) -> bool:
        """Record a timeout; return whether the circuit just opened."""
        self.consecutive_timeouts += 1
        self.last_error = "timed out"
        if (
            self.state is ServerState.UP
            and self.consecutive_timeouts >= trip_after
            and self.conn is not None
        ):
            self.state = ServerState.SUSPECT
            return True
        return False

    def probe_succeeded(self) -> bool:
        """Close the circuit after a successful probe; return whether it was open."""
        self.consecutive_timeouts = 0
        if self.state is ServerState.SUSPECT:
            self.state = ServerState.UP
            return True
        return False
