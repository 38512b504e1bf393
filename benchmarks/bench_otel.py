"""What metrics cost: a pool without a meter provider, with one, and a bare connection.

Measured in one run, interleaved rounds, medians: sequential ``GET`` through a
1-server pool and a 3-server pool, each without metrics (``meter_provider``
unset: the command path only counts two integers) and with the OpenTelemetry
SDK's meter provider and an in-memory reader (one histogram measurement per
server per command); a bare :class:`~trio_redisha.Connection` is the floor.

Usage::

    python benchmarks/bench_otel.py           # full run
    python benchmarks/bench_otel.py --quick   # a few seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import bench_servers

import trio_redisha


async def seq_get(execute: Any, n: int) -> float:
    """Median-free mean seconds per sequential GET over ``n`` calls."""
    await execute("SET", "k", "v")
    start = time.perf_counter()
    for _ in range(n):
        await execute("GET", "k")
    return (time.perf_counter() - start) / n


async def one_round(urls: list[str], n: int) -> dict[str, float]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    out: dict[str, float] = {}
    async with trio_redisha.open_connection(urls[0]) as conn:
        out["connection"] = await seq_get(conn.execute, n)
    for count in (1, 3):
        for label, provider in (
            ("off", None),
            ("on", MeterProvider(metric_readers=[InMemoryMetricReader()])),
        ):
            async with trio_redisha.open_pool(*urls[:count], meter_provider=provider) as pool:
                while pool.available < count:  # noqa: ASYNC110 - no event for it
                    await trio.sleep(0.01)
                out[f"pool x{count} metrics {label}"] = await seq_get(pool.execute, n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    n = 1000 if args.quick else 4000
    results: dict[str, list[float]] = {}
    with bench_servers(3) as servers:
        urls = [s.url for s in servers]
        for _ in range(rounds):
            for name, value in trio.run(one_round, urls, n).items():
                results.setdefault(name, []).append(value)
    med = {name: statistics.median(values) for name, values in results.items()}
    print(f"sequential GET, {rounds} interleaved rounds of {n}, medians")
    print(f"{'path':<26} {'us/op':>8} {'vs metrics off':>15}")
    for name, value in med.items():
        base = med.get(name.replace(" on", " off"))
        ratio = f"{value / base:.3f}x" if base and name.endswith(" on") else ""
        print(f"{name:<26} {value * 1e6:>8.1f} {ratio:>15}")


if __name__ == "__main__":
    main()
