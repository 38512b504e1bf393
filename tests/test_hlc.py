"""The hybrid logical clock: monotonic, pulled forward by what it reads, skew-bounded."""

from __future__ import annotations

import math
from typing import Any

import pytest

from trio_redisha import CodecError, ConfigurationError, HybridLogicalClock


class Wall:
    """A wall clock the test sets, in seconds."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_timestamps_are_wall_microseconds_when_the_wall_moves_on() -> None:
    wall = Wall(1_000.0)
    clock = HybridLogicalClock(wall=wall)
    assert clock.now() == 1_000_000_000
    wall.now = 1_000.5
    assert clock.now() == 1_000_500_000


def test_never_runs_backwards_nor_repeats() -> None:
    wall = Wall(1_000.0)
    clock = HybridLogicalClock(wall=wall)
    first = clock.now()
    wall.now = 999.0  # the wall clock stepped back (NTP)
    assert [clock.now() for _ in range(3)] == [first + 1, first + 2, first + 3]
    wall.now = 1_000.0  # the same instant again
    assert clock.now() == first + 4


def test_observe_pulls_the_clock_forward_within_the_drift_bound() -> None:
    wall = Wall(1_000.0)
    clock = HybridLogicalClock(wall=wall, max_drift=60)
    ahead = 1_030_000_000  # 30 s ahead: a writer whose clock runs fast
    clock.observe(ahead)
    assert clock.now() == ahead + 1
    clock.observe(5)  # the past changes nothing
    assert clock.now() == ahead + 2


def test_observe_ignores_and_check_refuses_beyond_the_drift_bound() -> None:
    wall = Wall(1_000.0)
    clock = HybridLogicalClock(wall=wall, max_drift=60)
    far = 1_061_000_000  # 61 s ahead
    clock.observe(far)
    assert clock.now() == 1_000_000_000
    with pytest.raises(CodecError):
        clock.check(far)
    with pytest.raises(CodecError):
        clock.check(-1)
    assert clock.check(1_059_000_000) == 1_059_000_000
    wall.now = 1_002.0  # the bound moves with the wall clock
    assert clock.check(far) == far


@pytest.mark.parametrize(
    "max_drift",
    [math.nan, math.inf, -math.inf, 10**400, -1, -0.5, True, False, "60", None, 1j],
)
def test_max_drift_must_be_a_finite_number_at_least_zero(max_drift: Any) -> None:
    # NaN and infinity used to escape as a bare ValueError / OverflowError, and a
    # negative bound was accepted, after which every timestamp was refused.
    with pytest.raises(ConfigurationError, match="max_drift"):
        HybridLogicalClock(max_drift=max_drift)


def test_zero_max_drift_refuses_anything_ahead_of_the_wall_clock() -> None:
    wall = Wall(1_000.0)
    clock = HybridLogicalClock(wall=wall, max_drift=0)
    assert clock.check(clock.now()) == 1_000_000_000
    clock.observe(1_000_000_001)  # one microsecond ahead: ignored
    assert clock.now() == 1_000_000_001  # the clock's own tick, not the observed one
    with pytest.raises(CodecError):
        clock.check(1_000_000_002)
    assert HybridLogicalClock(max_drift=0.5).check(0) == 0


@pytest.mark.parametrize("wall", [None, 1_000.0, "time.time"])
def test_wall_must_be_callable(wall: Any) -> None:
    with pytest.raises(ConfigurationError, match="wall"):
        HybridLogicalClock(wall=wall)
