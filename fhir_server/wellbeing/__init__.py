"""The wellbeing flower: its Questionnaire (data) and the scoring of completed responses into
Observations, one per dimension plus the overall level."""

from fhir_server.wellbeing.questionnaire import (
    QUESTIONNAIRE_URL,
    dimensions,
    questionnaire,
    shipped_resources,
)
from fhir_server.wellbeing.scoring import is_flower, score

__all__ = ["QUESTIONNAIRE_URL", "dimensions", "is_flower", "questionnaire", "score", "shipped_resources"]
