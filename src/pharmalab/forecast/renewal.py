"""Sample paths of intermittent demand from its own history: intervals and sizes (a renewal
process), the way Croston's model describes intermittent demand.

Conformal paths (:mod:`pharmalab.forecast.intervals`) spread each period's errors around the
forecast. For intermittent demand that loses what matters to stock: when the next demand
comes and how many demands fall in a lead time. A SKU that sells 10 units every 10th day
sells exactly 10 in any 10 days; independent per-day spreads around a daily rate of 1 put
20 or 30 in some paths. Here each path draws the time to the next demand from the
historical inter-demand intervals longer than the time already elapsed since the last
demand, then intervals and sizes independently from their histories (Croston 1972's
renewal view; the bootstrap of Willemain, Smart & Schwarz 2004 without their jitter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Fewest demands (non-zero periods) a history needs before its intervals are trusted.
MIN_DEMANDS = 4


@dataclass(frozen=True)
class RenewalHistory:
    """One series' intermittent pattern as of an origin.

    Attributes
    ----------
    intervals : numpy.ndarray
        Periods between consecutive non-zero demands (int ≥ 1).
    sizes : numpy.ndarray
        The non-zero demands (units of y, > 0).
    elapsed : int
        Periods from the last non-zero demand to the origin (0: a demand in the last period).
    """

    intervals: np.ndarray
    sizes: np.ndarray
    elapsed: int


def renewal_histories(history: pd.DataFrame, ids) -> dict[str, RenewalHistory]:
    """The :class:`RenewalHistory` of each series in ``ids`` with at least
    :data:`MIN_DEMANDS` non-zero periods in ``history`` (``unique_id, ds, y``, one row per
    period, ending at the origin)."""
    out = {}
    wanted = set(ids)
    for uid, rows in history[history["unique_id"].isin(wanted)].groupby("unique_id"):
        y = rows.sort_values("ds")["y"].to_numpy(dtype="float64")
        at = np.flatnonzero(y > 0)
        if len(at) < MIN_DEMANDS:
            continue
        out[str(uid)] = RenewalHistory(np.diff(at), y[at], int(len(y) - 1 - at[-1]))
    return out


def renewal_paths(pattern: RenewalHistory, horizon: int, n_paths: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Demand paths (``n_paths`` × ``horizon``, float64 ≥ 0) of one series.

    The first demand comes after an interval drawn among the historical intervals longer
    than ``elapsed`` (the age of the current interval; all of them if none is), less
    ``elapsed``; later intervals and every size are drawn from their histories (Croston
    1972; Willemain, Smart & Schwarz 2004, without their jitter). Sizes are in the unit of
    ``y``; periods are the series' own.
    """
    out = np.zeros((n_paths, horizon))
    longer = pattern.intervals[pattern.intervals > pattern.elapsed]
    first = longer if len(longer) else pattern.intervals
    for p in range(n_paths):
        t = int(rng.choice(first)) - pattern.elapsed - 1  # 0-based period of the horizon
        t = max(t, 0)
        while t < horizon:
            out[p, t] += float(rng.choice(pattern.sizes))
            t += int(rng.choice(pattern.intervals))
    return out
