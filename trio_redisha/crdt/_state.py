"""The CRDT states as plain values, and their merge: pure functions, no I/O.

Three types are built from two primitives:

* a **PN-counter** (:class:`CounterState`): for every actor (writer) an
  absolute total of increments ``P`` and of decrements ``N``; merge takes the
  per-actor maximum of each, the value is ``sum(P) - sum(N)``;
* a map of **last-writer-wins registers** (:class:`Entry`): the hash map
  (:class:`MapState`) keeps one register per field, the set (:class:`SetState`)
  one per member, whose payload is empty and whose flag says *added* or
  *removed*.

There is exactly one order on registers, :meth:`Entry.order_key`, and every
place that decides between two registers uses it: :func:`merge_entries` here,
the Lua scripts on the servers (``_scripts.py``), their Python twin
(:func:`trio_redisha.crdt._storage.apply_lww_fields`) and read repair. SoundCloud
Roshi resolved equal timestamps one way in its script and the other way in its
repair, and never converged; that cannot happen when there is only one rule.

The rule: the larger timestamp wins; on equal timestamps the larger actor id
(compared as bytes) wins; on equal actor ids the larger ``flag + payload``
(bytes) wins, so a tombstone (flag ``-``, 0x2D) beats a value (flag ``+``,
0x2B) written by the same actor at the same instant. Every input decides, so
the order is total and merge is commutative, associative and idempotent.

**Clearing.** A map (or set) may also hold one *clear stamp*, a tombstone
register ``<ts>:<actor>:-`` that stands for "every field was deleted at this
instant" (:meth:`~trio_redisha.HashMap.clear`). It is the same tombstone
written to every field at once, judged by the same one order: a field whose
register is *not larger* than the clear stamp (:func:`cleared_by`) is dead, on
every replica, in every merge, whoever wrote it and whenever it arrives; a
field written later survives. Clear stamps merge by that order too (the larger
wins), and a state never keeps a field its clear stamp kills, so two states
are equal exactly when they mean the same thing.

Everything here is keyed by ``bytes`` (field names, members, actor ids) exactly
as stored, so a repair walker can merge a key without knowing how its values
were encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, getitem, not_
from typing import Any, Protocol, TypeVar

__all__ = [
    "FLAG_LIVE",
    "FLAG_TOMBSTONE",
    "CounterState",
    "Entry",
    "LWWState",
    "MapState",
    "Mergeable",
    "SetState",
    "StoredRegisters",
    "cleared_by",
    "is_clear_stamp",
    "merge_all",
    "merge_entries",
    "observe_all",
    "parse_registers",
    "parse_total",
]

#: Flag byte of a register holding a value (map) or a present member (set).
FLAG_LIVE = b"+"
#: Flag byte of a tombstone: a deleted field or a removed member. It sorts after
#: :data:`FLAG_LIVE`, so at an exact tie of timestamp and actor the delete wins.
FLAG_TOMBSTONE = b"-"

# A canonical non-negative decimal: no sign, no leading zero, at most 19 digits
# (10**19 > 2**63, so every total and timestamp fits). The Lua scripts apply the
# very same test; anything else is malformed and treated as absent everywhere.
_DECIMAL = rb"(?:0|[1-9][0-9]{0,18})"
_TOTAL_RE = re.compile(rb"\A" + _DECIMAL + rb"\Z")
_ENTRY_RE = re.compile(rb"\A(" + _DECIMAL + rb"):([^:]+):([+-])(.*)\Z", re.DOTALL)


_new = object.__new__
_set = object.__setattr__
_ts_of = attrgetter("ts")
_deleted_of = attrgetter("deleted")


def parse_total(raw: bytes) -> int | None:
    """Parse a stored counter total, or return ``None`` if it is malformed."""
    if _TOTAL_RE.match(raw) is None:
        return None
    return int(raw)


@dataclass(frozen=True, slots=True)
class Entry:
    """One last-writer-wins register: who wrote what, when.

    Stored as ``<ts>:<actor>:<flag><payload>``; :meth:`encode` and
    :meth:`decode` are exact inverses for every well-formed value, so states
    read from two replicas compare equal exactly when the stored bytes do.

    Attributes:
        ts: Hybrid-logical-clock timestamp, microseconds since the epoch.
        actor: Id of the writer (never contains ``:``).
        deleted: True for a tombstone (map delete, set remove).
        payload: The encoded value (empty for set members and tombstones).
    """

    ts: int
    actor: bytes
    deleted: bool = False
    payload: bytes = b""

    @property
    def flag(self) -> bytes:
        """The stored flag byte: :data:`FLAG_TOMBSTONE` or :data:`FLAG_LIVE`."""
        return FLAG_TOMBSTONE if self.deleted else FLAG_LIVE

    def order_key(self) -> tuple[int, bytes, bytes]:
        """The key of the one order on registers: ``(ts, actor, flag + payload)``."""
        return (self.ts, self.actor, self.flag + self.payload)

    def encode(self) -> bytes:
        """Return the stored form, ``<ts>:<actor>:<flag><payload>``."""
        return b"%d:%b:%b%b" % (self.ts, self.actor, self.flag, self.payload)

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """Parse a stored register, or return ``None`` if it is malformed."""
        m = _ENTRY_RE.match(raw)
        if m is None:
            return None
        # The pattern guarantees what __post_init__ checks; skip it (hot path:
        # one call per field per read).
        e = _new(cls)
        _set(e, "ts", int(m[1]))
        _set(e, "actor", m[2])
        _set(e, "deleted", m[3] == FLAG_TOMBSTONE)
        _set(e, "payload", m[4])
        return e

    def __post_init__(self) -> None:
        if not 0 <= self.ts < 10**19:
            raise ValueError(f"timestamp out of range: {self.ts!r}")
        if not self.actor or b":" in self.actor:
            raise ValueError(f"invalid actor id: {self.actor!r}")


# Registers decoded lately, by stored value: a key read again (a session, on each
# request) decodes nothing. Registers are immutable, so sharing them is safe. Bounded
# in count and in the size of each value (about a megabyte in all); emptied when full.
_DECODED: dict[bytes, Entry] = {}
_CACHED_MAX = 4096
_CACHED_MAX_BYTES = 64


def _decode_distinct(raws: Iterable[bytes]) -> tuple[dict[bytes, Entry | None], bool]:
    """Each distinct stored value to its register (``None``: malformed); any malformed?"""
    registers: dict[bytes, Entry | None] = {}
    malformed = False
    cache = _DECODED
    for raw in set(raws):
        e = cache.get(raw)
        if e is None:
            e = Entry.decode(raw)
            if e is None:
                malformed = True
            elif len(raw) <= _CACHED_MAX_BYTES:
                if len(cache) >= _CACHED_MAX:
                    cache.clear()
                cache[raw] = e
        registers[raw] = e
    return registers, malformed


def _cut(names: Iterable[bytes], prefix: bytes) -> Iterator[bytes]:
    """Each name without its first ``len(prefix)`` bytes."""
    # getitem(name, slice) at C speed; typeshed types it as a sequence of ints.
    return map(getitem, names, repeat(slice(len(prefix), None)))  # type: ignore[arg-type]


def parse_registers(fields: Mapping[bytes, bytes], prefix: bytes) -> dict[bytes, Entry]:
    """The registers stored in ``fields`` under names beginning with ``prefix``.

    Returns the name without the prefix to its register, for every such field
    whose value is a well-formed register (:meth:`Entry.decode`); the other
    fields are ignored. This is what the stored types' parsers do field by
    field, done in a few C-level passes over the fields, and decoding each
    distinct stored value once: the members a write added together share one
    register value (a 1,000-member set read back costs a few decodes, not a
    thousand), and a value decoded lately is not decoded again.
    """
    names = list(fields)
    raws = list(fields.values())
    wanted = list(map(bytes.startswith, names, repeat(prefix)))
    if not all(wanted):
        names = list(compress(names, wanted))
        raws = list(compress(raws, wanted))
    registers, malformed = _decode_distinct(raws)
    out = dict(zip(_cut(names, prefix), map(registers.__getitem__, raws), strict=True))
    if malformed:
        return {k: e for k, e in out.items() if e is not None}
    return out  # type: ignore[return-value]  # no register is None


class StoredRegisters:
    """The registers of one stored map or set hash, read without building its state.

    For the common read, where every server that answered holds this very hash:
    the answer is then this hash's own live fields, no merge is needed, and
    nothing needs writing unless a tombstone is past its grace. Built only when
    every field but the ``ignored`` ones (the marker, the digest) is ``prefix``
    and a name holding a well-formed register, no name holds a NUL byte, and
    there is no clear stamp (:meth:`of` returns ``None`` otherwise, and the
    caller builds the state): then each answer below is what the state that
    the type's parser builds would give, computed in a few C-level passes.

    Attributes:
        names: The fields' names, with the prefix.
        raws: Their stored values, in the same order.
        registers: Each distinct stored value to its register.
        prefix: The names' prefix (``f:`` or ``m:``).
    """

    __slots__ = ("_joined", "_texts", "names", "prefix", "raws", "registers")

    def __init__(
        self,
        names: list[bytes],
        raws: list[bytes],
        registers: dict[bytes, Entry],
        prefix: bytes,
        joined: bytes,
    ) -> None:
        self.names = names
        self.raws = raws
        self.registers = registers
        self.prefix = prefix
        self._joined = joined  # the names joined by NUL bytes
        self._texts: frozenset[str] | None = None  # live_texts, once computed

    @classmethod
    def of(
        cls, fields: Mapping[bytes, bytes], prefix: bytes, ignored: Iterable[bytes]
    ) -> StoredRegisters | None:
        """The registers of ``fields``, or ``None`` where only the state can tell."""
        names = list(fields)
        raws = list(fields.values())
        for k in ignored:
            if k in fields:  # dropped from both lists: cheaper than copying the dict
                j = names.index(k)
                del names[j], raws[j]
        return cls._of_lists(names, raws, prefix)

    @classmethod
    def of_reply(
        cls, reply: Any, prefix: bytes, marker: bytes, ignored: Iterable[bytes]
    ) -> StoredRegisters | None:
        """:meth:`of` for the ``HGETALL`` reply itself, if it holds ``marker``.

        Builds no dict of the fields: for a large key, that dict costs as much
        as everything else here. Gives ``None`` where :meth:`of` gives ``None``,
        and for a reply the caller must judge with its dict of the fields: one
        that is not a flat list of bytes in pairs, whose marker field (the
        first of ``ignored``) does not hold ``marker``, or that names one of
        ``ignored`` twice. (A register field named twice, which no real server
        sends, counts once for each time here, where the dict keeps the last.)
        """
        if type(reply) is not list or len(reply) & 1:
            return None
        names = reply[0::2]
        raws = reply[1::2]
        first = True
        for k in ignored:
            try:
                j = names.index(k)
            except ValueError:
                if first:
                    return None  # no marker
                continue
            if first and raws[j] != marker:
                return None
            first = False
            # A second one stays behind, and fails _of_lists' check of the
            # names: an ignored name is not the prefix's, nor its value a register.
            del names[j], raws[j]
        try:
            return cls._of_lists(names, raws, prefix)
        except TypeError:  # an element that is not bytes
            return None

    @classmethod
    def _of_lists(
        cls, names: list[bytes], raws: list[bytes], prefix: bytes
    ) -> StoredRegisters | None:
        """:meth:`of` once the names and values are listed, without the ignored fields.

        Raises:
            TypeError: A name or a value is not bytes (only :meth:`of_reply`
                can meet one).
        """
        n = len(names)
        joined = b"\x00".join(names)
        # No name holds a NUL, so NUL + prefix is found exactly where a name begins.
        if (
            not n
            or not joined.startswith(prefix)
            or joined.count(b"\x00") != n - 1
            or joined.count(b"\x00" + prefix) != n - 1
        ):
            return None
        registers, malformed = _decode_distinct(raws)
        if malformed:
            return None
        return cls(names, raws, registers, prefix, joined)  # type: ignore[arg-type]

    def state(self, cls: type[_L]) -> _L:
        """The state the type's parser builds from these fields."""
        values = map(self.registers.__getitem__, self.raws)
        return cls(dict(zip(_cut(self.names, self.prefix), values, strict=True)))

    def timestamps(self) -> set[int]:
        """What :meth:`LWWState.timestamps` gives for :meth:`state`."""
        return {e.ts for e in self.registers.values()}

    def has_expired(self, before: int) -> bool:
        """Whether a tombstone is older than ``before`` (:meth:`state` holds one)."""
        return any(e.deleted and e.ts < before for e in self.registers.values())

    def _live(self) -> tuple[list[bytes], list[bytes]]:
        """The live fields' names (with the prefix) and stored values."""
        dead = {raw for raw, e in self.registers.items() if e.deleted}
        if not dead:
            return self.names, self.raws
        alive = list(map(not_, map(dead.__contains__, self.raws)))
        return list(compress(self.names, alive)), list(compress(self.raws, alive))

    def live_names(self) -> Iterator[bytes]:
        """The live names without the prefix: :meth:`SetState.iter_members` of :meth:`state`."""
        return _cut(self._live()[0], self.prefix)

    def live_texts(self) -> set[str]:
        """:meth:`live_names`, each decoded as strict UTF-8, at C speed.

        Computed once (the registers are kept by the read cache, and read again):
        each call returns a new set.

        Raises:
            UnicodeDecodeError: A name is not UTF-8.
        """
        texts = self._texts
        if texts is None:
            names, _ = self._live()
            if not names:
                return set()
            joined = self._joined if names is self.names else b"\x00".join(names)
            # Every name begins with the (ASCII) prefix and holds no NUL: decoding the
            # whole and splitting at NUL + prefix decodes each name alone.
            sep = "\x00" + self.prefix.decode()
            texts = self._texts = frozenset(joined.decode()[len(self.prefix) :].split(sep))
        return set(texts)

    def live_payloads(self) -> list[tuple[bytes, bytes]]:
        """Name without the prefix to payload, for the live fields: :meth:`MapState.live`."""
        names, raws = self._live()
        registers = self.registers
        payloads = [registers[r].payload for r in raws]
        return list(zip(_cut(names, self.prefix), payloads, strict=True))


