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
null ``_``, ``$-1``  ``None``
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

Error replies are values so that one server's error never aborts a fan-out.
Anything malformed, or beyond one of the :class:`Limits`, raises
:class:`~trio_redisha.ProtocolError` and leaves the parser broken: the caller
must close the connection, never try to resynchronise it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .exceptions import CommandEncodeError, ProtocolError, ReplyError

__all__ = [
    "NEED_DATA",
    "DEFAULT_LIMITS",
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


# Frame kinds on the stack of partly built aggregates.
_ARRAY, _MAP, _SET, _PUSH, _ATTR = range(5)
# Pending bulk payload kinds.
_BULK, _VERBATIM, _BLOB_ERROR = range(3)
_NOTHING: Final = object()  # an attribute completed: nothing to hand to the parent

_AGG_KINDS: Final = {
    ord("*"): _ARRAY,
    ord("%"): _MAP,
    ord("~"): _SET,
    ord(">"): _PUSH,
    ord("|"): _ATTR,
}


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, (set, dict)):
        return tuple(_hashable(v) for v in value)
    return value


def _parse_int(line: bytes, what: str) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError(f"invalid {what} {bytes(line)[:40]!r}") from None


def _parse_double(line: bytes) -> float:
    text = bytes(line).lower()
    try:
        return float(text)
    except ValueError:
        raise ProtocolError(f"invalid double {bytes(line)[:40]!r}") from None


