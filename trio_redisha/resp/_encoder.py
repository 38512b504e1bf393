"""The encoding half of the RESP codec: a command becomes the bytes to send.

Every argument becomes a bulk string; anything that cannot be sent faithfully
raises :class:`~trio_redisha.CommandEncodeError` before a byte is produced, so a
caller never sends half a command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..exceptions import CommandEncodeError


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
