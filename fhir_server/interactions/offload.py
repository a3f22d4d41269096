"""Heavy CPU work of one request runs off the event loop, so a big body never stalls the others.

Parsing, validating, indexing and re-serialising a large body take seconds of pure Python. Run on
the event loop they hold up every other request for that long; run here, on a small pool of worker
threads, the loop keeps serving, because the GIL is handed back to it every few milliseconds.

Two things would still stall it, both measured with scripts/bench/hostile.py: the cyclic garbage
collector, whose full collections walk every object in the process while holding the GIL (2-4 s each
while a 10 MB body's millions of objects are alive), and long single C calls. So while any large job
runs, automatic collection is paused (JSON trees are freed by reference counting; the collector
resumes when the last large job ends; ``LargeInput`` keeps it paused for a whole request), and the
C-level scans work in slices.

Small inputs stay inline: a thread hop costs more than the work. The pool has as many threads as
cores, so several big uploads queue instead of starving the loop.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Below this many bytes of input, work runs inline (validating 64 KiB of JSON takes a few ms).
INLINE_BYTES = 64 * 1024

_pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="termtem-cpu")
_lock = threading.Lock()
_running = 0  # large jobs under way
_collector_was_on = False


def _pause_collector() -> None:
    global _running, _collector_was_on
    with _lock:
        if _running == 0:
            _collector_was_on = gc.isenabled()
            gc.disable()
        _running += 1


def _resume_collector() -> None:
    global _running
    with _lock:
        _running -= 1
        if _running == 0 and _collector_was_on:
            gc.enable()


class LargeInput:
    """Held while one request works on a large input: automatic garbage collection stays paused from
    the moment the body is known to be large until the answer is out (between the steps too, or the
    first collection after a step would walk the whole parsed body)."""

    def __init__(self) -> None:
        self.active = False

    def note(self, size: int) -> None:
        if size >= INLINE_BYTES and not self.active:
            self.active = True
            _pause_collector()

    def release(self) -> None:
        if self.active:
            self.active = False
            _resume_collector()


def _large_job(fn: Callable[[], T]) -> T:
    _pause_collector()
    try:
        return fn()
    finally:
        _resume_collector()


async def run(size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``, in a worker thread when ``size`` (bytes of input) is large.

    The result comes back through a plain asyncio future: ``run_in_executor`` chains two futures in a
    reference cycle, which would keep a parsed body alive until the next garbage collection.
    """
    if size < INLINE_BYTES:
        return fn(*args, **kwargs)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    job = functools.partial(fn, *args, **kwargs)

    def work() -> None:
        try:
            result = _large_job(job)
        except BaseException as exc:  # handed to the awaiting request, as if raised there
            loop.call_soon_threadsafe(_settle, done, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    _pool.submit(work)
    return await done


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
