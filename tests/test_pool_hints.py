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


def test_a_hint_added_again_since_the_hand_back_began_stays() -> None:
    hints = Hints()
    p = key_partition(b"a")
    hints.add([b"a"], p, [4, 5])
    since = hints.generation
    hints.add([b"a"], p, [4])  # a write reached 4 while its copy was being removed
    hints.handed_back(b"a", [4, 5], since=since)
    assert hints.servers([b"a"], p) == {4}
    hints.handed_back(b"a", [4], since=hints.generation)
    assert not hints


def test_a_partition_hint_goes_only_once_its_fallback_is_known_empty() -> None:
    hints = Hints(max_keys=0)  # every hint per partition
    p, q = key_partition(b"{t}"), key_partition(b"{u}")
    hints.add([b"{t}1"], p, [7], indexed=True)
    since = hints.generation
    hints.add([b"{t}2"], p, [8], indexed=True)
    assert hints.partition_servers(p) == {7, 8}
    # Handing back one key of the partition keeps the hint: other keys may need it.
    hints.handed_back(b"{t}1", [7, 8], since=since)
    assert hints.servers([b"{t}x"], p) == {7, 8}
    hints.partition_emptied(p, 7, since=since)
    hints.partition_emptied(p, 8, since=since)  # added after `since`: stays
    assert hints.servers([b"{t}x"], p) == {8}
    hints.partition_emptied(p, 8, since=hints.generation)
    assert not hints
    # A plain command's write is not in the digest tree: no segment check clears it.
    hints.add([b"{u}1"], q, [7])
    hints.add([b"{u}2"], q, [7], indexed=True)
    assert hints.partition_servers(q) == set()
    hints.partition_emptied(q, 7, since=hints.generation)
    assert hints.servers([b"{u}x"], q) == {7}


def test_a_keys_own_hints_are_told_apart_from_its_partitions() -> None:
    hints = Hints(max_keys=1)
    p = key_partition(b"{t}1")
    hints.add([b"{t}1"], p, [4], indexed=True)
    hints.add([b"{t}2"], p, [5], indexed=True)  # past the bound: the whole partition
    assert hints.servers([b"{t}1"], p) == {4, 5}
    # What a check of the key on the fallback can forget: its own hints only.
    assert hints.key_servers(b"{t}1") == {4}
    assert hints.key_servers(b"{t}2") == set()
