"""``termtem import``: legacy agency files → checked, mapped, profile-validated FHIR transaction bundles.

Writes go either over HTTP (``--server``) or in-process into a store (``--store``); ``--dry-run`` only
maps and validates. Every rejected record lands in the error report and makes the exit status 1.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import importlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from fhir_server.loading.runner import AuthRefused
from fhir_server.mapping import MappedRecord, RowError, SpecError, available_formats, batch_records, map_files
from fhir_server.mapping.engine import full_url

# One resource in, (FHIRPath expression, message) for each profile error out.
ResourceCheck = Callable[[dict[str, Any]], list[tuple[str, str]]]

_console = Console(stderr=True)


def profile_validator() -> ResourceCheck | None:
    """A check of each mapped resource against its Thai profile, or None when no validator is installed.

    References inside a record are ``urn:uuid`` placeholders or conditional ``Type?identifier=`` URLs
    until the server resolves them; the validator sees them as ``Type/<id>`` so reference-type rules and
    invariants such as PDPA grantor checks can be applied before anything is written.
    """
    try:
        validator = importlib.import_module("fhir_server.validation.validator")
    except ModuleNotFoundError:
        return None

    def check(resource: dict[str, Any]) -> list[tuple[str, str]]:
        issues = validator.validate(resource)
        return [
            ((i.get("expression") or [""])[0], i.get("diagnostics", "invalid"))
            for i in issues
            if i.get("severity") in ("error", "fatal")
        ]

    return check


def _resolved_refs(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'].rsplit(':', 1)[-1]}"
            for e in entries}


def _rewrite(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            if key == "reference" and isinstance(sub, str):
                if sub in refs:
                    sub = refs[sub]
                elif "?" in sub:
                    kind, _, query = sub.partition("?")
                    sub = f"{kind}/{full_url(kind, 'query', query).rsplit(':', 1)[-1]}"
            out[key] = _rewrite(sub, refs)
        return out
    if isinstance(value, list):
        return [_rewrite(v, refs) for v in value]
    return value


def validate_entries(entries: list[dict[str, Any]], check: ResourceCheck) -> list[tuple[str, str]]:
    """Profile errors of one record's entries as (FHIRPath expression, message)."""
    refs = _resolved_refs(entries)
    errors = []
    for entry in entries:
        local = refs[entry["fullUrl"]]
        resource = copy.copy(_rewrite(entry["resource"], refs))
        resource["id"] = local.split("/", 1)[1]
        errors.extend(check(resource))
    return errors


def validate_record(record: MappedRecord, check: ResourceCheck) -> list[RowError]:
    """Profile errors of one mapped record, located at its source row."""
    return [RowError(record.file, record.row, expression, message, record.table)
            for expression, message in validate_entries(record.entries, check)]


def _records(format_name: str, paths: list[Path], check: ResourceCheck | None,
             errors: list[RowError], counts: dict[str, int], tick: Callable[[], None]
             ) -> Iterator[MappedRecord]:
    validate = (lambda entries: validate_entries(entries, check)) if check is not None else None
    for item in map_files(format_name, paths, validate=validate):
        tick()
        if isinstance(item, RowError):
            errors.append(item)
            continue
        counts["records"] += 1
        counts["resources"] += len(item.entries)
        errors.extend(item.warnings)  # written, but reported
        yield item


def _count_rejected(errors: list[RowError]) -> int:
    return len({(e.file, e.row, e.table) for e in errors if e.severity == "error"})


def write_error_report(path: Path, errors: list[RowError]) -> None:
    """CSV (``.csv``) or JSON (anything else) with file, row, field and reason of every problem (a kept
    but implausible value has severity ``warning``)."""
    rows = [e.as_dict() for e in errors]
    if path.suffix.lower() == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            fields = ["file", "table", "row", "field", "reason", "severity"]
            writer = csv.DictWriter(handle, fieldnames=fields, restval="error")
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


