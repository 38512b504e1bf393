"""The digest-tree walk: which keys anti-entropy must read, found by comparing digests.

:func:`~trio_redisha.crdt.repair_all` hands every key this walk finds to the
same per-key repair as its reading walk; what changes is how the keys are
found. Instead of reading every key on every server, it compares what the
servers say about *groups* of keys and descends only where they disagree
(Riak's TicTac active anti-entropy, over plain Redis):

1. **Old data.** Each server runs :data:`~trio_redisha.crdt._scripts.UNDIGESTED`
   page by page: a server-side ``SCAN`` that answers only the cursor, a count
   and the keys of ours that have no digest (written before digests existed).
   Those are given their digest and tree entry (``REHASH``) on that server, so
   they compare like the rest below. On a fleet without old data this costs
   the cursors on the wire and one pass over the keyspace on each server.
2. **Segments.** Partitions are grouped by their owner set (without placement,
   every server owns every partition: one group). Each server sends one digest
   per ``GROUP`` consecutive partitions of a group, 8 bytes each in one reply
   (:data:`~trio_redisha.crdt._scripts.SEGMENTS`, ``CHUNK`` partitions per
   call so that no call blocks a server long). Before hashing, the script
   drops the index entries of keys that no longer exist (expired or deleted
   on that server only: what no script saw), so the digests compare what the
   servers hold. The owners must agree and every other server must be empty
   there (a non-owner's copy is a fallback's or an old owner's, to be handed
   back or moved).
3. **Descent.** Groups that disagree are compared again ``SUBGROUP`` segments
   a digest, then one segment each; segments that still disagree are swept
   (``SWEEP``: stale entries fixed, the digest again), then each server sends
   a fingerprint of each index entry (8 bytes: ``ENTRIES``) and the names of
   the entries not on every owner are asked for (``NAMES``). Those keys are
   repaired, each read in full only from one server of each version of it
   (the others send their digest: see ``read_key(full_from=...)``).

So a converged fleet of ``K`` keys costs ``PARTITIONS / GROUP`` digests per
server on the wire (2 KiB) plus the scan's cursors, whatever ``K`` (on the
server, one pass over the index and the keyspace); ``d`` differing keys cost
about two full reads each, and some 100 bytes per server for the descent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from ..placement import PARTITIONS
from ._digest import _text_bytes as _text
from ._digest import rehash_key, tree_key, unpack_digests
from ._plan import forget_vanished
from ._scripts import ENTRIES, NAMES, SEGMENTS, SWEEP, UNDIGESTED
from ._storage import ZERO_DIGEST

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = ["CHUNK", "GROUP", "SUBGROUP", "TreeWalk", "walk_tree"]

#: Segments combined into one digest at the walk's first level: 16,384
#: partitions make 256 digests per server, 16 hex digits each.
GROUP: Final = 64
#: Segments per digest at the walk's second level (within a group that differed).
SUBGROUP: Final = 8
#: Partitions per ``SEGMENTS`` call (about 3,000 index entries hashed on the
#: server per call at 100,000 keys: a few milliseconds).
CHUNK: Final = 512
#: Calls of the walk in flight at once (segment calls, segment reads).
PARALLEL: Final = 4


@dataclass
class TreeWalk:
    """What the tree walk compared (folded into :class:`~trio_redisha.crdt.RepairReport`).

    Attributes:
        indexed: The most keys of ours any one server holds (its ``SCAN``).
        largest: The index of that server (``None``: none was scanned).
        segments: Segments compared across the servers (each group digest
            compares all its segments at once).
        differing: Segments that still differed after a sweep (their index
            entries were read).
        rehashed: Keys without a digest (old data) given one.
        foreign: Hashes that are not trio-redisha CRDTs (no marker), on any server.
        unreachable: Indices of servers that did not answer some step.
        messages: Why, one line each.
    """

    indexed: int = 0
    largest: int | None = None
    segments: int = 0
    differing: int = 0
    rehashed: int = 0
    foreign: set[bytes] = field(default_factory=set)
    unreachable: set[int] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)


def _owner_groups(pool: Pool) -> dict[tuple[int, ...], list[int]]:
    """Partitions by owner set (sorted indices); one group of all without placement."""
    placement = pool.placement
    every = tuple(range(len(pool)))
    if placement is None:
        return {every: list(range(PARTITIONS))}
    groups: dict[tuple[int, ...], list[int]] = {}
    for p in range(PARTITIONS):
        groups.setdefault(tuple(sorted(placement.owners_of_partition(p))), []).append(p)
    return groups


def _agree(owners: Sequence[int], digests: dict[int, bytes]) -> bool:
    """Whether the owners that answered agree and every other server is empty."""
    seen = {d for i, d in digests.items() if i in owners}
    return len(seen) <= 1 and all(d == ZERO_DIGEST for i, d in digests.items() if i not in owners)


async def _undigested(
    pool: Pool,
    index: int,
    count: int,
    walk: TreeWalk,
    timeout: float | None,
) -> None:
    """Page through one server's keyspace, rehashing the keys of ours without a digest."""
    cursor: bytes = b"0"
    indexed = 0
    while True:
        (reply,) = await pool.execute_script(
            UNDIGESTED, (), (cursor, count), timeout=timeout, servers=[index]
        )
        why: object = f"{type(reply).__name__}: {reply}"
        if not isinstance(reply, BaseException):
            try:
                nxt, n, keys, others = reply
                cursor = _text(nxt) or b"0"
                indexed += int(n)
                found = [_text(k) for k in keys]
                walk.foreign.update(k for k in map(_text, others) if k is not None)
            except (TypeError, ValueError):
                why = f"unexpected reply {reply!r:.60}"
            else:
                why = None
        if why is not None:
            walk.unreachable.add(index)
            walk.messages.append(f"{pool.servers[index]}: SCAN failed: {why}")
            return
        for k in found:
            if k is not None:
                (r,) = await rehash_key(pool, k, [index], timeout=timeout)
                if r is not None and not isinstance(r, BaseException):
                    walk.rehashed += 1
        if cursor == b"0":
            if walk.largest is None or indexed > walk.indexed:
                walk.indexed, walk.largest = indexed, index
            return


