"""OpenTelemetry metrics for a pool: the database client conventions and HA signals.

Enable them by passing a meter provider to the pool (the ``otel`` extra
installs ``opentelemetry-api``; the application configures the SDK and its
exporters, e.g. Prometheus)::

    from opentelemetry import metrics
    async with open_pool(*urls, meter_provider=metrics.get_meter_provider()) as pool:
        ...

Without one the pool records nothing and imports nothing from OpenTelemetry.

What is reported (``docs/observability.md`` says what an operator does when
each moves):

* ``db.client.operation.duration`` (histogram, s): one measurement per server
  per command, with ``db.system.name``, ``server.address``, ``server.port``,
  ``db.operation.name`` and, when it failed, ``error.type`` (the Redis error
  code such as ``WRONGTYPE``, or ``ServerTimeout`` / ``ServerUnavailable``); a
  server a call did not wait for (``wait_for``, hedged reads) is measured when
  its late reply comes, or as a timeout when the watch of it ends;
* ``redisha.server.state`` (gauge): 1 for each server's current state
  (``redisha.server.state`` attribute: connecting, up, suspect, down, closed),
  0 for the others; ``redisha.server.circuit_open`` (gauge): 1 while a
  server's circuit is open;
* ``redisha.fanout.replies.expected`` and ``redisha.fanout.replies.received``
  (counters): replies asked for and replies that came in time;
* ``redisha.quorum.failures``, ``redisha.read_repairs``,
  ``redisha.replicas.divergent``, ``redisha.repair.keys_walked``,
  ``redisha.repair.keys_repaired``, ``redisha.digests.rehashed`` (counters).

The counters and gauges carry ``redisha.pool``: the pools of one provider
share its instruments and are each reported under their own number; a closed
pool is no longer reported, nor kept alive.

Only the duration histogram is recorded on the command path. The counters
and gauges are observable instruments over totals the pool keeps anyway
(:class:`~trio_redisha.pool.PoolStats`), read only when a reader collects.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from ._util import word
from .connection import DONE, FAILED, Slot
from .exceptions import ReplyError
from .pool._server import ServerState

if TYPE_CHECKING:
    from .pool import Pool, PoolStats

__all__ = ["DURATION_BUCKETS", "PoolMetrics"]

#: Histogram bucket bounds in seconds: loopback replies take tens of microseconds,
#: a deadline is half a second by default, and the stall bound is 5 s.
DURATION_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)  # fmt: skip
#: At most this many distinct (server, operation, error) attribute sets are kept;
#: beyond it the operation is reported as "other", so a stream of made-up
#: command names cannot blow up the cardinality.
MAX_ATTRIBUTE_SETS: Final = 4096

_COUNTERS: Final = (
    ("redisha.fanout.replies.expected", "replies_expected", "{reply}", "Replies asked for"),
    ("redisha.fanout.replies.received", "replies_received", "{reply}", "Replies in time"),
    ("redisha.quorum.failures", "quorum_failures", "{call}", "Calls and reads short of quorum"),
    ("redisha.read_repairs", "read_repairs", "{repair}", "Read repairs started"),
    ("redisha.replicas.divergent", "replicas_divergent", "{replica}", "Replicas found behind"),
    ("redisha.repair.keys_walked", "repair_keys_walked", "{key}", "Keys the walker read"),
    ("redisha.repair.keys_repaired", "repair_keys_repaired", "{key}", "Keys it wrote back"),
    ("redisha.digests.rehashed", "digests_rehashed", "{key}", "Old keys reads gave a digest"),
    ("redisha.reads.cached", "reads_cached", "{read}", "Reads of a cached large key"),
    ("redisha.reads.rechecked", "hedged_rechecks", "{key}", "Keys a late server made read again"),
)


class _Instruments:
    """The instruments of one meter provider, and the live pools they report on.

    A provider hands every caller of ``get_meter("trio_redisha", ...)`` the same
    meter, and a meter makes each instrument once: creating it again returns the
    first one and drops the new callbacks. So each provider gets one set of
    instruments, whose callbacks observe every live pool under its own
    ``redisha.pool`` attribute. Pools are held weakly and forgotten once closed:
    their series stop (the SDK reports only what a callback observes) and they
    can be garbage-collected.

    Args:
        meter_provider: An OpenTelemetry ``MeterProvider``.
    """

    def __init__(self, meter_provider: Any) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        from . import __version__

        meter = meter_provider.get_meter("trio_redisha", __version__)
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations, per server.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._Observation = Observation
        # Readers may collect from their own thread (a periodic exporter does).
        self._lock = threading.Lock()
        # Each number's pool, and its stats (held strongly: the counts of a pool
        # dropped before a collection saw it closed still go to its number's base).
        self._pools: dict[int, tuple[weakref.ref[PoolMetrics], PoolStats]] = {}
        # Per number, each counter's final counts of the pools that held it:
        # a number's series goes on from them, never backwards.
        self._base: dict[int, dict[str, int]] = {}

        def counter_callback(field: str) -> Any:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                base = self._base
                return [
                    Observation(
                        base.get(number, {}).get(field, 0) + getattr(pool.stats, field),
                        metrics.pool_attributes,
                    )
                    for metrics, pool, number in self._live()
                ]

            return callback

        for name, field, unit, description in _COUNTERS:
            meter.create_observable_counter(
                name, callbacks=[counter_callback(field)], unit=unit, description=description
            )
        meter.create_observable_gauge(
            "redisha.server.state",
            callbacks=[self._observe_states],
            unit="1",
            description="1 for each server's current state, 0 for the other states.",
        )
        meter.create_observable_gauge(
            "redisha.server.circuit_open",
            callbacks=[self._observe_circuits],
            unit="1",
            description="1 while a server's circuit is open (skipped until a probe answers).",
        )

    def add(self, metrics: PoolMetrics) -> int:
        """Report on ``metrics``' pool from now on; return its ``redisha.pool`` number."""
        # The smallest number no open pool holds: the SDK keeps every attribute
        # set it saw (up to its cardinality limit, 2,000 by default, past which
        # series merge into one overflow point), so numbers that only grew made
        # a process opening pools one after another lose its live pool's series.
        # A number's counters go on from the counts of the pools that held it.
        pool = metrics.pool()
        assert pool is not None  # (made by the pool's own constructor)
        with self._lock:
            self._live_locked()
            number = 1
            while number in self._pools:
                number += 1
            self._pools[number] = (weakref.ref(metrics), pool.stats)
        return number

    def _live(self) -> list[tuple[PoolMetrics, Pool, int]]:
        """The pools still open (held for this collection), with their numbers;
        the others are forgotten."""
        with self._lock:
            return self._live_locked()

    def _live_locked(self) -> list[tuple[PoolMetrics, Pool, int]]:
        live = []
        for number, (ref, stats) in list(self._pools.items()):
            metrics = ref()
            pool = None if metrics is None else metrics.pool()
            if metrics is None or pool is None or pool._closed:
                del self._pools[number]
                base = self._base.setdefault(number, {})
                for _, field, _, _ in _COUNTERS:
                    base[field] = base.get(field, 0) + getattr(stats, field)
            else:
                live.append((metrics, pool, number))
        return live

    def _observe_states(self, options: Any) -> list[Any]:
        out = []
        for metrics, pool, _ in self._live():
            for attrs, status in zip(metrics.gauge_attributes, pool.status(), strict=True):
                for state in ServerState:
                    out.append(
                        self._Observation(
                            int(status.state is state),
                            {**attrs, "redisha.server.state": state.value},
                        )
                    )
        return out

    def _observe_circuits(self, options: Any) -> list[Any]:
        return [
            self._Observation(int(status.state is ServerState.SUSPECT), attrs)
            for metrics, pool, _ in self._live()
            for attrs, status in zip(metrics.gauge_attributes, pool.status(), strict=True)
        ]


