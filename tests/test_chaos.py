"""Chaos: concurrent writers on every CRDT type while one server at a time fails.

Three real servers, each behind a fault proxy. Two pools (two "app processes",
two actor ids) run writer tasks on a few Counter, HashMap and Set keys, plus a
reader task each (half of its reads hedged, with ``read_quorum=2``), while a
chaos task faults ONE server at a time, chosen at random, for a random short time:

* ``partition``: the proxy resets every connection (RST) and drops the bytes in
  flight, so the server really misses writes (SIGSTOP would not do that);
* ``kill``: kill -9, down for a while, then started again empty on the same port
  (the proxy keeps pointing to it);
* ``restart_empty``: kill -9 and restart at once; writes go on against the empty
  server for a while;
* ``freeze``: SIGSTOP, then SIGCONT, for longer than the pools' timeout: calls
  time out, the pools open the server's circuit and write without it (what was
  sent before is applied after SIGCONT; what was not sent is missed).

After each fault is healed, a read pass (read repair through a writer pool)
brings every server up to the merged state of every key before the next fault,
as an operator would after replacing a server; the pass checks this on the raw
hashes. Without it, a server restarted empty twice could legitimately lose writes
acknowledged only by servers emptied since.

Writers use ``write_quorum=2``; one write in ten asks for all three servers, so
that unknown outcomes (:class:`QuorumError` with ``may_have_applied``) really
happen during faults. Every operation's outcome is recorded: acknowledged,
unknown, or not applied (``may_have_applied`` false). The rules checked at the
end, on the raw state of the servers:

* Counter, per actor and key: acknowledged increments <= P <= acknowledged +
  unknown increments, the same for decrements and N; keys written with
  increments only have N = 0; the value read is sum(P) - sum(N).
* HashMap: each writer owns its fields and writes increasing values; the final
  register of a field is an operation of its owner issued no earlier than its
  last acknowledged one, and acknowledged or unknown (so its value is one the
  owner actually wrote, and an acknowledged delete stays deleted unless written
  again later). A field with an acknowledged write has a register.
* Set: the same rule for members owned by one writer (adds and removes);
  members shared by every writer are only ever added: present if one add was
  acknowledged.

When the time is up, the writers stop while the last fault is still on (so the
server it hit has really missed writes), everything is healed, the writer pools
and the proxies are closed (nothing left in flight), ONE read pass runs through a
fresh pool (each key read once) and that pool is closed (closing should wait for
the repairs it started); then all three servers must hold identical hashes (raw
HGETALL, field order aside), and the rules above must hold.

Two library bugs this test ran into (read repairs dropped by a closing pool;
a fresh pool's first calls tripping healthy servers) are fixed; their
regression tests are at the end of this module.

``REDISHA_CHAOS_SECONDS`` sets how long the chaos lasts (default 20 s);
``REDISHA_CHAOS_SEED`` replays the random choices of a run (the trio scheduling
still varies). Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import collections
import enum
import json
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import trio

import trio_redisha
from tests.harness.fault_proxy import FaultProxy, ProxyMode, open_fault_proxy
from tests.harness.helpers import wait_until
from trio_redisha import Counter, HashMap, Pool, QuorumError, Set
from trio_redisha.crdt import context_for, repair_all
from trio_redisha.crdt._digest import TREE_PREFIX
from trio_redisha.crdt._storage import DIGEST_FIELD, state_digest
from trio_redisha.testing import (
    RawConnection,
    RedisServer,
    decode_reply,
    open_raw_connection,
)


def _env_seconds() -> float:
    raw = os.environ.get("REDISHA_CHAOS_SECONDS", "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_SECONDS
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 24 * 3600:
        raise pytest.UsageError(
            f"REDISHA_CHAOS_SECONDS must be a number of seconds > 0, got {raw!r}"
        )
    return seconds


DEFAULT_SECONDS = 20.0
CHAOS_SECONDS = _env_seconds()
#: Time allowed beyond the chaos itself: setup, the last fault and pass, the end.
OVERHEAD = 60.0

POOL_OPTIONS: dict[str, Any] = {"timeout": 0.5, "backoff_cap": 0.1, "connect_timeout": 0.5}
WRITE_QUORUM = 2
#: Share of writes asking all three servers to acknowledge (unknown outcomes).
STRICT_SHARE = 0.1
WRITERS_PER_POOL = 2
FAULT_KINDS = ("partition", "kill", "restart_empty", "freeze")
FAULT_SECONDS = (0.2, 1.2)
#: A freeze shorter than the pools' timeout only delays calls; a longer one opens
#: the frozen server's circuit, and writes go on without it (it misses them).
FREEZE_SECONDS = (POOL_OPTIONS["timeout"] + 0.2, 1.5)
#: Deadline for the pools to use every server again after a fault is healed.
HEAL_DEADLINE = 15.0
#: Deadline for every server to be brought up to date on one key (and, at the end,
#: for the final read pass's repairs to finish).
REFILL_DEADLINE = 10.0
#: How long one read's repair is given before the key is read again.
REPAIR_WAIT = 0.5
POLL = 0.005
MIN_ACKED = 500

INC_KEYS = ("chaos:counter:inc:0", "chaos:counter:inc:1")  # increments only
MIX_KEYS = ("chaos:counter:mix:0", "chaos:counter:mix:1")  # increments and decrements
MAP_KEYS = ("chaos:map:0", "chaos:map:1", "chaos:map:2")
SET_KEYS = ("chaos:set:0", "chaos:set:1", "chaos:set:2")
COUNTER_KEYS = INC_KEYS + MIX_KEYS
ALL_KEYS = COUNTER_KEYS + MAP_KEYS + SET_KEYS
FIELDS_PER_WRITER = 3
MEMBERS_PER_WRITER = 4
SHARED_MEMBERS = tuple(f"shared.{j}" for j in range(8))

MARKER = b"__redisha__"
MARKERS = {"counter": b"counter:1", "map": b"map:1", "set": b"set:1"}

pytestmark = pytest.mark.timeout(int(CHAOS_SECONDS + 2 * OVERHEAD))


def kind_of(key: str) -> str:
    """``counter``, ``map`` or ``set``, from the key's name."""
    return key.split(":")[1]


