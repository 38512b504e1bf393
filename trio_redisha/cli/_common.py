"""What every ``trio-redisha`` subcommand shares: options, servers, output, errors.

Exit codes (from :mod:`trio_redisha._exits`): 0 success, 1 failure, 2 a usage
mistake, 130 interrupted, 143 terminated. A usage mistake or a failure,
including any error of the library's hierarchy, is reported as one line on
stderr by :func:`exit_code_for`, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import IO, Any, Final, NoReturn, TypeVar

import trio

from .._exits import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CommandError,
)
from ..config import ServerSpec, parse_server
from ..connection import DEFAULT_STALL_TIMEOUT
from ..exceptions import (
    CommandEncodeError,
    ConfigurationError,
    RedisHAError,
    ReplyTooLarge,
    UnsupportedCommand,
)
from ..resp import DEFAULT_LIMITS

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "DEFAULT_CLI_TIMEOUT",
    "ENV_PASSWORD",
    "ENV_SERVERS",
    "EPILOG",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "MAX_INT_OPTION",
    "CommandError",
    "Parser",
    "UsageError",
    "add_server_options",
    "add_verbose",
    "check_text",
    "err_line",
    "exit_code_for",
    "format_reply",
    "jsonable",
    "logging_to_stderr",
    "non_negative_float",
    "one_line",
    "out",
    "pool_options",
    "positive_float",
    "positive_int",
    "print_table",
    "resolve_servers",
    "text_of",
    "wrap",
]

#: Environment variable holding comma-separated server URLs, used when no
#: ``--server`` option is given.
ENV_SERVERS: Final = "REDISHA_SERVERS"
#: Environment variable holding a password for servers whose URL carries none.
ENV_PASSWORD: Final = "REDISHA_PASSWORD"

#: Default per-command deadline of the CLI. Longer than the library's 0.5 s:
#: an interactive command waits for a first connection as well.
DEFAULT_CLI_TIMEOUT: Final = 1.0
EPILOG = f"""\
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


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised, so that ``main`` prints one line."""

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` instead of printing the usage and exiting."""
        raise UsageError(f"{message} (see {self.prog} --help)", self.prog)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


#: The largest integer option accepted (--count, --concurrency, --clients): far
#: beyond any useful value, and short of tasks or buffers that exhaust memory.
MAX_INT_OPTION: Final = 100_000


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_INT_OPTION:
        raise argparse.ArgumentTypeError(f"must be an integer in 1..{MAX_INT_OPTION}, got {text!r}")
    return value


def element_count(text: str) -> int:
    """``--max-reply-elements``: any positive integer (it bounds memory, not work)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log the library's warnings (servers going down and coming back) on stderr",
    )


def add_server_options(p: argparse.ArgumentParser) -> None:
    add_verbose(p)
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
        type=positive_float,
        default=DEFAULT_CLI_TIMEOUT,
        metavar="S",
        help=f"per-command deadline in seconds (default {DEFAULT_CLI_TIMEOUT:g})",
    )
    p.add_argument(
        "--max-reply-elements",
        type=element_count,
        default=None,
        metavar="N",
        help=(
            "most elements one reply may hold, nested ones included (default"
            f" {DEFAULT_LIMITS.max_reply_elements:,}: a map of about a million fields);"
            " raise it to read larger keys"
        ),
    )


def wrap(text: str) -> str:
    # The raw formatter keeps the epilog's layout; descriptions are wrapped here.
    return textwrap.fill(text, width=79)


# --- output --------------------------------------------------------------------------


def out() -> IO[str]:
    return sys.stdout


def json_line(value: Any, stream: IO[str]) -> str:
    """``value`` as one line of JSON for ``stream``: plain text where it is UTF-8,
    ``\\u`` escapes elsewhere (an escape is valid JSON; an unencodable character
    is not)."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return json.dumps(value, ensure_ascii=encoding not in ("utf8", "utf8sig"))


def err_line(message: str, prog: str = "trio-redisha") -> None:
    """Print one error line on stderr (newlines folded, so it stays one line)."""
    print(f"{prog}: error: {one_line(str(message))}", file=sys.stderr)


