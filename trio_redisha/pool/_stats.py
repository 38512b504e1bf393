"""Running totals of what a pool did: plain integers, always kept.

Counting is an integer increment on paths that already do far more work, so
the totals are kept whether or not anything reads them; the optional
OpenTelemetry instruments (:mod:`trio_redisha.otel`) report them through
observable instruments, read only when a metric reader collects.
"""

from __future__ import annotations

__all__ = ["PoolStats"]


class PoolStats:
    """Totals since the pool was created.

    Attributes:
        replies_expected: Server replies fan-outs asked for (one per server per call).
        replies_received: Replies that arrived before their deadline (error replies count).
        quorum_failures: Calls, CRDT reads and CRDT writes that raised QuorumError
            (a CRDT read: fewer than its ``read_quorum`` servers answered).
        read_repairs: Read repairs started by CRDT reads.
        replicas_divergent: Replicas a CRDT read found behind the merged state.
        repair_keys_walked: Keys the anti-entropy walker looked at.
        repair_keys_repaired: Keys it had to write back.
        sloppy_writes: Writes that went to fallback servers (placement, owners down).
        digests_rehashed: Keys without a digest (written before digests) that
            CRDT reads gave one, in the background.
        reads_cached: CRDT reads of a large key whose full copy came from the
            pool's read cache, every server having sent only its digest.
        hedged_rechecks: Keys read again from every server, in the background,
            because a server a hedged read did not wait for answered late with
            another state (that read neither merged nor repaired it).
    """

    __slots__ = (
        "digests_rehashed",
        "hedged_rechecks",
        "quorum_failures",
        "read_repairs",
        "reads_cached",
        "repair_keys_repaired",
        "repair_keys_walked",
        "replicas_divergent",
        "replies_expected",
        "replies_received",
        "sloppy_writes",
    )

    def __init__(self) -> None:
        self.replies_expected = 0
        self.replies_received = 0
        self.quorum_failures = 0
        self.read_repairs = 0
        self.replicas_divergent = 0
        self.repair_keys_walked = 0
        self.repair_keys_repaired = 0
        self.sloppy_writes = 0
        self.digests_rehashed = 0
        self.reads_cached = 0
        self.hedged_rechecks = 0

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in sorted(self.__slots__))
        return f"<PoolStats {fields}>"