# --- the raw stored state, parsed here independently of the library ------------------

Hash = dict[bytes, bytes]
#: A register in the one order: (timestamp, actor, flag + payload).
Register = tuple[int, bytes, bytes]


def parse_register(raw: bytes) -> Register:
    """``<ts>:<actor>:<flag><payload>`` as its sort key (docs/consistency.md)."""
    ts, actor, rest = raw.split(b":", 2)
    if rest[:1] not in (b"+", b"-"):
        raise ValueError(f"malformed register {raw!r}")
    return int(ts), actor, rest


def field_order(kind: str, raw: bytes) -> tuple[int, bytes, bytes]:
    """Where a stored value stands in its field's order (counters: the total)."""
    if kind == "counter":
        return int(raw), b"", b""
    return parse_register(raw)


def hash_of(reply: bytes) -> Hash:
    """Decode a raw ``HGETALL`` reply into a dict."""
    items = decode_reply(reply)
    assert isinstance(items, list) and len(items) % 2 == 0, f"not an HGETALL reply: {reply!r}"
    out: Hash = {}
    for name, value in zip(items[0::2], items[1::2], strict=True):
        assert isinstance(name, bytes) and isinstance(value, bytes), reply
        out[name] = value
    # The digest field: checked against the state, then left out of it.
    if DIGEST_FIELD in out:
        assert out.pop(DIGEST_FIELD) == state_digest(out), reply
    return out


def join(kind: str, replicas: Sequence[Hash]) -> Hash:
    """Per field the largest stored value: what every replica must reach."""
    out: Hash = {}
    for replica in replicas:
        for name, value in replica.items():
            old = out.get(name)
            if old is None or name == MARKER or field_order(kind, value) > field_order(kind, old):
                out[name] = value
    return out


def dominates(kind: str, replica: Hash, target: Hash) -> bool:
    """Whether ``replica`` holds every field of ``target`` at least as far forward."""
    for name, value in target.items():
        mine = replica.get(name)
        if mine is None:
            return False
        if name == MARKER:
            if mine != value:
                return False
        elif field_order(kind, mine) < field_order(kind, value):
            return False
    return True


async def raw_hashes(conns: Sequence[RawConnection], key: str) -> list[Hash]:
    """Each server's own hash for ``key``, read without the library."""
    return [hash_of(await conn.call("HGETALL", key)) for conn in conns]


# --- what the writers did ------------------------------------------------------------


class Outcome(enum.Enum):
    PENDING = "pending"
    ACKED = "acked"  #: at least write_quorum servers acknowledged
    UNKNOWN = "unknown"  #: QuorumError, may_have_applied: may count, or not
    NOT_APPLIED = "not applied"  #: QuorumError, may_have_applied false: must not count


