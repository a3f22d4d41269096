"""Run an export into a folder: against a server (a Bulk Data client) or straight on a store.

Used by ``termtem export``. Against a server it does what a well-behaved bulk client does: kick-off
with ``Prefer: respond-async``, polling that honours ``Retry-After``, streamed downloads checked
against the manifest's counts. On a store it runs the same export job in this process, as the
operator (who holds the store and so sees everything), writing the files straight into the folder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.export.files import open_private, private_write
from fhir_server.storage.files import private_dir

Progress = Callable[[str], None]


@dataclass
class ExportOptions:
    level: str = "system"  # system | patient | group
    group: str | None = None
    types: list[str] = field(default_factory=list)
    since: str | None = None
    type_filters: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    deidentify: bool = False
    lenient: bool = False

    def path(self) -> str:
        if self.level == "group":
            if not self.group:
                raise ValueError("a Group-level export needs a Group id")
            return f"Group/{self.group}/$export"
        return "Patient/$export" if self.level == "patient" else "$export"

    def query(self) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since:
            params.append(("_since", self.since))
        params += [("_typeFilter", f) for f in self.type_filters]
        if self.elements:
            params.append(("_elements", ",".join(self.elements)))
        if self.patients:
            params.append(("patient", ",".join(p if "/" in p else f"Patient/{p}" for p in self.patients)))
        if self.deidentify:
            params.append(("deidentify", "true"))
        return params

    def parameters(self) -> dict[str, Any]:
        return {
            "resourceType": "Parameters",
            "parameter": [{"name": k, "valueString": v} for k, v in self.query()],
        }


@dataclass
class ExportResult:
    folder: Path
    manifest: dict[str, Any]
    counts: dict[str, int]
    files: list[Path]


class ExportFailed(Exception):
    """The server refused or failed the export (the message is its OperationOutcome's diagnostics)."""


def _diagnostics(reply: Any) -> str:
    try:
        return "; ".join(i.get("diagnostics", "") for i in reply.json().get("issue", [])) or reply.text
    except ValueError:
        return str(reply.text)[:500]


async def from_server(
    base: str,
    options: ExportOptions,
    folder: Path,
    *,
    token: str | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Kick off at ``base``, wait for the manifest and download every file into ``folder``."""
    import httpx

    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    private_dir(folder)  # new folders 0700, files 0600: children's data
    async with httpx.AsyncClient(base_url=base.rstrip("/") + "/", headers=headers, timeout=120) as http:
        query = urlencode(options.query())
        prefer = "respond-async, handling=lenient" if options.lenient else "respond-async"
        kick = await http.get(options.path() + (f"?{query}" if query else ""), headers={"Prefer": prefer})
        if kick.status_code != 202:
            raise ExportFailed(f"kick-off answered {kick.status_code}: {_diagnostics(kick)}")
        status_url = kick.headers["content-location"]
        while True:
            reply = await http.get(status_url)
            if reply.status_code == 200:
                manifest = reply.json()
                break
            if reply.status_code not in (202, 429):
                raise ExportFailed(f"status answered {reply.status_code}: {_diagnostics(reply)}")
            if progress is not None and reply.headers.get("x-progress"):
                progress(reply.headers["x-progress"])
            await asyncio.sleep(float(reply.headers.get("retry-after", "2")))
        files: list[Path] = []
        counts: dict[str, int] = {}
        for part in ("output", "deleted", "error"):
            for entry in manifest.get(part, []):
                name = entry["url"].rsplit("/", 1)[-1]
                target = folder / name
                lines = 0
                async with http.stream(
                    "GET", entry["url"], headers={"Accept": "application/fhir+ndjson"}
                ) as got:
                    if got.status_code != 200:
                        raise ExportFailed(f"download of {name} answered {got.status_code}")
                    with open_private(target) as out:
                        async for chunk in got.aiter_bytes():
                            out.write(chunk)
                            lines += chunk.count(b"\n")
                if lines != entry["count"]:
                    raise ExportFailed(f"{name} has {lines} lines, the manifest says {entry['count']}")
                files.append(target)
                if part == "output":
                    counts[entry["type"]] = counts.get(entry["type"], 0) + entry["count"]
                if progress is not None:
                    progress(f"downloaded {name}")
        await http.delete(status_url)  # the server may free the files now
    private_write(folder / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return ExportResult(folder, manifest, counts, files)


async def from_store(
    store_url: str,
    options: ExportOptions,
    folder: Path,
    *,
    project: str | None = None,
    k: int | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Run the export job in this process on ``store_url``, its files written into ``folder``."""
    from fhir_server import jobs
    from fhir_server.config import Settings
    from fhir_server.export import service
    from fhir_server.storage import create_store

    settings = Settings(store_url=store_url, auth=False)
    if k is not None:
        settings.export_k = k
    store = create_store(settings)
    await store.open()
    try:
        from fhir_server.export.request import Level

        level: Level = (
            "group" if options.level == "group" else "patient" if options.level == "patient" else "system"
        )
        started = await service.kick_off(
            store=store,
            settings=settings,
            base_url="file:",
            parameters=options.parameters(),
            level=level,
            group_id=options.group,
            prefer={"respond-async": "", **({"handling": "lenient"} if options.lenient else {})},
            principal=None,
            purpose=None,
            request_url=f"termtem export {options.path()}?{urlencode(options.query())}",
            folder=folder.resolve(),
            project=project,
        )
        task = asyncio.create_task(jobs.run_now(store, started.job_id))
        while not task.done():
            await asyncio.sleep(0.5)
            job = await jobs.get(store, started.job_id)
            if progress is not None and job is not None and job.progress.get("message"):
                progress(str(job.progress["message"]))
        job = await task
        if job.state != "completed":
            raise ExportFailed(f"the export {job.state}: {job.error or ''}")
        refused = (job.result or {}).get("refused")
        if refused:
            issue = (refused["outcome"].get("issue") or [{}])[0]
            raise ExportFailed(f"refused ({refused['status']}): {issue.get('diagnostics')}")
        manifest = (job.result or {})["manifest"]
        await jobs.remove(store, started.job_id)  # the files are the operator's now; the record is not needed
    finally:
        await store.close()
    files = [
        folder / e["url"].rsplit("/", 1)[-1]
        for part in ("output", "deleted", "error")
        for e in manifest[part]
    ]
    for entry in (e for part in ("output", "deleted", "error") for e in manifest[part]):
        entry["url"] = entry["url"].rsplit("/", 1)[-1]  # relative: the files sit beside the manifest
    private_write(folder / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    counts: dict[str, int] = {}
    for entry in manifest["output"]:
        counts[entry["type"]] = counts.get(entry["type"], 0) + entry["count"]
    return ExportResult(folder, manifest, counts, files)