def one_line(text: str) -> str:
    """``text`` on one line, whitespace folded and other control characters escaped.

    Error messages quote what servers sent; a terminal must never receive a
    server's escape sequences from them.
    """
    return _printable(" ".join(text.split()))


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def text_of(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return repr(value)


def jsonable(value: Any) -> Any:
    """A reply as plain JSON data: text for bytes, lists for sets, strings for inf/nan.

    RESP3 doubles may be infinite or NaN, which JSON cannot hold (``json.dumps``
    would write ``Infinity``, which no JSON parser reads): they become the text
    ``"inf"``, ``"-inf"`` or ``"nan"``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    return value


def _describe_error(exc: BaseException) -> str:
    hint = " (raise it with --max-reply-elements N)" if isinstance(exc, ReplyTooLarge) else ""
    return f"error: {type(exc).__name__}: {one_line(str(exc))}{hint}"


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
        value = text_of(value)
    if isinstance(value, str):
        if "\n" in value and value.strip():  # INFO, CLIENT LIST...: a block of lines
            lines = [line.rstrip("\r") for line in value.strip("\r\n").split("\n")]
            # Never a server's escape sequences to the terminal: such lines are escaped.
            return "\n".join(_printable(line) for line in lines)
        if value == "" or value != value.strip() or not value.isprintable():
            return json.dumps(value, ensure_ascii=False)
        return value
    if isinstance(value, (list, tuple, set, frozenset, dict)) and not value:
        return "(empty)"
    return json.dumps(jsonable(value), ensure_ascii=False)


def print_table(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    rows = [[one_line(c) for c in row] for row in rows]  # cells may quote a server
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


# --- servers -------------------------------------------------------------------


def check_text(argv: Sequence[str]) -> None:
    """Refuse arguments that cannot be sent: text that is not valid UTF-8.

    Python turns bytes of the command line (and of the environment) that are
    not valid in the locale's encoding into lone surrogates (``"\\udcff"``);
    they cannot be sent to Redis as text, so they are refused before anything
    is sent. The argument is named by its position only: it may be a password.

    Raises:
        UsageError: An argument is not valid UTF-8 text.
    """
    for n, arg in enumerate(argv, 1):
        if not _is_text(arg):
            raise UsageError(
                f"argument {n} is not valid UTF-8 text (it holds bytes the locale cannot "
                "decode); nothing was sent"
            )


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_one(url: str) -> ServerSpec:
    if not _is_text(url):
        raise ConfigurationError("invalid server URL: not valid UTF-8 text")
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
    if password is not None and not _is_text(password):
        raise ConfigurationError(f"${ENV_PASSWORD} is not valid UTF-8 text")
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


def pool_options(timeout: float, max_reply_elements: int | None = None) -> dict[str, Any]:
    """The pool's options for ``--timeout`` and ``--max-reply-elements``."""
    # One deadline for everything: the first call also waits for the connections.
    # A deadline longer than the pool's default stall timeout (a slow command, a
    # busy fleet) raises that too: a connection is only rebuilt once a reply is
    # late by twice the deadline.
    options: dict[str, Any] = {
        "timeout": timeout,
        "connect_timeout": timeout,
        "stall_timeout": max(DEFAULT_STALL_TIMEOUT, 2 * timeout),
    }
    if max_reply_elements is not None:
        options["limits"] = dataclasses.replace(
            DEFAULT_LIMITS, max_reply_elements=max_reply_elements
        )
    return options


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


T = TypeVar("T")


class Terminated(Exception):
    """SIGTERM stopped the command (:func:`run_command`): exit code 143."""


def run_command(async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(async_fn, *args)``, stopped by SIGTERM as by Ctrl-C.

    SIGTERM cancels the command, whose cleanup (the pool closed) then runs,
    and raises :class:`Terminated`, which :func:`exit_code_for` turns into 143
    and ``trio-redisha: terminated``. The signal is received by trio itself
    (``open_signal_receiver``), in the main thread only, so it never lands
    inside trio's own code, whatever SIGINT's disposition.
    """
    return trio.run(_terminable, async_fn, args)


async def _terminable(async_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    if threading.current_thread() is not threading.main_thread():
        return await async_fn(*args)
    results: list[T] = []
    terminated = False
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def command() -> None:
                results.append(await async_fn(*args))
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                nonlocal terminated
                async for _ in signals:
                    terminated = True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(command)
            nursery.start_soon(watch)
    if terminated:
        raise Terminated
    return results[0]


def exit_code_for(exc: BaseException) -> int | None:
    """Report an expected failure on stderr and return its exit code, else None."""
    leaves = _leaves(exc)
    if any(isinstance(e, KeyboardInterrupt) for e in leaves):
        print("trio-redisha: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if any(isinstance(e, Terminated) for e in leaves):
        print("trio-redisha: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    if len(leaves) != 1:
        return None
    leaf = leaves[0]
    if isinstance(leaf, UsageError):
        err_line(str(leaf), leaf.prog)
        return EXIT_USAGE
    if isinstance(leaf, (ConfigurationError, UnsupportedCommand, CommandEncodeError)):
        err_line(str(leaf))
        return EXIT_USAGE
    if isinstance(leaf, CommandError):
        err_line(str(leaf))
        return EXIT_FAILURE
    if isinstance(leaf, RedisHAError):
        err_line(f"{type(leaf).__name__}: {leaf}")
        return EXIT_FAILURE
    if isinstance(leaf, BrokenPipeError):
        # Output piped into `head` or similar: stop quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    return None


class _PrintableFormatter(logging.Formatter):
    """Log lines quote what servers sent: escape their control characters.

    Each line of the record (a traceback's included) is kept, the control
    characters in it are escaped, as :func:`one_line` does for error lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(_printable(line) for line in super().format(record).split("\n"))


@contextlib.contextmanager
def logging_to_stderr(verbose: bool) -> Iterator[None]:
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
    handler.setFormatter(_PrintableFormatter("trio-redisha: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
