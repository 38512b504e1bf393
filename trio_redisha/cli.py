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
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, NoReturn

import trio

from .config import ServerSpec, parse_server
from .crdt import RepairReport, repair_all
from .crdt.repair import (
    DEFAULT_REPAIR_CONCURRENCY,
    DEFAULT_REPAIR_RATE,
    DEFAULT_SCAN_COUNT,
)
from .exceptions import (
    CommandEncodeError,
    ConfigurationError,
    RedisHAError,
    ReplyError,
    ServerTimeout,
    UnsupportedCommand,
)
from .pool import Pool, ServerState, ServerStatus, open_pool

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

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

#: Environment variable holding comma-separated server URLs, used when no
#: ``--server`` option is given.
ENV_SERVERS: Final = "REDISHA_SERVERS"
#: Environment variable holding a password for servers whose URL carries none.
ENV_PASSWORD: Final = "REDISHA_PASSWORD"

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED: Final = 143  # 128 + SIGTERM

#: Default per-command deadline of the CLI. Longer than the library's 0.5 s:
#: an interactive command waits for a first connection as well.
DEFAULT_CLI_TIMEOUT: Final = 1.0
_EPILOG = f"""\
servers:
  Give each server as --server URL (repeatable): redis://[[user]:password@]host[:port][/db],
  rediss://... (TLS) or unix:///path/to/redis.sock. Without --server, the servers come
  from ${ENV_SERVERS} (comma-separated URLs). ${ENV_PASSWORD} sets the password of
  servers whose URL has none. Passwords are never printed.

exit codes:
  0 success, 1 failure, 2 usage mistake (bad option or URL), 130 interrupted (Ctrl-C),
  143 terminated (SIGTERM).
"""


class UsageError(Exception):
    """A mistake on the command line; reported on one line with exit code 2.

    Attributes:
        prog: The (sub)command it concerns, e.g. ``"trio-redisha exec"``.
    """

    def __init__(self, message: str, prog: str = "trio-redisha") -> None:
        super().__init__(message)
        self.prog = prog


