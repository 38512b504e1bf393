"""Hedged CRDT reads against plain ones, on a healthy fleet and with one server stalling.

One run starts 3 throwaway ``redis-server`` processes (with ``trio_redisha.testing``)
and reads a 10-field ``HashMap`` (a session's size) with ``read_quorum=2``, one
read at a time, in two ways:

* ``plain``: the read waits for every server up to its deadline;
* ``hedged``: ``hedged=True``, it returns once 2 servers answered (with the
  full copy it asked for, see ``docs/consistency.md``).

Each way runs in two situations, in interleaved rounds (the order rotating):

* ``healthy``: nothing else runs; what hedging costs when it is not needed;
* ``one stalls``: another client keeps one server busy with a Lua script that
  spins for ``STALL`` seconds, then pauses ``PAUSE`` seconds (as a slow command
  from another application, a fork or a swap-in would): the server answers,
  late, about a fifth of the time. Its circuit never opens (it always answers
  within the deadline), so only hedging keeps the reads fast.

The tables show the median, the 99th and 99.9th percentiles and the mean of
the read latency, how many reads took over 2 ms, and the ratios hedged / plain.

Usage::

    python benchmarks/bench_hedged.py           # full run, about half a minute
    python benchmarks/bench_hedged.py --quick   # a few seconds
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    bench_servers,
    environment,
    redis_py_missing,
    redis_server_or_report,
    rounds_args,
    run_main,
)

import trio_redisha
from trio_redisha.testing import (
    RedisServer,
)

SERVERS = 3
FIELDS = 10
#: Seconds the stalled server spins per stall, and pauses between stalls.
STALL = 0.010
PAUSE = 0.040
WAYS = ("plain", "hedged")
SITUATIONS = ("healthy", "one stalls")

# A server-side busy wait of ARGV[1] microseconds (TIME is allowed in scripts
# since Redis 5's effects replication; nothing is written).
_SPIN = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  t = redis.call('TIME')
until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Config:
    rounds: int
    reads: int  # per way, situation and round

    @classmethod
    def make(cls, quick: bool, rounds: int | None) -> Config:
        if quick:
            return cls(rounds or 2, 200)
        return cls(rounds or 5, 1000)


@contextmanager
def stalling(server: RedisServer) -> Iterator[None]:
    """Keep ``server`` busy STALL seconds in every STALL + PAUSE, from another client."""
    import redis

    stop = threading.Event()
    client = redis.Redis(host="127.0.0.1", port=server.port)
    spin = client.register_script(_SPIN)

    def run() -> None:
        while not stop.is_set():
            spin(args=[int(STALL * 1e6)])
            stop.wait(PAUSE)

    thread = threading.Thread(target=run, name="staller", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        client.close()


def read_latencies(urls: Sequence[str], hedged: bool, reads: int) -> list[float]:
    """Seconds per ``HashMap.get()`` with ``read_quorum=2``, hedged or not."""

    async def main() -> list[float]:
        async with trio_redisha.open_pool(*urls, timeout=1.0) as pool:
            with trio.fail_after(10):
                while pool.available < len(urls):  # noqa: ASYNC110
                    await trio.sleep(0.005)
            m = trio_redisha.HashMap(pool, "hedge-bench", read_quorum=2, hedged=hedged)
            await m.set({f"field-{i}": "x" * 20 for i in range(FIELDS)})
            for _ in range(50):  # latencies measured, script loaded
                await m.get()
            out = []
            for _ in range(reads):
                t0 = time.perf_counter()
                await m.get()
                out.append(time.perf_counter() - t0)
            return out

    return trio.run(main)


def measure(servers: list[RedisServer], cfg: Config) -> dict[tuple[str, str], list[float]]:
    urls = [s.url for s in servers]
    out: dict[tuple[str, str], list[float]] = {}
    for rnd in range(cfg.rounds):
        ways = WAYS[rnd % 2 :] + WAYS[: rnd % 2]
        for situation in SITUATIONS:
            for way in ways:
                if situation == "healthy":
                    got = read_latencies(urls, way == "hedged", cfg.reads)
                else:
                    with stalling(servers[rnd % SERVERS]):
                        got = read_latencies(urls, way == "hedged", cfg.reads)
                out.setdefault((situation, way), []).extend(got)
        print(f"round {rnd + 1}/{cfg.rounds} done", file=sys.stderr, flush=True)
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_report(figs: dict[tuple[str, str], list[float]], cfg: Config) -> None:
    print("| situation | read | p50, ms | p99, ms | p99.9, ms | mean, ms | reads over 2 ms |")
    print("|---|---|---|---|---|---|---|")
    for situation in SITUATIONS:
        for way in WAYS:
            got = figs[situation, way]
            slow = sum(1 for t in got if t > 0.002)
            print(
                f"| {situation} | {way} | {statistics.median(got) * 1e3:.3f} "
                f"| {_quantile(got, 0.99) * 1e3:.3f} | {_quantile(got, 0.999) * 1e3:.3f} "
                f"| {statistics.fmean(got) * 1e3:.3f} | {slow} of {len(got)} |"
            )
    print("\n| situation | hedged / plain: p50 | p99.9 | mean |")
    print("|---|---|---|---|")
    for situation in SITUATIONS:
        plain, hedged = figs[situation, "plain"], figs[situation, "hedged"]
        print(
            f"| {situation} | {statistics.median(hedged) / statistics.median(plain):.2f} "
            f"| {_quantile(hedged, 0.999) / _quantile(plain, 0.999):.2f} "
            f"| {statistics.fmean(hedged) / statistics.fmean(plain):.2f} |"
        )
    print(
        f"\nHashMap.get() of {FIELDS} fields, read_quorum=2, from {SERVERS} servers, one read "
        f"at a time; {cfg.reads} reads per way, situation and round, {cfg.rounds} interleaved "
        f"rounds (quantiles over all reads). 'one stalls': a Lua script spins one server "
        f"(a different one each round) for {STALL * 1e3:g} ms every {(STALL + PAUSE) * 1e3:g} ms: "
        "a plain read waits out each stall, a hedged one a few reply times."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = rounds_args(__doc__, argv)
    cfg = Config.make(args.quick, args.rounds)
    exe = redis_server_or_report()
    if exe is None:
        return 1
    if (missing := redis_py_missing()) is not None:
        print(missing, file=sys.stderr)
        return 1
    started = time.perf_counter()
    with bench_servers(SERVERS, exe) as servers:
        print("# bench_hedged: hedged CRDT reads against plain ones")
        print(f"{environment(exe)}; {'quick' if args.quick else 'full'} run.\n", flush=True)
        figs = measure(servers, cfg)
        print_report(figs, cfg)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
