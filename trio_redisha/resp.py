"""A sans-I/O codec for the Redis serialization protocol (RESP2 and RESP3).

This module knows nothing of sockets or trio, in the manner of h11: bytes go in
with :meth:`RespParser.feed`, replies come out of :meth:`RespParser.next_reply`
(or the :data:`NEED_DATA` sentinel), and :func:`encode_command` turns a command
into the bytes to send. The connection module drives it.

Replies are mapped to Python values as follows:

===================  =========================================================
RESP type            Python value
===================  =========================================================
simple string ``+``  :class:`str`
error ``-``, ``!``   :class:`~trio_redisha.ReplyError` (returned, not raised)
integer ``:``        :class:`int`
bulk string ``$``    :class:`bytes`
null ``_``, ``$-1``  ``None`` (``*-1`` too)
array ``*``          :class:`list`
map ``%``            :class:`dict` (list keys become tuples)
set ``~``            :class:`set` (list members become tuples)
double ``,``         :class:`float`
boolean ``#``        :class:`bool`
big number ``(``     :class:`int`
verbatim ``=``       :class:`bytes` without the ``txt:`` format prefix
push ``>``           :class:`Push` (a list subclass)
attribute ``|``      discarded; the reply it annotates is returned
===================  =========================================================

Two parsers return exactly the same values and refuse exactly the same bytes:
:class:`RespParser`, in pure Python, and :class:`HiredisParser`, which puts the
optional hiredis C parser behind a framing guard; :func:`make_parser` picks one.

Error replies are values so that one server's error never aborts a fan-out.
Lengths and integers must be canonical decimal (no sign but ``-``, no space, no
leading zero; integers within 64 bits) and simple strings may hold no CR or LF,
as hiredis requires. Anything malformed, or beyond one of the :class:`Limits`, raises
:class:`~trio_redisha.ProtocolError` and leaves the parser broken: the caller
must close the connection, never try to resynchronise it.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Protocol

from .exceptions import CommandEncodeError, ConfigurationError, ProtocolError, ReplyError

_hiredis: ModuleType | None
try:
    _hiredis = importlib.import_module("hiredis")
except ImportError:  # the optional C parser is not installed
    _hiredis = None

__all__ = [
    "DEFAULT_LIMITS",
    "NEED_DATA",
    "CommandArg",
    "HiredisParser",
    "Limits",
    "Parser",
    "Push",
    "RespParser",
    "encode_command",
    "encode_commands",
    "make_parser",
]


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
    """

    max_bulk_length: int = 512 * 1024 * 1024  # Redis proto-max-bulk-len default
    max_aggregate_length: int = 1 << 27  # 134M elements: far beyond any sane reply
    max_depth: int = 64
    max_line_length: int = 1024 * 1024
    max_incomplete_bytes: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in (
            "max_bulk_length",
            "max_aggregate_length",
            "max_depth",
            "max_line_length",
            "max_incomplete_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS: Final = Limits()


# --------------------------------------------------------------------------- encoder


def _arg_bytes(index: int, arg: object) -> bytes:
    # Exact type checks first: they are the hot path.
    cls = type(arg)
    if cls is bytes:
        return arg  # type: ignore[return-value]
    if cls is str:
        return arg.encode()  # type: ignore[attr-defined,no-any-return]
    if cls is int:
        return str(arg).encode()
    if isinstance(arg, bool):
        raise CommandEncodeError(
            f"argument {index} is a bool ({arg!r}); send 0/1 or a string explicitly"
        )
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg)
    if isinstance(arg, str):
        return str(arg).encode()
    if isinstance(arg, int):
        return str(int(arg)).encode()
    if isinstance(arg, float):
        if math.isnan(arg):
            raise CommandEncodeError(f"argument {index} is NaN, which Redis cannot store")
        return repr(float(arg)).encode()
    raise CommandEncodeError(
        f"argument {index} has type {type(arg).__name__}; "
        "only str, bytes, int and float can be sent"
    )


def encode_command(args: Sequence[object]) -> bytes:
    """Encode one command as a RESP array of bulk strings.

    Args:
        args: The command name and its arguments. ``str`` is sent as UTF-8 and
            every length is a byte length; ``int`` and ``float`` as their decimal
            text.

    Returns:
        The bytes to send.

    Raises:
        CommandEncodeError: An argument is of another type (the message names its
            position), or the command is empty.
    """
    if not args:
        raise CommandEncodeError("a command needs at least its name")
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for index, arg in enumerate(args):
        data = _arg_bytes(index, arg)
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(out)


def encode_commands(commands: Sequence[Sequence[object]]) -> bytes:
    """Encode several commands into one buffer, for a pipeline."""
    return b"".join(encode_command(c) for c in commands)


# --------------------------------------------------------------------------- parser


class Parser(Protocol):
    """What the connection needs of a reply parser."""

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""

    def next_reply(self) -> Any:
        """Return the next whole reply, or :data:`NEED_DATA`."""


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

