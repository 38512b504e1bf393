"""CRDTs and sessions over placement: cost per operation against full replication.

Run it as a script::

    python benchmarks/bench_crdt_placement.py            # 7 rounds
    python benchmarks/bench_crdt_placement.py --quick    # 3 rounds, fewer operations

Nine throwaway redis-server processes (no persistence) serve two pools,
measured in the same run, in interleaved rounds (the order is shuffled each
round):

* ``full 3``: ``replicas=None`` over 3 servers: every key on all three;
* ``replicas=3 of 9``: each key on 3 of the 9 servers (its owners): the same
  number of copies per key, with the reads, writes and read repair of the
  CRDT layer routed by placement.

Workloads: a session load then save (:class:`~trio_redisha.SessionStore`) and
a counter increment then read (:class:`~trio_redisha.Counter`), sequentially
and from 50 concurrent tasks, on 500 keys; and one walk of the anti-entropy
walker (:func:`~trio_redisha.crdt.repair_all`) over those keys, all in sync,
per key. It prints medians over the rounds and the ratio of placement to
full replication.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_servers

from trio_redisha import Counter, Pool, SessionStore, open_pool
from trio_redisha.crdt import repair_all

TASKS = 50
KEYS = 500


async def sessions_seq(pool: Pool, n: int) -> float:
    store = SessionStore(pool, ttl=3600)
    sids = [f"bench-session-{i:06d}-xxxxxxxxxxxxxxxx" for i in range(KEYS)]
    start = time.perf_counter()
    for i in range(n):
        sid = sids[i % KEYS]
        data = await store.load(sid)
        data["n"] = i
        await store.save(sid, data)
    return (time.perf_counter() - start) / n


async def sessions_conc(pool: Pool, n: int) -> float:
    store = SessionStore(pool, ttl=3600)
    sids = [f"bench-session-{i:06d}-xxxxxxxxxxxxxxxx" for i in range(KEYS)]
    per_task = n // TASKS

    async def worker(offset: int) -> None:
        for i in range(per_task):
            sid = sids[(offset + i) % KEYS]
            data = await store.load(sid)
            data["n"] = i
            await store.save(sid, data)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for t in range(TASKS):
            nursery.start_soon(worker, t * 7)
    return (time.perf_counter() - start) / (per_task * TASKS)


async def counters_seq(pool: Pool, n: int) -> float:
    counters = [Counter(pool, f"bench-counter:{i}") for i in range(KEYS)]
    start = time.perf_counter()
    for i in range(n):
        c = counters[i % KEYS]
        await c.incr()
        await c.get()
    return (time.perf_counter() - start) / n


async def walk(pool: Pool, n: int) -> float:
    start = time.perf_counter()
    report = await repair_all(pool, rate=0, match="bench-*")
    assert report.ok, report.messages
    return (time.perf_counter() - start) / max(1, report.scanned)


async def run(urls: list[str], rounds: int, n_seq: int, n_conc: int) -> None:
    async with (
        open_pool(*urls[:3], timeout=2.0) as full,
        # Database 1: the two pools never see each other's keys.
        open_pool(*(f"{u}/1" for u in urls), replicas=3, timeout=2.0) as placed,
    ):
        pools: dict[str, Pool] = {"full 3": full, "replicas=3 of 9": placed}
        with trio.fail_after(10):
            while any(p.available < len(p) for p in pools.values()):  # noqa: ASYNC110
                await trio.sleep(0.01)
        kinds: dict[str, tuple[Callable[[Pool, int], Awaitable[float]], int]] = {
            "session load+save, sequential": (sessions_seq, n_seq),
            f"session load+save, {TASKS} tasks": (sessions_conc, n_conc),
            "counter incr+get, sequential": (counters_seq, n_seq),
            "repair walk, per key": (walk, 0),
        }
        for pool in pools.values():  # warm up, and create every key
            await sessions_seq(pool, KEYS)
            await counters_seq(pool, KEYS)
        results: dict[tuple[str, str], list[float]] = {}
        rng = random.Random(1)
        for _ in range(rounds):
            order = list(pools)
            rng.shuffle(order)
            for name in order:
                for kind, (fn, n) in kinds.items():
                    results.setdefault((name, kind), []).append(await fn(pools[name], n))
    print(f"Python {sys.version.split()[0]}; trio {trio.__version__}; {rounds} rounds")
    print()
    print("| workload | pool | us per operation (median) | ratio to full 3 |")
    print("|---|---|---|---|")
    for kind in kinds:
        base = statistics.median(results[("full 3", kind)])
        for name in pools:
            value = statistics.median(results[(name, kind)])
            print(f"| {kind} | {name} | {value * 1e6:.1f} | {value / base:.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    rounds, n_seq, n_conc = (3, 500, 1000) if options.quick else (7, 1500, 3000)
    with bench_servers(9) as servers:
        trio.run(run, [s.url for s in servers], rounds, n_seq, n_conc)


if __name__ == "__main__":
    main()
