"""Server addresses: redis-py style URL parsing, TLS defaults, and secrecy of passwords."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.harness.helpers import error_text
from trio_redisha import ConfigurationError, ServerSpec, parse_server
from trio_redisha.config import DEFAULT_PORT

#: A password distinctive enough that finding it anywhere is a leak, not a coincidence.
SECRET = "Xq7-SuperSecret-9Zk"


def _config_error(url: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        parse_server(url)
    assert isinstance(info.value, ValueError)  # ConfigurationError is also a ValueError
    return error_text(info.value)


# --------------------------------------------------------------------------- schemes


def test_redis_url_defaults() -> None:
    spec = parse_server("redis://localhost")
    assert spec.host == "localhost"
    assert spec.port == DEFAULT_PORT == 6379
    assert spec.path is None
    assert spec.tls is False
    assert spec.ssl_context is None
    assert spec.username is None
    assert spec.password is None
    assert spec.db == 0
    assert spec.protocol == 2
    assert spec.client_name is None
    assert spec.label == "redis://localhost:6379"
    assert str(spec) == spec.label


def test_redis_url_with_port_and_uppercase_scheme() -> None:
    spec = parse_server("REDIS://10.1.2.3:7000")
    assert (spec.host, spec.port, spec.tls) == ("10.1.2.3", 7000, False)


def test_rediss_verifies_certificates_by_default() -> None:
    spec = parse_server("rediss://redis.example.com:6380")
    assert spec.tls is True
    assert spec.port == 6380
    ctx = spec.ssl_context
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert spec.label == "rediss://redis.example.com:6380"


def test_rediss_explicit_opt_outs() -> None:
    none = parse_server("rediss://h?ssl_cert_reqs=none").ssl_context
    assert none is not None
    assert none.verify_mode == ssl.CERT_NONE
    assert none.check_hostname is False
    optional = parse_server("rediss://h?ssl_cert_reqs=optional").ssl_context
    assert optional is not None
    assert optional.verify_mode == ssl.CERT_OPTIONAL
    # A client's "optional" verifies the certificate all the same: its name
    # check was silently dropped, so any certificate of the CA would pass.
    assert optional.check_hostname is True
    optional_no_name = parse_server(
        "rediss://h?ssl_cert_reqs=optional&ssl_check_hostname=false"
    ).ssl_context
    assert optional_no_name is not None and optional_no_name.check_hostname is False
    no_hostname = parse_server("rediss://h?ssl_check_hostname=false").ssl_context
    assert no_hostname is not None
    assert no_hostname.verify_mode == ssl.CERT_REQUIRED
    assert no_hostname.check_hostname is False


def test_rediss_uses_given_context_unless_url_has_tls_options() -> None:
    ctx = ssl.create_default_context()
    assert parse_server("rediss://h", ssl_context=ctx).ssl_context is ctx
    other = parse_server("rediss://h?ssl_cert_reqs=none", ssl_context=ctx).ssl_context
    assert other is not ctx
    assert other is not None and other.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    "url",
    [
        "rediss://h?ssl_cert_reqs=sometimes",
        "rediss://h?ssl_check_hostname=perhaps",
        "rediss://h?ssl_bogus=1",
        "redis://h?ssl_cert_reqs=none",  # TLS options without TLS
        # A name check of a certificate nobody verifies: it was silently dropped.
        "rediss://h?ssl_cert_reqs=none&ssl_check_hostname=true",
    ],
)
def test_bad_tls_options(url: str) -> None:
    _config_error(url)


def test_unix_socket_url() -> None:
    spec = parse_server("unix:///var/run/redis/redis.sock?db=2")
    assert spec.path == "/var/run/redis/redis.sock"
    assert spec.host is None
    assert spec.tls is False
    assert spec.db == 2
    assert spec.label == "unix:///var/run/redis/redis.sock?db=2"
    assert parse_server("unix:///tmp/r.sock").label == "unix:///tmp/r.sock"


def test_unix_socket_with_credentials() -> None:
    spec = parse_server(f"unix://bob:{SECRET}@/tmp/redis.sock?client_name=worker")
    assert spec.path == "/tmp/redis.sock"
    assert (spec.username, spec.password) == ("bob", SECRET)
    assert spec.client_name == "worker"
    assert SECRET not in repr(spec) and SECRET not in spec.label


def test_unix_socket_without_path() -> None:
    _config_error("unix://")


@pytest.mark.parametrize(
    "query",
    [
        "ssl_cert_reqs=none&ssl_ca_certs=/nonexistent",
        "ssl_cert_reqs=none",
        "ssl_check_hostname=false",
        "db=1&ssl_certfile=/nonexistent/client.pem",
    ],
)
def test_unix_socket_refuses_tls_options(query: str) -> None:
    """TLS options on a unix socket are refused as on redis://, never silently ignored."""
    text = _config_error(f"unix:///tmp/r.sock?{query}")
    assert "rediss://" in text, text


