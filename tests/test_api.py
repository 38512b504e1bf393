"""The public surface: what the package exports, and that it is documented."""

from __future__ import annotations

import inspect

import trio_redisha
from trio_redisha import exceptions


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
