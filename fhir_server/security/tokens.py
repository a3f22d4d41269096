"""SMART Backend Services: the token endpoint's rules and access-token verification.

A client proves who it is with a ``private_key_jwt`` assertion signed by a key in its registered
JWKS (RS384 or ES384 only; ``alg: none`` and HMAC never verify). The server answers with a short-lived
access token it signs itself; every FHIR request presents that token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.security import roles
from fhir_server.security.agencies import AgencyRegistry
from fhir_server.security.clients import NAMESPACE as CLIENTS_NAMESPACE
from fhir_server.security.clients import ClientRecord, ClientRegistry
from fhir_server.security.keys import ALGORITHM, ServerKey, import_jwk
from fhir_server.security.scopes import Scope, ScopeSet
from fhir_server.storage.base import Store
from fhir_server.storage.newest import UNKNOWN, Unknown

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300  # SMART: exp no more than five minutes in the future
LEEWAY = 30
JTI_NAMESPACE = "security.jti"
_CACHE_LIMIT = 10_000
_PRUNE_EVERY = 100  # token requests between sweeps of expired assertion ids


class TokenError(Exception):
    """An OAuth error answer (``error`` code per RFC 6749) or an invalid bearer token (RFC 6750)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    client_id: str
    name: str
    organization: str  # Organization/ID
    agency_type: str | None  # th-agency-type code of that agency in the server's registry, when set
    role: roles.Role
    scopes: ScopeSet
    token_id: str
    agency_ids: frozenset[str] = frozenset()  # the agency's registered identifiers, "system|value"

    def may(self, resource_type: str, letter: str) -> bool:
        allowed = self.scopes.allows(resource_type, letter)
        return allowed and roles.type_allowed(self.role, resource_type, letter)


def _client_error(description: str) -> TokenError:
    return TokenError(401, "invalid_client", description)


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        obj = jws.extract_compact(assertion.encode())
        payload = orjson.loads(obj.payload)
    except (JoseError, ValueError, orjson.JSONDecodeError) as exc:
        raise TokenError(400, "invalid_client", f"the client assertion is not a JWT ({exc})") from None
    if not isinstance(payload, dict):
        raise TokenError(400, "invalid_client", "the client assertion's payload is not a JSON object")
    return dict(obj.protected), payload


def _keys(client: ClientRecord, kid: str | None) -> list[Any]:
    keys = [k for k in client.jwks.get("keys", []) if kid is None or k.get("kid") == kid]
    return [import_jwk(k) for k in keys]


def _audience_ok(aud: Any, expected: str) -> bool:
    values = aud if isinstance(aud, list) else [aud]
    return any(isinstance(v, str) and v.rstrip("/") == expected.rstrip("/") for v in values)


def role_cap(scopes: ScopeSet, role: roles.Role) -> ScopeSet:
    """Drop the permissions the role can never use (a researcher's writes, an auditor's non-audit reads)."""
    kept: list[Scope] = []
    for s in scopes.scopes:
        letters = s.letters
        if role.read_only and s.resource_type not in role.writable_types:
            letters = "".join(ch for ch in letters if ch in "rs")
        if role.only_types is not None and s.resource_type != "*" and s.resource_type not in role.only_types:
            letters = ""
        if s.resource_type == "*" and role.only_types is not None:
            kept.extend(Scope(t, letters) for t in sorted(role.only_types) if letters)
            continue
        if letters:
            kept.append(Scope(s.resource_type, letters))
    return ScopeSet(kept)


