"""A QuestionnaireResponse checked against its Questionnaire (R4 Questionnaire and QuestionnaireResponse).

The rules, as R4 states them:

* every response item's ``linkId`` names an item of the Questionnaire at the same place in the tree,
  and response items keep the Questionnaire's order (QuestionnaireResponse.item: "the order of items
  within the group is relevant");
* an item that does not repeat appears once and has at most one answer (``Questionnaire.item.repeats``);
* an answer has the type its item's ``type`` calls for (``boolean`` -> ``valueBoolean``, ``text`` ->
  ``valueString``, ``url`` -> ``valueUri``, ``choice`` -> one of the option types, ...); groups and
  display items have no answers;
* a ``choice``/``open-choice`` answer is one of ``answerOption`` or in ``answerValueSet`` (free text is
  allowed only for ``open-choice``, as ``valueString``); string answers respect ``maxLength``;
* an item that ``enableWhen`` disables has no answers; a ``required`` item that is enabled has an answer
  (a group: at least one item) once the response is ``completed`` or ``amended``.

Findings are OperationOutcome issues whose ``expression`` is the FHIRPath of the response item and whose
diagnostics name the ``linkId``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server import fhirjson

Issue = dict[str, Any]
# Value set URL (or "#id" of a contained one) -> (system, code) members, or None when not enumerable.
ValueSetMembers = Callable[[str], frozenset[tuple[str, str]] | None]

# Questionnaire item type -> the answer value[x] keys it allows (choice types add their options' types).
ANSWER_KEYS: dict[str, frozenset[str]] = {
    "boolean": frozenset({"valueBoolean"}),
    "decimal": frozenset({"valueDecimal"}),
    "integer": frozenset({"valueInteger"}),
    "date": frozenset({"valueDate"}),
    "dateTime": frozenset({"valueDateTime"}),
    "time": frozenset({"valueTime"}),
    "string": frozenset({"valueString"}),
    "text": frozenset({"valueString"}),
    "url": frozenset({"valueUri"}),
    "choice": frozenset({"valueCoding"}),
    "open-choice": frozenset({"valueCoding", "valueString"}),
    "attachment": frozenset({"valueAttachment"}),
    "reference": frozenset({"valueReference"}),
    "quantity": frozenset({"valueQuantity"}),
}
# (Questionnaire items, response items) of one level of the tree being checked
Scope = tuple[list[dict[str, Any]], list[dict[str, Any]]]
_CHECKS_REQUIRED = frozenset({"completed", "amended"})


def _issue(severity: str, code: str, path: str, message: str) -> Issue:
    return {"severity": severity, "code": code, "diagnostics": f"{path}: {message}", "expression": [path]}


def _value(answer: dict[str, Any]) -> tuple[str, Any] | None:
    for key, value in answer.items():
        if key.startswith("value") and len(key) > 5 and key[5].isupper():
            return key, value
    return None


def _items(container: Any) -> list[dict[str, Any]]:
    items = container.get("item") if isinstance(container, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _answers(item: dict[str, Any]) -> list[dict[str, Any]]:
    answers = item.get("answer")
    return [a for a in answers if isinstance(a, dict)] if isinstance(answers, list) else []


def _same_coding(given: Any, wanted: Any) -> bool:
    if not isinstance(given, dict) or not isinstance(wanted, dict):
        return False
    if given.get("code") != wanted.get("code"):
        return False
    return wanted.get("system") is None or given.get("system") == wanted.get("system")


def _equal(kind: str, given: Any, wanted: Any) -> bool:
    if kind == "Coding":
        return _same_coding(given, wanted)
    if kind == "Quantity":
        if not isinstance(given, dict) or not isinstance(wanted, dict):
            return False
        unit_ok = (given.get("code") or given.get("unit")) == (wanted.get("code") or wanted.get("unit"))
        return unit_ok and _number(given.get("value")) == _number(wanted.get("value"))
    if kind == "Reference":
        return (
            isinstance(given, dict)
            and isinstance(wanted, dict)
            and given.get("reference") == wanted.get("reference")
        )
    if kind in ("Decimal", "Integer"):
        return _number(given) == _number(wanted)
    return given == wanted


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _order(kind: str, given: Any, wanted: Any) -> int | None:
    """-1/0/1 comparing an answer with an enableWhen value, None when they are not comparable."""
    if kind == "Quantity":
        if not isinstance(given, dict) or not isinstance(wanted, dict):
            return None
        if (given.get("code") or given.get("unit")) != (wanted.get("code") or wanted.get("unit")):
            return None
        given, wanted, kind = given.get("value"), wanted.get("value"), "Decimal"
    if kind in ("Decimal", "Integer"):
        a, b = _number(given), _number(wanted)
        if a is None or b is None:
            return None
        return (a > b) - (a < b)
    if kind in ("Date", "DateTime", "Time", "String") and isinstance(given, str) and isinstance(wanted, str):
        if kind in ("Date", "DateTime") and len(given) != len(wanted):
            return None  # different precisions: not comparable
        return (given > wanted) - (given < wanted)
    return None


class _Check:
    def __init__(self, questionnaire: dict[str, Any], response: dict[str, Any], vs_members: ValueSetMembers):
        self.q = questionnaire
        self.qr = response
        self.vs_members = vs_members
        self.issues: list[Issue] = []
        self.check_required = response.get("status") in _CHECKS_REQUIRED
        self.by_link: dict[str, dict[str, Any]] = {}
        self._index(_items(questionnaire))

    def _index(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            link = item.get("linkId")
            if isinstance(link, str):
                self.by_link.setdefault(link, item)
            self._index(_items(item))

    def add(self, severity: str, code: str, path: str, message: str) -> None:
        self.issues.append(_issue(severity, code, path, message))

    # -- the tree ---------------------------------------------------------------------------------
    def level(
        self,
        q_items: list[dict[str, Any]],
        r_items: list[dict[str, Any]],
        path: str,
        item_path: str,
        scopes: list[Scope],
        enabled: bool,
    ) -> None:
        """Response items ``r_items`` (at ``path``.item[i]) against the Questionnaire's ``q_items``."""
        scopes = [*scopes, (q_items, r_items)]
        position = {q.get("linkId"): n for n, q in enumerate(q_items)}
        seen: dict[str, int] = {}
        last = -1
        for n, r in enumerate(r_items):
            rpath = f"{path}.{item_path}[{n}]"
            link = r.get("linkId")
            if not isinstance(link, str):
                continue  # linkId is 1..1: the structural check reports it
            at = position.get(link)
            if at is None:
                where = "elsewhere in" if link in self.by_link else "in"
                hint = " (not at this level)" if link in self.by_link else ""
                self.add(
                    "error",
                    "structure",
                    rpath,
                    f"Item '{link}': no item with this linkId {where} the Questionnaire{hint}",
                )
                continue
            q = q_items[at]
            if at < last:
                self.add(
                    "error",
                    "structure",
                    rpath,
                    f"Item '{link}' is out of order: items must follow the order of the Questionnaire",
                )
            last = max(last, at)
            seen[link] = seen.get(link, 0) + 1
            if seen[link] == 2 and not (q.get("type") == "group" and q.get("repeats") is True):
                self.add(
                    "error",
                    "structure",
                    rpath,
                    f"Item '{link}' appears more than once, but only repeating groups may "
                    "(a repeating question has one item with several answers)",
                )
            self.item(q, r, rpath, scopes, enabled)
        for q in q_items:
            link = q.get("linkId")
            if link in seen or not isinstance(link, str):
                continue
            if self.check_required and enabled and q.get("required") is True and self.enabled(q, scopes):
                kind = "group" if q.get("type") == "group" else "question"
                self.add(
                    "error",
                    "required",
                    path,
                    f"Item '{link}' is required (Questionnaire.item.required) but the {kind} is missing",
                )

    def item(
        self,
        q: dict[str, Any],
        r: dict[str, Any],
        path: str,
        scopes: list[Scope],
        parent_enabled: bool,
    ) -> None:
        link = q.get("linkId")
        kind = q.get("type")
        answers = _answers(r)
        enabled = parent_enabled and self.enabled(q, scopes)
        if not enabled and (answers or _has_content(_items(r))):
            self.add(
                "error",
                "business-rule",
                path,
                f"Item '{link}' is not enabled (its enableWhen conditions are not met), so it must not be "
                "answered",
            )
        if kind in ("group", "display"):
            if answers:
                self.add("error", "structure", f"{path}.answer", f"Item '{link}' is a {kind}: no answers")
            if kind == "display" and _items(r):
                self.add("error", "structure", f"{path}.item", f"Item '{link}' is a display item: no items")
            self.level(_items(q), _items(r), path, "item", scopes, enabled)
            required = enabled and self.check_required and q.get("required") is True
            if kind == "group" and required and not _has_content(_items(r)):
                self.add("error", "required", path, f"Item '{link}' is a required group but has no answers")
            return
        if enabled and self.check_required and q.get("required") is True and not answers:
            self.add("error", "required", path, f"Item '{link}' is required but has no answer")
        if len(answers) > 1 and q.get("repeats") is not True:
            self.add(
                "error",
                "structure",
                f"{path}.answer",
                f"Item '{link}' does not repeat, but has {len(answers)} answers",
            )
        allowed = self.answer_keys(q)
        for n, answer in enumerate(answers):
            apath = f"{path}.answer[{n}]"
            self.answer(q, answer, apath, allowed)
            self.level(_items(q), _items(answer), apath, "item", scopes, enabled)
        if _items(r):
            # R4 allows a question's children under item.item as well as under answer.item
            self.level(_items(q), _items(r), path, "item", scopes, enabled)

    # -- answers ----------------------------------------------------------------------------------
    def answer_keys(self, q: dict[str, Any]) -> frozenset[str] | None:
        kind = q.get("type")
        keys = ANSWER_KEYS.get(kind) if isinstance(kind, str) else None
        if keys is None:
            return None
        if kind in ("choice", "open-choice"):
            option_keys = {k for o in _options(q) if (v := _value(o)) for k in (v[0],)}
            if option_keys:
                keys = frozenset(option_keys | ({"valueString"} if kind == "open-choice" else set()))
                if kind == "open-choice":
                    keys |= {"valueCoding"}
        return keys

    def answer(
        self, q: dict[str, Any], answer: dict[str, Any], path: str, allowed: frozenset[str] | None
    ) -> None:
        link, kind = q.get("linkId"), q.get("type")
        found = _value(answer)
        if found is None:
            return  # value[x] is 1..1: the structural check reports a missing one
        key, value = found
        if allowed is not None and key not in allowed:
            self.add(
                "error",
                "value",
                f"{path}.{key}",
                f"Item '{link}' is of type {kind}: its answer must be {' or '.join(sorted(allowed))}, "
                f"not {key}",
            )
            return
        max_length = q.get("maxLength")
        too_long = isinstance(max_length, int) and isinstance(value, str) and len(value) > max_length
        if key == "valueString" and too_long:
            self.add(
                "error",
                "value",
                f"{path}.{key}",
                f"Item '{link}': the answer is {len(value)} characters long; maxLength is {max_length}",
            )
        if kind not in ("choice", "open-choice"):
            return
        if kind == "open-choice" and key == "valueString":
            return  # free text
        options = _options(q)
        if options:
            type_name = key[5:]
            values = [v for o in options if (v := _value(o)) is not None and v[0] == key]
            if not any(_equal(type_name, value, v[1]) for v in values):
                self.add(
                    "error",
                    "code-invalid",
                    f"{path}.{key}",
                    f"Item '{link}': the answer {_show(key, value)} is not one of the item's answerOptions",
                )
            return
        vs = q.get("answerValueSet")
        if isinstance(vs, str) and key == "valueCoding" and isinstance(value, dict):
            members = self._members(vs)
            if members is None:
                return
            system, code = value.get("system"), value.get("code")
            if (system or "", code) not in members and not (
                system is None and any(c == code for _s, c in members)
            ):
                self.add(
                    "error",
                    "code-invalid",
                    f"{path}.{key}",
                    f"Item '{link}': the answer {_show(key, value)} is not in the value set {vs}",
                )

    def _members(self, url: str) -> frozenset[tuple[str, str]] | None:
        if not url.startswith("#"):
            return self.vs_members(url)
        for c in self.q.get("contained") or ():
            if isinstance(c, dict) and c.get("resourceType") == "ValueSet" and c.get("id") == url[1:]:
                from fhir_server.validation.bindings import value_set_members

                return value_set_members(c)
        return None

    # -- enableWhen -------------------------------------------------------------------------------
    def enabled(self, q: dict[str, Any], scopes: list[Scope]) -> bool:
        conditions = [c for c in fhirjson.listed(q.get("enableWhen")) if isinstance(c, dict)]
        if not conditions:
            return True
        results = [self._condition(c, scopes) for c in conditions]
        if q.get("enableBehavior") == "any":
            return any(results)
        return all(results)

    def _condition(self, condition: dict[str, Any], scopes: list[Scope]) -> bool:
        question, operator = condition.get("question"), condition.get("operator")
        given = {k.replace("answer", "value", 1): v for k, v in condition.items() if k.startswith("answer")}
        wanted = _value(given)
        answers = self._answers_to(question, scopes)
        if operator == "exists":
            expect = wanted[1] if wanted is not None else True
            return bool(answers) == (expect is True)
        if wanted is None:
            return False
        key, target = wanted
        kind = key[5:]
        same_type = [v for a in answers if (v := _value(a)) is not None and v[0] == key]
        if operator == "=":
            return any(_equal(kind, v, target) for _k, v in same_type)
        if operator == "!=":
            return not any(_equal(kind, v, target) for _k, v in same_type)
        wanted_signs = {">": {1}, "<": {-1}, ">=": {0, 1}, "<=": {-1, 0}}.get(str(operator))
        if wanted_signs is None:
            return False
        return any(_order(kind, v, target) in wanted_signs for _k, v in same_type)

    def _answers_to(self, link: Any, scopes: list[Scope]) -> list[dict[str, Any]]:
        """Answers to ``link`` within the nearest enclosing level whose Questionnaire items hold that
        question: inside a repeating group, the answers of the same group instance."""
        for q_items, r_items in reversed(scopes):
            if _defines(q_items, link):
                found: list[dict[str, Any]] = []
                _collect(r_items, link, found)
                return found
        return []


