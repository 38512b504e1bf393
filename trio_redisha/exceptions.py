"""Every exception this library raises, in one hierarchy under :class:`RedisHAError`.

The families follow where a failure comes from:

* the server is unreachable or too slow (:class:`ServerUnavailable`,
  :class:`ServerTimeout`), or refused our credentials (:class:`AuthenticationError`);
* the server answered with an error reply (:class:`ReplyError`);
* the server broke the protocol (:class:`ProtocolError`);
* too few servers succeeded (:class:`QuorumError`);
* the caller misused the library (:class:`ConfigurationError`,
  :class:`CommandEncodeError`, :class:`UnsupportedCommand`, :class:`CrossSlotError`,
  :class:`PoolClosed`);
* a stored value is not what this library wrote (:class:`ForeignValueError`,
  :class:`CodecError`), or a value to store cannot be encoded (:class:`CodecError`,
  :class:`CodecTypeError`);
* a local ``redis-server`` of :mod:`trio_redisha.testing` could not be found or
  started (:class:`RedisServerError`).

This module imports nothing from trio so that the sans-I/O codec can use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .replies import Replies

__all__ = [
    "AuthenticationError",
    "CodecError",
    "CodecTypeError",
    "CommandEncodeError",
    "ConfigurationError",
    "CrossSlotError",
    "ForeignValueError",
    "PoolClosed",
    "ProtocolError",
    "QuorumError",
    "RedisHAError",
    "RedisServerError",
    "RedisServerNotFoundError",
    "RedisStartError",
    "ReplyError",
    "ReplyTooLarge",
    "ServerTimeout",
    "ServerUnavailable",
    "UnsupportedCommand",
]


class RedisHAError(Exception):
    """Base class of every exception raised by trio-redisha."""


class ServerUnavailable(RedisHAError):
    """The server could not be used: refused, down, disconnected or its circuit is open.

    In a :class:`~trio_redisha.Replies` list this stands in the place of a server that
    gave no reply. The command was either not sent or its connection broke before the
    reply arrived; in the second case the server may have applied it.

    Attributes:
        sent: Whether the command had left for the server when its connection broke
            (so the server may have applied it). False when it was never sent.
    """

    sent: bool = False


class AuthenticationError(ServerUnavailable):
    """The server refused the credentials (the message never includes them)."""


class ServerTimeout(RedisHAError):
    """The server did not reply before the deadline.

    Usually the command was sent and may have been applied; its late reply is read
    and discarded, never handed to another caller. When the deadline passed before
    it could be sent (a full backlog, no time left for a script's follow-up round),
    ``sent`` is False and the server cannot have applied it.

    Attributes:
        sent: Whether the command had left for the server (so it may have applied it).
    """

    sent: bool = True


class ReplyError(RedisHAError):
    """An error reply sent by the server, such as ``WRONGTYPE ...`` or ``ERR ...``.

    The parser returns these as values rather than raising them, so that one
    server's error never aborts a fan-out.

    Attributes:
        code: The first word of the message (``"WRONGTYPE"``, ``"ERR"``, ``"NOSCRIPT"``).
        message: The whole message as the server sent it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        head = message.split(" ", 1)[0]
        self.code = head if head.isupper() else "ERR"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,), self.__dict__)


class ProtocolError(RedisHAError):
    """The server sent bytes that are not valid RESP, or that exceed a safety limit.

    The connection that received them is closed and rebuilt; it is never
    resynchronised.
    """


class ReplyTooLarge(RedisHAError):
    """A server's reply had more elements than the pool's limits allow.

    ``Limits.max_reply_elements`` (about two million by default) bounds what
    one reply may hold, nested aggregates included. The reply was read to its
    end and dropped: the connection stays up and in step, and other callers'
    replies are not affected. The command ran (a write may have applied). It
    stands in :class:`~trio_redisha.Replies` in the place of that server's
    reply. To read such a key, give the pool larger limits:
    ``open_pool(..., limits=Limits(max_reply_elements=...))``. A push over
    the bound reaches ``on_push`` as ``Push([ReplyTooLarge(...)])``, never a
    caller; a top-level attribute over it is dropped alone. The dropped
    reply's bytes still count towards ``max_incomplete_bytes``.
    """


