"""trio_redisha.quart.RedisHASessionInterface on a QuartTrio app, end to end.

Served by Hypercorn on trio, driven with httpx over three real redis-servers:
concurrent requests changing different fields keep every change, rotation
moves the session to a new id, logout deletes it, a killed plus a frozen
server change nothing, and with every server gone the answer is 503.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
from quart import request, session, websocket
from quart_trio import QuartTrio

import trio_redisha
from tests.harness import asgi_server
from tests.harness.asgi_server import serve_asgi
from tests.harness.helpers import FAST
from trio_redisha import ConfigurationError, SessionStore
from trio_redisha.quart import RedisHASession, RedisHASessionInterface, rotate_session
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
        rotate_session()  # session.rotate(), typed
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

    @app.websocket("/ws")
    async def ws() -> None:
        app.config["WS_VIEW_RAN"] = True
        await websocket.accept()
        await websocket.send(f"user={session.get('user')}")

    @app.websocket("/ws-refused")
    async def ws_refused() -> tuple[str, int]:
        session["from_ws"] = "yes"
        return "nope", 403

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


async def test_a_websocket_rejected_with_a_response_saves_nothing(
    redis_servers: list[RedisServer],
) -> None:
    # Quart hands the rejection's response to save_session: the websocket's
    # change was saved and a cookie set, though websockets save nothing.
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"user": "ada"})
        sid = sid_of(client)
        url = base.replace("http://", "ws://") + "/ws-refused"
        cookie = [(b"cookie", f"{COOKIE}={sid}".encode())]
        with pytest.raises(trio_websocket.ConnectionRejected) as info:
            async with trio_websocket.open_websocket_url(url, extra_headers=cookie):
                pass
        assert info.value.status_code == 403
        assert b"set-cookie" not in [k.lower() for k, _ in info.value.headers]
        assert (await store.load(sid)) == {"user": "ada"}


async def test_needs_a_session_store() -> None:
    with pytest.raises(ConfigurationError):
        RedisHASessionInterface(object())  # type: ignore[arg-type]


async def test_unavailable_store_refuses_a_websocket(redis_servers: list[RedisServer]) -> None:
    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        app = make_app(store)
        async with serve_asgi(app) as base, httpx.AsyncClient(base_url=base) as client:
            await client.post("/set", params={"user": "ada"})
            sid = sid_of(client)
            url = base.replace("http://", "ws://") + "/ws"
            cookie = [(b"cookie", f"{COOKIE}={sid}".encode())]
            async with trio_websocket.open_websocket_url(url, extra_headers=cookie) as conn:
                assert await conn.get_message() == "user=ada"  # store up: served
            for server in redis_servers:
                await server.akill()
            app.config["WS_VIEW_RAN"] = False
            # Hypercorn sends an HTTP response in place of the handshake: the 503.
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with trio_websocket.open_websocket_url(url, extra_headers=cookie):
                    pass
            assert info.value.status_code == 503
            assert (b"retry-after", b"1") in [(k.lower(), v) for k, v in info.value.headers]
            assert app.config["WS_VIEW_RAN"] is False
        # A server without that extension: closed with 1013, as SessionMiddleware does.
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"localhost"), *cookie],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 80),
            "subprotocols": [],
            "extensions": {},
        }
        sent: list[dict[str, Any]] = []
        connected = False

        async def receive() -> dict[str, Any]:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            await trio.sleep_forever()
            raise AssertionError  # pragma: no cover

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asgi: Any = app  # a hand-made scope and callables, typed loosely
        with trio.fail_after(5):
            await asgi(scope, receive, send)
        assert [m["type"] for m in sent] == ["websocket.close"] and sent[0]["code"] == 1013
        assert app.config["WS_VIEW_RAN"] is False


async def test_load_failure_503_has_retry_after_and_logs_no_id(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_redisha")
    async with serving(redis_servers) as (base, _), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"a": "1"})
        sid = sid_of(client)
        for server in redis_servers:
            await server.akill()
        caplog.clear()
        r = await client.get("/")  # cannot load: 503 before the view runs
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "set-cookie" not in r.headers
        async with httpx.AsyncClient(base_url=base) as fresh:
            r = await fresh.post("/set", params={"c": "3"})  # cannot save (a new id): 503
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
    logged = caplog.text
    assert "session store unavailable" in logged and "session not saved" in logged
    assert sid not in logged and "\u2026" + sid[-4:] in logged
    assert not re.search(r"session:[A-Za-z0-9_-]{22}", logged)  # nor the new session's


async def test_rotate_session_outside_our_interface_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The typed form of session.rotate(): without the interface installed,
    # Quart's own session has no rotate, and saying so beats an AttributeError.
    app = QuartTrio(__name__)

    @app.post("/login")
    async def login() -> str:
        rotate_session()
        return "in"

    async with app.test_app() as test_app:
        response = await test_app.test_client().post("/login")
    assert response.status_code == 500
    errors = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert errors and isinstance(errors[-1].exc_info[1], ConfigurationError)  # type: ignore[index]
