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

The package is split by concern, as h11 splits its codec: ``_values`` (reply
types, limits, the checks of one-line values), ``_encoder`` (commands to bytes),
``_framing`` (the buffer and the header and limit checks both parsers share),
``_parser`` (the pure parser and :func:`make_parser`) and ``_hiredis_parser``.
"""

from __future__ import annotations

from ._encoder import encode_command as encode_command
from ._encoder import encode_commands as encode_commands
from ._framing import Parser as Parser
from ._hiredis_parser import HiredisParser as HiredisParser
from ._hiredis_parser import _hiredis as _hiredis
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
    "HiredisParser",
    "Limits",
    "Parser",
    "Push",
    "RespParser",
    "encode_command",
    "encode_commands",
    "make_parser",
]
