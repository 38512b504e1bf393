"""Property tests of the pure CRDT layer: states, merge, storage, repair planning.

Timestamps and actor ids are drawn from tiny ranges on purpose, so that ties
(equal timestamps, equal actors, one actor id a prefix of another) are common:
that is where Roshi's two tie rules diverged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_redisha.crdt import _state
from trio_redisha.crdt._plan import plan_repair
from trio_redisha.crdt._read import _fields_of, _pair_values, _parse
from trio_redisha.crdt._state import (
    CounterState,
    Entry,
    LWWState,
    MapState,
    Mergeable,
    SetState,
    StoredRegisters,
    cleared_by,
    merge_all,
    merge_entries,
    parse_total,
)
from trio_redisha.crdt._storage import (
    CLEAR_FIELD,
    COUNTER,
    DIGEST_FIELD,
    MAP,
    MARKER_FIELD,
    SET,
    CRDTType,
    Fields,
    apply_counter_fields,
    apply_lww_fields,
    detect_type,
    hash_fields,
    state_digest,
)
from trio_redisha.exceptions import ProtocolError, ReplyError

S = TypeVar("S", bound=Mergeable)

# The convergence properties draw whole histories: fewer, larger examples keep
# the suite fast; the tiny alphabets below make each one dense in ties.
histories = settings(max_examples=50, deadline=None)

actors = st.sampled_from([b"a", b"ab", b"b", b"z9", b"\xff"])
names = st.sampled_from([b"x", b"y", b"", b"z:z", b"\x00"])
small_ts = st.integers(min_value=0, max_value=4)
entries = st.builds(
    Entry,
    ts=small_ts,
    actor=actors,
    deleted=st.booleans(),
    payload=st.sampled_from([b"", b"1", b"2", b'"a"', b"\x00\xff"]),
)
set_entries = st.builds(Entry, ts=small_ts, actor=actors, deleted=st.booleans())
totals = st.dictionaries(actors, st.integers(min_value=0, max_value=50), max_size=4)
counter_states = st.builds(CounterState, p=totals, n=totals)
map_states = st.builds(MapState, st.dictionaries(names, entries, max_size=4))
set_states = st.builds(SetState, st.dictionaries(names, set_entries, max_size=4))
# Clear stamps: tombstone registers, on the same tiny alphabets (ties with fields).
clears = st.builds(Entry, ts=small_ts, actor=actors, deleted=st.just(True))
maybe_clears = st.one_of(st.none(), clears)
cleared_map_states = st.builds(MapState, st.dictionaries(names, entries, max_size=4), maybe_clears)
cleared_set_states = st.builds(
    SetState, st.dictionaries(names, set_entries, max_size=4), maybe_clears
)
any_states = st.one_of(
    st.tuples(st.just(COUNTER), counter_states, counter_states, counter_states),
    st.tuples(st.just(MAP), map_states, map_states, map_states),
    st.tuples(st.just(SET), set_states, set_states, set_states),
    st.tuples(st.just(MAP), cleared_map_states, cleared_map_states, cleared_map_states),
    st.tuples(st.just(SET), cleared_set_states, cleared_set_states, cleared_set_states),
)


# --- merge laws ------------------------------------------------------------------


@given(any_states)
def test_merge_is_commutative_associative_idempotent(
    case: tuple[CRDTType[Any], Any, Any, Any],
) -> None:
    _, a, b, c = case
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).merge(b) == a.merge(b)
    assert hash(a.merge(b)) == hash(b.merge(a))


@given(entries, entries, entries)
def test_entry_order_is_a_total_order(a: Entry, b: Entry, c: Entry) -> None:
    assert merge_entries(a, b) == merge_entries(b, a)
    assert merge_entries(a, b) in (a, b)
    assert merge_entries(merge_entries(a, b), c) == merge_entries(a, merge_entries(b, c))
    if a != b:
        assert a.order_key() != b.order_key()  # every input decides: no unordered pair


def test_tie_rule() -> None:
    live = Entry(5, b"a", False, b"1")
    dead = Entry(5, b"a", True)
    assert merge_entries(live, dead) == dead  # same stamp: the tombstone wins
    assert merge_entries(Entry(5, b"b", False), dead) == Entry(5, b"b", False)  # actor decides
    assert merge_entries(Entry(6, b"a", False), Entry(5, b"z", True)).ts == 6  # time decides
    assert merge_entries(Entry(10, b"a", False), Entry(9, b"z", False)).ts == 10  # numerically


def test_clear_tie_rule() -> None:
    """A clear stamp is the tombstone ``ts:actor:-`` on every field: the same one order."""
    c = Entry(5, b"b", True)
    assert cleared_by(Entry(4, b"z", False, b"1"), c)  # earlier: dead, whatever the actor
    assert cleared_by(Entry(5, b"a", False, b"1"), c)  # same instant, smaller actor
    assert cleared_by(Entry(5, b"b", False, b"\xff"), c)  # same actor and instant: clear wins
    assert cleared_by(Entry(5, b"b", True), c)  # the same tombstone: subsumed
    assert not cleared_by(Entry(5, b"ba", False), c)  # larger actor id
    assert not cleared_by(Entry(5, b"c", False), c)
    assert not cleared_by(Entry(6, b"a", False), c)  # later: survives
    assert not cleared_by(Entry(10, b"a", False), Entry(9, b"z", True))  # numerically
    assert not cleared_by(Entry(0, b"a", False), None)


@given(st.dictionaries(names, entries, max_size=4), clears)
def test_states_are_normalised_by_their_clear(raw: dict[bytes, Entry], clear: Entry) -> None:
    s = MapState(raw, clear)
    assert s.entries == {k: e for k, e in raw.items() if not cleared_by(e, clear)}
    # Exactly the merge of the uncleared state with a bare clear stamp.
    assert MapState(raw).merge(MapState({}, clear)) == s
    assert s.merge(MapState(raw)) == s  # the fields it killed never come back
    assert s.timestamps() == {e.ts for e in s.entries.values()} | {clear.ts}


def test_clear_stamp_must_be_a_bare_tombstone() -> None:
    with pytest.raises(ValueError):
        MapState({}, Entry(3, b"a", False))
    with pytest.raises(ValueError):
        MapState({}, Entry(3, b"a", True, b"x"))
    # In storage such a value is malformed: treated as absent.
    stored = {MARKER_FIELD: b"map:1", b"f:a": b"1:x:+1"}
    for bad in (b"3:a:+", b"3:a:-x", b"03:a:-", b"junk"):
        assert MAP.parse({**stored, CLEAR_FIELD: bad}) == MAP.parse(stored)
        after = apply_lww_fields(stored, b"map:1", [(CLEAR_FIELD, bad)])
        assert after == {**stored, DIGEST_FIELD: state_digest(stored)}


def test_counter_value() -> None:
    s = CounterState({b"a": 5, b"b": 2}, {b"a": 3})
    assert s.value == 4
    assert s.merge(CounterState({b"a": 4}, {b"a": 4, b"c": 1})).value == 7 - 5


# --- storage encoding -----------------------------------------------------------


@given(entries)
def test_entry_round_trip(e: Entry) -> None:
    assert Entry.decode(e.encode()) == e


@given(st.binary(max_size=30))
def test_entry_decode_is_exact_or_none(raw: bytes) -> None:
    e = Entry.decode(raw)
    if e is not None:
        assert e.encode() == raw


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"007:a:+",
        b"1::+",
        b"1:a:x",
        b"-1:a:+",
        b"1:a",
        b"a:b:+",
        b"1 :a:+",
        b"1" * 20 + b":a:+",
    ],
)
def test_malformed_entries(raw: bytes) -> None:
    assert Entry.decode(raw) is None


def test_entry_decode_edge_cases() -> None:
    assert Entry.decode(b"0:a:+") == Entry(0, b"a")
    assert Entry.decode(b"9" * 19 + b":a:-x") == Entry(10**19 - 1, b"a", True, b"x")
    assert Entry.decode(b"1:a:+b:c\n") == Entry(1, b"a", False, b"b:c\n")
    with pytest.raises(ValueError):
        Entry(1, b"a:b")
    with pytest.raises(ValueError):
        Entry(-1, b"a")


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"0", 0), (b"12", 12), (b"01", None), (b"-1", None), (b"", None), (b"1 ", None),
     (b"9" * 19, 10**19 - 1), (b"1" + b"0" * 19, None), (b"\xd9\xa1", None)],
)  # fmt: skip
def test_parse_total(raw: bytes, value: int | None) -> None:
    assert parse_total(raw) == value


@given(any_states)
def test_fields_round_trip(case: tuple[CRDTType[Any], Any, Any, Any]) -> None:
    kind, a, _, _ = case
    stored = {MARKER_FIELD: kind.marker, **dict(kind.fields(a))}
    assert kind.parse(stored) == a
    assert detect_type(stored) == kind.name
    flat = [x for pair in stored.items() for x in pair]
    assert hash_fields(flat) == stored
    assert detect_type(flat) == kind.name


def test_detect_type() -> None:
    assert detect_type([]) is None
    assert detect_type({b"a": b"b"}) is None
    assert detect_type({MARKER_FIELD: b"map:2"}) is None  # a future format: not ours to touch
    assert detect_type({"__redisha__": "set:1"}) == "set"  # decode_responses pools
    assert detect_type([b"__redisha__", b"counter:1", b"p:a", b"1"]) == "counter"


def test_parse_ignores_unknown_and_malformed_fields() -> None:
    stored = {
        MARKER_FIELD: b"counter:1",
        b"p:a": b"3",
        b"p:b": b"x",
        b"n:a": b"01",
        b"q:a": b"9",
        b"p:": b"4",
    }
    assert COUNTER.parse(stored) == CounterState({b"a": 3}, {})
    assert MAP.parse({b"f:a": b"1:x:+1", b"f:b": b"junk", b"m:c": b"1:x:+"}) == MapState(
        {b"a": Entry(1, b"x", False, b"1")}
    )


# Stored values as a server may hold them: well-formed registers (often shared by
# several fields, as one write stores them), clear stamps, and malformed ones.
stored_values = st.one_of(
    entries.map(Entry.encode),
    set_entries.map(Entry.encode),
    st.sampled_from([b"", b"junk", b"01:a:+", b"1::+", b"1:a:", b"1:a:*", b"map:1", b"0" * 16]),
)
stored_names = st.one_of(
    st.sampled_from([MARKER_FIELD, DIGEST_FIELD, CLEAR_FIELD, b"f:", b"m:", b"q:x", b"", b"m"]),
    st.builds(lambda p, n: p + n, st.sampled_from([b"f:", b"m:"]), names),
)


@given(st.dictionaries(stored_names, stored_values, max_size=12), st.sampled_from([MAP, SET]))
def test_fast_parse_builds_the_same_state(stored: dict[bytes, bytes], kind: CRDTType[Any]) -> None:
    """The read path's parse (C-level passes, shared values decoded once) is ``kind.parse``."""
    fast = _parse(kind, _fields_of([x for pair in stored.items() for x in pair]))
    slow = kind.parse(stored)
    assert type(fast) is type(slow) and fast == slow
    assert fast.timestamps() == {e.ts for e in slow.entries.values()} | (
        set() if slow.cleared is None else {slow.cleared.ts}
    )
    live = {k for k, e in slow.entries.items() if not e.deleted}
    assert (fast.members() if kind is SET else set(fast.live())) == live


