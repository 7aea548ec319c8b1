"""The settings of one extraction, validated once (a frozen dataclass the code trusts)."""

from __future__ import annotations

import datetime as dt
import numbers
from dataclasses import dataclass, field

from pharmalab.cdm.spec import OPEN_END_AFTER
from pharmalab.extract.domains import DEFAULT_DOMAINS, Window, parse_domains
from pharmalab.extract.errors import ExtractInputError

# HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C): ages over 89 are aggregated into 90 or older.
AGE_TOP_CODE = 90

# Dates after this are conventions, not events: OMOP's open end 9999-12-31 (shifting it gives
# year 10000, which Parquet readers refuse), far-future placeholders. They are written as they
# are, never shifted, and carry no information about the person.
UNSHIFTED_AFTER = OPEN_END_AFTER


@dataclass(frozen=True)
class ExtractSettings:
    """What to extract and how to de-identify it (see :func:`pharmalab.extract.extract`).

    Attributes
    ----------
    window : Window
        Days around each entry's index date (both ends inclusive).
    domains : tuple of str
        Domain names (:data:`pharmalab.extract.DOMAINS`).
    deidentify : bool
        Pseudonyms, date shift, generalization and the k-anonymity check (default True).
    date_shift_days : int
        N: each person's dates move by a keyed offset in [−N, −1] ∪ [1, N] days (0: none).
    relative_dates : bool
        Drop dates; keep only days from the index date.
    k_min : int
        Smallest quasi-identifier class allowed (persons).
    allow_small_k : bool
        Write even if a class is smaller than ``k_min`` (recorded in the manifest).
    age_band_years : int
        Width of the age bands of the k-anonymity classes (and ``age_group``).
    generalize_concepts : bool
        Replace domain concepts held by fewer than ``k_min`` persons by their nearest
        ancestor, else "other" (:mod:`pharmalab.extract.generalize`).
    unshifted_after : datetime.date
        Dates after this day (default 2099-12-31) are kept as they are by the date shift, and
        are blank as days from the index: sentinels such as OMOP's open end ``9999-12-31``.
    """

    window: Window = field(default_factory=Window)
    domains: tuple[str, ...] = DEFAULT_DOMAINS
    deidentify: bool = True
    date_shift_days: int = 180
    relative_dates: bool = False
    k_min: int = 5
    allow_small_k: bool = False
    age_band_years: int = 5
    generalize_concepts: bool = False
    unshifted_after: dt.date = UNSHIFTED_AFTER

    def __post_init__(self):
        object.__setattr__(self, "window", Window.parse(self.window))
        object.__setattr__(self, "domains", parse_domains(self.domains))
        for name, low in (("date_shift_days", 0), ("k_min", 1), ("age_band_years", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ExtractInputError(f"{name} must be a whole number ≥ {low}, got {value!r}")
        if not isinstance(self.unshifted_after, dt.date) or isinstance(
                self.unshifted_after, dt.datetime):
            raise ExtractInputError(
                f"unshifted_after must be a date, got {self.unshifted_after!r}")
        for name in ("deidentify", "relative_dates", "allow_small_k", "generalize_concepts"):
            if not isinstance(getattr(self, name), bool):
                raise ExtractInputError(
                    f"{name} must be true or false, got {getattr(self, name)!r}")
