"""Anti-entropy measured by the servers' own byte counters (issue 10).

One run starts 3 throwaway ``redis-server`` processes (with ``trio_redisha.testing``)
and opens a pool over them, the third reached through the fault proxy of
``tests/harness/fault_proxy.py``. Then, in the same run:

1. it writes N session-sized :class:`~trio_redisha.HashMap` keys (8 fields of
   session data, a TTL as a session store gives them) with 50 tasks;
2. **baseline**: it reads every key once, ``HGETALL`` of every key from one
   server over a raw connection, and takes the bytes that server sent from its
   ``INFO stats`` ``total_net_output_bytes`` (checked against the sum of the
   replies' sizes);
3. on the converged fleet, it runs the full reading walk
   (``repair_all(pool, full=True)``) and the default walk, the digest-tree
   walk (``repair_all(pool)``), and takes the bytes all 3 servers sent;
4. it cuts server 3 off (``proxy.partition()``: its connections are reset, new
   ones hang, so writes reach only servers 1 and 2, a quorum of 2), updates 1%
   of the keys (one field each), heals the proxy, waits until the pool sees
   server 3 up again, runs the default walk and takes the bytes again;
5. it reads every key from each server directly and counts the keys that are
   not identical on all 3 (must be 0).

The byte figures are ``total_net_output_bytes`` deltas of the servers (the
``INFO`` replies' own size subtracted), so they include everything a walk costs
on the wire from the servers: ``SCAN`` replies, digests, segment digests and full
reads; the bytes the servers received (the walk's commands and write-backs) are
shown beside them. The targets of issue 10: the walk over a converged fleet
moves <= 2% of the baseline, after the partition <= 5%.

Usage::

    python benchmarks/bench_repair.py           # full run: 100,000 keys, a few minutes
    python benchmarks/bench_repair.py --quick   # 5,000 keys, well under a minute
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_servers, environment, redis_server_or_report, run_main

import trio_redisha
from tests.harness.fault_proxy import FaultProxy, open_fault_proxy
from trio_redisha.crdt import repair_all
from trio_redisha.pool import ServerState
from trio_redisha.session import DEFAULT_TTL
from trio_redisha.testing import (
    RawConnection,
    RedisServer,
    decode_reply,
    encode_command,
    open_raw_connection,
)

SERVERS = 3
#: Which server the fault proxy stands in front of (the third).
CUT = 2
#: Commands sent at once on a raw connection (pipelined).
BATCH = 500
#: Deadline of the pool's calls: generous, the machine is shared.
POOL_TIMEOUT = 5.0
#: How long the pool may take to see a server up (or down) again.
STATE_DEADLINE = 60.0
#: The command of a byte-counter snapshot, and its size (counted as input).
INFO = ("INFO", "stats")
INFO_REQUEST = len(encode_command(*INFO))


@dataclass(frozen=True)
class Config:
    keys: int
    tasks: int
    concurrency: int
    updated: float
    ttl: float
    quick: bool

    @classmethod
    def make(cls, args: argparse.Namespace) -> Config:
        keys = args.keys if args.keys is not None else (5_000 if args.quick else 100_000)
        return cls(keys, args.tasks, args.concurrency, args.updated, args.ttl, args.quick)


# --------------------------------------------------------------------------- the data


def session_id(i: int) -> str:
    """A session id as :meth:`SessionStore.new_id` makes them (43 URL-safe characters)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rng = random.Random(i)
    return "".join(rng.choice(alphabet) for _ in range(43))


def session_key(i: int) -> str:
    return f"session:{session_id(i)}"


def session_data(i: int) -> dict[str, Any]:
    """Eight fields of what a web session holds."""
    rng = random.Random(-1 - i)
    return {
        "user_id": 100_000 + i,
        "username": f"user{i:06d}",
        "email": f"user{i:06d}@example.com",
        "csrf_token": "".join(rng.choice("0123456789abcdef") for _ in range(32)),
        "created_at": 1_764_770_000 + i,
        "last_seen": round(1_764_773_600 + i + rng.random(), 3),
        "locale": rng.choice(["en-GB", "en-US", "de-DE", "fr-FR", "nl-NL"]),
        "roles": ["customer"] if i % 10 else ["customer", "staff"],
    }


