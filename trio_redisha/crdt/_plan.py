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

import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import trio

from ..exceptions import ForeignValueError, ProtocolError, ReplyError
from ..placement import key_partition
from ..replies import Replies
from ..scripts import Script
from . import _digest
from ._digest import script_keys, tree_key
from ._scripts import FOREIGN_CODE, PURGE
from ._state import Mergeable
from ._storage import MARKER_FIELD, CRDTType, Fields, check_key, hash_fields, script_argv

if TYPE_CHECKING:
    from ..pool import Pool
    from ._read import Snapshot

__all__ = [
    "RepairPlan",
    "carry_out",
    "flatten",
    "foreign_error",
    "forget_unheld",
    "forget_vanished",
    "is_foreign_reply",
    "longest_ttl",
    "now_us",
    "plan_repair",
    "remove_copies",
    "run_repair",
    "settle",
    "unheld_hints",
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


def is_foreign_reply(reply: object) -> TypeGuard[ReplyError]:
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
            answered). The others were only read from; while one of them
            holds a copy of the key, no tombstone is purged.

    Returns:
        An empty (false) plan when every replica that answered is up to date.
    """
    read_only: list[S] = []
    if targets is not None:
        read_only = [s for i, s in states if i not in targets]
        states = [(i, s) for i, s in states if i in targets]
    behind: list[int] = []
    wanted: dict[bytes, bytes] = {}
    for i, state in states:
        need = kind.needs(state, merged, purge_before)
        if need:
            behind.append(i)
            wanted.update(need)
    expired = kind.expired(merged, purge_before) if complete else []
    if expired and any(kind.fields(s) for s in read_only):
        # A copy on a server that is only read from (a fallback, an old owner)
        # may hold what the tombstone deletes: purged on the targets, it would
        # come back from there. It is purged once no such copy is left.
        expired = []
    purge: list[int] = []
    if expired:
        exp = dict(expired)
        # The servers behind are sent every field any of them lacks: an expired
        # tombstone among them lands on each, so each purges it too, once they
        # all acknowledged (else that one would keep what the others dropped).
        sent = any(exp.get(f) == v for f, v in wanted.items())
        for i, state in states:
            mine = kind.fields(state)
            if (sent and i in behind) or any(exp.get(f) == v for f, v in mine):
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
    changed, _ = await _run_repair(pool, kind, key, plan, pttl_ms, timeout)
    return changed


async def _run_repair(
    pool: Pool,
    kind: CRDTType[Any],
    key: str | bytes,
    plan: RepairPlan,
    pttl_ms: int,
    timeout: float | None,
) -> tuple[bool, bool]:
    """:func:`run_repair`, also saying whether every server behind acknowledged."""
    changed = False
    repaired = True
    if plan.behind and plan.fields:
        replies = await pool.execute_script(
            kind.script,
            script_keys(key),
            script_argv((kind.marker, pttl_ms), plan.fields),
            timeout=timeout,
            servers=plan.behind,
        )
        raise_foreign(key, replies)
        changed = replies.ok_count > 0
        repaired = replies.ok_count == len(replies)
    if repaired and plan.purge and plan.tombstones:
        replies = await pool.execute_script(
            PURGE,
            script_keys(key),
            script_argv((kind.marker,), plan.tombstones),
            timeout=timeout,
            servers=plan.purge,
        )
        raise_foreign(key, replies)
        changed = changed or any(isinstance(r, int) and r > 0 for r in replies)
    return changed, repaired


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
    changed, _ = await _carry_out(pool, kind, key, plan, holders, timeout)
    return changed


async def _carry_out(
    pool: Pool,
    kind: CRDTType[Any],
    key: str | bytes,
    plan: RepairPlan,
    holders: Sequence[int],
    timeout: float | None,
) -> tuple[bool, bool]:
    """:func:`carry_out`, also saying whether every server behind acknowledged."""
    pttl = 0
    if plan.behind and plan.fields:
        asked = trio.current_time()
        found = await longest_ttl(pool, key, holders, timeout) if holders else None
        if found is None:
            return False, False  # expired everywhere since the read: writing would revive it
        pttl = found
        if pttl > 0:
            # The holder answered at some point since `asked`: take the whole wait
            # off, so the copy never outlives the holder by the round trip.
            waited = math.ceil((trio.current_time() - asked) * 1000)
            pttl = max(1, pttl - waited)
    return await _run_repair(pool, kind, key, plan, pttl, timeout)


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


#: Deletes a copy only if it still holds exactly the fields given (``ARGV``:
#: field, value, ...): a write that reached it after it was read changes it, and
#: then the copy is left for the next pass. ``KEYS``: the key, then optionally
#: its digest tree, whose entry for the key goes with it. Answers 1 when
#: deleted, else 0.
REMOVE_IF_UNCHANGED = Script(
    """
