"""Key positions of commands, checked against a real server's COMMAND GETKEYS.

Every command the table knows is driven with arguments generated from the
server's own COMMAND DOCS grammar (hypothesis), and with arbitrary argument
lists drawn from the words its key specs search for; each time
:func:`command_keys` must give exactly the server's keys, or raise where the
server says the arguments leave the keys undefined.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.helpers import BlockingClient
from trio_redisha import CommandEncodeError, ReplyError, UnsupportedCommand
from trio_redisha._command_table import COMMANDS as RAW_TABLE
from trio_redisha._commands import (
    COMMANDS,
    CONTAINERS,
    REDIS_VERSION,
    command_info,
    command_keys,
)
from trio_redisha.testing import (
    RedisServer,
    find_redis_server,
)


@pytest.fixture(scope="module")
def client() -> Iterator[BlockingClient]:
    server = RedisServer(executable=find_redis_server())
    server.start()
    c = BlockingClient(server)
    try:
        yield c
    finally:
        c.close()
        server.stop()


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _pairs(flat: list[Any]) -> dict[str, Any]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


NO_KEYS: list[bytes] = []


def server_keys(client: BlockingClient, args: Sequence[bytes]) -> list[bytes] | None:
    """The server's keys for ``args``: a list, NO_KEYS when keyless, None when it refuses."""
    reply = client.call("COMMAND", "GETKEYS", *args)
    if isinstance(reply, ReplyError):
        text = str(reply)
        if "has no key arguments" in text:
            return NO_KEYS
        assert any(
            s in text
            for s in ("Invalid arguments", "Invalid number of arguments", "Invalid command")
        ), text
        return None
    assert isinstance(reply, list)
    return [bytes(k) for k in reply]


def ours(args: Sequence[bytes]) -> list[bytes] | None:
    try:
        return command_keys(args)
    except UnsupportedCommand:
        return None


def check(client: BlockingClient, args: Sequence[bytes]) -> None:
    if len(args) < 2:  # COMMAND GETKEYS needs the name and one argument
        return
    theirs = server_keys(client, args)
    mine = ours(args)
    if theirs is NO_KEYS and mine is None:
        # The server calls a keyless command keyless before it checks the arity;
        # we refuse a wrong arity (or an unknown subcommand) before sending anything.
        with pytest.raises(UnsupportedCommand, match=r"wrong number|unknown subcommand"):
            command_keys(args)
        return
    assert mine == theirs, args


# ------------------------------------------------------------------ the table


def test_table_lists_every_command_of_the_server(client: BlockingClient) -> None:
    version = _text(client.call("INFO", "server"))
    if f"redis_version:{REDIS_VERSION}" not in version:
        pytest.skip(f"the table is from Redis {REDIS_VERSION}; this server differs")
    names: set[str] = set()
    for info in _text(client.call("COMMAND", "INFO")):
        names.add(info[0])
        names.update(sub[0] for sub in info[9])
        assert (info[0] in CONTAINERS) == bool(info[9])
    assert names == set(COMMANDS) == set(RAW_TABLE)


def test_every_movable_keys_command_has_the_servers_fallback() -> None:
    movable = {n for n, info in COMMANDS.items() if "movablekeys" in info.flags}
    with_fallback = {n for n, info in COMMANDS.items() if info.fallback is not None}
    assert movable == with_fallback


def test_flags_tell_commands_apart() -> None:
    assert "blocking" in command_info(["BLPOP", "k", "0"]).flags
    assert "readonly" in command_info(["GET", "k"]).flags
    assert "@connection" in command_info(["CLIENT", "SETNAME", "x"]).acl_categories
    assert command_info(["object", "encoding", "k"]).name == "object|encoding"
    assert command_info([b"XINFO", b"stream", b"k"]).group == "stream"


# ---------------------------------------------------------- hand-picked cases

