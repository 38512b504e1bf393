"""What the benchmark scripts share besides the servers (trio_redisha.testing has those).

:func:`bench_servers` starts the throwaway ``redis-server`` processes of a run
with :func:`trio_redisha.testing.local_redis_servers` (synchronous on purpose:
one set of servers serves rounds run by ``trio.run`` and ``asyncio.run`` alike)
and also turns SIGTERM into ``SystemExit`` while they run, so that a benchmark
stopped by ``kill`` or a CI timeout unwinds through the cleanup as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from trio_redisha.testing import RedisServer, local_redis_servers

__all__ = ["bench_servers", "is_interrupt"]


@contextlib.contextmanager
def bench_servers(count: int, executable: str | None = None) -> Iterator[list[RedisServer]]:
    """Start ``count`` servers; stop them all when the block exits, however it exits.

    Args:
        count: How many servers.
        executable: Path of ``redis-server`` (default: found as the manager finds it).

    Yields:
        The running servers.
    """

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with local_redis_servers(count, executable=executable) as servers:
            yield servers
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C, possibly wrapped in (nested) exception groups."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    subs = getattr(exc, "exceptions", None)
    if isinstance(exc, BaseException) and isinstance(subs, tuple) and subs:
        return all(isinstance(s, BaseException) and is_interrupt(s) for s in subs)
    return False


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark's ``main`` as the script: its exit code, or 130 on Ctrl-C.

    The servers are stopped by :func:`bench_servers` either way; Ctrl-C gets
    one line instead of a traceback of the nurseries it went through.
    """
    try:
        sys.exit(main())
    except BaseException as exc:
        if is_interrupt(exc):
            print("interrupted; the redis-server processes were stopped", file=sys.stderr)
            sys.exit(130)
        raise
