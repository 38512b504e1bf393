"""Test harness: real redis-server processes, a fault-injecting proxy, a hostile fake
server and throwaway TLS certificates; each module documents its part.
"""

from __future__ import annotations

from .fault_proxy import FaultProxy, ProxyMode, open_fault_proxy
from .hostile import (
    HANDSHAKE_COMMANDS,
    SETUP_COMMANDS,
    HostileConnection,
    HostileServer,
    answer_handshake,
    close_after,
    never_reply,
    open_hostile_server,
    reply_with,
    wrong_reply_count,
)
from .redis_server import (
    RawConnection,
    RedisServer,
    RedisStartError,
    decode_reply,
    encode_command,
    open_raw_connection,
)
from .tls import TLSFiles, make_tls_files, redis_tls_support

__all__ = [
    "HANDSHAKE_COMMANDS",
    "SETUP_COMMANDS",
    "FaultProxy",
    "HostileConnection",
    "HostileServer",
    "ProxyMode",
    "RawConnection",
    "RedisServer",
    "RedisStartError",
    "TLSFiles",
    "answer_handshake",
    "close_after",
    "decode_reply",
    "encode_command",
    "make_tls_files",
    "never_reply",
    "open_fault_proxy",
    "open_hostile_server",
    "open_raw_connection",
    "redis_tls_support",
    "reply_with",
    "wrong_reply_count",
]
