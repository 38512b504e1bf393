"""The ``trio-redisha`` command line against real redis-server processes.

Most commands run in-process through :func:`trio_redisha.cli.main` with the
output captured by ``capsys``; the exit code and the absence of a traceback
are also checked once through a real ``python -m trio_redisha`` process, and
Ctrl-C on the demo is a real SIGINT to a real process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.harness.helpers import hash_of
from trio_redisha import cli, open_pool
from trio_redisha._demo import run_demo
from trio_redisha.cli import format_reply, main
from trio_redisha.crdt import Counter, HashMap, Set
from trio_redisha.crdt._digest import TREE_PREFIX
from trio_redisha.resp import DEFAULT_LIMITS
from trio_redisha.testing import RedisServer, decode_reply, pid_alive

#: Deadline given to the commands: small, since every server here is local.
TIMEOUT = "0.5"


def server_args(servers: list[RedisServer]) -> list[str]:
    args: list[str] = []
    for s in servers:
        args += ["--server", s.url]
    return args


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    """Run the CLI in-process; return (exit code, stdout lines, stderr lines)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def line_of(lines: list[str], server: RedisServer) -> str:
    (line,) = [line for line in lines if line.startswith(server.url + " ")]
    return line


# --------------------------------------------------------------------------- exec


def test_exec_ping_on_three_servers(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "exec", *server_args(redis_servers), "PING")
    assert code == 0, err
    assert out == [f"{s.url}  PONG" for s in redis_servers]
    assert err == []


