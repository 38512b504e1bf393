"""Per-key digests, the digest tree and the read-side building blocks, on real servers.

The scripts keep each key's digest and its segment's tree entry in the same
step as the write; the tests check them against the Python twin
(``_storage.state_digest``) after arbitrary sequences of writes and purges,
that two servers' digests are equal exactly when their stored hashes are, and
that what no script sees (expiry, ``DEL``, a server flushed, data from before
digests) is caught up with by the sweep, the lazy retirement and the rehash.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_redisha
from tests.harness.helpers import raw_hash, wait_until
from tests.test_crdt_scripts import Client, raw_entries, raw_totals
from trio_redisha import Counter, HashMap, Pool, Set
from trio_redisha.crdt import repair_key
from trio_redisha.crdt._digest import (
    ABSENT,
    TREE_PREFIX,
    differing_keys,
    differing_segments,
    digest_of_reply,
    digests_agree,
    read_digests,
    read_full_and_digests,
    rehash_key,
    script_keys,
    segment_digests,
    segment_keys,
    sweep_segment,
    tree_key,
)
from trio_redisha.crdt._scripts import COUNTER_MERGE, LWW_MERGE, PURGE, REHASH, SEGMENTS, SWEEP
from trio_redisha.crdt._storage import (
    DIGEST_FIELD,
    MARKER_FIELD,
    ZERO_DIGEST,
    apply_purge_fields,
    field_hash,
    hash_pack,
    segment_digest,
    state_digest,
)
from trio_redisha.exceptions import ConfigurationError
from trio_redisha.placement import PARTITIONS, key_partition
from trio_redisha.scripts import Script
from trio_redisha.testing import RedisServer

fuzz = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def clients(redis_servers: list[RedisServer]) -> Iterator[list[Client]]:
    cs = [Client(s.port) for s in redis_servers[:2]]
    yield cs
    for c in cs:
        c.sock.close()


def run(c: Client, script: Script, key: bytes, *args: Any) -> Any:
    """A script with the key and its segment's tree keys, as the library runs it."""
    keys = script_keys(key)
    return c("EVAL", script.source, len(keys), *keys, *args)


def tree_of(c: Client, partition: int) -> tuple[dict[bytes, bytes], bytes]:
    """One segment's index (key -> digest) as stored, and its digest, as the server computes it."""
    flat = c("HGETALL", tree_key(partition))
    fields = dict(zip(flat[0::2], flat[1::2], strict=True))
    total = c("EVAL", SEGMENTS.source, 1, tree_key(partition), 1).hex().encode()
    return {k[1:]: v for k, v in fields.items() if k[:1] == b"k"}, total


def xor_all(digests: Any) -> bytes:
    d = 0
    for x in digests:
        d ^= int(x, 16)
    return b"%016x" % d


def check_tree(c: Client, keys: list[bytes]) -> None:
    """Each key's digest is its state's, and each segment indexes exactly its live keys."""
    for p in {key_partition(k) for k in keys}:
        index, total = tree_of(c, p)
        expected = {}
        for k in keys:
            if key_partition(k) != p:
                continue
            stored = c.hash(k)
            if MARKER_FIELD in stored:  # ours (else not indexed)
                digest = stored.pop(DIGEST_FIELD)
                assert digest == state_digest(stored)
                expected[k] = digest
        assert index == expected
        assert total == segment_digest(index)


# "a" and "{a}x" share a partition (hash tag); "b" has its own.
KINDS = {b"a": b"map:1", b"{a}x": b"set:1", b"b": b"counter:1"}
lww_names = st.sampled_from([b"f:x", b"f:y", b"c:", b"m:x"])
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.sampled_from([b"a", b"{a}x"]),
            st.lists(st.tuples(lww_names, raw_entries), min_size=1, max_size=3),
        ),
        st.tuples(
            st.just("write"),
            st.just(b"b"),
            st.lists(
                st.tuples(st.sampled_from([b"p:a", b"n:a", b"p:b"]), raw_totals),
                min_size=1,
                max_size=3,
            ),
        ),
        st.tuples(st.just("purge"), st.sampled_from(list(KINDS)), st.integers(0, 3)),
    ),
    min_size=1,
    max_size=8,
)


