"""examples/session_app.py, served by Hypercorn in-process, driven over HTTP with httpx.

Three fixture Redis servers hold the sessions; one is killed (SIGKILL) while two
browsers are in the middle of their visits, and the app carries on: every
request succeeds and every session keeps its data. Logout then deletes the
session for good.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import trio

import trio_redisha
from tests.harness import asgi_server
from tests.harness.helpers import FAST, raw_hash
from trio_redisha import SessionStore
from trio_redisha.crdt import MARKER_FIELD
from trio_redisha.testing import RedisServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "session_app.py"


client_with = partial(asgi_server.client_with, cookie="sid")
sid_of = partial(asgi_server.sid_of, cookie="sid")


def load_example() -> ModuleType:
    """Import examples/session_app.py by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("session_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("session_app", module)
    spec.loader.exec_module(module)
    return module


session_app = load_example()


@asynccontextmanager
async def running_app(servers: list[RedisServer]) -> AsyncIterator[str]:
    """Serve the example on a free port for the block; yield its base URL."""
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(session_app.serve, [s.url for s in servers], port=0, pool_options=FAST)
        )
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()


async def browse(
    base: str, name: str, visits: int, kill_at: int | None, kill: trio.Event, done: list[str]
) -> None:
    """One browser: visits and cart additions, one after the other, all answered."""
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for i in range(1, visits + 1):
            r = await client.get("/")
            assert r.status_code == 200, r.text
            assert r.json() == {"visits": i, "cart": [f"{name}{j}" for j in range(1, i)]}
            r = await client.post("/cart", params={"item": f"{name}{i}"})
            assert r.status_code == 200, r.text
            assert r.json()["cart"][-1] == f"{name}{i}"
            if i == kill_at:
                kill.set()
            if i == kill_at or kill_at is None:
                await kill.wait()  # the other browser keeps going until the kill
        done.append(sid_of(client))


async def test_app_survives_a_killed_redis_server_and_logout_works(
    redis_servers: list[RedisServer],
) -> None:
    async with running_app(redis_servers) as base:
        # The cookie: the session id, HttpOnly, SameSite=Lax.
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.get("/")
            assert r.status_code == 200 and r.json() == {"visits": 1, "cart": []}
            cookie = r.headers["set-cookie"]
            assert cookie.startswith("sid=")
            for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
                assert attribute in cookie.split("; ")

        # Two browsers at once; server 1 is killed (SIGKILL) in the middle.
        kill = trio.Event()
        sids: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(browse, base, "a", 12, 5, kill, sids)
            nursery.start_soon(browse, base, "b", 12, None, kill, sids)
            await kill.wait()
            await redis_servers[1].akill()
        assert len(sids) == 2

        # The sessions kept their data; the app still serves them, and logout works.
        async with client_with(base, sids[0]) as client:
            r = await client.get("/cart")
            assert r.status_code == 200 and len(r.json()["cart"]) == 12
            r = await client.post("/logout")
            assert r.status_code == 200 and r.json() == {"logged_out": True}
            assert "Max-Age=0" in r.headers["set-cookie"]
            assert "sid" not in client.cookies
            r = await client.get("/")  # a fresh session under a fresh id
            assert r.json() == {"visits": 1, "cart": []}
            assert sid_of(client) not in sids

        alive = [redis_servers[0], redis_servers[2]]
        async with trio_redisha.open_pool(*(s.url for s in alive), **FAST) as pool:
            store = SessionStore(pool)
            assert await store.load(sids[0]) == {}  # deleted
            assert len((await store.load(sids[1]))["cart"]) == 12  # the other one kept
        for server in alive:
            stored = await raw_hash(server, "session:" + sids[0])
            assert set(stored) == {MARKER_FIELD, b"c:"}  # only the clear stamp left

        # With every server down the app says so, and never hands out an empty session.
        for server in alive:
            await server.akill()
        async with client_with(base, sids[1]) as client:
            r = await client.get("/")
            assert r.status_code == 503
            assert r.json() == {"error": "session store unavailable"}
            assert "set-cookie" not in r.headers


@pytest.mark.parametrize(
    "cookie",
    ["A" * 43, "bad id!", "x" * 500, "../etc/passwd"],
    ids=["unknown", "bad-chars", "too-long", "path"],
)
async def test_unknown_or_invalid_ids_are_never_adopted(
    redis_servers: list[RedisServer], cookie: str
) -> None:
    async with (
        running_app(redis_servers) as base,
        client_with(base, cookie) as client,
    ):
        r = await client.get("/")
        assert r.status_code == 200 and r.json() == {"visits": 1, "cart": []}
        assert sid_of(client) != cookie


async def test_errors(redis_servers: list[RedisServer]) -> None:
    async with running_app(redis_servers) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/nope")).status_code == 404
        assert (await client.post("/")).status_code == 405
        assert (await client.get("/logout")).status_code == 405
        assert (await client.post("/cart")).status_code == 400  # no item
        assert (await client.post("/cart", params={"item": "x" * 101})).status_code == 400
        r = await client.post("/logout")  # without a session: fine
        assert r.status_code == 200


def test_command_line_needs_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDISHA_SERVERS", raising=False)
    with pytest.raises(SystemExit) as info:
        session_app.main(["--port", "0"])
    assert info.value.code == 2
