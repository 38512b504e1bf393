"""How map values and set members become bytes: JSON, raw bytes, text. Never pickle.

A codec is any object with ``encode(value) -> bytes | str`` and
``decode(data: bytes) -> value``. Encoding happens before anything is sent,
so a value that cannot be encoded raises :class:`~trio_redisha.CodecError` and
no server is touched. Decoding bytes read from a server never runs code:
unpickling network data (as the Ruby gem's ``Marshal.load`` did) would let
whoever can write to one Redis server run code in every client.

A set member's encoding is its identity, so a codec used for sets must be
deterministic and injective (two equal members, one encoding). JSON is not,
for numbers: Python holds ``1 == 1.0 == True`` (and ``0 == -0.0 == False``),
which JSON writes ``1``, ``1.0``, ``true``. A :class:`~trio_redisha.Set` with
:class:`JSONCodec` stores them as distinct members, and removes them all
together (see :func:`json_equals`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..exceptions import CodecError, CodecTypeError

__all__ = ["BytesCodec", "Codec", "JSONCodec", "StrCodec", "encode_value", "json_equals"]

# The C scanner behind json.loads, called directly: a value is one JSON text
# with no whitespace around it (as encode() writes it), and json.loads's own
# checks around the scanner cost as much again as scanning a short value.
# Anything else (whitespace, trailing data, an error) goes through json.loads,
# which decides exactly as it always does.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes for storage and back."""

    def encode(self, value: Any) -> bytes | str:
        """Return the stored form of ``value`` (``str`` is stored as UTF-8)."""
        ...

    def decode(self, data: bytes) -> Any:
        """Return the value stored as ``data``."""
        ...


class JSONCodec:
    """JSON text, UTF-8 (the default for :class:`~trio_redisha.HashMap`).

    Keys are sorted so that equal values have equal encodings. ``NaN`` and the
    infinities are refused: they are not JSON and other languages cannot read
    them. Numbers Python holds equal are not encoded alike (``1``, ``1.0``,
    ``true``): see :class:`~trio_redisha.Set` for what that means for members.
    """

    __slots__ = ()

    def encode(self, value: Any) -> bytes:
        """Encode ``value`` as compact JSON.

        Raises:
            CodecError: ``value`` is not JSON-serialisable.
        """
        try:
            text = json.dumps(
                value, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
            )
            return text.encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            # UnicodeEncodeError (a lone surrogate) is a ValueError too.
            raise CodecError(f"cannot encode {type(value).__name__} as JSON: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        """Decode JSON text.

        Raises:
            CodecError: ``data`` is not UTF-8 JSON.
        """
        try:
            text = data.decode("utf-8")
            try:
                value, end = _scan_once(text, 0)
            except StopIteration:
                end = -1
            if end == len(text):
                return value
            return json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CodecError(f"stored value is not JSON: {exc}") from exc

    def __repr__(self) -> str:
        return "JSONCodec()"


class BytesCodec:
    """Raw bytes, stored as they are (``bytes``, ``bytearray`` or ``memoryview`` in)."""

    __slots__ = ()

    def encode(self, value: Any) -> bytes:
        """Return ``value`` as bytes.

        Raises:
            CodecTypeError: ``value`` is not bytes-like.
        """
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise CodecTypeError(f"BytesCodec needs bytes, not {type(value).__name__}")

    def decode(self, data: bytes) -> bytes:
        """Return ``data``."""
        return bytes(data)

    def __repr__(self) -> str:
        return "BytesCodec()"


class StrCodec:
    """Text, stored as UTF-8 (the default for :class:`~trio_redisha.Set`)."""

    __slots__ = ()

    def encode(self, value: Any) -> bytes:
        """Return ``value`` encoded as UTF-8.

        Raises:
            CodecTypeError: ``value`` is not a ``str``.
            CodecError: ``value`` holds lone surrogates.
        """
        if not isinstance(value, str):
            raise CodecTypeError(f"StrCodec needs str, not {type(value).__name__}")
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CodecError(f"cannot encode {value!r} as UTF-8: {exc}") from exc

    def decode(self, data: bytes) -> str:
        """Decode UTF-8.

        Raises:
            CodecError: ``data`` is not UTF-8.
        """
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"stored value is not UTF-8: {exc}") from exc

    def __repr__(self) -> str:
        return "StrCodec()"


def encode_value(codec: Codec, value: Any) -> bytes:
    """Encode with ``codec``, checking what it returns.

    Raises:
        CodecError: The codec failed, or returned neither bytes nor str.
    """
    try:
        out = codec.encode(value)
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"{codec!r} cannot encode {type(value).__name__}: {exc}") from exc
    if isinstance(out, str):
        try:
            return out.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CodecError(f"{codec!r} returned text that is not UTF-8: {exc}") from exc
    if isinstance(out, (bytes, bytearray, memoryview)):
        return bytes(out)
    raise CodecError(f"{codec!r} returned {type(out).__name__}, not bytes or str")


def json_equals(value: Any) -> list[Any]:
    """The JSON scalars Python holds equal to ``value``, which JSON encodes differently.

    ``value`` first, then the others: for ``1`` (or ``1.0``, ``True``) those
    are ``1``, ``1.0`` and ``True``; for ``0`` also ``-0.0`` and ``False``;
    for a whole float its ``int``, for an ``int`` the ``float`` holding it
    exactly. Anything else (text, a fraction, ``None``...) is equal to itself
    only. A :class:`~trio_redisha.Set` with :class:`JSONCodec` removes all
    of them when asked to remove one, as a Python set would.
    """
    if isinstance(value, bool):
        whole = int(value)
    elif isinstance(value, int):
        whole = int(value)  # an IntEnum member is encoded as its int
    elif isinstance(value, float) and value.is_integer():
        whole = int(value)
    else:
        return [value]
    out = [value, whole]
    try:
        as_float = float(whole)
    except OverflowError:  # beyond any float: no float is equal to it
        pass
    else:
        if as_float == whole:  # exact: int == float compares the values
            out.append(as_float)
    if whole == 0:
        out.append(-0.0)
    if whole in (0, 1):
        out.append(bool(whole))
    return out
