"""Extract: a cohort's patient-level data in windows around index, de-identified, to Parquet.

Public API: :func:`extract` (→ :class:`ExtractResult`), :func:`read_key` (→
:class:`PseudonymKey`), :class:`Window` and :func:`parse_domains` for CLI and study values,
:func:`pseudonym` / :func:`date_offset` (the Python reference of the in-engine HMAC),
:data:`DOMAINS`, :data:`DEFAULT_DOMAINS`; errors :class:`ExtractInputError`,
:class:`PseudonymKeyError`, :class:`KAnonymityError`, warning :class:`ExtractWarning`.

Modules, one job each: ``domains`` (tables and window), ``settings``, ``keys`` (the secret),
``pseudonyms`` (HMAC in the engine), ``members`` (cohort entries, one HMAC per person),
``columns`` (the fate of each CDM column), ``tables`` (one Ibis expression per table),
``kanonymity`` (quasi-identifier classes), ``write`` (streaming to Parquet), ``manifest``
(data dictionary and manifest.json), ``run`` (:func:`extract`).
"""

from pharmalab.extract.domains import DEFAULT_DOMAINS, DOMAINS, Domain, Window, parse_domains
from pharmalab.extract.errors import (
    ExtractInputError,
    ExtractWarning,
    KAnonymityError,
    PseudonymKeyError,
)
from pharmalab.extract.kanonymity import QUASI_IDENTIFIERS, KAnonymityReport
from pharmalab.extract.keys import ENV_KEY, ENV_KEY_FILE, PseudonymKey, read_key
from pharmalab.extract.pseudonyms import date_offset, pseudonym
from pharmalab.extract.run import ExtractResult, extract
from pharmalab.extract.settings import AGE_TOP_CODE, ExtractSettings

__all__ = ["AGE_TOP_CODE", "DEFAULT_DOMAINS", "DOMAINS", "ENV_KEY", "ENV_KEY_FILE", "Domain",
           "ExtractInputError", "ExtractResult", "ExtractSettings", "ExtractWarning",
           "KAnonymityError", "KAnonymityReport", "PseudonymKey", "PseudonymKeyError",
           "QUASI_IDENTIFIERS", "Window", "date_offset", "extract", "parse_domains",
           "pseudonym", "read_key"]
