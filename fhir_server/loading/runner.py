"""Submitting bundles to a running server (HTTP) or straight into a store, N at a time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from fhir_server.loading.sources import Submission, submissions

_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")


@dataclass
class LoadFailure:
    source: str
    entry: int | None
    reason: str


@dataclass
class LoadSummary:
    bundles: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failures: list[LoadFailure] = field(default_factory=list)

    def count(self, response: dict[str, Any]) -> None:
        self.bundles += 1
        for entry in response.get("entry") or []:
            status = str(entry.get("response", {}).get("status", ""))
            if status.startswith("201"):
                self.created += 1
            elif status.startswith("200"):
                self.updated += 1
            else:
                self.unchanged += 1


class AuthRefused(RuntimeError):
    """The server refused the credentials (401) or the client's rights (403): sending more is pointless.

    The message is one line with the hint an operator needs; ``summary`` is what was done before.
    """

    def __init__(self, status: int, body: dict[str, Any] | str, summary: LoadSummary | None = None) -> None:
        self.status = status
        self.summary = summary
        super().__init__(auth_hint(status, body))


def auth_hint(status: int, body: dict[str, Any] | str) -> str:
    if isinstance(body, dict):
        issues = body.get("issue") or [{}]
        detail = str(issues[0].get("diagnostics") or body.get("error_description") or "")
    else:
        detail = body[:200]
    detail = f" ({detail})" if detail else ""
    if status == 401:
        return (
            f"the server answered 401 Unauthorized{detail}: it needs an access token; pass --token TOKEN"
            " or set TERMTEM_TOKEN (get one with `termtem token CLIENT --key KEY --server URL`)."
            " Stopped at the first refusal."
        )
    return (
        f"the server answered 403 Forbidden{detail}: this token's client may not write this data; check its"
        " role and scopes (`termtem client list`) or use another client's --token. Stopped at the first"
        " refusal."
    )


class Target(Protocol):
    async def submit(self, bundle: bytes) -> tuple[int, dict[str, Any]]: ...

    async def close(self) -> None: ...


class ServerTarget:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        headers = {"content-type": "application/fhir+json", "prefer": "return=minimal"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=600)

    async def submit(self, bundle: bytes) -> tuple[int, dict[str, Any]]:
        response = await self._http.post("", content=bundle)
        try:
            return response.status_code, response.json()
        except ValueError:  # not JSON (a proxy's error page): keep the status
            return response.status_code, {"issue": [{"diagnostics": response.text[:200]}]}

    async def close(self) -> None:
        await self._http.aclose()


class StoreTarget:
    """In-process: the same bundle processing the server runs, on a store opened here.

    With ``agency`` (``Organization/ID``) every resource written carries that agency's writing tag,
    stamped by the security layer's own guard, so the agency's clients see the data over HTTP as if
    they had written it; without it only admin clients see it. ``ValueError`` for a bad ``agency``.
    """

    def __init__(self, store_url: str, agency: str | None = None) -> None:
        from fhir_server.config import Settings
        from fhir_server.storage import create_store

        self._settings = Settings(store_url=store_url)
        self._store = create_store(self._settings)
        self._writer: Any = self._store
        if agency is not None:
            from fhir_server.security.guard import agency_writer

            self._writer = agency_writer(self._store, agency)
        self._opened = False

    async def submit(self, bundle: bytes) -> tuple[int, dict[str, Any]]:
        from fhir_server.interactions.bundle import process_bundle
        from fhir_server.interactions.context import RequestContext
        from fhir_server.interactions.errors import FhirError

        if not self._opened:
            from fhir_server.interactions.startup import prepare_store
            from fhir_server.storage import open_store

            await open_store(self._store, self._settings)
            await prepare_store(self._store, self._settings)
            self._opened = True
        ctx = RequestContext(
            store=self._writer, settings=self._settings, base_url="", prefer_return="minimal"
        )
        try:
            return 200, await process_bundle(ctx, bundle)
        except FhirError as error:
            return error.status, error.outcome()

    async def close(self) -> None:
        if self._opened:
            from fhir_server.interactions.startup import release_store

            await release_store(self._store)
            await self._store.close()


async def load_paths(
    paths: list[Path],
    target: Target,
    *,
    workers: int = 1,
    dedupe: tuple[str, ...] = (),
    on_progress: Callable[[Submission], None] | None = None,
) -> LoadSummary:
    """Submit every bundle from ``paths``; failures are collected, not raised.

    A 401 or 403 stops the load at once (every later bundle would get the same answer) and raises
    ``AuthRefused`` with a hint about ``--token``.
    """
    summary = LoadSummary()
    queue: asyncio.Queue[Submission | None] = asyncio.Queue(maxsize=workers * 2)
    refused: list[tuple[int, dict[str, Any]]] = []
    crashed: list[BaseException] = []  # e.g. a store that cannot be opened: stop, then raise it

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            if refused or crashed:
                continue  # drain what was queued before the stop, unsent
            try:
                status, body = await target.submit(item.bundle)
            except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                summary.failures.append(LoadFailure(item.source, None, f"{type(exc).__name__}: {exc}"))
            except Exception as exc:
                crashed.append(exc)
            else:
                if status in (401, 403):
                    refused.append((status, body))
                elif status == 200 and body.get("resourceType") == "Bundle":
                    summary.count(body)
                else:
                    summary.failures.append(_failure(item.source, status, body))
            if on_progress:
                on_progress(item)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
    try:
        for item in submissions(paths, dedupe):
            if refused or crashed:
                break
            await queue.put(item)
    finally:
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    if crashed:
        raise crashed[0]
    if refused:
        raise AuthRefused(*refused[0], summary=summary)
    return summary


def _failure(source: str, status: int, body: dict[str, Any]) -> LoadFailure:
    issues = body.get("issue") or [{}]
    text = str(issues[0].get("diagnostics", f"HTTP {status}"))
    match = _ENTRY.search(text)
    return LoadFailure(source, int(match.group(1)) if match else None, f"{status}: {text}")
