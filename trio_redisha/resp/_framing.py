"""Framing: the receive buffer, the header checks, the limits, the bulk runs.

Where a reply's elements begin and end and whether a header is acceptable
(canonical lengths, the :class:`~trio_redisha.resp.Limits`) is decided here, by
:func:`_header_length`, :func:`_bulk_run` (with :func:`_bulk_batch` for long runs)
and :class:`_BufferedParser`, which holds the buffer, the fast path for top-level
scalars and the incomplete-reply limit. The parser module builds values on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from ..exceptions import ProtocolError
from ._values import _INT64_MAX, _MAX_DIGITS, _SMALL_LENGTHS, NEED_DATA, Limits, _invalid


class Parser(Protocol):
    """What the connection needs of a reply parser."""

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""

    def next_reply(self) -> Any:
        """Return the next whole reply, or :data:`NEED_DATA`."""


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


# The header of each small bulk length, indexed by the length: a run's headers
# are checked by rebuilding them from the payloads' lengths (see _bulk_batch).
_BULK_HEADERS: Final = [b"$%d" % i for i in range(len(_SMALL_LENGTHS))]
_BATCH_MIN: Final = 8  # shorter runs cost less element by element
_BATCH_BYTES: Final = 256  # the fewest buffered bytes worth a batch of top-level replies
# Bytes split in the first round of a run inside an aggregate: 128 per element
# expected, within these bounds (each next round splits 4x more). The upper bound
# caps what one round costs when its first element already disagrees, so that
# input crafted to make every batch fail stays linear with a small constant.
_BATCH_WINDOW: Final = 1024
_BATCH_FIRST_MAX: Final = 8192
# Top-level replies (next_bulks): the first round takes at most this many, its
# window sized from the first two (pipelined misses, nils, may come every few).
_TOP_FIRST: Final = 16


def _bulk_batch(
    buf: bytes,
    n: int,
    pos: int,
    left: int,
    max_bulk: int,
    items: list[Any] | None,
    size: int = 0,
) -> tuple[int, int]:
    """Take a run of small bulk strings in a few C-level passes over the bytes.

    A window of the buffer is split at every CRLF into alternating headers and
    payloads, and the run is accepted as far as each header equals ``$`` and
    its payload's length in canonical decimal, payload after payload. That
    check is exact: RESP framing is determined by the headers, so a consistent
    split is the parse itself, and a payload holding a CRLF makes its header
    disagree and ends the batch there (the element-by-element code takes over).
    Each round splits four times more bytes than the last and stops at the
    first disagreement or once the buffer is exhausted, so the bytes split stay
    within a constant factor of the bytes consumed: linear, whatever the input.

    Args:
        buf: The buffer.
        n: ``len(buf)``.
        pos: Where the run starts, at a ``$``.
        left: How many elements the aggregate still expects.
        max_bulk: The largest bulk length allowed.
        items: Where to add the payloads, or None to only check and skip them.
        size: The bytes split in the first round (0: from ``left``).

    Returns:
        Where the batch stopped, and how many elements the aggregate still expects.
    """
    if not size:
        size = min(max(_BATCH_WINDOW, 128 * left), _BATCH_FIRST_MAX)
    headers = _BULK_HEADERS.__getitem__
    while left:
        window_end = pos + size
        window = buf[pos:window_end]
        parts = window.split(b"\r\n", 2 * left)
        pairs = (len(parts) - 1) >> 1  # the tokens before the last are CRLF-ended
        if not pairs:
            break
        heads = parts[0 : 2 * pairs : 2]
        values = parts[1 : 2 * pairs : 2]
        lengths = list(map(len, values))
        try:
            agree = list(map(headers, lengths)) == heads
            whole = agree and len(parts) == 2 * pairs + 1  # all but the remainder
        except IndexError:  # a payload beyond the table, a header that cannot match
            agree = whole = False
        if not agree:
            # Keep the longest prefix that agrees: it is valid as it stands.
            pairs = 0
            for head, length in zip(heads, lengths, strict=False):
                if length >= len(_BULK_HEADERS) or head != _BULK_HEADERS[length]:
                    break
                pairs += 1
            if not pairs:
                break
            del values[pairs:], heads[pairs:], lengths[pairs:]
        if max_bulk < len(_BULK_HEADERS) and max(lengths) > max_bulk:
            break  # the element-by-element code finds the culprit and reports it
        if items is not None:
            items += values
        if whole:
            pos += len(window) - len(parts[-1])
        elif agree:
            # The window cut an element: what follows the last whole pair is the
            # one or two parts after it, with the CRLFs between them.
            rest = parts[2 * pairs :]
            pos += len(window) - sum(map(len, rest)) - 2 * (len(rest) - 1)
        else:
            pos += sum(map(len, heads)) + sum(lengths) + 4 * pairs
        left -= pairs
        if not agree or window_end >= n or pos >= n or buf[pos] != 36:
            break
        size *= 4
    return pos, left


def _bulk_run(
    buf: bytes,
    n: int,
    find: Callable[[bytes, int, int], int],
    small: Callable[[bytes], int | None],
    pos: int,
    left: int,
    max_bulk: int,
    items: list[Any] | None,
) -> tuple[int, int]:
    """Go over a run of wholly buffered bulk strings inside an aggregate.

    The shortcut for the commonest nested elements (MGET, LRANGE, HGETALL...).
    The run stops at the end of the aggregate, and at anything unusual (a large
    or invalid length, a payload not all here, another type, an error), which is
    left to the caller's general code: that code re-reads it and decides. A long
    run goes through :func:`_bulk_batch` first.

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
        items: Where to add the payloads, or None to only check and skip them.

    Returns:
        Where the run stopped, and how many elements the aggregate still expects.
    """
    if left >= _BATCH_MIN:
        pos, left = _bulk_batch(buf, n, pos, left, max_bulk, items)
        if not left or pos >= n or buf[pos] != 36:
            return pos, left
    append = None if items is None else items.append
    while True:
        # A bulk header is at most 22 bytes: the search stays O(1).
        idx = find(b"\r\n", pos + 1, pos + 22)
        if idx < 0:
            break
        length = small(buf[pos + 1 : idx])
        if length is not None:
            start = idx + 2
            end = start + length
            if end + 2 > n or length > max_bulk or buf[end] != 13 or buf[end + 1] != 10:
                break
            value: bytes | None = buf[start:end]
            pos = end + 2
        elif idx == pos + 3 and buf[pos + 1] == 45 and buf[pos + 2] == 49:
            # "$-1": a nil (RESP2), a missing key of an MGET: None, in the run.
            value = None
            pos = idx + 2
        else:
            break  # a large or invalid length: the general code decides
        if append is not None:
            append(value)
        left -= 1
        if not left or pos >= n or buf[pos] != 36:
            break
    return pos, left


class _BufferedParser:
    """The parser's buffer half: the buffer, the limits, the broken state, the fast path.

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
        "_elements",
        "_idle",
        "_max_agg",
        "_max_bulk",
        "_max_depth",
        "_max_elements",
        "_max_fast_agg",
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
        self._max_elements = limits.max_reply_elements
        # The fast path's aggregates, of at most 2 * this elements (a map's
        # entries count two): a larger one goes to the general code, which checks.
        self._max_fast_agg = min(self._max_agg, self._max_elements // 2)
        self._elements = 0  # elements of the current reply's aggregates so far
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
            # Fast path: a top-level simple string, integer, bulk string, or array
            # or map of bulk strings, whose bytes are all buffered (most replies).
            # Anything else, including every error, falls through to the general
            # code, which re-reads the line. An aggregate not all buffered yet is
            # tried here only once: the general code then keeps it and _idle is false.
            buf = self._buf
            pos = self._pos
            if pos == len(buf) and not self._chunks:
                return NEED_DATA  # everything received was taken (after each reply)
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
                elif tag == 42 or tag == 37:  # * array or % map, of bulk strings only
                    count = _SMALL_LENGTHS.get(buf[pos + 1 : idx])
                    start = idx + 2
                    if (
                        count
                        and count <= self._max_fast_agg
                        and start < len(buf)
                        and buf[start] == 36
                    ):
                        items: list[Any] = []
                        end, left = _bulk_run(
                            buf,
                            len(buf),
                            buf.find,
                            _SMALL_LENGTHS.get,
                            start,
                            count if tag == 42 else 2 * count,
                            self._max_bulk,
                            items,
                        )
                        if not left:  # else the general code starts again, once
                            self._pos = self._search = end
                            if tag == 42:
                                return items
                            it = iter(items)
                            return dict(zip(it, it, strict=True))
                elif tag == 58 and idx - pos <= _MAX_DIGITS + 1:  # :
                    line = buf[pos + 1 : idx]
                    if line.isdigit() and (line[0] != 48 or idx == pos + 2):
                        value = int(line)
                        if value <= _INT64_MAX:
                            self._pos = self._search = idx + 2
                            return value
        # Kept out of the fast path: a call there would cost every reply.
        return self._next_slow()

    def next_bulks(self, limit: int) -> list[bytes]:
        """Take up to ``limit`` whole top-level bulk-string replies at once.

        The same replies, in the same order, as that many :meth:`next_reply`
        calls would give, for the common run of pipelined ``GET`` replies: the
        run is framed by :func:`_bulk_batch` in a few C-level passes, and ends
        at the first reply that is not a whole, small, valid bulk string.
        Returns ``[]`` when that is the first one, when ``limit`` is below
        :data:`_BATCH_MIN` or fewer than :data:`_BATCH_BYTES` are buffered (a
        batch would cost more than it saves): what is left goes to
        :meth:`next_reply`, which also reports what is invalid.
        """
        buf = self._buf
        pos = self._pos
        if (
            limit < _BATCH_MIN
            or not self._idle
            or len(buf) - pos < _BATCH_BYTES
            or buf[pos] != 36  # $
        ):
            return []
        # The first two replies, checked at O(1): a run that cannot start, or
        # stops after one (pipelined GETs of present and missing keys: a nil,
        # $-1, every other reply), costs next to nothing, however often it is
        # tried; and they size the first round's window.
        n = len(buf)
        at = pos
        for _ in range(2):
            idx = buf.find(b"\r\n", at + 1, at + 22)
            length = None if idx < 0 else _SMALL_LENGTHS.get(buf[at + 1 : idx])
            if length is None:
                return []
            at = idx + length + 4
            if at >= n or buf[at] != 36:
                return []
        size = min(max((at - pos) * min(limit, _TOP_FIRST) // 2, 128), _BATCH_FIRST_MAX)
        items: list[bytes] = []
        end, _ = _bulk_batch(buf, n, pos, limit, self._max_bulk, items, size)
        self._pos = self._search = end
        return items

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
            size = len(self._buf) - pos + self._chunks_len
            # A line of max_line bytes may have arrived with the CR of its CRLF.
            if size > max_line and not (size == max_line + 1 and self._ends_with_cr()):
                raise ProtocolError(f"line longer than {max_line} bytes without CRLF")
        elif idx == pos:
            raise ProtocolError("empty line where a reply type was expected")
        else:
            raise ProtocolError(f"line longer than {max_line} bytes")

    def _ends_with_cr(self) -> bool:
        """Whether the last byte received is a CR."""
        last = self._chunks[-1] if self._chunks else self._buf
        return last[-1:] == b"\r"

    def _check_incomplete(self, origin: int) -> None:
        """Fail if the incomplete reply begun at stream offset ``origin`` is too large."""
        if self._base + len(self._buf) + self._chunks_len - origin > self._max_incomplete:
            raise ProtocolError(f"incomplete reply larger than {self._max_incomplete} bytes")