@dataclass
class LwwOp:
    """One write of one map field or set member, in its owner's issue order."""

    live: bool  #: a map set or a set add (False: a delete or a remove)
    value: int | None = None  #: the map value written
    outcome: Outcome = Outcome.PENDING


@dataclass
class Tally:
    """Counter amounts of one actor on one key, by outcome."""

    acked_inc: int = 0
    unknown_inc: int = 0
    acked_dec: int = 0
    unknown_dec: int = 0


@dataclass
class Stats:
    outcomes: collections.Counter[Outcome] = field(default_factory=collections.Counter)
    acked_by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    acked_during: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    reads: int = 0
    read_errors: int = 0
    passes: int = 0
    walks: int = 0
    keys_behind: int = 0  #: keys a pass found behind on some server
    rereads: int = 0  #: keys a pass had to read again before every server caught up
    longest_pass: float = 0.0


def read_key(pool: Pool, key: str, hedged: bool = False) -> Awaitable[object]:
    """Read ``key`` through the library (read repair included); ``hedged``: with
    ``read_quorum=2``, returning once two servers answered."""
    kind = kind_of(key)
    options: dict[str, Any] = {"hedged": True, "read_quorum": 2} if hedged else {}
    if kind == "counter":
        return Counter(pool, key, **options).get()
    if kind == "map":
        return HashMap(pool, key, **options).get()
    return Set(pool, key, **options).get()


