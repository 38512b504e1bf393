"""Lua scripts run with EVALSHA, falling back to EVAL when a server lacks them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["Script"]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, identified by its SHA1 as Redis does.

    :meth:`Pool.execute_script <trio_redisha.Pool.execute_script>` sends
    ``EVALSHA``; a server that answers ``NOSCRIPT`` (it restarted, or never saw the
    script) gets ``EVAL`` with the source once, which also caches it there.

    Attributes:
        source: The Lua source.
        sha: Its lowercase hex SHA1.
    """

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())
