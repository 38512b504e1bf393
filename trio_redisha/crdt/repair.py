"""Anti-entropy: repair one key (:func:`repair_key`) or walk every key (:func:`repair_all`).

:func:`repair_key` needs no object and no codec, only what the servers hold:
it finds the key's type from the stored marker, merges, and writes back where
a server is behind. :func:`repair_all` is the walker: it ``SCAN``\\ s the
servers for hashes and repairs each key found, paced and a few at a time, so
one walk refills a server that came back empty (as Roshi's ``roshi-walker
-once`` does); ``trio-redisha repair`` runs it.

Unlike read repair, which is rate limited and runs in the background, these
wait for their writes. The walk is three parts that can be swapped one at a
time: where the keys come from (``SCAN`` of the servers, or ``keys=``), which
servers a key is read from and written to (``sources=`` / ``targets=``, a
sequence or a function of the key), and the per-key step (:func:`repair_key`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from .._util import finite_seconds, open_owned_nursery
from ..exceptions import (
    ConfigurationError,
    ForeignValueError,
    ProtocolError,
    RedisHAError,
    ReplyError,
)
from ._base import DEFAULT_TOMBSTONE_GRACE, check_grace, check_timeout
from ._digest import TREE_PREFIX, rehash_key
from ._plan import Settled, carry_out, forget_vanished, is_foreign_reply, now_us, settle
from ._read import Snapshot, _fields_of, read_key
from ._scripts import MARKERS
from ._storage import DIGEST_FIELD, MARKER_FIELD, check_key, state_digest
from ._treewalk import TreeWalk, walk_tree

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = [
    "DEFAULT_REPAIR_CONCURRENCY",
    "DEFAULT_REPAIR_RATE",
    "DEFAULT_SCAN_COUNT",
    "MAX_ERROR_MESSAGES",
    "SCAN_ATTEMPTS",
    "RepairReport",
    "repair_all",
    "repair_key",
]

#: Keys per second the walker repairs by default: Roshi's walker and
#: read-repair default, gentle enough to run against a live cluster.
DEFAULT_REPAIR_RATE: Final = 1000.0
#: SCAN COUNT hint (Redis's own default is 10; larger batches mean fewer round trips).
DEFAULT_SCAN_COUNT: Final = 100
#: Keys repaired concurrently by the walker.
DEFAULT_REPAIR_CONCURRENCY: Final = 8
#: Attempts per SCAN page before a server is given up as unreachable.
SCAN_ATTEMPTS: Final = 3
#: Error messages kept in a repair report (the count is always exact).
MAX_ERROR_MESSAGES: Final = 20

#: Servers by index: a fixed sequence, or a function of the key (placement).
Servers = Sequence[int] | Callable[[bytes], Sequence[int]]


async def repair_key(
    pool: Pool,
    key: str | bytes,
    *,
    tombstone_grace: float = DEFAULT_TOMBSTONE_GRACE,
    timeout: float | None = None,
    sources: Sequence[int] | None = None,
    targets: Sequence[int] | None = None,
) -> bool:
    """Bring every server that answers up to the merged state of ``key``.

    The type is read from the marker field of the stored hash (see
    :func:`~trio_redisha.crdt.detect_type`). Servers that are behind, or
    answered without the key, get the fields they lack; tombstones older than
    ``tombstone_grace`` are purged, if every server of the pool was read (no
    ``sources`` leaving one out), answered and was brought up to date.
    Expiry: if every server holding the key has one, the longest remaining one
    is given to the servers written (the longest TTL wins, as in Redis
    Active-Active); otherwise it is left alone. If the key expired on every
    holder since it was read, nothing is written (it would come back without
    an expiry).

    Args:
        pool: The pool.
        key: The key to repair.
        tombstone_grace: Seconds tombstones are kept (as given to the objects).
        timeout: Deadline of each call in seconds (``None``: the pool's).
        sources: Indices of the servers that may hold a copy and are read
            (``None``: every server). Leaving a server out, no tombstone is
            purged: that server may still hold what it deletes.
        targets: Indices of the servers that must end up with the merged
            state (``None``: the sources; with placement, the key's owners).
            They are read too, so only what each one lacks is sent; the other
            sources are only read from.

    With placement (``replicas=N``) and no ``targets``, the merge is written
    to the key's N owners only, and once every owner acknowledged it, the
    copies on the other servers read are deleted, each only if unchanged
    since it was read (:func:`~trio_redisha.crdt._plan.remove_copies`): a
    fallback's copy is handed back, an old owner's copy is moved.

    Returns:
        Whether any server was written to: ``False`` when the key is absent
        everywhere or the servers that answered already agree.

    Raises:
        ConfigurationError: ``key`` is not a non-empty str or bytes, or not
            valid UTF-8 text, or ``sources``/``targets`` are not indices of
            the pool's servers (``sources`` empty); nothing was sent.
        ForeignValueError: The key is not a trio-redisha CRDT (a plain value,
            a hash without the marker, an unknown type or format version, or
            different types on different servers). Nothing is written.
        QuorumError: No server answered; or none of those that answered
            holds the key while some failed (they may: it is not absent).
    """
    check_key(key)
    check_grace(tombstone_grace)
    check_timeout(timeout)
    if sources is not None:
        sources = _as_indices("sources", sources)  # a generator is read once, here
        _check_servers(pool, "sources", sources)
        if not sources:
            raise ConfigurationError("sources must name at least one server")
    if targets is not None:
        targets = _as_indices("targets", targets)
        _check_servers(pool, "targets", targets)
    return (await _repair_one(pool, key, tombstone_grace, timeout, sources, targets)).changed


async def _repair_one(
    pool: Pool,
    key: str | bytes,
    tombstone_grace: float,
    timeout: float | None,
    sources: Sequence[int] | None,
    targets: Sequence[int] | None,
    hold: bool = False,
    full_from: Sequence[int] = (),
    on_read: Callable[[Snapshot[Any]], None] | None = None,
    verify: Callable[[int], None] | None = None,
) -> Settled:
    """:func:`repair_key`, saying also which non-owner copies were removed or left.

    ``on_read`` is given what the read found (before anything is written).
    ``verify``: read every server in full, not by digest, and recompute the
    digest where it does not match the key's contents (a write by a version
    before digests, a collision); called with the number of such servers.
    """
    placed = targets is None and pool.placement is not None
    if placed:
        targets = pool._owner_indices(key)
    servers: Sequence[int] | None = sources
    if targets is not None:
        base = range(len(pool)) if sources is None else sources
        servers = [*base, *(t for t in targets if t not in base)]
    if verify is not None:
        full_from = tuple(range(len(pool))) if servers is None else tuple(servers)
    snap = await read_key(
        pool,
        key,
        None,
        servers=servers,
        timeout=timeout,
        full_from=full_from,
        absent_needs_all=True,  # a failed server may hold it: not "absent"
    )
    if snap is None:
        return Settled()
    if on_read is not None:
        on_read(snap)
    if verify is not None:
        wrong = _wrong_digests(snap)
        if wrong:
            # Before any repair write: the scripts move a digest by delta.
            await rehash_key(pool, key, wrong, timeout=timeout)
            verify(len(wrong))
    purge_before = now_us() - int(tombstone_grace * 1_000_000)
    if servers is not None and not set(range(len(pool))) <= set(servers):
        # A server not read may hold a copy with what a tombstone deletes (with
        # placement: a fallback's, whoever wrote it): purged here, the value
        # would come back from there. Every tombstone is sent, none purged.
        purge_before = 0
    if placed:
        assert targets is not None
        return await settle(pool, snap, targets, purge_before, timeout, hold=hold)
    plan = snap.plan(purge_before, targets)
    if not plan:
        return Settled()
    return Settled(await carry_out(pool, snap.kind, key, plan, snap.holders, timeout))


def _wrong_digests(snap: Snapshot[Any]) -> list[int]:
    """The servers whose full copy of ours holds no digest, or one its contents do not give.

    Each distinct reply is hashed once (on a converged fleet the servers'
    replies are equal). A copy without one is data from before digests: the
    walk gives it its digest itself, not the read's rate-limited rehash.
    """
    wrong = []
    verdicts: list[tuple[Any, bool]] = []  # (reply, wrong) of the replies hashed so far
    for i, reply in zip(snap.asked, snap.replies, strict=True):
        if isinstance(reply, BaseException) or not reply:
            continue
        verdict = next((w for r, w in verdicts if r is reply or r == reply), None)
        if verdict is None:
            try:
                fields = _fields_of(reply)
            except ProtocolError:
                continue
            stored = fields.get(DIGEST_FIELD)
            if stored is None:
                verdict = fields.get(MARKER_FIELD) in MARKERS
            else:
                verdict = stored != state_digest(fields)
            verdicts.append((reply, verdict))
        if verdict:
            wrong.append(i)
    return wrong


@dataclass
class RepairReport:
    """The outcome of an anti-entropy pass.

    Attributes:
        servers: How many servers the pass read from.
        scanned: Distinct hash keys found by SCAN on any server (or given);
            in a tree walk, the keys of ours on the server holding the most,
            plus the keys read that it answered without, plus the hashes that
            are not ours: the same count with every key on every server, and a
            lower bound with placement (no server holds every key, and the
            converged keys the largest one lacks are not read) or when that
            server stops answering during the pass (a key read then may be
            one it counted, or not).
        segments: Tree walk: digest-tree segments compared across the servers.
        differing: Tree walk: segments whose digests differed, even after a
            sweep, so that their index entries were read.
        rehashed: Keys given a digest that their contents give: in a tree
            walk, keys without one (written before digests existed); in a
            reading walk, also keys whose digest did not match their contents
            on some server (a write by a version before digests, a collision).
        read: Keys read in full from the servers (the reading walk reads
            every key; a tree walk only those whose digests differ).
        processed: Keys whose repair has finished, whatever its outcome.
        repaired: Keys that were behind on some server and were written back.
        skipped: Hashes that are not trio-redisha CRDTs, and keys of
            different types on different servers (left untouched), each once.
        moved: With placement, keys of which some copy on a server that is
            not an owner was removed (handed back or migrated).
        removed: Copies removed from servers that are not the key's owners.
        left: Copies on servers that are not owners and were kept: an owner
            did not acknowledge the merge, or the copy changed since it was
            read (a write landed there). The next pass takes them.
        errors: Keys whose repair failed.
        unreachable: Servers that could not be scanned to the end.
        restarted: Servers that restarted during the pass (their run id
            changed): what the pass wrote there may be gone. Run it again.
        messages: The first error messages (at most :data:`MAX_ERROR_MESSAGES`).
        elapsed: Seconds the pass took.
    """

    servers: int = 0
    scanned: int = 0
    segments: int = 0
    differing: int = 0
    rehashed: int = 0
    read: int = 0
    processed: int = 0
    repaired: int = 0
    skipped: int = 0
    moved: int = 0
    removed: int = 0
    left: int = 0
    errors: int = 0
    unreachable: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every key was examined on every server without an error, none left misplaced."""
        return self.errors == 0 and self.left == 0 and not self.unreachable and not self.restarted

    def summary(self) -> str:
        """One line: keys scanned, repaired, skipped, errors, elapsed time."""
        text = (
            f"repair: {self.scanned} keys scanned, {self.repaired} repaired, "
            f"{self.skipped} skipped (not CRDTs), {self.errors} errors "
            f"on {self.servers} servers in {self.elapsed:.1f} s"
        )
        if self.segments:
            text += (
                f"; digest tree: {self.segments} segments compared, {self.differing} differed,"
                f" {self.read} keys read"
            )
            if self.rehashed:
                text += f", {self.rehashed} keys given their digest"
        if self.moved or self.removed or self.left:
            text += (
                f"; {self.removed} copies removed from non-owners ({self.moved} keys),"
                f" {self.left} left for the next pass"
            )
        if self.unreachable:
            text += f"; not scanned to the end: {', '.join(self.unreachable)}"
        if self.restarted:
            text += f"; restarted during the pass (run it again): {', '.join(self.restarted)}"
        return text

    def note(self, message: str) -> None:
        """Keep an error message (the first few only)."""
        if len(self.messages) < MAX_ERROR_MESSAGES:
            self.messages.append(" ".join(message.split()))


class _Pacer:
    """Spaces calls evenly at ``rate`` per second, shared by several tasks."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            await trio.lowlevel.checkpoint()
            return
        slot = max(trio.current_time(), self.next)
        self.next = slot + self.interval
        await trio.sleep_until(slot)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return repr(value)


async def _scan_server(
    pool: Pool,
    index: int,
    match: str | bytes,
    count: int,
    report: RepairReport,
    found: Callable[[bytes], Any],
) -> None:
    """SCAN one server to the end, handing each hash key to ``found``."""
    label = pool.servers[index]
    cursor: bytes | str | int = b"0"
    while True:
        reply: Any = None
        for attempt in range(SCAN_ATTEMPTS):
            replies = await pool.execute_on(
                [index], "SCAN", cursor, "MATCH", match, "COUNT", count, "TYPE", "hash"
            )
            reply = replies[0]
            if not isinstance(reply, BaseException):
                break
            if isinstance(reply, ReplyError):
                break
            await trio.sleep(0.05 * 2**attempt)
        if isinstance(reply, BaseException):
            report.unreachable.append(label)
            report.note(f"{label}: SCAN failed: {type(reply).__name__}: {reply}")
            return
        try:
            cursor, keys = reply[0], reply[1]
            batch = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
        except (TypeError, IndexError, KeyError, ValueError):
            report.unreachable.append(label)
            report.note(f"{label}: unexpected SCAN reply {reply!r:.80}")
            return
        for k in batch:
            await found(k)
        if cursor in (b"0", "0", 0):
            return


def _as_indices(name: str, servers: object) -> tuple[int, ...]:
    if isinstance(servers, (str, bytes)) or not isinstance(servers, Iterable):
        raise ConfigurationError(f"{name} must be a sequence of server indices, got {servers!r}")
    return tuple(servers)


def _check_servers(pool: Pool, name: str, servers: Sequence[int] | None) -> None:
    if servers is None:
        return
    if isinstance(servers, (str, bytes)) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(pool) for i in servers
    ):
        raise ConfigurationError(f"{name} must be server indices in 0..{len(pool) - 1}")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
    return value


async def repair_all(
    pool: Pool,
    *,
    match: str | bytes = "*",
    rate: float = DEFAULT_REPAIR_RATE,
    count: int = DEFAULT_SCAN_COUNT,
    concurrency: int = DEFAULT_REPAIR_CONCURRENCY,
    keys: Iterable[str | bytes] | AsyncIterable[str | bytes] | None = None,
    sources: Sequence[int] | None = None,
    targets: Servers | None = None,
    tombstone_grace: float = DEFAULT_TOMBSTONE_GRACE,
    timeout: float | None = None,
    on_progress: Callable[[RepairReport], None] | None = None,
    removal_delay: float | None = None,
    full: bool = False,
) -> RepairReport:
    """Anti-entropy: merge every CRDT key of the servers and write it back.

    By default (no ``keys``, ``match``, ``sources`` or ``targets``) this is a
    *digest-tree walk* (:mod:`trio_redisha.crdt._treewalk`): the servers
    compare the digests of groups of keys, then of single segments, and only
    the keys whose digests differ are read and handed to :func:`repair_key`.
    A converged fleet costs a few kilobytes per server on the wire, whatever
    its size; keys written before digests existed are found by a server-side
    scan and given a digest first. (:attr:`RepairReport.segments`,
    :attr:`RepairReport.read`.)

    With ``full=True``, or any of those narrowing arguments, it is the
    *reading walk*: every source server is walked with ``SCAN ... MATCH match
    TYPE hash`` and each distinct key is handed to :func:`repair_key`, which
    merges the key's state from the sources and writes the result where it
    is behind. Either way a server restarted empty gets every key back, and
    hashes that are not trio-redisha CRDTs are counted as skipped and left
    untouched (the tree walk only sees them if they were indexed).

    With placement (a pool opened with ``replicas=N``, perhaps ``previous=``)
    and no ``targets``, every server of the pool is scanned (new and
    previous), each key is merged from every server into its N owners, and
    the copies on servers that are not owners are removed once every owner
    acknowledged (:attr:`RepairReport.removed`, :attr:`RepairReport.left`).
    With ``previous=`` this completes a migration; without, it hands back the
    copies written to fallbacks, whatever process wrote them. The removals come
    in a second round, ``removal_delay`` after the walk wrote the owners: every
    read that was in flight before the owners held the merge has finished by
    then (its deadline passed), so none misses a copy as it is removed. Each
    key of that round is read and merged again, and a copy is removed only if
    unchanged since that read.

    Example::

        async with trio_redisha.open_pool(*urls) as pool:
            report = await trio_redisha.crdt.repair_all(pool, rate=500)
            print(report.summary())

    Args:
        pool: An open pool over the servers.
        match: SCAN MATCH pattern.
        rate: Keys repaired per second at most (0: no limit).
        count: SCAN COUNT hint.
        concurrency: Keys repaired at once.
        keys: Repair these keys instead of scanning (``match`` is then unused).
        sources: Indices of the servers scanned and read (``None``: all).
            Leaving a server out, the pass purges no tombstone.
        targets: Indices of the servers each key is written to (``None``: the
            sources; with placement, the key's owners, copies elsewhere
            removed), or a function of the key returning them.
        tombstone_grace: Seconds tombstones are kept (as given to the objects).
        timeout: Deadline of each call in seconds (``None``: the pool's).
        on_progress: Called after every key with the report so far.
        removal_delay: With placement, seconds between writing the owners
            and removing the other copies (``None``: the pool's ``timeout``);
            at least the read deadline of the clients.
        full: Read every key on every server (the reading walk) instead of
            comparing digests first.

    Returns:
        The counts; see :class:`RepairReport`.

    Raises:
        ConfigurationError: An argument is out of range; nothing was sent. (Keys
            given as an iterator are checked as they come: a bad one ends
            the walk there, with the keys before it repaired.)
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 0:
        raise ConfigurationError(f"rate must be a number >= 0, got {rate!r}")
    if math.isinf(rate):
        rate = 0.0
    check_grace(tombstone_grace)
    check_timeout(timeout)
    if removal_delay is None:
        removal_delay = pool.timeout
    elif finite_seconds(removal_delay, zero=True) is None:
        raise ConfigurationError(f"removal_delay must be >= 0 seconds, got {removal_delay!r}")
    if isinstance(keys, (str, bytes)):
        raise ConfigurationError(f"keys must be an iterable of keys, not a single key {keys!r}")
    if isinstance(keys, (list, tuple, set, frozenset)):
        for k in keys:
            check_key(k)  # all of them before anything is sent
    elif keys is not None and not isinstance(keys, (Iterable, AsyncIterable)):
        raise ConfigurationError(f"keys must be an iterable of keys, got {type(keys).__name__}")
    if not isinstance(full, bool):
        raise ConfigurationError(f"full must be True or False, got {full!r}")
    count = _positive_int("count", count)
    concurrency = _positive_int("concurrency", concurrency)
    if sources is not None:
        sources = _as_indices("sources", sources)  # a generator is read once, here
    _check_servers(pool, "sources", sources)
    if targets is not None and not callable(targets):
        _check_servers(pool, "targets", targets)
    if not isinstance(match, (str, bytes)) or not match:
        raise ConfigurationError(f"match must be a non-empty str or bytes pattern, got {match!r}")
    if isinstance(match, str):
        try:
            match = match.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError(
                f"match {match!r} is not valid UTF-8 text: {exc.reason}"
            ) from None
    scan = tuple(range(len(pool))) if sources is None else tuple(sources)
    report = RepairReport(servers=len(scan))
    # The digest-tree walk finds the keys to read by comparing digests; it
    # covers every key of every server, so anything narrower reads instead.
    tree = not full and keys is None and match == b"*" and sources is None and targets is None
    walk = TreeWalk()
    # Tree walk, for a distinct count: the keys read that the largest server
    # answered without (not in its count), and the keys refused as not ours,
    # each with whether that server may hold it as ours (then it is counted).
    elsewhere: set[bytes] = set()
    refused: dict[bytes, bool] = {}

    def count_read(key: bytes, snap: Snapshot[Any]) -> None:
        # A server that did not answer may hold the key, counted already.
        if walk.largest in snap.answered and walk.largest not in snap.holders:
            elsewhere.add(key)

    # A server restarted empty during the pass loses what the pass wrote there,
    # and nothing else tells: its run id changes.
    run_ids = await _run_ids(pool, scan, timeout)
    start = trio.current_time()
    stats = pool.stats
    seen: set[bytes] = set()
    pacer = _Pacer(rate)
    send, receive = trio.open_memory_channel[bytes](concurrency * 4)

    hints: dict[bytes, tuple[int, ...]] = {}  # tree walk: servers of each version of a key

    async def hinted(key: bytes, full_from: tuple[int, ...]) -> None:
        hints[key] = full_from
        await found(key)

    async def found(key: bytes) -> None:
        if key.startswith(TREE_PREFIX):
            return  # the digest tree's own keys (see _digest)
        if key not in seen:
            seen.add(key)
            if not tree:
                report.scanned += 1
            await send.send(key)

    async def producer() -> None:
        async with send:
            if tree:
                await walk_tree(pool, hinted, walk, count=count, timeout=timeout)
                report.segments = walk.segments
                report.differing = walk.differing
                report.rehashed = walk.rehashed
                for i in sorted(walk.unreachable):
                    report.unreachable.append(pool.servers[i])
                for m in walk.messages:
                    report.note(m)
            elif keys is None:
                since = pool._hint_generation()
                for index in scan:
                    await _scan_server(pool, index, match, count, report, found)
                if sources is None and targets is None and match == b"*":
                    # As at the end of the tree walk: keys gone from every
                    # server are scanned nowhere, and their hints would stay.
                    await forget_vanished(pool, since, timeout)
            elif isinstance(keys, AsyncIterable):
                async for k in keys:
                    await found(check_key(k))
            else:
                for k in keys:
                    await found(check_key(k))

    # With placement-derived targets the copies elsewhere are removed in a
    # second round over the keys that have some (see removal_delay).
    placed = targets is None and pool.placement is not None
    revisit: list[bytes] = []
    counted: set[bytes] = set()

    def rehashed(servers: int) -> None:  # the reading walk's digests recomputed
        report.rehashed += 1

    async def worker(receive: trio.MemoryReceiveChannel[bytes], final: bool) -> None:
        async with receive:
            async for key in receive:
                await pacer.wait()
                to = targets(key) if callable(targets) else targets
                try:
                    done = await _repair_one(
                        pool,
                        key,
                        tombstone_grace,
                        timeout,
                        sources,
                        to,
                        hold=placed and not final,
                        full_from=() if final else hints.pop(key, ()),
                        on_read=partial(count_read, key) if tree and not final else None,
                        verify=None if tree or final else rehashed,
                    )
                except ForeignValueError:
                    if tree and not final:
                        refused[key] = await _may_hold_ours(pool, walk.largest, key, timeout)
                        if key not in walk.foreign:  # those are counted at the end
                            report.skipped += 1
                    elif not final:
                        report.skipped += 1
                except RedisHAError as exc:
                    report.errors += 1
                    report.note(f"{_text(key)}: {type(exc).__name__}: {exc}")
                else:
                    if tree and not final and not done.changed and not done.pending:
                        # The digests differed but the copies agree (an index
                        # entry lost or stale): recompute them where they are.
                        await rehash_key(pool, key, scan, timeout=timeout)
                    if done.changed and key not in counted:
                        counted.add(key)
                        report.repaired += 1
                        stats.repair_keys_repaired += 1
                    if done.pending or (done.left and not final):
                        revisit.append(key)  # the second round takes them
                    else:
                        if done.removed:
                            report.moved += 1
                            report.removed += len(done.removed)
                        if done.left:
                            report.left += len(done.left)
                            report.note(
                                f"{_text(key)}: copies left on "
                                + ", ".join(pool.servers[i] for i in done.left)
                            )
                if not final:
                    report.read += 1
                    report.processed += 1
                    stats.repair_keys_walked += 1
                if on_progress is not None:
                    on_progress(report)

    # The walk's own failures (a callback's, a bad key's) reach the caller as
    # they are, not wrapped in the nursery's group.
    async with open_owned_nursery() as nursery:
        nursery.start_soon(producer)
        async with receive:
            for _ in range(concurrency):
                nursery.start_soon(worker, receive.clone(), False)
    if tree:
        # Each key once: a key of ours on some server and a foreign hash on
        # another is both in walk.foreign and refused.
        report.skipped += len(walk.foreign)
        # Distinct keys: the largest server's, plus those it did not count.
        uncounted = elsewhere.union(
            (k for k, counted in refused.items() if not counted), walk.foreign - refused.keys()
        )
        report.scanned = walk.indexed + len(uncounted)
    if revisit:
        await trio.sleep(removal_delay)
        send, receive = trio.open_memory_channel[bytes](concurrency * 4)

        async def again() -> None:
            async with send:
                for key in revisit:
                    await send.send(key)

        async with open_owned_nursery() as nursery:
            nursery.start_soon(again)
            async with receive:
                for _ in range(concurrency):
                    nursery.start_soon(worker, receive.clone(), True)
    for i, now in (await _run_ids(pool, scan, timeout)).items():
        before = run_ids.get(i)
        if before is None:
            continue  # down from the start: not scanned, already reported
        if now is None and pool.servers[i] not in report.unreachable:
            report.unreachable.append(pool.servers[i])  # gone by the end: unknown
            report.note(f"{pool.servers[i]}: did not answer at the end of the pass")
        elif now is not None and now != before:
            report.restarted.append(pool.servers[i])
    report.elapsed = trio.current_time() - start
    return report


async def _may_hold_ours(pool: Pool, index: int | None, key: bytes, timeout: float | None) -> bool:
    """Whether server ``index`` may hold ``key`` as a CRDT of ours (one it counts).

    ``False`` only when it answered with no marker or one not ours, or that
    the key is not a hash: a server that did not answer may hold it.
    """
    if index is None:
        return False
    (reply,) = await pool.execute_on([index], "HGET", key, MARKER_FIELD, timeout=timeout)
    if isinstance(reply, BaseException):
        return not is_foreign_reply(reply)  # WRONGTYPE: not a hash
    if isinstance(reply, str):
        reply = reply.encode()
    return reply in MARKERS


async def _run_ids(
    pool: Pool, servers: Sequence[int], timeout: float | None
) -> dict[int, str | None]:
    """Each server's ``run_id`` (``INFO server``): a new one means it restarted."""
    if not servers:
        return {}
    replies = await pool.execute_on(servers, "INFO", "server", timeout=timeout)
    out: dict[int, str | None] = {}
    for i, reply in zip(servers, replies, strict=True):
        text = reply.decode("latin-1") if isinstance(reply, bytes) else reply
        found = None
        if isinstance(text, str):
            for line in text.splitlines():
                if line.startswith("run_id:"):
                    found = line[7:].strip()
                    break
        out[i] = found
    return out
