"""A notes app whose sessions survive Redis servers dying: Starlette + SessionMiddleware.

Log in with any name, write notes, delete them, log out. The notes live in the
*session* (one field per note), and the session lives on three independent
Redis servers through :class:`trio_redisha.SessionStore` and
:class:`trio_redisha.asgi.SessionMiddleware`: kill one server, freeze another
(``kill -STOP``), and the app carries on with every note. Two tabs adding
notes at the same moment both keep theirs, because each note is its own
session field and the middleware writes only the fields a request changed.

Run it (from the repository's root)::

    python -m examples.notes            # starts three throwaway redis-servers
    python -m examples.notes redis://127.0.0.1:6379 redis://127.0.0.1:6380 ...

then open http://127.0.0.1:8000. Served by Hypercorn on trio; needs the
``starlette`` extra (``pip install 'trio-redisha[starlette]'``).

What is worth copying:

* :func:`create_app` builds the Starlette app; the routes use only
  ``request.session``, so any session middleware that follows Starlette's
  convention fits (the load benchmark runs it on starsessions too);
* ``rotate_session(request)`` at login (a new session id: no fixation) and
  ``request.session.clear()`` at logout (deleted on every server);
* one session field per note (``note:<id>``), never a list in one field: a
  field is the unit that concurrent requests merge by;
* the cookie is ``HttpOnly; SameSite=Lax; Secure``: browsers accept a
  ``Secure`` cookie from ``http://127.0.0.1`` and ``localhost``;
  ``--insecure-cookies`` drops it for other clients over plain HTTP (curl);
* JSON routes under ``/api`` for scripts and the load benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import hypercorn.config
import hypercorn.trio
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import trio_redisha
from trio_redisha import SessionStore
from trio_redisha.asgi import SessionMiddleware, rotate_session

__all__ = ["COOKIE_NAME", "create_app", "main", "note_fields", "serve"]

logger = logging.getLogger("notes")

#: The session cookie's name.
COOKIE_NAME = "notes_session"
#: Limits that keep a session small (every request reads all of it).
MAX_NOTES = 200
MAX_NOTE = 500
MAX_NAME = 40
#: Session fields holding notes start with this.
NOTE_PREFIX = "note:"


def note_fields(session: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The session's notes as ``(field, note)``, oldest first."""
    notes = [(k, v) for k, v in session.items() if k.startswith(NOTE_PREFIX)]
    return sorted(notes, key=lambda kv: (kv[1].get("at", 0), kv[0]))


async def _body(request: Request, limit: int = 8 * MAX_NOTE) -> bytes | None:
    """The request's body, or None past ``limit`` bytes (never read whole into memory)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _form(request: Request) -> dict[str, str]:
    """The request's url-encoded form, first value of each field (small bodies only)."""
    body = await _body(request)
    if body is None:
        return {}
    pairs = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {k: v[0] for k, v in pairs.items()}


def _add_note(session: dict[str, Any], text: str) -> str | None:
    """Add a note; its field, or None if the text or the count is out of bounds."""
    text = text.strip()
    if not text or len(text) > MAX_NOTE or len(note_fields(session)) >= MAX_NOTES:
        return None
    field = NOTE_PREFIX + secrets.token_hex(6)
    session[field] = {"text": text, "at": time.time()}
    return field


_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; background: #f4f1ea; color: #222; margin: 0; }
main { max-width: 36rem; margin: 3rem auto; background: #fff; padding: 2rem 2.5rem;
       border-radius: 10px; box-shadow: 0 2px 12px rgba(0,0,0,.08); }
