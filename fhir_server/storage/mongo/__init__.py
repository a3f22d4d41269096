"""The MongoDB backend: the production store (replica set or sharded cluster)."""

from fhir_server.storage.mongo.store import MongoStore

__all__ = ["MongoStore"]