def _fail(pool: Pool, walk: TreeWalk, i: int, what: str, reply: Any) -> None:
    walk.unreachable.add(i)
    if len(walk.messages) < 20:
        why = (
            f"{type(reply).__name__}: {reply}"
            if isinstance(reply, BaseException)
            else f"unexpected reply {reply!r:.60}"
        )
        walk.messages.append(f"{pool.servers[i]}: {what} failed: {why}")


async def _digests(
    pool: Pool,
    servers: Sequence[int],
    groups: Sequence[Sequence[int]],
    walk: TreeWalk,
    timeout: float | None,
) -> dict[int, list[bytes]]:
    """Each answering server's digest of each group of segments (``SEGMENTS``)."""
    keys = [tree_key(p) for g in groups for p in g]
    sizes = [len(g) for g in groups]
    replies = await pool.execute_script(
        SEGMENTS, keys, sizes, timeout=timeout, servers=servers, decode=False
    )
    out: dict[int, list[bytes]] = {}
    for i, r in zip(servers, replies, strict=True):
        got = unpack_digests(r, len(groups))
        if got is None:
            _fail(pool, walk, i, "segment digests", r)
        else:
            out[i] = got
    return out


async def _differing(
    pool: Pool,
    owners: Sequence[int],
    servers: Sequence[int],
    partition: int,
    walk: TreeWalk,
    timeout: float | None,
) -> dict[bytes, tuple[int, ...]]:
    """Keys of one segment indexed differently on the owners, or indexed on a non-owner.

    Each server sends its entries' fingerprints (``ENTRIES``); the names of the
    entries that are not on every owner are asked for (``NAMES``) from the
    servers holding them.

    Returns:
        Each such key, with one server of each different version of it, to
        be read in full (the others hold one of those, or nothing).
    """
    tree = tree_key(partition)
    replies = await pool.execute_script(
        ENTRIES, [tree], [], timeout=timeout, servers=servers, decode=False
    )
    prints: dict[int, set[bytes]] = {}
    for i, r in zip(servers, replies, strict=True):
        if isinstance(r, bytes) and len(r) % 8 == 0:
            prints[i] = {r[j : j + 8] for j in range(0, len(r), 8)}
        else:
            _fail(pool, walk, i, "segment entries", r)
    on_owners = [prints[i] for i in owners if i in prints]
    common: set[bytes] = set.intersection(*on_owners) if on_owners else set()
    odd = {i: f - common if i in owners else f for i, f in prints.items()}
    versions: dict[bytes, dict[bytes, list[int]]] = {}  # key -> fingerprint -> servers

    async def names(i: int) -> None:
        want = sorted(odd[i])
        (r,) = await pool.execute_script(
            NAMES, [tree], [b"".join(want)], timeout=timeout, servers=[i], decode=False
        )
        if not isinstance(r, list) or len(r) % 2:
            _fail(pool, walk, i, "segment names", r)
            return
        for k, f in zip(r[0::2], r[1::2], strict=True):
            if isinstance(k, bytes) and isinstance(f, bytes):
                versions.setdefault(k, {}).setdefault(f, []).append(i)

    async with trio.open_nursery() as nursery:
        for i in odd:
            if odd[i]:
                nursery.start_soon(names, i)
    state = pool._servers

    def fastest(held: Sequence[int]) -> int:
        return min(held, key=lambda i: state[i].latency)

    out: dict[bytes, tuple[int, ...]] = {}
    for k, by_print in sorted(versions.items()):
        read = {fastest(held) for held in by_print.values()}
        named = {i for held in by_print.values() for i in held}
        silent = [i for i in owners if i in prints and i not in named]
        if silent:  # they hold the version every owner holds, or nothing
            read.add(fastest(silent))
        out[k] = tuple(sorted(read))
    return out


