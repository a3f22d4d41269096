"""Per-request security: authenticate, decide the caller's access, and audit what happened.

``before`` runs ahead of every FHIR interaction (through ``app.state.before_interaction``) and
``after`` once it has an answer (``app.state.after_interaction``). The rules themselves live in
``tokens``, ``scopes``, ``roles``, ``consent``, ``access`` and ``guard``.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.responses import Response

from fhir_server.config import Settings
from fhir_server.interactions import offload
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.search.access import Access
from fhir_server.security import audit
from fhir_server.security.access import build_access, owner_of, stamp_owner
from fhir_server.security.authority import CONFIGURATION_TYPES, may_configure
from fhir_server.security.clients import NAMESPACE as CLIENTS_NAMESPACE
from fhir_server.security.consent import AccessRequest, ConsentBook
from fhir_server.security.guard import Guard, SecuredStore
from fhir_server.security.keys import ServerKey
from fhir_server.security.tokens import Principal, TokenError, TokenService
from fhir_server.storage.base import Store, StoredResource, StoreTransaction
from fhir_server.storage.newest import Newest, probe

if TYPE_CHECKING:
    from fhir_server.api.routes import FhirRequest

log = logging.getLogger("termtem.security")

PURPOSE_HEADER = "x-purpose-of-use"
EMERGENCY_REASON_HEADER = "x-emergency-reason"
EMERGENCY = "ETREAT"
_NO_PATIENTS: dict[str, frozenset[str]] = {}  # roles that never go through consent
_WATCHED = ("Patient", "Consent")  # identity links and Consents: checked for changes on every request
# System-level operations any client may call: they read through the caller's own restriction.
_OPEN_SYSTEM_OPERATIONS = frozenset({"$viewdefinition-run"})
# Bulk export (kick-off at every level, status and file URLs) applies the caller's whole restriction
# itself, including a researcher's de-identified view of Patients, so the early checks leave it alone.
_SELF_CHECKED = "$export"
_EXPORT_FILES = "_export"
_LETTER = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "history-type": "s",
    "search-type": "s",
    "create": "c",
    "patch": "u",
    "delete": "d",
}


def describe(method: str, segments: list[str]) -> tuple[str, str | None, str | None]:
    """(restful-interaction code, resource type, id) of a request, from its URL shape."""
    seg = segments
    if not seg:
        return ("transaction" if method == "POST" else "search-system"), None, None
    head = seg[0]
    if head == _EXPORT_FILES:
        return "operation", None, None
    if len(seg) == 1:
        special = {"metadata": "capabilities", "_history": "history-system", "_search": "search-system"}
        if head in special:
            return special[head], None, None
        if head.startswith("$"):
            return "operation", None, None
        kind = {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(
            method, "search-type"
        )
        return kind, head, None
    second = seg[1]
    if len(seg) == 2:
        if second == "_search":
            return "search-type", head, None
        if second == "_history":
            return "history-type", head, None
        if second.startswith("$"):
            return "operation", head, None
        kind = {"PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(method, "read")
        return kind, head, second
    if seg[2] == "_history":
        return ("vread" if len(seg) == 4 else "history-instance"), head, second
    if seg[2].startswith("$"):
        return "operation", head, second
    return "search-compartment", (seg[2] if seg[2] != "*" else None), None


def origin_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


class Security:
    """The security state of one server process: its key, token service and consent cache."""

    def __init__(self, settings: Settings, key: ServerKey) -> None:
        self.settings = settings
        self.key = key
        self.consents = ConsentBook()
        self._tokens: TokenService | None = None
        self._store: Store | None = None
        self._access_cache: dict[
            tuple[Any, ...], tuple[dict[str, frozenset[str]], Access | None, frozenset[str]]
        ] = {}

    def tokens(self, store: Store) -> TokenService:
        if self._tokens is None or self._store is not store:
            self._tokens = TokenService(store, self.key, self.settings.token_lifetime_seconds)
            self._store = store
        return self._tokens

    def urls(self, base_url: str) -> dict[str, str]:
        origin = origin_of(base_url)
        return {"token": f"{origin}/auth/token", "jwks": f"{origin}/auth/jwks", "base": base_url}

    def capability(self, base_url: str) -> dict[str, Any]:
        return {
            "cors": False,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                }
            ],
            "extension": [
                {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": self.urls(base_url)["token"]}],
                }
            ],
            "description": (
                "SMART Backend Services: client_credentials with a private_key_jwt assertion (RS384 or"
                " ES384); SMART v2 (system/Type.cruds) and v1 (system/Type.read|write) scopes; PDPA"
                " data-sharing consent enforced in every query; every access recorded as an AuditEvent."
                f" State a purpose of use in {PURPOSE_HEADER}"
                f" (emergency ETREAT needs {EMERGENCY_REASON_HEADER})."
            ),
        }

    def smart_configuration(self, base_url: str) -> dict[str, Any]:
        urls = self.urls(base_url)
        return {
            "issuer": base_url,
            "jwks_uri": urls["jwks"],
            "token_endpoint": urls["token"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        }

    # --- the hooks --------------------------------------------------------------------------------

    async def before(self, fhir: FhirRequest, ctx: RequestContext) -> None:
        interaction, rtype, rid = describe(fhir.method, fhir.segments)
        ctx.extras["audit"] = audit.AuditRecord(
            interaction=interaction,
            outcome_status=0,
            resource_type=rtype,
            resource_id=rid,
            address=fhir.http.client.host if fhir.http.client else None,
            query=fhir.query_string if interaction.startswith("search") else None,
        )
        if interaction == "capabilities":
            ctx.extras["capability_security"] = self.capability(ctx.base_url)
            return
        principal, newest = await self._authenticate(fhir, ctx)
        if interaction.startswith("search") and fhir.method == "POST":
            form = await fhir.body(ctx.settings.max_query_length)
            fhir.http._body = form  # replayed to the search interaction
            joined = "&".join(p for p in (fhir.query_string, form.decode("utf-8", errors="replace")) if p)
            ctx.extras["audit"].query = joined
        record: audit.AuditRecord = ctx.extras["audit"]
        record.client_id, record.client_name = principal.client_id, principal.name
        record.organization = principal.organization
        purpose, reason = self._purpose(fhir, principal)
        record.purpose, record.emergency_reason = purpose, reason
        guard = Guard(principal, None, self.settings.forbidden_status)
        ctx.extras["guard"] = guard
        await self._early_scopes(fhir, ctx, guard, interaction, rtype)
        if interaction in _SINGLE_WRITE and (
            interaction != "transaction" or ctx.extras.get("bundle_type") == "transaction"
        ):  # a batch writes each entry in its own transaction: its event is written at the end
            guard.on_write_commit = partial(_audit_in_transaction, record, guard, ctx.prefer_return)
        if interaction in ("create", "update") and fhir.method in ("POST", "PUT") and rtype:
            await self._prestamp(fhir, ctx, guard, rtype, rid)
        role = principal.role
        patients: dict[str, frozenset[str]] = _NO_PATIENTS
        golden: frozenset[str] = frozenset()
        if not role.unrestricted and role.only_types is None:
            # One child across agencies (fhir_server.identity): the golden records of the children
            # this agency serves, and consents decided per child over all its records.
            from fhir_server.identity.book import current

            children = await current(ctx.store, newest["Patient"])
            golden = children.served(principal.organization)
            if reason is None:
                request = AccessRequest(
                    principal.organization,
                    principal.agency_type,
                    purpose,
                    int(time.time() * 1000),
                    principal.agency_ids,
                )
                patients = await self.consents.patients_by_class(
                    ctx.store, request, children, newest["Consent"]
                )
        guard.access = self._access(principal, patients, reason is not None, golden)
        ctx.store = SecuredStore(ctx.store, guard)

    def _access(
        self,
        principal: Principal,
        patients: dict[str, frozenset[str]],
        emergency: bool,
        golden: frozenset[str] = frozenset(),
    ) -> Access | None:
        """``build_access``, reused while the same consent view serves the same kind of caller."""
        key = (
            str(principal.scopes),
            principal.role.name,
            principal.organization,
            emergency,
            id(patients),
            id(golden),
        )
        cached = self._access_cache.get(key)
        if cached is not None and cached[0] is patients and cached[2] is golden:
            return cached[1]
        access = build_access(principal, patients, emergency=emergency, golden=golden)
        if len(self._access_cache) > 1024:
            self._access_cache.clear()
        self._access_cache[key] = (patients, access, golden)
        return access

    async def _authenticate(
        self, fhir: FhirRequest, ctx: RequestContext
    ) -> tuple[Principal, dict[str, Newest]]:
        """The caller, and the newest Patient and Consent versions (read with its registry entry in
        one look-up: the identity and consent books check them next)."""
        header = fhir.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        challenge = 'Bearer realm="termtem"'
        if any(name.strip().lower() == "access_token" for name, _ in fhir.params):
            raise FhirError(
                401,
                "An access token in the URL (?access_token=) is refused: URLs end up in logs and"
                " browser histories. Send it in the Authorization header (Bearer).",
                code="login",
                headers={"WWW-Authenticate": f'{challenge}, error="invalid_request"'},
            )
        if scheme.lower() != "bearer" or not token.strip():
            raise FhirError(
                401,
                "A bearer access token is required (SMART Backend Services; see"
                " .well-known/smart-configuration)",
                code="login",
                headers={"WWW-Authenticate": challenge},
            )
        try:
            service = self.tokens(ctx.store)
            claims = service.verify(token.strip(), ctx.base_url)
            entry, newest = await probe(ctx.store, CLIENTS_NAMESPACE, str(claims.get("sub")), _WATCHED)
            principal = await service.principal(claims, entry)
        except TokenError as exc:
            raise FhirError(
                401,
                exc.description,
                code="login",
                headers={"WWW-Authenticate": f'{challenge}, error="{exc.error}"'},
            ) from None
        ctx.principal = principal
        return principal, newest

    def _purpose(self, fhir: FhirRequest, principal: Principal) -> tuple[str, str | None]:
        role = principal.role
        stated = (fhir.header(PURPOSE_HEADER) or "").strip()
        purpose = stated.rsplit("|", 1)[-1] if stated else role.purpose
        if purpose not in role.purposes:
            raise FhirError(
                403,
                f"Purpose of use '{purpose}' is not allowed for role '{role.name}'"
                f" (allowed: {', '.join(sorted(role.purposes))})",
                code="forbidden",
            )
        if purpose != EMERGENCY:
            return purpose, None
        reason = (fhir.header(EMERGENCY_REASON_HEADER) or "").strip()
        if not role.emergency or not reason:
            raise FhirError(
                403,
                f"Emergency access (ETREAT) needs a role that provides care and a reason in"
                f" the {EMERGENCY_REASON_HEADER} header",
                code="forbidden",
            )
        return purpose, reason

    async def _early_scopes(
        self, fhir: FhirRequest, ctx: RequestContext, guard: Guard, interaction: str, rtype: str | None
    ) -> None:
        """Refuse what the token can never do before any work (the store guard re-checks each access)."""
        letter = _LETTER.get(interaction)
        if interaction == "update" and rtype:
            _configuration(guard, rtype)
        if letter and rtype:
            guard.require(
                rtype,
                letter,
                {"r": "read", "s": "search", "c": "create", "u": "update", "d": "delete"}[letter],
            )
            if letter in "cud":
                _configuration(guard, rtype)
        elif interaction == "operation":
            if fhir.segments[-1] == _SELF_CHECKED or fhir.segments[0] == _EXPORT_FILES:
                return
            if rtype:
                guard.require(rtype, "r", "run operations on")
            elif not guard.principal.role.unrestricted and fhir.segments[0] not in _OPEN_SYSTEM_OPERATIONS:
                raise guard.forbid("System-level operations are for admin clients")
        elif interaction == "transaction":
            await self._bundle_scopes(fhir, ctx, guard)

    async def _prestamp(
        self, fhir: FhirRequest, ctx: RequestContext, guard: Guard, rtype: str, rid: str | None
    ) -> None:
        """Put the writing agency's tag into a single-resource body, so the response shows it too."""
        data = await fhir.body(ctx.settings.max_body_bytes)
        resource = await offload.run(len(data), _parsed_or_none, data)  # a big body: off the event loop
        if (
            isinstance(resource, dict)
            and isinstance(resource.get("meta", {}), dict)
            and owner_of(resource) is None
        ):
            owner = guard.principal.organization
            if rid is not None:  # an update keeps the record's agency (the guard decides who may update)
                current = await ctx.store.read(rtype, rid)
                if current is not None and not current.deleted:
                    owner = owner_of(orjson.loads(current.body)) or owner
            data = await offload.run(len(data), stamp_owner, data, resource, owner)
            guard.prestamped = True
        fhir.http._body = data  # starlette replays a cached body to the interaction

    async def _bundle_scopes(self, fhir: FhirRequest, ctx: RequestContext, guard: Guard) -> None:
        data = await fhir.body(ctx.settings.max_body_bytes)
        fhir.http._body = data  # starlette replays a cached body, so the bundle processor reads it again
        bundle = await offload.run(len(data), _parsed_or_none, data)
        if bundle is None:
            return  # the bundle processor reports malformed bodies
        if isinstance(bundle, dict):
            ctx.extras["bundle_type"] = bundle.get("type")
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict) or not isinstance(request.get("url"), str):
                continue
            method = str(request.get("method", "")).upper()
            path = request["url"].split("?", 1)[0]
            interaction, rtype, _ = describe(method, [s for s in path.split("/") if s])
            letter = _LETTER.get(interaction)
            if (
                interaction == "update"
                and rtype
                and not (guard.principal.may(rtype, "u") or guard.principal.may(rtype, "c"))
            ):
                guard.require(rtype, "u", "update")
            if letter and rtype:
                guard.require(rtype, letter, f"{interaction} (bundle entry)")
            if rtype and interaction in ("create", "update", "patch", "delete"):
                _configuration(guard, rtype)

    async def after(self, fhir: FhirRequest, ctx: RequestContext | None, response: Response | None) -> None:
        if ctx is None or "audit" not in ctx.extras:
            return
        record: audit.AuditRecord = ctx.extras["audit"]
        if record.interaction == "capabilities":
            return
        record.outcome_status = response.status_code if response is not None else 500
        guard: Guard | None = ctx.extras.get("guard")
        if guard is not None:
            record.touched = guard.touched
            record.denials = guard.denials
            record.notes = guard.notes
        if record.outcome_status >= 400 and response is not None:
            record.description = _diagnostics(response)
        if record.emergency_reason is not None and response is not None:
            response.headers["X-Emergency-Access"] = "recorded"
        if (
            guard is not None
            and guard.audit_committed
            and record.outcome_status < 400
            and guard.audited == (len(guard.touched), len(guard.denials) + len(guard.notes))
        ):
            return  # the AuditEvent committed with the write (``_audit_in_transaction``) says it all
        store = ctx.store._inner if isinstance(ctx.store, SecuredStore) else ctx.store
        await audit.write_audit(store, record)