@given(
    st.dictionaries(stored_names, stored_values, max_size=12),
    st.sampled_from([MAP, SET]),
    st.integers(min_value=0, max_value=5),
)
def test_stored_registers_answer_as_the_state_does(
    stored: dict[bytes, bytes], kind: CRDTType[Any], before: int
) -> None:
    """Reading a hash every server agrees on, without its state: the same answers."""
    prefix = b"m:" if kind is SET else b"f:"
    # Mostly hashes the fast path takes: the marker, the digest, registers only.
    regular = {k: v for k, v in stored.items() if k.startswith(prefix) and Entry.decode(v)}
    for fields in (stored, {MARKER_FIELD: kind.marker, DIGEST_FIELD: b"0" * 16, **regular}):
        view = StoredRegisters.of(fields, prefix, (MARKER_FIELD, DIGEST_FIELD))
        state = kind.parse(fields)
        if view is None:
            assert fields is stored or not regular or any(b"\x00" in k for k in regular)
            continue
        assert view.state(type(state)) == state
        assert view.timestamps() == state.timestamps()
        assert view.has_expired(before) == bool(kind.expired(state, before))
        live = {k for k, e in state.entries.items() if not e.deleted}
        assert set(view.live_names()) == live
        payloads = {k: e.payload for k, e in state.entries.items() if not e.deleted}
        assert sorted(view.live_payloads()) == sorted(payloads.items())
        try:
            texts = {m.decode() for m in live}
        except UnicodeDecodeError:
            with pytest.raises(UnicodeDecodeError):
                view.live_texts()
        else:
            assert view.live_texts() == texts


