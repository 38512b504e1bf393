"""An LWW-element set replicated on every server of a pool.

Each member carries its last add or remove, stamped with a hybrid-logical-clock
timestamp and the writer's actor id; the later stamp wins, with the same one
rule as the map (a remove beats an add only by being later, or at an exact tie
of timestamp and actor). So a remove is safe: a server that missed it is
repaired, instead of the member coming back forever (the Ruby gem merged sets
by union, and its README said "delete is not safe").
"""

from __future__ import annotations

import builtins
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import CodecError, CodecTypeError
from ._base import CodecCRDT
from ._state import Entry, SetState
from ._storage import SET
from .codecs import BytesCodec, JSONCodec, StrCodec, encode_value, json_equals

if TYPE_CHECKING:
    pass

__all__ = ["Set"]

#: Member types every codec gives back as themselves (hashable): no check needed.
_PLAIN: Final = frozenset({str, bytes, int, float, bool, type(None)})


class Set(CodecCRDT[SetState]):
    """A set whose members are added and removed with last-writer-wins.

    Example::

        s = trio_redisha.Set(pool, "my-set")
        await s.add("fnord", "bar")
        await s.rem("bar")
        assert await s.get() == {"fnord"}

    An add and a remove of the same member by different writers: the later
    timestamp wins (see :class:`~trio_redisha.HashMap` on clocks).

    Args:
        pool: The pool whose servers hold the replicas.
        key: The Redis key (a hash on each server).
        ttl: Seconds before the key expires; every write and repair refreshes it.
        codec: Encodes members (default :class:`StrCodec`); its encoding is the
            member's identity, so it must be deterministic, and give members
            Python holds equal one encoding. :class:`JSONCodec` does not, for
            numbers (``1``, ``1.0`` and ``True`` are ``1``, ``1.0``, ``true``):
            they are stored as distinct members, :meth:`get` returns one of
            them (which one is unspecified, as ``{1, True}`` keeps one), and
            :meth:`rem` removes all of them, so that ``1 in await s.get()`` is
            false after ``rem(1)`` whichever was added.
        write_quorum: Acknowledgements a write needs (``None``: the pool's).
        read_quorum: Servers that must answer a read (default 1).
        timeout: Deadline of each call in seconds (``None``: the pool's).
        tombstone_grace: Seconds a remove's tombstone is kept before it may be
            purged. A server cut off for longer may bring the member back.
        hedged: A read waits for every server only a few reply times, then
            returns with ``read_quorum`` of them (see :class:`~trio_redisha.HashMap`).
    """

    _kind = SET
    _default_codec = StrCodec
    __slots__ = ()

    async def get(self) -> builtins.set[Any]:
        """Return the members, merged from every server that answered in time.

        An absent key is an empty set (the servers answered and hold nothing).

        Raises:
            QuorumError: Fewer than ``read_quorum`` servers answered.
            ForeignValueError: The key holds something this library did not write.
            CodecError: A stored member cannot be decoded by the codec.
        """
        snap = await self._read_snapshot()
        stored = snap.stored  # every server holds the same hash: no state built
        codec = self._codec
        # The default codecs, at C speed: StrCodec.decode is bytes.decode, strict
        # UTF-8; BytesCodec.decode returns the bytes. Any failure goes through
        # the loop below, which names the member.
        if type(codec) is StrCodec:
            try:
                if stored is not None:
                    return stored.live_texts()
                return builtins.set(map(bytes.decode, snap.merged.iter_members()))
            except UnicodeDecodeError:
                pass
        elif type(codec) is BytesCodec:
            return builtins.set(stored.live_names() if stored else snap.merged.iter_members())
        out: builtins.set[Any] = builtins.set()
        for raw in stored.live_names() if stored else snap.merged.iter_members():
            try:
                out.add(codec.decode(raw))
            except Exception as exc:
                raise CodecError(f"{self._key!r} member {raw!r}: {exc}") from exc
        return out

    def _encode_member(self, member: Any) -> bytes:
        """``member`` as stored, if it can be a member of the set :meth:`get` returns.

        A member must be hashable once decoded: a JSON list (``[1, 2]``, or a
        tuple, which JSON turns into one) was stored, and then every read of
        the set failed.

        Raises:
            CodecError: The member cannot be encoded, or decodes to an
                unhashable value; nothing is sent.
        """
        raw = encode_value(self._codec, member)
        if type(member) not in _PLAIN:
            try:
                hash(self._codec.decode(raw))
            except TypeError:
                raise CodecTypeError(
                    f"set members must be hashable once decoded; {type(member).__name__} "
                    f"{member!r:.60} is not (a JSON list, or a tuple JSON turns into one)"
                ) from None
            except CodecError:
                raise
            except Exception as exc:
                raise CodecError(f"{self._codec!r} cannot decode what it encoded: {exc}") from exc
        return raw

    def _json_equals(self, member: Any) -> list[bytes]:
        """``member`` as stored, then the members equal to it a JSON codec stores differently."""
        out = [self._encode_member(member)]
        for other in json_equals(member)[1:]:
            with suppress(CodecError):  # a codec refusing it (a subclass) stores no such member
                out.append(encode_value(self._codec, other))
        return out

    async def add(self, *members: Any) -> None:
        """Add members.

        Raises:
            CodecError: A member cannot be encoded; nothing was sent.
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        await self._mark(members, deleted=False)

    async def rem(self, *members: Any) -> None:
        """Remove members, leaving a tombstone so that no server brings them back.

        With :class:`JSONCodec`, every member equal to one of ``members``
        goes too (``rem(1)`` removes ``1.0`` and ``True``; see
        :func:`~trio_redisha.crdt.codecs.json_equals`): a tombstone is written
        for each of its encodings.

        Raises:
            CodecError: A member cannot be encoded; nothing was sent.
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        await self._mark(members, deleted=True)

    async def _mark(self, members: tuple[Any, ...], *, deleted: bool) -> None:
        if deleted and isinstance(self._codec, JSONCodec):
            # Members are their encodings, and JSON encodes equal numbers
            # differently: rem(1) must not leave 1.0 or True behind.
            encoded = sorted({raw for m in members for raw in self._json_equals(m)})
            if not encoded:
                return
        elif len(members) == 1:  # the usual call: no set to build and sort
            encoded = [self._encode_member(members[0])]
        else:
            encoded = sorted({self._encode_member(m) for m in members})
            if not encoded:
                return
        clock = self._ctx.clock
        entry = Entry(clock.check(clock.now()), self._actor, deleted).encode()
        await self._write([(b"m:" + raw, entry) for raw in encoded])