h1 { margin: 0 0 .2rem; font-size: 1.6rem; color: #a4161a; }
.sub { margin: 0 0 1.5rem; color: #666; }
form.inline { display: inline; }
input[type=text] { font: inherit; padding: .45rem .6rem; border: 1px solid #bbb;
                   border-radius: 6px; width: 70%; }
button { font: inherit; padding: .45rem .9rem; border: 0; border-radius: 6px;
         background: #a4161a; color: #fff; cursor: pointer; }
button.link { background: none; color: #a4161a; padding: 0 .3rem; }
ul { list-style: none; padding: 0; }
li { display: flex; justify-content: space-between; align-items: center;
     border-bottom: 1px solid #eee; padding: .5rem 0; }
footer { margin-top: 1.5rem; font-size: .85rem; color: #777; }
.up { color: #2b8a3e; } .down { color: #c92a2a; }
"""


def _page(body: str, servers: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>Notes - trio-redisha</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}<footer>Sessions on {servers}</footer></main></body></html>",
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def create_app(
    *,
    status: Callable[[], Sequence[tuple[str, bool]]] = lambda: (),
    rotate: Callable[[Request], Any] = rotate_session,
    middleware: Sequence[Any] = (),
) -> Starlette:
    """Build the notes app (the routes only: add the session middleware around it).

    Args:
        status: Returns ``(server, up)`` pairs shown in the page footer.
        rotate: Called with the request at login to give the session a new id.
        middleware: Starlette middleware, the session middleware among them.
    """

    def servers() -> str:
        items = [
            f"<span class={'up' if up else 'down'}>{html.escape(label)}</span>"
            for label, up in status()
        ]
        return ", ".join(items) or "Redis"

    async def index(request: Request) -> Response:
        session = request.session
        user = session.get("user")
        if not isinstance(user, str):
            return _page(
                "<h1>Notes</h1><div class=sub>A trio-redisha session demo. Any name will do.</div>"
                "<form method=post action=/login>"
                "<input type=text name=name id=name placeholder='Your name' required "
                f"maxlength={MAX_NAME} autofocus> <button id=login>Log in</button></form>",
                servers(),
            )
        items = "".join(
            f"<li><span class=note>{html.escape(str(note.get('text', '')))}</span>"
            "<form class=inline method=post action=/notes/delete>"
            f"<input type=hidden name=id value={html.escape(field)}>"
            "<button class=link title=Delete>&#x2715;</button></form></li>"
            for field, note in note_fields(session)
        )
        return _page(
            f"<h1>Notes</h1><div class=sub>Logged in as <b id=user>{html.escape(user)}</b>"
            " &middot; <form class=inline method=post action=/logout>"
            "<button class=link id=logout>log out</button></form></div>"
            "<form method=post action=/notes>"
            "<input type=text name=text id=text placeholder='A new note' required "
            f"maxlength={MAX_NOTE} autofocus> <button id=add>Add</button></form>"
            f"<ul id=notes>{items}</ul>",
            servers(),
        )

    async def login(request: Request) -> Response:
        name = (await _form(request)).get("name", "").strip()
        if not name or len(name) > MAX_NAME:
            return RedirectResponse("/", status_code=303)
        rotate(request)  # a new session id now that it is someone's: no fixation
        request.session["user"] = name
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()  # deleted on every server; the cookie expires
        return RedirectResponse("/", status_code=303)

    async def add(request: Request) -> Response:
        if "user" in request.session:
            _add_note(request.session, (await _form(request)).get("text", ""))
        return RedirectResponse("/", status_code=303)

    async def delete(request: Request) -> Response:
        field = (await _form(request)).get("id", "")
        if field.startswith(NOTE_PREFIX):
            request.session.pop(field, None)
        return RedirectResponse("/", status_code=303)

    async def api_notes(request: Request) -> Response:
        session = request.session
        if "user" not in session:
            return JSONResponse({"error": "log in first"}, status_code=401)
        if request.method == "POST":
            body = await _body(request)
            text = "" if body is None else body.decode("utf-8", "replace")
            field = _add_note(session, text)
            if field is None:
                return JSONResponse({"error": "empty, too long, or too many"}, status_code=400)
            return JSONResponse({"id": field}, status_code=201)
        return JSONResponse({"user": session["user"], "notes": dict(note_fields(session))})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/notes", add, methods=["POST"]),
            Route("/notes/delete", delete, methods=["POST"]),
            Route("/api/notes", api_notes, methods=["GET", "POST"]),
        ],
        middleware=list(middleware),
    )


async def serve(
    servers: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    secure_cookies: bool = True,
    pool_options: Mapping[str, Any] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the pool and serve the notes app until cancelled.

    Use as ``binds = await nursery.start(partial(serve, servers, port=0))``: it
    reports the addresses it listens on once it accepts connections.

    Args:
        servers: Redis URLs.
        host: Address to listen on.
        port: Port to listen on (``0``: any free one).
        secure_cookies: Mark the session cookie ``Secure``.
        pool_options: Keyword arguments of :func:`trio_redisha.open_pool`.
        task_status: Reports the addresses listened on.
    """
    async with trio_redisha.open_pool(*servers, **dict(pool_options or {})) as pool:
        store = SessionStore(pool)

        def status() -> list[tuple[str, bool]]:
            return [(s.label.removeprefix("redis://"), s.available) for s in pool.status()]

        app = create_app(status=status)
        asgi = SessionMiddleware(app, store, cookie_name=COOKIE_NAME, secure=secure_cookies)
        config = hypercorn.config.Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        await hypercorn.trio.serve(asgi, config, task_status=task_status)


@contextlib.asynccontextmanager
async def throwaway_servers(n: int = 3) -> AsyncIterator[list[Any]]:
    """Start ``n`` empty redis-servers on free ports for the block (nothing persisted).

    Uses the launcher of ``trio-redisha demo`` (each server in its own process
    group, killed if this process dies).
    """
    from trio_redisha._demo import LocalRedis, find_redis_server

    exe = find_redis_server()
    with tempfile.TemporaryDirectory(prefix="notes-redis-") as tmp:
        servers = [LocalRedis(exe, Path(tmp) / name, name) for name in "ABC"[:n]]
        try:
            for server in servers:
                await server.start()
            yield servers
        finally:
            for server in servers:
                server.close()


async def _run(args: argparse.Namespace, servers: list[str]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if not servers:
            local = await stack.enter_async_context(throwaway_servers())
            servers = [s.url for s in local]
            for s in local:
                print(f"redis-server {s.name}: {s.url} (pid {s.pids[-1]}; kill -9 or -STOP it)")
        run = partial(
            serve,
            servers,
            host=args.host,
            port=args.port,
            secure_cookies=not args.insecure_cookies,
        )
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(run)
            print(f"notes app on {' '.join(binds)}  (Ctrl+C to stop)", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m examples.notes [--host H] [--port P] [REDIS_URL...]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "servers",
        nargs="*",
        help="Redis URLs (default: $REDISHA_SERVERS, else three throwaway servers)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--insecure-cookies",
        action="store_true",
        help="no Secure flag (for clients other than a browser, over plain HTTP)",
    )
    args = parser.parse_args(argv)
    servers = args.servers or os.environ.get("REDISHA_SERVERS", "").replace(",", " ").split()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("hypercorn.error").propagate = False  # it has its own handler
    try:
        trio.run(_run, args, servers)
    except BaseException as exc:  # Ctrl+C: a clean exit, from inside the nursery too
        if not _interrupted(exc):
            raise
    return 0


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl+C: a KeyboardInterrupt, alone or in nested groups of them."""
    inner = getattr(exc, "exceptions", None)
    if inner is not None and isinstance(exc, BaseException):
        return bool(inner) and all(_interrupted(e) for e in inner)
    return isinstance(exc, KeyboardInterrupt)


if __name__ == "__main__":
    sys.exit(main())