# Doubles: a subset of what both Python's float() and hiredis accept, so that both
# parsers agree on every input (no "+", "_", spaces, hex or "infinity"; hiredis
# rejects lines of 326 bytes or more).
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


def _header_length(tag: int, line: bytes, what: str, limit: int) -> int:
    """Parse and check the length in a bulk or aggregate header.

    The callers first look the length up in ``_SMALL_LENGTHS`` themselves, and
    call this only when that fails or the length exceeds ``limit``.

    Args:
        tag: The header's type byte: only ``$`` and ``*`` may be null (``-1``).
        line: The header after its type byte.
        what: ``"bulk"`` or ``"aggregate"``, for the error messages.
        limit: The largest length allowed.

    Returns:
        The length: canonical decimal (no sign, no leading zero), or -1.

    Raises:
        ProtocolError: The length is malformed, beyond ``limit``, or null for a
            type that cannot be.
    """
    length = _SMALL_LENGTHS.get(line)
    if length is None:
        if line.isdigit() and len(line) <= _MAX_DIGITS and (line[0] != 48 or len(line) == 1):
            length = int(line)
        elif line == b"-1":
            length = -1
        else:
            raise _invalid(f"{what} length", line)
    if length > limit:
        raise ProtocolError(f"{what} length {length} exceeds the limit of {limit}")
    if length < 0 and tag != 36 and tag != 42:
        raise ProtocolError(f"negative length for {bytes([tag])!r}")
    return length


def _bulk_arrived(buf: bytes, end: int) -> bool:
    """Whether the bulk payload ending at ``end`` is buffered, with its CRLF.

    Raises:
        ProtocolError: The payload is followed by something else than CRLF.
    """
    if len(buf) < end + 2:
        return False
    if buf[end] != 13 or buf[end + 1] != 10:
        raise ProtocolError("bulk string not terminated by CRLF")
    return True


def _bulk_run(
    buf: bytes,
    n: int,
    find: Callable[[bytes, int, int], int],
    small: Callable[[bytes], int | None],
    pos: int,
    left: int,
    max_bulk: int,
    append: Callable[[bytes], None] | None,
) -> tuple[int, int]:
    """Go over a run of wholly buffered bulk strings inside an aggregate.

    The shortcut for the commonest nested elements (MGET, LRANGE, HGETALL...).
    The run stops at the end of the aggregate, and at anything unusual (a large
    or invalid length, a payload not all here, another type, an error), which is
    left to the caller's general code: that code re-reads it and decides.

    Most aggregates come this way, so the caller passes what it holds already
    (``n``, ``find``, ``small``): getting them again here would cost each call
    about half as much again.

    Args:
        buf: The buffer.
        n: ``len(buf)``.
        find: ``buf.find``.
        small: ``_SMALL_LENGTHS.get``.
        pos: Where the run starts, at a ``$``.
        left: How many elements the aggregate still expects (at least one).
        max_bulk: The largest bulk length allowed.
        append: Called with each payload, or None to only check and skip them.

    Returns:
        Where the run stopped, and how many elements the aggregate still expects.
    """
    while True:
        # A bulk header is at most 22 bytes: the search stays O(1).
        idx = find(b"\r\n", pos + 1, pos + 22)
        if idx < 0:
            break
        length = small(buf[pos + 1 : idx])
        if length is None:
            break  # a large or invalid length: the general code decides
        start = idx + 2
        end = start + length
        if end + 2 > n or length > max_bulk or buf[end] != 13 or buf[end + 1] != 10:
            break
        if append is not None:
            append(buf[start:end])
        pos = end + 2
        left -= 1
        if not left or pos >= n or buf[pos] != 36:
            break
    return pos, left


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


