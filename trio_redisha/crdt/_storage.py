"""How each CRDT state is stored in a Redis hash, and the registry of types.

Every CRDT key is a Redis HASH that describes itself: the field
``__redisha__`` holds ``<type>:<format version>`` (``counter:1``, ``map:1``,
``set:1``), and the other fields hold the state:

=========  ==================  ==============================================
type       field               value
=========  ==================  ==============================================
counter    ``p:<actor>``       total of the actor's increments (decimal)
counter    ``n:<actor>``       total of the actor's decrements (decimal)
map        ``f:<name>``        ``<ts>:<actor>:+<encoded value>`` or a
                               tombstone ``<ts>:<actor>:-``
map        ``c:``              the clear stamp ``<ts>:<actor>:-`` (at most
                               one; absent if never cleared)
set        ``m:<member>``      ``<ts>:<actor>:+`` (added) or ``<ts>:<actor>:-``
                               (removed)
=========  ==================  ==============================================

The clear stamp (:data:`CLEAR_FIELD`, written by
:meth:`~trio_redisha.HashMap.clear`) kills every register not larger than
itself in the one order (:func:`~trio_redisha.crdt._state.cleared_by`): the
parsers drop such registers, and the merge script refuses them and deletes
them physically when it stores a later clear stamp. The field is part of the
``map:1`` format (and understood in ``set:1`` hashes too, which share the
script); anything in it other than a well-formed ``<ts>:<actor>:-`` is
malformed and treated as absent.

Every script that changes a hash also keeps, in the same atomic step, the
field :data:`DIGEST_FIELD`: the digest of the key's whole stored state (every
other field, marker, tombstones and clear stamp included), the sum modulo
2**52 of a 52-bit hash of each field and its value (:func:`state_digest`), so
it is moved by delta as fields change and is equal on two servers exactly when
their stored hashes are (but for a hash collision: a chance of 2**-52 per
comparison).
The parsers and :func:`detect_type` never look at it, and a hash written
before digests existed simply lacks it.

So given nothing but a key's ``HGETALL`` from several servers, a repair walker
can tell the type (:func:`detect_type`), merge and write back; see
:func:`trio_redisha.crdt.repair_key`. Malformed values and unknown fields are
ignored by the parsers here and treated as absent (lower than anything) by the
scripts, so they never make replicas look different from each other.

This module also holds the Python twins of the Lua scripts
(:func:`apply_counter_fields`, :func:`apply_lww_fields`), used by the tests to
check that the server and the client agree on every input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ..exceptions import ConfigurationError, ForeignValueError, ProtocolError
from ..scripts import Script
from ._scripts import COUNTER_MERGE, LWW_MERGE, MARKERS
from ._state import (
    CounterState,
    Entry,
    MapState,
    Mergeable,
    SetState,
    cleared_by,
    is_clear_stamp,
    parse_total,
)

__all__ = [
    "CLEAR_FIELD",
    "COUNTER",
    "DIGEST_FIELD",
    "MAP",
    "MARKER_FIELD",
    "REGISTRY",
    "SET",
    "ZERO_DIGEST",
    "CRDTType",
    "apply_counter_fields",
    "apply_lww_fields",
    "apply_purge_fields",
    "check_key",
    "check_marker",
    "detect_type",
    "entry_digest",
    "field_hash",
    "hash_fields",
    "hash_pack",
    "marker_error",
    "script_argv",
    "segment_digest",
    "state_digest",
]

#: The field that marks a hash as a trio-redisha CRDT: ``<type>:<version>``.
MARKER_FIELD = b"__redisha__"
#: Keys starting with this are the library's own (see :func:`check_key`).
RESERVED_PREFIX: Final = b"__redisha__:"
#: The field of a map's (or set's) clear stamp, ``<ts>:<actor>:-``.
CLEAR_FIELD = b"c:"
#: The field holding the digest of the rest of the hash (16 hex digits).
DIGEST_FIELD = b"__redisha_digest__"
#: The digest of nothing (an absent key, an empty segment).
ZERO_DIGEST = b"0" * 16

Fields = list[tuple[bytes, bytes]]
S = TypeVar("S", bound=Mergeable)


def hash_fields(reply: Any) -> dict[bytes, bytes]:
    """Turn an ``HGETALL`` reply (RESP2 flat list or RESP3 map) into a dict.

    Raises:
        ProtocolError: The reply is not a list of pairs or a map of bytes.
    """
    if type(reply) is list and len(reply) % 2 == 0 and all(type(x) is bytes for x in reply):
        it = iter(reply)
        return dict(zip(it, it, strict=True))  # the common case, at C speed
    if isinstance(reply, Mapping):
        items: Iterable[tuple[Any, Any]] = reply.items()
    elif isinstance(reply, list) and len(reply) % 2 == 0:
        items = zip(reply[0::2], reply[1::2], strict=True)
    else:
        raise ProtocolError(f"not an HGETALL reply: {reply!r}")
    out: dict[bytes, bytes] = {}
    for k, v in items:
        if isinstance(k, str):
            k = k.encode()
        if isinstance(v, str):
            v = v.encode()
        if not isinstance(k, bytes) or not isinstance(v, bytes):
            raise ProtocolError(f"not an HGETALL reply: {reply!r}")
        out[k] = v
    return out


def check_key(key: object) -> bytes:
    """Return a Redis key as sent, or raise if it cannot be one.

    Text is sent as UTF-8, strictly: a lone surrogate (``"\\udcff"``, as
    ``json.loads`` or ``os.fsdecode`` produce) is refused here, before anything
    is sent, rather than failing half-way through a command.

    Keys starting with :data:`RESERVED_PREFIX` are the library's own (the
    digest tree's hashes): the walker never repairs them, so none may be a
    CRDT's key.

    Raises:
        ConfigurationError: ``key`` is not a non-empty str or bytes, is not
            valid UTF-8 text, or starts with :data:`RESERVED_PREFIX`.
    """
    if isinstance(key, bytes) and key:
        out = key
    elif isinstance(key, str) and key:
        try:
            out = key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError(f"key {key!r} is not valid UTF-8 text: {exc.reason}") from None
    else:
        raise ConfigurationError(f"key must be a non-empty str or bytes, got {key!r}")
    if out.startswith(RESERVED_PREFIX):
        raise ConfigurationError(
            f"key {key!r}: keys starting with {RESERVED_PREFIX.decode()!r} are reserved "
            "for the library's digest tree"
        )
    return out


def _prefixed(fields: Mapping[bytes, bytes], prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
    n = len(prefix)
    for k, v in fields.items():
        if k.startswith(prefix):
            yield k[n:], v


# --- counter -----------------------------------------------------------------


def _counter_parse(fields: Mapping[bytes, bytes]) -> CounterState:
    p: dict[bytes, int] = {}
    n: dict[bytes, int] = {}
    sides = {b"p:": p, b"n:": n}
    for name, raw in fields.items():  # one pass: every read of a counter comes here
        side = sides.get(name[:2])
        if side is not None and len(name) > 2:
            total = parse_total(raw)
            if total is not None:
                side[name[2:]] = total
    return CounterState(p, n)


def _counter_fields(state: CounterState) -> Fields:
    return [(b"p:" + a, b"%d" % t) for a, t in sorted(state.p.items())] + [
        (b"n:" + a, b"%d" % t) for a, t in sorted(state.n.items())
    ]


def _counter_needs(replica: CounterState, merged: CounterState, purge_before: int) -> Fields:
    if replica is merged:
        return []
    return [
        (b"%b:%b" % (side, a), b"%d" % t)
        for side, mine, theirs in ((b"p", replica.p, merged.p), (b"n", replica.n, merged.n))
        for a, t in sorted(theirs.items())
        if mine.get(a, -1) < t
    ]


def _counter_expired(state: CounterState, before: int) -> Fields:
    return []


# --- maps and sets -----------------------------------------------------------

_L = TypeVar("_L", MapState, SetState)


def _clear_stamp(raw: bytes | None) -> Entry | None:
    """The clear stamp stored as ``raw``, or ``None`` if absent or malformed."""
    if raw is None:
        return None
    e = Entry.decode(raw)
    return e if is_clear_stamp(e) else None


def _lww_parser(prefix: bytes, cls: type[_L]) -> Callable[[Mapping[bytes, bytes]], _L]:
    def parse(fields: Mapping[bytes, bytes]) -> _L:
        entries: dict[bytes, Entry] = {}
        for name, raw in _prefixed(fields, prefix):
            e = Entry.decode(raw)
            if e is not None:
                entries[name] = e
        return cls(entries, _clear_stamp(fields.get(CLEAR_FIELD)))

    return parse


def _lww_fielder(prefix: bytes) -> Callable[[Any], Fields]:
    def fields(state: MapState | SetState) -> Fields:
        out = [(prefix + k, e.encode()) for k, e in state.entries.items()]
        if state.cleared is not None:
            out.append((CLEAR_FIELD, state.cleared.encode()))
        out.sort()
        return out

    return fields


def _lww_needer(prefix: bytes) -> Callable[[Any, Any, int], Fields]:
    def needs(
        replica: MapState | SetState, merged: MapState | SetState, purge_before: int
    ) -> Fields:
        if replica is merged:
            return []
        out: Fields = []
        clear = merged.cleared
        # Like a field's tombstone (below): a clear stamp past its grace is not
        # sent to a replica that never had one and holds nothing it kills; a
        # replica holding something it kills, or an older clear stamp, gets it
        # (and the script then deletes what it kills).
        if (
            clear is not None
            and replica.cleared != clear
            and (
                replica.cleared is not None
                or clear.ts >= purge_before
                or any(cleared_by(e, clear) for e in replica.entries.values())
            )
        ):
            out.append((CLEAR_FIELD, clear.encode()))
        for k, e in merged.entries.items():
            mine = replica.entries.get(k)
            if mine == e:
                continue
            # A tombstone past its grace is being purged: a replica that no
            # longer has the field is not behind (else purge and repair would
            # chase each other forever). One that still holds an older value
            # is behind, and gets the tombstone so the value cannot come back.
            if mine is None and e.deleted and e.ts < purge_before:
                continue
            out.append((prefix + k, e.encode()))
        out.sort()
        return out

    return needs


def _lww_expirer(prefix: bytes) -> Callable[[Any, int], Fields]:
    def expired(state: MapState | SetState, before: int) -> Fields:
        out = [
            (prefix + k, e.encode())
            for k, e in state.entries.items()
            if e.deleted and e.ts < before
        ]
        if state.cleared is not None and state.cleared.ts < before:
            out.append((CLEAR_FIELD, state.cleared.encode()))
        out.sort()
        return out

    return expired


@dataclass(frozen=True, slots=True)
class CRDTType(Generic[S]):
    """What a repair walker needs to know about one stored CRDT type.

    Attributes:
        name: ``"counter"``, ``"map"`` or ``"set"``.
        marker: The value of the marker field, ``<name>:<version>``.
        empty: The state of an absent key.
        script: The merge script that writes fields of this type.
        parse: Stored fields (marker included) to state; ignores what it
            does not recognise.
        fields: State to the fields that store it.
        needs: ``needs(replica, merged, purge_before)``: the fields a replica
            holding ``replica`` must be sent to reach ``merged``; empty exactly
            when it is up to date.
        expired: ``expired(state, before)``: tombstones older than ``before``
            (microseconds), as fields with their exact stored value.
    """

    name: str
    marker: bytes
    empty: S
    script: Script
    parse: Callable[[Mapping[bytes, bytes]], S]
    fields: Callable[[S], Fields]
    needs: Callable[[S, S, int], Fields]
    expired: Callable[[S, int], Fields]


COUNTER: CRDTType[CounterState] = CRDTType(
    "counter",
    b"counter:1",
    CounterState(),
    COUNTER_MERGE,
    _counter_parse,
    _counter_fields,
    _counter_needs,
    _counter_expired,
)
MAP: CRDTType[MapState] = CRDTType(
    "map",
    b"map:1",
    MapState(),
    LWW_MERGE,
    _lww_parser(b"f:", MapState),
    _lww_fielder(b"f:"),
    _lww_needer(b"f:"),
    _lww_expirer(b"f:"),
)
SET: CRDTType[SetState] = CRDTType(
    "set",
    b"set:1",
    SetState(),
    LWW_MERGE,
    _lww_parser(b"m:", SetState),
    _lww_fielder(b"m:"),
    _lww_needer(b"m:"),
    _lww_expirer(b"m:"),
)

#: Marker value to type, for everything a repair walker may meet.
REGISTRY: dict[bytes, CRDTType[Any]] = {t.marker: t for t in (COUNTER, MAP, SET)}
if set(REGISTRY) != set(MARKERS):  # pragma: no cover - the scripts' list is kept by hand
    raise ImportError("the scripts' MARKERS are not the types' markers")


def detect_type(raw_hash: Any) -> str | None:
    """Tell which CRDT type a stored hash is, from its data alone.

    Args:
        raw_hash: A key's ``HGETALL`` reply (flat list or map) or a dict of
            its fields.

    Returns:
        ``"counter"``, ``"map"`` or ``"set"``; ``None`` if the hash has no
        trio-redisha marker or one of an unknown type or format version (not
        ours to merge), or is empty (no key).
    """
    marker = hash_fields(raw_hash).get(MARKER_FIELD)
    t = None if marker is None else REGISTRY.get(marker)
    return None if t is None else t.name


def marker_error(key: str | bytes, marker: bytes | None, expected: str) -> ForeignValueError:
    """The error for a hash whose marker is ``marker`` where ``expected`` was wanted."""
    if marker is None:
        why = "a hash without the trio-redisha marker"
    else:
        why = f"a hash marked {marker.decode(errors='replace')!r}"
    return ForeignValueError(f"key {key!r} holds {why}, not {expected}; left untouched", key=key)


def check_marker(fields: Mapping[bytes, bytes], kind: CRDTType[Any], key: str | bytes) -> None:
    """Raise :class:`ForeignValueError` unless ``fields`` is absent or ours of ``kind``."""
    if not fields:
        return
    marker = fields.get(MARKER_FIELD)
    if marker != kind.marker:
        raise marker_error(key, marker, f"a {kind.marker.decode()}")


# --- digests -----------------------------------------------------------------


#: Digests are sums modulo this (Lua numbers hold 52-bit integers exactly).
_DIGEST_MOD = 1 << 52


_NULS: Final = [b"\0" * i for i in range(64)]


def _hash_hex(name: bytes, value: bytes) -> str:
    """:func:`field_hash` as the scripts cut it from ``sha1hex``: 13 hex digits."""
    head = b"%d:" % len(name)
    data = _NULS[(55 - len(head) - len(name) - len(value)) % 64] + head + name + value
    return hashlib.sha1(data).hexdigest()[:13]


def field_hash(name: bytes, value: bytes) -> int:
    """The 52-bit hash of one stored field, as the scripts compute it.

    The first 52 bits of SHA-1 of ``<len(name)>:<name><value>``, with NUL
    bytes in front to bring the length to 55 modulo 64 (Redis's SHA-1 then
    needs no padding block of its own). The length prefix makes the split
    between name and value unambiguous, and the NULs are unambiguous too: the
    length starts with a digit.
    """
    return int(_hash_hex(name, value), 16)


def hash_pack(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The pack a write script takes after its pairs: each pair's :func:`field_hash`.

    13 hex digits a pair (52 bits), in order. With it, a script hashes only
    the stored values it replaces or deletes, not the ones it is sent: SHA-1
    in Lua costs a server about a microsecond a field (string building
    included), ``hashlib`` the client about 0.9 us, once for all servers. A
    script ignores a pack of the wrong length, and hashes itself a pair whose
    slot is not hex.
    """
    return "".join([_hash_hex(f, v) for f, v in fields]).encode()


