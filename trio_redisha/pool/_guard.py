"""Which commands may run on the pool's shared connections.

Every connection of a pool is shared by every caller, so a command that blocks
the connection (``BLPOP``) or changes its state for whoever comes next
(``MULTI``, ``SELECT``, ``CLIENT REPLY OFF``) would corrupt it for everyone.
The check runs before anything is encoded or sent, and reads the command name
from any argument type the encoder accepts.

The list is written out rather than derived from the command table's flags,
because no flag means "unsafe on a shared connection": ``XREAD`` is flagged
``blocking`` but blocks only with ``BLOCK`` (checked here), ``@connection``
holds ``PING`` and ``ECHO``, and ``SELECT``, ``SWAPDB`` or ``CLIENT REPLY``
carry no flag of their own. A test checks that every command the table flags
``blocking`` or ``@transaction``, and every ``*SUBSCRIBE``, is in the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .._util import word
from ..connection import check_one_reply
from ..exceptions import UnsupportedCommand

__all__ = ["check_command", "word"]

_STATEFUL: Final = frozenset(
    {
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
        "BZMPOP", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "MULTI", "EXEC",
        "DISCARD", "WATCH", "UNWATCH", "SELECT", "QUIT", "RESET", "HELLO", "AUTH",
        "WAIT", "WAITAOF", "SWAPDB", "REPLICAOF", "SLAVEOF",
    }
)  # fmt: skip
_STATEFUL_CLIENT: Final = frozenset({"REPLY", "TRACKING", "SETNAME", "KILL", "PAUSE"})


def check_command(args: Sequence[Any]) -> None:
    """Refuse a command that cannot run on a shared connection.

    Raises:
        UnsupportedCommand: The command is empty, blocks, or changes the
            connection's state.
    """
    if not args:
        raise UnsupportedCommand("empty command")
    name = word(args[0])
    if name is None:
        return  # not text: the encoder reports the bad type
    check_one_reply(name, args)
    if name in _STATEFUL or (
        name == "CLIENT" and len(args) > 1 and word(args[1]) in _STATEFUL_CLIENT
    ):
        raise UnsupportedCommand(
            f"{name} blocks or changes connection state; it cannot run on the pool's "
            "shared connections (open a dedicated connection with open_connection())"
        )
    if (
        name == "SCRIPT"
        and len(args) > 2
        and word(args[1]) == "DEBUG"
        and word(args[2]) in ("YES", "SYNC")
    ):
        # The connection becomes a Lua debugging session: every caller's
        # command after it is answered by the debugger, as a success.
        raise UnsupportedCommand(
            "SCRIPT DEBUG turns the shared connections into a Lua debugging session;"
            " debug scripts on a dedicated connection (open_connection())"
        )
    if name in ("XREAD", "XREADGROUP"):
        # Options come before STREAMS; after it, keys and ids (a stream, like
        # XREADGROUP's group and consumer, may be named "block").
        i = 1
        while i < len(args):
            w = word(args[i])
            if w == "STREAMS":
                break
            if w == "BLOCK":
                raise UnsupportedCommand(f"{name} with BLOCK blocks the shared connection")
            i += 3 if w == "GROUP" else 1
