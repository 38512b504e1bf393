"""``trio-redisha status``: each server's state, latency, version, memory and keys."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from .._info import ServerInfo, parse_info
from ..config import ServerSpec
from ..connection import connect
from ..exceptions import AuthenticationError, RedisHAError, ReplyError, ServerTimeout
from ..pool import Pool, ServerState, ServerStatus, open_pool
from ._common import (
    EPILOG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_server_options,
    json_line,
    out,
    pool_options,
    print_table,
    resolve_servers,
    run_command,
    wrap,
)

__all__ = ["STATUS_PINGS", "ServerReport", "add_parser", "run", "server_status"]


def add_parser(sub: Any) -> None:
    """Add the subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "status",
        help="show each server's state, latency, version, memory and keys",
        description=wrap(
            "Show, per server: up, down or hung; PING latency; Redis version; used "
            "memory; number of keys. A server that refuses the credentials is shown as "
            "auth-failed. Exit 0 if a server is up, 2 if none is and every one "
            "refused the credentials (a usage mistake), else 1."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per server")
    p.set_defaults(handler=run)


#: Pings whose median is reported as a server's latency.
STATUS_PINGS: Final = 3


@dataclass
class ServerReport:
    """What ``trio-redisha status`` found out about one server.

    Attributes:
        server: The server's URL without credentials.
        state: ``"up"``, ``"down"`` (unreachable), ``"hung"`` (accepts but does not
            answer), ``"auth-failed"`` (refuses our credentials, or wants some
            and got none) or ``"error"`` (answers PING with an error).
        latency_ms: Median PING round trip in milliseconds, when up.
        version: The server software's version: ``valkey_version`` for Valkey (whose
            ``redis_version`` stays at 7.2.4), ``redis_version`` for Redis.
        used_memory: ``used_memory`` in bytes.
        used_memory_human: ``used_memory_human`` from INFO (e.g. ``"1.02M"``).
        keys: DBSIZE of the selected database.
        role: ``master`` or ``slave``.
        error: Why the server is not up.
        software: ``"redis"``, ``"valkey"``..., from INFO's ``server_name``
            (Redis sends none).
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
    software: str | None = None


def _state_of(exc: BaseException, status: ServerStatus) -> str:
    """Tell a server that refuses (down) from one that accepts but never answers (hung)."""
    if isinstance(exc, ReplyError) or "failed during the handshake" in (status.last_error or ""):
        # An error reply: to the PINGs, or to the connection's own (a PING the
        # server renamed away, a server still loading its data...).
        return "error"
    if (
        isinstance(exc, ServerTimeout)
        or status.state in (ServerState.CONNECTING, ServerState.SUSPECT)
        or "timed out" in (status.last_error or "")
    ):
        return "hung"
    return "down"


def _version_label(report: ServerReport) -> str:
    """``7.0.15`` for Redis; ``valkey-8.0.1`` for another server software (one cell)."""
    if report.version is None:
        return "-"
    if report.software in (None, "redis"):
        return report.version
    return ServerInfo(report.software, report.version).label or "-"


def _short_error(report: ServerReport) -> str:
    return _without_label(report.error or "", report.server)


def _without_label(text: str, label: str) -> str:
    """An error's text without the server's URL, which the table already shows."""
    text = " ".join(text.split())
    while text.startswith(label):
        text = text.removeprefix(label).lstrip(": ").removeprefix("is down: ")
    return text


def _auth_failure(exc: AuthenticationError, label: str) -> str:
    text = _without_label(str(exc), label)
    if "NOAUTH" in text:
        return f"authentication failed: the server wants credentials and got none ({text})"
    return f"authentication failed: wrong user name or password ({text})"


async def _diagnose(spec: ServerSpec, report: ServerReport, timeout: float) -> None:
    """One direct connection attempt to a server found down: does it refuse our credentials?

    The pool keeps only the text of a failed connection; the connection's own
    exception says exactly whether the handshake was refused
    (:class:`~trio_redisha.AuthenticationError`, never holding the password).
    """
    with trio.move_on_after(timeout):
        try:
            conn = await connect(spec)
        except AuthenticationError as exc:
            report.state = "auth-failed"
            report.error = _auth_failure(exc, report.server)
        except (RedisHAError, OSError):
            pass
        else:
            conn.close_now()


async def server_status(
    pool: Pool, *, specs: Sequence[ServerSpec] | None = None
) -> list[ServerReport]:
    """Probe every server of a pool: PING (latency), INFO and DBSIZE.

    Args:
        pool: An open pool.
        specs: The pool's servers, as given to it. With them, a server found
            down gets one direct connection attempt, to tell a server that
            refuses the credentials (``"auth-failed"``) from one that is down.

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
    if specs is not None:
        async with trio.open_nursery() as nursery:
            for spec, report in zip(specs, reports, strict=True):
                if report.state == "down":
                    nursery.start_soon(_diagnose, spec, report, pool.timeout)
    info = await pool.execute("INFO")
    dbsize = await pool.execute("DBSIZE")
    for report, i_entry, d_entry in zip(reports, info, dbsize, strict=True):
        if report.state != "up":
            continue
        if isinstance(i_entry, BaseException):
            report.error = str(i_entry)
        else:
            parsed = parse_info(i_entry)
            report.software = parsed.software
            report.version = parsed.version
            report.used_memory_human = parsed.get("used_memory_human")
            report.role = parsed.get("role")
            with contextlib.suppress(KeyError, ValueError):
                report.used_memory = int(parsed.fields["used_memory"])
        if isinstance(d_entry, int):
            report.keys = d_entry
    return reports


async def _status(
    specs: Sequence[ServerSpec], timeout: float, max_elements: int | None
) -> list[ServerReport]:
    async with open_pool(*specs, **pool_options(timeout, max_elements)) as pool:
        return await server_status(pool, specs=specs)


def run(args: argparse.Namespace) -> int:
    """Run ``status``; return the exit code."""
    specs = resolve_servers(args.server)
    reports = run_command(_status, specs, args.timeout, args.max_reply_elements)
    stdout = out()
    if args.json:
        for r in reports:
            print(json_line(dataclasses.asdict(r), stdout), file=stdout)
    else:
        rows = [["SERVER", "STATE", "LATENCY", "VERSION", "MEMORY", "KEYS", ""]]
        for r in reports:
            rows.append(
                [
                    r.server,
                    r.state,
                    f"{r.latency_ms:.2f} ms" if r.latency_ms is not None else "-",
                    _version_label(r),
                    r.used_memory_human or "-",
                    str(r.keys) if r.keys is not None else "-",
                    _short_error(r) if r.state != "up" else "",
                ]
            )
        print_table(rows, stdout)
        up = sum(1 for r in reports if r.state == "up")
        print(f"{up} of {len(reports)} servers up", file=stdout)
    if any(r.state == "up" for r in reports):
        return EXIT_OK
    if all(r.state == "auth-failed" for r in reports):
        return EXIT_USAGE  # the credentials given are wrong: a usage mistake
    return EXIT_FAILURE