local n = #ARGV / 2
if redis.call('HLEN', KEYS[1]) ~= n then return 0 end
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
redis.call('DEL', KEYS[1])
-- and its digest-tree entry (KEYS[2], see _digest.script_keys), if given
if KEYS[2] then redis.call('HDEL', KEYS[2], 'k' .. KEYS[1]) end
return 1
"""
)


#: Whether a server's digest-tree segment (``KEYS[1]``) indexes any key that
#: exists: 1 if so, else 0. Entries of keys gone (expired, deleted by hand) do
#: not count. The CRDT write scripts enter every key they write there.
SEGMENT_HOLDS = Script(
    """
local all = redis.call('HKEYS', KEYS[1])
for j = 1, #all do
  local f = all[j]
  if string.sub(f, 1, 1) == 'k' and redis.call('EXISTS', string.sub(f, 2)) == 1 then
    return 1
  end
end
return 0
"""
)


async def remove_copies(
    pool: Pool,
    key: str | bytes,
    copies: Sequence[tuple[int, Mapping[bytes, bytes]]],
    timeout: float | None,
    since: int | None = None,
) -> tuple[int, ...]:
    """Delete copies of ``key`` from servers that are not its owners: the one way to.

    Every removal of a non-owner copy (hand-back of a fallback's copy, the end
    of a migration) goes through here. Each copy is deleted only if it still
    holds exactly the fields it was read with, so a write that reached it
    since (one the owners may not have) is never lost: that copy stays for the
    next read or walk. The caller must have had every owner acknowledge a
    state that includes what was read. The servers whose copy was deleted are
    forgotten from the pool's hints (:meth:`Pool._handed_back`), unless a
    write hinted them again after ``since``. A server also hinted for the
    key's whole partition (past the hints' ``max_keys``) is asked whether it
    still holds any key of the partition; if not, that hint goes too.

    Args:
        pool: The pool.
        key: The key.
        copies: ``(server index, fields as read)`` of each copy to delete.
        timeout: Deadline in seconds (``None``: the pool's).
        since: The pool's hint generation (:meth:`Pool._hint_generation`)
            when the hand-back began (``None``: now). A hint added after it
            may stand for a write this removal did not see (one landing on
            the server after its copy was removed), and stays.

    Returns:
        The indices of the servers whose copy was deleted.
    """
    if since is None:
        since = pool._hint_generation()
    removed: list[int] = []
    # One script per copy: each carries that server's own fields.
    for i, fields in copies:
        replies = await pool.execute_script(
            REMOVE_IF_UNCHANGED, script_keys(key), flatten(sorted(fields.items())), timeout=timeout,
            servers=[i],
        )  # fmt: skip
        if replies[0] == 1:
            removed.append(i)
    if removed:
        pool._handed_back(key, removed, since)
        await _forget_emptied_partition(pool, key, removed, since, timeout)
    return tuple(removed)


async def _forget_emptied_partition(
    pool: Pool, key: str | bytes, removed: Sequence[int], since: int, timeout: float | None
) -> None:
    """Forget the partition-wide hints of ``removed`` servers holding no key of the partition.

    A partition-wide hint stands for keys the pool no longer knows one by
    one, so it may go only once the server holds none of them: its digest-tree
    segment, which every CRDT write enters its key in, indexes no existing key.
    (Hints of plain commands' writes are never cleared so: see
    :meth:`~trio_redisha.pool._hints.Hints.add`.)
    """
    if not _digest._tree_enabled:
        return  # no write enters its key in the tree: an empty segment proves nothing
    partition = key_partition(check_key(key))
    hinted = set(pool._partition_hinted(partition))
    check = [i for i in removed if i in hinted]
    if not check:
        return
    replies = await pool.execute_script(
        SEGMENT_HOLDS, [tree_key(partition)], [], timeout=timeout, servers=check
    )
    for i, r in zip(check, replies, strict=True):
        if r == 0:
            pool._partition_emptied(partition, i, since)


def unheld_hints(pool: Pool, snap: Snapshot[Any], owners: Collection[int]) -> tuple[int, ...]:
    """The servers hinted for ``snap``'s key that its read found without it.

    Such a fallback (restarted empty, or its copy expired) has nothing to hand
    back, so no removal ever forgets its hint: the hint would send every read
    of the key there, and keep the pool's read fast path off, for the pool's
    life. Only hints that checking the server can forget count: the key's own,
    and its partition's whole hint where a segment check may clear it
    (:func:`_forget_emptied_partition`).

    Args:
        pool: The pool.
        snap: The read.
        owners: The key's owners (never counted: they are not hinted).
    """
    hints = pool._hints
    if not hints:
        return ()
    kb = check_key(snap.key)
    hinted = hints.key_servers(kb)
    if _digest._tree_enabled:
        hinted |= hints.partition_servers(key_partition(kb))
    if not hinted:
        return ()
    held = set(snap.holders)
    return tuple(i for i in snap.answered if i in hinted and i not in held and i not in owners)


async def forget_unheld(
    pool: Pool, key: str | bytes, servers: Sequence[int], since: int, timeout: float | None
) -> tuple[int, ...]:
    """Forget the hints of ``key`` on ``servers`` (fallbacks) that hold no copy of it.

    The caller read them without the key while every owner answered. Each is
    asked again (``EXISTS``), after ``since`` was taken: a write hinted before
    ``since`` that reached the server after the caller's read shows here, and
    its hint stays; a hint added after ``since`` stays whatever the answer (the
    generation guard of :meth:`~trio_redisha.pool._hints.Hints.handed_back`).
    A server also hinted for the key's whole partition goes from there once it
    holds no key of the partition, as after a removal.

    Args:
        pool: The pool.
        key: The key.
        servers: The hinted servers read without the key.
        since: The pool's hint generation (:meth:`Pool._hint_generation`) taken
            before the check.
        timeout: Deadline in seconds (``None``: the pool's).

    Returns:
        The servers found without the key: their hints forgotten (but those
        added after ``since``).
    """
    if not servers:
        return ()
    replies = await pool.execute_on(servers, "EXISTS", key, timeout=timeout)
    gone = tuple(i for i, r in zip(servers, replies, strict=True) if type(r) is int and r == 0)
    if gone:
        pool._handed_back(key, gone, since)
        await _forget_emptied_partition(pool, key, gone, since, timeout)
    return gone


#: Whether each key of ``KEYS`` exists: a list of 1 or 0, in order.
EXISTS_EACH = Script(
    """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('EXISTS', KEYS[i]) end
return out
"""
)

#: Keys :func:`forget_vanished` asks one server about per call.
_EXISTS_BATCH = 256
#: Calls of :func:`forget_vanished` in flight at once.
_PARALLEL = 4


async def forget_vanished(pool: Pool, since: int, timeout: float | None) -> None:
    """Forget the hints whose fallback holds no copy any more: the end of a walk.

    A walk reads the keys some server holds; a key gone from every server (a
    session saved during an outage, expired since) is read by nobody, and its
    hints would stay for the pool's life (past the hints' bound, partition-wide).
    So every key hinted is asked for (``EXISTS``) on its owners and on its
    hinted servers: where every one answered and no hinted server holds the
    key, its hints go. (Where one does hold it, its copy differs from the
    owners', so the walk hands it back, forgetting the others' hints then.) A
    partition-wide hint goes where the server's digest-tree segment of the
    partition holds no key (see :func:`_forget_emptied_partition`), every owner
    of the partition answering.

    Args:
        pool: The pool.
        since: The hints' generation when the walk began: a hint added after it
            stands for a write the walk may not have seen and stays; one added
            before it had the whole walk to land on its server.
        timeout: Deadline of each call in seconds (``None``: the pool's).
    """
    placement = pool.placement
    if placement is None or not pool._hints:
        return
    keys: list[tuple[bytes, tuple[int, ...], frozenset[int]]] = []
    partitions: list[int] = []
    by_server: dict[int, list[bytes]] = {}
    for what, hinted in pool._hints.items():
        if isinstance(what, int):
            partitions.append(what)
            continue
        owners = pool._owner_indices(what)
        keys.append((what, owners, hinted))
        for i in {*owners, *hinted}:
            by_server.setdefault(i, []).append(what)
    exists: dict[tuple[int, bytes], bool] = {}  # (server, key): answered, with whether held
    limit = trio.CapacityLimiter(_PARALLEL)

    async def ask(i: int, batch: list[bytes]) -> None:
        async with limit:
            (reply,) = await pool.execute_script(
                EXISTS_EACH, batch, (), timeout=timeout, servers=[i]
            )
        if isinstance(reply, list) and len(reply) == len(batch):
            for k, e in zip(batch, reply, strict=True):
                if type(e) is int:
                    exists[i, k] = e != 0

    async def segment(p: int, hinted: tuple[int, ...]) -> None:
        owners = placement.owners_of_partition(p)
        asked = (*owners, *(i for i in hinted if i not in owners))
        async with limit:
            replies = await pool.execute_script(
                SEGMENT_HOLDS, [tree_key(p)], [], timeout=timeout, servers=asked
            )
        answer = dict(zip(asked, replies, strict=True))
        if all(type(answer[i]) is int for i in owners):
            for i in hinted:
                if type(answer[i]) is int and answer[i] == 0:
                    pool._partition_emptied(p, i, since)

    async with trio.open_nursery() as nursery:
        for i, mine in by_server.items():
            for j in range(0, len(mine), _EXISTS_BATCH):
                nursery.start_soon(ask, i, mine[j : j + _EXISTS_BATCH])
        if _digest._tree_enabled:
            for p in partitions:
                clearable = pool._partition_hinted(p)
                if clearable:
                    nursery.start_soon(segment, p, clearable)
    for key, owners, hinted in keys:
        # A hinted server holding the key (or silent) leaves the key to its
        # hand-back, which forgets the others too (settle).
        if all((i, key) in exists for i in owners) and all(
            exists.get((i, key)) is False for i in hinted
        ):
            pool._handed_back(key, hinted, since)


@dataclass(frozen=True, slots=True)
class Settled:
    """What :func:`settle` did to one key.

    Attributes:
        changed: Whether an owner was written to (or a tombstone purged).
        removed: Servers whose non-owner copy was deleted.
        left: Servers whose non-owner copy was kept: an owner did not
            acknowledge, or the copy changed since it was read.
        pending: Servers whose non-owner copy could be removed (every owner
            acknowledged) but was kept as asked (``hold``).
        forgotten: Hinted servers found holding no copy (see
            :func:`forget_unheld`): their hints forgotten.
    """

    changed: bool = False
    removed: tuple[int, ...] = ()
    left: tuple[int, ...] = ()
    pending: tuple[int, ...] = ()
    forgotten: tuple[int, ...] = ()


async def settle(
    pool: Pool,
    snap: Snapshot[Any],
    owners: Sequence[int],
    purge_before: int,
    timeout: float | None,
    *,
    remove: Collection[int] | None = None,
    hold: bool = False,
    delay: float = 0.0,
) -> Settled:
    """Bring ``owners`` up to a read's merge, then remove the copies elsewhere.

    Repairs write to the owners only, never elsewhere. The copies read on
    other servers (``remove``: those of them that may go; ``None``: all) are
    deleted (:func:`remove_copies`) only once *every* owner acknowledged the
    merged state: each one answered the read and was up to date or took the
    repair write. Then too, the hints of the servers the read found without
    the key (:func:`unheld_hints`) are forgotten, each server asked again
    first (:func:`forget_unheld`).

    Args:
        pool: The pool.
        snap: What the read found (it must have asked the owners to remove anything).
        owners: The servers that must hold the key.
        purge_before: Tombstones older than this (microseconds) may be purged.
        timeout: Deadline in seconds (``None``: the pool's).
        remove: The non-owner servers whose copies may be removed.
        hold: Remove nothing; say which copies could go (:attr:`Settled.pending`).
            The walker removes them in a second round, a while later, so that
            no read still in flight from before the owners were written can
            miss a copy being removed. (Hints of servers holding nothing are
            forgotten all the same: no read misses a copy that is not there.)
        delay: Seconds to wait between the owners' acknowledgements and the
            removal (read repair waits the pool's ``timeout``, for the same reason).
            The owners are then read again, and the copies removed only if
            every owner still holds all of them: one restarted empty
            meanwhile would leave the copy the value's last.
    """
    # Hints added from here on stand for writes the removal may not have seen.
    since = pool._hint_generation()
    if not snap.complete:
        # A server that did not answer may hold what an old tombstone deletes:
        # the owners must get every tombstone before any other copy goes.
        purge_before = 0
    plan = snap.plan(purge_before, owners)
    changed, acked = await _carry_out(pool, snap.kind, snap.key, plan, snap.holders, timeout)
    if not plan.behind:
        acked = True
    mine = set(owners)
    extra = [i for i in snap.holders if i not in mine and (remove is None or i in remove)]
    # Hinted servers read without the key hold nothing to hand back: their hints
    # go along with the hand-back, under the same conditions (forget_unheld).
    unheld = unheld_hints(pool, snap, mine)
    if not extra and not unheld:
        return Settled(changed)
    answered = {i for i, _ in snap.states}
    if not acked or not mine <= answered:
        return Settled(changed, (), tuple(extra))
    if hold:
        forgotten = await forget_unheld(pool, snap.key, unheld, since, timeout)
        return Settled(changed, pending=tuple(extra), forgotten=forgotten)
    if delay > 0:
        # Also lets a write hinted before `since`, still on its way to an unheld
        # server, land there before that server is asked again.
        await trio.sleep(delay)
        # The owners acknowledged `delay` ago; one restarted empty since (no
        # persistence) lost it, and the copy would then be the value's last one.
        if extra and not await _owners_cover(pool, snap, owners, extra, timeout):
            return Settled(changed, (), tuple(extra))
    removed: tuple[int, ...] = ()
    if extra:
        position = {i: p for p, i in enumerate(snap.asked)}
        copies = []
        for i in extra:
            raw = snap.replies[position[i]]
            copies.append((i, hash_fields(raw)))
        removed = await remove_copies(pool, snap.key, copies, timeout, since)
    forgotten = await forget_unheld(pool, snap.key, unheld, since, timeout)
    return Settled(
        changed, removed, tuple(i for i in extra if i not in removed), forgotten=forgotten
    )


async def _owners_cover(
    pool: Pool,
    snap: Snapshot[Any],
    owners: Sequence[int],
    copies: Collection[int],
    timeout: float | None,
) -> bool:
    """Whether every owner, read now, holds everything the read found in ``copies``.

    One ``HGETALL`` per owner. An owner that does not answer, holds another
    type, or lacks anything of one of those copies (it restarted empty, say)
    makes it ``False``: the copies must stay.

    Args:
        pool: The pool.
        snap: The read that found the copies.
        owners: The servers that must hold the key.
        copies: Indices of the servers whose copies (as read in ``snap``) are checked.
        timeout: Deadline in seconds (``None``: the pool's).
    """
    kind = snap.kind
    read = dict(snap.states)
    found = [read[i] for i in copies if i in read]
    replies = await pool.execute_on(owners, "HGETALL", snap.key, timeout=timeout)
    for reply in replies:
        if isinstance(reply, BaseException):
            return False
        try:
            fields = hash_fields(reply)
        except ProtocolError:
            return False
        if fields.get(MARKER_FIELD, kind.marker) != kind.marker:
            return False
        held = kind.parse(fields)
        # What the owner lacks of the copy: nothing if merging the copy in changes nothing.
        if any(kind.needs(held, held.merge(c), 0) for c in found):
            return False
    return True
