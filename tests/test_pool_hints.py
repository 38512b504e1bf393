"""The pool's hint record: which fallbacks hold copies their owners may lack (pure)."""

from __future__ import annotations

from trio_redisha.placement import key_partition
from trio_redisha.pool._hints import Hints


def test_hints_are_kept_per_key_and_handed_back() -> None:
    hints = Hints()
    assert not hints
    p = key_partition(b"a")
    hints.add([b"a"], p, [4])
    hints.add([b"a"], p, [5])
    assert hints and hints.servers([b"a"], p) == {4, 5}
    assert hints.servers([b"b"], key_partition(b"b")) == set()
    hints.handed_back(b"a", [4])
    assert hints.servers([b"a"], p) == {5}
    hints.handed_back(b"a")
    assert not hints and len(hints) == 0


def test_past_the_bound_hints_are_kept_per_partition_never_dropped() -> None:
    hints = Hints(max_keys=2)
    keys = [b"{t}1", b"{t}2", b"{t}3", b"{u}1"]
    for key in keys:
        hints.add([key], key_partition(key), [7])
    assert len(hints) == 2 + 2  # two keys, then two partitions
    for key in keys:
        assert hints.servers([key], key_partition(key)) == {7}
    # Another key of an overflowed partition reads the fallback too: safe, not lost.
    assert hints.servers([b"{t}other"], key_partition(b"{t}other")) == {7}
    # Handing back one key keeps the partition's hint: other keys may need it.
    hints.handed_back(b"{t}3")
    assert hints.servers([b"{t}3"], key_partition(b"{t}3")) == {7}
    hints.partition_handed_back(key_partition(b"{t}1"))
    assert hints.servers([b"{t}1"], key_partition(b"{t}1")) == set()
    assert hints.servers([b"{u}1"], key_partition(b"{u}1")) == {7}
    assert [k for k, _ in hints.items()] == [key_partition(b"{u}1")]
