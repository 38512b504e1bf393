"""Moved: the server manager is public now, as :mod:`trio_redisha.testing`.

This module only re-exports it, so that tests written against the old path keep
importing; new code imports from ``trio_redisha.testing``.
"""

from __future__ import annotations

from trio_redisha import ReplyError
from trio_redisha.testing import (
    Arg,
    RawConnection,
    RedisServer,
    RedisServerNotFoundError,
    RedisStartError,
    decode_reply,
    encode_command,
    find_redis_server,
    free_port,
    live_servers,
    open_raw_connection,
    pid_alive,
    reply_end,
    spawned_pids,
    start_servers,
    stop_all_servers,
)

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

#: The old name of the error value :func:`decode_reply` returns.
RespError = ReplyError
