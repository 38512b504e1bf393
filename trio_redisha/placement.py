"""Placement: which N of the pool's M servers hold a key, and in what order.

The unit of placement is one of Redis Cluster's 16,384 hash slots, here called a
*partition*: ``partition(key)`` is exactly ``CLUSTER KEYSLOT key`` (CRC16/XMODEM of
the key, or of its hash tag, modulo 16,384), so keys that share a hash tag
(``{user42}:cart``, ``{user42}:profile``) share a partition and therefore owners.

Each partition ranks every server by rendezvous (highest random weight) hashing:
the weight of server *s* for partition *p* is a pseudo-random 64-bit number drawn
from SHAKE-256 of the server's canonical identity (the 8 bytes at offset 8·p of its
output stream). A partition's *preference order* is the servers by decreasing
weight; its first N are the *owners*, the rest the *fallbacks* that a sloppy
quorum walks to, in order. Why this scheme rather than a ring:

* It is a function of the server list alone: no token assignment to store,
  agree on or gossip. Every process that is given the same servers, in any order
  and any spelling of their URLs, computes the same table.
* Movement is minimal by construction: adding a server changes a partition's
  owners only where the new server's weight enters its top N (N/(M+1) of the
  partitions, 1/(M+1) of the placements: the ideal), and removing one only where it was an
  owner, where the next server in that partition's order steps in and the
  others keep their ranks.
* Balance comes from 16,384 independent draws per server, not from tuning a
  number of virtual nodes; and owners are N distinct servers by construction,
  where a ring must skip the virtual nodes of servers already chosen.
* Whole partitions move, repair and get compared (Dynamo's "strategy 3", Riak's
  ring partitions): anti-entropy can compare one digest per partition.

The whole table (every partition's owners) is computed once per placement, so
finding a key's owners costs one CRC16 and one list index. Fallbacks beyond the
owners are ranked on demand and cached per partition.

Canonical identities (what the weights are drawn from) ignore what does not
change which data a server holds, and keep what does:

* the scheme is ignored (``redis://`` and ``rediss://`` to the same host and port
  are the same server, so turning TLS on moves nothing), as are credentials,
  the RESP protocol, the client name and every other query option;
* the port is explicit (6379 when the URL has none);
* the database number is kept (``/0`` and no path are the same; ``/1`` is
  another data set, so another server for placement);
* host names are lower-cased with any trailing dot removed, IP literals are
  written in their canonical form (``[0:0::1]`` is ``::1``), and ``localhost``
  is ``127.0.0.1`` (RFC 6761 reserves the name for loopback, and Redis binds
  127.0.0.1 by default). No other name is resolved: DNS answers differ between
  processes and over time, and a name is what lets a server move to a new
  address without moving its keys;
* a Unix socket is its normalised path (``os.path.normpath``, no symlinks
  followed).

Two servers with the same identity are refused: they would be one server
counted twice.

This module is pure and synchronous: no I/O, no trio.
"""

from __future__ import annotations

import binascii
import hashlib
import ipaddress
import os.path
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ._commands import command_keys, pattern_keys
from .config import ServerSpec, parse_server
from .exceptions import CommandEncodeError, ConfigurationError, CrossSlotError

__all__ = [
    "PARTITIONS",
    "Placement",
    "Targets",
    "canonical_identity",
    "command_partition",
    "key_partition",
    "keys_partition",
    "moved_fraction",
    "read_targets",
    "route",
    "write_targets",
]

#: The number of partitions: Redis Cluster's hash slots, so that a partition is
#: what ``CLUSTER KEYSLOT`` reports and hash tags work as users know them.
PARTITIONS: Final = 16384
_SLOT_MASK: Final = PARTITIONS - 1
# Domain separation for the weights: a new scheme gets a new tag, so two
# versions can never silently agree on some partitions and not on others.
_WEIGHT_TAG: Final = b"trio-redisha placement v1\x00"


