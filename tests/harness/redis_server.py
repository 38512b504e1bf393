"""Real ``redis-server`` subprocesses for tests.

:class:`RedisServer` runs one throwaway server on a free loopback port, with no
persistence, in its own temporary directory. It can be killed (SIGKILL), frozen
(SIGSTOP), thawed (SIGCONT) and restarted empty on the same port, which is what
failure tests need. Every blocking operation has an async twin (``a`` prefix) that
polls with :func:`trio.sleep`, so a concurrent trio workload keeps running.

:meth:`RedisServer.command` talks RESP over a fresh raw socket, independently of the
library under test, to check server-side state (``DBSIZE``, ``GET``, ``CLIENT LIST``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import trio

from .tls import TLSFiles

__all__ = [
    "Arg",
    "RawConnection",
    "RedisServer",
    "RedisServerNotFoundError",
    "RedisStartError",
    "RespError",
    "decode_reply",
    "encode_command",
    "find_redis_server",
    "free_port",
    "live_servers",
    "open_raw_connection",
    "pid_alive",
    "reply_end",
    "spawned_pids",
    "start_servers",
    "stop_all_servers",
]

#: One argument of a Redis command: str is UTF-8 encoded, numbers are formatted.
Arg = str | bytes | int | float

#: How long :meth:`RedisServer.start` waits for the first PING answer.
START_TIMEOUT = 10.0
#: Poll step while waiting for a state change.
POLL_INTERVAL = 0.005
#: First timeout of a readiness probe (doubled after each probe timing out).
PROBE_TIMEOUT = 0.05
#: How long :meth:`RedisServer.stop` waits after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0
#: Default timeout of :meth:`RedisServer.command`.
COMMAND_TIMEOUT = 5.0

_INSTALL_HINT = "redis-server not found on PATH: apt-get install redis-server"
_BIND_FAILURE_MARKERS = ("Address already in use", "Could not create server TCP listening socket")


class RedisServerNotFoundError(RuntimeError):
    """No ``redis-server`` executable could be found."""


class RedisStartError(RuntimeError):
    """A ``redis-server`` process did not come up; the message holds its log."""


class RespError(Exception):
    """An error reply (``-ERR ...``) decoded by :func:`decode_reply`."""


def find_redis_server() -> str:
    """Locate the ``redis-server`` executable.

    ``$REDISHA_REDIS_SERVER`` overrides the PATH lookup.

    Returns:
        The path of the executable.

    Raises:
        RedisServerNotFoundError: When there is none; the message says how to install it.
    """
    exe = os.environ.get("REDISHA_REDIS_SERVER") or shutil.which("redis-server")
    if not exe:
        raise RedisServerNotFoundError(_INSTALL_HINT)
    return exe


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago.

    Another process may take it before it is used; callers retry on bind failure.

    Returns:
        A port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _to_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    return repr(arg).encode() if isinstance(arg, float) else str(arg).encode()


def encode_command(*args: Arg) -> bytes:
    """Encode one command as a RESP array of bulk strings.

    Args:
        *args: The command name and its arguments.

    Returns:
        The wire bytes.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _to_bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """Find where the RESP (2 or 3) reply starting at ``pos`` ends.

    Args:
        buf: Received bytes.
        pos: Offset of the first byte of the reply.

    Returns:
        The offset just past the reply, or None when it is not complete yet.

    Raises:
        ValueError: On bytes that are not RESP.
    """
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    kind = buf[pos : pos + 1]
    after = eol + 2
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return after
    count = int(buf[pos + 1 : eol])
    if kind in (b"$", b"!", b"="):
        if count < 0:
            return after
        end = after + count + 2
        return end if len(buf) >= end else None
    if kind in (b"*", b"~", b">", b"%", b"|"):
        if count < 0:
            return after
        items = count * 2 if kind in (b"%", b"|") else count
        p: int | None = after
        for _ in range(items):
            assert p is not None
            p = reply_end(buf, p)
            if p is None:
                return None
        if kind == b"|":  # an attribute precedes the actual reply
            assert p is not None
            return reply_end(buf, p)
        return p
    raise ValueError(f"not a RESP reply at offset {pos}: {bytes(buf[pos : pos + 20])!r}")