def test_exec_set_then_get(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    servers = server_args(redis_servers)
    code, out, _ = run(capsys, "exec", *servers, "SET", "greeting", "héllo wörld")
    assert code == 0
    assert all(line.endswith("  OK") for line in out) and len(out) == 3
    for s in redis_servers:
        assert decode_reply(s.command("GET", "greeting")) == "héllo wörld".encode()
    code, out, _ = run(capsys, "exec", *servers, "GET", "greeting")
    assert out == [f"{s.url}  héllo wörld" for s in redis_servers]
    # Arguments may start with "-"; integers, nil and lists are told apart.
    code, out, _ = run(capsys, "exec", *servers, "INCRBY", "n", "-3")
    assert out == [f"{s.url}  (integer) -3" for s in redis_servers]
    code, out, _ = run(capsys, "exec", *servers, "GET", "missing")
    assert out == [f"{s.url}  (nil)" for s in redis_servers]
    code, out, _ = run(capsys, "exec", *servers, "MGET", "greeting", "missing")
    assert out == [f'{s.url}  ["héllo wörld", null]' for s in redis_servers]


def test_exec_killed_server_gets_an_error_line(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = redis_servers
    b.kill()
    code, out, err = run(capsys, "exec", "--timeout", TIMEOUT, *server_args(redis_servers), "PING")
    assert code == 0, "two servers answered"
    assert line_of(out, a) == f"{a.url}  PONG"
    assert line_of(out, c) == f"{c.url}  PONG"
    assert line_of(out, b).startswith(f"{b.url}  error: ServerUnavailable: ")
    assert err == []  # the library's "server is down" warning is not printed


def test_exec_all_down_exits_non_zero(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    for s in redis_servers:
        s.kill()
    code, out, _ = run(capsys, "exec", "--timeout", TIMEOUT, *server_args(redis_servers), "PING")
    assert code == 1
    assert len(out) == 3 and all("  error: ServerUnavailable: " in line for line in out)


def test_exec_error_reply_on_every_server_exits_non_zero(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "exec", *server_args(redis_servers), "NOSUCHCOMMAND", "x")
    assert code == 1
    assert len(out) == 3
    assert all("  error: ReplyError: ERR unknown command" in line for line in out)
    assert not any("Traceback" in line for line in err)


def test_exec_servers_from_environment_and_json(
    redis_servers: list[RedisServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    redis_servers[2].kill()
    monkeypatch.setenv(cli.ENV_SERVERS, ",".join(s.url for s in redis_servers))
    code, out, _ = run(capsys, "exec", "--timeout", TIMEOUT, "--json", "PING")
    assert code == 0
    records = [json.loads(line) for line in out]
    assert [r["server"] for r in records] == [s.url for s in redis_servers]
    assert [r["ok"] for r in records] == [True, True, False]
    assert records[0]["reply"] == "PONG"
    assert records[2]["error"] == "ServerUnavailable"


def test_exec_multiline_reply_is_a_block(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "exec", "--server", redis_server.url, "INFO", "server")
    assert code == 0
    assert out[0] == redis_server.url
    assert "    # Server" in out
    assert any(line.startswith("    redis_version:") for line in out)


# --------------------------------------------------------------------------- mistakes


def assert_one_line_error(err: list[str], *fragments: str) -> None:
    assert len(err) == 1, err
    assert "error: " in err[0]
    for fragment in fragments:
        assert fragment in err[0]


def test_a_deadline_longer_than_the_default_stall_timeout_is_honoured(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # -t 6 was refused: "must not exceed stall_timeout (5.0 s)", an option the
    # command line does not have.
    for argv in (["exec", "-t", "6", "PING"], ["status", "-t", "6"], ["repair", "-t", "10"]):
        code, _out, err = run(capsys, argv[0], "-s", redis_server.url, *argv[1:])
        assert code == 0, err
        assert not any("stall_timeout" in line for line in err)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:6379", "unsupported URL scheme"),
        ("redis://127.0.0.1:notaport", "invalid server URL"),
        ("127.0.0.1:6379", "expected a URL such as redis://"),
        ("redis://127.0.0.1:6379?bogus=1", "unknown option"),
    ],
)
def test_bad_url_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], url: str, fragment: str
) -> None:
    code, out, err = run(capsys, "exec", "--server", url, "PING")
    assert code == 2
    assert out == []
    assert_one_line_error(err, fragment)


def test_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "status", "--server", "redis://user:s3cr3t@127.0.0.1:99999")
    assert code == 2
    assert_one_line_error(err, "***")
    assert "s3cr3t" not in err[0]
    code, _, err = run(capsys, "exec", "--server", "user:s3cr3t@127.0.0.1:6379", "PING")
    assert code == 2
    assert "s3cr3t" not in err[0]


def test_bad_url_in_a_real_process_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trio_redisha", "exec", "--server", "http://nope", "PING"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("trio-redisha: error: unsupported URL scheme")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required"),
        (["exec", "--server", "redis://127.0.0.1:1"], "no command given"),
        (["exec", "PING"], "no server given"),
        (["exec", "--timeout", "-1", "--server", "redis://127.0.0.1:1", "PING"], "--timeout"),
        (["repair", "--server", "redis://127.0.0.1:1", "--rate", "x"], "--rate"),
        (["exec", "--server", "redis://127.0.0.1:1", "SUBSCRIBE", "ch"], "SUBSCRIBE"),
        (["exec", "-s", "redis://127.0.0.1:1", "-s", "redis://127.0.0.1:1", "PING"], "twice"),
    ],
)
def test_usage_mistakes_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    fragment: str,
) -> None:
    monkeypatch.delenv(cli.ENV_SERVERS, raising=False)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == []
    assert_one_line_error(err, fragment)


def test_help_documents_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "exec", "--help")
    assert code == 0
    text = "\n".join(out)
    assert cli.ENV_SERVERS in text and cli.ENV_PASSWORD in text


def test_format_reply() -> None:
    assert format_reply("PONG") == "PONG"
    assert format_reply(b"bar") == "bar"
    assert format_reply(b"") == '""'
    assert format_reply(b" padded ") == '" padded "'
    assert format_reply(b"\xff\x00") == repr(b"\xff\x00")
    assert format_reply(7) == "(integer) 7"
    assert format_reply(None) == "(nil)"
    assert format_reply([]) == "(empty)"
    assert format_reply([b"a", 1, None, [b"b"]]) == '["a", 1, null, ["b"]]'
    assert format_reply(b"l1\r\nl2\r\n") == "l1\nl2"


# --------------------------------------------------------------------------- status


def status_rows(out: list[str], servers: list[RedisServer]) -> dict[str, list[str]]:
    return {s.url: line_of(out, s).split() for s in servers}


