"""``trio-redisha exec``: one command on every server, one line per server."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..config import ServerSpec
from ..pool import open_pool
from ._common import (
    EPILOG,
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_server_options,
    format_reply,
    json_line,
    jsonable,
    out,
    pool_options,
    resolve_servers,
    run_command,
    wrap,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "exec",
        help="run one command on every server and print each reply",
        usage="%(prog)s [-h] [-v] [-s URL] [-t S] [--max-reply-elements N] [--json] CMD [ARG ...]",
        description=wrap(
            "Run one Redis command on every server in parallel and print one line per "
            "server: its reply or its error. Exit 0 if at least one server succeeded. "
            "Options go before CMD; everything after it is passed to Redis as it is."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per server")
    # REMAINDER: arguments of the Redis command may start with "-" (SET k -1);
    # options of trio-redisha go before the command.
    p.add_argument(
        "command_line",
        metavar="CMD [ARG ...]",
        nargs=argparse.REMAINDER,
        help="the Redis command and its arguments, e.g. PING or SET key value",
    )
    p.set_defaults(handler=run)


async def _exec(
    specs: Sequence[ServerSpec], command: Sequence[str], timeout: float, max_elements: int | None
) -> Any:
    async with open_pool(*specs, **pool_options(timeout, max_elements)) as pool:
        return await pool.execute(*command)


def run(args: argparse.Namespace) -> int:
    """Run ``exec``; return the exit code."""
    command: list[str] = args.command_line
    if not command:
        raise UsageError("no command given, e.g. PING (see --help)", "trio-redisha exec")
    specs = resolve_servers(args.server)
    replies = run_command(_exec, specs, command, args.timeout, args.max_reply_elements)
    stdout = out()
    width = max(len(label) for label in replies.servers)
    for label, entry in zip(replies.servers, replies, strict=True):
        if args.json:
            record: dict[str, Any] = {"server": label, "ok": not isinstance(entry, BaseException)}
            if isinstance(entry, BaseException):
                record["error"] = type(entry).__name__
                record["message"] = str(entry)
            else:
                record["reply"] = jsonable(entry)
            print(json_line(record, stdout), file=stdout)
            continue
        text = format_reply(entry)
        if "\n" in text:
            print(label, file=stdout)
            for line in text.splitlines():
                print(f"    {line}", file=stdout)
        else:
            print(f"{label.ljust(width)}  {text}", file=stdout)
    return EXIT_OK if replies.ok_count else EXIT_FAILURE
