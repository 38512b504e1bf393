"""The small shared helpers: quantiles, and the owned nursery of the open_* managers."""

from __future__ import annotations

import sys

import pytest
import trio

from trio_redisha._util import open_owned_nursery, quantile, word

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


def test_quantile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]  # 1..100
    assert quantile(samples, 0.50) == 50.0
    assert quantile(samples, 0.99) == 99.0
    assert quantile(samples, 1.0) == 100.0
    assert quantile(samples, 0.0) == 1.0  # the smallest, never the largest
    assert quantile([3.0], 0.99) == 3.0
    assert quantile([], 0.5) is None
    assert quantile([5.0, 1.0, 3.0], 0.5) == 3.0  # order of the input does not matter


async def test_owned_nursery_hands_back_the_blocks_exception() -> None:
    with pytest.raises(KeyError):
        async with open_owned_nursery():
            raise KeyError("mine")


async def test_owned_nursery_hands_back_a_tasks_sole_failure() -> None:
    async def boom() -> None:
        raise ValueError("task")

    with pytest.raises(ValueError, match="task"):
        async with open_owned_nursery() as nursery:
            nursery.start_soon(boom)
            await trio.sleep_forever()


async def test_owned_nursery_with_a_task_and_the_block_failing() -> None:
    async def boom() -> None:
        raise ValueError("task")

    with pytest.raises(BaseExceptionGroup) as caught:
        async with open_owned_nursery() as nursery:
            nursery.start_soon(boom)  # runs, and fails, before its first checkpoint
            raise KeyError("block")
    assert {type(e) for e in caught.value.exceptions} == {ValueError, KeyError}


def test_word_of_a_released_memoryview_is_none() -> None:
    # bytes() of it raised a bare ValueError before the encoder could say
    # CommandEncodeError (as the command name, or CLIENT's third argument).
    view = memoryview(b"GET")
    view.release()
    assert word(view) is None
    assert word(memoryview(b"get")) == "GET"
