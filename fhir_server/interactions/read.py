"""read and vread."""

from __future__ import annotations

from fhir_server.interactions import writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.results import Outcome
from fhir_server.interactions.update import version_number


async def read(ctx: RequestContext, resource_type: str, id_: str) -> Outcome:
    writes.check_type_known(resource_type)
    stored = await ctx.store.read(resource_type, id_)
    if stored is None:
        raise FhirError(404, f"{resource_type}/{id_} is not known", code="not-found")
    if stored.deleted:
        raise FhirError(
            410,
            f"{resource_type}/{id_} was deleted (version {stored.version})",
            code="deleted",
            headers={"ETag": f'W/"{stored.version}"', "Last-Modified": stored.last_updated},
        )
    return Outcome(200, stored=stored)


async def vread(ctx: RequestContext, resource_type: str, id_: str, version: str) -> Outcome:
    writes.check_type_known(resource_type)
    number = version_number(version)
    if number is None:
        shown = version if len(version) <= 64 else version[:64] + "..."
        raise FhirError(404, f"{resource_type}/{id_} has no version '{shown}'", code="not-found")
    stored = await ctx.store.vread(resource_type, id_, number)
    if stored is None:
        raise FhirError(404, f"{resource_type}/{id_} has no version {version}", code="not-found")
    if stored.deleted:
        raise FhirError(410, f"Version {version} of {resource_type}/{id_} is a deletion", code="deleted")
    return Outcome(200, stored=stored)
