"""Real, throwaway ``redis-server`` processes on free loopback ports.

A highly available client is only believable when it is shown surviving real
failures, so the tests, the benchmarks and the demo all run real servers and
break them: SIGKILL (a crash), SIGSTOP (a hung server that keeps its sockets
open), SIGCONT, and a restart on the same port with no data (a replacement
machine). This module is the one place that does it.

Every server is light (``--save "" --appendonly no``: nothing is ever written
to disk), lives in its own temporary directory and its own session (so a Ctrl-C
in the terminal reaches the test run, which then stops the servers, and not the
servers themselves), and on Linux gets a parent-death signal, so even a test
run killed with SIGKILL leaves no server behind. Starting many servers spawns
them all first and then waits for each, so nine start in about the time of one.

Blocking methods have async twins (``a`` prefix) that wait with
:func:`trio.sleep`, so that a trio workload keeps running while a server is
killed, frozen or restarted.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, TypedDict

import trio

from ..exceptions import (
    ConfigurationError,
    RedisServerError,
    RedisServerNotFoundError,
    RedisStartError,
    ReplyError,
)
from ._wire import Arg, encode_command, split_replies

if TYPE_CHECKING:
    from typing_extensions import Unpack

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "ENV_EXECUTABLE",
    "RedisServer",
    "RedisServerError",
    "RedisServerGroup",
    "RedisServerNotFoundError",
    "RedisServerOptions",
    "RedisStartError",
    "TLSFiles",
    "astart_servers",
    "find_redis_server",
    "free_port",
    "live_servers",
    "local_redis_servers",
    "open_redis_server",
    "open_redis_servers",
    "pid_alive",
    "redis_server_version",
    "redis_tls_support",
    "spawned_pids",
    "start_servers",
    "stop_all_servers",
    "stop_servers",
]

#: Environment variable naming the ``redis-server`` executable to use.
ENV_EXECUTABLE = "REDISHA_REDIS_SERVER"
#: Seconds :meth:`RedisServer.start` waits for the first PING answer.
START_TIMEOUT = 10.0
#: Poll step while waiting for a state change, in seconds.
POLL_INTERVAL = 0.005
#: First timeout of a readiness probe (doubled after each probe timing out).
PROBE_TIMEOUT = 0.05
#: Seconds :meth:`RedisServer.stop` waits after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0
#: Default timeout of :meth:`RedisServer.command`, in seconds.
COMMAND_TIMEOUT = 5.0

#: The server's own words when its port was taken between our check and its bind.
_BIND_FAILURE_MARKERS = ("Address already in use", "Could not create server TCP listening socket")
_INSTALL = "install Debian's package with `sudo apt-get install redis-server`"


def find_redis_server(executable: str | os.PathLike[str] | None = None) -> str:
    """Locate the ``redis-server`` executable.

    Tried in order: ``executable``, ``$REDISHA_REDIS_SERVER``, ``redis-server``
    on ``PATH``.

    Args:
        executable: An explicit path, tried first.

    Returns:
        The absolute path of an executable file.

    Raises:
        RedisServerNotFoundError: None was found, or the one named is not an
            executable file; the message says how to install Debian's package.
    """
    named = os.fspath(executable) if executable is not None else os.environ.get(ENV_EXECUTABLE)
    if named:
        if os.path.isfile(named) and os.access(named, os.X_OK):
            # Absolute: the server runs in its own directory, where a relative one is not.
            return os.path.abspath(named)
        source = "executable=" if executable is not None else f"${ENV_EXECUTABLE}="
        raise RedisServerNotFoundError(
            f"{source}{named!r} is not an executable file: name an installed "
            f"redis-server, or {_INSTALL}"
        )
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerNotFoundError(
            f"redis-server not found on PATH: {_INSTALL} (or name the binary in ${ENV_EXECUTABLE})"
        )
    return os.path.abspath(found)  # a relative PATH entry, too


def redis_server_version(executable: str | os.PathLike[str] | None = None) -> str:
    """Return the version of ``redis-server``, e.g. ``"7.0.15"``.

    Args:
        executable: Path of ``redis-server``; see :func:`find_redis_server`.

    Returns:
        The version number (the whole ``--version`` line if it has none).

    Raises:
        RedisServerNotFoundError: No ``redis-server`` executable.
    """
    exe = find_redis_server(executable)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "unknown"


@dataclass(frozen=True)
class TLSFiles:
    """Paths of a CA certificate and a server certificate and key signed by it.

    Give it to :class:`RedisServer` (``tls=``) to run a server that speaks TLS
    only. Any tool can make the files (``openssl``, ``trustme``...).

    Attributes:
        directory: Directory holding the files.
        ca_file: PEM file of the CA certificate (what clients must trust).
        cert_file: PEM file of the server certificate chain.
        key_file: PEM file of the server's private key.
    """

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """Build a client-side SSL context that trusts this CA.

        Returns:
            A fresh :class:`ssl.SSLContext` with hostname checking on, trusting
            only the CA.
        """
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        """Build a server-side SSL context presenting the server certificate.

        Returns:
            A fresh :class:`ssl.SSLContext` for a Python test server.
        """
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


@functools.cache
def redis_tls_support(executable: str | None = None) -> str | None:
    """Tell whether the installed ``redis-server`` was built with TLS.

    The probe starts ``redis-server`` with a TLS port but an incomplete TLS
    configuration: a TLS build refuses it with "Failed to configure TLS" and
    exits at once, a build without TLS says something else. Nothing listens
    meanwhile.

    Args:
        executable: Path of ``redis-server``; see :func:`find_redis_server`.

    Returns:
        None when TLS is supported, else a human-readable reason it is not.
    """
    try:
        exe = find_redis_server(executable)
    except RedisServerNotFoundError as exc:
        return str(exc)
    with tempfile.TemporaryDirectory(prefix="redisha-tlsprobe-") as tmp:
        args = [
            exe,
            "--port", "0",
            "--tls-port", "1",
            "--tls-cert-file", os.path.join(tmp, "missing.pem"),
            "--tls-key-file", os.path.join(tmp, "missing.key"),
            "--save", "",
            "--appendonly", "no",
            "--dir", tmp,
            "--loglevel", "warning",
        ]  # fmt: skip
        try:
            proc = subprocess.run(args, capture_output=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return "redis-server TLS probe did not exit within 10 s"
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    if "configure TLS" in out or "tls-ca-cert" in out:
        return None
    return f"{exe} was built without TLS support (probe said: {out.strip()[-300:]!r})"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Another process may take it before it is used; :class:`RedisServer` retries
    with another port when that happens.

    Args:
        host: The loopback address to probe.

    Returns:
        A port number.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# --- the process registry ------------------------------------------------------

_LIVE: set[RedisServer] = set()
_LIVE_LOCK = threading.Lock()
_SPAWNED: list[int] = []


def spawned_pids() -> list[int]:
    """Pids of every redis-server process this module started, for leak checks.

    Returns:
        A snapshot list, oldest first.
    """
    with _LIVE_LOCK:
        return list(_SPAWNED)


def live_servers() -> list[RedisServer]:
    """Servers started and not yet stopped, in this process.

    Returns:
        A snapshot list.
    """
    with _LIVE_LOCK:
        return list(_LIVE)


def stop_all_servers() -> None:
    """SIGKILL every live server of this process; runs at interpreter exit too."""
    stop_servers(live_servers())


atexit.register(stop_all_servers)


def _pdeathsig_prefix() -> list[str]:
    """Command prefix making the server die with the process that started it.

    ``setpriv --pdeathsig KILL`` (util-linux, on every Debian) sets the
    parent-death signal and then execs redis-server in place (same pid), so a
    test run killed with SIGKILL leaves no server behind. Empty where setpriv
    is missing: the atexit hook is the safety net then. (A ``preexec_fn`` doing
    the same is unsafe in a process with threads and makes every spawn slower.)
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