# --------------------------------------------------------------------------- byte counters


@dataclass(frozen=True)
class Counters:
    """One ``INFO stats`` snapshot of one server."""

    output: int
    input: int
    reply: int  # size of the INFO reply itself (counted in the next snapshot's output)


def _stat(info: bytes, name: bytes) -> int:
    start = info.index(b"\r\n" + name + b":") + len(name) + 3
    return int(info[start : info.index(b"\r\n", start)])


class Meter:
    """Byte counters of every server, read over raw connections of their own."""

    def __init__(self, conns: Sequence[RawConnection]) -> None:
        self.conns = conns

    async def snapshot(self) -> list[Counters]:
        out = []
        for conn in self.conns:
            info = await conn.call(*INFO)
            out.append(
                Counters(
                    _stat(info, b"total_net_output_bytes"),
                    _stat(info, b"total_net_input_bytes"),
                    len(info),
                )
            )
        return out

    @staticmethod
    def delta(before: Sequence[Counters], after: Sequence[Counters]) -> tuple[list[int], list[int]]:
        """Bytes sent and received by each server between two snapshots, INFO's own excluded."""
        sent = [a.output - b.output - b.reply for b, a in zip(before, after, strict=True)]
        received = [a.input - b.input - INFO_REQUEST for b, a in zip(before, after, strict=True)]
        return sent, received


# --------------------------------------------------------------------------- raw reads


async def hgetall_many(conn: RawConnection, keys: Sequence[str]) -> list[bytes]:
    """The raw ``HGETALL`` reply of every key, pipelined BATCH at a time."""
    replies: list[bytes] = []
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        await conn.stream.send_all(b"".join(encode_command("HGETALL", k) for k in chunk))
        for _ in chunk:
            replies.append(await conn.read_reply())
    return replies


def as_dict(raw: bytes) -> dict[bytes, bytes]:
    items = decode_reply(raw)
    assert isinstance(items, list), raw[:80]
    return {k: v for k, v in zip(items[::2], items[1::2], strict=True)}


def differing(per_server: Sequence[Sequence[bytes]]) -> int:
    """Keys whose hash is not the same on every server (raw bytes first, then as dicts)."""
    count = 0
    for replies in zip(*per_server, strict=True):
        first = replies[0]
        if all(r == first for r in replies[1:]):
            continue
        if any(as_dict(r) != as_dict(first) for r in replies[1:]):
            count += 1
    return count


# --------------------------------------------------------------------------- the run


@dataclass
class Row:
    name: str
    scanned: int | None
    segments: int | None
    read: int | None
    repaired: int | None
    sent: list[int]
    received: list[int]
    elapsed: float
    target: float | None = None
    note: str = ""


@dataclass
class Results:
    key_sizes: list[int]
    write_seconds: float
    write_errors: int
    idle_residual: int
    baseline_replies: int
    rows: list[Row]
    behind_before: int
    update_errors: int
    updated: int
    heal_seconds: float
    differing: int


async def wait_state(pool: trio_redisha.Pool, index: int, up: bool) -> float:
    """Wait (deadline STATE_DEADLINE) until the pool sees server ``index`` up / not up."""
    start = time.perf_counter()
    with trio.fail_after(STATE_DEADLINE):
        while (pool.status()[index].state is ServerState.UP) is not up:  # noqa: ASYNC110
            await trio.sleep(0.01)
    return time.perf_counter() - start


async def write_all(
    pool: trio_redisha.Pool, indices: Sequence[int], cfg: Config, fields: Any
) -> int:
    """Write ``fields(i)`` to the key of every index with cfg.tasks tasks; return the failures."""
    todo = iter(indices)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for i in todo:
            hmap = trio_redisha.HashMap(pool, session_key(i), ttl=cfg.ttl or None)
            try:
                await hmap.set(fields(i))
            except trio_redisha.RedisHAError:
                errors += 1

    async with trio.open_nursery() as nursery:
        for _ in range(cfg.tasks):
            nursery.start_soon(worker)
    return errors


