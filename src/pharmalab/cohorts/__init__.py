"""Cohorts: OHDSI Circe cohort sets generated on any engine, with CohortGenerator's results.

Public API: :func:`read_cohort_set`, :func:`generate_cohorts`, :func:`cohort_counts`,
:func:`read_negative_controls`, :func:`generate_negative_control_cohorts`,
:func:`export_cohort_statistics`.
"""

from pharmalab.cohorts.definitions import CohortDefinition, CohortSet, read_cohort_set
from pharmalab.cohorts.generate import (
    CohortRun,
    GenerationResult,
    cohort_counts,
    generate_cohorts,
)

__all__ = ["CohortDefinition", "CohortRun", "CohortSet", "GenerationResult", "cohort_counts",
           "generate_cohorts", "read_cohort_set"]
