"""Measure rules: a small language for analysts, compiled to SQL over the flat views.

A rule is a condition about one counted unit (a child, a referral, a request for help), written with
the columns of the flat views. ``docs/analytics.md`` is the analyst's guide; in short::

    birth_date + 9 months during period
    exists dspm where age_band = '9'
    exists dspm as s where s.date during period and s.result in ('suspected-delay', 'delay')
    all of ('010', '041', '061') in immunisations.vaccine where date <= children.birth_date + 12 months
    latest growth_z where date during period has z_wfa < -2
    status = 'completed' and completed <= due
    days between received and first_action          (a value, for averages and medians)

Only names of known views and their columns, literals and the words of the language are accepted, so
a rule can never be arbitrary SQL; literals are quoted by the compiler. A mistake is a ``RuleError``
with the position and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    | (?P<op><=|>=|!=|<>|[=<>()+\-,])
    )""",
    re.VERBOSE,
)
_UNITS = {"day": "DAY", "days": "DAY", "month": "MONTH", "months": "MONTH", "year": "YEAR", "years": "YEAR"}
_KEYWORDS = {
    "and", "or", "not", "exists", "no", "where", "as", "in", "during", "period", "start", "end", "is",
    "empty", "between", "all", "of", "latest", "has", "today", "days", "months", "years", "day", "month",
    "year", "true", "false",
}  # fmt: skip


_CONDITION_WORDS = frozenset({"and", "or", "exists", "no", "during", "in", "is", "not", "latest"})
_COMPARISONS = frozenset({"=", "!=", "<>", "<", ">", "<=", ">="})


class RuleError(ValueError):
    """A rule that cannot be compiled: what is wrong and where (character position)."""


@dataclass
class Schema:
    """The views a rule may use: table name -> column names; ``unit`` is the counted table."""

    tables: dict[str, list[str]]
    unit: str
    link: str = "patient_id"  # the column joining a unit's own rows in other views


@dataclass
class Compiled:
    sql: str  # with $period_start and $period_end where the period goes


