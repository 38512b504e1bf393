"""A starsessions store on trio-redisha: sessions on every server, merged per field.

`starsessions <https://github.com/alex-oleshkevich/starsessions>`_ gives
Starlette and FastAPI server-side sessions through a pluggable store whose
interface moves the whole session as one serialized blob:
``read(session_id, lifetime) -> bytes`` and ``write(session_id, data,
lifetime, ttl) -> str``. Its own ``RedisStore`` writes that blob as one Redis
string on one server, so of two concurrent requests of a session that change
different fields, the later write puts back the other's old value.

:class:`RedisHAStore` decodes the blob (with the middleware's serializer,
JSON by default) and keeps the session in a :class:`~trio_redisha.SessionStore`,
one field per session key, so only the fields a request changed are written
and the fields it removed are deleted. To know what changed, :meth:`read`
hides a digest of each field it returned, and the id it read (sealed: the
application sees the metadata, and must not see the id), inside starsessions'
own ``__metadata__`` entry (which starsessions hands back to :meth:`write`
untouched); :meth:`write` strips it before storing anything. It also fixes
two things of starsessions' own design:

* a session id that the store does not know (forged, expired, deleted) is
  never adopted: :meth:`write` puts the session under a new id of its own
  (256 random bits) and returns it, as the interface allows;
* after ``regenerate_session_id()`` the old id is deleted, not left alive
  until it expires (also when the session was emptied, as a logout that
  clears it and regenerates the id does).

The expiry is the :class:`SessionStore`'s ``ttl`` (sliding, refreshed by
every write): starsessions' ``lifetime`` and ``ttl`` arguments are not used,
so give the store the lifetime you give the middleware. When no quorum can be
met, :class:`~trio_redisha.QuorumError` propagates to the application (a 500
from Starlette, unless it has an exception handler for it).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import re
import secrets
from typing import Any, Final

try:
    from starsessions.serializers import JsonSerializer, Serializer
    from starsessions.stores.base import SessionStore as _StarSessionStore
except ImportError as exc:  # the extra is missing: say which
    raise ImportError(
        f"trio_redisha.starsessions needs starsessions ({exc.name} is missing): "
        "pip install 'trio-redisha[starsessions]'"
    ) from exc

from .crdt.codecs import encode_value
from .exceptions import ConfigurationError
from .session import SessionStore

__all__ = ["METADATA_KEY", "RedisHAStore"]

#: The entry starsessions keeps its metadata in (creation time, lifetime).
METADATA_KEY: Final = "__metadata__"
_TOKEN: Final = "trio_redisha"
# Stands for "changed" in a snapshot: no codec's output is a lone NUL byte
# (JSON never is), so it never equals a field's encoding.
_CHANGED: Final = b"\x00"
# The id this request's session was read under (:meth:`RedisHAStore.read`).
# starsessions removes an emptied session under its current id: after
# regenerate_session_id(), a new id never stored, so remove() needs the old
# one. Each request runs in a task of its own, whose context this lives in
# (a session read in a child task, as under Starlette's BaseHTTPMiddleware, is
# not seen by the parent that removes it: see the docs).
_READ_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "trio_redisha_starsessions_read_id", default=None
)
#: What an id issued by :meth:`SessionStore.new_id` looks like (the only ids
#: :meth:`RedisHAStore.write` stores): starsessions' own ids (32 hex digits, as
#: ``regenerate_session_id()`` makes) never do.
_ISSUED_ID: Final = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")


# What read() hands to write() travels in the session's metadata, which the
# application sees (and may log, or return): under a key of this process's own
# (read() and write() of a request run in one process). The id read travels
# sealed, neither readable nor forgeable there (a session id is a bearer
# secret), and the digests of the fields are keyed (a plain hash of a short
# secret, a reset code, gives the secret away).
_SEAL_KEY: Final = secrets.token_bytes(32)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16, key=_SEAL_KEY, person=b"redisha-field").hexdigest()


_NONCE: Final = 16
_TAG: Final = 16


def _keystream(nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range(-(-length // 64)):
        blocks.append(
            hashlib.blake2b(
                nonce + counter.to_bytes(4, "big"), key=_SEAL_KEY, person=b"redisha-sid-key"
            ).digest()
        )
    return b"".join(blocks)[:length]


def _tag(nonce: bytes, sealed: bytes) -> bytes:
    return hashlib.blake2b(
        nonce + sealed, key=_SEAL_KEY, digest_size=_TAG, person=b"redisha-sid-tag"
    ).digest()


def _seal(sid: str) -> str:
    """``sid`` encrypted and authenticated under this process's key, as text."""
    data = sid.encode("ascii")
    nonce = secrets.token_bytes(_NONCE)
    sealed = bytes(a ^ b for a, b in zip(data, _keystream(nonce, len(data)), strict=True))
    return base64.urlsafe_b64encode(nonce + _tag(nonce, sealed) + sealed).decode("ascii")


