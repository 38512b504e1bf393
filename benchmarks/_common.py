"""What the benchmark scripts share besides the servers (trio_redisha.testing has those).

:func:`bench_servers` starts the throwaway ``redis-server`` processes of a run
with :func:`trio_redisha.testing.local_redis_servers` (synchronous on purpose:
one set of servers serves rounds run by ``trio.run`` and ``asyncio.run`` alike)
and also turns SIGTERM into ``SystemExit`` while they run, so that a benchmark
stopped by ``kill`` or a CI timeout unwinds through the cleanup as Ctrl-C does.
:func:`rounds_args`, :func:`redis_server_or_report` and :func:`environment` are
the round-based scripts' command line, their check for a ``redis-server`` and
the first line of every report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

import trio

import trio_redisha
from trio_redisha.testing import (
    RedisServer,
    RedisServerNotFoundError,
    find_redis_server,
    local_redis_servers,
    redis_server_version,
)

__all__ = [
    "bench_servers",
    "environment",
    "is_interrupt",
    "redis_server_or_report",
    "rounds_args",
    "run_main",
]


def rounds_args(doc: str | None, argv: Sequence[str] | None) -> argparse.Namespace:
    """``--quick`` and ``--rounds``, as the scripts measured in interleaved rounds take them.

    Args:
        doc: The script's docstring: its first paragraph is the description.
        argv: The arguments (``None``: the command line).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else "")
    parser.add_argument("--quick", action="store_true", help="a few seconds, for development")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def redis_server_or_report() -> str | None:
    """The ``redis-server`` to run, or ``None`` once why there is none is printed."""
    try:
        return find_redis_server()
    except RedisServerNotFoundError as exc:
        print(exc, file=sys.stderr)
        return None


def redis_py_missing() -> str | None:
    """Why redis-py (the peer most benchmarks measure) cannot be used, or ``None``."""
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install -e '.[bench]')"
    return None


def environment(exe: str) -> str:
    """Python, trio, trio-redisha, redis-server, CPUs, load: what a report's figures came from."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return (
        f"Python {platform.python_version()}, trio {trio.__version__}, "
        f"trio-redisha {trio_redisha.__version__}, redis-server {redis_server_version(exe)}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f} at start"
    )


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
