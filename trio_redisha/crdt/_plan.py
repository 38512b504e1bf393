"""Repair planning: what to write where so that the replicas read reach their merge.

A read (:mod:`._read`) gives each replica's state and their merge; a plan
compares them *exactly* (:attr:`CRDTType.needs`) and lists the servers behind
with the union of the fields they lack, and the servers holding tombstones
past their grace. Carrying a plan out is one merge script per server behind
(the script ignores what a server already has), then one purge script.
Planning is a pure function, so it is tested without servers; read repair and
the anti-entropy walker both use it, so they cannot disagree.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import ForeignValueError, ReplyError
from ..replies import Replies
from ._scripts import FOREIGN_CODE, PURGE
from ._state import Mergeable
from ._storage import CRDTType, Fields

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = [
    "RepairPlan",
    "carry_out",
    "flatten",
    "foreign_error",
    "is_foreign_reply",
    "longest_ttl",
    "now_us",
    "plan_repair",
    "run_repair",
]

S = TypeVar("S", bound=Mergeable)


def flatten(fields: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """``[(f, v), ...]`` to ``[f, v, ...]``, as the merge scripts take them."""
    out: list[bytes] = []
    for f, v in fields:
        out.append(f)
        out.append(v)
    return out


def now_us() -> int:
    """The wall clock in microseconds (what tombstone ages are measured against)."""
    return int(time.time() * 1_000_000)


def foreign_error(key: str | bytes, reply: ReplyError) -> ForeignValueError:
    """Turn a WRONGTYPE or foreign-marker error reply into :class:`ForeignValueError`."""
    why = reply.message
    if reply.code == FOREIGN_CODE:
        why = why[len(FOREIGN_CODE) :].strip()
    return ForeignValueError(
        f"key {key!r} is not a trio-redisha value of the expected type ({why}); left untouched",
        key=key,
    )


def is_foreign_reply(reply: object) -> bool:
    """Whether a reply entry says the key holds something that is not ours."""
    return isinstance(reply, ReplyError) and reply.code in (FOREIGN_CODE, "WRONGTYPE")


def raise_foreign(key: str | bytes, replies: Replies) -> None:
    """Raise :class:`ForeignValueError` if any entry says the key is not ours."""
    for r in replies:
        if is_foreign_reply(r):
            raise foreign_error(key, r)


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """The writes that bring the replicas that answered a read up to the merged state.

    Attributes:
        behind: Indices of the servers missing something.
        fields: The fields to send them (the union of what each one lacks;
            the merge script ignores what a server already has).
        purge: Indices of the servers holding tombstones past their grace.
        tombstones: Those tombstones, with their exact stored value.
    """

    behind: tuple[int, ...] = ()
    fields: Fields | None = None
    purge: tuple[int, ...] = ()
    tombstones: Fields | None = None

    def __bool__(self) -> bool:
        return bool(self.behind or self.purge)


def plan_repair(
    kind: CRDTType[S],
    states: Sequence[tuple[int, S]],
    merged: S,
    purge_before: int,
    *,
    complete: bool = True,
    targets: Collection[int] | None = None,
) -> RepairPlan:
    """Compare each replica's state with the merged one; say what to write where.

    Args:
        kind: The stored type.
        states: ``(server index, state)`` of each server that answered.
        merged: Their merge.
        purge_before: Tombstones older than this (microseconds) may be purged.
        complete: Whether every server that may hold a copy answered.
            Tombstones are purged only then: a server that did not answer may
            still hold the value the tombstone deletes, and would bring it back.
        targets: The servers that may be written (``None``: every one that
            answered). The others were only read from.

    Returns:
        An empty (false) plan when every replica that answered is up to date.
    """
    if targets is not None:
        states = [(i, s) for i, s in states if i in targets]
    behind: list[int] = []
    wanted: dict[bytes, bytes] = {}
    for i, state in states:
        need = kind.needs(state, merged, purge_before)
        if need:
            behind.append(i)
            wanted.update(need)
    expired = kind.expired(merged, purge_before) if complete else []
    purge: list[int] = []
    if expired:
        exp = dict(expired)
        for i, state in states:
            mine = kind.fields(state)
            if any(exp.get(f) == v for f, v in mine):
                purge.append(i)
    return RepairPlan(
        tuple(behind),
        sorted(wanted.items()) if behind else None,
        tuple(purge),
        expired if purge else None,
    )


async def run_repair(
    pool: Pool,
    kind: CRDTType[Any],
    key: str | bytes,
    plan: RepairPlan,
    pttl_ms: int,
    timeout: float | None,
) -> bool:
    """Carry out a :class:`RepairPlan` with a known expiry; return whether any server changed.

    Failures of single servers are ignored (the next read or walk retries);
    a foreign value met meanwhile raises :class:`ForeignValueError`. The
    tombstones are purged only if every server behind was repaired: else one
    still holding an old value would bring it back.
    """
    changed = False
    repaired = True
    if plan.behind and plan.fields:
        replies = await pool.execute_script(
            kind.script,
            [key],
            [kind.marker, pttl_ms, *flatten(plan.fields)],
            timeout=timeout,
            servers=plan.behind,
        )
        raise_foreign(key, replies)
        changed = replies.ok_count > 0
        repaired = replies.ok_count == len(replies)
    if repaired and plan.purge and plan.tombstones:
        replies = await pool.execute_script(
            PURGE,
            [key],
            [kind.marker, *flatten(plan.tombstones)],
            timeout=timeout,
            servers=plan.purge,
        )
        raise_foreign(key, replies)
        changed = changed or any(isinstance(r, int) and r > 0 for r in replies)
    return changed


async def carry_out(
    pool: Pool,
    kind: CRDTType[Any],
    key: str | bytes,
    plan: RepairPlan,
    holders: Sequence[int],
    timeout: float | None,
) -> bool:
    """Carry out a plan, giving the copies written the holders' remaining expiry.

    What read repair and the walker both run after planning: the expiry is
    read from the servers that held the key (:func:`longest_ttl`), and if none
    of them still has it (it expired since the read), nothing is written.

    Returns:
        Whether any server was written to.
    """
    pttl = 0
    if plan.behind and plan.fields:
        found = await longest_ttl(pool, key, holders, timeout) if holders else None
        if found is None:
            return False  # expired everywhere since the read: writing would revive it
        pttl = found
    return await run_repair(pool, kind, key, plan, pttl, timeout)


async def longest_ttl(
    pool: Pool, key: str | bytes, holders: Sequence[int], timeout: float | None
) -> int | None:
    """The expiry (ms) a repair should give: the longest remaining one among the holders.

    A repair makes a replica look like the others, expiry included (the longest
    TTL wins, as in Redis Active-Active); it never gives the key a fresh life,
    or a read that lands just as the key expires on one server and not yet on
    another would revive it for a whole TTL.

    Args:
        pool: The pool.
        key: The key.
        holders: Indices of the servers whose read found the key.
        timeout: Deadline in seconds (``None``: the pool's).

    Returns:
        The longest remaining expiry in milliseconds; ``0`` (leave expiry
        alone) if a holder keeps the key forever; ``None`` if no holder still
        has the key (it expired since the read) or none answered: then
        nothing must be written, lest the key come back without an expiry.
    """
    replies = await pool.execute_on(holders, "PTTL", key, timeout=timeout)
    ttls = [r for r in replies if isinstance(r, int) and not isinstance(r, bool) and r != -2]
    if any(t < 0 for t in ttls):  # -1: that holder keeps it forever
        return 0
    # PTTL answers 0 for a key with less than a millisecond left; 0 would mean
    # "leave the expiry alone" to the script and the repaired copy would never
    # expire, so round it up.
    return max(1, max(ttls)) if ttls else None
