"""Server addresses: redis-py style URLs and ``(host, port)`` tuples.

``redis://[[user]:password@]host[:port][/db][?option=value...]``,
``rediss://...`` for TLS (certificate verification on by default) and
``unix://[[user]:password@]/path/to/redis.sock[?db=N]``.

Query options: ``db``, ``protocol`` (2 or 3), ``client_name``,
``ssl_cert_reqs`` (``required`` (default), ``optional`` or ``none``),
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname``.
redis-py options that have no meaning here (``socket_timeout``,
``health_check_interval``...) are accepted and ignored, so URLs can be shared.
Passwords never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import ssl
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import parse_qsl, unquote, urlsplit

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ServerOptions", "ServerSpec", "parse_server"]

DEFAULT_PORT = 6379

# redis-py URL options that configure things this library does its own way.
_IGNORED_OPTIONS = frozenset(
    {
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "health_check_interval",
        "max_connections",
        "decode_responses",
        "encoding",
        "encoding_errors",
        "single_connection_client",
        "timeout",
        "readonly",
    }
)
_MAX_DB = 1 << 20
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


@dataclass(frozen=True)
class ServerSpec:
    """Where one Redis server is and how to greet it.

    Attributes:
        host: Host name or IP address (``None`` for a unix socket).
        port: TCP port.
        path: Unix socket path, or ``None`` for TCP.
        tls: Whether to speak TLS.
        username: ACL user name, if any.
        password: Password, if any. Never shown in ``repr``.
        db: Database number selected on connect.
        protocol: RESP version, 2 or 3.
        client_name: Sent with ``CLIENT SETNAME`` (or ``HELLO ... SETNAME``).
        ssl_context: TLS settings; verification is on unless the URL turned it off.
    """

    host: str | None = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str | None = None
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    protocol: int = 2
    client_name: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """The address as a URL without credentials, for logs and status."""
        if self.path is not None:
            base = f"unix://{self.path}"
            return base if not self.db else f"{base}?db={self.db}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        base = f"{scheme}://{host}:{self.port}"
        return base if not self.db else f"{base}/{self.db}"

    def __str__(self) -> str:
        return self.label

    def with_options(self, **changes: Any) -> ServerSpec:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)


_SPEC_FIELDS = frozenset(f.name for f in fields(ServerSpec))


class ServerOptions(TypedDict, total=False):
    """The fields of a :class:`ServerSpec` that :func:`parse_server` may fill in.

    For type checkers: a misspelled option passed to :func:`parse_server`,
    :func:`~trio_redisha.connect` or :func:`~trio_redisha.open_connection` is
    reported where it is written, not only when the call runs. ``None``
    leaves a field as the address sets it.
    """

    host: str | None
    port: int
    path: str | None
    tls: bool
    username: str | None
    password: str | None
    db: int
    protocol: int | None
    client_name: str | None


def _flag(name: str, value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigurationError(f"option {name} must be true or false, got {value!r}")


def _digits(text: str) -> int | None:
    """``text`` as a number if it is ASCII digits only (``int()`` also takes
    ``"1_0"``, ``"+1"``, ``" 1"`` and other scripts' digits)."""
    return int(text) if text.isascii() and text.isdigit() else None


def _int_option(name: str, value: str, low: int, high: int) -> int:
    n = _digits(value)
    if n is None:
        raise ConfigurationError(f"option {name} must be an integer, got {value!r}")
    if not low <= n <= high:
        raise ConfigurationError(f"option {name} must be in {low}..{high}, got {n}")
    return n


def make_ssl_context(
    *,
    cert_reqs: str = "required",
    ca_certs: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    check_hostname: bool | None = None,
) -> ssl.SSLContext:
    """Build a client TLS context; verification is on unless asked otherwise.

    Raises:
        ConfigurationError: An option is invalid, or a file it names cannot be
            read as a certificate or key (missing, unreadable, wrong format, or
            an encrypted key: the library never prompts for a passphrase).
    """
    try:
        ctx = ssl.create_default_context(cafile=ca_certs)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigurationError(
            f"ssl_ca_certs {ca_certs!r} cannot be loaded: {_file_error(exc)}"
        ) from None
    reqs = cert_reqs.lower()
    if reqs == "none":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif reqs == "optional":
        # A client verifies an "optional" certificate as a required one (the
        # server always sends one); its name is checked too, unless
        # ssl_check_hostname=false says otherwise.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    elif reqs != "required":
        raise ConfigurationError(
            f"ssl_cert_reqs must be required, optional or none, got {cert_reqs!r}"
        )
    if check_hostname and ctx.verify_mode == ssl.CERT_NONE:
        # Checking the name of a certificate nobody verifies checks nothing:
        # say so, rather than silently not checking it.
        raise ConfigurationError(
            "ssl_check_hostname=true needs a verified certificate, not ssl_cert_reqs=none"
        )
    if check_hostname is not None and ctx.verify_mode != ssl.CERT_NONE:
        ctx.check_hostname = check_hostname
    if certfile:
        try:
            ctx.load_cert_chain(certfile, keyfile, password=_no_passphrase)
        except (OSError, ValueError) as exc:
            files = repr(certfile) + (f" / {keyfile!r}" if keyfile else "")
            raise ConfigurationError(
                f"ssl_certfile/ssl_keyfile {files} cannot be loaded: {_file_error(exc)}"
            ) from None
    elif keyfile:
        raise ConfigurationError(f"ssl_keyfile {keyfile!r} needs ssl_certfile")
    return ctx


def _no_passphrase() -> str:
    # Without a callback OpenSSL would prompt on the terminal, and hang a service.
    raise ValueError("the key is encrypted; decrypt it or pass your own ssl_context")


def _file_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    return str(exc) or type(exc).__name__


def _parse_url(url: str, ssl_context: ssl.SSLContext | None) -> ServerSpec:
    # Errors are raised outside the ``except`` blocks: urllib's messages quote the
    # text they failed on, which can be part of a password that was not
    # percent-encoded, and an exception's ``__context__`` outlives ``from None``.
    error: str | None = None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        error = str(exc)
    if error is not None:
        # Give urllib's message only when the URL holds no credentials.
        redacted = _redact(url)
        detail = f": {error}" if redacted == url else ""
        raise ConfigurationError(f"invalid server URL {redacted!r}{detail}")
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        # A '/', '?' or '#' in a password not percent-encoded ends the host part
        # early: the rest of the password would be read as the path, options
        # or fragment, and quoted in the errors about them. (unix:/:pw@/path,
        # one slash, puts the credentials in the socket path.) Never quoted.
        if parts.scheme.lower() == "unix" and not parts.netloc:
            raise ConfigurationError(
                f"the socket path of {_redact(url)!r} holds '@': credentials go before "
                "the path, as in unix://:password@/path/to/redis.sock"
            )
        raise ConfigurationError(
            f"invalid server URL {_redact(url)!r}: an '@' after the host part; percent-encode"
            " the credentials (a '/', '?' or '#' in a password as %2F, %3F, %23)"
        )
    if port == 0:
        raise ConfigurationError(f"port must be in 1..65535 in {_redact(url)!r}")
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"unsupported URL scheme {parts.scheme!r} in {_redact(url)!r}: "
            "use redis://, rediss:// or unix://"
        )
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    options: dict[str, str] = {}
    pairs: list[tuple[str, str]] | None = None
    with contextlib.suppress(ValueError):
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    if pairs is None:
        raise ConfigurationError(f"invalid query string in {_redact(url)!r}")
    for key, value in pairs:
        options[key.lower()] = value
    db = 0
    path_db = parts.path.lstrip("/") if scheme != "unix" else ""
    if path_db:
        n = _digits(path_db)
        db = -1 if n is None else n
        if not 0 <= db <= _MAX_DB:
            raise ConfigurationError(
                f"the path of {_redact(url)!r} must be a database number in 0..{_MAX_DB}"
            )
    if "db" in options:  # as in redis-py, ?db= wins over the path
        db = _int_option("db", options.pop("db"), 0, _MAX_DB)
    protocol = (
        _int_option("protocol", options.pop("protocol"), 2, 3) if "protocol" in options else 2
    )
    client_name = options.pop("client_name", None) or None
    tls_opts = {k: options.pop(k) for k in list(options) if k.startswith("ssl_")}
    for key in list(options):
        if key in _IGNORED_OPTIONS:
            options.pop(key)
    if options:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(options))} in {_redact(url)!r}"
        )
    if tls_opts and scheme != "rediss":
        raise ConfigurationError(f"TLS options need a rediss:// URL: {_redact(url)!r}")
    if scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"{_redact(url)!r} names no socket path")
        if parts.hostname:
            # unix://tmp/redis.sock: "tmp" is a host, and the path /redis.sock.
            raise ConfigurationError(
                f"{_redact(url)!r} has a host part: a socket path needs three slashes,"
                " as in unix:///path/to/redis.sock"
            )
        return ServerSpec(
            host=None,
            port=0,
            path=unquote(parts.path),  # percent-decoded, as the credentials are
            username=username,
            password=password,
            db=db,
            protocol=protocol,
            client_name=client_name,
        )
    host = parts.hostname
    if not host:
        raise ConfigurationError(f"{_redact(url)!r} names no host")
    _check_host(host, _redact(url))
    tls = scheme == "rediss"
    ctx = None
    if tls:
        unknown = set(tls_opts) - {
            "ssl_cert_reqs",
            "ssl_ca_certs",
            "ssl_certfile",
            "ssl_keyfile",
            "ssl_check_hostname",
        }
        if unknown:
            raise ConfigurationError(f"unknown TLS option(s) {', '.join(sorted(unknown))}")
        if ssl_context is not None and not tls_opts:
            ctx = ssl_context
        else:
            ctx = make_ssl_context(
                cert_reqs=tls_opts.get("ssl_cert_reqs", "required"),
                ca_certs=tls_opts.get("ssl_ca_certs") or None,
                certfile=tls_opts.get("ssl_certfile") or None,
                keyfile=tls_opts.get("ssl_keyfile") or None,
                check_hostname=(
                    _flag("ssl_check_hostname", tls_opts["ssl_check_hostname"])
                    if "ssl_check_hostname" in tls_opts
                    else None
                ),
            )
    return ServerSpec(
        host=host,
        port=port if port is not None else DEFAULT_PORT,
        tls=tls,
        username=username,
        password=password,
        db=db,
        protocol=protocol,
        client_name=client_name,
        ssl_context=ctx,
    )


