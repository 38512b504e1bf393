"""The RESP codec's values and public surface: Limits are validated, and the
package exports what it always did.
"""

from __future__ import annotations

from typing import Any

import pytest

from trio_redisha import ConfigurationError, resp
from trio_redisha.resp import DEFAULT_LIMITS, Limits


def test_limits_validation() -> None:
    with pytest.raises(ValueError):
        Limits(max_depth=0)
    with pytest.raises(ValueError):
        Limits(max_bulk_length=-1)
    assert DEFAULT_LIMITS.max_bulk_length == 512 * 1024 * 1024


def test_public_names() -> None:
    # The names the codec exported before it became a package, but HiredisParser;
    # and arg_bytes, which the placement code uses to read keys as they are sent.
    assert sorted(resp.__all__) == [
        "CommandArg",
        "DEFAULT_LIMITS",
        "Limits",
        "NEED_DATA",
        "Parser",
        "Push",
        "RespParser",
        "arg_bytes",
        "encode_command",
        "encode_commands",
        "make_parser",
    ]
    for name in resp.__all__:
        assert getattr(resp, name) is not None, name


@pytest.mark.parametrize(
    "options",
    [
        {"max_depth": 0},
        {"max_bulk_length": -1},
        {"max_bulk_length": True},  # a bool is not a size
        {"max_aggregate_length": False},
        {"max_line_length": 1.5},
        {"max_incomplete_bytes": "1G"},
        {"max_depth": None},
    ],
)
def test_bad_limits_raise_configuration_error(options: dict[str, Any]) -> None:
    # A ConfigurationError, as for every other bad option (and still a ValueError).
    with pytest.raises(ConfigurationError) as info:
        Limits(**options)
    assert isinstance(info.value, ValueError)
    assert next(iter(options)) in str(info.value)


def test_smallest_limits_accepted() -> None:
    limits = Limits(1, 1, 1, 1, 1)
    assert (limits.max_depth, limits.max_bulk_length) == (1, 1)