def apply(c: Client, op: tuple[str, bytes, Any], packed: bool = True) -> None:
    """One write or purge; ``packed``: with the pairs' hashes, as the library sends them."""
    kind, key, arg = op
    marker = KINDS[key]
    if kind == "write":
        script = COUNTER_MERGE if marker == b"counter:1" else LWW_MERGE
        pack = [hash_pack(arg)] if packed else []
        run(c, script, key, marker, 0, *[x for kv in arg for x in kv], *pack)
        return
    # Purge some of the stored fields, with their exact values (as repair does).
    stored = c.hash(key)
    exact = [(f, v) for f, v in sorted(stored.items()) if f not in (MARKER_FIELD, DIGEST_FIELD)]
    exact = exact[:arg]
    twin = apply_purge_fields(stored, marker, exact)
    assert twin is not None
    pack = [hash_pack(exact)] if packed else []
    n = run(c, PURGE, key, marker, *[x for kv in exact for x in kv], *pack)
    assert (c.hash(key), n) == twin


@fuzz
@given(ops, st.booleans())
def test_tree_follows_every_write_and_purge(
    clients: list[Client], seq: list[tuple[str, bytes, Any]], packed: bool
) -> None:
    c = clients[0]
    c("FLUSHALL")
    for op in seq:
        apply(c, op, packed)
        check_tree(c, list(KINDS))


@fuzz
@given(ops, st.lists(st.booleans(), min_size=8, max_size=8))
def test_digests_equal_exactly_when_stored_states_are(
    clients: list[Client], seq: list[tuple[str, bytes, Any]], on_b: list[bool]
) -> None:
    # Server a is sent the pairs' hashes (as by the library), b hashes them itself.
    a, b = clients
    a("FLUSHALL")
    b("FLUSHALL")
    for op, both in zip(seq, on_b, strict=False):
        apply(a, op)
        if both:
            apply(b, op, packed=False)
    for key in KINDS:
        ha, hb = a.hash(key), b.hash(key)
        assert (ha.get(DIGEST_FIELD) == hb.get(DIGEST_FIELD)) == (ha == hb)
    for p in {key_partition(k) for k in KINDS}:
        same_keys = all(a.hash(k) == b.hash(k) for k in KINDS if key_partition(k) == p)
        assert (tree_of(a, p)[1] == tree_of(b, p)[1]) == same_keys


@given(
    st.dictionaries(st.binary(max_size=4), st.binary(max_size=4), max_size=5),
    st.dictionaries(st.binary(max_size=4), st.binary(max_size=4), max_size=5),
)
def test_state_digest_is_order_free_and_tells_states_apart(
    a: dict[bytes, bytes], b: dict[bytes, bytes]
) -> None:
    a.pop(DIGEST_FIELD, None)
    b.pop(DIGEST_FIELD, None)
    assert state_digest(dict(reversed(list(a.items())))) == state_digest(a)
    assert (state_digest(a) == state_digest(b)) == (a == b)
    assert state_digest({**a, DIGEST_FIELD: b"anything"}) == state_digest(a)
    # Name and value are not confused: the split is part of what is hashed.
    assert field_hash(b"ab", b"c") != field_hash(b"a", b"bc")


@pytest.mark.parametrize("name_len", [1, 9, 10, 99, 100, 1000])
def test_field_hash_padding_matches_the_scripts_at_every_length(
    clients: list[Client], name_len: int
) -> None:
    # The NUL padding depends on len(<len(name)>:<name><value>) modulo 64, and on
    # how many digits the name's length takes: every boundary, script vs twin.
    c = clients[0]
    name = b"m:" + b"\x00" * (name_len - 2) if name_len > 2 else b"m:"[:name_len]
    for value_len in [0, 1, *range(40, 70), 118, 119, 120, 200]:
        key = b"pad:%d:%d" % (name_len, value_len)
        value = b"1:a:+" + b"v" * value_len
        run(c, LWW_MERGE, key, b"set:1", 0, name, value)
        stored = c.hash(key)
        assert stored.pop(DIGEST_FIELD) == state_digest(stored)
        # The same fields written out of order, then overwritten: the same digest.
        other = b"pad2:%d:%d" % (name_len, value_len)
        run(c, LWW_MERGE, other, b"set:1", 0, name, b"0:a:+", b"m:zz", b"2:a:+")
        run(c, LWW_MERGE, other, b"set:1", 0, name, value)
        c("HSET", key, b"m:zz", b"2:a:+")
        run(c, REHASH, key)
        assert c.hash(other)[DIGEST_FIELD] == c.hash(key)[DIGEST_FIELD]