class Chaos:
    """Writers, readers, the chaos task, and the record of what was acknowledged."""

    def __init__(
        self,
        servers: list[RedisServer],
        proxies: list[FaultProxy],
        pools: list[Pool],
        seconds: float,
    ) -> None:
        self.servers = servers
        self.proxies = proxies
        self.pools = pools
        self.seconds = seconds
        self.stats = Stats()
        self.stopping = False
        self.workers = 0
        self.workers_done = trio.Event()
        self.fault_now: str | None = None
        self.final_fault: str | None = None
        #: (key, field or member) -> its owner's writes, in issue order.
        self.history: dict[tuple[str, str], list[LwwOp]] = collections.defaultdict(list)
        #: (set key, shared member) -> every writer's adds.
        self.shared: dict[tuple[str, str], list[LwwOp]] = collections.defaultdict(list)
        #: (actor id, counter key) -> amounts by outcome.
        self.tallies: dict[tuple[bytes, str], Tally] = collections.defaultdict(Tally)
        #: counter key -> every amount ever sent (for the sanity check of reads).
        self.issued_inc: collections.Counter[str] = collections.Counter()
        self.issued_dec: collections.Counter[str] = collections.Counter()
        #: writer name -> its pool's actor id.
        self.owner: dict[str, bytes] = {}
        self.violations: list[str] = []

    # -- writing

    async def attempt(self, what: str, write: Awaitable[None]) -> Outcome:
        try:
            await write
        except QuorumError as exc:
            outcome = Outcome.UNKNOWN if exc.may_have_applied else Outcome.NOT_APPLIED
        else:
            outcome = Outcome.ACKED
            self.stats.acked_by_type[what] += 1
            if self.fault_now is not None:
                self.stats.acked_during[self.fault_now] += 1
        self.stats.outcomes[outcome] += 1
        return outcome

    async def writer(self, pool: Pool, name: str, rng: random.Random) -> None:
        actor = context_for(pool).actor
        self.owner[name] = actor
        quorums = (WRITE_QUORUM, 3)
        counters = {(k, q): Counter(pool, k, write_quorum=q) for k in COUNTER_KEYS for q in quorums}
        maps = {(k, q): HashMap(pool, k, write_quorum=q) for k in MAP_KEYS for q in quorums}
        sets = {(k, q): Set(pool, k, write_quorum=q) for k in SET_KEYS for q in quorums}
        fields = [f"{name}.f{j}" for j in range(FIELDS_PER_WRITER)]
        members = [f"{name}.m{j}" for j in range(MEMBERS_PER_WRITER)]
        seq = 0
        while not self.stopping:
            q = 3 if rng.random() < STRICT_SHARE else WRITE_QUORUM
            r = rng.random()
            if r < 0.4:
                key = rng.choice(INC_KEYS if r < 0.2 else MIX_KEYS)
                amount = rng.randint(1, 3)
                up = key in INC_KEYS or rng.random() < 0.5
                ctr = counters[key, q]
                if up:
                    self.issued_inc[key] += amount
                    outcome = await self.attempt("counter", ctr.incr(amount))
                else:
                    self.issued_dec[key] += amount
                    outcome = await self.attempt("counter", ctr.decr(amount))
                tally = self.tallies[actor, key]
                if outcome is Outcome.ACKED:
                    if up:
                        tally.acked_inc += amount
                    else:
                        tally.acked_dec += amount
                elif outcome is Outcome.UNKNOWN:
                    if up:
                        tally.unknown_inc += amount
                    else:
                        tally.unknown_dec += amount
            elif r < 0.65:
                key = rng.choice(MAP_KEYS)
                chosen = rng.sample(fields, rng.randint(1, 2))
                ops: list[LwwOp] = []
                if rng.random() < 0.8:
                    values: dict[str, int] = {}
                    for f in chosen:
                        seq += 1
                        values[f] = seq
                        ops.append(LwwOp(True, seq))
                    write = maps[key, q].set(values)
                else:
                    ops = [LwwOp(False) for _ in chosen]
                    write = maps[key, q].delete(*chosen)
                for f, op in zip(chosen, ops, strict=True):
                    self.history[key, f].append(op)
                outcome = await self.attempt("map", write)
                for op in ops:
                    op.outcome = outcome
            elif r < 0.9:
                key = rng.choice(SET_KEYS)
                chosen = rng.sample(members, rng.randint(1, 2))
                live = rng.random() < 0.6
                ops = [LwwOp(live) for _ in chosen]
                for m, op in zip(chosen, ops, strict=True):
                    self.history[key, m].append(op)
                s = sets[key, q]
                outcome = await self.attempt("set", s.add(*chosen) if live else s.rem(*chosen))
                for op in ops:
                    op.outcome = outcome
            else:
                key = rng.choice(SET_KEYS)
                member = rng.choice(SHARED_MEMBERS)
                op = LwwOp(True)
                self.shared[key, member].append(op)
                op.outcome = await self.attempt("set", sets[key, q].add(member))

    # -- reading while the chaos goes on

    async def reader(self, pool: Pool, rng: random.Random) -> None:
        while not self.stopping:
            key = rng.choice(ALL_KEYS)
            try:
                value = await read_key(pool, key, hedged=rng.random() < 0.5)
            except QuorumError:
                self.stats.read_errors += 1
                continue
            self.stats.reads += 1
            self.check_read(key, value)

    def check_read(self, key: str, value: object) -> None:
        """What any read may show: only what was written (no freshness guarantee)."""
        kind = kind_of(key)
        if kind == "counter":
            assert isinstance(value, int)
            if not -self.issued_dec[key] <= value <= self.issued_inc[key]:
                self.violations.append(
                    f"read {key}: {value}, but only +{self.issued_inc[key]} "
                    f"-{self.issued_dec[key]} were ever sent"
                )
        elif kind == "map":
            assert isinstance(value, dict)
            for name, v in value.items():
                if v not in {op.value for op in self.history.get((key, name), ())}:
                    self.violations.append(f"read {key}: field {name}={v!r} never written")
        else:
            assert isinstance(value, set)
            for member in value:
                if (key, member) not in self.history and (key, member) not in self.shared:
                    self.violations.append(f"read {key}: member {member!r} never added")

    # -- the chaos

    async def chaos(self, rng: random.Random) -> None:
        """Fault one server at a time; the last fault is still on when the workers stop."""
        end = trio.current_time() + self.seconds
        bag: list[str] = []
        try:
            while True:
                if not bag:  # every kind once per round, in random order
                    bag = list(FAULT_KINDS)
                    rng.shuffle(bag)
                kind, index = bag.pop(), rng.randrange(len(self.servers))
                duration = rng.uniform(*(FREEZE_SECONDS if kind == "freeze" else FAULT_SECONDS))
                last = False
                await self.inject(kind, index)
                try:
                    await trio.sleep(duration)
                    last = trio.current_time() >= end and len(self.stats.faults) == len(FAULT_KINDS)
                    if last:
                        # Stop writing while the server is still faulted: the final
                        # read pass has to repair what it missed.
                        self.final_fault = kind
                        self.stopping = True
                        await self.workers_done.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await self.heal(kind, index)
                if last:
                    return
                await self.all_available()
                await self.refill_pass()
        finally:
            self.stopping = True

    async def inject(self, kind: str, index: int) -> None:
        server, proxy = self.servers[index], self.proxies[index]
        self.stats.faults[kind] += 1
        self.fault_now = kind
        if kind == "partition":
            proxy.partition()  # RST; bytes in flight dropped; new connections hang
        elif kind == "kill":
            await server.akill()  # kill -9; restarted empty by heal()
        elif kind == "restart_empty":
            await server.arestart_empty()  # writes go on against the empty server
        else:
            await server.afreeze()  # SIGSTOP

    async def heal(self, kind: str, index: int) -> None:
        server, proxy = self.servers[index], self.proxies[index]
        if kind == "partition":
            proxy.heal()
        elif kind == "kill":
            await server.astart()  # empty, on the same port: the proxy still points to it
        elif kind == "freeze":
            await server.athaw()
        self.fault_now = None

    async def worker(self, task: Callable[[], Awaitable[None]]) -> None:
        self.workers += 1
        try:
            await task()
        finally:
            self.workers -= 1
            if not self.workers:
                self.workers_done.set()

    async def all_available(self) -> None:
        """Wait until every pool sends commands to every server again."""
        await wait_until(
            lambda: all(st.available for pool in self.pools for st in pool.status()),
            HEAL_DEADLINE,
            what=lambda: f"every server to be used again after healing: {self.pools}",
        )

    async def refill_pass(self) -> None:
        """Bring every server up to what every key held when the pass began.

        Every other pass reads: reads go through a writer pool (read repair in
        its background); the raw hashes are polled until each server dominates
        the merge of all three taken before the read. The others run the
        digest-tree walk (``repair_all``) under the live writers, then check the
        same on the raw hashes. This restores the invariant that lets the next
        fault empty any one server: every acknowledged write is on all three
        servers, or was acknowledged since and is on at least two.
        """
        pool = self.pools[self.stats.passes % len(self.pools)]
        started = trio.current_time()
        async with AsyncExitStack() as stack:
            conns = [
                await stack.enter_async_context(await open_raw_connection(server.host, server.port))
                for server in self.servers
            ]
            if self.stats.passes % 2:
                await self.walk_pass(pool, conns)
            else:
                for key in ALL_KEYS:
                    await self.refill(pool, conns, key)
        self.stats.passes += 1
        self.stats.longest_pass = max(self.stats.longest_pass, trio.current_time() - started)

    async def walk_pass(self, pool: Pool, conns: list[RawConnection]) -> None:
        """Refill by the digest-tree walk: after a complete walk, every server
        dominates what the three held before it (writes during it only add)."""
        targets = {}
        for key in ALL_KEYS:
            targets[key] = join(kind_of(key), await raw_hashes(conns, key))
        deadline = trio.current_time() + REFILL_DEADLINE
        while True:
            report = await repair_all(pool, rate=0)
            self.stats.walks += 1
            behind = []
            for key in ALL_KEYS:
                kind = kind_of(key)
                if not all(dominates(kind, r, targets[key]) for r in await raw_hashes(conns, key)):
                    behind.append(key)
            if report.ok and not behind:
                return
            if trio.current_time() > deadline:
                pytest.fail(
                    f"the tree walk did not bring every server up to date within "
                    f"{REFILL_DEADLINE} s: {report.summary()} {report.messages}; behind: {behind}"
                )

    async def refill(self, pool: Pool, conns: list[RawConnection], key: str) -> None:
        kind = kind_of(key)
        replicas = await raw_hashes(conns, key)
        # Everything acknowledged so far is on some server: every server must reach it.
        target = join(kind, replicas)
        if not all(dominates(kind, r, target) for r in replicas):
            self.stats.keys_behind += 1
        deadline = trio.current_time() + REFILL_DEADLINE
        while True:
            try:
                await read_key(pool, key)  # read repair, in the pool's background
            except QuorumError:
                self.stats.read_errors += 1
            with trio.move_on_after(REPAIR_WAIT):
                while True:
                    replicas = await raw_hashes(conns, key)
                    if all(dominates(kind, r, target) for r in replicas):
                        return
                    await trio.sleep(POLL)
            self.stats.rereads += 1
            if trio.current_time() > deadline:
                pytest.fail(
                    f"read repair did not bring every server up to date on {key!r} within "
                    f"{REFILL_DEADLINE} s\ntarget: {target}\nservers: {replicas}\n{pool}"
                )

    async def heal_everything(self) -> None:
        """Whatever a cancelled fault may have left: thaw, restart, heal the proxies."""
        for server, proxy in zip(self.servers, self.proxies, strict=True):
            if server.frozen:
                await server.athaw()
            if not server.running:
                await server.astart()
            if proxy.mode is not ProxyMode.NORMAL:
                proxy.heal()