def _check_host(host: str, shown: str) -> None:
    """Refuse a host name no resolver can look up (checked here, not at connect time).

    An IP literal is fine; a name must encode as IDNA: no label over 63
    characters, no empty label (``a..b``), no lone surrogate. Otherwise every
    connect would fail with the codec's bare ``UnicodeError``.

    Raises:
        ConfigurationError: ``host`` is not a valid host name.
    """
    try:
        ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        pass
    else:
        return
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise ConfigurationError(f"invalid host name in {shown!r}: {exc}") from None


def _redact(url: str) -> str:
    """Return the URL with its credentials hidden, whatever the shape of the text.

    Works on the raw text rather than on :func:`urlsplit`'s view of it: a password
    holding an unencoded ``/``, ``?`` or ``#`` ends urllib's netloc early, and a
    mistyped scheme separator (``redis:/``, ``redis//``, none at all) leaves no
    netloc, and the password must be hidden all the same. So everything up to the
    last ``@`` (the user name too: ``redis://secret@host`` is a common slip) is
    replaced by ``***@``, but a scheme followed by ``://`` or one of ours followed
    by a mistyped separator. ``password``-like query options are hidden too.
    """
    prefix, rest = "", url
    if "@" in url:
        head, _, tail = url.rpartition("@")
        scheme = _SCHEME_SEP.match(head) or _KNOWN_SCHEME.match(head)
        prefix = scheme.group() if scheme else ""
        rest = f"***@{tail}"
    if "?" in rest:
        rest, _, query = rest.partition("?")
        query, hash_, fragment = query.partition("#")
        shown = []
        for item in query.split("&"):
            name, eq, _ = item.partition("=")
            shown.append(f"{name}=***" if eq and "pass" in name.lower() else item)
        rest = f"{rest}?{'&'.join(shown)}{hash_}{fragment}"
    return f"{prefix}{rest}"