def test_a_pack_that_does_not_fit_is_ignored(clients: list[Client]) -> None:
    # The pack is the client's shortcut, never a second source of truth: one of
    # the wrong length (or an argument count that leaves none) is not used, and
    # a slot that is not hex falls back to the script's own hash.
    c = clients[0]
    pairs = [(b"m:x", b"1:a:+"), (b"m:y", b"2:a:+")]
    flat = [x for kv in pairs for x in kv]
    good = hash_pack(pairs)
    assert good == b"%013x%013x" % (field_hash(*pairs[0]), field_hash(*pairs[1]))
    for i, pack in enumerate([good, good[:13], good + b"0", b"z" * 26, b"", good[:13] + b"z" * 13]):
        key = b"pack%d" % i
        assert run(c, LWW_MERGE, key, b"set:1", 0, *flat, pack) == 2
        check_tree(c, [key])
        assert c.hash(key) == c.hash(b"pack0")
    # Purge with a pack that fits and with one that does not.
    assert run(c, PURGE, b"pack1", b"set:1", b"m:x", b"1:a:+", hash_pack(pairs[:1])) == 1
    assert run(c, PURGE, b"pack2", b"set:1", b"m:x", b"1:a:+", b"0") == 1
    check_tree(c, [b"pack1", b"pack2"])
    assert c.hash(b"pack1") == c.hash(b"pack2")


def test_digest_of_another_format_is_recomputed(clients: list[Client]) -> None:
    c = clients[0]
    run(c, LWW_MERGE, b"fmt", b"map:1", 0, b"f:x", b"1:a:+1")
    # A 64-bit digest of an earlier development format, or garbage: not trusted.
    for bad in (b"ffffffffffffffff", b"zz", b""):
        c("HSET", b"fmt", DIGEST_FIELD, bad)
        run(c, LWW_MERGE, b"fmt", b"map:1", 0, b"f:y", b"%d:a:+2" % len(bad))
        check_tree(c, [b"fmt"])


def test_tree_keys_share_the_key_partition() -> None:
    for key in (b"a", b"{user42}:cart", "s\u00e9ssion:1", b"\xff" * 30):
        keys = script_keys(key)
        assert [key_partition(k) for k in keys] == [key_partition(key)] * 2
        tree = tree_key(key_partition(key))
        assert keys[1:] == [tree] and tree.startswith(TREE_PREFIX)
    assert len({tree_key(p) for p in range(PARTITIONS)}) == PARTITIONS
    for bad in (-1, PARTITIONS, True, "1"):
        with pytest.raises(ConfigurationError):
            tree_key(bad)  # type: ignore[arg-type]


def test_old_data_gets_its_digest_on_write_and_by_rehash(clients: list[Client]) -> None:
    c = clients[0]
    # Written before digests existed: no digest field, no tree entry.
    c("HSET", b"old", MARKER_FIELD, b"map:1", b"f:x", b"1:a:+1")
    c("HSET", b"old2", MARKER_FIELD, b"set:1", b"m:x", b"1:a:+")
    c("HSET", b"plain", b"f:x", b"1:a:+1")  # not ours: rehash leaves it alone
    assert run(c, REHASH, b"old") == state_digest(c.hash(b"old"))
    assert run(c, REHASH, b"plain") is None
    assert DIGEST_FIELD not in c.hash(b"plain")
    assert run(c, REHASH, b"nothing") is None
    # A write on old data computes the digest from every field first.
    run(c, LWW_MERGE, b"old2", b"set:1", 0, b"m:y", b"2:a:+")
    check_tree(c, [b"old", b"old2", b"plain"])
    # A stale digest (a hand-edited hash) is corrected by the rehash.
    c("HSET", b"old", b"f:y", b"2:a:+2")
    run(c, REHASH, b"old")
    check_tree(c, [b"old"])


