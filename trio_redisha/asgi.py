"""ASGI session middleware: web sessions on every Redis server, merged per field.

:class:`SessionMiddleware` wraps any ASGI application (Starlette, FastAPI,
Quart, a bare ASGI callable) and gives each HTTP request its session as a dict
in ``scope["session"]``, Starlette's convention, so ``request.session`` works
unchanged. The session lives in a :class:`~trio_redisha.SessionStore`, so it
survives any server being down or frozen, and it is saved *per field*: only
the fields a request changed are written, and the fields it removed are
deleted, so two concurrent requests of one session that change different
fields both keep their change (a whole-blob store keeps one of them).

It imports no web framework: it speaks ASGI 3 only. Its choices:

* **Ids are unguessable and never chosen by the client.** An id is 256 random
  bits (:meth:`SessionStore.new_id`); a cookie that does not look like one is
  ignored without touching Redis, and a well-formed id that the store does not
  know starts a fresh session under a *new* id (no session fixation). At most
  :data:`MAX_COOKIE_IDS` distinct ids of one request are looked up.
* **Ids never appear in logs or errors** (they are bearer secrets): only their
  last four characters do.
* **Nothing is written, and no cookie set, for a session left empty.** A
  session emptied by the request (``session.clear()``: logout) is deleted on
  every server and its cookie expired.
* **Rotation on demand**: :func:`rotate_session` after a login moves the
  session to a new id and deletes the old one.
* **Cookie flags are safe by default**: ``HttpOnly``, ``SameSite=Lax`` and
  ``Secure``. ``Secure`` cookies travel over HTTPS only (browsers also accept
  them from ``http://localhost``); pass ``secure=False`` to develop over plain
  HTTP with other clients.
* **When no quorum can be met, the answer is 503**, never a request served
  with an empty session in place of one that could not be read, nor a success
  for a change that was not saved. A session load that fails answers 503
  (``Retry-After``) without calling the application; a save that fails
  replaces the application's response with the 503 (the body was not sent
  yet). Only refreshing the expiry of an unchanged session may fail quietly
  (logged): nothing is lost.
* A response with a 5xx status saves nothing: a failed request leaves the
  session as it was.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from .exceptions import (
    CodecError,
    ConfigurationError,
    ForeignValueError,
    QuorumError,
    ServerTimeout,
    ServerUnavailable,
)
from .session import Session, SessionStore

__all__ = [
    "DEFAULT_COOKIE_NAME",
    "MAX_COOKIE_IDS",
    "ROTATE_KEY",
    "UNAVAILABLE",
    "SessionCookie",
    "SessionMiddleware",
    "commit_session",
    "load_session",
    "rotate_session",
]

logger = logging.getLogger("trio_redisha.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Every framework types its ASGI callables its own way (TypedDicts, Protocols);
# an application and the middleware itself are typed loosely to fit them all.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

#: The session cookie's default name.
DEFAULT_COOKIE_NAME: Final = "session"
#: The scope key :func:`rotate_session` sets.
ROTATE_KEY: Final = "trio_redisha.rotate_session"
_STATE_KEY: Final = "trio_redisha.session_state"

# RFC 6265 section 4.1.1: a cookie name is an RFC 2616 token.
_TOKEN_RE: Final = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_SAME_SITE: Final = {"lax": "Lax", "strict": "Strict", "none": "None"}
_EXPIRED: Final = "Expires=Thu, 01 Jan 1970 00:00:00 GMT"

#: The most distinct session ids one request's cookies may make the store look
#: up: the first ones, in the order sent (a browser sends more than one only
#: when cookies of other paths or domains share the name).
MAX_COOKIE_IDS: Final = 4

#: The errors that mean "the store cannot be reached now": answered with 503.
#: Others (a value that cannot be encoded: the application's bug) propagate.
UNAVAILABLE: Final = (QuorumError, ServerUnavailable, ServerTimeout)


def rotate_session(connection: Any) -> None:
    """Give the current request's session a new id when its response is sent.

    Call it after a login (or any change of privilege), against session
    fixation: the session's data moves to a new, random id, the old id is
    deleted on every server, and the response sets the new cookie.

    Args:
        connection: The ASGI scope, or anything with a ``scope`` attribute
            (Starlette's and FastAPI's ``Request``, Quart's ``request``).

    Raises:
        ConfigurationError: The request did not pass through a
            :class:`SessionMiddleware`.
    """
    scope = getattr(connection, "scope", connection)
    if not isinstance(scope, MutableMapping) or _STATE_KEY not in scope:
        raise ConfigurationError("rotate_session() needs a request served by SessionMiddleware")
    scope[ROTATE_KEY] = True


async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """The default answer when the session store cannot be reached: 503."""
    body = b"session store unavailable\n"
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _State:
    """What the middleware knows of one request's session."""

    __slots__ = ("loaded", "sid")

    def __init__(self, sid: str | None, loaded: Session) -> None:
        self.sid = sid  # None: a new session (no cookie, or an unknown id)
        self.loaded = loaded


class SessionCookie:
    """The session cookie: its name and flags, checked once; parsing and formatting.

    Shared by :class:`SessionMiddleware` and the Quart session interface. The
    arguments are those of :class:`SessionMiddleware` (``name`` is its
    ``cookie_name``).

    Raises:
        ConfigurationError: An argument is invalid.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        name: str = DEFAULT_COOKIE_NAME,
        max_age: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        same_site: str = "lax",
        http_only: bool = True,
    ) -> None:
        if not isinstance(name, str) or not _TOKEN_RE.match(name):
            raise ConfigurationError(f"cookie_name must be a cookie token, got {name!r}")
        if max_age is None:
            max_age = math.ceil(store.ttl)
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ConfigurationError(f"max_age must be an int >= 0 or None, got {max_age!r}")
        if not isinstance(path, str):
            raise ConfigurationError(f"path must be a str, got {path!r}")
        for what, value in (("path", path), ("domain", domain)):
            # A header value is Latin-1 at most, and browsers expect ASCII here
            # (an internationalised domain goes in its punycode form).
            if value is not None and (
                not isinstance(value, str)
                or not value.isascii()
                or not value.isprintable()
                or any(c in value for c in ";, ")
            ):
                raise ConfigurationError(
                    f"{what} must be printable ASCII with no ';', ',' or space, got {value!r}"
                )
        if not path.startswith("/"):
            raise ConfigurationError(f"path must start with '/', got {path!r}")
        flag = _SAME_SITE.get(same_site.lower()) if isinstance(same_site, str) else None
        if flag is None:
            raise ConfigurationError(
                f"same_site must be 'lax', 'strict' or 'none', got {same_site!r}"
            )
        if flag == "None" and not secure:
            raise ConfigurationError("same_site='none' needs secure=True (browsers require it)")
        #: The cookie's name.
        self.name = name
        #: Its ``Max-Age`` (0: none, a browser-session cookie).
        self.max_age = max_age
        attributes = [f"Path={path}"]
        if domain is not None:
            attributes.append(f"Domain={domain}")
        if http_only:
            attributes.append("HttpOnly")
        attributes.append(f"SameSite={flag}")
        if secure:
            attributes.append("Secure")
        self._attributes = "; ".join(attributes)
        self._name_bytes = name.encode("ascii")

    def __repr__(self) -> str:
        return f"<SessionCookie {self.name!r} {self._attributes}>"

    def ids(self, headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
        """The values of the session cookie in request headers, in order (unchecked)."""
        found: list[str] = []
        for name, value in headers:
            if name.lower() != b"cookie":
                continue
            for pair in value.split(b";"):
                key, sep, val = pair.partition(b"=")
                if sep and key.strip() == self._name_bytes:
                    found.append(val.strip().strip(b'"').decode("latin-1"))
        return found

    def set_cookie(self, sid: str) -> str:
        """The ``Set-Cookie`` header value carrying session id ``sid``."""
        age = f"; Max-Age={self.max_age}" if self.max_age else ""
        return f"{self.name}={sid}{age}; {self._attributes}"

    def expire_cookie(self) -> str:
        """The ``Set-Cookie`` header value removing the session cookie."""
        return f'{self.name}=""; Max-Age=0; {_EXPIRED}; {self._attributes}'


async def load_session(store: SessionStore, ids: Iterable[str]) -> tuple[str | None, Session]:
    """The session of the first of ``ids`` that the store knows, with its id.

    Ids that do not look like session ids are skipped without touching Redis,
    a repeated id is tried once, and at most :data:`MAX_COOKIE_IDS` distinct
    well-formed ids are looked up (the others are ignored): a request cannot
    make the store read more than that many sessions, however many cookies it
    sends. None known (or none given): ``(None, Session())``, a new session
    that gets a new id once it holds something (never one the client chose).
    A session that is not this store's to read is replaced by a new one
    (logged, without its id).

    Raises:
        QuorumError: The store could not be read (see :data:`UNAVAILABLE`).
    """
    tried: set[str] = set()
    for sid in ids:
        if not store.is_valid_id(sid) or sid in tried:
            continue  # never sent to Redis (again)
        if len(tried) >= MAX_COOKIE_IDS:
            break
        tried.add(sid)
        try:
            session = await store.load(sid)
        except (ForeignValueError, CodecError) as exc:
            logger.warning("unreadable session replaced by a new one: %s", exc)
            continue
        if session:
            return sid, session
    return None, Session()


async def commit_session(
    store: SessionStore,
    cookie: SessionCookie,
    sid: str | None,
    session: Session,
    *,
    rotate: bool = False,
) -> str | None:
    """Save what a request did to ``session`` (loaded under ``sid``); the Set-Cookie to send.

    * A new session (``sid`` None) left empty: nothing stored, no cookie.
    * A new session with data: stored whole under a new id; its cookie.
    * A loaded session left empty (``clear()``): deleted on every server;
      the cookie expired.
    * ``rotate``: stored whole under a new id (the session as it is now, with
      this request's changes), the old id deleted; the new cookie (also when
      the delete misses its quorum: logged, the new id still sent).
    * Otherwise the changed fields are written and the removed ones deleted;
      unchanged, only the expiry is refreshed (a failure to refresh it is
      logged, not raised: nothing is lost). The cookie, for its ``Max-Age``.
      Either only if the session still exists: deleted (a logout, a rotation)
      or expired since the request loaded it, nothing is written and no
      cookie is sent (``None``).

    Raises:
        QuorumError: A write did not reach its quorum (see :data:`UNAVAILABLE`).
        CodecError: A value cannot be encoded; nothing was sent.
    """
    if sid is None:
        if not session:
            return None
        new = store.new_id()
        await store.save(new, dict(session))
        return cookie.set_cookie(new)
    if not session:
        await store.delete(sid)  # logout: gone on every server, for good
        return cookie.expire_cookie()
    if rotate:
        new = store.new_id()
        # The whole session under the new id: as it is now (another request
        # may have written since this one loaded it), with this one's changes.
        await store.save(new, await store._rebased(sid, session))
        try:
            await store.delete(sid)
        except UNAVAILABLE as exc:
            # The data is safe under the new id, and the old one's delete may
            # have applied somewhere: answering 503 would leave the client with
            # an id whose session may read empty, its data under an id it never
            # got. So the new id goes out; the old one dies as its clear spreads
            # (reads, repair) or at its expiry, and holds nothing written since.
            logger.warning("old session id not deleted on rotation: %s", exc)
        return cookie.set_cookie(new)
    # Only the changed and removed fields; unchanged, only the expiry (sliding).
    # Either only into a session that still exists (see SessionStore.save).
    _, _, changed, removed = store._diff(sid, session)
    try:
        live = await store.save(sid, session)
    except UNAVAILABLE as exc:
        if changed or removed:
            raise
        logger.warning("session expiry not refreshed: %s", exc)
        live = True
    if not live:
        # Deleted (a logout, a rotation) or expired while this request ran: its
        # changes are dropped, and no cookie is sent, so the client keeps the
        # one the logout or rotation gave it.
        logger.info("session gone while the request ran: its changes are not saved")
        return None
    return cookie.set_cookie(sid)


class SessionMiddleware:
    """ASGI middleware keeping each request's session in a :class:`SessionStore`.

    Example (Starlette; FastAPI is the same with ``app.add_middleware``)::

        store = SessionStore(pool)
        app = Starlette(routes=..., middleware=[Middleware(SessionMiddleware, store=store)])

        async def login(request):
            rotate_session(request)           # a new id once logged in
            request.session["user"] = "ada"   # only this field is written

    Args:
        app: The ASGI application to wrap.
        store: Where the sessions live.
        cookie_name: The cookie holding the session id.
        max_age: The cookie's ``Max-Age`` in seconds, refreshed by every
            response of a live session (``None``: the store's ``ttl``;
            ``0``: a browser-session cookie, without ``Max-Age``).
        path: The cookie's ``Path``.
        domain: The cookie's ``Domain`` (``None``: the host only).
        secure: Mark the cookie ``Secure`` (HTTPS only). Turn it off to develop
            over plain HTTP with clients other than a browser on ``localhost``.
        same_site: ``"lax"`` (default), ``"strict"`` or ``"none"`` (which needs
            ``secure``).
        http_only: Mark the cookie ``HttpOnly`` (no JavaScript access).
        on_unavailable: The ASGI application answering a request whose
            session cannot be loaded or saved (default: a plain 503 with
            ``Retry-After: 1``).

    Raises:
        ConfigurationError: An argument is invalid.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: SessionStore,
        *,
        cookie_name: str = DEFAULT_COOKIE_NAME,
        max_age: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        same_site: str = "lax",
        http_only: bool = True,
        on_unavailable: ASGIApp | None = None,
    ) -> None:
        if not isinstance(store, SessionStore):
            raise ConfigurationError(f"store must be a SessionStore, got {store!r}")
        self.app = app
        self.store = store
        #: The cookie's name, flags and formatting.
        self.cookie = SessionCookie(
            store,
            name=cookie_name,
            max_age=max_age,
            path=path,
            domain=domain,
            secure=secure,
            same_site=same_site,
            http_only=http_only,
        )
        self._on_unavailable: ASGIApp = on_unavailable or _unavailable

    def __repr__(self) -> str:
        return f"<SessionMiddleware {self.cookie!r} on {self.store!r}>"

    # -- ASGI

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one ASGI connection: load the session, run the app, save the session."""
        await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            state = await self._load(scope.get("headers", ()))
        except UNAVAILABLE as exc:
            logger.warning("session store unavailable, answering 503: %s", exc)
            if scope["type"] == "http":
                await self._on_unavailable(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1013})  # "Try Again Later"
            return
        scope[_STATE_KEY] = state
        scope["session"] = state.loaded
        if scope["type"] == "websocket":
            # A websocket cannot set a cookie once accepted: its session is read only.
            await self.app(scope, receive, send)
            return

        replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the 503 was sent in place of the app's response
            if message["type"] == "http.response.start":
                try:
                    cookie = await self._save(scope, state, message.get("status", 200))
                except UNAVAILABLE as exc:
                    logger.warning("session not saved, answering 503: %s", exc)
                    replaced = True
                    await self._on_unavailable(scope, receive, send)
                    return
                if cookie is not None:
                    headers = list(message.get("headers", ()))
                    headers.append((b"set-cookie", cookie))
                    headers.append((b"vary", b"Cookie"))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _load(self, headers: Iterable[tuple[bytes, bytes]]) -> _State:
        sid, session = await load_session(self.store, self.cookie.ids(headers))
        return _State(sid, session)

    async def _save(self, scope: Scope, state: _State, status: int) -> bytes | None:
        """Write what the request changed; the Set-Cookie value to send, if any."""
        if status >= 500:
            return None  # a failed request leaves the session as it was
        data = scope.get("session")
        if not isinstance(data, MutableMapping):
            data = {}
        session = state.loaded
        if data is not session:  # the app replaced the dict: compare with what was loaded
            session.clear()
            session.update(data)
        rotate = bool(scope.get(ROTATE_KEY))
        cookie = await commit_session(self.store, self.cookie, state.sid, session, rotate=rotate)
        return None if cookie is None else cookie.encode("latin-1")
