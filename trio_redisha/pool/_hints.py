"""Hints: which fallback servers hold copies that their owners may lack.

With placement, a write that finds fewer than W of a key's owners usable goes
on to fallback servers (sloppy quorum). The pool remembers, for each such key,
which fallbacks it wrote, and reads of the key include them until the copies
are handed back to the owners, even after the owners return (empty, perhaps):
otherwise a read made once the owners are back would miss an acknowledged
write. The record is in memory and per pool; a fallback copy written by
another process is found by ``repair``, which walks the servers themselves.

The record is bounded: past ``max_keys`` keys, further hints are kept per
partition (a partition's reads then include the fallbacks, whatever the key),
so no hint is ever dropped and memory stays bounded by ``max_keys`` keys plus
one entry per partition.

Pure bookkeeping: no I/O, no trio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ..placement import key_partition

__all__ = ["DEFAULT_MAX_HINTS", "Hints"]

#: Keys remembered one by one before hints are kept per partition.
DEFAULT_MAX_HINTS: Final = 65536


class Hints:
    """Fallback servers written for each key while its owners were unusable.

    Args:
        max_keys: Keys remembered one by one; beyond, whole partitions.
    """

    __slots__ = ("_keys", "_max_keys", "_partitions")

    def __init__(self, max_keys: int = DEFAULT_MAX_HINTS) -> None:
        self._max_keys = max_keys
        self._keys: dict[bytes, set[int]] = {}
        self._partitions: dict[int, set[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._keys) or bool(self._partitions)

    def __len__(self) -> int:
        """Keys and partitions hinted."""
        return len(self._keys) + len(self._partitions)

    def add(self, keys: Sequence[bytes], partition: int, servers: Iterable[int]) -> None:
        """Record that ``servers`` (fallbacks) were written for ``keys`` (one partition)."""
        servers = tuple(servers)
        for key in keys:
            known = self._keys.get(key)
            if known is not None:
                known.update(servers)
            elif len(self._keys) < self._max_keys:
                self._keys[key] = set(servers)
            else:
                self._partitions.setdefault(partition, set()).update(servers)

    def servers(self, keys: Sequence[bytes], partition: int) -> set[int]:
        """The fallbacks known to hold copies of any of ``keys`` (of ``partition``)."""
        out: set[int] = set()
        for key in keys:
            known = self._keys.get(key)
            if known:
                out |= known
        whole = self._partitions.get(partition)
        if whole:
            out |= whole
        return out

    def handed_back(self, key: bytes, servers: Iterable[int] | None = None) -> None:
        """Forget the hints of ``key`` (those of ``servers`` only, if given).

        A hint kept for the key's whole partition stays until
        :meth:`partition_handed_back`: other keys may still need it.
        """
        known = self._keys.get(key)
        if known is None:
            return
        if servers is None:
            known.clear()
        else:
            known.difference_update(servers)
        if not known:
            del self._keys[key]

    def partition_handed_back(self, partition: int, servers: Iterable[int] | None = None) -> None:
        """Forget every hint of the partition (those of ``servers`` only, if given)."""
        drop = None if servers is None else set(servers)
        for key in [k for k in self._keys if key_partition(k) == partition]:
            self.handed_back(key, drop)
        whole = self._partitions.get(partition)
        if whole is not None:
            if drop is None:
                whole.clear()
            else:
                whole -= drop
            if not whole:
                del self._partitions[partition]

    def items(self) -> list[tuple[bytes | int, frozenset[int]]]:
        """Every hint: ``(key, servers)``, then ``(partition, servers)`` for whole partitions."""
        out: list[tuple[bytes | int, frozenset[int]]] = [
            (k, frozenset(v)) for k, v in self._keys.items()
        ]
        out.extend((p, frozenset(v)) for p, v in self._partitions.items())
        return out
