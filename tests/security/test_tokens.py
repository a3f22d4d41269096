"""SMART Backend Services over HTTP: the token flow and every way a token can be bad."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import orjson
from joserfc import jwt

from fhir_server.security import keys
from fhir_server.security.clients import ClientRegistry
from tests.security.conftest import BASE, TOKEN_URL, World, agency


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _assertion(key_file: Any, claims: dict[str, Any], alg: str = "ES384") -> str:
    private = orjson.loads(key_file.read_bytes())
    key = keys.import_jwk(private)
    return jwt.encode({"alg": alg, "kid": private["kid"]}, claims, key, algorithms=[alg])


def _claims(client: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": client, "sub": client, "aud": TOKEN_URL, "exp": now + 120, "jti": str(uuid.uuid4())}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def _logins(world: World) -> list[dict[str, Any]]:
    return [e for e in await world.audit_events() if e["type"]["code"] == "110114"]


async def test_token_issue_with_es384_and_rs384(world: World) -> None:
    for name, kty in (("ec-client", "EC"), ("rsa-client", "RSA")):
        key_file = await world.register(name, "Organization/hosp", "hospital", "system/Patient.rs", kty)
        reply = await world.token_reply(name, key_file, "system/Patient.rs system/Observation.rs")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["token_type"] == "bearer" and body["expires_in"] == 300
        assert body["scope"] == "system/Patient.rs"  # never more than registered
        assert (
            reply.headers["cache-control"] == "no-store"
            and reply.headers["x-content-type-options"] == "nosniff"
        )
        search = await world.http.get("Patient", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert search.status_code == 200
    logins = await _logins(world)
    assert [e["outcome"] for e in logins] == ["0", "0"]
    assert {e["agent"][0]["who"]["identifier"]["value"] for e in logins} == {"ec-client", "rsa-client"}


async def test_bad_assertions_are_refused_and_audited(world: World) -> None:
    key_file = await world.register("c1", "Organization/hosp", "hospital")
    stranger = world.tmp / "stranger.jwk.json"
    keys.save_private_jwk(stranger, keys.generate_private_jwk("EC", "ES384"))
    header_none = _b64({"alg": "none", "typ": "JWT"})
    cases = {
        "alg none": f"{header_none}.{_b64(_claims('c1'))}.",
        "HS256": jwt.encode({"alg": "HS256"}, _claims("c1"), _oct(), algorithms=["HS256"]),
        "other key": _assertion(stranger, _claims("c1")),
        "wrong audience": _assertion(key_file, _claims("c1", aud="https://elsewhere.example/token")),
        "expired": _assertion(key_file, _claims("c1", exp=int(time.time()) - 600)),
        "too long-lived": _assertion(key_file, _claims("c1", exp=int(time.time()) + 3600)),
        "sub differs": _assertion(key_file, _claims("c1", sub="c2")),
        "no jti": _assertion(key_file, _claims("c1", jti=None)),
        "unknown client": _assertion(key_file, _claims("nobody")),
        "not a jwt": "garbage",
    }
    for label, assertion in cases.items():
        reply = await world.token_reply("c1", key_file, "system/*.rs", assertion=assertion)
        assert reply.status_code in (400, 401), label
        assert reply.json()["error"] in ("invalid_client", "invalid_request"), label
    logins = await _logins(world)
    assert len(logins) == len(cases)
    assert all(e["outcome"] == "4" and "token refused" in e["outcomeDesc"] for e in logins)


def _oct() -> Any:
    from joserfc.jwk import OctKey

    return OctKey.import_key(b"y" * 32)


async def test_replayed_assertion_is_refused(world: World) -> None:
    key_file = await world.register("c1", "Organization/hosp", "hospital")
    assertion = _assertion(key_file, _claims("c1"))
    first = await world.token_reply("c1", key_file, "system/*.rs", assertion=assertion)
    second = await world.token_reply("c1", key_file, "system/*.rs", assertion=assertion)
    assert first.status_code == 200
    assert second.status_code == 401 and "replay" in second.json()["error_description"]
    assert [e["outcome"] for e in await _logins(world)] == ["0", "4"]


async def test_racing_replays_of_one_assertion_give_one_token(world: World) -> None:
    key_file = await world.register("c1", "Organization/hosp", "hospital")
    assertion = _assertion(key_file, _claims("c1"))
    replies = await asyncio.gather(
        *(world.token_reply("c1", key_file, "system/*.rs", assertion=assertion) for _ in range(8))
    )
    assert sorted(r.status_code for r in replies) == [200] + [401] * 7


async def test_grant_type_and_scope_errors(world: World) -> None:
    key_file = await world.register("c1", "Organization/hosp", "school", "system/Patient.rs")
    reply = await world.token_reply("c1", key_file, "system/Condition.rs")
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_scope"
    reply = await world.token_reply("c1", key_file, "patient/*.read")
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_scope"
    reply = await world.http.post(TOKEN_URL, data={"grant_type": "password"})
    assert reply.status_code == 400 and reply.json()["error"] == "unsupported_grant_type"


def _server_token(world: World, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": BASE,
        "sub": "c1",
        "aud": BASE,
        "iat": now,
        "exp": now + 60,
        "jti": "t",
        "scope": "system/*.rs",
        "org": "Organization/hosp",
        "role": "hospital",
    }
    claims.update(changes)
    key = world.app.state.security.key
    return jwt.encode({"alg": "RS384", "kid": key.kid}, claims, key.private, algorithms=["RS384"])


async def test_bad_access_tokens_get_401_and_are_audited(world: World) -> None:
    await world.register("c1", "Organization/hosp", "hospital")
    other = keys.ServerKey(keys.generate_private_jwk())
    now = int(time.time())
    forged = jwt.encode(
        {"alg": "RS384"},
        {"sub": "c1", "aud": BASE, "exp": now + 60, "scope": "system/*.rs"},
        other.private,
        algorithms=["RS384"],
    )
    tokens = {
        "none": None,
        "expired": _server_token(world, exp=now - 5),
        "wrong audience": _server_token(world, aud="https://other.example/fhir"),
        "other key": forged,
        "alg none": f"{_b64({'alg': 'none'})}.{_b64({'sub': 'c1', 'aud': BASE, 'exp': now + 60})}.",
        "removed client": _server_token(world, sub="ghost"),
    }
    assert (
        await world.http.get("Patient", headers={"Authorization": f"Bearer {_server_token(world)}"})
    ).status_code == 200
    for label, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        reply = await world.http.get("Patient", headers=headers)
        assert reply.status_code == 401, label
        assert reply.headers["www-authenticate"].startswith("Bearer"), label
        assert reply.json()["issue"][0]["code"] == "login"
        assert reply.headers["x-frame-options"] == "DENY" and reply.headers["cache-control"] == "no-store"
    events = [e for e in await world.audit_events() if e["type"]["code"] == "rest"]
    assert [e["outcome"] for e in events] == ["0"] + ["4"] * len(tokens)
    assert events[-1]["agent"][0]["who"]["display"] == "unauthenticated caller"


async def test_removing_a_client_revokes_its_tokens(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    assert (await admin.get("Patient")).status_code == 200
    await ClientRegistry(world.store).remove("admin")
    assert (await admin.get("Patient")).status_code == 401


async def test_discovery_jwks_and_capability(world: World) -> None:
    config = (await world.http.get(f"{BASE}/.well-known/smart-configuration")).json()
    assert config["token_endpoint"] == TOKEN_URL
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert "client-confidential-asymmetric" in config["capabilities"]
    jwks = (await world.http.get(config["jwks_uri"])).json()
    assert jwks["keys"][0]["kty"] == "RSA" and "d" not in jwks["keys"][0]
    capability = (await world.http.get("metadata")).json()
    security = capability["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == TOKEN_URL


async def test_agency_type_and_identifiers_come_from_the_registry(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    assert (await admin.put("Organization/school1", agency("school1", "hospital"))).status_code == 201
    await world.set_agency("Organization/school1", "school", "https://example.go.th/id/school|S-1")
    school = await world.caller("s", "Organization/school1", "school")
    claims = world.app.state.security.tokens(world.store).verify(school.token, BASE)
    assert claims["agency_type"] == "school" and claims["org"] == "Organization/school1"
    assert claims["agency_ids"] == ["https://example.go.th/id/school|S-1"]
    unregistered = await world.caller("h", "Organization/elsewhere", "hospital")
    claims = world.app.state.security.tokens(world.store).verify(unregistered.token, BASE)
    assert claims["agency_type"] is None and claims["agency_ids"] == []


async def test_spent_assertion_ids_are_forgotten_once_expired(world: World) -> None:
    from fhir_server.security.tokens import JTI_NAMESPACE

    await world.store.kv_put(JTI_NAMESPACE, "c1:old", {"exp": int(time.time()) - 3600})
    await world.store.kv_put(JTI_NAMESPACE, "c1:fresh", {"exp": int(time.time()) + 60})
    assert await world.app.state.security.tokens(world.store).prune_jtis() == 1
    assert [k for k, _ in await world.store.kv_list(JTI_NAMESPACE)] == ["c1:fresh"]
