"""The knobs of the synthetic population: rates that a tester may want to turn, with realistic defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

DEFAULT_REFERENCE_DATE = date(2026, 1, 1)


@dataclass(frozen=True, slots=True)
class PopulationConfig:
    """Rates are probabilities per child (or per event where the name says so).

    The reference date is "today" for the population: nothing happens after it, and ages are
    computed at it, so the output never depends on the clock.
    """

    reference_date: date = DEFAULT_REFERENCE_DATE
    stateless_rate: float = 0.04  # children without Thai nationality or registration
    dspm_coverage: float = 0.9  # share of due DSPM screenings that happen
    suspected_delay_rate: float = 0.22  # per first screening at an age band
    refer_immediately_share: float = 0.15  # of suspected delays: refer now (1B262) instead of promote (1B261)
    rescreen_delay_rate: float = 0.25  # of re-screens after a month of stimulation: still delayed
    growth_visit_coverage: float = 0.85  # per scheduled growth-monitoring visit
    vaccine_coverage: float = 0.93  # per EPI dose
    wellbeing_rate: float = 0.12  # children with a wellbeing assessment (plus every referred child's)
    social_referral_rate: float = 0.06  # children referred for a social problem
    consent_rate: float = 0.85  # children whose guardian signed a data-sharing consent

    def __post_init__(self) -> None:
        for name in (
            "stateless_rate",
            "dspm_coverage",
            "suspected_delay_rate",
            "refer_immediately_share",
            "rescreen_delay_rate",
            "growth_visit_coverage",
            "vaccine_coverage",
            "wellbeing_rate",
            "social_referral_rate",
            "consent_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
