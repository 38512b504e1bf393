"""A map of last-writer-wins fields replicated on every server of a pool.

Each field is stamped with a hybrid-logical-clock timestamp and the writer's
actor id; the later stamp wins, per field, on every server and in every merge.
A delete writes a tombstone, so a server that missed the delete cannot bring
the field back (the Ruby gem stored the whole map in one string and lost
concurrent updates of different fields, and deletes). A clear writes one
map-level stamp that acts as a tombstone on every field at once.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import CodecError, CodecTypeError
from ._base import CodecCRDT
from ._state import Entry, MapState
from ._storage import CLEAR_FIELD, MAP, Fields
from .codecs import JSONCodec, encode_value

if TYPE_CHECKING:
    pass

__all__ = ["HashMap"]

#: What a write takes: field names to values. Names are str or bytes, or both
#: in one mapping (Mapping's key type is invariant: a union of the three).
_Fields = Mapping[str, Any] | Mapping[bytes, Any] | Mapping[str | bytes, Any]


def _name(name: str | bytes) -> bytes:
    # Strict UTF-8: with surrogateescape, "\udcc3\udca9" would be stored as the
    # field "é", and a lone surrogate from json.loads would reach the wire.
    if isinstance(name, str):
        try:
            return name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CodecError(f"field name {name!r} is not valid UTF-8 text: {exc.reason}") from None
    if isinstance(name, bytes):
        return name
    raise CodecTypeError(f"map field names are str or bytes, not {type(name).__name__}")


def _fields(fields: object) -> Mapping[Any, Any]:
    if not isinstance(fields, Mapping):
        raise CodecTypeError(
            f"fields must be a mapping of names to values, not {type(fields).__name__}"
        )
    return fields


def _names(names: Iterable[str | bytes] | None) -> list[bytes]:
    if names is None:  # as fields=None: nothing to delete
        return []
    if isinstance(names, (str, bytes)):
        raise CodecTypeError(f"delete takes an iterable of names, not a single name {names!r}")
    try:
        it = iter(names)
    except TypeError:
        raise CodecTypeError(
            f"delete takes an iterable of names, not {type(names).__name__}"
        ) from None
    return [_name(n) for n in it]


class HashMap(CodecCRDT[MapState]):
    """A dict whose fields are last-writer-wins registers.

    Example::

        m = trio_redisha.HashMap(pool, "my-hashmap")
        await m.set({"fnord": 1, "fubar": 2})
        await m.delete("fnord")
        assert await m.get() == {"fubar": 2}
        await m.clear()
        assert await m.get() == {}

    Concurrent writes of the same field: the later timestamp wins (ties: the
    larger actor id), so a writer whose clock runs behind by more than the time
    between two writes loses to the earlier write. Timestamps come from the
    pool's hybrid logical clock, which never runs backwards and moves past
    every timestamp it reads, so one writer's own writes, and writes after a
    read that saw another's, are always ordered correctly.

    Args:
        pool: The pool whose servers hold the replicas.
        key: The Redis key (a hash on each server).
        ttl: Seconds before the key expires; every write and repair refreshes it.
        codec: Encodes values (default :class:`JSONCodec`); never pickle.
        write_quorum: Acknowledgements a write needs (``None``: the pool's).
        read_quorum: Servers that must answer a read (default 1).
        timeout: Deadline of each call in seconds (``None``: the pool's).
        tombstone_grace: Seconds a delete's tombstone is kept before it may be
            purged. A server cut off for longer may bring the field back.
        hedged: A read waits for every server only a few reply times (four
            of the ``read_quorum``-th fastest server's, plus 1 ms), then
            returns with the ``read_quorum`` that answered, merged; a server
            already late is not waited for at all. So a slow or hung server
            costs it a few milliseconds at most, not the deadline. The others
            are neither merged nor repaired by that read. With ``write_quorum +
            read_quorum`` above the number of servers, a hedged read still
            sees every acknowledged write.
    """

    _kind = MAP
    _default_codec = JSONCodec
    __slots__ = ()

    async def get(self) -> dict[str, Any]:
        """Return the map, merged from every server that answered in time.

        An absent key is an empty map (the servers answered and hold nothing).
        Names are text; a name written as bytes that are not UTF-8 comes back
        with those bytes as surrogate escapes: address it as bytes again,
        ``name.encode("utf-8", "surrogateescape")`` (a str name must be valid
        text, so that two different names never meet in one field).

        Raises:
            QuorumError: Fewer than ``read_quorum`` servers answered.
            ForeignValueError: The key holds something this library did not write.
            CodecError: A stored value cannot be decoded by the codec.
        """
        snap = await self._read_snapshot()
        stored = snap.stored  # every server holds the same hash: no state built
        live = stored.live_payloads() if stored is not None else snap.merged.live().items()
        out: dict[str, Any] = {}
        for name, payload in sorted(live):
            text = name.decode("utf-8", "surrogateescape")
            try:
                out[text] = self._codec.decode(payload)
            except Exception as exc:
                raise CodecError(f"{self._key!r} field {text!r}: {exc}") from exc
        return out

    async def set(self, fields: _Fields) -> None:
        """Write the given fields (others are left as they are).

        Every value is encoded before anything is sent.

        Raises:
            CodecError: ``fields`` is not a mapping, a name is not str or bytes
                (or not valid UTF-8 text) or is given twice (``"a"`` and
                ``b"a"``), or a value cannot be encoded; nothing was sent.
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        out = self._registers(fields, None)
        if out:
            await self._write(out)

    async def delete(self, *names: str | bytes) -> None:
        """Delete fields, leaving a tombstone so that no server brings them back.

        Raises:
            CodecError: A name is not str or bytes, or not valid UTF-8 text;
                nothing was sent.
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        encoded = [_name(n) for n in names]
        if not encoded:
            return
        ts = self._ctx.clock.check(self._ctx.clock.now())
        await self._write(
            [(b"f:" + name, Entry(ts, self._actor, True).encode()) for name in encoded]
        )

    async def update(
        self,
        fields: _Fields | None = None,
        *,
        delete: Iterable[str | bytes] | None = (),
    ) -> None:
        """Write some fields and delete others in one write (one timestamp).

        :meth:`set` and :meth:`delete` together, in one round trip per server;
        fields not named are left as they are.

        Args:
            fields: Fields to write (``None``: none).
            delete: Names of fields to delete (tombstones; ``None``: none).

        Raises:
            CodecError: A value cannot be encoded, a name is invalid (as in
                :meth:`set`) or both written and deleted, or ``delete`` is a
                single str or bytes, or not iterable (a ``CodecTypeError``);
                nothing was sent.
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        out = self._registers(fields, delete)
        if out:
            await self._write(out)

    def _registers(
        self,
        fields: _Fields | None,
        delete: Iterable[str | bytes] | None,
    ) -> Fields:
        """The registers :meth:`update` writes, all with one new timestamp."""
        items = _fields({} if fields is None else fields).items()
        encoded = [(_name(k), encode_value(self._codec, v)) for k, v in items]
        if len({n for n, _ in encoded}) < len(encoded):
            # "a" and b"a" are two keys of a dict but one field: two registers
            # of one timestamp, of which the larger payload won.
            counts = collections.Counter(n for n, _ in encoded)
            twice = sorted(n for n, c in counts.items() if c > 1)
            raise CodecError(f"fields named twice (as str and bytes): {twice!r}")
        dead = _names(delete)
        both = {n for n, _ in encoded}.intersection(dead)
        if both:
            raise CodecError(f"fields both written and deleted: {sorted(both)!r}")
        if not encoded and not dead:
            return []
        ts = self._ctx.clock.check(self._ctx.clock.now())
        out: Fields = [
            (b"f:" + name, Entry(ts, self._actor, False, data).encode()) for name, data in encoded
        ]
        out += [(b"f:" + name, Entry(ts, self._actor, True).encode()) for name in dead]
        return out

    async def _update_if_live(
        self,
        fields: _Fields | None = None,
        *,
        delete: Iterable[str | bytes] | None = (),
    ) -> bool:
        """:meth:`update`, only where the map holds a live field (for the session store).

        A map deleted (cleared), expired, or never written is not brought back
        by a write of some of its fields: nothing is written where it holds no
        live field. With nothing to write, refreshes the expiry where it does.

        Returns:
            False if the map is gone (nothing written); see ``_write_if_live``.
        """
        return await self._write_if_live(self._registers(fields, delete))

    async def clear(self) -> None:
        """Delete every field, with one map-level stamp: a tombstone for all of them.

        Writes the clear stamp ``c:`` = ``<ts>:<actor>:-``. Every field whose
        register is not later than the stamp (in the one order: timestamp,
        then actor id) is dead from then on, in every merge, on every server:
        a server that missed the clear cannot bring any of them back, nor can
        a write made concurrently with an earlier timestamp, however late it
        arrives. Fields written later survive. Each server that applies the
        stamp deletes the fields it kills; the stamp stays as a tombstone, and
        is purged after ``tombstone_grace`` like the others.

        The stamp comes from the pool's clock, which is past every timestamp
        this pool has read or written: read the map first (as a session store
        does before a delete) to be sure to kill fields another writer wrote
        with a clock running ahead of this one.

        Raises:
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        await self._clear(0)

    async def _clear(self, newest: int) -> None:
        """:meth:`clear`, refused if its stamp would not beat ``newest``.

        ``newest``: the largest timestamp a read just found in the map. The
        clock ignores one beyond its skew bound, so two writers' clocks each
        within the bound, but further apart than it, would make a clear that
        kills nothing: raised instead of written.

        Raises:
            CodecError: The stamp is not later than ``newest``.
        """
        clock = self._ctx.clock
        ts = clock.check(clock.now())
        if ts <= newest:
            raise CodecError(
                f"{self._key!r} holds data stamped {(newest - ts) / 1e6:.0f} s ahead of this"
                " machine's clock, beyond its clock-skew bound (max_drift): a clear stamped"
                " now would not win over it, so nothing was written. Fix the writers' clocks"
                " (or raise max_drift)"
            )
        await self._write([(CLEAR_FIELD, Entry(ts, self._actor, True).encode())])
