"""The values of the RESP codec: reply types, limits, and how each line maps to a value.

Everything the encoder and the parser share that is not
framing: the :data:`NEED_DATA` sentinel, :class:`Push`, :class:`Limits`, the
checks of one-line replies (integers, doubles, big numbers, simple strings...)
and how a finished aggregate becomes a Python value. An invalid value raises
:class:`~trio_redisha.ProtocolError`; anything else a parser might raise on
unforeseen input is mapped to it here too, since nothing else may leave a parser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from ..exceptions import ConfigurationError, ProtocolError, ReplyError


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`RespParser.next_reply` when no whole reply is buffered yet.
NEED_DATA: Final = _NeedData()

CommandArg = str | bytes | bytearray | memoryview | int | float


class Push(list[Any]):
    """An out-of-band RESP3 push message (``>``), such as an invalidation.

    A distinct type so that a connection can route it away from the FIFO of
    replies that callers wait for.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Push({list.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep a broken or hostile server from exhausting memory.

    The byte limits bound the *bytes* of a reply, not the memory of the Python
    objects made of them. Most replies take a few times their bytes; tiny
    aggregates take far more: ``~0\\r\\n`` (4 bytes) becomes an empty ``set``
    of about 200. ``max_reply_elements`` bounds those objects: no element
    costs more than about 250 bytes, so by default one reply holds at most
    about 500 MB however it is made (two million empty sets, 8 MB of bytes,
    hold 460 MB), and replies of ordinary values far less. Against a server
    that may be hostile, lower the limits to what the application's replies
    need: the defaults only stop a reply no honest server sends.

    Attributes:
        max_bulk_length: Largest bulk string accepted. Redis's own
            ``proto-max-bulk-len`` defaults to 512 MiB, so no honest server sends more.
        max_aggregate_length: Most elements in one array, set, map or push.
        max_depth: Deepest nesting of aggregates. Real replies nest a few levels
            (EXEC of a command returning a map of arrays); a hostile one can nest
            without end.
        max_line_length: Longest header or simple line (``+``, ``-``, ``:``...) that
            may be buffered while waiting for its CRLF.
        max_incomplete_bytes: Most bytes one reply may occupy while incomplete.
        max_reply_elements: Most elements in one reply, counting those of every
            aggregate in it (a map's entry is two). 2M (2**21): an ``HGETALL``
            of a million fields. A larger reply is read to its end and dropped,
            and given as a :class:`~trio_redisha.exceptions.ReplyTooLarge` in its
            place: the connection stays up (its framing is sound).
    """

    max_bulk_length: int = 512 * 1024 * 1024  # Redis proto-max-bulk-len default
    max_aggregate_length: int = 1 << 27  # 134M elements: far beyond any sane reply
    max_depth: int = 64
    max_line_length: int = 1024 * 1024
    max_incomplete_bytes: int = 1024 * 1024 * 1024
    max_reply_elements: int = 1 << 21

    def __post_init__(self) -> None:
        for name in (
            "max_bulk_length",
            "max_aggregate_length",
            "max_depth",
            "max_line_length",
            "max_incomplete_bytes",
            "max_reply_elements",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS: Final = Limits()


# Frame kinds on the pure parser's stack of partly built aggregates.
_ARRAY, _MAP, _SET, _PUSH, _ATTR = range(5)
_NOTHING: Final = object()  # an attribute completed: nothing to hand to the parent

_AGG_KINDS: Final = {
    ord("*"): _ARRAY,
    ord("%"): _MAP,
    ord("~"): _SET,
    ord(">"): _PUSH,
    ord("|"): _ATTR,
}

_INT64_MAX: Final = (1 << 63) - 1
_INT64_MIN: Final = -(1 << 63)
# The longest decimal text of a non-negative int64 has 19 digits; checking the
# length first keeps int() from ever converting a megabyte of digits.
_MAX_DIGITS: Final = 19

# Doubles: a subset of what both Python's float() and hiredis accept, so that we
# never accept what a hiredis-based client would refuse (no "+", "_", spaces, hex
# or "infinity"; hiredis rejects lines of 326 bytes or more).
_DOUBLE_RE: Final = re.compile(rb"(-?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:[eE][-+]?[0-9]+)?")
_DOUBLE_WORDS: Final = {
    b"inf": math.inf,
    b"-inf": -math.inf,
    b"nan": math.nan,
    b"-nan": math.nan,
}
_MAX_DOUBLE_LINE: Final = 325
# Bulk lengths met most often, parsed by one dict look-up (canonical text only).
_SMALL_LENGTHS: Final = {b"%d" % i: i for i in range(4096)}
_BIGNUM_RE: Final = re.compile(rb"-?[0-9]+")


def _hashable(value: Any) -> Any:
    """Turn an unhashable map key or set member into an equivalent tuple."""
    if isinstance(value, (list, set)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((_hashable(k), _hashable(v)) for k, v in value.items())
    return value


def _invalid(what: str, line: bytes) -> ProtocolError:
    return ProtocolError(f"invalid {what} {line[:40]!r}")


def _parse_integer(line: bytes) -> int:
    """Parse an integer reply: canonical decimal int64, exactly as hiredis accepts it."""
    digits = line[1:] if line[:1] == b"-" else line
    if (
        digits.isdigit()
        and len(digits) <= _MAX_DIGITS
        and (digits[0] != 48 or len(line) == 1)  # "0" only; no "01", no "-0"
    ):
        value = int(line)
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
    raise _invalid("integer", line)


def _parse_double(line: bytes) -> float:
    special = _DOUBLE_WORDS.get(line.lower())
    if special is not None:
        return special
    match = _DOUBLE_RE.fullmatch(line) if len(line) <= _MAX_DOUBLE_LINE else None
    if match is not None:
        value = float(line)
        # Overflow to infinity, or underflow of a non-zero mantissa to zero, is a
        # corrupt double (hiredis rejects both too).
        if not math.isinf(value) and (value != 0.0 or not match[1].strip(b"-0.")):
            return value
    raise _invalid("double", line)


def _parse_bignum(line: bytes) -> int:
    if _BIGNUM_RE.fullmatch(line):
        try:
            return int(line)
        except ValueError:  # beyond sys.get_int_max_str_digits()
            pass
    raise _invalid("big number", line)


def _simple(line: bytes) -> bytes:
    """Check a simple string or error: it may hold no CR or LF (hiredis agrees)."""
    if 13 in line or 10 in line:
        raise _invalid("simple string", line)
    return line


def _scalar(tag: int, line: bytes) -> Any:
    """Return the value of a one-line reply (every type but bulks and aggregates)."""
    if tag == 43:  # + simple string
        return _simple(line).decode("utf-8", "replace")
    if tag == 58:  # : integer
        return _parse_integer(line)
    if tag == 45:  # - error
        return ReplyError(_simple(line).decode("utf-8", "replace"))
    if tag == 95:  # _ null
        if line:
            raise ProtocolError("null with a payload")
        return None
    if tag == 44:  # , double
        return _parse_double(line)
    if tag == 35:  # # boolean
        if line == b"t":
            return True
        if line == b"f":
            return False
        raise _invalid("boolean", line)
    if tag == 40:  # ( big number
        return _parse_bignum(line)
    raise ProtocolError(f"unknown reply type byte {bytes([tag])!r}")


def _verbatim(raw: bytes) -> bytes:
    if len(raw) < 4 or raw[3] != 58:  # b":" after the three-letter format
        raise ProtocolError("verbatim string without a format prefix")
    return raw[4:]


def _bulk_value(tag: int, raw: bytes) -> Any:
    """Return the value of a whole bulk payload: ``$`` bulk, ``=`` verbatim or ``!`` error."""
    if tag == 36:
        return raw
    if tag == 61:
        return _verbatim(raw)
    return ReplyError(raw.decode("utf-8", "replace"))


# What a parser bug or an unforeseen input might raise instead of ProtocolError:
# defence in depth turns it into one, since nothing else may leave a parser.
_UNEXPECTED: Final = (ValueError, IndexError, OverflowError, UnicodeError, MemoryError)


def _malformed(exc: BaseException) -> ProtocolError:
    return ProtocolError(f"malformed reply: {exc}")


def _finish(kind: int, items: list[Any]) -> Any:
    if kind == _ARRAY:
        return items
    if kind == _MAP:
        it = iter(items)
        try:
            return dict(zip(it, it, strict=True))
        except TypeError:
            it = iter(items)
            return {_hashable(k): v for k, v in zip(it, it, strict=True)}
    if kind == _SET:
        try:
            return set(items)
        except TypeError:
            return {_hashable(v) for v in items}
    if kind == _PUSH:
        return Push(items)
    return _NOTHING  # an attribute: dropped