@pytest.mark.parametrize("url", [f"unix:/:{SECRET}@/tmp/r.sock", f"unix:{SECRET}@/tmp/r.sock"])
def test_credentials_mistyped_into_a_socket_path_are_refused_unquoted(url: str) -> None:
    # One slash: urllib sees no netloc, and the password became part of the path,
    # shown by every label and error after.
    text = _config_error(url)
    assert SECRET not in text and "unix://:password@" in text, text
    assert parse_server(f"unix://:{SECRET}@/tmp/r.sock").password == SECRET


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..b", ".a", "foo\udcff"])
def test_host_names_no_resolver_can_look_up_are_refused(host: str) -> None:
    # Each made every connect fail with the idna codec's bare UnicodeError, which
    # took a whole pool down with it.
    assert "invalid host name" in _config_error(f"redis://{host}:6379")
    with pytest.raises(ConfigurationError, match="invalid host name"):
        parse_server((host, 6379))


def test_host_names_and_addresses_that_resolve_are_accepted() -> None:
    for host in ("localhost", "redis-1.internal.", "my_host", "b\u00fccher.example", "a" * 63):
        assert parse_server(f"redis://{host}:6379").host == host
    assert parse_server("redis://[::1]:6379").host == "::1"
    assert parse_server(("fe80::1%eth0", 6379)).port == 6379


# --------------------------------------------------------------------------- fields


def test_user_and_password() -> None:
    spec = parse_server(f"redis://alice:{SECRET}@127.0.0.1:6390/0")
    assert spec.username == "alice"
    assert spec.password == SECRET
    spec = parse_server(f"redis://:{SECRET}@127.0.0.1")
    assert spec.username is None
    assert spec.password == SECRET


def test_percent_encoded_credentials() -> None:
    password = "p@ss/w:rd?#%"
    spec = parse_server(f"redis://{quote('us er', safe='')}:{quote(password, safe='')}@h")
    assert spec.username == "us er"
    assert spec.password == password


def test_ipv6_host() -> None:
    spec = parse_server("redis://[::1]:6380/3")
    assert (spec.host, spec.port, spec.db) == ("::1", 6380, 3)
    assert spec.label == "redis://[::1]:6380/3"
    assert parse_server("redis://[::1]").port == DEFAULT_PORT
    assert parse_server("rediss://[fe80::1]:7000").label == "rediss://[fe80::1]:7000"


def test_db_in_path_and_query() -> None:
    assert parse_server("redis://h/5").db == 5
    assert parse_server("redis://h?db=7").db == 7
    assert parse_server("redis://h:6379/").db == 0
    assert parse_server("redis://h/5").label == "redis://h:6379/5"
    # Both given: redis-py lets the query string win, and URLs are meant to be shared.
    assert parse_server("redis://h/5?db=7").db == 7


def test_protocol_and_client_name() -> None:
    spec = parse_server("redis://h?protocol=3&client_name=api-1")
    assert spec.protocol == 3
    assert spec.client_name == "api-1"
    assert parse_server("redis://h?protocol=2").protocol == 2
    assert parse_server("redis://h?client_name=").client_name is None


