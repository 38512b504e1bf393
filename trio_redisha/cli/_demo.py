"""``trio-redisha demo``: the session store surviving a kill, a freeze and an empty restart.

The demo itself is :mod:`trio_redisha._demo`; this module only parses its options.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UsageError, add_verbose, positive_float, positive_int, wrap

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "demo",
        help="start three local redis-servers and show the session store surviving failures",
        description=wrap(
            "Start throwaway redis-server processes (three by default), run a session-store "
            "workload "
            "with concurrent clients while one server is killed, one frozen (SIGSTOP) "
            "and one restarted empty, then read every session back and check that no "
            "acknowledged write was lost. With --servers 6 --replicas 3 each session lives "
            "on 3 of 6 servers (placement, sloppy quorum and hand-back) and must end on "
            "exactly its owners. Exit non-zero if a write was lost. Needs redis-server "
            "(apt-get install redis-server; $REDISHA_REDIS_SERVER names another binary)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbose(p)
    p.add_argument(
        "--duration",
        type=positive_float,
        default=20.0,
        metavar="S",
        help="seconds of workload (default 20)",
    )
    p.add_argument(
        "--servers",
        type=positive_int,
        default=3,
        metavar="N",
        help="redis-servers to start (default 3, at most 26)",
    )
    p.add_argument(
        "--replicas",
        type=positive_int,
        default=None,
        metavar="N",
        help="placement: each session on N of the servers (2..--servers; default: on all)",
    )
    p.add_argument(
        "--clients",
        type=positive_int,
        default=8,
        metavar="N",
        help="concurrent clients (default 8)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``demo``; return the exit code."""
    from .. import _demo

    if not _demo.SERVERS <= args.servers <= _demo.MAX_SERVERS:
        raise UsageError(f"--servers must be in {_demo.SERVERS}..{_demo.MAX_SERVERS}")
    if args.replicas is not None and not _demo.WRITE_QUORUM <= args.replicas <= args.servers:
        raise UsageError(f"--replicas must be in {_demo.WRITE_QUORUM}..--servers ({args.servers})")
    return _demo.main(
        duration=args.duration, clients=args.clients, servers=args.servers, replicas=args.replicas
    )
