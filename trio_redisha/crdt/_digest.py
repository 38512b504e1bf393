"""Digests of CRDT keys and the per-server digest tree: what anti-entropy compares.

Each CRDT hash carries the digest of its own stored state
(:data:`~trio_redisha.crdt._storage.DIGEST_FIELD`, kept by the write scripts),
so servers can tell whether they agree on a key by exchanging 16 hex digits
instead of the whole state (:func:`read_digests`).

Above the keys, each server keeps a digest tree with one segment per placement
partition (:data:`~trio_redisha.placement.PARTITIONS`, Redis Cluster's hash
slots): the hash ``__redisha__:tree:{<tag>}``, hash-tagged into that partition
so that it shares the owners of every key it indexes and can be passed to a
write script alongside it (:func:`script_keys`). Its field ``k<key>`` holds
each key's digest, set by the write scripts in the same atomic step as the
key. The *segment digest* is the XOR of a hash of each entry's key and digest
(:func:`~trio_redisha.crdt._storage.entry_digest`: the key is mixed in so that
keys holding the same state do not cancel out); it is computed on the server
when compared (:data:`~trio_redisha.crdt._scripts.SEGMENTS`), not kept up to
date by every write, which then costs one ``HSET`` on the tree instead of a
read, a hash and a write. (A walk pays one SHA-1 per indexed key, on the
server, and sends one digest per group of segments.)
One segment per partition, rather than one per group of partitions,
because a script's keys must share their owners (with placement, a partition's
owners are its own) and because whole partitions are what placement moves.

What no script sees (a key expiring, a ``DEL`` by hand, a server
restarted empty or from an old snapshot) is caught up with in two ways:

* lazily: one write in four of those that set an expiry (chosen by two
  bits of the new digest, so that replicas choose alike) probes 12 random
  entries of its segment and drops those whose key no longer exists: three
  probes per such write on average. If every key that expires was written
  with its expiry at least once, dead entries appear at most once per such
  write and are found at three times the rate of their share of the segment,
  so in a segment they settle at no more than half its live ones plus the
  few written since its last probing write: across the index, half the live
  entries plus a few per segment, whatever the churn: nothing grows without
  bound. (Keys without an expiry only go by hand, and the sweep below finds
  those.)
* by the walker (:mod:`trio_redisha.crdt._treewalk`): the segment digests it
  compares (:data:`~trio_redisha.crdt._scripts.SEGMENTS`) are computed after
  dropping the entries of keys that no longer exist, and
  :data:`~trio_redisha.crdt._scripts.SWEEP` (:func:`sweep_segment`) re-checks
  every entry of a segment that differs, so a walk compares digests of what
  the servers hold now.

A walker compares segment digests of the servers that should agree, a group of
segments at a time (:func:`differing_segments`), descends only into the
segments that differ, and reads only the keys whose digests differ there
(:func:`differing_keys`). A key without a digest (written before digests
existed) is "unknown", which counts as differing; :func:`rehash_key` computes
its digest and tree entry.
"""

from __future__ import annotations

import binascii
import functools
import itertools
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from ..exceptions import ConfigurationError, ProtocolError
from ..placement import PARTITIONS, key_partition
from ..replies import Replies
from ._scripts import REHASH, SEGMENTS, SWEEP
from ._storage import DIGEST_FIELD, MARKER_FIELD, ZERO_DIGEST, check_key, hash_fields

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = [
    "ABSENT",
    "DEFAULT_GROUP",
    "TREE_PREFIX",
    "differing_keys",
    "differing_segments",
    "digest_of_reply",
    "digests_agree",
    "read_digests",
    "read_full_and_digests",
    "rehash_key",
    "script_keys",
    "segment_digests",
    "segment_keys",
    "sweep_segment",
    "tree_key",
    "unpack_digests",
]

#: Prefix of the digest tree's keys (a walker skips them).
TREE_PREFIX: Final = b"__redisha__:t"
#: The digest :func:`read_digests` reports for a server that holds no such key.
ABSENT: Final = b""
#: Segments combined into one digest by :func:`differing_segments` at its first level.
DEFAULT_GROUP: Final = 64

_tree_enabled = True  # only the write-cost benchmark turns it off


@functools.cache
def _tag_table() -> tuple[bytes, ...]:
    """A short hash tag for each partition: ``key_partition(b"{" + tag + b"}") == p``.

    Built once, on first use, and published whole: threads that each run a
    pool and race to the first use each get a complete table (a list filled
    in place gave the second thread twice the entries, or half of them).
    """
    alphabet = (string.digits + string.ascii_letters).encode()
    table: list[bytes | None] = [None] * PARTITIONS
    left = PARTITIONS
    for n in (1, 2, 3, 4):
        for chars in itertools.product(alphabet, repeat=n):
            tag = bytes(chars)
            p = binascii.crc_hqx(tag, 0) % PARTITIONS
            if table[p] is None:
                table[p] = tag
                left -= 1
        if not left:
            break
    tags = tuple(t for t in table if t is not None)
    assert len(tags) == PARTITIONS  # 4 characters of 62 reach every partition
    return tags


