"""A PN-counter replicated on every server of a pool.

Each writer (actor: the pool's CRDT actor id, random per pool) stores on every server
the *absolute* totals of its increments (``p:<actor>``) and decrements
(``n:<actor>``). A write sends the new totals and the server keeps the larger
of what it has and what it gets, so retrying, replaying or repairing a write
never counts it twice. The value is, per actor, the largest total any replica
holds, summed: ``P - N``. An increment made while server A was cut off and one
made on A alone are both counted (the Ruby gem, taking the maximum of one
integer per server, lost one of them), and a decrement a server missed is
repaired rather than undone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import trio

from ..exceptions import (
    CodecError,
    CodecTypeError,
    CommandEncodeError,
    ConfigurationError,
    CrossSlotError,
    QuorumError,
    RedisHAError,
    UnsupportedCommand,
)
from ._base import CRDTBase
from ._context import Totals
from ._state import CounterState, parse_total
from ._storage import COUNTER, check_key

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = ["Counter"]

#: Totals are stored as decimals of at most 19 digits (see ``_state``).
_MAX_TOTAL = 10**19


class Counter(CRDTBase[CounterState]):
    """A counter that survives servers missing writes, restarting empty, or lagging.

    Example::

        ctr = trio_redisha.Counter(pool, "my-counter")
        await ctr.set(3)
        await ctr.incr()
        assert await ctr.get() == 4

    **An increment whose outcome is unknown** (it timed out after it was sent,
    or fewer than ``write_quorum`` servers acknowledged) is *kept*: this
    writer's totals already include it and never go back, so it is counted
    wherever it arrived, and the next write of this counter from the same
    pool carries it to every server that write reaches. Do not call
    :meth:`incr` again to "retry" it: that is a second increment. To push it
    out explicitly, call ``incr(0)``, which re-sends the current totals. Only
    when no server can have received it (:attr:`QuorumError.may_have_applied`
    is false) is it rolled back. One made from a scope already cancelled does
    nothing (Trio's rule); one cancelled while it waits is of unknown outcome.
    With a ``ttl``, such an increment does not keep the key alive: if it
    reached no server and the key expires, the count starts from zero again
    without it (see ``ttl``).

    Args:
        pool: The pool whose servers hold the replicas.
        key: The Redis key (a hash on each server).
        ttl: Seconds before the key expires; every write and repair refreshes it.
            Once it expired the counter counts from zero again: a write made
            ``ttl`` seconds or more after this writer's last *acknowledged*
            write (one that failed may have reached no server) reads first
            (see docs/consistency.md, "TTL").
        write_quorum: Acknowledgements a write needs (``None``: the pool's).
        read_quorum: Servers that must answer a read (default 1).
        timeout: Deadline of each call in seconds (``None``: the pool's).
        hedged: A read waits for every server only a few reply times, then
            returns with ``read_quorum`` of them (see :class:`~trio_redisha.HashMap`).
    """

    _kind = COUNTER
    __slots__ = ("_name",)

    def __init__(
        self,
        pool: Pool,
        key: str | bytes,
        *,
        ttl: float | None = None,
        write_quorum: int | None = None,
        read_quorum: int = 1,
        timeout: float | None = None,
        hedged: bool = False,
    ) -> None:
        super().__init__(
            pool,
            key,
            ttl=ttl,
            write_quorum=write_quorum,
            read_quorum=read_quorum,
            timeout=timeout,
            hedged=hedged,
        )
        # The totals this writer has written or reserved for the key are shared
        # by every Counter of the pool's context, looked up by each call (see
        # CRDTContext.totals: a ttl counter's may be forgotten meanwhile).
        self._name = check_key(key)

    async def get(self) -> int:
        """Return the counter's value, merged from every server that answered in time.

        An absent key counts as 0 (the servers answered and hold nothing).

        Raises:
            QuorumError: Fewer than ``read_quorum`` servers answered.
            ForeignValueError: The key holds something this library did not write.
        """
        known = self._ctx.totals_of(self._name)
        state = await self._read()
        _learn(known, state.p.get(known.actor, 0), state.n.get(known.actor, 0))
        return state.value

    async def incr(self, amount: int = 1) -> None:
        """Add ``amount`` (a negative amount subtracts).

        Raises:
            QuorumError: Fewer than ``write_quorum`` servers acknowledged; see
                the class documentation for what happens to the increment.
            ForeignValueError: The key holds something this library did not write.
            CodecTypeError: ``amount`` is not an ``int`` (``bool`` is refused
                too); nothing was sent.
            CodecError: The total would exceed what can be stored (19 digits).
        """
        amount = _check_int(amount)
        if amount >= 0:
            await self._add(amount, 0)
        else:
            await self._add(0, -amount)

    async def decr(self, amount: int = 1) -> None:
        """Subtract ``amount`` (a negative amount adds).

        Raises:
            QuorumError: See :meth:`incr`.
            ForeignValueError: See :meth:`incr`.
            CodecTypeError: See :meth:`incr`.
        """
        await self.incr(-_check_int(amount))

    async def set(self, value: int) -> None:
        """Make the value ``value`` by adding ``value - get()``.

        This is a read then an increment, not an atomic assignment: increments
        made concurrently by other writers are kept, on top of ``value``.

        Raises:
            QuorumError: The read or the write missed its quorum.
            ForeignValueError: The key holds something this library did not write.
            CodecTypeError: ``value`` is not an ``int``; nothing was sent.
        """
        delta = _check_int(value) - await self.get()
        if delta:
            await self.incr(delta)

    async def _forget_if_expired(self, known: Totals) -> None:
        """With a ``ttl``: start from zero again if the key expired since our last write.

        This writer's totals are absolute: sent again to a key that expired,
        they would bring back every increment that expired with it. So when no
        write of it has been acknowledged for ``ttl`` seconds or more, a read
        comes first; if no server that answered holds the key, the totals start
        again from zero. (A key another writer kept alive is read and goes on. A
        server that did not answer expires its copy on its own clock, at about
        the same time.)
        """
        name = self._name
        sents = self._ctx.sent
        totals = self._ctx.totals
        while True:
            sent = sents.get(name)
            if sent is None or trio.current_time() - sent < self._ttl:  # type: ignore[operator]
                return
            before = (known.p, known.n, sent)
            snap = await self._read_snapshot()
            if totals.get(name) is not known:
                return  # forgotten meanwhile: the caller takes the new totals
            if (known.p, known.n, sents.get(name)) == before:
                break
            # Another call of ours changed the totals or had a write acknowledged
            # meanwhile: judge again from what it left (a write refused meanwhile
            # rolls its totals back, and then the key may still have expired).
        if not snap.holders:
            known.p = known.n = 0
            # Totals of zero bring nothing back, and every later increment is
            # sent from now on.
            self._ctx.refreshed(name, trio.current_time(), self._ttl)  # type: ignore[arg-type]
        else:
            # Not a refresh: the key was alive at the read, but for how long
            # is unknown. The next acknowledged write stamps it; until then,
            # each write reads first.
            merged = snap.merged
            _learn(known, merged.p.get(known.actor, 0), merged.n.get(known.actor, 0))

    async def _add(self, dp: int, dn: int) -> None:
        # Trio's rule: a call that raises Cancelled did nothing. From a scope
        # already cancelled, nothing is reserved (below) and nothing is sent;
        # the pool checks the same before it sends, with no wait in between.
        await trio.lowlevel.checkpoint_if_cancelled()
        ctx = self._ctx
        known = ctx.totals_of(self._name)
        ttl = self._ttl
        if ttl is not None:
            await self._forget_if_expired(known)
            # Forgotten during that read (by another counter's write): the new
            # totals, under new fields, start from zero, which is right whether
            # the key expired or another writer kept it alive.
            known = ctx.totals_of(self._name)
        # Reserve the new totals before sending, synchronously: a total that may
        # have reached a server is never used again for another increment, even
        # if this call fails, is cancelled, or a replica that saw it restarts.
        p, n = known.p + dp, known.n + dn
        if p >= _MAX_TOTAL or n >= _MAX_TOTAL:
            raise CodecError(f"counter {self._key!r}: totals beyond 19 digits cannot be stored")
        known.p, known.n = p, n
        sents = ctx.sent
        started = trio.current_time()
        if ttl is not None and self._name not in sents:
            # Only an acknowledged write refreshes the expiry for sure (below).
            # But the first one may create the key without an acknowledgement:
            # from then on, ttl seconds without one mean a read first. (A stamp
            # too early costs a read; one too late brings expired totals back.)
            ctx.refreshed(self._name, started, ttl)
        pb, nb = b"%d" % p, b"%d" % n
        pf, nf = known.names
        try:
            replies = await self._pool.execute_script(
                COUNTER.script,
                self._script_keys,
                [COUNTER.marker, self._pttl_ms, pf, pb, nf, nb],  # two fields: no pack
                timeout=self._timeout,
                servers=self._script_servers(),
            )
        except _REFUSED:
            # Refused before anything was sent: the totals are free again, or the
            # next increment would carry this one.
            if known.p == p and known.n == n:
                known.p, known.n = p - dp, n - dn
            raise
        if ttl is not None and replies.ok_count:
            if started > sents.get(self._name, -math.inf):
                # A server ran the script, so set the expiry at `started` or later.
                # A write that reached no server, or whose outcome is unknown (it
                # may have reached none), leaves the stamp as it was: the key
                # expires when it would have, and a write after that reads first.
                ctx.refreshed(self._name, started, ttl)
            ctx.forget_counters(started)
        for r in replies:
            # The script answers the stored totals; never go below them. (A
            # server answering what was sent, the usual case, teaches nothing.)
            if isinstance(r, list) and len(r) == 2 and (r[0] != pb or r[1] != nb):
                _learn(known, _total(r[0]), _total(r[1]))
        try:
            self._check_write(replies)
        except RedisHAError as exc:
            if not replies.may_have_applied():
                if known.p == p and known.n == n:
                    # Nobody can have it, and no later increment includes it.
                    known.p, known.n = p - dp, n - dn
                elif isinstance(exc, QuorumError):
                    # A later write of ours carries this total: it will count.
                    exc.may_have_applied = True
            raise


#: What the pool raises only before it sends anything (a bad argument). Not
#: PoolClosed: a pool closing fails calls already sent with it too.
_REFUSED: Final = (ConfigurationError, CommandEncodeError, UnsupportedCommand, CrossSlotError)


def _learn(known: Totals, p: int, n: int) -> None:
    """Never go below the totals a server holds of ours."""
    if p > known.p:
        known.p = p
    if n > known.n:
        known.n = n


def _check_int(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecTypeError(f"a counter takes int amounts, not {type(value).__name__}")
    return value


def _total(raw: object) -> int:
    if isinstance(raw, str):
        raw = raw.encode()
    if isinstance(raw, bytes):
        return parse_total(raw) or 0
    if isinstance(raw, int):
        return raw
    return 0
