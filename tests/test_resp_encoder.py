"""The RESP encoder: a command becomes exactly the bytes Redis expects, and an
argument that cannot be sent faithfully raises CommandEncodeError.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_redisha.exceptions import CommandEncodeError
from trio_redisha.resp import encode_command, encode_commands


def test_encode_command_types() -> None:
    assert encode_command(["SET", "k", "v"]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    # str is UTF-8 and the length counts bytes, not characters.
    assert encode_command(["ECHO", "é✓"]) == b"*2\r\n$4\r\nECHO\r\n$5\r\n\xc3\xa9\xe2\x9c\x93\r\n"
    assert encode_command([b"GET", bytearray(b"a\r\nb"), memoryview(b"\x00")]) == (
        b"*3\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n$1\r\n\x00\r\n"
    )
    assert encode_command(["INCRBY", "k", -17]) == b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$3\r\n-17\r\n"
    assert encode_command(["X", 2**70]) == b"*2\r\n$1\r\nX\r\n$22\r\n1180591620717411303424\r\n"
    assert encode_command(["X", 1.5, 1e100, -0.0, math.inf]) == (
        b"*5\r\n$1\r\nX\r\n$3\r\n1.5\r\n$6\r\n1e+100\r\n$4\r\n-0.0\r\n$3\r\ninf\r\n"
    )
    assert encode_command(["X", b""]) == b"*2\r\n$1\r\nX\r\n$0\r\n\r\n"
    assert encode_commands([["PING"], ["GET", "k"]]) == (
        b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )


def test_encode_command_subclasses() -> None:
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    assert encode_command([Name("GET"), Color.RED]) == b"*2\r\n$3\r\nGET\r\n$1\r\n1\r\n"


@pytest.mark.parametrize(
    ("arg", "index"),
    [
        (True, 1),
        (False, 2),
        (None, 1),
        (object(), 2),
        (math.nan, 1),
        ([b"x"], 2),
        ({"a": 1}, 1),
    ],
)
def test_encode_command_rejects(arg: object, index: int) -> None:
    args: list[object] = ["SET", "k"] if index == 2 else ["SET"]
    args.append(arg)
    with pytest.raises(CommandEncodeError, match=f"argument {index}"):
        encode_command(args)


def test_encode_command_rejects_empty() -> None:
    with pytest.raises(CommandEncodeError):
        encode_command([])
    assert issubclass(CommandEncodeError, TypeError)


def parse_request(data: bytes) -> list[bytes]:
    """A test-side parser of one command: an array of bulk strings."""
    assert data[:1] == b"*"
    eol = data.index(b"\r\n")
    count = int(data[1:eol])
    pos = eol + 2
    args = []
    for _ in range(count):
        assert data[pos : pos + 1] == b"$"
        eol = data.index(b"\r\n", pos)
        length = int(data[pos + 1 : eol])
        start = eol + 2
        args.append(data[start : start + length])
        assert data[start + length : start + length + 2] == b"\r\n"
        pos = start + length + 2
    assert pos == len(data)
    return args


_ARGS = st.one_of(
    st.text(st.characters(codec="utf-8")),
    st.binary(),
    st.integers(),
    st.floats(allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(args=st.lists(_ARGS, min_size=1, max_size=8))
def test_encode_command_round_trip(args: list[Any]) -> None:
    def as_sent(arg: Any) -> bytes:
        if isinstance(arg, str):
            return arg.encode()
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, int):
            return str(arg).encode()
        return repr(arg).encode()

    assert parse_request(encode_command(args)) == [as_sent(a) for a in args]


class _Shouting(str):
    """A str subclass whose ``__str__`` is not its value."""

    def __str__(self) -> str:
        return "SHOUT"


class _BadStr(str):
    def __str__(self) -> Any:
        return 42  # not a str at all: str() of it raises TypeError


class _Shrinking(int):
    def __int__(self) -> int:
        raise ValueError("no int for you")


class _Rounded(float):
    def __float__(self) -> float:
        raise ValueError("no float for you")


def _released() -> memoryview:
    view = memoryview(b"abc")
    view.release()
    return view


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        pytest.param("\udcff", "cannot be encoded as UTF-8", id="lone-surrogate"),
        pytest.param("caf\u00e9\ud800", "cannot be encoded as UTF-8", id="surrogate-after-text"),
        pytest.param(_Shouting("\udcff"), "cannot be encoded as UTF-8", id="subclass"),
        pytest.param(10**5000, "too large", id="int-beyond-str-digits"),
        pytest.param(-(10**5000), "too large", id="negative-int-beyond-str-digits"),
        pytest.param(_released(), "released", id="released-memoryview"),
    ],
)
def test_encode_command_unencodable_values(arg: object, match: str) -> None:
    # Each once escaped as UnicodeEncodeError or ValueError: the library's own
    # error must come instead, naming the argument's position.
    with pytest.raises(CommandEncodeError, match=match) as info:
        encode_command(["SET", "k", arg])
    assert "argument 2" in str(info.value)
    # The message never echoes the value (it may be a password).
    assert "\\udcff" not in str(info.value) and "\udcff" not in str(info.value)


def test_encode_command_subclasses_send_their_value() -> None:
    # The value, never what an overridden __str__/__int__/__float__ returns.
    assert encode_command([_Shouting("get"), _BadStr("k")]) == b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n"
    assert encode_command(["X", _Shrinking(7), _Rounded(2.5)]) == (
        b"*3\r\n$1\r\nX\r\n$1\r\n7\r\n$3\r\n2.5\r\n"
    )


@pytest.mark.parametrize(
    "args", [pytest.param("PING", id="str"), pytest.param(b"PING", id="bytes"), 7, None]
)
def test_encode_command_needs_a_sequence_of_arguments(args: Any) -> None:
    # A bare string would otherwise be sent as one argument per character.
    with pytest.raises(CommandEncodeError, match="sequence"):
        encode_command(args)


def test_encode_commands_is_all_or_nothing() -> None:
    with pytest.raises(CommandEncodeError, match="command 1, argument 1"):
        encode_commands([["PING"], ["ECHO", "\udcff"]])