def tree_key(partition: int) -> bytes:
    """The digest tree key of one segment (partition).

    Raises:
        ConfigurationError: ``partition`` is not in ``0..PARTITIONS - 1``.
    """
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise ConfigurationError(f"partition must be an int, got {partition!r}")
    if not 0 <= partition < PARTITIONS:
        raise ConfigurationError(f"partition must be in 0..{PARTITIONS - 1}, got {partition}")
    return b"__redisha__:tree:{" + _tag_table()[partition] + b"}"


def script_keys(key: str | bytes) -> list[str | bytes]:
    """``KEYS`` for a write script on ``key``: the key, then its segment's tree key.

    The tree key shares the key's partition (so, with placement, its owners).
    """
    if not _tree_enabled:
        return [key]
    return [key, tree_key(key_partition(check_key(key)))]


def _text_bytes(x: Any) -> bytes | None:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    return None


def _check_servers(pool: Pool, servers: Sequence[int]) -> tuple[int, ...]:
    out = tuple(servers)
    if not out or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(pool) for i in out
    ):
        raise ConfigurationError(f"servers must be indices in 0..{len(pool) - 1}, got {servers!r}")
    return out


async def read_digests(
    pool: Pool, key: str | bytes, servers: Sequence[int], *, timeout: float | None = None
) -> dict[int, bytes | None]:
    """The stored digest of ``key`` on each of ``servers``: one ``HMGET`` each.

    Returns:
        Server index to its digest (16 hex digits); :data:`ABSENT` if it holds
        no such key; ``None`` if it is unknown: the server did not answer, or
        holds the key without a digest (written before digests existed).
        Foreign values are not judged here (a full read does that).
    """
    asked = _check_servers(pool, servers)
    replies = await pool.execute_on(
        asked, "HMGET", check_key(key), DIGEST_FIELD, MARKER_FIELD, timeout=timeout
    )
    out: dict[int, bytes | None] = {}
    for i, r in zip(asked, replies, strict=True):
        if isinstance(r, list) and len(r) == 2:
            digest, marker = _text_bytes(r[0]), _text_bytes(r[1])
            out[i] = ABSENT if marker is None else digest
        else:
            out[i] = None
    return out


async def read_full_and_digests(
    pool: Pool,
    key: str | bytes,
    full: int,
    others: Sequence[int],
    *,
    timeout: float | None = None,
) -> tuple[Any, dict[int, bytes | None]]:
    """The read hook for digest reads: ``HGETALL`` from one server, digests from the others.

    Both go out at once. The caller compares each other server's digest with
    the full copy's (:func:`digest_of_reply`): the servers that agree need no
    full read, no merge and no repair; the others (a different or unknown
    digest, no answer) are read in full and merged as today.

    Args:
        pool: The pool.
        key: The key.
        full: The server read in full (the fastest, say).
        others: The servers asked for their digest only.
        timeout: Deadline in seconds (``None``: the pool's).

    Returns:
        ``(the full server's HGETALL reply or error, digests of the others)``
        (see :func:`read_digests`).
    """
    (i,) = _check_servers(pool, [full])
    rest = tuple(j for j in others if j != i)
    box: dict[str, Any] = {}

    async def whole() -> None:
        box["full"] = (await pool.execute_on([i], "HGETALL", check_key(key), timeout=timeout))[0]

    async def digests() -> None:
        box["digests"] = await read_digests(pool, key, rest, timeout=timeout) if rest else {}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(whole)
        nursery.start_soon(digests)
    return box["full"], box["digests"]


def _fields(reply: Any) -> dict[bytes, bytes] | None:
    """An ``HGETALL`` reply's fields; ``None`` for an error or what is not a hash."""
    if isinstance(reply, BaseException):
        return None
    try:
        return hash_fields(reply)
    except ProtocolError:
        return None


def digest_of_reply(reply: Any) -> bytes | None:
    """The digest a full ``HGETALL`` reply carries: :data:`ABSENT` for no key,
    ``None`` if unknown (an error, not a hash, or a hash without a digest)."""
    fields = _fields(reply)
    if fields is None:
        return None
    if not fields:
        return ABSENT
    return fields.get(DIGEST_FIELD)


def digests_agree(digests: Mapping[int, bytes | None]) -> bool:
    """Whether every digest is known and they are all equal (then no full read is needed)."""
    values = set(digests.values())
    return len(values) == 1 and None not in values


async def segment_digests(
    pool: Pool,
    servers: Sequence[int],
    groups: Sequence[Sequence[int]],
    *,
    timeout: float | None = None,
) -> dict[int, list[bytes]]:
    """Each server's digest of each group of segments: one script call per server.

    Args:
        pool: The pool.
        servers: Indices of the servers to read.
        groups: Groups of partitions; a group's digest is the XOR of its
            segments' digests (a group of one is one segment).
        timeout: Deadline in seconds (``None``: the pool's).

    Returns:
        Server index to its group digests, in the order of ``groups``, for the
        servers that answered.
    """
    asked = _check_servers(pool, servers)
    keys = [tree_key(p) for g in groups for p in g]
    sizes = [len(g) for g in groups]
    if not keys:
        return {i: [ZERO_DIGEST] * len(sizes) for i in asked}
    replies = await pool.execute_script(
        SEGMENTS, keys, sizes, timeout=timeout, servers=asked, decode=False
    )
    out: dict[int, list[bytes]] = {}
    for i, r in zip(asked, replies, strict=True):
        got = unpack_digests(r, len(sizes))
        if got is not None:
            out[i] = got
    return out