class CommandError(Exception):
    """A failure that is not a usage mistake; reported on one line with exit code 1."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised, so that ``main`` prints one line."""

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` instead of printing the usage and exiting."""
        raise UsageError(f"{message} (see {self.prog} --help)", self.prog)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log the library's warnings (servers going down and coming back) on stderr",
    )


def _add_server_options(p: argparse.ArgumentParser) -> None:
    _add_verbose(p)
    p.add_argument(
        "-s",
        "--server",
        action="append",
        metavar="URL",
        help=f"a Redis server URL (repeatable; default: ${ENV_SERVERS})",
    )
    p.add_argument(
        "-t",
        "--timeout",
        type=_positive_float,
        default=DEFAULT_CLI_TIMEOUT,
        metavar="S",
        help=f"per-command deadline in seconds (default {DEFAULT_CLI_TIMEOUT:g})",
    )


def _wrap(text: str) -> str:
    # The raw formatter keeps the epilog's layout; descriptions are wrapped here.
    return textwrap.fill(text, width=79)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``trio-redisha`` and its subcommands.

    Returns:
        The parser; its errors raise :class:`UsageError`.
    """
    from . import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="trio-redisha",
        description=_wrap(
            "Run Redis commands on several independent servers at once, inspect them, "
            "repair their CRDT keys, or watch the highly available session store "
            "survive failures (demo)."
        ),
        epilog=_EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"trio-redisha {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "exec",
        help="run one command on every server and print each reply",
        usage="%(prog)s [-h] [-v] [-s URL] [-t S] [--json] CMD [ARG ...]",
        description=_wrap(
            "Run one Redis command on every server in parallel and print one line per "
            "server: its reply or its error. Exit 0 if at least one server succeeded. "
            "Options go before CMD; everything after it is passed to Redis as it is."
        ),
        epilog=_EPILOG,
        formatter_class=fmt,
    )
    _add_server_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per server")
    # REMAINDER: arguments of the Redis command may start with "-" (SET k -1);
    # options of trio-redisha go before the command.
    p.add_argument(
        "command_line",
        metavar="CMD [ARG ...]",
        nargs=argparse.REMAINDER,
        help="the Redis command and its arguments, e.g. PING or SET key value",
    )
    p.set_defaults(handler=_cmd_exec)

    p = sub.add_parser(
        "status",
        help="show each server's state, latency, version, memory and keys",
        description=_wrap(
            "Show, per server: up, down or hung; PING latency; Redis version; used "
            "memory; number of keys. Exit non-zero if every server is down."
        ),
        epilog=_EPILOG,
        formatter_class=fmt,
    )
    _add_server_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per server")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser(
        "repair",
        help="anti-entropy: merge every CRDT key across the servers and write it back",
        description=_wrap(
            "Walk every server with SCAN (TYPE hash), merge each trio-redisha CRDT key "
            "across all servers and write the merged state back wherever it is behind. "
            "This refills a server that came back empty. Hashes that are not "
            "trio-redisha CRDTs are left untouched. A progress bar is shown when "
            "stdout is a terminal (needs rich: pip install 'trio-redisha[cli]')."
        ),
        epilog=_EPILOG,
        formatter_class=fmt,
    )
    _add_server_options(p)
    p.add_argument("--match", default="*", metavar="PATTERN", help="SCAN MATCH pattern (default *)")
    p.add_argument(
        "--rate",
        type=_non_negative_float,
        default=DEFAULT_REPAIR_RATE,
        metavar="N",
        help=f"keys per second at most (default {DEFAULT_REPAIR_RATE:g}; 0: no limit)",
    )
    p.add_argument(
        "--count",
        type=_positive_int,
        default=DEFAULT_SCAN_COUNT,
        metavar="N",
        help=f"SCAN COUNT hint (default {DEFAULT_SCAN_COUNT})",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_REPAIR_CONCURRENCY,
        metavar="N",
        help=f"keys repaired at once (default {DEFAULT_REPAIR_CONCURRENCY})",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar: auto (when stdout is a terminal), always or never",
    )
    p.set_defaults(handler=_cmd_repair)

    p = sub.add_parser(
        "demo",
        help="start three local redis-servers and show the session store surviving failures",
        description=_wrap(
            "Start three throwaway redis-server processes, run a session-store workload "
            "with concurrent clients while one server is killed, one frozen (SIGSTOP) "
            "and one restarted empty, then read every session back and check that no "
            "acknowledged write was lost. Exit non-zero if one was. Needs redis-server "
            "(apt-get install redis-server; $REDISHA_REDIS_SERVER names another binary)."
        ),
        formatter_class=fmt,
    )
    _add_verbose(p)
    p.add_argument(
        "--duration",
        type=_positive_float,
        default=20.0,
        metavar="S",
        help="seconds of workload (default 20)",
    )
    p.add_argument(
        "--clients",
        type=_positive_int,
        default=8,
        metavar="N",
        help="concurrent clients (default 8)",
    )
    p.set_defaults(handler=_cmd_demo)
    return parser


# --- output helpers ------------------------------------------------------------


def _out() -> IO[str]:
    return sys.stdout


def _err_line(message: str, prog: str = "trio-redisha") -> None:
    """Print one error line on stderr (newlines folded, so it stays one line)."""
    text = " ".join(str(message).split())
    print(f"{prog}: error: {text}", file=sys.stderr)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return repr(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    return value


def _describe_error(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {' '.join(str(exc).split())}"


def format_reply(value: Any) -> str:
    """Render one server's reply for the terminal, in the spirit of redis-cli.

    Strings are shown as they are (bytes decoded as UTF-8, else their Python
    repr), integers as ``(integer) N``, nil as ``(nil)``, nested replies as
    compact JSON, and an exception instance as ``error: Type: message``.

    Args:
        value: A reply from :class:`~trio_redisha.Replies`.

    Returns:
        The text; it holds newlines only when the reply itself does (INFO).
    """
    if isinstance(value, BaseException):
        return _describe_error(value)
    if value is None:
        return "(nil)"
    if isinstance(value, bool):
        return "(true)" if value else "(false)"
    if isinstance(value, int):
        return f"(integer) {value}"
    if isinstance(value, float):
        return f"(double) {value!r}"
    if isinstance(value, bytes):
        value = _text(value)
    if isinstance(value, str):
        if "\n" in value and value.strip():  # INFO, CLIENT LIST...: a block of lines
            return "\n".join(line.rstrip("\r") for line in value.strip("\r\n").split("\n"))
        if value == "" or value != value.strip() or not value.isprintable():
            return json.dumps(value, ensure_ascii=False)
        return value
    if isinstance(value, (list, tuple, set, frozenset, dict)) and not value:
        return "(empty)"
    return json.dumps(_jsonable(value), ensure_ascii=False)


def _print_table(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


# --- servers -------------------------------------------------------------------


def _parse_one(url: str) -> ServerSpec:
    if "://" not in url:
        # Never echo something that may hold a password we cannot locate.
        shown = f" {url!r}" if "@" not in url else ""
        raise ConfigurationError(
            f"invalid server{shown}: expected a URL such as redis://127.0.0.1:6379"
        )
    return parse_server(url)


def resolve_servers(given: Sequence[str] | None) -> list[ServerSpec]:
    """Turn ``--server`` options (or ``$REDISHA_SERVERS``) into server specs.

    Args:
        given: The ``--server`` values, or ``None`` when there were none.

    Returns:
        One spec per server, in order.

    Raises:
        UsageError: No server was given at all.
        ConfigurationError: A URL is malformed or a server is given twice.
    """
    urls = list(given or [])
    if not urls:
        urls = [u.strip() for u in os.environ.get(ENV_SERVERS, "").split(",") if u.strip()]
    if not urls:
        raise UsageError(f"no server given: use --server URL (repeatable) or set ${ENV_SERVERS}")
    password = os.environ.get(ENV_PASSWORD) or None
    specs = []
    seen: set[str] = set()
    for url in urls:
        spec = _parse_one(url.strip())
        if password is not None and spec.password is None:
            spec = spec.with_options(password=password)
        if spec.label in seen:
            raise ConfigurationError(f"server {spec.label} is given twice")
        seen.add(spec.label)
        specs.append(spec)
    return specs


def _pool_options(timeout: float) -> dict[str, Any]:
    # One deadline for everything: the first call also waits for the connections.
    return {"timeout": timeout, "connect_timeout": timeout}


# --- exec ----------------------------------------------------------------------


async def _exec(specs: Sequence[ServerSpec], command: Sequence[str], timeout: float) -> Any:
    async with open_pool(*specs, **_pool_options(timeout)) as pool:
        return await pool.execute(*command)


def _cmd_exec(args: argparse.Namespace) -> int:
    command: list[str] = args.command_line
    if not command:
        raise UsageError("no command given, e.g. PING (see --help)", "trio-redisha exec")
    specs = resolve_servers(args.server)
    replies = trio.run(_exec, specs, command, args.timeout)
    out = _out()
    width = max(len(label) for label in replies.servers)
    for label, entry in zip(replies.servers, replies, strict=True):
        if args.json:
            record: dict[str, Any] = {"server": label, "ok": not isinstance(entry, BaseException)}
            if isinstance(entry, BaseException):
                record["error"] = type(entry).__name__
                record["message"] = str(entry)
            else:
                record["reply"] = _jsonable(entry)
            print(json.dumps(record, ensure_ascii=False), file=out)
            continue
        text = format_reply(entry)
        if "\n" in text:
            print(label, file=out)
            for line in text.splitlines():
                print(f"    {line}", file=out)
        else:
            print(f"{label.ljust(width)}  {text}", file=out)
    return EXIT_OK if replies.ok_count else EXIT_FAILURE


# --- status --------------------------------------------------------------------

#: Pings whose median is reported as a server's latency.
STATUS_PINGS: Final = 3


@dataclass
class ServerReport:
    """What ``trio-redisha status`` found out about one server.

    Attributes:
        server: The server's URL without credentials.
        state: ``"up"``, ``"down"`` (unreachable), ``"hung"`` (accepts but does not
            answer) or ``"error"`` (answers with an error, e.g. NOAUTH).
        latency_ms: Median PING round trip in milliseconds, when up.
        version: ``redis_version`` from INFO.
        used_memory: ``used_memory`` in bytes.
        used_memory_human: ``used_memory_human`` from INFO (e.g. ``"1.02M"``).
        keys: DBSIZE of the selected database.
        role: ``master`` or ``slave``.
        error: Why the server is not up.
    """

    server: str
    state: str
    latency_ms: float | None = None
    version: str | None = None
    used_memory: int | None = None
    used_memory_human: str | None = None
    keys: int | None = None
    role: str | None = None
    error: str | None = None


def _parse_info(raw: Any) -> dict[str, str]:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _state_of(exc: BaseException, status: ServerStatus) -> str:
    """Tell a server that refuses (down) from one that accepts but never answers (hung)."""
    if isinstance(exc, ReplyError):
        return "error"
    if (
        isinstance(exc, ServerTimeout)
        or status.state in (ServerState.CONNECTING, ServerState.SUSPECT)
        or "timed out" in (status.last_error or "")
    ):
        return "hung"
    return "down"


def _short_error(report: ServerReport) -> str:
    text = " ".join((report.error or "").split())
    return text.removeprefix(report.server).lstrip(": ").removeprefix("is down: ")


async def server_status(pool: Pool) -> list[ServerReport]:
    """Probe every server of a pool: PING (latency), INFO and DBSIZE.

    Args:
        pool: An open pool.

    Returns:
        One report per server, in the pool's order.
    """
    reports = [ServerReport(server=label, state="up") for label in pool.servers]
    failures: dict[int, BaseException] = {}
    for _ in range(STATUS_PINGS):
        pings = await pool.ping()
        for i, entry in enumerate(pings):
            if isinstance(entry, BaseException):
                failures.setdefault(i, entry)
        if len(failures) == len(reports):
            break
    for i, (report, st) in enumerate(zip(reports, pool.status(), strict=True)):
        if i in failures:
            report.state = _state_of(failures[i], st)
            report.error = str(failures[i])
            if report.state == "hung":
                report.error = f"accepts connections but did not answer within {pool.timeout:g} s"
        elif st.latency_p50 is not None:
            report.latency_ms = st.latency_p50 * 1000
    info = await pool.execute("INFO")
    dbsize = await pool.execute("DBSIZE")
    for report, i_entry, d_entry in zip(reports, info, dbsize, strict=True):
        if report.state != "up":
            continue
        if isinstance(i_entry, BaseException):
            report.error = str(i_entry)
        else:
            fields = _parse_info(i_entry)
            report.version = fields.get("redis_version")
            report.used_memory_human = fields.get("used_memory_human")
            report.role = fields.get("role")
            with contextlib.suppress(KeyError, ValueError):
                report.used_memory = int(fields["used_memory"])
        if isinstance(d_entry, int):
            report.keys = d_entry
    return reports


async def _status(specs: Sequence[ServerSpec], timeout: float) -> list[ServerReport]:
    async with open_pool(*specs, **_pool_options(timeout)) as pool:
        return await server_status(pool)


def _cmd_status(args: argparse.Namespace) -> int:
    specs = resolve_servers(args.server)
    reports = trio.run(_status, specs, args.timeout)
    out = _out()
    if args.json:
        for r in reports:
            print(json.dumps(dataclasses.asdict(r), ensure_ascii=False), file=out)
    else:
        rows = [["SERVER", "STATE", "LATENCY", "VERSION", "MEMORY", "KEYS", ""]]
        for r in reports:
            rows.append(
                [
                    r.server,
                    r.state,
                    f"{r.latency_ms:.2f} ms" if r.latency_ms is not None else "-",
                    r.version or "-",
                    r.used_memory_human or "-",
                    str(r.keys) if r.keys is not None else "-",
                    _short_error(r) if r.state != "up" else "",
                ]
            )
        _print_table(rows, out)
        up = sum(1 for r in reports if r.state == "up")
        print(f"{up} of {len(reports)} servers up", file=out)
    return EXIT_OK if any(r.state == "up" for r in reports) else EXIT_FAILURE


# --- repair --------------------------------------------------------------------


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
    async with open_pool(*specs, **_pool_options(args.timeout)) as pool:
        if progress is None:
            return await repair_all(
                pool, match=args.match, rate=args.rate, count=args.count,
                concurrency=args.concurrency,
            )  # fmt: skip
        total = await _estimate_keys(pool)
        with progress:
            task = progress.add_task("scanning", total=total, repaired=0, errors=0)

            def update(r: RepairReport) -> None:
                progress.update(
                    task,
                    description="repairing",
                    completed=r.processed,
                    total=max(total or 0, r.scanned) or None,
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
            )
            progress.update(
                task, description="done", total=report.scanned, completed=report.scanned
            )
        return report


def _cmd_repair(args: argparse.Namespace) -> int:
    specs = resolve_servers(args.server)
    report = trio.run(_repair, args, specs)
    for message in report.messages:
        print(f"trio-redisha: {message}", file=sys.stderr)
    print(report.summary(), file=_out())
    return EXIT_OK if report.ok else EXIT_FAILURE


# --- demo ----------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo

    return _demo.main(duration=args.duration, clients=args.clients)


# --- entry point ---------------------------------------------------------------


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


def _exit_code_for(exc: BaseException) -> int | None:
    """Report an expected failure on stderr and return its exit code, else None."""
    leaves = _leaves(exc)
    if any(isinstance(e, KeyboardInterrupt) for e in leaves):
        print("trio-redisha: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if len(leaves) != 1:
        return None
    leaf = leaves[0]
    if isinstance(leaf, UsageError):
        _err_line(str(leaf), leaf.prog)
        return EXIT_USAGE
    if isinstance(leaf, (ConfigurationError, UnsupportedCommand, CommandEncodeError)):
        _err_line(str(leaf))
        return EXIT_USAGE
    if isinstance(leaf, CommandError):
        _err_line(str(leaf))
        return EXIT_FAILURE
    if isinstance(leaf, RedisHAError):
        _err_line(f"{type(leaf).__name__}: {leaf}")
        return EXIT_FAILURE
    if isinstance(leaf, BrokenPipeError):
        # Output piped into `head` or similar: stop quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-redisha`` command line.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code (see the module docstring).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _err_line(str(exc), exc.prog)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    with _logging(args.verbose):
        try:
            return handler(args)
        except BaseException as exc:
            code = _exit_code_for(exc)
            if code is None:
                raise
            return code


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Show the library's log records on stderr only when asked to.

    Without a handler anywhere, Python's last-resort handler would print every
    warning ("server ... is down") in the middle of the output; a NullHandler on
    the library's logger stops that, and records still propagate to the root
    logger if the host application configured one.
    """
    logger = logging.getLogger("trio_redisha")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    if not verbose:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("trio-redisha: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
