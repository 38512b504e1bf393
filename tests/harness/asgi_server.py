"""Serve an ASGI application with Hypercorn on trio, in-process, on a free port,
and make httpx clients that hold a session cookie as a browser would.

The web integration tests drive real HTTP (httpx) against a real server, so
cookies, headers and concurrency go through the same code paths as in
production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import hypercorn.config
import hypercorn.trio
import trio

from trio_redisha.session import SessionStore

__all__ = ["client_with", "serve_asgi", "sid_of"]


@asynccontextmanager
async def serve_asgi(app: Any, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` for the block; yield its base URL (``http://127.0.0.1:PORT``)."""
    config = hypercorn.config.Config()
    config.bind = [f"{host}:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(hypercorn.trio.serve, app, config))
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()


def client_with(base: str, sid: str, *, cookie: str) -> httpx.AsyncClient:
    """A client holding the cookie ``cookie=sid`` for the app's host, as if the app had set it.

    Args:
        base: The app's base URL.
        sid: The session id to present.
        cookie: The name of the session cookie.

    Returns:
        The client (the caller closes it).
    """
    client = httpx.AsyncClient(base_url=base)
    client.cookies.set(cookie, sid, domain="127.0.0.1")
    return client


def sid_of(client: httpx.AsyncClient, *, cookie: str) -> str:
    """The session id the app set in ``client``'s cookie jar; asserts it is a valid one."""
    sid = client.cookies.get(cookie)
    assert isinstance(sid, str) and SessionStore.is_valid_id(sid), sid
    return sid
