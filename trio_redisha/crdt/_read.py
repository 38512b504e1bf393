"""The one read of a CRDT key: ``HGETALL`` on the servers, parse, check, merge.

Object reads (:meth:`Counter.get` and the others) and repair
(:func:`~trio_redisha.crdt.repair_key`, the walker) read through
:func:`read_key`, so both judge replicas alike: a foreign value anywhere
refuses the key, a server that did not answer (or answered something that is
not a hash, which is treated alike) costs only its own entry, the
merge observes the clock, and the result (:class:`Snapshot`) says exactly
which servers answered what, for :mod:`._plan` to compare.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, overload

import trio

from ..exceptions import (
    ConfigurationError,
    ForeignValueError,
    ProtocolError,
    QuorumError,
    RedisHAError,
    ReplyError,
    ReplyTooLarge,
    timeout_before_send,
)
from ..replies import Replies
from ..resp import encode_command
from ..scripts import Script
from ._cache import CachedCopy, ReadCache, key_name
from ._context import context_for
from ._digest import rehash_key
from ._plan import RepairPlan, foreign_error, is_foreign_reply, plan_repair
from ._state import (
    Entry,
    LWWState,
    MapState,
    Mergeable,
    SetState,
    StoredRegisters,
    is_clear_stamp,
    merge_all,
    observe_all,
    parse_registers,
)
from ._storage import (
    CLEAR_FIELD,
    DIGEST_FIELD,
    MAP,
    MARKER_FIELD,
    REGISTRY,
    SET,
    CRDTType,
    check_marker,
    hash_fields,
    marker_error,
)

if TYPE_CHECKING:
    from ..pool import Pool
    from ..pool._server import Server

__all__ = ["LateReplies", "Snapshot", "read_key"]

logger = logging.getLogger("trio_redisha.crdt")

#: The pools loading the digest script right now: every read that meets NOSCRIPT
#: asks for a load, and one at a time per pool is enough.
_loading_digest: weakref.WeakSet[Pool] = weakref.WeakSet()

S = TypeVar("S", bound=Mergeable)


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[S]):
    """What one read of a key found, and its merge.

    Attributes:
        key: The key.
        kind: Its CRDT type.
        answered: Indices of the servers that answered, in order.
        holders: Indices of the servers whose answer held the key.
        asked: Indices of the servers read, in order.
        replies: Their replies, in the order of ``asked``.
        stored: When every server that answered holds the very same map or set
            hash, its registers, read without building the state (see
            :class:`~._state.StoredRegisters`); else ``None``.
    """

    key: str | bytes
    kind: CRDTType[S]
    _merged: list[S]  # [] until built from `stored`, then [the merge]
    _states: list[tuple[tuple[int, S], ...]]
    answered: tuple[int, ...]
    holders: tuple[int, ...]
    asked: tuple[int, ...]
    replies: Replies
    stored: StoredRegisters | None = None

    @property
    def merged(self) -> S:
        """The merge of every state read."""
        if not self._merged:
            state: S = self.stored.state(_LWW_CLASSES[self.kind.marker])  # type: ignore[union-attr]
            self._merged.append(state)
            self._states.append(tuple((i, state) for i in self.answered))
        return self._merged[0]

    @property
    def states(self) -> tuple[tuple[int, S], ...]:
        """``(server index, state)`` of each server that answered."""
        if not self._states:
            self.merged  # noqa: B018 - builds both
        return self._states[0]

    @property
    def complete(self) -> bool:
        """Whether every server asked answered."""
        return len(self.answered) == len(self.asked)

    def plan(self, purge_before: int, targets: Sequence[int] | None = None) -> RepairPlan:
        """What to write where so that the servers that answered reach the merge.

        Args:
            purge_before: Tombstones older than this (microseconds) may be purged,
                if every server asked answered.
            targets: The servers that may be written (``None``: all that answered).
        """
        stored = self.stored
        if stored is not None and (not self.complete or not stored.has_expired(purge_before)):
            # Every replica holds the merge itself, and no tombstone may be
            # purged: what plan_repair finds then, without building the state.
            return RepairPlan()
        return plan_repair(
            self.kind,
            self.states,
            self.merged,
            purge_before,
            complete=self.complete,
            targets=None if targets is None else frozenset(targets),
        )


#: What the servers a read waited for hold, for :class:`LateReplies`: no key.
_NO_KEY: Final = object()


class LateReplies:
    """A hedged read's check of the servers it did not wait for, once they answer.

    Those servers are neither merged nor repaired by the read. A server that
    is slow rather than hung still answers, and each such reply is compared
    with what the read found: its digest with the full copy's, "no key" with
    no key. The first one that differs (another state, or a state the read
    cannot compare, as when the servers it waited for disagreed, or a
    ``NOSCRIPT``: its scripts were flushed, as by a restart) calls
    ``on_differ``, once: the caller then reads the key again, from every
    server, and repairs. Replies that come before :meth:`settle` wait for it.
    What the read found is kept as one digest, not the snapshot: late
    watchers live until the deadline, and a stall makes many of them.

    Args:
        on_differ: Called at most once, from the pool's late-reply watcher.

    Attributes:
        full: The servers the read asked for a full copy (their late replies
            are ``HGETALL`` replies, the others' digests); set by the read.
    """

    __slots__ = ("_agreed", "_early", "_fired", "_on_differ", "full")

    def __init__(self, on_differ: Callable[[], None]) -> None:
        self._on_differ = on_differ
        self._early: list[tuple[int, Any]] | None = []  # None once settled
        self._agreed: object = None  # the digest held, _NO_KEY or None (see settle)
        self._fired = False
        self.full: frozenset[int] = frozenset()

    def __call__(self, index: int, reply: Any) -> None:
        """Take the late reply of server ``index`` (the pool's ``LateHook``)."""
        if self._fired:
            return
        if self._early is not None:
            self._early.append((index, reply))
        else:
            self._check(index, reply)

    def settle(self, snapshot: Snapshot[Any] | None) -> None:
        """The read returned ``snapshot``: late replies are compared with it from now on."""
        early, self._early = self._early or [], None
        if snapshot is not None and snapshot.complete:
            self._fired = True  # every server asked answered: none is late
            return
        self._agreed = _agreed_state(snapshot)
        for index, reply in early:
            self._check(index, reply)

    def _check(self, index: int, reply: Any) -> None:
        if self._fired:
            return
        if isinstance(reply, BaseException):
            if isinstance(reply, ReplyError) and reply.code == "NOSCRIPT":
                # Its scripts were flushed: restarted (empty, maybe), or FLUSHed.
                # The servers awaited have the digest script, so no read of
                # theirs would load it there; the recheck's read does.
                self._fired = True
                self._on_differ()
            return  # another error reply: nothing to compare
        agreed = self._agreed
        if index in self.full:
            try:
                digest = _digest_field(reply)
            except ProtocolError:
                return  # not a hash: the next read judges that server again
            same = not reply if agreed is _NO_KEY else digest == agreed
        elif type(reply) is int:
            same = reply == 0 and agreed is _NO_KEY  # 0: no key
        else:
            same = agreed is not None and type(reply) is list and reply[:1] == [agreed]
        if not same:
            self._fired = True
            self._on_differ()


def _agreed_state(snapshot: Snapshot[Any] | None) -> object:
    """What every server a read waited for holds: a digest, :data:`_NO_KEY`, or None.

    None: they disagree, or hold a key without a digest (data from before
    digests), so no late reply can be shown to agree.
    """
    if snapshot is None or not snapshot.holders:
        return _NO_KEY
    answered = [r for r in snapshot.replies if not isinstance(r, BaseException)]
    if len(snapshot.holders) != len(answered):
        return None  # some hold the key, some do not
    first = answered[0]
    if any(r is not first and r != first for r in answered):
        return None
    try:
        digest = _digest_field(first)
    except ProtocolError:
        return None
    return digest or None


@overload
async def read_key(
    pool: Pool,
    key: str | bytes,
    kind: CRDTType[S],
    *,
    servers: Sequence[int] | None = ...,
    timeout: float | None = ...,
    read_quorum: int = ...,
    full_from: Sequence[int] = ...,
    hedged: bool = ...,
    late: LateReplies | None = ...,
    absent_needs_all: bool = ...,
) -> Snapshot[S]: ...


@overload
async def read_key(
    pool: Pool,
    key: str | bytes,
    kind: None = ...,
    *,
    servers: Sequence[int] | None = ...,
    timeout: float | None = ...,
    read_quorum: int = ...,
    full_from: Sequence[int] = ...,
    hedged: bool = ...,
    late: LateReplies | None = ...,
    absent_needs_all: bool = ...,
) -> Snapshot[Any] | None: ...


async def read_key(
    pool: Pool,
    key: str | bytes,
    kind: CRDTType[Any] | None = None,
    *,
    servers: Sequence[int] | None = None,
    timeout: float | None = None,
    read_quorum: int = 1,
    full_from: Sequence[int] = (),
    hedged: bool = False,
    late: LateReplies | None = None,
    absent_needs_all: bool = False,
) -> Snapshot[Any] | None:
    """Read ``key`` from the servers, check it is ours, merge, observe the clock.

    Args:
        pool: The pool.
        key: The key.
        kind: The type the caller expects; ``None`` reads it from the marker
            field (a repair walker knows no type).
        servers: Indices of the servers to read (``None``: the pool's choice
            for the key: every server, or with placement its read targets:
            owners, fallbacks, hinted servers, old owners).
        timeout: Deadline in seconds (``None``: the pool's).
        read_quorum: Servers that must answer.
        full_from: Servers known to hold the different states (a tree walk
            knows it): they are read in full in the first round instead of
            only the fastest server; the others send digests as usual.
        hedged: The first round waits for every server only a few reply
            times, then returns once ``read_quorum`` servers answered (see
            :func:`_digest_read`); the servers it did not wait for count as
            not answered (their replies are still judged by the pool).
        late: With ``hedged``, gets the replies of the servers the read did
            not wait for, once they come (see :class:`LateReplies`); the caller
            settles it with the snapshot.
        absent_needs_all: With ``kind=None``, ``None`` (absent) only if every
            server asked answered; else :class:`QuorumError` (a repair: a
            server that failed may hold the key).

    Returns:
        The snapshot; with ``kind=None``, ``None`` when no server holds the key.

    A server whose reply is not a hash at all (valid RESP of the wrong shape)
    counts as one that did not answer: its entry in :attr:`Snapshot.replies`
    becomes a :class:`~trio_redisha.ProtocolError`.

    Raises:
        ConfigurationError: ``servers`` holds something that is not a server
            index; nothing was sent.
        ForeignValueError: A server holds something else under the key (a
            plain value, a hash without our marker, another CRDT type, an
            unknown format version, or different types on different servers).
        QuorumError: Fewer than ``read_quorum`` servers answered (never an
            empty value in place of an unknown one).
    """
    n = len(pool)
    if servers is not None:
        asked = tuple(servers)
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in asked):
            raise ConfigurationError(f"servers must be indices in 0..{n - 1}, got {servers!r}")
    targets = asked if servers is not None else pool.targets(("HGETALL", key))
    if len(targets) > 1:
        cache = context_for(pool).read_cache
        name = key_name(key)
        # A walk that names the servers to read in full knows they differ: no cache.
        cached = cache.get(name) if cache.capacity and not full_from else None
        got, known, stale = await _digest_read(
            pool, key, targets, timeout, full_from, cached, read_quorum if hedged else None, late
        )
        snapshot = _finish(
            pool, key, kind, targets, got, read_quorum, known, cached, absent_needs_all
        )
        if stale:  # only once the read succeeded: never into a value not ours
            rehash_soon(pool, key, stale, timeout)
        if cache.capacity:
            _remember(pool, cache, name, snapshot, known, cached)
        return snapshot
    # Always raw bytes: a pool with decode_responses=True would hand back text
    # decoded with replacement characters, and a repair would spread them.
    replies = await pool.execute("HGETALL", key, timeout=timeout, decode=False)
    # Entries are matched to servers by label, not by position: the pool may
    # send a keyed command to some servers only (its owners, with placement).
    index = {label: i for i, label in enumerate(pool.servers)}
    got = dict(zip((index[label] for label in replies.servers), replies, strict=True))
    if servers is None:
        asked = tuple(got)
    else:
        missing = [i for i in asked if i not in got]
        if missing:
            # Servers the pool did not send it to. Pool.execute_on cannot be
            # told not to decode yet; with full replication this never runs.
            more = await pool.execute_on(missing, "HGETALL", key, timeout=timeout)
            got.update(zip(missing, more, strict=True))
    return _finish(pool, key, kind, asked, got, read_quorum, absent_needs_all=absent_needs_all)


def _finish(
    pool: Pool,
    key: str | bytes,
    kind: CRDTType[Any] | None,
    asked: tuple[int, ...],
    got: dict[int, Any],
    read_quorum: int,
    known: Sequence[tuple[Any, dict[bytes, bytes] | None]] = (),
    cached: CachedCopy | None = None,
    absent_needs_all: bool = False,
) -> Snapshot[Any] | None:
    """Parse, check and merge the full replies ``got`` of the servers ``asked``.

    ``known``: replies already judged to be hashes, each with its fields (or
    ``None``: not built yet).
    ``cached``: the read cache's copy of the key, whose registers are reused
    if every server that answered holds it.
    """
    labels = pool.servers
    replies = Replies([got[i] for i in asked], tuple(labels[i] for i in asked))
    if kind is not None and kind.marker in _LWW_CLASSES:
        snapshot = _finish_alike(pool, key, kind, asked, replies, read_quorum, cached)
        if snapshot is not None:
            return snapshot
    # Replicas in agreement (the common case) send equal replies: each distinct
    # one is turned into fields and parsed once, and they share one state
    # object, which makes merging and comparing them free.
    distinct: list[list[Any]] = []  # [raw reply, fields, state or None]
    answered: list[tuple[int, list[Any]]] = []
    for pos, (i, r) in enumerate(zip(asked, replies, strict=True)):
        if isinstance(r, BaseException):
            if is_foreign_reply(r):
                raise foreign_error(key, r)
            continue
        # Digest reads hand the one full copy to every server that agrees: the
        # same object, matched without comparing it element by element.
        if distinct and distinct[0][0] is r:
            entry: list[Any] | None = distinct[0]
        else:
            entry = next((d for d in distinct if d[0] is r), None) or next(
                (d for d in distinct if d[0] == r), None
            )
        if entry is None:
            try:
                entry = [
                    r,
                    next((f for k, f in known if k is r), None) or _fields_of(r),
                    None,
                ]
            except ProtocolError as exc:
                # Valid RESP of the wrong shape: this server failed this read,
                # as if it had not answered. It is not a replica we know the
                # state of, so nothing is planned for it (never written blindly).
                logger.debug("%s: %s", replies.servers[pos] if replies.servers else i, exc)
                replies[pos] = ProtocolError(f"HGETALL {key!r}: {exc}")
                continue
            distinct.append(entry)
        answered.append((i, entry))
    counted = _counted(pool, key, answered)
    if counted < read_quorum:
        also = (
            ""
            if counted == len(answered)
            else (
                " (fallbacks holding nothing do not count, nor during a migration one layout alone)"
            )
        )
        if any(isinstance(r, ReplyTooLarge) for r in replies):
            also += (
                "; the key is too large for the pool's limits: give it larger ones,"
                " open_pool(..., limits=Limits(max_reply_elements=...))"
            )
        pool.stats.quorum_failures += 1  # a read short of its quorum, as Pool._check_quorum counts
        raise QuorumError(
            f"read of {key!r}: {counted} of {len(replies)} servers answered, "
            f"{read_quorum} required{also}",
            replies=replies,
            required=read_quorum,
            succeeded=counted,
            may_have_applied=False,
        )
    holders = tuple(i for i, entry in answered if entry[1])
    if kind is None:
        if not holders:
            if absent_needs_all and len(answered) < len(asked):
                # A repair must not take "none of those that answered holds
                # it" for "absent": the ones that failed may hold it.
                too_large = any(isinstance(r, ReplyTooLarge) for r in replies)
                raise QuorumError(
                    f"read of {key!r}: no server that answered holds it, and"
                    f" {len(asked) - len(answered)} of {len(asked)} failed"
                    + (
                        " (too large for the pool's limits: Limits(max_reply_elements=...))"
                        if too_large
                        else ""
                    ),
                    replies=replies,
                    required=len(asked),
                    succeeded=len(answered),
                    may_have_applied=False,
                )
            return None
        kind = _kind_of(key, [d[1] for d in distinct if d[1]])
    for d in distinct:
        check_marker(d[1], kind, key)
    done = tuple(i for i, _ in answered)
    if len(distinct) == 1 and distinct[0][1] and kind.marker in _LWW_CLASSES:
        if cached is not None and distinct[0][0] is cached.reply:
            stored: StoredRegisters | None = cached.stored
        else:
            stored = StoredRegisters.of(distinct[0][1], _PREFIXES[kind.marker], _NOT_REGISTERS)
        if stored is not None:
            observe = context_for(pool).clock.observe
            for ts in stored.timestamps():
                observe(ts)
            return Snapshot(key, kind, [], [], done, holders, asked, replies, stored)
    for d in distinct:
        d[2] = next((e[2] for e in distinct if e[2] is not None and e[1] == d[1]), None)
        if d[2] is None:
            d[2] = _parse(kind, d[1])
    states = [(i, entry[2]) for i, entry in answered]
    merged = merge_all((s for _, s in states), kind.empty)
    if isinstance(merged, LWWState):
        observe_all(context_for(pool).clock, merged)
    return Snapshot(key, kind, [merged], [tuple(states)], done, holders, asked, replies)


def _counted(pool: Pool, key: str | bytes, answered: Sequence[tuple[int, list[Any]]]) -> int:
    """How many of the servers that answered count towards the read quorum.

    With placement, an owner always counts, and another server only if it
    holds the key: a fallback answering "no such key" says nothing of what the
    owners hold. Counted, the fallbacks standing in for owners that are down
    made a session read empty (a logout, its data back once the owners
    returned). During a migration (``previous=``) of the key's partition, a
    server's "no such key" counts only once both layouts answered
    (:func:`_always_counted`): before the walker moves the key only its old
    owners hold it, after it only its new owners.
    """
    if pool.placement is None:
        return len(answered)
    owners = _always_counted(pool, key, {i for i, _ in answered})
    return sum(1 for i, entry in answered if i in owners or entry[1])


def _always_counted(pool: Pool, key: str | bytes, answered: set[int] | None) -> set[int]:
    """The servers whose answer counts towards the read quorum even without the key.

    The key's owners. During a migration of its partition (owners in the
    previous layout that are not owners now), the owners of both layouts, and
    only once at least one owner of each answered (``answered``; ``None``:
    not known yet, so none): a new owner holds nothing until the walker moves
    the key, and an old one nothing after. With only one layout answering, a
    key that layout lacks may be held by the other: only the servers holding
    it count, and a read short of its quorum raises rather than returning an
    empty value.
    """
    owners = pool._owner_indices(key)
    old = pool._previous_owner_indices(key)
    if not old:
        return set(owners)
    both = {*old, *owners}
    new_only = both.difference(old)
    if not new_only:
        return both
    if answered is not None and not answered.isdisjoint(old) and not answered.isdisjoint(new_only):
        return both
    return set()


def _uncounted(pool: Pool, key: str | bytes, targets: Sequence[int]) -> frozenset[int]:
    """The ``targets`` that count towards the read quorum only if they hold the key.

    Fallbacks, and during a migration of the key's partition every server
    (:func:`_counted`). Their "no such key" is no success for the read's waiter
    either (``Slot.needs_key``): a hedge of ``read_quorum`` replies stopped at
    the fast owner and an empty fallback, and the read then failed its quorum
    while a second owner was still in time.
    """
    if pool.placement is None:
        return frozenset()
    owners = _always_counted(pool, key, None)
    return frozenset(i for i in targets if i not in owners)


def _finish_alike(
    pool: Pool,
    key: str | bytes,
    kind: CRDTType[Any],
    asked: tuple[int, ...],
    replies: Replies,
    read_quorum: int,
    cached: CachedCopy | None,
) -> Snapshot[Any] | None:
    """:func:`_finish` of a map or set in the common case, without a dict of its fields.

    That case: every server that answered sent the one full copy of a digest
    read (the very same reply object), and its fields are registers only
    (:meth:`StoredRegisters.of_reply`). Returns ``None`` for anything else:
    :func:`_finish` then judges the replies as always.
    """
    copy = None
    done: list[int] = []
    for i, r in zip(asked, replies, strict=True):
        if isinstance(r, BaseException):
            if is_foreign_reply(r):
                raise foreign_error(key, r)
            continue
        if copy is None:
            copy = r
        elif r is not copy:
            return None
        done.append(i)
    if copy is None or len(done) < read_quorum:
        return None
    prefix = _PREFIXES[kind.marker]
    if cached is not None and copy is cached.reply:
        # Kept for the type whose prefix it has: another type is judged as always.
        stored: StoredRegisters | None = cached.stored if cached.stored.prefix == prefix else None
    else:
        stored = StoredRegisters.of_reply(copy, prefix, kind.marker, _NOT_REGISTERS)
    if stored is None:
        return None
    observe = context_for(pool).clock.observe
    for ts in stored.timestamps():
        observe(ts)
    held = tuple(done)
    return Snapshot(key, kind, [], [], held, held, asked, replies, stored)


#: The digest of a key on one server: ``{digest or '', marker}``, ``0`` for no
#: key, the foreign error for a hash without our marker (``HMGET`` alone could
#: not tell that from an absent key) and ``WRONGTYPE`` for any other type.
DIGEST_READ = Script(
    r"""
local r = redis.call('HMGET', KEYS[1], '__redisha_digest__', '__redisha__')
if r[2] then return {r[1] or '', r[2]} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('REDISHA_FOREIGN the key is a hash without the trio-redisha marker')
end
return 0
"""
)


@functools.lru_cache(maxsize=4096)
def read_commands(key: str | bytes) -> tuple[bytes, bytes]:
    """The encoded ``HGETALL`` and digest-script commands of a read of ``key``.

    Kept for the keys read lately: a key is read again and again (a session,
    on each request), and encoding both commands costs more than the lookup.
    """
    return encode_command(("HGETALL", key)), encode_command(("EVALSHA_RO", DIGEST_READ.sha, 1, key))


#: A hedged digest read waits for every server this many times the recent
#: reply time of the read_quorum-th fastest, plus HEDGE_SLACK seconds; then
#: read_quorum servers will do.
HEDGE_FACTOR: Final = 4
HEDGE_SLACK: Final = 0.001


def _hedge_after(servers: Sequence[Server], usable: Sequence[int], need: int) -> float:
    """How long a hedged first round waits for every server (see :data:`HEDGE_FACTOR`)."""
    latencies = sorted(servers[i].latency for i in usable)
    return latencies[min(need, len(latencies)) - 1] * HEDGE_FACTOR + HEDGE_SLACK


def _slow(server: Server, total: float) -> bool:
    """Whether the server's replies take over half of ``total`` (see :func:`_digest_read`)."""
    half = total / 2
    return server.latency > half or bool(server.latencies and server.latencies[-1] > half)


def _owed_for(server: Server) -> float:
    """Seconds the server has owed its oldest reply (0: none owed)."""
    conn = server.conn
    return 0.0 if conn is None else conn.oldest_pending_age


async def _digest_read(
    pool: Pool,
    key: str | bytes,
    targets: tuple[int, ...],
    timeout: float | None,
    full_from: Sequence[int] = (),
    cached: CachedCopy | None = None,
    hedge: int | None = None,
    late: LateReplies | None = None,
) -> tuple[dict[int, Any], list[tuple[Any, dict[bytes, bytes] | None]], list[int]]:
    """Full state from the fastest server, digests from the others; full reads where they differ.

    ``full_from``: the servers read in full in the first round instead (one
    of each different state, as a tree walk found), those that are usable.
    ``cached``: the read cache's copy of the key; every server then sends its
    digest only, and those holding the cached state get the cached reply.
    ``hedge``: the first round waits for every server only a few reply times
    (:func:`_hedge_after`), then returns once this many servers answered (the
    others get the pool's "not awaited" entry: they count as not answered);
    if enough others are left, it does not wait at all for a server that owes
    a reply older than that already; ``late`` gets the replies of the
    servers it did not wait for, if they come before the deadline.
    Returns each target's full ``HGETALL`` reply (or error): the servers whose
    digest equals a full copy's get that copy's reply. Servers that differ
    from it are read in full, one per distinct digest (the others with that
    digest get its reply once the full copy proves to hold that digest, and
    are read in full themselves if it does not: the key changed meanwhile).
    The first round waits
    up to the deadline while the replies in agree, but only half of it once
    they do not (:class:`_FirstRound`: the replies not awaited are still judged
    by the pool up to the whole deadline); the full reads of the servers that
    differ, or of every server if the full copy failed, get the rest: never
    past the deadline.
    Also returns each full copy that was a hash, with its fields (``None``:
    not built, see :func:`_pair_values`), and the servers that hold the key
    without a digest (data from before digests), for :func:`rehash_soon`.
    """
    servers = pool._servers
    full_cmd, digest_cmd = read_commands(key)
    usable = [i for i in targets if servers[i].usable() is not None]
    if not usable:
        more = await pool._fanout(full_cmd, targets, timeout, None, None, False, "HGETALL")
        replies = dict(zip(targets, more, strict=True))
        undigested: list[int] = []  # a first read before the connections are up: old data too
        _find_undigested(replies, targets, undigested)
        return replies, [], undigested
    hedging: tuple[int, float] | None = None
    owing: set[int] = set()
    if hedge is not None:
        after = _hedge_after(servers, usable, hedge)
        # A server still owing a reply older than that is stalled or hung right
        # now: if enough others are left, the read is not asked for its full copy
        # and does not wait for it at all (it is asked all the same: it may be
        # catching up, and its reply counts if it comes in time).
        owing = {i for i in usable if _owed_for(servers[i]) > after}
        hedging = (hedge, 0.0 if owing and len(usable) - len(owing) >= hedge else after)
    fulls = {i for i in full_from if i in usable}
    if not fulls and cached is None:
        # The fastest of late; one that just timed out (or owes a reply) only if all are.
        fulls.add(
            min(
                usable,
                key=lambda i: (i in owing, servers[i].consecutive_timeouts > 0, servers[i].latency),
            )
        )
    total = pool.timeout if timeout is None else timeout
    if hedge is None:
        # A server whose replies take over half the deadline (of late, or its
        # last one) has no time for a second round: a digest that differs could
        # not be followed by its full read. It sends its full copy at once (a
        # hedged read does not wait for it).
        fulls.update(i for i in usable if _slow(servers[i], total))
    if late is not None:
        late.full = frozenset(fulls)
    deadline = trio.current_time() + total
    # The full copies are sent first: they take their servers longest.
    order = sorted(targets, key=lambda i: i not in fulls)
    first = await pool._execute_each(
        order,
        [full_cmd if i in fulls else digest_cmd for i in order],
        timeout=total,
        wait_for=len(targets),
        watch_until=deadline,
        op="HGETALL",
        hedge=hedging,
        late=late,
        cutoff=(total / 2, _FirstRound(len(fulls), cached)),
        sparse=_uncounted(pool, key, targets) if hedge is not None else frozenset(),
    )
    got: dict[int, Any] = dict(zip(order, first, strict=True))
    copies: dict[bytes, Any] = {}  # a full copy's digest to its reply
    stale: list[int] = []  # servers holding the key without a digest (old data)
    parsed: list[tuple[Any, dict[bytes, bytes] | None]] = []
    if cached is not None:
        copies[cached.digest] = cached.reply
        parsed.append((cached.reply, None))
    for i in fulls:
        reply = got[i]
        if isinstance(reply, BaseException):
            continue
        found = _pair_values(reply, _NOT_REGISTERS)
        if found is None:
            try:
                fields = _fields_of(reply)
            except ProtocolError:
                continue
            parsed.append((reply, fields))
            marker, mine = fields.get(MARKER_FIELD), fields.get(DIGEST_FIELD)
        else:
            parsed.append((reply, None))  # its dict, if _finish needs one, is built there
            marker, mine = found
        if mine:
            copies.setdefault(mine, reply)
        elif marker in REGISTRY:
            stale.append(i)  # ours, but without a digest (a foreign one is left alone)
    again: list[int] = []  # read in full in a second round
    alike: dict[bytes, list[int]] = {}  # a digest no full copy has, to its servers
    noscript = False
    for i in targets:
        if i in fulls:
            continue
        r = got[i]
        if is_foreign_reply(r):
            raise foreign_error(key, r)
        if isinstance(r, ReplyError):
            noscript = noscript or r.code == "NOSCRIPT"
            again.append(i)
        elif isinstance(r, BaseException):
            continue  # did not answer: as in a full read, it costs only its entry
        elif r == 0:
            got[i] = []  # no key: an empty hash, exactly
        else:
            pair = isinstance(r, list) and len(r) == 2 and isinstance(r[0], bytes)
            if pair and r[0] in copies:
                got[i] = copies[r[0]]  # equal digests: the same stored state
            elif pair and r[0]:
                alike.setdefault(r[0], []).append(i)
            else:
                if pair and r[1] in REGISTRY:
                    stale.append(i)  # ours, but without a digest
                again.append(i)
    if noscript:
        _load_digest_script_soon(pool)
    # One full read per digest not seen yet: its servers hold the same state.
    stand_ins = {min(group, key=lambda i: servers[i].latency): d for d, group in alike.items()}
    again += stand_ins
    if again:
        await _read_in_full(pool, key, again, deadline, got)
        # Those read in full only now (NOSCRIPT for the digest script, say)
        # may hold the key without a digest too: they get theirs as well.
        _find_undigested(got, (i for i in again if i not in stand_ins), stale)
    retry: list[int] = []  # the key changed between the rounds: read these in full too
    for i, digest in stand_ins.items():
        reply = got[i]
        copy: dict[bytes, bytes] | None = None
        if not isinstance(reply, BaseException):
            try:
                copy = _fields_of(reply)
            except ProtocolError:
                pass  # judged again (and dropped) by _finish
            else:
                parsed.append((reply, copy))
        for j in alike[digest]:
            if j == i:
                continue
            if copy is not None and copy.get(DIGEST_FIELD) == digest:
                got[j] = reply
            else:
                retry.append(j)
    if retry:
        await _read_in_full(pool, key, retry, deadline, got)
    return got, parsed, stale


def _find_undigested(got: dict[int, Any], servers: Iterable[int], stale: list[int]) -> None:
    """Add to ``stale`` the ``servers`` whose full copy in ``got`` is ours but has no digest."""
    for i in servers:
        reply = got[i]
        if i in stale or isinstance(reply, BaseException) or not reply:
            continue
        found = _pair_values(reply, _NOT_REGISTERS)
        if found is None:  # a dict (RESP3), or a reply to look at closer
            try:
                fields = _fields_of(reply)
            except ProtocolError:
                continue
            found = [fields.get(MARKER_FIELD), fields.get(DIGEST_FIELD)]
        if not found[1] and found[0] in REGISTRY:
            stale.append(i)


class _FirstRound:
    """Whether a digest read's first round must end at half its deadline (a :class:`Cutoff`).

    It must once a reply in so far needs a second round: a digest (or an error,
    ``NOSCRIPT`` included) that no full copy in so far (nor the cached copy)
    holds. The second round then gets the rest of the deadline. While every
    reply in agrees, or none came yet, the round waits for the others up to the
    deadline: a server slower than half of it still counts, and a full copy
    still to come needs no second round.

    Args:
        fulls: How many of the first targets were asked for a full copy.
        cached: The read cache's copy, if the read has one.
    """

    __slots__ = ("_cached", "_fulls")

    def __init__(self, fulls: int, cached: CachedCopy | None) -> None:
        self._fulls = fulls
        self._cached = cached

    def __call__(self, replies: list[Any]) -> bool:
        known: set[bytes] = set()
        if self._cached is not None:
            known.add(self._cached.digest)
        for reply in replies[: self._fulls]:
            if reply is None or isinstance(reply, BaseException) or not reply:
                continue  # still to come, failed, or no key: it matches no digest
            try:
                digest = _digest_field(reply)
            except ProtocolError:
                continue
            if digest:
                known.add(digest)
        for reply in replies[self._fulls :]:
            if reply is None or (type(reply) is int and reply == 0):
                continue  # still to come (or failed), or no key: no second round
            if not (type(reply) is list and len(reply) == 2 and reply[0] in known):
                return True
        return False


async def _read_in_full(
    pool: Pool, key: str | bytes, servers: list[int], deadline: float, got: dict[int, Any]
) -> None:
    """``HGETALL`` on ``servers`` (at least one) until ``deadline``, replies into ``got``."""
    left = deadline - trio.current_time()
    if left > 0:
        more = await pool._fanout(
            read_commands(key)[0], tuple(servers), left, None, None, False, "HGETALL"
        )
        got.update(zip(servers, more, strict=True))
    else:
        for i in servers:
            got[i] = timeout_before_send(f"{pool.servers[i]}: no time left for a full read")


def _remember(
    pool: Pool,
    cache: ReadCache,
    name: bytes,
    snapshot: Snapshot[Any] | None,
    known: Sequence[tuple[Any, dict[bytes, bytes] | None]],
    cached: CachedCopy | None,
) -> None:
    """Count a read the cache answered; else keep its full copy if every server agreed."""
    if snapshot is None:  # no server holds the key
        cache.drop(name)
        return
    if cached is not None and any(r is cached.reply for r in snapshot.replies):
        pool.stats.reads_cached += 1
        if snapshot.stored is cached.stored:
            return  # every server that answered holds the cached state
    stored = snapshot.stored
    reply = next((r for r in snapshot.replies if not isinstance(r, BaseException)), None)
    copy = next(((r, f) for r, f in known if r is reply), None)
    digest = None
    if stored is not None and copy is not None:
        fields = copy[1]  # None: a reply already judged a hash, whose dict was not built
        digest = _digest_field(reply) if fields is None else fields.get(DIGEST_FIELD)
    if not digest:
        cache.drop(name)  # replicas differ (or no digest): the next read is a digest read
        return
    assert stored is not None
    cache.put(name, digest, reply, stored)


def rehash_soon(
    pool: Pool, key: str | bytes, servers: Sequence[int], timeout: float | None
) -> bool:
    """Give ``key`` its digest on ``servers`` in the background (data from before digests).

    A read that meets a key without a digest has to read it in full from
    every server, and would do so on every read until a ``repair`` walk: so
    it starts ``REHASH`` there, once per key at a time, taking a token of the
    read-repair rate limit (``repair_rate``). The next read is a digest read.
    Returns whether it was started.
    """
    ctx = context_for(pool)
    name = key_name(key)
    if name in ctx.rehashing or not ctx.repair_allowed():
        return False
    ctx.rehashing.add(name)
    if not pool._start_background(_rehash, pool, key, tuple(servers), timeout, name):
        ctx.rehashing.discard(name)
        return False
    return True


async def _rehash(
    pool: Pool, key: str | bytes, servers: tuple[int, ...], timeout: float | None, name: bytes
) -> None:
    """:func:`rehash_soon`'s task: failures are left to the next read or walk."""
    try:
        replies = await rehash_key(pool, key, servers, timeout=timeout)
        if any(isinstance(r, (bytes, str)) for r in replies):
            pool.stats.digests_rehashed += 1
    except RedisHAError as exc:
        logger.debug("rehash of %r failed: %s", key, exc)
    finally:
        context_for(pool).rehashing.discard(name)


def _pair_values(reply: Any, wanted: Sequence[bytes]) -> list[bytes | None] | None:
    """The values of the ``wanted`` fields in an ``HGETALL`` reply, without a dict of it.

    Each value is ``None`` if the field is absent, and is what the dict of the
    fields would hold (the last, for a field named twice). Returns ``None``
    unless the reply is a flat list of bytes in pairs: the caller then builds
    the dict (:func:`_fields_of`), which judges it.
    """
    if type(reply) is not list or len(reply) & 1:
        return None
    try:
        b"".join(reply)  # every element bytes, in one C pass (see _fields_of)
    except TypeError:
        return None
    # From the end: a field named twice holds what the dict keeps, the last value.
    backwards = reply[-2::-2]
    last = len(reply) - 1
    out: list[bytes | None] = []
    for k in wanted:
        try:
            out.append(reply[last - 2 * backwards.index(k)])
        except ValueError:
            out.append(None)
    return out


def _digest_field(reply: Any) -> bytes | None:
    """The digest field's value in an ``HGETALL`` reply (``None``: absent).

    Raises:
        ProtocolError: The reply is not a hash (as :func:`_fields_of`).
    """
    found = _pair_values(reply, (DIGEST_FIELD,))
    return _fields_of(reply).get(DIGEST_FIELD) if found is None else found[0]


def _fields_of(reply: Any) -> dict[bytes, bytes]:
    """:func:`~._storage.hash_fields`, with its common case checked at C speed.

    Raises:
        ProtocolError: The reply is not a list of pairs or a map of bytes.
    """
    if type(reply) is list and not len(reply) & 1:
        # Of the values the parser makes, bytes.join takes bytes only: joining
        # checks every element's type in one C pass, twice as fast as a map().
        try:
            b"".join(reply)
        except TypeError:
            pass
        else:
            it = iter(reply)
            return dict(zip(it, it, strict=True))
    return hash_fields(reply)


_LWW_CLASSES: dict[bytes, type[Any]] = {MAP.marker: MapState, SET.marker: SetState}
_PREFIXES = {MAP.marker: b"f:", SET.marker: b"m:"}
_NOT_REGISTERS = (MARKER_FIELD, DIGEST_FIELD)


def _parse(kind: CRDTType[Any], fields: dict[bytes, bytes]) -> Any:
    """``kind.parse(fields)``: the same state, built faster for maps and sets."""
    if kind is SET:
        return SetState(parse_registers(fields, b"m:"), _clear_stamp(fields.get(CLEAR_FIELD)))
    if kind is MAP:
        return MapState(parse_registers(fields, b"f:"), _clear_stamp(fields.get(CLEAR_FIELD)))
    return kind.parse(fields)


def _clear_stamp(raw: bytes | None) -> Entry | None:
    """The clear stamp stored as ``raw``, or ``None`` if absent or malformed."""
    e = None if raw is None else Entry.decode(raw)
    return e if is_clear_stamp(e) else None


def _load_digest_script_soon(pool: Pool) -> None:
    """Load the digest script in the background, unless a load is under way."""
    if pool in _loading_digest:
        return
    _loading_digest.add(pool)
    if not pool._start_background(_load_digest_script, pool):
        _loading_digest.discard(pool)


async def _load_digest_script(pool: Pool) -> None:
    """:func:`_load_digest_script_soon`'s task: a failure is left to the next read."""
    try:
        await pool.execute("SCRIPT", "LOAD", DIGEST_READ.source)
    except RedisHAError as exc:  # PoolClosed on an orderly close among them
        logger.debug("loading the digest script failed: %s", exc)
    finally:
        _loading_digest.discard(pool)


def _kind_of(key: str | bytes, copies: Sequence[dict[bytes, bytes]]) -> CRDTType[Any]:
    markers = {fields.get(MARKER_FIELD) for fields in copies}
    if len(markers) != 1:
        shown = ", ".join(sorted(repr(m) for m in markers))
        raise ForeignValueError(
            f"key {key!r} holds different types on different servers ({shown}); left untouched",
            key=key,
        )
    marker = markers.pop()
    kind = None if marker is None else REGISTRY.get(marker)
    if kind is None:
        raise marker_error(key, marker, "a trio-redisha CRDT this version knows")
    return kind
