"""What every CRDT object shares: fan-out read, merge, read repair, quorum write.

A read runs ``HGETALL`` on every server at once and merges whatever arrived
before the deadline. Each replica's own state is compared *exactly* with the
merged one (:attr:`CRDTType.needs`); the fields a replica lacks are written
back in the pool's nursery, so the read never waits for its repair, and only
when the pool's token bucket allows (:meth:`Pool.repair_allowed`). Replicas
that agree cost nothing: no repair write, so no repair storm.

A write is one merge script per server (EVALSHA, one round trip), succeeding
when at least ``write_quorum`` servers acknowledged it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ..exceptions import (
    ConfigurationError,
    ForeignValueError,
    QuorumError,
    RedisHAError,
    ReplyError,
)
from ..replies import Replies
from ._scripts import FOREIGN_CODE, PURGE
from ._state import Mergeable, merge_all
from ._storage import CRDTType, Fields, check_marker, hash_fields
from .codecs import Codec

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = [
    "DEFAULT_TOMBSTONE_GRACE",
    "CRDTBase",
    "RepairPlan",
    "foreign_error",
    "is_foreign_reply",
    "longest_ttl",
    "now_us",
    "plan_repair",
    "run_repair",
]

logger = logging.getLogger("trio_redisha.crdt")

#: How long a tombstone (map delete, set remove) is kept before it may be purged:
#: a week, long enough for a server cut off over a long weekend and for any
#: delayed write. Purging also needs every server to answer (docs/consistency.md).
DEFAULT_TOMBSTONE_GRACE = 7 * 24 * 3600.0

S = TypeVar("S", bound=Mergeable)


def _flatten(fields: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
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
) -> RepairPlan:
    """Compare each replica's state with the merged one; say what to write where.

    Args:
        kind: The stored type.
        states: ``(server index, state)`` of each server that answered.
        merged: Their merge.
        purge_before: Tombstones older than this (microseconds) may be purged.
        complete: Whether every server of the pool answered. Tombstones are
            purged only then: a server that did not answer may still hold the
            value the tombstone deletes, and would bring it back.

    Returns:
        An empty (false) plan when every replica that answered is up to date.
    """
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
    """Carry out a :class:`RepairPlan`; return whether any server changed.

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
            [kind.marker, pttl_ms, *_flatten(plan.fields)],
            timeout=timeout,
            servers=plan.behind,
        )
        _raise_foreign(key, replies)
        changed = replies.ok_count > 0
        repaired = replies.ok_count == len(replies)
    if repaired and plan.purge and plan.tombstones:
        replies = await pool.execute_script(
            PURGE,
            [key],
            [kind.marker, *_flatten(plan.tombstones)],
            timeout=timeout,
            servers=plan.purge,
        )
        _raise_foreign(key, replies)
        changed = changed or any(isinstance(r, int) and r > 0 for r in replies)
    return changed


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


def _raise_foreign(key: str | bytes, replies: Replies) -> None:
    for r in replies:
        if is_foreign_reply(r):
            raise foreign_error(key, r)