def test_sweep_drops_keys_no_script_saw_go(clients: list[Client]) -> None:
    c = clients[0]
    keys = [b"{t}a", b"{t}b", b"{t}c"]
    for k in keys:
        run(c, LWW_MERGE, k, b"map:1", 0, b"f:x", b"1:a:+" + k)
    p = key_partition(keys[0])
    c("DEL", keys[0])  # by hand: the index still has it
    c("HSET", keys[1], b"f:z", b"5:a:+")  # by hand, without the digest
    c("HDEL", keys[1], DIGEST_FIELD)
    assert len(tree_of(c, p)[0]) == 3
    total = c("EVAL", SWEEP.source, 1, tree_key(p))
    check_tree(c, keys)
    assert total == tree_of(c, p)[1]
    c("DEL", *keys[1:])
    assert c("EVAL", SWEEP.source, 1, tree_key(p)) == ZERO_DIGEST


def test_dead_entries_are_dropped_by_writes_and_never_outnumber_live_ones(
    clients: list[Client],
) -> None:
    c = clients[0]
    p = key_partition(b"{s}")
    live = [b"{s}:live:%d" % i for i in range(20)]
    for k in live:
        run(c, LWW_MERGE, k, b"map:1", 0, b"f:x", b"1:a:+")
    dead_counts = []
    for i in range(600):
        # Churn: each session written once, then gone without a script seeing it.
        key = b"{s}:%d" % i
        run(c, LWW_MERGE, key, b"map:1", 3_600_000, b"f:x", b"%d:a:+" % (i + 1))
        c("DEL", key)  # as if it had expired
        index, _ = tree_of(c, p)
        assert set(live) <= set(index)
        dead_counts.append(len(index) - len(live))
    assert max(dead_counts) <= 2 * len(live)  # bounded, about the live ones' number
    assert c("EVAL", SWEEP.source, 1, tree_key(p)) == segment_digest(tree_of(c, p)[0])
    check_tree(c, live)


def test_dead_entries_across_many_segments_stay_a_few_per_segment(
    clients: list[Client],
) -> None:
    # Sessions spread over thousands of segments, most holding one key or none:
    # a segment's dead entries go when a later write to it probes, so across the
    # index they stay a few per segment written to, however many rounds of keys
    # expire there (docs/consistency.md), rather than one per key ever written.
    c = clients[0]
    segments = 200
    tags = [b"{seg%d}" % j for j in range(segments)]
    partitions = {key_partition(t) for t in tags}
    rounds = 24
    for r in range(rounds):
        for t in tags:
            key = t + b":%d" % r
            run(c, LWW_MERGE, key, b"map:1", 3_600_000, b"f:x", b"%d:a:+" % (r + 1))
            c("DEL", key)  # as if it had expired
    dead = sum(len(tree_of(c, p)[0]) for p in partitions)
    assert dead <= 8 * len(partitions) < rounds * segments // 2, dead


async def test_expired_keys_leave_the_index(redis_servers: list[RedisServer]) -> None:
    c = Client(redis_servers[0].port)
    try:
        p = key_partition(b"{e}")
        keys = [b"{e}:%d" % i for i in range(3)]
        for k in keys:
            run(c, LWW_MERGE, k, b"map:1", 1, b"f:x", b"1:a:+")  # 1 ms
        run(c, LWW_MERGE, b"{e}:live", b"map:1", 60_000, b"f:x", b"1:a:+")
        await wait_until(lambda: c("EXISTS", *keys) == 0, what="the keys to expire")
        assert b"{e}:live" in tree_of(c, p)[0]
        c("EVAL", SWEEP.source, 1, tree_key(p))
        index, total = tree_of(c, p)
        assert list(index) == [b"{e}:live"] and total == segment_digest(index)
        c("DEL", b"{e}:live")
        assert c("EVAL", SWEEP.source, 1, tree_key(p)) == ZERO_DIGEST
        assert c("EXISTS", tree_key(p)) == 0  # nothing left behind
    finally:
        c.sock.close()


# --- the read-side building blocks, through a pool ---------------------------------


