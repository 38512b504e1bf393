"""A hybrid logical clock: wall-clock microseconds that never run backwards.

Every timestamp the clock hands out is an ``int`` of microseconds since the Unix
epoch, strictly greater than every timestamp it handed out or observed before.
Reading a stored timestamp from a server (:meth:`HybridLogicalClock.observe`)
pulls the clock forward, so a writer whose wall clock lags still orders its
writes after the ones it has seen. Ties between writers are broken by the
writer's actor id, never by the clock.

Clock skew bound: a timestamp more than ``max_drift`` seconds ahead of this
machine's wall clock is refused (:meth:`observe` ignores it and
:meth:`check` raises), so a server holding a timestamp from a badly skewed
writer cannot drag every clock into the far future.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._util import finite_seconds
from .exceptions import CodecError, ConfigurationError

__all__ = ["DEFAULT_MAX_DRIFT", "HybridLogicalClock"]

#: Refuse timestamps more than this far ahead of the local wall clock. NTP keeps
#: well-run machines within milliseconds; an hour leaves room for bad ones while
#: still refusing garbage such as a timestamp in the year 3000.
DEFAULT_MAX_DRIFT = 3600.0


class HybridLogicalClock:
    """A per-pool monotonic clock of microseconds.

    Args:
        max_drift: How far ahead of the wall clock (in seconds) an observed
            timestamp may be before it is refused: a finite number >= 0 (0
            refuses every timestamp ahead of this machine's wall clock).
        wall: The wall clock, in seconds (for tests): a callable of no arguments.

    Raises:
        ConfigurationError: ``max_drift`` is not a finite number >= 0 (a bool,
            NaN, infinity, a negative number), or ``wall`` is not callable.
    """

    __slots__ = ("_last", "_max_drift_us", "_wall")

    def __init__(
        self, *, max_drift: float = DEFAULT_MAX_DRIFT, wall: Callable[[], float] = time.time
    ) -> None:
        if finite_seconds(max_drift, zero=True) is None:
            raise ConfigurationError(
                f"max_drift must be a finite number of seconds >= 0, got {max_drift!r}"
            )
        if not callable(wall):
            raise ConfigurationError(
                f"wall must be a callable returning seconds, got {type(wall).__name__}"
            )
        self._last = 0
        self._max_drift_us = int(max_drift * 1_000_000)
        self._wall = wall

    def now(self) -> int:
        """Return a new timestamp, greater than any before it."""
        wall = int(self._wall() * 1_000_000)
        last = self._last + 1
        self._last = wall if wall > last else last
        return self._last

    def check(self, ts: int) -> int:
        """Return ``ts`` if it is plausible, else raise :class:`CodecError`."""
        limit = int(self._wall() * 1_000_000) + self._max_drift_us
        if ts < 0 or ts > limit:
            raise CodecError(f"timestamp {ts} is beyond the clock-skew bound")
        return ts

    def observe(self, ts: int) -> None:
        """Advance the clock past a timestamp read from a server, if plausible."""
        if ts > self._last and ts <= int(self._wall() * 1_000_000) + self._max_drift_us:
            self._last = ts

    def __repr__(self) -> str:
        return f"<HybridLogicalClock last={self._last}>"
