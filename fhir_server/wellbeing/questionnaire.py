"""The flower Questionnaire, shipped as data: its dimensions and questions as the scorer reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fhir_server import canonical

QUESTIONNAIRE_URL = f"{canonical.BASE}/Questionnaire/{canonical.QUESTIONNAIRE_WELLBEING}"
_DIMENSION_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_DIMENSION)
_LEVEL_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_LEVEL)


@dataclass(frozen=True)
class Question:
    link_id: str
    required: bool
    options: tuple[str, ...]  # level codes, best to worst


@dataclass(frozen=True)
class Dimension:
    link_id: str
    code: str  # th-wellbeing-dimension code
    questions: tuple[Question, ...]
    order: tuple[str, ...]  # level codes best to worst (the order of the answer options)


@cache
def questionnaire() -> dict[str, Any]:
    name = f"data/Questionnaire-{canonical.QUESTIONNAIRE_WELLBEING}.json"
    text = resources.files("fhir_server.wellbeing").joinpath(name).read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def dimensions() -> tuple[Dimension, ...]:
    """Every group item coded with a wellbeing dimension, with its choice questions."""
    out = []
    for group in questionnaire().get("item", []):
        code = next((c["code"] for c in group.get("code", []) if c.get("system") == _DIMENSION_SYSTEM), None)
        if group.get("type") != "group" or code is None:
            continue
        questions = []
        for item in group.get("item", []):
            options = tuple(
                o["valueCoding"]["code"]
                for o in item.get("answerOption", [])
                if o.get("valueCoding", {}).get("system") == _LEVEL_SYSTEM
            )
            if item.get("type") == "choice" and options:
                questions.append(Question(item["linkId"], bool(item.get("required")), options))
        order = questions[0].options if questions else ()
        out.append(Dimension(group["linkId"], code, tuple(questions), order))
    return tuple(out)


def shipped_resources() -> list[dict[str, Any]]:
    """Loaded into the store at start-up, so ``Questionnaire/th-wellbeing-flower`` is readable."""
    return [questionnaire()]
