"""pytest fixtures starting real ``redis-server`` processes for each test.

Installed with trio-redisha, this plugin is loaded by pytest automatically
(the ``pytest11`` entry point ``trio_redisha``); ``-p no:trio_redisha`` turns
it off. Each fixture gives fresh, empty servers on free loopback ports and
stops them at teardown, whether the test passed, failed or was interrupted.

Fixtures:
    redis_server: one running :class:`~trio_redisha.testing.RedisServer`.
    redis_servers: a list of running servers, three unless the test is marked
        ``@pytest.mark.redis_servers(N)``.
    redis_factory: a :class:`~trio_redisha.testing.RedisServerGroup` making
        more: ``redis_factory(password="pw")`` starts one with options,
        ``redis_factory.many(9)`` starts nine in parallel,
        ``redis_factory.new(...)`` makes one not started yet.
    redis_executable: the path of ``redis-server`` (session scope); a test
        needing it fails with the command that installs it when it is missing.

A project's own ``conftest.py`` may define fixtures of the same names: pytest
then uses those, as it always prefers a conftest fixture to a plugin's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import (
    RedisServer,
    RedisServerGroup,
    RedisServerNotFoundError,
    find_redis_server,
    live_servers,
    stop_servers,
)

__all__ = ["redis_executable", "redis_factory", "redis_server", "redis_servers"]

#: Servers in ``redis_servers`` when the test does not say: the smallest
#: number with a majority that survives one failure.
DEFAULT_SERVERS = 3


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``redis_servers`` marker."""
    config.addinivalue_line(
        "markers", "redis_servers(count): how many servers the redis_servers fixture starts"
    )


@pytest.fixture(scope="session")
def redis_executable() -> str:
    """Path of ``redis-server``; fails the test with the install command when missing."""
    try:
        return find_redis_server()
    except RedisServerNotFoundError as exc:
        message = str(exc)
    # Outside the except block: pytest.fail inside it showed the message twice
    # ("During handling of the above exception, another exception occurred").
    pytest.fail(message, pytrace=False)


@pytest.fixture
def redis_factory(redis_executable: str) -> Iterator[RedisServerGroup]:
    """Make more servers, with options; every one is stopped at teardown."""
    with RedisServerGroup(executable=redis_executable) as group:
        yield group


@pytest.fixture
def redis_server(redis_factory: RedisServerGroup) -> RedisServer:
    """One fresh, empty redis-server for this test."""
    return redis_factory()


@pytest.fixture
def redis_servers(
    request: pytest.FixtureRequest, redis_factory: RedisServerGroup
) -> list[RedisServer]:
    """Independent fresh redis-servers: three, or N with ``@pytest.mark.redis_servers(N)``."""
    marker = request.node.get_closest_marker("redis_servers")
    count = DEFAULT_SERVERS
    if marker is not None:
        count = marker.kwargs.get("count", marker.args[0] if marker.args else DEFAULT_SERVERS)
    return redis_factory.many(count)


_BEFORE = pytest.StashKey[set[RedisServer]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note the servers already running (an outer session's, under ``pytester``)."""
    session.stash[_BEFORE] = set(live_servers())


# trylast: on an interrupted run pytest tears the session fixtures down in its own
# pytest_sessionfinish; their teardown must still find their servers running.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Safety net: stop every server this session started and did not stop."""
    before = session.stash.get(_BEFORE, set())
    stop_servers([s for s in live_servers() if s not in before])
