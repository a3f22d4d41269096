"""Connecting: the real async client with production defaults, or the in-process test double."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# Durable by default: a write is acknowledged once a majority of the replica set has it in its
# journal, and reads see only majority-committed data. Options given in the URL win.
_DEFAULTS: dict[str, Any] = {
    "w": "majority",
    "journal": True,
    "readConcernLevel": "majority",
    "retryWrites": True,
    "retryReads": True,
    "appname": "termtem",
}


class StandaloneServerError(RuntimeError):
    """The server is not part of a replica set, so it cannot run multi-document transactions."""


def connect(url: str, timeout_seconds: float | None = None) -> tuple[Any, str]:
    """(client, database name) for a ``mongodb://``, ``mongodb+srv://`` or ``mongomock://`` URL.

    ``timeout_seconds`` bounds server selection and connecting (unless the URL sets them), so an
    unreachable server fails fast instead of after pymongo's 30 s default.
    """
    if url.startswith("mongomock://"):
        from fhir_server.storage.mongo.double import client_for

        return client_for(url)
    from pymongo import AsyncMongoClient

    # Parsed by hand: pymongo's parser resolves mongodb+srv names in DNS, which can wait for the network.
    parts = urlsplit(url)
    given = {name.lower() for name, _ in parse_qsl(parts.query)}
    defaults = dict(_DEFAULTS)
    if timeout_seconds is not None:
        defaults["serverSelectionTimeoutMS"] = int(timeout_seconds * 1000)
        defaults["connectTimeoutMS"] = int(timeout_seconds * 1000)
    options = {k: v for k, v in defaults.items() if k.lower() not in given}
    if "journal" in options and "j" in given:
        options.pop("journal")
    return AsyncMongoClient(url, **options), unquote(parts.path.strip("/")) or "termtem"


def check_replica_set(hello: dict[str, Any], url: str) -> None:
    """Refuse a standalone server with a message that says how to run a one-node replica set."""
    if hello.get("setName") or hello.get("msg") == "isdbgrid":  # replica set member, or mongos
        return
    raise StandaloneServerError(
        f"The MongoDB server at {_redacted(url)} is a standalone server, but Termtem needs multi-document "
        "transactions, which MongoDB offers only on a replica set (or a sharded cluster). "
        "On a single machine, run a one-node replica set: start mongod with '--replSet rs0' "
        "(or 'replication: {replSetName: rs0}' in mongod.conf), run "
        "mongosh --eval 'rs.initiate()' once, then use a store URL such as "
        "mongodb://localhost:27017/termtem?replicaSet=rs0"
    )


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