def _key_bytes(key: str | bytes) -> bytes:
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        try:
            return str(key).encode()
        except UnicodeEncodeError as exc:  # a lone surrogate: no key can be sent as it
            raise CommandEncodeError(f"key {key!r} is not valid UTF-8 text: {exc.reason}") from None
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise CommandEncodeError(f"a key is str or bytes, got {type(key).__name__}")


def key_partition(key: str | bytes) -> int:
    """Return the key's partition: its Redis Cluster hash slot.

    Redis's rule exactly: if the key holds a ``{`` followed later by a ``}``
    with at least one byte between the first ``{`` and the first ``}`` after it,
    only those bytes are hashed; otherwise the whole key is (``{}x`` and ``{}{a}``
    hash whole). ``str`` keys are hashed as UTF-8, as they are sent.

    Args:
        key: The key.

    Returns:
        ``CRC16/XMODEM(hashed part) mod 16384``.
    """
    data = key if type(key) is bytes else _key_bytes(key)
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) & _SLOT_MASK


def canonical_identity(server: str | tuple[str, int] | ServerSpec) -> str:
    """Return the server's placement identity (see the module notes).

    Args:
        server: A URL, a ``(host, port)`` tuple or a :class:`ServerSpec`.

    Returns:
        ``host:port/db`` (``[v6]:port/db`` for IPv6), or ``unix:path/db``.

    Raises:
        ConfigurationError: The address is malformed.
    """
    spec = server if isinstance(server, ServerSpec) else parse_server(server)
    if spec.path is not None:
        return f"unix:{os.path.normpath(spec.path)}/{spec.db}"
    host = (spec.host or "").lower().rstrip(".")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        host = f"[{addr.compressed}]" if addr.version == 6 else addr.compressed
    return f"{host}:{spec.port}/{spec.db}"


def _weights(identity: str) -> array[int]:
    """One 64-bit weight per partition for this server, from one SHAKE-256 stream."""
    stream = hashlib.shake_256(_WEIGHT_TAG + identity.encode()).digest(8 * PARTITIONS)
    weights = array("Q")
    weights.frombytes(stream)
    if sys.byteorder != "little":  # the stream is read as little-endian everywhere
        weights.byteswap()
    return weights