# --- the checks at the end -------------------------------------------------------------


def check_lww(
    where: str, ops: Sequence[LwwOp], stored: bytes | None, owner: bytes | None
) -> str | None:
    """Check one owned field's or member's final register against its owner's writes."""
    pending = [op for op in ops if op.outcome is Outcome.PENDING]
    if pending:
        return f"{where}: {len(pending)} writes never finished"
    last_acked = max((i for i, op in enumerate(ops) if op.outcome is Outcome.ACKED), default=-1)
    if stored is None:
        if last_acked >= 0:
            return f"{where}: no register, but write #{last_acked} {ops[last_acked]} was acked"
        return None
    _, actor, rest = parse_register(stored)
    if owner is not None and actor != owner:
        return f"{where}: register {stored!r} written by {actor!r}, not its owner {owner!r}"
    live = rest[:1] == b"+"
    value = int(rest[1:]) if live and rest[1:] else None
    allowed = (Outcome.ACKED, Outcome.UNKNOWN)
    matches = [
        i
        for i, op in enumerate(ops)
        if op.outcome in allowed and op.live == live and op.value == value
    ]
    if not matches:
        return (
            f"{where}: final register {stored!r} is none of its owner's {len(ops)} writes "
            f"(last acked: #{last_acked}; the last ones: {list(enumerate(ops))[-5:]})"
        )
    if max(matches) < last_acked:
        return (
            f"{where}: final register {stored!r} is write #{max(matches)}, older than "
            f"write #{last_acked} {ops[last_acked]}, which was acked"
        )
    return None


