"""A highly available web session store: one :class:`~trio_redisha.HashMap` per session.

What the seed gem was built for: "a highly available session store on top of
redis; it writes and reads the data to multiple instances and merges the
responses after every read". Each session is a map stored on every server of
the pool, so:

* a session survives any server being down, restarted empty or cut off (reads
  merge what the others hold and repair the one behind);
* two requests of one session that change *different* keys concurrently both
  keep their change: :meth:`SessionStore.save` writes only the keys that
  changed since :meth:`SessionStore.load` (last writer wins per key, not per
  session);
* :meth:`SessionStore.delete` (logout) clears the map with one stamp: no server
  that missed it, and no request racing it with an earlier timestamp, can bring
  any of the session's data back.

Example::

    store = SessionStore(pool, ttl=3600)
    session = await store.load(request_cookie or "")  # {} if unknown, expired or invalid
    sid = request_cookie if session else store.new_id()  # never adopt an unknown id
    session["visits"] = session.get("visits", 0) + 1
    await store.save(sid, session)           # writes "visits" only; refreshes the TTL
    ...
    await store.delete(sid)                  # logout

Values are encoded with a codec, JSON by default: session data must be
JSON-serialisable (never pickle: whoever can write to one Redis server must not
be able to run code in every web worker).

A session id is a bearer secret: no error this module raises, nor any log line
made of one, holds an id in full. An error of the store naming the session's
Redis key (:class:`~trio_redisha.QuorumError`,
:class:`~trio_redisha.ForeignValueError`...) is raised again as an error of
the same class and attributes showing only the id's last four characters
(``'session:…wXyZ'``), without the original chained to it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .crdt import DEFAULT_TOMBSTONE_GRACE, BytesCodec, Codec, HashMap, JSONCodec, context_for
from .crdt._base import check_codec, check_pool, check_ttl
from .crdt._state import Entry
from .crdt.codecs import encode_value
from .exceptions import CodecError, CodecTypeError, ConfigurationError, QuorumError, RedisHAError
from .replies import Replies

if TYPE_CHECKING:
    from .pool import Pool

__all__ = [
    "DEFAULT_TTL",
    "ID_BYTES",
    "MAX_ID_LENGTH",
    "MIN_ID_LENGTH",
    "Session",
    "SessionStore",
]

#: Default session lifetime: two weeks, Django's ``SESSION_COOKIE_AGE``
#: (1 209 600 s). Every save and every touch gives the session this long again.
DEFAULT_TTL: Final = 14 * 24 * 3600.0
#: Random bytes in an id made by :meth:`SessionStore.new_id` (256 bits; the
#: id is their URL-safe base64, 43 characters).
ID_BYTES: Final = 32
#: The shortest id accepted: 22 URL-safe base64 characters carry 132 bits.
MIN_ID_LENGTH: Final = 22
#: The longest id accepted; anything longer is treated as unknown.
MAX_ID_LENGTH: Final = 128

_ID_RE: Final = re.compile(rf"\A[A-Za-z0-9_-]{{{MIN_ID_LENGTH},{MAX_ID_LENGTH}}}\Z")
_RAW: Final = BytesCodec()
#: Characters of an id that errors may show (its end), after an ellipsis.
_SHOWN: Final = 4

_T = TypeVar("_T")
_E = TypeVar("_E", bound=BaseException)


def _redact_id(sid: str) -> str:
    """How errors and logs show session id ``sid``: ``"…"`` and its last four characters.

    Enough to tell two sessions apart in a log, never enough to use one (an
    id has at least 22 characters).
    """
    return "\u2026" + sid[-_SHOWN:]


def _mentions(value: object, secret: str, seen: set[int]) -> bool:
    """Whether ``value`` (a text, an error, its attributes and chain) holds ``secret``."""
    if isinstance(value, str):
        return secret in value
    if isinstance(value, (bytes, bytearray)):
        return secret.encode("utf-8") in value
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, Replies):  # a server's reply is data; its errors are text
        return any(_mentions(r, secret, seen) for r in value if isinstance(r, BaseException))
    if isinstance(value, (list, tuple)):
        return any(_mentions(v, secret, seen) for v in value)
    if isinstance(value, BaseException):
        linked = (value.__cause__, value.__context__, *value.args, *vars(value).values())
        return any(_mentions(v, secret, seen) for v in linked)
    return False


def _scrub(value: Any, secret: str, shown: str) -> Any:
    """``value`` with every ``secret`` in it (in text, errors and lists) replaced by ``shown``."""
    if isinstance(value, str):
        return value.replace(secret, shown)
    if isinstance(value, (bytes, bytearray)):
        return type(value)(value.replace(secret.encode("utf-8"), shown.encode("utf-8")))
    if isinstance(value, BaseException):
        return _redacted_error(value, secret, shown)
    if isinstance(value, Replies):
        entries = (_scrub(r, secret, shown) if isinstance(r, BaseException) else r for r in value)
        return Replies(entries, value.servers, script=value.script)
    if type(value) in (list, tuple):
        return type(value)(_scrub(v, secret, shown) for v in value)
    return value


def _redacted_error(exc: _E, secret: str, shown: str) -> _E:
    """``exc`` itself if it never mentions ``secret``; else a copy that does not.

    The copy is of the same class, with the same attributes (``replies``,
    ``may_have_applied``, ``key``...) where ``secret`` is replaced by ``shown``,
    and no cause or context (they are what named it).
    """
    if not _mentions(exc, secret, set()):
        return exc
    cls = type(exc)
    copy = cls.__new__(cls)
    copy.args = tuple(_scrub(a, secret, shown) for a in exc.args)
    for name, value in vars(exc).items():
        setattr(copy, name, _scrub(value, secret, shown))
    return copy


class _IdFilter(logging.Filter):
    """Shows the session ids in the library's own log lines as :func:`_redact_id` does.

    The CRDT and pool layers log keys at debug level (a read repair that
    failed...), and a session's key holds its id. Each :class:`SessionStore`
    registers its prefix; a record naming ``<prefix><id>`` is rewritten, its
    traceback text too. Records of other loggers are not touched.
    """

    def __init__(self) -> None:
        super().__init__()
        self._prefixes: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, prefix: str) -> None:
        if prefix in self._prefixes:
            return
        self._prefixes.add(prefix)
        # Log lines show keys with %r too: a prefix with a backslash, a control
        # or a non-ASCII character is escaped there, as a str or as bytes.
        shown = {
            form
            for p in self._prefixes
            for form in (p, repr(p)[1:-1], repr(p.encode("utf-8", "surrogateescape"))[2:-1])
        }
        alternatives = "|".join(re.escape(p) for p in sorted(shown, key=len, reverse=True))
        self._pattern = re.compile(
            rf"({alternatives})([A-Za-z0-9_-]{{{MIN_ID_LENGTH},{MAX_ID_LENGTH}}})"
        )

    def _redact(self, text: str) -> str:
        assert self._pattern is not None
        return self._pattern.sub(lambda m: m.group(1) + _redact_id(m.group(2)), text)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = record.getMessage()
        shown = self._redact(message)
        if shown != message:
            record.msg, record.args = shown, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
        return True


#: One filter for every store, on the loggers that name keys.
_ID_FILTER: Final = _IdFilter()
for _name in ("trio_redisha.crdt", "trio_redisha.pool"):
    logging.getLogger(_name).addFilter(_ID_FILTER)


class Session(dict[str, Any]):
    """A session's data, as :meth:`SessionStore.load` returns it: a plain ``dict``
    that also remembers what it held when loaded.

    :meth:`SessionStore.save` compares the dict with that snapshot (by encoded
    value, so changes made in place to a nested list or dict count) and writes
    only the keys that changed, and deletes the keys removed. The snapshot
    belongs to where the session was loaded or last saved (that pool, that
    Redis key): saved anywhere else (another id, prefix or pool), or copied
    with ``dict(session)``, it is saved whole, like any mapping.
    """

    __slots__ = ("_loaded", "_origin", "_sid")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The id it was loaded under (``None``: not loaded from the store).
        self._sid: str | None = None
        #: The pool and Redis key the snapshot belongs to.
        self._origin: tuple[Pool, str] | None = None
        #: Key to encoded value, as loaded or last saved.
        self._loaded: dict[str, bytes] = {}

    def _adopt(self, other: Session) -> None:
        """Take over ``other``'s snapshot: saving this session diffs as saving it would.

        For wrappers that hold the same data in a session type of their own
        (the Quart interface).
        """
        self._sid, self._origin, self._loaded = other._sid, other._origin, other._loaded

    @property
    def sid(self) -> str | None:
        """The session id this data was loaded (or last saved) under, if any."""
        return self._sid


def _check_key(name: object) -> str:
    if not isinstance(name, str):
        raise CodecTypeError(f"session keys are str, not {type(name).__name__}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate, as json.loads gives for "\udcff": never sent.
        raise CodecError(f"session key {name!r} is not valid UTF-8 text: {exc.reason}") from None
    return name


class SessionStore:
    """Web sessions on every server of a pool, merged per key, deleted safely.

    Each session ``sid`` is a :class:`~trio_redisha.HashMap` under the key
    ``prefix + sid``, with an expiry of ``ttl`` seconds refreshed by every
    :meth:`save` and :meth:`touch` (sliding expiry).

    Args:
        pool: The pool whose servers hold the sessions.
        ttl: Seconds a session lives after its last save or touch. Default
            :data:`DEFAULT_TTL`, two weeks (Django's default).
        prefix: Prepended to the session id to make the Redis key.
        codec: Encodes session values (default :class:`~trio_redisha.crdt.JSONCodec`).
        write_quorum: Servers that must acknowledge a save, touch or delete
            (``None``: the pool's ``write_quorum``).
        read_quorum: Servers that must answer a load (default 1). With three
            servers, ``read_quorum=2`` and ``write_quorum=2`` make every load
            see every acknowledged save.
        timeout: Deadline of each call in seconds (``None``: the pool's).
        tombstone_grace: Seconds a deleted key's or a deleted session's
            tombstone is kept before it may be purged (see
            ``docs/consistency.md``).
        hedged: A load (and the read of a save) waits for every server only
            a few reply times, then returns with ``read_quorum`` of them (see
            :class:`~trio_redisha.HashMap`). With three servers,
            ``read_quorum=2``, ``write_quorum=2`` and ``hedged=True`` see
            every acknowledged save and never wait out one slow server.

    Raises:
        ConfigurationError: An argument is out of range.
    """

    __slots__ = (
        "_codec",
        "_grace",
        "_hedged",
        "_pool",
        "_prefix",
        "_read_quorum",
        "_timeout",
        "_ttl",
        "_write_quorum",
    )

    def __init__(
        self,
        pool: Pool,
        ttl: float = DEFAULT_TTL,
        prefix: str = "session:",
        *,
        codec: Codec | None = None,
        write_quorum: int | None = None,
        read_quorum: int = 1,
        timeout: float | None = None,
        tombstone_grace: float = DEFAULT_TOMBSTONE_GRACE,
        hedged: bool = False,
    ) -> None:
        check_pool(pool)
        check_ttl(ttl)
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a str, got {prefix!r}")
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError(
                f"prefix {prefix!r} is not valid UTF-8 text: {exc.reason}"
            ) from None
        self._pool = pool
        self._ttl = float(ttl)
        self._prefix = prefix
        _ID_FILTER.add(prefix)
        if codec is not None:
            check_codec(codec)
        self._codec: Codec = JSONCodec() if codec is None else codec
        self._write_quorum = write_quorum
        self._read_quorum = read_quorum
        self._timeout = timeout
        self._grace = tombstone_grace
        self._hedged = hedged
        self._map("x" * MIN_ID_LENGTH)  # checks the quorums, timeout, grace and hedged now

    # -- configuration

    @property
    def pool(self) -> Pool:
        """The pool."""
        return self._pool

    @property
    def ttl(self) -> float:
        """Seconds a session lives after its last save or touch."""
        return self._ttl

    @property
    def prefix(self) -> str:
        """Prepended to session ids to make Redis keys."""
        return self._prefix

    @property
    def codec(self) -> Codec:
        """The codec of session values."""
        return self._codec

    def __repr__(self) -> str:
        return f"<SessionStore prefix={self._prefix!r} ttl={self._ttl:g}s on {self._pool!r}>"

    # -- ids

    @staticmethod
    def new_id() -> str:
        """Return a new, unguessable session id.

        :data:`ID_BYTES` (32) bytes from :mod:`secrets`, as URL-safe base64
        (43 characters of ``A-Z a-z 0-9 - _``): safe in a cookie and a Redis key.
        """
        return secrets.token_urlsafe(ID_BYTES)

    @staticmethod
    def is_valid_id(sid: object) -> bool:
        """Whether ``sid`` looks like a session id.

        A ``str`` of :data:`MIN_ID_LENGTH` to :data:`MAX_ID_LENGTH` URL-safe
        base64 characters. Anything else (too short, too long, other
        characters, not a str) is treated as an unknown session and never sent
        to Redis.
        """
        return isinstance(sid, str) and _ID_RE.match(sid) is not None

    def key(self, sid: str) -> str:
        """The Redis key of session ``sid``.

        Raises:
            ConfigurationError: ``sid`` is not a valid session id.
        """
        if not self.is_valid_id(sid):
            # Never echo the id: it may be (close to) a secret.
            what = f"{len(sid)} characters" if isinstance(sid, str) else type(sid).__name__
            raise ConfigurationError(f"not a valid session id ({what})")
        return self._prefix + sid

    def _map(self, sid: str) -> HashMap:
        # Values are encoded here (the store needs the encoded bytes to tell
        # what changed), so the map itself stores bytes as they are.
        return HashMap(
            self._pool,
            self._prefix + sid,
            ttl=self._ttl,
            codec=_RAW,
            write_quorum=self._write_quorum,
            read_quorum=self._read_quorum,
            timeout=self._timeout,
            tombstone_grace=self._grace,
            hedged=self._hedged,
        )

    async def _guarded(self, sid: str, call: Awaitable[_T]) -> _T:
        """Await ``call`` (a store operation on ``sid``); its errors never show ``sid``.

        An error naming the session (its Redis key holds the id) is raised
        again redacted (see ``_redact_id``), from None and outside the handler,
        so that neither its ``__cause__`` nor its ``__context__`` holds the id.
        """
        try:
            return await call
        except RedisHAError as exc:
            error = _redacted_error(exc, sid, _redact_id(sid))
            if error is exc:
                raise
        raise error from None

    # -- operations

    async def load(self, sid: str) -> Session:
        """Return the data of session ``sid``, merged from every server that answered.

        An unknown, expired or deleted session, and an invalid id (which is not
        sent to Redis), are an empty session: ``{}``. The servers found behind
        are repaired in the background.

        Returns:
            A :class:`Session` (a ``dict``) to change and pass to :meth:`save`.

        Raises:
            QuorumError: Fewer than ``read_quorum`` servers answered (never
                ``{}`` in place of a session that could not be read).
            ForeignValueError: The key holds something this library did not write.
            CodecError: A stored value cannot be decoded by the codec.
        """
        session = Session()
        if not self.is_valid_id(sid):
            return session
        raw: dict[str, bytes] = await self._guarded(sid, self._map(sid).get())
        for name, data in raw.items():
            try:
                session[name] = self._codec.decode(data)
            except Exception as exc:
                raise CodecError(f"session key {name!r}: {exc}") from exc  # id not logged
        session._sid = sid
        session._origin = (self._pool, self._prefix + sid)
        session._loaded = raw
        return session

    def _snapshot(self, sid: str, data: Mapping[str, Any], loaded: dict[str, bytes]) -> Session:
        """A session of ``data`` whose snapshot of this store's ``sid`` is ``loaded``.

        For adapters that rebuild what was read from their own state (the
        starsessions store): saving it writes only what differs from ``loaded``.
        """
        session = Session(data)
        session._sid = sid
        session._origin = (self._pool, self._prefix + sid)
        session._loaded = loaded
        return session

    async def save(self, sid: str, data: Mapping[str, Any]) -> bool:
        """Write the changes of session ``sid`` and give it ``ttl`` seconds of life again.

        Given the :class:`Session` that :meth:`load` returned for ``sid`` (from
        this pool and prefix), only the keys whose value changed since are
        written and the keys removed are deleted, so a concurrent request
        changing other keys of the same session keeps its changes (per key, the
        later write wins). Such a save writes only into a session that still
        exists: if it was deleted (a logout, a rotation), or expired, since it
        was loaded, nothing is written and ``False`` is returned, so a request
        racing a logout cannot bring the session, or a part of it, back.

        Given any other mapping, or a session loaded from another store or
        under another id, every key in it is written and no key is deleted
        (a new session; under an id deleted before, a fresh one, into which a
        request that loaded the old session before its delete still saves: start
        new sessions under :meth:`new_id`, never under an id a client sent).

        The expiry is refreshed on every server the write reaches (or, when
        nothing changed, on every server holding the session).

        Every value is encoded before anything is sent.

        Returns:
            True if the session was saved; False if it no longer exists (only
            for a session :meth:`load` found: at least ``write_quorum`` servers
            holding nothing live of it answered, and none wrote). A session
            loaded empty (an unknown id) is saved as a new one.

        Raises:
            ConfigurationError: ``sid`` is not a valid session id.
            CodecError: ``data`` is not a mapping, a key is not a str (or not
                valid UTF-8 text), or a value cannot be encoded; nothing was sent.
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        self.key(sid)
        encoded, before, changed, removed = self._diff(sid, data)
        if not before:  # not loaded here, or loaded empty: a new session
            if changed:
                await self._guarded(sid, self._map(sid).update(changed))
            else:
                await self.touch(sid)
            live = True
        else:
            # Only into a session that still exists: a request that loaded it
            # before a logout, a rotation or its expiry must not bring it back.
            live = await self._guarded(sid, self._map(sid)._update_if_live(changed, delete=removed))
        if live and isinstance(data, Session):
            data._sid = sid
            data._origin = (self._pool, self._prefix + sid)
            data._loaded = encoded
        return live

    def _diff(
        self, sid: str, data: Mapping[str, Any]
    ) -> tuple[dict[str, bytes], dict[str, bytes] | None, dict[str, bytes], list[str]]:
        """``data`` encoded, its snapshot of ``sid`` (if taken here), what changed, what went.

        Raises:
            CodecError: As :meth:`save`; nothing was sent.
        """
        if not isinstance(data, Mapping):
            raise CodecTypeError(f"session data must be a mapping, not {type(data).__name__}")
        encoded = {_check_key(k): encode_value(self._codec, v) for k, v in data.items()}
        # The snapshot says what *this* key held only if it was taken here.
        here = (self._pool, self._prefix + sid)
        before = data._loaded if isinstance(data, Session) and data._origin == here else None
        if before is None:
            return encoded, None, encoded, []
        changed = {k: v for k, v in encoded.items() if before.get(k) != v}
        return encoded, before, changed, [k for k in before if k not in encoded]

    async def _rebased(self, sid: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Session ``sid`` as the servers hold it now, with the changes ``data`` made.

        For a rotation, which saves the whole session under a new id: a
        request that changed other keys since ``data`` was loaded keeps them.
        ``data`` not loaded from here is taken whole.
        """
        _, before, changed, removed = self._diff(sid, data)
        if before is None:
            return dict(data)
        out: dict[str, Any] = dict(await self.load(sid))
        out.update((k, data[k]) for k in changed)
        for k in removed:
            out.pop(k, None)
        return out

    async def delete(self, sid: str) -> None:
        """Delete session ``sid`` on every server, for good.

        Reads the session first, so the pool's clock is past every timestamp
        the servers hold, then clears the map (:meth:`HashMap.clear`): every
        key written before is dead on every merge, so a server that missed the
        delete, or a request that wrote a key concurrently with an earlier
        timestamp, can never bring the session or any of its keys back. A
        later :meth:`save` under the same id starts a fresh session (holding
        only what that save writes). An invalid id is ignored.

        Raises:
            QuorumError: Fewer than ``write_quorum`` servers acknowledged.
            ForeignValueError: The key holds something this library did not write.
        """
        if not self.is_valid_id(sid):
            return
        m = self._map(sid)
        # Observe every timestamp held, so the clear is later than all of them,
        # and refuse a clear that would not be (a writer's clock further ahead
        # than the skew bound). If no server answers, the clear says so
        # (QuorumError).
        newest = 0
        with contextlib.suppress(QuorumError):
            snap = await self._guarded(sid, m._read_snapshot())
            stored = snap.stored
            entries: Iterable[Entry | None] = (
                stored.registers.values() if stored is not None else snap.merged.entries.values()
            )
            # Only what is live needs beating: a tombstone or an earlier clear
            # stamped ahead kills nothing the clear must kill.
            newest = max((e.ts for e in entries if e is not None and not e.deleted), default=0)
        await self._guarded(sid, m._clear(newest))

    async def touch(self, sid: str) -> None:
        """Give session ``sid`` ``ttl`` seconds of life again (sliding expiry).

        Runs ``PEXPIRE`` on every server: each one holding the session gets the
        new expiry; the others are left as they are (a later read repairs
        them). During a migration (``previous=``), the session's old owners
        that are not among them get it too, as after a save: sent in the
        background, not counted towards the quorum. An invalid id is ignored.

        Raises:
            QuorumError: Fewer than ``write_quorum`` servers answered.
        """
        if not self.is_valid_id(sid):
            return
        pool = self._pool
        quorum = self._write_quorum
        if quorum is None:
            quorum = context_for(pool).write_quorum
        key = self._prefix + sid
        if pool.previous is not None:
            # A session the walker has not moved yet is only on its old owners:
            # refreshing the new ones alone would let it expire there.
            m = self._map(sid)
            m._refresh_old_soon(m._old_only(pool._owner_indices(key)))
        # With placement, the quorum also routes: fallbacks stand in for owners down.
        await self._guarded(
            sid,
            pool.execute(
                "PEXPIRE",
                key,
                max(1, math.ceil(self._ttl * 1000)),
                timeout=self._timeout,
                quorum=quorum,
            ),
        )
