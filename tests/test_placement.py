"""Placement: partitions, canonical identities, balance, movement, routing, sloppy quorum."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness.helpers import BlockingClient
from trio_redisha import (
    CommandEncodeError,
    ConfigurationError,
    CrossSlotError,
    Pool,
    ServerSpec,
    UnsupportedCommand,
)
from trio_redisha.placement import (
    PARTITIONS,
    Placement,
    Targets,
    canonical_identity,
    command_partition,
    key_partition,
    moved_fraction,
    read_targets,
    route,
    write_targets,
)
from trio_redisha.testing import (
    RedisServer,
    find_redis_server,
    free_port,
)


def servers(m: int, base: int = 1) -> list[str]:
    return [f"redis://10.0.0.{i}:6379" for i in range(base, base + m)]


# ------------------------------------------------------------ partitions


def test_partition_is_redis_cluster_key_slot() -> None:
    # Values from the Redis Cluster specification and CLUSTER KEYSLOT.
    assert key_partition("foo") == 12182
    assert key_partition("bar") == 5061
    assert key_partition("hello") == 866
    assert key_partition(b"123456789") == 0x31C3 & (PARTITIONS - 1)


def test_hash_tags_follow_redis_rule_exactly() -> None:
    assert key_partition("{user1000}.following") == key_partition("{user1000}.followers")
    assert key_partition("{user42}:cart") == key_partition("user42")
    assert key_partition("foo{}{bar}") == key_partition(b"foo{}{bar}")  # whole key
    assert key_partition("foo{}{bar}") != key_partition("bar")
    assert key_partition("foo{{bar}}zap") == key_partition("{bar")
    assert key_partition("foo{bar}{zap}") == key_partition("bar")
    assert key_partition("{}") == key_partition(b"{}")
    assert key_partition("clé") == key_partition("clé".encode())


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[BlockingClient]:
    # An explicit cluster bus port: the default (port + 10000) fails on high ports.
    bus = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
    server = RedisServer(executable=find_redis_server(), extra_args=bus)
    server.start()
    try:
        client = BlockingClient(server)
        yield client
        client.sock.close()
    finally:
        server.stop()


KEYS = st.one_of(
    st.binary(max_size=24),
    st.lists(st.sampled_from([b"{", b"}", b"a", b"b", b"\x00", b"\xff"]), max_size=10).map(
        b"".join
    ),
)


@settings(max_examples=500, deadline=None)
@given(key=KEYS)
def test_partition_matches_cluster_keyslot(cluster_node: BlockingClient, key: bytes) -> None:
    assert key_partition(key) == cluster_node.call("CLUSTER", "KEYSLOT", key)


# ------------------------------------------------------------ identities


@pytest.mark.parametrize(
    "spelling",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1",
        "redis://127.0.0.1:6379/",
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1/?db=0",
        "redis://localhost:6379",
        "redis://LOCALHOST./",
        "rediss://127.0.0.1:6379",
        "redis://user:secret@127.0.0.1:6379?protocol=3&client_name=x",
        ("127.0.0.1", 6379),
        ("localhost", 6379),
        ServerSpec(host="127.0.0.1", port=6379),
    ],
)
def test_spellings_of_one_server_have_one_identity(
    spelling: str | tuple[str, int] | ServerSpec,
) -> None:
    assert canonical_identity(spelling) == "127.0.0.1:6379/0"


def test_what_changes_the_data_changes_the_identity() -> None:
    assert canonical_identity("redis://127.0.0.1:6379/1") == "127.0.0.1:6379/1"
    assert canonical_identity("redis://127.0.0.1:6380") == "127.0.0.1:6380/0"
    assert canonical_identity("redis://Cache.Example.COM.:7000") == "cache.example.com:7000/0"
    assert canonical_identity("redis://[0:0::1]:6379") == "[::1]:6379/0"
    assert (
        canonical_identity("unix:///run//redis/../redis/r.sock?db=2") == "unix:/run/redis/r.sock/2"
    )


def test_order_and_spelling_do_not_change_placement() -> None:
    urls = servers(7)
    a = Placement(urls, 3)
    shuffled = urls[:]
    random.Random(5).shuffle(shuffled)
    respelled = [u.replace(":6379", "") + "/0" for u in shuffled]
    b = Placement(respelled, 3)
    for p in range(0, PARTITIONS, 7):
        assert a.owner_identities(p) == b.owner_identities(p)
        assert [a.identities[i] for i in a.preference_of_partition(p)] == [
            b.identities[i] for i in b.preference_of_partition(p)
        ]
    assert b.labels == tuple(u.replace(":6379", ":6379") for u in b.labels)


def test_servers_are_found_by_any_spelling() -> None:
    p = Placement(["redis://127.0.0.1:7001", "redis://localhost:7002/"], 1)
    assert p.index_of("redis://localhost:7001/0") == 0
    assert p.index_of(("127.0.0.1", 7002)) == 1
    with pytest.raises(KeyError, match=r"127\.0\.0\.1:7003/0"):
        p.index_of("redis://127.0.0.1:7003")


def test_placement_is_pinned() -> None:
    # Every process, in every version, must compute the same owners: a change of
    # scheme must be deliberate (a new weight tag), never an accident.
    p = Placement(servers(5), 2)
    assert p.owner_identities(0) == ("10.0.0.1:6379/0", "10.0.0.5:6379/0")
    assert p.owner_identities(866) == ("10.0.0.2:6379/0", "10.0.0.4:6379/0")
    assert p.owner_identities(12182) == ("10.0.0.3:6379/0", "10.0.0.1:6379/0")
    assert p.owner_identities(16383) == ("10.0.0.2:6379/0", "10.0.0.5:6379/0")


@pytest.mark.parametrize("partition", [-1, -16384, 16384, True, 1.0, "0", None])
def test_a_partition_out_of_range_is_refused(partition: object) -> None:
    # owners_of_partition(-1) gave partition 16383's owners, as a list index
    # would, and 16384 a bare "list index out of range".
    p = Placement(servers(5), 2)
    for accessor in (
        p.owners_of_partition,
        p.owner_labels,
        p.owner_identities,
        p.preference_of_partition,
    ):
        with pytest.raises(IndexError, match=r"is not in 0\.\.16383"):
            accessor(partition)  # type: ignore[arg-type]
    assert p.owners_of_partition(16383) == p.owners_of_partition(PARTITIONS - 1)


@pytest.mark.parametrize("server", [-1, 5, True, 1.0, "1", None])
def test_partitions_of_a_server_not_in_the_placement_is_refused(server: object) -> None:
    # "1" raised a bare TypeError; True and 1.0 were taken for server 1.
    p = Placement(servers(5), 2)
    with pytest.raises(IndexError, match=r"is not in 0\.\.4"):
        p.partitions_of(server)  # type: ignore[arg-type]
    assert len(p.partitions_of(4)) > 0


@pytest.mark.parametrize("replicas", [None, 2])
def test_pool_owners_checks_the_key_with_placement_or_without(replicas: int | None) -> None:
    # Without placement, owners(None) returned every label: the docstring's
    # CommandEncodeError came only with placement.
    pool = Pool(*servers(3), replicas=replicas)
    assert len(pool.owners("k")) == (3 if replicas is None else 2)
    for bad in (None, 5, "\ud800"):
        with pytest.raises(CommandEncodeError):
            pool.owners(bad)  # type: ignore[arg-type]


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="same server"):
        Placement(["redis://localhost:6379", "redis://127.0.0.1"], 1)
    with pytest.raises(ConfigurationError, match=r"replicas must be in 1\.\.3"):
        Placement(servers(3), 4)
    with pytest.raises(ConfigurationError, match=r"replicas must be in 1\.\.3"):
        Placement(servers(3), 0)
    with pytest.raises(ConfigurationError, match="must be an int"):
        Placement(servers(3), True)
    with pytest.raises(ConfigurationError, match="at least one server"):
        Placement([], 1)
    with pytest.raises(ConfigurationError):
        Placement(["http://x"], 1)
    with pytest.raises(CommandEncodeError, match="a key is str or bytes"):
        Placement(servers(3), 1).owners(42)  # type: ignore[arg-type]
    # A lone surrogate (as json.loads gives) cannot be sent: a library error too.
    with pytest.raises(CommandEncodeError, match="UTF-8"):
        Placement(servers(3), 1).owners("\udcff")
    with pytest.raises(CommandEncodeError, match="UTF-8"):
        key_partition("ok\ud800")


# ------------------------------------------------------- shape and balance


@pytest.mark.parametrize(("m", "n"), [(1, 1), (3, 3), (4, 2), (9, 3), (12, 5)])
def test_owners_are_n_distinct_servers_and_lead_the_preference(m: int, n: int) -> None:
    p = Placement(servers(m), n)
    for part in range(PARTITIONS):
        owners = p.owners_of_partition(part)
        assert len(owners) == len(set(owners)) == n
        pref = p.preference_of_partition(part) if part % 97 == 0 else None
        if pref is not None:
            assert sorted(pref) == list(range(m))
            assert pref[:n] == owners
    assert p.owners("k") == p.owners_of_partition(key_partition("k"))
    assert p.preference("k")[:n] == p.owners("k")
    assert p.owner_labels(0) == tuple(p.labels[i] for i in p.owners_of_partition(0))


def test_balance_within_ten_percent_for_nine_servers_and_three_replicas() -> None:
    p = Placement(servers(9), 3)
    share: Counter[int] = Counter()
    for i in range(100_000):
        share.update(p.owners(f"session:{i}"))
    mean = sum(share.values()) / 9
    assert all(0.9 * mean <= share[s] <= 1.1 * mean for s in range(9)), share
    # Partitions themselves are spread much closer than that.
    owned = [len(p.partitions_of(s)) for s in range(9)]
    assert max(owned) / min(owned) < 1.1


# ------------------------------------------------------------- movement


@pytest.mark.parametrize("m", [6, 9])
def test_adding_a_server_moves_only_to_it_and_close_to_ideal(m: int) -> None:
    n = 3
    old, new = Placement(servers(m), n), Placement(servers(m + 1), n)
    added = new.identities[-1]
    changed = 0
    for part in range(PARTITIONS):
        before, after = old.owner_identities(part), new.owner_identities(part)
        if set(before) != set(after):
            changed += 1
            assert set(after) - set(before) == {added}
            assert len(set(before) - set(after)) == 1
    assert abs(changed / PARTITIONS - n / (m + 1)) < 0.02
    assert abs(moved_fraction(old, new) - 1 / (m + 1)) < 0.01
    assert len(old.changed_partitions(new)) == changed


def test_removing_a_server_moves_only_what_it_held() -> None:
    old, new = Placement(servers(9), 3), Placement(servers(8), 3)
    gone = old.identities[-1]
    for part in range(PARTITIONS):
        before, after = old.owner_identities(part), new.owner_identities(part)
        if gone not in before:
            assert before == after
        else:
            kept = tuple(i for i in before if i != gone)
            assert tuple(i for i in after if i in kept) == kept  # ranks kept
            old_pref = [old.identities[i] for i in old.preference_of_partition(part)]
            assert set(after) - set(kept) == {old_pref[3]}  # the next in line steps in
    assert abs(moved_fraction(old, new) - 1 / 9) < 0.01


# -------------------------------------------------------------- routing


def test_route_keyed_keyless_and_hash_tags() -> None:
    p = Placement(servers(9), 3)
    assert route(p, ["GET", "k"]) == p.owners("k")
    assert route(p, ["PING"]) is None
    assert route(p, ["EVAL", "return 1", 0]) is None
    assert route(p, ["MSET", "{u1}:a", 1, "{u1}:b", 2]) == p.owners("u1")
    assert command_partition(p, ["MGET", "{u1}:a", "{u1}:b"]) == key_partition("u1")
    assert route(p, ["EVAL", "s", 2, "{x}1", "{x}2", "not-a-key"]) == p.owners("x")


def test_cross_slot_commands_raise_before_anything_is_sent() -> None:
    p = Placement(servers(9), 3)
    a, b = (
        "session:a",
        next(
            f"session:{i}" for i in range(100) if p.owners(f"session:{i}") != p.owners("session:a")
        ),
    )
    with pytest.raises(CrossSlotError, match="MGET: key 2 of 2 has other owners") as info:
        route(p, ["mget", a, b])
    assert info.value.command == "MGET"
    assert "session" not in str(info.value)  # key contents never appear
    with pytest.raises(CrossSlotError):
        route(p, ["ZUNIONSTORE", a, 1, b])
    with pytest.raises(UnsupportedCommand):
        route(p, ["NOSUCHCOMMAND", a])


def test_keys_in_two_partitions_with_the_same_owners_may_share_a_command() -> None:
    p = Placement(servers(3), 3)
    first = "k0"
    same = next(
        f"k{i}"
        for i in range(1, 10_000)
        if key_partition(f"k{i}") != key_partition(first) and p.owners(f"k{i}") == p.owners(first)
    )
    assert route(p, ["MGET", first, same]) == p.owners(first)
    # ...unless the previous layout placed them apart.
    previous = Placement(servers(9), 3)
    if previous.owner_identities(key_partition(first)) != previous.owner_identities(
        key_partition(same)
    ):
        with pytest.raises(CrossSlotError, match="previous layout"):
            route(p, ["MGET", first, same], previous=previous)


# ------------------------------------------------------- sloppy quorum

PREF = (4, 2, 7, 0, 1, 3, 5, 6, 8)  # owners 4, 2, 7 (N=3); fallbacks in order after


def usable(*down: int) -> list[bool]:
    return [i not in down for i in range(9)]


def test_writes_go_to_owners_while_w_of_them_are_usable() -> None:
    assert write_targets(PREF, 3, 2, usable()) == Targets((4, 2, 7), ())
    assert write_targets(PREF, 3, 2, usable(2)) == Targets((4, 2, 7), ())


def test_writes_walk_the_preference_order_when_owners_are_down() -> None:
    assert write_targets(PREF, 3, 2, usable(4, 2)) == Targets((4, 2, 7), (0,))
    assert write_targets(PREF, 3, 3, usable(4, 2)) == Targets((4, 2, 7), (0, 1))
    # An unusable fallback is passed over.
    assert write_targets(PREF, 3, 2, usable(4, 2, 0)) == Targets((4, 2, 7), (1,))
    assert write_targets(PREF, 3, 2, usable(4, 2, 7)) == Targets((4, 2, 7), (0, 1))
    assert write_targets(PREF, 3, 2, usable(4, 2, 7)).servers == (4, 2, 7, 0, 1)


def test_writes_report_when_the_quorum_cannot_be_met() -> None:
    everything_down = [False] * 9
    everything_down[6] = True
    assert write_targets(PREF, 3, 2, everything_down) == Targets((4, 2, 7), (6,))


def test_quorums_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"write_quorum must be in 1\.\.3"):
        write_targets(PREF, 3, 4, usable())
    with pytest.raises(ConfigurationError, match="replicas"):
        write_targets(PREF, 10, 1, usable())
    with pytest.raises(ConfigurationError, match="usable has 2 entries"):
        read_targets(PREF, 3, [True, True])


def test_reads_add_one_fallback_per_unusable_owner_and_the_extras() -> None:
    assert read_targets(PREF, 3, usable()) == Targets((4, 2, 7), ())
    assert read_targets(PREF, 3, usable(2)) == Targets((4, 2, 7), (0,))
    assert read_targets(PREF, 3, usable(4, 7, 0)) == Targets((4, 2, 7), (1, 3))
    # Previous owners and fallbacks holding copies come after, without repeats.
    assert read_targets(PREF, 3, usable(), also=(8, 2, 8, 5)) == Targets((4, 2, 7), (8, 5))


@settings(max_examples=300, deadline=None)
@given(
    down=st.sets(st.integers(0, 8)),
    down_later=st.sets(st.integers(0, 8)),
    w=st.integers(1, 3),
)
def test_a_read_with_the_same_owners_down_sees_every_server_written(
    down: set[int], down_later: set[int], w: int
) -> None:
    written = write_targets(PREF, 3, w, usable(*down))
    acked = [i for i in written.servers if i not in down]
    read = read_targets(PREF, 3, usable(*down))
    assert set(acked) <= set(read.servers)
    # And a read at any later time, whatever is down then, reaches an acked copy
    # whenever one of those copies is an owner that is usable.
    later = read_targets(PREF, 3, usable(*down_later))
    if any(i in PREF[:3] and i not in down_later for i in acked):
        assert set(acked) & {i for i in later.servers if i not in down_later}
