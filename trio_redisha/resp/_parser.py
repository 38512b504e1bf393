"""The reply parser, in pure Python, and :func:`make_parser`.

It is the only parser: hiredis, behind the Python guard that enforcing the
limits requires, was measured no faster (the guard's checks cost what parsing
costs), so it was dropped rather than kept as a second framing of the stream.
"""

from __future__ import annotations

import warnings
from typing import Any, Final

from ..exceptions import ProtocolError, ReplyTooLarge
from ._framing import Parser, _BufferedParser, _bulk_arrived, _bulk_run, _header_length
from ._values import (
    _AGG_KINDS,
    _ARRAY,
    _ATTR,
    _MAP,
    _NOTHING,
    _PUSH,
    _SMALL_LENGTHS,
    _UNEXPECTED,
    DEFAULT_LIMITS,
    NEED_DATA,
    Limits,
    Push,
    _bulk_value,
    _finish,
    _malformed,
    _NeedData,
    _parse_integer,
    _scalar,
)


class RespParser(_BufferedParser):
    """An incremental RESP2/RESP3 reply parser in pure Python.

    It keeps partly built aggregates on an explicit stack and remembers how far
    it searched for a line end, so input that trickles in one byte at a time is
    parsed in linear time, and nesting costs no Python recursion.

    Args:
        limits: Safety bounds; see :class:`Limits`.
    """

    __slots__ = ("_dropped_kind", "_dropping", "_stack")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._stack: list[list[Any]] = []  # [kind, items, remaining]
        # The current reply has more elements than max_reply_elements: it is
        # framed to its end, building nothing (its aggregates' items are
        # _DROPPED), and given as a ReplyTooLarge.
        self._dropping = False
        self._dropped_kind = _ARRAY  # the top-level kind of the reply being dropped

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet consumed by a whole reply."""
        if not self._stack and self._bulk_end < 0:
            return len(self._buf) - self._pos + self._chunks_len  # between replies
        return self._base + len(self._buf) + self._chunks_len - self._origin

    def _need_data(self) -> _NeedData:
        self._check_incomplete(self._origin)
        self._idle = not self._stack and self._bulk_end < 0 and not self._dropping
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
                    kept = None if items is _DROPPED else items
                    pos, rest = _bulk_run(buf, n, find, small, pos, left, max_bulk, kept)
                    if rest != left:
                        search = pos
                        frame[2] = rest
                        if not rest:
                            stack.pop()
                            value = _completed(frame)
                if value is _NOTHING:
                    if not stack:
                        self._origin = self._base + pos
                        self._elements = 0
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
                            count = 2 * length if kind in (_MAP, _ATTR) else length
                            self._elements += count
                            if self._elements > self._max_elements and not self._dropping:
                                # Each element costs memory its bytes may not show.
                                # The framing is sound: the reply is read to its end
                                # and dropped, and the connection stays in step.
                                self._dropping = True
                                self._dropped_kind = stack[0][0] if stack else kind
                                for open_frame in stack:
                                    open_frame[1] = _DROPPED
                            stack.append([kind, _DROPPED if self._dropping else [], count])
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
                    value = _completed(frame)
                else:
                    if value is not _NOTHING:
                        self._pos = self._search = pos
                        self._idle = True  # between two replies
                        if self._dropping:
                            self._dropping = False
                            dropped = ReplyTooLarge(
                                f"a reply of more than {self._max_elements} elements"
                                " (Limits.max_reply_elements): read and dropped"
                            )
                            # A push stays a push: it must never reach a caller.
                            return Push([dropped]) if self._dropped_kind == _PUSH else dropped
                        return value
                    if self._dropping and self._dropped_kind == _ATTR:
                        # A top-level attribute was dropped: the reply it
                        # annotates is read as any other.
                        self._dropping = False
                value = _NOTHING
        except ProtocolError as exc:
            self._break(exc)
            raise
        except _UNEXPECTED as exc:
            # Defence in depth: nothing but ProtocolError may leave the parser.
            raise self._break(_malformed(exc)) from exc


class _Dropped:
    """The items of an aggregate in a reply being dropped: nothing is kept."""

    __slots__ = ()

    def append(self, value: Any) -> None:
        pass


_DROPPED: Final = _Dropped()


def _completed(frame: list[Any]) -> Any:
    """The value of an aggregate whose last item came (``None`` if dropped)."""
    kind, items = frame[0], frame[1]
    if items is _DROPPED:
        return _NOTHING if kind == _ATTR else None
    return items if kind == _ARRAY else _finish(kind, items)


def make_parser(limits: Limits = DEFAULT_LIMITS, *, use_hiredis: bool | None = None) -> Parser:
    """Return a reply parser that enforces ``limits``.

    Args:
        limits: Safety bounds; see :class:`Limits`.
        use_hiredis: Deprecated and ignored. It chose the hiredis-based parser,
            which was dropped: with the checks the limits require it was no
            faster than :class:`RespParser`, now returned in every case.
    """
    if use_hiredis is not None:
        warnings.warn(
            "use_hiredis is deprecated and ignored: the pure-Python parser is the "
            "fastest one that enforces the limits",
            DeprecationWarning,
            stacklevel=2,
        )
    return RespParser(limits)
