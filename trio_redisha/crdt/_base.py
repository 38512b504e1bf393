"""What every CRDT object shares: its arguments, the read with read repair, the write.

A read is :func:`~._read.read_key`: ``HGETALL`` on every server at once (with
placement, on the servers the pool reads the key from: its owners, fallbacks,
hinted servers, old owners), merged from whatever arrived before the deadline. When a replica that
answered is behind (:mod:`._plan` compares each one *exactly* with the merge),
the repair runs in the pool's nursery, so the read never waits for it, and
only when the pool's read-repair token bucket allows
(:meth:`~._context.CRDTContext.repair_allowed`). Replicas that agree cost
nothing: no repair write, so no repair storm.

A write is one merge script per server (FCALL, one round trip), succeeding
when at least ``write_quorum`` servers acknowledged it. With placement, read
repair writes to the key's owners only and hands copies found elsewhere back
(:func:`._plan.settle`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .._util import finite_seconds
from ..exceptions import ConfigurationError, RedisHAError, ReplyError
from ..replies import Replies
from ..scripts import Script
from ._cache import key_name
from ._context import context_for
from ._digest import script_keys
from ._plan import carry_out, foreign_error, is_foreign_reply, now_us, settle, unheld_hints
from ._read import LateReplies, Snapshot, read_key
from ._state import Entry, Mergeable
from ._storage import CLEAR_FIELD, Fields, check_key, script_argv
from .codecs import Codec

#: A first pair that makes an LWW write conditional (see ``_scripts.LWW_MERGE``).
_LIVE_GUARD: tuple[bytes, bytes] = (b"x:", b"1")
#: Its answers where nothing was written: the key absent; cleared, nothing live since.
_GONE: tuple[object, ...] = (b"GONE", "GONE")
_CLEARED: tuple[object, ...] = (b"CLEARED", "CLEARED")

if TYPE_CHECKING:
    from ..pool import Pool
    from ._plan import RepairPlan
    from ._storage import CRDTType

__all__ = ["DEFAULT_TOMBSTONE_GRACE", "CRDTBase", "CodecCRDT"]

logger = logging.getLogger("trio_redisha.crdt")


def check_pool(pool: object) -> None:
    """Refuse anything but a :class:`~trio_redisha.Pool` (a URL, ``None``...).

    Raises:
        ConfigurationError: ``pool`` is not a ``Pool``.
    """
    from ..pool import Pool  # here: the pool module imports this package's users

    if not isinstance(pool, Pool):
        raise ConfigurationError(
            f"pool must be a trio_redisha.Pool (from open_pool()), not {type(pool).__name__}"
        )


#: How long a tombstone (map delete, set remove) is kept before it may be purged:
#: a week, long enough for a server cut off over a long weekend and for any
#: delayed write. Purging also needs every server to answer (docs/consistency.md).
DEFAULT_TOMBSTONE_GRACE = 7 * 24 * 3600.0

#: The longest ``ttl`` accepted: a century, longer than any real expiry and far
#: below what Redis refuses (an expiry beyond 2**63 ms since the epoch).
MAX_TTL = 100 * 365 * 24 * 3600.0

S = TypeVar("S", bound=Mergeable)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_ttl(ttl: object) -> float:
    """Return ``ttl`` if it is a number of seconds in (0, :data:`MAX_TTL`].

    Raises:
        ConfigurationError: It is not.
    """
    if not _is_number(ttl) or not 0 < ttl <= MAX_TTL:  # type: ignore[operator]
        raise ConfigurationError(
            f"ttl must be a positive number of seconds up to {MAX_TTL:.0f}, got {ttl!r}"
        )
    return float(ttl)  # type: ignore[arg-type]


def check_quorum(name: str, value: object, n: int) -> int:
    """Return a quorum ``value`` if it is an int in ``1..n``.

    Raises:
        ConfigurationError: It is not.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
        raise ConfigurationError(f"{name} must be an int in 1..{n}, got {value!r}")
    return value


