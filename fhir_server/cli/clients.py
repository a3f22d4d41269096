"""``termtem client add|list|remove`` and ``termtem token``: the operator's side of SMART Backend Services."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer

from fhir_server.config import Settings, default_store_url

T = TypeVar("T")

client_app = typer.Typer(
    help="Register, list and remove the backend systems allowed to call the API.", no_args_is_help=True
)


def with_store(store_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(store)`` against the store at ``store_url`` (default: the configured one)."""
    from fhir_server.storage import create_store, open_store

    async def run() -> T:
        settings = Settings(store_url=store_url or default_store_url())
        store = create_store(settings)
        await open_store(store, settings)  # within TERMTEM_STORE_TIMEOUT, one-line errors
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _with_registry(store_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    from fhir_server.security.clients import ClientRegistry

    async def run(store: Any) -> T:
        return await work(ClientRegistry(store))

    return with_store(store_url, run)


def _load_private_key(path: Path) -> tuple[Any, str, str | None]:
    """(key, alg, kid) from a private JWK file (as ``--generate-key`` writes) or a PEM file."""
    from joserfc.jwk import ECKey, RSAKey

    from fhir_server.security.keys import import_jwk

    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        jwk = orjson.loads(data)
        key = import_jwk(jwk)
        alg = jwk.get("alg") or ("ES384" if jwk.get("kty") == "EC" else "RS384")
        return key, alg, jwk.get("kid")
    for cls, alg in ((RSAKey, "RS384"), (ECKey, "ES384")):
        try:
            key = cls.import_key(data)
        except Exception:  # not this key type: try the next
            continue
        return key, alg, key.thumbprint()
    raise typer.BadParameter(f"{path} is neither a private JWK nor a PEM private key")


def client_assertion(client_id: str, key_file: Path, token_url: str, lifetime: int = 300) -> str:
    """A signed ``private_key_jwt`` assertion for ``client_id`` (public for tests and scripts)."""
    from joserfc import jwt

    key, alg, kid = _load_private_key(key_file)
    now = int(time.time())
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(header, claims, key, algorithms=[alg])


@client_app.command("add")
def add(
    name: str = typer.Argument(..., help="Client id (letters, digits, . _ -)."),
    org: str = typer.Option(..., "--org", help="Owning agency, as Organization/ID."),
    role: str = typer.Option(
        ...,
        "--role",
        help="hospital, health-centre, childcare, school, social-worker, researcher, auditor, committee"
        " or admin.",
    ),
    scopes: str = typer.Option(
        None,
        "--scopes",
        help='Allowed scopes, e.g. "system/Patient.rs system/*.read" (default: the role\'s).',
    ),
    jwks: Path = typer.Option(None, "--jwks", help="The client's public keys (JWKS JSON file)."),
    generate_key: Path = typer.Option(
        None,
        "--generate-key",
        help="Make a key pair: private key to DIR/NAME.jwk.json (mode 0600), public key registered.",
    ),
    key_type: str = typer.Option("EC", "--key-type", help="With --generate-key: EC (ES384) or RSA (RS384)."),
    agency_type: str = typer.Option(
        None,
        "--agency-type",
        help="The agency's type (th-agency-type: hospital, school, ...), kept in the server's registry;"
        " consents that name agency types are checked against it.",
    ),
    agency_ids: list[str] = typer.Option(
        None, "--agency-id", help="An identifier of the agency, SYSTEM|VALUE (repeatable)."
    ),
    project: str = typer.Option(
        "",
        "--project",
        help="Research project (researchers): de-identified exports of one project share pseudonyms,"
        " two projects never do (default: the agency).",
    ),
    store: str = typer.Option(
        None, "--store", help="Store URL (default $TERMTEM_STORE or the local sqlite store)."
    ),
) -> None:
    """Register a backend client."""
    from fhir_server.security import agencies, keys, roles
    from fhir_server.security.clients import ClientRecord

    if (jwks is None) == (generate_key is None):
        raise typer.BadParameter("give exactly one of --jwks FILE or --generate-key DIR")
    try:
        if agency_type is not None:
            agencies.check_agency_type(agency_type)
        wanted_ids = tuple(agencies.check_identifier(i) for i in agency_ids or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        role_def = roles.get_role(role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    private_path = None
    if jwks is not None:
        key_set = orjson.loads(jwks.read_bytes())
    else:
        kty = key_type.upper()
        private = keys.generate_private_jwk(
            "EC" if kty == "EC" else "RSA", "ES384" if kty == "EC" else "RS384"
        )
        key_set = {"keys": [keys.public_jwk(private)]}
        private_path = generate_key / f"{name}.jwk.json"
        if private_path.exists():
            raise typer.BadParameter(f"{private_path} already exists")
    record = ClientRecord(
        id=name,
        name=name,
        organization=org,
        role=role,
        scopes=scopes or role_def.default_scopes,
        jwks=key_set,
        project=project,
    )

    async def work(db: Any) -> agencies.AgencyRecord | None:
        from fhir_server.security.clients import ClientRegistry, check_organization

        check_organization(org)
        registry = agencies.AgencyRegistry(db)
        known = await registry.get(org)
        if agency_type is not None and known is not None and known.agency_type not in (None, agency_type):
            raise ValueError(
                f"{org} is registered as '{known.agency_type}'; change an agency's type with"
                f" 'termtem agency set {org} --type {agency_type}'"
            )
        await ClientRegistry(db).add(record)
        if agency_type is None and not wanted_ids:
            return known
        updated = await registry.set(
            agencies.AgencyRecord(
                org,
                agency_type or (known.agency_type if known else None),
                (*(known.identifiers if known else ()), *wanted_ids),
            )
        )
        if wanted_ids:  # referrals that named the agency by these identifiers now refer to it
            from fhir_server.workflow.agencies import resolve_stored

            await resolve_stored(db)
        return updated

    try:
        agency = with_store(store, work)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if private_path is not None:
        keys.save_private_jwk(private_path, private)
        typer.echo(f"private key written to {private_path} (keep it secret; mode 0600)")
    extra = f" (research project {project})" if project else ""
    typer.echo(f"client {name} registered for {org} as {role} with scopes: {record.scopes}{extra}")
    if agency is None or agency.agency_type is None:
        typer.echo(
            f"note: {org} has no agency type in the registry, so consents that name agency types do not"
            f" apply to it; set one with --agency-type or 'termtem agency set {org} --type TYPE'",
            err=True,
        )


@client_app.command("list")
def list_clients(store: str = typer.Option(None, "--store", help="Store URL.")) -> None:
    """List registered clients."""

    from fhir_server.security.agencies import AgencyRegistry
    from fhir_server.security.clients import ClientRegistry

    async def work(db: Any) -> tuple[list[Any], dict[str, Any]]:
        types = {a.organization: a.agency_type for a in await AgencyRegistry(db).list()}
        return list(await ClientRegistry(db).list()), types

    records, types = with_store(store, work)
    for record in records:
        kids = ",".join(str(k.get("kid", "?")) for k in record.jwks.get("keys", []))
        kind = types.get(record.organization) or "(none)"
        typer.echo(
            f"{record.id}\t{record.organization}\t{record.role}\t{record.scopes}\tkeys={kids}"
            f"\tagency-type={kind}"
        )


@client_app.command("remove")
def remove(
    name: str = typer.Argument(...), store: str = typer.Option(None, "--store", help="Store URL.")
) -> None:
    """Remove a client; its tokens stop working at once."""

    async def work(registry: Any) -> bool:
        return bool(await registry.remove(name))

    if not _with_registry(store, work):
        typer.echo(f"error: no client named {name}", err=True)
        raise typer.Exit(1)
    typer.echo(f"client {name} removed")


def register(app: typer.Typer) -> None:
    app.add_typer(client_app, name="client")

    @app.command("token")
    def token(
        name: str = typer.Argument(..., help="Client id."),
        key: Path = typer.Option(..., "--key", help="The client's private key (JWK JSON or PEM)."),
        server: str = typer.Option("http://127.0.0.1:8080/fhir", "--server", help="FHIR base URL."),
        scope: str = typer.Option(
            None, "--scope", help="Scopes to ask for (default: all the client may have)."
        ),
        store: str = typer.Option(None, "--store", help="Store URL, to look up the default scopes."),
    ) -> None:
        """Get an access token (SMART Backend Services) and print only the token."""
        import httpx

        wanted = scope
        if wanted is None:

            async def work(registry: Any) -> str | None:
                record = await registry.get(name)
                return record.scopes if record else None

            wanted = _with_registry(store, work)
            if wanted is None:
                typer.echo(f"error: {name} is not in the local registry; pass --scope", err=True)
                raise typer.Exit(1)
        with httpx.Client(timeout=30) as http:
            config = http.get(server.rstrip("/") + "/.well-known/smart-configuration")
            config.raise_for_status()
            token_url = config.json()["token_endpoint"]
            reply = http.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": client_assertion(name, key, token_url),
                    "scope": wanted,
                },
            )
        if reply.status_code != 200:
            typer.echo(f"error: {reply.status_code} {reply.text}", err=True)
            raise typer.Exit(1)
        typer.echo(reply.json()["access_token"])