# A scheme as RFC 3986 spells it, then ``://``: the userinfo follows.
_SCHEME_SEP = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# One of our schemes followed by a mistyped separator: safe to show, as it can be
# no part of a password.
_KNOWN_SCHEME = re.compile(r"(?:rediss|redis|unix)[:/]+", re.IGNORECASE)


def parse_server(
    server: str | tuple[str, int] | ServerSpec,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **overrides: Unpack[ServerOptions],
) -> ServerSpec:
    """Turn a URL, a ``(host, port)`` tuple or a :class:`ServerSpec` into a spec.

    Args:
        server: The address.
        ssl_context: TLS context for ``rediss://`` URLs that carry no ``ssl_*``
            options (for example one that trusts a private CA).
        **overrides: Fields to set on every spec (``password``, ``protocol``...),
            applied where the address itself does not set them.

    Raises:
        ConfigurationError: The address is malformed; the message never contains
            the password.
    """
    if isinstance(server, ServerSpec):
        spec = server
    elif isinstance(server, str):
        spec = _parse_url(server, ssl_context)
    elif (
        isinstance(server, tuple)
        and len(server) == 2
        and isinstance(server[0], str)
        and isinstance(server[1], int)
        and not isinstance(server[1], bool)
    ):
        host, port = server
        if not 0 < port < 65536:
            raise ConfigurationError(f"port must be in 1..65535, got {port!r}")
        _check_host(host, host)
        spec = ServerSpec(host=host, port=port)
    else:
        raise ConfigurationError(
            f"a server is a URL string or a (host, port) tuple, got {type(server).__name__}"
        )
    if overrides:
        unknown = set(overrides) - _SPEC_FIELDS
        if unknown:
            raise ConfigurationError(f"unknown server option(s) {', '.join(sorted(unknown))}")
        defaults = ServerSpec()
        changes: dict[str, Any] = {
            k: v
            for k, v in overrides.items()
            if v is not None and getattr(spec, k) == getattr(defaults, k)
        }
        if changes:
            spec = replace(spec, **changes)
    if spec.protocol not in (2, 3):
        raise ConfigurationError(f"protocol must be 2 or 3, got {spec.protocol!r}")
    return spec
