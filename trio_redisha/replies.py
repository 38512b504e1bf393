"""The per-server result of one fanned-out command."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from .exceptions import (
    ConfigurationError,
    QuorumError,
    ReplyError,
    ReplyTooLarge,
    ServerTimeout,
    ServerUnavailable,
)

__all__ = ["Replies"]

#: The error codes with which a script is refused before it runs, or stops
#: before its first write: it wrote nothing. Any other error reply of a
#: script may come after some of its writes, which Redis keeps.
_SCRIPT_DID_NOT_RUN: Final = frozenset(
    ("NOSCRIPT", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "OOM", "REDISHA_FOREIGN")
)
#: The error of FCALL for a function that is not loaded.
_NO_FUNCTION: Final = "ERR Function not found"


class Replies(list[Any]):
    """One entry per server a call went to, in the order of :attr:`servers`.

    Without placement that is every server, in the order they were given to
    the pool; with placement (``replicas=N``), a keyed command's owners in
    preference order, then any fallbacks and old owners it also went to.

    Each entry is the server's decoded reply, or an exception *instance* where the
    server gave none: :class:`~trio_redisha.ServerUnavailable`,
    :class:`~trio_redisha.ServerTimeout` or :class:`~trio_redisha.ReplyError`.
    Nothing is raised because some servers failed; compare it with a plain list::

        assert await pool.ping() == ["PONG", "PONG", "PONG"]

    Attributes:
        servers: The labels of the servers, in the same order (passwords removed).
        script: Whether the command was a script (``EVAL``, ``EVALSHA``,
            ``FCALL``): an error reply may then come after some of its writes
            (:meth:`may_have_applied`).
    """

    __slots__ = ("script", "servers")

    def __init__(
        self, entries: Iterable[Any] = (), servers: tuple[str, ...] = (), *, script: bool = False
    ) -> None:
        super().__init__(entries)
        self.servers = servers
        self.script = script

    @property
    def values(self) -> list[Any]:
        """The successful replies, in server order."""
        return [r for r in self if not isinstance(r, BaseException)]

    @property
    def errors(self) -> list[BaseException]:
        """The failures, in server order."""
        return [r for r in self if isinstance(r, BaseException)]

    @property
    def ok_count(self) -> int:
        """How many servers replied with something other than an error."""
        return sum(1 for r in self if not isinstance(r, BaseException))

    def first(self) -> Any:
        """Return the first successful reply.

        Raises:
            ServerUnavailable: No server replied successfully; chained
                (``__cause__``) from the first failure. When every server
                answered, with error replies, the message says so.
        """
        for r in self:
            if not isinstance(r, BaseException):
                return r
        if not self:
            raise ServerUnavailable("no server was asked")
        if all(isinstance(r, ReplyError) for r in self):
            text = f"every server answered with an error reply: {self!r}"
        else:
            text = f"no server replied successfully: {self!r}"
        raise ServerUnavailable(text) from self[0]

    def may_have_applied(self) -> bool:
        """Whether a write may have reached some server.

        True when a server acknowledged it, or timed out or disconnected after it
        was sent; False when every server refused it, timed out or failed before it
        was sent, or answered with an error. A script's error reply (:attr:`script`)
        counts as applied, as Redis keeps the writes a script made before it
        failed, unless it says the script did not run (``NOSCRIPT``, ``BUSY``,
        ``OOM``, ``READONLY``, ``LOADING``, a function not loaded...).
        """
        for r in self:
            if not isinstance(r, BaseException):
                return True
            if isinstance(r, (ServerTimeout, ServerUnavailable)) and r.sent:
                return True
            if isinstance(r, ReplyTooLarge):  # it ran: its reply was only dropped
                return True
            if (
                self.script
                and isinstance(r, ReplyError)
                and r.code not in _SCRIPT_DID_NOT_RUN
                and r.message != _NO_FUNCTION
            ):
                return True
        return False

    def check_quorum(self, quorum: int | None) -> Replies:
        """Return ``self``, or raise :class:`QuorumError` if fewer than ``quorum`` succeeded.

        Raises:
            QuorumError: Fewer than ``quorum`` entries are successful replies.
            ConfigurationError: ``quorum`` is not ``None`` or an int of at least 1.
        """
        if quorum is None:
            return self
        if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 1:
            raise ConfigurationError(f"quorum must be an int >= 1, got {quorum!r}")
        return self._check_quorum(quorum)

    def _check_quorum(self, quorum: int) -> Replies:
        """:meth:`check_quorum` of a quorum already checked (by the pool)."""
        ok = self.ok_count
        if ok < quorum:
            applied = self.may_have_applied()
            raise QuorumError(
                f"{ok} of {len(self)} servers succeeded, {quorum} required"
                + ("; it may have run on some (a write may have been applied)" if applied else ""),
                replies=self,
                required=quorum,
                succeeded=ok,
                may_have_applied=applied,
            )
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # With __slots__ and no __getstate__, pickle protocols 0 and 1 refused
        # it (a QuorumError carries one: logging's SocketHandler uses 1).
        return (_rebuild, (list(self), self.servers, self.script))

    # repr is the plain list's, so that printing a result reads as in the seed
    # gem's examples: ['PONG', 'PONG', 'PONG'].


def _rebuild(entries: list[Any], servers: tuple[str, ...], script: bool) -> Replies:
    """A :class:`Replies` from what :meth:`Replies.__reduce__` pickled."""
    return Replies(entries, servers, script=script)