# Interactions that write in exactly one transaction: their AuditEvent commits inside it.
_SINGLE_WRITE = frozenset({"create", "update", "patch", "delete", "transaction"})


async def _audit_in_transaction(
    record: audit.AuditRecord,
    guard: Guard,
    prefer_return: str | None,
    tx: StoreTransaction,
    first_write: StoredResource,
) -> None:
    """Add the request's AuditEvent to its write transaction, before the commit.

    The answer is not built yet, so the event states the status a committed write answers with; if
    the request fails after the commit after all, ``Security.after`` records that failure too.
    """
    if record.interaction == "transaction":
        status = 200
    elif record.interaction == "delete":
        status = 200 if prefer_return == "OperationOutcome" else 204
    else:
        status = 201 if first_write.version == 1 else 200
    record.outcome_status = status
    record.touched = guard.touched
    record.denials = guard.denials
    record.notes = list(guard.notes)
    await audit.write_audit_in(tx, record)
    guard.audited = (len(guard.touched), len(guard.denials) + len(guard.notes))  # more later: again


def _configuration(guard: Guard, resource_type: str) -> None:
    """Server-wide configuration is written by admins only: refused before any work is done."""
    if resource_type in CONFIGURATION_TYPES and not may_configure(guard.principal.role):
        raise guard.forbid(
            f"{resource_type} is server-wide configuration: only admin clients may create, change"
            " or delete it"
        )


def _parsed_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _diagnostics(response: Response) -> str | None:
    try:
        outcome = orjson.loads(response.body)
        return "; ".join(str(i.get("diagnostics", "")) for i in outcome.get("issue", []))[:1000]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
