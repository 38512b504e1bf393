"""The CRDT layer's state for one pool: its clock, actor id, quorum, repair budget, totals.

Everything the data types share per pool lives in one :class:`CRDTContext`,
made on first use by :func:`context_for` and kept in a weak dictionary keyed
by the pool: the pool knows nothing of CRDTs, nothing is added to it from
outside (a typed, checked object stays so), and a dropped pool takes its
context with it. The context never refers to its pool, or the weak key would
never die.

The pool's own settings the CRDTs depend on (``write_quorum`` and
``repair_rate`` and ``read_cache``, constructor arguments of :class:`~trio_redisha.Pool`) are
read in one place, :meth:`CRDTContext.from_pool`.
"""

from __future__ import annotations

import itertools
import secrets
import weakref
from typing import TYPE_CHECKING

import trio

from ..exceptions import ConfigurationError
from ..hlc import HybridLogicalClock
from ._cache import ReadCache

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = ["CRDTContext", "Totals", "context_for"]

#: Keys :meth:`CRDTContext.forget_counters` looks at per call, at most.
_FORGET_BATCH = 8


class Totals:
    """This writer's totals for one counter key, and the fields it stores them in.

    Attributes:
        actor: The writer's id in the fields' names: the context's actor, or,
            for totals made after some were forgotten, that actor and the
            context's generation (``<actor>.<n>``), so that totals starting
            from zero again never meet the ones this writer stored before.
        names: The fields, ``p:<actor>`` and ``n:<actor>``.
        p: The total of the increments written or reserved.
        n: The total of the decrements.
    """

    __slots__ = ("actor", "n", "names", "p")

    def __init__(self, actor: bytes) -> None:
        self.actor = actor
        self.names = (b"p:" + actor, b"n:" + actor)
        self.p = 0
        self.n = 0


class CRDTContext:
    """What every CRDT object on one pool shares.

    Args:
        write_quorum: Acknowledgements a write needs when the object sets none.
        repair_rate: Read repairs started per second at most (a token bucket).
        actor_id: This writer's id (default: 16 random hex digits, so two
            pools never share counter totals).
        clock: The hybrid logical clock stamping LWW writes.
        read_cache: Bytes (estimated) the read cache may hold (see
            :mod:`._cache`); 0 keeps none.

    Attributes:
        actor_id: This writer's id, as text.
        actor: The same, as stored (UTF-8 bytes).
        clock: The hybrid logical clock (replaceable, e.g. to skew it in tests).
        write_quorum: The default write quorum.
        repair_rate: The read-repair rate limit, per second.
        read_cache: Large full copies read lately, validated by digests on
            every read (:class:`~._cache.ReadCache`).
        totals: Per counter key, the totals this writer has written or
            reserved (:class:`Totals`). Shared by every :class:`Counter` of the
            key, so two objects never send the same total for different increments.
        sent: Per counter key, a time (``trio.current_time()``) at or before
            which some server last had its expiry refreshed by this writer: the
            send time of its last acknowledged write (of its first write, or of
            a reset to zero, until one is). A counter with a ``ttl`` that long
            ago may have expired, and then must not send its totals again.
            Ordered by that time, oldest first (see :meth:`forget_counters`).
        ttls: Per counter key with a ``ttl``, that ``ttl``.
        generation: How many times :meth:`forget_counters` forgot totals.
    """

    __slots__ = ("_stamp", "_tokens", "actor", "actor_id", "clock", "generation", "read_cache",
                 "rechecking", "rehashing", "repair_rate", "sent", "totals", "ttls",
                 "write_quorum")  # fmt: skip

    def __init__(
        self,
        *,
        write_quorum: int = 1,
        repair_rate: float,
        actor_id: str | None = None,
        clock: HybridLogicalClock | None = None,
        read_cache: int = 0,
    ) -> None:
        actor_id = secrets.token_hex(8) if actor_id is None else actor_id
        try:
            actor = actor_id.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            actor = b""
        if not actor or b":" in actor:
            raise ConfigurationError(f"actor id {actor_id!r} must be non-empty text, without ':'")
        self.actor_id = actor_id
        self.actor = actor
        self.clock = HybridLogicalClock() if clock is None else clock
        self.write_quorum = write_quorum
        self.repair_rate = repair_rate
        self.totals: dict[bytes, Totals] = {}
        self.sent: dict[bytes, float] = {}
        self.ttls: dict[bytes, float] = {}
        self.generation = 0
        #: Keys a read is giving their digest in the background (see _read.rehash_soon).
        self.rehashing: set[bytes] = set()
        #: Keys read again after a hedged read's late server differed (CRDTBase._recheck_soon).
        self.rechecking: set[bytes] = set()
        self.read_cache = ReadCache(read_cache)
        self._tokens = repair_rate
        self._stamp = 0.0

    @classmethod
    def from_pool(cls, pool: Pool) -> CRDTContext:
        """A fresh context with the pool's settings: the one place that reads them."""
        return cls(
            write_quorum=pool.write_quorum,
            repair_rate=pool._repair_rate,
            read_cache=pool._read_cache,
        )

    def totals_of(self, name: bytes) -> Totals:
        """The totals of the counter key ``name``, made on first use."""
        totals = self.totals.get(name)
        if totals is None:
            actor = self.actor if not self.generation else b"%b.%d" % (self.actor, self.generation)
            totals = self.totals[name] = Totals(actor)
        return totals

    def refreshed(self, name: bytes, when: float, ttl: float) -> None:
        """Record that a write sent at ``when`` refreshed the expiry of counter ``name``."""
        sent = self.sent
        sent.pop(name, None)  # to the end: the oldest stamps first
        sent[name] = when
        self.ttls[name] = ttl

    def forget_counters(self, now: float) -> None:
        """Forget the totals of counters with a ``ttl`` whose last refresh is ``ttl`` old.

        Without it a process using a counter per client or per minute (a rate
        limiter) kept every key's totals for its life. Such a key has expired
        on every server this writer refreshed, unless another writer kept it
        alive; either way this writer's totals starting from zero would be
        wrong only under its old field names, so totals made after this get
        new ones (:class:`Totals`), and no read is needed. Looks at the oldest
        few stamps only (they are ordered): keys of a long ``ttl`` hold back
        those behind them until they expire too.
        """
        sent = self.sent
        forgot = False
        for name in list(itertools.islice(sent, _FORGET_BATCH)):
            ttl = self.ttls.get(name)
            if ttl is None or now - sent[name] < ttl:
                break
            del sent[name], self.ttls[name]
            self.totals.pop(name, None)
            forgot = True
        if forgot:
            self.generation += 1

    def repair_allowed(self) -> bool:
        """Take one token of the read-repair rate limit; False when exhausted."""
        now = trio.current_time()
        rate = self.repair_rate
        self._tokens = min(rate, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def __repr__(self) -> str:
        return (
            f"<CRDTContext actor={self.actor_id!r} write_quorum={self.write_quorum} "
            f"repair_rate={self.repair_rate:g}/s>"
        )


_CONTEXTS: weakref.WeakKeyDictionary[Pool, CRDTContext] = weakref.WeakKeyDictionary()


def context_for(pool: Pool) -> CRDTContext:
    """The CRDT context of ``pool``, made on first use.

    Example::

        ctx = trio_redisha.crdt.context_for(pool)
        print(ctx.actor_id)   # the id this process's writes carry
    """
    ctx = _CONTEXTS.get(pool)
    if ctx is None:
        ctx = _CONTEXTS[pool] = CRDTContext.from_pool(pool)
    return ctx
