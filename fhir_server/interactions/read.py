"""read and vread."""

from __future__ import annotations

from fhir_server import catalog, definitions
from fhir_server.interactions import writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.results import Outcome
from fhir_server.interactions.update import version_number


async def read(ctx: RequestContext, resource_type: str, id_: str) -> Outcome:
    writes.check_type_known(resource_type)
    stored = await ctx.store.read(resource_type, id_) or catalog.by_id(resource_type, id_)
    if stored is None:
        hint = _hint(resource_type, id_)
        raise FhirError(404, f"{resource_type}/{id_} is not known{hint}", code="not-found")
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
    if stored is None and number == 1 and await ctx.store.read(resource_type, id_) is None:
        stored = catalog.by_id(resource_type, id_)
    if stored is None:
        raise FhirError(404, f"{resource_type}/{id_} has no version {version}", code="not-found")
    if stored.deleted:
        raise FhirError(410, f"Version {version} of {resource_type}/{id_} is a deletion", code="deleted")
    return Outcome(200, stored=stored)


def _hint(resource_type: str, id_: str) -> str:
    """For ``SearchParameter/Patient-birthdate``: R4 shares one definition between several types
    (``individual-birthdate``); name the id that exists."""
    if resource_type != "SearchParameter" or "-" not in id_:
        return ""
    from fhir_server.search import registry

    base, _, code = id_.partition("-")
    param = registry.get(base, code) if definitions.is_resource_type(base) else None
    if param is None or not param.url:
        return ""
    shipped = registry.definition(param.url)
    if shipped is None or shipped.get("id") == id_:
        return ""
    return f"; {base}'s '{code}' parameter is SearchParameter/{shipped['id']} ({param.url})"
