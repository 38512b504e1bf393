"""Small helpers shared by several modules: exceptions across nurseries, quantiles, typing."""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "finite_seconds",
    "is_cancellation",
    "open_owned_nursery",
    "quantile",
    "sole_exception",
    "takes_arguments_of",
    "word",
]

P = ParamSpec("P")
T = TypeVar("T")


def takes_arguments_of(
    target: Callable[P, object],
) -> Callable[[Callable[..., T]], Callable[P, T]]:
    """Type a wrapper that hands its arguments on to ``target`` as taking exactly those.

    For type checkers only (the wrapper is returned as it is): ``open_pool``
    takes ``**options`` and passes them to :class:`~trio_redisha.Pool`, and a
    misspelled option should be caught where it is written.
    """

    def decorate(wrapper: Callable[..., T]) -> Callable[P, T]:
        return wrapper

    return decorate


def finite_seconds(value: object, *, zero: bool = False) -> float | None:
    """``value`` as a float, if it is a finite number of seconds above zero; else None.

    ``zero``: 0 will do too. An int too large for a float (``10**400``) is not
    finite: ``float()`` of it raises ``OverflowError``, which a range check alone
    would let through.
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        return None
    return seconds


def word(arg: Any) -> str | None:
    """An argument as an upper-case word, whatever text type it came as; else None."""
    if isinstance(arg, str):
        return arg.upper()
    if isinstance(arg, (bytes, bytearray, memoryview)):
        try:
            return bytes(arg).decode("latin-1").upper()
        except (ValueError, TypeError):  # a released memoryview: the encoder says so
            return None
    return None


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is a :class:`trio.Cancelled`, or a nursery's group of nothing else."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(is_cancellation(e) for e in exc.exceptions)
    return False


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception a nursery wrapped in a group, or ``None`` if there are several.

    ``open_*`` context managers hand the caller back the exception its own
    block raised, never an ExceptionGroup (as trio's own do).
    """
    if len(group.exceptions) == 1:
        return group.exceptions[0]
    return None


def quantile(samples: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``samples`` by the nearest-rank method, or None if empty.

    Nearest rank: the smallest sample such that at least ``q`` of all samples
    are not larger, so the p99 of 100 samples is the 99th smallest, and every
    result is a sample that was measured.
    """
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


@asynccontextmanager
async def open_owned_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for an ``open_*`` context manager: the caller never sees a group.

    Trio wraps an exception raised in a nursery's block in an ExceptionGroup;
    an ``open_*`` manager hands the caller back the block's own exception
    instead (as trio's own managers do), and lets a real group of several
    failures through.
    """
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        error = sole_exception(group)
        if error is None:
            raise
    if error is not None:
        raise error  # outside the handler, so not chained to the group
