"""What a supply run computes: the policy settings, validated once on creation."""

from __future__ import annotations

from dataclasses import dataclass

from pharmalab.errors import SupplyInputError
from pharmalab.supply import _checks

SERVICE_TYPES = ("csl", "fill_rate")
SERIES_LEVELS = ("bottom", "all")


@dataclass(frozen=True)
class PolicySettings:
    """Settings of the periodic-review order-up-to (R, S) policies of a supply run.

    Attributes
    ----------
    lead_time : int
        Replenishment lead time ``L`` (periods of the series, a whole number ≥ 0): an order
        placed at the review of period ``t`` arrives at the start of period ``t + L``.
    review_period : int
        Review period ``R`` (periods, ≥ 1): orders are placed every ``R`` periods.
    service_level : float
        Target, strictly between 0 and 1.
    service_type : {'csl', 'fill_rate'}
        ``'csl'``: cycle service level (type 1, probability of no stock-out in a review
        cycle); ``'fill_rate'``: share of demand met from stock (type 2).
    h : float, default 1
        Holding cost per unit on hand at the end of a period (money per unit per period).
    p : float or None, default None
        Backorder cost per unit short at the end of a period. None: ``h · α / (1 − α)`` with
        ``α = service_level``, the shortage cost for which the target is the newsvendor
        critical fractile (19 · h at 95%). Costs only price the results; they do not set
        the policies.
    discrete_below : float, default 20
        Protection-period mean demand (units) below which demand is Poisson or negative
        binomial (:func:`pharmalab.supply.from_moments`).
    naive_window : int, default 12
        Periods of past demand behind the naive policy's moving average and standard
        deviation (≥ 2).
    series_level : {'bottom', 'all'}, default 'bottom'
        Plan the bottom series of the hierarchy only, or every series.

    Raises
    ------
    SupplyInputError
        A negative or fractional lead time, a review period below 1, a service level outside
        (0, 1), an unknown service type or series level, a cost ≤ 0, ``discrete_below < 0``,
        ``naive_window < 2``.
    """

    lead_time: int
    review_period: int = 1
    service_level: float = 0.95
    service_type: str = "csl"
    h: float = 1.0
    p: float | None = None
    discrete_below: float = 20.0
    naive_window: int = 12
    series_level: str = "bottom"

    def __post_init__(self) -> None:
        lead = _checks.real("lead_time", self.lead_time)
        if lead < 0:
            raise SupplyInputError(
                f"lead_time must be >= 0 periods, got {self.lead_time!r}")
        if lead != int(lead):
            raise SupplyInputError(
                f"lead_time must be a whole number of periods of the series, got "
                f"{self.lead_time!r}")
        object.__setattr__(self, "lead_time", int(lead))
        object.__setattr__(self, "review_period",
                           _checks.positive_int("review_period", self.review_period))
        object.__setattr__(self, "service_level",
                           _checks.probability("service_level", self.service_level))
        if self.service_type not in SERVICE_TYPES:
            raise SupplyInputError(
                f"service_type must be 'csl' or 'fill_rate', got {self.service_type!r}")
        object.__setattr__(self, "h", _checks.positive("h", self.h))
        if self.p is not None:
            object.__setattr__(self, "p", _checks.positive("p", self.p))
        object.__setattr__(self, "discrete_below",
                           _checks.nonnegative("discrete_below", self.discrete_below))
        window = _checks.positive_int("naive_window", self.naive_window)
        if window < 2:
            raise SupplyInputError(f"naive_window must be at least 2 periods, got {window}")
        object.__setattr__(self, "naive_window", window)
        if self.series_level not in SERIES_LEVELS:
            raise SupplyInputError(
                f"series_level must be 'bottom' or 'all', got {self.series_level!r}")

    @property
    def protection_periods(self) -> int:
        """``L + R``: the periods one order must cover."""
        return self.lead_time + self.review_period

    @property
    def shortage_cost(self) -> float:
        """``p``, or ``h · α / (1 − α)`` when not given."""
        if self.p is not None:
            return self.p
        return self.h * self.service_level / (1.0 - self.service_level)
