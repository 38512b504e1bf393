"""trio-redisha against the Python Redis clients a trio user would pick instead.

One run starts its own throwaway ``redis-server`` processes (with ``trio_redisha.testing``)
and measures, for every client, in the same run and against the same servers:

* sequential GET latency: one task, one GET after the other (us/op);
* concurrent GET throughput: 50 tasks x 200 GETs (ops/s);

and the same for a bare trio socket, the reference with no library at all
(``await send()``, ``await recv()``, no parsing, one socket per task); the floor
rows time sequential GETs on blocking sockets with no event loop at all, on 1
and on 3 servers (what the machine itself costs), and the same on non-blocking
sockets polled until the reply is there (what the machine costs a process that
does not sleep, as the pool's ``busy_poll`` does not);

each as the median over several rounds. Rounds are interleaved (every client runs
once per round, in a rotating order) so the drift of a shared machine hits every
client alike; ratios within one run are what to compare, not absolute figures.

Fan-out rows (the pool over 3 servers, redis-py ``gather()`` over 3 clients) count
one operation per fanned-out command. A last scenario freezes one of three servers
(SIGSTOP) under a pool with a short timeout and reports the sequential latency
before and after the server's circuit opened, against the healthy latency.

Usage::

    python benchmarks/bench_clients.py            # full run (about two minutes)
    python benchmarks/bench_clients.py --quick    # a few seconds, for development
    python benchmarks/bench_clients.py --only pool,redio --rounds 3
        # row keys: conn, trio-socket, redis-py, coredis-trio, coredis-asyncio,
        # redio, pool-1, pool-3, card-3, redis-py-gather, floor-1, floor-3,
        # polled-1, polled-3, frozen
    python benchmarks/bench_clients.py --profile  # cProfile a sequential 3-server fan-out

Peers (redis-py, coredis, redio) are optional: a missing one prints
"not installed".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import io
import math
import os
import pstats
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bench_servers, environment, redis_server_or_report, run_main

import trio_redisha
from trio_redisha.resp import encode_command, make_parser
from trio_redisha.testing import (
    RedisServer,
)

KEY = "bench:key"
VALUE = b"v" * 16
FANOUT = 3

Op = Callable[[], Awaitable[Any]]
OpFactory = Callable[[Sequence[str]], AbstractAsyncContextManager[Op]]


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Config:
    rounds: int
    seq_ops: int
    tasks: int
    per_task: int
    warmup: int
    frozen_ops: int
    frozen_timeout: float
    quick: bool

    @classmethod
    def make(cls, quick: bool, rounds: int | None) -> Config:
        if quick:
            return cls(
                rounds=rounds or 3,
                seq_ops=300,
                tasks=50,
                per_task=40,
                warmup=100,
                frozen_ops=300,
                frozen_timeout=0.05,
                quick=True,
            )
        return cls(
            rounds=rounds or 5,
            seq_ops=2000,
            tasks=50,
            per_task=200,
            warmup=300,
            frozen_ops=2000,
            frozen_timeout=0.05,
            quick=False,
        )


class Skip(Exception):
    """A row that cannot run here (peer not installed, feature missing)."""


@dataclass
class RoundResult:
    seq_us: float
    conc_ops: float
    errors: int
    #: Client CPU time per op (process time, this process only), sequential and
    #: concurrent: less disturbed than wall time by other load on the machine.
    seq_cpu_us: float
    conc_cpu_us: float


@dataclass
class Row:
    key: str
    label: str
    runtime: str
    servers: int
    runner: Callable[[Sequence[str], Config], RoundResult]
    seq_us: list[float] = field(default_factory=list)
    conc_ops: list[float] = field(default_factory=list)
    seq_cpu_us: list[float] = field(default_factory=list)
    conc_cpu_us: list[float] = field(default_factory=list)
    errors: int = 0
    skipped: str | None = None


# --------------------------------------------------------------------------- measuring


async def _trio_measure(op: Op, expected: Any, cfg: Config) -> RoundResult:
    errors = 0
    for _ in range(cfg.warmup):
        if await op() != expected:
            errors += 1

    async def worker(count: int) -> None:
        nonlocal errors
        for _ in range(count):
            if await op() != expected:
                errors += 1

    # Warm the concurrent path too (opens the peers' extra pooled connections).
    async with trio.open_nursery() as nursery:
        for _ in range(cfg.tasks):
            nursery.start_soon(worker, 5)

    n = cfg.seq_ops
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        if await op() != expected:
            errors += 1
    seq = (time.perf_counter() - t0) / n * 1e6
    seq_cpu = (time.process_time() - c0) / n * 1e6

    total = cfg.tasks * cfg.per_task
    c0, t0 = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(cfg.tasks):
            nursery.start_soon(worker, cfg.per_task)
    conc = total / (time.perf_counter() - t0)
    conc_cpu = (time.process_time() - c0) / total * 1e6
    return RoundResult(seq, conc, errors, seq_cpu, conc_cpu)


async def _asyncio_measure(op: Op, expected: Any, cfg: Config) -> RoundResult:
    errors = 0
    for _ in range(cfg.warmup):
        if await op() != expected:
            errors += 1

    async def worker(count: int) -> None:
        nonlocal errors
        for _ in range(count):
            if await op() != expected:
                errors += 1

    await asyncio.gather(*(worker(5) for _ in range(cfg.tasks)))

    n = cfg.seq_ops
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        if await op() != expected:
            errors += 1
    seq = (time.perf_counter() - t0) / n * 1e6
    seq_cpu = (time.process_time() - c0) / n * 1e6

    total = cfg.tasks * cfg.per_task
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(cfg.per_task) for _ in range(cfg.tasks)))
    conc = total / (time.perf_counter() - t0)
    conc_cpu = (time.process_time() - c0) / total * 1e6
    return RoundResult(seq, conc, errors, seq_cpu, conc_cpu)


def _trio_runner(
    factory: OpFactory, expected: Any
) -> Callable[[Sequence[str], Config], RoundResult]:
    def run(urls: Sequence[str], cfg: Config) -> RoundResult:
        async def main() -> RoundResult:
            async with factory(urls) as op:
                return await _trio_measure(op, expected, cfg)

        return trio.run(main)

    return run


def _asyncio_runner(
    factory: OpFactory, expected: Any
) -> Callable[[Sequence[str], Config], RoundResult]:
    def run(urls: Sequence[str], cfg: Config) -> RoundResult:
        async def main() -> RoundResult:
            async with factory(urls) as op:
                return await _asyncio_measure(op, expected, cfg)

        return asyncio.run(main())

    return run


# --------------------------------------------------------------------------- clients


def _default_parser() -> str:
    """The class name of the reply parser a connection uses."""
    return type(make_parser()).__name__


@asynccontextmanager
async def redisha_connection(urls: Sequence[str]) -> AsyncIterator[Op]:
    async with trio_redisha.open_connection(urls[0]) as conn:
        yield functools.partial(conn.execute, "GET", KEY)


def redisha_pool(servers: int) -> OpFactory:
    @asynccontextmanager
    async def factory(urls: Sequence[str]) -> AsyncIterator[Op]:
        async with trio_redisha.open_pool(*urls[:servers]) as pool:
            await _wait_available(pool, servers)
            yield functools.partial(pool.execute, "GET", KEY)

    return factory


def design_card_fanout(servers: int) -> OpFactory:
    """The design card's literal shape, for comparison with the pool's fan-out.

    A nursery per command and a task per server connection, each in
    ``move_on_after``: the same per-server deadlines as ``Pool.execute``, which
    instead parks one waiter under one timer-task deadline.
    """

    @asynccontextmanager
    async def factory(urls: Sequence[str]) -> AsyncIterator[Op]:
        async with contextlib.AsyncExitStack() as stack:
            conns = [
                await stack.enter_async_context(trio_redisha.open_connection(u))
                for u in urls[:servers]
            ]

            async def op() -> list[Any]:
                out: list[Any] = [None] * len(conns)

                async def one(i: int, conn: trio_redisha.Connection) -> None:
                    with trio.move_on_after(0.5):
                        out[i] = await conn.execute("GET", KEY)

                async with trio.open_nursery() as nursery:
                    for i, conn in enumerate(conns):
                        nursery.start_soon(one, i, conn)
                return out

            yield op

    return factory


async def _wait_available(pool: trio_redisha.Pool, servers: int) -> None:
    # The pool exposes no event for "connected"; poll its public counter.
    with trio.fail_after(10):
        while pool.available < servers:  # noqa: ASYNC110
            await trio.sleep(0.005)


@asynccontextmanager
async def redispy_single(urls: Sequence[str]) -> AsyncIterator[Op]:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise Skip("not installed") from None
    client = aioredis.Redis.from_url(urls[0])
    try:
        yield functools.partial(client.get, KEY)
    finally:
        await client.aclose()


@asynccontextmanager
async def redispy_gather(urls: Sequence[str]) -> AsyncIterator[Op]:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise Skip("not installed") from None
    clients = [aioredis.Redis.from_url(u) for u in urls[:FANOUT]]
    getters = [functools.partial(c.get, KEY) for c in clients]

    async def op() -> list[Any]:
        return await asyncio.gather(*(g() for g in getters))

    try:
        yield op
    finally:
        for c in clients:
            await c.aclose()


@asynccontextmanager
async def coredis_client(urls: Sequence[str]) -> AsyncIterator[Op]:
    try:
        import coredis
    except ImportError:
        raise Skip("not installed") from None
    async with coredis.Redis.from_url(urls[0]) as client:
        yield functools.partial(client.get, KEY)


@asynccontextmanager
async def redio_client(urls: Sequence[str]) -> AsyncIterator[Op]:
    try:
        import redio
    except ImportError:
        raise Skip("not installed") from None
    redis = redio.Redis(urls[0])

    def op() -> Awaitable[Any]:
        # redio's idiom: borrow a pooled connection per command; it goes back
        # to the pool when the DB object is collected.
        return redis().get(KEY)  # type: ignore[no-any-return]

    yield op


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.rpartition("/")[2].partition(":")
    return host, int(port)


#: What the server sends for ``GET KEY``: the bare socket row compares raw bytes.
RAW_REPLY = b"$%d\r\n%s\r\n" % (len(VALUE), VALUE)


@asynccontextmanager
async def bare_trio_socket(urls: Sequence[str]) -> AsyncIterator[Op]:
    """A trio socket and nothing else: ``await send()``, ``await recv()``, no parsing.

    Each call borrows a socket from a free list (a new one when none is free), so
    the concurrent figure is that of one socket per task. The reply is 23 bytes:
    one ``recv`` holds it on loopback.
    """
    address = _address(urls[0])
    request = encode_command(["GET", KEY])
    free: list[trio.socket.SocketType] = []
    opened: list[trio.socket.SocketType] = []

    async def op() -> bytes:
        if free:
            sock = free.pop()
        else:
            sock = trio.socket.socket()
            opened.append(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await sock.connect(address)
        await sock.send(request)
        data = await sock.recv(65536)
        free.append(sock)
        return data

    try:
        yield op
    finally:
        for sock in opened:
            sock.close()


def _peer_label(module: str, label: str) -> str:
    try:
        from importlib.metadata import version

        return f"{label} {version(module)}"
    except Exception:
        return label


def _redispy_label() -> str:
    label = _peer_label("redis", "redis-py")
    try:
        from redis.utils import HIREDIS_AVAILABLE

        label += " asyncio" + (" + hiredis" if HIREDIS_AVAILABLE else " (no hiredis)")
    except ImportError:
        label += " asyncio"
    return label


def make_rows() -> list[Row]:
    rows = [
        Row(
            "conn",
            f"trio-redisha Connection ({_default_parser()})",
            "trio",
            1,
            _trio_runner(redisha_connection, VALUE),
        ),
        Row(
            "trio-socket",
            "bare trio socket: send, recv (no library)",
            "trio",
            1,
            _trio_runner(bare_trio_socket, RAW_REPLY),
        ),
        Row("redis-py", _redispy_label(), "asyncio", 1, _asyncio_runner(redispy_single, VALUE)),
        Row(
            "coredis-trio",
            _peer_label("coredis", "coredis"),
            "trio",
            1,
            _trio_runner(coredis_client, VALUE),
        ),
        Row(
            "coredis-asyncio",
            _peer_label("coredis", "coredis"),
            "asyncio",
            1,
            _asyncio_runner(coredis_client, VALUE),
        ),
        Row("redio", _peer_label("redio", "redio"), "trio", 1, _trio_runner(redio_client, VALUE)),
        Row("pool-1", "trio-redisha Pool", "trio", 1, _trio_runner(redisha_pool(1), [VALUE])),
        Row(
            "pool-3",
            "trio-redisha Pool (fan-out)",
            "trio",
            FANOUT,
            _trio_runner(redisha_pool(FANOUT), [VALUE] * FANOUT),
        ),
        Row(
            "card-3",
            "design card: nursery + task per server (3 Connections)",
            "trio",
            FANOUT,
            _trio_runner(design_card_fanout(FANOUT), [VALUE] * FANOUT),
        ),
        Row(
            "redis-py-gather",
            _redispy_label() + ", gather() over 3 clients",
            "asyncio",
            FANOUT,
            _asyncio_runner(redispy_gather, [VALUE] * FANOUT),
        ),
        Row("floor-1", "floor: blocking sockets, no event loop", "none", 1, floor_runner(1)),
        Row(
            "floor-3",
            "floor: blocking sockets, no event loop (send all, then read all)",
            "none",
            FANOUT,
            floor_runner(FANOUT),
        ),
        Row(
            "polled-1",
            "floor: non-blocking sockets polled, no event loop",
            "none",
            1,
            floor_runner(1, polled=True),
        ),
        Row(
            "polled-3",
            "floor: non-blocking sockets polled, no event loop (send all, then read all)",
            "none",
            FANOUT,
            floor_runner(FANOUT, polled=True),
        ),
    ]
    return rows


# --------------------------------------------------------------------------- frozen server


@dataclass
class FrozenResult:
    healthy: list[float]
    before: list[float]
    after: list[float]
    recovered_after: float | None
    errors_healthy: int


def _pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def run_frozen(servers: Sequence[RedisServer], cfg: Config) -> FrozenResult:
    """Sequential pool GETs: healthy, then with servers[-1] frozen, then thawed."""
    urls = [s.url for s in servers[:FANOUT]]
    victim = servers[FANOUT - 1]
    expected = [VALUE] * FANOUT

    async def main() -> FrozenResult:
        async with trio_redisha.open_pool(*urls, timeout=cfg.frozen_timeout) as pool:
            await _wait_available(pool, FANOUT)
            for _ in range(cfg.warmup):
                await pool.execute("GET", KEY)
            healthy: list[float] = []
            errors = 0
            for _ in range(cfg.frozen_ops):
                t0 = time.perf_counter()
                r = await pool.execute("GET", KEY)
                healthy.append(time.perf_counter() - t0)
                if r != expected:
                    errors += 1
            before: list[float] = []
            after: list[float] = []
            victim.freeze()
            try:
                limit = time.perf_counter() + 20
                while len(after) < cfg.frozen_ops and time.perf_counter() < limit:
                    opened = pool.available < FANOUT
                    t0 = time.perf_counter()
                    await pool.execute("GET", KEY)
                    (after if opened else before).append(time.perf_counter() - t0)
            finally:
                victim.thaw()
            t0 = time.perf_counter()
            recovered: float | None = None
            while time.perf_counter() - t0 < 10:
                if pool.available == FANOUT:
                    recovered = time.perf_counter() - t0
                    break
                await pool.execute("GET", KEY)
                await trio.sleep(0.005)
            return FrozenResult(healthy, before, after, recovered, errors)

    return trio.run(main)


# --------------------------------------------------------------------------- floor


def floor_runner(
    count: int, *, polled: bool = False
) -> Callable[[Sequence[str], Config], RoundResult]:
    """Sequential GET with blocking sockets and no event loop, on ``count`` servers.

    Send to every server, then read every reply: what the machine itself costs
    (syscalls, loopback, the redis-server processes sharing the CPUs). A row of
    the interleaved rounds like the clients, so the same drift hits it; it has
    no concurrent figure. ``polled``: non-blocking sockets, each ``recv``
    retried until the reply is there (the process never sleeps).
    """
    request = encode_command(["GET", KEY])

    def receive(sock: socket.socket) -> bytes:
        while True:
            try:
                return sock.recv(65536)
            except BlockingIOError:
                continue

    def run(urls: Sequence[str], cfg: Config) -> RoundResult:
        socks = []
        try:
            for url in urls[:count]:
                sock = socket.create_connection(_address(url))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks.append(sock)
            for _ in range(cfg.warmup):
                for sock in socks:
                    sock.sendall(request)
                for sock in socks:
                    sock.recv(65536)
            if polled:
                for sock in socks:
                    sock.setblocking(False)  # a 23-byte request always fits: send() sends it
            read = receive if polled else (lambda sock: sock.recv(65536))
            n = cfg.seq_ops
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                for sock in socks:
                    sock.sendall(request)
                for sock in socks:
                    # The reply is 23 bytes: one recv holds it on loopback.
                    read(sock)
            seq = (time.perf_counter() - t0) / n * 1e6
            return RoundResult(seq, math.nan, 0, (time.process_time() - c0) / n * 1e6, math.nan)
        finally:
            for sock in socks:
                sock.close()

    return run


# --------------------------------------------------------------------------- profile


def run_profile(urls: Sequence[str], cfg: Config, top: int = 25) -> None:
    """cProfile a sequential fan-out loop over 3 servers and print the top costs."""
    prof = cProfile.Profile()
    n = max(cfg.seq_ops, 2000)

    async def main() -> float:
        async with trio_redisha.open_pool(*urls[:FANOUT]) as pool:
            await _wait_available(pool, FANOUT)
            for _ in range(cfg.warmup):
                await pool.execute("GET", KEY)
            t0 = time.perf_counter()
            prof.enable()
            for _ in range(n):
                await pool.execute("GET", KEY)
            prof.disable()
            return (time.perf_counter() - t0) / n * 1e6

    us = trio.run(main)
    print(f"## cProfile: {n} sequential pool.execute('GET') over {FANOUT} servers")
    print(f"(profiled: {us:.0f} us/op; cProfile inflates Python-heavy paths)\n")
    for sort in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.strip_dirs().sort_stats(sort).print_stats(top)
        print(f"### sorted by {sort}\n```")
        text = out.getvalue()
        print(text[text.find("   ncalls") :].rstrip())
        print("```\n")


# --------------------------------------------------------------------------- report


def _fmt_spread(values: Sequence[float], digits: int = 0) -> str:
    if not values or any(math.isnan(v) for v in values):
        return "-"
    med = statistics.median(values)
    if len(values) < 2:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _median(row: Row | None, what: str) -> float | None:
    if row is None or row.skipped is not None:
        return None
    values = row.seq_us if what == "seq" else row.conc_ops
    if not values or any(math.isnan(v) for v in values):
        return None
    return statistics.median(values)


def print_table(rows: Sequence[Row], cfg: Config) -> None:
    by_key = {r.key: r for r in rows}
    base_seq = _median(by_key.get("redis-py"), "seq")
    base_conc = _median(by_key.get("redis-py"), "conc")
    print(
        f"| client | runtime | servers | sequential GET us/op, median (min-max) | "
        f"vs redis-py | {cfg.tasks} tasks x {cfg.per_task} GETs, ops/s, median (min-max) | "
        "vs redis-py | client CPU us/op, seq / conc | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row.skipped is not None:
            print(f"| {row.label} | {row.runtime} | {row.servers} | skipped: {row.skipped} ||||||")
            continue
        seq = statistics.median(row.seq_us)
        conc = statistics.median(row.conc_ops)
        unit = " fan-out" if row.servers > 1 else ""
        print(
            f"| {row.label} | {row.runtime} | {row.servers} | {_fmt_spread(row.seq_us)} | "
            f"{_ratio(seq, base_seq)} | {_fmt_spread(row.conc_ops)}{unit} | "
            f"{_ratio(conc, base_conc)} | {statistics.median(row.seq_cpu_us):.0f} / "
            f"{_fmt_spread(row.conc_cpu_us).split(' ')[0]} | {row.errors} |"
        )
    print(
        "\nvs redis-py: ratio to redis-py asyncio (1 server) in this run; for latency lower "
        "is better, for throughput higher is better. Fan-out rows count one op per command "
        "sent to all 3 servers. Client CPU: this process's CPU time per op (median), which "
        "other load on the machine disturbs less than wall time."
    )


def _check(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def _shown(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def print_frozen(res: FrozenResult, cfg: Config) -> float | None:
    ms = 1000.0
    print(
        f"\n## One of {FANOUT} servers frozen (SIGSTOP), pool timeout={cfg.frozen_timeout} s, "
        "sequential GET"
    )
    print("| phase | calls | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, samples in (
        ("healthy (3 servers answer)", res.healthy),
        ("frozen, before the circuit opened", res.before),
        ("frozen, after the circuit opened", res.after),
    ):
        if not samples:
            print(f"| {name} | 0 | - | - | - |")
            continue
        print(
            f"| {name} | {len(samples)} | {_pct(samples, 0.5) * ms:.3f} | "
            f"{_pct(samples, 0.99) * ms:.3f} | {max(samples) * ms:.3f} |"
        )
    rec = f"{res.recovered_after:.2f} s" if res.recovered_after is not None else "not within 10 s"
    print(f"\nAfter SIGCONT the server was used again after {rec}.")
    if res.errors_healthy:
        print(f"Healthy phase: {res.errors_healthy} calls with a missing reply.")
    if res.healthy and res.after:
        return _pct(res.after, 0.99) / _pct(res.healthy, 0.99)
    return None


def print_targets(
    rows: Sequence[Row],
    cfg: Config,
    frozen_ratio: float | None,
    floor: tuple[float, float] | None,
) -> None:
    by_key = {r.key: r for r in rows}

    def m(key: str, what: str) -> float | None:
        return _median(by_key.get(key), what)

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    floor_ratio = None if floor is None else floor[1] / floor[0]
    polled_ratio = div(m("polled-3", "seq"), m("polled-1", "seq"))
    pool_fanout = div(m("pool-3", "seq"), m("pool-1", "seq"))
    targets = [
        (
            "Pool 1 server, sequential latency <= redio's",
            div(m("pool-1", "seq"), m("redio", "seq")),
            1.0,
            False,
        ),
        (
            "Pool 1 server, sequential latency <= 1.25x a bare trio socket's",
            div(m("pool-1", "seq"), m("trio-socket", "seq")),
            1.25,
            False,
        ),
        (
            "Pool sequential 3 servers / 1 server <= 1.1x the blocking-socket floor's 3/1"
            f" (pool {_shown(pool_fanout)}, floor {_shown(floor_ratio)})",
            div(pool_fanout, floor_ratio),
            1.1,
            False,
        ),
        (
            "Pool sequential 3 servers / 1 server <= 1.1x the polled-socket floor's 3/1"
            f" (pool {_shown(pool_fanout)}, floor {_shown(polled_ratio)}; the pool polls"
            " too, see busy_poll)",
            div(pool_fanout, polled_ratio),
            1.1,
            False,
        ),
        (
            f"Pool {cfg.tasks}-task ops/s, 3 servers / 1 server >= 0.8",
            div(m("pool-3", "conc"), m("pool-1", "conc")),
            0.8,
            True,
        ),
        (
            "Connection sequential latency <= redio's",
            div(m("conn", "seq"), m("redio", "seq")),
            1.0,
            False,
        ),
        (
            "Connection concurrent throughput >= 3x redis-py asyncio's",
            div(m("conn", "conc"), m("redis-py", "conc")),
            3.0,
            True,
        ),
        (
            "Pool 3 servers vs 1 server, sequential latency ratio <= 1.3",
            div(m("pool-3", "seq"), m("pool-1", "seq")),
            1.3,
            False,
        ),
        (
            "Pool 3-server concurrent >= 3x redis-py gather()",
            div(m("pool-3", "conc"), m("redis-py-gather", "conc")),
            3.0,
            True,
        ),
        (
            "Frozen server: p99 after the circuit opened <= 2x healthy p99",
            frozen_ratio,
            2.0,
            False,
        ),
    ]
    print("\n## Targets")
    print("| target | measured (ratio) | status |")
    print("|---|---|---|")
    for name, value, target, higher in targets:
        print(
            f"| {name} | {_shown(value)} (target {target:g}x) | {_check(value, target, higher)} |"
        )
    if floor is not None:
        one, three = floor
        extra = (three - one) / (FANOUT - 1)
        print(
            f"\nFloor (blocking sockets, no event loop, same servers): sequential GET "
            f"{one:.0f} us/op on 1 server, {three:.0f} us/op on {FANOUT} ({three / one:.2f}x), "
            f"so each extra server costs about {extra:.0f} us here with no library at all "
            "(syscalls, loopback, one more redis-server process sharing the CPUs)."
        )
        pool1 = m("pool-1", "seq")
        if pool1 is not None:
            best = (pool1 + (FANOUT - 1) * extra) / pool1
            print(
                f"With Pool on 1 server at {pool1:.0f} us/op, a 3-server fan-out that added "
                f"nothing but that floor would be {best:.2f}x; the rest of the measured ratio is "
                "per-server overhead in the library."
            )


def _selected(key: str, only: Sequence[str] | None) -> bool:
    return only is None or any(o in key for o in only)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="a few seconds, for development")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per client")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated row keys or substrings: conn, trio-socket, redis-py, "
        "coredis-trio, coredis-asyncio, redio, pool-1, pool-3, redis-py-gather, floor-1, "
        "floor-3 (or floor for both), polled-1, polled-3, frozen",
    )
    parser.add_argument(
        "--profile", action="store_true", help="only cProfile a sequential 3-server fan-out loop"
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    cfg = Config.make(args.quick, args.rounds)
    only = [o.strip() for o in args.only.split(",") if o.strip()] if args.only else None

    exe = redis_server_or_report()
    if exe is None:
        return 1

    rows = [r for r in make_rows() if _selected(r.key, only)]
    started = time.perf_counter()
    with bench_servers(FANOUT, exe) as servers:
        urls = [s.url for s in servers]
        for s in servers:
            s.command("SET", KEY, VALUE)

        if args.profile:
            run_profile(urls, cfg)
            return 0

        print("# bench_clients: GET on loopback, same run, same servers")
        print(
            f"{environment(exe)}; "
            f"{'quick' if cfg.quick else 'full'} run: {cfg.rounds} interleaved rounds, "
            f"{cfg.seq_ops} sequential GETs and {cfg.tasks}x{cfg.per_task} concurrent GETs "
            "per round; figures are medians over rounds.\n",
            flush=True,
        )
        for rnd in range(cfg.rounds):
            # Rotate the order so no client always runs first or last.
            shift = rnd % len(rows) if rows else 0
            for row in rows[shift:] + rows[:shift]:
                if row.skipped is not None:
                    continue
                try:
                    res = row.runner(urls, cfg)
                except Skip as exc:
                    row.skipped = str(exc)
                    continue
                row.seq_us.append(res.seq_us)
                row.conc_ops.append(res.conc_ops)
                row.seq_cpu_us.append(res.seq_cpu_us)
                row.conc_cpu_us.append(res.conc_cpu_us)
                row.errors += res.errors
            print(f"round {rnd + 1}/{cfg.rounds} done", file=sys.stderr, flush=True)

        if rows:
            print_table(rows, cfg)
        frozen_ratio = None
        if _selected("frozen", only):
            frozen_ratio = print_frozen(run_frozen(servers, cfg), cfg)
        by_key = {r.key: r for r in rows}
        one, three = _median(by_key.get("floor-1"), "seq"), _median(by_key.get("floor-3"), "seq")
        floor = None if one is None or three is None else (one, three)
        print_targets(rows, cfg, frozen_ratio, floor)
        print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
