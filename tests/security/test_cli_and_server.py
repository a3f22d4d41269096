"""The operator CLI, the signing key file, and one end-to-end run against a real uvicorn server."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn
from typer.testing import CliRunner

from fhir_server.api.app import create_app
from fhir_server.cli import app as cli
from fhir_server.config import Settings
from fhir_server.security import keys

runner = CliRunner()


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.sqlite'}"


def test_client_add_list_remove(tmp_path: Path) -> None:
    store = _store(tmp_path)
    added = runner.invoke(
        cli,
        [
            "client",
            "add",
            "school-app",
            "--org",
            "Organization/s1",
            "--role",
            "school",
            "--scopes",
            "system/Patient.rs system/Observation.read",
            "--generate-key",
            str(tmp_path),
            "--store",
            store,
        ],
    )
    assert added.exit_code == 0, added.output
    key_file = tmp_path / "school-app.jwk.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "d" in orjson.loads(key_file.read_bytes())
    public = {"keys": [keys.public_jwk(keys.generate_private_jwk("RSA", "RS384"))]}
    jwks_file = tmp_path / "hosp.jwks.json"
    jwks_file.write_bytes(orjson.dumps(public))
    added = runner.invoke(
        cli,
        [
            "client",
            "add",
            "hosp-app",
            "--org",
            "Organization/h1",
            "--role",
            "hospital",
            "--jwks",
            str(jwks_file),
            "--store",
            store,
        ],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["client", "list", "--store", store])
    assert "school-app\tOrganization/s1\tschool\tsystem/Patient.rs system/Observation.read" in listed.output
    assert "hosp-app\tOrganization/h1\thospital\tsystem/*.cruds" in listed.output
    again = runner.invoke(
        cli,
        [
            "client",
            "add",
            "hosp-app",
            "--org",
            "Organization/h1",
            "--role",
            "hospital",
            "--jwks",
            str(jwks_file),
            "--store",
            store,
        ],
    )
    assert again.exit_code == 1 and "already registered" in again.output
    bad_role = runner.invoke(
        cli,
        [
            "client",
            "add",
            "x",
            "--org",
            "Organization/h1",
            "--role",
            "janitor",
            "--jwks",
            str(jwks_file),
            "--store",
            store,
        ],
    )
    assert bad_role.exit_code != 0
    private_jwks = tmp_path / "private.json"
    private_jwks.write_bytes(orjson.dumps({"keys": [keys.generate_private_jwk()]}))
    leaked = runner.invoke(
        cli,
        [
            "client",
            "add",
            "y",
            "--org",
            "Organization/h1",
            "--role",
            "hospital",
            "--jwks",
            str(private_jwks),
            "--store",
            store,
        ],
    )
    assert leaked.exit_code == 1 and "public keys only" in leaked.output
    assert runner.invoke(cli, ["client", "remove", "hosp-app", "--store", store]).exit_code == 0
    assert runner.invoke(cli, ["client", "remove", "hosp-app", "--store", store]).exit_code == 1
    assert "hosp-app" not in runner.invoke(cli, ["client", "list", "--store", store]).output


def test_signing_key_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "key.json"
    first = keys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load_or_create(path).kid == first.kid
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        keys.load_or_create(path)


def test_auth_off_refuses_non_loopback() -> None:
    result = runner.invoke(cli, ["serve", "--auth", "off", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "loopback" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    settings = Settings(store_url=_store(tmp_path), auth=True, data_dir=tmp_path / "data")
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    assert instance.started
    yield f"http://127.0.0.1:{port}/fhir"
    instance.should_exit = True
    thread.join(timeout=20)


def test_token_command_against_a_real_server(tmp_path: Path, server: str) -> None:
    store = _store(tmp_path)
    added = runner.invoke(
        cli,
        [
            "client",
            "add",
            "ops",
            "--org",
            "Organization/ops",
            "--role",
            "admin",
            "--generate-key",
            str(tmp_path),
            "--key-type",
            "RSA",
            "--store",
            store,
        ],
    )
    assert added.exit_code == 0, added.output
    result = runner.invoke(
        cli, ["token", "ops", "--key", str(tmp_path / "ops.jwk.json"), "--server", server, "--store", store]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert "\n" not in token and token.count(".") == 2
    with httpx.Client(base_url=server) as http:
        assert http.get("Patient").status_code == 401
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        created = http.post(
            "Patient", content=b'{"resourceType":"Patient","gender":"female"}', headers=headers
        )
        assert created.status_code == 201
        assert created.headers["x-content-type-options"] == "nosniff"
        search = http.get("Patient", headers=headers).json()
        assert search["entry"][0]["resource"]["meta"]["tag"][0]["code"] == "Organization/ops"
        audit = http.get("AuditEvent?subtype=create", headers=headers).json()
        assert audit["entry"][0]["resource"]["agent"][0]["who"]["identifier"]["value"] == "ops"


def test_auth_on_needs_a_public_url_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.delenv("TERMTEM_PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("TERMTEM_WORKERS", "1")  # one process: uvicorn.run, captured below
    result = runner.invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "needs the public FHIR base URL" in result.output and "--public-url" in result.output
    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.append(app))
    public = runner.invoke(
        cli, ["serve", "--host", "0.0.0.0", "--public-url", "https://termtem.example/fhir"]
    )
    assert public.exit_code == 0, public.output
    from_env = runner.invoke(
        cli, ["serve", "--host", "0.0.0.0"], env={"TERMTEM_PUBLIC_BASE_URL": "https://env.example/fhir/"}
    )
    assert from_env.exit_code == 0, from_env.output
    loopback = runner.invoke(cli, ["serve", "--port", "8099"])
    assert loopback.exit_code == 0, loopback.output
    bases = [app.state.settings.public_base_url for app in started]  # type: ignore[attr-defined]
    assert bases == [
        "https://termtem.example/fhir",
        "https://env.example/fhir",
        "http://127.0.0.1:8099/fhir",
    ]
    bad = runner.invoke(cli, ["serve", "--public-url", "termtem.example/fhir"])
    assert bad.exit_code == 2


def test_agency_registry_commands(tmp_path: Path) -> None:
    store = _store(tmp_path)
    added = runner.invoke(
        cli,
        [
            "client",
            "add",
            "school-app",
            "--org",
            "Organization/s1",
            "--role",
            "school",
            "--agency-type",
            "school",
            "--agency-id",
            "https://example.go.th/id/school|S-1",
            "--generate-key",
            str(tmp_path),
            "--store",
            store,
        ],
    )
    assert added.exit_code == 0, added.output
    keyed = ["--generate-key", str(tmp_path), "--store", store]
    untyped = runner.invoke(
        cli,
        ["client", "add", "h-app", "--org", "Organization/h1", "--role", "hospital", *keyed],
    )
    assert untyped.exit_code == 0 and "has no agency type" in untyped.output
    conflicting = runner.invoke(
        cli,
        [
            "client",
            "add",
            "s2",
            "--org",
            "Organization/s1",
            "--role",
            "school",
            "--agency-type",
            "hospital",
            *keyed,
        ],
    )
    assert conflicting.exit_code == 1 and "termtem agency set" in conflicting.output
    listed = runner.invoke(cli, ["agency", "list", "--store", store]).output
    assert "Organization/s1\ttype=school\tidentifiers=https://example.go.th/id/school|S-1" in listed
    assert "Organization/h1\ttype=(none)" in listed
    assert "agency-type=school" in runner.invoke(cli, ["client", "list", "--store", store]).output
    assert runner.invoke(
        cli, ["agency", "set", "Organization/h1", "--type", "nonsense", "--store", store]
    ).exit_code
    changed = runner.invoke(cli, ["agency", "set", "Organization/h1", "--type", "hospital", "--store", store])
    assert changed.exit_code == 0 and "type hospital" in changed.output
    assert "Organization/h1\ttype=hospital" in runner.invoke(cli, ["agency", "list", "--store", store]).output
    assert runner.invoke(cli, ["agency", "remove", "Organization/h1", "--store", store]).exit_code == 0
    assert runner.invoke(cli, ["agency", "remove", "Organization/h1", "--store", store]).exit_code == 1