@asynccontextmanager
async def pool_on(servers: list[RedisServer]) -> AsyncIterator[Pool]:
    async with trio_redisha.open_pool(*(s.url for s in servers), timeout=0.5) as pool:
        with trio.fail_after(5):
            while pool.available < len(servers):  # noqa: ASYNC110 - no "connected" event
                await trio.sleep(0.01)
        yield pool


async def test_digest_reads_and_segment_descent(redis_servers: list[RedisServer]) -> None:
    all3 = [0, 1, 2]
    async with pool_on(redis_servers) as pool:
        await HashMap(pool, "m:1").set({"a": 1})
        await Set(pool, "s:1").add("x")
        await Counter(pool, "c:1").incr(3)
        for key in ("m:1", "s:1", "c:1"):
            got = await read_digests(pool, key, all3)
            assert digests_agree(got)
            assert got[0] == state_digest(await raw_hash(redis_servers[0], key))
        assert await read_digests(pool, "nothing", all3) == dict.fromkeys(all3, ABSENT)
        assert digests_agree(await read_digests(pool, "nothing", all3))
        assert await differing_segments(pool, all3) == ([], (0, 1, 2))

        # Server 1 misses a write, server 2 restarts empty.
        await pool.execute_on([1], "HSET", "m:1", "f:b", "9:z:+2")
        await pool.execute_on([2], "FLUSHALL")
        got = await read_digests(pool, "m:1", all3)
        assert not digests_agree(got) and got[2] == ABSENT
        parts = sorted({key_partition(k) for k in ("m:1", "s:1", "c:1")})
        diff, answered = await differing_segments(pool, all3)
        assert (diff, answered) == (parts, (0, 1, 2))
        # Only the keys that differ are listed, segment by segment.
        listed = [await differing_keys(pool, all3, p) for p in diff]
        assert sorted(k for keys, _ in listed for k in keys) == [b"c:1", b"m:1", b"s:1"]
        assert (await differing_keys(pool, [0, 1], key_partition("m:1")))[0] == []  # stale
        keys0 = await segment_keys(pool, 0, key_partition("m:1"))
        assert keys0 is not None and set(keys0) == {b"m:1"}
        # A by-hand edit leaves the tree stale until the key is rehashed.
        await rehash_key(pool, "m:1", [1])
        assert (await differing_keys(pool, [0, 1], key_partition("m:1")))[0] == [b"m:1"]

        for key in ("m:1", "s:1", "c:1"):
            await repair_key(pool, key)
        assert await differing_segments(pool, all3) == ([], (0, 1, 2))
        for key in ("m:1", "s:1", "c:1"):
            assert digests_agree(await read_digests(pool, key, all3))

        # Groups: one digest per group, the XOR of its segments'.
        groups = [parts, [0, 1, 2, 3], []]
        by_server = await segment_digests(pool, all3, groups)
        assert by_server[0] == by_server[1] == by_server[2]
        assert by_server[0][2] == ZERO_DIGEST
        for n, g in enumerate(groups[:2]):
            single = await segment_digests(pool, [0], [[p] for p in g])
            assert xor_all(single[0]) == by_server[0][n]

        with pytest.raises(ConfigurationError):
            await read_digests(pool, "m:1", [3])
        with pytest.raises(ConfigurationError):
            await differing_segments(pool, all3, group=0)


async def test_old_data_differs_until_rehashed(redis_servers: list[RedisServer]) -> None:
    all3 = [0, 1, 2]
    async with pool_on(redis_servers) as pool:
        # The same old (digest-less) value on every server: unknown, so "differs".
        await pool.execute("HSET", "legacy", "__redisha__", "map:1", "f:a", "1:x:+1")
        got = await read_digests(pool, "legacy", all3)
        assert got == dict.fromkeys(all3, None) and not digests_agree(got)
        # Not in any tree yet; the rehash brings it in, alike everywhere.
        assert await segment_keys(pool, 0, key_partition("legacy")) == {}
        replies = await rehash_key(pool, "legacy", all3)
        assert len(set(replies)) == 1
        assert digests_agree(await read_digests(pool, "legacy", all3))
        assert (await differing_segments(pool, all3))[0] == []
        # The sweep finds nothing to change and answers the segment digest.
        replies = await sweep_segment(pool, all3, key_partition("legacy"))
        assert len(set(replies)) == 1 and replies[0] is not None


