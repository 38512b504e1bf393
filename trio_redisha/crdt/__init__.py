"""Conflict-free replicated data types stored on every server of a pool.

:class:`Counter` (a PN-counter), :class:`HashMap` (last-writer-wins fields)
and :class:`Set` (an LWW-element set) read from every server, merge, repair
the servers found behind, and write with idempotent Lua scripts. See
``docs/consistency.md`` for the model and the storage layout.

Anti-entropy: :func:`repair_key` merges one key across the servers and writes
it back where it is behind; :func:`repair_all` walks every key (what
``trio-redisha repair`` runs) and returns a :class:`RepairReport`.

What the objects on one pool share (its clock, actor id, default write
quorum, read-repair budget, counter totals) is the pool's
:class:`CRDTContext`, from :func:`context_for`.
"""

from __future__ import annotations

from ._base import DEFAULT_TOMBSTONE_GRACE as DEFAULT_TOMBSTONE_GRACE
from ._context import CRDTContext as CRDTContext
from ._context import context_for as context_for
from ._state import CounterState as CounterState
from ._state import Entry as Entry
from ._state import MapState as MapState
from ._state import SetState as SetState
from ._storage import MARKER_FIELD as MARKER_FIELD
from ._storage import REGISTRY as REGISTRY
from ._storage import CRDTType as CRDTType
from ._storage import detect_type as detect_type
from .codecs import BytesCodec as BytesCodec
from .codecs import Codec as Codec
from .codecs import JSONCodec as JSONCodec
from .codecs import StrCodec as StrCodec
from .counter import Counter as Counter
from .hashmap import HashMap as HashMap
from .repair import RepairReport as RepairReport
from .repair import repair_all as repair_all
from .repair import repair_key as repair_key
from .set import Set as Set

__all__ = [
    "DEFAULT_TOMBSTONE_GRACE",
    "MARKER_FIELD",
    "REGISTRY",
    "BytesCodec",
    "CRDTContext",
    "CRDTType",
    "Codec",
    "Counter",
    "CounterState",
    "Entry",
    "HashMap",
    "JSONCodec",
    "MapState",
    "RepairReport",
    "Set",
    "SetState",
    "StrCodec",
    "context_for",
    "detect_type",
    "repair_all",
    "repair_key",
]
