"""trio-redisha: highly available Redis for Trio.

Every command runs on several independent Redis servers in parallel; a server
that is down or hung never blocks a call, and the replies are merged with
CRDTs (counter, map, set) into a highly available store.
"""

from __future__ import annotations

from .config import ServerSpec as ServerSpec
from .config import parse_server as parse_server
from .connection import Connection as Connection
from .connection import connect as connect
from .connection import open_connection as open_connection
from .crdt import Counter as Counter
from .crdt import HashMap as HashMap
from .crdt import Set as Set
from .exceptions import AuthenticationError as AuthenticationError
from .exceptions import CodecError as CodecError
from .exceptions import CodecTypeError as CodecTypeError
from .exceptions import CommandEncodeError as CommandEncodeError
from .exceptions import ConfigurationError as ConfigurationError
from .exceptions import CrossSlotError as CrossSlotError
from .exceptions import ForeignValueError as ForeignValueError
from .exceptions import PoolClosed as PoolClosed
from .exceptions import ProtocolError as ProtocolError
from .exceptions import QuorumError as QuorumError
from .exceptions import RedisHAError as RedisHAError
from .exceptions import RedisServerError as RedisServerError
from .exceptions import RedisServerNotFoundError as RedisServerNotFoundError
from .exceptions import RedisStartError as RedisStartError
from .exceptions import ReplyError as ReplyError
from .exceptions import ReplyTooLarge as ReplyTooLarge
from .exceptions import ServerTimeout as ServerTimeout
from .exceptions import ServerUnavailable as ServerUnavailable
from .exceptions import UnsupportedCommand as UnsupportedCommand
from .hlc import HybridLogicalClock as HybridLogicalClock
from .pool import Pool as Pool
from .pool import ServerState as ServerState
from .pool import ServerStatus as ServerStatus
from .pool import open_pool as open_pool
from .replies import Replies as Replies
from .resp import Limits as Limits
from .scripts import Script as Script
from .session import Session as Session
from .session import SessionStore as SessionStore

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CodecError",
    "CodecTypeError",
    "CommandEncodeError",
    "ConfigurationError",
    "Connection",
    "Counter",
    "CrossSlotError",
    "ForeignValueError",
    "HashMap",
    "HybridLogicalClock",
    "Limits",
    "Pool",
    "PoolClosed",
    "ProtocolError",
    "QuorumError",
    "RedisHAError",
    "RedisServerError",
    "RedisServerNotFoundError",
    "RedisStartError",
    "Replies",
    "ReplyError",
    "ReplyTooLarge",
    "Script",
    "ServerSpec",
    "ServerState",
    "ServerStatus",
    "ServerTimeout",
    "ServerUnavailable",
    "Session",
    "SessionStore",
    "Set",
    "UnsupportedCommand",
    "connect",
    "open_connection",
    "open_pool",
    "parse_server",
]