# Whether script_argv() sends the pack: off only in benchmarks/bench_crdt.py,
# to measure the same build without digests.
_packs_enabled = True

#: The fewest fields a write sends its pack with. Below, hashing on the client
#: cost more throughput than the servers' saving won back, on 2 cores shared
#: by the client and 3 servers (4 fields: 0.90-0.94x with the pack; 16 fields:
#: 0.98x sequential, 1.12x with 50 tasks; 250 fields: 0.70x the servers' time).
PACK_MIN_FIELDS: Final = 16


def script_argv(head: Iterable[Any], fields: Iterable[tuple[bytes, bytes]]) -> list[Any]:
    """A write script's ``ARGV``: ``head`` (marker, expiry), the pairs flat, and
    their pack if there are :data:`PACK_MIN_FIELDS` of them or more."""
    out: list[Any] = list(head)
    pairs = list(fields)
    for f, v in pairs:
        out.append(f)
        out.append(v)
    if _packs_enabled and len(pairs) >= PACK_MIN_FIELDS:
        out.append(hash_pack(pairs))
    return out


def state_digest(fields: Mapping[bytes, bytes]) -> bytes:
    """The digest of a stored hash: the sum of :func:`field_hash` over its fields.

    Modulo 2**52, as 16 hex digits. :data:`DIGEST_FIELD` itself is left out;
    the result is what the scripts store in it (an empty hash gives
    :data:`ZERO_DIGEST`). A sum is as order-free as a XOR and moved by delta
    as easily (out with the old field's hash, in with the new one's).
    """
    d = 0
    for k, v in fields.items():
        if k != DIGEST_FIELD:
            d += field_hash(k, v)
    return b"%016x" % (d % _DIGEST_MOD)


