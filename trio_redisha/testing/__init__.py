"""Real ``redis-server`` processes for your tests, as :mod:`trio.testing` is for trio.

A client of several Redis servers is only tested when servers really crash,
hang and come back empty. This package starts throwaway ``redis-server``
processes on free loopback ports (no persistence, one temporary directory
each), breaks them on demand and always stops them, and talks to them directly
to check what they hold, independently of the client under test.

Three ways in, from the same manager:

* pytest fixtures (``redis_server``, ``redis_servers``, ``redis_factory``),
  registered by the :mod:`trio_redisha.testing.pytest_plugin` plugin when
  trio-redisha is installed;
* async context managers for trio code: :func:`open_redis_server`,
  :func:`open_redis_servers`;
* synchronous ones for scripts and benchmarks: :class:`RedisServer` and
  :class:`RedisServerGroup` in a ``with`` block, :func:`local_redis_servers`.

Importing it needs only trio and the standard library (not pytest).
"""

from __future__ import annotations

from ._server import ENV_EXECUTABLE as ENV_EXECUTABLE
from ._server import RedisServer as RedisServer
from ._server import RedisServerError as RedisServerError
from ._server import RedisServerGroup as RedisServerGroup
from ._server import RedisServerNotFoundError as RedisServerNotFoundError
from ._server import RedisServerOptions as RedisServerOptions
from ._server import RedisStartError as RedisStartError
from ._server import TLSFiles as TLSFiles
from ._server import astart_servers as astart_servers
from ._server import find_redis_server as find_redis_server
from ._server import free_port as free_port
from ._server import live_servers as live_servers
from ._server import local_redis_servers as local_redis_servers
from ._server import open_redis_server as open_redis_server
from ._server import open_redis_servers as open_redis_servers
from ._server import pid_alive as pid_alive
from ._server import redis_server_version as redis_server_version
from ._server import redis_tls_support as redis_tls_support
from ._server import spawned_pids as spawned_pids
from ._server import start_servers as start_servers
from ._server import stop_all_servers as stop_all_servers
from ._server import stop_servers as stop_servers
from ._wire import Arg as Arg
from ._wire import RawConnection as RawConnection
from ._wire import decode_reply as decode_reply
from ._wire import encode_command as encode_command
from ._wire import open_raw_connection as open_raw_connection
from ._wire import reply_end as reply_end

__all__ = [
    "ENV_EXECUTABLE",
    "Arg",
    "RawConnection",
    "RedisServer",
    "RedisServerError",
    "RedisServerGroup",
    "RedisServerNotFoundError",
    "RedisServerOptions",
    "RedisStartError",
    "TLSFiles",
    "astart_servers",
    "decode_reply",
    "encode_command",
    "find_redis_server",
    "free_port",
    "live_servers",
    "local_redis_servers",
    "open_raw_connection",
    "open_redis_server",
    "open_redis_servers",
    "pid_alive",
    "redis_server_version",
    "redis_tls_support",
    "reply_end",
    "spawned_pids",
    "start_servers",
    "stop_all_servers",
    "stop_servers",
]