@given(
    st.dictionaries(stored_names, stored_values, max_size=12),
    st.sampled_from([MAP, SET]),
    st.sampled_from([None, b"map:1", b"set:1"]),
)
def test_stored_registers_of_a_reply_are_those_of_its_fields(
    stored: dict[bytes, bytes], kind: CRDTType[Any], marker: bytes | None
) -> None:
    """``of_reply`` (no dict built) gives what ``of`` gives, for a reply holding the marker."""
    prefix = b"m:" if kind is SET else b"f:"
    regular = {k: v for k, v in stored.items() if k.startswith(prefix) and Entry.decode(v)}
    ignored = (MARKER_FIELD, DIGEST_FIELD)
    for fields in (stored, {MARKER_FIELD: kind.marker, DIGEST_FIELD: b"0" * 16, **regular}):
        if marker is not None and fields is stored:
            fields = {**fields, MARKER_FIELD: marker}
        reply = [x for pair in fields.items() for x in pair]
        flat = StoredRegisters.of_reply(reply, prefix, kind.marker, ignored)
        if fields.get(MARKER_FIELD) != kind.marker:
            assert flat is None
            continue
        view = StoredRegisters.of(fields, prefix, ignored)
        if view is None:
            assert flat is None
            continue
        assert flat is not None
        assert (flat.names, flat.raws, flat.registers) == (view.names, view.raws, view.registers)
        assert sorted(flat.live_payloads()) == sorted(view.live_payloads())
        assert reply == [x for pair in fields.items() for x in pair]  # the reply is not changed