def merge_entries(a: Entry, b: Entry) -> Entry:
    """Return the winner of two registers under the one order (see the module doc)."""
    return a if a.order_key() >= b.order_key() else b


def cleared_by(entry: Entry, clear: Entry | None) -> bool:
    """Whether ``clear`` (a clear stamp) kills ``entry``: not larger in the one order.

    The clear stamp ``<ts>:<actor>:-`` acts as that tombstone written to every
    field at once, so a field loses to it exactly as it would lose to the
    tombstone: an earlier timestamp, or the same one from a smaller actor id, or
    the same actor and instant (a tombstone beats a value). The Lua merge
    script applies the very same comparison.
    """
    return clear is not None and entry.order_key() <= clear.order_key()


def is_clear_stamp(entry: Entry | None) -> bool:
    """Whether a register is a well-formed clear stamp: a tombstone, no payload."""
    return entry is not None and entry.deleted and not entry.payload


@dataclass(frozen=True, slots=True)
class CounterState:
    """A PN-counter: per-actor absolute totals of increments and decrements.

    A writer only ever raises its own totals, so merging by per-actor maximum
    never counts an increment twice, whatever the order, duplication or replay
    of the writes.

    Attributes:
        p: Actor id to total of increments (treat as read-only).
        n: Actor id to total of decrements (treat as read-only).
    """

    p: Mapping[bytes, int] = field(default_factory=dict)
    n: Mapping[bytes, int] = field(default_factory=dict)

    @property
    def value(self) -> int:
        """The counter's value, ``sum(P) - sum(N)``."""
        return sum(self.p.values()) - sum(self.n.values())

    def merge(self, other: CounterState) -> CounterState:
        """Return the least upper bound of two states (per-actor maxima)."""
        return CounterState(_max_merge(self.p, other.p), _max_merge(self.n, other.n))

    def __hash__(self) -> int:
        return hash((frozenset(self.p.items()), frozenset(self.n.items())))