class CRDTBase(Generic[S]):
    """Base of :class:`Counter`, :class:`HashMap` and :class:`Set`.

    Args:
        pool: The pool whose servers hold the replicas.
        key: The Redis key (one hash per server).
        ttl: Seconds before the key expires; every write and repair write
            refreshes it on every server it reaches. ``None``: no expiry is set
            (an existing one is left as it is).
        write_quorum: Servers that must acknowledge a write (``None``: the
            pool's ``write_quorum``).
        read_quorum: Servers that must answer a read.
        timeout: Deadline of each call in seconds (``None``: the pool's).
        tombstone_grace: Seconds a tombstone is kept before it may be purged
            (maps and sets).

    Raises:
        ConfigurationError: An argument is out of range, or the pool's actor id
            cannot be stored (it must be non-empty and free of ``:``).
    """

    _kind: ClassVar[CRDTType[Any]]
    __slots__ = ("_actor", "_grace_us", "_key", "_pool", "_read_quorum", "_timeout", "_ttl",
                 "_write_quorum")  # fmt: skip

    def __init__(
        self,
        pool: Pool,
        key: str | bytes,
        *,
        ttl: float | None = None,
        write_quorum: int | None = None,
        read_quorum: int = 1,
        timeout: float | None = None,
        tombstone_grace: float = DEFAULT_TOMBSTONE_GRACE,
    ) -> None:
        if not isinstance(key, (str, bytes)) or not key:
            raise ConfigurationError(f"key must be a non-empty str or bytes, got {key!r}")
        n = len(pool)
        if ttl is not None and (isinstance(ttl, bool) or not ttl > 0 or not math.isfinite(ttl)):
            raise ConfigurationError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if write_quorum is not None and (
            not isinstance(write_quorum, int) or not 1 <= write_quorum <= n
        ):
            raise ConfigurationError(f"write_quorum must be in 1..{n}, got {write_quorum!r}")
        if not isinstance(read_quorum, int) or not 1 <= read_quorum <= n:
            raise ConfigurationError(f"read_quorum must be in 1..{n}, got {read_quorum!r}")
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"timeout must be positive, got {timeout!r}")
        if not tombstone_grace >= 0 or not math.isfinite(tombstone_grace):
            raise ConfigurationError(
                f"tombstone_grace must be >= 0 seconds, got {tombstone_grace!r}"
            )
        actor = pool.actor_id.encode("utf-8")
        if not actor or b":" in actor:
            raise ConfigurationError(f"actor id {pool.actor_id!r} must be non-empty, without ':'")
        self._pool = pool
        self._key = key
        self._ttl = ttl
        self._write_quorum = write_quorum
        self._read_quorum = read_quorum
        self._timeout = timeout
        self._grace_us = int(tombstone_grace * 1_000_000)
        self._actor = actor

    @property
    def pool(self) -> Pool:
        """The pool."""
        return self._pool

    @property
    def key(self) -> str | bytes:
        """The Redis key."""
        return self._key

    @property
    def ttl(self) -> float | None:
        """Seconds of life each write gives the key, or ``None``."""
        return self._ttl

    @property
    def write_quorum(self) -> int:
        """Acknowledgements a write needs (this object's, else the pool's)."""
        return self._pool.write_quorum if self._write_quorum is None else self._write_quorum

    @property
    def read_quorum(self) -> int:
        """Servers that must answer a read."""
        return self._read_quorum

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._key!r}>"

    @property
    def _pttl_ms(self) -> int:
        return 0 if self._ttl is None else max(1, math.ceil(self._ttl * 1000))

    # -- reading

    async def _read(self) -> S:
        """Fan out, merge, observe the clock, start a repair if a replica is behind.

        Raises:
            ForeignValueError: A server holds something else under the key.
            QuorumError: Fewer than ``read_quorum`` servers answered (never
                an empty value in place of an unknown one).
        """
        kind = self._kind
        key = self._key
        replies = await self._pool.execute("HGETALL", key, timeout=self._timeout, decode=False)
        states: list[tuple[int, S]] = []
        holders: list[int] = []
        # Replicas in agreement (the common case) are parsed once and share
        # one state object, which makes merging and comparing them free.
        seen: list[tuple[Any, dict[bytes, bytes], S]] = []
        for i, r in enumerate(replies):
            if is_foreign_reply(r):
                raise foreign_error(key, r)
            if isinstance(r, BaseException):
                continue
            state = next((st for raw, _, st in seen if raw == r), None)
            if state is None:
                fields = hash_fields(r)
                state = next((st for _, f, st in seen if f == fields), None)
                if state is None:
                    check_marker(fields, kind, key)
                    state = kind.parse(fields)
                seen.append((r, fields, state))
            states.append((i, state))
            if r:
                holders.append(i)
        if len(states) < self._read_quorum:
            raise QuorumError(
                f"read of {key!r}: {len(states)} of {len(replies)} servers answered, "
                f"{self._read_quorum} required",
                replies=replies,
                required=self._read_quorum,
                succeeded=len(states),
                may_have_applied=False,
            )
        merged: S = merge_all((s for _, s in states), kind.empty)
        self._observe(merged)
        plan = plan_repair(
            kind,
            states,
            merged,
            now_us() - self._grace_us,
            complete=len(states) == len(self._pool),
        )
        if plan and self._pool.repair_allowed():
            self._pool._start_background(self._repair, plan, tuple(holders))
        return merged

    def _observe(self, merged: S) -> None:
        """Let the pool's clock see the timestamps read (LWW types)."""

    async def _repair(self, plan: RepairPlan, holders: Sequence[int] = ()) -> None:
        try:
            pttl = self._pttl_ms
            if pttl and plan.behind and holders:
                # The holders' remaining expiry, not a fresh ttl (see longest_ttl).
                found = await longest_ttl(self._pool, self._key, holders, self._timeout)
                if found is None:
                    return  # expired since the read: nothing to restore
                pttl = found
            await run_repair(self._pool, self._kind, self._key, plan, pttl, self._timeout)
        except RedisHAError as exc:
            logger.debug("read repair of %r failed: %s", self._key, exc)

    # -- writing

    async def _write(self, fields: Fields) -> Replies:
        """Run the merge script with ``fields`` on every server; check the outcome.

        Raises:
            ForeignValueError: A server holds something else under the key (it
                was left untouched there; other servers may have applied the write).
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
        """
        kind = self._kind
        replies = await self._pool.execute_script(
            kind.script,
            [self._key],
            [kind.marker, self._pttl_ms, *_flatten(fields)],
            timeout=self._timeout,
        )
        self._check_write(replies)
        return replies

    def _check_write(self, replies: Replies) -> None:
        for r in replies:
            if is_foreign_reply(r):
                raise foreign_error(self._key, r)
        replies.check_quorum(self.write_quorum)


class CodecCRDT(CRDTBase[S]):
    """Base of the types that store encoded values: :class:`HashMap` and :class:`Set`.

    Takes the arguments of :class:`CRDTBase` plus ``codec``: how values are
    turned into stored bytes and back (never pickle). ``None`` selects the
    type's default codec.
    """

    _default_codec: ClassVar[Callable[[], Codec]]
    __slots__ = ("_codec",)

    def __init__(
        self,
        pool: Pool,
        key: str | bytes,
        *,
        ttl: float | None = None,
        codec: Codec | None = None,
        write_quorum: int | None = None,
        read_quorum: int = 1,
        timeout: float | None = None,
        tombstone_grace: float = DEFAULT_TOMBSTONE_GRACE,
    ) -> None:
        super().__init__(
            pool,
            key,
            ttl=ttl,
            write_quorum=write_quorum,
            read_quorum=read_quorum,
            timeout=timeout,
            tombstone_grace=tombstone_grace,
        )
        self._codec: Codec = type(self)._default_codec() if codec is None else codec

    @property
    def codec(self) -> Codec:
        """The codec of the stored values."""
        return self._codec
