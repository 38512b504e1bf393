"""Web sessions under load: the notes example app, 1,000 concurrent requests, a server killed.

Drives examples/notes.py (its Starlette app, ``create_app``) over real HTTP
with 1,000 concurrent requests against a few shared sessions, each request
adding its own note (its own session field), and prints requests/s, p50/p99
latency, 5xx answers and *lost fields*: notes whose request was answered 201
but that the session no longer holds afterwards. Measured in the same run,
in interleaved rounds, each on fresh servers:

* ``trio-redisha``: :class:`trio_redisha.asgi.SessionMiddleware` on
  Hypercorn/trio over 3 servers, one killed (SIGKILL) a third of the way in;
* ``starsessions+RedisHAStore``: starsessions' own middleware with
  :class:`trio_redisha.starsessions.RedisHAStore`, same servers, same kill;
* ``starsessions+RedisStore``: starsessions' own ``RedisStore`` (redis-py
  asyncio) on Hypercorn/asyncio over one server, nothing killed. It writes
  the whole session as one blob, so of concurrent requests of one session
  only the last writer's notes survive.

Each app runs in its own process (this script with ``--serve``), the load
generator (httpx on trio) in this one.

Usage::

    python benchmarks/bench_web.py            # 3 rounds, about a minute
    python benchmarks/bench_web.py --quick    # 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import trio

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from _common import bench_servers  # noqa: E402

from trio_redisha.testing import RedisServer, free_port, redis_server_version  # noqa: E402

MODES = ("trio-redisha", "starsessions+RedisHAStore", "starsessions+RedisStore")
#: Mode -> (servers, whether one is killed during the load).
SETUP = {
    "trio-redisha": (3, True),
    "starsessions+RedisHAStore": (3, True),
    "starsessions+RedisStore": (1, False),
}
REQUESTS = 1000
SESSIONS = 10
READY_TIMEOUT = 30.0
LIFETIME = 14 * 24 * 3600


# -- the app side (a child process)


def _config(port: int) -> Any:
    import hypercorn.config

    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = 4096  # 1,000 connections arrive at once
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 60
    return config


def serve_app(mode: str, port: int, urls: Sequence[str]) -> None:
    """Serve the notes app in ``mode`` until killed; print READY once listening."""
    from starlette.middleware import Middleware
    from starsessions import SessionAutoloadMiddleware, regenerate_session_id
    from starsessions import SessionMiddleware as StarSessionMiddleware

    from examples.notes import COOKIE_NAME, create_app

    star: dict[str, Any] = {
        "lifetime": LIFETIME,
        "cookie_https_only": False,
        "cookie_name": COOKIE_NAME,
    }

    def ready(binds: Any = None) -> None:
        print("READY", flush=True)

    if mode == "starsessions+RedisStore":
        import hypercorn.asyncio
        from redis.asyncio import Redis
        from starsessions.stores.redis import RedisStore

        async def main_asyncio() -> None:
            store = RedisStore(connection=Redis.from_url(urls[0]))
            middleware = [
                Middleware(StarSessionMiddleware, store=store, **star),
                Middleware(SessionAutoloadMiddleware),
            ]
            app: Any = create_app(rotate=regenerate_session_id, middleware=middleware)
            task = asyncio.create_task(hypercorn.asyncio.serve(app, _config(port)))
            await asyncio.sleep(0.5)
            ready()
            await task

        asyncio.run(main_asyncio())
        return

    import hypercorn.trio

    import trio_redisha
    from trio_redisha import SessionStore
    from trio_redisha.asgi import SessionMiddleware
    from trio_redisha.starsessions import RedisHAStore

    async def main_trio() -> None:
        async with trio_redisha.open_pool(*urls) as pool:
            store = SessionStore(pool, ttl=LIFETIME)
            if mode == "trio-redisha":
                app: Any = SessionMiddleware(
                    create_app(), store, cookie_name=COOKIE_NAME, secure=False
                )
            else:
                middleware = [
                    Middleware(StarSessionMiddleware, store=RedisHAStore(store), **star),
                    Middleware(SessionAutoloadMiddleware),
                ]
                app = create_app(rotate=regenerate_session_id, middleware=middleware)
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(hypercorn.trio.serve, app, _config(port)))
                ready()

    trio.run(main_trio)


# -- the load side


@contextlib.contextmanager
def app_process(mode: str, urls: Sequence[str]) -> Iterator[str]:
    """Run the app in a child process; yield its base URL once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", mode, "--port", str(port), *urls],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        line = proc.stdout.readline()
        if line.strip() != "READY" or time.monotonic() > deadline:
            raise RuntimeError(f"{mode} app did not start (exit code {proc.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()  # nothing to flush: the data is in Redis
        proc.wait()


@dataclass
class Result:
    seconds: float
    latencies: list[float]
    status_5xx: int
    other_errors: int
    acknowledged: int
    lost: int

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


async def drive(base: str, servers: list[RedisServer], kill: bool) -> Result:
    """Log in SESSIONS users, fire REQUESTS concurrent note additions, count what survived."""
    from examples.notes import COOKIE_NAME

    limits = httpx.Limits(max_connections=REQUESTS + SESSIONS, max_keepalive_connections=REQUESTS)
    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        cookies: list[str] = []
        for i in range(SESSIONS):
            client.cookies.clear()  # a new visitor each time (a login rotates the old id)
            r = await client.post("/login", data={"name": f"user{i}"})
            cookie = r.cookies.get(COOKIE_NAME)
            if r.status_code != 303 or not cookie:
                raise RuntimeError(f"login failed: {r.status_code} {r.text[:200]}")
            cookies.append(cookie)
        client.cookies.clear()  # each request carries its session's cookie explicitly

        acked: list[set[str]] = [set() for _ in range(SESSIONS)]
        latencies: list[float] = []
        counts = {"5xx": 0, "other": 0}
        third = trio.Event()

        async def one(j: int) -> None:
            s = j % SESSIONS
            headers = {"cookie": f"{COOKIE_NAME}={cookies[s]}"}
            t0 = time.perf_counter()
            try:
                r = await client.post("/api/notes", content=f"note {j}", headers=headers)
            except httpx.HTTPError:
                counts["other"] += 1
            else:
                if r.status_code == 201:
                    acked[s].add(r.json()["id"])
                elif r.status_code >= 500:
                    counts["5xx"] += 1
                else:
                    counts["other"] += 1
            latencies.append(time.perf_counter() - t0)
            if len(latencies) >= REQUESTS // 3:
                third.set()

        async def killer() -> None:
            await third.wait()
            await servers[0].akill()

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            if kill:
                nursery.start_soon(killer)
            for j in range(REQUESTS):
                nursery.start_soon(one, j)
            if not kill:
                third.set()
        seconds = time.perf_counter() - start

        lost = 0
        for s in range(SESSIONS):
            r = await client.get("/api/notes", headers={"cookie": f"{COOKIE_NAME}={cookies[s]}"})
            present = set(r.json()["notes"]) if r.status_code == 200 else set()
            lost += len(acked[s] - present)
    return Result(
        seconds,
        latencies,
        counts["5xx"],
        counts["other"],
        sum(map(len, acked)),
        lost,
    )


def run_round(mode: str) -> Result:
    n, kill = SETUP[mode]
    with bench_servers(n) as servers, app_process(mode, [s.url for s in servers]) as base:
        return trio.run(drive, base, servers, kill)


@dataclass
class Figures:
    results: dict[str, list[Result]] = field(default_factory=dict)


def _q(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(figures: Figures, rounds: int) -> None:
    print(
        f"\n{REQUESTS} concurrent POST /api/notes over {SESSIONS} shared sessions, "
        f"each adding its own field; median of {rounds} interleaved round(s)"
    )
    print(
        f"Python {platform.python_version()}, redis-server {redis_server_version()}, "
        f"{os.cpu_count()} CPUs; app and load generator in separate processes\n"
    )
    head = (
        f"| {'setup':<27} | {'servers':<17} | {'req/s':>6} | {'p50 ms':>6} | {'p99 ms':>7} "
        f"| {'5xx':>4} | {'lost fields':>17} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for mode in figures.results:
        rs = figures.results[mode]
        n, kill = SETUP[mode]
        where = f"{n}, 1 killed" if kill else f"{n}"
        rps = statistics.median(r.rps for r in rs)
        p50 = statistics.median(_q(r.latencies, 0.50) for r in rs) * 1000
        p99 = statistics.median(_q(r.latencies, 0.99) for r in rs) * 1000
        s5xx = sum(r.status_5xx for r in rs)
        acked = sum(r.acknowledged for r in rs)
        lost = sum(r.lost for r in rs)
        print(
            f"| {mode:<27} | {where:<17} | {rps:>6.0f} | {p50:>6.0f} | {p99:>7.0f} "
            f"| {s5xx:>4} | {f'{lost} of {acked}':>17} |"
        )
    medians = {m: statistics.median(r.rps for r in rs) for m, rs in figures.results.items()}
    peer = "starsessions+RedisStore"
    print()
    if peer in medians:
        for mode, value in medians.items():
            if mode != peer:
                print(f"requests/s, {mode} / {peer}: {value / medians[peer]:.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}"
    )
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("urls", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            serve_app(args.serve, args.port, args.urls)
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    figures = Figures({m: [] for m in modes})
    for rnd in range(rounds):
        order = modes if rnd % 2 == 0 else modes[::-1]  # interleaved
        for mode in order:
            result = run_round(mode)
            figures.results[mode].append(result)
            print(
                f"round {rnd + 1} {mode}: {result.rps:.0f} req/s, {result.status_5xx} 5xx, "
                f"{result.other_errors} other errors, {result.lost} lost of {result.acknowledged}",
                flush=True,
            )
    report(figures, rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