def _max_merge(a: Mapping[bytes, int], b: Mapping[bytes, int]) -> dict[bytes, int]:
    out = dict(a)
    for k, v in b.items():
        if v > out.get(k, -1):
            out[k] = v
    return out


_L = TypeVar("_L", bound="LWWState")


@dataclass(frozen=True, slots=True)
class LWWState:
    """A map of last-writer-wins registers, keyed by stored name (base of map and set).

    A state is always normalised: the constructor drops every register that
    ``cleared`` kills, so equal states mean equal contents and the merge is a
    least upper bound (per-name maximum, and maximum of the clear stamps).

    Attributes:
        entries: Field name (or set member) to its register, tombstones
            included (treat as read-only).
        cleared: The clear stamp, ``None`` if the map was never cleared (or
            the stamp was purged): a tombstone register that kills every entry
            not larger than itself (:func:`cleared_by`).

    Raises:
        ValueError: ``cleared`` is not a tombstone without payload.
    """

    entries: Mapping[bytes, Entry] = field(default_factory=dict)
    cleared: Entry | None = None

    def __post_init__(self) -> None:
        c = self.cleared
        if c is None:
            return
        if not is_clear_stamp(c):
            raise ValueError(f"a clear stamp is a tombstone without payload, not {c!r}")
        key = c.order_key()
        if any(e.order_key() <= key for e in self.entries.values()):
            _set(self, "entries", {k: e for k, e in self.entries.items() if e.order_key() > key})

    def merge(self: _L, other: _L) -> _L:
        """Return the least upper bound of two states (per-name winner, later clear)."""
        if other is self or (other.entries is self.entries and other.cleared == self.cleared):
            return self
        out = dict(self.entries)
        for k, e in other.entries.items():
            mine = out.get(k)
            if mine is None:
                out[k] = e
            elif mine is not e and mine != e:
                out[k] = merge_entries(mine, e)
        a, b = self.cleared, other.cleared
        clear = b if a is None else a if b is None else merge_entries(a, b)
        return type(self)(out, clear)

    def timestamps(self) -> set[int]:
        """Every timestamp held, the clear stamp's included, for the clock to observe."""
        out = set(map(_ts_of, self.entries.values()))
        if self.cleared is not None:
            out.add(self.cleared.ts)
        return out

    def __hash__(self) -> int:
        return hash((frozenset(self.entries.items()), self.cleared))


