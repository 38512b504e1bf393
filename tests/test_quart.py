"""trio_redisha.quart.RedisHASessionInterface on a QuartTrio app, end to end.

Served by Hypercorn on trio, driven with httpx over three real redis-servers:
concurrent requests changing different fields keep every change, rotation
moves the session to a new id, logout deletes it, a killed plus a frozen
server change nothing, and with every server gone the answer is 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from quart import request, session
from quart_trio import QuartTrio

import trio_redisha
from tests.harness import asgi_server
from tests.harness.asgi_server import serve_asgi
from tests.harness.helpers import FAST
from trio_redisha import ConfigurationError, SessionStore
from trio_redisha.quart import RedisHASession, RedisHASessionInterface
from trio_redisha.testing import RedisServer

COOKIE = "sid"


client_with = partial(asgi_server.client_with, cookie=COOKIE)
sid_of = partial(asgi_server.sid_of, cookie=COOKIE)


def make_app(store: SessionStore) -> QuartTrio:
    app = QuartTrio(__name__)
    RedisHASessionInterface(store, cookie_name=COOKIE, secure=False).init_app(app)

    @app.get("/")
    async def show() -> dict[str, Any]:
        return dict(session)

    @app.post("/set")
    async def set_fields() -> dict[str, Any]:
        session.update(request.args.to_dict())
        return dict(session)

    @app.post("/del")
    async def delete_fields() -> dict[str, Any]:
        for key in request.args:
            session.pop(key, None)
        return dict(session)

    @app.post("/login")
    async def login() -> dict[str, Any]:
        assert isinstance(session._get_current_object(), RedisHASession)  # type: ignore[attr-defined]
        session.rotate()  # type: ignore[attr-defined]
        session["user"] = "ada"
        return dict(session)

    @app.post("/logout")
    async def logout() -> dict[str, Any]:
        session.clear()
        return {}

    @app.get("/fail")
    async def fail() -> tuple[str, int]:
        session["broken"] = "yes"
        return "boom", 500

    return app


@asynccontextmanager
async def serving(servers: list[RedisServer]) -> AsyncIterator[tuple[str, SessionStore]]:
    async with trio_redisha.open_pool(*(s.url for s in servers), **FAST) as pool:
        store = SessionStore(pool)
        async with serve_asgi(make_app(store)) as base:
            yield base, store


async def test_concurrent_requests_keep_every_field(redis_servers: list[RedisServer]) -> None:
    n = 30
    async with serving(redis_servers) as (base, store):
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.get("/")
            assert r.json() == {} and "set-cookie" not in r.headers
            r = await client.post("/set", params={f"f{i}": "old" for i in range(n + 1)})
            assert (
                "HttpOnly" in r.headers["set-cookie"] and "SameSite=Lax" in r.headers["set-cookie"]
            )
            sid = sid_of(client)

        async def change(i: int) -> None:
            async with client_with(base, sid) as c:
                assert (await c.post("/set", params={f"f{i}": str(i)})).status_code == 200

        async def delete() -> None:
            async with client_with(base, sid) as c:
                assert (await c.post("/del", params={f"f{n}": ""})).status_code == 200

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(change, i)
            nursery.start_soon(delete)
        assert await store.load(sid) == {f"f{i}": str(i) for i in range(n)}


async def test_rotation_logout_and_forged_ids(redis_servers: list[RedisServer]) -> None:
    async with (
        serving(redis_servers) as (base, store),
        client_with(base, "A" * 43) as client,  # forged: not adopted
    ):
        await client.post("/set", params={"cart": "book"})
        before = sid_of(client)
        assert before != "A" * 43
        assert (await client.post("/login")).json() == {"cart": "book", "user": "ada"}
        after = sid_of(client)
        assert after != before
        assert await store.load(before) == {}
        assert await store.load(after) == {"cart": "book", "user": "ada"}
        r = await client.get("/fail")
        assert r.status_code == 500 and "set-cookie" not in r.headers
        r = await client.post("/logout")
        assert "Max-Age=0" in r.headers["set-cookie"] and COOKIE not in client.cookies
        assert await store.load(after) == {}


async def test_killed_frozen_and_all_gone(redis_servers: list[RedisServer]) -> None:
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"a": "1"})
        sid = sid_of(client)
        await redis_servers[0].akill()
        await redis_servers[1].afreeze()
        try:
            r = await client.post("/set", params={"b": "2"})
            assert r.json() == {"a": "1", "b": "2"} and sid_of(client) == sid
        finally:
            await redis_servers[1].athaw()
        assert await store.load(sid) == {"a": "1", "b": "2"}

        for server in redis_servers[1:]:
            await server.akill()
        r = await client.get("/")  # cannot load: 503 before the view runs
        assert r.status_code == 503 and "set-cookie" not in r.headers
        async with httpx.AsyncClient(base_url=base) as fresh:
            r = await fresh.post("/set", params={"c": "3"})  # cannot save: 503
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.text == "session store unavailable\n" and "set-cookie" not in r.headers


async def test_needs_a_session_store() -> None:
    with pytest.raises(ConfigurationError):
        RedisHASessionInterface(object())  # type: ignore[arg-type]