def test_option_names_are_case_insensitive() -> None:
    assert parse_server("redis://h?DB=4&Protocol=3").db == 4


def test_ignored_redis_py_options() -> None:
    url = (
        "redis://h:6379/1?socket_timeout=5&socket_connect_timeout=2&socket_keepalive=true"
        "&retry_on_timeout=yes&health_check_interval=30&max_connections=50"
        "&decode_responses=true&encoding=utf-8&encoding_errors=strict"
        "&single_connection_client=false"
    )
    spec = parse_server(url)
    assert (spec.host, spec.port, spec.db) == ("h", 6379, 1)
    assert spec == parse_server("redis://h:6379/1")


def test_tuple_and_spec_inputs() -> None:
    spec = parse_server(("10.0.0.1", 7001))
    assert (spec.host, spec.port, spec.tls) == ("10.0.0.1", 7001, False)
    assert parse_server(spec) is spec


def test_overrides_fill_in_only_what_the_address_leaves_unset() -> None:
    spec = parse_server("redis://h/2", password=SECRET, db=9, protocol=3)
    assert spec.password == SECRET
    assert spec.db == 2  # the URL said 2
    assert spec.protocol == 3
    assert SECRET not in repr(spec)


def test_with_options_copies() -> None:
    spec = parse_server("redis://h")
    other = spec.with_options(db=3)
    assert other.db == 3 and spec.db == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "url",
    [
        "redis://h?frobnicate=1",
        "redis://h?db=1&color=blue",
        "rediss://h?nonsense=yes",
        "unix:///tmp/r.sock?whatever=1",
    ],
)
def test_unknown_option(url: str) -> None:
    text = _config_error(url)
    assert "unknown" in text


@pytest.mark.parametrize(
    "url",
    [
        "http://h:6379",
        "redis+sentinel://h:26379",
        "tcp://h",
        "localhost:6379",
        "//h:6379",
        "",
    ],
)
def test_bad_scheme(url: str) -> None:
    _config_error(url)


@pytest.mark.parametrize(
    "url",
    ["redis://h:notaport", "redis://h:70000", "redis://h:-1", "redis://h:0", "redis://h:65536"],
)
def test_bad_port(url: str) -> None:
    _config_error(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/abc",
        "redis://h/-1",
        "redis://h/99999999999",
        "redis://h?db=abc",
        "redis://h?db=-1",
        "redis://h?db=99999999999",
        "unix:///tmp/r.sock?db=x",
    ],
)
def test_bad_db(url: str) -> None:
    _config_error(url)


@pytest.mark.parametrize(
    "url", ["redis://h?protocol=1", "redis://h?protocol=4", "redis://h?protocol=x"]
)
def test_bad_protocol(url: str) -> None:
    _config_error(url)


@pytest.mark.parametrize("url", ["redis://", "redis://:6379", "rediss:///0"])
def test_missing_host(url: str) -> None:
    _config_error(url)


@pytest.mark.parametrize(
    "server",
    [("h", 0), ("h", 70000), ("h", "6379"), ("h", True), ("h",), ["h", 6379], 6379, None],
)
def test_bad_tuple(server: object) -> None:
    with pytest.raises(ConfigurationError):
        parse_server(server)  # type: ignore[arg-type]


def test_bad_protocol_override() -> None:
    with pytest.raises(ConfigurationError):
        parse_server("redis://h", protocol=4)


def test_unknown_override_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        # A type checker sees the options too: strict mypy reports this ignore
        # as unused if parse_server's options lose their types.
        parse_server("redis://h", pasword=SECRET)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- secrecy


