"""The CRDT Lua scripts, run directly on a real redis-server.

Each script is checked against its Python twin (``_storage.apply_*_fields``) on
arbitrary stored hashes and arbitrary incoming fields, malformed ones and ties
included, so the server, the client-side merge and read repair share one rule.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_redisha import ReplyError
from trio_redisha.crdt._scripts import COUNTER_MERGE, FOREIGN_CODE, LWW_MERGE, PURGE
from trio_redisha.crdt._state import Entry
from trio_redisha.crdt._storage import (
    CLEAR_FIELD,
    DIGEST_FIELD,
    MAP,
    MARKER_FIELD,
    apply_counter_fields,
    apply_lww_fields,
    state_digest,
)
from trio_redisha.scripts import Script
from trio_redisha.testing import (
    Arg,
    RedisServer,
    decode_reply,
    encode_command,
    reply_end,
)


class Client:
    """A blocking RESP client on one socket (hypothesis examples run synchronously)."""

    def __init__(self, port: int, form: str = "eval") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = bytearray()
        self.form = form
        self.loaded: set[str] = set()

    def __call__(self, *args: Arg) -> Any:
        self.sock.sendall(encode_command(*args))
        while (end := reply_end(self.buf)) is None:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.buf += chunk
        raw = bytes(self.buf[:end])
        del self.buf[:end]
        return decode_reply(raw)

    def script(self, script: Script, key: bytes, *args: Arg) -> Any:
        """Run ``script`` in this client's form: ``EVAL`` of the source, or its function."""
        if self.form == "eval":
            return self("EVAL", script.source, 1, key, *args)
        assert script.function is not None and script.library_code is not None
        if script.function not in self.loaded:
            name = self("FUNCTION", "LOAD", "REPLACE", script.library_code)
            assert name == script.function.encode()
            self.loaded.add(script.function)
        return self("FCALL", script.function, 1, key, *args)

    def hash(self, key: bytes) -> dict[bytes, bytes]:
        flat = self("HGETALL", key)
        return dict(zip(flat[0::2], flat[1::2], strict=True))

    def state(self, key: bytes) -> dict[bytes, bytes]:
        """The stored hash without its digest, after checking the digest is right."""
        stored = self.hash(key)
        if stored:
            assert stored.pop(DIGEST_FIELD) == state_digest(stored)
        return stored

    def load(self, key: bytes, stored: dict[bytes, bytes]) -> None:
        self("DEL", key)
        if stored:
            self("HSET", key, *[x for kv in stored.items() for x in kv])


