"""Keeping a pool's connections alive: connect, back off, reconnect, probe.

One :meth:`Upkeep.keep` task per server loops forever: connect and run the
handshake (bounded by ``connect_timeout``), run the connection until it
breaks, then try again: at once after a drop, after an exponential backoff
with full jitter after a failed attempt, and so after connections that keep
closing within ``settle_time`` of their handshake (a proxy dropping clients, a
CLIENT KILL loop): such flaps count as failed attempts, and are logged at DEBUG
after the first until a connection lasts. A
server whose circuit opened after a timeout (:class:`~._server.Server`) gets a
probe task that PINGs it until it answers. Every state change goes through
the server's own transitions; the fan-out path never waits on anything here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from ..config import ServerSpec
from ..connection import DEFAULT_MAX_PENDING, DEFAULT_STALL_TIMEOUT, Connection, connect
from ..exceptions import PoolClosed, RedisHAError, ReplyError
from ..resp import DEFAULT_LIMITS, Limits
from ._server import Server

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SETTLE_TIME",
    "DEFAULT_TRIP_AFTER",
    "Connector",
    "Upkeep",
]

logger = logging.getLogger("trio_redisha.pool")

#: Reconnect backoff: first retry after up to BASE, doubling to at most CAP
#: (full jitter, as in the AWS architecture blog's "Exponential Backoff and
#: Jitter"). A cap of 2 s keeps "a server that is back is used again within 5 s".
DEFAULT_BACKOFF_BASE: Final = 0.05
DEFAULT_BACKOFF_CAP: Final = 2.0
#: Seconds allowed to connect and run the handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 2.0
#: A connection that closes sooner than this after its handshake counts as a failed
#: attempt (backoff, quiet logs). Well under Redis's shortest idle timeout (an idle
#: client is closed more than 1 s after its last command), well over the milliseconds
#: a proxy or a CLIENT KILL loop takes to drop a new client.
DEFAULT_SETTLE_TIME: Final = 0.5
#: Consecutive timeouts after which a server's circuit opens ("a hung server
#: costs at most one deadline").
DEFAULT_TRIP_AFTER: Final = 1

#: Opens a connection to one server and runs its handshake (see :func:`connect`).
Connector = Callable[[ServerSpec], Awaitable[Connection]]


class Upkeep:
    """The connection upkeep of one pool.

    Args:
        connect_timeout: Seconds allowed for a connect and its handshake.
        backoff_base: First reconnect delay bound, in seconds.
        backoff_cap: Largest reconnect delay bound, in seconds.
        settle_time: Seconds a connection must last for the next reconnect to be
            immediate (and its transitions logged as warnings).
        trip_after: Consecutive timeouts that open a server's circuit.
        probe_interval: Seconds a probe's PING may take.
        connector: Opens a connection; ``None`` uses :func:`connect` with the
            options below.
        limits: Parser safety limits.
        use_hiredis: Parser choice.
        max_pending: Outstanding replies allowed per connection.
        stall_timeout: A connection silent this long with replies owed is rebuilt.
        on_change: Called whenever a server connected or an attempt failed.
        on_stop: Called when an upkeep task is cancelled (the pool is stopping).
    """

    def __init__(
        self,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        settle_time: float = DEFAULT_SETTLE_TIME,
        trip_after: int = DEFAULT_TRIP_AFTER,
        probe_interval: float = 0.5,
        connector: Connector | None = None,
        limits: Limits = DEFAULT_LIMITS,
        use_hiredis: bool | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        on_change: Callable[[], None] = lambda: None,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.settle_time = settle_time
        self.trip_after = trip_after
        self.probe_interval = probe_interval
        self.random = random.Random()
        self._on_change = on_change
        self._on_stop = on_stop
        if connector is None:

            async def connector(spec: ServerSpec) -> Connection:
                return await connect(
                    spec,
                    limits=limits,
                    use_hiredis=use_hiredis,
                    max_pending=max_pending,
                    stall_timeout=stall_timeout,
                )

        self._connector = connector

    def backoff(self, attempt: int) -> float:
        """The delay before reconnect attempt ``attempt + 1`` (full jitter)."""
        bound = min(self.backoff_cap, self.backoff_base * (2 ** min(attempt, 30)))
        return self.random.uniform(0, bound)

    async def keep(self, server: Server) -> None:
        """Keep ``server`` connected until cancelled (one task per server)."""
        attempt = 0
        # The last connection closed within settle_time (the server accepts clients,
        # then drops them): its "is down" was logged once; the flaps that follow are
        # logged at DEBUG, and "is back up" only once a connection lasts.
        flapping = False
        while True:
            try:
                with trio.fail_after(self.connect_timeout):
                    conn = await self._connector(server.spec)
            except (RedisHAError, trio.TooSlowError, OSError) as exc:
                text = "connect timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
                if server.disconnected(text):
                    logger.warning("redis server %s is down: %s", server.label, text)
                # A real outage: the connection that ends it is news at once.
                flapping = False
                self._on_change()
                await trio.sleep(self.backoff(attempt))
                attempt += 1
                continue
            opened = trio.current_time()
            recovered = server.connected(conn)
            self._on_change()
            if recovered and flapping:
                logger.debug("reconnected to flapping redis server %s", server.label)
            elif recovered:
                logger.warning("redis server %s is back up", server.label)
            else:
                logger.info("connected to redis server %s", server.label)
            try:
                error = await self._run(conn, server, announce=recovered and flapping)
            finally:
                conn.close_now()
            lasted = trio.current_time() - opened >= self.settle_time
            if server.disconnected(error):
                if flapping and not lasted:
                    logger.debug("redis server %s dropped again: %s", server.label, error)
                else:
                    logger.warning("redis server %s is down: %s", server.label, error)
            self._on_change()
            if lasted:
                attempt = 0
            elif flapping:
                # Closed right after the handshake, again: count it as a failed attempt,
                # or the task reconnects in a tight loop (hundreds of connects a second).
                await trio.sleep(self.backoff(attempt))
                attempt += 1
            # Otherwise a drop is news: the first reconnect is immediate.
            flapping = not lasted

    async def _run(
        self, conn: Connection, server: Server, *, announce: bool
    ) -> BaseException | str:
        """Run ``conn`` until it closes; return why it closed.

        With ``announce``, log "is back up" once the connection has lasted
        ``settle_time`` (the server was flapping: its reconnects were quiet).
        """
        if not announce:
            return await self._run_until_closed(conn)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_when_settled, server, conn)
            try:
                return await self._run_until_closed(conn)
            finally:
                nursery.cancel_scope.cancel()

    async def _run_until_closed(self, conn: Connection) -> BaseException | str:
        """Run ``conn``; return the error that broke it, or why it ended."""
        try:
            await conn.run()
        except RedisHAError as exc:
            return exc
        except BaseException:
            # Only the pool's shutdown cancels this task. Calls that the connection's
            # teardown is about to wake must see a closed pool: mark it before any
            # checkpoint lets them run.
            self._on_stop()
            raise
        return "connection closed"

    async def _announce_when_settled(self, server: Server, conn: Connection) -> None:
        """Log that ``server`` is back up if ``conn`` is still its connection after settling."""
        await trio.sleep(self.settle_time)
        if server.conn is conn:
            logger.warning("redis server %s is back up", server.label)

    def timed_out(self, server: Server, nursery: trio.Nursery | None) -> None:
        """Record a timeout; when it opens the circuit, start probing in ``nursery``."""
        if server.timed_out(self.trip_after):
            logger.warning(
                "redis server %s timed out; skipping it until it answers a probe",
                server.label,
            )
            if not server.probing and nursery is not None:
                server.probing = True
                nursery.start_soon(self._probe, server, name=f"redisha-probe {server.label}")

    async def _probe(self, server: Server) -> None:
        """PING a suspect server until it answers PONG, then close its circuit.

        An error reply (``-BUSY`` while a long script runs, ``-LOADING``) means
        the server is there but not usable yet: the circuit stays open and the
        probing goes on. It ends when the circuit closes, when the connection
        is gone (the upkeep task reconnects; a new connection starts healthy)
        or when the pool closes.
        """
        try:
            attempt = 0
            while server.circuit_open:
                conn = server.conn
                if conn is None:
                    return  # keep() reconnects; a new connection starts healthy
                try:
                    await conn.execute("PING", timeout=self.probe_interval)
                except PoolClosed:
                    return
                except ReplyError as exc:
                    logger.debug("probe of redis server %s: %s", server.label, exc)
                    await trio.sleep(self.backoff(attempt))
                    attempt += 1
                    continue
                except RedisHAError:
                    # Timed out, or the connection broke: keep() will notice the
                    # latter and change the state, which ends this loop.
                    await trio.sleep(self.backoff(attempt))
                    attempt += 1
                    continue
                if server.probe_succeeded():
                    logger.warning("redis server %s answers again", server.label)
        finally:
            server.probing = False
