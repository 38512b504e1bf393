"""Placement: balance, movement and cost, against a consistent-hash ring with vnodes.

Run it as a script::

    python benchmarks/bench_placement.py            # 100,000 keys, 7 timing rounds
    python benchmarks/bench_placement.py --quick    # 20,000 keys, 3 rounds

Two schemes place the same keys on the same servers:

* ``placement``: this library's (16,384 hash-slot partitions, each ranked by
  rendezvous hashing; a table of owners computed once).
* ``ring``: the classic alternative, a consistent-hash ring with 160 virtual
  nodes per server (ketama's figure), MD5 tokens, ``bisect`` lookup, walking
  clockwise past virtual nodes of servers already chosen until N distinct.

It prints, for 9 servers and N=3 over the keys: each server's share of the
placements as min/max against the mean; for growing 6->7 and 9->10 and
shrinking 9->8, the fraction of keys whose owner set changes and the fraction
of copies that must move, each against the ideal (N/(M+1) of keys and 1/(M+1)
of copies when adding, N/M and 1/M when removing); the cost per key of finding
its owners; the cost of ``command_keys`` and of ``route`` for a few shapes;
and the time to build a placement for 9 and 64 servers. Timings are CPU time
(``time.process_time``), medians over interleaved rounds.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import hashlib
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_redisha._commands import command_keys
from trio_redisha.placement import Placement, route

VNODES = 160  # ketama's points per server


class Ring:
    """A consistent-hash ring with virtual nodes (the peer scheme)."""

    def __init__(self, labels: Sequence[str], replicas: int) -> None:
        self.replicas = replicas
        points: list[tuple[int, int]] = []
        for index, label in enumerate(labels):
            for v in range(VNODES):
                digest = hashlib.md5(f"{label}-{v}".encode()).digest()
                points.append((int.from_bytes(digest[:8], "big"), index))
        points.sort()
        self.tokens = [t for t, _ in points]
        self.servers = [s for _, s in points]
        self.labels = list(labels)

    def owners(self, key: str) -> tuple[int, ...]:
        h = int.from_bytes(hashlib.md5(key.encode()).digest()[:8], "big")
        i = bisect.bisect(self.tokens, h)
        out: list[int] = []
        n = len(self.tokens)
        while len(out) < self.replicas:
            s = self.servers[i % n]
            if s not in out:
                out.append(s)
            i += 1
        return tuple(out)


def servers(m: int) -> list[str]:
    return [f"redis://10.0.0.{i}:6379" for i in range(1, m + 1)]


def balance(
    owners: Callable[[str], tuple[int, ...]], keys: list[str], m: int
) -> tuple[float, float]:
    share: Counter[int] = Counter()
    for k in keys:
        share.update(owners(k))
    mean = sum(share.values()) / m
    return min(share[s] for s in range(m)) / mean, max(share.values()) / mean


def movement(
    old: Callable[[str], tuple[int, ...]],
    new: Callable[[str], tuple[int, ...]],
    old_labels: Sequence[str],
    new_labels: Sequence[str],
    keys: list[str],
) -> tuple[float, float]:
    changed = moved = 0
    for k in keys:
        before = {old_labels[i] for i in old(k)}
        after = {new_labels[i] for i in new(k)}
        if before != after:
            changed += 1
            moved += len(after - before)
    n = len(old(keys[0]))
    return changed / len(keys), moved / (len(keys) * n)


def per_call_us(fn: Callable[[], object], number: int) -> float:
    start = time.process_time()
    for _ in range(number):
        fn()
    return (time.process_time() - start) / number * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    n_keys, rounds = (20_000, 3) if options.quick else (100_000, 7)
    keys = [f"session:{i:08x}" for i in range(n_keys)]
    n = 3

    print(f"Python {sys.version.split()[0]}; {n_keys:,} keys; N={n}; ring: {VNODES} vnodes/server")
    print()
    schemes: dict[str, Callable[[Sequence[str]], Callable[[str], tuple[int, ...]]]] = {
        "placement": lambda labels: Placement(labels, n).owners,
        "ring": lambda labels: Ring(labels, n).owners,
    }
    print("| scheme | balance 9 servers (min / max share vs mean) |")
    print("|---|---|")
    for name, make in schemes.items():
        lo, hi = balance(make(servers(9)), keys, 9)
        print(f"| {name} | {lo:.3f} / {hi:.3f} |")
    print()
    print("| scheme | change | keys re-owned (ideal) | copies moved (ideal) |")
    print("|---|---|---|---|")
    for name, make in schemes.items():
        for m_old, m_new in ((6, 7), (9, 10), (9, 8)):
            old_l, new_l = servers(m_old), servers(m_new)
            changed, moved = movement(make(old_l), make(new_l), old_l, new_l, keys)
            if m_new > m_old:
                ideal_keys, ideal_copies = n / m_new, 1 / m_new
            else:
                ideal_keys, ideal_copies = n / m_old, 1 / m_old
            print(
                f"| {name} | {m_old} -> {m_new} | {changed:.4f} ({ideal_keys:.4f}) "
                f"| {moved:.4f} ({ideal_copies:.4f}) |"
            )
    print()

    placement, ring = Placement(servers(9), n), Ring(servers(9), n)
    lookup_keys = keys[:20_000]
    cases: dict[str, Callable[[], object]] = {
        "owners(key), placement": lambda: [placement.owners(k) for k in lookup_keys],
        "owners(key), ring": lambda: [ring.owners(k) for k in lookup_keys],
    }
    shapes: dict[str, list[object]] = {
        "GET k": ["GET", "session:1"],
        "SET k v EX 60": ["SET", "session:1", "v", "EX", 60],
        "HSET k f v": ["HSET", "session:1", "f", "v"],
        "MSET 2 pairs": ["MSET", "{u}a", "1", "{u}b", "2"],
        "EVALSHA 2 keys": ["EVALSHA", "a" * 40, 2, "{u}a", "{u}b", "x"],
        "XREAD 2 streams": ["XREAD", "COUNT", 1, "STREAMS", "{u}a", "{u}b", "0", "0"],
        "PING": ["PING"],
    }
    per_call: dict[str, int] = {}
    for label, args in shapes.items():
        cases[f"command_keys {label}"] = functools.partial(command_keys, args)
        cases[f"route {label}"] = functools.partial(route, placement, args)
        per_call[f"command_keys {label}"] = per_call[f"route {label}"] = 20_000
    samples: dict[str, list[float]] = {name: [] for name in cases}
    build: dict[str, list[float]] = {"build 9 servers": [], "build 64 servers": []}
    for _ in range(rounds):
        for name, fn in cases.items():
            number = per_call.get(name, 1)
            us = per_call_us(fn, number)
            samples[name].append(us / (1 if number > 1 else len(lookup_keys)))
        for m in (9, 64):
            start = time.process_time()
            Placement(servers(m), n)
            build[f"build {m} servers"].append((time.process_time() - start) * 1e3)
    print(f"| cost (median of {rounds} interleaved rounds) | us per call |")
    print("|---|---|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    print()
    print("| precompute | ms |")
    print("|---|---|")
    for name, values in build.items():
        print(f"| {name} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