CASES: list[tuple[list[Any], list[bytes] | None]] = [
    (["GET", "k"], [b"k"]),
    (["SET", "k", "v", "GET"], [b"k"]),
    (["MSET", "a", "1", "b", "2"], [b"a", b"b"]),
    (["MSETNX", "a", "1", "b", "2"], [b"a", b"b"]),
    (["MSET", "a", "1", "b"], [b"a", b"b"]),  # the server's rule: every other one
    (["MGET", "a", "b", "c"], [b"a", b"b", b"c"]),
    (["DEL", "a", "b"], [b"a", b"b"]),
    (["EVAL", "return 1", 2, "k1", "k2", "arg"], [b"k1", b"k2"]),
    (["EVAL", "return 1", 0, "arg"], []),
    (["EVAL", "return 1", 3, "k1"], []),  # too few keys: the server finds none
    (["EVALSHA", "a" * 40, 1, "k"], [b"k"]),
    (["EVAL", "s", -1, "k"], []),
    (["ZUNIONSTORE", "d", -1, "k"], None),
    (["ZUNIONSTORE", "d", 1 << 64, "k"], None),
    (["EVAL_RO", "s", 1, "k"], [b"k"]),
    (["FCALL", "f", 2, "a", "b"], [b"a", b"b"]),
    (["FCALL_RO", "f", 0], []),
    (["XREAD", "COUNT", 2, "STREAMS", "s1", "s2", "0", "0"], [b"s1", b"s2"]),
    (["XREAD", "STREAMS", "streams", "0"], [b"streams"]),
    (["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"], [b"s"]),
    (["XREAD", "COUNT", 1, "s"], None),
    (["ZUNIONSTORE", "dst", 2, "a", "b", "WEIGHTS", 1, 2], [b"dst", b"a", b"b"]),
    (["ZINTERSTORE", "dst", 1, "a"], [b"dst", b"a"]),
    (["ZDIFFSTORE", "dst", 2, "a", "b"], [b"dst", b"a", b"b"]),
    (["ZUNION", 2, "a", "b"], [b"a", b"b"]),
    (["ZUNIONSTORE", "dst", 0, "a"], None),
    (["SORT", "k"], [b"k"]),
    (["SORT", "k", "BY", "w_*", "GET", "#", "STORE", "dst"], [b"k", b"dst"]),
    (["SORT", "k", "LIMIT", 0, 10, "STORE", "d1", "STORE", "d2"], [b"k", b"d2"]),
    (["SORT_RO", "k", "BY", "w"], [b"k"]),
    (["MIGRATE", "h", 6379, "k", 0, 1000], [b"k"]),
    (["MIGRATE", "h", 6379, "", 0, 1000, "COPY", "KEYS", "a", "b"], [b"a", b"b"]),
    (["MIGRATE", "h", 6379, "", 0, 1000, "AUTH", "keys", "KEYS", "a"], [b"a"]),
    (["OBJECT", "ENCODING", "k"], [b"k"]),
    (["OBJECT", "HELP"], []),
    (["MEMORY", "USAGE", "k", "SAMPLES", 5], [b"k"]),
    (["XINFO", "STREAM", "s", "FULL"], [b"s"]),
    (["XINFO", "GROUPS", "s"], [b"s"]),
    (["LMPOP", 2, "a", "b", "LEFT"], [b"a", b"b"]),
    (["BLMPOP", 0, 2, "a", "b", "LEFT"], [b"a", b"b"]),
    (["ZMPOP", 1, "z", "MIN"], [b"z"]),
    (["BZMPOP", 0, 1, "z", "MIN"], [b"z"]),
    (["SINTERCARD", 2, "a", "b", "LIMIT", 5], [b"a", b"b"]),
    (["ZINTERCARD", 2, "a", "b"], [b"a", b"b"]),
    (["GEORADIUS", "g", 0, 0, 1, "km", "STORE", "d"], [b"g", b"d"]),
    (["GEORADIUS", "g", 0, 0, 1, "km", "STOREDIST", "d"], [b"g", b"d"]),
    (["GEORADIUSBYMEMBER", "g", "m", 1, "km", "STORE", "d"], [b"g", b"d"]),
    (["GEOSEARCHSTORE", "d", "g", "FROMMEMBER", "m", "BYRADIUS", 1, "km"], [b"d", b"g"]),
    (["RENAME", "a", "b"], [b"a", b"b"]),
    (["SMOVE", "a", "b", "m"], [b"a", b"b"]),
    (["LMOVE", "a", "b", "LEFT", "RIGHT"], [b"a", b"b"]),
    (["BLPOP", "a", "b", 0], [b"a", b"b"]),
    (["BITOP", "AND", "d", "a", "b"], [b"d", b"a", b"b"]),
    (["PFMERGE", "d", "a"], [b"d", b"a"]),
    (["COPY", "a", "b", "REPLACE"], [b"a", b"b"]),
    (["WATCH", "a", "b"], [b"a", b"b"]),
    (["PING"], []),
    (["INFO", "server"], []),
    (["DBSIZE"], []),
    (["FLUSHALL"], []),
    (["SCRIPT", "LOAD", "return 1"], []),
    (["CONFIG", "GET", "maxmemory"], []),
    (["CLIENT", "LIST"], []),
    (["PUBLISH", "channel", "m"], []),
    (["SPUBLISH", "channel", "m"], []),  # a shard channel is not a key
    (["GET"], None),
    (["GET", "a", "b"], None),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=lambda v: repr(v)[:60])
def test_known_shapes(
    client: BlockingClient, args: list[Any], expected: list[bytes] | None
) -> None:
    encoded = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    assert ours(args) == expected
    if len(encoded) >= 2:
        assert server_keys(client, encoded) == expected


