"""Serve an ASGI application with Hypercorn on trio, in-process, on a free port.

The web integration tests drive real HTTP (httpx) against a real server, so
cookies, headers and concurrency go through the same code paths as in
production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio

__all__ = ["serve_asgi"]


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
