"""trio_redisha.asgi.SessionMiddleware end to end: Hypercorn on trio, real HTTP, real Redis.

A Starlette app (and a FastAPI and a Quart one) wrapped in the middleware is
served on a free port and driven with httpx, over three real redis-server
processes: concurrent requests changing different fields (none lost), deleted
fields, rotation, logout, cookie flags, unknown ids, a server killed and
another frozen, and every server gone (503).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import fastapi
import httpx
import pytest
import quart
import quart_trio
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import trio_redisha
from tests.harness import asgi_server
from tests.harness.asgi_server import serve_asgi
from tests.harness.helpers import FAST, wait_until
from tests.harness.hostile import HANDSHAKE_COMMANDS, open_hostile_server, reply_with
from trio_redisha import ConfigurationError, SessionStore
from trio_redisha.asgi import MAX_COOKIE_IDS, SessionMiddleware, rotate_session
from trio_redisha.testing import RedisServer, decode_reply

COOKIE = "sid"


client_with = partial(asgi_server.client_with, cookie=COOKIE)
sid_of = partial(asgi_server.sid_of, cookie=COOKIE)


async def show(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def set_fields(request: Request) -> Response:
    for key, value in request.query_params.items():
        request.session[key] = value
    return JSONResponse(dict(request.session))


async def delete_fields(request: Request) -> Response:
    for key in request.query_params:
        request.session.pop(key, None)
    return JSONResponse(dict(request.session))


async def login(request: Request) -> Response:
    rotate_session(request)
    request.session["user"] = request.query_params["user"]
    return JSONResponse(dict(request.session))


async def logout(request: Request) -> Response:
    request.session.clear()
    return JSONResponse({})


async def fail(request: Request) -> Response:
    request.session["broken"] = "yes"
    return PlainTextResponse("boom", status_code=500)


async def touch_nothing(request: Request) -> Response:
    return PlainTextResponse("static")


def starlette_app(store: SessionStore, **options: Any) -> SessionMiddleware:
    app = Starlette(
        routes=[
            Route("/", show),
            Route("/set", set_fields, methods=["POST"]),
            Route("/del", delete_fields, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/fail", fail),
            Route("/static", touch_nothing),
        ]
    )
    options.setdefault("cookie_name", COOKIE)
    options.setdefault("secure", False)  # httpx sends no Secure cookie over http://
    return SessionMiddleware(app, store, **options)


@asynccontextmanager
async def serving(
    servers: list[RedisServer], **options: Any
) -> AsyncIterator[tuple[str, SessionStore]]:
    async with trio_redisha.open_pool(*(s.url for s in servers), **FAST) as pool:
        store = SessionStore(pool)
        async with serve_asgi(starlette_app(store, **options)) as base:
            yield base, store


async def test_cookie_flags_are_safe_by_default(redis_servers: list[RedisServer]) -> None:
    async with (
        serving(redis_servers, secure=True) as (base, store),
        httpx.AsyncClient(base_url=base) as client,
    ):
        r = await client.post("/set", params={"a": "1"})
        assert r.status_code == 200
        name_value, *attributes = r.headers["set-cookie"].split("; ")
        name, sid = name_value.split("=")
        assert name == COOKIE and len(sid) == 43 and store.is_valid_id(sid)
        assert set(attributes) == {
            f"Max-Age={14 * 24 * 3600}",
            "Path=/",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
        }
        assert r.headers["vary"] == "Cookie"
        # A Secure cookie is not sent back over http://; a browser on HTTPS would.
        r = await client.get("/", headers={"cookie": f"{COOKIE}={sid}"})
        assert r.json() == {"a": "1"}


async def test_empty_untouched_session_sets_no_cookie_and_writes_nothing(
    redis_servers: list[RedisServer],
) -> None:
    async with serving(redis_servers) as (base, _), httpx.AsyncClient(base_url=base) as client:
        for path in ("/", "/static"):
            r = await client.get(path)
            assert r.status_code == 200 and "set-cookie" not in r.headers
        r = await client.post("/del", params={"nothing": ""})
        assert "set-cookie" not in r.headers
    for server in redis_servers:
        assert await server.acommand("DBSIZE") == b":0\r\n"


async def test_concurrent_requests_changing_different_fields_lose_none(
    redis_servers: list[RedisServer],
) -> None:
    n = 60
    async with serving(redis_servers) as (base, store):
        # Every field exists first: a request writing the whole session would
        # put back the old value of the fields the others changed.
        async with httpx.AsyncClient(base_url=base) as client:
            await client.post("/set", params={f"f{i}": "old" for i in range(n + 1)})
            sid = sid_of(client)

        async def change(i: int) -> None:
            # Each request is a separate client holding the same cookie.
            async with client_with(base, sid) as c:
                r = await c.post("/set", params={f"f{i}": str(i)})
                assert r.status_code == 200, r.text

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(change, i)
        expected = {f"f{i}": str(i) for i in range(n)} | {f"f{n}": "old"}
        assert await store.load(sid) == expected

        # Deleting fields concurrently with changing others: each does what it says.
        async def delete(i: int) -> None:
            async with client_with(base, sid) as c:
                r = await c.post("/del", params={f"f{i}": ""})
                assert r.status_code == 200 and f"f{i}" not in r.json()

        async with trio.open_nursery() as nursery:
            for i in range(0, n, 2):
                nursery.start_soon(delete, i)
            nursery.start_soon(change, n)
        expected = {k: v for k, v in expected.items() if k not in {f"f{i}" for i in range(0, n, 2)}}
        assert await store.load(sid) == expected | {f"f{n}": str(n)}


async def test_rotation_moves_the_session_to_a_new_id_and_deletes_the_old(
    redis_servers: list[RedisServer],
) -> None:
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"cart": "book"})
        before = sid_of(client)
        r = await client.post("/login", params={"user": "ada"})
        assert r.json() == {"cart": "book", "user": "ada"}
        after = sid_of(client)
        assert after != before
        assert await store.load(after) == {"cart": "book", "user": "ada"}
        assert await store.load(before) == {}
        # The old cookie is worth nothing now: a fresh session, under a fresh id.
        async with client_with(base, before) as old:
            assert (await old.get("/")).json() == {}
            r = await old.post("/set", params={"x": "1"})
            assert sid_of(old) not in (before, after)


@pytest.mark.parametrize(
    "cookie",
    ["A" * 43, "bad id!", "x" * 500, "../etc/passwd", ""],
    ids=["unknown", "bad-chars", "too-long", "path", "empty"],
)
async def test_a_client_chosen_id_is_never_adopted(
    redis_servers: list[RedisServer], cookie: str
) -> None:
    async with (
        serving(redis_servers) as (base, store),
        client_with(base, cookie) as client,
    ):
        assert (await client.get("/")).json() == {}
        await client.post("/set", params={"a": "1"})
        sid = sid_of(client)
        assert sid != cookie
        assert await store.load(sid) == {"a": "1"}
    for server in redis_servers:
        assert await server.acommand("EXISTS", "session:" + "A" * 43) == b":0\r\n"


async def test_a_malformed_cookie_never_reaches_redis() -> None:
    # A fake server recording every command: only the handshake may arrive.
    async with (
        open_hostile_server(reply_with(b"*0\r\n")) as fake,
        trio_redisha.open_pool(fake.url, **FAST) as pool,
        serve_asgi(starlette_app(SessionStore(pool))) as base,
    ):
        for cookie in ("bad id!", "x" * 500, "../etc/passwd", "A" * 21, '"quoted"'):
            async with client_with(base, cookie) as client:
                assert (await client.get("/")).json() == {}
        assert set(fake.command_names()) <= HANDSHAKE_COMMANDS
        async with client_with(base, "A" * 43) as client:  # well-formed: looked up
            assert (await client.get("/")).json() == {}
        assert set(fake.command_names()) - HANDSHAKE_COMMANDS


async def test_logout_deletes_the_session_everywhere_and_expires_the_cookie(
    redis_servers: list[RedisServer],
) -> None:
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"a": "1", "b": "2"})
        sid = sid_of(client)
        r = await client.post("/logout")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f'{COOKIE}=""; Max-Age=0; Expires=Thu, 01 Jan 1970')
        assert COOKIE not in client.cookies
        assert await store.load(sid) == {}
        # A request racing the logout with the old id cannot bring it back.
        async with client_with(base, sid) as late:
            assert (await late.get("/")).json() == {}


async def test_a_failed_request_saves_nothing(redis_servers: list[RedisServer]) -> None:
    async with serving(redis_servers) as (base, _), httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/fail")
        assert r.status_code == 500 and "set-cookie" not in r.headers
        await client.post("/set", params={"a": "1"})
        r = await client.get("/fail")
        assert r.status_code == 500
        assert (await client.get("/")).json() == {"a": "1"}


async def test_sessions_survive_a_killed_and_a_frozen_server(
    redis_servers: list[RedisServer],
) -> None:
    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"a": "1"})
        sid = sid_of(client)
        await redis_servers[0].akill()
        await redis_servers[1].afreeze()
        try:
            for i in range(5):
                r = await client.post("/set", params={f"k{i}": str(i)})
                assert r.status_code == 200, r.text
            r = await client.post("/del", params={"a": ""})
            assert r.json() == {f"k{i}": str(i) for i in range(5)}
            assert sid_of(client) == sid
        finally:
            await redis_servers[1].athaw()
        # The frozen server catches up on the next read (repair); every field is there.
        assert await store.load(sid) == {f"k{i}": str(i) for i in range(5)}


async def test_no_server_answers_503_never_an_empty_session(
    redis_servers: list[RedisServer],
) -> None:
    async with serving(redis_servers) as (base, _), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"a": "1"})
        for server in redis_servers:
            await server.akill()
        # Loading fails: 503, the app is not called, the cookie is kept.
        r = await client.get("/")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "set-cookie" not in r.headers
        # Saving a new session fails: the app's 200 is replaced by the 503.
        async with httpx.AsyncClient(base_url=base) as fresh:
            r = await fresh.post("/set", params={"b": "2"})
            assert r.status_code == 503 and r.text == "session store unavailable\n"
            assert "set-cookie" not in r.headers
            # Nothing to save: served as usual.
            assert (await fresh.get("/static")).status_code == 200


#: A Redis key of a session showing its id (22 characters or more): never logged.
FULL_KEY = re.compile(r"session:[A-Za-z0-9_-]{22}")


async def test_logs_never_show_a_session_id(
    redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_redisha")
    async with serving(redis_servers) as (base, store):
        # A key holding something else than a session: replaced by a new one, logged.
        foreign = store.new_id()
        for server in redis_servers:
            await server.acommand("SET", "session:" + foreign, "junk")
        async with client_with(base, foreign) as client:
            r = await client.post("/set", params={"a": "1"})
            assert r.status_code == 200 and sid_of(client) != foreign
            sid = sid_of(client)
        assert "unreadable session replaced" in caplog.text
        # No quorum: the load (503), a save under a new id (503) and a touch fail.
        for server in redis_servers:
            await server.akill()
        async with client_with(base, sid) as client:
            r = await client.get("/")
            assert r.status_code == 503
        async with httpx.AsyncClient(base_url=base) as fresh:
            assert (await fresh.post("/set", params={"b": "2"})).status_code == 503
    logged = caplog.text
    assert "session store unavailable, answering 503" in logged
    assert "session not saved, answering 503" in logged
    for secret in (foreign, sid):
        assert secret not in logged and "\u2026" + secret[-4:] in logged
    assert not FULL_KEY.search(logged)  # nor the id made for the fresh client


async def test_many_session_cookies_cost_a_few_lookups(redis_servers: list[RedisServer]) -> None:
    async def commands() -> list[int]:
        stats = [await s.ainfo("stats") for s in redis_servers]
        return [int(info["total_commands_processed"]) for info in stats]

    async with serving(redis_servers) as (base, store), httpx.AsyncClient(base_url=base) as client:
        await client.post("/set", params={"a": "1"})
        known = sid_of(client)

        async def get(*ids: str) -> httpx.Response:
            header = "; ".join(f"{COOKIE}={i}" for i in ids)
            async with httpx.AsyncClient(base_url=base, headers={"cookie": header}) as c:
                return await c.get("/")

        unknown = [f"A{i:021d}" for i in range(300)]  # well-formed, unknown ids
        for ids in (unknown, [unknown[0]] * 300):
            before = await commands()
            r = await get(*ids)
            after = await commands()
            assert r.status_code == 200 and r.json() == {}
            # At most MAX_COOKIE_IDS loads (each a few commands), not 300.
            assert all(a - b <= 5 * MAX_COOKIE_IDS for a, b in zip(after, before, strict=True))
        # The first id the store knows still wins; a repeated id is tried once.
        assert (await get(*[unknown[0]] * 300, known)).json() == {"a": "1"}
        assert (await get(*unknown[: MAX_COOKIE_IDS - 1], known)).json() == {"a": "1"}
        # Past MAX_COOKIE_IDS distinct ids, the others are not looked up.
        assert (await get(*unknown[:MAX_COOKIE_IDS], known)).json() == {}
        assert await store.load(known) == {"a": "1"}


async def test_on_unavailable_answers_instead(redis_servers: list[RedisServer]) -> None:
    async def maintenance(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("down for maintenance", status_code=503)(scope, receive, send)

    async with (
        serving(redis_servers, on_unavailable=maintenance) as (base, _),
        httpx.AsyncClient(base_url=base) as client,
    ):
        for server in redis_servers:
            await server.akill()
        r = await client.post("/set", params={"b": "2"})
        assert (r.status_code, r.text) == (503, "down for maintenance")


async def test_fastapi_on_trio(redis_servers: list[RedisServer]) -> None:
    app = fastapi.FastAPI()

    @app.post("/visit")
    async def visit(request: Request) -> dict[str, int]:
        request.session["visits"] = request.session.get("visits", 0) + 1
        return {"visits": request.session["visits"]}

    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        app.add_middleware(SessionMiddleware, store=store, cookie_name=COOKIE, secure=False)
        async with serve_asgi(app) as base, httpx.AsyncClient(base_url=base) as client:
            for i in range(1, 4):
                assert (await client.post("/visit")).json() == {"visits": i}
            assert await store.load(sid_of(client)) == {"visits": 3}


async def test_quart_trio_app_wrapped_in_the_middleware(redis_servers: list[RedisServer]) -> None:
    app = quart_trio.QuartTrio(__name__)

    @app.post("/visit")
    async def visit() -> dict[str, int]:
        scope: Any = quart.request.scope
        session = scope["session"]
        session["visits"] = session.get("visits", 0) + 1
        if quart.request.args.get("login"):
            rotate_session(quart.request)
        return {"visits": session["visits"]}

    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        app.asgi_app = SessionMiddleware(  # type: ignore[method-assign]
            app.asgi_app, store, cookie_name=COOKIE, secure=False
        )
        async with serve_asgi(app) as base, httpx.AsyncClient(base_url=base) as client:
            assert (await client.post("/visit")).json() == {"visits": 1}
            first = sid_of(client)
            assert (await client.post("/visit", params={"login": "1"})).json() == {"visits": 2}
            assert sid_of(client) != first
            assert await store.load(sid_of(client)) == {"visits": 2}


async def test_lifespan_passes_through(redis_servers: list[RedisServer]) -> None:
    started: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append("up")
        yield

    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        app = SessionMiddleware(Starlette(lifespan=lifespan), SessionStore(pool))
        async with serve_asgi(app):
            assert started == ["up"]


async def test_rotate_session_needs_the_middleware() -> None:
    with pytest.raises(ConfigurationError, match="SessionMiddleware"):
        rotate_session({"type": "http"})


async def test_configuration_is_checked(redis_servers: list[RedisServer]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    async with trio_redisha.open_pool(redis_servers[0].url) as pool:
        store = SessionStore(pool)
        bad: list[dict[str, Any]] = [
            {"cookie_name": "a b"},
            {"cookie_name": ""},
            {"max_age": -1},
            {"max_age": 1.5},
            {"same_site": "sometimes"},
            {"same_site": "none", "secure": False},
            {"path": "nope"},
            {"path": "/; Domain=evil"},
            {"domain": "a;b"},
            # Not a str, or not what a header can carry: each failed only later,
            # at the first response that set the cookie, after the session was stored.
            {"path": None},
            {"path": "/caf\u20ac"},
            {"path": "/tab\there"},
            {"domain": "b\u00fccher.example"},
        ]
        for options in bad:
            with pytest.raises(ConfigurationError):
                SessionMiddleware(app, store, **options)
        with pytest.raises(ConfigurationError, match="SessionStore"):
            SessionMiddleware(app, object())  # type: ignore[arg-type]
        middleware = SessionMiddleware(app, store, max_age=0, same_site="strict", domain="a.b")
        assert middleware.cookie.set_cookie("x") == (
            "session=x; Path=/; Domain=a.b; HttpOnly; SameSite=Strict; Secure"
        )
        assert "SameSite=Strict" in repr(middleware)


class _ChosenIds(SessionStore):
    """A store whose next new ids are given (to place them on chosen servers)."""

    def __init__(self, *args: Any, ids: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids = ids

    def new_id(self) -> str:  # type: ignore[override]  # an instance method here
        return self.ids.pop(0) if self.ids else super().new_id()


async def test_a_rotation_whose_old_id_is_not_deleted_still_hands_out_the_new_id(
    redis_servers: list[RedisServer],
) -> None:
    # The new id was saved and the delete of the old one missed its quorum,
    # applied on one server: the answer was a 503 that kept the old cookie,
    # whose session then read empty, its data under an id the client never got.
    async def login(scope: Any, receive: Any, send: Any) -> None:
        rotate_session(scope)
        scope["session"]["user"] = "ada"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    a, b, c = redis_servers
    # A hung owner keeps being sent to (its circuit never opens), so the delete
    # cannot go to a fallback instead.
    options = {**FAST, "trip_after": 10**6}
    async with trio_redisha.open_pool(
        a.url, b.url, c.url, replicas=2, write_quorum=2, **options
    ) as pool:
        probe = SessionStore(pool)
        ids = [probe.new_id() for _ in range(200)]
        owners = {sid: set(pool.owners(probe.key(sid))) for sid in ids}
        old = next(s for s in ids if owners[s] == {a.url, b.url})
        new = next(s for s in ids if owners[s] == {b.url, c.url})
        store = _ChosenIds(pool, ids=[new])
        await store.save(old, {"cart": ["tea"]})
        app = SessionMiddleware(login, store, secure=False)
        await a.afreeze()  # an owner of the old id only
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post("/login", headers={"cookie": f"session={old}"})
        finally:
            await a.athaw()
        assert response.status_code == 200
        assert f"session={new};" in response.headers["set-cookie"]
        assert await store.load(new) == {"cart": ["tea"], "user": "ada"}


class _Tabs:
    """Two requests of one session, interleaved exactly: the slow one loads, then
    waits while the other runs, then changes its session and answers."""

    def __init__(self, store: SessionStore) -> None:
        self.loaded = trio.Event()
        self.go_on = trio.Event()
        self.app = SessionMiddleware(self._app, store, cookie_name=COOKIE, secure=False)

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        s, path = scope["session"], scope["path"]
        if path == "/start":
            s["user"] = {"name": "ada", "role": "admin"}
            s["cart"] = ["book"]
        elif path == "/login":
            rotate_session(scope)
            s["user"] = {"name": "ada", "role": "admin", "mfa": True}
        elif path == "/logout":
            s.clear()
        elif path == "/wishlist":
            s["wishlist"] = ["pen"]
        elif path.startswith("/slow"):
            self.loaded.set()
            await self.go_on.wait()
            if path == "/slow/theme":
                s["user"]["theme"] = "dark"  # in place, later than the other request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def request(self, path: str, sid: str | None = None) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        headers = {"cookie": f"{COOKIE}={sid}"} if sid else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(path, headers=headers)

    async def race(self, slow: str, sid: str, other: str) -> tuple[httpx.Response, httpx.Response]:
        """``slow`` loads, ``other`` runs whole, then ``slow`` goes on."""
        got: dict[str, httpx.Response] = {}

        async def run_slow() -> None:
            got["slow"] = await self.request(slow, sid)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_slow)
            await self.loaded.wait()
            got["other"] = await self.request(other, sid)
            self.go_on.set()
        return got["slow"], got["other"]


def _cookie_sid(response: httpx.Response) -> str:
    value = response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    assert SessionStore.is_valid_id(value), value
    return value


@pytest.mark.parametrize("slow", ["/slow/theme", "/slow/nothing"])
async def test_a_request_racing_a_logout_cannot_bring_the_session_back(
    redis_servers: list[RedisServer], slow: str
) -> None:
    # A tab that loaded the session before another logged out wrote its change
    # with a later timestamp than the logout's stamp: the whole session came
    # back, still logged in, and its response handed the old id out again.
    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        tabs = _Tabs(store)
        sid = _cookie_sid(await tabs.request("/start"))
        late, logout = await tabs.race(slow, sid, "/logout")
        assert logout.headers["set-cookie"].startswith(f'{COOKIE}=""; Max-Age=0')
        assert late.status_code == 200
        assert "set-cookie" not in late.headers  # the browser keeps the logout's expiry
        assert await store.load(sid) == {}
        for server in redis_servers:
            held = decode_reply(await server.acommand("HKEYS", store.key(sid)))
            assert isinstance(held, list)
            assert not [k for k in held if k.startswith(b"f:")], held


async def test_a_rotation_keeps_what_another_request_wrote_meanwhile(
    redis_servers: list[RedisServer],
) -> None:
    # The login copied its own snapshot to the new id and deleted the old id,
    # with the other tab's acknowledged write on it.
    class _LoginWaits(_Tabs):
        async def _app(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == "/login":
                self.loaded.set()
                await self.go_on.wait()
            await super()._app(scope, receive, send)

    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        tabs = _LoginWaits(store)
        old = _cookie_sid(await tabs.request("/start"))
        login, wishlist = await tabs.race("/login", old, "/wishlist")
        assert wishlist.status_code == 200
        new = _cookie_sid(login)
        assert new != old
        assert await store.load(new) == {
            "user": {"name": "ada", "role": "admin", "mfa": True},
            "cart": ["book"],
            "wishlist": ["pen"],
        }
        assert await store.load(old) == {}


@pytest.mark.parametrize("slow", ["/slow/theme", "/slow/nothing"])
async def test_a_request_racing_a_rotation_leaves_the_old_id_dead_and_the_new_cookie(
    redis_servers: list[RedisServer], slow: str
) -> None:
    # A request loaded under the old id, finishing after the login, wrote into
    # the old id (it opened a session again) and set the browser's cookie back
    # to it: a background poll during a login logged the user out.
    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool)
        tabs = _Tabs(store)
        old = _cookie_sid(await tabs.request("/start"))
        late, login = await tabs.race(slow, old, "/login")
        new = _cookie_sid(login)
        assert "set-cookie" not in late.headers
        assert await store.load(old) == {}
        assert (await store.load(new))["user"]["mfa"] is True


async def test_a_request_spanning_the_expiry_does_not_revive_part_of_the_session(
    redis_servers: list[RedisServer],
) -> None:
    # The changed field was written into the expired key, which came back
    # holding only it (a cart, no user), under the old id, sent out again.
    async with trio_redisha.open_pool(*(s.url for s in redis_servers), **FAST) as pool:
        store = SessionStore(pool, ttl=0.3)
        tabs = _Tabs(store)
        sid = _cookie_sid(await tabs.request("/start"))

        async def run_slow() -> None:
            got.append(await tabs.request("/slow/theme", sid))

        got: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_slow)
            await tabs.loaded.wait()

            async def expired() -> bool:
                return all(
                    [
                        decode_reply(await s.acommand("EXISTS", store.key(sid))) == 0
                        for s in redis_servers
                    ]
                )

            await wait_until(expired)
            tabs.go_on.set()
        assert "set-cookie" not in got[0].headers
        for server in redis_servers:
            assert decode_reply(await server.acommand("EXISTS", store.key(sid))) == 0