def _defines(q_items: list[dict[str, Any]], link: Any) -> bool:
    return any(q.get("linkId") == link or _defines(_items(q), link) for q in q_items)


def _collect(items: list[dict[str, Any]], link: Any, out: list[dict[str, Any]]) -> bool:
    hit = False
    for item in items:
        if item.get("linkId") == link:
            out.extend(_answers(item))
            hit = True
        hit = _collect(_items(item), link, out) or hit
        for answer in _answers(item):
            hit = _collect(_items(answer), link, out) or hit
    return hit


def _options(q: dict[str, Any]) -> list[dict[str, Any]]:
    options = q.get("answerOption")
    return [o for o in options if isinstance(o, dict)] if isinstance(options, list) else []


def _has_content(items: list[dict[str, Any]]) -> bool:
    return any(_answers(i) or _has_content(_items(i)) for i in items)


def _show(key: str, value: Any) -> str:
    if key == "valueCoding" and isinstance(value, dict):
        return f"{value.get('system', '')}#{value.get('code', '')}"
    return repr(value)


def check_response(
    response: dict[str, Any],
    questionnaire: dict[str, Any],
    path: str,
    value_set_members: ValueSetMembers,
) -> list[Issue]:
    """Issues found in ``response`` (at FHIRPath ``path``) against ``questionnaire``.

    ``value_set_members`` enumerates an ``answerValueSet`` (None: cannot tell, so not checked); a
    reference to a ValueSet contained in the Questionnaire is passed as ``#id``.
    """
    check = _Check(questionnaire, response, value_set_members)
    check.level(_items(questionnaire), _items(response), path, "item", [], True)
    return check.issues