def check_timeout(timeout: object) -> float | None:
    """Return ``timeout`` if it is ``None`` or a positive finite number of seconds.

    Raises:
        ConfigurationError: It is not.
    """
    if timeout is None:
        return None
    seconds = finite_seconds(timeout)
    if seconds is None:
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return seconds


def check_grace(grace: object) -> float:
    """Return a ``tombstone_grace`` if it is a finite number of seconds >= 0.

    Raises:
        ConfigurationError: It is not.
    """
    seconds = finite_seconds(grace, zero=True)
    if seconds is None:
        raise ConfigurationError(f"tombstone_grace must be >= 0 seconds, got {grace!r}")
    return seconds


def check_codec(codec: object) -> None:
    """Refuse a codec that lacks ``encode`` or ``decode``.

    Raises:
        ConfigurationError: ``codec`` is not a :class:`~trio_redisha.crdt.Codec`.
    """
    if not isinstance(codec, Codec):
        raise ConfigurationError(
            f"codec must have encode() and decode() methods, got {type(codec).__name__}"
        )


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
        hedged: A read waits for every server only a few reply times, then
            returns with ``read_quorum`` of them (see :class:`~trio_redisha.HashMap`).

    Raises:
        ConfigurationError: An argument is out of range.
    """

    _kind: ClassVar[CRDTType[Any]]
    __slots__ = ("_actor", "_ctx", "_grace_us", "_hedged", "_key", "_pool", "_pttl_ms",
                 "_read_quorum", "_script_keys", "_timeout", "_ttl", "_write_quorum")  # fmt: skip

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
        hedged: bool = False,
    ) -> None:
        check_pool(pool)
        check_key(key)
        # With placement a key lives on N servers: the quorums count its owners
        # (acknowledgements from fallbacks standing in for owners count too).
        n = len(pool) if pool.replicas is None else pool.replicas
        if ttl is not None:
            check_ttl(ttl)
        if write_quorum is not None:
            check_quorum("write_quorum", write_quorum, n)
        check_quorum("read_quorum", read_quorum, n)
        if check_timeout(timeout) is not None:
            # Above the pool's stall_timeout every call would be refused, after
            # the constructor took it (a counter would have reserved its totals).
            pool._call_timeout(timeout)
        check_grace(tombstone_grace)
        if not isinstance(hedged, bool):
            raise ConfigurationError(f"hedged must be True or False, got {hedged!r}")
        self._hedged = hedged
        self._ctx = context_for(pool)
        self._pool = pool
        self._key = key
        self._ttl = ttl
        self._write_quorum = write_quorum
        self._read_quorum = read_quorum
        self._timeout = timeout
        self._grace_us = int(tombstone_grace * 1_000_000)
        self._actor = self._ctx.actor
        # What every write sends besides its fields, worked out once.
        self._script_keys = script_keys(key)
        self._pttl_ms = 0 if ttl is None else max(1, math.ceil(ttl * 1000))

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
        return self._ctx.write_quorum if self._write_quorum is None else self._write_quorum

    @property
    def read_quorum(self) -> int:
        """Servers that must answer a read."""
        return self._read_quorum

    @property
    def hedged(self) -> bool:
        """Whether a read waits a few reply times at most, then ``read_quorum`` servers do."""
        return self._hedged

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._key!r}>"

    # -- reading

    async def _read(self) -> S:
        """Read and merge; start a repair in the background if a replica is behind.

        Raises:
            ForeignValueError: A server holds something else under the key.
            QuorumError: Fewer than ``read_quorum`` servers answered (never
                an empty value in place of an unknown one).
        """
        merged: S = (await self._read_snapshot()).merged
        return merged

    async def _read_snapshot(self) -> Snapshot[S]:
        """:meth:`_read`, returning the read's snapshot (its merge built on demand).

        Raises:
            ForeignValueError: A server holds something else under the key.
            QuorumError: Fewer than ``read_quorum`` servers answered.
        """
        late = LateReplies(self._recheck_soon) if self._hedged else None
        snap = await self._read_key(late)
        if late is not None:
            late.settle(snap)
        self._repair_read(snap)
        return snap

    async def _read_key(self, late: LateReplies | None = None) -> Snapshot[S]:
        """:func:`~._read.read_key` with this object's settings; hedged if ``late`` is given."""
        return await read_key(
            self._pool,
            self._key,
            self._kind,
            timeout=self._timeout,
            read_quorum=self._read_quorum,
            hedged=late is not None,
            late=late,
        )

    def _repair_read(self, snap: Snapshot[S]) -> None:
        """Start the read repair that ``snap`` calls for, if any (in the background)."""
        pool = self._pool
        purge_before = now_us() - self._grace_us
        if pool.placement is None:
            plan = snap.plan(purge_before)
            if plan:
                stats = pool.stats
                stats.replicas_divergent += len(plan.behind)
                if self._ctx.repair_allowed() and pool._start_background(
                    _read_repair, pool, snap, plan, self._timeout
                ):
                    stats.read_repairs += 1
        else:
            self._placed_repair(snap)

    def _recheck_soon(self) -> None:
        """A server a hedged read did not wait for holds another state: read it too.

        Reads the key from every server in the background, waiting for each as
        a plain read does, and repairs as after any read. One recheck per key
        at a time, each taking a token of the read-repair rate limit.
        """
        ctx = self._ctx
        name = key_name(self._key)
        if name in ctx.rechecking or not ctx.repair_allowed():
            return
        ctx.rechecking.add(name)
        if self._pool._start_background(self._recheck, name):
            self._pool.stats.hedged_rechecks += 1
        else:
            ctx.rechecking.discard(name)

    async def _recheck(self, name: bytes) -> None:
        """:meth:`_recheck_soon`'s task: failures are left to the next read or walk."""
        try:
            snap = await self._read_key()
        except RedisHAError as exc:
            logger.debug("recheck of %r failed: %s", self._key, exc)
            return
        finally:
            self._ctx.rechecking.discard(name)
        self._repair_read(snap)

    def _placed_repair(self, snap: Snapshot[S]) -> None:
        """Read repair with placement: the owners only, then hand-back of other copies.

        Copies on the key's owners in the previous layout are left: processes
        still on the old layout read them until ``repair --previous`` ends the
        migration. Hinted fallbacks the read found without the key (restarted
        empty, the copy expired) have their hints forgotten, once every owner
        answered: otherwise nothing would, and every read of the key would go
        there for the pool's life.
        """
        pool = self._pool
        owners = pool._owner_indices(self._key)
        # No tombstone purge here: a read reaches only some servers, and a copy
        # elsewhere (another process's fallback) may still hold what a tombstone
        # deletes. The walker, which reads every server, purges.
        purge_before = 0
        plan = snap.plan(purge_before, owners)
        old = previous_owners(pool, self._key)
        extra = [i for i in snap.holders if i not in owners and i not in old]
        if not plan and not extra:
            if self._placed_forgets(snap, owners) and self._ctx.repair_allowed():
                # Nothing to write or remove: no read repair counted.
                pool._start_background(
                    _settle, pool, snap, owners, purge_before, extra, self._timeout
                )
            return
        stats = pool.stats
        stats.replicas_divergent += len(plan.behind) + len(extra)
        if self._ctx.repair_allowed() and pool._start_background(
            _settle, pool, snap, owners, purge_before, extra, self._timeout
        ):
            stats.read_repairs += 1

    def _placed_forgets(self, snap: Snapshot[S], owners: tuple[int, ...]) -> bool:
        """Whether :meth:`_placed_repair` has hints to forget: every owner answered
        and a hinted server was read without the key (:func:`._plan.unheld_hints`)."""
        if not self._pool._hints:  # the usual case: nothing more per read
            return False
        answered = set(snap.answered)
        return all(i in answered for i in owners) and bool(unheld_hints(self._pool, snap, owners))

    def _script_servers(self, *, refresh: bool = True) -> tuple[int, ...] | None:
        """Where a write goes: ``None`` (every server) without placement, else the
        key's owners, with fallbacks while fewer than ``write_quorum`` are usable.

        With ``refresh`` (every write but :meth:`_write_if_live`, which sees to
        it itself), during a migration, also starts the expiry refresh of the
        key's old owners that are not written (:meth:`_refresh_old_soon`).
        """
        pool = self._pool
        if pool.placement is None:
            return None
        servers = pool._write_targets(self._key, self.write_quorum)
        if refresh and pool.previous is not None:
            self._refresh_old_soon(self._old_only(servers))
        return servers

    def _old_only(self, servers: tuple[int, ...] | None) -> tuple[int, ...]:
        """The key's owners in the previous layout that are not among ``servers``."""
        if servers is None or self._pool.previous is None:
            return ()
        return tuple(i for i in previous_owners(self._pool, self._key) if i not in servers)

    def _refresh_old_soon(self, old: tuple[int, ...]) -> None:
        """Give the copies on ``old`` (old owners not written) this object's expiry again.

        A write refreshes the expiry where it lands, the new owners; a copy of a
        key the walker has not moved yet is on the old owners only, and would
        expire there with what it holds (an acknowledged write's earlier fields,
        a counter's other totals). Sent in the pool's nursery as the write goes
        out: it is not counted towards the write's quorum (and a write does not
        wait for it, Counter's included, which routes through here). It never
        creates a key nor touches anything but a copy of this type
        (:data:`_REFRESH`). Nothing without a ``ttl``, nothing outside a migration.
        A server that fails keeps its expiry (it is not counted).
        """
        if not old or self._ttl is None:
            return
        pool, key = self._pool, self._key
        args = [self._kind.marker, self._pttl_ms]

        async def refresh_old_copies() -> None:
            try:
                await pool.execute_script(_REFRESH, [key], args, timeout=self._timeout, servers=old)
            except RedisHAError as exc:
                logger.debug("refreshing the expiry of %r on old owners failed: %s", key, exc)

        pool._start_background(refresh_old_copies)

    # -- writing

    async def _write(self, fields: Fields) -> Replies:
        """Run the merge script with ``fields`` on every server; check the outcome.

        Raises:
            ForeignValueError: A server holds something else under the key (it
                was left untouched there; other servers may have applied the write).
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
        """
        replies = await self._run_script(fields, self._script_servers())
        self._check_write(replies)
        return replies

    async def _run_script(self, fields: Fields, servers: tuple[int, ...] | None) -> Replies:
        """The merge script with ``fields`` on ``servers`` (``None``: every server)."""
        kind = self._kind
        return await self._pool.execute_script(
            kind.script,
            self._script_keys,
            script_argv((kind.marker, self._pttl_ms), fields),
            timeout=self._timeout,
            servers=servers,
        )

    async def _write_if_live(self, fields: Fields) -> bool:
        """:meth:`_write`, applied only where the key holds a live register.

        For an LWW type (:data:`~trio_redisha.crdt._storage.MAP`,
        :data:`~trio_redisha.crdt._storage.SET`): a server whose copy is
        absent (expired, never written) or cleared with no live register since
        writes nothing, and neither its expiry nor its digest changes (a copy
        whose fields were all deleted one by one, without a clear, still takes
        the write: only a cleared copy is scanned). With no
        ``fields``, a server holding a live register only gets the expiry.

        During a migration (``previous=``), when no server written holds the
        key, its old owners that were not written are asked too (nothing is
        written there but the expiry, where the key is live): a key the walker
        has not moved yet is only there.

        Returns:
            False if the key is gone: a server holds it cleared (a write that
            another server, one that missed the clear, took is then undone by
            a new clear), or no server wrote and at least ``write_quorum`` of
            its owners hold no copy (during a migration, of its owners in each
            layout). Where some server wrote or holds the key live, or only
            fallbacks (with placement) answered, those without the key are
            behind: they get the write as it is.

        Raises:
            ForeignValueError: As :meth:`_write`.
            QuorumError: Fewer than ``write_quorum`` servers wrote, and fewer
                than ``write_quorum`` owners said the key is gone.
        """
        pool = self._pool
        servers = self._script_servers(refresh=False)
        replies = await self._run_script([_LIVE_GUARD, *fields], servers)
        gone = [i for i, r in enumerate(replies) if r in _GONE or r in _CLEARED]
        old = self._old_only(servers)
        if not gone:
            self._refresh_old_soon(old)
            self._check_write(replies)
            return True
        wrote = [
            i for i, r in enumerate(replies) if not isinstance(r, BaseException) and i not in gone
        ]
        cleared = any(replies[i] in _CLEARED for i in gone)
        seen: Replies | None = None  # the old owners' answers, if asked
        if old and not wrote and not cleared:
            # Nothing written holds it: a key the walker has not moved yet is
            # only on its old owners. Ask them, without writing anything there
            # (the guard alone refreshes the expiry of a live copy).
            seen = await self._run_script([_LIVE_GUARD], old)
            cleared = any(r in _CLEARED for r in seen)
        elif wrote:
            self._refresh_old_soon(old)
        if cleared and wrote and await self._written_since_clear(replies, wrote, gone):
            # A server that wrote holds the clear and registers later than it:
            # the key was written again after it was deleted (a session saved
            # anew under its id), and a server holding the clear alone missed
            # that. It is behind, as one without the key: it gets the write (below).
            cleared = False
        if cleared:
            # Deleted: a server applied the clear and took nothing since. A
            # server that missed it took this write, later than the clear:
            # a new clear, later still, undoes it everywhere.
            self._check_foreign(replies)
            if seen is not None:
                self._check_foreign(seen)
            if wrote:
                ts = self._ctx.clock.check(self._ctx.clock.now())
                await self._write([(CLEAR_FIELD, Entry(ts, self._actor, True).encode())])
            return False
        live_old = seen is not None and any(
            not isinstance(r, BaseException) and r not in _GONE for r in seen
        )
        if seen is not None:
            self._check_foreign(seen)
        owners = set(pool.owners(self._key))
        gone_owners = sum(1 for i in gone if replies.servers[i] in owners)
        if not wrote and not live_old:
            quorum = self.write_quorum
            if _says_gone(gone_owners, len(owners), quorum) and self._old_say_gone(
                replies, gone, seen, quorum
            ):
                self._check_foreign(replies)
                return False
            if not gone_owners:  # only fallbacks, which hold no copy yet: a sloppy write
                await self._write(fields)
                return True
        entries = list(replies)
        # Live elsewhere: a server without the key is behind (restarted empty,
        # a fallback standing in for an owner down, which holds no copy until
        # a sloppy write, or a new owner of a key not moved yet). It gets the
        # write as it is; a read repair or the walker brings the rest.
        sloppy = gone if wrote or live_old else []
        if sloppy:
            labels = pool.servers
            again = await self._run_script(
                fields, tuple(labels.index(replies.servers[i]) for i in sloppy)
            )
            for i, r in zip(sloppy, again, strict=True):
                entries[i] = r
        shown = Replies(
            [
                ReplyError("GONE the key holds nothing live here") if r in _GONE else r
                for r in entries
            ],
            replies.servers,
        )
        self._check_write(shown)
        return True

    async def _written_since_clear(
        self, replies: Replies, wrote: list[int], gone: list[int]
    ) -> bool:
        """Whether a server that ``wrote`` holds the latest clear and a register after it.

        Read from every server. The clear is the latest one the ``gone``
        servers hold. A server that wrote and holds it (or a later one) and a
        register it does not kill, live or tombstone (this write's own
        included: it could only land after that clear if the server held a
        live register since), took writes after the delete (the key created
        again): those without it are behind. A server that wrote without it
        missed the delete: what it holds is older, or the write of a request
        that loaded the key before the delete (another one's concurrent save),
        and the key is deleted; so it is when the clear on the server that
        wrote came after the write (another save's undoing clear) and killed
        all. If the read fails, False: the key is taken for deleted, as before.
        """
        try:
            snap = await self._read_snapshot()
        except RedisHAError:
            return False
        labels = self._pool.servers
        wrote_at = {labels.index(replies.servers[i]) for i in wrote}
        gone_at = {labels.index(replies.servers[i]) for i in gone}
        clears = {
            i: c.order_key()
            for i, state in snap.states
            if isinstance(c := getattr(state, "cleared", None), Entry)
        }
        latest = max((k for i, k in clears.items() if i in gone_at), default=None)
        if latest is None:
            return False
        return any(
            i in wrote_at and clears.get(i, ()) >= latest and bool(getattr(state, "entries", None))
            for i, state in snap.states
        )

    def _old_say_gone(
        self, replies: Replies, gone: list[int], seen: Replies | None, quorum: int
    ) -> bool:
        """Whether the key's owners in the previous layout say it is gone (True: no migration).

        Counted: the old owners among the servers written that answered
        :data:`_GONE`, and the old owners asked on their own (``seen``). A new
        owner of a partition not moved yet holds nothing: only the old owners
        know whether the key is live, and with them unreachable it is not
        "gone" (a save would drop its changes) but unknown.
        """
        old = previous_owners(self._pool, self._key)
        if not old:
            return True
        labels = self._pool.servers
        mine = {labels[i] for i in old}
        said = sum(1 for i in gone if replies.servers[i] in mine)
        if seen is not None:
            said += sum(1 for r in seen if r in _GONE)
        return _says_gone(said, len(old), quorum)

    def _check_foreign(self, replies: Replies) -> None:
        cache = self._ctx.read_cache
        if cache:  # the key changed: the next read is a plain digest read, one round
            cache.drop(key_name(self._key))
        for r in replies:
            if isinstance(r, ReplyError) and is_foreign_reply(r):  # no call for the others
                raise foreign_error(self._key, r)

    def _check_write(self, replies: Replies) -> None:
        self._check_foreign(replies)
        self._pool._check_quorum(
            replies, self._ctx.write_quorum if self._write_quorum is None else self._write_quorum
        )


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
        hedged: bool = False,
    ) -> None:
        super().__init__(
            pool,
            key,
            ttl=ttl,
            write_quorum=write_quorum,
            read_quorum=read_quorum,
            timeout=timeout,
            tombstone_grace=tombstone_grace,
            hedged=hedged,
        )
        if codec is not None:
            check_codec(codec)
        self._codec: Codec = type(self)._default_codec() if codec is None else codec

    @property
    def codec(self) -> Codec:
        """The codec of the stored values."""
        return self._codec


