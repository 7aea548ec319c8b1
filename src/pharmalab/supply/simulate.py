"""Period-by-period simulation of a periodic-review order-up-to inventory, and what it
achieved.

Each period ``t`` (0-based), in this order:

1. **Review** (periods ``first_review, first_review + R, …``): the inventory position
   ``IP = net inventory + orders not yet received``; order ``max(0, S_t − IP)``, which
   arrives at the start of period ``t + L`` (in the same period when ``L = 0``).
2. **Receipts**: the orders due in period ``t`` are added to the net inventory (they first
   clear backorders).
3. **Demand** ``d_t``: ``filled = min(d_t, max(net inventory, 0))`` is met from stock; the
   rest is backordered (net inventory ``−= d_t``).

End of period: ``on_hand = max(net, 0)``, ``backorders = max(−net, 0)``; holding cost
``h · on_hand`` and shortage cost ``p · backorders`` are charged on these (Snyder & Shen's
periodic-review cost convention, §4.3).

A **review cycle** of the order placed at period ``k`` is periods ``k + L … k + L + R − 1``
(from its arrival to the next order's arrival); it ends without stock-out when the net
inventory at the end of its last period is ≥ 0 (no demand of the cycle waits — Chopra &
Meindl's cycle service level, ch. 12). The achieved **fill rate** is ``Σ filled / Σ demand``
over the counted periods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pharmalab.errors import SupplyInputError
from pharmalab.supply import _checks

__all__ = ["Achieved", "achieved", "review_cycles", "simulate"]

SIM_COLUMNS = ["period", "review", "order_up_to_level", "inventory_position_before",
               "order_quantity", "received", "net_inventory_start", "demand", "filled",
               "on_hand", "backorders"]
_TOL = 1e-9


def simulate(demand, order_up_to, *, lead_time: int, review_period: int = 1,
             first_review: int = 0, initial_net_inventory: float = 0.0,
             pipeline=()) -> pd.DataFrame:
    """Simulate an order-up-to (R, S_t) inventory with backorders, period by period.

    Parameters
    ----------
    demand : array_like
        Demand per period (units, ≥ 0), length ``T``.
    order_up_to : array_like
        Order-up-to level ``S_t`` per period (units of inventory position), length ``T``;
        read at review periods only; NaN at a review means no order there.
    lead_time : int
        ``L`` (periods, ≥ 0).
    review_period : int, default 1
        ``R`` (periods, ≥ 1).
    first_review : int, default 0
        Period of the first review.
    initial_net_inventory : float, default 0
        Net inventory before period 0 (units; negative = backorders).
    pipeline : array_like, default ()
        Orders placed before period 0: ``pipeline[j]`` arrives at the start of period ``j``.

    Returns
    -------
    pandas.DataFrame
        One row per period: ``period`` (int), ``review`` (bool), ``order_up_to_level``,
        ``inventory_position_before`` (before ordering), ``order_quantity``, ``received``,
        ``net_inventory_start`` (after receipts, before demand), ``demand``, ``filled``,
        ``on_hand``, ``backorders`` (end of period) — floats in units, NaN where a
        column does not apply (no review).

    Raises
    ------
    SupplyInputError
        Arrays of different lengths, a negative demand, a negative lead time or a review
        period below 1.
    """
    d = np.asarray(demand, dtype=float)
    s = np.asarray(order_up_to, dtype=float)
    if d.ndim != 1 or s.shape != d.shape:
        raise SupplyInputError(f"demand and order_up_to must be one-dimensional arrays of the "
                               f"same length, got shapes {d.shape} and {s.shape}")
    if np.any(d < 0) or not np.all(np.isfinite(d)):
        raise SupplyInputError("demand must be finite and >= 0 in every period")
    lead = int(_checks.nonnegative("lead_time", lead_time))
    if lead != lead_time:
        raise SupplyInputError(f"lead_time must be a whole number of periods, got {lead_time!r}")
    review = _checks.positive_int("review_period", review_period)
    horizon = d.size
    pipe = np.asarray(pipeline, dtype=float).reshape(-1)
    arrivals = np.zeros(horizon + lead + pipe.size + 1)
    arrivals[:pipe.size] = pipe
    outstanding = float(pipe.sum())
    net = float(initial_net_inventory)
    out = {c: np.full(horizon, np.nan) for c in SIM_COLUMNS}
    out["review"] = np.zeros(horizon, dtype=bool)
    for t in range(horizon):
        if t >= first_review and (t - first_review) % review == 0:
            out["review"][t] = True
            ip = net + outstanding
            out["inventory_position_before"][t] = ip
            level = s[t]
            out["order_up_to_level"][t] = level
            qty = 0.0 if np.isnan(level) else max(0.0, level - ip)
            out["order_quantity"][t] = qty
            arrivals[t + lead] += qty
            outstanding += qty
        received = arrivals[t]
        outstanding -= received
        net += received
        out["received"][t] = received
        out["net_inventory_start"][t] = net
        out["filled"][t] = min(d[t], max(net, 0.0))
        net -= d[t]
        out["demand"][t] = d[t]
        out["on_hand"][t] = max(net, 0.0)
        out["backorders"][t] = max(-net, 0.0)
    out["period"] = np.arange(horizon)
    return pd.DataFrame(out)[SIM_COLUMNS]


def review_cycles(horizon: int, lead_time: int, review_period: int = 1,
                  first_review: int = 0) -> list[tuple[int, int]]:
    """The review cycles whose protection period lies inside ``horizon`` periods.

    The order at review ``k`` covers periods ``k … k + L + R − 1``; its cycle is
    ``k + L … k + L + R − 1``. Only reviews with ``k + L + R − 1 <= horizon − 1`` count.

    Returns
    -------
    list of (int, int)
        ``(review period, last period of its cycle)``, 0-based.
    """
    last = horizon - lead_time - review_period
    return [(k, k + lead_time + review_period - 1)
            for k in range(first_review, last + 1, review_period)]


@dataclass(frozen=True)
class Achieved:
    """What a simulated policy achieved over the counted periods.

    Attributes
    ----------
    periods, cycles : int
        Periods and review cycles counted.
    demand, filled : float
        Total demand and demand met from stock (units).
    fill_rate : float
        ``filled / demand`` (NaN without demand).
    cycles_without_stockout : int
    csl : float
        Share of cycles without stock-out (NaN without cycles).
    avg_on_hand, avg_backorders : float
        Mean end-of-period on-hand and backorders (units).
    stockout_periods : int
        Periods ending with backorders.
    holding_cost, shortage_cost, total_cost : float
        Per period (means over the counted periods).
    """

    periods: int
    cycles: int
    demand: float
    filled: float
    fill_rate: float
    cycles_without_stockout: int
    csl: float
    avg_on_hand: float
    avg_backorders: float
    stockout_periods: int
    holding_cost: float
    shortage_cost: float
    total_cost: float


def achieved(sim: pd.DataFrame, cycles: list[tuple[int, int]], *, lead_time: int,
             h: float = 1.0, p: float = 19.0) -> Achieved:
    """Fill rate, cycle service level, stock and cost of a simulation over review cycles.

    Parameters
    ----------
    sim : pandas.DataFrame
        :func:`simulate` output.
    cycles : list of (int, int)
        :func:`review_cycles` (review period, last period of its cycle): the counted
        periods are each cycle's, from ``review + L`` to its last period.
    lead_time : int
        ``L`` (periods).
    h, p : float
        Holding and backorder cost per unit per period.

    Returns
    -------
    Achieved
    """
    counted = np.zeros(len(sim), dtype=bool)
    for k, end in cycles:
        counted[k + lead_time:end + 1] = True
    rows = sim[counted]
    demand = float(rows["demand"].sum())
    filled = float(rows["filled"].sum())
    net_end = sim["on_hand"].to_numpy() - sim["backorders"].to_numpy()
    ok = sum(1 for _, end in cycles if net_end[end] >= -_TOL)
    on_hand = float(rows["on_hand"].mean()) if len(rows) else np.nan
    back = float(rows["backorders"].mean()) if len(rows) else np.nan
    return Achieved(
        periods=int(counted.sum()), cycles=len(cycles), demand=demand, filled=filled,
        fill_rate=filled / demand if demand > 0 else np.nan,
        cycles_without_stockout=ok, csl=ok / len(cycles) if cycles else np.nan,
        avg_on_hand=on_hand, avg_backorders=back,
        stockout_periods=int((rows["backorders"] > _TOL).sum()),
        holding_cost=h * on_hand, shortage_cost=p * back, total_cost=h * on_hand + p * back)
