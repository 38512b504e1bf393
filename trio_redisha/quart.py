"""A Quart (Quart-Trio) session interface on trio-redisha: server-side, per field, HA.

Quart keeps sessions in a signed cookie by default: the whole session travels
with every request, and two concurrent requests that change it overwrite each
other's cookie. :class:`RedisHASessionInterface` keeps only a random id in the
cookie and the session in a :class:`~trio_redisha.SessionStore`, so it
survives any Redis server being down, and each response writes only the
fields its request changed (two concurrent requests changing different fields
both keep their change). It runs on Quart-Trio (``QuartTrio``): the store is a
trio library.

The rules are those of :class:`trio_redisha.asgi.SessionMiddleware`: the
cookie is ``HttpOnly; SameSite=Lax; Secure`` by default (Quart's own
``SESSION_COOKIE_*`` settings, whose defaults are not, are not read); an id
the store does not know is never adopted; ``session.clear()`` deletes the
session on every server; :func:`rotate_session` (``session.rotate()``) after
a login moves it to a new id; a 5xx response saves nothing; and when no quorum
can be met the answer is 503 with ``Retry-After``
(:meth:`RedisHASessionInterface.init_app` installs the checks that answer it
before the view runs, and close a websocket with 1013; a save that fails turns
the response into the 503). Session ids never appear in its log lines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

try:
    import quart_trio  # noqa: F401 - what the interface runs on: checked with the rest
    from flask.sessions import SessionMixin
    from quart import has_websocket_context, session, websocket
    from quart.sessions import SessionInterface
    from werkzeug.exceptions import ServiceUnavailable
except ImportError as exc:  # the extra is missing: say which, not flask's name
    raise ImportError(
        f"trio_redisha.quart needs Quart-Trio ({exc.name} is missing): "
        "pip install 'trio-redisha[quart]'"
    ) from exc

from .asgi import DEFAULT_COOKIE_NAME, UNAVAILABLE, SessionCookie, commit_session, load_session
from .exceptions import ConfigurationError
from .session import Session, SessionStore

if TYPE_CHECKING:
    from quart import Quart
    from quart.wrappers import BaseRequestWebsocket, Response
    from werkzeug.wrappers import Response as WerkzeugResponse

__all__ = ["RedisHASession", "RedisHASessionInterface", "rotate_session"]

logger = logging.getLogger("trio_redisha.quart")

_UNAVAILABLE_BODY = b"session store unavailable\n"
_RETRY_AFTER = 1


class RedisHASession(Session, SessionMixin):
    """A Quart session: a :class:`~trio_redisha.session.Session` dict with Quart's attributes.

    ``modified`` is always ``True`` (what changed is found by comparing the
    values with what was loaded, so changes made in place count).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The id it was loaded under (``None``: a new session).
        self.origin: str | None = None
        #: The store could not be read: this session is a placeholder.
        self.unavailable = False
        self._rotate = False

    def rotate(self) -> None:
        """Give the session a new id when the response is sent (call it after a login)."""
        self._rotate = True

    @property
    def new(self) -> bool:  # type: ignore[override]
        """Whether the session is not (yet) in the store."""
        return self.origin is None


def rotate_session() -> None:
    """Give the current request's session a new id when the response is sent.

    ``session.rotate()``, typed: Quart's ``session`` proxy is typed as Flask's
    ``SessionMixin``, which has no ``rotate``, so a type checker refuses the
    call on it. Call it after a login.

    Raises:
        ConfigurationError: The request's session is not a
            :class:`RedisHASession` (the app has no
            :class:`RedisHASessionInterface`).
    """
    current = getattr(session, "_get_current_object", lambda: session)()
    if not isinstance(current, RedisHASession):
        raise ConfigurationError(
            "the session is not a RedisHASession: install RedisHASessionInterface(store)"
            ".init_app(app) first"
        )
    current.rotate()


