"""Reading a server's ``INFO`` reply: its fields, and which server software it is.

Every code path that reads ``INFO`` goes through :func:`parse_info`, so Redis
and its forks are told apart in one place. Valkey answers ``server_name:valkey``
and ``valkey_version:8.0.1`` but keeps ``redis_version:7.2.4`` frozen for
clients that check it, so ``redis_version`` alone would report every Valkey
as Redis 7.2.4. Redis itself sends no ``server_name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServerInfo", "parse_info"]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What an ``INFO`` reply says.

    Attributes:
        software: ``"redis"``, ``"valkey"``, or whatever ``server_name`` says.
        version: That software's own version (``valkey_version`` for Valkey,
            ``redis_version`` for Redis), or ``None`` if the reply has none.
        fields: Every ``name:value`` line, section headers and blank lines left out.
    """

    software: str
    version: str | None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        """The version as shown to people: ``"7.0.15"`` for Redis, ``"valkey-8.0.1"`` else."""
        if self.version is None:
            return None
        return self.version if self.software == "redis" else f"{self.software}-{self.version}"

    def get(self, name: str) -> str | None:
        """The value of the field ``name``, or ``None``."""
        return self.fields.get(name)


def parse_info(raw: Any) -> ServerInfo:
    """Parse an ``INFO`` reply (bytes or str, RESP2 bulk or RESP3 verbatim text).

    Args:
        raw: The reply.

    Returns:
        Its fields and the server software and version they name.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    software = (fields.get("server_name") or "redis").strip().lower() or "redis"
    version = fields.get(f"{software}_version")
    if version is None and software == "redis":
        version = fields.get("redis_version")
    return ServerInfo(software, version or None, fields)
