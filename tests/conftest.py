"""Fixtures of this repository's tests.

The server fixtures (``redis_server``, ``redis_servers``, ``redis_factory``,
``redis_executable``) come from the ``trio_redisha.testing`` pytest plugin,
the same ones users get; this file adds the TLS material on top.

Fixtures:
    tls_files: CA + server certificate files (session scope); skips when
        redis-server lacks TLS.
    tls_redis_server: a server speaking TLS only, with ``tls_files``.
"""

from __future__ import annotations

import pytest

from tests.harness.tls import make_tls_files
from trio_redisha.testing import RedisServer, RedisServerGroup, TLSFiles, redis_tls_support

#: The type of the ``redis_factory`` fixture, under the name the tests import.
RedisFactory = RedisServerGroup


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory, redis_executable: str) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1/localhost, written to a tmpdir."""
    reason = redis_tls_support(redis_executable)
    if reason is not None:
        pytest.skip(f"TLS tests need redis-server built with TLS: {reason}")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_redis_server(redis_factory: RedisServerGroup, tls_files: TLSFiles) -> RedisServer:
    """A fresh redis-server speaking TLS only (``server.url`` is ``rediss://``)."""
    return redis_factory(tls=tls_files)