@pytest.fixture(params=["eval", "function"])
def client(redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client running the write scripts as the pool does: as functions, or with EVAL.

    Both forms must behave the same: the function, a call after another on the
    same library, proves a call's state is never carried to the next.
    """
    c = Client(redis_server.port, request.param)
    yield c
    c.sock.close()


KEY = b"k"
fuzz = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

actors = st.sampled_from([b"a", b"ab", b"B", b"\xff", b"z\x00"])
names = st.sampled_from([b"f:x", b"f:y", b"f:", b"f:\x00z"])
good_entries = st.builds(
    Entry,
    ts=st.sampled_from([0, 1, 2, 9, 10, 10**18, 10**19 - 1]),
    actor=actors,
    deleted=st.booleans(),
    payload=st.sampled_from([b"", b"1", b"2", b"\x00", b"\xff\xfe", b"a:b", b"\r\n-"]),
).map(Entry.encode)
bad_entries = st.sampled_from(
    [b"", b"01:a:+", b"1::+", b"1:a:?", b"x:a:+", b"1" * 20 + b":a:+", b"-1:a:+", b"1:a"]
)
raw_entries = st.one_of(good_entries, good_entries, bad_entries)
raw_totals = st.one_of(
    st.integers(0, 12).map(lambda n: b"%d" % n),
    st.sampled_from([b"9" * 19, b"1" + b"0" * 18, b"1" + b"0" * 19, b"01", b"-1", b"", b"1.5"]),
)
counter_fields = st.sampled_from([b"p:a", b"p:ab", b"n:a", b"n:\xff"])


@fuzz
@given(
    stored=st.dictionaries(names, raw_entries, max_size=4),
    incoming=st.lists(st.tuples(names, raw_entries), min_size=1, max_size=5),
)
def test_lww_script_matches_twin(
    client: Client, stored: dict[bytes, bytes], incoming: list[tuple[bytes, bytes]]
) -> None:
    stored = {MARKER_FIELD: b"map:1", **stored}
    client.load(KEY, stored)
    flat = [x for kv in incoming for x in kv]
    reply = client.script(LWW_MERGE, KEY, b"map:1", 0, *flat)
    assert isinstance(reply, int)
    assert client.hash(KEY) == apply_lww_fields(stored, b"map:1", incoming)
    # Replaying the same write changes nothing.
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, *flat) == 0


# With clear stamps: the c: field among the names, bare tombstones common among
# the values (as stamps and as fields: ties), and malformed stamps too.
clear_stamps = st.builds(
    Entry, ts=st.sampled_from([0, 1, 2, 9, 10, 10**18]), actor=actors, deleted=st.just(True)
).map(Entry.encode)
clear_raw = st.one_of(clear_stamps, clear_stamps, good_entries, bad_entries)
clear_names = st.sampled_from([CLEAR_FIELD, b"f:x", b"f:y", b"f:", b"c:x", b"m:x"])


@fuzz
@given(
    stored=st.dictionaries(clear_names, clear_raw, max_size=5),
    incoming=st.lists(st.tuples(clear_names, clear_raw), min_size=1, max_size=6),
)
def test_lww_script_with_clears_matches_twin(
    client: Client, stored: dict[bytes, bytes], incoming: list[tuple[bytes, bytes]]
) -> None:
    stored = {MARKER_FIELD: b"map:1", **stored}
    client.load(KEY, stored)
    flat = [x for kv in incoming for x in kv]
    reply = client.script(LWW_MERGE, KEY, b"map:1", 0, *flat)
    assert isinstance(reply, int)
    after = client.hash(KEY)
    assert after == apply_lww_fields(stored, b"map:1", incoming)
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, *flat) == 0
    # The merged state is the state merge: the server and the client agree.
    incoming_state = MAP.parse({MARKER_FIELD: b"map:1", **dict(incoming)})
    if len({f for f, _ in incoming}) == len(incoming):  # no field given twice
        assert MAP.parse(after) == MAP.parse(stored).merge(incoming_state)


def test_clear_deletes_what_it_kills_and_refuses_older_writes(client: Client) -> None:
    fields = [b"f:a", b"3:x:+1", b"f:b", b"5:x:-", b"f:c", b"9:x:+3", b"f:d", b"6:a:+4"]
    client.script(LWW_MERGE, KEY, b"map:1", 0, *fields)
    # A clear at 6 by actor "b": kills 3 and 5, and 6 by the smaller actor "a".
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, CLEAR_FIELD, b"6:b:-") == 4
    assert client.state(KEY) == {MARKER_FIELD: b"map:1", CLEAR_FIELD: b"6:b:-", b"f:c": b"9:x:+3"}
    # A write that was concurrent with the clear but earlier is refused, however late.
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, b"f:a", b"4:z:+late", b"f:e", b"6:b:+") == 0
    # An older clear changes nothing; a later one and a later field do.
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, CLEAR_FIELD, b"2:x:-") == 0
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, b"f:a", b"7:z:+new") == 1
    assert client.state(KEY) == {
        MARKER_FIELD: b"map:1",
        CLEAR_FIELD: b"6:b:-",
        b"f:a": b"7:z:+new",
        b"f:c": b"9:x:+3",
    }
    # The stamp is a tombstone like the others: PURGE drops it, and the key with it.
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, CLEAR_FIELD, b"10:b:-") == 3
    assert client.state(KEY) == {MARKER_FIELD: b"map:1", CLEAR_FIELD: b"10:b:-"}
    assert client.script(PURGE, KEY, b"map:1", CLEAR_FIELD, b"10:b:-") == 1
    assert client("EXISTS", KEY) == 0


def test_clear_refreshes_expiry_and_creates_the_marker(client: Client) -> None:
    assert client.script(LWW_MERGE, KEY, b"map:1", 5000, CLEAR_FIELD, b"4:a:-") == 1
    assert client.state(KEY) == {MARKER_FIELD: b"map:1", CLEAR_FIELD: b"4:a:-"}
    assert 4000 < client("PTTL", KEY) <= 5000


@fuzz
@given(
    stored=st.dictionaries(counter_fields, raw_totals, max_size=4),
    incoming=st.lists(st.tuples(counter_fields, raw_totals), min_size=1, max_size=4),
)
def test_counter_script_matches_twin(
    client: Client, stored: dict[bytes, bytes], incoming: list[tuple[bytes, bytes]]
) -> None:
    stored = {MARKER_FIELD: b"counter:1", **stored}
    client.load(KEY, stored)
    reply = client.script(COUNTER_MERGE, KEY, b"counter:1", 0, *[x for kv in incoming for x in kv])
    twin = apply_counter_fields(stored, b"counter:1", incoming)
    assert twin is not None
    assert client.hash(KEY) == twin[0]
    assert reply == twin[1]


def test_scripts_create_the_marker(client: Client) -> None:
    assert client.script(COUNTER_MERGE, KEY, b"counter:1", 0, b"p:a", b"3") == [b"3"]
    assert client.state(KEY) == {MARKER_FIELD: b"counter:1", b"p:a": b"3"}
    assert client.script(COUNTER_MERGE, KEY, b"counter:1", 0, b"p:a", b"2") == [b"3"]
    assert client.script(LWW_MERGE, b"m", b"set:1", 0, b"m:x", b"5:a:+") == 1
    assert client.state(b"m") == {MARKER_FIELD: b"set:1", b"m:x": b"5:a:+"}


@pytest.mark.parametrize(
    ("script", "args"),
    [
        (COUNTER_MERGE, [b"counter:1", 0, b"p:a", b"1"]),
        (LWW_MERGE, [b"map:1", 0, b"f:a", b"1:a:+1"]),
        (LWW_MERGE, [b"set:1", 0, b"m:a", b"1:a:+"]),
        (PURGE, [b"set:1", b"m:a", b"1:a:-"]),
    ],
    ids=["counter", "map", "set", "purge"],
)
@pytest.mark.parametrize(
    "setup",
    [
        ["SET", KEY, "plain value"],
        ["RPUSH", KEY, "a", "b"],
        ["HSET", KEY, "m:a", "1:a:-", "f:a", "1:a:-", "p:a", "1"],  # no marker
        ["HSET", KEY, "__redisha__", "other:1", "m:a", "1:a:-"],
        ["HSET", KEY, "__redisha__", "counter:2", "m:a", "1:a:-"],  # a future version
    ],
    ids=["string", "list", "unmarked-hash", "other-marker", "other-version"],
)
def test_foreign_value_is_refused_and_left_untouched(
    client: Client, script: Script, args: list[Arg], setup: list[Arg]
) -> None:
    client(*setup)
    client("PEXPIRE", KEY, 100_000)
    before = client("DUMP", KEY)
    reply = client.script(script, KEY, *args)
    assert isinstance(reply, ReplyError)
    assert str(reply).startswith(FOREIGN_CODE + " ")
    assert client("DUMP", KEY) == before
    assert 0 < client("PTTL", KEY) <= 100_000


def test_other_types_marker_is_foreign(client: Client) -> None:
    client.script(LWW_MERGE, KEY, b"map:1", 0, b"f:a", b"1:a:+1")
    reply = client.script(LWW_MERGE, KEY, b"set:1", 0, b"m:a", b"1:a:+")
    assert isinstance(reply, ReplyError)
    assert "map:1" in str(reply)


def test_expiry_is_set_refreshed_or_left_alone(client: Client) -> None:
    client.script(LWW_MERGE, KEY, b"map:1", 5000, b"f:a", b"1:a:+1")
    assert 4000 < client("PTTL", KEY) <= 5000
    # Refreshed even when the write changes nothing (a replayed write or repair).
    client.script(LWW_MERGE, KEY, b"map:1", 60000, b"f:a", b"1:a:+1")
    assert 59000 < client("PTTL", KEY) <= 60000
    client.script(LWW_MERGE, KEY, b"map:1", 0, b"f:a", b"2:a:+1")  # 0: leave expiry alone
    assert 59000 < client("PTTL", KEY) <= 60000
    client.script(COUNTER_MERGE, b"c", b"counter:1", 0, b"p:a", b"1")
    assert client("PTTL", b"c") == -1
    client.script(COUNTER_MERGE, b"c", b"counter:1", 7000, b"p:a", b"1")
    assert 6000 < client("PTTL", b"c") <= 7000


def test_purge_deletes_exact_tombstones_only(client: Client) -> None:
    client.script(LWW_MERGE, KEY, b"set:1", 0, b"m:a", b"1:a:-", b"m:b", b"3:a:-", b"m:c", b"1:a:+")
    # m:b was overwritten since the read that saw "2:a:-": it stays.
    assert client.script(PURGE, KEY, b"set:1", b"m:a", b"1:a:-", b"m:b", b"2:a:-") == 1
    assert client.state(KEY) == {MARKER_FIELD: b"set:1", b"m:b": b"3:a:-", b"m:c": b"1:a:+"}
    assert client.script(PURGE, KEY, b"set:1", b"m:b", b"3:a:-") == 1
    assert client.script(PURGE, KEY, b"set:1", b"m:c", b"1:a:+") == 1
    # Nothing but the marker left: the key goes.
    assert client("EXISTS", KEY) == 0
    assert client.script(PURGE, KEY, b"set:1", b"m:c", b"1:a:+") == 0


def test_binary_safe(client: Client) -> None:
    value = bytes(range(256))
    entry = Entry(7, b"\x01\xfe", False, value).encode()
    assert client.script(LWW_MERGE, KEY, b"map:1", 0, b"f:\x00\r\n", entry) == 1
    assert client.hash(KEY)[b"f:\x00\r\n"] == entry
