"""Test harness: a fault-injecting proxy, a hostile fake server and throwaway TLS
certificates; each module documents its part. The real redis-server processes come
from the public :mod:`trio_redisha.testing`.
"""

from __future__ import annotations

from trio_redisha.testing import (
    RawConnection,
    RedisServer,
    RedisStartError,
    TLSFiles,
    decode_reply,
    encode_command,
    open_raw_connection,
    redis_tls_support,
)

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
from .tls import make_tls_files

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
