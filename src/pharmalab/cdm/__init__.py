"""OMOP CDM v5.3/v5.4: the specification, loading into any engine, checks and a summary.

Public API: :func:`load`, :func:`check`, :func:`summary`, :func:`cdm_spec`, and the era
tables :func:`build_eras`, :func:`drug_eras`, :func:`condition_eras`.
"""

from pharmalab.cdm.check import CheckResult, check, summary
from pharmalab.cdm.eras import build_eras, condition_eras, drug_eras
from pharmalab.cdm.load import LoadResult, load
from pharmalab.cdm.spec import CDM_VERSIONS, CdmSpec, cdm_spec

__all__ = ["CDM_VERSIONS", "CdmSpec", "CheckResult", "LoadResult", "build_eras", "cdm_spec",
           "check", "condition_eras", "drug_eras", "load",
           "summary"]
