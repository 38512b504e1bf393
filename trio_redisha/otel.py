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
  code such as ``WRONGTYPE``, or ``ServerTimeout`` / ``ServerUnavailable``);
* ``redisha.server.state`` (gauge): 1 for each server's current state
  (``redisha.server.state`` attribute: connecting, up, suspect, down, closed),
  0 for the others; ``redisha.server.circuit_open`` (gauge): 1 while a
  server's circuit is open;
* ``redisha.fanout.replies.expected`` and ``redisha.fanout.replies.received``
  (counters): replies asked for and replies that came in time;
* ``redisha.quorum.failures``, ``redisha.read_repairs``,
  ``redisha.replicas.divergent``, ``redisha.repair.keys_walked``,
  ``redisha.repair.keys_repaired``, ``redisha.digests.rehashed`` (counters).

Only the duration histogram is recorded on the command path. The counters
and gauges are observable instruments over totals the pool keeps anyway
(:class:`~trio_redisha.pool.PoolStats`), read only when a reader collects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._util import word
from .connection import DONE, FAILED, Slot
from .exceptions import ReplyError
from .pool._server import ServerState

if TYPE_CHECKING:
    from .pool import Pool

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
    ("redisha.quorum.failures", "quorum_failures", "{call}", "Calls short of their quorum"),
    ("redisha.read_repairs", "read_repairs", "{repair}", "Read repairs started"),
    ("redisha.replicas.divergent", "replicas_divergent", "{replica}", "Replicas found behind"),
    ("redisha.repair.keys_walked", "repair_keys_walked", "{key}", "Keys the walker read"),
    ("redisha.repair.keys_repaired", "repair_keys_repaired", "{key}", "Keys it wrote back"),
    ("redisha.digests.rehashed", "digests_rehashed", "{key}", "Old keys reads gave a digest"),
    ("redisha.reads.cached", "reads_cached", "{read}", "Reads of a cached large key"),
    ("redisha.reads.rechecked", "hedged_rechecks", "{key}", "Keys a late server made read again"),
)


class PoolMetrics:
    """The instruments of one pool; the pool creates it from its ``meter_provider``.

    Args:
        pool: The pool reported on.
        meter_provider: An OpenTelemetry ``MeterProvider``.
    """

    def __init__(self, pool: Pool, meter_provider: Any) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        from . import __version__

        self._pool = pool
        meter = meter_provider.get_meter("trio_redisha", __version__)
        self._duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations, per server.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._record = self._duration.record
        self._server_attrs = [_server_attributes(label) for label in pool.servers]
        self._attrs: dict[tuple[int, Any, str | None], dict[str, Any]] = {}
        self._Observation = Observation

        def counter_callback(field: str) -> Any:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(getattr(pool.stats, field))]

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

    def _observe_states(self, options: Any) -> list[Any]:
        out = []
        for attrs, status in zip(self._server_attrs, self._pool.status(), strict=True):
            for state in ServerState:
                out.append(
                    self._Observation(
                        int(status.state is state), {**attrs, "redisha.server.state": state.value}
                    )
                )
        return out

    def _observe_circuits(self, options: Any) -> list[Any]:
        return [
            self._Observation(int(status.state is ServerState.SUSPECT), attrs)
            for attrs, status in zip(self._server_attrs, self._pool.status(), strict=True)
        ]

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

    def fanout(
        self,
        op: Any,
        targets: Sequence[int],
        slots: Sequence[object],
        end: float,
        hedged: bool,
    ) -> None:
        """Record one measurement per server a command was sent to."""
        record = self._record
        for idx, slot in zip(targets, slots, strict=True):
            if type(slot) is not Slot:
                continue  # skipped: nothing was sent
            state = slot.state
            if state is DONE:
                value = slot.value
                error = value.code if type(value) is ReplyError else None
                record(slot.done_at - slot.sent_at, self._attributes(idx, op, error))
            elif state is FAILED:
                error = type(slot.value).__name__
                record(end - slot.sent_at, self._attributes(idx, op, error))
            elif not hedged:
                record(end - slot.sent_at, self._attributes(idx, op, "ServerTimeout"))


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
