"""``trio-redisha demo``: a session store that survives failures, watched live.

Three throwaway ``redis-server`` processes are started on free loopback ports,
each in its own temporary directory with persistence off (``--save ""
--appendonly no``), so a killed server comes back empty. Concurrent clients
then run a session-store workload: each owns a few sessions and, in a loop,
loads one and saves its next version, recording every write the store
acknowledged. Meanwhile one fault at a time is injected:

1. a server is killed (SIGKILL) and, a while later, started again (empty);
2. another is frozen (SIGSTOP: it accepts bytes but never answers) and thawed;
3. the third is killed and restarted at once, empty.

Writes need two of the three servers (``write_quorum=2``), so every
acknowledged write lives on two servers and no single fault can lose it. At
the end every session is read back through the store (which merges the
servers and repairs those behind) and compared with the last acknowledged
version: the number of acknowledged writes lost must be 0.

With placement (``--servers 6 --replicas 3``) each session lives on three of
the six servers, its owners; the faults hit the servers as before,
each the owner of about half of the sessions, except that the first fault
kills two servers at once (A and B, started again empty together), and the
empty restart hits D. A write finding fewer than two
owners usable goes on to fallback servers (sloppy quorum); reads include them
and hand their copies back to the owners. At the end every session must be
on exactly its owners, identical on each, and nowhere else.

Every process runs in its own process group with a parent-death signal, and is
killed, reaped and its directory removed in ``finally`` blocks, so nothing is
left behind on success, on error or on Ctrl-C.

:func:`run_demo` is the workload without the command line, for tests.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import trio

from ._exits import EXIT_FAILURE, EXIT_OK, EXIT_TERMINATED, CommandError
from ._util import quantile
from .exceptions import RedisHAError
from .pool import Pool, ServerState, ServerStatus, open_pool
from .session import SessionStore
from .testing import RedisServer, RedisServerNotFoundError, RedisStartError
from .testing import find_redis_server as _find_redis_server

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["DemoError", "DemoReport", "LocalRedis", "find_redis_server", "main", "run_demo"]

DEFAULT_DURATION: Final = 20.0
DEFAULT_CLIENTS: Final = 8
#: Sessions each client owns and cycles through.
SESSIONS_PER_CLIENT: Final = 4
#: The servers of the demo (by default).
SERVERS: Final = 3
#: At most this many servers (they are named A to Z).
MAX_SERVERS: Final = 26
#: Acknowledgements a session write needs: a majority of the three servers, so
#: that any single fault leaves a copy of every acknowledged write (Dynamo's W=2 of N=3).
WRITE_QUORUM: Final = 2
#: Per-command deadline: a frozen server costs one of these, then its circuit opens.
POOL_TIMEOUT: Final = 0.25
#: Reconnect backoff cap: a restarted server is used again within about this long.
BACKOFF_CAP: Final = 0.5
#: Session time to live in the store (longer than any demo).
SESSION_TTL: Final = 3600.0
#: Seconds allowed for a redis-server to answer its first PING.
START_TIMEOUT: Final = 10.0
#: Seconds allowed, after the workload, for the pool to see every server again
#: and for read repair to bring every replica up to date.
SETTLE_TIMEOUT: Final = 5.0
#: Poll step while waiting for a server or the pool to reach a state.
POLL: Final = 0.01
#: How often the plain-text view prints a progress line, in seconds.
LINE_INTERVAL: Final = 2.0
#: The fault schedule: (fraction of the duration, action, server index).
SCHEDULE: Final[tuple[tuple[float, str, int], ...]] = (
    (0.15, "kill", 0),
    (0.35, "start", 0),
    (0.50, "freeze", 1),
    (0.70, "thaw", 1),
    (0.80, "restart", 2),
)
#: The schedule with placement: two servers killed together (the sessions both
#: own have one owner left, so their writes go on to fallbacks: sloppy quorum),
#: both started again empty (reads hand the fallbacks' copies back), then a
#: freeze and an empty restart of two other servers.
PLACED_SCHEDULE: Final[tuple[tuple[float, str, int], ...]] = (
    (0.15, "kill", 0),
    (0.15, "kill", 1),
    (0.35, "start", 0),
    (0.35, "start", 1),
    (0.50, "freeze", 2),
    (0.70, "thaw", 2),
    (0.80, "restart", 3),
)


class DemoError(CommandError):
    """The demo could not run (no redis-server, a server that would not start)."""


def find_redis_server(executable: str | None = None) -> str:
    """Locate ``redis-server``: the argument, ``$REDISHA_REDIS_SERVER``, then PATH.

    Args:
        executable: An explicit path, tried first.

    Returns:
        The path of an executable file.

    Raises:
        DemoError: None was found; the message names the install command.
    """
    try:
        return _find_redis_server(executable)
    except RedisServerNotFoundError as exc:
        raise DemoError(str(exc)) from None


class LocalRedis:
    """One throwaway ``redis-server`` of the demo, with a name and its last fault.

    The process itself is a :class:`trio_redisha.testing.RedisServer`: its own
    session (a Ctrl-C in the terminal reaches only the demo, which then kills it
    deliberately), SIGKILL if the demo dies, nothing persisted (a restart gives
    an empty server on the same port).

    Attributes:
        name: A short name for the display (``"A"``, ``"B"``, ``"C"``).
        directory: Its working directory.
        fault: What the demo did to it last (``"running"``, ``"killed"``, ``"frozen"``...).
    """

    def __init__(self, executable: str, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.fault = "stopped"
        self._server = RedisServer(
            executable=executable, directory=directory, start_timeout=START_TIMEOUT
        )

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._server.url

    @property
    def port(self) -> int:
        """Its TCP port (0 until first started)."""
        return self._server.port

    @property
    def pids(self) -> list[int]:
        """Every process id it ever had."""
        return self._server.pids

    @property
    def running(self) -> bool:
        """Whether the process exists (frozen counts as running)."""
        return self._server.running

    async def start(self) -> None:
        """Start the server and wait until it answers PING.

        The first start picks a free port; later starts reuse it, which gives an
        empty server at the same address.

        Raises:
            DemoError: It exited or did not answer within :data:`START_TIMEOUT`.
        """
        try:
            await self._server.astart()
        except RedisStartError as exc:
            raise DemoError(" ".join(str(exc).split())[-300:]) from None
        self.fault = "running"

    def kill(self) -> None:
        """SIGKILL the process and reap it (instant, even if frozen)."""
        self._server.kill()
        self.fault = "killed"

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        if self._server.running:
            self._server.freeze()
        self.fault = "frozen"

    def thaw(self) -> None:
        """SIGCONT: the server answers again (and applies what it received meanwhile)."""
        if self._server.running:
            self._server.thaw()
        self.fault = "running"

    def close(self) -> None:
        """Kill and reap the process and close its log (idempotent)."""
        self._server.stop(graceful=False)
        self.fault = "stopped"


# --- the workload --------------------------------------------------------------


@dataclass
class _Session:
    sid: str
    owner: int
    tried: int = 0
    acked: list[int] = field(default_factory=list)

    @property
    def last_acked(self) -> int:
        return self.acked[-1] if self.acked else 0


def session_data(owner: int, version: int) -> dict[str, Any]:
    """The content of a session at a given version (what the clients save).

    Args:
        owner: The client's number.
        version: The version, counted from 1 by the owner.

    Returns:
        A small session, as a web application would keep one.
    """
    return {
        "user": f"user-{owner}",
        "v": version,
        "page": f"/products/{version % 17}",
        "cart": [f"item-{i}" for i in range(version % 4)],
    }


@dataclass
class DemoReport:
    """What the demo did and found.

    Attributes:
        duration: Seconds the workload ran.
        clients: Concurrent clients.
        sessions: Sessions written.
        operations: Loads and saves attempted.
        reads: Loads that succeeded.
        writes: Saves attempted.
        errors: Loads and saves that raised (by exception type in ``error_kinds``).
        acknowledged: Saves the store acknowledged.
        lost: Acknowledged saves not visible when every session was read back
            at the end (must be 0).
        stale_reads: Loads during the run that returned an older version than
            the last acknowledged one.
        latency_p50: Median latency of an operation, in seconds.
        latency_p99: 99th percentile of the same.
        in_sync: Sessions identical on every server after the final read-back
            (read repair), out of ``sessions``; with placement, identical on
            every owner and absent from every other server.
        replicas: Owners per session (``None``: every server holds every session).
        sloppy_writes: With placement, writes that went on to fallback servers
            because fewer than two owners were usable.
        events: ``(seconds since start, text)`` of each fault and phase.
        servers: The servers' URLs.
        workdir: The temporary directory (removed at the end).
        pids: Every redis-server process id started (all reaped at the end).
        error_kinds: Errors counted by exception type name.
    """

    duration: float = 0.0
    clients: int = 0
    sessions: int = 0
    operations: int = 0
    reads: int = 0
    writes: int = 0
    errors: int = 0
    acknowledged: int = 0
    lost: int = 0
    stale_reads: int = 0
    latency_p50: float | None = None
    latency_p99: float | None = None
    in_sync: int = 0
    replicas: int | None = None
    sloppy_writes: int = 0
    events: list[tuple[float, str]] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    workdir: str = ""
    pids: list[int] = field(default_factory=list)
    error_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """Whether every acknowledged write survived."""
        return self.lost == 0

    def rows(self) -> list[tuple[str, str]]:
        """The result table as ``(label, value)`` rows."""

        def ms(x: float | None) -> str:
            return "-" if x is None else f"{x * 1000:.2f} ms"

        errors = f"{self.errors:,}"
        if self.error_kinds:
            errors += (
                " (" + ", ".join(f"{k} {n:,}" for k, n in self.error_kinds.most_common()) + ")"
            )
        rate = self.operations / max(self.duration, 1e-9)
        run = f"{self.duration:.1f} s, {self.clients} clients, {self.sessions} sessions"
        where = (
            "sessions identical on all servers"
            if self.replicas is None
            else "sessions on exactly their owners"
        )
        return [
            ("duration", run),
            ("operations", f"{self.operations:,} ({rate:,.0f}/s)"),
            ("errors", errors),
            ("latency p50", ms(self.latency_p50)),
            ("latency p99", ms(self.latency_p99)),
            ("acknowledged writes", f"{self.acknowledged:,}"),
            ("stale reads during faults", f"{self.stale_reads:,}"),
            *([] if self.replicas is None else [
                ("writes that went to fallbacks", f"{self.sloppy_writes:,}")
            ]),
            (where, f"{self.in_sync} of {self.sessions}"),
            ("acknowledged writes lost", f"{self.lost:,}"),
        ]  # fmt: skip


class _Run:
    """The live state of one demo run, shared by the workload and the views."""

    def __init__(self, duration: float, clients: int) -> None:
        self.duration = duration
        self.clients = clients
        self.report = DemoReport(clients=clients)
        self.latencies: list[float] = []
        self.servers: list[LocalRedis] = []
        self.pool: Pool | None = None
        self.phase = "starting servers"
        self.start = 0.0
        self.stop_at = math.inf
        self.samples: deque[tuple[float, int]] = deque(maxlen=16)
        self.listeners: list[Callable[[float, str], None]] = []
        self._statuses: list[ServerStatus] = []

    def statuses(self) -> list[ServerStatus]:
        """The pool's view of each server (the last one seen once the pool is closed)."""
        if self.pool is not None:
            self._statuses = self.pool.status()
        return self._statuses

    def elapsed(self) -> float:
        return trio.current_time() - self.start if self.start else 0.0

    def event(self, text: str) -> None:
        t = self.elapsed()
        self.report.events.append((t, text))
        for listener in self.listeners:
            listener(t, text)

    def ops_per_second(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def failed(self, exc: BaseException) -> None:
        self.report.errors += 1
        self.report.error_kinds[type(exc).__name__] += 1


def _session_store(pool: Pool) -> SessionStore:
    return SessionStore(pool, ttl=SESSION_TTL, write_quorum=WRITE_QUORUM)


async def _client(run: _Run, store: SessionStore, owner: int, sessions: list[_Session]) -> None:
    report = run.report
    latencies = run.latencies
    k = 0
    while trio.current_time() < run.stop_at:
        s = sessions[k % len(sessions)]
        k += 1
        t0 = trio.current_time()
        try:
            data = await store.load(s.sid)
        except RedisHAError as exc:
            run.failed(exc)
        else:
            report.reads += 1
            seen = data.get("v", 0)
            if not isinstance(seen, int) or seen < s.last_acked:
                report.stale_reads += 1
        t1 = trio.current_time()
        latencies.append(t1 - t0)
        s.tried += 1
        version = s.tried
        report.writes += 1
        try:
            await store.save(s.sid, session_data(owner, version))
        except RedisHAError as exc:
            run.failed(exc)
        else:
            s.acked.append(version)
            report.acknowledged += 1
        latencies.append(trio.current_time() - t1)
        report.operations += 2


async def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    # The pool and the processes offer no event to wait on: poll the state.
    with trio.move_on_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(POLL)
        return True
    return False


def _pool_sees_up(pool: Pool, index: int) -> Callable[[], bool]:
    return lambda: pool.status()[index].state is ServerState.UP


def _pool_sees_down(pool: Pool, index: int) -> Callable[[], bool]:
    return lambda: pool.status()[index].state is not ServerState.UP


async def _faults(run: _Run, pool: Pool) -> None:
    """Inject the faults of :data:`SCHEDULE` (:data:`PLACED_SCHEDULE` with placement)."""
    servers = run.servers
    schedule = SCHEDULE if run.report.replicas is None else PLACED_SCHEDULE
    for fraction, action, index in schedule:
        await trio.sleep_until(run.start + fraction * run.duration)
        server = servers[index]
        if action == "kill":
            server.kill()
            run.event(f"killed server {server.name} ({server.url}, SIGKILL)")
        elif action == "freeze":
            server.freeze()
            run.event(f"froze server {server.name} ({server.url}, SIGSTOP)")
        elif action == "thaw":
            server.thaw()
            run.event(f"thawed server {server.name} (SIGCONT)")
        elif action == "start":
            await server.start()
            run.event(f"started server {server.name} again: empty")
        elif action == "restart":
            server.kill()
            # Restart only once the pool has noticed, so that it really reconnects.
            await _wait_until(_pool_sees_down(pool, index), SETTLE_TIMEOUT)
            await server.start()
            server.fault = "restarted empty"
            run.event(f"restarted server {server.name} empty (SIGKILL, then start)")
        # One fault at a time: wait until the pool uses the server again.
        if action in ("start", "thaw", "restart") and await _wait_until(
            _pool_sees_up(pool, index), SETTLE_TIMEOUT
        ):
            run.event(f"server {server.name} is used again")


async def _sampler(run: _Run) -> None:
    while True:
        run.samples.append((trio.current_time(), run.report.operations))
        await trio.sleep(0.25)


async def _read_back(run: _Run, store: SessionStore, sessions: list[_Session]) -> None:
    """Read every session through the store and count acknowledged writes lost."""
    report = run.report
    for s in sessions:
        data: dict[str, Any] | None = None
        for _ in range(3):
            try:
                data = await store.load(s.sid)
                break
            except RedisHAError:
                await trio.sleep(POLL)
        version = data.get("v") if data is not None else None
        if not isinstance(version, int) or data != session_data(s.owner, version):
            version = 0  # missing, unreadable or not what the owner wrote
        lost = sum(1 for v in s.acked if v > version)
        if lost:
            run.event(f"session {s.sid[:12]}: {lost} acknowledged writes lost")
        report.lost += lost


def _as_fields(reply: Any) -> dict[Any, Any] | None:
    """An HGETALL reply as a dict (field order differs between servers), or None."""
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list) and len(reply) % 2 == 0:
        return dict(zip(reply[0::2], reply[1::2], strict=True))
    return None


