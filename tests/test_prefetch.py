"""Work started ahead of its consumer: both prefetchers keep the same promises.

The result or the exception reaches the consumer in its own task; cancelling stops the work
(and work that never started is not reported as a coroutine never awaited); a consumer cancelled
while it waits stops the work too; closing the prefetcher stops everything still running.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from amperity_async.custom.prefetch import AsyncioPrefetcher, PrefetchClosed, Prefetcher, TaskGroupPrefetcher

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def prefetcher(kind: str) -> AsyncIterator[Prefetcher]:
    if kind == "asyncio":
        made = AsyncioPrefetcher()
        try:
            yield made
        finally:
            await made.aclose()
    else:
        async with anyio.create_task_group() as tg:
            grouped = TaskGroupPrefetcher(tg)
            yield grouped
            await grouped.aclose()


def kinds(anyio_backend: str) -> list[str]:
    return ["asyncio", "group"] if anyio_backend == "asyncio" else ["group"]


async def test_the_result_and_the_error_reach_the_consumer(anyio_backend: str) -> None:
    async def value() -> int:
        await anyio.sleep(0.01)
        return 7

    async def failing() -> int:
        await anyio.sleep(0)
        raise ValueError("bad page")

    for kind in kinds(anyio_backend):
        async with prefetcher(kind) as ahead_of:
            assert await ahead_of.start(value()).result() == 7
            with pytest.raises(ValueError, match="bad page"):
                await ahead_of.start(failing()).result()


async def test_cancelled_work_is_closed_even_before_it_started(anyio_backend: str) -> None:
    started: list[str] = []

    async def work() -> None:
        started.append("yes")
        await anyio.sleep_forever()

    for kind in kinds(anyio_backend):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
            async with prefetcher(kind) as ahead_of:
                ahead = ahead_of.start(work())
                ahead.cancel()  # before the loop ran it
                with anyio.fail_after(5):
                    await ahead.wait()
                with pytest.raises(PrefetchClosed):
                    await ahead.result()
                ahead.cancel()  # again, once done: nothing happens
    assert started == []


async def test_a_consumer_cancelled_while_it_waits_cancels_the_work(anyio_backend: str) -> None:
    stopped: list[str] = []

    async def work() -> str:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.append("stopped")
        return "never"

    for kind in kinds(anyio_backend):
        async with prefetcher(kind) as ahead_of:
            ahead = ahead_of.start(work())
            with anyio.move_on_after(0.05) as waited:
                await ahead.result()
            assert waited.cancelled_caught
            with anyio.fail_after(5):
                await ahead.wait()
    assert stopped == ["stopped"] * len(kinds(anyio_backend))


async def test_closing_stops_what_is_still_running(anyio_backend: str) -> None:
    stopped: list[str] = []

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.append("stopped")

    for kind in kinds(anyio_backend):
        async with prefetcher(kind) as ahead_of:
            ahead = ahead_of.start(forever())
            await anyio.sleep(0.01)
        with pytest.raises(PrefetchClosed, match="closed"):
            await ahead.result()
    assert stopped == ["stopped"] * len(kinds(anyio_backend))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_closed_asyncio_prefetcher_refuses_new_work(anyio_backend: str) -> None:
    async def work() -> None:
        return None

    ahead_of = AsyncioPrefetcher()
    await ahead_of.aclose()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(PrefetchClosed):
            ahead_of.start(work())