async def test_rehash_and_sweep_leave_foreign_values_alone(
    redis_servers: list[RedisServer],
) -> None:
    all3 = [0, 1, 2]
    async with pool_on(redis_servers) as pool:
        # A later version's marker, or a look-alike: not ours to write to.
        await pool.execute("HSET", "later", "__redisha__", "map:9", "f:a", "1:x:+1")
        before = await pool.execute_on(all3, "DUMP", "later")
        assert await rehash_key(pool, "later", all3) == [None, None, None]
        # Even when the index names it (a key of ours replaced by someone else).
        tree = tree_key(key_partition("later"))
        await pool.execute("HSET", tree, "klater", "0000000000000001")
        await sweep_segment(pool, all3, key_partition("later"))
        assert await pool.execute_on(all3, "DUMP", "later") == before
        assert await segment_keys(pool, 0, key_partition("later")) == {}


def test_keys_holding_the_same_state_do_not_cancel_out(clients: list[Client]) -> None:
    a, b = clients
    p = key_partition(b"{z}")
    s_args = [b"counter:1", 0, b"p:a", 1]
    t_args = [b"counter:1", 0, b"p:a", 2]
    # Two keys with the same state on one server only: the segments differ.
    run(a, COUNTER_MERGE, b"{z}1", *s_args)
    run(a, COUNTER_MERGE, b"{z}2", *s_args)
    assert tree_of(a, p)[1] != ZERO_DIGEST == tree_of(b, p)[1]
    # Two states swapped between two keys: the segments differ too.
    run(b, COUNTER_MERGE, b"{z}1", *t_args)
    run(b, COUNTER_MERGE, b"{z}2", *s_args)
    run(a, COUNTER_MERGE, b"{z}2", *t_args)
    a("DEL", b"{z}1")
    run(a, COUNTER_MERGE, b"{z}1", *s_args)
    run(a, REHASH, b"{z}1")
    assert a.hash(b"{z}1") == b.hash(b"{z}2") and a.hash(b"{z}2") == b.hash(b"{z}1")
    assert tree_of(a, p)[1] != tree_of(b, p)[1]


async def test_full_read_from_one_and_digests_from_the_others(
    redis_servers: list[RedisServer],
) -> None:
    async with pool_on(redis_servers) as pool:
        await HashMap(pool, "h").set({"a": 1, "b": 2})
        reply, digests = await read_full_and_digests(pool, "h", 1, [0, 1, 2])
        assert set(digests) == {0, 2}
        mine = digest_of_reply(reply)
        assert mine is not None and all(d == mine for d in digests.values())
        await pool.execute_on([2], "DEL", "h")
        reply, digests = await read_full_and_digests(pool, "h", 0, [1, 2])
        assert digests[1] == digest_of_reply(reply) and digests[2] == ABSENT
        reply, digests = await read_full_and_digests(pool, "h", 2, [0])
        assert digest_of_reply(reply) == ABSENT != digests[0]
        assert digest_of_reply(ValueError("x")) is None


_THREADS_FIRST_USE = """
import sys, threading, trio, trio_redisha
barrier = threading.Barrier(4)
out = [None] * 4
def run(i):
    async def main():
        async with trio_redisha.open_pool(sys.argv[1]) as pool:
            await pool.ping()
            barrier.wait()
            await trio_redisha.Counter(pool, f"c{i}").incr(i + 1)
            return await trio_redisha.Counter(pool, f"c{i}").get()
    try:
        out[i] = trio.run(main)
    except BaseException as exc:
        out[i] = repr(exc)
threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(out)
"""


def test_threads_making_their_first_crdt_at_once_all_work(redis_server: RedisServer) -> None:
    # Each thread runs its own trio.run and pool (a threaded server embedding
    # trio workers). The partition tag table, built on first use, was filled
    # in place by every racing thread: a bare AssertionError in all but one.
    # A fresh interpreter, where no table is built yet.
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_FIRST_USE, redis_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 2, 3, 4]"
