"""Redis commands as pool methods: only the names of Redis's command table.

``pool.hset(...)`` runs HSET (the seed's style); a typo, ``pool.close()`` or a
command that cannot run on shared connections is an AttributeError at once,
never a command sent to the servers.
"""

from __future__ import annotations

import pytest

from tests.harness.helpers import command_calls
from tests.test_pool import ready_pool
from trio_redisha import ConfigurationError, Pool, UnsupportedCommand
from trio_redisha._commands import COMMANDS
from trio_redisha.pool._guard import _STATEFUL
from trio_redisha.pool._pool import command_method
from trio_redisha.testing import RedisServer


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("hset", ("HSET",)),
        ("setnx", ("SETNX",)),
        ("sort_ro", ("SORT_RO",)),
        ("client_list", ("CLIENT", "LIST")),
        ("config_get", ("CONFIG", "GET")),
        ("acl_whoami", ("ACL", "WHOAMI")),
        ("object_encoding", ("OBJECT", "ENCODING")),
        ("client_no_evict", ("CLIENT", "NO-EVICT")),
        ("memory_malloc_stats", ("MEMORY", "MALLOC-STATS")),
        ("restore_asking", ("RESTORE-ASKING",)),
        ("client", ("CLIENT",)),
        ("timout", None),
        ("pign", None),
        ("close", None),
        ("client_nosuch", None),
        ("HSET", None),
        ("_private", None),
    ],
)
def test_method_names_map_to_the_command_table(name: str, words: tuple[str, ...] | None) -> None:
    assert command_method(name) == words


def test_every_command_of_the_table_has_a_method() -> None:
    for name in COMMANDS:
        method = name.replace("|", "_").replace("-", "_")
        words = command_method(method)
        assert words is not None, name
        assert "|".join(words).lower() == name


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("timout", "did you mean 'timeout'"),
        ("pign", "did you mean 'ping'"),
        ("close", "aclose()"),
        ("client_lst", "'client_list'"),
        ("GET", "lower case, 'pool.get'"),
    ],
)
def test_a_name_that_is_no_usable_command_is_an_attribute_error(name: str, hint: str) -> None:
    pool = Pool("redis://127.0.0.1:1")
    with pytest.raises(AttributeError) as caught:
        getattr(pool, name)
    assert hint in str(caught.value)
    assert not hasattr(pool, name)


async def test_no_command_is_sent_for_a_bad_name(redis_server: RedisServer) -> None:
    async with ready_pool(redis_server.url) as pool:
        before = pool.stats.replies_expected
        with pytest.raises(AttributeError):
            await pool.pign()
        with pytest.raises(AttributeError, match="aclose"):
            await pool.close()
        assert pool.stats.replies_expected == before
        assert await command_calls(redis_server, "close") == 0
        # Subcommands as methods reach the server.
        assert await pool.acl_whoami() == [b"default"]
        assert await pool.config_get("maxmemory") in (
            [[b"maxmemory", b"0"]],
            [{b"maxmemory": b"0"}],
        )
        assert b"id=" in (await pool.client_list())[0]
        assert await pool.setnx("k", 1) == [1]
        # A real command refused on shared connections fails when called, sending nothing.
        with pytest.raises(UnsupportedCommand, match="shared connections"):
            await pool.multi()
        assert await command_calls(redis_server, "multi") == 0


def test_the_guard_covers_the_tables_blocking_and_transaction_commands() -> None:
    # The guard's list is hand-written (the table's flags are not the same set:
    # XREAD is flagged blocking but blocks only with BLOCK, which the guard checks;
    # @connection holds PING and ECHO). A regenerated table must not bring a
    # blocking or transaction command the list misses.
    for name, info in COMMANDS.items():
        if "|" in name or name in ("xread", "xreadgroup"):
            continue
        if "blocking" in info.flags or "@transaction" in info.acl_categories:
            assert name.upper() in _STATEFUL, name
        if name.endswith("subscribe"):
            assert name.upper() in _STATEFUL, name


async def test_the_named_methods_take_executes_keywords(redis_servers: list[RedisServer]) -> None:
    # ping/get/set/setnx/delete took timeout= only (set: quorum= too), while every
    # other command method takes execute()'s keywords: pool.get(k, wait_for=1)
    # was a bare TypeError.
    async with ready_pool(*(s.url for s in redis_servers)) as pool:
        assert await pool.ping(quorum=3, wait_for=3, decode=True) == ["PONG"] * 3
        assert await pool.ping("hi", decode=True) == ["hi"] * 3
        assert await pool.set("k", "v", "EX", 60, quorum=3, wait_for=3) == ["OK"] * 3
        assert all(0 < ttl <= 60 for ttl in await pool.ttl("k"))
        assert await pool.set("k", "w", "NX") == [None] * 3  # SET's own options
        assert await pool.get("k", decode=True, quorum=2) == ["v"] * 3
        first = await pool.get("k", wait_for=1)
        assert first.ok_count >= 1 and b"v" in first
        assert await pool.setnx("n", 1, quorum=3, decode=False) == [1] * 3
        assert await pool.delete("k", "n", quorum=3, wait_for=3) == [2] * 3
        with pytest.raises(ConfigurationError):
            await pool.get("k", wait_for=4)  # checked as execute() checks it
        with pytest.raises(TypeError):  # and typed: strict mypy flags the misspelling
            await pool.get("k", wait_fr=1)  # type: ignore[call-arg]
        # The command methods too (their keywords were untyped: **Any).
        with pytest.raises(TypeError):
            await pool.hset("h", "f", "v", qourum=2)  # type: ignore[call-arg]
