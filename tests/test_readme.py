"""The README's first example runs as shown, against three real servers."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import trio

from trio_redisha.testing import RedisServer

README = Path(__file__).resolve().parent.parent / "README.md"


def _first_python_block() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## A first example.*?```python\n(.*?)```", text, re.S)
    assert match, "README has no first example"
    return match.group(1)


def test_readme_example_prints_what_its_comments_say(redis_servers: list[RedisServer]) -> None:
    code = _first_python_block()
    # Point the example's three addresses at the fixture servers.
    for default, server in zip((6379, 6380, 6381), redis_servers, strict=True):
        code = code.replace(f"127.0.0.1:{default}", f"127.0.0.1:{server.port}")
        code = code.replace(f'("127.0.0.1", {default})', f'("127.0.0.1", {server.port})')
    expected = [
        m.group(1).strip()
        for line in code.splitlines()
        if (m := re.search(r"print\(.*\)\s+# (.*)$", line))
    ]
    assert len(expected) == 5
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme", "trio": trio})
    assert out.getvalue().splitlines() == expected