class RespParser:
    """An incremental RESP2/RESP3 reply parser in pure Python.

    It keeps partly built aggregates on an explicit stack and remembers how far
    it searched for a line end, so input that trickles in one byte at a time is
    parsed in linear time, and nesting costs no Python recursion.

    Args:
        limits: Safety bounds; see :class:`Limits`.
    """

    __slots__ = (
        "_base",
        "_broken",
        "_buf",
        "_bulk_kind",
        "_bulk_len",
        "_limits",
        "_pos",
        "_reply_origin",
        "_search",
        "_stack",
    )

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._pos = 0  # start of the unparsed bytes in _buf
        self._search = 0  # where the search for the next CRLF resumes
        self._base = 0  # bytes dropped from the front of _buf so far
        self._reply_origin = 0  # absolute offset where the current reply began
        self._stack: list[list[Any]] = []  # [kind, items, remaining]
        self._bulk_len = -1  # >= 0 while waiting for a bulk payload
        self._bulk_kind = _BULK
        self._broken: ProtocolError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the server."""
        buf = self._buf
        pos = self._pos
        if pos:
            if pos >= len(buf):
                self._base += pos
                buf.clear()
                self._search = self._pos = 0
            elif pos > 65536:
                self._base += pos
                del buf[:pos]
                self._search -= pos
                self._pos = 0
        buf += data

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet consumed by a whole reply."""
        return self._base + len(self._buf) - self._reply_origin

    def _fail(self, message: str) -> ProtocolError:
        self._broken = ProtocolError(message)
        return self._broken

    def next_reply(self) -> Any:
        """Return the next whole reply, or :data:`NEED_DATA` if none is buffered.

        Raises:
            ProtocolError: The bytes are not valid RESP or exceed a limit. The
                parser stays broken afterwards.
        """
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except ProtocolError as exc:
            self._broken = exc
            raise
        except (ValueError, IndexError, OverflowError, UnicodeError, MemoryError) as exc:
            # Defence in depth: nothing but ProtocolError may leave the parser.
            raise self._fail(f"malformed reply: {exc}") from exc

    def _need_data(self) -> _NeedData:
        limits = self._limits
        if self._base + len(self._buf) - self._reply_origin > limits.max_incomplete_bytes:
            raise self._fail(
                f"incomplete reply larger than {limits.max_incomplete_bytes} bytes"
            )
        return NEED_DATA

    def _next(self) -> Any:  # noqa: C901 - one dispatch loop, kept flat for speed
        buf = self._buf
        limits = self._limits
        stack = self._stack
        while True:
            if not stack and self._bulk_len < 0:
                self._reply_origin = self._base + self._pos
            pos = self._pos
            if self._bulk_len >= 0:
                # Waiting for the payload of a bulk string.
                end = pos + self._bulk_len
                if len(buf) < end + 2:
                    return self._need_data()
                if buf[end] != 13 or buf[end + 1] != 10:
                    raise self._fail("bulk string not terminated by CRLF")
                raw = bytes(buf[pos:end])
                self._pos = self._search = end + 2
                self._bulk_len = -1
                kind = self._bulk_kind
                if kind == _BULK:
                    value: Any = raw
                elif kind == _VERBATIM:
                    if len(raw) < 4 or raw[3] != 58:  # b":"
                        raise self._fail("verbatim string without a format prefix")
                    value = raw[4:]
                else:
                    value = ReplyError(raw.decode("utf-8", "replace"))
            else:
                start = self._search
                if start < pos:
                    start = pos
                idx = buf.find(b"\r\n", start)
                if idx < 0:
                    if len(buf) - pos > limits.max_line_length:
                        raise self._fail(
                            f"line longer than {limits.max_line_length} bytes without CRLF"
                        )
                    self._search = len(buf) - 1 if len(buf) > pos else pos
                    return self._need_data()
                if idx - pos > limits.max_line_length:
                    raise self._fail(f"line longer than {limits.max_line_length} bytes")
                if idx == pos:
                    raise self._fail("empty line where a reply type was expected")
                tag = buf[pos]
                line = bytes(buf[pos + 1 : idx])
                self._pos = self._search = idx + 2
                if tag == 36:  # $ bulk string
                    n = _parse_int(line, "bulk length")
                    if n < 0:
                        if n != -1:
                            raise self._fail(f"negative bulk length {n}")
                        value = None
                    else:
                        if n > limits.max_bulk_length:
                            raise self._fail(
                                f"bulk length {n} exceeds the limit of "
                                f"{limits.max_bulk_length}"
                            )
                        self._bulk_len = n
                        self._bulk_kind = _BULK
                        continue
                elif tag == 43:  # + simple string
                    value = line.decode("utf-8", "replace")
                elif tag == 58:  # : integer
                    value = _parse_int(line, "integer")
                elif tag == 45:  # - error
                    value = ReplyError(line.decode("utf-8", "replace"))
                elif tag in _AGG_KINDS:
                    kind = _AGG_KINDS[tag]
                    n = _parse_int(line, "aggregate length")
                    if n < 0:
                        if n != -1 or kind != _ARRAY:
                            raise self._fail(f"negative aggregate length {n}")
                        value = None
                    elif n > limits.max_aggregate_length:
                        raise self._fail(
                            f"aggregate length {n} exceeds the limit of "
                            f"{limits.max_aggregate_length}"
                        )
                    else:
                        if kind == _MAP or kind == _ATTR:
                            n *= 2
                        if n == 0:
                            value = _finish(kind, [])
                        else:
                            if len(stack) >= limits.max_depth:
                                raise self._fail(
                                    f"replies nested deeper than {limits.max_depth}"
                                )
                            stack.append([kind, [], n])
                            continue
                elif tag == 95:  # _ null
                    if line:
                        raise self._fail("null with a payload")
                    value = None
                elif tag == 44:  # , double
                    value = _parse_double(line)
                elif tag == 35:  # # boolean
                    if line == b"t":
                        value = True
                    elif line == b"f":
                        value = False
                    else:
                        raise self._fail(f"invalid boolean {line[:40]!r}")
                elif tag == 40:  # ( big number
                    value = _parse_int(line, "big number")
                elif tag == 61 or tag == 33:  # = verbatim, ! blob error
                    n = _parse_int(line, "bulk length")
                    if n < 0 or n > limits.max_bulk_length:
                        raise self._fail(f"invalid bulk length {n}")
                    self._bulk_len = n
                    self._bulk_kind = _VERBATIM if tag == 61 else _BLOB_ERROR
                    continue
                else:
                    raise self._fail(f"unknown reply type byte {bytes([tag])!r}")
            # A value is complete: hand it to the aggregate being built, if any.
            while stack:
                frame = stack[-1]
                if value is not _NOTHING:
                    frame[1].append(value)
                    frame[2] -= 1
                    if frame[2]:
                        break
                else:
                    break
                stack.pop()
                value = _finish(frame[0], frame[1])
            else:
                if value is not _NOTHING:
                    return value


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


class HiredisParser:
    """Placeholder replaced below when hiredis is importable."""


def make_parser(limits: Limits = DEFAULT_LIMITS, *, use_hiredis: bool | None = None) -> Parser:
    """Return the fastest available parser.

    Args:
        limits: Safety bounds, enforced by either parser.
        use_hiredis: ``True`` to require hiredis, ``False`` to use the pure-Python
            parser, ``None`` (the default) to use hiredis when it is installed.
    """
    return RespParser(limits)
