"""FHIRPath for the whole server: invariants, search-parameter extraction, FHIRPath Patch.

``compile(expression)`` parses strictly (a syntax error is an error, not a silently shortened
expression) and returns an ``Expression`` whose ``evaluate(resource, ...)`` gives the result
collection. Parsing uses fhirpathpy's ANTLR grammar; evaluation is ours (``engine``), typed by the R4
model (``model``), with System values for dates, times and quantities (``values``, ``ucum``).
Regular expressions run in one small module (``regex``) on RE2 (``linear``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.fhirpath import engine, model
from fhir_server.fhirpath.engine import Node, plain, system
from fhir_server.fhirpath.linear import PatternError, check_patterns, regex
from fhir_server.fhirpath.values import FhirPathError, Quantity, Temporal

__all__ = [
    "Expression",
    "FhirPathError",
    "Node",
    "PatternError",
    "Quantity",
    "Temporal",
    "check_patterns",
    "compile",
    "evaluate",
    "plain",
    "regex",
    "system",
]

VARIABLES = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise FhirPathError(f"Syntax error at {line}:{column}: {msg}")


_PARTIAL_DATETIME = re.compile(r"@(\d{4}(?:-\d{2}(?:-\d{2})?)?)T(?![0-9])")
_OPAQUE = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|//[^\n]*|/\*.*?\*/", re.DOTALL)


def _partial_datetimes(expression: str) -> str:
    """``@2015T``, ``@2015-02T`` and ``@2015-02-04T`` are DateTime literals without a time (FHIRPath §2.1.3);
    the grammar fhirpathpy ships lacks them, so they become ``'2015'.toDateTime()`` before parsing."""
    if "T" not in expression or "@" not in expression:
        return expression
    out, last = [], 0
    for m in _OPAQUE.finditer(expression):
        out.append(_PARTIAL_DATETIME.sub(r"('\1'.toDateTime())", expression[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_PARTIAL_DATETIME.sub(r"('\1'.toDateTime())", expression[last:]))
    return "".join(out)


def parse(expression: str) -> dict[str, Any]:
    """The parse tree of ``expression``; ``FhirPathError`` on any syntax error."""
    lexer = FHIRPathLexer(InputStream(_partial_datetimes(expression)))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    tree = parser.entireExpression()
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, tree)
    root = listener.parentStack[0]
    return root


class Expression:
    """A compiled FHIRPath expression."""

    __slots__ = ("_fn", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._fn = engine.compile_node(_entire(parse(text)))

    def evaluate(
        self,
        data: Any,
        *,
        type_name: str | None = None,
        variables: dict[str, Any] | None = None,
        resource: Any = None,
        root_resource: Any = None,
        resolver: Any = None,
        trace: Any = None,
    ) -> list[Any]:
        """The result collection (``Node``s and System values) of the expression on ``data``.

        ``data`` is a resource (typed by its resourceType), or an element of type ``type_name``
        (a datatype such as ``HumanName`` or an element path such as ``Patient.contact``).
        """
        focus = [_root(data, type_name)] if data is not None else []
        env = dict(VARIABLES)
        context = focus
        env["context"] = context
        env["resource"] = [_root(resource, None)] if resource is not None else context
        env["rootResource"] = [_root(root_resource, None)] if root_resource is not None else env["resource"]
        if variables:
            env.update(variables)
        ctx = engine.Ctx(env, resolver, focus)
        ctx.trace = trace
        return self._fn(ctx, focus)

    def __call__(self, data: Any, context: dict[str, Any] | None = None) -> list[Any]:
        """fhirpathpy's calling convention (resource, variables) with plain JSON results."""
        return [plain(x) for x in self.evaluate(data, variables=context)]


def _entire(tree: dict[str, Any]) -> dict[str, Any]:
    node = tree
    while node.get("type") in (None, "EntireExpression") and node.get("children"):
        node = node["children"][0]
    return node


def _root(data: Any, type_name: str | None) -> Any:
    if isinstance(data, Node):
        return data
    if type_name:
        node_type = _node_type(type_name)
        if node_type is not None:
            return Node(data, node_type)
    if isinstance(data, dict):
        return Node(data, model.resource_node_type(data))
    return data


@lru_cache(maxsize=1024)
def _node_type(type_name: str) -> model.NodeType | None:
    """The node type for a type name or an element path ("Patient.identifier" is an Identifier,
    "Patient.contact" a backbone element of Patient)."""
    owner = type_name.split(".", 1)[0]
    if not model.is_fhir_type(owner):
        return None
    if "." not in type_name:
        return (type_name, type_name)
    parent, name = type_name.rsplit(".", 1)
    parent_type = _node_type(parent)
    info = model.children(parent_type).get(name) if parent_type else None
    if info is None or len(info[1]) != 1:
        return (owner, type_name)
    return info[1][0]


@lru_cache(maxsize=4096)
def compile(expression: str) -> Expression:
    """The compiled expression (cached); ``FhirPathError`` when it cannot be parsed or compiled."""
    return Expression(expression)


def evaluate(data: Any, expression: str, **kwargs: Any) -> list[Any]:
    return compile(expression).evaluate(data, **kwargs)
