"""Large full copies read lately, kept by key with their digest: a read validated by digests.

A digest read (:func:`~._read.read_key`) fetches the full state from one
server and a digest from each of the others. For a large key (a set of
thousands of members) that one full copy is most of the read's cost: the
bytes on the wire, and above all parsing them. So the last full copy of each
large key is kept here with its digest, and a read of a cached key asks every
server for its digest only. Servers whose digest equals the cached one hold
that very state, exactly as in a digest read without the cache; any other
server is read in full, as it would have been anyway. The cache decides
nothing on its own: every read still asks every server it would have asked,
and returns what they hold now.

Only copies of at least :data:`MIN_FIELDS` fields are kept. For a smaller key
the full copy costs less than the extra round trip a read would pay when the
key has changed since it was cached (by another process: this one's own
writes drop the key here), so a small key is read exactly as without a cache.
The cache is bounded by an estimate of the memory its copies hold
(``read_cache`` bytes per pool, an option of :class:`~trio_redisha.Pool`), and
the least recently used copies go first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._state import StoredRegisters

__all__ = ["MIN_FIELDS", "CachedCopy", "ReadCache", "copy_cost", "key_name"]

#: The fewest fields a full copy needs to be cached (see the module doc).
MIN_FIELDS: Final = 256
# Per field, beyond the bytes of its name and value: two bytes objects and their
# slots in the lists of the reply and of its registers, its parsed entry, the
# registers' dict slot, and the decoded member a Set read keeps (CPython 3.11,
# 64 bits), measured with tracemalloc and rounded up (160 left out the last
# three: the copies held up to 1.5 times the bound).
_FIELD_OVERHEAD: Final = 280


def copy_cost(stored: StoredRegisters) -> int:
    """The memory a copy of these registers holds in the cache, estimated.

    Each name counts twice: as bytes, and as the text a read decodes it to
    (a Set keeps its members'), beside the fixed cost of each field.
    """
    names = stored.names
    return 2 * sum(map(len, names)) + sum(map(len, stored.raws)) + _FIELD_OVERHEAD * len(names)


def key_name(key: str | bytes) -> bytes:
    """The key as Redis stores it: the name the cache (and the rehash set) go by."""
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True, eq=False)
class CachedCopy:
    """One key's full copy, as a server sent it.

    Attributes:
        digest: The digest field the copy holds.
        reply: The ``HGETALL`` reply, shared by every read it answers (never
            changed: replies are not written to).
        stored: Its registers (only map and set copies are kept).
        cost: The estimated memory it holds, in bytes.
    """

    digest: bytes
    reply: Any
    stored: StoredRegisters
    cost: int


class ReadCache:
    """A least-recently-used map of key name to :class:`CachedCopy`, bounded in bytes.

    Args:
        capacity: The most bytes (estimated) the copies may hold; 0 keeps none.
            A copy larger than a quarter of it is not kept.

    Attributes:
        capacity: The bound.
        size: The estimated bytes held now.
    """

    __slots__ = ("_copies", "capacity", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._copies: dict[bytes, CachedCopy] = {}

    def __len__(self) -> int:
        return len(self._copies)

    def get(self, name: bytes) -> CachedCopy | None:
        """The copy of ``name``, made the most recently used; ``None`` if none."""
        copies = self._copies
        copy = copies.pop(name, None)
        if copy is not None:
            copies[name] = copy
        return copy

    def put(
        self,
        name: bytes,
        digest: bytes,
        reply: Any,
        stored: StoredRegisters,
    ) -> bool:
        """Keep ``reply`` as the copy of ``name``; returns whether it was kept.

        ``stored``: the reply's registers. A copy with fewer than
        :data:`MIN_FIELDS` of them, or larger than a quarter of the capacity,
        is not kept (and drops any older copy).
        """
        self.drop(name)
        names = stored.names
        if len(names) < MIN_FIELDS or not self.capacity:
            return False
        cost = copy_cost(stored)
        if cost > self.capacity // 4:
            return False
        copies = self._copies
        while self.size + cost > self.capacity:
            oldest = next(iter(copies))
            self.size -= copies.pop(oldest).cost
        copies[name] = CachedCopy(digest, reply, stored, cost)
        self.size += cost
        return True

    def drop(self, name: bytes) -> None:
        """Forget the copy of ``name``, if any."""
        copy = self._copies.pop(name, None)
        if copy is not None:
            self.size -= copy.cost

    def clear(self) -> None:
        """Forget every copy."""
        self._copies.clear()
        self.size = 0

    def __repr__(self) -> str:
        return f"<ReadCache {len(self._copies)} keys, {self.size} of {self.capacity} bytes>"
