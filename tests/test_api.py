"""The public surface: what the package exports, and that it is documented."""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys

import pytest

import trio_redisha
from trio_redisha import Replies, ReplyError, exceptions


def test_every_export_exists_and_is_documented() -> None:
    for name in trio_redisha.__all__:
        obj = getattr(trio_redisha, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_exports_are_exactly_the_public_names() -> None:
    public = {n for n in vars(trio_redisha) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(trio_redisha, n))}
    assert public - modules - {"annotations"} == set(trio_redisha.__all__)


def test_one_exception_hierarchy() -> None:
    for name in exceptions.__all__:
        exc = getattr(exceptions, name)
        assert issubclass(exc, trio_redisha.RedisHAError)
        assert getattr(trio_redisha, name) is exc


def test_fixed_api_names_exist() -> None:
    for name in (
        "open_pool",
        "Pool",
        "Replies",
        "RedisHAError",
        "ServerUnavailable",
        "ServerTimeout",
        "ReplyError",
        "QuorumError",
        "ProtocolError",
    ):
        assert hasattr(trio_redisha, name), name


def test_every_library_exception_lives_in_the_exceptions_module() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(trio_redisha.__path__, "trio_redisha."):
        if info.name.startswith("trio_redisha.cli") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                assert obj.__module__ == "trio_redisha.exceptions" or not issubclass(
                    obj, trio_redisha.RedisHAError
                ), f"{info.name}.{name} is defined outside trio_redisha.exceptions"


def test_package_exports_the_types_its_api_returns() -> None:
    assert trio_redisha.Session.__module__ == "trio_redisha.session"
    assert trio_redisha.Limits.__module__.startswith("trio_redisha.resp")
    assert {"Counter", "HashMap", "Set", "SessionStore"} <= set(trio_redisha.__all__)


def _sample_exceptions() -> list[BaseException]:
    """One instance of every public exception class, with every attribute it has set."""
    replies = Replies(
        [b"OK", ReplyError("ERR no"), exceptions.ServerUnavailable("down")],
        servers=("redis://a:6379", "redis://b:6379", "redis://c:6379"),
    )
    made: dict[str, BaseException] = {
        "ReplyError": exceptions.ReplyError("WRONGTYPE Operation against a key"),
        "QuorumError": exceptions.QuorumError(
            "1 of 3 servers succeeded, 2 needed",
            replies=replies,
            required=2,
            succeeded=1,
            may_have_applied=True,
        ),
        "CrossSlotError": exceptions.CrossSlotError(
            "keys 1 and 2 of MSET have different owners", command="MSET"
        ),
        "ForeignValueError": exceptions.ForeignValueError("key b'k' holds a string", key=b"k"),
    }
    for name in exceptions.__all__:
        if name not in made:
            made[name] = getattr(exceptions, name)(f"a {name}")
    for exc in made.values():
        if isinstance(exc, exceptions.ServerUnavailable):
            exc.sent = True  # set per instance where the command had left
        # An attribute added on the way up (as add_note's __notes__ on Python 3.11+).
        setattr(exc, "origin", "worker-3")  # noqa: B010
    assert {type(e).__name__ for e in made.values()} == set(exceptions.__all__)
    return list(made.values())


@pytest.mark.parametrize("protocol", [0, 1, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("exc", _sample_exceptions(), ids=lambda e: type(e).__name__)
def test_every_exception_survives_pickling(exc: BaseException, protocol: int) -> None:
    # Exceptions cross process boundaries (multiprocessing, ProcessPoolExecutor,
    # logging queues) by pickle: each must come back whole. Protocols 0 and 1
    # (logging's SocketHandler uses 1) refused a QuorumError: its Replies has
    # __slots__ and no __getstate__.
    back = pickle.loads(pickle.dumps(exc, protocol=protocol))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.args == exc.args
    # Replies holds a ServerUnavailable, which compares by identity: see below.
    assert {k: v for k, v in vars(back).items() if k != "replies"} == {
        k: v for k, v in vars(exc).items() if k != "replies"
    }
    assert getattr(back, "origin", None) == "worker-3"
    if isinstance(exc, exceptions.QuorumError):
        assert isinstance(back, exceptions.QuorumError)
        assert isinstance(back.replies, Replies)
        assert [(type(r), repr(r)) for r in back.replies] == [
            (type(r), repr(r)) for r in exc.replies
        ]
        assert back.replies.servers == exc.replies.servers
        assert back.replies.script == exc.replies.script
        assert (back.required, back.succeeded, back.may_have_applied) == (2, 1, True)
    if isinstance(exc, exceptions.ServerUnavailable):
        assert getattr(back, "sent", None) is True


async def test_open_pool_options_are_typed() -> None:
    # `make test` runs mypy strict over this file: were open_pool's options an
    # untyped **options again (a misspelled one passed the type check and failed
    # only at run time), the ignore below would be unused, which mypy reports.
    with pytest.raises(TypeError, match="read_cahce"):
        async with trio_redisha.open_pool("redis://127.0.0.1:1", read_cahce=0):  # type: ignore[call-arg]
            pass  # pragma: no cover
    assert list(inspect.signature(trio_redisha.open_pool).parameters) == [
        "servers",
        "timeout",
        "options",
    ]


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("trio_redisha.quart", "quart_trio", "quart"),
        ("trio_redisha.quart", "flask", "quart"),
        ("trio_redisha.starsessions", "starsessions", "starsessions"),
    ],
)
def test_a_module_whose_extra_is_missing_names_the_extra(
    module: str, missing: str, extra: str
) -> None:
    # It was a bare "No module named 'flask'": following that led nowhere.
    code = f"import sys\nsys.modules[{missing!r}] = None  # as if not installed\nimport {module}\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"pip install 'trio-redisha[{extra}]'" in proc.stderr, proc.stderr
