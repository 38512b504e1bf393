"""examples/notes.py over HTTP (httpx), served by Hypercorn on trio over three real servers.

Login, notes added from two "tabs" of one session at the same moment (none
lost: one field per note), a deleted note, a killed server, logout, and the
command line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import trio

from examples import notes
from tests.harness import asgi_server
from tests.harness.helpers import FAST
from trio_redisha.testing import RedisServer

tab = partial(asgi_server.client_with, cookie=notes.COOKIE_NAME)


@asynccontextmanager
async def running_notes(servers: list[RedisServer]) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(
                notes.serve,
                [s.url for s in servers],
                port=0,
                secure_cookies=False,  # httpx sends no Secure cookie over http://
                pool_options=FAST,
            )
        )
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()


async def test_notes_app(redis_servers: list[RedisServer]) -> None:
    async with running_notes(redis_servers) as base, httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/")
        assert r.status_code == 200 and "Log in" in r.text
        assert "set-cookie" not in r.headers  # a visitor who did nothing gets no cookie
        assert (await client.get("/api/notes")).status_code == 401

        r = await client.post("/login", data={"name": "ada"})
        assert r.status_code == 303
        sid = client.cookies[notes.COOKIE_NAME]
        assert (await client.get("/")).text.count("Logged in as <b id=user>ada</b>") == 1

        # Twenty notes at once from twenty tabs of one session: all kept.
        async def add(i: int) -> None:
            async with tab(base, sid) as t:
                r = await t.post("/api/notes", content=f"note {i}")
                assert r.status_code == 201, r.text

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(add, i)
        r = await client.get("/api/notes")
        shown = r.json()["notes"]
        assert sorted(n["text"] for n in shown.values()) == sorted(f"note {i}" for i in range(20))

        await redis_servers[0].akill()
        field = next(iter(shown))
        r = await client.post("/notes/delete", data={"id": field})
        assert r.status_code == 303
        r = await client.post("/notes", data={"text": "<script>x</script>"})
        page = (await client.get("/")).text
        assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
        assert len((await client.get("/api/notes")).json()["notes"]) == 20

        assert (await client.post("/api/notes", content="")).status_code == 400
        assert (await client.post("/api/notes", content="x" * 501)).status_code == 400

        r = await client.post("/logout")
        assert r.status_code == 303 and notes.COOKIE_NAME not in client.cookies
        async with tab(base, sid) as old:  # the old cookie opens nothing any more
            assert (await old.get("/api/notes")).status_code == 401


def test_ctrl_c_is_a_clean_exit(redis_servers: list[RedisServer]) -> None:
    # The app runs its server in a nursery of its own: Ctrl+C arrived as a group
    # around KeyboardInterrupt, which a plain suppress(KeyboardInterrupt) lets
    # through (a traceback, exit status 1).
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.notes", "--port", "0", *(s.url for s in redis_servers)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # blocks until the app serves
            if line.startswith("notes app on "):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