async def walk_tree(
    pool: Pool,
    found: Callable[[bytes, tuple[int, ...]], Awaitable[None]],
    walk: TreeWalk,
    *,
    count: int,
    timeout: float | None,
) -> None:
    """Compare the servers' digest trees and hand each key that differs to ``found``.

    Last, the pool's hints whose fallback holds no copy any more are forgotten
    (:func:`~._plan.forget_vanished`).

    Args:
        pool: The pool (every server is walked; with placement, partitions
            are compared among their owners, other servers must be empty).
        found: Called once per key to repair, with one server of each
            different version of it (see :func:`_differing`).
        walk: Counts and servers that did not answer, filled in.
        count: ``SCAN COUNT`` hint of the old-data scan.
        timeout: Deadline of each call in seconds.
    """
    # Hints added from here on stand for writes the walk may not have seen.
    since = pool._hint_generation()
    servers = tuple(range(len(pool)))
    async with trio.open_nursery() as nursery:
        for i in servers:
            nursery.start_soon(_undigested, pool, i, count, walk, timeout)
    live = tuple(i for i in servers if i not in walk.unreachable)
    if not live:
        return
    limit = trio.CapacityLimiter(PARALLEL)

    async def segment(owners: tuple[int, ...], p: int, asked: tuple[int, ...]) -> None:
        async with limit:
            replies = await pool.execute_script(
                SWEEP, [tree_key(p)], [], timeout=timeout, servers=asked, decode=False
            )
            swept: dict[int, bytes] = {}
            for i, r in zip(asked, replies, strict=True):
                if isinstance(r, bytes) and len(r) == 16:
                    swept[i] = r
                else:
                    _fail(pool, walk, i, "segment sweep", r)
            if _agree(owners, swept):
                return
            walk.differing += 1
            keys = await _differing(pool, owners, tuple(swept), p, walk, timeout)
        for k, full_from in keys.items():
            await found(k, full_from)

    async def descend(
        owners: tuple[int, ...], asked: tuple[int, ...], groups: list[list[int]]
    ) -> tuple[list[list[int]], tuple[int, ...]]:
        """The groups on which the servers disagree, and the servers that answered."""
        if not groups or not asked:
            return [], asked
        async with limit:
            got = await _digests(pool, asked, groups, walk, timeout)
        bad = [
            g for n, g in enumerate(groups) if not _agree(owners, {i: d[n] for i, d in got.items()})
        ]
        return bad, tuple(got)

    async def chunk(owners: tuple[int, ...], parts: list[int]) -> None:
        bad, asked = await descend(
            owners, live, [parts[j : j + GROUP] for j in range(0, len(parts), GROUP)]
        )
        if asked:
            walk.segments += len(parts)
        bad, asked = await descend(
            owners, asked, [g[j : j + SUBGROUP] for g in bad for j in range(0, len(g), SUBGROUP)]
        )
        bad, asked = await descend(owners, asked, [[p] for g in bad for p in g])
        async with trio.open_nursery() as nursery:
            for (p,) in bad:
                nursery.start_soon(segment, owners, p, asked)

    async with trio.open_nursery() as nursery:
        for owners, parts in _owner_groups(pool).items():
            for j in range(0, len(parts), CHUNK):
                nursery.start_soon(chunk, owners, parts[j : j + CHUNK])
    # A key gone from every server (expired, say) differs nowhere, so it is never
    # found above: its hints, with nothing behind them, go here.
    await forget_vanished(pool, since, timeout)