async def _out_of_sync(pool: Pool, store: SessionStore, sessions: list[_Session]) -> list[_Session]:
    """The sessions whose stored fields are not identical on every server.

    With placement: not identical on every owner, or present on another server.
    """
    behind = []
    everyone = range(len(pool))
    for s in sessions:
        key = store.key(s.sid)
        replies = await pool.execute_on(everyone, "HGETALL", key)
        owners = pool._owner_indices(key)
        copies = [_as_fields(replies[i]) for i in owners]
        elsewhere = [replies[i] for i in everyone if i not in owners]
        if (
            copies[0] is None  # an error, not a hash: cannot be judged in sync
            or any(c != copies[0] for c in copies)
            or any(r != [] and r != {} for r in elsewhere)
        ):
            behind.append(s)
    return behind


async def _settle(run: _Run, pool: Pool, store: SessionStore, sessions: list[_Session]) -> int:
    """Let read repair bring every replica up to date; return the sessions in sync.

    Read repair runs in the background after a load and is rate limited, so a
    session still behind is loaded again (which repairs it again) until every
    server holds the same bytes, or :data:`SETTLE_TIMEOUT` passes.
    """
    behind = sessions
    with trio.move_on_after(SETTLE_TIMEOUT):
        while True:
            behind = await _out_of_sync(pool, store, behind)
            if not behind:
                break
            await trio.sleep(0.05)
            for s in behind:
                with contextlib.suppress(RedisHAError):
                    await store.load(s.sid)
    return len(sessions) - len(behind)


