"""Characterization of cohorts: baseline characteristics (Table 1), incidence rates with OHDSI
CohortIncidence semantics, and Kaplan–Meier survival — computed in the engine.
"""

from pharmalab.characterize.baseline import (
    DEFAULT_WINDOWS,
    Window,
    baseline_characteristics,
    table_one,
    table_one_summary,
)
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
from pharmalab.characterize.survival import (
    LogRankResult,
    SurvivalResult,
    event_table,
    kaplan_meier,
    log_rank,
    median_survival,
    survival,
    survival_at,
    survival_figure,
    time_to_event,
)
from pharmalab.characterize.time_at_risk import TimeAtRisk, at_risk_periods

__all__ = ["Analysis", "IncidenceDesign", "IncidenceResult", "LogRankResult", "OutcomeDef",
           "Strata", "SubgroupDef", "SurvivalResult", "TargetDef", "TimeAtRisk",
           "at_risk_periods", "event_table", "incidence_rates", "kaplan_meier", "log_rank",
           "median_survival", "read_design", "simple_design", "survival", "survival_at",
           "survival_figure", "time_to_event", "DEFAULT_WINDOWS", "Window",
           "baseline_characteristics", "table_one", "table_one_summary"]
