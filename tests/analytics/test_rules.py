# ruff: noqa: E501  (the compiled SQL is pinned as one line each)
"""The measure rule language (measures/rules.py): the SQL each construct compiles to, the errors an
analyst sees, and what the rules select when DuckDB runs them over small tables."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from fhir_server.analytics.measures.rules import RuleError, Schema, compile_rule, compile_value

SCHEMA = Schema(
    {
        "children": ["patient_id", "birth_date", "sex", "district_code"],
        "dspm": ["patient_id", "date", "age_band", "result"],
        "immunisations": ["patient_id", "date", "vaccine"],
        "growth_z": ["patient_id", "date", "z_wfa"],
        "help_requests": ["patient_id", "received", "first_action", "request_type"],
    },
    "children",
)

COMPILED = [
    (
        "birth_date + 9 months during period",
        "((u.birth_date + INTERVAL (9) MONTH) BETWEEN $period_start AND $period_end)",
    ),
    ("sex = 'female'", "(u.sex = 'female')"),
    (
        "sex != 'male' and not (district_code = '1011' or district_code is empty)",
        "((u.sex <> 'male') AND (NOT COALESCE(((u.district_code = '1011') OR (u.district_code IS NULL)), FALSE)))",
    ),
    (
        "exists dspm where age_band = '9'",
        "EXISTS (SELECT 1 FROM dspm r1 WHERE r1.patient_id = u.patient_id AND (r1.age_band = '9'))",
    ),
    (
        "no dspm where result in ('suspected-delay', 'delay')",
        "(NOT EXISTS (SELECT 1 FROM dspm r1 WHERE r1.patient_id = u.patient_id AND (r1.result IN ('suspected-delay', 'delay'))))",
    ),
    (
        "exists dspm as s where s.date during period and s.result not in ('normal')",
        "EXISTS (SELECT 1 FROM dspm r1 WHERE r1.patient_id = u.patient_id AND ((r1.date BETWEEN $period_start AND $period_end) AND (r1.result NOT IN ('normal'))))",
    ),
    (
        "all of ('010', '041', '061') in immunisations.vaccine where date <= children.birth_date + 12 months",
        "((SELECT count(DISTINCT r1.vaccine) FROM immunisations r1 WHERE r1.patient_id = u.patient_id AND r1.vaccine IN ('010', '041', '061') AND (r1.date <= (u.birth_date + INTERVAL (12) MONTH))) = 3)",
    ),
    (
        "latest growth_z where date during period has z_wfa < -2",
        "EXISTS (SELECT 1 FROM growth_z r1 WHERE r1.patient_id = u.patient_id AND (r1.date BETWEEN $period_start AND $period_end) AND r1.date = (SELECT max(m.date) FROM growth_z m WHERE m.patient_id = u.patient_id AND (m.date BETWEEN $period_start AND $period_end)) AND (r1.z_wfa < -2))",
    ),
    (
        "exists dspm as s where (exists dspm where date between s.date and s.date + 30 days)",
        "EXISTS (SELECT 1 FROM dspm r1 WHERE r1.patient_id = u.patient_id AND EXISTS (SELECT 1 FROM dspm r2 WHERE r2.patient_id = u.patient_id AND (r2.date BETWEEN r1.date AND (r1.date + INTERVAL (30) DAY))))",
    ),
    (
        "birth_date <= period end - 1 year and birth_date > today - 5 years",
        "((u.birth_date <= ($period_end - INTERVAL (1) YEAR)) AND (u.birth_date > (current_date - INTERVAL (5) YEAR)))",
    ),
    (
        "exists immunisations",
        "EXISTS (SELECT 1 FROM immunisations r1 WHERE r1.patient_id = u.patient_id AND TRUE)",
    ),
    ("(sex = 'female')", "(u.sex = 'female')"),
    ("true", "TRUE"),
    ("sex = 'it\\'s' or 1.5 > 2", "((u.sex = 'it''s') OR (1.5 > 2))"),
]

VALUES = [
    ("days between birth_date and period start", "date_diff('day', u.birth_date, $period_start)"),
    ("(1 + 2) - 3", "(((1 + 2)) - 3)"),
    ("months between birth_date and today", "date_diff('month', u.birth_date, current_date)"),
]

ERRORS = [
    ("", "the rule is empty"),
    ("sex =", "expected a value (a column, 'text', a number, period start/end) at position 5"),
    (
        "exists nothing",
        "unknown view 'nothing' at position 7 (known: children, dspm, growth_z, help_requests, immunisations)",
    ),
    ("sex = 'a' )", "unexpected ')' at position 10"),
    (
        "all of ('1') in children.nope",
        "expected view.column after 'in' at position 16, found 'children.nope'",
    ),
    ("unknown_col = 1", "unknown column 'unknown_col' at position 0"),
    ("s.date = 1", "unknown view or name 's' at position 0"),
    ("sex ^ 1", "unexpected character '^' at position 3"),
    ("exists dspm as where", "expected a name after 'as' at position 15"),
    ("sex", "expected a comparison (=, <, >, in, during period, is empty, ...) at position 3, found ''"),
    (
        "latest immunisations as i where i.nope = 1 has date is empty",
        "immunisations has no column 'nope' (position 32)",
    ),
    ("+", "expected a value (a column, 'text', a number, period start/end) at position 0"),
]

VALUE_ERRORS = [
    ("", "the expression is empty"),
    ("days between", "expected a value (a column, 'text', a number, period start/end) at position 12"),
    ("1 2", "unexpected '2' at position 2"),
]


@pytest.mark.parametrize(("rule", "sql"), COMPILED)
def test_rules_compile_to_sql(rule: str, sql: str) -> None:
    assert compile_rule(rule, SCHEMA).sql == sql


@pytest.mark.parametrize(("text", "sql"), VALUES)
def test_values_compile_to_sql(text: str, sql: str) -> None:
    assert compile_value(text, SCHEMA).sql == sql


@pytest.mark.parametrize(("rule", "message"), ERRORS)
def test_mistakes_say_what_and_where(rule: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(rule, SCHEMA)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "message"), VALUE_ERRORS)
def test_value_mistakes_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_value(text, SCHEMA)
    assert str(caught.value) == message


def _selected(db: duckdb.DuckDBPyConnection, rule: str) -> list[str]:
    sql = compile_rule(rule, SCHEMA).sql
    sql = sql.replace("$period_start", "DATE '2025-01-01'").replace("$period_end", "DATE '2025-12-31'")
    query = f"SELECT u.patient_id FROM children u WHERE COALESCE({sql}, FALSE) ORDER BY 1"
    return [row[0] for row in db.execute(query).fetchall()]


def test_rules_select_the_units_they_describe() -> None:
    db = duckdb.connect()
    db.execute("CREATE TABLE children (patient_id TEXT, birth_date DATE, sex TEXT, district_code TEXT)")
    db.execute("CREATE TABLE dspm (patient_id TEXT, date DATE, age_band TEXT, result TEXT)")
    db.execute("CREATE TABLE immunisations (patient_id TEXT, date DATE, vaccine TEXT)")
    db.execute("CREATE TABLE growth_z (patient_id TEXT, date DATE, z_wfa DOUBLE)")
    db.execute(
        "CREATE TABLE help_requests (patient_id TEXT, received DATE, first_action DATE, request_type TEXT)"
    )
    db.executemany(
        "INSERT INTO children VALUES (?, ?, ?, ?)",
        [
            ("a", date(2024, 6, 1), "female", "1011"),
            ("b", date(2024, 4, 15), "male", None),
            ("c", date(2021, 3, 1), "female", "1012"),
        ],
    )
    db.executemany(
        "INSERT INTO dspm VALUES (?, ?, ?, ?)",
        [
            ("a", date(2025, 3, 1), "9", "normal"),
            ("b", date(2025, 10, 20), "18", "suspected-delay"),
            ("b", date(2025, 11, 5), "18", "normal"),
        ],
    )
    db.executemany(
        "INSERT INTO immunisations VALUES (?, ?, ?)",
        [("a", date(2024, 6, 2), v) for v in ("010", "041", "061")] + [("b", date(2024, 2, 1), "010")],
    )
    db.executemany(
        "INSERT INTO growth_z VALUES (?, ?, ?)",
        [("c", date(2025, 2, 1), -2.5), ("c", date(2025, 9, 1), -1.0), ("a", date(2025, 5, 1), -2.2)],
    )
    assert _selected(db, "birth_date + 9 months during period") == ["a", "b"]
    assert _selected(db, "sex = 'female' and not (district_code = '1011' or district_code is empty)") == ["c"]
    assert _selected(db, "exists dspm where age_band = '9'") == ["a"]
    assert _selected(db, "no dspm where result in ('suspected-delay', 'delay')") == ["a", "c"]
    assert _selected(
        db,
        "exists dspm as s where s.result = 'suspected-delay' and (exists dspm where date between"
        " s.date and s.date + 30 days and result = 'normal')",
    ) == ["b"]
    assert _selected(
        db,
        "all of ('010', '041', '061') in immunisations.vaccine where date <= children.birth_date + 12 months",
    ) == ["a"]
    assert _selected(db, "latest growth_z where date during period has z_wfa < -2") == ["a"]
    assert _selected(db, "exists growth_z where z_wfa < -2") == ["a", "c"]