#: Each meter provider's instruments; weak, so a provider dropped is not kept.
_SHARED: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_SHARED_LOCK: Final = threading.Lock()


def _instruments(meter_provider: Any) -> _Instruments:
    """The instruments of ``meter_provider``, made by its first pool."""
    with _SHARED_LOCK:
        try:
            shared = _SHARED.get(meter_provider)
        except TypeError:  # neither hashable nor weakly referenceable: not shared
            return _Instruments(meter_provider)
        if shared is None:
            shared = _SHARED[meter_provider] = _Instruments(meter_provider)
        return shared


class PoolMetrics:
    """The instruments of one pool; the pool creates it from its ``meter_provider``.

    The pools of one provider share its instruments (see :class:`_Instruments`):
    counters and gauges carry each pool's ``redisha.pool`` number, the duration
    histogram only the server's attributes.

    Args:
        pool: The pool reported on (held weakly: the provider outlives it).
        meter_provider: An OpenTelemetry ``MeterProvider``.

    Attributes:
        pool: A weak reference to the pool.
        pool_attributes: ``{"redisha.pool": n}``, n counting the pools of the provider.
        gauge_attributes: Each server's attributes with ``redisha.pool``.
    """

    def __init__(self, pool: Pool, meter_provider: Any) -> None:
        shared = _instruments(meter_provider)
        self._record = shared.duration.record
        self.pool = weakref.ref(pool)
        self._server_attrs = [_server_attributes(label) for label in pool.servers]
        self._attrs: dict[tuple[int, Any, str | None], dict[str, Any]] = {}
        #: Slots a watcher (Pool._late_reply) measures, with their operation.
        self._watched: dict[Slot, Any] = {}
        number = shared.add(self)
        self.pool_attributes: dict[str, Any] = {"redisha.pool": number}
        self.gauge_attributes = [{**a, "redisha.pool": number} for a in self._server_attrs]

    def _attributes(self, index: int, op: Any, error: str | None) -> dict[str, Any]:
        key = (index, op, error)
        attrs = self._attrs.get(key)
        if attrs is None:
            name = word(op)
            full = len(self._attrs) >= MAX_ATTRIBUTE_SETS
            if name is None or full or not name.isascii():
                name = "other"
            attrs = {**self._server_attrs[index], "db.operation.name": name}
            if error is not None:
                # An error code is the reply's first word, which a script may
                # make up (redis.error_reply): bounded like the names.
                attrs["error.type"] = "other" if full or not error.isascii() else error
            if len(self._attrs) < MAX_ATTRIBUTE_SETS:
                self._attrs[key] = attrs
        return attrs

    def fanout(self, op: Any, targets: Sequence[int], slots: Sequence[object], end: float) -> None:
        """Record one measurement per server a command was sent to.

        A server whose reply had not come when the call returned at ``end`` is
        measured as a timeout, unless a watcher took its slot (:meth:`watching`):
        the watcher measures it then (:meth:`watched`).
        """
        record = self._record
        watched = self._watched
        for idx, slot in zip(targets, slots, strict=True):
            if type(slot) is not Slot:
                continue  # skipped: nothing was sent
            if watched and slot in watched:
                watched[slot] = op
                continue
            state = slot.state
            if state is DONE:
                value = slot.value
                error = value.code if type(value) is ReplyError else None
                record(slot.done_at - slot.sent_at, self._attributes(idx, op, error))
            elif state is FAILED:
                error = type(slot.value).__name__
                record(end - slot.sent_at, self._attributes(idx, op, error))
            else:
                record(end - slot.sent_at, self._attributes(idx, op, "ServerTimeout"))

    def watching(self, slot: Slot) -> None:
        """A watcher took ``slot``, before the call's :meth:`fanout`: that leaves it."""
        self._watched[slot] = None

    def watched(self, slot: Slot, ended: bool) -> None:
        """The watch of ``slot`` is over; ``ended``: it was not cut short by the close.

        Measured once: the late reply (or error), else a timeout at the watch's
        deadline. A watch cancelled by the pool's close has no outcome to measure.
        """
        op = self._watched.pop(slot, None)
        if not ended:
            return
        state = slot.state
        if state is DONE:
            value = slot.value
            error = value.code if type(value) is ReplyError else None
            self._record(slot.done_at - slot.sent_at, self._attributes(slot.index, op, error))
            return
        error = type(slot.value).__name__ if state is FAILED else "ServerTimeout"
        self._record(trio.current_time() - slot.sent_at, self._attributes(slot.index, op, error))


def _server_attributes(label: str) -> dict[str, Any]:
    """``db.system.name``, ``server.address`` and ``server.port`` of a server label."""
    from urllib.parse import urlsplit

    parts = urlsplit(label)
    attrs: dict[str, Any] = {"db.system.name": "redis"}
    if parts.scheme == "unix":
        attrs["server.address"] = parts.path
    else:
        attrs["server.address"] = parts.hostname or ""
        if parts.port is not None:
            attrs["server.port"] = parts.port
    return attrs