def _listening_inodes(port: int) -> set[str] | None:
    """Inodes of the TCP sockets listening on ``port`` (IPv4 and IPv6), from /proc.

    Returns:
        The inodes, None where /proc cannot tell.
    """
    inodes: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            # sl local_address(HEXIP:HEXPORT) rem_address st(0A = LISTEN) ... inode
            fields = row.split()
            listens = len(fields) > 9 and fields[3] == "0A"
            if listens and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes if readable else None


def _socket_inodes(pid: int) -> set[str] | None:
    """Inodes of the sockets process ``pid`` holds open, None where /proc cannot tell."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    found: set[str] = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                found.add(target[len("socket:[") : -1])
    return found


def _group_pids(pgid: int) -> list[int]:
    """Pids of the processes in process group ``pgid`` (empty where /proc is missing)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    found: list[int] = []
    for entry in entries:
        if entry.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                if os.getpgid(int(entry)) == pgid:
                    found.append(int(entry))
    return found


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process group a server process leads (``start_new_session``).

    The whole group, because the executable may be a wrapper script that runs
    redis-server as its child instead of exec'ing it.
    """
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # not a group leader after all (setsid failed?): the child only
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def pid_alive(pid: int) -> bool:
    """Tell whether a process exists and is not a zombie.

    Args:
        pid: A process id.

    Returns:
        True while the process runs (a stopped process counts).
    """
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


# --- one server ----------------------------------------------------------------


class RedisServer:
    """One real ``redis-server`` process on a free loopback port.

    Nothing runs until :meth:`start` (or ``with`` / ``async with``). The server
    persists nothing, so :meth:`restart_empty` gives an empty server at the same
    address, as a replaced machine would be.

    Example::

        with RedisServer() as server:
            assert server.command("PING") == b"+PONG\\r\\n"
            server.freeze()        # hung: accepts bytes, answers nothing
            server.thaw()
            server.restart_empty()  # same port, no data

    Attributes:
        host: The address it listens on, ``"127.0.0.1"``.
        port: The TCP port (the TLS port when TLS is on); 0 before the first start.
        unix_path: Path of the Unix socket when ``unix_socket=True``, else None.
        process: The current :class:`subprocess.Popen`, None before start.
        pids: Every process id this server had, oldest first (one per start).
        directory: The working directory (None once a directory made here is
            removed by :meth:`stop`).
        password: The ``requirepass`` password, if any (never in the repr).
        acl_users: ACL rule strings given as ``--user``.
        tls: TLS files when the server speaks TLS only, else None.
        start_timeout: Seconds a start waits for the server to answer.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        acl_users: Sequence[str] = (),
        unix_socket: bool = False,
        tls: TLSFiles | None = None,
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        extra_args: Iterable[str] = (),
        executable: str | os.PathLike[str] | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        """Describe a server; nothing runs until :meth:`start`.

        Args:
            password: Set ``--requirepass``; :meth:`command` then authenticates.
            acl_users: ACL rules, one string per user, e.g.
                ``"alice on >secret ~* +@all"`` (passed as ``--user``).
            unix_socket: Also listen on ``<directory>/redis.sock`` (mode 700).
            tls: Speak TLS only (``--tls-port N --port 0``) with these files.
            port: A fixed port instead of a free one picked at start.
            directory: The working directory (created if missing, left in place
                by :meth:`stop`; a relative one is taken from the current directory
                now); a new temporary one, removed by :meth:`stop`, when None.
            extra_args: More ``redis-server`` command-line arguments; they come
                last, so they override the defaults (``"--bind", "127.0.0.1", "::1"``).
            executable: Path of ``redis-server``; see :func:`find_redis_server`.
            start_timeout: Seconds to wait for the server to answer PING.

        Raises:
            ConfigurationError: A port or timeout out of range.
        """
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"port must be in 1..65535, got {port!r}")
        if not start_timeout > 0:
            raise ConfigurationError(f"start_timeout must be > 0, got {start_timeout!r}")
        self.host = "127.0.0.1"
        self.port = port or 0
        self.password = password
        self.acl_users = list(acl_users)
        self.tls = tls
        self.unix_path: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        # Absolute now: the process runs in it, and would resolve a relative --dir again.
        self.directory: Path | None = Path(directory).absolute() if directory is not None else None
        self.start_timeout = start_timeout
        self._own_directory = directory is None
        self._want_unix = unix_socket
        self._extra_args = list(extra_args)
        self._executable = executable
        self._port_fixed = port is not None
        self._log_file: IO[bytes] | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self._own_ssl: ssl.SSLContext | None = None
        self._probe_timeout = PROBE_TIMEOUT
        # The redis-server process itself: self.pid, or its child under a wrapper script.
        self._server_pid: int | None = None

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
        """True while the process is stopped by SIGSTOP."""
        return self.running and _proc_state(self.pid) == "T"

    def log_text(self) -> str:
        """Return the server's output so far (empty once its directory is removed).

        Returns:
            The log, with a ``--- spawn N on port P`` line before each start.
        """
        if self.directory is None:
            return ""
        try:
            return (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else "running" if self.running else "stopped"
        pid = self.process.pid if self.process is not None else None
        return f"<RedisServer {self.url} pid={pid} {state}>"

    # ---------------------------------------------------------------- launch

    def _args(self, executable: str) -> list[str]:
        assert self.directory is not None
        args = [
            executable,
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
        """Launch one process (choosing a port if needed); does not wait."""
        executable = find_redis_server(self._executable)  # before anything is made
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="redisha-"))
            self._own_directory = True
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port(self.host)
        args = self._args(executable)
        if self._log_file is None:
            self._log_file = open(self.directory / "redis.log", "ab")  # noqa: SIM115
        self._log_file.write(b"--- spawn %d on port %d\n" % (len(self.pids), self.port))
        self._log_file.flush()
        # The parent-death signal fires when the spawning *thread* exits: only use it
        # from the main thread (a worker thread may exit while the server is wanted).
        main = threading.current_thread() is threading.main_thread()
        try:
            self.process = subprocess.Popen(
                (_PDEATHSIG_PREFIX if main else []) + args,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
        except BaseException:
            self._finish_stop()  # close the log, remove a directory made here
            raise
        self.pids.append(self.process.pid)
        with _LIVE_LOCK:
            _LIVE.add(self)
            _SPAWNED.append(self.process.pid)

    def _handle_exit(self, deadline: float) -> bool:
        """Check for an early exit; return True when a respawn should follow.

        Raises:
            RedisStartError: The process died for another reason than a taken port.
        """
        assert self.process is not None
        rc = self.process.poll()
        if rc is None:
            return False
        log = self._redact(self.log_text())
        last_spawn = log.rsplit("--- spawn", 1)[-1]
        bind_failed = any(m in last_spawn for m in _BIND_FAILURE_MARKERS)
        if bind_failed and time.monotonic() < deadline:
            if not self._port_fixed:
                self.port = 0  # pick another free port
            return True
        if bind_failed:
            raise self._port_in_use(log)
        raise RedisStartError(f"redis-server exited with code {rc} on port {self.port}:\n{log}")

    def _redact(self, log: str) -> str:
        """Hide the passwords in a log an error quotes (Redis quotes a refused config line).

        Args:
            log: The server's log.

        Returns:
            The log with ``password`` and every ACL password (``>pw``, ``<pw``) and
            password hash (``#hash``, ``!hash``) of ``acl_users`` replaced by ``***``.
        """
        secrets = [self.password] if self.password else []
        for rule in self.acl_users:
            secrets += [token[1:] for token in rule.split() if token[:1] in "><#!" and token[1:]]
        for secret in sorted(set(secrets), key=len, reverse=True):  # a secret inside another
            log = log.replace(secret, "***")
        return log

    def _port_in_use(self, log: str) -> RedisStartError:
        # A fixed port (restarts keep theirs) that something else holds.
        return RedisStartError(
            f"port {self.port} is in use by another process: redis-server could not "
            f"listen on it within {self.start_timeout} s:\n{log}"
        )

    def _fail_timeout(self) -> None:
        log = self._redact(self.log_text())
        self.kill()
        spawns = [part for part in log.split("--- spawn") if "\n" in part.strip()]
        if spawns and any(m in spawns[-1] for m in _BIND_FAILURE_MARKERS):
            raise self._port_in_use(log)
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
                    return self._is_ours(int(line.split(b":", 1)[1]))
        # -NOAUTH, -NOPERM...: maybe ours (an ACL denying INFO), maybe another
        # process's server on a fixed port while ours is failing to bind it.
        return self._holds_port()

    def _is_ours(self, pid: int) -> bool:
        """Tell whether ``pid`` is our process, or one in its group (a wrapper's child)."""
        try:
            ours = pid == self.pid or os.getpgid(pid) == self.pid
        except OSError:  # gone, or not visible from here
            ours = False
        if ours:
            self._server_pid = pid
        return ours

    def _holds_port(self) -> bool:
        """Tell whether the socket listening on our port belongs to our process.

        Without /proc (not Linux) nothing tells: a live process is trusted, and a
        failed bind shows once it exits.
        """
        listening = _listening_inodes(self.port)
        held = _socket_inodes(self.pid) if listening is not None else None
        if listening is None or held is None:
            return self.running
        if listening & held:
            return self._is_ours(self.pid)
        # A wrapper script's child (the wrapper holds no socket).
        for pid in _group_pids(self.pid):
            if pid != self.pid and listening & (_socket_inodes(pid) or set()):
                return self._is_ours(pid)
        return False

    def _begin_start(self) -> float:
        """Spawn the process; return the deadline for it to answer."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self._probe_timeout = PROBE_TIMEOUT
        self._server_pid = None
        self._spawn()
        return time.monotonic() + self.start_timeout

    def _ready(self) -> None:
        # Once up, the port is ours: restarts reuse it.
        self._port_fixed = True

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

    async def _await_ready(self, deadline: float) -> None:
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

    def start(self) -> None:
        """Start the server and wait until it answers PING (at most ``start_timeout``).

        The first start picks a free port (another one if it is taken before the
        server binds it); later starts reuse it, so a killed server comes back
        empty at the same address.

        Raises:
            RedisStartError: The server exited or never answered; includes its log.
            RedisServerNotFoundError: No ``redis-server`` executable.
            RuntimeError: The server is already running.
        """
        self._wait_ready(self._begin_start())

    async def astart(self) -> None:
        """Async :meth:`start`: waits with :func:`trio.sleep`.

        Raises:
            RedisStartError: The server exited or never answered; includes its log.
            RedisServerNotFoundError: No ``redis-server`` executable.
            RuntimeError: The server is already running.
        """
        await self._await_ready(self._begin_start())

    # --------------------------------------------------------------- signals

    def _sigkill(self) -> subprocess.Popen[bytes] | None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return None
        _signal_group(proc, signal.SIGKILL)
        return proc

    def kill(self) -> None:
        """SIGKILL the process (frozen or not) and reap it, as a crash would.

        The directory and the port are kept for a later :meth:`start`. Does
        nothing when the server is not running.
        """
        proc = self._sigkill()
        if proc is not None:
            proc.wait()

    async def akill(self) -> None:
        """Async :meth:`kill` (reaps by polling)."""
        proc = self._sigkill()
        # No event tells a child's exit without a SIGCHLD handler: poll (it takes ms).
        while proc is not None and proc.poll() is None:  # noqa: ASYNC110
            await trio.sleep(POLL_INTERVAL)

    def _send_signal(self, sig: signal.Signals) -> float:
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        assert self.process is not None
        _signal_group(self.process, sig)
        return time.monotonic() + STOP_TIMEOUT

    def _state_reached(self, stopped: bool) -> bool:
        # Both the process we started and, under a wrapper script, the server itself.
        for pid in {self.pid, self._server_pid or self.pid}:
            state = _proc_state(pid)
            if state is not None and (state == "T") != stopped:
                return False
        return True  # reached, or no /proc (trust the signal), or gone

    def freeze(self) -> None:
        """SIGSTOP the process and wait until the kernel reports it stopped.

        A frozen server keeps its connections open and the kernel still accepts
        bytes for it, but nothing is answered: a hung server, the hardest
        failure for a client.

        Raises:
            RuntimeError: The server is not running.
            TimeoutError: The kernel did not report it stopped in time.
        """
        self._signal_and_wait(signal.SIGSTOP, stopped=True)

    async def afreeze(self) -> None:
        """Async :meth:`freeze`.

        Raises:
            RuntimeError: The server is not running.
            TimeoutError: The kernel did not report it stopped in time.
        """
        await self._asignal_and_wait(signal.SIGSTOP, stopped=True)

    def thaw(self) -> None:
        """SIGCONT the process and wait until it runs again.

        It then answers what it received while frozen.

        Raises:
            RuntimeError: The server is not running.
            TimeoutError: The kernel did not report it running in time.
        """
        self._signal_and_wait(signal.SIGCONT, stopped=False)

    async def athaw(self) -> None:
        """Async :meth:`thaw`.

        Raises:
            RuntimeError: The server is not running.
            TimeoutError: The kernel did not report it running in time.
        """
        await self._asignal_and_wait(signal.SIGCONT, stopped=False)

    def _signal_and_wait(self, sig: signal.Signals, *, stopped: bool) -> None:
        deadline = self._send_signal(sig)
        while not self._state_reached(stopped):
            self._check_deadline(deadline, stopped)
            time.sleep(POLL_INTERVAL / 5)

    async def _asignal_and_wait(self, sig: signal.Signals, *, stopped: bool) -> None:
        deadline = self._send_signal(sig)
        while not self._state_reached(stopped):
            self._check_deadline(deadline, stopped)
            await trio.sleep(POLL_INTERVAL / 5)

    def _check_deadline(self, deadline: float, stopped: bool) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self!r} did not {'stop' if stopped else 'continue'}")

    def restart_empty(self) -> None:
        """SIGKILL the server (frozen or not), then start an empty one on the same port.

        Raises:
            RedisStartError: The new process did not come up.
        """
        self.kill()
        self.start()

    async def arestart_empty(self) -> None:
        """Async :meth:`restart_empty`.

        Raises:
            RedisStartError: The new process did not come up.
        """
        await self.akill()
        await self.astart()

    def _begin_stop(self, graceful: bool) -> subprocess.Popen[bytes] | None:
        if not graceful:
            return self._sigkill()
        proc = self.process
        if proc is None or proc.poll() is not None:
            return None
        _signal_group(proc, signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        _signal_group(proc, signal.SIGTERM)
        return proc

    def _finish_stop(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.directory is not None and self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def stop(self, *, graceful: bool = True) -> None:
        """Terminate (thawing first if frozen), reap, remove the directory. Idempotent.

        Args:
            graceful: SIGTERM (Redis exits at its next cron tick, up to ~100 ms),
                then SIGKILL after :data:`STOP_TIMEOUT`; False sends SIGKILL at
                once, which loses nothing since the server persists nothing.
        """
        proc = self._begin_stop(graceful)
        try:
            if proc is not None:
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
        finally:
            self._finish_stop()

    async def astop(self, *, graceful: bool = True) -> None:
        """Async :meth:`stop`.

        Args:
            graceful: SIGTERM first when True, SIGKILL at once when False.
        """
        proc = self._begin_stop(graceful)
        try:
            deadline = time.monotonic() + STOP_TIMEOUT
            while proc is not None and proc.poll() is None:
                if time.monotonic() > deadline:
                    _signal_group(proc, signal.SIGKILL)
                    deadline = float("inf")
                await trio.sleep(POLL_INTERVAL)
        finally:
            self._finish_stop()

    # ------------------------------------------------------------- raw RESP

    def client_ssl_context(self) -> ssl.SSLContext:
        """Return an SSL context trusting the server's CA (TLS servers only).

        Returns:
            The context, made once and reused.

        Raises:
            RuntimeError: The server does not use TLS.
        """
        if self.tls is None:
            raise RuntimeError("server does not use TLS")
        if self._client_ssl is None:
            self._client_ssl = self.tls.client_context()
        return self._client_ssl

    def _own_ssl_context(self) -> ssl.SSLContext:
        """The context of this manager's own connections (probes, :meth:`command`).

        It trusts only the server's CA, as :meth:`client_ssl_context` does, but
        checks no host name: a certificate that names ``localhost`` only (or a
        host, not the address) is the server's all the same, and a probe that
        refused it made the start time out with no word of why.
        """
        if self._own_ssl is None:
            own = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            assert self.tls is not None
            own.load_verify_locations(cafile=str(self.tls.ca_file))
            own.check_hostname = False  # still CERT_REQUIRED: the chain is verified
            self._own_ssl = own
        return self._own_ssl

    def _exchange_sync(self, payload: bytes, n: int, timeout: float) -> list[bytes]:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.tls is not None:
            sock = self._own_ssl_context().wrap_socket(sock, server_hostname=self.host)
        with sock:
            sock.sendall(payload)
            buf = bytearray()
            while (replies := split_replies(buf, n)) is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            return replies

    async def _aexchange(self, payload: bytes, n: int) -> list[bytes]:
        stream: trio.abc.Stream
        if self.tls is not None:
            stream = await trio.open_ssl_over_tcp_stream(
                self.host, self.port, ssl_context=self._own_ssl_context()
            )
        else:
            stream = await trio.open_tcp_stream(self.host, self.port)
        async with stream:
            await stream.send_all(payload)
            buf = bytearray()
            while (replies := split_replies(buf, n)) is None:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            return replies

    def _auth_prefix(self) -> tuple[bytes, int]:
        if self.password is None:
            return b"", 0
        return encode_command("AUTH", self.password), 1

    def command(self, *args: Arg, timeout: float = COMMAND_TIMEOUT) -> bytes:
        """Send one command over a fresh raw socket and return the raw reply.

        This talks to the server directly, not through trio-redisha, so that a
        test can check what the server really holds. It authenticates first when
        ``password`` is set, and blocks (a frozen server makes it time out).

        Args:
            *args: Command name and arguments, e.g. ``"GET", "k"``.
            timeout: Socket timeout in seconds.

        Returns:
            The reply bytes exactly as the server sent them, e.g. ``b"$-1\\r\\n"``;
            :func:`~trio_redisha.testing.decode_reply` turns them into values.

        Raises:
            OSError: The server is down (``ConnectionRefusedError``) or too slow
                (``TimeoutError``).
            TypeError: An argument is not an :data:`~trio_redisha.testing.Arg`.
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
            section: An INFO section such as ``"clients"``; the default ones when None.

        Returns:
            The fields as strings.

        Raises:
            ReplyError: The server answered with an error.
        """
        args = ("INFO",) if section is None else ("INFO", section)
        return _parse_info(self.command(*args))

    async def ainfo(self, section: str | None = None) -> dict[str, str]:
        """Async :meth:`info`.

        Args:
            section: An INFO section such as ``"clients"``; the default ones when None.

        Returns:
            The fields as strings.

        Raises:
            ReplyError: The server answered with an error.
        """
        args = ("INFO",) if section is None else ("INFO", section)
        return _parse_info(await self.acommand(*args))

    def client_count(self) -> int:
        """Number of connected clients, not counting the one asking.

        Returns:
            ``connected_clients`` from ``INFO clients`` minus one.
        """
        return int(self.info("clients")["connected_clients"]) - 1

    async def aclient_count(self) -> int:
        """Async :meth:`client_count`.

        Returns:
            ``connected_clients`` from ``INFO clients`` minus one.
        """
        return int((await self.ainfo("clients"))["connected_clients"]) - 1

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
        self.stop(graceful=False)

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
        self.stop(graceful=False)


def _parse_info(raw: bytes) -> dict[str, str]:
    if not raw.startswith(b"$"):
        raise ReplyError(f"INFO failed: {raw.decode(errors='replace').strip()}")
    fields: dict[str, str] = {}
    for line in raw.split(b"\r\n", 1)[1].decode().splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, val = line.partition(":")
            fields[key] = val
    return fields


# --- many servers --------------------------------------------------------------


def stop_servers(servers: Iterable[RedisServer]) -> None:
    """SIGKILL every server at once, then reap them and remove their directories.

    A KeyboardInterrupt arriving meanwhile does not stop the cleanup: it is
    raised again once every server is gone.

    Args:
        servers: Servers in any state (stopped ones are skipped).
    """
    pending = list(servers)
    interrupted: KeyboardInterrupt | None = None
    for server in pending:  # every SIGKILL first: the processes die in parallel
        with contextlib.suppress(OSError):
            server._sigkill()
    for server in pending:
        while True:
            try:
                server.stop(graceful=False)
                break
            except KeyboardInterrupt as exc:
                interrupted = exc
    if interrupted is not None:
        raise interrupted


def start_servers(servers: Iterable[RedisServer]) -> None:
    """Start several servers in parallel: spawn them all, then wait for each.

    Args:
        servers: Servers not running.

    Raises:
        RedisStartError: One did not come up; every server started here is
            stopped then.
        RedisServerNotFoundError: No ``redis-server`` executable.
        RuntimeError: A server given is already running (none is started).
        ConfigurationError: The same server given twice.
    """
    todo = list(servers)
    _check_startable(todo)
    pending: list[tuple[RedisServer, float]] = []
    try:
        for server in todo:
            pending.append((server, server._begin_start()))
        for server, deadline in pending:
            server._wait_ready(deadline)
    except BaseException:
        stop_servers(server for server, _ in pending)
        raise


async def astart_servers(servers: Iterable[RedisServer]) -> None:
    """Async :func:`start_servers`: spawn them all, then wait for them concurrently.

    Args:
        servers: Servers not running.

    Raises:
        RedisStartError: One did not come up; every server started here is
            stopped then.
        RedisServerNotFoundError: No ``redis-server`` executable.
        RuntimeError: A server given is already running (none is started).
        ConfigurationError: The same server given twice.
    """
    todo = list(servers)
    _check_startable(todo)
    pending: list[tuple[RedisServer, float]] = []
    try:
        for server in todo:
            pending.append((server, server._begin_start()))
        try:
            async with trio.open_nursery() as nursery:
                for server, deadline in pending:
                    nursery.start_soon(server._await_ready, deadline)
        except BaseExceptionGroup as group:
            # Report the failure plainly, as trio's own open_* do: no ExceptionGroup
            # escapes the manager (cancellation passes through untouched).
            leaves = _leaves(group)
            if any(isinstance(e, trio.Cancelled) for e in leaves):
                raise
            raise leaves[0] from (group if len(leaves) > 1 else None)
    except BaseException:
        stop_servers(server for server, _ in pending)
        raise


def _check_startable(servers: list[RedisServer]) -> None:
    if len(set(map(id, servers))) != len(servers):
        raise ConfigurationError("the same server was given twice")
    for server in servers:
        if server.running:
            raise RuntimeError(f"{server!r} is already running")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


class RedisServerOptions(TypedDict, total=False):
    """The keyword arguments of :class:`RedisServer`, for the helpers that pass them on.

    For type checkers: a misspelled option is reported where it is written.
    """

    password: str | None
    acl_users: Sequence[str]
    unix_socket: bool
    tls: TLSFiles | None
    port: int | None
    directory: str | os.PathLike[str] | None
    extra_args: Iterable[str]
    executable: str | os.PathLike[str] | None
    start_timeout: float


class RedisServerGroup:
    """Servers made, started and stopped together: the fixtures' factory.

    Every server made by the group is stopped by :meth:`stop_all` (SIGKILL, all
    at once), which ``with`` / ``async with`` call on exit, however the block
    ends.

    Example::

        with RedisServerGroup() as group:
            a, b, c = group.many(3)                 # started in parallel
            secured = group(password="s3cret")      # one more, started
            later = group.new(unix_socket=True)     # made, not started
            later.start()

    Attributes:
        servers: Every server made by the group, in order.
        defaults: The :class:`RedisServer` options given to every server made.
    """

    def __init__(self, **defaults: Unpack[RedisServerOptions]) -> None:
        """Make an empty group.

        Args:
            **defaults: Keyword arguments of :class:`RedisServer` given to every
                server the group makes (``executable=`` typically); those of each
                call override them.
        """
        self.defaults: RedisServerOptions = defaults
        self.servers: list[RedisServer] = []

    def new(self, **options: Unpack[RedisServerOptions]) -> RedisServer:
        """Make a server without starting it (the group will stop it).

        Args:
            **options: Keyword arguments of :class:`RedisServer`.

        Returns:
            The server, not running yet.
        """
        merged: RedisServerOptions = {**self.defaults, **options}
        server = RedisServer(**merged)
        self.servers.append(server)
        return server

    def __call__(self, **options: Unpack[RedisServerOptions]) -> RedisServer:
        """Make and start one server.

        Args:
            **options: Keyword arguments of :class:`RedisServer`.

        Returns:
            The running server.

        Raises:
            RedisStartError: It did not come up.
        """
        return self.many(1, **options)[0]

    def many(self, count: int, **options: Unpack[RedisServerOptions]) -> list[RedisServer]:
        """Make and start ``count`` servers with the same options, in parallel.

        Args:
            count: How many (at least 1).
            **options: Keyword arguments of :class:`RedisServer`.

        Returns:
            The running servers.

        Raises:
            ConfigurationError: ``count`` below 1.
            RedisStartError: One did not come up (the others are stopped).
        """
        servers = self._make(count, options)
        start_servers(servers)
        return servers

    async def amany(self, count: int, **options: Unpack[RedisServerOptions]) -> list[RedisServer]:
        """Async :meth:`many`: the servers start concurrently, the loop keeps running.

        Args:
            count: How many (at least 1).
            **options: Keyword arguments of :class:`RedisServer`.

        Returns:
            The running servers.

        Raises:
            ConfigurationError: ``count`` below 1.
            RedisStartError: One did not come up (the others are stopped).
        """
        servers = self._make(count, options)
        await astart_servers(servers)
        return servers

    def _make(self, count: int, options: RedisServerOptions) -> list[RedisServer]:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"count must be an int >= 1, got {count!r}")
        if count > 1 and {**self.defaults, **options}.get("port") is not None:
            raise ConfigurationError("a fixed port cannot be shared by several servers")
        return [self.new(**options) for _ in range(count)]

    def stop_all(self) -> None:
        """Stop every server made here (SIGKILL, all at once). Idempotent."""
        stop_servers(self.servers)

    def __repr__(self) -> str:
        running = sum(1 for s in self.servers if s.running)
        return f"<RedisServerGroup {len(self.servers)} servers, {running} running>"

    def __enter__(self) -> RedisServerGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    async def __aenter__(self) -> RedisServerGroup:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Synchronous on purpose: SIGKILL and reaping take milliseconds, and no
        # checkpoint means no cancellation or Ctrl-C can cut the cleanup short.
        self.stop_all()


@contextlib.contextmanager
def local_redis_servers(
    count: int = 1, **options: Unpack[RedisServerOptions]
) -> Iterator[list[RedisServer]]:
    """Start ``count`` servers in parallel; stop them all when the block exits.

    For synchronous code (benchmarks that run ``trio.run`` and ``asyncio.run``
    against the same servers, scripts, unittest).

    Example::

        with local_redis_servers(3) as servers:
            urls = [s.url for s in servers]
            trio.run(main, urls)

    Args:
        count: How many servers.
        **options: Keyword arguments of :class:`RedisServer`.

    Yields:
        The running servers.

    Raises:
        RedisStartError: One did not come up (none is left running).
        RedisServerNotFoundError: No ``redis-server`` executable.
    """
    with RedisServerGroup() as group:
        yield group.many(count, **options)


@contextlib.asynccontextmanager
async def open_redis_servers(
    count: int = 1, **options: Unpack[RedisServerOptions]
) -> AsyncIterator[list[RedisServer]]:
    """Start ``count`` servers concurrently; stop them all when the block exits.

    Example::

        async with open_redis_servers(3) as servers:
            async with trio_redisha.open_pool(*(s.url for s in servers)) as pool:
                await servers[0].akill()
                ...

    Args:
        count: How many servers.
        **options: Keyword arguments of :class:`RedisServer`.

    Yields:
        The running servers.

    Raises:
        RedisStartError: One did not come up (none is left running).
        RedisServerNotFoundError: No ``redis-server`` executable.
    """
    async with RedisServerGroup() as group:
        yield await group.amany(count, **options)


@contextlib.asynccontextmanager
async def open_redis_server(
    **options: Unpack[RedisServerOptions],
) -> AsyncIterator[RedisServer]:
    """Start one server; stop it when the block exits.

    Args:
        **options: Keyword arguments of :class:`RedisServer`.

    Yields:
        The running server.

    Raises:
        RedisStartError: It did not come up.
        RedisServerNotFoundError: No ``redis-server`` executable.
    """
    async with open_redis_servers(1, **options) as servers:
        yield servers[0]