async def _verify(run: _Run, pool: Pool, store: SessionStore, sessions: list[_Session]) -> None:
    run.phase = "verifying"
    for server in run.servers:
        if server.fault == "frozen":
            server.thaw()
        elif not server.running:
            await server.start()
    every_up = await _wait_until(
        lambda: all(st.state is ServerState.UP for st in pool.status()), SETTLE_TIMEOUT
    )
    run.event("all servers up" if every_up else "not every server came back")
    run.event(f"reading back {len(sessions)} sessions")
    await _read_back(run, store, sessions)
    in_sync = await _settle(run, pool, store, sessions)
    run.report.in_sync = in_sync
    run.report.sloppy_writes = pool.stats.sloppy_writes
    where = "identical on all servers" if run.report.replicas is None else "on exactly their owners"
    run.event(f"read repair: {in_sync} of {len(sessions)} sessions {where}")


async def _workload(run: _Run, pool: Pool) -> None:
    store = _session_store(pool)
    sessions: list[list[_Session]] = []
    for owner in range(run.clients):
        mine = []
        for _ in range(SESSIONS_PER_CLIENT):
            sid = store.new_id()
            mine.append(_Session(sid, owner))
        sessions.append(mine)
    if pool.placement is not None:
        # The first session is one that servers A and B, killed together, both
        # own: its writes go on to a fallback (sloppy quorum) whatever the random
        # ids (with 6 servers and 3 replicas, 12 random sessions miss such a pair
        # about one run in 14).
        both = {pool.servers[0], pool.servers[1]}
        for _ in range(10_000):
            if both <= set(pool.owners(store.key(sessions[0][0].sid))):
                break
            sessions[0][0] = _Session(store.new_id(), 0)
    flat = [s for mine in sessions for s in mine]
    run.report.sessions = len(flat)
    run.phase = "running"
    run.start = trio.current_time()
    run.stop_at = run.start + run.duration
    run.event(f"workload started: {run.clients} clients, {len(flat)} sessions")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_sampler, run)
        async with trio.open_nursery() as work:
            work.start_soon(_faults, run, pool)
            for owner, mine in enumerate(sessions):
                work.start_soon(_client, run, store, owner, mine)
        nursery.cancel_scope.cancel()
    run.report.duration = trio.current_time() - run.start
    run.event("workload stopped")
    await _verify(run, pool, store, flat)