async def run(servers: Sequence[RedisServer], cfg: Config) -> Results:
    keys = [session_key(i) for i in range(cfg.keys)]
    rows: list[Row] = []
    cut = servers[CUT]
    async with (
        open_fault_proxy(cut.host, cut.port) as proxy,
        trio_redisha.open_pool(
            *[s.url for s in servers[:CUT]],
            proxy.url,
            *[s.url for s in servers[CUT + 1 :]],
            timeout=POOL_TIMEOUT,
            write_quorum=SERVERS - 1,
        ) as pool,
    ):
        with trio.fail_after(STATE_DEADLINE):
            while pool.available < SERVERS:  # noqa: ASYNC110 - no "connected" event
                await trio.sleep(0.01)
        conns = [await open_raw_connection(s.host, s.port) for s in servers]
        try:
            meter = Meter(conns)

            # 1. write every key, converged on all 3
            t0 = time.perf_counter()
            write_errors = await write_all(pool, range(cfg.keys), cfg, session_data)
            write_seconds = time.perf_counter() - t0
            print(f"wrote {cfg.keys:,} keys in {write_seconds:.1f} s", file=sys.stderr)

            # The counters' own noise: two snapshots with nothing in between.
            a = await meter.snapshot()
            b = await meter.snapshot()
            idle_residual = sum(Meter.delta(a, b)[0])

            # 2. baseline: every key read once, from one server
            before = await meter.snapshot()
            t0 = time.perf_counter()
            replies = await hgetall_many(conns[0], keys)
            elapsed = time.perf_counter() - t0
            after = await meter.snapshot()
            sent, received = Meter.delta(before, after)
            key_sizes = [len(r) for r in replies]
            rows.append(
                Row(
                    "baseline: HGETALL of every key, 1 server",
                    scanned=cfg.keys,
                    segments=None,
                    read=cfg.keys,
                    repaired=None,
                    sent=sent,
                    received=received,
                    elapsed=elapsed,
                )
            )

            async def walk(name: str, target: float | None, **extra: Any) -> Row:
                before = await meter.snapshot()
                report = await repair_all(
                    pool, rate=0, concurrency=cfg.concurrency, timeout=POOL_TIMEOUT, **extra
                )
                after = await meter.snapshot()
                sent, received = Meter.delta(before, after)
                note = "" if report.ok else report.summary()
                return Row(
                    name,
                    report.scanned,
                    report.segments,
                    report.read,
                    report.repaired,
                    sent,
                    received,
                    report.elapsed,
                    target,
                    note,
                )

            # 3. the full reading walk, for comparison; 4. the default walk, converged
            rows.append(await walk("repair_all(full=True), converged", None, full=True))
            print("full walk done", file=sys.stderr)
            rows.append(await walk("repair_all(), converged", 0.02))
            print("converged walk done", file=sys.stderr)

            # 5. server 3 misses 1% of the updates
            step = max(1, round(1 / cfg.updated)) if cfg.updated > 0 else cfg.keys + 1
            changed = list(range(0, cfg.keys, step))
            proxy.partition()
            await wait_state(pool, CUT, up=False)
            update_errors = await write_all(
                pool, changed, cfg, lambda i: {"last_seen": round(1_800_000_000 + i + 0.5, 3)}
            )
            touched = [keys[i] for i in changed]
            behind_before = differing(
                [await hgetall_many(conns[0], touched), await hgetall_many(conns[CUT], touched)]
            )
            heal_seconds = await heal(proxy, pool)
            rows.append(await walk(f"repair_all(), after {len(changed):,} missed updates", 0.05))
            print("walk after the partition done", file=sys.stderr)

            # 6. every key identical on every server?
            per_server = [await hgetall_many(conn, keys) for conn in conns]
            diff = differing(per_server)
        finally:
            for conn in conns:
                await conn.aclose()
    return Results(
        key_sizes=key_sizes,
        write_seconds=write_seconds,
        write_errors=write_errors,
        idle_residual=idle_residual,
        baseline_replies=sum(key_sizes),
        rows=rows,
        behind_before=behind_before,
        update_errors=update_errors,
        updated=len(changed),
        heal_seconds=heal_seconds,
        differing=diff,
    )


async def heal(proxy: FaultProxy, pool: trio_redisha.Pool) -> float:
    """Heal the proxy and wait until the pool sees the server behind it up again."""
    proxy.heal()
    return await wait_state(pool, CUT, up=True)