def entry_digest(key: bytes, digest: bytes) -> int:
    """What one key adds to its segment's digest: SHA-1 of the key and its digest, truncated.

    Not the digest itself: the segment digest XORs these, and keys holding the
    same state must not cancel out.
    """
    return int.from_bytes(hashlib.sha1(key + digest).digest()[:8], "big")


def segment_digest(index: Mapping[bytes, bytes]) -> bytes:
    """A segment's digest from its index (key to digest), as the ``SEGMENTS`` script computes it."""
    d = 0
    for k, v in index.items():
        d ^= entry_digest(k, v)
    return b"%016x" % d


def _with_digest(out: dict[bytes, bytes]) -> dict[bytes, bytes]:
    out.pop(DIGEST_FIELD, None)
    out[DIGEST_FIELD] = state_digest(out)
    return out


# --- the Python twins of the scripts ----------------------------------------


def _foreign(stored: Mapping[bytes, bytes], marker: bytes) -> bool:
    return bool(stored) and stored.get(MARKER_FIELD) != marker


def apply_counter_fields(
    stored: Mapping[bytes, bytes], marker: bytes, incoming: Fields
) -> tuple[dict[bytes, bytes], list[bytes]] | None:
    """What :data:`COUNTER_MERGE` does to a hash: ``(new hash, reply)``, or ``None`` if foreign."""
    if _foreign(stored, marker):
        return None
    out = dict(stored)
    out[MARKER_FIELD] = marker
    reply: list[bytes] = []
    for f, v in incoming:
        cur = out.get(f)
        new = parse_total(v)
        old = None if cur is None else parse_total(cur)
        if new is not None and (old is None or new > old):
            out[f] = cur = v
        reply.append(b"0" if cur is None else cur)
    return _with_digest(out), reply