def test_stored_registers_of_a_reply_refuse_what_the_dict_must_judge() -> None:
    ok = [MARKER_FIELD, b"set:1", DIGEST_FIELD, b"0" * 16, b"m:a", b"1:x:+", b"m:b", b"2:x:-"]
    ignored = (MARKER_FIELD, DIGEST_FIELD)
    flat = StoredRegisters.of_reply(ok, b"m:", b"set:1", ignored)
    assert flat is not None and set(flat.live_names()) == {b"a"}
    for bad in (
        ok[:-1],  # not in pairs
        tuple(ok),  # not a list
        ok[2:],  # no marker
        [MARKER_FIELD, b"map:1", *ok[2:]],  # another type's marker
        [*ok, MARKER_FIELD, b"set:1"],  # the marker twice
        [*ok, DIGEST_FIELD, b"1" * 16],  # the digest twice
        [*ok, b"m:c", 5],  # a value that is not bytes
        [*ok, b"m:c", [b"1:x:+"]],  # nor hashable
        [*ok, "m:c", b"1:x:+"],  # a name that is not bytes
        [*ok, CLEAR_FIELD, b"1:x:-"],  # a clear stamp: only the state can tell
    ):
        assert StoredRegisters.of_reply(bad, b"m:", b"set:1", ignored) is None, bad


@given(
    st.lists(
        st.tuples(
            st.one_of(stored_names, st.sampled_from([b"a\x00b", b"\x00", MARKER_FIELD + b"\x00"])),
            stored_values,
        ),
        max_size=12,
    )
)
def test_pair_values_are_what_the_dict_holds(pairs: list[tuple[bytes, bytes]]) -> None:
    """Whatever the names (NULs in them, repeated), the values found are the dict's."""
    reply = [x for pair in pairs for x in pair]
    wanted = (MARKER_FIELD, DIGEST_FIELD, b"m:")
    found = _pair_values(reply, wanted)
    fields = _fields_of(reply)
    assert found == [fields.get(k) for k in wanted]


def test_pair_values_find_fields_without_a_dict() -> None:
    reply = [b"a", b"1", b"b", b"2", b"c", b"3"]
    assert _pair_values(reply, (b"b", b"x", b"a")) == [b"2", None, b"1"]
    assert _pair_values([], (b"a",)) == [None]
    # What only the dict (_fields_of) may judge: the caller builds it.
    for bad in (reply[:-1], tuple(reply), {b"a": b"1"}, [b"a", 1], [b"a", "1"], None):
        assert _pair_values(bad, (b"a",)) is None
    assert _pair_values([*reply, b"a", b"4"], (b"a", b"b")) == [b"4", b"2"]  # the last


def test_stored_registers_refuse_what_only_the_state_can_tell() -> None:
    ok = {MARKER_FIELD: b"set:1", b"m:a": b"1:x:+", b"m:b": b"2:x:-"}
    assert StoredRegisters.of(ok, b"m:", (MARKER_FIELD,)) is not None
    for extra in (
        {CLEAR_FIELD: b"1:x:-"},
        {b"m:c": b"junk"},
        {b"q:c": b"1:x:+"},
        {b"m:\x00": b"1:x:+"},
    ):
        assert StoredRegisters.of({**ok, **extra}, b"m:", (MARKER_FIELD,)) is None
    assert StoredRegisters.of({MARKER_FIELD: b"set:1"}, b"m:", (MARKER_FIELD,)) is None


