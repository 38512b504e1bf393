"""A web app whose sessions survive a Redis server dying: trio-redisha's SessionStore.

A plain ASGI application (no framework) served by Hypercorn on trio. Sessions
live on three independent Redis servers through :class:`trio_redisha.SessionStore`:
every request reads all three and merges, every change is written to all
three, so the app keeps working, and keeps every session's data, while one of
them is down (``kill -9`` it and see).

Routes (every answer is JSON):

* ``GET /``: counts this session's visits: ``{"visits": 3, "cart": [...]}``.
* ``GET /cart``: the cart, without counting a visit.
* ``POST /cart?item=book``: adds an item to the session's cart.
* ``POST /logout``: deletes the session (on every server, for good) and the cookie.

The session id travels in the cookie ``sid`` (``HttpOnly``, ``SameSite=Lax``,
``Path=/``; add ``--secure-cookies`` behind HTTPS). An id the store does not
know is never adopted: the app issues a fresh one (no session fixation).

Run it::

    python examples/session_app.py --port 8000 \\
        redis://127.0.0.1:6379 redis://127.0.0.1:6380 redis://127.0.0.1:6381
    # or: REDISHA_SERVERS="redis://...,redis://...,redis://..." python examples/session_app.py

    curl -c jar -b jar localhost:8000/               # {"visits": 1, "cart": []}
    curl -c jar -b jar -X POST 'localhost:8000/cart?item=book'
    curl -c jar -b jar -X POST localhost:8000/logout
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import hypercorn.config
import hypercorn.trio
import trio

import trio_redisha
from trio_redisha import RedisHAError, SessionStore
from trio_redisha.session import DEFAULT_TTL, Session

__all__ = ["COOKIE_NAME", "SessionApp", "main", "serve"]

logger = logging.getLogger("session_app")

#: The cookie holding the session id.
COOKIE_NAME = "sid"
#: The most items a cart holds, and the longest item name (keep sessions small).
MAX_CART = 100
MAX_ITEM = 100

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Any], Awaitable[None]]


class HTTPError(Exception):
    """An error answer: status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SessionApp:
    """The ASGI application.

    Args:
        store: Where the sessions live.
        secure_cookies: Mark the cookie ``Secure`` (only sent over HTTPS).
    """

    def __init__(self, store: SessionStore, *, secure_cookies: bool = False) -> None:
        self.store = store
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection: HTTP requests and the lifespan protocol."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The routes take no body; read it all anyway (the protocol wants it consumed).
        while (await receive()).get("more_body", False):
            pass
        cookies: list[str] = []
        try:
            status, body = await self._route(scope, cookies)
        except HTTPError as exc:
            status, body = exc.status, {"error": exc.message}
        except RedisHAError as exc:
            # No server answered (QuorumError), or a stored value is not ours:
            # never pretend the session is empty.
            logger.warning("session store unavailable: %s", exc)
            status, body = 503, {"error": "session store unavailable"}
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
        ]
        headers += [(b"set-cookie", c.encode("latin-1")) for c in cookies]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _route(self, scope: Scope, cookies: list[str]) -> tuple[int, Any]:
        method: str = scope["method"]
        path: str = scope["path"]
        if path == "/":
            _allow(method, "GET")
            sid, session = await self._session(scope)
            session["visits"] = session.get("visits", 0) + 1
            await self._save(sid, session, cookies)
            return 200, {"visits": session["visits"], "cart": session.get("cart", [])}
        if path == "/cart":
            _allow(method, "GET", "POST")
            sid, session = await self._session(scope)
            if method == "GET":
                return 200, {"cart": session.get("cart", [])}
            item = _query(scope).get("item", [""])[0]
            if not item or len(item) > MAX_ITEM:
                raise HTTPError(400, f"item must be 1 to {MAX_ITEM} characters")
            cart = list(session.get("cart", []))
            if len(cart) >= MAX_CART:
                raise HTTPError(409, "the cart is full")
            session["cart"] = [*cart, item]
            await self._save(sid, session, cookies)
            return 200, {"cart": session["cart"]}
        if path == "/logout":
            _allow(method, "POST")
            old = _cookie(scope)
            if old is not None:
                await self.store.delete(old)  # an invalid id is ignored, never sent
            cookies.append(self._cookie("", max_age=0))
            return 200, {"logged_out": True}
        raise HTTPError(404, "not found")

    async def _session(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        """The request's session id and data; a fresh id if the cookie's is unknown."""
        sid = _cookie(scope)
        if sid is not None:
            session = await self.store.load(sid)  # {} for an invalid id, never sent
            if session:
                return sid, session
        # Unknown, expired, deleted or absent: a new id, never the client's choice.
        return self.store.new_id(), Session()

    async def _save(self, sid: str, session: dict[str, Any], cookies: list[str]) -> None:
        await self.store.save(sid, session)  # writes what changed, refreshes the TTL
        cookies.append(self._cookie(sid, max_age=int(self.store.ttl)))  # slides too

    def _cookie(self, value: str, *, max_age: int) -> str:
        parts = [f"{COOKIE_NAME}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly"]
        parts.append("SameSite=Lax")
        if self.secure_cookies:
            parts.append("Secure")
        return "; ".join(parts)


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise HTTPError(405, f"use {' or '.join(allowed)}")


def _query(scope: Scope) -> dict[str, list[str]]:
    raw: bytes = scope.get("query_string", b"")
    return parse_qs(raw.decode("latin-1"), max_num_fields=20)


def _cookie(scope: Scope) -> str | None:
    """The session id from the request's cookies, if any (not checked here)."""
    for name, value in scope.get("headers", ()):
        if name.lower() != b"cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except CookieError:
            continue
        morsel = jar.get(COOKIE_NAME)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


async def serve(
    servers: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ttl: float = DEFAULT_TTL,
    secure_cookies: bool = False,
    pool_options: Mapping[str, Any] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the pool and serve the app until cancelled.

    Use as ``binds = await nursery.start(partial(serve, servers, port=0))``:
    it reports the addresses it listens on (``["http://127.0.0.1:54321"]``)
    once it accepts connections.

    Args:
        servers: Redis URLs.
        host: Address to listen on.
        port: Port to listen on (``0``: any free one).
        ttl: Session lifetime in seconds (sliding).
        secure_cookies: Mark the cookie ``Secure``.
        pool_options: Keyword arguments of :func:`trio_redisha.open_pool`.
        task_status: Reports the addresses listened on.
    """
    async with trio_redisha.open_pool(*servers, **dict(pool_options or {})) as pool:
        app = SessionApp(SessionStore(pool, ttl=ttl), secure_cookies=secure_cookies)
        config = hypercorn.config.Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        await hypercorn.trio.serve(app, config, task_status=task_status)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``session_app.py [--host H] [--port P] REDIS_URL...``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs="*", help="Redis URLs (default: $REDISHA_SERVERS)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL, help="session lifetime (s)")
    parser.add_argument("--secure-cookies", action="store_true", help="cookies over HTTPS only")
    args = parser.parse_args(argv)
    servers = args.servers or os.environ.get("REDISHA_SERVERS", "").replace(",", " ").split()
    if not servers:
        parser.error("give the Redis servers' URLs, or set REDISHA_SERVERS")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run = partial(
        serve,
        servers,
        host=args.host,
        port=args.port,
        ttl=args.ttl,
        secure_cookies=args.secure_cookies,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: a clean exit
        trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