class RedisHASessionInterface(SessionInterface):
    """Quart's ``SessionInterface`` over a :class:`SessionStore`.

    Example::

        app = QuartTrio(__name__)
        RedisHASessionInterface(store).init_app(app)

        @app.post("/login")
        async def login():
            rotate_session()              # a new id once logged in (session.rotate())
            session["user"] = "ada"       # only this field is written

    Args:
        store: Where the sessions live.
        cookie_name: The cookie holding the session id.
        max_age: The cookie's ``Max-Age`` (``None``: the store's ``ttl``; ``0``:
            a browser-session cookie).
        path: The cookie's ``Path``.
        domain: The cookie's ``Domain`` (``None``: the host only).
        secure: Mark the cookie ``Secure`` (HTTPS only, and ``http://localhost``
            in browsers).
        same_site: ``"lax"``, ``"strict"`` or ``"none"`` (which needs ``secure``).
        http_only: Mark the cookie ``HttpOnly``.

    Raises:
        ConfigurationError: An argument is invalid.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        cookie_name: str = DEFAULT_COOKIE_NAME,
        max_age: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        same_site: str = "lax",
        http_only: bool = True,
    ) -> None:
        if not isinstance(store, SessionStore):
            raise ConfigurationError(f"store must be a SessionStore, got {store!r}")
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

    def __repr__(self) -> str:
        return f"<RedisHASessionInterface {self.cookie!r} on {self.store!r}>"

    def init_app(self, app: Quart) -> None:
        """Make this the app's session interface, refusing what the store cannot serve.

        When the session cannot be loaded, the view does not run:

        * a request is answered ``503 Service Unavailable`` with
          ``Retry-After: 1`` (Quart's 503 page, or the app's own
          ``errorhandler(503)``);
        * a websocket is refused: closed with code 1013 ("Try Again Later"),
          as :class:`~trio_redisha.asgi.SessionMiddleware` closes it, or, when
          the server can send an HTTP response in place of the handshake (the
          ASGI ``websocket.http.response`` extension, which Hypercorn and
          Quart's test client offer), answered with that same 503.
        """
        app.session_interface = self  # type: ignore[assignment]  # Quart types its default

        async def check_request() -> None:
            if getattr(session, "unavailable", False):
                raise ServiceUnavailable(retry_after=_RETRY_AFTER)

        async def check_websocket() -> None:
            if not getattr(session, "unavailable", False):
                return
            extensions = websocket.scope.get("extensions") or {}
            if "websocket.http.response" not in extensions:
                # Quart would close with 1000 ("normal"): say "try again later".
                # It sends nothing more for a websocket already closed.
                await websocket.close(1013)
            raise ServiceUnavailable(retry_after=_RETRY_AFTER)

        app.before_request(check_request)
        app.before_websocket(check_websocket)

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> RedisHASession:
        """Load the request's session (a new one if its cookie opens none).

        When the store cannot be read, the session is an empty placeholder
        marked ``unavailable``, which is never saved (the checks installed by
        :meth:`init_app` refuse the request or websocket before the view runs).
        """
        raw = request.scope.get("headers", ())
        try:
            sid, loaded = await load_session(self.store, self.cookie.ids(raw))
        except UNAVAILABLE as exc:
            logger.warning("session store unavailable: %s", exc)
            session = RedisHASession()
            session.unavailable = True
            return session
        session = RedisHASession(loaded)
        session.origin = sid
        session._adopt(loaded)
        return session

    async def save_session(
        self,
        app: Quart,
        session: SessionMixin,
        response: Response | WerkzeugResponse | None,
    ) -> None:
        """Write what the request changed and set (or expire) the cookie.

        Nothing is saved for a websocket (no cookie can be set once it is
        open; one rejected with an HTTP response, which Quart passes here,
        saves nothing either, as with :class:`~trio_redisha.asgi.SessionMiddleware`),
        a 5xx response, or a placeholder session. A save that cannot reach its
        quorum turns the response into a 503.
        """
        if not isinstance(session, RedisHASession) or session.unavailable or response is None:
            return
        if has_websocket_context():
            return
        if response.status_code >= 500:
            return
        try:
            cookie = await commit_session(
                self.store, self.cookie, session.origin, session, rotate=session._rotate
            )
        except UNAVAILABLE as exc:
            logger.warning("session not saved, answering 503: %s", exc)
            response.status_code = 503
            response.headers.pop("Set-Cookie", None)
            response.headers["Content-Type"] = "text/plain; charset=utf-8"
            response.headers["Retry-After"] = str(_RETRY_AFTER)
            response.set_data(_UNAVAILABLE_BODY)
            return
        if cookie is not None:
            response.headers.add("Set-Cookie", cookie)
            response.vary.add("Cookie")
