"""The RESP reply parser: the values of the case table whole, byte by byte and
with trailing bytes, ProtocolError for malformed bytes, bounded memory on hostile
input, linear time for input that trickles in byte by byte.
"""

from __future__ import annotations

import gc
import math
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_redisha.exceptions import (
    ProtocolError,
    ReplyError,
    ReplyTooLarge,
)
from trio_redisha.resp import (
    DEFAULT_LIMITS,
    NEED_DATA,
    Limits,
    Parser,
    Push,
    RespParser,
    make_parser,
)

ParserFactory = Callable[..., Parser]


@pytest.fixture
def factory() -> ParserFactory:
    """The parser class (one parser since the hiredis-based one was dropped)."""
    return RespParser


def same(a: Any, b: Any) -> bool:
    """Deep equality that also compares types (str vs bytes, Push vs list) and NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def parse_all(parser: Parser) -> list[Any]:
    """Every reply the parser can return now."""
    out = []
    while (reply := parser.next_reply()) is not NEED_DATA:
        out.append(reply)
    return out


# --------------------------------------------------------------------------- valid replies

CASES: list[tuple[str, bytes, Any]] = [
    # RESP2
    ("simple", b"+OK\r\n", "OK"),
    ("simple-empty", b"+\r\n", ""),
    ("simple-unicode", "+héllo wörld ✓\r\n".encode(), "héllo wörld ✓"),
    ("simple-bad-utf8", b"+\xff\xfeok\r\n", "\ufffd\ufffdok"),
    ("error", b"-ERR unknown command\r\n", ReplyError("ERR unknown command")),
    (
        "error-code",
        b"-WRONGTYPE Operation against a key\r\n",
        ReplyError("WRONGTYPE Operation against a key"),
    ),
    ("error-empty", b"-\r\n", ReplyError("")),
    ("integer", b":1000\r\n", 1000),
    ("integer-zero", b":0\r\n", 0),
    ("integer-negative", b":-42\r\n", -42),
    ("integer-max", b":9223372036854775807\r\n", 2**63 - 1),
    ("integer-min", b":-9223372036854775808\r\n", -(2**63)),
    ("bulk", b"$5\r\nhello\r\n", b"hello"),
    ("bulk-empty", b"$0\r\n\r\n", b""),
    ("bulk-crlf-inside", b"$8\r\nab\r\ncd\r\n\r\n", b"ab\r\ncd\r\n"),
    ("bulk-binary", b"$4\r\n\x00\xff\r\x0a\r\n", b"\x00\xff\r\n"),
    ("bulk-unicode", b"$5\r\n\xc3\xa9t\xc3\xa9\r\n", "été".encode()),
    ("bulk-null", b"$-1\r\n", None),
    ("array", b"*2\r\n$3\r\nfoo\r\n:7\r\n", [b"foo", 7]),
    ("array-empty", b"*0\r\n", []),
    ("array-null", b"*-1\r\n", None),
    ("array-of-bulks", b"*3\r\n$1\r\na\r\n$0\r\n\r\n$-1\r\n", [b"a", b"", None]),
    ("array-nested", b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n+x\r\n", [[1, 2], ["x"]]),
    ("array-nested-empty", b"*3\r\n*0\r\n*-1\r\n*1\r\n*0\r\n", [[], None, [[]]]),
    ("array-simple-strings", b"*3\r\n+OK\r\n+QUEUED\r\n$2\r\nOK\r\n", ["OK", "QUEUED", b"OK"]),
    ("array-errors", b"*2\r\n-ERR a\r\n:1\r\n", [ReplyError("ERR a"), 1]),
    # RESP3
    ("null", b"_\r\n", None),
    ("double", b",3.14\r\n", 3.14),
    ("double-int", b",10\r\n", 10.0),
    ("double-exp", b",1.5e+300\r\n", 1.5e300),
    ("double-neg-zero", b",-0.0\r\n", -0.0),
    ("double-inf", b",inf\r\n", math.inf),
    ("double-neg-inf", b",-inf\r\n", -math.inf),
    ("double-nan", b",nan\r\n", math.nan),
    ("double-denormal", b",5e-324\r\n", 5e-324),
    ("true", b"#t\r\n", True),
    ("false", b"#f\r\n", False),
    (
        "bignum",
        b"(3492890328409238509324850943850943825024385\r\n",
        3492890328409238509324850943850943825024385,
    ),
    ("bignum-negative", b"(-12345678901234567890123\r\n", -12345678901234567890123),
    ("bignum-small", b"(5\r\n", 5),
    ("blob-error", b"!21\r\nSYNTAX invalid syntax\r\n", ReplyError("SYNTAX invalid syntax")),
    ("blob-error-crlf", b"!6\r\nERR\r\nx\r\n", ReplyError("ERR\r\nx")),
    ("verbatim", b"=15\r\ntxt:Some string\r\n", b"Some string"),
    ("verbatim-mkd", b"=7\r\nmkd:# x\r\n", b"# x"),
    ("verbatim-empty", b"=4\r\ntxt:\r\n", b""),
    ("map", b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n:2\r\n", {"first": 1, b"second": 2}),
    ("map-empty", b"%0\r\n", {}),
    ("map-of-bulks", b"%1\r\n$1\r\nk\r\n$1\r\nv\r\n", {b"k": b"v"}),
    ("map-list-key", b"%1\r\n*2\r\n:1\r\n:2\r\n+v\r\n", {(1, 2): "v"}),
    ("map-map-key", b"%1\r\n%1\r\n:1\r\n:2\r\n:3\r\n", {((1, 2),): 3}),
    ("map-set-key", b"%1\r\n~1\r\n:1\r\n:3\r\n", {(1,): 3}),
    ("map-empty-key", b"%1\r\n*0\r\n:3\r\n", {(): 3}),
    ("map-null-key", b"%1\r\n*-1\r\n:3\r\n", {None: 3}),
    ("map-nested", b"%1\r\n$1\r\na\r\n%1\r\n+b\r\n*1\r\n(7\r\n", {b"a": {"b": [7]}}),
    ("map-duplicate-keys", b"%2\r\n:1\r\n:2\r\n:1\r\n:3\r\n", {1: 3}),
    ("set", b"~3\r\n+a\r\n+b\r\n:1\r\n", {"a", "b", 1}),
    ("set-empty", b"~0\r\n", set()),
    ("set-of-bulks", b"~2\r\n$1\r\na\r\n$1\r\nb\r\n", {b"a", b"b"}),
    ("set-list-member", b"~2\r\n*2\r\n:1\r\n:2\r\n:3\r\n", {(1, 2), 3}),
    ("set-in-array", b"*2\r\n~1\r\n+x\r\n~0\r\n", [{"x"}, set()]),
    ("push", b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", Push([b"message", b"ch", b"hi"])),
    ("push-empty", b">0\r\n", Push([])),
    (
        "push-invalidate",
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
        Push([b"invalidate", [b"k"]]),
    ),
    ("push-in-array", b"*1\r\n>1\r\n+x\r\n", [Push(["x"])]),
    (
        "attribute-before-reply",
        b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2\r\n:3\r\n",
        [2, 3],
    ),
    ("attribute-before-scalar", b"|1\r\n+ttl\r\n:3600\r\n$2\r\nhi\r\n", b"hi"),
    ("attribute-empty", b"|0\r\n:7\r\n", 7),
    ("attribute-in-array", b"*2\r\n|1\r\n+a\r\n:1\r\n:5\r\n:6\r\n", [5, 6]),
    ("attribute-last-in-array", b"*2\r\n:5\r\n|1\r\n+a\r\n:1\r\n:6\r\n", [5, 6]),
    ("attribute-in-map", b"%1\r\n|1\r\n+a\r\n:1\r\n+k\r\n|0\r\n+v\r\n", {"k": "v"}),
    ("attribute-nested", b"|1\r\n+a\r\n|1\r\n+b\r\n*1\r\n:9\r\n:1\r\n:5\r\n", 5),
    (
        "attribute-all-types",
        b"*1\r\n|3\r\n,1.5\r\n(12\r\n!1\r\nE\r\n=5\r\ntxt:x\r\n#t\r\n_\r\n:7\r\n",
        [7],
    ),
    ("blob-error-in-array", b"*2\r\n!3\r\nERR\r\n$1\r\nx\r\n", [ReplyError("ERR"), b"x"]),
    ("blob-error-in-map", b"%1\r\n$1\r\nk\r\n!3\r\nERR\r\n", {b"k": ReplyError("ERR")}),
    (
        "big-everything",
        b"*7\r\n_\r\n,1.5\r\n#f\r\n(-1\r\n=5\r\ntxt:x\r\n!1\r\nE\r\n-F\r\n",
        [None, 1.5, False, -1, b"x", ReplyError("E"), ReplyError("F")],
    ),
    ("map-key-with-fixups", b"%1\r\n*2\r\n+a\r\n(5\r\n~1\r\n+b\r\n", {("a", 5): {"b"}}),
    ("set-of-lists-with-fixups", b"~1\r\n*2\r\n+a\r\n!1\r\nE\r\n", {("a", ReplyError("E"))}),
    (
        "mixed-nesting",
        b"*2\r\n>1\r\n%1\r\n|1\r\n+x\r\n:1\r\n$1\r\nk\r\n~1\r\n(9\r\n+end\r\n",
        [Push([{b"k": {9}}]), "end"],
    ),
    ("deep", b"*1\r\n" * 63 + b":1\r\n", None),  # expected filled in below
]


def _bulks(*payloads: bytes) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in payloads)


# Long runs of bulk strings, which the parsers check in batches: whatever stops a
# batch (a CRLF inside a payload, a null, another type, a payload too long for
# the length table or the window) must give the same values as element by element.
_RUN = [b"member:%d" % i for i in range(40)]
_BIG = [bytes([65 + i]) * 900 for i in range(12)]  # beyond the first window
CASES += [
    ("run-of-bulks", b"*40\r\n" + _bulks(*_RUN), _RUN),
    (
        "run-crlf-inside",
        b"*40\r\n" + _bulks(*_RUN[:20], b"a\r\n$1\r\nb", *_RUN[21:]),
        [*_RUN[:20], b"a\r\n$1\r\nb", *_RUN[21:]],
    ),
    (
        "run-crlf-forged-header",  # a payload that looks like two whole bulks
        b"*12\r\n" + _bulks(*_RUN[:10], b"x\r\n$1\r\ny") + _bulks(b"z"),
        [*_RUN[:10], b"x\r\n$1\r\ny", b"z"],
    ),
    (
        "run-null-and-integer",
        b"*40\r\n" + _bulks(*_RUN[:15]) + b"$-1\r\n:5\r\n" + _bulks(*_RUN[17:]),
        [*_RUN[:15], None, 5, *_RUN[17:]],
    ),
    (
        "run-empty-payloads",
        b"*10\r\n" + _bulks(*[b""] * 10),
        [b""] * 10,
    ),
    ("run-large-payloads", b"*12\r\n" + _bulks(*_BIG), _BIG),
    (
        "run-payload-beyond-table",
        b"*10\r\n" + _bulks(*_RUN[:5], b"q" * 5000, *_RUN[6:10]),
        [*_RUN[:5], b"q" * 5000, *_RUN[6:10]],
    ),
    (
        "run-map",
        b"%20\r\n" + _bulks(*_RUN),
        {_RUN[i]: _RUN[i + 1] for i in range(0, 40, 2)},
    ),
    (
        "run-nested",
        b"*2\r\n*20\r\n" + _bulks(*_RUN[:20]) + b"*20\r\n" + _bulks(*_RUN[20:]),
        [_RUN[:20], _RUN[20:]],
    ),
]
# 63 nested arrays hold the integer: the default max_depth is 64.
_deep: Any = 1
for _ in range(63):
    _deep = [_deep]
_at = [name for name, _, _ in CASES].index("deep")
CASES[_at] = ("deep", CASES[_at][1], _deep)

CASE_PARAMS = [pytest.param(raw, expected, id=name) for name, raw, expected in CASES]

# A reply that follows each case, to show the parser stops exactly at the end.
_NEXT = b"*2\r\n$5\r\nhello\r\n:42\r\n"
_NEXT_VALUE = [b"hello", 42]


@pytest.mark.parametrize(("raw", "expected"), CASE_PARAMS)
def test_reply_whole(factory: ParserFactory, raw: bytes, expected: Any) -> None:
    parser = factory()
    assert parser.next_reply() is NEED_DATA
    parser.feed(raw)
    reply = parser.next_reply()
    assert same(reply, expected), (reply, expected)
    assert parser.next_reply() is NEED_DATA


@pytest.mark.parametrize(("raw", "expected"), CASE_PARAMS)
def test_reply_byte_by_byte(factory: ParserFactory, raw: bytes, expected: Any) -> None:
    parser = factory()
    for i in range(len(raw) - 1):
        parser.feed(raw[i : i + 1])
        assert parser.next_reply() is NEED_DATA, raw[: i + 1]
    parser.feed(raw[-1:])
    assert same(parser.next_reply(), expected)
    assert parser.next_reply() is NEED_DATA


@pytest.mark.parametrize(("raw", "expected"), CASE_PARAMS)
def test_reply_with_trailing_bytes(factory: ParserFactory, raw: bytes, expected: Any) -> None:
    parser = factory()
    cut = len(_NEXT) // 2
    parser.feed(raw + _NEXT[:cut])
    assert same(parser.next_reply(), expected)
    assert parser.next_reply() is NEED_DATA  # the next reply's start stays buffered
    parser.feed(_NEXT[cut:])
    assert same(parser.next_reply(), _NEXT_VALUE)
    assert parser.next_reply() is NEED_DATA


def test_pipelined_replies_in_one_feed(factory: ParserFactory) -> None:
    parser = factory()
    parser.feed(b"".join(raw for _, raw, _ in CASES))
    replies = parse_all(parser)
    assert len(replies) == len(CASES)
    for reply, (name, _, expected) in zip(replies, CASES, strict=True):
        assert same(reply, expected), name


def test_memoryview_and_bytearray_input(factory: ParserFactory) -> None:
    parser: Any = factory()  # both parsers take any bytes-like object
    parser.feed(memoryview(b"+OK\r\n$1\r\n"))
    parser.feed(bytearray(b"x\r\n"))
    assert parse_all(parser) == ["OK", b"x"]


def test_values_have_the_documented_types(factory: ParserFactory) -> None:
    parser = factory()
    parser.feed(b">1\r\n:1\r\n-ERR x\r\n~1\r\n:1\r\n")
    push, error, members = parse_all(parser)
    assert type(push) is Push and push == [1]
    assert repr(push) == "Push([1])"
    assert isinstance(error, ReplyError) and error.code == "ERR" and error.message == "ERR x"
    assert type(members) is set


# --------------------------------------------------------------------------- malformed

MALFORMED: list[tuple[str, bytes]] = [
    ("unknown-type", b"?foo\r\n"),
    ("unknown-type-nested", b"*1\r\n@x\r\n"),
    ("empty-line", b"\r\n"),
    ("bulk-length-text", b"$abc\r\n"),
    ("bulk-length-empty", b"$\r\n"),
    ("bulk-length-negative", b"$-2\r\n"),
    ("bulk-length-minus-zero", b"$-0\r\n"),
    ("bulk-length-plus", b"$+3\r\nabc\r\n"),
    ("bulk-length-space", b"$ 3\r\nabc\r\n"),
    ("bulk-length-leading-zero", b"$03\r\nabc\r\n"),
    ("bulk-length-underscore", b"$1_0\r\n0123456789\r\n"),
    ("bulk-length-huge-digits", b"$" + b"9" * 30 + b"\r\n"),
    ("run-leading-zero", b"*20\r\n" + b"$1\r\nx\r\n" * 10 + b"$01\r\nx\r\n" * 10),
    ("run-plus-length", b"*20\r\n" + b"$1\r\nx\r\n" * 10 + b"$+1\r\nx\r\n" * 10),
    ("run-short-payload", b"*20\r\n" + b"$1\r\nx\r\n" * 10 + b"$2\r\nx\r\n" * 10),
    ("run-unterminated", b"*20\r\n" + b"$1\r\nx\r\n" * 10 + b"$1\r\nxx\r\n" * 10),
    ("bulk-no-crlf", b"$3\r\nabcXY"),
    ("bulk-no-crlf-nested", b"*2\r\n$1\r\nab\r\n"),
    ("bulk-only-cr", b"$3\r\nabc\rX"),
    ("array-length-text", b"*x\r\n"),
    ("array-length-negative", b"*-2\r\n"),
    ("map-null", b"%-1\r\n"),
    ("set-null", b"~-1\r\n"),
    ("push-null", b">-1\r\n"),
    ("attribute-null", b"|-1\r\n"),
    ("verbatim-null", b"=-1\r\n"),
    ("blob-error-null", b"!-1\r\n"),
    ("integer-text", b":abc\r\n"),
    ("integer-empty", b":\r\n"),
    ("integer-float", b":1.5\r\n"),
    ("integer-plus", b":+1\r\n"),
    ("integer-space", b": 1\r\n"),
    ("integer-leading-zero", b":01\r\n"),
    ("integer-minus-zero", b":-0\r\n"),
    ("integer-overflow", b":9223372036854775808\r\n"),
    ("integer-underflow", b":-9223372036854775809\r\n"),
    ("integer-nested", b"*2\r\n:1\r\n:x\r\n"),
    ("bool-bad", b"#x\r\n"),
    ("bool-upper", b"#T\r\n"),
    ("bool-long", b"#tt\r\n"),
    ("bool-empty", b"#\r\n"),
    ("bool-nested", b"*1\r\n#T\r\n"),
    ("null-with-payload", b"_x\r\n"),
    ("null-with-payload-nested", b"*1\r\n_0\r\n"),
    ("double-text", b",abc\r\n"),
    ("double-empty", b",\r\n"),
    ("double-plus", b",+1.5\r\n"),
    ("double-infinity-word", b",infinity\r\n"),
    ("double-space", b", 1.5\r\n"),
    ("double-underscore", b",1_0\r\n"),
    ("double-hex", b",0x10\r\n"),
    ("double-overflow", b",1e999\r\n"),
    ("double-underflow", b",1e-999\r\n"),
    ("double-nested", b"*1\r\n,1.5.5\r\n"),
    ("bignum-text", b"(12a\r\n"),
    ("bignum-empty", b"(\r\n"),
    ("bignum-plus", b"(+1\r\n"),
    ("bignum-nested", b"*1\r\n(-\r\n"),
    ("verbatim-no-prefix", b"=3\r\nabc\r\n"),
    ("verbatim-bad-prefix", b"=8\r\ntxt-abcd\r\n"),
    ("verbatim-nested", b"*1\r\n=2\r\nab\r\n"),
    ("in-attribute-integer", b"|1\r\n:01\r\n:1\r\n:2\r\n"),
    ("in-attribute-double", b"*1\r\n|1\r\n+a\r\n,x\r\n:2\r\n"),
    ("in-attribute-bool", b"|1\r\n#x\r\n:1\r\n:2\r\n"),
    ("in-attribute-bignum", b"|1\r\n(x\r\n:1\r\n:2\r\n"),
    ("in-attribute-verbatim", b"|1\r\n=1\r\nx\r\n:1\r\n:2\r\n"),
    ("in-attribute-bulk", b"|1\r\n$1\r\nxy\r\n:1\r\n:2\r\n"),
    ("simple-with-cr", b"+a\rb\r\n"),
    ("simple-with-lf", b"+a\nb\r\n"),
    ("error-with-lf", b"-ERR a\nb\r\n"),
    ("simple-with-cr-nested", b"*1\r\n+a\rb\r\n"),
    ("error-with-lf-nested", b"*1\r\n-a\nb\r\n"),
    ("in-attribute-simple", b"|1\r\n+a\rb\r\n:1\r\n:2\r\n"),
    ("bad-after-good", b"+OK\r\n:1\r\n*1\r\n%-5\r\n"),
]


@pytest.mark.parametrize("raw", [pytest.param(raw, id=name) for name, raw in MALFORMED])
def test_malformed_raises_and_stays_broken(factory: ParserFactory, raw: bytes) -> None:
    parser = factory()
    parser.feed(raw)
    with pytest.raises(ProtocolError):
        parse_all(parser)
    # Broken for good: even a valid reply now raises.
    parser.feed(b"+OK\r\n")
    with pytest.raises(ProtocolError):
        parser.next_reply()
    with pytest.raises(ProtocolError):
        parser.next_reply()


@pytest.mark.parametrize("raw", [pytest.param(raw, id=name) for name, raw in MALFORMED])
def test_malformed_byte_by_byte(factory: ParserFactory, raw: bytes) -> None:
    parser = factory()
    with pytest.raises(ProtocolError):
        for i in range(len(raw)):
            parser.feed(raw[i : i + 1])
            parse_all(parser)


def test_replies_before_an_error_are_returned_first(factory: ParserFactory) -> None:
    parser = factory()
    parser.feed(b"+OK\r\n*2\r\n:1\r\n:2\r\n$1\r\nx\r\n:01\r\n*1\r\n:5\r\n")
    assert parser.next_reply() == "OK"
    assert parser.next_reply() == [1, 2]
    assert parser.next_reply() == b"x"
    with pytest.raises(ProtocolError):
        parser.next_reply()
    with pytest.raises(ProtocolError):
        parser.next_reply()


@pytest.mark.parametrize(
    "raw",
    [b"*3\r\n:01\r\n", b"*3\r\n+a\nb\r\n", b"*2\r\n,x\r\n", b"%2\r\n#T\r\n", b"*2\r\n$1\r\nabc"],
)
def test_error_in_an_incomplete_reply_raises_at_once(factory: ParserFactory, raw: bytes) -> None:
    # The rest of the reply may never come: the parser must not wait for it.
    parser = factory()
    parser.feed(raw)
    with pytest.raises(ProtocolError):
        parser.next_reply()


def test_nested_invalid_integer_breaks_the_parser(factory: ParserFactory) -> None:
    # An integer beyond int64 inside an aggregate, after a whole reply.
    parser = factory()
    parser.feed(b"*1\r\n:1\r\n*2\r\n:9223372036854775808\r\n:1\r\n+after\r\n")
    assert parser.next_reply() == [1]
    with pytest.raises(ProtocolError):
        parser.next_reply()
    with pytest.raises(ProtocolError):
        parser.next_reply()


# --------------------------------------------------------------------------- limits


def test_one_reply_s_elements_are_bounded_whatever_its_bytes(factory: ParserFactory) -> None:
    # Two million empty sets are 8 MB of bytes and held 460 MB of objects,
    # within every byte limit: the elements of all of a reply's aggregates
    # are counted, nested ones included (a map's entry is two).
    # A reply beyond the bound is read to its end and given as a ReplyTooLarge
    # (an honest server's big hash): the stream stays in step for the next.
    parser = factory(DEFAULT_LIMITS)
    parser.feed(b"*%d\r\n" % (DEFAULT_LIMITS.max_reply_elements + 1))
    assert parser.next_reply() is NEED_DATA
    limits = Limits(max_reply_elements=6)
    fits = b"*2\r\n%1\r\n$1\r\na\r\n~0\r\n*2\r\n:1\r\n:2\r\n"  # 2 + 2 + 2
    parser = factory(limits)
    parser.feed(fits + fits)  # counted per reply
    assert parse_all(parser) == [[{b"a": set()}, [1, 2]]] * 2
    for bad in (
        b"*7\r\n" + b":1\r\n" * 7,
        b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n:4\r\n%1\r\n$1\r\nk\r\n$1\r\nv\r\n",
        b"%4\r\n" + b"$1\r\nx\r\n" * 8,  # the fast path's kind of reply
        b"*1\r\n|1\r\n+a\r\n+b\r\n*6\r\n" + b"$1\r\nx\r\n" * 6,  # inside: 1 + 2 + 6
    ):
        for cut in (None, len(bad) // 2):  # whole, and in two pieces
            parser = factory(limits)
            got: list[Any] = []
            for piece in [bad] if cut is None else [bad[:cut], bad[cut:]]:
                parser.feed(piece)
                got += parse_all(parser)
            parser.feed(b"+OK\r\n")
            got += parse_all(parser)
            assert len(got) == 2 and got[1] == "OK", got
            assert isinstance(got[0], ReplyTooLarge) and "more than 6 elements" in str(got[0])


def test_a_dropped_push_stays_a_push_and_a_dropped_attribute_drops_only_itself(
    factory: ParserFactory,
) -> None:
    # A push over the bound came back as a plain ReplyTooLarge, which the
    # connection gave to the caller at the head of its FIFO: every later reply
    # went to the wrong caller. A top-level attribute over it left the drop
    # state set, so the reply after it was dropped or not by where a read ended.
    limits = Limits(max_reply_elements=5)
    push = b">2\r\n$10\r\ninvalidate\r\n*4\r\n" + b"$1\r\nk\r\n" * 4  # 2 + 4
    attribute = b"|3\r\n" + b"+a\r\n:1\r\n" * 3  # 6
    stream = push + b"$2\r\nv1\r\n" + attribute + b"+annotated\r\n$-1\r\n+third\r\n"
    for cut in range(len(stream) + 1):
        parser = factory(limits)
        got: list[Any] = []
        for piece in (stream[:cut], stream[cut:]):
            parser.feed(piece)
            got += parse_all(parser)
        assert len(got) == 5, (cut, got)
        assert type(got[0]) is Push and isinstance(got[0][0], ReplyTooLarge), cut
        assert got[1:] == [b"v1", "annotated", None, "third"], (cut, got)


def test_limits_are_enforced(factory: ParserFactory) -> None:
    limits = Limits(
        max_bulk_length=10,
        max_aggregate_length=3,
        max_depth=2,
        max_line_length=8,
        max_incomplete_bytes=40,
    )
    ok = b"$10\r\n0123456789\r\n*3\r\n*1\r\n:1\r\n:2\r\n:3\r\n+1234567\r\n"
    parser = factory(limits)
    parser.feed(ok)
    assert parse_all(parser) == [b"0123456789", [[1], 2, 3], "1234567"]
    for bad in (
        b"$11\r\n",
        b"=11\r\n",
        b"*4\r\n",
        b"%4\r\n",
        b"*1\r\n*1\r\n*1\r\n",
        b"|1\r\n*1\r\n*1\r\n",
        b"+12345678\r\n",
        b"+123456789",
        b"*3\r\n" + b"$10\r\n0123456789\r\n" * 2 + b"$10\r\n01234567",
        # Whole aggregates of bulk strings, which the fast path takes: still refused.
        b"*4\r\n" + b"$1\r\nx\r\n" * 4,
        b"%4\r\n" + b"$1\r\nx\r\n" * 8,
        b"*2\r\n$1\r\nx\r\n$11\r\n0123456789!\r\n",
    ):
        parser = factory(limits)
        parser.feed(bad)
        with pytest.raises(ProtocolError):
            parse_all(parser)
    # The bulk limit holds inside a long run of bulk strings too, at any element.
    limits = Limits(max_bulk_length=10, max_aggregate_length=100)
    for at in (0, 7, 19):
        payloads = [b"0123456789"] * 20
        payloads[at] = b"0123456789!"
        bad = b"*20\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in payloads)
        parser = factory(limits)
        parser.feed(bad)
        with pytest.raises(ProtocolError):
            parse_all(parser)


def _peak_while(run: Callable[[], None]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


_MIB = 1024 * 1024
_NESTED = b"*1\r\n" * 200_000


def _hostile_inputs() -> Iterator[Any]:
    yield pytest.param(DEFAULT_LIMITS, [b"$99999999999\r\n"], id="huge-bulk-length")
    yield pytest.param(DEFAULT_LIMITS, [b"*4294967295\r\n"], id="huge-array-length")
    yield pytest.param(DEFAULT_LIMITS, [b"%4294967295\r\n"], id="huge-map-length")
    yield pytest.param(DEFAULT_LIMITS, [b"*9999999999999999999999\r\n"], id="huge-digits")
    yield pytest.param(DEFAULT_LIMITS, [_NESTED], id="deep-nesting")
    yield pytest.param(
        DEFAULT_LIMITS,
        [_NESTED[i : i + 4096] for i in range(0, len(_NESTED), 4096)],
        id="deep-nesting-chunked",
    )
    yield pytest.param(
        DEFAULT_LIMITS, [b"+" + b"x" * (64 * 1024 - 1)] + [b"x" * 64 * 1024] * 63, id="no-crlf"
    )
    yield pytest.param(
        DEFAULT_LIMITS, [b"$5\r\n"] + [b"x" * 64 * 1024] * 64, id="bulk-without-crlf"
    )
    small = Limits(max_incomplete_bytes=256 * 1024)
    yield pytest.param(
        small, [b"*100000000\r\n"] + [b":1\r\n" * 16 * 1024] * 64, id="incomplete-array"
    )
    yield pytest.param(small, [b"$10000000\r\n"] + [b"x" * 64 * 1024] * 64, id="incomplete-bulk")
    yield pytest.param(
        small,
        [b"*2\r\n$5\r\nhello\r\n$10000000\r\n"] + [b"x" * 64 * 1024] * 64,
        id="incomplete-nested-bulk",
    )


@pytest.mark.parametrize(("limits", "chunks"), list(_hostile_inputs()))
def test_hostile_input_bounded_memory(
    factory: ParserFactory, limits: Limits, chunks: list[bytes]
) -> None:
    raised: list[ProtocolError] = []

    def run() -> None:
        parser = factory(limits)
        try:
            for chunk in chunks:
                parser.feed(chunk)
                parse_all(parser)
        except ProtocolError as exc:
            raised.append(exc)
        # Once broken, more bytes are not hoarded.
        for _ in range(16):
            parser.feed(b"x" * 64 * 1024)

    peak = _peak_while(run)
    assert raised, "the hostile input was accepted"
    assert peak < 16 * _MIB, f"peak {peak / _MIB:.1f} MiB"


# --------------------------------------------------------------------------- linear trickle


def _trickle_seconds(factory: ParserFactory, raw: bytes) -> float:
    parser = factory()
    feed = parser.feed
    next_reply = parser.next_reply
    start = time.process_time()
    for i in range(len(raw)):
        feed(raw[i : i + 1])
        reply = next_reply()
    elapsed = time.process_time() - start
    assert type(reply) is list
    return elapsed


def test_byte_by_byte_is_linear(factory: ParserFactory) -> None:
    """Feeding twice the bytes one at a time takes about twice as long.

    A parser that rescans its buffer on every byte would take four times as long
    (it is quadratic); the bound of 3 leaves room for noise. Each size is timed
    three times and the fastest kept, in CPU time.
    """

    def reply(elements: int) -> bytes:
        # Bulk strings (skipped by length), integers and simple strings (searched
        # for their CRLF), and a long bulk whose payload trickles in.
        item = b"$5\r\nhello\r\n:12345\r\n+OK\r\n"
        return (
            b"*%d\r\n" % (3 * elements + 1) + item * elements + b"$2000\r\n" + b"x" * 2000 + b"\r\n"
        )

    small, large = reply(2_000), reply(4_000)
    t_small = min(_trickle_seconds(factory, small) for _ in range(3))
    t_large = min(_trickle_seconds(factory, large) for _ in range(3))
    assert t_large < 3 * t_small, (t_small, t_large)


def _drain_seconds(raw: bytes, pending: int) -> float:
    """CPU time to parse ``raw`` as a connection does with ``pending`` replies owed."""
    parser = RespParser()
    start = time.process_time()
    parser.feed(raw)
    while True:
        if parser.next_bulks(pending):  # Connection._received's run of bulk replies
            continue
        if parser.next_reply() is NEED_DATA:
            break
    return time.process_time() - start


def test_nil_replies_cost_about_what_integer_replies_cost() -> None:
    """A ``$-1`` (RESP2 nil: a missing key) cost a failed batch of 8 KiB each,
    pipelined or inside an MGET: about 100 times an integer reply, blocking the
    event loop for seconds on a workload of cache misses. The bound of 20
    leaves room for noise; each is timed three times and the fastest kept."""
    n = 20_000
    cases = {
        "pipelined": (b"$-1\r\n" * n, b":1\r\n" * n),
        "MGET": (b"*%d\r\n" % n + b"$-1\r\n" * n, b"*%d\r\n" % n + b":1\r\n" * n),
        "MGET, alternating": (
            b"*%d\r\n" % n + b"$1\r\na\r\n$-1\r\n" * (n // 2),
            b"*%d\r\n" % n + b"$1\r\na\r\n:1\r\n" * (n // 2),
        ),
    }
    for name, (nils, ints) in cases.items():
        t_nils = min(_drain_seconds(nils, 100) for _ in range(3))
        t_ints = min(_drain_seconds(ints, 100) for _ in range(3))
        assert t_nils < 20 * t_ints + 0.005, (name, t_nils, t_ints)


def test_trickle_of_20000_elements_finishes(factory: ParserFactory) -> None:
    raw = b"*20000\r\n" + b"$3\r\nabc\r\n" * 20_000
    parser = factory()
    for i in range(len(raw) - 1):
        parser.feed(raw[i : i + 1])
        assert parser.next_reply() is NEED_DATA
    parser.feed(raw[-1:])
    assert parser.next_reply() == [b"abc"] * 20_000


# --------------------------------------------------------------------------- make_parser


def test_make_parser_choices() -> None:
    limits = Limits(max_depth=3)
    assert type(make_parser()) is RespParser
    assert type(make_parser(limits)) is RespParser
    # use_hiredis is kept for callers that pass it, deprecated and ignored.
    for use_hiredis in (True, False):
        with pytest.warns(DeprecationWarning, match="use_hiredis"):
            assert type(make_parser(limits, use_hiredis=use_hiredis)) is RespParser


def test_made_parser_enforces_its_limits() -> None:
    parser = make_parser(Limits(max_depth=1))
    parser.feed(b"*1\r\n*1\r\n:1\r\n")
    with pytest.raises(ProtocolError):
        parser.next_reply()


def test_buffered_counts_unconsumed_bytes() -> None:
    parser = RespParser()
    assert parser.buffered == 0
    parser.feed(b"+OK\r\n*2\r\n:1")
    assert parser.buffered == 11
    assert parser.next_reply() == "OK"
    assert parser.buffered == 6
    assert parser.next_reply() is NEED_DATA
    assert parser.buffered == 6
    parser.feed(b"\r\n:2\r\n")
    assert parser.next_reply() == [1, 2]
    assert parser.buffered == 0


# --------------------------------------------------------------------------- hypothesis


@dataclass(frozen=True)
class Verbatim:
    """Test-side marker: write as a verbatim string; it parses to its bytes."""

    data: bytes


@dataclass(frozen=True)
class Null:
    """Test-side marker: write None in one of the three RESP forms."""

    form: bytes


_LINE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"))
_ANY_TEXT = st.text(st.characters(codec="utf-8"))


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        _LINE_TEXT,  # simple string
        st.binary(max_size=40),  # bulk string
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.integers().filter(lambda i: not -(2**63) <= i < 2**63),  # big number
        st.floats(allow_nan=True),
        st.booleans(),
        st.sampled_from([Null(b"_\r\n"), Null(b"$-1\r\n"), Null(b"*-1\r\n")]),
        _ANY_TEXT.map(ReplyError),  # simple error, or blob error if it holds CR/LF
        st.binary(max_size=20).map(Verbatim),
    )


def _keys() -> st.SearchStrategy[Any]:
    scalar = st.one_of(_LINE_TEXT, st.binary(max_size=10), st.integers())
    # A tuple is written as an array: a map key or set member the parser must
    # turn into a tuple itself.
    return st.one_of(scalar, st.lists(scalar, max_size=3).map(tuple))


def _trees() -> st.SearchStrategy[Any]:
    return st.recursive(
        _scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=4).map(Push),
            st.dictionaries(_keys(), children, max_size=4),
            st.frozensets(_keys(), max_size=4).map(set),
            st.lists(children, min_size=1, max_size=3).map(tuple),  # map key: a list
        ),
        max_leaves=25,
    )


def write(value: Any, draw_attr: Callable[[], bool]) -> bytes:
    """A test-side RESP writer, independent of the parser under test."""
    prefix = b"|1\r\n+attr\r\n*1\r\n:1\r\n" if draw_attr() else b""
    if isinstance(value, Null):
        out = value.form
    elif isinstance(value, bool):
        out = b"#t\r\n" if value else b"#f\r\n"
    elif isinstance(value, int):
        out = b"%c%d\r\n" % (b":"[0] if -(2**63) <= value < 2**63 else b"("[0], value)
    elif isinstance(value, float):
        out = b"," + repr(value).encode() + b"\r\n"  # inf, -inf and nan included
    elif isinstance(value, str):
        out = b"+" + value.encode() + b"\r\n"
    elif isinstance(value, bytes):
        out = b"$%d\r\n%s\r\n" % (len(value), value)
    elif isinstance(value, Verbatim):
        out = b"=%d\r\ntxt:%s\r\n" % (len(value.data) + 4, value.data)
    elif isinstance(value, ReplyError):
        data = value.message.encode()
        if b"\r" in data or b"\n" in data:
            out = b"!%d\r\n%s\r\n" % (len(data), data)
        else:
            out = b"-" + data + b"\r\n"
    elif isinstance(value, Push):
        out = b">%d\r\n" % len(value) + b"".join(write(v, draw_attr) for v in value)
    elif isinstance(value, (list, tuple)):
        out = b"*%d\r\n" % len(value) + b"".join(write(v, draw_attr) for v in value)
    elif isinstance(value, dict):
        out = b"%%%d\r\n" % len(value) + b"".join(
            write(k, draw_attr) + write(v, draw_attr) for k, v in value.items()
        )
    elif isinstance(value, set):
        out = b"~%d\r\n" % len(value) + b"".join(write(v, draw_attr) for v in value)
    else:  # pragma: no cover - the strategies make nothing else
        raise TypeError(value)
    return prefix + out


def expected(value: Any) -> Any:
    """What the parsers return for a tree written by :func:`write`."""
    if isinstance(value, Null):
        return None
    if isinstance(value, Verbatim):
        return value.data
    if isinstance(value, float) and value == math.inf:
        return value
    if isinstance(value, Push):
        return Push(expected(v) for v in value)
    if isinstance(value, tuple):
        return [expected(v) for v in value]
    if isinstance(value, list):
        return [expected(v) for v in value]
    if isinstance(value, dict):
        return {_key(k): expected(v) for k, v in value.items()}
    if isinstance(value, set):
        return {_key(v) for v in value}
    return value


def _key(value: Any) -> Any:
    # A list used as a map key or set member comes back as a tuple.
    if isinstance(value, tuple):
        return tuple(_key(v) for v in value)
    return expected(value)


def _parse_with_splits(factory: ParserFactory, raw: bytes, cuts: list[int]) -> list[Any]:
    parser = factory()
    out: list[Any] = []
    last = 0
    for cut in [*sorted(c % (len(raw) + 1) for c in cuts), len(raw)]:
        parser.feed(raw[last:cut])
        last = cut
        out.extend(parse_all(parser))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trees=st.lists(_trees(), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
    attrs=st.randoms(use_true_random=False),
)
def test_random_trees_round_trip(trees: list[Any], cuts: list[int], attrs: Any) -> None:
    raw = b"".join(write(tree, lambda: attrs.random() < 0.1) for tree in trees)
    replies = _parse_with_splits(RespParser, raw, cuts)
    assert len(replies) == len(trees)
    for reply, tree in zip(replies, trees, strict=True):
        assert same(reply, expected(tree)), (raw, reply, tree)


# Payloads that look like RESP framing, to mislead a batch that splits at CRLF.
_TRICKY = st.sampled_from([b"\r\n", b"$1\r\n", b"\r\n$0\r\n\r\n", b"\r", b"\n", b"$", b"*3\r\n"])
_PAYLOADS = st.one_of(
    st.binary(max_size=40),
    st.lists(st.one_of(_TRICKY, st.binary(max_size=6)), max_size=5).map(b"".join),
    st.binary(min_size=4090, max_size=4100),  # around the length table's end
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(_PAYLOADS, max_size=80),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    as_map=st.booleans(),
)
def test_long_runs_of_bulks_round_trip(
    payloads: list[bytes], cuts: list[int], as_map: bool
) -> None:
    """Runs of bulk strings, which are checked in batches, with payloads that
    hold CRLFs and forged headers, cut anywhere: exactly the payloads come back."""
    if as_map and len(payloads) % 2:
        payloads = payloads[:-1]
    head = b"%%%d\r\n" % (len(payloads) // 2) if as_map else b"*%d\r\n" % len(payloads)
    raw = head + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in payloads) + b":7\r\n"
    want: Any = payloads
    if as_map:
        want = dict(zip(payloads[::2], payloads[1::2], strict=True))
    replies = _parse_with_splits(RespParser, raw, cuts)
    assert replies == [want, 7]


def _outcomes_taking_runs(
    parser: RespParser, raw: bytes, cuts: list[int], limits: list[int]
) -> list[Any]:
    """:func:`_outcomes`, with ``next_bulks`` tried before each ``next_reply``
    (as a connection does while replies are owed), at the limits given in turn."""
    out: list[Any] = []
    last = 0
    turn = 0
    try:
        for cut in [*sorted(c % (len(raw) + 1) for c in cuts), len(raw)]:
            parser.feed(raw[last:cut])
            last = cut
            while True:
                limit = limits[turn % len(limits)] if limits else 8
                turn += 1
                run = parser.next_bulks(limit)
                assert len(run) <= limit
                if run:
                    out.extend(run)
                    continue
                reply = parser.next_reply()
                if reply is NEED_DATA:
                    break
                out.append(reply)
    except ProtocolError:
        out.append("ERROR")
    return out


# Top-level replies as a connection under concurrent load receives them: mostly
# bulk strings (some misleading), with errors, nulls, integers and arrays among them.
_PIPELINED = st.lists(
    st.one_of(
        _PAYLOADS.map(lambda p: b"$%d\r\n%s\r\n" % (len(p), p)),
        st.sampled_from(
            [b"$-1\r\n", b"-ERR x\r\n", b":12\r\n", b"*1\r\n$1\r\na\r\n", b">2\r\n+m\r\n:1\r\n"]
        ),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replies=_PIPELINED,
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    limits=st.lists(st.integers(min_value=0, max_value=70), max_size=4),
    rnd=st.randoms(use_true_random=False),
    mutations=st.integers(min_value=0, max_value=3),
    tight=st.booleans(),
)
def test_runs_of_replies_taken_at_once_are_the_replies_one_by_one(
    replies: list[bytes],
    cuts: list[int],
    limits: list[int],
    rnd: Any,
    mutations: int,
    tight: bool,
) -> None:
    """``next_bulks`` returns exactly what as many ``next_reply`` calls would,
    whatever the cuts and the limits, and leaves every error (corrupted bytes,
    a bulk over the limit) to ``next_reply``, at the same point."""
    raw = bytearray(b"".join(replies))
    for _ in range(mutations if raw else 0):
        i = rnd.randrange(len(raw))
        raw[i] = rnd.choice(b"\r\n$*:-0123456789x")
    lim = Limits(max_bulk_length=20) if tight else DEFAULT_LIMITS
    one_by_one = _outcomes(RespParser(lim), bytes(raw), cuts)
    in_runs = _outcomes_taking_runs(RespParser(lim), bytes(raw), cuts, limits)
    assert len(one_by_one) == len(in_runs), (bytes(raw), one_by_one, in_runs)
    assert all(same(a, b) for a, b in zip(one_by_one, in_runs, strict=True))


def test_a_run_of_bulk_replies_is_taken_at_once() -> None:
    parser = RespParser()
    values = [b"v%031d" % i for i in range(40)]  # 39 bytes on the wire each
    parser.feed(b"".join(b"$32\r\n%s\r\n" % v for v in values) + b":1\r\n$2\r\nab")
    assert parser.next_bulks(7) == []  # too few owed to be worth a batch
    assert parser.next_bulks(30) == values[:30]  # never more than owed
    assert parser.next_bulks(30) == values[30:]  # stops at the integer
    assert parser.next_reply() == 1
    assert parser.next_bulks(30) == []  # the last one is not all here (and too short)
    parser.feed(b"\r\n")
    assert parser.next_reply() == b"ab"
    assert parser.next_reply() is NEED_DATA
    parser.feed(b"$1\r\nx\r\n" * 30)
    assert parser.next_bulks(40) == []  # 210 bytes: not worth a batch
    assert [parser.next_reply() for _ in range(30)] == [b"x"] * 30


@settings(max_examples=300, deadline=None)
@given(
    tag=st.sampled_from(list(b"+-:,#_($=!*%~>")),
    text=st.one_of(
        st.binary(max_size=12),
        st.from_regex(rb"\A[-+ 0-9.eE_xinfaINFA]{0,12}\Z"),
    ),
    nested=st.booleans(),
)
def test_arbitrary_lines_whole_and_byte_by_byte(tag: int, text: bytes, nested: bool) -> None:
    """On any one line, the parser fed whole and fed byte by byte (its fast path
    and its general code) returns the same value, or both refuse it."""
    raw = bytes([tag]) + text.replace(b"\r", b"").replace(b"\n", b"") + b"\r\nabc\r\n:1\r\n"
    if nested:
        raw = b"*1\r\n" + raw

    def outcome(parser: Parser, step: int) -> Any:
        got: list[Any] = []
        try:
            for i in range(0, len(raw), step):
                parser.feed(raw[i : i + step])
                got.extend(parse_all(parser))
            return ("ok", got)
        except ProtocolError:
            return ("error", None)

    pure, fast = outcome(RespParser(), len(raw)), outcome(RespParser(), 1)
    assert pure[0] == fast[0], (raw, pure, fast)
    if pure[0] == "ok":
        assert same(pure[1], fast[1]), (raw, pure, fast)


def _outcomes(parser: Parser, raw: bytes, cuts: list[int]) -> list[Any]:
    """Every reply, then "ERROR" if the parser raised ProtocolError."""
    out: list[Any] = []
    last = 0
    try:
        for cut in [*sorted(c % (len(raw) + 1) for c in cuts), len(raw)]:
            parser.feed(raw[last:cut])
            last = cut
            # One reply at a time: the replies before an error count too.
            while (reply := parser.next_reply()) is not NEED_DATA:
                out.append(reply)
    except ProtocolError:
        out.append("ERROR")
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trees=st.lists(_trees(), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
    rnd=st.randoms(use_true_random=False),
    mutations=st.integers(min_value=0, max_value=4),
    limits=st.sampled_from([DEFAULT_LIMITS, Limits(64, 4, 3, 16, 200), Limits(5, 2, 2, 8, 50)]),
)
def test_corrupted_streams_whole_and_in_pieces(
    trees: list[Any], cuts: list[int], rnd: Any, mutations: int, limits: Limits
) -> None:
    """Valid streams with a few bytes changed, dropped or added, and tight limits:
    fed whole or cut anywhere, the parser returns the same replies, then fails
    at the same point (or not)."""
    raw = bytearray(b"".join(write(tree, lambda: rnd.random() < 0.1) for tree in trees))
    for _ in range(mutations):
        i = rnd.randrange(len(raw))
        what = rnd.random()
        if what < 0.4:
            raw[i] = rnd.choice(b"\r\n$*%~>|+-:,#_(!=0123456789x")
        elif what < 0.7:
            del raw[i]
        else:
            raw.insert(i, rnd.choice(b"\r\n$*:0123456789"))
    pure = _outcomes(RespParser(limits), bytes(raw), [])
    fast = _outcomes(RespParser(limits), bytes(raw), cuts)
    assert len(pure) == len(fast), (bytes(raw), pure, fast)
    assert all(same(a, b) for a, b in zip(pure, fast, strict=True)), (bytes(raw), pure, fast)


@pytest.mark.parametrize("line", [b":-100000", b"+abcdefg", b",1.50000", b"(1234567", b"-ERR abc"])
def test_a_line_of_the_longest_length_may_arrive_cut_between_cr_and_lf(line: bytes) -> None:
    # Found by test_corrupted_streams_whole_and_in_pieces: a line of exactly
    # max_line bytes whose CR had arrived without its LF was refused as too long.
    limits = Limits(5, 2, 2, 8, 50)
    assert len(line) == limits.max_line_length
    raw = b"*1\r\n" + line + b"\r\n" + line + b"\r\n"  # nested, then at the top
    whole = _outcomes(RespParser(limits), raw, [])
    assert len(whole) == 2 and "ERROR" not in whole
    for cr in (4 + len(line) + 1, len(raw) - 1):  # after each CR
        assert _outcomes(RespParser(limits), raw, [cr]) == whole
    # One byte more is still refused, however it arrives.
    longer = line[:1] + b"1" + line[1:] + b"\r\n"
    for cuts in ([], [len(line) + 1], list(range(len(longer)))):
        assert _outcomes(RespParser(limits), longer, cuts) == ["ERROR"]
