"""Plain data shared by the registry, the extractor, the query parser and the storage backends."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def param_key(resource_type: str, code: str) -> int:
    """A stable signed 64-bit key for (type, parameter code) used in every index row.

    A hash rather than a table id so writers, readers and backends agree without a lookup and a
    rolled-back transaction can never leave a stale mapping behind.
    """
    digest = hashlib.blake2b(f"{resource_type}.{code}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: the component's own parameter and its relative expression."""

    definition: str
    expression: str


@dataclass(frozen=True)
class SearchParam:
    """One search parameter as it applies to one resource type."""

    resource_type: str  # the base it applies to ("Resource" params are copied onto every type)
    code: str
    type: str  # number date string token reference composite quantity uri special
    expression: str
    url: str = ""
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    custom: bool = False
    description: str = ""

    @property
    def key(self) -> int:
        return param_key(self.resource_type, self.code)

    def sub_key(self, suffix: str) -> int:
        """Key for derived rows (``:text``, ``:identifier``, ``:of-type``, composite components)."""
        return param_key(self.resource_type, f"{self.code}{suffix}")


@dataclass
class IndexRows:
    """Everything the index holds for one resource version; plain tuples so it pickles and ships.

    Every row starts with the parameter key and ends with ``grp``: 0 for ordinary rows, or a number
    shared by the component rows of one composite value.
    """

    string: list[tuple[int, str, str, int]] = field(default_factory=list)  # key, norm, exact, grp
    token: list[tuple[int, str | None, str | None, int]] = field(default_factory=list)  # key, system, code
    reference: list[tuple[int, str | None, str | None, str | None, str | None, int]] = field(
        default_factory=list
    )  # key, target type, target id, version, url
    date: list[tuple[int, int, int, int]] = field(default_factory=list)  # key, low ms, high ms
    number: list[tuple[int, float, float, int]] = field(default_factory=list)  # key, low, high
    quantity: list[
        tuple[int, str | None, str | None, float, float, str | None, float | None, float | None, int]
    ] = field(default_factory=list)  # key, system, code, low, high, canonical code, canonical low, high
    uri: list[tuple[int, str, int]] = field(default_factory=list)  # key, uri

    def count(self) -> int:
        return sum(
            len(v)
            for v in (
                self.string,
                self.token,
                self.reference,
                self.date,
                self.number,
                self.quantity,
                self.uri,
            )
        )


Json = dict[str, Any]