async def run_demo(
    duration: float = DEFAULT_DURATION,
    clients: int = DEFAULT_CLIENTS,
    *,
    servers: int = SERVERS,
    replicas: int | None = None,
    console: Console | None = None,
    out: IO[str] | None = None,
    executable: str | None = None,
) -> DemoReport:
    """Run the demo: local servers, a session workload, faults, a final check.

    Args:
        duration: Seconds of workload.
        clients: Concurrent clients.
        servers: How many redis-servers (3 to :data:`MAX_SERVERS`).
        replicas: Owners per session (2 up to ``servers``; ``None``: every
            server holds every session).
        console: A rich console for the live display (needs rich).
        out: Where to print plain progress lines instead (ignored with ``console``).
        executable: Path of ``redis-server`` (default: $REDISHA_REDIS_SERVER, PATH).

    Returns:
        The report; ``report.lost`` must be 0.

    Raises:
        DemoError: redis-server is missing or a server would not start.
    """
    if not duration > 0 or not math.isfinite(duration):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients!r}")
    if not SERVERS <= servers <= MAX_SERVERS:
        raise ValueError(f"servers must be in {SERVERS}..{MAX_SERVERS}, got {servers!r}")
    if replicas is not None and not WRITE_QUORUM <= replicas <= servers:
        raise ValueError(f"replicas must be in {WRITE_QUORUM}..{servers}, got {replicas!r}")
    exe = find_redis_server(executable)
    run = _Run(duration, clients)
    run.report.replicas = replicas
    workdir = Path(tempfile.mkdtemp(prefix="trio-redisha-demo-"))
    run.report.workdir = str(workdir)
    names = [chr(ord("A") + i) for i in range(servers)]
    run.servers = [LocalRedis(exe, workdir / name, name) for name in names]
    view: _View = (
        _LiveView(run, console)
        if console is not None
        else _LineView(run, out)
        if out is not None
        else _View(run)
    )
    try:
        with view:
            async with trio.open_nursery() as display:
                display.start_soon(_refresh, view)
                async with trio.open_nursery() as nursery:
                    for server in run.servers:
                        nursery.start_soon(server.start)
                run.report.servers = [s.url for s in run.servers]
                view.started(workdir)
                async with open_pool(
                    *run.report.servers,
                    timeout=POOL_TIMEOUT,
                    connect_timeout=1.0,
                    write_quorum=WRITE_QUORUM,
                    backoff_cap=BACKOFF_CAP,
                    replicas=replicas,
                ) as pool:
                    run.pool = pool
                    await _workload(run, pool)
                    run.statuses()  # keep the last view of the servers for the display
                    run.pool = None
                run.phase = "done"
                display.cancel_scope.cancel()
    finally:
        run.pool = None
        for server in run.servers:
            server.close()
            run.report.pids.extend(server.pids)
        shutil.rmtree(workdir, ignore_errors=True)
    run.report.latency_p50 = quantile(run.latencies, 0.50)
    run.report.latency_p99 = quantile(run.latencies, 0.99)
    return run.report


