"""Lua scripts: run as Redis functions where a script has a library form, else with EVALSHA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .exceptions import ConfigurationError

__all__ = ["Script"]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, identified by its SHA1 as Redis does.

    :meth:`Pool.execute_script <trio_redisha.Pool.execute_script>` sends
    ``EVALSHA``; a server that answers ``NOSCRIPT`` (it restarted, or never saw the
    script) gets ``EVAL`` with the source once, which also caches it there.

    A script may also come as a function library (Redis 7): a Lua chunk that
    defines ``local function main(KEYS, ARGV)``, which must do exactly what
    ``source`` does. Its helpers are then defined once, when the library loads,
    instead of on every call, as Lua does for a script. The pool loads it with
    ``FUNCTION LOAD`` where it is missing and runs it with ``FCALL``, and uses
    ``EVALSHA`` on servers that have no functions (before Redis 7, or an ACL
    denying ``FCALL`` or ``FUNCTION LOAD``). The chunk's top level runs at load
    time, when Redis offers none of Lua's libraries (``string``, ``table``...):
    only functions may use them. A chunk that a server cannot compile or
    register makes that script run with ``EVALSHA`` from then on, everywhere
    (logged once, at warning level); other scripts still run as functions.

    The pool tells "not loaded here" from the script's own errors by Redis's
    exact texts: ``NOSCRIPT No matching script. Please use EVAL.`` and ``ERR
    Function not found``, then (a server without functions) ``ERR unknown command
    'FCALL'`` and the ``NOPERM`` that denies ``'fcall'`` or ``'function|load'``.
    A script must not answer one of those itself (``redis.error_reply``, or a
    ``{err=...}`` table): the pool would take it for the server's and run the
    script a second time. Any other error it answers is that call's reply.

    Example::

        ADD = Script(
            "return redis.call('INCRBY', KEYS[1], ARGV[1])",
            library=(
                "local function add(k, n) return redis.call('INCRBY', k, n) end\n"
                "local function main(KEYS, ARGV) return add(KEYS[1], ARGV[1]) end"
            ),
        )
        await pool.execute_script(ADD, ["hits"], [1])  # FCALL on Redis 7

    Attributes:
        source: The Lua source.
        library: The library form's chunk, or ``None``.
        sha: The source's lowercase hex SHA1.
        function: The name the library registers ``main`` under (and the
            library's own name): ``redisha_`` and 24 hex digits of the chunk's
            SHA1, so that every version has its own. ``None`` without a library.

    Raises:
        ConfigurationError: ``source`` is not a ``str``, or ``library`` not a
            ``str`` or ``None`` (or either is not valid UTF-8 text).
    """

    source: str
    library: str | None = None
    sha: str = field(init=False)
    function: str | None = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise ConfigurationError(
                f"a Script's source is Lua text (str), not {type(self.source).__name__}"
            )
        if self.library is not None and not isinstance(self.library, str):
            raise ConfigurationError(
                f"a Script's library is Lua text (str) or None, not {type(self.library).__name__}"
            )
        try:
            source = self.source.encode()
            library = None if self.library is None else self.library.encode()
        except UnicodeEncodeError as exc:
            raise ConfigurationError(
                f"a Script's Lua text is not valid UTF-8: {exc.reason}"
            ) from None
        object.__setattr__(self, "sha", hashlib.sha1(source).hexdigest())
        name = None
        if library is not None:
            name = "redisha_" + hashlib.sha1(library).hexdigest()[:24]
        object.__setattr__(self, "function", name)

    @property
    def library_code(self) -> str | None:
        """What ``FUNCTION LOAD`` is sent: the library with its name and registration."""
        if self.library is None:
            return None
        name = self.function
        return f"#!lua name={name}\n{self.library}\nredis.register_function('{name}', main)\n"
