"""Anti-entropy for one key: find its type from the stored data, merge, write back.

This is what a repair walker calls for each hash it finds with ``SCAN``; it
needs no object and no codec, only what the servers hold::

    async for key in scan_hashes(pool):          # e.g. the CLI's ``repair`` command
        if await trio_redisha.crdt.repair_key(pool, key):
            repaired += 1

Unlike read repair, which is rate limited and runs in the background, this
waits for its writes, so one walk over every key refills a server that came
back empty (as Roshi's ``roshi-walker -once`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ForeignValueError
from ._base import (
    DEFAULT_TOMBSTONE_GRACE,
    foreign_error,
    is_foreign_reply,
    longest_ttl,
    now_us,
    plan_repair,
    run_repair,
)
from ._state import LWWState, merge_all, observe_all
from ._storage import MARKER_FIELD, REGISTRY, CRDTType, hash_fields, marker_error

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = ["repair_key"]


async def repair_key(
    pool: Pool,
    key: str | bytes,
    *,
    tombstone_grace: float = DEFAULT_TOMBSTONE_GRACE,
    timeout: float | None = None,
) -> bool:
    """Bring every server that answers up to the merged state of ``key``.

    The type is read from the marker field of the stored hash (see
    :func:`~trio_redisha.crdt.detect_type`). Servers that are behind, or
    answered without the key, get the fields they lack; tombstones older than
    ``tombstone_grace`` are purged, if every server of the pool answered and
    was brought up to date. Expiry: if every server holding the key
    has one, the longest remaining one is given to the servers written (the
    longest TTL wins, as in Redis Active-Active); otherwise it is left alone.
    If the key expired on every holder since it was read, nothing is written
    (it would come back without an expiry).

    Args:
        pool: The pool.
        key: The key to repair.
        tombstone_grace: Seconds tombstones are kept (as given to the objects).
        timeout: Deadline of each call in seconds (``None``: the pool's).

    Returns:
        Whether any server was written to: ``False`` when the key is absent
        everywhere or the servers that answered already agree.

    Raises:
        ForeignValueError: The key is not a trio-redisha CRDT (a plain value,
            a hash without the marker, an unknown type or format version, or
            different types on different servers). Nothing is written.
        QuorumError: No server answered.
    """
    replies = await pool.execute("HGETALL", key, timeout=timeout, decode=False)
    answered: list[tuple[int, dict[bytes, bytes]]] = []
    for i, r in enumerate(replies):
        if is_foreign_reply(r):
            raise foreign_error(key, r)
        if not isinstance(r, BaseException):
            answered.append((i, hash_fields(r)))
    replies.check_quorum(1)
    holders = [(i, fields) for i, fields in answered if fields]
    if not holders:
        return False
    markers = {fields.get(MARKER_FIELD) for _, fields in holders}
    if len(markers) != 1:
        shown = ", ".join(sorted(repr(m) for m in markers))
        raise ForeignValueError(
            f"key {key!r} holds different types on different servers ({shown}); left untouched",
            key=key,
        )
    marker = markers.pop()
    kind: CRDTType[Any] | None = None if marker is None else REGISTRY.get(marker)
    if kind is None:
        raise marker_error(key, marker, "a trio-redisha CRDT this version knows")
    states = [(i, kind.parse(fields)) for i, fields in answered]
    merged = merge_all((s for _, s in states), kind.empty)
    if isinstance(merged, LWWState):
        observe_all(pool.clock, merged)
    plan = plan_repair(
        kind,
        states,
        merged,
        now_us() - int(tombstone_grace * 1_000_000),
        complete=len(states) == len(pool),
    )
    if not plan:
        return False
    pttl = await longest_ttl(pool, key, [i for i, _ in holders], timeout)
    if pttl is None:
        return False  # expired everywhere since the read: writing would revive it forever
    return await run_repair(pool, kind, key, plan, pttl, timeout)
