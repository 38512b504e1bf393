"""The hybrid logical clock: monotonic, pulled forward by what it reads, skew-bounded."""

from __future__ import annotations

import pytest

from trio_redisha import CodecError, HybridLogicalClock


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