def test_decoded_registers_cache_stays_bounded() -> None:
    for i in range(_state._CACHED_MAX + 10):
        stored = {b"m:a": b"%d:x:+" % i, b"m:b": b"%d:x:-" % i, b"m:c": b"%d:x:+" % i + b"v" * 64}
        assert SET.parse(stored) == _parse(SET, stored) == _parse(SET, dict(stored))
        assert len(_state._DECODED) <= _state._CACHED_MAX


def test_fields_of_refuses_what_hash_fields_refuses() -> None:
    # Every kind of value the parser makes but bytes and str (which a pool
    # decoding replies makes, and hash_fields encodes), in either place of a pair.
    odd: list[object] = [1, None, 1.5, True, [b"b"], {b"k": b"v"}, {b"m"}, ReplyError("ERR x")]
    pairs = [[b"a", x] for x in odd] + [[x, b"1"] for x in odd]
    for bad in ([b"a"], *pairs, b"x", None, 3):
        with pytest.raises(ProtocolError):
            _fields_of(bad)
    assert _fields_of([]) == {}
    assert _fields_of({b"a": b"1"}) == {b"a": b"1"}
    assert _fields_of([b"a", b"1", b"a", b"2"]) == hash_fields([b"a", b"1", b"a", b"2"])
    assert _fields_of([b"a", "1", "b", b"2"]) == {b"a": b"1", b"b": b"2"}


# --- the Python twins of the scripts agree with merge ------------------------------


def _twin(kind: CRDTType[Any], stored: Mapping[bytes, bytes], fields: Fields) -> dict[bytes, bytes]:
    if kind is COUNTER:
        out = apply_counter_fields(stored, kind.marker, fields)
        assert out is not None
        return out[0]
    res = apply_lww_fields(stored, kind.marker, fields)
    assert res is not None
    return res


@given(any_states)
def test_script_twin_equals_merge(case: tuple[CRDTType[Any], Any, Any, Any]) -> None:
    kind, a, b, _ = case
    stored = {MARKER_FIELD: kind.marker, **dict(kind.fields(a))}
    after = _twin(kind, stored, kind.fields(b))
    assert kind.parse(after) == a.merge(b)
    # ... and applying it again changes nothing (idempotent).
    assert _twin(kind, after, kind.fields(b)) == after


def test_twins_refuse_foreign_hashes() -> None:
    assert apply_lww_fields({b"a": b"b"}, b"map:1", [(b"f:x", b"1:a:+")]) is None
    assert apply_lww_fields({MARKER_FIELD: b"set:1"}, b"map:1", []) is None
    assert apply_counter_fields({MARKER_FIELD: b"map:1"}, b"counter:1", []) is None
    new = apply_counter_fields({}, b"counter:1", [(b"p:a", b"3"), (b"n:a", b"x")])
    state = {MARKER_FIELD: b"counter:1", b"p:a": b"3"}
    assert new == ({**state, DIGEST_FIELD: state_digest(state)}, [b"3", b"0"])


# --- convergence: any delivery order, with duplicates -----------------------------


def _counter_writes(ops: list[tuple[bytes, int, int]]) -> tuple[list[Fields], int]:
    """What Counter sends for each op: absolute per-actor totals. And the true value."""
    known: dict[bytes, list[int]] = {}
    writes: list[Fields] = []
    for actor, dp, dn in ops:
        k = known.setdefault(actor, [0, 0])
        k[0] += dp
        k[1] += dn
        writes.append([(b"p:" + actor, b"%d" % k[0]), (b"n:" + actor, b"%d" % k[1])])
    return writes, sum(dp - dn for _, dp, dn in ops)


