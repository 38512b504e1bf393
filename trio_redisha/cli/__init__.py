"""The ``trio-redisha`` command line: ``exec``, ``status``, ``repair`` and ``demo``.

Run ``trio-redisha --help`` (or ``python -m trio_redisha --help``) for the
usage. Every subcommand that talks to servers takes them as repeated
``--server URL`` options, or else from the ``REDISHA_SERVERS`` environment
variable (comma-separated URLs). A password can come from ``REDISHA_PASSWORD``
instead of the URL, so that it does not show in the process list; passwords are
never printed.

Exit codes: 0 success, 1 failure (no server answered, a key could not be
repaired, an acknowledged write was lost), 2 a usage mistake (bad option, bad
URL, unsupported command), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
A usage mistake or a failure is reported as one line on stderr, never as a
traceback.

Each subcommand is a small module (``_exec``, ``_status``, ``_repair``,
``_demo``) with ``add_parser(sub)`` and ``run(args) -> exit code``, over
``_common`` (options, servers, output, errors). The anti-entropy walk is the
library's :func:`trio_redisha.crdt.repair_all`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence

from . import _demo, _exec, _repair, _status
from ._common import ENV_PASSWORD as ENV_PASSWORD
from ._common import ENV_SERVERS as ENV_SERVERS
from ._common import (
    EPILOG,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    check_text,
    err_line,
    exit_code_for,
    logging_to_stderr,
    wrap,
)
from ._common import CommandError as CommandError
from ._common import UsageError as UsageError
from ._common import format_reply as format_reply
from ._common import resolve_servers as resolve_servers
from ._status import ServerReport as ServerReport
from ._status import server_status as server_status

__all__ = [
    "ENV_PASSWORD",
    "ENV_SERVERS",
    "CommandError",
    "ServerReport",
    "UsageError",
    "build_parser",
    "format_reply",
    "main",
    "resolve_servers",
    "server_status",
]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``trio-redisha`` and its subcommands.

    Returns:
        The parser; its errors raise :class:`UsageError`.
    """
    from .. import __version__

    parser = Parser(
        prog="trio-redisha",
        description=wrap(
            "Run Redis commands on several independent servers at once, inspect them, "
            "repair their CRDT keys, or watch the highly available session store "
            "survive failures (demo)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trio-redisha {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (_exec, _status, _repair, _demo):
        command.add_parser(sub)
    return parser


def _escape_what_the_terminal_cannot_show() -> None:
    """Let stdout and stderr escape what their encoding cannot write (``\\u2713``).

    Under a Latin-1 or ASCII locale a reply holding other text would otherwise
    end the command with a ``UnicodeEncodeError`` traceback.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-redisha`` command line.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code (see the module docstring).
    """
    parser = build_parser()
    if argv is None:
        argv = sys.argv[1:]
    _escape_what_the_terminal_cannot_show()
    try:
        check_text(argv)
        args = parser.parse_args(argv)
    except UsageError as exc:
        err_line(str(exc), exc.prog)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    with logging_to_stderr(args.verbose):
        try:
            return handler(args)
        except BaseException as exc:
            code = exit_code_for(exc)
            if code is None:
                raise
            return code