class Placement:
    """Where each key lives: N of M servers per partition, in preference order.

    Server indices are positions in the list as given (the pool's order); the
    placement itself depends only on the set of canonical identities.

    Args:
        servers: The servers: URLs, ``(host, port)`` tuples or specs.
        replicas: N, how many distinct servers hold each key (1..M).

    Raises:
        ConfigurationError: ``replicas`` is out of range, a server address is
            malformed, or two servers have the same identity.

    Attributes:
        labels: Each server's label (its URL without credentials), as given.
        identities: Each server's canonical identity, in the same order.
        replicas: N.
    """

    __slots__ = (
        "_fallbacks",
        "_owners",
        "_rank_to_index",
        "_weights",
        "identities",
        "labels",
        "replicas",
    )

    def __init__(
        self, servers: Sequence[str | tuple[str, int] | ServerSpec], replicas: int
    ) -> None:
        specs = [s if isinstance(s, ServerSpec) else parse_server(s) for s in servers]
        if not specs:
            raise ConfigurationError("a placement needs at least one server")
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise ConfigurationError(f"replicas must be an int, got {replicas!r}")
        if not 1 <= replicas <= len(specs):
            raise ConfigurationError(
                f"replicas must be in 1..{len(specs)} (the number of servers), got {replicas}"
            )
        self.labels: tuple[str, ...] = tuple(s.label for s in specs)
        self.identities: tuple[str, ...] = tuple(canonical_identity(s) for s in specs)
        self.replicas: int = replicas
        seen: dict[str, int] = {}
        for index, ident in enumerate(self.identities):
            if ident in seen:
                raise ConfigurationError(
                    f"{self.labels[seen[ident]]} and {self.labels[index]} are the same "
                    f"server ({ident}); give each server once"
                )
            seen[ident] = index
        # Rank the servers by identity, so that equal weights (never seen in
        # practice, but possible) are broken the same way whatever the given order.
        by_identity = sorted(range(len(specs)), key=self.identities.__getitem__)
        self._weights = [_weights(self.identities[i]) for i in by_identity]
        order = range(len(by_identity))
        top = replicas
        # sorted(reverse=True) is stable: equal weights keep identity order.
        self._owners: list[tuple[int, ...]] = [
            tuple(by_identity[r] for r in sorted(order, key=col.__getitem__, reverse=True)[:top])
            for col in zip(*self._weights, strict=True)
        ]
        self._fallbacks: dict[int, tuple[int, ...]] = {}
        self._rank_to_index = by_identity

    # ------------------------------------------------------------------ keys

    @staticmethod
    def partition(key: str | bytes) -> int:
        """Return the key's partition (its Redis Cluster hash slot)."""
        return key_partition(key)

    def owners(self, key: str | bytes) -> tuple[int, ...]:
        """Return the indices of the key's N owners, in preference order."""
        return self._owners[key_partition(key)]

    def preference(self, key: str | bytes) -> tuple[int, ...]:
        """Return every server index in the key's preference order: owners, then fallbacks."""
        return self.preference_of_partition(key_partition(key))

    # ------------------------------------------------------------ partitions

    def owners_of_partition(self, partition: int) -> tuple[int, ...]:
        """Return the indices of the partition's N owners, in preference order.

        Raises:
            IndexError: ``partition`` is not an int in ``0..PARTITIONS - 1``.
        """
        return self._owners[_partition(partition)]

    def preference_of_partition(self, partition: int) -> tuple[int, ...]:
        """Return every server index in the partition's preference order.

        Raises:
            IndexError: ``partition`` is not an int in ``0..PARTITIONS - 1``.
        """
        order = self._fallbacks.get(partition)
        if order is None:
            _partition(partition)
            weights = [w[partition] for w in self._weights]
            ranked = sorted(range(len(weights)), key=weights.__getitem__, reverse=True)
            order = tuple(self._rank_to_index[r] for r in ranked)
            self._fallbacks[partition] = order
        return order

    def index_of(self, server: str | tuple[str, int] | ServerSpec) -> int:
        """Return the index of a server, given in any spelling of its address.

        Raises:
            KeyError: The server is not in this placement.
            ConfigurationError: The address is malformed.
        """
        identity = canonical_identity(server)
        try:
            return self.identities.index(identity)
        except ValueError:
            raise KeyError(f"{identity} is not a server of this placement") from None

    def partitions_of(self, server: int) -> list[int]:
        """Return the partitions that the server (an index) owns, in ascending order.

        Raises:
            IndexError: ``server`` is not an int in ``0..len(labels) - 1``.
        """
        if type(server) is not int or not 0 <= server < len(self.labels):
            raise IndexError(f"server {server!r} is not in 0..{len(self.labels) - 1}")
        return [p for p, owners in enumerate(self._owners) if server in owners]

    def owner_labels(self, partition: int) -> tuple[str, ...]:
        """Return the labels of the partition's owners, in preference order.

        Raises:
            IndexError: ``partition`` is not an int in ``0..PARTITIONS - 1``.
        """
        labels = self.labels
        return tuple(labels[i] for i in self._owners[_partition(partition)])

    def owner_identities(self, partition: int) -> tuple[str, ...]:
        """Return the canonical identities of the partition's owners, in preference order.

        Raises:
            IndexError: ``partition`` is not an int in ``0..PARTITIONS - 1``.
        """
        idents = self.identities
        return tuple(idents[i] for i in self._owners[_partition(partition)])

    def changed_partitions(self, other: Placement) -> list[int]:
        """Return the partitions whose owners (as a set of servers) differ in ``other``.

        Servers are compared by identity, so the two placements may list them
        in different orders or spellings. A partition whose owners only swapped
        ranks holds the same data and is not counted.
        """
        mine, theirs = self.identities, other.identities
        return [
            p
            for p, (a, b) in enumerate(zip(self._owners, other._owners, strict=True))
            if {mine[i] for i in a} != {theirs[i] for i in b}
        ]

    def __repr__(self) -> str:
        return f"<Placement replicas={self.replicas} of {len(self.labels)} servers>"