def decode_reply(raw: bytes) -> object:
    """Decode one complete RESP2 reply into Python values (for test assertions).

    Simple strings and bulk strings become bytes, integers int, nil None, arrays
    lists; an error reply becomes a :class:`RespError` instance (returned, not raised).

    Args:
        raw: Exactly one reply, as returned by :meth:`RedisServer.command`.

    Returns:
        The decoded value.
    """

    def parse(pos: int) -> tuple[object, int]:
        eol = raw.index(b"\r\n", pos)
        kind, line = raw[pos : pos + 1], raw[pos + 1 : eol]
        if kind == b"+":
            return line, eol + 2
        if kind == b"-":
            return RespError(line.decode(errors="replace")), eol + 2
        if kind == b":":
            return int(line), eol + 2
        if kind == b"_":
            return None, eol + 2
        n = int(line)
        if kind == b"$":
            if n < 0:
                return None, eol + 2
            return raw[eol + 2 : eol + 2 + n], eol + 4 + n
        if kind in (b"*", b"~", b">"):
            if n < 0:
                return None, eol + 2
            items: list[object] = []
            p = eol + 2
            for _ in range(n):
                item, p = parse(p)
                items.append(item)
            return items, p
        raise ValueError(f"cannot decode {raw[pos : pos + 20]!r}")

    value, _ = parse(0)
    return value


_LIVE: set[RedisServer] = set()
_LIVE_LOCK = threading.Lock()
_SPAWNED: list[int] = []


def spawned_pids() -> list[int]:
    """Pids of every redis-server process this module ever started (for leak checks).

    Returns:
        A snapshot list, oldest first.
    """
    with _LIVE_LOCK:
        return list(_SPAWNED)


def live_servers() -> list[RedisServer]:
    """Servers started and not yet stopped (in this process).

    Returns:
        A snapshot list.
    """
    with _LIVE_LOCK:
        return list(_LIVE)


def stop_all_servers() -> None:
    """Stop (SIGKILL) every live server; the safety net run at interpreter exit."""
    for server in live_servers():
        with contextlib.suppress(Exception):
            server.stop(graceful=False)


def start_servers(servers: Iterable[RedisServer]) -> None:
    """Start several servers concurrently: spawn them all, then wait for each.

    Args:
        servers: Unstarted servers.

    Raises:
        RedisStartError: One did not come up (the others may be running: stop them).
    """
    pending = [(server, server._begin_start()) for server in servers]
    for server, deadline in pending:
        server._wait_ready(deadline)


atexit.register(stop_all_servers)


def _pdeathsig_prefix() -> list[str]:
    """Command prefix making the server die with the process that started it.

    ``setpriv --pdeathsig KILL`` (util-linux) sets the parent-death signal and execs
    redis-server in place (same pid), so even a SIGKILLed test run leaves no server
    behind. Empty when setpriv is missing (not Linux): atexit is the safety net then.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


_PDEATHSIG_PREFIX = _pdeathsig_prefix()


def _proc_state(pid: int) -> str | None:
    """Return the one-letter state of a process from /proc, None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split(b" ", 1)[0].decode()