def unpack_digests(reply: Any, n: int) -> list[bytes] | None:
    """The ``n`` digests (16 hex digits each) packed by ``SEGMENTS``, or ``None``."""
    packed = _text_bytes(reply)
    if packed is None or len(packed) != 8 * n:
        return None
    return [packed[j : j + 8].hex().encode() for j in range(0, len(packed), 8)]


async def differing_segments(
    pool: Pool,
    servers: Sequence[int],
    partitions: Sequence[int] | None = None,
    *,
    group: int = DEFAULT_GROUP,
    timeout: float | None = None,
) -> tuple[list[int], tuple[int, ...]]:
    """The segments on which ``servers`` do not all agree, in two rounds.

    First one digest per ``group`` consecutive partitions from each server,
    then, within the groups that differ only, one per partition.

    Args:
        pool: The pool.
        servers: Servers that should agree on ``partitions``.
        partitions: The partitions to compare (``None``: all).
        group: Partitions per first-round digest.
        timeout: Deadline of each call in seconds.

    Returns:
        ``(differing partitions, servers that answered both rounds)``. With
        fewer than two servers answering nothing can be compared: every
        partition is returned.
    """
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ConfigurationError(f"group must be an int >= 1, got {group!r}")
    parts = list(range(PARTITIONS)) if partitions is None else list(partitions)
    for p in parts:
        tree_key(p)  # checks it
    groups = [parts[i : i + group] for i in range(0, len(parts), group)]
    first = await segment_digests(pool, servers, groups, timeout=timeout)
    if len(first) < 2:
        return parts, tuple(first)
    suspects = [
        p for n, g in enumerate(groups) if len({d[n] for d in first.values()}) > 1 for p in g
    ]
    if not suspects or group == 1:
        return suspects, tuple(first)
    second = await segment_digests(pool, tuple(first), [[p] for p in suspects], timeout=timeout)
    if len(second) < 2:
        return suspects, tuple(second)
    return [p for n, p in enumerate(suspects) if len({d[n] for d in second.values()}) > 1], tuple(
        second
    )


async def segment_keys(
    pool: Pool, server: int, partition: int, *, timeout: float | None = None
) -> dict[bytes, bytes] | None:
    """The keys one server indexes in one segment, with their digests.

    Returns:
        Key to digest; ``None`` if the server did not answer.
    """
    (i,) = _check_servers(pool, [server])
    (reply,) = await pool.execute_on([i], "HGETALL", tree_key(partition), timeout=timeout)
    fields = _fields(reply)
    if fields is None:
        return None
    return {k[1:]: v for k, v in fields.items() if k[:1] == b"k"}


async def differing_keys(
    pool: Pool,
    servers: Sequence[int],
    partition: int,
    *,
    timeout: float | None = None,
) -> tuple[list[bytes], tuple[int, ...]]:
    """The keys of one segment whose digests are not equal on all ``servers``.

    A key indexed on some servers only differs. Servers that do not answer are
    left out of the comparison.

    Returns:
        ``(keys, servers that answered)``, keys sorted.
    """
    asked = _check_servers(pool, servers)
    found: dict[int, dict[bytes, bytes]] = {}

    async def one(i: int) -> None:
        got = await segment_keys(pool, i, partition, timeout=timeout)
        if got is not None:
            found[i] = got

    async with trio.open_nursery() as nursery:
        for i in asked:
            nursery.start_soon(one, i)
    every = set().union(*found.values()) if found else set()
    out = sorted(k for k in every if len({f.get(k) for f in found.values()}) > 1)
    return out, tuple(i for i in asked if i in found)


async def sweep_segment(
    pool: Pool, servers: Sequence[int], partition: int, *, timeout: float | None = None
) -> Replies:
    """Run the index cleanup of one segment on ``servers`` (see :data:`SWEEP`).

    Returns:
        Each server's segment digest after the sweep, or its error.
    """
    asked = _check_servers(pool, servers)
    return await pool.execute_script(
        SWEEP, [tree_key(partition)], [], timeout=timeout, servers=asked
    )


async def rehash_key(
    pool: Pool, key: str | bytes, servers: Sequence[int], *, timeout: float | None = None
) -> Replies:
    """Recompute the digest and tree entry of ``key`` on ``servers`` (see :data:`REHASH`).

    For data written before digests existed: afterwards its digest compares
    like any other.

    Returns:
        Each server's digest of the key (``None``: absent or not ours), or its error.
    """
    asked = _check_servers(pool, servers)
    keys: list[Any] = [check_key(key), tree_key(key_partition(check_key(key)))]
    return await pool.execute_script(REHASH, keys, [], timeout=timeout, servers=asked)