def test_password_not_in_repr_or_label() -> None:
    for url in (
        f"redis://:{SECRET}@127.0.0.1:6379/1",
        f"redis://alice:{SECRET}@[::1]:6379?protocol=3",
        f"rediss://alice:{SECRET}@localhost",
        f"unix://:{SECRET}@/tmp/r.sock?db=3",
    ):
        spec = parse_server(url)
        assert spec.password == SECRET
        for shown in (repr(spec), str(spec), spec.label, f"{spec!r}"):
            assert SECRET not in shown, shown
    spec = ServerSpec(password=SECRET)
    assert SECRET not in repr(spec)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://alice:{SECRET}@h?frobnicate=1",  # unknown option
        f"redis://:{SECRET}@h/notadb",  # bad db in path
        f"redis://:{SECRET}@h?db=x",  # bad db in query
        f"redis://:{SECRET}@h:99999",  # port out of range
        f"redis://:{SECRET}@h:port",  # port not a number
        f"redis://:{SECRET}@h:0",  # port zero
        f"redis://:{SECRET}@:6379",  # no host
        f"http://:{SECRET}@h",  # bad scheme
        f"redis://:{SECRET}@h?ssl_cert_reqs=none",  # TLS option without TLS
        f"rediss://:{SECRET}@h?ssl_cert_reqs=bogus",
        f"redis://:{SECRET}@[::1",  # broken IPv6 literal
        f"redis://:{SECRET}@h?protocol=9",
        f"redis://h?password={SECRET}",  # redis-py also reads the password from the query
        f"redis://h?ssl_password={SECRET}",
        f"redis://h?password={SECRET}&db=zz",
    ],
)
def test_password_not_in_configuration_errors(url: str) -> None:
    text = _config_error(url)
    assert SECRET not in text, text


def _exception_chain_text(exc: BaseException) -> str:
    """The text of an exception and of every exception linked to it.

    Follows ``__cause__`` and ``__context__`` both, even where ``from None``
    hides the context from a traceback: a debugger or an error reporter shows it.
    """
    parts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), *map(str, current.args), repr(current.args)]
        todo += [current.__cause__, current.__context__]
    return "\n".join(parts)


@pytest.mark.parametrize(
    "url",
    [
        f"redis:/:{SECRET}@db.example:6379",  # one slash missing
        f"redis//:{SECRET}@db.example:6379",  # colon missing
        f":{SECRET}@db.example:6379",  # no scheme at all
        f"{SECRET}@db.example:6379",  # no scheme, no colon
        f"redis:///:{SECRET}@db.example",  # three slashes
        f"redis:{SECRET}@db.example",  # no slashes
        f"redis:/alice:{SECRET}@db.example/0",
        f"REDISS:/:{SECRET}@db.example?ssl_cert_reqs=none",
        f"http:/:{SECRET}@db.example",
        f"redis//:{SECRET}@[::1",
        f"redis:/:{SECRET}@db.example?frobnicate=1",
        f"redis:/:{SECRET}@more@db.example",  # an unencoded '@' in the password
        f"redis:/:{SECRET}/x@db.example",
        f"redis://:{SECRET}/x@db.example",  # urllib's own error quotes the password
        f"redis://:{SECRET}?x@db.example",
        f"redis://:{SECRET}#x@db.example:port",
        f"redis://{SECRET}@db.example/notadb",  # a password given as the user name
    ],
)
def test_password_in_malformed_url_never_leaks(url: str) -> None:
    """Whatever the shape of the URL, its userinfo is in no message nor linked exception."""
    with pytest.raises(ConfigurationError) as info:
        parse_server(url)
    text = _exception_chain_text(info.value)
    assert SECRET not in text, text
    assert "***@" in str(info.value), str(info.value)


@pytest.mark.parametrize("sep", ["/", "?", "#", "@", ":", "[", "]", " ", "%", "\\"])
def test_unescaped_special_characters_in_password_never_leak(sep: str) -> None:
    """Credentials that were not percent-encoded confuse URL parsing; no part may leak."""
    first, second = "AlphaSecretPart", "BravoSecretPart"
    password = f"{first}{sep}{second}"
    for url in (
        f"redis://user:{password}@127.0.0.1:6379/0",
        f"redis://:{password}@127.0.0.1",
        f"rediss://user:{password}@localhost:6380?protocol=3",
    ):
        try:
            spec = parse_server(url)
        except ConfigurationError as exc:
            text = error_text(exc)
            assert first not in text and second not in text, text
        else:
            for shown in (repr(spec), spec.label):
                assert first not in shown and second not in shown, shown


