"""trio_redisha.starsessions.RedisHAStore under starsessions' own middleware, end to end.

A Starlette app with starsessions' ``SessionMiddleware`` and
``SessionAutoloadMiddleware`` over :class:`RedisHAStore`, served by Hypercorn on
trio and driven with httpx over three real redis-servers: concurrent requests
changing different fields keep every change, removed fields are deleted,
forged ids are not adopted, a regenerated id deletes the old one, and a killed
plus a frozen server change nothing for the client.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starsessions import SessionAutoloadMiddleware, get_session_metadata, regenerate_session_id
from starsessions import SessionMiddleware as StarSessionMiddleware

import trio_redisha
from tests.harness import asgi_server
from tests.harness.asgi_server import serve_asgi
from tests.harness.helpers import FAST
from trio_redisha import ConfigurationError, QuorumError, SessionStore
from trio_redisha.starsessions import METADATA_KEY, RedisHAStore
from trio_redisha.testing import RedisServer

COOKIE = "session"


client_with = partial(asgi_server.client_with, cookie=COOKIE)
sid_of = partial(asgi_server.sid_of, cookie=COOKIE)


def visible(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k != METADATA_KEY}


async def show(request: Request) -> Response:
    return JSONResponse(visible(request.session))


async def set_fields(request: Request) -> Response:
    request.session.update(request.query_params)
    return JSONResponse(visible(request.session))


async def delete_fields(request: Request) -> Response:
    for key in request.query_params:
        request.session.pop(key, None)
    return JSONResponse(visible(request.session))


async def login(request: Request) -> Response:
    regenerate_session_id(request)
    request.session["user"] = "ada"
    return JSONResponse(visible(request.session))


async def logout(request: Request) -> Response:
    request.session.clear()
    return JSONResponse({})


async def metadata(request: Request) -> Response:
    """What an application may log or show: starsessions' metadata of the session."""
    return JSONResponse(get_session_metadata(request))


async def kick(request: Request) -> Response:
    """An admin logging another user out: removes that user's session by its id."""
    await request.app.state.ha_store.remove(request.query_params["sid"])
    return JSONResponse(visible(request.session))


async def flush(request: Request) -> Response:
    """Django's ``session.flush()``: clear, and a new id."""
    request.session.clear()
    regenerate_session_id(request)
    return JSONResponse({})


@asynccontextmanager
async def serving(
    servers: list[RedisServer], outer: list[Middleware] | None = None
) -> AsyncIterator[tuple[str, SessionStore]]:
    async with trio_redisha.open_pool(*(s.url for s in servers), **FAST) as pool:
        store = SessionStore(pool, ttl=3600)
        ha_store = RedisHAStore(store)
        app = Starlette(
            routes=[
                Route("/", show),
                Route("/set", set_fields, methods=["POST"]),
                Route("/del", delete_fields, methods=["POST"]),
                Route("/login", login, methods=["POST"]),
                Route("/logout", logout, methods=["POST"]),
                Route("/flush", flush, methods=["POST"]),
                Route("/kick", kick, methods=["POST"]),
                Route("/metadata", metadata),
            ],
            middleware=[
                *(outer or []),
                Middleware(
                    StarSessionMiddleware,
                    store=ha_store,
                    lifetime=3600,
                    cookie_https_only=False,  # httpx sends no Secure cookie over http://
                ),
                Middleware(SessionAutoloadMiddleware),
            ],
        )
        app.state.ha_store = ha_store
        async with serve_asgi(app) as base:
            yield base, store


async def test_concurrent_requests_keep_every_field(redis_servers: list[RedisServer]) -> None:
    n = 40
    async with serving(redis_servers) as (base, store):
        async with httpx.AsyncClient(base_url=base) as client:
            await client.post("/set", params={f"f{i}": "old" for i in range(n + 1)})
            sid = sid_of(client)
        assert len(sid) == 43  # the store's id, not starsessions' 32 hex digits

        async def change(i: int) -> None:
            async with client_with(base, sid) as c:
                r = await c.post("/set", params={f"f{i}": str(i)})
                assert r.status_code == 200 and sid_of(c) == sid

        async def delete(key: str) -> None:
            async with client_with(base, sid) as c:
                r = await c.post("/del", params={key: ""})
                assert r.status_code == 200

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(change, i)
            nursery.start_soon(delete, f"f{n}")
        stored = await store.load(sid)
        assert visible(stored) == {f"f{i}": str(i) for i in range(n)}
        # What read() hid for write() is never stored.
        assert set(stored[METADATA_KEY]) == {"created", "last_access", "lifetime"}