@dataclass(frozen=True, slots=True, eq=True)
class MapState(LWWState):
    """A map of LWW registers: field name to encoded value or tombstone."""

    def live(self) -> dict[bytes, bytes]:
        """The fields that exist, name to encoded payload."""
        entries = self.entries
        live = compress(entries.items(), map(not_, map(_deleted_of, entries.values())))
        return {k: e.payload for k, e in live}

    __hash__ = LWWState.__hash__


@dataclass(frozen=True, slots=True, eq=True)
class SetState(LWWState):
    """An LWW-element set: member to its last add or remove."""

    def members(self) -> set[bytes]:
        """The members present (last operation an add)."""
        return set(self.iter_members())

    def iter_members(self) -> Iterator[bytes]:
        """The members present, one by one (each once)."""
        entries = self.entries
        return compress(entries, map(not_, map(_deleted_of, entries.values())))

    __hash__ = LWWState.__hash__


class _Clock(Protocol):
    def observe(self, ts: int, /) -> None: ...


def observe_all(clock: _Clock, state: LWWState) -> None:
    """Let ``clock`` observe every timestamp of ``state``.

    Each one, not just the largest: the clock ignores a timestamp beyond its
    skew bound, and the largest plausible one must still pull it forward.
    """
    for ts in state.timestamps():
        clock.observe(ts)


class Mergeable(Protocol):
    """What every state type offers: a merge with another state of its type."""

    def merge(self: _M, other: _M, /) -> _M: ...


_M = TypeVar("_M", bound=Mergeable)


def merge_all(states: Iterable[_M], empty: _M) -> _M:
    """Fold ``merge`` over ``states``; ``empty`` if there are none.

    Replicas in agreement are often the very same parsed object: merging one
    with itself is skipped.
    """
    out: _M | None = None
    for s in states:
        if out is None:
            out = s
        elif s is not out:
            out = out.merge(s)
    return empty if out is None else out
