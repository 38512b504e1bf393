"""Tests of trio_redisha.testing: real redis-server processes, their faults, the fixtures.

Everything here runs real processes and checks, from /proc, that none is left
behind after each test (``no_leaked_processes``), including when a test fails,
is interrupted, or the process that started the servers is killed.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio
import trio.lowlevel

import trio_redisha.testing
import trio_redisha.testing.pytest_plugin
from tests.conftest import RedisFactory
from tests.harness.helpers import eventually, no_leaked_processes, wait_until
from trio_redisha import ConfigurationError, RedisHAError, ReplyError
from trio_redisha.testing import (
    RedisServer,
    RedisServerGroup,
    RedisServerNotFoundError,
    RedisStartError,
    astart_servers,
    decode_reply,
    encode_command,
    find_redis_server,
    free_port,
    live_servers,
    local_redis_servers,
    open_raw_connection,
    open_redis_server,
    open_redis_servers,
    pid_alive,
    redis_server_version,
    reply_end,
    spawned_pids,
    start_servers,
)
from trio_redisha.testing import _server as server_module

pytestmark = pytest.mark.usefixtures(no_leaked_processes.__name__)

pytest_plugins = ["pytester"]


# ---------------------------------------------------------------- RESP helpers


def test_encode_and_reply_end() -> None:
    assert encode_command("SET", b"k", 1) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
    assert reply_end(b"+OK\r\n") == 5
    assert reply_end(b"$3\r\nab") is None
    assert reply_end(b"$3\r\nabc\r\n+OK\r\n") == 9
    assert reply_end(b"*2\r\n:1\r\n$-1\r\n") == 13
    assert reply_end(b"*2\r\n:1\r\n") is None
    assert reply_end(b"%1\r\n+a\r\n:1\r\n") == 12
    assert decode_reply(b"*3\r\n:1\r\n$-1\r\n+OK\r\n") == [1, None, b"OK"]
    err = decode_reply(b"-ERR boom\r\n")
    assert isinstance(err, ReplyError) and "boom" in str(err)


# ------------------------------------------------------------------- servers


def test_server_starts_and_answers(redis_server: RedisServer) -> None:
    assert redis_server.command("PING") == b"+PONG\r\n"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}"
    assert pid_alive(redis_server.pid)
    assert redis_server.process is not None and redis_server.process.pid == redis_server.pid
    assert redis_server.command("DBSIZE") == b":0\r\n"
    assert redis_server.command("CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert redis_server.client_count() == 0
    assert redis_server.info("server")["process_id"] == str(redis_server.pid)


def test_redis_servers_are_independent(redis_servers: list[RedisServer]) -> None:
    assert len(redis_servers) == 3
    assert len({s.port for s in redis_servers}) == 3
    redis_servers[0].command("SET", "k", "0")
    assert redis_servers[0].command("GET", "k") == b"$1\r\n0\r\n"
    assert redis_servers[1].command("GET", "k") == b"$-1\r\n"
    assert redis_servers[2].command("DBSIZE") == b":0\r\n"


def test_kill(redis_server: RedisServer) -> None:
    pid = redis_server.pid
    redis_server.kill()
    assert not redis_server.running
    assert not pid_alive(pid)
    with pytest.raises(ConnectionRefusedError):
        redis_server.command("PING", timeout=1)


def test_freeze_and_thaw(redis_server: RedisServer) -> None:
    redis_server.freeze()
    assert redis_server.frozen
    with pytest.raises(TimeoutError):
        redis_server.command("PING", timeout=0.2)
    redis_server.thaw()
    assert not redis_server.frozen
    assert redis_server.command("PING") == b"+PONG\r\n"


def test_restart_empty_same_port_data_gone(redis_server: RedisServer) -> None:
    port, pid = redis_server.port, redis_server.pid
    assert redis_server.command("SET", "k", "v") == b"+OK\r\n"
    redis_server.restart_empty()
    assert redis_server.port == port
    assert redis_server.pid != pid
    assert not pid_alive(pid)
    assert redis_server.command("GET", "k") == b"$-1\r\n"
    assert redis_server.command("DBSIZE") == b":0\r\n"


def test_restart_empty_while_frozen(redis_server: RedisServer) -> None:
    redis_server.command("SET", "k", "v")
    redis_server.freeze()
    redis_server.restart_empty()
    assert redis_server.command("DBSIZE") == b":0\r\n"


async def test_async_variants_keep_the_loop_running(redis_server: RedisServer) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    port = redis_server.port
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        assert await redis_server.acommand("SET", "k", "v") == b"+OK\r\n"
        await redis_server.afreeze()
        await redis_server.athaw()
        await redis_server.arestart_empty()
        assert await redis_server.acommand("GET", "k") == b"$-1\r\n"
        await redis_server.akill()
        await redis_server.astart()
        nursery.cancel_scope.cancel()
    assert ticks > 10
    assert redis_server.port == port
    await redis_server.astop()
    assert not redis_server.running


def test_stop_is_idempotent_and_thaws(redis_factory: RedisFactory) -> None:
    server = redis_factory()
    directory = server.directory
    assert directory is not None and directory.exists()
    server.freeze()
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 4  # SIGTERM worked: the process was thawed first
    assert not server.running
    assert not directory.exists()
    server.stop()
    assert server not in live_servers()


def test_context_manager(redis_executable: str) -> None:
    with RedisServer(executable=redis_executable) as server:
        assert server.command("PING") == b"+PONG\r\n"
        pid = server.pid
    assert not pid_alive(pid)


def test_password_and_acl_users(redis_factory: RedisFactory) -> None:
    server = redis_factory(password="s3cret", acl_users=["alice on >wonder ~* +@all"])
    assert server.command("PING") == b"+PONG\r\n"  # command() authenticates
    with socket.create_connection((server.host, server.port), timeout=2) as sock:
        sock.sendall(encode_command("GET", "k"))
        assert sock.recv(100).startswith(b"-NOAUTH")
        sock.sendall(encode_command("AUTH", "alice", "wonder"))
        assert sock.recv(100) == b"+OK\r\n"


def test_unix_socket(redis_factory: RedisFactory) -> None:
    server = redis_factory(unix_socket=True)
    assert server.unix_path is not None
    assert server.unix_url == f"unix://{server.unix_path}"
    assert oct(os.stat(server.unix_path).st_mode & 0o777) == oct(0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(server.unix_path)
        sock.sendall(encode_command("PING"))
        assert sock.recv(100) == b"+PONG\r\n"


def test_start_failure_reports_the_log(redis_factory: RedisFactory) -> None:
    server = redis_factory.new(extra_args=["--no-such-directive", "1"])
    with pytest.raises(RedisStartError, match="Bad directive"):
        server.start()


def test_a_fixed_port_another_process_holds_is_named_as_such(
    redis_factory: RedisFactory,
) -> None:
    taken = redis_factory()
    server = redis_factory.new(port=taken.port, start_timeout=0.5)
    # It said "did not answer PING", after retrying the bind until the deadline.
    with pytest.raises(RedisStartError, match=f"port {taken.port} is in use by another process"):
        server.start()
    assert not server.running and taken.running


def test_a_tls_server_whose_certificate_names_a_host_only_starts(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    # The manager's own probe checked the certificate against 127.0.0.1: a
    # certificate for "localhost" only made every start time out, with pages of
    # "unexpected eof" and no word of why.
    from tests.harness.tls import make_tls_files

    files = make_tls_files(tmp_path, identities=("localhost",))
    server = redis_factory(tls=files)
    assert decode_reply(server.command("PING")) in ("PONG", b"PONG")
    # A client that checks host names still refuses the address, as it should.
    ctx = server.client_ssl_context()
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection((server.host, server.port), timeout=5) as raw,
    ):
        ctx.wrap_socket(raw, server_hostname=server.host)


def test_failed_start_in_with_cleans_up(redis_executable: str) -> None:
    server = RedisServer(executable=redis_executable, extra_args=["--no-such-directive", "1"])
    with pytest.raises(RedisStartError), server:
        pass
    assert server.directory is None
    assert server not in live_servers()


def test_taken_port_is_retried(
    redis_factory: RedisFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        real = server_module.free_port
        monkeypatch.setattr(
            server_module, "free_port", lambda host: next(ports, None) or real(host)
        )
        server = redis_factory()
        assert server.port != taken
        assert server.command("PING") == b"+PONG\r\n"
        assert "Address already in use" in server.log_text()


async def test_client_count_sees_raw_connections(redis_server: RedisServer) -> None:
    async with await open_raw_connection(redis_server.host, redis_server.port) as conn:
        assert await conn.call("PING") == b"+PONG\r\n"
        assert redis_server.client_count() == 1
    await eventually(lambda: redis_server.client_count() == 0, "client gone")


async def test_async_info_and_client_count(redis_server: RedisServer) -> None:
    assert (await redis_server.ainfo("server"))["process_id"] == str(redis_server.pid)
    assert await redis_server.aclient_count() == 0
    async with await open_raw_connection(redis_server.host, redis_server.port) as conn:
        assert await conn.call("PING") == b"+PONG\r\n"
        assert await redis_server.aclient_count() == 1


def test_info_error_is_a_reply_error(redis_factory: RedisFactory) -> None:
    server = redis_factory(acl_users=["default off"])  # every command: -NOAUTH
    with pytest.raises(ReplyError, match="INFO failed"):
        server.info()


def test_repr_never_shows_the_password(redis_factory: RedisFactory) -> None:
    server = redis_factory(password="Very-Secret-Pw-42")
    assert "Very-Secret-Pw-42" not in repr(server)
    assert repr(server) == f"<RedisServer {server.url} pid={server.pid} running>"
    server.freeze()
    assert repr(server).endswith(" frozen>")
    server.kill()
    assert repr(server).endswith(" stopped>")


def test_pids_and_directory_across_restarts(redis_factory: RedisFactory, tmp_path: Path) -> None:
    server = redis_factory(directory=tmp_path / "a")
    assert server.directory == tmp_path / "a"
    first = server.pid
    server.restart_empty()
    assert server.pids == [first, server.pid]
    assert f"on port {server.port}" in server.log_text()
    server.stop()
    assert not any(pid_alive(pid) for pid in server.pids)
    assert (tmp_path / "a").is_dir()  # a directory given is the caller's: left in place


# ----------------------------------------------------------- finding the binary


def test_missing_binary_is_a_library_error_naming_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(trio_redisha.testing.ENV_EXECUTABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisServerNotFoundError) as info:
        find_redis_server()
    assert isinstance(info.value, RedisHAError)
    assert "sudo apt-get install redis-server" in str(info.value)
    server = RedisServer()
    with pytest.raises(RedisServerNotFoundError):
        server.start()
    assert live_servers() == []
    assert server.directory is None  # nothing made, nothing left behind


def test_named_binary_must_be_an_executable_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-redis-server"
    monkeypatch.setenv(trio_redisha.testing.ENV_EXECUTABLE, str(missing))
    with pytest.raises(RedisServerNotFoundError, match="REDISHA_REDIS_SERVER") as info:
        find_redis_server()
    assert str(missing) in str(info.value) and "apt-get install redis-server" in str(info.value)
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("")
    with pytest.raises(RedisServerNotFoundError, match="executable="):
        find_redis_server(not_executable)


def test_environment_names_the_binary(
    monkeypatch: pytest.MonkeyPatch, redis_executable: str
) -> None:
    monkeypatch.setenv(trio_redisha.testing.ENV_EXECUTABLE, redis_executable)
    monkeypatch.setenv("PATH", "")
    assert find_redis_server() == redis_executable
    version = redis_server_version()
    assert version.count(".") == 2 and version.split(".")[0].isdigit()


def test_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="port"):
        RedisServer(port=70000)
    with pytest.raises(ConfigurationError, match="start_timeout"):
        RedisServer(start_timeout=0)
    group = RedisServerGroup()
    for count in (0, -1, True, 2.0):
        with pytest.raises(ConfigurationError, match="count"):
            group.many(count)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="fixed port"):
        group.many(2, port=6390)
    assert group.servers == []


# ------------------------------------------------------------ many servers


@pytest.fixture
def slow_redis(tmp_path: Path, redis_executable: str) -> str:
    """A redis-server that takes 0.3 s before it even starts (an exec after a sleep)."""
    script = tmp_path / "slow-redis-server"
    script.write_text(f'#!/bin/sh\nsleep 0.3\nexec "{redis_executable}" "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_many_servers_start_in_parallel(slow_redis: str) -> None:
    # Nine one after the other would take 9 x 0.3 s at least.
    with RedisServerGroup(executable=slow_redis) as group:
        t0 = time.monotonic()
        servers = group.many(9)
        elapsed = time.monotonic() - t0
        assert len({s.port for s in servers}) == 9
        assert all(s.command("PING") == b"+PONG\r\n" for s in servers)
    assert elapsed < 1.5, f"nine servers took {elapsed:.2f} s to start"
    assert not any(s.running for s in servers)


async def test_many_servers_start_concurrently_in_trio(slow_redis: str) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        t0 = trio.current_time()
        async with open_redis_servers(9, executable=slow_redis) as servers:
            elapsed = trio.current_time() - t0
            assert [await s.acommand("PING") for s in servers] == [b"+PONG\r\n"] * 9
        nursery.cancel_scope.cancel()
    assert elapsed < 1.5, f"nine servers took {elapsed:.2f} s to start"
    assert ticks > 10  # the loop ran while they started
    assert not any(s.running for s in servers)


def test_one_failed_start_stops_every_server(redis_executable: str) -> None:
    good = RedisServer(executable=redis_executable)
    bad = RedisServer(executable=redis_executable, extra_args=["--no-such-directive", "1"])
    with pytest.raises(RedisStartError, match="Bad directive"):
        start_servers([good, bad])
    assert good.process is not None and not good.running
    assert live_servers() == []


def test_starting_a_running_server_touches_nothing(
    redis_server: RedisServer, redis_factory: RedisFactory
) -> None:
    fresh = redis_factory.new()
    with pytest.raises(RuntimeError, match="already running"):
        start_servers([fresh, redis_server])
    assert redis_server.command("PING") == b"+PONG\r\n"  # left running
    assert fresh.process is None  # never spawned
    with pytest.raises(ConfigurationError, match="twice"):
        start_servers([fresh, fresh])
    with pytest.raises(RuntimeError, match="already running"):
        redis_server.start()


async def test_one_failed_async_start_raises_plainly(redis_executable: str) -> None:
    good = RedisServer(executable=redis_executable)
    bad = RedisServer(executable=redis_executable, extra_args=["--no-such-directive", "1"])
    with pytest.raises(RedisStartError, match="Bad directive"):  # not an ExceptionGroup
        await astart_servers([good, bad])
    assert good.process is not None and not good.running
    assert live_servers() == []


async def test_cancelled_start_leaves_nothing(slow_redis: str) -> None:
    with trio.move_on_after(0.1) as scope:
        async with open_redis_servers(3, executable=slow_redis):
            pytest.fail("the servers cannot be up yet")
    assert scope.cancelled_caught
    assert live_servers() == []


async def test_open_redis_server_faults(redis_executable: str) -> None:
    async with open_redis_server(executable=redis_executable) as server:
        assert await server.acommand("SET", "k", "v") == b"+OK\r\n"
        await server.afreeze()
        assert server.frozen
        await server.athaw()
        await server.arestart_empty()
        assert await server.acommand("EXISTS", "k") == b":0\r\n"
    assert not server.running
    assert server.directory is None


def test_local_redis_servers_stop_on_keyboard_interrupt(redis_executable: str) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        local_redis_servers(3, executable=redis_executable) as servers,
    ):
        servers[1].freeze()
        raise KeyboardInterrupt
    assert not any(pid_alive(pid) for s in servers for pid in s.pids)
    assert live_servers() == []


def test_group_repr_and_stop_all_is_idempotent(redis_factory: RedisFactory) -> None:
    group = RedisServerGroup(executable=redis_factory.defaults["executable"])
    group.many(2)
    group.new()
    assert repr(group) == "<RedisServerGroup 3 servers, 2 running>"
    group.stop_all()
    group.stop_all()
    assert repr(group) == "<RedisServerGroup 3 servers, 0 running>"


def test_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    # The parent is SIGKILLed: no cleanup code runs, the parent-death signal does it.
    script = textwrap.dedent(
        """
        import sys, time
        from trio_redisha.testing import RedisServer, start_servers
        # Directories under tmp_path: nobody is left to remove temporary ones.
        servers = [RedisServer(directory=f"{sys.argv[1]}/{i}") for i in range(2)]
        start_servers(servers)
        print(" ".join(str(s.pid) for s in servers), flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    trio.run(wait_until, lambda: not any(pid_alive(p) for p in pids))


def test_servers_do_not_get_the_terminal_s_ctrl_c(redis_server: RedisServer) -> None:
    # Its own session: a Ctrl-C in the terminal reaches the test run, which stops it.
    assert os.getsid(redis_server.pid) == redis_server.pid
    assert os.getpgid(redis_server.pid) != os.getpgid(0)


# ------------------------------------------------------------- pytest plugin


def test_plugin_is_registered(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("trio_redisha")
    assert plugin is trio_redisha.testing.pytest_plugin


def test_plugin_fixtures_in_a_user_project(
    pytester: pytest.Pytester, redis_server: RedisServer
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from trio_redisha.testing import decode_reply

        def test_one(redis_server):
            redis_server.command("SET", "k", "v")
            assert decode_reply(redis_server.command("GET", "k")) == b"v"

        def test_three_independent(redis_servers):
            assert len({s.port for s in redis_servers}) == 3
            redis_servers[0].command("SET", "k", "v")
            assert redis_servers[1].command("DBSIZE") == b":0\\r\\n"

        @pytest.mark.redis_servers(5)
        def test_five(redis_servers):
            assert len(redis_servers) == 5

        @pytest.mark.redis_servers(count=2)
        def test_two(redis_servers):
            assert len(redis_servers) == 2

        def test_factory(redis_factory):
            server = redis_factory(password="pw")
            assert server.command("PING") == b"+PONG\\r\\n"
            later = redis_factory.new()
            later.start()
            server.kill()
            later.freeze()

        def test_failing(redis_servers):
            redis_servers[0].freeze()
            assert False, "a failing test still stops its servers"
        """
    )
    before = set(spawned_pids())
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    new = [pid for pid in spawned_pids() if pid not in before]
    assert len(new) == 1 + 3 + 5 + 2 + 2 + 3
    assert not any(pid_alive(pid) for pid in new)
    # The inner session's safety net left the outer test's server alone.
    assert redis_server.command("PING") == b"+PONG\r\n"


def test_plugin_missing_binary_fails_with_the_install_command(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(trio_redisha.testing.ENV_EXECUTABLE, "/nonexistent/redis-server")
    pytester.makepyfile("def test_needs(redis_server):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*apt-get install redis-server*"])
    # Not again under "During handling of the above exception" (the summary
    # line, with -r, repeats it once more: that one is pytest's).
    result.stdout.no_fnmatch_line("*During handling of the above exception*")


def test_user_conftest_fixture_wins(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def redis_server():
            return "mine"
        """
    )
    pytester.makepyfile("def test_mine(redis_server):\n    assert redis_server == 'mine'\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_needs(redis_server):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:trio_redisha")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'redis_server' not found*"])


DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def test_docs_example_passes(pytester: pytest.Pytester) -> None:
    match = re.search(r"## An example.*?```python\n(.*?)```", DOCS_PAGE.read_text(), re.S)
    assert match, "docs/testing.md has no example"
    pytester.makepyfile(test_example=match.group(1))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


# ------------------------------------------------------------------ public API


def test_exports_are_exactly_the_public_names_and_documented() -> None:
    module = trio_redisha.testing
    public = {n for n in vars(module) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(module, n))}
    assert public - modules - {"annotations"} == set(module.__all__)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_errors_are_in_the_library_hierarchy() -> None:
    for exc in (RedisServerNotFoundError, RedisStartError):
        assert issubclass(exc, trio_redisha.testing.RedisServerError)
        assert issubclass(exc, RedisHAError)
        assert getattr(trio_redisha, exc.__name__) is exc
        assert exc.__module__ == "trio_redisha.exceptions"


def test_importable_without_pytest() -> None:
    code = (
        "import sys, trio_redisha.testing\n"
        "assert 'pytest' not in sys.modules, 'pytest imported'\n"
        "assert 'hypothesis' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_helpers_type_their_server_options() -> None:
    # Strict mypy reports these ignores as unused if the helpers' options
    # lose their types (they were **options: Any); at run time nothing starts.
    group = RedisServerGroup()
    with pytest.raises(TypeError, match="pasword"):
        group.new(pasword="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unix_sockt"), local_redis_servers(1, unix_sockt=True):  # type: ignore[call-arg]
        pass
    assert group.servers == []


# ------------------------------------------------------ defects found by review


def test_a_port_held_by_a_password_protected_server_is_not_taken_for_ours(
    redis_factory: RedisFactory,
) -> None:
    # The other server answers INFO with -NOAUTH: the start took that for its own
    # server, returned, and every command then went to the other one.
    other = redis_factory(password="other-secret")
    server = redis_factory.new(port=other.port, start_timeout=0.5)
    with pytest.raises(RedisStartError, match=f"port {other.port} is in use by another process"):
        server.start()
    assert not server.running and other.running
    # The same on a restart, after another server took the port of a killed one.
    mine = redis_factory(start_timeout=0.5)
    mine.kill()
    taker = redis_factory(password="other-secret", port=mine.port)
    with pytest.raises(RedisStartError, match=f"port {mine.port} is in use by another process"):
        mine.start()
    assert not mine.running and taker.running


def test_our_own_server_refusing_info_is_still_accepted(redis_factory: RedisFactory) -> None:
    # Its INFO answer is an error, so only the listening socket tells it is ours.
    server = redis_factory(acl_users=["default on nopass ~* +@all -info"])
    assert server.command("INFO").startswith(b"-NOPERM")
    assert server.command("PING") == b"+PONG\r\n"


def test_a_wrapper_script_that_does_not_exec_is_managed_whole(
    redis_factory: RedisFactory, redis_executable: str, tmp_path: Path
) -> None:
    # The server is the wrapper's child: its INFO pid is not the wrapper's, so the
    # start was refused ("did not answer PING"), and signals reached the wrapper only,
    # leaving the real server running after stop().
    wrapper = tmp_path / "redis-server-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{redis_executable}" "$@"\n')
    wrapper.chmod(0o755)
    server = redis_factory.new(executable=wrapper, start_timeout=2)
    server.start()
    child = int(server.info("server")["process_id"])
    assert child != server.pid and os.getpgid(child) == server.pid
    server.freeze()
    assert server_module._proc_state(child) == "T"
    with pytest.raises(TimeoutError):
        server.command("PING", timeout=0.2)
    server.thaw()
    assert server.command("PING") == b"+PONG\r\n"
    server.kill()
    trio.run(wait_until, lambda: not pid_alive(child))
    server.restart_empty()
    child = int(server.info("server")["process_id"])
    server.stop()
    trio.run(wait_until, lambda: not pid_alive(child))


def test_interrupted_run_tears_user_fixtures_down_before_the_safety_net(
    pytester: pytest.Pytester,
) -> None:
    # On Ctrl-C, session fixtures are torn down in pytest_sessionfinish: the plugin's
    # safety net ran first and SIGKILLed the servers the fixture was about to use.
    pytester.makeconftest(
        """
        import pytest
        from trio_redisha.testing import RedisServerGroup

        @pytest.fixture(scope="session")
        def cluster():
            with RedisServerGroup() as group:
                servers = group.many(2)
                yield servers
                for s in servers:
                    try:
                        print("TEARDOWN", s.running, s.command("GET", "k"))
                    except OSError as exc:
                        print("TEARDOWN", s.running, repr(exc))
        """
    )
    pytester.makepyfile(
        """
        def test_a(cluster):
            for s in cluster:
                s.command("SET", "k", "v")
            raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*TEARDOWN True b'$1\\r\\nv\\r\\n'"] * 2)


def test_a_relative_directory_is_the_one_under_the_current_directory(
    redis_factory: RedisFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was kept relative: the process ran in it and redis resolved --dir once more.
    monkeypatch.chdir(tmp_path)
    server = redis_factory(directory="redis-data", unix_socket=True)
    assert server.directory == tmp_path / "redis-data"
    assert server.unix_path == str(tmp_path / "redis-data" / "redis.sock")
    assert decode_reply(server.command("CONFIG", "GET", "dir")) == [
        b"dir",
        str(tmp_path / "redis-data").encode(),
    ]
    with socket.socket(socket.AF_UNIX) as unix:
        unix.connect(server.unix_path)
        unix.sendall(encode_command("PING"))
        assert unix.recv(100) == b"+PONG\r\n"


def test_a_relative_executable_is_made_absolute(
    redis_factory: RedisFactory,
    redis_executable: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It passed the check here, then was run from the server's own directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "redis-server").symlink_to(redis_executable)
    expected = str(tmp_path / "bin" / "redis-server")
    assert find_redis_server("bin/redis-server") == expected
    monkeypatch.setenv(trio_redisha.testing.ENV_EXECUTABLE, "bin/redis-server")
    assert find_redis_server() == expected
    server = redis_factory.new(executable="bin/redis-server")
    server.start()
    assert server.command("PING") == b"+PONG\r\n"


@pytest.mark.parametrize(
    "options",
    [
        {"acl_users": ["alice on >Sup3rSecret #" + "ab" * 32 + " nopass-typo"]},
        {"password": "Sup3rSecret", "extra_args": ["maxmemory", "10mb"]},
    ],
    ids=["acl-rule-typo", "option-without-dashes"],
)
def test_a_start_error_never_shows_a_password(
    redis_factory: RedisFactory, options: server_module.RedisServerOptions
) -> None:
    # Redis quotes the config line it refuses, and the error quoted the log.
    server = redis_factory.new(**options)
    with pytest.raises(RedisStartError) as caught:
        server.start()
    message = str(caught.value)
    assert "FATAL CONFIG FILE ERROR" in message  # the log is still there
    assert "Sup3rSecret" not in message and "ab" * 32 not in message
    assert "***" in message


async def test_a_deeply_nested_reply_is_read_and_decoded(redis_server: RedisServer) -> None:
    # Recursion per level: a real reply 1500 deep raised a bare RecursionError.
    depth = 1500
    script = "local t = 1 for i = 1, tonumber(ARGV[1]) do t = {t} end return t"
    raw_reply = redis_server.command("EVAL", script, 0, depth)
    assert raw_reply == b"*1\r\n" * depth + b":1\r\n"
    value = decode_reply(raw_reply)
    for _ in range(depth):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == 1
    async with await open_raw_connection(redis_server.host, redis_server.port) as conn:
        assert await conn.call("EVAL", script, 0, depth) == raw_reply
    deeper = b"*2\r\n" * 100_000 + b":1\r\n" + b"$1\r\nx\r\n" * 100_000
    assert reply_end(deeper) == len(deeper)
    assert reply_end(deeper[:-1]) is None
    assert reply_end(b"|1\r\n+a\r\n:1\r\n" * 3000 + b"+OK\r\n") == 3000 * 12 + 5
    nested = decode_reply(deeper)
    assert isinstance(nested, list) and nested[1] == b"x"


def test_encode_command_sends_buffers_as_bytes_and_refuses_other_types(
    redis_server: RedisServer,
) -> None:
    # It sent their repr: bytearray(b'v'), <memory at 0x...>, True, None.
    expected = encode_command("SET", "k", b"value")
    assert encode_command("SET", "k", bytearray(b"value")) == expected
    assert encode_command("SET", "k", memoryview(b"value")) == expected
    assert encode_command("SET", "k", memoryview(b"xvaluex")[1:-1]) == expected
    assert encode_command("INCRBY", "k", 2**70, 1.5) == encode_command(
        "INCRBY", "k", "1180591620717411303424", "1.5"
    )
    for bad in (True, None, object(), ["v"]):
        with pytest.raises(TypeError, match=type(bad).__name__):
            encode_command("SET", "k", bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            redis_server.command("SET", "k", bad)  # type: ignore[arg-type]
    redis_server.command("SET", "k", bytearray(b"value"))
    redis_server.command("SET", "m", memoryview(b"value"))
    assert decode_reply(redis_server.command("MGET", "k", "m")) == [b"value", b"value"]


async def test_a_fixed_port_of_the_group_cannot_be_shared_either(redis_executable: str) -> None:
    # Only a port given to many() was checked: one of the group's defaults made the
    # second server wait out its start timeout on a port the first one held.
    group = RedisServerGroup(executable=redis_executable, port=free_port(), start_timeout=2)
    with pytest.raises(ConfigurationError, match="fixed port cannot be shared"):
        group.many(2)
    with pytest.raises(ConfigurationError, match="fixed port cannot be shared"):
        await group.amany(2)
    assert group.servers == []  # refused before any was made