def check_counter(chaos: Chaos, key: str, stored: Hash, read: object) -> list[str]:
    out: list[str] = []
    actors = {context_for(pool).actor for pool in chaos.pools}
    expected = {b"p:" + a for a in actors} | {b"n:" + a for a in actors} | {MARKER}
    if set(stored) - expected:
        out.append(f"{key}: unexpected fields {sorted(set(stored) - expected)}")
    total = 0
    for actor in sorted(actors):
        t = chaos.tallies[actor, key]
        p = int(stored.get(b"p:" + actor, b"0"))
        n = int(stored.get(b"n:" + actor, b"0"))
        total += p - n
        if not t.acked_inc <= p <= t.acked_inc + t.unknown_inc:
            out.append(f"{key} actor {actor!r}: P={p} outside [{t.acked_inc}, +{t.unknown_inc}]")
        if not t.acked_dec <= n <= t.acked_dec + t.unknown_dec:
            out.append(f"{key} actor {actor!r}: N={n} outside [{t.acked_dec}, +{t.unknown_dec}]")
        if key in INC_KEYS and n:
            out.append(f"{key} actor {actor!r}: N={n} on a key only ever incremented")
    if read != total:
        out.append(f"{key}: the final read gave {read!r}, the servers hold P-N={total}")
    return out


def check_lww_key(chaos: Chaos, key: str, stored: Hash, read: object) -> list[str]:
    out: list[str] = []
    kind = kind_of(key)
    prefix = b"f:" if kind == "map" else b"m:"
    registers: dict[str, bytes] = {}
    for raw_name, value in stored.items():
        if raw_name == MARKER:
            continue
        if not raw_name.startswith(prefix):
            out.append(f"{key}: unexpected field {raw_name!r}")
            continue
        registers[raw_name[len(prefix) :].decode()] = value
    owned = {n for k, n in chaos.history if k == key}
    shared = {m for k, m in chaos.shared if k == key}
    for name in sorted(set(registers) - owned - shared):
        out.append(f"{key}: register for {name!r}, which nobody wrote")
    for name in sorted(owned):
        owner = chaos.owner[name.split(".")[0]]
        problem = check_lww(f"{key} {name}", chaos.history[key, name], registers.get(name), owner)
        if problem:
            out.append(problem)
    for member in sorted(shared):
        adds = chaos.shared[key, member]
        stored_reg = registers.get(member)
        acked = any(op.outcome is Outcome.ACKED for op in adds)
        maybe = any(op.outcome in (Outcome.ACKED, Outcome.UNKNOWN) for op in adds)
        if stored_reg is None:
            if acked:
                out.append(f"{key} {member}: an add was acked, but the member is gone")
        elif not parse_register(stored_reg)[2].startswith(b"+"):
            out.append(f"{key} {member}: removed ({stored_reg!r}), but nobody removes it")
        elif not maybe:
            out.append(f"{key} {member}: present, but no add can have been applied")
    live: dict[str, bytes] = {
        n: v for n, v in registers.items() if parse_register(v)[2][:1] == b"+"
    }
    if kind == "map":
        expected_map = {n: json.loads(parse_register(v)[2][1:]) for n, v in live.items()}
        if read != expected_map:
            out.append(f"{key}: the final read gave {read!r}, the servers hold {expected_map}")
    elif read != set(live):
        out.append(f"{key}: the final read gave {read!r}, the servers hold {set(live)}")
    return out


