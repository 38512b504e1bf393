"""OpenTelemetry metrics read back through the SDK's in-memory reader, real servers."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.harness.helpers import FAST, wait_until
from tests.test_pool import holds, ready_pool
from trio_redisha import HashMap, Pool, QuorumError, ServerState, SessionStore
from trio_redisha.testing import RedisServer


def collect(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point of every metric, by metric name."""
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "trio_redisha"
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def total(points: list[Any], **attrs: Any) -> Any:
    return sum(p.value for p in points if all(p.attributes.get(k) == v for k, v in attrs.items()))


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


async def test_operation_duration_per_server_with_semantic_attributes(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    async with ready_pool(*(s.url for s in redis_servers), meter_provider=provider) as pool:
        for _ in range(5):
            await pool.execute("SET", "k", "v")
        await pool.execute("HGET", "k", "f")  # WRONGTYPE on every server
        metrics = collect(reader)  # while it is open: a closed pool is not reported
    points = metrics["db.client.operation.duration"]
    sets = [p for p in points if p.attributes["db.operation.name"] == "SET"]
    assert len(sets) == 3  # one series per server
    for point, server in zip(
        sorted(sets, key=lambda p: p.attributes["server.port"]),
        sorted(redis_servers, key=lambda s: s.port),
        strict=True,
    ):
        assert point.attributes == {
            "db.system.name": "redis",
            "server.address": "127.0.0.1",
            "server.port": server.port,
            "db.operation.name": "SET",
        }
        assert point.count == 5
        assert 0 < point.sum < 5.0
    errors = [p for p in points if p.attributes["db.operation.name"] == "HGET"]
    assert {p.attributes["error.type"] for p in errors} == {"WRONGTYPE"}
    assert total(metrics["redisha.fanout.replies.expected"]) == 18
    assert total(metrics["redisha.fanout.replies.received"]) == 18


async def test_timeouts_circuits_and_quorum_failures(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    a, b, c = redis_servers
    async with ready_pool(a.url, b.url, c.url, meter_provider=provider) as pool:
        c.freeze()
        try:
            replies = await pool.execute("PING")
            assert replies[:2] == ["PONG", "PONG"]
            with pytest.raises(QuorumError):
                await pool.execute("PING", quorum=3)
            metrics = collect(reader)
            durations = metrics["db.client.operation.duration"]
            timeouts = [p for p in durations if p.attributes.get("error.type") == "ServerTimeout"]
            assert [p.attributes["server.port"] for p in timeouts] == [c.port]
            assert total(metrics["redisha.quorum.failures"]) == 1
            circuits = {
                p.attributes["server.port"]: p.value for p in metrics["redisha.server.circuit_open"]
            }
            assert circuits == {a.port: 0, b.port: 0, c.port: 1}
            states = metrics["redisha.server.state"]
            assert total(states, **{"server.port": c.port, "redisha.server.state": "suspect"}) == 1
            assert total(states, **{"server.port": c.port, "redisha.server.state": "up"}) == 0
            assert total(states, **{"server.port": a.port, "redisha.server.state": "up"}) == 1
            # Expected 3 + 3, received 2 + 2 (the skipped server is still expected).
            assert total(metrics["redisha.fanout.replies.expected"]) == 6
            assert total(metrics["redisha.fanout.replies.received"]) == 4
        finally:
            c.thaw()
        await wait_until(
            holds(lambda: pool.status()[2].state is ServerState.UP), what="circuit closed"
        )
        circuits = {
            p.attributes["server.port"]: p.value
            for p in collect(reader)["redisha.server.circuit_open"]
        }
        assert circuits[c.port] == 0


async def test_made_up_command_names_do_not_grow_the_attribute_sets(
    redis_server: RedisServer, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_redisha import otel

    monkeypatch.setattr(otel, "MAX_ATTRIBUTE_SETS", 10)
    provider = MeterProvider(metric_readers=[reader])
    async with ready_pool(redis_server.url, meter_provider=provider) as pool:
        for i in range(50):
            await pool.execute(f"NOSUCH{i}")
    names = {
        p.attributes["db.operation.name"] for p in collect(reader)["db.client.operation.duration"]
    }
    assert len(names) <= 11 and "other" in names


async def test_made_up_error_codes_do_not_grow_the_attribute_sets(
    redis_server: RedisServer, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A script's error_reply makes up its code: each one was its own
    # error.type series, past the cap that bounds the command names.
    from trio_redisha import otel

    monkeypatch.setattr(otel, "MAX_ATTRIBUTE_SETS", 10)
    provider = MeterProvider(metric_readers=[reader])
    script = "return redis.error_reply('CODE' .. ARGV[1] .. ' made up')"
    async with ready_pool(redis_server.url, meter_provider=provider) as pool:
        for i in range(50):
            await pool.execute("EVAL", script, 0, i)
    errors = {
        p.attributes.get("error.type")
        for p in collect(reader)["db.client.operation.duration"]
        if "error.type" in p.attributes
    }
    assert len(errors) <= 11 and "other" in errors


async def test_no_meter_provider_means_no_instruments(redis_server: RedisServer) -> None:
    async with ready_pool(redis_server.url) as pool:
        assert pool._metrics is None
        await pool.execute("PING")
        assert pool.stats.replies_expected == 1 and pool.stats.replies_received == 1


async def test_a_command_name_given_as_bytearray_is_measured_by_its_name(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    async with ready_pool(*(s.url for s in redis_servers), meter_provider=provider) as pool:
        await pool.execute(bytearray(b"set"), "k", "v")
        await pool.execute(memoryview(bytearray(b"SET")), "k", "v")
    points = collect(reader)["db.client.operation.duration"]
    sets = [p for p in points if p.attributes["db.operation.name"] == "SET"]
    assert len(sets) == 3
    assert all(p.count == 2 for p in sets)


def watching(pool: Pool) -> bool:
    """Whether a task still watches for the reply of a server a call did not wait for."""
    assert pool._nursery is not None
    return any(t.name.startswith("redisha-late") for t in pool._nursery.child_tasks)


def measured(reader: InMemoryMetricReader, port: int, op: str) -> dict[str | None, int]:
    """Measurements of ``op`` on the server at ``port``, by ``error.type``."""
    out: dict[str | None, int] = {}
    for p in collect(reader).get("db.client.operation.duration", []):
        if p.attributes["server.port"] == port and p.attributes["db.operation.name"] == op:
            error = p.attributes.get("error.type")
            out[error] = out.get(error, 0) + p.count
    return out


async def test_every_pool_on_one_provider_is_reported_and_a_closed_one_let_go(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    # The provider hands every pool the same meter: the second pool's
    # instruments were the first one's, its callbacks dropped, and the first
    # pool was kept alive (and reported, frozen) by them after it closed.
    provider = MeterProvider(metric_readers=[reader])
    a, b, c = redis_servers
    async with ready_pool(b.url, c.url, meter_provider=provider) as second:
        async with ready_pool(a.url, meter_provider=provider) as first:
            await first.execute("PING")
            for _ in range(3):
                await second.execute("PING")
            metrics = collect(reader)
            by_pool = {
                p.attributes["redisha.pool"]: p.value
                for p in metrics["redisha.fanout.replies.expected"]
            }
            assert sorted(by_pool.values()) == [1, 6]
            states = metrics["redisha.server.state"]
            assert {p.attributes["server.port"] for p in states} == {a.port, b.port, c.port}
            assert total(states, **{"server.port": a.port, "redisha.server.state": "up"}) == 1
            assert total(states, **{"server.port": b.port, "redisha.server.state": "up"}) == 1
            assert len({p.attributes["redisha.pool"] for p in states}) == 2
        await second.execute("PING")
        metrics = collect(reader)
        # The closed pool's series stop; the other's go on.
        assert [p.value for p in metrics["redisha.fanout.replies.expected"]] == [8]
        ports = {p.attributes["server.port"] for p in metrics["redisha.server.state"]}
        assert ports == {b.port, c.port}
        ports = {p.attributes["server.port"] for p in metrics["redisha.server.circuit_open"]}
        assert ports == {b.port, c.port}
        ref = weakref.ref(first)
        del first
        gc.collect()
        assert ref() is None, "the closed pool is still referenced"
    assert collect(reader).get("redisha.fanout.replies.expected") is None


async def test_pools_opened_one_after_another_reuse_their_numbers(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    # Each pool took a new number: past the SDK's 2,000 attribute sets (about
    # 134 pools' state gauges), a live pool's series merged into the overflow point.
    provider = MeterProvider(metric_readers=[reader])
    url = redis_servers[0].url
    async with ready_pool(url, meter_provider=provider) as kept:
        for _ in range(150):
            async with ready_pool(url, meter_provider=provider) as passing:
                await passing.execute("PING")
        async with ready_pool(url, meter_provider=provider) as last:
            await last.execute("PING")
            await kept.execute("PING")
            states = collect(reader)["redisha.server.state"]
            pools = {p.attributes.get("redisha.pool") for p in states}
            assert pools == {1, 2}  # the kept pool's, and the one reused by each pool since
            assert len(states) == 2 * len(ServerState)  # no overflow point
            # A reused number's counters go on from the closed pools' counts:
            # never backwards.
            expected = {
                p.attributes["redisha.pool"]: p.value
                for p in collect(reader)["redisha.fanout.replies.expected"]
            }
            assert expected == {1: 1, 2: 151}


@pytest.mark.parametrize("wait_for", [2, 3], ids=["not-awaited", "awaited-to-the-deadline"])
async def test_a_server_that_misses_the_deadline_is_measured_once(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader, wait_for: int
) -> None:
    # wait_for=2: not awaited, watched until the deadline, then measured as a
    # timeout. wait_for=3: awaited until the deadline, when the pool judges it
    # at once (or a watcher does). Either way one timeout is measured.
    provider = MeterProvider(metric_readers=[reader])
    a, b, c = redis_servers
    async with ready_pool(a.url, b.url, c.url, meter_provider=provider, **FAST) as pool:
        c.freeze()
        try:
            replies = await pool.execute("PING", wait_for=wait_for)
            assert replies[:2] == ["PONG", "PONG"]
            await wait_until(lambda: measured(reader, c.port, "PING"), what="c measured")
            await wait_until(lambda: not watching(pool), what="no watcher left")
            assert measured(reader, c.port, "PING") == {"ServerTimeout": 1}
            assert measured(reader, a.port, "PING") == {None: 1}
        finally:
            c.thaw()


async def test_a_late_reply_before_the_deadline_is_measured_as_a_reply(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    a, b, c = redis_servers
    async with ready_pool(a.url, b.url, c.url, meter_provider=provider, timeout=3.0) as pool:
        c.freeze()
        try:
            replies = await pool.execute("PING", wait_for=2)
            assert replies[:2] == ["PONG", "PONG"]
        finally:
            c.thaw()  # it answers the PING it holds, well before the 3 s deadline
        await wait_until(lambda: measured(reader, c.port, "PING"), what="c measured")
        await wait_until(lambda: not watching(pool), what="no watcher left")
        assert measured(reader, c.port, "PING") == {None: 1}
        assert pool.stats.replies_received == 3


async def test_crdt_reads_short_of_their_quorum_are_counted(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    async with ready_pool(*(s.url for s in redis_servers), meter_provider=provider, **FAST) as pool:
        store = SessionStore(pool, ttl=100)
        sid = store.new_id()
        await store.save(sid, {"a": 1})
        for server in redis_servers:
            server.kill()
        with pytest.raises(QuorumError):
            await store.load(sid)
        with pytest.raises(QuorumError):
            await HashMap(pool, "h").get()
        with pytest.raises(QuorumError):
            await pool.execute("PING", quorum=1)
        assert pool.stats.quorum_failures == 3
        assert total(collect(reader)["redisha.quorum.failures"]) == 3


async def test_a_hedged_crdt_read_measures_the_server_it_did_not_wait_for(
    redis_servers: list[RedisServer], reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    a, b, c = redis_servers
    async with ready_pool(a.url, b.url, c.url, meter_provider=provider, **FAST) as pool:
        store = SessionStore(pool, ttl=100, hedged=True, read_quorum=2, write_quorum=2)
        sid = store.new_id()
        await store.save(sid, {"a": 1})
        c.freeze()
        try:
            assert await store.load(sid) == {"a": 1}
            await wait_until(lambda: measured(reader, c.port, "HGETALL"), what="c measured")
            await wait_until(lambda: not watching(pool), what="no watcher left")
            assert measured(reader, c.port, "HGETALL") == {"ServerTimeout": 1}
        finally:
            c.thaw()
