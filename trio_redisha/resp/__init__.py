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

:class:`RespParser` parses in pure Python; :func:`make_parser` returns one. Long
runs of bulk strings (``SMEMBERS``, ``HGETALL``, ``MGET``...) are checked and
sliced in a few C-level passes over the bytes rather than element by element.

Error replies are values so that one server's error never aborts a fan-out.
Lengths and integers must be canonical decimal (no sign but ``-``, no space, no
leading zero; integers within 64 bits) and simple strings may hold no CR or LF,
as hiredis requires too. Anything malformed, or beyond one of the :class:`Limits`, raises
:class:`~trio_redisha.ProtocolError` and leaves the parser broken: the caller
must close the connection, never try to resynchronise it.

The package is split by concern, as h11 splits its codec: ``_values`` (reply
types, limits, the checks of one-line values), ``_encoder`` (commands to bytes),
``_framing`` (the buffer, the header and limit checks, the batched bulk runs)
and ``_parser`` (the parser and :func:`make_parser`).
"""

from __future__ import annotations

from ._encoder import arg_bytes as arg_bytes
from ._encoder import encode_command as encode_command
from ._encoder import encode_commands as encode_commands
from ._framing import Parser as Parser
from ._parser import RespParser as RespParser
from ._parser import make_parser as make_parser
from ._values import DEFAULT_LIMITS as DEFAULT_LIMITS
from ._values import NEED_DATA as NEED_DATA
from ._values import CommandArg as CommandArg
from ._values import Limits as Limits
from ._values import Push as Push

__all__ = [
    "DEFAULT_LIMITS",
    "NEED_DATA",
    "CommandArg",
    "Limits",
    "Parser",
    "Push",
    "RespParser",
    "arg_bytes",
    "encode_command",
    "encode_commands",
    "make_parser",
]