async def server_state(server: RedisServer) -> dict[str, Hash]:
    """Every key of one server and its raw hash (field order ignored)."""
    keys = decode_reply(await server.acommand("KEYS", "*"))
    assert isinstance(keys, list)
    state: dict[str, Hash] = {}
    for k in sorted(keys):
        assert isinstance(k, bytes)
        if k.startswith(TREE_PREFIX):
            continue  # the digest tree: an index, not data (dead entries go at random)
        state[k.decode()] = hash_of(await server.acommand("HGETALL", k))
    return state


async def until_identical(servers: Sequence[RedisServer]) -> None:
    """Poll the servers' raw state until they all hold the same; fail after a deadline."""
    with trio.move_on_after(REFILL_DEADLINE):
        while True:
            states = [await server_state(server) for server in servers]
            if all(state == states[0] for state in states):
                return
            await trio.sleep(POLL)
    pytest.fail(f"the servers still differ {REFILL_DEADLINE} s after the final read pass")


async def test_crdts_converge_under_chaos(redis_servers: list[RedisServer]) -> None:
    seed = int(os.environ.get("REDISHA_CHAOS_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    started = trio.current_time()
    with trio.fail_after(CHAOS_SECONDS + OVERHEAD):
        async with AsyncExitStack() as stack:
            proxies = [
                await stack.enter_async_context(open_fault_proxy(s.host, s.port))
                for s in redis_servers
            ]
            pools = [
                await stack.enter_async_context(
                    trio_redisha.open_pool(
                        *(p.url for p in proxies), write_quorum=WRITE_QUORUM, **POOL_OPTIONS
                    )
                )
                for _ in range(2)
            ]
            assert context_for(pools[0]).actor_id != context_for(pools[1]).actor_id
            chaos = Chaos(redis_servers, proxies, pools, CHAOS_SECONDS)
            # Start with every server connected, so that the first fault hits a
            # pool in its steady state.
            await chaos.all_available()
            async with trio.open_nursery() as nursery:
                for p, pool in enumerate(pools):
                    for w in range(WRITERS_PER_POOL):
                        writer = partial(
                            chaos.writer, pool, f"w{p}{w}", random.Random(rng.random())
                        )
                        nursery.start_soon(chaos.worker, writer)
                    reader = partial(chaos.reader, pool, random.Random(rng.random()))
                    nursery.start_soon(chaos.worker, reader)
                nursery.start_soon(chaos.chaos, random.Random(rng.random()))
            chaos_ended = trio.current_time()
            await chaos.heal_everything()
            # The servers answer again (a thawed one has applied what it held).
            await chaos.all_available()
            # Leaving closes the writer pools (after their repairs), then the proxies
            # (resetting every connection): no write is left in flight.
        for server in redis_servers:
            assert decode_reply(await server.acommand("PING")) == b"PONG"
        before = [await server_state(server) for server in redis_servers]
        diverged = sorted(k for k in ALL_KEYS if len({repr(b.get(k)) for b in before}) > 1)

        # ONE read pass through a fresh pool, each key read once; closing the pool
        # should wait for the repairs it started.
        final: dict[str, object] = {}
        async with trio_redisha.open_pool(*(s.url for s in redis_servers), timeout=2.0) as pool:
            await wait_until(
                lambda: pool.available == len(redis_servers),
                HEAL_DEADLINE,
                what=lambda: f"the fresh pool to connect: {pool}",
            )
            for key in ALL_KEYS:
                final[key] = await read_key(pool, key)
            # Leaving the pool waits for the repairs this pass started.

        # Every server holds the very same hashes.
        stored = [await server_state(server) for server in redis_servers]
    ended = trio.current_time()

    s = chaos.stats
    acked = s.outcomes[Outcome.ACKED]
    print(
        f"\nREDISHA_CHAOS_SEED={seed} REDISHA_CHAOS_SECONDS={CHAOS_SECONDS:g}: writers and "
        f"chaos ran {chaos_ended - started:.1f} s, {ended - started:.1f} s with the final pass\n"
        f"  writes: {acked} acked ({dict(s.acked_by_type)}), "
        f"{s.outcomes[Outcome.UNKNOWN]} unknown, {s.outcomes[Outcome.NOT_APPLIED]} not applied "
        f"(QuorumErrors: {s.outcomes[Outcome.UNKNOWN] + s.outcomes[Outcome.NOT_APPLIED]})\n"
        f"  acked during faults: {dict(s.acked_during)}\n"
        f"  faults: {dict(s.faults)}\n"
        f"  reads: {s.reads} ok, {s.read_errors} QuorumErrors; passes: {s.passes} "
        f"({s.walks} tree walks), "
        f"keys found behind: {s.keys_behind}, read again: {s.rereads}, "
        f"longest pass: {s.longest_pass:.2f} s, "
        f"hedged reads rechecked: {sum(p.stats.hedged_rechecks for p in pools)}\n"
        f"  last fault ({chaos.final_fault}) still on when the writers stopped; keys differing "
        f"between servers before the final read pass: {len(diverged)} of {len(ALL_KEYS)}\n"
        f"  final counters: { {k: final[k] for k in COUNTER_KEYS} }"
    )

    for server, state in zip(redis_servers[1:], stored[1:], strict=True):
        assert state == stored[0], f"{server!r} differs from {redis_servers[0]!r}"
    assert not chaos.violations, "\n".join(chaos.violations[:20])
    held = stored[0]
    written = {
        k
        for (k, _), ops in [*chaos.history.items(), *chaos.shared.items()]
        if any(op.outcome is Outcome.ACKED for op in ops)
    } | {k for (_, k), t in chaos.tallies.items() if t.acked_inc or t.acked_dec}
    assert written <= set(held), f"keys lost: {written - set(held)}"
    assert set(held) <= set(ALL_KEYS), f"unexpected keys: {set(held) - set(ALL_KEYS)}"
    problems: list[str] = []
    for key in ALL_KEYS:
        h = held.get(key, {})
        kind = kind_of(key)
        if h and h.get(MARKER) != MARKERS[kind]:
            problems.append(f"{key}: marker {h.get(MARKER)!r}")
        if kind == "counter":
            problems += check_counter(chaos, key, h, final[key])
        else:
            problems += check_lww_key(chaos, key, h, final[key])
    assert not problems, f"{len(problems)} violations:\n" + "\n".join(problems[:30])

    # The run really exercised what it claims to.
    assert acked >= MIN_ACKED, f"only {acked} writes acked"
    assert all(s.faults[k] > 0 for k in FAULT_KINDS), s.faults
    assert all(s.acked_during[k] > 0 for k in FAULT_KINDS), s.acked_during
    assert s.outcomes[Outcome.UNKNOWN] > 0, "no unknown outcome: the accounting went untested"
    assert s.passes >= len(FAULT_KINDS) - 1  # one after each fault but the last


# --- regressions: library bugs the chaos test found (fixed) ---


async def test_closing_waits_for_started_read_repairs(
    redis_servers: list[RedisServer],
) -> None:
    urls = [s.url for s in redis_servers]
    async with trio_redisha.open_pool(*urls) as pool:
        await HashMap(pool, "m", write_quorum=3).set({"a": 1})
    await redis_servers[2].acommand("DEL", "m")  # one replica lost the key
    with trio.fail_after(10):
        async with trio_redisha.open_pool(*urls, timeout=2.0) as pool:
            # The read finds server 2 behind and starts its repair in the background.
            assert await HashMap(pool, "m").get() == {"a": 1}
        # Leaving waited for that repair (docs: "Leaving waits up to close_timeout
        # for read repairs already started").
        repaired = hash_of(await redis_servers[2].acommand("HGETALL", "m"))
        assert repaired == hash_of(await redis_servers[0].acommand("HGETALL", "m"))


async def test_first_calls_do_not_trip_healthy_servers(
    redis_servers: list[RedisServer],
) -> None:
    with trio.fail_after(10):
        async with AsyncExitStack() as stack:
            proxies = [
                await stack.enter_async_context(open_fault_proxy(s.host, s.port))
                for s in redis_servers
            ]
            proxies[0].set_latency(0.02)  # healthy: 20 ms of a 0.5 s deadline
            proxies[1].set_latency(0.02)
            proxies[2].partition()  # its first connect hangs (connect_timeout: 2 s)
            pool = await stack.enter_async_context(
                trio_redisha.open_pool(*(p.url for p in proxies))
            )
            # Two servers answer within the deadline: the write meets its quorum ...
            await HashMap(pool, "m", write_quorum=2).set({"a": 1})
            # ... and they stay in use.
            assert [st.available for st in pool.status()] == [True, True, False]