class QuorumError(RedisHAError):
    """Fewer servers succeeded than the quorum asked for.

    Attributes:
        replies: The per-server :class:`~trio_redisha.Replies` of the attempt.
        required: The quorum that was asked for.
        succeeded: How many servers succeeded.
        may_have_applied: For a write, whether some server may have applied it
            anyway (a server acknowledged, or timed out or disconnected after the
            command was sent). ``False`` means no server can have applied it.
    """

    def __init__(
        self,
        message: str,
        *,
        replies: Replies,
        required: int,
        succeeded: int,
        may_have_applied: bool,
    ) -> None:
        super().__init__(message)
        self.replies = replies
        self.required = required
        self.succeeded = succeeded
        self.may_have_applied = may_have_applied

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only arguments defeat BaseException's own reduce (it calls
        # the class with ``self.args``); the state carries added notes along.
        return (
            _rebuild_quorum,
            (str(self), self.replies, self.required, self.succeeded, self.may_have_applied),
            self.__dict__,
        )


def _rebuild_quorum(
    message: str, replies: Replies, required: int, succeeded: int, may_have_applied: bool
) -> QuorumError:
    return QuorumError(
        message,
        replies=replies,
        required=required,
        succeeded=succeeded,
        may_have_applied=may_have_applied,
    )


class ConfigurationError(RedisHAError, ValueError):
    """An invalid argument or server address, such as a malformed URL."""


class CommandEncodeError(RedisHAError, TypeError):
    """A command argument that cannot be sent (only str, bytes, int and float can)."""


class UnsupportedCommand(RedisHAError):
    """A command that would change the state of a shared connection.

    Blocking commands (``BLPOP``...), ``SUBSCRIBE``, ``MULTI``/``EXEC``, ``WATCH``,
    ``SELECT``, ``CLIENT REPLY`` and the like cannot run on a multiplexed
    connection without corrupting it for every other caller. With placement,
    a command whose keys cannot be found (unknown to Redis's command table,
    or with arguments that leave its keys undefined) cannot be routed either.
    """


class CrossSlotError(RedisHAError):
    """A multi-key command whose keys do not all have the same owners.

    With placement (``replicas=N``) a command goes to its keys' owners, so all
    its keys must share them; nothing was sent. Keys that share a hash tag
    (``{user42}:cart``, ``{user42}:profile``) always do. The message names the
    command and the positions of the keys, never their contents.

    Attributes:
        command: The command's name, upper-case.
    """

    def __init__(self, message: str, *, command: str) -> None:
        super().__init__(message)
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_cross_slot, (str(self), self.command), self.__dict__)


def _rebuild_cross_slot(message: str, command: str) -> CrossSlotError:
    return CrossSlotError(message, command=command)


class PoolClosed(ServerUnavailable):
    """The pool or connection was closed while the call was waiting, or before it."""


class ForeignValueError(RedisHAError):
    """A key holds a value that this library did not write (or of another type).

    The value is left untouched.

    Attributes:
        key: The key, as given.
    """

    def __init__(self, message: str, *, key: str | bytes) -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_foreign_value, (str(self), self.key), self.__dict__)


def _rebuild_foreign_value(message: str, key: str | bytes) -> ForeignValueError:
    return ForeignValueError(message, key=key)


class CodecError(RedisHAError, ValueError):
    """A value could not be encoded for storage, or a stored value could not be decoded."""


class CodecTypeError(CodecError, TypeError):
    """A value of a type the data type cannot store, refused before anything is sent.

    Such as a counter amount that is not an ``int``, a map field name that is
    neither ``str`` nor ``bytes``, or a member the set's codec does not take.
    A :class:`CodecError`, and a :class:`TypeError` as Python's own checks raise.
    """


class RedisServerError(RedisHAError):
    """A local ``redis-server`` of :mod:`trio_redisha.testing` could not be used."""


class RedisServerNotFoundError(RedisServerError):
    """No ``redis-server`` executable could be found; the message says how to install it."""


class RedisStartError(RedisServerError):
    """A ``redis-server`` process did not come up; the message holds its log."""


def timeout_before_send(message: str) -> ServerTimeout:
    """A :class:`ServerTimeout` for a command the deadline stopped before it was sent."""
    exc = ServerTimeout(message)
    exc.sent = False
    return exc
