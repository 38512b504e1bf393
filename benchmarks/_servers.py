"""Throwaway ``redis-server`` processes for the benchmarks.

:func:`redis_servers` starts N servers on free loopback ports, each with no
persistence (``--save "" --appendonly no``) in its own temporary directory, waits
until each answers PING, and always stops them again: on normal exit, on an
exception, on Ctrl-C (``KeyboardInterrupt`` unwinds through the ``finally``) and on
SIGTERM (turned into ``SystemExit`` while the servers run). A frozen (SIGSTOP)
server is thawed before it is stopped.

It is synchronous on purpose: one set of servers serves benchmark rounds run by
``trio.run`` and ``asyncio.run`` alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "RedisServer",
    "find_redis_server",
    "is_interrupt",
    "redis_servers",
    "server_version",
]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def find_redis_server() -> str | None:
    """The ``redis-server`` executable, or None when it is not installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def server_version(exe: str) -> str:
    """``redis-server --version`` reduced to the version number, e.g. ``7.0.15``."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "unknown"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ping(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One running ``redis-server`` on 127.0.0.1."""

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self._dir = tempfile.mkdtemp(prefix="redisha-bench-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start on a free port (retrying on a port race) and wait for PING."""
        last = ""
        for _ in range(5):
            self.port = _free_port()
            log = os.path.join(self._dir, "redis.log")
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self._dir,
                    "--logfile", log,
                    "--daemonize", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if _ping(self.port, 0.2):
                    return
                time.sleep(0.01)
            with contextlib.suppress(OSError), open(log, errors="replace") as f:
                last = f.read()[-500:]
            self._kill()
        raise RuntimeError(f"redis-server did not start: {last}")

    def command(self, *args: str | bytes | int) -> bytes:
        """Send one command on a fresh socket and return the raw first reply line."""
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        data = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as s:
            s.sendall(data)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        if reply.startswith(b"-"):
            raise RuntimeError(f"{args[0]!r} failed: {reply.decode(errors='replace').strip()}")
        return reply

    def freeze(self) -> None:
        """SIGSTOP: the server hangs (connections stay open, nothing is answered)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: the server resumes and answers what it received meanwhile."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def _kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        self.frozen = False

    def stop(self) -> None:
        """Stop the process (thawing it first) and remove its directory."""
        try:
            self._kill()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def redis_servers(count: int, exe: str | None = None) -> Iterator[list[RedisServer]]:
    """Start ``count`` servers; stop them all when the block exits, however it exits."""
    exe = exe or find_redis_server()
    if exe is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    servers: list[RedisServer] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for _ in range(count):
            server = RedisServer(exe)
            servers.append(server)
            server.start()
        yield servers
    finally:
        # Ctrl-C during the cleanup must not leave servers behind.
        for server in servers:
            for _ in range(3):
                try:
                    server.stop()
                    break
                except KeyboardInterrupt:
                    continue
        signal.signal(signal.SIGTERM, previous)


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C, possibly wrapped in (nested) exception groups."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    subs = getattr(exc, "exceptions", None)
    if isinstance(exc, BaseException) and isinstance(subs, tuple) and subs:
        return all(isinstance(s, BaseException) and is_interrupt(s) for s in subs)
    return False
