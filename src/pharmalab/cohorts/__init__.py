"""Cohorts: OHDSI Circe cohort sets generated on any engine, with CohortGenerator's results.

Public API: :func:`read_cohort_set`, :func:`generate_cohorts`, :func:`cohort_counts`,
:func:`read_negative_controls`, :func:`generate_negative_control_cohorts`,
:func:`export_cohort_statistics`.
"""

from pharmalab.cohorts.definitions import CohortDefinition, CohortSet, read_cohort_set
from pharmalab.cohorts.export import database_id, export_cohort_statistics
from pharmalab.cohorts.generate import (
    CohortRun,
    GenerationResult,
    cohort_counts,
    generate_cohorts,
)
from pharmalab.cohorts.negative_controls import (
    check_ids_apart,
    generate_negative_control_cohorts,
    negative_control_cohorts,
    read_negative_controls,
)

__all__ = ["CohortDefinition", "CohortRun", "CohortSet", "GenerationResult", "check_ids_apart",
           "cohort_counts",
           "database_id", "export_cohort_statistics", "generate_cohorts",
           "generate_negative_control_cohorts", "negative_control_cohorts",
           "read_cohort_set", "read_negative_controls"]
