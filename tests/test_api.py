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