def apply_lww_fields(
    stored: Mapping[bytes, bytes], marker: bytes, incoming: Fields
) -> dict[bytes, bytes] | None:
    """What :data:`LWW_MERGE` does to a hash: the new hash, or ``None`` if foreign.

    Each incoming register replaces the stored one of its field only if it is
    larger in the one order and not killed by the stored clear stamp. An
    incoming clear stamp (field :data:`CLEAR_FIELD`) larger than the stored one
    replaces it, and then every other field whose value is a register it kills
    is deleted.
    """
    if _foreign(stored, marker):
        return None
    out = dict(stored)
    out[MARKER_FIELD] = marker
    clear = _clear_stamp(out.get(CLEAR_FIELD))
    for f, v in incoming:
        new = Entry.decode(v)
        if new is None:
            continue
        if f == CLEAR_FIELD:
            if not is_clear_stamp(new) or (
                clear is not None and new.order_key() <= clear.order_key()
            ):
                continue
            out[f] = v
            clear = new
            for g, raw in list(out.items()):
                if g in (MARKER_FIELD, CLEAR_FIELD, DIGEST_FIELD):
                    continue
                old = Entry.decode(raw)
                if old is not None and cleared_by(old, clear):
                    del out[g]
            continue
        if cleared_by(new, clear):
            continue
        cur = out.get(f)
        old = None if cur is None else Entry.decode(cur)
        if old is None or new.order_key() > old.order_key():
            out[f] = v
    return _with_digest(out)


def apply_purge_fields(
    stored: Mapping[bytes, bytes], marker: bytes, exact: Fields
) -> tuple[dict[bytes, bytes], int] | None:
    """What :data:`PURGE` does to a hash: ``(new hash, fields deleted)``, or ``None`` if foreign.

    The new hash is empty when the key is deleted (nothing left but its marker).
    """
    if not stored:
        return {}, 0
    if _foreign(stored, marker):
        return None
    out = dict(stored)
    n = 0
    for f, v in exact:
        if f not in (DIGEST_FIELD, MARKER_FIELD) and out.get(f) == v:
            del out[f]
            n += 1
    if len(out) - (DIGEST_FIELD in out) <= 1:
        return {}, n
    return _with_digest(out), n
