"""Hints: which fallback servers hold copies that their owners may lack.

With placement, a write that finds fewer than W of a key's owners usable goes
on to fallback servers (sloppy quorum). The pool remembers, for each such key,
which fallbacks it wrote, and reads of the key include them until the copies
are handed back to the owners, even after the owners return (empty, perhaps):
otherwise a read made once the owners are back would miss an acknowledged
write. A fallback found holding no copy of the key (it restarted empty, the
copy expired) has nothing to hand back: its hint is forgotten alike. The record
is in memory and per pool; a fallback copy written by another process is found
by ``repair``, which walks the servers themselves.

The record is bounded: past ``max_keys`` keys, further hints are kept per
partition (a partition's reads then include the fallbacks, whatever the key),
so no hint is ever dropped and memory stays bounded by ``max_keys`` keys plus
one entry per partition.

Every :meth:`Hints.add` takes a new *generation*. A hand-back forgets a hint
only if it was not added again since the hand-back began (``since``): a write
that lands on the fallback while its copy is being removed keeps its hint.

Pure bookkeeping: no I/O, no trio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ..placement import key_partition

__all__ = ["DEFAULT_MAX_HINTS", "Hints"]

#: Keys remembered one by one before hints are kept per partition.
DEFAULT_MAX_HINTS: Final = 65536


def _forget(known: dict[int, int], servers: Iterable[int] | None, since: int | None) -> None:
    """Drop from ``known`` (server: generation) ``servers`` (all if ``None``) not re-added
    after generation ``since`` (``None``: whatever their generation)."""
    for s in list(known) if servers is None else servers:
        g = known.get(s)
        if g is not None and (since is None or g <= since):
            del known[s]


class Hints:
    """Fallback servers written for each key while its owners were unusable.

    Args:
        max_keys: Keys remembered one by one; beyond, whole partitions.
    """

    __slots__ = ("_generation", "_keys", "_max_keys", "_partitions", "_unindexed")

    def __init__(self, max_keys: int = DEFAULT_MAX_HINTS) -> None:
        self._max_keys = max_keys
        self._generation = 0
        # key or partition -> {fallback server: generation of its latest add}
        self._keys: dict[bytes, dict[int, int]] = {}
        self._partitions: dict[int, dict[int, int]] = {}
        # partition -> fallbacks whose partition hint stands for a write of keys the
        # digest tree does not index (plain commands): no segment check clears those.
        self._unindexed: dict[int, set[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._keys) or bool(self._partitions)

    def __len__(self) -> int:
        """Keys and partitions hinted."""
        return len(self._keys) + len(self._partitions)

    @property
    def generation(self) -> int:
        """The generation of the latest :meth:`add` (0 before any): a hand-back's ``since``."""
        return self._generation

    def add(
        self,
        keys: Sequence[bytes],
        partition: int,
        servers: Iterable[int],
        *,
        indexed: bool = False,
    ) -> None:
        """Record that ``servers`` (fallbacks) were written for ``keys`` (one partition).

        Args:
            keys: The keys written.
            partition: Their partition.
            servers: The fallbacks written.
            indexed: Whether the write also entered each key in the fallback's
                digest tree (the CRDT write scripts do): only then can
                :meth:`partition_emptied` later clear a partition hint.
        """
        servers = tuple(servers)
        self._generation += 1
        g = self._generation
        for key in keys:
            known = self._keys.get(key)
            if known is None and len(self._keys) < self._max_keys:
                known = self._keys[key] = {}
            if known is not None:
                known.update(dict.fromkeys(servers, g))
                continue
            self._partitions.setdefault(partition, {}).update(dict.fromkeys(servers, g))
            if not indexed:
                self._unindexed.setdefault(partition, set()).update(servers)

    def servers(self, keys: Sequence[bytes], partition: int) -> set[int]:
        """The fallbacks known to hold copies of any of ``keys`` (of ``partition``)."""
        out: set[int] = set()
        for key in keys:
            known = self._keys.get(key)
            if known:
                out.update(known)
        whole = self._partitions.get(partition)
        if whole:
            out.update(whole)
        return out

    def key_servers(self, key: bytes) -> set[int]:
        """The fallbacks hinted for ``key`` itself (not for its whole partition): those a
        :meth:`handed_back` may forget."""
        return set(self._keys.get(key, ()))

    def partition_servers(self, partition: int) -> set[int]:
        """The fallbacks hinted for ``partition`` as a whole that :meth:`partition_emptied`
        may clear (every write behind the hint was indexed)."""
        whole = self._partitions.get(partition)
        if not whole:
            return set()
        return set(whole) - self._unindexed.get(partition, set())

    def handed_back(
        self, key: bytes, servers: Iterable[int] | None = None, *, since: int | None = None
    ) -> None:
        """Forget the hints of ``key`` (those of ``servers`` only, if given).

        A hint kept for the key's whole partition stays until
        :meth:`partition_emptied` or :meth:`partition_handed_back`: other keys
        may still need it.

        Args:
            key: The key.
            servers: The fallbacks whose copies were handed back (``None``: all).
            since: The :attr:`generation` when the hand-back began: a hint
                added after it stands for a write the hand-back may not have
                seen, and stays. ``None``: forget whatever the generation.
        """
        known = self._keys.get(key)
        if known is None:
            return
        _forget(known, servers, since)
        if not known:
            del self._keys[key]

    def partition_emptied(self, partition: int, server: int, *, since: int) -> None:
        """Forget ``server``'s hint for ``partition`` as a whole: it holds no key of it.

        The caller found, after generation ``since``, no indexed key of the
        partition on ``server``. The hint stays if it was added after
        ``since``, or if it also stands for unindexed writes (see :meth:`add`).
        """
        whole = self._partitions.get(partition)
        if whole is None or server in self._unindexed.get(partition, ()):
            return
        _forget(whole, (server,), since)
        if not whole:
            del self._partitions[partition]

    def partition_handed_back(self, partition: int, servers: Iterable[int] | None = None) -> None:
        """Forget every hint of the partition (those of ``servers`` only, if given)."""
        drop = None if servers is None else set(servers)
        for key in [k for k in self._keys if key_partition(k) == partition]:
            self.handed_back(key, drop)
        whole = self._partitions.get(partition)
        if whole is not None:
            _forget(whole, drop, None)
            if not whole:
                del self._partitions[partition]
        plain = self._unindexed.get(partition)
        if plain is not None:
            if drop is None:
                plain.clear()
            else:
                plain -= drop
            if not plain:
                del self._unindexed[partition]

    def items(self) -> list[tuple[bytes | int, frozenset[int]]]:
        """Every hint: ``(key, servers)``, then ``(partition, servers)`` for whole partitions."""
        out: list[tuple[bytes | int, frozenset[int]]] = [
            (k, frozenset(v)) for k, v in self._keys.items()
        ]
        out.extend((p, frozenset(v)) for p, v in self._partitions.items())
        return out
