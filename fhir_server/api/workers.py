"""Several server processes on one port and one store, so every core serves requests.

Python runs one request's code at a time per process (the GIL); ``termtem serve --workers N`` starts
N processes that accept connections from one listening socket. They share the store, not memory:

- SQLite in WAL mode lets every process read at once; writes are serialised across processes by
  SQLite's own lock (``BEGIN IMMEDIATE`` waits for the writer of another process), and inside each
  process by its single writer thread, which also group-commits AuditEvents.
- What a process caches is checked against the store on every request, so a change made through one
  process counts in all the others from their next request: consent decisions and identity links
  (the newest Consent or Patient version), the client registry (read on every request), conformance
  resources and custom SearchParameters (``fhir_server.search.sync``).
- One-time work runs once, in the supervisor, before the workers start: the store is prepared (shipped
  conformance resources loaded) and the token-signing key created, so every worker signs and checks
  tokens with the same key.

The supervisor forks the workers after that preparation (no event loop or thread of its own is running
then), forwards SIGTERM and SIGINT to them, and starts a new worker when one dies unexpectedly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

from fhir_server.config import Settings

log = logging.getLogger("termtem")

_RESTART_PAUSE = 1.0  # seconds between restarts of a worker that keeps dying


def default_count() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def usable_count(settings: Settings, wanted: int) -> int:
    """Workers need a store several processes can open: an in-memory SQLite store is one process's."""
    if settings.store_url.endswith(":memory:"):
        return 1
    return max(1, wanted)


def prepare(settings: Settings) -> None:
    """The once-per-server work, before any worker starts: the signing key and the store's contents."""
    if settings.auth:
        from fhir_server.security import keys
        from fhir_server.security.http import KEY_FILE

        keys.load_or_create(settings.data_dir / KEY_FILE)  # creates the folder privately if needed

    async def prepare_store() -> None:
        from fhir_server.interactions.startup import prepare_store as load
        from fhir_server.interactions.startup import release_store
        from fhir_server.storage import create_store, open_store

        store = create_store(settings)
        await open_store(store, settings)
        try:
            await load(store, settings)
        finally:
            await release_store(store)
            await store.close()

    asyncio.run(prepare_store())


def run(config: Any, count: int) -> None:
    """Serve ``config`` (a ``uvicorn.Config``) from ``count`` forked worker processes until stopped."""
    import uvicorn

    sock = config.bind_socket()
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            _end_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                uvicorn.Server(config).run(sockets=[sock])
            except BaseException:  # reported, then the worker ends
                log.exception("worker %d failed", number)
                code = 1
            finally:
                os._exit(code)
        children[pid] = number

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for number in range(count):
        start(number)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        number = children.pop(pid, None)
        if number is None or stopping:
            continue
        log.error("worker %d (pid %d) ended (status %d); starting a new one", number, pid, status)
        time.sleep(_RESTART_PAUSE)
        if not stopping:
            start(number)
    sock.close()


def _end_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the supervisor dies, even by SIGKILL (no orphan keeps
    serving the port after a crash of the server)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