class _BufferedParser:
    """What both parsers share: the buffer, the limits, the broken state, the fast path.

    The buffer is immutable: slicing a bulk payload out of it gives the bytes
    value directly, and a received chunk becomes the buffer without a copy when
    everything before it was consumed (the common case). Bytes received that
    cannot complete anything yet are kept aside until they can: appending each
    to the buffer would copy it whole every time, which is quadratic when a
    large reply trickles in.

    A subclass parses in ``_next_slow`` whatever the fast path of
    :meth:`next_reply` leaves, and keeps ``_idle`` true only when that path may run.

    Args:
        limits: Safety bounds; see :class:`Limits`.
    """

    __slots__ = (
        "_base",
        "_broken",
        "_buf",
        "_bulk_end",
        "_bulk_tag",
        "_chunks",
        "_chunks_len",
        "_idle",
        "_max_agg",
        "_max_bulk",
        "_max_depth",
        "_max_incomplete",
        "_max_line",
        "_origin",
        "_pos",
        "_search",
    )

    def __init__(self, limits: Limits) -> None:
        # Lengths beyond int64 are corrupt whatever the limits say (hiredis agrees).
        self._max_bulk = min(limits.max_bulk_length, _INT64_MAX)
        self._max_agg = min(limits.max_aggregate_length, _INT64_MAX)
        self._max_line = limits.max_line_length
        self._max_depth = limits.max_depth
        self._max_incomplete = limits.max_incomplete_bytes
        self._buf = b""
        self._pos = 0  # start of the unparsed bytes in _buf
        self._search = 0  # where the search for the next CRLF resumes; always >= _pos
        self._base = 0  # stream offset of _buf[0]
        self._chunks: list[bytes] = []  # received, kept aside (see the class docstring)
        self._chunks_len = 0
        self._origin = 0  # stream offset where the current reply began
        self._bulk_end = -1  # >= 0: end in _buf of a bulk payload not all received yet
        self._bulk_tag = 0  # the type byte of that bulk
        self._broken: ProtocolError | None = None
        self._idle = True  # between two replies and not broken: the fast path applies

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the server."""
        if self._broken is not None or not data:
            return  # once broken, the connection is being dropped: hoard nothing
        if type(data) is not bytes:
            data = bytes(data)
        buf = self._buf
        chunks = self._chunks
        cut = self._keep_from()
        if not chunks and cut >= len(buf):
            self._buf = data  # all of _buf was used: the chunk replaces it, uncopied
        else:
            # Every element ends with a CRLF, so nothing can complete until one
            # arrives; a pending bulk payload, which may hold CRLFs, needs all its bytes.
            if self._bulk_end >= 0:
                useful = self._chunks_len + len(data) >= self._bulk_end + 2 - len(buf)
            else:
                useful = b"\r\n" in data or (
                    data[0] == 10 and (chunks[-1] if chunks else buf)[-1] == 13
                )
            chunks.append(data)
            if not useful:
                self._chunks_len += len(data)
                return
            chunks.insert(0, buf[cut:])
            self._buf = b"".join(chunks)
            chunks.clear()
            self._chunks_len = 0
        self._base += cut
        self._pos -= cut
        self._search -= cut
        if self._bulk_end >= 0:
            self._bulk_end -= cut
        self._rebased(cut)

    def next_reply(self) -> Any:
        """Return the next whole reply, or :data:`NEED_DATA` if none is buffered.

        Raises:
            ProtocolError: The bytes are not valid RESP or exceed a limit. The
                parser stays broken afterwards.
        """
        if self._idle:
            # Fast path: a top-level simple string, integer or bulk string whose
            # bytes are all buffered (most replies). Anything else, including every
            # error, falls through to the general code, which re-reads the line.
            buf = self._buf
            pos = self._pos
            idx = buf.find(b"\r\n", self._search)
            if pos < idx <= pos + self._max_line:
                tag = buf[pos]
                if tag == 36:  # $
                    n = _SMALL_LENGTHS.get(buf[pos + 1 : idx])
                    if n is not None and n <= self._max_bulk:
                        end = idx + 2 + n
                        if end + 2 <= len(buf) and buf[end] == 13 and buf[end + 1] == 10:
                            self._pos = self._search = end + 2
                            return buf[idx + 2 : end]
                elif tag == 43:  # +
                    line = buf[pos + 1 : idx]
                    if 13 not in line and 10 not in line:
                        self._pos = self._search = idx + 2
                        return line.decode("utf-8", "replace")
                elif tag == 58 and idx - pos <= _MAX_DIGITS + 1:  # :
                    line = buf[pos + 1 : idx]
                    if line.isdigit() and (line[0] != 48 or idx == pos + 2):
                        value = int(line)
                        if value <= _INT64_MAX:
                            self._pos = self._search = idx + 2
                            return value
        # Kept out of the fast path: a call there would cost every reply.
        return self._next_slow()

    def _next_slow(self) -> Any:
        """Return what :meth:`next_reply` returns, for what the fast path left."""
        raise NotImplementedError

    def _keep_from(self) -> int:
        """Return where the bytes still needed start in the buffer (at most ``_pos``).

        :meth:`feed` drops what precedes it, so a subclass that needs earlier bytes
        must pass them on first.
        """
        return self._pos

    def _rebased(self, cut: int) -> None:
        """Shift the subclass's own buffer positions: the first ``cut`` bytes went."""

    def _break(self, exc: ProtocolError) -> ProtocolError:
        """Leave the parser broken for good with ``exc``; return ``exc``, to raise."""
        self._broken = exc
        self._idle = False
        return exc

    def _check_unended(self, pos: int, idx: int) -> None:
        """Check a line whose CRLF is not where a valid line's may be.

        The callers search for the CRLF themselves, and call this only when it is
        not within ``max_line`` bytes after the line's type byte at ``pos``: the
        line is then invalid, unless its CRLF has not arrived yet.

        Args:
            pos: Where the line starts.
            idx: Where its CRLF was found, or -1.

        Raises:
            ProtocolError: The line is empty, or longer than the limit.
        """
        max_line = self._max_line
        if idx < 0:
            if len(self._buf) - pos + self._chunks_len > max_line:
                raise ProtocolError(f"line longer than {max_line} bytes without CRLF")
        elif idx == pos:
            raise ProtocolError("empty line where a reply type was expected")
        else:
            raise ProtocolError(f"line longer than {max_line} bytes")

    def _check_incomplete(self, origin: int) -> None:
        """Fail if the incomplete reply begun at stream offset ``origin`` is too large."""
        if self._base + len(self._buf) + self._chunks_len - origin > self._max_incomplete:
            raise ProtocolError(f"incomplete reply larger than {self._max_incomplete} bytes")


