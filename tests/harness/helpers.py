"""Small helpers the test files share: waiting for a state, and what an error shows.

Tests of a highly available client wait for states that live in other processes
(a server noticed as down, a connection closed, a replica repaired) and that
offer no event to wait on, so they poll, always under a deadline and never with
a fixed sleep. :func:`wait_until` is that loop, once.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

from trio_redisha.testing import live_servers, pid_alive, spawned_pids

__all__ = [
    "DEADLINE",
    "POLL",
    "child_redis_pids",
    "error_text",
    "eventually",
    "no_leaked_processes",
    "wait_until",
]

#: Default seconds a state may take to be reached; generous, as CI machines are slow.
DEADLINE = 5.0
#: Poll step, in seconds.
POLL = 0.005

#: A check: a plain or async callable returning something truthy once the state holds.
Check = Callable[[], object] | Callable[[], Awaitable[object]]


async def wait_until(
    check: Check,
    deadline: float = DEADLINE,
    *,
    what: str | Callable[[], str] | None = None,
    poll: float = POLL,
) -> float:
    """Poll ``check`` until it returns something truthy.

    Args:
        check: A plain or async callable.
        deadline: Seconds before giving up.
        what: What is awaited, for the failure message (or a callable making it,
            to show the state at the time of failure).
        poll: Seconds between two checks.

    Returns:
        The seconds it took (trio's clock).

    Raises:
        AssertionError: The check did not hold within ``deadline``.
    """
    start = trio.current_time()
    with trio.move_on_after(deadline):
        # Polling is the point: the state lives in other processes, no event exists.
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return trio.current_time() - start
            await trio.sleep(poll)
    text = what() if callable(what) else what or getattr(check, "__name__", "the condition")
    raise AssertionError(f"{text}: not within {deadline} s")


async def eventually(check: Check, what: str, deadline: float = DEADLINE) -> None:
    """:func:`wait_until` with the description first: ``eventually(check, "repaired")``.

    Args:
        check: A plain or async callable.
        what: What is awaited, for the failure message.
        deadline: Seconds before giving up.

    Raises:
        AssertionError: The check did not hold within ``deadline``.
    """
    await wait_until(check, deadline, what=what)


def error_text(exc: BaseException) -> str:
    """Everything a user could see of an exception: message, repr, args, chained causes.

    Tests that a secret never shows assert it is not in this text.

    Args:
        exc: The exception.

    Returns:
        The text of the exception and of those linked to it, as a traceback shows them.
    """
    parts = [str(exc), repr(exc), *map(str, exc.args), repr(exc.args)]
    # What a traceback shows: the cause, and the context unless ``from None`` hid it.
    linked = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if linked is not None:
        parts.append(error_text(linked))
    return "\n".join(parts)


def child_redis_pids() -> set[int]:
    """redis-server processes whose parent is this test process (from /proc).

    Returns:
        Their pids (empty where /proc is missing).
    """
    me = os.getpid()
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")]
        fields = stat[stat.rindex(b")") + 2 :].split()
        if comm.startswith(b"redis-server") and int(fields[1]) == me and fields[0] != b"Z":
            found.add(int(entry))
    return found


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    """Check that every redis-server a test started is gone once its fixtures are torn down.

    Import it into a test module with ``autouse`` semantics by naming it in
    ``pytestmark = pytest.mark.usefixtures("no_leaked_processes")``.
    """
    before = set(spawned_pids())
    children_before = child_redis_pids()
    yield
    new = [pid for pid in spawned_pids() if pid not in before]
    leaked = [pid for pid in new if pid_alive(pid)]
    assert not leaked, f"redis-server processes left running: {leaked}"
    assert child_redis_pids() <= children_before
    assert not [s for s in live_servers() if s.process and s.process.pid in new]