@pytest.mark.parametrize("cookie", ["A" * 43, "0" * 32, "bad id!"], ids=["ours", "hex", "bad"])
async def test_forged_ids_are_not_adopted(redis_servers: list[RedisServer], cookie: str) -> None:
    async with serving(redis_servers) as (base, store), client_with(base, cookie) as client:
        assert (await client.get("/")).json() == {}
        await client.post("/set", params={"a": "1"})
        sid = sid_of(client)
        assert sid != cookie
        assert visible(await store.load(sid)) == {"a": "1"}
        assert not await RedisHAStore(store).exists(cookie)


async def test_the_metadata_the_app_sees_never_holds_the_session_id(
    redis_servers: list[RedisServer],
) -> None:
    # read() put the id it read in clear in the metadata, for write(): an app
    # logging get_session_metadata() (or returning it) leaked the bearer secret.
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"cart": "book"})
        sid = sid_of(client)
        shown = await client.get("/metadata")
        assert shown.status_code == 200 and "lifetime" in shown.json()
        assert sid not in shown.text and sid[:12] not in shown.text
        # Nor a plain hash of a field (a short secret, a code, would be found).
        fields = shown.json()["trio_redisha"]["fields"]
        assert fields["cart"] != hashlib.blake2b(b'"book"', digest_size=16).hexdigest()
        # The sealed id still does its work: a regenerated id deletes the old one.
        await client.post("/login")
        assert sid_of(client) != sid and await store.load(sid) == {}


def test_a_sealed_id_is_read_back_only_by_this_process_unaltered() -> None:
    from trio_redisha.starsessions import _seal, _unseal

    sid = SessionStore.new_id()
    token = _seal(sid)
    assert _unseal(token) == sid and sid not in token and _seal(sid) != token
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert _unseal(tampered) is None
    assert _unseal(sid) is None and _unseal(None) is None and _unseal("é") is None


async def test_regenerated_id_deletes_the_old_one(redis_servers: list[RedisServer]) -> None:
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"cart": "book"})
        before = sid_of(client)
        assert (await client.post("/login")).json() == {"cart": "book", "user": "ada"}
        after = sid_of(client)
        assert after != before
        assert visible(await store.load(after)) == {"cart": "book", "user": "ada"}
        assert await store.load(before) == {}

        await client.post("/logout")
        assert COOKIE not in client.cookies
        assert await store.load(after) == {}


async def test_a_session_cleared_under_a_regenerated_id_is_deleted(
    redis_servers: list[RedisServer],
) -> None:
    # starsessions removes an emptied session under its current id: after
    # regenerate_session_id() that is the new id, never stored, and the old
    # id went on opening the logged-in session until it expired.
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/login")
        sid = sid_of(client)
        assert visible(await store.load(sid)) == {"user": "ada"}
        await client.post("/flush")
        assert COOKIE not in client.cookies
        assert await store.load(sid) == {}
        # A request that never read a session removes nothing else.
        await client.post("/flush")
        assert COOKIE not in client.cookies


async def test_removing_another_session_leaves_the_caller_s_own(
    redis_servers: list[RedisServer],
) -> None:
    # remove() deleted the session read in this request whenever it was given
    # another id: an admin logging a user out was logged out too.
    async with (
        serving(redis_servers) as (base, store),
        httpx.AsyncClient(base_url=base) as admin,
        httpx.AsyncClient(base_url=base) as bob,
    ):
        await admin.post("/set", params={"role": "admin"})
        await bob.post("/set", params={"user": "bob"})
        bob_sid = sid_of(bob)
        assert (await admin.post("/kick", params={"sid": bob_sid})).json() == {"role": "admin"}
        assert await store.load(bob_sid) == {}
        assert visible(await store.load(sid_of(admin))) == {"role": "admin"}