class TokenService:
    def __init__(self, store: Store, key: ServerKey, lifetime: int) -> None:
        self._store = store
        self._key = key
        self._lifetime = lifetime
        self._registry = ClientRegistry(store)
        self._verified: dict[str, dict[str, Any]] = {}
        # id(claims) -> (claims, the registry entry it was made from, the Principal)
        self._principals: dict[int, tuple[dict[str, Any], dict[str, Any], Principal]] = {}
        self._issued = 0

    async def issue(
        self, form: dict[str, str], *, token_url: str, fhir_base: str
    ) -> tuple[dict[str, Any], str]:
        """Run the client_credentials grant; returns the token response and the client id."""
        if form.get("grant_type") != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenError(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        if not assertion:
            raise TokenError(400, "invalid_request", "client_assertion is required")
        header, payload = _unverified(assertion)
        alg = header.get("alg")
        if alg not in CLIENT_ALGORITHMS:
            raise _client_error(f"assertion algorithm {alg!r} is not accepted (RS384, ES384)")
        client_id = payload.get("iss")
        client = await self._registry.get(client_id) if isinstance(client_id, str) else None
        if client is None:
            raise TokenError(401, "invalid_client", "the assertion's issuer is not a registered client")
        keys = _keys(client, header.get("kid"))
        claims = None
        for key in keys:
            try:
                claims = jwt.decode(assertion, KeySet([key]), algorithms=CLIENT_ALGORITHMS).claims
                break
            except Exception:  # any failure of the JOSE library on untrusted input: not signed
                continue
        if claims is None:
            raise _client_error("the assertion is not signed by a key registered for the client")
        self._check_assertion(claims, client.id, token_url)
        await self._spend_jti(client.id, claims)
        self._issued += 1
        if self._issued % _PRUNE_EVERY == 0:
            await self.prune_jtis()
        requested = form.get("scope", "").strip()
        if not requested:
            raise TokenError(400, "invalid_scope", "scope is required")
        try:
            wanted = ScopeSet.parse(requested)
        except ValueError as exc:
            raise TokenError(400, "invalid_scope", str(exc)) from None
        granted = role_cap(wanted.within(client.scope_set), roles.get_role(client.role))
        if not granted:
            raise TokenError(400, "invalid_scope", "none of the requested scopes is allowed for this client")
        now = int(time.time())
        access_claims = {
            "iss": fhir_base,
            "sub": client.id,
            "aud": fhir_base,
            "iat": now,
            "exp": now + self._lifetime,
            "jti": str(uuid.uuid4()),
            "scope": str(granted),
            "org": client.organization,
            "role": client.role,
            # What the agency is comes from the server's registry, never from a resource it may edit.
            **await self._agency_claims(client.organization),
        }
        token = jwt.encode(
            {"alg": ALGORITHM, "kid": self._key.kid, "typ": "JWT"},
            access_claims,
            self._key.private,
            algorithms=[ALGORITHM],
        )
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self._lifetime,
            "scope": str(granted),
        }, client.id

    async def _agency_claims(self, organization: str) -> dict[str, Any]:
        record = await AgencyRegistry(self._store).get(organization)
        return record.claims() if record else {"agency_type": None, "agency_ids": []}

    def _check_assertion(self, claims: dict[str, Any], client_id: str, token_url: str) -> None:
        now = time.time()
        if claims.get("sub") != client_id:
            raise TokenError(401, "invalid_client", "the assertion's sub must equal its iss (the client id)")
        if not _audience_ok(claims.get("aud"), token_url):
            raise _client_error(f"the assertion's aud must be the token endpoint {token_url}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise TokenError(401, "invalid_client", "the assertion has no exp")
        if exp < now - LEEWAY:
            raise TokenError(401, "invalid_client", "the assertion has expired")
        if exp > now + MAX_ASSERTION_LIFETIME + LEEWAY:
            raise TokenError(401, "invalid_client", "the assertion's exp is more than five minutes ahead")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > now + LEEWAY:
            raise TokenError(401, "invalid_client", "the assertion is not valid yet (nbf)")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise TokenError(401, "invalid_client", "the assertion has no jti")

    async def _spend_jti(self, client_id: str, claims: dict[str, Any]) -> None:
        """Record the assertion's jti as spent in one atomic step (insert only if absent), so two
        replays racing each other, in one process or in two workers, cannot both pass."""
        key = f"{client_id}:{claims['jti']}"
        spent = {"exp": int(claims["exp"])}
        if not await self._store.kv_compare_and_set(JTI_NAMESPACE, key, None, spent):
            raise TokenError(401, "invalid_client", "this client assertion was already used (jti replay)")

    async def prune_jtis(self) -> int:
        """Forget spent assertion ids that have expired (they can no longer be replayed anyway)."""
        now = time.time() - LEEWAY
        removed = 0
        for key, value in await self._store.kv_list(JTI_NAMESPACE):
            if value.get("exp", 0) < now:
                removed += await self._store.kv_delete(JTI_NAMESPACE, key)
        return removed

    def verify(self, token: str, fhir_base: str) -> dict[str, Any]:
        """The claims of a valid access token for this server, or ``TokenError(401)``."""
        now = time.time()
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = jwt.decode(token, self._key.public, algorithms=[ALGORITHM]).claims
            except Exception as exc:  # the JOSE library fails in other ways too (a "crit" of numbers)
                reason = f"the access token is not valid ({type(exc).__name__})"
                raise TokenError(401, "invalid_token", reason) from None
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified = {t: c for t, c in self._verified.items() if c.get("exp", 0) > now}
                if len(self._verified) >= _CACHE_LIMIT:
                    self._verified.clear()
            self._verified[token] = claims
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= now:
            self._verified.pop(token, None)
            raise TokenError(401, "invalid_token", "the access token has expired")
        if not _audience_ok(claims.get("aud"), fhir_base):
            raise TokenError(401, "invalid_token", f"the access token was not issued for {fhir_base}")
        return claims

    async def principal(self, claims: dict[str, Any], entry: Any = UNKNOWN) -> Principal:
        """The caller behind verified ``claims``; a removed client's tokens stop working at once.

        The registry is read on every request (so removing or changing a client takes effect at
        once, in every server process); only turning an unchanged entry into a ``Principal`` is reused.
        ``entry``: the client's registry entry (or None), when the request read it already.
        """
        if isinstance(entry, Unknown):
            entry = await self._store.kv_get(CLIENTS_NAMESPACE, str(claims.get("sub")))
        if entry is None:
            raise TokenError(401, "invalid_token", "the client of this token is no longer registered")
        key = id(claims)
        cached = self._principals.get(key)
        if cached is not None and cached[0] is claims and cached[1] == entry:
            return cached[2]
        principal = self._make_principal(claims, ClientRecord(**entry))
        if len(self._principals) >= _CACHE_LIMIT:
            self._principals.clear()
        self._principals[key] = (claims, entry, principal)
        return principal

    def _make_principal(self, claims: dict[str, Any], client: ClientRecord) -> Principal:
        return Principal(
            client_id=client.id,
            name=client.name,
            organization=client.organization,
            agency_type=_text(claims.get("agency_type")),
            role=roles.get_role(client.role),
            scopes=ScopeSet.parse(str(claims.get("scope", ""))),
            token_id=str(claims.get("jti")),
            agency_ids=frozenset(i for i in claims.get("agency_ids") or () if isinstance(i, str)),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
