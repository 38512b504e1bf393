"""The HA pool: every command on every server in parallel, never blocked by one.

A module per concern, as httpcore's pool: the public façade
(:class:`Pool`, :func:`open_pool`, in ``_pool.py``), what the pool knows about
each server (a synchronous state machine, ``_server.py``), the upkeep that
keeps connections alive (connect, backoff, probe: ``_upkeep.py``), and which
commands may run on shared connections (``_guard.py``).
"""

from __future__ import annotations

from ._pool import DEFAULT_CLOSE_TIMEOUT as DEFAULT_CLOSE_TIMEOUT
from ._pool import DEFAULT_REPAIR_RATE as DEFAULT_REPAIR_RATE
from ._pool import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._pool import Pool as Pool
from ._pool import open_pool as open_pool
from ._server import LATENCY_SAMPLES as LATENCY_SAMPLES
from ._server import ServerState as ServerState
from ._server import ServerStatus as ServerStatus
from ._stats import PoolStats as PoolStats
from ._upkeep import DEFAULT_BACKOFF_BASE as DEFAULT_BACKOFF_BASE
from ._upkeep import DEFAULT_BACKOFF_CAP as DEFAULT_BACKOFF_CAP
from ._upkeep import DEFAULT_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT
from ._upkeep import DEFAULT_TRIP_AFTER as DEFAULT_TRIP_AFTER

__all__ = ["Pool", "PoolStats", "ServerState", "ServerStatus", "open_pool"]
