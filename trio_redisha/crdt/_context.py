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

import secrets
import weakref
from typing import TYPE_CHECKING

import trio

from ..exceptions import ConfigurationError
from ..hlc import HybridLogicalClock
from ._cache import ReadCache

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = ["CRDTContext", "context_for"]


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
        totals: Per counter key, ``[P, N]``: the totals this writer has
            written or reserved. Shared by every :class:`Counter` of the key,
            so two objects never send the same total for different increments.
        sent: Per counter key, a time (``trio.current_time()``) at or before
            which some server last had its expiry refreshed by this writer: the
            send time of its last acknowledged write (of its first write, or of
            a reset to zero, until one is). A counter with a ``ttl`` that long
            ago may have expired, and then must not send its totals again.
    """

    __slots__ = ("_stamp", "_tokens", "actor", "actor_id", "clock", "read_cache", "rechecking",
                 "rehashing", "repair_rate", "sent", "totals", "write_quorum")  # fmt: skip

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
        self.totals: dict[bytes, list[int]] = {}
        self.sent: dict[bytes, float] = {}
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