@given(
    password=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
    username=st.one_of(st.none(), st.text(alphabet="abcxyz_-0123", min_size=1, max_size=8)),
)
@example(password=SECRET, username="alice")
def test_percent_encoded_password_round_trips_and_stays_hidden(
    password: str, username: str | None
) -> None:
    marked = f"Qz8{password}Wv3"  # distinctive, whatever hypothesis draws
    user = quote(username, safe="") if username else ""
    url = f"redis://{user}:{quote(marked, safe='')}@127.0.0.1:6400/2?bogus_option=1"
    with pytest.raises(ConfigurationError) as info:
        parse_server(url)
    assert marked not in error_text(info.value)
    assert quote(marked, safe="") not in error_text(info.value)
    spec = parse_server(url.replace("?bogus_option=1", ""))
    assert spec.password == marked
    assert spec.username == (username or None)
    assert (spec.host, spec.port, spec.db) == ("127.0.0.1", 6400, 2)
    assert marked not in repr(spec)
    assert marked not in spec.label


@pytest.mark.parametrize(
    "query",
    [
        "ssl_ca_certs=/nonexistent/ca.pem",
        "ssl_certfile=/nonexistent/client.pem",
        "ssl_certfile=/nonexistent/client.pem&ssl_keyfile=/nonexistent/client.key",
        "ssl_keyfile=/nonexistent/client.key",  # a key without its certificate
        "ssl_ca_certs={garbage}",  # exists, but is no certificate
        "ssl_certfile={garbage}",
    ],
)
def test_tls_files_that_cannot_be_loaded(query: str, tmp_path: Any) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    url = "rediss://:s3cret@h?" + query.format(garbage=garbage)
    with pytest.raises(ConfigurationError) as caught:
        parse_server(url)
    text = str(caught.value)
    assert "s3cret" not in text
    assert "nonexistent" in text or "garbage" in text  # names the file at fault


def test_encrypted_key_is_refused_not_prompted_for(tls_files: Any, tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    key: Any = serialization.load_pem_private_key(Path(tls_files.key_file).read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    url = f"rediss://h?ssl_certfile={tls_files.cert_file}&ssl_keyfile={encrypted}"
    with pytest.raises(ConfigurationError, match="encrypted"):
        parse_server(url)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://app:?{SECRET}=x@db.example.com",  # '?' in a password: the rest is the query
        f"redis://:1?db={SECRET}@db.example.com",
        f"redis://:42?{SECRET}=1&x=y@db.example.com",
        f"redis://:1#{SECRET}@db.example.com",  # '#': the fragment
        f"redis://:1/{SECRET}@db.example.com",  # '/': the path
    ],
)
def test_a_password_not_percent_encoded_is_never_quoted(url: str) -> None:
    # The URL was redacted, but the option names and values quoted beside it
    # were pieces of the password ("unknown option(s) xq7-supersecret-9zk").
    text = _config_error(url)
    assert SECRET.lower() not in text.lower(), text
    assert "percent-encode" in text


def test_a_unix_url_with_a_host_part_is_refused_and_its_path_decoded() -> None:
    # unix://tmp/redis.sock read "tmp" as a host and used /redis.sock.
    assert "three slashes" in _config_error("unix://tmp/redis.sock")
    assert parse_server("unix:///tmp/my%20dir/redis.sock").path == "/tmp/my dir/redis.sock"


@pytest.mark.parametrize("db", ["1_0", "+1", "\u0663", " 1", "1 "])
def test_a_database_number_is_ascii_digits(db: str) -> None:
    # int() took "1_0" for 10 and an Arabic-Indic three for 3.
    _config_error(f"redis://h/{db}")
    _config_error(f"redis://h?db={db}")
