"""Characterization of cohorts: baseline characteristics (Table 1), incidence rates with OHDSI
CohortIncidence semantics, and Kaplan–Meier survival — computed in the engine.
"""

from pharmalab.characterize.design import (
    Analysis,
    IncidenceDesign,
    OutcomeDef,
    Strata,
    SubgroupDef,
    TargetDef,
    read_design,
    simple_design,
)
from pharmalab.characterize.incidence import IncidenceResult, incidence_rates
from pharmalab.characterize.time_at_risk import TimeAtRisk, at_risk_periods

__all__ = ["Analysis", "IncidenceDesign", "IncidenceResult", "OutcomeDef", "Strata",
           "SubgroupDef", "TargetDef", "TimeAtRisk", "at_risk_periods", "incidence_rates",
           "read_design", "simple_design"]