def test_keys_are_the_bytes_that_are_sent() -> None:
    assert command_keys(["GET", "clé"]) == ["clé".encode()]
    assert command_keys(["GET", 42]) == [b"42"]
    assert command_keys([b"get", b"\xff\x00"]) == [b"\xff\x00"]
    assert command_keys(["MSET", 1.5, "x"]) == [b"1.5"]


def test_unknown_and_malformed_commands_raise() -> None:
    with pytest.raises(UnsupportedCommand, match="unknown command 'gte'"):
        command_keys(["GTE", "k"])
    with pytest.raises(UnsupportedCommand, match="unknown subcommand"):
        command_keys(["OBJECT", "ENCODNG", "k"])
    with pytest.raises(UnsupportedCommand, match="wrong number of arguments"):
        command_keys(["CONFIG"])
    with pytest.raises(UnsupportedCommand, match="empty"):
        command_keys([])
    with pytest.raises(CommandEncodeError):
        command_keys([3, "k"])
    with pytest.raises(UnsupportedCommand, match="unknown subcommand '5'"):
        command_keys(["CONFIG", 5])
    with pytest.raises(CommandEncodeError):
        command_keys(["MSET", object(), "v"])


# ------------------------------------------------ generated from COMMAND DOCS

WORDS = [
    b"STREAMS", b"STORE", b"STOREDIST", b"KEYS", b"BY", b"GET", b"LIMIT", b"COUNT",
    b"GROUP", b"BLOCK", b"NOACK", b"AUTH", b"AUTH2", b"COPY", b"REPLACE", b"store",
    b"streams", b"keys", b"",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(WORDS),
    st.integers(-1, 4).map(lambda n: str(n).encode()),
    st.sampled_from([b"k1", b"k2", b"{t}k", b"2abc", b" 1", b"+1", b"01", b"1.5", b"-0"]),
)


def _docs(client: BlockingClient) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    docs = _text(client.call("COMMAND", "DOCS"))
    for i in range(0, len(docs), 2):
        body = _pairs(docs[i + 1])
        out[docs[i]] = body.get("arguments", [])
        for sub_name, sub_body in _pairs(body.get("subcommands", [])).items():
            out[sub_name] = _pairs(sub_body).get("arguments", [])
    return out


_DOCS_CACHE: dict[str, list[Any]] = {}


def docs_for(client: BlockingClient, name: str) -> list[Any]:
    if not _DOCS_CACHE:
        _DOCS_CACHE.update(_docs(client))
    return _DOCS_CACHE[name]


def _draw_arg(draw: st.DrawFn, arg: dict[str, Any], depth: int = 0) -> list[bytes]:
    flags = arg.get("flags", [])
    if "optional" in flags and draw(st.booleans()):
        return []
    times = draw(st.integers(1, 3)) if "multiple" in flags else 1
    token = arg.get("token")
    out: list[bytes] = []
    for n in range(times):
        if token is not None and (n == 0 or "multiple_token" in flags):
            out.append(str(token).encode())
        kind = arg["type"]
        if kind == "pure-token":
            continue
        if kind == "oneof":
            choice = draw(st.sampled_from([_pairs(a) for a in arg["arguments"]]))
            out += _draw_arg(draw, choice, depth + 1)
        elif kind == "block":
            for sub in arg["arguments"]:
                out += _draw_arg(draw, _pairs(sub), depth + 1)
        elif kind == "integer":
            out.append(str(draw(st.integers(0, 4))).encode())
        elif kind == "key":
            out.append(draw(st.sampled_from([b"k1", b"k2", b"{t}x", b"STORE", b"streams"])))
        else:
            out.append(draw(VALUES))
    return out


@st.composite
def docs_shaped(draw: st.DrawFn, name: str, grammar: list[Any]) -> list[bytes]:
    args = [part.encode() for part in name.split("|")]
    for arg in grammar:
        args += _draw_arg(draw, _pairs(arg))
    return args


KEYED = sorted(n for n, info in COMMANDS.items() if info.has_keys)


@pytest.mark.parametrize("name", KEYED)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_docs_shaped_arguments_match_getkeys(
    client: BlockingClient, name: str, data: st.DataObject
) -> None:
    args = data.draw(docs_shaped(name, docs_for(client, name)))
    check(client, args)


NAMES = sorted(COMMANDS)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(NAMES), tail=st.lists(VALUES, max_size=9))
def test_arbitrary_arguments_match_getkeys(
    client: BlockingClient, name: str, tail: list[bytes]
) -> None:
    check(client, [p.encode() for p in name.split("|")] + tail)


@pytest.mark.parametrize(
    "name", sorted(n for n, info in COMMANDS.items() if not info.has_keys and n not in CONTAINERS)
)
def test_keyless_commands_have_no_keys(name: str) -> None:
    info = COMMANDS[name]
    args: list[bytes] = [p.encode() for p in name.split("|")]
    args += [b"x"] * max(0, abs(info.arity) - len(args))
    assert command_keys(args) == []