def _partition(partition: object) -> int:
    """``partition`` if it is a partition number (a negative one is no index from the end).

    Raises:
        IndexError: It is not an int in ``0..PARTITIONS - 1``.
    """
    if type(partition) is not int or not 0 <= partition < PARTITIONS:
        raise IndexError(f"partition {partition!r} is not in 0..{PARTITIONS - 1}")
    return partition


def moved_fraction(old: Placement, new: Placement) -> float:
    """Return the fraction of ``new``'s placements (partition, owner) that ``old`` lacks.

    Each partition has N placements; a placement is *moved* when its server did
    not own the partition before, so its data must be copied there. Adding one
    server to M moves 1/(M+1) of them at best (the new server's share); removing
    one moves what it held, 1/M.
    """
    moved = 0
    for p in range(PARTITIONS):
        before = set(old.owner_identities(p))
        moved += sum(1 for ident in new.owner_identities(p) if ident not in before)
    return moved / (PARTITIONS * new.replicas)


# ------------------------------------------------------------------ routing


def command_partition(
    placement: Placement, args: Sequence[object], previous: Placement | None = None
) -> int | None:
    """Return the partition a command goes to, or None for a keyless command.

    Every key of a multi-key command must have the same owners, in the same
    order, as the first key (keys in one partition always do; keys in
    different partitions may by chance, and then may stop doing so when the
    servers change: a hash tag is the reliable way). During a migration the
    keys must also share their owners in ``previous``.

    Args:
        placement: The placement the command is routed by.
        args: The command: its name and its arguments.
        previous: The layout being moved away from, if any.

    Returns:
        The first key's partition; None when the command has no keys (it goes
        to every server).

    Raises:
        CrossSlotError: The keys do not all share their owners; nothing is sent.
        UnsupportedCommand: The command's keys cannot be found (see
            ``command_keys``).
    """
    keys = command_keys(args)
    if not keys:
        return None
    return keys_partition(placement, [*keys, *pattern_keys(args)], args[0], previous)


def keys_partition(
    placement: Placement,
    keys: Sequence[bytes],
    name: object,
    previous: Placement | None = None,
) -> int:
    """Return the partition of a command's keys (at least one), as :func:`command_partition`.

    For a caller that already has the keys (the pool looks up hints by key).

    Args:
        placement: The placement the command is routed by.
        keys: The command's keys, as :func:`~trio_redisha._commands.command_keys` gives them.
        name: The command's name, for the error message.
        previous: The layout being moved away from, if any.

    Raises:
        CrossSlotError: The keys do not all share their owners; nothing is sent.
    """
    first = key_partition(keys[0])
    if len(keys) == 1:
        return first
    table = placement._owners
    old = previous._owners if previous is not None else None
    for position, key in enumerate(keys[1:], start=2):
        p = key_partition(key)
        if p == first:
            continue
        if table[p] != table[first]:
            layout = ""
        elif old is not None and old[p] != old[first]:
            layout = " in the previous layout"
        else:
            continue
        text = (
            bytes(name).decode("latin-1")
            if isinstance(name, (bytes, bytearray, memoryview))
            else str(name)
        ).upper()
        raise CrossSlotError(
            f"{text}: key {position} of {len(keys)} has other owners{layout} than "
            "the first key; give the keys one hash tag, e.g. {user42}:a and {user42}:b",
            command=text,
        )
    return first


def route(
    placement: Placement, args: Sequence[object], previous: Placement | None = None
) -> tuple[int, ...] | None:
    """Return the indices of the owners a command goes to, or None for every server.

    See :func:`command_partition`, which this wraps.

    Raises:
        CrossSlotError: The keys do not all share their owners; nothing is sent.
        UnsupportedCommand: The command's keys cannot be found.
    """
    p = command_partition(placement, args, previous)
    return None if p is None else placement._owners[p]


