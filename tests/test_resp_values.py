"""The RESP codec's values and public surface: Limits are validated, and the
package exports what it always did.
"""

from __future__ import annotations

import pytest

from trio_redisha import resp
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
