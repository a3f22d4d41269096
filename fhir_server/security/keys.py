"""The server's token-signing key: created on first start, kept in an owner-only file, published as JWKS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from joserfc import jwk
from joserfc.jwk import ECKey, RSAKey

from fhir_server.storage.files import private_dir

# authlib's JOSE layer moved to joserfc (same maintainers; authlib depends on it and deprecates
# authlib.jose), so keys and JWTs are handled with joserfc directly.
Key = RSAKey | ECKey

ALGORITHM = "RS384"  # verifying RSA is several times faster than ECDSA, and it runs on every request


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` so that only the owner can ever read it (no window with wider permissions)."""
    private_dir(path.parent)  # a new folder for keys is the owner's only (0700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def generate_private_jwk(kty: str = "RSA", alg: str = ALGORITHM) -> dict[str, Any]:
    """A new private key as a JWK dict with ``kid`` (its thumbprint) and ``alg`` set."""
    key: Key = ECKey.generate_key("P-384") if kty == "EC" else RSAKey.generate_key(2048)
    data = dict(key.as_dict(private=True))
    data["kid"] = key.thumbprint()
    data["alg"] = alg
    return data


def public_jwk(private: dict[str, Any]) -> dict[str, Any]:
    key = import_jwk(private)
    data = dict(key.as_dict(private=False))
    data["kid"] = private["kid"]
    data["alg"] = private.get("alg", ALGORITHM)
    data["use"] = "sig"
    return data


def import_jwk(data: dict[str, Any]) -> Key:
    key = jwk.import_key(data)
    if not isinstance(key, RSAKey | ECKey):
        raise ValueError("only RSA and EC keys are supported")
    return key


def save_private_jwk(path: Path, private: dict[str, Any]) -> None:
    _write_private(path, orjson.dumps(private, option=orjson.OPT_INDENT_2))


class ServerKey:
    """The signing key pair; ``jwks`` is what clients fetch to verify the server's tokens."""

    def __init__(self, private: dict[str, Any]) -> None:
        self.kid: str = private["kid"]
        self.private: Key = import_jwk(private)
        self.public_dict = public_jwk(private)
        self.public: Key = import_jwk(self.public_dict)

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_dict]}


def load_or_create(path: Path) -> ServerKey:
    """Load the key at ``path``; create it (mode 0600) when absent. A readable-by-others file is refused."""
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise PermissionError(
                f"{path} is readable by others (mode {oct(path.stat().st_mode & 0o777)}); run chmod 600 on it"
            )
        return ServerKey(orjson.loads(path.read_bytes()))
    private = generate_private_jwk()
    save_private_jwk(path, private)
    return ServerKey(private)
