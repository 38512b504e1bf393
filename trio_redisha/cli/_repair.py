"""``trio-redisha repair``: the anti-entropy walker, with a progress bar on a terminal.

The walk itself is the library's :func:`trio_redisha.crdt.repair_all`; this
module parses the options, shows progress and prints the report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..config import ServerSpec
from ..crdt import RepairReport, repair_all
from ..crdt.repair import DEFAULT_REPAIR_CONCURRENCY, DEFAULT_REPAIR_RATE, DEFAULT_SCAN_COUNT
from ..pool import Pool, open_pool
from ._common import (
    EPILOG,
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_server_options,
    non_negative_float,
    one_line,
    out,
    pool_options,
    positive_int,
    resolve_servers,
    run_command,
    wrap,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "repair",
        help="anti-entropy: merge every CRDT key across the servers and write it back",
        description=wrap(
            "Compare the servers' digest trees and merge each trio-redisha CRDT key "
            "whose digests differ across the servers, writing the merged state back "
            "wherever it is behind: a converged fleet costs a few kilobytes per server, "
            "whatever its size. With --full, or --match, walk every server with SCAN "
            "(TYPE hash) and read every key instead. Either way a server that came back "
            "empty is refilled, and hashes that are not trio-redisha CRDTs are left "
            "untouched. With --replicas N each key is merged "
            "into its N owners only, and its copies on other servers (fallbacks, or with "
            "--previous the old layout's servers) are removed once every owner "
            "acknowledged. A progress bar is shown when "
            "stdout is a terminal (needs rich: pip install 'trio-redisha[cli]')."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_options(p)
    p.add_argument("--match", default="*", metavar="PATTERN", help="SCAN MATCH pattern (default *)")
    p.add_argument(
        "--rate",
        type=non_negative_float,
        default=DEFAULT_REPAIR_RATE,
        metavar="N",
        help=f"keys per second at most (default {DEFAULT_REPAIR_RATE:g}; 0: no limit)",
    )
    p.add_argument(
        "--count",
        type=positive_int,
        default=DEFAULT_SCAN_COUNT,
        metavar="N",
        help=f"SCAN COUNT hint (default {DEFAULT_SCAN_COUNT})",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_REPAIR_CONCURRENCY,
        metavar="N",
        help=f"keys repaired at once (default {DEFAULT_REPAIR_CONCURRENCY})",
    )
    p.add_argument(
        "--replicas",
        type=positive_int,
        default=None,
        metavar="N",
        help="placement: each key on N of the servers; merge every key into its N owners "
        "and remove the copies on the other servers once the owners acknowledged",
    )
    p.add_argument(
        "--previous",
        action="append",
        metavar="URL",
        help="with --replicas, a server of the layout being moved away from (repeatable): "
        "the walk completes the migration",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="read every key on every server instead of comparing digests first",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar: auto (when stdout is a terminal), always or never",
    )
    p.set_defaults(handler=run)


async def _estimate_keys(pool: Pool) -> int | None:
    sizes = [r for r in await pool.execute("DBSIZE") if isinstance(r, int)]
    return max(sizes) if sizes else None


async def _repair(args: argparse.Namespace, specs: Sequence[ServerSpec]) -> RepairReport:
    show = args.progress == "always" or (args.progress == "auto" and sys.stdout.isatty())
    progress: Any = None
    if show:
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            print("(no progress bar: pip install 'trio-redisha[cli]' for one)", file=sys.stderr)
        else:
            progress = Progress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("repaired {task.fields[repaired]}  errors {task.fields[errors]}"),
                TimeElapsedColumn(),
            )
    placement: dict[str, Any] = {}
    if args.replicas is not None:
        placement["replicas"] = args.replicas
        if args.previous:
            placement["previous"] = resolve_servers(args.previous)
    options = pool_options(args.timeout, args.max_reply_elements)
    async with open_pool(*specs, **options, **placement) as pool:
        if progress is None:
            return await repair_all(
                pool, match=args.match, rate=args.rate, count=args.count,
                concurrency=args.concurrency, full=args.full,
            )  # fmt: skip
        # A tree walk reads only the keys that differ: no total to show.
        reading = args.full or args.match not in ("*", b"*")
        total = await _estimate_keys(pool) if reading else None
        with progress:
            task = progress.add_task("scanning", total=total, repaired=0, errors=0)

            def update(r: RepairReport) -> None:
                progress.update(
                    task,
                    description="repairing",
                    completed=r.processed,
                    total=(max(total or 0, r.scanned) or None) if reading else None,
                    repaired=r.repaired,
                    errors=r.errors,
                )

            report = await repair_all(
                pool,
                match=args.match,
                rate=args.rate,
                count=args.count,
                concurrency=args.concurrency,
                on_progress=update,
                full=args.full,
            )
            done = report.scanned if reading else report.processed
            progress.update(task, description="done", total=done, completed=done)
        return report


def run(args: argparse.Namespace) -> int:
    """Run ``repair``; return the exit code."""
    if args.previous and args.replicas is None:
        raise UsageError("--previous needs --replicas N")
    specs = resolve_servers(args.server)
    report = run_command(_repair, args, specs)
    for message in report.messages:
        print(f"trio-redisha: {one_line(message)}", file=sys.stderr)
    print(report.summary(), file=out())
    return EXIT_OK if report.ok else EXIT_FAILURE