def test_status_reports_a_killed_server_as_down(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = redis_servers
    for i in range(5):
        a.command("SET", f"k{i}", "v")
    b.kill()
    code, out, _ = run(capsys, "status", "--timeout", TIMEOUT, *server_args(redis_servers))
    assert code == 0
    rows = status_rows(out, redis_servers)
    # SERVER STATE LATENCY ms VERSION MEMORY KEYS
    assert rows[a.url][1] == "up" and rows[c.url][1] == "up"
    assert rows[a.url][3] == "ms" and float(rows[a.url][2]) > 0
    assert rows[a.url][4] == a.info("server")["redis_version"]
    assert rows[a.url][6] == "5" and rows[c.url][6] == "0"
    assert rows[b.url][1] == "down"
    assert out[-1] == "2 of 3 servers up"


def test_status_reports_a_server_answering_ping_with_an_error_as_error(
    redis_server: RedisServer, redis_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = redis_factory(extra_args=["--rename-command", "PING", ""])
    code, out, _ = run(
        capsys, "status", "--json", "--timeout", TIMEOUT, "-s", redis_server.url, "-s", renamed.url
    )
    assert code == 0
    states = {r["server"]: r["state"] for r in map(json.loads, out)}
    # It showed as "down", and the state docs/operations.md describes never appeared.
    assert states == {redis_server.url: "up", renamed.url: "error"}


def test_status_reports_a_frozen_server_as_hung(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    _a, _b, c = redis_servers
    c.freeze()
    try:
        code, out, _ = run(capsys, "status", "--timeout", "1.0", *server_args(redis_servers))
    finally:
        c.thaw()
    assert code == 0
    rows = status_rows(out, redis_servers)
    assert [rows[s.url][1] for s in redis_servers] == ["up", "up", "hung"]


def test_status_all_down_exits_non_zero(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    for s in redis_servers:
        s.kill()
    code, out, _ = run(capsys, "status", "--timeout", TIMEOUT, *server_args(redis_servers))
    assert code == 1
    assert out[-1] == "0 of 3 servers up"


def test_status_reports_refused_credentials_as_auth_failed(
    redis_server: RedisServer, redis_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = redis_factory(password="hunter2")
    wrong = f"redis://:s3cr3t@{locked.host}:{locked.port}"
    for url, why in ((wrong, "wrong user name or password"), (locked.url, "got none")):
        code, out, err = run(capsys, "status", "--server", url, "--server", redis_server.url)
        assert code == 0, err  # one server is up
        row = line_of(out, locked)
        assert row.split()[1] == "auth-failed"
        assert "authentication failed" in row and why in row
        assert "s3cr3t" not in "".join(out + err)
        assert line_of(out, redis_server).split()[1] == "up"
        # Alone, a server refusing the credentials is a usage mistake: exit 2.
        code, out, err = run(capsys, "status", "--json", "--server", url)
        assert code == 2
        (record,) = [json.loads(line) for line in out]
        assert record["state"] == "auth-failed"
        assert record["error"].startswith("authentication failed: ")
        assert "s3cr3t" not in record["error"]
    # The right password: up.
    code, out, _ = run(
        capsys, "status", "--server", f"redis://:hunter2@{locked.host}:{locked.port}"
    )
    assert code == 0 and line_of(out, locked).split()[1] == "up"


# --------------------------------------------------------------------------- repair

N_KEYS = 8  # of each CRDT type


async def write_crdt_keys(urls: list[str]) -> dict[str, Any]:
    """Write maps, sets and counters through a pool; return what reads give back."""
    expected: dict[str, Any] = {}
    async with open_pool(*urls) as pool:
        for i in range(N_KEYS):
            m = HashMap(pool, f"map:{i}")
            await m.set({"name": f"user {i}", "visits": i, "tags": ["a", "b"]})
            await m.delete("tags")  # a tombstone travels too
            expected[f"map:{i}"] = await m.get()
            s = Set(pool, f"set:{i}")
            await s.add("x", "y", f"z{i}")
            await s.rem("y")
            expected[f"set:{i}"] = await s.get()
            c = Counter(pool, f"ctr:{i}")
            await c.incr(10 + i)
            await c.decr(3)
            expected[f"ctr:{i}"] = await c.get()
        # Not ours: a plain hash and a string are left alone.
        await pool.execute("HSET", "foreign:hash", "a", "1")
        await pool.execute("SET", "foreign:string", "x")
    return expected


async def read_crdt_keys(url: str, keys: list[str]) -> dict[str, Any]:
    got: dict[str, Any] = {}
    async with open_pool(url) as pool:
        for key in keys:
            kind = key.split(":", 1)[0]
            if kind == "map":
                got[key] = await HashMap(pool, key).get()
            elif kind == "set":
                got[key] = await Set(pool, key).get()
            else:
                got[key] = await Counter(pool, key).get()
    return got


def test_repair_refills_a_server_restarted_empty(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = redis_servers
    expected = trio.run(write_crdt_keys, [s.url for s in redis_servers])
    c.restart_empty()
    assert decode_reply(c.command("DBSIZE")) == 0

    code, out, err = run(
        capsys, "repair", "--rate", "0", "--count", "5", *server_args(redis_servers)
    )
    assert code == 0, err
    n = 3 * N_KEYS
    assert out == [
        f"repair: {n + 1} keys scanned, {n} repaired, 1 skipped (not CRDTs), 0 errors "
        f"on 3 servers in {out[0].rsplit(' in ', 1)[1]}"
    ]
    # The empty server alone now holds every key with the same content...
    assert trio.run(read_crdt_keys, c.url, list(expected)) == expected
    for key in expected:
        assert hash_of(c, key) == hash_of(a, key) == hash_of(b, key)
    # ...and nothing that is not ours was copied.
    assert decode_reply(c.command("EXISTS", "foreign:hash", "foreign:string")) == 0

    # A second pass finds nothing to do, and reads no key: the digests agree.
    code, out, _ = run(capsys, "repair", *server_args(redis_servers))
    assert code == 0
    assert f"{n + 1} keys scanned, 0 repaired, 1 skipped" in out[0]
    assert out[0].endswith("; digest tree: 16384 segments compared, 0 differed, 0 keys read")
    # --full reads every key instead (the walk without digests).
    code, out, _ = run(capsys, "repair", "--full", *server_args(redis_servers))
    assert code == 0
    assert f"{n + 1} keys scanned, 0 repaired, 1 skipped" in out[0]
    assert "digest tree" not in out[0]


def data_keys(server: RedisServer) -> int:
    """How many keys the server holds, but for the CRDT digest tree's."""
    keys = decode_reply(server.command("KEYS", "*"))
    assert isinstance(keys, list)
    return sum(not k.startswith(TREE_PREFIX) for k in keys)


def test_repair_match_and_rate_limit(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    trio.run(write_crdt_keys, [s.url for s in redis_servers])
    redis_servers[0].restart_empty()
    start = time.monotonic()
    code, out, _ = run(
        capsys, "repair", "--match", "map:*", "--rate", "40", *server_args(redis_servers)
    )
    elapsed = time.monotonic() - start
    assert code == 0
    assert f"{N_KEYS} keys scanned, {N_KEYS} repaired, 0 skipped" in out[0]
    assert elapsed >= (N_KEYS - 1) / 40  # evenly spaced at 40 keys/s
    assert data_keys(redis_servers[0]) == N_KEYS


def test_repair_with_a_server_down_exits_non_zero(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    trio.run(write_crdt_keys, [s.url for s in redis_servers])
    a, b, _c = redis_servers
    a.restart_empty()
    b.kill()
    code, out, err = run(capsys, "repair", "--timeout", TIMEOUT, *server_args(redis_servers))
    assert code == 1  # incomplete: one server could not be walked
    assert f"{3 * N_KEYS} repaired" in out[0]
    assert f"not scanned to the end: {b.url}" in out[0]
    assert any(f"{b.url}: SCAN failed" in line for line in err)
    assert data_keys(a) == 3 * N_KEYS


# --------------------------------------------------------------------------- demo


def redis_processes_in(directory: str) -> list[int]:
    """Pids of live processes whose working directory is inside ``directory``.

    (redis-server rewrites its command line, so that cannot be searched.)
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cwd.startswith(directory + os.sep) and state != "Z":
            found.append(int(entry.name))
    return found


async def test_demo_workload_loses_no_acknowledged_write() -> None:
    report = await run_demo(duration=3.0, clients=3)
    assert report.lost == 0
    assert report.ok
    assert report.acknowledged > 0 and report.reads > 0
    assert report.operations >= report.acknowledged
    assert report.latency_p50 is not None and report.latency_p99 is not None
    texts = " | ".join(text for _, text in report.events)
    for what in ("killed server A", "froze server B", "restarted server C empty"):
        assert what in texts
    assert report.in_sync == report.sessions  # read repair caught every replica up
    # Nothing left behind.
    assert len(report.pids) >= 5  # three starts, then A and C again
    assert not any(pid_alive(pid) for pid in report.pids)
    assert not Path(report.workdir).exists()  # noqa: ASYNC240 - a stat, once
    assert redis_processes_in(report.workdir) == []


async def test_a_demo_too_short_to_write_every_session_finds_them_in_sync() -> None:
    # A session never written is absent on every server: in sync. It was counted
    # out of sync, and the demo waited for read repair that had nothing to do.
    report = await run_demo(duration=0.01, clients=2)
    assert report.lost == 0 and report.ok
    assert report.in_sync == report.sessions


def test_demo_without_redis_server_names_the_install_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDISHA_REDIS_SERVER", str(tmp_path / "no-such-redis-server"))
    code, _out, err = run(capsys, "demo", "--duration", "1")
    assert code == 1
    assert_one_line_error(err, "apt-get install redis-server")


@pytest.fixture
def demo_process() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_redisha", "demo", "--duration", "60", "--clients", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A job started in the background by a non-interactive shell (as CI may
        # be) inherits SIGINT ignored, and Python then keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [
        (signal.SIGINT, 130, "trio-redisha: interrupted"),  # Ctrl-C
        (signal.SIGTERM, 143, "trio-redisha: terminated; servers stopped and files removed"),
    ],
)
def test_demo_interrupted_leaves_nothing_behind(
    demo_process: subprocess.Popen[str], signum: signal.Signals, code: int, message: str
) -> None:
    proc = demo_process
    assert proc.stdout is not None and proc.stderr is not None
    workdir = None
    for line in proc.stdout:  # blocks until the demo prints; it never stops by itself
        if line.startswith("started 3 redis-servers in "):
            workdir = line.split(" in ", 1)[1].split(":", 1)[0]
        if "workload started" in line:
            break
    assert workdir is not None and os.path.isdir(workdir)
    assert len(redis_processes_in(workdir)) == 3
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == code
    err = proc.stderr.read()
    assert err.strip() == message
    assert redis_processes_in(workdir) == []
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint", "no sigint"])
@pytest.mark.parametrize("command", [["exec", "PING"], ["status"], ["repair", "--full"]])
def test_sigterm_stops_a_command_with_exit_143(command: list[str], sigint: signal.Handlers) -> None:
    # Only the demo handled it: the others died by the signal (a parent saw
    # -15, not the documented 143) and printed nothing. With SIGINT ignored (a
    # background job of a non-interactive shell), a KeyboardInterrupt raised
    # by hand tore trio's run apart.
    with socket.socket() as silent:  # accepts, never answers: the command waits
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(30)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}"
        name, *rest = command
        proc = subprocess.Popen(
            [sys.executable, "-m", "trio_redisha", name, "-t", "20", "-s", url, *rest],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
        )
        try:
            conn, _ = silent.accept()
            with conn:
                conn.settimeout(30)
                assert conn.recv(1024)  # its handshake: it now waits for the reply
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 143
            assert proc.stderr is not None
            assert proc.stderr.read().strip() == "trio-redisha: terminated"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def test_the_demo_and_the_library_do_not_import_the_command_line() -> None:
    code = (
        "import sys, trio_redisha, trio_redisha._demo, trio_redisha.crdt; "
        "print(sorted(m for m in sys.modules if m.startswith('trio_redisha.cli')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- bad text


def test_argument_that_is_not_text_is_one_line_exit_2_and_nothing_sent(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # What Python makes of the byte 0xff on a command line: a lone surrogate.
    for argv in (
        ["exec", "--server", redis_server.url, "SET", "k", "\udcff"],
        ["exec", "--server", redis_server.url, "SET", "\ud800", "v"],
        ["repair", "--server", redis_server.url, "--match", "\udcff*"],
        ["status", "--server", "redis://user:s3cr3t\udcff@127.0.0.1:1"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        assert out == []
        assert_one_line_error(err, "not valid UTF-8 text", "nothing was sent")
        assert "s3cr3t" not in err[0]
    assert decode_reply(redis_server.command("DBSIZE")) == 0
    stats = decode_reply(redis_server.command("INFO", "commandstats"))
    assert isinstance(stats, bytes) and b"cmdstat_set:" not in stats


def test_password_from_the_environment_that_is_not_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.ENV_PASSWORD, "s3cr3t\udcff")
    code, out, err = run(capsys, "status", "--server", "redis://127.0.0.1:1")
    assert code == 2 and out == []
    assert_one_line_error(err, cli.ENV_PASSWORD, "not valid UTF-8 text")
    assert "s3cr3t" not in err[0]


def test_non_utf8_argument_in_a_real_process_exits_2_without_traceback(
    redis_server: RedisServer,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trio_redisha", "exec", "-s", redis_server.url, "SET", "k", b"\xff"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "argument 6 is not valid UTF-8 text" in proc.stderr
    assert decode_reply(redis_server.command("EXISTS", "k")) == 0


@pytest.mark.parametrize("json_output", [False, True])
def test_a_reply_the_terminal_cannot_encode_is_escaped_not_a_traceback(
    redis_server: RedisServer, json_output: bool
) -> None:
    redis_server.command("SET", "k", "h\u00e9llo \u2713".encode())
    argv = ["exec", "-s", redis_server.url, *(["--json"] if json_output else []), "GET", "k"]
    proc = subprocess.run(
        [sys.executable, "-m", "trio_redisha", *argv],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},  # as under an ASCII locale
    )
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"\\u2713" in proc.stdout
    if json_output:
        assert json.loads(proc.stdout)["reply"] == "h\u00e9llo \u2713"


# --------------------------------------------------------------------------- Valkey

VALKEY_INFO = (
    b"# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n"
    b"redis_mode:standalone\r\n\r\n# Memory\r\nused_memory:1048576\r\n"
    b"used_memory_human:1.00M\r\n\r\n# Replication\r\nrole:master\r\n"
)


def valkey_handler() -> Any:
    from tests.harness.hostile import HostileConnection, answer_handshake

    async def handler(conn: HostileConnection) -> None:
        command = await answer_handshake(conn)
        while True:
            name = command[0].upper()
            if name == b"INFO":
                await conn.send(b"$%d\r\n%s\r\n" % (len(VALKEY_INFO), VALKEY_INFO))
            elif name == b"DBSIZE":
                await conn.send(b":3\r\n")
            else:
                await conn.send(b"-ERR unknown command\r\n")
            command = await conn.read_command()

    return handler


def test_parse_info_tells_valkey_from_redis() -> None:
    from trio_redisha._info import parse_info

    valkey = parse_info(VALKEY_INFO)
    assert (valkey.software, valkey.version, valkey.label) == ("valkey", "8.0.1", "valkey-8.0.1")
    assert valkey.get("used_memory_human") == "1.00M" and valkey.get("nothing") is None
    redis = parse_info("# Server\nredis_version:7.0.15\nredis_mode:standalone\n")  # RESP3 text
    assert (redis.software, redis.version, redis.label) == ("redis", "7.0.15", "7.0.15")
    assert parse_info(b"").version is None and parse_info(b"").label is None


async def test_status_reports_a_valkey_server_as_valkey(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.harness.hostile import open_hostile_server

    async with open_hostile_server(valkey_handler()) as fake:
        servers = ["--server", fake.url, "--server", redis_server.url]
        code = await trio.to_thread.run_sync(main, ["status", *servers])
        table = capsys.readouterr().out.splitlines()
        await trio.to_thread.run_sync(main, ["status", "--json", *servers])
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    row = next(line for line in table if line.startswith(fake.url + " ")).split()
    assert row[1] == "up" and row[4] == "valkey-8.0.1" and row[5] == "1.00M" and row[6] == "3"
    redis_row = line_of(table, redis_server).split()
    assert redis_row[4] == redis_server.info("server")["redis_version"]
    assert records[0]["software"] == "valkey" and records[0]["version"] == "8.0.1"
    assert records[0]["used_memory"] == 1048576 and records[0]["role"] == "master"
    assert records[1]["software"] == "redis"


# --------------------------------------------------------------------------- hostile text


async def test_a_server_never_writes_control_characters_to_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.harness.hostile import open_hostile_server, reply_with

    evil = b"line1\r\n\x1b]0;pwned\x07\x1b[2J\r\nline3"
    async with open_hostile_server(reply_with(b"$%d\r\n%s\r\n" % (len(evil), evil))) as bulk:
        code = await trio.to_thread.run_sync(main, ["exec", "-s", bulk.url, "GET", "k"])
        out = capsys.readouterr().out
        assert code == 0
        assert "\x1b" not in out and "\x07" not in out
        assert "line1" in out and "line3" in out and "\\x1b]0;pwned\\x07" in out
    async with open_hostile_server(reply_with(b"-ERR bad\x1b[2Jthing\r\n")) as err:
        for command in (["exec", "-s", err.url, "GET", "k"], ["status", "--json", "-s", err.url]):
            await trio.to_thread.run_sync(main, command)
            captured = capsys.readouterr()
            assert "\x1b" not in captured.out + captured.err
            assert "[2Jthing" in captured.out + captured.err  # escaped, not sent
    # -v logs the server going down, quoting its error: the log lines were raw.
    hostile = reply_with(b"-ERR bad\x1b[2Jthing\r\n", handshake=())
    async with open_hostile_server(hostile) as err:
        for command in (["exec", "-v", "-s", err.url, "GET", "k"], ["status", "-v", "-s", err.url]):
            await trio.to_thread.run_sync(main, [*command, "-t", "0.3"])
            captured = capsys.readouterr()
            assert "\x1b" not in captured.out + captured.err
            assert "WARNING" in captured.err and "[2Jthing" in captured.err


@pytest.mark.parametrize("option", ["--count", "--concurrency"])
def test_integer_options_are_bounded(capsys: pytest.CaptureFixture[str], option: str) -> None:
    code, out, err = run(capsys, "repair", "-s", "redis://127.0.0.1:1", option, str(10**9))
    assert code == 2 and out == []
    assert_one_line_error(err, option, "1..100000")


async def test_exec_json_is_valid_json_for_infinite_doubles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.harness.hostile import open_hostile_server, reply_with

    async with open_hostile_server(reply_with(b"*3\r\n,inf\r\n,-inf\r\n,nan\r\n")) as fake:
        code = await trio.to_thread.run_sync(main, ["exec", "--json", "-s", fake.url, "X"])
        out = capsys.readouterr().out
    assert code == 0
    record = json.loads(out, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert record["reply"] == ["inf", "-inf", "nan"]


def test_max_reply_elements_reads_a_key_over_the_default_limit(
    redis_servers: list[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    # The command line used the default limits, so a key over them could be
    # neither read with exec nor repaired.
    big = redis_servers[0]
    fields = DEFAULT_LIMITS.max_reply_elements // 2 + 1
    big.command("EVAL", "for i=1,ARGV[1] do redis.call('HSET',KEYS[1],i,'') end", 1, "h", fields)
    one = ["-s", big.url, "-t", "60"]  # two million elements take a while on a busy machine
    code, out, err = run(capsys, "exec", *one, "HLEN", "h")
    assert out == [f"{big.url}  (integer) {fields}"]
    code, out, err = run(capsys, "exec", *one, "HGETALL", "h")
    assert code == 1 and "ReplyTooLarge" in out[0] and "--max-reply-elements N" in out[0]
    code, out, err = run(
        capsys, "exec", *one, "--max-reply-elements", str(4 * fields), "HGETALL", "h"
    )
    assert code == 0, err
    label, reply = out[0].split("  ", 1)
    assert label == big.url and len(out) == 1
    assert len(json.loads(reply)) == 2 * fields


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_max_reply_elements_must_be_a_positive_integer(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, out, err = run(
        capsys, "exec", "-s", "redis://127.0.0.1:1", "--max-reply-elements", value, "PING"
    )
    assert code == 2 and out == []
    assert_one_line_error(err, "--max-reply-elements")