counter_ops = st.lists(
    st.tuples(actors, st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=12
)


@histories
@given(counter_ops, st.data())
def test_counter_converges_under_any_delivery(
    ops: list[tuple[bytes, int, int]], data: st.DataObject
) -> None:
    writes, expected = _counter_writes(ops)
    replicas = []
    for _ in range(3):
        # Each replica gets every write, in any order, some of them twice.
        order = data.draw(st.permutations(writes + data.draw(st.lists(st.sampled_from(writes)))))
        stored: dict[bytes, bytes] = {}
        for w in order:
            stored = _twin(COUNTER, stored, w)
        replicas.append(COUNTER.parse(stored))
    assert all(r == replicas[0] for r in replicas)
    assert replicas[0].value == expected


@histories
@given(counter_ops, st.data())
def test_counter_partial_delivery_counts_each_actors_last_write(
    ops: list[tuple[bytes, int, int]], data: st.DataObject
) -> None:
    """Each write reaches some replicas only; the merged read still counts everything
    up to each actor's last write that reached anyone (the gem's max lost increments)."""
    writes, _ = _counter_writes(ops)
    stored: list[dict[bytes, bytes]] = [{}, {}, {}]
    delivered: list[bool] = []
    for w in writes:
        targets = data.draw(st.sets(st.integers(0, 2)))
        for t in targets:
            stored[t] = _twin(COUNTER, stored[t], w)
        delivered.append(bool(targets))
    merged = merge_all((COUNTER.parse(s) for s in stored), COUNTER.empty)
    last: dict[bytes, int] = {}
    for i, ((actor, _, _), ok) in enumerate(zip(ops, delivered, strict=True)):
        if ok:
            last[actor] = i
    expected = 0
    for actor, i in last.items():
        mine = [(dp, dn) for a, dp, dn in ops[: i + 1] if a == actor]
        expected += sum(dp - dn for dp, dn in mine)
    assert merged.value == expected


lww_ops = st.lists(st.tuples(names, entries), min_size=1, max_size=12)


@pytest.mark.parametrize("kind", [MAP, SET], ids=["map", "set"])
@histories
@given(ops=lww_ops, data=st.data())
def test_lww_converges_under_any_delivery(
    kind: CRDTType[Any], ops: list[tuple[bytes, Entry]], data: st.DataObject
) -> None:
    prefix = b"f:" if kind is MAP else b"m:"
    if kind is SET:
        ops = [(n, Entry(e.ts, e.actor, e.deleted)) for n, e in ops]
    writes: list[Fields] = [[(prefix + n, e.encode())] for n, e in ops]
    winners: dict[bytes, Entry] = {}
    for n, e in ops:
        winners[n] = merge_entries(winners[n], e) if n in winners else e
    replicas = []
    for _ in range(3):
        order = data.draw(st.permutations(writes + data.draw(st.lists(st.sampled_from(writes)))))
        stored: dict[bytes, bytes] = {}
        for w in order:
            stored = _twin(kind, stored, w)
        replicas.append(kind.parse(stored))
    assert all(r == replicas[0] for r in replicas)
    assert replicas[0].entries == winners


# A history of map writes and clears: ("f", name, register) or ("c", b"", stamp).
map_ops = st.lists(
    st.one_of(
        st.tuples(st.just("f"), names, entries),
        st.tuples(st.just("c"), st.just(b""), clears),
    ),
    min_size=1,
    max_size=12,
)


def _op_fields(op: tuple[str, bytes, Entry]) -> Fields:
    kind, name, e = op
    return [(CLEAR_FIELD, e.encode())] if kind == "c" else [(b"f:" + name, e.encode())]


def _model(ops: list[tuple[str, bytes, Entry]]) -> MapState:
    """The expected map: per-field winner, minus whatever the latest clear kills."""
    winners: dict[bytes, Entry] = {}
    clear: Entry | None = None
    for kind, n, e in ops:
        if kind == "c":
            clear = e if clear is None else merge_entries(clear, e)
        else:
            winners[n] = merge_entries(winners[n], e) if n in winners else e
    return MapState({n: e for n, e in winners.items() if not cleared_by(e, clear)}, clear)


def _assert_physically_clean(stored: Mapping[bytes, bytes]) -> None:
    """No stored register is one the stored clear stamp kills (the script deleted it)."""
    clear = MAP.parse(stored).cleared
    for f, v in stored.items():
        if f.startswith(b"f:"):
            e = Entry.decode(v)
            assert e is not None and not cleared_by(e, clear), (f, v, clear)


@histories
@given(ops=map_ops, data=st.data())
def test_clears_converge_under_any_delivery(
    ops: list[tuple[str, bytes, Entry]], data: st.DataObject
) -> None:
    """Writes and clears in any order, duplicated: one state, the model's, everywhere."""
    writes = [_op_fields(op) for op in ops]
    expected = _model(ops)
    for _ in range(3):
        order = data.draw(st.permutations(writes + data.draw(st.lists(st.sampled_from(writes)))))
        stored: dict[bytes, bytes] = {}
        for w in order:
            stored = _twin(MAP, stored, w)
        assert MAP.parse(stored) == expected
        _assert_physically_clean(stored)


@histories
@given(ops=map_ops, data=st.data(), purge_all=st.booleans())
def test_a_replica_that_missed_a_clear_never_brings_fields_back(
    ops: list[tuple[str, bytes, Entry]], data: st.DataObject, purge_all: bool
) -> None:
    """Each write or clear reaches only some replicas. The merged read, read repair
    and a second read all show exactly the model of what was delivered: a field a
    delivered clear kills never shows again, from whichever replica holds it."""
    stored: list[dict[bytes, bytes]] = [{}, {}, {}]
    delivered = []
    for op in ops:
        targets = data.draw(st.sets(st.integers(0, 2)))
        for t in targets:
            stored[t] = _twin(MAP, stored[t], _op_fields(op))
        if targets:
            delivered.append(op)
    expected = _model(delivered) if delivered else MAP.empty
    purge_before = 10**6 if purge_all else 0
    for _ in range(3):  # read, repair, read again: stable
        states = [(i, MAP.parse(s)) for i, s in enumerate(stored)]
        merged = merge_all((s for _, s in states), MAP.empty)
        assert merged.live() == expected.live()
        if not purge_all:
            assert merged == expected
        plan = plan_repair(MAP, states, merged, purge_before)
        if plan.behind:
            assert plan.fields
            for i in plan.behind:
                stored[i] = _twin(MAP, stored[i], plan.fields)
        if plan.purge:
            assert plan.tombstones
            for i in plan.purge:
                stored[i] = _purge_twin(stored[i], plan.tombstones)
        for s in stored:
            _assert_physically_clean(s)
            assert MAP.parse(s).live() == expected.live()


# --- read repair: the plan brings every replica to the merge, then stops ----------


def _purge_twin(stored: dict[bytes, bytes], tombstones: Fields) -> dict[bytes, bytes]:
    out = dict(stored)
    for f, v in tombstones:
        if out.get(f) == v:
            del out[f]
    return {} if len(out) <= 1 else out


@given(any_states, st.booleans())
@settings(max_examples=100, deadline=None)
def test_repair_converges_and_then_stops(
    case: tuple[CRDTType[Any], Any, Any, Any], purge_all: bool
) -> None:
    kind, a, b, c = case
    stored = [{MARKER_FIELD: kind.marker, **dict(kind.fields(s))} if s != kind.empty else {}
              for s in (a, b, c)]  # fmt: skip
    # purge_before beyond every timestamp: every tombstone is past its grace.
    purge_before = 10**6 if purge_all else 0
    states = [(i, kind.parse(s)) for i, s in enumerate(stored)]
    merged = merge_all((s for _, s in states), kind.empty)
    before = _visible(merged)
    plan = plan_repair(kind, states, merged, purge_before)
    if plan.behind:
        assert plan.fields
        for i in plan.behind:
            stored[i] = _twin(kind, stored[i], plan.fields)
    if plan.purge:
        assert plan.tombstones
        for i in plan.purge:
            stored[i] = _purge_twin(stored[i], plan.tombstones)
    states = [(i, kind.parse(s)) for i, s in enumerate(stored)]
    merged2 = merge_all((s for _, s in states), kind.empty)
    assert _visible(merged2) == before
    if not purge_all:
        assert all(s == merged for _, s in states)
    # Replicas that agree trigger nothing more (a replica repaired with a tombstone
    # that is already expired gets purged by the next read, and then all is quiet).
    plan2 = plan_repair(kind, states, merged2, purge_before)
    assert not plan2.behind
    if plan2.purge:
        assert plan2.tombstones
        for i in plan2.purge:
            stored[i] = _purge_twin(stored[i], plan2.tombstones)
        states = [(i, kind.parse(s)) for i, s in enumerate(stored)]
        merged3 = merge_all((s for _, s in states), kind.empty)
        assert _visible(merged3) == before
        assert not plan_repair(kind, states, merged3, purge_before)


def _visible(state: Any) -> Any:
    if isinstance(state, CounterState):
        return state.value
    if isinstance(state, LWWState):
        return {k: e.payload for k, e in state.entries.items() if not e.deleted}
    raise AssertionError(state)


def test_repair_of_agreeing_replicas_is_empty() -> None:
    s = MapState({b"a": Entry(3, b"x", False, b"1"), b"b": Entry(4, b"x", True)})
    assert not plan_repair(MAP, [(0, s), (1, s), (2, s)], s, 0)


def test_expired_tombstone_is_not_repaired_onto_a_replica_without_it() -> None:
    dead = MapState({b"a": Entry(3, b"x", True)})
    old = MapState({b"a": Entry(2, b"x", False, b"1")})
    plan = plan_repair(MAP, [(0, dead), (1, MAP.empty)], dead, purge_before=10)
    assert plan.behind == () and plan.purge == (0,)
    # Not every server answered: nothing is purged (the silent one may hold a value).
    plan = plan_repair(MAP, [(0, dead), (1, MAP.empty)], dead, purge_before=10, complete=False)
    assert not plan
    # A replica with an older value still gets the tombstone, expired or not.
    plan = plan_repair(MAP, [(0, dead), (1, old)], dead, purge_before=10)
    assert plan.behind == (1,) and plan.fields == [(b"f:a", b"3:x:-")]


def test_no_tombstone_is_purged_while_a_server_only_read_from_holds_a_copy() -> None:
    dead = MapState({b"a": Entry(3, b"x", True)})
    old = MapState({b"a": Entry(2, b"x", False, b"1")})
    # Server 2 (a fallback, not a target) still holds the value the tombstone
    # deletes: purged on the targets, it would come back from server 2.
    plan = plan_repair(MAP, [(0, dead), (1, dead), (2, old)], dead, purge_before=10, targets={0, 1})
    assert not plan
    # The same for an old clear stamp, which kills fields the copy holds.
    cleared = MapState({}, Entry(3, b"x", True))
    plan = plan_repair(
        MAP, [(0, cleared), (1, cleared), (2, old)], cleared, purge_before=10, targets={0, 1}
    )
    assert not plan
    # Once the copy is gone (an empty state there), the targets purge.
    plan = plan_repair(
        MAP, [(0, dead), (1, dead), (2, MAP.empty)], dead, purge_before=10, targets={0, 1}
    )
    assert plan.purge == (0, 1) and plan.behind == ()


def test_repair_sends_the_clear_to_a_replica_that_missed_it() -> None:
    clear = Entry(5, b"x", True)
    cleared = MapState({b"b": Entry(7, b"x", False, b"2")}, clear)
    missed = MapState({b"a": Entry(3, b"y", False, b"1"), b"b": Entry(4, b"y", False, b"1")})
    merged = cleared.merge(missed)
    assert merged == cleared
    plan = plan_repair(MAP, [(0, cleared), (1, missed)], merged, purge_before=0)
    assert plan.behind == (1,)
    assert plan.fields == [(CLEAR_FIELD, b"5:x:-"), (b"f:b", b"7:x:+2")]
    stored = {MARKER_FIELD: b"map:1", **dict(MAP.fields(missed))}
    after = _twin(MAP, stored, plan.fields)
    assert after.pop(DIGEST_FIELD) == state_digest(after)
    assert after == {MARKER_FIELD: b"map:1", CLEAR_FIELD: b"5:x:-", b"f:b": b"7:x:+2"}
    # An older clear stamp is replaced, expired or not.
    older = MapState({}, Entry(2, b"x", True))
    plan = plan_repair(MAP, [(0, cleared), (1, older)], merged, purge_before=10)
    assert plan.behind == (1,) and (CLEAR_FIELD, b"5:x:-") in (plan.fields or [])


def test_expired_clear_is_purged_like_a_tombstone() -> None:
    clear = Entry(5, b"x", True)
    cleared = MapState({}, clear)
    holder = MapState({b"a": Entry(3, b"y", False, b"1")})
    # Past its grace: not sent to a replica holding nothing it kills; purged where held.
    plan = plan_repair(MAP, [(0, cleared), (1, MAP.empty)], cleared, purge_before=10)
    assert plan.behind == () and plan.purge == (0,)
    assert plan.tombstones == [(CLEAR_FIELD, b"5:x:-")]
    # ... but a replica still holding a field it kills gets it, expired or not
    # (run_repair purges the other copies only once that write succeeded).
    plan = plan_repair(MAP, [(0, cleared), (1, holder)], cleared, purge_before=10)
    assert plan.behind == (1,) and plan.fields == [(CLEAR_FIELD, b"5:x:-")]
    # Both purge it, 1 once it took the write: 1 used to keep the stamp that 0
    # dropped, and the replicas differed until the next pass.
    assert plan.purge == (0, 1)
    # Not every server answered: nothing is purged.
    plan = plan_repair(
        MAP, [(0, cleared), (1, MAP.empty)], cleared, purge_before=10, complete=False
    )
    assert not plan
