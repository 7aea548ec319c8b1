"""The naive order-up-to level planners use today, the benchmark of the policy backtest.

``S = (L + R) · μ̂ + z · σ̂ · √(L + R)`` (``L``, ``R`` in periods), where ``μ̂`` is the moving
average and ``σ̂`` the sample standard deviation (``ddof = 1``) of the last ``window``
periods of past demand, and ``z = Φ⁻¹(target)`` — the normal quantile of the target whatever
its type (a fill-rate target is treated as a cycle service level, as the rule of thumb
does). Safety stock ``z · σ̂ · √(L + R)`` (Chopra & Meindl, *Supply Chain Management*, 6th
ed., ch. 12, safety inventory for a periodic review policy with independent periods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from pharmalab.supply import _checks

__all__ = ["NaivePolicy", "naive_order_up_to_level"]


@dataclass(frozen=True)
class NaivePolicy:
    """The naive level and what it was made of.

    Attributes
    ----------
    S : float
        Order-up-to level (units); NaN with fewer than 2 past periods.
    mean, sigma : float
        Moving average and standard deviation of past demand per period (units).
    z : float
        ``Φ⁻¹(target)``.
    safety_stock : float
        ``z σ̂ √(L + R)`` (units).
    periods_used : int
        Past periods used (≤ window).
    """

    S: float
    mean: float
    sigma: float
    z: float
    safety_stock: float
    periods_used: int


def naive_order_up_to_level(history, *, lead_time: int, review_period: int = 1,
                            service_level: float, window: int = 12) -> NaivePolicy:
    """Naive order-up-to level from past demand (see the module docstring).

    Parameters
    ----------
    history : array_like
        Past demand per period, oldest first (units); NaN periods are skipped.
    lead_time : int
        ``L`` (periods, ≥ 0).
    review_period : int, default 1
        ``R`` (periods, ≥ 1).
    service_level : float
        Target, strictly between 0 and 1.
    window : int, default 12
        Periods of the moving average and the standard deviation.

    Returns
    -------
    NaivePolicy

    Raises
    ------
    SupplyInputError
        A negative lead time, a review period below 1, a target outside (0, 1), a window
        below 2.
    """
    lead = _checks.nonnegative("lead_time", lead_time)
    review = _checks.positive_int("review_period", review_period)
    target = _checks.probability("service_level", service_level)
    window = _checks.positive_int("window", window)
    values = np.asarray(history, dtype=float)
    values = values[~np.isnan(values)][-window:]
    z = float(special.ndtri(target))
    if values.size < 2:
        return NaivePolicy(np.nan, np.nan, np.nan, z, np.nan, int(values.size))
    mean = float(values.mean())
    sigma = float(values.std(ddof=1))
    periods = lead + review
    safety = z * sigma * math.sqrt(periods)
    return NaivePolicy(max(0.0, mean * periods + safety), mean, sigma, z, safety,
                       int(values.size))
