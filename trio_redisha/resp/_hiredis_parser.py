"""The reply parser built on the optional hiredis C parser, behind a framing guard."""

from __future__ import annotations

import importlib
from collections import deque
from types import ModuleType
from typing import Any, Final

from ..exceptions import ConfigurationError, ProtocolError, ReplyError
from ._framing import _BufferedParser, _bulk_arrived, _bulk_run, _header_length
from ._values import (
    _AGG_KINDS,
    _MAP,
    _MAX_DIGITS,
    _SET,
    _SMALL_LENGTHS,
    _UNEXPECTED,
    DEFAULT_LIMITS,
    NEED_DATA,
    Limits,
    Push,
    _bulk_value,
    _finish,
    _malformed,
    _parse_bignum,
    _parse_integer,
    _scalar,
    _simple,
)

_hiredis: ModuleType | None
try:
    _hiredis = importlib.import_module("hiredis")
except ImportError:  # the optional C parser is not installed
    _hiredis = None


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
