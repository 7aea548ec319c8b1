"""OMOP CDM v5.3/v5.4: the specification, loading into any engine, checks and a summary.

Public API: :func:`load`, :func:`check`, :func:`summary`, :func:`cdm_spec`.
"""

from pharmalab.cdm.check import CheckResult, check, summary
from pharmalab.cdm.load import LoadResult, load
from pharmalab.cdm.spec import CDM_VERSIONS, CdmSpec, cdm_spec

__all__ = ["CDM_VERSIONS", "CdmSpec", "CheckResult", "LoadResult", "cdm_spec", "check", "load",
           "summary"]
