"""What keeping digests costs the write scripts, in server time (issue 10).

One run starts a throwaway ``redis-server`` (with ``trio_redisha.testing``) and
drives the CRDT write scripts with redis-py (pipelined: the client's own cost
does not matter here), in three variants of the same build:

* ``plain``: the write scripts without digests and without the tree
  (``_scripts.PLAIN_SCRIPTS``, the switch ``benchmarks/bench_crdt.py`` uses),
  given the key only;
* ``digest``: the real write scripts given the key only (no ``KEYS[2]``: the
  per-key digest is kept, the tree entry is not), and, from
  ``PACK_MIN_FIELDS`` fields on, the pack of the pairs' hashes, as the library
  sends it (``_storage.script_argv``);
* ``digest+tree``: the real write scripts as the library runs them, with the
  key's digest-tree key (``_digest.script_keys``) and the pack;
* ``evalsha``: ``digest+tree`` run with ``EVALSHA`` instead of as a function
  (``FCALL``), as the library runs them on a server without functions: what
  the function library saves.

For each workload, each variant writes its own keys. The figure is the
server's own time per script call: ``INFO commandstats`` ``usec_per_call`` of
``fcall`` (of ``evalsha`` for ``evalsha``), reset with ``CONFIG RESETSTAT``
before each variant's turn; the variants take turns in interleaved rounds
(their order rotated), and the table shows medians over rounds with the ratio
to ``plain``. The target of issue 10:
``digest+tree`` <= 1.10x ``plain``.

Workloads (each call writes into one of ``KEYS`` keys, in turn):

* ``incr``: ``COUNTER_MERGE`` of ``p:<actor>`` and ``n:<actor>``, what
  ``Counter.incr`` sends (one total grows, the other is unchanged);
* ``map set``: ``LWW_MERGE`` of one existing field in a key of ``FIELDS``
  fields (the old value's hash goes out of the digest, the new one's in);
* ``set add``: ``LWW_MERGE`` of one new member (nothing goes out);
* ``map set+ttl``: ``map set`` with an expiry, as a session store writes:
  ``PEXPIRE`` and, one write in 4, the lazy probe of the tree;
* ``replay``: ``LWW_MERGE`` of a register already stored (a retried write or
  a repair of a replica that is up to date: nothing changes);
* ``bulk add``: ``LWW_MERGE`` of ``BULK`` new members at once (a batch add, a
  repair), with the pack of their hashes as the library sends it from
  ``PACK_MIN_FIELDS`` fields on (a 50th as many calls).

Usage::

    python benchmarks/bench_scripts.py           # full run, about a minute
    python benchmarks/bench_scripts.py --quick   # a few seconds
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    bench_servers,
    environment,
    redis_py_missing,
    redis_server_or_report,
    rounds_args,
    run_main,
)

from trio_redisha.crdt import _scripts
from trio_redisha.crdt._digest import script_keys
from trio_redisha.crdt._storage import PACK_MIN_FIELDS, hash_pack
from trio_redisha.scripts import Script
from trio_redisha.testing import (
    RedisServer,
)

KEYS = 300
FIELDS = 10
ACTOR = b"bench-actor"
#: Script calls sent at once (a redis-py pipeline).
BATCH = 300

VARIANTS = ("plain", "digest", "digest+tree", "evalsha")
WORKLOADS = ("incr", "map set", "set add", "map set+ttl", "replay", "bulk add")
#: Members a "bulk add" call writes (a batch add, a repair): sent with the pack.
BULK = 250


@dataclass(frozen=True)
class Config:
    rounds: int
    calls: int  # per variant, workload and round

    @classmethod
    def make(cls, quick: bool, rounds: int | None) -> Config:
        if quick:
            return cls(rounds or 3, 1200)
        return cls(rounds or 7, 6000)


def _script(variant: str, name: str) -> Script:
    if variant == "plain":
        return _scripts.PLAIN_SCRIPTS[name]
    script: Script = getattr(_scripts, name)
    return script


def _keys(variant: str, key: bytes) -> list[Any]:
    return script_keys(key) if variant in ("digest+tree", "evalsha") else [key]


def _argv(variant: str, name: str, argv: list[Any]) -> list[Any]:
    """``argv`` as the library sends it: the real scripts get the pairs' pack
    when there are PACK_MIN_FIELDS of them or more (``_storage.script_argv``)."""
    if variant == "plain" or len(argv) < PACK_MIN_FIELDS * 2:
        return argv
    head = 1 if name == "PURGE" else 2
    flat = [b"%d" % x if isinstance(x, int) else x for x in argv[head:]]
    pairs = list(zip(flat[::2], flat[1::2], strict=True))
    return [*argv, hash_pack(pairs)]


#: One call: (script name, key, ARGV), from the call's number.
Call = tuple[str, bytes, list[Any]]


def _workload(name: str, variant: str) -> tuple[list[Call], Callable[[int], Call]]:
    """(calls that set the keys up, the call number -> one measured call)."""
    prefix = f"{name}/{variant}/".encode()
    keys = [prefix + b"%d" % i for i in range(KEYS)]
    setup: list[Call] = []
    if name == "incr":
        setup = [("COUNTER_MERGE", k, [b"counter:1", 0, b"p:" + ACTOR, 1, b"n:" + ACTOR, 0])
                 for k in keys]  # fmt: skip

        def call(i: int) -> Call:
            total = 2 + i // KEYS
            return (
                "COUNTER_MERGE",
                keys[i % KEYS],
                [b"counter:1", 0, b"p:" + ACTOR, total, b"n:" + ACTOR, 0],
            )

        return setup, call
    if name == "bulk add":
        setup = [("LWW_MERGE", k, [b"set:1", 0, b"m:member-0", b"1:%b:+" % ACTOR]) for k in keys]

        def bulk(i: int) -> Call:
            flat: list[Any] = [b"set:1", 0]
            for j in range(BULK):
                flat += [b"m:member-%d-%d" % (i, j), b"2:%b:+" % ACTOR]
            return ("LWW_MERGE", keys[i % KEYS], flat)

        return setup, bulk
    marker = b"set:1" if name == "set add" else b"map:1"
    if name != "set add":
        for k in keys:
            flat: list[Any] = [marker, 0]
            for f in range(FIELDS):
                flat += [b"f:field-%d" % f, b"1:%b:+%b" % (ACTOR, b"v" * 40)]
            setup.append(("LWW_MERGE", k, flat))
    else:
        setup = [("LWW_MERGE", k, [marker, 0, b"m:member-0", b"1:%b:+" % ACTOR]) for k in keys]
    ttl = 3_600_000 if name == "map set+ttl" else 0

    def lww(i: int) -> Call:
        key = keys[i % KEYS]
        n = i // KEYS
        if name == "set add":
            return ("LWW_MERGE", key, [marker, 0, b"m:member-%d" % (i + 1), b"2:%b:+" % ACTOR])
        if name == "replay":
            return ("LWW_MERGE", key, [marker, 0, b"f:field-%d" % (n % FIELDS), b"1:%b:+%b" % (
                ACTOR, b"v" * 40)])  # fmt: skip
        value = b"%d:%b:+%b" % (n + 2, ACTOR, b"w" * 40)
        return ("LWW_MERGE", key, [marker, ttl, b"f:field-%d" % (n % FIELDS), value])

    return setup, lww


def _run(client: Any, variant: str, calls: Sequence[Call]) -> None:
    for start in range(0, len(calls), BATCH):
        pipe = client.pipeline(transaction=False)
        for name, key, argv in calls[start : start + BATCH]:
            keys = _keys(variant, key)
            script, args = _script(variant, name), _argv(variant, name, argv)
            if variant == "evalsha":
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            else:
                pipe.fcall(script.function, len(keys), *keys, *args)
        for r in pipe.execute(raise_on_error=False):
            if isinstance(r, Exception):
                raise RuntimeError(f"{variant}: {r}")


def _script_us(server: RedisServer, variant: str) -> float:
    name = "evalsha" if variant == "evalsha" else "fcall"
    info = server.command("INFO", "commandstats").decode(errors="replace")
    for line in info.split("\r\n"):
        if line.startswith(f"cmdstat_{name}:"):
            stats = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
            return float(stats["usec_per_call"])
    raise RuntimeError(f"no {name} in INFO commandstats")


def measure(server: RedisServer, cfg: Config) -> dict[tuple[str, str], list[float]]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        for variant in VARIANTS:
            for name in ("COUNTER_MERGE", "LWW_MERGE", "PURGE"):
                script = _script(variant, name)
                client.script_load(script.source)
                assert script.library_code is not None
                client.function_load(script.library_code, replace=True)
        makers = {}
        for w in WORKLOADS:
            for v in VARIANTS:
                setup, call = _workload(w, v)
                _run(client, v, setup)
                makers[w, v] = call
        done = dict.fromkeys(makers, 0)
        out: dict[tuple[str, str], list[float]] = {}
        for rnd in range(cfg.rounds):
            order = VARIANTS[rnd % len(VARIANTS) :] + VARIANTS[: rnd % len(VARIANTS)]
            for w in WORKLOADS:
                for v in order:
                    n0 = done[w, v]
                    count = cfg.calls // 50 if w == "bulk add" else cfg.calls
                    calls = [makers[w, v](i) for i in range(n0, n0 + count)]
                    done[w, v] = n0 + count
                    server.command("CONFIG", "RESETSTAT")
                    _run(client, v, calls)
                    out.setdefault((w, v), []).append(_script_us(server, v))
            print(f"round {rnd + 1}/{cfg.rounds} done", file=sys.stderr, flush=True)
        return out
    finally:
        client.close()


def print_report(figs: dict[tuple[str, str], list[float]], cfg: Config) -> None:
    print("| workload | " + " | ".join(f"{v}, us" for v in VARIANTS) + " | digest / plain "
          "| digest+tree / plain | evalsha / digest+tree |")  # fmt: skip
    print("|---" * (len(VARIANTS) + 4) + "|")
    for w in WORKLOADS:
        med = {v: statistics.median(figs[w, v]) for v in VARIANTS}
        cells = " | ".join(f"{med[v]:.2f}" for v in VARIANTS)
        print(
            f"| {w} | {cells} | {med['digest'] / med['plain']:.2f} "
            f"| {med['digest+tree'] / med['plain']:.2f} "
            f"| {med['evalsha'] / med['digest+tree']:.2f} |"
        )
    print(
        f"\nus: server time per FCALL (EVALSHA for evalsha; INFO commandstats "
        f"usec_per_call), median over "
        f"{cfg.rounds} interleaved rounds of {cfg.calls} calls per variant and workload. "
        "ratio: the same build's scripts with digests (and tree) / without (1.00 = free; "
        "target of issue 10: digest+tree <= 1.10)."
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
    with bench_servers(1, exe) as (server,):
        print("# bench_scripts: what keeping digests costs the write scripts")
        print(
            f"{environment(exe)}; {'quick' if args.quick else 'full'} run; "
            f"{KEYS} keys per workload and variant.\n",
            flush=True,
        )
        figs = measure(server, cfg)
        print_report(figs, cfg)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
