"""Shared pytest fixtures: real redis-server processes and TLS material.

Fixtures:
    redis_server: one fresh, empty server per test.
    redis_servers: a list of three independent fresh servers.
    redis_factory: ``redis_factory(**options) -> RedisServer`` makes more (started);
        ``redis_factory.many(n, **options)`` starts n concurrently;
        ``redis_factory.new(**options)`` makes one unstarted (for ``await s.astart()``).
        Options are those of :class:`RedisServer` (password, acl_users, unix_socket,
        tls, ...). Every server made is stopped at teardown, even if the test failed.
    tls_files: CA + server certificate files (session scope); skips when
        redis-server lacks TLS.
    tls_redis_server: a server speaking TLS only, with ``tls_files``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.redis_server import (
    RedisServer,
    RedisServerNotFoundError,
    find_redis_server,
    start_servers,
    stop_all_servers,
)
from tests.harness.tls import TLSFiles, make_tls_files, redis_tls_support


class RedisFactory:
    """Makes :class:`RedisServer` instances and stops them all at teardown."""

    def __init__(self, executable: str) -> None:
        """Remember the executable; no server yet."""
        self.executable = executable
        self.servers: list[RedisServer] = []

    def new(self, **options: Any) -> RedisServer:
        """Make a server without starting it (tracked for teardown).

        Args:
            **options: Keyword arguments of :class:`RedisServer`.

        Returns:
            The unstarted server.
        """
        options.setdefault("executable", self.executable)
        server = RedisServer(**options)
        self.servers.append(server)
        return server

    def __call__(self, **options: Any) -> RedisServer:
        """Make and start a server.

        Args:
            **options: Keyword arguments of :class:`RedisServer`.

        Returns:
            The running server.
        """
        server = self.new(**options)
        server.start()
        return server

    def many(self, n: int, **options: Any) -> list[RedisServer]:
        """Make and start ``n`` servers with the same options, concurrently.

        Args:
            n: How many.
            **options: Keyword arguments of :class:`RedisServer`.

        Returns:
            The running servers.
        """
        servers = [self.new(**options) for _ in range(n)]
        start_servers(servers)
        return servers

    def stop_all(self) -> None:
        """Stop every server made here (idempotent).

        SIGKILL rather than SIGTERM: nothing is persisted, and Redis only acts on
        SIGTERM at its next cron tick (~100 ms), which would slow every test.
        """
        for server in self.servers:
            server.stop(graceful=False)


@pytest.fixture(scope="session")
def redis_executable() -> str:
    """Path of redis-server; fails the test with an install hint when missing."""
    try:
        return find_redis_server()
    except RedisServerNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def redis_factory(redis_executable: str) -> Iterator[RedisFactory]:
    """Make more servers with options; all are stopped at teardown."""
    factory = RedisFactory(redis_executable)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def redis_server(redis_factory: RedisFactory) -> RedisServer:
    """One fresh, empty redis-server for this test."""
    return redis_factory()


@pytest.fixture
def redis_servers(redis_factory: RedisFactory) -> list[RedisServer]:
    """Three independent fresh redis-servers for this test."""
    return redis_factory.many(3)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory, redis_executable: str) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1/localhost, written to a tmpdir."""
    reason = redis_tls_support(redis_executable)
    if reason is not None:
        pytest.skip(f"TLS tests need redis-server built with TLS: {reason}")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_redis_server(redis_factory: RedisFactory, tls_files: TLSFiles) -> RedisServer:
    """A fresh redis-server speaking TLS only (``server.url`` is ``rediss://``)."""
    return redis_factory(tls=tls_files)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Safety net: stop any server a test started and forgot."""
    stop_all_servers()