# --------------------------------------------------------------------------- report


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def print_report(res: Results, cfg: Config) -> None:
    base = sum(res.rows[0].sent)
    sizes = res.key_sizes
    print(
        f"{cfg.keys:,} keys of 8 fields (session data, TTL {cfg.ttl:g} s), each an HGETALL "
        f"reply of {statistics.mean(sizes):.0f} bytes on average ({min(sizes)}-{max(sizes)}; "
        "values with their stamps, plus the type marker); written with "
        f"{cfg.tasks} tasks in {res.write_seconds:.1f} s ({res.write_errors} failed). "
        f"Walks: repair_all(rate=0, concurrency={cfg.concurrency}).\n"
    )
    print(
        "| walk | keys scanned | segments compared | keys read | keys repaired "
        "| bytes sent by the servers (1 / 2 / 3) | ratio to baseline | target "
        "| bytes received by the servers | elapsed s | time / baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in res.rows:
        sent = sum(row.sent)
        ratio = sent / base if base else 0.0
        if row.target is None:
            target = "-"
        else:
            met = "met" if ratio <= row.target else "NOT met"
            target = f"<= {row.target:.0%}: {met}"
        per = " / ".join(f"{s:,}" for s in row.sent)
        slower = row.elapsed / res.rows[0].elapsed
        print(
            f"| {row.name} | {_n(row.scanned)} | {_n(row.segments)} | {_n(row.read)} "
            f"| {_n(row.repaired)} | {sent:,} ({per}) | {ratio:.2%} | {target} "
            f"| {sum(row.received):,} | {row.elapsed:.1f} | {slower:.1f} |"
        )
    base_counter = res.rows[0].sent[0]
    print(
        f"\nbaseline check: the replies of the {cfg.keys:,} HGETALLs add up to "
        f"{res.baseline_replies:,} bytes, server 1's counter moved by {base_counter:,} "
        f"(difference {base_counter - res.baseline_replies:+,}); two back-to-back INFO "
        f"snapshots of the 3 servers differ by {res.idle_residual:+,} bytes (INFO's own reply "
        "subtracted), the noise of the method."
    )
    print(
        f"partition: server 3 cut off with proxy.partition(), {res.updated:,} keys updated "
        f"(one field each, {res.update_errors} failed), {res.behind_before:,} of them behind on "
        f"server 3 before the walk; the pool saw server 3 up {res.heal_seconds:.2f} s after "
        "proxy.heal()."
    )
    verdict = "OK" if res.differing == 0 else "NOT identical"
    print(
        f"after the walks: {res.differing:,} of {cfg.keys:,} keys differ between the 3 servers "
        f"(HGETALL of every key on each server, compared as dicts): {verdict}."
    )
    for row in res.rows:
        if row.note:
            print(f"{row.name}: {row.note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5,000 keys (well under a minute)")
    parser.add_argument("--keys", type=int, help="number of keys (default 100,000; quick 5,000)")
    parser.add_argument("--tasks", type=int, default=50, help="writer tasks (default 50)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="repair_all concurrency (default 32)"
    )
    parser.add_argument(
        "--updated", type=float, default=0.01, help="share of keys updated in the partition"
    )
    parser.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        help=f"TTL of the keys in seconds, 0 for none (default {DEFAULT_TTL:g}, a session's)",
    )
    args = parser.parse_args(argv)
    if args.keys is not None and args.keys < 1:
        parser.error("--keys must be >= 1")
    if args.tasks < 1 or args.concurrency < 1:
        parser.error("--tasks and --concurrency must be >= 1")
    if not 0 <= args.updated <= 1:
        parser.error("--updated must be in 0..1")
    cfg = Config.make(args)

    exe = redis_server_or_report()
    if exe is None:
        return 1

    started = time.perf_counter()
    with bench_servers(SERVERS, exe) as servers:
        print("# bench_repair: anti-entropy measured by the servers' own byte counters")
        print(
            f"{environment(exe)}; {'quick' if cfg.quick else 'full'} run; {SERVERS} servers, "
            f"server 3 behind the fault proxy; bytes are INFO stats total_net_output_bytes "
            "deltas (one pass each: byte counts do not depend on the load, times do).\n",
            flush=True,
        )
        res = trio.run(run, servers, cfg)
        print_report(res, cfg)
        print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