def pid_alive(pid: int) -> bool:
    """Tell whether a process exists and is not a zombie."""
    state = _proc_state(pid)
    if state is not None:
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RedisServer:
    """One real ``redis-server`` subprocess on a free loopback port.

    Example::

        with RedisServer() as server:
            assert server.command("PING") == b"+PONG\\r\\n"

    Attributes:
        host: Always ``"127.0.0.1"``.
        port: The TCP port (the TLS port when TLS is on); 0 before the first start.
        unix_path: Path of the Unix socket when ``unix_socket=True``, else None.
        process: The running :class:`subprocess.Popen`, None before start.
        directory: The server's temporary working directory (removed by stop).
        password: The ``requirepass`` password, if any.
        acl_users: ACL rule strings given as ``--user``.
        tls: TLS files when the server speaks TLS only, else None.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        acl_users: Sequence[str] = (),
        unix_socket: bool = False,
        tls: TLSFiles | None = None,
        port: int | None = None,
        extra_args: Iterable[str] = (),
        executable: str | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        """Describe a server; nothing runs until :meth:`start`.

        Args:
            password: Set ``--requirepass``; :meth:`command` then authenticates.
            acl_users: ACL rules, one string per user, e.g.
                ``"alice on >secret ~* +@all"`` (passed as ``--user``).
            unix_socket: Also listen on ``<dir>/redis.sock`` (mode 700).
            tls: Speak TLS only (``--tls-port N --port 0``) with these files.
            port: A fixed port instead of a free one picked at start.
            extra_args: More ``redis-server`` command-line arguments.
            executable: Path of ``redis-server``; see :func:`find_redis_server`.
            start_timeout: Seconds to wait for the server to answer PING.
        """
        self.host = "127.0.0.1"
        self.port = port or 0
        self.password = password
        self.acl_users = list(acl_users)
        self.tls = tls
        self.unix_path: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None
        self.start_timeout = start_timeout
        self._want_unix = unix_socket
        self._extra_args = list(extra_args)
        self._executable = executable
        self._port_fixed = port is not None
        self._log_file: IO[bytes] | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self._spawns = 0
        self._probe_timeout = PROBE_TIMEOUT

    # ------------------------------------------------------------------ info

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:N``, or ``rediss://127.0.0.1:N`` with TLS (no credentials)."""
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def unix_url(self) -> str:
        """``unix:///path/redis.sock``; only when started with ``unix_socket=True``."""
        if self.unix_path is None:
            raise RuntimeError("server was not started with unix_socket=True")
        return f"unix://{self.unix_path}"

    @property
    def pid(self) -> int:
        """Process id of the current (or last) redis-server process."""
        if self.process is None:
            raise RuntimeError("server was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while the process exists (frozen counts as running)."""
        return self.process is not None and self.process.poll() is None

    @property
    def frozen(self) -> bool:
        """True when the process is stopped by SIGSTOP."""
        return self.running and _proc_state(self.pid) == "T"

    def log_text(self) -> str:
        """Return the server's output so far (empty once stopped)."""
        if self.directory is None:
            return ""
        try:
            return (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        pid = self.process.pid if self.process is not None else None
        return f"<RedisServer {self.url} pid={pid} {state}>"

    # ---------------------------------------------------------------- launch

    def _args(self) -> list[str]:
        assert self.directory is not None
        args = [
            self._executable or find_redis_server(),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--dir", str(self.directory),
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert_file),
                "--tls-key-file", str(self.tls.key_file),
                "--tls-ca-cert-file", str(self.tls.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        for rule in self.acl_users:
            args += ["--user", *rule.split()]
        if self._want_unix:
            self.unix_path = str(self.directory / "redis.sock")
            args += ["--unixsocket", self.unix_path, "--unixsocketperm", "700"]
        args += self._extra_args
        return args

    def _spawn(self) -> None:
        """Launch one process (port chosen if needed); does not wait."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="redisha-"))
        if self.port == 0:
            self.port = free_port()
        if self._log_file is None:
            self._log_file = open(self.directory / "redis.log", "ab")  # noqa: SIM115
        self._log_file.write(b"--- spawn %d on port %d\n" % (self._spawns, self.port))
        self._log_file.flush()
        self._spawns += 1
        # The parent-death signal fires when the spawning *thread* exits: only use it
        # from the main thread (a worker thread may exit while the server is wanted).
        main = threading.current_thread() is threading.main_thread()
        self.process = subprocess.Popen(
            (_PDEATHSIG_PREFIX if main else []) + self._args(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
            _SPAWNED.append(self.process.pid)

    def _handle_exit(self, deadline: float) -> bool:
        """Check for an early exit; return True when a respawn should follow.

        Raises:
            RedisStartError: When the process died for another reason than a taken port.
        """
        assert self.process is not None
        rc = self.process.poll()
        if rc is None:
            return False
        log = self.log_text()
        last_spawn = log.rsplit("--- spawn", 1)[-1]
        if any(m in last_spawn for m in _BIND_FAILURE_MARKERS) and time.monotonic() < deadline:
            if not self._port_fixed:
                self.port = 0  # pick another free port
            return True
        raise RedisStartError(f"redis-server exited with code {rc} on port {self.port}:\n{log}")

    def _fail_timeout(self) -> None:
        log = self.log_text()
        self.kill()
        raise RedisStartError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{self.start_timeout} s:\n{log}"
        )

    def _probe_payload(self) -> tuple[bytes, int]:
        payload = encode_command("PING") + encode_command("INFO", "server")
        if self.password is not None:
            return encode_command("AUTH", self.password) + payload, 3
        return payload, 2

    def _probe_ok(self, replies: list[bytes]) -> bool:
        """Accept the probe when the INFO answer comes from our own process."""
        info = replies[-1]
        if info.startswith(b"$"):
            for line in info.split(b"\r\n"):
                if line.startswith(b"process_id:"):
                    return int(line.split(b":", 1)[1]) == self.pid
        # -NOAUTH etc.: someone answers RESP; trust it when our process is alive.
        return self.running

    def _check_startable(self) -> None:
        if self.running:
            raise RuntimeError(f"{self!r} is already running")

    def _ready(self) -> None:
        # Once up, the port is ours: restarts reuse it.
        self._port_fixed = True

    def _begin_start(self) -> float:
        """Spawn the process; return the deadline for it to answer."""
        self._check_startable()
        self._probe_timeout = PROBE_TIMEOUT
        self._spawn()
        return time.monotonic() + self.start_timeout

    def _probe_timed_out(self) -> None:
        # Something accepted but did not answer: maybe not redis; back off a little.
        self._probe_timeout = min(1.0, self._probe_timeout * 2)

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if self._handle_exit(deadline):
                time.sleep(POLL_INTERVAL)
                self._spawn()
                continue
            payload, n = self._probe_payload()
            try:
                replies = self._exchange_sync(payload, n, timeout=self._probe_timeout)
            except TimeoutError:
                self._probe_timed_out()
            except (OSError, ValueError):
                pass
            else:
                if self._probe_ok(replies):
                    self._ready()
                    return
            if time.monotonic() > deadline:
                self._fail_timeout()
            time.sleep(POLL_INTERVAL)

    def start(self) -> None:
        """Start the server and wait until it answers PING (at most ``start_timeout``).

        A server that was started before (then killed) comes back on the same port.

        Raises:
            RedisStartError: The server exited or never answered; includes its log.
            RedisServerNotFoundError: No ``redis-server`` executable.
        """
        self._wait_ready(self._begin_start())

    async def astart(self) -> None:
        """Async :meth:`start`: polls with :func:`trio.sleep`.

        Raises:
            RedisStartError: The server exited or never answered; includes its log.
            RedisServerNotFoundError: No ``redis-server`` executable.
        """
        deadline = self._begin_start()
        while True:
            if self._handle_exit(deadline):
                await trio.sleep(POLL_INTERVAL)
                self._spawn()
                continue
            payload, n = self._probe_payload()
            replies: list[bytes] | None = None
            with trio.move_on_after(self._probe_timeout) as scope:
                try:
                    replies = await self._aexchange(payload, n)
                except (OSError, ValueError, trio.BrokenResourceError):
                    replies = None
            if scope.cancelled_caught:
                self._probe_timed_out()
            if replies is not None and self._probe_ok(replies):
                self._ready()
                return
            if time.monotonic() > deadline:
                self._fail_timeout()
            await trio.sleep(POLL_INTERVAL)

    # --------------------------------------------------------------- signals

    def kill(self) -> None:
        """SIGKILL the process and reap it; directory and port are kept for a restart."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    async def akill(self) -> None:
        """Async :meth:`kill` (reaps by polling)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            while True:
                if proc.poll() is not None:
                    break
                await trio.sleep(POLL_INTERVAL)

    def _send_signal(self, sig: signal.Signals) -> float:
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        os.kill(self.pid, sig)
        return time.monotonic() + STOP_TIMEOUT

    def _state_reached(self, stopped: bool) -> bool:
        state = _proc_state(self.pid)
        if state is None:  # no /proc: trust the signal
            return True
        return (state == "T") == stopped

    def freeze(self) -> None:
        """SIGSTOP the process and wait until the kernel reports it stopped."""
        deadline = self._send_signal(signal.SIGSTOP)
        while not self._state_reached(True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} did not stop")
            time.sleep(POLL_INTERVAL / 5)

    async def afreeze(self) -> None:
        """Async :meth:`freeze`."""
        deadline = self._send_signal(signal.SIGSTOP)
        while not self._state_reached(True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} did not stop")
            await trio.sleep(POLL_INTERVAL / 5)

    def thaw(self) -> None:
        """SIGCONT the process and wait until it is no longer stopped."""
        deadline = self._send_signal(signal.SIGCONT)
        while not self._state_reached(False):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} did not continue")
            time.sleep(POLL_INTERVAL / 5)

    async def athaw(self) -> None:
        """Async :meth:`thaw`."""
        deadline = self._send_signal(signal.SIGCONT)
        while not self._state_reached(False):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} did not continue")
            await trio.sleep(POLL_INTERVAL / 5)

    def restart_empty(self) -> None:
        """SIGKILL the server, then start a new, empty one on the same port."""
        self.kill()
        self.start()

    async def arestart_empty(self) -> None:
        """Async :meth:`restart_empty`."""
        await self.akill()
        await self.astart()

    def _begin_stop(self, graceful: bool) -> subprocess.Popen[bytes] | None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return None
        with contextlib.suppress(ProcessLookupError):
            if graceful:
                proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
                proc.terminate()
            else:
                proc.kill()
        return proc

    def _finish_stop(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def stop(self, *, graceful: bool = True) -> None:
        """Terminate (thawing first if frozen), reap, remove the directory. Idempotent.

        Args:
            graceful: SIGTERM (Redis exits at its next cron tick, up to ~100 ms);
                False sends SIGKILL, which is instant and loses nothing here since
                the server persists nothing.
        """
        proc = self._begin_stop(graceful)
        if proc is not None:
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._finish_stop()

    async def astop(self, *, graceful: bool = True) -> None:
        """Async :meth:`stop`.

        Args:
            graceful: SIGTERM when True, SIGKILL when False.
        """
        proc = self._begin_stop(graceful)
        if proc is not None:
            deadline = time.monotonic() + STOP_TIMEOUT
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    deadline = float("inf")
                await trio.sleep(POLL_INTERVAL)
        self._finish_stop()

    # ------------------------------------------------------------- raw RESP

    def client_ssl_context(self) -> ssl.SSLContext:
        """SSL context trusting the server's CA (TLS servers only)."""
        if self.tls is None:
            raise RuntimeError("server does not use TLS")
        if self._client_ssl is None:
            self._client_ssl = self.tls.client_context()
        return self._client_ssl

    def _exchange_sync(self, payload: bytes, n: int, timeout: float) -> list[bytes]:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.tls is not None:
            sock = self.client_ssl_context().wrap_socket(sock, server_hostname=self.host)
        with sock:
            sock.sendall(payload)
            buf = bytearray()
            replies: list[bytes] = []
            pos = 0
            while len(replies) < n:
                end = reply_end(buf, pos)
                if end is None:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("server closed the connection")
                    buf += chunk
                    continue
                replies.append(bytes(buf[pos:end]))
                pos = end
            return replies

    async def _aexchange(self, payload: bytes, n: int) -> list[bytes]:
        stream: trio.abc.Stream
        if self.tls is not None:
            stream = await trio.open_ssl_over_tcp_stream(
                self.host, self.port, ssl_context=self.client_ssl_context()
            )
        else:
            stream = await trio.open_tcp_stream(self.host, self.port)
        async with stream:
            await stream.send_all(payload)
            buf = bytearray()
            replies: list[bytes] = []
            pos = 0
            while len(replies) < n:
                end = reply_end(buf, pos)
                if end is None:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        raise ConnectionError("server closed the connection")
                    buf += chunk
                    continue
                replies.append(bytes(buf[pos:end]))
                pos = end
            return replies

    def _auth_prefix(self) -> tuple[bytes, int]:
        if self.password is None:
            return b"", 0
        return encode_command("AUTH", self.password), 1

    def command(self, *args: Arg, timeout: float = COMMAND_TIMEOUT) -> bytes:
        """Send one command over a fresh raw socket and return the raw reply.

        Authenticates first with ``password`` when set. Blocks (a frozen server
        makes it time out).

        Args:
            *args: Command name and arguments, e.g. ``"GET", "k"``.
            timeout: Socket timeout in seconds.

        Returns:
            The reply bytes exactly as sent by the server, e.g. ``b"$-1\\r\\n"``.
        """
        prefix, skip = self._auth_prefix()
        return self._exchange_sync(prefix + encode_command(*args), skip + 1, timeout)[-1]

    async def acommand(self, *args: Arg, timeout: float = COMMAND_TIMEOUT) -> bytes:
        """Async :meth:`command` over a trio stream.

        Args:
            *args: Command name and arguments.
            timeout: Seconds before :class:`trio.TooSlowError`.

        Returns:
            The raw reply bytes.
        """
        prefix, skip = self._auth_prefix()
        with trio.fail_after(timeout):
            replies = await self._aexchange(prefix + encode_command(*args), skip + 1)
        return replies[-1]

    def info(self, section: str | None = None) -> dict[str, str]:
        """Run ``INFO`` and parse its ``key:value`` lines.

        Args:
            section: An INFO section such as ``"clients"``; all default ones when None.

        Returns:
            The fields as strings.
        """
        raw = self.command("INFO") if section is None else self.command("INFO", section)
        value = decode_reply(raw)
        if not isinstance(value, bytes):
            raise RespError(f"INFO failed: {raw!r}")
        fields: dict[str, str] = {}
        for line in value.decode().splitlines():
            if line and not line.startswith("#") and ":" in line:
                key, _, val = line.partition(":")
                fields[key] = val
        return fields

    def client_count(self) -> int:
        """Number of connected clients, not counting the one asking.

        Returns:
            ``connected_clients`` from ``INFO clients`` minus one.
        """
        return int(self.info("clients")["connected_clients"]) - 1

    # ------------------------------------------------------- context managers

    def __enter__(self) -> RedisServer:
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.stop(graceful=False)
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> RedisServer:
        if not self.running:
            try:
                await self.astart()
            except BaseException:
                self.stop(graceful=False)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()


class RawConnection:
    """A minimal RESP client over a trio stream, independent of the library under test.

    Attributes:
        stream: The underlying trio stream.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        """Wrap a connected stream."""
        self.stream = stream
        self._buf = bytearray()

    async def send_command(self, *args: Arg) -> None:
        """Send one command (not waiting for the reply).

        Args:
            *args: Command name and arguments.
        """
        await self.stream.send_all(encode_command(*args))

    async def read_reply(self) -> bytes:
        """Wait for one whole reply.

        Returns:
            Its raw bytes.

        Raises:
            ConnectionError: The server closed the connection first (EOF).
            trio.BrokenResourceError: The connection was reset.
        """
        while True:
            end = reply_end(self._buf)
            if end is not None:
                reply = bytes(self._buf[:end])
                del self._buf[:end]
                return reply
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buf += chunk

    async def call(self, *args: Arg) -> bytes:
        """Send one command and return its raw reply.

        Args:
            *args: Command name and arguments.

        Returns:
            The raw reply.
        """
        await self.send_command(*args)
        return await self.read_reply()

    async def aclose(self) -> None:
        """Close the stream."""
        await self.stream.aclose()

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_raw_connection(
    host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> RawConnection:
    """Connect a :class:`RawConnection` over TCP (or TLS with ``ssl_context``).

    Args:
        host: Server address.
        port: Server port.
        ssl_context: Speak TLS with this context (server name = ``host``).

    Returns:
        The connection; use it as an async context manager to close it.
    """
    stream: trio.abc.Stream
    if ssl_context is not None:
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context)
    else:
        stream = await trio.open_tcp_stream(host, port)
    return RawConnection(stream)