class _Parser:
    def __init__(self, text: str, schema: Schema) -> None:
        self.text, self.schema = text, schema
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if m is None or m.end() == pos:
                raise RuleError(f"unexpected character {stripped[pos:].strip()[:1]!r} at position {pos}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.tokens.append(("end", "", len(stripped)))
        self.i = 0
        # Scopes: innermost last; each (alias, table).
        self.scopes: list[tuple[str, str]] = [("u", schema.unit)]
        self.scope_alias: dict[str, str] = {}
        self.aliases = 0

    # -- tokens ---------------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def word(self, ahead: int = 0) -> str:
        kind, value, _ = self.peek(ahead)
        return value.lower() if kind == "word" else value

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, *words: str) -> None:
        kind, value, pos = self.take()
        if (value.lower() if kind == "word" else value) not in words:
            found = value or "the end of the rule"
            wanted = " or ".join(repr(w) for w in words)
            raise RuleError(f"expected {wanted} at position {pos}, found {found!r}")

    def bind(self, value: Any) -> str:
        """A literal as SQL: numbers as numbers, text quoted with its quotes doubled (never raw)."""
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int | float):
            return repr(value)
        return "'" + str(value).replace("'", "''") + "'"

    def literal_token(self) -> str | None:
        """The next token as a SQL literal when it is a 'text' or a number (taken), else None."""
        kind, value, _ = self.peek()
        if kind == "string":
            self.take()
            return self.bind(value[1:-1].replace("\\'", "'"))
        if kind == "number":
            self.take()
            return self.bind(float(value) if "." in value else int(value))
        return None

    def finished(self, sql: str) -> str:
        """``sql`` when the whole text was read, else the error naming what is left."""
        kind, value, pos = self.peek()
        if kind != "end":
            raise RuleError(f"unexpected {value!r} at position {pos}")
        return sql

    # -- grammar --------------------------------------------------------------------------------
    def rule(self) -> str:
        return self.finished(self.or_())

    def or_(self) -> str:
        parts = [self.and_()]
        while self.word() == "or":
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def and_(self) -> str:
        parts = [self.not_()]
        while self.word() == "and":
            self.take()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def not_(self) -> str:
        if self.word() == "not":
            self.take()
            return f"(NOT COALESCE({self.not_()}, FALSE))"
        return self.predicate()

    def predicate(self) -> str:
        w = self.word()
        if w in ("exists", "no"):
            self.take()
            return self.exists(negate=w == "no")
        if w == "all" and self.word(1) == "of":
            self.take()
            self.take()
            return self.all_of()
        if w == "latest":
            self.take()
            return self.latest()
        if self.peek()[1] == "(" and self._is_group():
            self.take()
            inner = self.or_()
            self.expect(")")
            return inner
        left = self.value()
        w = self.word()
        if w == "during":
            self.take()
            self.expect("period")
            return f"({left} BETWEEN $period_start AND $period_end)"
        if w == "is":
            self.take()
            negate = self.word() == "not"
            if negate:
                self.take()
            self.expect("empty")
            return f"({left} IS {'NOT ' if negate else ''}NULL)"
        if w == "between":
            self.take()
            low = self.value()
            self.expect("and")
            high = self.value()
            return f"({left} BETWEEN {low} AND {high})"
        if w == "in" or (w == "not" and self.word(1) == "in"):
            negate = w == "not"
            if negate:
                self.take()
            self.take()
            values = self.literal_list()
            return f"({left} {'NOT ' if negate else ''}IN ({', '.join(values)}))"
        kind, op, pos = self.peek()
        if kind == "op" and op in _COMPARISONS:
            self.take()
            right = self.value()
            return f"({left} {'<>' if op == '!=' else op} {right})"
        if left in ("TRUE", "FALSE") or left.startswith("("):
            return left
        raise RuleError(
            "expected a comparison (=, <, >, in, during period, is empty, ...)"
            f" at position {pos}, found {op!r}"
        )

    def _is_group(self) -> bool:
        """Whether the '(' opens a group of conditions (not an arithmetic value)."""
        depth, j = 0, self.i
        while j < len(self.tokens):
            kind, value, _ = self.tokens[j]
            if value == "(":
                depth += 1
            elif value == ")":
                depth -= 1
                if depth == 0:
                    return False
            elif (kind == "word" and value.lower() in _CONDITION_WORDS) or (
                kind == "op" and value in _COMPARISONS
            ):
                return True
            j += 1
        return False

    def literal_list(self) -> list[str]:
        self.expect("(")
        values = [self.literal()]
        while self.peek()[1] == ",":
            self.take()
            values.append(self.literal())
        self.expect(")")
        return values

    def literal(self) -> str:
        literal = self.literal_token()
        if literal is None:
            _, value, pos = self.take()
            raise RuleError(f"expected a 'text' or a number at position {pos}, found {value!r}")
        return literal

    def new_alias(self) -> str:
        self.aliases += 1
        return f"r{self.aliases}"

    def table_scope(self) -> tuple[str, str, str]:
        kind, name, pos = self.take()
        if kind != "word" or name not in self.schema.tables:
            known = ", ".join(sorted(self.schema.tables))
            raise RuleError(f"unknown view {name!r} at position {pos} (known: {known})")
        alias = self.new_alias()
        label = name
        if self.word() == "as":
            self.take()
            kind, label, pos = self.take()
            if kind != "word" or label.lower() in _KEYWORDS:
                raise RuleError(f"expected a name after 'as' at position {pos}")
        return alias, name, label

    def _link(self, alias: str, table: str) -> str:
        link = self.schema.link
        return f"{alias}.{link} = u.{link}"

    def rows_of(self, label: str, table: str, alias: str, then: str | None = None) -> tuple[str, str]:
        """The optional ``where ...`` after a view named in a rule (and the condition after ``then``,
        when given), read with that view's rows in scope: a bare column there is the view's."""
        self.scopes.append((label, table))
        self.scope_alias[label] = alias
        try:
            condition = "TRUE"
            if self.word() == "where":
                self.take()
                condition = self.or_()
            following = ""
            if then is not None:
                self.expect(then)
                following = self.or_()
        finally:
            self.scopes.pop()
        return condition, following

    def exists(self, negate: bool) -> str:
        alias, table, label = self.table_scope()
        condition, _ = self.rows_of(label, table, alias)
        sql = f"EXISTS (SELECT 1 FROM {table} {alias} WHERE {self._link(alias, table)} AND {condition})"
        return f"(NOT {sql})" if negate else sql

    def all_of(self) -> str:
        values = self.literal_list()
        self.expect("in")
        kind, name, pos = self.take()
        table, _, column = name.partition(".")
        if kind != "word" or table not in self.schema.tables or column not in self.schema.tables[table]:
            raise RuleError(f"expected view.column after 'in' at position {pos}, found {name!r}")
        alias = self.new_alias()
        condition, _ = self.rows_of(table, table, alias)
        return (
            f"((SELECT count(DISTINCT {alias}.{column}) FROM {table} {alias} WHERE {self._link(alias, table)}"
            f" AND {alias}.{column} IN ({', '.join(values)}) AND {condition}) = {len(values)})"
        )

    def latest(self) -> str:
        alias, table, label = self.table_scope()
        if "date" not in self.schema.tables[table]:
            raise RuleError(f"'latest' needs a view with a date column; {table} has none")
        condition, test = self.rows_of(label, table, alias, then="has")
        return (
            f"EXISTS (SELECT 1 FROM {table} {alias} WHERE {self._link(alias, table)} AND {condition}"
            f" AND {alias}.date = (SELECT max(m.date) FROM {table} m"
            f" WHERE m.{self.schema.link} = u.{self.schema.link}"
            f" AND {condition.replace(alias + '.', 'm.')}) AND {test})"
        )

    # -- values ---------------------------------------------------------------------------------
    def value(self) -> str:
        left = self.term()
        while True:
            kind, op, _ = self.peek()
            if kind == "op" and op in ("+", "-"):
                self.take()
                kind2, value2, _ = self.peek()
                if kind2 == "number" and self.word(1) in _UNITS:
                    self.take()
                    unit = _UNITS[self.take()[1].lower()]
                    amount = int(float(value2))
                    left = f"({left} {op} INTERVAL ({self.bind(amount)}) {unit})"
                    continue
                right = self.term()
                left = f"({left} {op} {right})"
                continue
            return left

    def term(self) -> str:
        literal = self.literal_token()
        if literal is not None:
            return literal
        kind, value, pos = self.peek()
        lower = value.lower() if kind == "word" else value
        if kind == "op" and value == "(":
            self.take()
            inner = self.value()
            self.expect(")")
            return f"({inner})"
        if lower in ("true", "false"):
            self.take()
            return lower.upper()
        if lower == "period":
            self.take()
            self.expect("start", "end")
            return "$period_start" if self.tokens[self.i - 1][1].lower() == "start" else "$period_end"
        if lower == "today":
            self.take()
            return "current_date"
        if lower in ("days", "months", "years") and self.word(1) == "between":
            self.take()
            self.take()
            first = self.value()
            self.expect("and")
            second = self.value()
            unit = _UNITS[lower]
            return f"date_diff('{unit.lower()}', {first}, {second})"
        if kind == "word" and lower not in _KEYWORDS:
            self.take()
            return self.column(value, pos)
        raise RuleError(f"expected a value (a column, 'text', a number, period start/end) at position {pos}")

    def column(self, name: str, pos: int) -> str:
        aliases = self.scope_alias
        if "." in name:
            qualifier, column = name.split(".", 1)
            for label, table in reversed(self.scopes):
                if label == qualifier or (qualifier == table and label == table):
                    if column not in self.schema.tables[table]:
                        raise RuleError(f"{table} has no column {column!r} (position {pos})")
                    return f"{'u' if label == 'u' else aliases[label]}.{column}"
            if qualifier == self.schema.unit and column in self.schema.tables[self.schema.unit]:
                return f"u.{column}"
            raise RuleError(f"unknown view or name {qualifier!r} at position {pos}")
        for label, table in reversed(self.scopes):
            if name in self.schema.tables[table]:
                return f"{'u' if label == 'u' else aliases[label]}.{name}"
        raise RuleError(f"unknown column {name!r} at position {pos}")


def _parser(text: str, schema: Schema, what: str) -> _Parser:
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"the {what} is empty")
    return _Parser(text, schema)


def compile_rule(text: str, schema: Schema) -> Compiled:
    """Compile a condition; ``$period_start``/``$period_end`` are left for the evaluator to bind."""
    return Compiled(_parser(text, schema, "rule").rule())


def compile_value(text: str, schema: Schema) -> Compiled:
    """Compile a value (a measure observation such as ``days between received and first_action``)."""
    parser = _parser(text, schema, "expression")
    return Compiled(parser.finished(parser.value()))
