"""The encoding half of the RESP codec: a command becomes the bytes to send.

Every argument becomes a bulk string; anything that cannot be sent faithfully
raises :class:`~trio_redisha.CommandEncodeError` before a byte is produced, so a
caller never sends half a command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..exceptions import CommandEncodeError


def arg_bytes(index: int, arg: object) -> bytes:
    """Return the bytes of one argument, or raise CommandEncodeError.

    Every conversion that can fail is caught here, so no other exception leaves
    the encoder. A subclass is sent as its value (``str.encode``, ``int.__repr__``,
    ``float.__repr__``), never as what an overridden ``__str__`` returns. No
    message quotes the value: it may be a password.
    """
    # Exact type checks first: they are the hot path.
    cls = type(arg)
    if cls is bytes:
        return arg  # type: ignore[return-value]
    try:
        if cls is str:
            return arg.encode()  # type: ignore[attr-defined,no-any-return]
        if cls is int:
            return b"%d" % arg  # type: ignore[str-format]
        if isinstance(arg, bool):
            raise CommandEncodeError(
                f"argument {index} is a bool ({arg!r}); send 0/1 or a string explicitly"
            )
        if isinstance(arg, (bytes, bytearray, memoryview)):
            return bytes(arg)
        if isinstance(arg, str):
            return str.encode(arg)
        if isinstance(arg, int):
            return int.__repr__(arg).encode()
        if isinstance(arg, float):
            if math.isnan(arg):
                raise CommandEncodeError(f"argument {index} is NaN, which Redis cannot store")
            return float.__repr__(arg).encode()
    except UnicodeEncodeError as exc:
        # A lone surrogate, as json.loads or os.fsdecode readily produce.
        raise CommandEncodeError(
            f"argument {index} is a str that cannot be encoded as UTF-8 "
            f"({exc.reason} at character {exc.start})"
        ) from None
    except ValueError as exc:
        if isinstance(arg, int):
            # Beyond sys.get_int_max_str_digits(): Redis takes 64-bit integers anyway.
            raise CommandEncodeError(
                f"argument {index} is an int too large to send as text"
            ) from None
        # A released memoryview, or a bytes-like whose conversion fails.
        raise CommandEncodeError(f"argument {index} cannot be read as bytes: {exc}") from None
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
        CommandEncodeError: An argument cannot be sent as it is (another type, a
            str that is not valid Unicode, an int of thousands of digits, NaN; the
            message names its position), the command is empty, or ``args`` is not
            a sequence of arguments.
    """
    cls = type(args)
    if (
        cls is not list
        and cls is not tuple
        and (  # the ABC check costs more
            isinstance(args, (str, bytes, bytearray, memoryview)) or not isinstance(args, Sequence)
        )
    ):
        raise CommandEncodeError(
            f"a command is a sequence of arguments, not a {type(args).__name__}"
        )
    if not args:
        raise CommandEncodeError("a command needs at least its name")
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for index, arg in enumerate(args):
        data = arg_bytes(index, arg)
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(out)


def encode_commands(commands: Sequence[Sequence[object]]) -> bytes:
    """Encode several commands into one buffer, for a pipeline.

    Raises:
        CommandEncodeError: One of the commands cannot be encoded (the message
            names which); nothing is returned, so nothing of the pipeline is sent.
    """
    out = []
    for number, command in enumerate(commands):
        try:
            out.append(encode_command(command))
        except CommandEncodeError as exc:
            raise CommandEncodeError(f"command {number}, {exc}") from None
    return b"".join(out)