# ------------------------------------------------------------ sloppy quorum


@dataclass(frozen=True, slots=True)
class Targets:
    """The servers one call goes to: every owner, then the fallbacks chosen.

    Attributes:
        owners: Every owner of the key, in preference order, usable or not (an
            unusable one is reported as unavailable, not skipped silently).
        fallbacks: Further servers, in the order they were chosen.
    """

    owners: tuple[int, ...]
    fallbacks: tuple[int, ...]

    @property
    def servers(self) -> tuple[int, ...]:
        """Owners then fallbacks: the order of the call's replies."""
        return self.owners + self.fallbacks


def _check_usable(preference: Sequence[int], usable: Sequence[bool]) -> None:
    if len(usable) < len(preference):
        raise ConfigurationError(f"usable has {len(usable)} entries for {len(preference)} servers")


def write_targets(
    preference: Sequence[int], replicas: int, write_quorum: int, usable: Sequence[bool]
) -> Targets:
    """Choose where a write goes: the owners, and fallbacks if too few are usable.

    Dynamo's sloppy quorum: when fewer than ``write_quorum`` owners are usable,
    the write goes on along the preference order to the next usable servers
    until ``write_quorum`` usable ones are reached. A fallback therefore holds
    a copy only while owners are down; it is handed back when they return.

    Args:
        preference: The key's preference order (owners first), as server indices.
        replicas: N, how many of ``preference`` are owners.
        write_quorum: W, the acknowledgements the write needs (1..N).
        usable: Whether each server (by index) can be used now.

    Returns:
        Every owner, and the fallbacks to add. Fewer than W usable servers in
        all means the quorum cannot be met; the caller decides what to do.

    Raises:
        ConfigurationError: W or N is out of range.
    """
    if not 1 <= replicas <= len(preference):
        raise ConfigurationError(f"replicas must be in 1..{len(preference)}, got {replicas}")
    if not 1 <= write_quorum <= replicas:
        raise ConfigurationError(
            f"write_quorum must be in 1..{replicas} (the owners of a key), got {write_quorum}"
        )
    _check_usable(preference, usable)
    owners = tuple(preference[:replicas])
    missing = write_quorum - sum(1 for i in owners if usable[i])
    return Targets(owners, _first_usable(preference[replicas:], usable, missing))


def read_targets(
    preference: Sequence[int],
    replicas: int,
    usable: Sequence[bool],
    also: Iterable[int] = (),
) -> Targets:
    """Choose where a read goes: the owners, a fallback per unusable owner, and ``also``.

    A write that found k owners unusable used at most the first k usable
    fallbacks, so a read made while the same owners are unusable includes all
    of them and sees that write.

    Args:
        preference: The key's preference order (owners first), as server indices.
        replicas: N, how many of ``preference`` are owners.
        usable: Whether each server (by index) can be used now.
        also: More servers to read from after those: the previous layout's
            owners during a migration, fallbacks known to hold copies not yet
            handed back. Owners and servers already chosen are skipped.

    Returns:
        Every owner, then the fallbacks and the ``also`` servers to add.

    Raises:
        ConfigurationError: N is out of range.
    """
    if not 1 <= replicas <= len(preference):
        raise ConfigurationError(f"replicas must be in 1..{len(preference)}, got {replicas}")
    _check_usable(preference, usable)
    owners = tuple(preference[:replicas])
    down = sum(1 for i in owners if not usable[i])
    fallbacks = list(_first_usable(preference[replicas:], usable, down))
    chosen = set(owners).union(fallbacks)
    for i in also:
        if i not in chosen:
            chosen.add(i)
            fallbacks.append(i)
    return Targets(owners, tuple(fallbacks))


def _first_usable(candidates: Sequence[int], usable: Sequence[bool], count: int) -> tuple[int, ...]:
    if count <= 0:
        return ()
    out: list[int] = []
    for i in candidates:
        if usable[i]:
            out.append(i)
            if len(out) == count:
                break
    return tuple(out)
