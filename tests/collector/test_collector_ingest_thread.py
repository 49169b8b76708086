"""api._in_thread: a post's ingest runs in the app's executor and is awaited to its end,
even when the request is cancelled (as anyio.to_thread.run_sync did), so its report is
stored or refused whole before its in-flight slot is given back."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")

from bench_agent.collector.api import _in_thread
from bench_agent.collector.ingest import Stored

STORED = Stored(True, 7, "d" * 64, "n1")


def test_the_call_runs_in_an_executor_thread_and_its_answer_comes_back() -> None:
    threads: list[str] = []

    def call() -> Stored:
        threads.append(threading.current_thread().name)
        return STORED

    with ThreadPoolExecutor(2, thread_name_prefix="ingest") as executor:
        assert asyncio.run(_in_thread(executor, call)) is STORED
    assert len(threads) == 1 and threads[0].startswith("ingest")


def test_a_refusal_in_the_thread_is_raised_to_the_request() -> None:
    def call() -> Stored:
        raise ValueError("refused in the thread")

    with ThreadPoolExecutor(1) as executor, pytest.raises(ValueError, match="in the thread"):
        asyncio.run(_in_thread(executor, call))


def test_a_cancelled_request_waits_for_its_thread() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def call() -> Stored:
        started.set()
        release.wait(10)
        finished.set()
        return STORED

    async def scenario() -> list[str]:
        seen = []
        task = asyncio.create_task(_in_thread(executor, call))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0.05)
        # Cancelled, but the ingest is still running: the request has not ended.
        seen.append(f"done={task.done()} finished={finished.is_set()}")
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        seen.append(f"done={task.done()} finished={finished.is_set()}")
        return seen

    with ThreadPoolExecutor(1) as executor:
        assert asyncio.run(scenario()) == ["done=False finished=False",
                                           "done=True finished=True"]