async def test_a_killed_and_a_frozen_server(redis_servers: list[RedisServer]) -> None:
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"a": "1"})
        sid = sid_of(client)
        await redis_servers[0].akill()
        await redis_servers[1].afreeze()
        try:
            for i in range(3):
                r = await client.post("/set", params={f"k{i}": str(i)})
                assert r.status_code == 200
            r = await client.post("/del", params={"a": ""})
            assert r.json() == {"k0": "0", "k1": "1", "k2": "2"} and sid_of(client) == sid
        finally:
            await redis_servers[1].athaw()
        assert visible(await store.load(sid)) == {"k0": "0", "k1": "1", "k2": "2"}


async def test_needs_a_session_store() -> None:
    with pytest.raises(ConfigurationError):
        RedisHAStore(object())  # type: ignore[arg-type]


class Catch:
    """ASGI middleware keeping the error the application raised (what its traceback shows)."""

    def __init__(self, app: Any, caught: list[BaseException]) -> None:
        self.app = app
        self.caught = caught

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            self.caught.append(exc)
            await Response("unavailable", status_code=503)(scope, receive, send)


def traceback_text(exc: BaseException) -> str:
    """What a traceback of ``exc`` shows, with the repr of its attributes."""
    parts = [*traceback.format_exception(exc), repr(vars(exc))]
    for value in vars(exc).values():
        if isinstance(value, list):  # Replies: the per-server errors
            parts += [repr(e) for e in value if isinstance(e, BaseException)]
    return "".join(parts)


async def test_errors_reaching_the_app_never_show_the_session_id(
    redis_servers: list[RedisServer],
) -> None:
    caught: list[BaseException] = []
    outer = [Middleware(Catch, caught=caught)]
    async with (
        serving(redis_servers, outer) as (base, store),
        httpx.AsyncClient(base_url=base) as client,
    ):
        await client.post("/set", params={"a": "1"})
        sid = sid_of(client)
        for server in redis_servers:
            await server.akill()
        assert (await client.get("/")).status_code == 503
        ha = RedisHAStore(store)
        for op in (ha.read(sid, 3600), ha.exists(sid), ha.remove(sid)):
            with pytest.raises(QuorumError) as info:
                await op
            caught.append(info.value)
    assert len(caught) == 4 and all(isinstance(e, QuorumError) for e in caught)
    for error in caught:
        shown = traceback_text(error)
        assert sid not in shown
        assert error.__cause__ is None and error.__context__ is None
    assert "\u2026" + sid[-4:] in str(caught[0])


async def test_a_write_racing_a_removal_cannot_bring_the_session_back(
    redis_servers: list[RedisServer],
) -> None:
    # Tab 2 read the session, tab 1 logged out (remove), tab 2's write of a
    # changed field brought the whole session back under the same id.
    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        backend = RedisHAStore(store)
        blob = json.dumps({"user": "ada", METADATA_KEY: {}}).encode()
        sid = await backend.write("x" * 32, blob, 3600, 3600)
        read = json.loads(await backend.read(sid, 3600))
        await backend.remove(sid)
        read["user"] = "ada!"
        await backend.write(sid, json.dumps(read).encode(), 3600, 3600)
        assert not await backend.exists(sid)
        assert await store.load(sid) == {}


async def test_a_regenerated_id_keeps_what_another_request_wrote_meanwhile(
    redis_servers: list[RedisServer],
) -> None:
    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        backend = RedisHAStore(store)
        blob = json.dumps({"cart": ["book"], METADATA_KEY: {}}).encode()
        old = await backend.write("x" * 32, blob, 3600, 3600)
        login = json.loads(await backend.read(old, 3600))
        other = json.loads(await backend.read(old, 3600))
        other["wishlist"] = ["pen"]
        assert await backend.write(old, json.dumps(other).encode(), 3600, 3600) == old
        login["user"] = "ada"  # then starsessions regenerates the id
        new = await backend.write("y" * 32, json.dumps(login).encode(), 3600, 3600)
        assert new != old
        assert visible(await store.load(new)) == {
            "cart": ["book"],
            "wishlist": ["pen"],
            "user": "ada",
        }
        assert await store.load(old) == {}
