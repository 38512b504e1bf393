"""The price of high availability: trio-redisha's CRDTs against bare Redis commands.

One run starts its own throwaway ``redis-server`` processes (with ``trio_redisha.testing``)
and measures, in the same run:

* the CRDTs over a pool of 3 servers: ``Counter.incr``, ``Set.add``,
  ``HashMap.set``, ``Counter.get`` and ``HashMap.get`` (each a Lua script or an
  ``HGETALL`` on every server, merged);
* the bare single-server commands through redis-py asyncio: ``HINCRBY``,
  ``SADD``, ``HSET`` and ``HGETALL``;
* a floor for the writes: the same fan-out to 3 servers of a script that runs
  one ``HSET`` (``EVAL``), against ``HSET``: what the pool's fan-out of a
  script costs by itself, apart from the CRDT merge scripts;

as throughput, one task at a time (sequential) and with 50 tasks (concurrent),
median over interleaved rounds, with the ratio CRDT / bare; and the time to read
a 1,000-member ``Set`` merged from 3 servers (against ``SMEMBERS`` of the same
1,000 members on one server), read again and again as an application does: with
the pool's read cache (the default, every server sends only its digest) and
without it (``read_cache=0``: one full copy, digests from the others).

The CRDT side also runs, in the same interleaved rounds, with the write scripts
that keep no digests and no digest tree (and pass only the key): the ratio of
the two is what keeping digests costs on the write path.

Usage::

    python benchmarks/bench_crdt.py           # full run
    python benchmarks/bench_crdt.py --quick   # a few seconds
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

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

SERVERS = 3
SET_SIZE = 1000
MAP_FIELDS = 10
MEMBERS = 1000  # Set.add / SADD cycle through this many members
FIELDS = 100  # HashMap.set / HSET cycle through this many fields

#: An operation: called with the running op number, returns an awaitable.
Op = Callable[[int], Awaitable[Any]]
#: name -> op, opened once per round on one side (CRDT or bare).
Ops = dict[str, Op]


@dataclass(frozen=True)
class Config:
    rounds: int
    seq_ops: int
    tasks: int
    per_task: int
    set_reads: int
    quick: bool

    @classmethod
    def make(cls, quick: bool, rounds: int | None) -> Config:
        if quick:
            return cls(rounds or 2, 150, 50, 10, 5, True)
        return cls(rounds or 5, 1000, 50, 40, 30, False)


# (label, CRDT op name, bare op name)
PAIRS = [
    ("incr", "Counter.incr(1)", "HINCRBY"),
    ("add", "Set.add(member)", "SADD"),
    ("map set", "HashMap.set({field: value})", "HSET"),
    ("counter get", "Counter.get()", "HGETALL (1 field)"),
    ("map get", f"HashMap.get() ({MAP_FIELDS} fields)", f"HGETALL ({MAP_FIELDS} fields)"),
    ("floor", "EVAL of one HSET, no CRDT", "HSET"),
]

#: The "floor" op: the writes' fan-out with a script that does next to nothing
#: (EVAL, so that the write scripts' FCALL and EVALSHA figures stay theirs alone). Its
#: ratio is what the pool's fan-out of a script costs by itself; the CRDT
#: writes' distance from it is what their merge scripts and arguments cost.
FLOOR_SCRIPT = "return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"


@dataclass
class Figures:
    seq: dict[str, list[float]] = field(default_factory=dict)
    conc: dict[str, list[float]] = field(default_factory=dict)
    #: "crdt" / "plain": server time per write script (FCALL), us, one per round.
    script_us: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seq: float, conc: float) -> None:
        self.seq.setdefault(name, []).append(seq)
        self.conc.setdefault(name, []).append(conc)


def _crdt_classes() -> tuple[Any, Any, Any] | str:
    """(Counter, Set, HashMap), or why they cannot be used."""
    try:
        from trio_redisha.crdt import Counter, HashMap, Set
    except ImportError as exc:
        return f"trio_redisha.crdt is not available yet ({exc})"
    return Counter, Set, HashMap


# --------------------------------------------------------------------------- the two sides


@asynccontextmanager
async def crdt_ops(urls: Sequence[str], prefix: str) -> AsyncIterator[Ops]:
    classes = _crdt_classes()
    if isinstance(classes, str):
        raise RuntimeError(classes)
    counter_cls, set_cls, map_cls = classes
    async with trio_redisha.open_pool(*urls) as pool:
        with trio.fail_after(10):
            while pool.available < len(urls):  # noqa: ASYNC110 - no "connected" event
                await trio.sleep(0.005)
        counter = counter_cls(pool, f"{prefix}:counter")
        members = set_cls(pool, f"{prefix}:set")
        hmap = map_cls(pool, f"{prefix}:map")
        small_map = map_cls(pool, f"{prefix}:map-read")
        await small_map.set({f"f{i}": f"value-{i}" for i in range(MAP_FIELDS)})
        await counter.incr(1)
        yield {
            "incr": lambda i: counter.incr(1),
            "add": lambda i: members.add(f"member-{i % MEMBERS}"),
            "map set": lambda i: hmap.set({f"f{i % FIELDS}": f"value-{i}"}),
            "counter get": lambda i: counter.get(),
            "map get": lambda i: small_map.get(),
            "floor": lambda i: pool.execute(
                "EVAL", FLOOR_SCRIPT, 1, f"{prefix}:floor", f"f{i % FIELDS}", f"value-{i}"
            ),
        }


@asynccontextmanager
async def bare_ops(urls: Sequence[str], prefix: str) -> AsyncIterator[Ops]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(urls[0])
    try:
        await client.hset(f"{prefix}:hash-read", mapping={f"f{i}": i for i in range(MAP_FIELDS)})
        await client.hincrby(f"{prefix}:counter", "c", 1)
        counter, members, hmap = f"{prefix}:counter", f"{prefix}:set", f"{prefix}:map"
        hash_read = f"{prefix}:hash-read"
        yield {
            "incr": lambda i: client.hincrby(counter, "c", 1),
            "add": lambda i: client.sadd(members, f"member-{i % MEMBERS}"),
            "map set": lambda i: client.hset(hmap, f"f{i % FIELDS}", f"value-{i}"),
            "counter get": lambda i: client.hgetall(counter),
            "map get": lambda i: client.hgetall(hash_read),
            "floor": lambda i: client.hset(hmap, f"f{i % FIELDS}", f"value-{i}"),
        }
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- measuring


async def _trio_measure(ops: Ops, cfg: Config, out: Figures, suffix: str) -> None:
    # Warm the concurrent path first (peers open their extra pooled connections).
    warm = ops["counter get"]
    async with trio.open_nursery() as nursery:
        for t in range(cfg.tasks):
            nursery.start_soon(warm, t)
    for name, op in ops.items():
        for i in range(20):
            await op(i)
        t0 = time.perf_counter()
        for i in range(cfg.seq_ops):
            await op(i)
        seq = cfg.seq_ops / (time.perf_counter() - t0)

        async def worker(base: int, op: Op = op) -> None:
            for i in range(base, base + cfg.per_task):
                await op(i)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for t in range(cfg.tasks):
                nursery.start_soon(worker, t * cfg.per_task)
        conc = cfg.tasks * cfg.per_task / (time.perf_counter() - t0)
        out.add(name + suffix, seq, conc)


async def _asyncio_measure(ops: Ops, cfg: Config, out: Figures, suffix: str) -> None:
    warm = ops["counter get"]
    await asyncio.gather(*(warm(t) for t in range(cfg.tasks)))
    for name, op in ops.items():
        for i in range(20):
            await op(i)
        t0 = time.perf_counter()
        for i in range(cfg.seq_ops):
            await op(i)
        seq = cfg.seq_ops / (time.perf_counter() - t0)

        async def worker(base: int, op: Op = op) -> None:
            for i in range(base, base + cfg.per_task):
                await op(i)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t * cfg.per_task) for t in range(cfg.tasks)))
        conc = cfg.tasks * cfg.per_task / (time.perf_counter() - t0)
        out.add(name + suffix, seq, conc)


def run_crdt_round(urls: Sequence[str], cfg: Config, out: Figures, rnd: int) -> None:
    async def main() -> None:
        async with crdt_ops(urls, f"crdt{rnd}") as ops:
            await _trio_measure(ops, cfg, out, "/crdt")

    trio.run(main)


@contextmanager
def _without_digests() -> Iterator[None]:
    """The same build, with write scripts that keep no digest and no tree."""
    from trio_redisha.crdt import _digest, _scripts, _storage

    plain = _scripts.PLAIN_SCRIPTS
    kinds: list[Any] = [_storage.COUNTER, _storage.MAP, _storage.SET]
    saved = [k.script for k in kinds]
    for kind in kinds:
        # The types are frozen; this swap is the benchmark's switch only.
        name = "COUNTER_MERGE" if kind is _storage.COUNTER else "LWW_MERGE"
        object.__setattr__(kind, "script", plain[name])
    _digest._tree_enabled = False
    _storage._packs_enabled = False
    try:
        yield
    finally:
        _digest._tree_enabled = True
        _storage._packs_enabled = True
        for kind, script in zip(kinds, saved, strict=True):
            object.__setattr__(kind, "script", script)


def run_plain_round(urls: Sequence[str], cfg: Config, out: Figures, rnd: int) -> None:
    async def main() -> None:
        async with crdt_ops(urls, f"plain{rnd}") as ops:
            await _trio_measure(ops, cfg, out, "/plain")

    with _without_digests():
        trio.run(main)


def run_bare_round(urls: Sequence[str], cfg: Config, out: Figures, rnd: int) -> None:
    async def main() -> None:
        async with bare_ops(urls, f"bare{rnd}") as ops:
            await _asyncio_measure(ops, cfg, out, "/bare")

    asyncio.run(main())


def _script_us(servers: Sequence[Any]) -> float:
    """Mean server time per write script (FCALL, EVALSHA) since the last RESETSTAT."""
    total = calls = 0.0
    for srv in servers:
        info = srv.command("INFO", "commandstats").decode(errors="replace")
        for line in info.split("\r\n"):
            if line.startswith(("cmdstat_fcall:", "cmdstat_evalsha:")):
                stats = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
                total += float(stats["usec"])
                calls += float(stats["calls"])
    return total / calls if calls else 0.0


# --------------------------------------------------------------------------- the big set


def big_set_read(
    urls: Sequence[str], cfg: Config, fill: bool = True, cache: bool = True
) -> tuple[list[float], int]:
    """Seconds per ``Set.get()`` of SET_SIZE members merged from every server.

    ``cache``: with the pool's read cache (the default); without it
    (``read_cache=0``), every read takes its full copy from one server.
    """

    async def main() -> tuple[list[float], int]:
        classes = _crdt_classes()
        assert not isinstance(classes, str)
        set_cls = classes[1]
        options: dict[str, Any] = {} if cache else {"read_cache": 0}
        async with trio_redisha.open_pool(*urls, **options) as pool:
            with trio.fail_after(10):
                while pool.available < len(urls):  # noqa: ASYNC110
                    await trio.sleep(0.005)
            big = set_cls(pool, "bigset")
            members = [f"member-{i:05d}" for i in range(SET_SIZE)]
            for start in range(0, SET_SIZE if fill else 0, 250):
                await big.add(*members[start : start + 250])
            size = len(await big.get())
            times = []
            for _ in range(cfg.set_reads):
                t0 = time.perf_counter()
                await big.get()
                times.append(time.perf_counter() - t0)
            return times, size

    return trio.run(main)


@dataclass
class BigSet:
    """The big-set reads: per side, seconds per read."""

    cached: list[float] = field(default_factory=list)
    uncached: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    size: int = 0


def big_set_rounds(urls: Sequence[str], cfg: Config, crdt: bool, bare: bool) -> BigSet:
    """The big-set reads of every side, in interleaved rounds (the order rotating)."""
    out = BigSet()
    for rnd in range(cfg.rounds):
        sides = ["cached", "uncached", "bare"]
        sides = sides[rnd % 3 :] + sides[: rnd % 3]
        for side in sides:
            if side == "bare":
                if bare:
                    out.bare += big_set_bare(urls[0], cfg)
            elif crdt:
                more, out.size = big_set_read(
                    urls, cfg, fill=not out.cached and not out.uncached, cache=side == "cached"
                )
                getattr(out, side).extend(more)
    return out


def big_set_bare(url: str, cfg: Config) -> list[float]:
    """Seconds per redis-py ``SMEMBERS`` of SET_SIZE members on one server."""

    async def main() -> list[float]:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        try:
            await client.sadd("bigset-bare", *[f"member-{i:05d}" for i in range(SET_SIZE)])
            await client.smembers("bigset-bare")
            times = []
            for _ in range(cfg.set_reads):
                t0 = time.perf_counter()
                await client.smembers("bigset-bare")
                times.append(time.perf_counter() - t0)
            return times
        finally:
            await client.aclose()

    return asyncio.run(main())


# --------------------------------------------------------------------------- report


def _med(values: Sequence[float] | None) -> float | None:
    return statistics.median(values) if values else None


def _num(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def print_report(
    figs: Figures,
    cfg: Config,
    big: BigSet,
) -> None:
    print(
        f"| op | trio-redisha CRDT, {SERVERS} servers | bare command, redis-py asyncio, 1 server "
        f"| sequential ops/s CRDT / bare | ratio | {cfg.tasks} tasks ops/s CRDT / bare | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for key, crdt_name, bare_name in PAIRS:
        cs, bs = _med(figs.seq.get(key + "/crdt")), _med(figs.seq.get(key + "/bare"))
        cc, bc = _med(figs.conc.get(key + "/crdt")), _med(figs.conc.get(key + "/bare"))
        print(
            f"| {key} | {crdt_name} | {bare_name} | {_num(cs)} / {_num(bs)} | {_ratio(cs, bs)} | "
            f"{_num(cc)} / {_num(bc)} | {_ratio(cc, bc)} |"
        )
    print(
        "\nratio: CRDT throughput / bare throughput (1.00 = free; 0.25 = HA costs 4x). Each CRDT "
        f"op runs on all {SERVERS} servers (a Lua merge script for writes, HGETALL + merge for "
        "reads); the bare command runs once, on one server. floor: the same fan-out as a "
        "write, of a script that runs one HSET (what the pool's fan-out costs by itself)."
    )
    print(
        "\n| op | with digests and tree / without, sequential ops/s | ratio "
        f"| {cfg.tasks} tasks ops/s | ratio |"
    )
    print("|---|---|---|---|---|")
    for key, crdt_name, _ in PAIRS:
        cs, ps = _med(figs.seq.get(key + "/crdt")), _med(figs.seq.get(key + "/plain"))
        cc, pc = _med(figs.conc.get(key + "/crdt")), _med(figs.conc.get(key + "/plain"))
        print(
            f"| {crdt_name} | {_num(cs)} / {_num(ps)} | {_ratio(cs, ps)} | "
            f"{_num(cc)} / {_num(pc)} | {_ratio(cc, pc)} |"
        )
    print(
        "\nratio: throughput with the digest-keeping write scripts (key digest, digest tree) / "
        "the same build with write scripts that keep none (1.00 = free). The reads run the "
        "same code on both sides: their ratios show the noise of the run."
    )
    crdt_us, plain_us = _med(figs.script_us.get("crdt")), _med(figs.script_us.get("plain"))
    if crdt_us and plain_us:
        print(
            f"\nServer time per write script (FCALL, INFO commandstats, mean over the "
            f"{SERVERS} servers, median over rounds): {crdt_us:.1f} us with digests and tree, "
            f"{plain_us:.1f} us without ({crdt_us / plain_us:.2f}x)."
        )
    med_bare = _med(big.bare)
    for name, times, how in (
        ("", big.cached, "with the read cache (the default: every server sends its digest only)"),
        (
            " uncached",
            big.uncached,
            "read_cache=0 (one server sends the full copy, the others digests)",
        ),
    ):
        if not times:
            continue
        med = statistics.median(times)
        line = (
            f"\nSet.get(){name} of a {big.size}-member Set merged from {SERVERS} servers, {how}: "
            f"median {med * 1000:.2f} ms, min {min(times) * 1000:.2f} ms over {len(times)} reads "
            f"in {cfg.rounds} rounds interleaved with the SMEMBERS reads"
        )
        if med_bare:
            line += (
                f"; redis-py SMEMBERS of {SET_SIZE} members on 1 server: median "
                f"{med_bare * 1000:.2f} ms ({med / med_bare:.2f}x)"
            )
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    args = rounds_args(__doc__, argv)
    cfg = Config.make(args.quick, args.rounds)

    exe = redis_server_or_report()
    if exe is None:
        return 1
    classes = _crdt_classes()
    crdt_missing = classes if isinstance(classes, str) else None
    bare_missing = redis_py_missing()

    started = time.perf_counter()
    with bench_servers(SERVERS, exe) as servers:
        urls = [s.url for s in servers]
        print("# bench_crdt: the price of high availability")
        print(
            f"{environment(exe)}; {'quick' if cfg.quick else 'full'} run: {cfg.rounds} "
            f"interleaved rounds, {cfg.seq_ops} sequential ops and {cfg.tasks}x{cfg.per_task} "
            "concurrent ops per op and round; figures are medians over rounds.\n",
            flush=True,
        )
        if crdt_missing:
            print(f"CRDT side skipped: {crdt_missing}")
        if bare_missing:
            print(f"bare side skipped: {bare_missing}")
        figs = Figures()
        for rnd in range(cfg.rounds):
            sides: list[Callable[[Sequence[str], Config, Figures, int], None]] = []
            if not crdt_missing:
                sides += [run_crdt_round, run_plain_round]
            if not bare_missing:
                sides.append(run_bare_round)
            sides = sides[rnd % len(sides) :] + sides[: rnd % len(sides)] if sides else sides
            for side in sides:
                if side in (run_crdt_round, run_plain_round):
                    for srv in servers:
                        srv.command("CONFIG", "RESETSTAT")
                side(urls, cfg, figs, rnd)
                if side in (run_crdt_round, run_plain_round):
                    name = "crdt" if side is run_crdt_round else "plain"
                    figs.script_us.setdefault(name, []).append(_script_us(servers))
            print(f"round {rnd + 1}/{cfg.rounds} done", file=sys.stderr, flush=True)
        big = big_set_rounds(urls, cfg, not crdt_missing, not bare_missing)
        print_report(figs, cfg, big)
        print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
