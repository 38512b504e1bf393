"""Small helpers about exceptions that cross nurseries."""

from __future__ import annotations

import sys

import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["is_cancellation", "sole_exception"]


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
