"""The codecs on their own (trio_redisha.crdt.codecs), no server needed.

``JSONCodec.decode`` calls json's C scanner directly; it must decide exactly as
``json.loads`` does, on any bytes at all.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_redisha import CodecError, CodecTypeError
from trio_redisha.crdt import BytesCodec, JSONCodec, StrCodec

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def loads_or_error(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "error", None


def decode_or_error(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", JSONCodec().decode(data)
    except CodecError:
        return "error", None


def same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    # NaN is not equal to itself; compare its JSON text instead.
    return a[0] == b[0] and json.dumps(a[1]) == json.dumps(b[1])


@given(JSON_VALUES)
def test_json_round_trip(value: Any) -> None:
    codec = JSONCodec()
    assert codec.decode(codec.encode(value)) == value


@given(JSON_VALUES, st.sampled_from(["", " ", "\n", "\t \r"]), st.sampled_from(["", " ", "\n"]))
def test_json_decode_allows_what_loads_allows(value: Any, before: str, after: str) -> None:
    text = before + json.dumps(value) + after
    assert same(decode_or_error(text.encode()), loads_or_error(text.encode()))


@given(
    st.binary(max_size=40)
    | st.text(alphabet='[]{}",:0123456789.eE+- naultrufsNIy\\', max_size=30).map(str.encode)
)
def test_json_decode_decides_as_loads_does(data: bytes) -> None:
    assert same(decode_or_error(data), loads_or_error(data))


@pytest.mark.parametrize(
    "data",
    [b"", b" ", b"[1]x", b"1 2", b'"open', b"\xff", b"[" * 100_000, b"{'a': 1}", b"tru"],
)
def test_json_decode_refuses_with_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError, match="not JSON"):
        JSONCodec().decode(data)


def test_json_decode_of_non_finite_numbers_as_loads() -> None:
    # json.loads reads them (other writers may store them); encode() refuses them.
    assert math.isnan(JSONCodec().decode(b"NaN"))
    assert JSONCodec().decode(b"-Infinity") == -math.inf
    with pytest.raises(CodecError):
        JSONCodec().encode(math.inf)


@pytest.mark.parametrize(
    ("codec", "bad"),
    [
        (StrCodec(), b"x"),
        (StrCodec(), 1),
        (StrCodec(), None),
        (BytesCodec(), "x"),
        (BytesCodec(), 1),
    ],
)
def test_a_value_of_the_wrong_type_is_a_codec_type_error(codec: Any, bad: Any) -> None:
    with pytest.raises(CodecTypeError, match=type(bad).__name__) as info:
        codec.encode(bad)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, CodecError)


def test_lone_surrogates_are_a_codec_error_not_a_type_error() -> None:
    with pytest.raises(CodecError) as info:
        StrCodec().encode("\ud800")
    assert not isinstance(info.value, TypeError)