class _Writer:
    """Sends transaction bundles to a server over HTTP or into a store in-process.

    Over HTTP a bearer ``token`` names the client (and so the writing agency); in-process, ``agency``
    (``Organization/ID``) has the security layer's guard tag every written resource with that agency.
    """

    def __init__(self, server: str | None, store: str | None, *, token: str | None = None,
                 agency: str | None = None) -> None:
        self.server = server.rstrip("/") if server else None
        self.store_url = store
        self.token = token
        self.agency = agency
        self._http: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx: Any = None
        self._raw_store: Any = None

    def __enter__(self) -> _Writer:
        if self.server:
            import httpx

            headers = {"Content-Type": "application/fhir+json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._http = httpx.Client(timeout=300, headers=headers)
        elif self.store_url:
            from fhir_server.config import Settings
            from fhir_server.interactions.context import RequestContext
            from fhir_server.storage import create_store, open_store

            settings = Settings(store_url=self.store_url)
            store = create_store(settings)
            writer: Any = store
            if self.agency is not None:  # checked (ValueError) before anything is opened
                from fhir_server.security.guard import agency_writer

                writer = agency_writer(store, self.agency)
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(open_store(store, settings))
            except BaseException:
                self._loop.close()
                raise
            self._ctx = RequestContext(store=writer, settings=settings, base_url="urn:termtem-import")
            self._raw_store = store
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.close()
        if self._ctx is not None and self._loop is not None:
            self._loop.run_until_complete(self._raw_store.close())
            self._loop.close()

    def send(self, bundle: dict[str, Any]) -> str | None:
        """Write one bundle; returns the failure text when the server refused it (nothing was written)."""
        if self._http is not None:
            response = self._http.post(self.server, content=orjson.dumps(bundle))
            if response.status_code in (401, 403):  # every later batch would get the same answer
                try:
                    body: Any = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    body = response.text
                raise AuthRefused(response.status_code, body)
            if response.status_code >= 400:
                return _outcome_text(response.text, response.status_code)
            return None
        if self._ctx is not None and self._loop is not None:
            from fhir_server.interactions.bundle import process_bundle
            from fhir_server.interactions.errors import FhirError

            try:
                self._loop.run_until_complete(process_bundle(self._ctx, bundle))
            except FhirError as exc:
                return f"{exc.status}: {exc.diagnostics}"
        return None


def _outcome_text(body: str, status: int) -> str:
    try:
        outcome = orjson.loads(body)
        texts = [i.get("diagnostics", "") for i in outcome.get("issue", [])]
        return f"{status}: " + "; ".join(t for t in texts if t)
    except (orjson.JSONDecodeError, AttributeError):
        return f"{status}: {body[:300]}"


def run_import(format_name: str, paths: list[Path], *, server: str | None = None, store: str | None = None,
               dry_run: bool = False, out: Path | None = None, errors_path: Path | None = None,
               batch_size: int = 500, validate: bool = True, show_progress: bool = False,
               token: str | None = None, agency: str | None = None) -> dict[str, Any]:
    """Import ``paths``; returns counts and the errors. Used by the command and by tests.

    ``token`` authenticates ``server`` writes; ``agency`` tags in-process ``store`` writes (see _Writer).
    """
    if format_name not in available_formats():
        raise SpecError(f"unknown format {format_name!r}; known: {', '.join(available_formats())}")
    check = profile_validator() if validate else None
    errors: list[RowError] = []
    counts = {"records": 0, "resources": 0, "rejected": 0, "bundles": 0}
    out_handle = out.open("wb") if out else None
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed} rows"), TimeElapsedColumn(), console=_console,
                        disable=not show_progress)
    try:
        with progress, _Writer(None if dry_run else server, None if dry_run else store, token=token,
                               agency=agency) as writer:
            task = progress.add_task(f"import {format_name}", total=None)
            records: Iterable[MappedRecord] = _records(format_name, paths, check, errors, counts,
                                                       lambda: progress.advance(task))
            for bundle, carried in batch_records(records, batch_size):
                counts["bundles"] += 1
                if out_handle is not None:
                    out_handle.write(orjson.dumps(bundle) + b"\n")
                failure = writer.send(bundle)
                if failure:
                    for record in carried:
                        reason = f"server refused the batch: {failure}"
                        errors.append(RowError(record.file, record.row, "", reason, record.table))
    finally:
        if out_handle is not None:
            out_handle.close()
    if errors_path is not None:
        write_error_report(errors_path, errors)
    counts["rejected"] = _count_rejected(errors)
    return {**counts, "errors": errors}


def register(app: typer.Typer) -> None:
    @app.command("import")
    def import_command(
        paths: list[Path] = typer.Argument(..., help="Files, folders or zips to import."),
        format_name: str = typer.Option(..., "--format", "-f",
                                        help="Mapping spec: " + ", ".join(available_formats())),
        server: str | None = typer.Option(None, "--server", help="FHIR base URL to POST bundles to."),
        store: str | None = typer.Option(None, "--store", help="Store URL to write into in-process."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Map and validate only; write nothing."),
        out: Path | None = typer.Option(None, "--out", help="Write the transaction bundles as NDJSON."),
        errors: Path | None = typer.Option(None, "--errors", help="Error report (.csv or .json)."),
        batch_size: int = typer.Option(500, "--batch-size", min=1, help="Entries per transaction bundle."),
        token: str | None = typer.Option(None, "--token", envvar="TERMTEM_TOKEN",
                                         help="Bearer token for --server (see `termtem token`)."),
        agency: str | None = typer.Option(
            None, "--agency",
            help="With --store: the writing agency (Organization/ID) to tag every resource with, so that "
            "agency's clients see the data (untagged data is visible to admin clients only)."),
    ) -> None:
        """Import an agency's legacy files (43-file export, spreadsheets, case JSON) as Thai-profiled FHIR."""
        if server and store:
            raise typer.BadParameter("give --server or --store, not both")
        if not (server or store or dry_run or out):
            raise typer.BadParameter("give --server, --store, --out or --dry-run")
        if agency is not None and not store:
            raise typer.BadParameter("--agency needs --store (over --server the token names the agency)")
        if agency is not None:
            from fhir_server.security.clients import check_organization

            try:
                check_organization(agency)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--agency") from None
        try:
            result = run_import(format_name, paths, server=server, store=store, dry_run=dry_run, out=out,
                                errors_path=errors, batch_size=batch_size, show_progress=True,
                                token=token, agency=agency)
        except SpecError as exc:
            _console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        except AuthRefused as refused:
            _console.print(f"[red]error:[/red] {refused}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None
        _console.print(
            f"{result['records']} records → {result['resources']} resources in {result['bundles']} bundles; "
            f"{result['rejected']} records rejected"
        )
        for error in result["errors"][:20]:
            _console.print(f"  {error.file}:{error.row} {error.field}: {error.reason}")
        if len(result["errors"]) > 20:
            _console.print(f"  … {len(result['errors']) - 20} more (see --errors)")
        if result["rejected"]:
            raise typer.Exit(1)