def _unseal(token: object) -> str | None:
    """The id :func:`_seal` sealed in ``token``; ``None`` if it is not one of ours."""
    if not isinstance(token, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    nonce, tag, sealed = raw[:_NONCE], raw[_NONCE : _NONCE + _TAG], raw[_NONCE + _TAG :]
    if len(nonce) < _NONCE or not hmac.compare_digest(tag, _tag(nonce, sealed)):
        return None
    data = bytes(a ^ b for a, b in zip(sealed, _keystream(nonce, len(sealed)), strict=True))
    return data.decode("ascii", "replace")


class RedisHAStore(_StarSessionStore):
    """A starsessions ``SessionStore`` keeping sessions in a trio-redisha :class:`SessionStore`.

    Example::

        store = SessionStore(pool, ttl=3600)
        app = Starlette(
            routes=...,
            middleware=[
                Middleware(SessionMiddleware, store=RedisHAStore(store), lifetime=3600),
                Middleware(SessionAutoloadMiddleware),
            ],
        )

    Args:
        store: Where the sessions live.
        serializer: The serializer given to starsessions' ``SessionMiddleware``
            (default: its ``JsonSerializer``, as there). It must turn a session
            into a JSON object's worth of fields: a ``dict`` with ``str`` keys.

    Raises:
        ConfigurationError: ``store`` is not a :class:`SessionStore`.
    """

    def __init__(self, store: SessionStore, serializer: Serializer | None = None) -> None:
        if not isinstance(store, SessionStore):
            raise ConfigurationError(f"store must be a SessionStore, got {store!r}")
        self.store = store
        self.serializer: Serializer = serializer or JsonSerializer()

    def __repr__(self) -> str:
        return f"<RedisHAStore on {self.store!r}>"

    async def read(self, session_id: str, lifetime: int) -> bytes:
        """The session's data, serialized; ``b""`` for an unknown or invalid id.

        Raises:
            QuorumError: Fewer than the store's ``read_quorum`` servers answered.
        """
        _READ_ID.set(None)  # (should a server run two requests in one context)
        if not self.store.is_valid_id(session_id):
            return b""  # never sent to Redis
        session = await self.store.load(session_id)
        if not session:
            return b""
        _READ_ID.set(session_id)
        data = dict(session)
        fields = {k: _digest(v) for k, v in session._loaded.items()}
        metadata = data.get(METADATA_KEY)
        metadata = dict(metadata) if isinstance(metadata, dict) else {}
        metadata[_TOKEN] = {"sid": _seal(session_id), "fields": fields}
        data[METADATA_KEY] = metadata
        return self.serializer.serialize(data)

    async def write(self, session_id: str, data: bytes, lifetime: int, ttl: int) -> str:
        """Save what changed since :meth:`read`; the session's id, possibly a new one.

        Returns:
            ``session_id`` when it is the id the session was read under; else
            a new id (a session new to the store, or one whose id was
            regenerated, whose old id is then deleted).

        Raises:
            CodecError: A value cannot be encoded; nothing was sent.
            QuorumError: Fewer than the store's ``write_quorum`` servers acknowledged.
        """
        _READ_ID.set(None)  # the token below says which id was read
        values: dict[str, Any] = dict(self.serializer.deserialize(data))
        token: Any = None
        metadata = values.get(METADATA_KEY)
        if isinstance(metadata, dict):
            metadata = dict(metadata)
            token = metadata.pop(_TOKEN, None)
            values[METADATA_KEY] = metadata
        read_sid = _unseal(token.get("sid")) if isinstance(token, dict) else None
        fields = token.get("fields") if isinstance(token, dict) else None
        snapshot = None
        old: str | None = read_sid if isinstance(read_sid, str) else None
        if old is not None and self.store.is_valid_id(old) and isinstance(fields, dict):
            # Rebuild what was read, as far as saving needs it: a field whose
            # encoding still has its digest is unchanged; any other one changed.
            loaded: dict[str, bytes] = {}
            for name, digest in fields.items():
                if name in values:
                    encoded = encode_value(self.store.codec, values[name])
                    loaded[name] = encoded if _digest(encoded) == digest else _CHANGED
                else:
                    loaded[name] = _CHANGED  # removed: save() deletes it
            snapshot = self.store._snapshot(old, values, loaded)
        if snapshot is not None and old == session_id:
            # Only into a session that still exists: one deleted (or expired)
            # while this request ran is not brought back (nothing is written).
            await self.store.save(session_id, snapshot)
            return session_id
        # New to the store, or regenerated: a new id of ours, the whole session
        # (regenerated: as the old id holds it now, with this request's changes).
        new_id = self.store.new_id()
        if snapshot is not None and old is not None:
            await self.store.save(new_id, await self.store._rebased(old, snapshot))
        else:
            await self.store.save(new_id, values)
        if old is not None:
            await self.store.delete(old)  # the old id opens nothing any more
        return new_id

    async def remove(self, session_id: str) -> None:
        """Delete the session on every server, for good (an invalid id is ignored).

        When ``session_id`` is one this store never issued (starsessions
        removes an emptied session under its current id, which after
        ``regenerate_session_id()`` is a new one of its own), the session read
        in this request is deleted instead: the old id opens nothing afterwards.
        Any id this store issued is deleted alone (an admin logging a user out
        keeps their own session).

        Raises:
            QuorumError: Fewer than the store's ``write_quorum`` servers acknowledged.
        """
        read_id = _READ_ID.get()
        if read_id is not None and read_id != session_id and not _ISSUED_ID.match(session_id):
            _READ_ID.set(None)
            await self.store.delete(read_id)
        await self.store.delete(session_id)

    async def exists(self, session_id: str) -> bool:
        """Whether the store holds a session under ``session_id``.

        Raises:
            QuorumError: Fewer than the store's ``read_quorum`` servers answered.
        """
        return self.store.is_valid_id(session_id) and bool(await self.store.load(session_id))