class RespParser(_BufferedParser):
    """An incremental RESP2/RESP3 reply parser in pure Python.

    It keeps partly built aggregates on an explicit stack and remembers how far
    it searched for a line end, so input that trickles in one byte at a time is
    parsed in linear time, and nesting costs no Python recursion.

    Args:
        limits: Safety bounds; see :class:`Limits`.
    """

    __slots__ = ("_stack",)

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._stack: list[list[Any]] = []  # [kind, items, remaining]

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet consumed by a whole reply."""
        if not self._stack and self._bulk_end < 0:
            return len(self._buf) - self._pos + self._chunks_len  # between replies
        return self._base + len(self._buf) + self._chunks_len - self._origin

    def _need_data(self) -> _NeedData:
        self._check_incomplete(self._origin)
        self._idle = not self._stack and self._bulk_end < 0
        return NEED_DATA

    def _next_slow(self) -> Any:
        """The general loop: every type, nesting, partial input and every error."""
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        n = len(buf)
        find = buf.find
        small = _SMALL_LENGTHS.get
        stack = self._stack
        max_line = self._max_line
        max_bulk = self._max_bulk
        max_agg = self._max_agg
        pos = self._pos
        value: Any = _NOTHING  # _NOTHING: no element complete yet
        end = self._bulk_end
        try:
            if end >= 0:
                # Resume a bulk payload whose header arrived before its bytes.
                if not _bulk_arrived(buf, end):
                    return self._need_data()
                value = _bulk_value(self._bulk_tag, buf[pos:end])
                pos = self._pos = self._search = end + 2
                self._bulk_end = -1
            search = self._search
            while True:
                if value is _NOTHING and stack and pos < n and buf[pos] == 36:
                    # Take a run of bulk strings inside an aggregate in one go.
                    frame = stack[-1]
                    items = frame[1]
                    left = frame[2]
                    pos, rest = _bulk_run(buf, n, find, small, pos, left, max_bulk, items.append)
                    if rest != left:
                        search = pos
                        frame[2] = rest
                        if not rest:
                            stack.pop()
                            value = items if frame[0] == _ARRAY else _finish(frame[0], items)
                if value is _NOTHING:
                    if not stack:
                        self._origin = self._base + pos
                    idx = find(b"\r\n", search)
                    if not pos < idx <= pos + max_line:
                        self._check_unended(pos, idx)
                        # Resume the search at the last byte: it may be the CR of a CRLF.
                        self._pos = pos
                        self._search = n - 1 if n > pos else pos
                        return self._need_data()
                    tag = buf[pos]
                    line = buf[pos + 1 : idx]
                    pos = search = idx + 2
                    if tag == 36 or tag == 61 or tag == 33:  # $ bulk, = verbatim, ! blob error
                        length = small(line)
                        if length is None or length > max_bulk:
                            length = _header_length(tag, line, "bulk", max_bulk)
                        if length < 0:
                            value = None
                        else:
                            end = pos + length
                            if not _bulk_arrived(buf, end):
                                self._pos = self._search = pos
                                self._bulk_end = end
                                self._bulk_tag = tag
                                return self._need_data()
                            value = _bulk_value(tag, buf[pos:end])
                            pos = search = end + 2
                    elif tag == 58:  # : integer
                        value = _parse_integer(line)
                    elif tag in _AGG_KINDS:
                        kind = _AGG_KINDS[tag]
                        length = small(line)
                        if length is None or length > max_agg:
                            length = _header_length(tag, line, "aggregate", max_agg)
                        if length < 0:
                            value = None
                        elif length == 0:
                            value = _finish(kind, [])
                        else:
                            if len(stack) >= self._max_depth:
                                raise ProtocolError(f"replies nested deeper than {self._max_depth}")
                            stack.append(
                                [kind, [], 2 * length if kind in (_MAP, _ATTR) else length]
                            )
                            continue
                    else:
                        value = _scalar(tag, line)
                # A value is complete: hand it to the aggregate being built, if any.
                while stack:
                    if value is _NOTHING:
                        break  # an attribute inside an aggregate is not one of its items
                    frame = stack[-1]
                    frame[1].append(value)
                    frame[2] -= 1
                    if frame[2]:
                        break
                    stack.pop()
                    value = frame[1] if frame[0] == _ARRAY else _finish(frame[0], frame[1])
                else:
                    if value is not _NOTHING:
                        self._pos = self._search = pos
                        self._idle = True  # between two replies
                        return value
                value = _NOTHING
        except ProtocolError as exc:
            self._break(exc)
            raise
        except _UNEXPECTED as exc:
            # Defence in depth: nothing but ProtocolError may leave the parser.
            raise self._break(_malformed(exc)) from exc


# --------------------------------------------------------------------------- hiredis

# What the framing guard must do to a hiredis value, at a path of child indices
# (a map that holds a fix-up is fed to hiredis as a flat array, so every step of
# a path indexes a list).
_FIX_STR, _FIX_VALUE, _FIX_SET, _FIX_PUSH, _FIX_MAP = range(5)
_HIREDIS_REPLY: Final = object()  # queued: the next hiredis reply, used as is


class _Fixups(list[tuple[tuple[int, ...], int, Any]]):
    """Queued for a hiredis reply that needs fix-ups, in post-order (children first)."""

    __slots__ = ()


def _apply_fixups(root: Any, fixups: _Fixups) -> Any:
    """Apply the guard's fix-ups to the reply hiredis built; return the result.

    Children come before their parents, so every node a path goes through is
    still the list hiredis made (a map among them was fed as an array).
    """
    for path, op, arg in fixups:
        parent: Any = None
        node = root
        for index in path:
            parent = node
            node = node[index]
        if op == _FIX_STR:
            node = node.decode("utf-8", "replace")
        elif op == _FIX_VALUE:
            node = arg
        elif op == _FIX_SET:
            node = _finish(_SET, node)
        elif op == _FIX_PUSH:
            node = Push(node)
        else:
            node = _finish(_MAP, node)
        if parent is None:
            root = node
        else:
            parent[path[-1]] = node
    return root


_LINE_TAGS: Final = frozenset(b"+-:,#_(")
_AGG_TAGS: Final = frozenset(b"*%~>|")
_NULL_PLACEHOLDER: Final = b"_\r\n"  # stands in for a blob error, which hiredis rejects
_FAST_TAGS: Final = frozenset(b"$+:")  # top-level replies next_reply's fast path takes


class HiredisParser(_BufferedParser):
    """A reply parser built on ``hiredis.Reader``, with results identical to :class:`RespParser`.

    hiredis alone is unsafe and maps some types differently, so a light framing
    guard written in Python reads every header before hiredis sees it:

    * it enforces the :class:`Limits` exactly as :class:`RespParser` does. hiredis
      only parses when asked for a reply, and it is asked only for whole replies
      the guard has checked, so it never meets a dangerous header (it would
      preallocate a list from ``*4294967295`` alone, 32 GiB, and nests without
      bound);
    * it skips bulk payloads in O(1) and resumes where it stopped, so input
      trickling in byte by byte is scanned in linear time;
    * it returns top-level scalars (``+OK``, integers, bulk strings...) itself:
      for them hiredis would only add a call;
    * it checks every line as RespParser does, so a malformed reply fails as
      soon as its bad line arrives, not once (if ever) it is whole; hiredis is
      moreover laxer about doubles, booleans and big numbers;
    * it strips attributes, replaces blob errors (unknown to hiredis) with a null
      placeholder, and records the fix-ups a reply needs (a simple string hiredis
      returns as bytes, a big number, a set or push it returns as a list, a map
      holding any of those or an unhashable key, which it receives as a flat
      array), applied once hiredis built the reply; a reply needing none is
      returned as hiredis built it.

    The guard costs a good part of what parsing in Python costs, so this parser
    gains most on large aggregates of bulk strings, and loses on replies full of
    fix-ups (an array of many simple strings).

    Args:
        limits: Safety bounds; see :class:`Limits`.

    Raises:
        ConfigurationError: hiredis is not installed.
    """

    __slots__ = (
        "_attr",
        "_bulk_start",
        "_feed_from",
        "_fix",
        "_frames",
        "_out",
        "_reader",
        "_ready",
        "_rem",
        "_settled",
        "_unset",
    )

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        if _hiredis is None:
            raise ConfigurationError(
                "hiredis is not installed: pip install 'trio-redisha[hiredis]', "
                "or use the pure-Python parser"
            )
        super().__init__(limits)
        # A sentinel of our own: hiredis returns False both for "no reply yet" and
        # for a RESP3 false, and the guard already knows a reply is there.
        self._unset = object()
        self._reader: Any = _hiredis.Reader(replyError=ReplyError, notEnoughData=self._unset)
        # Positions are relative to _buf, but _base and _origin; _pos is where the
        # guard resumes scanning.
        # Bytes before _feed_from were fed to hiredis, queued in _out, or skipped.
        self._feed_from = 0
        # The current reply's bytes for hiredis, once it needs splicing (a map
        # header may still be rewritten) or spans several chunks.
        self._out: list[bytes] = []
        self._rem: list[int] = []  # elements still expected by each open aggregate
        # Per open aggregate: [tag, total elements, index in _out of a map's header,
        # flagged], flagged meaning a fix-up lies inside (a map then goes to hiredis
        # as an array: its children can be fixed in place, unhashable keys too).
        self._frames: list[list[Any]] = []
        self._attr = 0  # how many of the open aggregates are attributes
        self._bulk_start = 0  # start of the header of the bulk pending (see _bulk_end)
        self._fix: _Fixups | None = None  # fix-ups of the reply being scanned
        # Whole replies scanned but not returned yet: a top-level scalar's value,
        # _HIREDIS_REPLY, or the _Fixups of the next hiredis reply.
        self._ready: deque[Any] = deque()
        # _idle (when the fast path may run) is also false while _ready holds
        # replies, which come first; _settled says the scan stopped between two
        # replies, so that _idle becomes true once they are returned. While idle,
        # _feed_from and _origin are stale: they equal _pos.
        self._settled = True

    def _keep_from(self) -> int:
        """Pass on the bytes before the element being scanned; return where it starts.

        The buffer keeps only that element: what precedes it goes to _out (or
        nowhere, inside an attribute), each byte once.
        """
        cut = self._bulk_start if self._bulk_end >= 0 else self._pos
        feed_from = self._feed_from
        if not self._idle and feed_from < cut:
            if not self._attr:
                self._emit(feed_from, cut, self._origin)
            self._feed_from = cut
        return cut

    def _rebased(self, cut: int) -> None:
        self._feed_from -= cut
        self._bulk_start -= cut

    def _break(self, exc: ProtocolError) -> ProtocolError:
        """Leave the parser broken for good, releasing its buffers; return ``exc``."""
        self._settled = False
        self._buf = b""
        self._chunks.clear()
        self._out.clear()
        return super()._break(exc)

    def _next_slow(self) -> Any:
        """Return the next queued reply, scanning for more if none is queued."""
        ready = self._ready
        if not ready:
            if self._broken is not None:
                raise self._broken
            self._scan()
            if not ready:
                if self._broken is not None:
                    raise self._broken
                return NEED_DATA
        item = ready.popleft()
        if not ready:
            self._idle = self._settled
        if item is not _HIREDIS_REPLY and type(item) is not _Fixups:
            return item  # a top-level scalar
        try:
            value = self._reader.gets()
        except Exception as exc:
            # hiredis.ProtocolError (an integer it rejects...), or anything else:
            # only ProtocolError may leave a parser.
            raise self._fail_now(_malformed(exc)) from exc
        if value is self._unset:  # the guard and hiredis disagree on framing
            raise self._fail_now(ProtocolError("hiredis found no reply where one was framed"))
        if type(item) is _Fixups:
            return _apply_fixups(value, item)
        return value

    def _fail_now(self, exc: ProtocolError) -> ProtocolError:
        """Break the parser for good, dropping every reply still queued."""
        self._ready.clear()
        return self._break(exc)

    def _scan(self) -> None:
        """Scan the new bytes; queue each whole reply and feed hiredis its bytes."""
        if self._idle:
            self._feed_from = self._pos
            self._origin = self._base + self._pos
        buf = self._buf
        n = len(buf)
        base = self._base
        pos = self._pos
        search = self._search
        origin = self._origin
        feed_from = self._feed_from
        out = self._out
        rem = self._rem
        frames = self._frames
        ready = self._ready
        feed = self._reader.feed
        find = buf.find
        small = _SMALL_LENGTHS.get
        max_line = self._max_line
        max_bulk = self._max_bulk
        max_agg = self._max_agg
        bulk_end = self._bulk_end
        attr = self._attr
        hi_end = -1  # end of the last whole reply for hiredis not fed yet
        starved = True  # the scan stopped for want of bytes (not to leave a scalar)
        broken: ProtocolError | None = None
        try:
            while True:
                special = False  # a nested element hiredis cannot take as it is
                if bulk_end >= 0:
                    # A bulk payload announced earlier: is it all here now?
                    if not _bulk_arrived(buf, bulk_end):
                        break
                    tag = self._bulk_tag
                    start = self._bulk_start
                    body = pos  # the payload starts where the header ended
                    pos = search = bulk_end + 2
                    bulk_end = -1
                    special = tag != 36
                else:
                    tag = -1
                    if rem and pos < n and buf[pos] == 36:
                        # Check and skip a run of bulk strings, for hiredis to build.
                        start = body = pos
                        pos, left = _bulk_run(buf, n, find, small, pos, rem[-1], max_bulk, None)
                        if pos != start:
                            search = pos
                            if left:
                                rem[-1] = left
                                continue
                            # The run ended its aggregate: let the code below count
                            # its last element, which closes the aggregate.
                            rem[-1] = 1
                            tag = 36
                    if tag < 0:
                        idx = find(b"\r\n", search)
                        if not pos < idx <= pos + max_line:
                            self._check_unended(pos, idx)
                            # Resume at the last byte: it may be the CR of a CRLF.
                            search = n - 1 if n > pos else pos
                            break
                        start = pos
                        tag = buf[pos]
                        body = pos + 1
                        if tag == 36 or tag == 61 or tag == 33:  # $ bulk, = verbatim, ! blob
                            line = buf[body:idx]
                            length = small(line)
                            if length is None or length > max_bulk:
                                length = _header_length(tag, line, "bulk", max_bulk)
                            if length >= 0:
                                body = idx + 2
                                end = body + length
                                if not _bulk_arrived(buf, end):
                                    # Skip the payload without waiting on it byte by byte.
                                    bulk_end = end
                                    self._bulk_tag = tag
                                    self._bulk_start = start
                                    pos = search = body
                                    break
                                pos = search = end + 2
                                special = tag != 36
                            else:
                                body = -1  # a null bulk string
                                pos = search = idx + 2
                        elif tag in _LINE_TAGS:
                            pos = search = idx + 2
                            if tag == 58:
                                # hiredis checks integers the same way, but only once
                                # the reply is whole: RespParser fails at once.
                                line = buf[body:idx]
                                if not (
                                    line.isdigit()
                                    and idx - body < _MAX_DIGITS
                                    and (line[0] != 48 or idx == body + 1)
                                ):
                                    _parse_integer(line)  # negative, long, or invalid
                            else:
                                special = True
                        elif tag in _AGG_TAGS:
                            line = buf[body:idx]
                            count = small(line)
                            if count is None or count > max_agg:
                                count = _header_length(tag, line, "aggregate", max_agg)
                            pos = search = idx + 2
                            if rem and not attr and tag != 124 and count >= 0:
                                # An aggregate as a map key: hiredis would hash it.
                                parent = frames[-1]
                                if parent[0] == 37 and not (parent[1] - rem[-1]) & 1:
                                    self._flag_frames()
                            if count > 0:
                                if len(rem) >= self._max_depth:
                                    raise ProtocolError(
                                        f"replies nested deeper than {self._max_depth}"
                                    )
                                header = -1
                                if tag == 124:  # an attribute: none of it reaches hiredis
                                    if not attr:
                                        self._emit(feed_from, start, origin)
                                        feed_from = pos
                                    attr += 1
                                    self._attr = attr
                                elif tag == 37 and not attr:
                                    # Its header gets a piece of its own in _out, to be
                                    # rewritten as an array's if a fix-up turns up inside.
                                    self._emit(feed_from, start, origin)
                                    header = len(out)
                                    out.append(buf[start:pos])
                                    feed_from = pos
                                total = 2 * count if tag == 37 or tag == 124 else count
                                rem.append(total)
                                frames.append([tag, total, header, False])
                                continue
                            if tag == 124:
                                # An empty attribute: no element at all.
                                if not attr:
                                    self._emit(feed_from, start, origin)
                                    feed_from = pos
                                if not rem:
                                    origin = base + pos
                                continue
                            special = True
                        else:
                            raise ProtocolError(f"unknown reply type byte {bytes([tag])!r}")

                # ---- one element is complete: [start, pos)
                if not rem:
                    # A top-level scalar: its value, computed as RespParser does.
                    value = self._top_scalar(tag, body, pos)
                    if start > feed_from:
                        feed(buf, feed_from, start - feed_from)
                    feed_from = pos
                    origin = base + pos
                    ready.append(value)
                    if pos < n and buf[pos] in _FAST_TAGS:
                        starved = False  # leave it to the fast path
                        break
                    continue
                if special or attr:
                    self._nested(tag, body, pos)
                    if tag == 33 and not attr:
                        # A blob error: hiredis gets a null in its place.
                        self._emit(feed_from, start, origin)
                        out.append(_NULL_PLACEHOLDER)
                        feed_from = pos
                # Count it in its aggregate, closing every aggregate it completes.
                while True:
                    left = rem[-1] - 1
                    if left:
                        rem[-1] = left
                        break
                    rem.pop()
                    frame = frames.pop()
                    kind = frame[0]
                    if kind == 124:  # an attribute: dropped, and not an element
                        attr -= 1
                        self._attr = attr
                        if not attr:
                            feed_from = pos
                            if not rem:
                                origin = base + pos
                        break
                    if kind != 42 and not attr:
                        if kind == 37:
                            if frame[3]:
                                out[frame[2]] = b"*%d\r\n" % frame[1]
                                self._add_fixup(_FIX_MAP, None)
                        elif kind == 126:
                            self._add_fixup(_FIX_SET, None)
                        else:
                            self._add_fixup(_FIX_PUSH, None)
                    if not rem:
                        # A whole top-level aggregate, for hiredis to build.
                        fix = self._fix
                        if fix is None:
                            ready.append(_HIREDIS_REPLY)
                        else:
                            ready.append(fix)
                            self._fix = None
                        if out:
                            if pos > feed_from:
                                out.append(buf[feed_from:pos])
                            for piece in out:
                                feed(piece)
                            out.clear()
                            feed_from = pos
                        hi_end = pos
                        origin = base + pos
                        if pos < n and buf[pos] in _FAST_TAGS:
                            starved = False  # leave the scalar to the fast path
                        break
                if not starved:
                    break
            if starved:  # out of bytes in the middle of a reply (or between two)
                self._check_incomplete(origin)
        except ProtocolError as exc:
            broken = exc
        except _UNEXPECTED as exc:
            broken = _malformed(exc)
        if hi_end > feed_from:
            feed(buf, feed_from, hi_end - feed_from)
            feed_from = hi_end
        if broken is not None:
            self._break(broken)
            return
        settled = not rem and bulk_end < 0 and feed_from == pos
        self._settled = settled
        self._idle = settled and not ready
        self._pos = pos
        self._search = search
        self._origin = origin
        self._feed_from = feed_from
        self._bulk_end = bulk_end

    def _emit(self, feed_from: int, end: int, origin: int) -> None:
        """Pass on the bytes from ``feed_from`` to ``end``, before a splice.

        Whole replies among them go to hiredis at once (it may be asked for them
        before the current reply is complete); the current reply's own bytes are
        queued in _out, which is fed when the reply is complete.
        """
        first = origin - self._base  # where the current reply starts in _buf
        if feed_from < first:
            self._reader.feed(self._buf, feed_from, first - feed_from)
            feed_from = first
        if end > feed_from:
            self._out.append(self._buf[feed_from:end])

    def _top_scalar(self, tag: int, body: int, end: int) -> Any:
        """The value of a top-level reply other than an aggregate hiredis builds."""
        buf = self._buf
        if tag == 36 or tag == 61 or tag == 33:
            return None if body < 0 else _bulk_value(tag, buf[body : end - 2])
        if tag in _AGG_TAGS:  # an empty or null aggregate
            if buf[body] == 45:  # b"-": "*-1", the null array
                return None
            return _finish(_AGG_KINDS[tag], [])
        return _scalar(tag, buf[body : end - 2])

    def _nested(self, tag: int, body: int, end: int) -> None:
        """Check a nested element as RespParser would, and record its fix-up if any."""
        if tag == 36:
            return  # a bulk string inside an attribute: its framing was checked
        buf = self._buf
        if tag in _AGG_TAGS:  # an empty or null aggregate
            if not self._attr and buf[body] != 45:
                if tag == 126:
                    self._add_fixup(_FIX_SET, None)
                elif tag == 62:
                    self._add_fixup(_FIX_PUSH, None)
            return
        raw = buf[body : end - 2]
        if tag == 43 or tag == 45:
            # hiredis would check these too, but only once the reply is whole.
            _simple(raw)
            if tag == 43 and not self._attr:
                self._add_fixup(_FIX_STR, None)
        elif tag == 40:
            number = _parse_bignum(raw)
            if not self._attr:
                self._add_fixup(_FIX_VALUE, number)
        elif tag == 33 or tag == 61:
            value = _bulk_value(tag, raw)  # checks a verbatim string's prefix
            if tag == 33 and not self._attr:
                self._add_fixup(_FIX_VALUE, value)
        else:
            # Doubles, booleans and nulls, which hiredis accepts too readily, and
            # anything inside an attribute, which hiredis never sees.
            _scalar(tag, raw)

    def _add_fixup(self, op: int, arg: Any) -> None:
        """Record a fix-up for the node the guard is at (child of the open frames)."""
        frames = self._frames
        path = tuple([frame[1] - left for frame, left in zip(frames, self._rem, strict=True)])
        fix = self._fix
        if fix is None:
            fix = self._fix = _Fixups()
        fix.append((path, op, arg))
        self._flag_frames()

    def _flag_frames(self) -> None:
        """Flag every open aggregate: some fix-up lies inside (or a map has an
        aggregate for a key), so the maps among them must reach hiredis as arrays.

        Flags are set from the innermost frame outwards, so the first flagged
        frame met has all its ancestors flagged already.
        """
        for frame in reversed(self._frames):
            if frame[3]:
                break
            frame[3] = True


def make_parser(limits: Limits = DEFAULT_LIMITS, *, use_hiredis: bool | None = None) -> Parser:
    """Return the fastest available parser.

    Args:
        limits: Safety bounds, enforced by either parser.
        use_hiredis: ``True`` to require hiredis, ``False`` to use the pure-Python
            parser, ``None`` (the default) to use hiredis when it is installed.

    Raises:
        ConfigurationError: ``use_hiredis=True`` but hiredis is not installed.
    """
    if use_hiredis is False or (use_hiredis is None and _hiredis is None):
        return RespParser(limits)
    return HiredisParser(limits)