async def _read_repair(
    pool: Pool, snap: Snapshot[Any], plan: RepairPlan, timeout: float | None
) -> None:
    """Read repair, in the pool's nursery: failures are left to the next read or walk."""
    try:
        await carry_out(pool, snap.kind, snap.key, plan, snap.holders, timeout)
    except RedisHAError as exc:
        logger.debug("read repair of %r failed: %s", snap.key, exc)


def _says_gone(gone: int, owners: int, quorum: int) -> bool:
    """Whether ``gone`` of ``owners`` owners answering "no live copy" make a key gone:
    ``quorum`` of them, or all of them (fewer owners than the quorum)."""
    return gone >= quorum or (gone > 0 and gone == owners)


#: Set the expiry of a copy of ``KEYS[1]`` of the type whose marker is
#: ``ARGV[1]`` to ``ARGV[2]`` ms; anything else (no key, a foreign value) is left.
_REFRESH = Script(
    r"""
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return 0 end
if redis.call('HGET', KEYS[1], '__redisha__') ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
)


def previous_owners(pool: Pool, key: str | bytes) -> tuple[int, ...]:
    """The key's owners in the layout being moved away from (``previous=``), as indices."""
    return pool._previous_owner_indices(key)


async def _settle(
    pool: Pool,
    snap: Snapshot[Any],
    owners: tuple[int, ...],
    purge_before: int,
    remove: list[int],
    timeout: float | None,
) -> None:
    """Read repair with placement, in the pool's nursery (see :func:`._plan.settle`)."""
    try:
        await settle(pool, snap, owners, purge_before, timeout, remove=remove, delay=pool.timeout)
    except RedisHAError as exc:
        logger.debug("read repair of %r failed: %s", snap.key, exc)