# --- views ---------------------------------------------------------------------

#: Display refreshes per second. Views are refreshed from the trio thread (never
#: from a helper thread): the pool and the clock may only be read from there.
REFRESH_PER_SECOND: Final = 8


async def _refresh(view: _View) -> None:
    while True:
        view.tick()
        await trio.sleep(1 / REFRESH_PER_SECOND)


class _View:
    """No display at all (the base of the others)."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def __enter__(self) -> _View:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def started(self, workdir: Path) -> None:
        """The servers answer; the workload is about to start."""

    def tick(self) -> None:
        """Called :data:`REFRESH_PER_SECOND` times a second, in the trio thread."""


class _LineView(_View):
    """Plain lines: each event as it happens, and a progress line now and then."""

    def __init__(self, run: _Run, out: IO[str]) -> None:
        super().__init__(run)
        self.out = out
        self._last_line = 0.0
        run.listeners.append(self._event)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _event(self, t: float, text: str) -> None:
        self._print(f"[{t:5.1f} s] {text}")

    def tick(self) -> None:
        run = self.run
        t = run.elapsed()
        if run.phase != "running" or t - self._last_line < LINE_INTERVAL:
            return
        self._last_line = t
        r = run.report
        states = " ".join(
            f"{s.name}={st.state.value}" for s, st in zip(run.servers, run.statuses(), strict=False)
        )
        self._print(
            f"[{t:5.1f} s] {r.operations:,} ops ({run.ops_per_second():,.0f}/s), "
            f"{r.errors:,} errors, {r.acknowledged:,} writes acknowledged; {states}"
        )

    def started(self, workdir: Path) -> None:
        servers = ", ".join(f"{s.name}={s.url}" for s in self.run.servers)
        self._print(f"started {len(self.run.servers)} redis-servers in {workdir}: {servers}")
        self._print(_about(self.run.report.replicas, len(self.run.servers)))


class _LiveView(_View):
    """A rich live panel: progress, ops/s, per-server state, recent events."""

    def __init__(self, run: _Run, console: Console) -> None:
        super().__init__(run)
        self.console = console
        self._live: Any = None

    def __enter__(self) -> _View:
        from rich.live import Live

        self._live = Live(
            console=self.console,
            get_renderable=self._render,
            auto_refresh=False,
            transient=False,
        )
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.stop()

    def tick(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        run = self.run
        r = run.report
        t = min(run.elapsed(), run.duration)
        head = Text.assemble(
            ("trio-redisha demo", "bold"),
            f"  {run.phase}  {t:4.1f} / {run.duration:g} s",
        )
        about = Text(_about(r.replicas, len(run.servers)), style="dim")
        bar = ProgressBar(total=run.duration, completed=t, width=50)
        stats = Text(
            f"{r.operations:,} ops  {run.ops_per_second():,.0f} ops/s  "
            f"{r.errors:,} errors  {r.acknowledged:,} writes acknowledged  "
            f"{r.stale_reads:,} stale reads"
        )
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("server", "port", "process", "pool sees", "p50", "last error"):
            table.add_column(column, no_wrap=True)
        statuses = run.statuses()
        styles = {"up": "green", "suspect": "yellow", "down": "red", "connecting": "cyan"}
        faults = {"running": "green", "killed": "red", "frozen": "yellow"}
        for i, server in enumerate(run.servers):
            st = statuses[i] if i < len(statuses) else None
            state = st.state.value if st else "-"
            error = st.last_error if st and st.state is not ServerState.UP else None
            table.add_row(
                server.name,
                str(server.port or "-"),
                Text(server.fault, style=faults.get(server.fault, "cyan")),
                Text(state, style=styles.get(state, "")),
                f"{st.latency_p50 * 1000:.2f} ms" if st and st.latency_p50 is not None else "-",
                Text((error or "").rsplit(": ", 1)[-1][:30], style="dim"),
            )
        events = Text("\n".join(f"[{et:5.1f} s] {text}" for et, text in r.events[-6:]))
        return Group(head, about, bar, stats, Text(""), table, Text(""), events)


def _about(replicas: int | None, servers: int) -> str:
    if replicas is None:
        return (
            f"{servers} servers; a write needs {WRITE_QUORUM} acknowledgements; "
            "a read merges every server and repairs those behind"
        )
    return (
        f"{servers} servers, each session on {replicas} of them; a write needs "
        f"{WRITE_QUORUM} acknowledgements (fallback servers stand in for owners down); "
        "a read merges the owners and fallbacks and repairs the owners"
    )


def print_report(report: DemoReport, console: Console | None, out: IO[str]) -> None:
    """Print the result table (rich when a console is given, else plain text).

    Args:
        report: What :func:`run_demo` returned.
        console: A rich console, or ``None`` for plain text.
        out: Where plain text goes.
    """
    rows = report.rows()
    verdict = (
        "no acknowledged write was lost" if report.ok else f"{report.lost} ACKNOWLEDGED WRITES LOST"
    )
    if console is not None:
        from rich.table import Table

        table = Table(title="trio-redisha demo: result", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for label, value in rows:
            style = ""
            if label == "acknowledged writes lost":
                style = "bold green" if report.ok else "bold red"
            table.add_row(label, value, style=style)
        console.print(table)
        console.print(verdict, style="bold green" if report.ok else "bold red")
        return
    width = max(len(label) for label, _ in rows)
    print("result:", file=out)
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}", file=out)
    print(verdict, file=out)


def _make_console() -> Console | None:
    if not sys.stdout.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        print(
            "(plain output: pip install 'trio-redisha[cli]' for the live display)", file=sys.stderr
        )
        return None
    return Console()


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived: the demo was cleaned up and stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


async def _run_with_signals(
    duration: float,
    clients: int,
    console: Console | None,
    servers: int = SERVERS,
    replicas: int | None = None,
) -> DemoReport:
    """Run the demo; SIGTERM/SIGHUP cancel it (cleanly) like Ctrl-C does."""
    result: list[DemoReport] = []
    got: list[int] = []
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:

        async def watch(scope: trio.CancelScope) -> None:
            async for signum in signals:
                got.append(signum)
                scope.cancel()
                return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            out = None if console is not None else sys.stdout
            result.append(
                await run_demo(
                    duration, clients, servers=servers, replicas=replicas, console=console,
                    out=out,
                )
            )  # fmt: skip
            nursery.cancel_scope.cancel()
    if got or not result:
        raise _Terminated(got[0] if got else signal.SIGTERM)
    return result[0]


def main(
    duration: float = DEFAULT_DURATION,
    clients: int = DEFAULT_CLIENTS,
    servers: int = SERVERS,
    replicas: int | None = None,
) -> int:
    """Run ``trio-redisha demo`` and print the result table.

    Args:
        duration: Seconds of workload.
        clients: Concurrent clients.
        servers: How many redis-servers.
        replicas: Owners per session (``None``: every server holds every session).

    Returns:
        0 when no acknowledged write was lost, 1 otherwise, 143 on SIGTERM
        (129 on SIGHUP). Ctrl-C raises KeyboardInterrupt after the cleanup.

    Raises:
        DemoError: redis-server is missing or would not start.
    """
    find_redis_server()  # fail fast, with the install hint, before any display
    console = _make_console()
    try:
        # Ctrl-C reaches only the main task, at a checkpoint: it then cancels
        # everything in order and the finally blocks stop the servers.
        report = trio.run(
            _run_with_signals,
            duration,
            clients,
            console,
            servers,
            replicas,
            restrict_keyboard_interrupt_to_checkpoints=True,
        )
    except _Terminated as exc:
        print("trio-redisha: terminated; servers stopped and files removed", file=sys.stderr)
        return 128 + exc.signum if exc.signum != signal.SIGTERM else EXIT_TERMINATED
    print_report(report, console, sys.stdout)
    return EXIT_OK if report.ok else EXIT_FAILURE
