"""The pool with placement: per-command cost against full replication.

Run it as a script::

    python benchmarks/bench_pool_placement.py            # 7 rounds
    python benchmarks/bench_pool_placement.py --quick    # 3 rounds, fewer commands

Nine throwaway redis-server processes (no persistence) serve four pools, all
measured in the same run, in interleaved rounds (the order of the pools is
shuffled each round):

* ``full 3``: ``replicas=None`` over 3 servers: every command to all three;
* ``replicas=3 of 9``: each key on 3 of the 9 servers, so every keyed command
  also goes to three servers, after finding its key and owners;
* ``full 3, before``: the same as ``full 3`` with the hot path as it was before
  placement (``execute`` calling ``Pool.targets(args)``, which returned every
  server), to show that ``replicas=None`` gained no per-command cost;
* ``spread 3 of 9, no lookup``: the control for placement's own cost: nine
  servers, three per key chosen by Python's cached ``hash`` of the key, no
  command parsing. ``replicas=3 of 9`` against it is the cost of placement;
  ``spread`` against ``full 3`` is the cost of spreading over nine server
  processes (on one small machine, nine redis-server processes compete for
  the same cores, and each connection batches fewer commands per write).

Each round runs a mix of SET and GET on 1,000 keys, sequentially (one task)
and from 50 concurrent tasks, and reports wall time per command. It prints
medians over the rounds and the ratio of each pool to ``full 3`` and to the
control; the target for ``replicas=3 of 9`` is at most 1.1x. It also prints
the CPU cost of choosing the servers alone, as ``execute`` does it, per call.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_servers

from trio_redisha import Pool, Replies, open_pool
from trio_redisha.pool._guard import check_command
from trio_redisha.resp import encode_command

TASKS = 50


class _TargetsPool(Pool):
    """A pool whose every command goes where its ``targets`` says, with no other check."""

    async def execute(
        self,
        *args: Any,
        timeout: float | None = None,
        quorum: int | None = None,
        wait_for: int | None = None,
        decode: bool | None = None,
    ) -> Replies:
        check_command(args)
        return await self._fanout(
            encode_command(args), self.targets(args), timeout, quorum, wait_for, decode, args[0]
        )


class SpreadPool(_TargetsPool):
    """Three of nine servers per key, chosen by Python's cached str hash: no key lookup.

    The control for placement's own cost: it spreads the commands over nine
    servers as placement does, without parsing the command or ranking servers.
    """

    def __init__(self, *servers: str, **options: Any) -> None:
        super().__init__(*servers, **options)
        m = len(servers)
        self._triples = [(i, (i + 1) % m, (i + 2) % m) for i in range(m)]

    def targets(self, args: Any, quorum: int | None = None) -> tuple[int, ...]:
        return self._triples[hash(args[1]) % len(self._triples)]


class BeforePool(_TargetsPool):
    """The pool's hot path as it was before placement, for comparison."""

    def targets(self, args: Any, quorum: int | None = None) -> tuple[int, ...]:
        return self._all


async def sequential(pool: Pool, keys: list[str], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        key = keys[i % len(keys)]
        if i & 1:
            await pool.execute("GET", key)
        else:
            await pool.execute("SET", key, "value")
    return (time.perf_counter() - start) / n


async def concurrent(pool: Pool, keys: list[str], n: int) -> float:
    per_task = n // TASKS

    async def worker(offset: int) -> None:
        for i in range(per_task):
            key = keys[(offset + i) % len(keys)]
            if i & 1:
                await pool.execute("GET", key)
            else:
                await pool.execute("SET", key, "value")

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for t in range(TASKS):
            nursery.start_soon(worker, t * 97)
    return (time.perf_counter() - start) / (per_task * TASKS)


def targets_cost_us(pool: Pool, keys: list[str], n: int) -> float:
    """CPU cost of choosing the servers as ``execute`` does it, per call."""
    commands = [["SET", keys[i % len(keys)], "value"] for i in range(n)]
    start = time.process_time()
    if type(pool) is Pool:
        for args in commands:
            pool._all if pool._placement is None else pool.targets(args)
    else:
        targets = pool.targets
        for args in commands:
            targets(args)
    return (time.process_time() - start) / n * 1e6


async def run(urls: list[str], rounds: int, n_seq: int, n_conc: int) -> None:
    keys = [f"session:{i:06x}" for i in range(1000)]
    async with (
        open_pool(*urls[:3], timeout=2.0) as full,
        open_pool(*urls, replicas=3, timeout=2.0) as placed,
    ):
        before = BeforePool(*urls[:3], timeout=2.0)
        spread = SpreadPool(*urls, timeout=2.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(before.run)
            await nursery.start(spread.run)
            pools: dict[str, Pool] = {
                "full 3": full,
                "replicas=3 of 9": placed,
                "spread 3 of 9, no lookup": spread,
                "full 3, before": before,
            }
            with trio.fail_after(10):
                while any(p.available < len(p) for p in pools.values()):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            for pool in pools.values():  # warm up
                await sequential(pool, keys, 1000)
            results: dict[tuple[str, str], list[float]] = {}
            choose: dict[str, list[float]] = {name: [] for name in pools}
            rng = random.Random(1)
            kinds: dict[str, Callable[[Pool, list[str], int], Awaitable[float]]] = {
                "sequential": sequential,
                f"{TASKS} tasks": concurrent,
            }
            for _ in range(rounds):
                order = list(pools)
                rng.shuffle(order)
                for name in order:
                    for kind, fn in kinds.items():
                        n = n_seq if kind == "sequential" else n_conc
                        cost = await fn(pools[name], keys, n)
                        results.setdefault((name, kind), []).append(cost)
                    choose[name].append(targets_cost_us(pools[name], keys, 20_000))
            await before.aclose()
            await spread.aclose()
    print(f"Python {sys.version.split()[0]}; trio {trio.__version__}; {rounds} rounds")
    print()
    print("| pool | workload | us per command (median) | ratio to full 3 | to spread |")
    print("|---|---|---|---|---|")
    for kind in kinds:
        base = statistics.median(results[("full 3", kind)])
        control = statistics.median(results[("spread 3 of 9, no lookup", kind)])
        for name in pools:
            value = statistics.median(results[(name, kind)])
            print(
                f"| {name} | {kind} | {value * 1e6:.1f} | {value / base:.3f}"
                f" | {value / control:.3f} |"
            )
    print()
    print("| pool | choosing the servers of SET k v, CPU us per call (median) |")
    print("|---|---|")
    for name, values in choose.items():
        print(f"| {name} | {statistics.median(values):.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    rounds, n_seq, n_conc = (3, 1000, 2500) if options.quick else (7, 3000, 10_000)
    with bench_servers(9) as servers:
        trio.run(run, [s.url for s in servers], rounds, n_seq, n_conc)


if __name__ == "__main__":
    main()
