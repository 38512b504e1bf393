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
