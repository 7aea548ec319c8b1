"""Policies per series from a forecast, and the replenishment plan from stock on hand.

The policy is the periodic-review order-up-to (R, S) policy (:func:`order_up_to_level`): every
``R`` periods order up to ``S``, the level for the target cycle service level or fill rate
of the demand over the protection period ``L + R``
(:mod:`pharmalab.supply.leadtime`). Expected performance per series (``policy.csv``):

* ``expected_csl = P(D_{L+R} <= S)``;
* ``expected_fill_rate = 1 − n_{L+R}(S) / E[D_R]`` (Chopra & Meindl ch. 12; ``E[D_R]`` is
  the forecast demand of the last ``R`` periods of the protection period, the cycle the
  order serves); it ignores backorders carried into the cycle, so it slightly understates
  the true fill rate;
* ``expected_on_hand`` and ``expected_backorders``: ``(1/R) Σ_{k=1..R} E[(S − D_{L+k})+]``
  and ``E[(D_{L+k} − S)+]`` — end-of-period averages over the cycle (units);
* ``holding_cost = h · expected_on_hand``, ``shortage_cost = p · expected_backorders``, per
  period.

References
----------
Snyder & Shen, *Fundamentals of Supply Chain Theory*, 2nd ed. (Wiley 2019), §4.3–4.4;
Chopra & Meindl, *Supply Chain Management*, 6th ed. (Pearson 2016), ch. 12.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pharmalab.errors import SupplyInputError
from pharmalab.supply.leadtime import ProtectionDemand, SeriesForecast
from pharmalab.supply.policies import order_up_to_level
from pharmalab.supply.settings import PolicySettings
from pharmalab.supply.simulate import review_cycles, simulate

__all__ = ["POLICY_COLUMNS", "ORDER_COLUMNS", "Level", "level_at", "policy_table",
           "replenishment_plan"]

POLICY_NAME = "order-up-to (R, S)"
POLICY_COLUMNS = [
    "unique_id", "policy", "order_up_to_level", "safety_stock", "reorder_point", "lead_time",
    "review_period", "service_type", "target", "expected_csl", "expected_fill_rate",
    "expected_on_hand", "expected_backorders", "holding_cost", "shortage_cost", "total_cost",
    "demand_model", "level", "first_period", "protection_mean", "protection_std",
    "review_demand_mean"]
ORDER_COLUMNS = [
    "unique_id", "ds", "order_quantity", "inventory_position_before", "order_up_to_level",
    "inventory_position_after", "arrival_ds", "expected_demand", "expected_on_hand",
    "expected_backorders", "safety_stock", "demand_model"]


@dataclass(frozen=True)
class Level:
    """The order-up-to level of one review.

    Attributes
    ----------
    S : float
        Order-up-to level (units of inventory position).
    protection : ProtectionDemand
        Demand over ``L + R`` periods from the review.
    review_demand_mean : float
        Forecast demand of the cycle the order serves (units).
    expected_csl, expected_fill_rate : float
        Model values at ``S``.
    """

    S: float
    protection: ProtectionDemand
    review_demand_mean: float
    expected_csl: float
    expected_fill_rate: float


def level_at(forecast: SeriesForecast, start: int, settings: PolicySettings) -> Level:
    """The order-up-to level for a review at period ``start`` (0-based) of the forecast.

    Parameters
    ----------
    forecast : SeriesForecast
    start : int
        Review period, 0-based; ``start + L + R`` must not exceed the horizon.
    settings : PolicySettings

    Returns
    -------
    Level

    Raises
    ------
    SupplyInputError
        If the protection period runs past the forecast horizon.
    """
    L, R = settings.lead_time, settings.review_period
    protection = forecast.demand(start, L + R, settings.discrete_below)
    cycle_mean = float(forecast.period_means()[start + L:start + L + R].sum())
    if protection.demand is None:
        return Level(0.0, protection, cycle_mean, 1.0, 1.0)
    policy = order_up_to_level(
        protection_demand=protection.demand, service_level=settings.service_level,
        service_type=settings.service_type, lead_time=L, review_period=R,
        review_demand_mean=cycle_mean if cycle_mean > 0 else None)
    return Level(policy.S, protection, policy.review_demand_mean,
                 policy.cycle_service_level, policy.fill_rate)


def _cycle_expectations(forecast: SeriesForecast, start: int, S: float,
                        settings: PolicySettings) -> tuple[float, float]:
    """Mean end-of-period on-hand and backorders over the cycle served by the order."""
    on_hand, back = [], []
    for k in range(1, settings.review_period + 1):
        d = forecast.demand(start, settings.lead_time + k, settings.discrete_below).demand
        if d is None:
            on_hand.append(max(S, 0.0))
            back.append(max(-S, 0.0))
        else:
            on_hand.append(float(d.complementary_loss(S)))
            back.append(float(d.loss(S)))
    return float(np.mean(on_hand)), float(np.mean(back))


def policy_table(forecasts: Mapping[str, SeriesForecast], settings: PolicySettings,
                 level_of: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The (R, S) policy of every series for its first review (``policy.csv``).

    Parameters
    ----------
    forecasts : mapping
        ``unique_id`` → :class:`SeriesForecast` (the final forecast).
    settings : PolicySettings
    level_of : mapping, optional
        ``unique_id`` → hierarchy level.

    Returns
    -------
    pandas.DataFrame
        :data:`POLICY_COLUMNS`: ``order_up_to_level``, ``safety_stock`` (``S − E[D_{L+R}]``),
        ``expected_on_hand``, ``expected_backorders``, ``protection_mean``,
        ``protection_std``, ``review_demand_mean`` in units of the series; ``reorder_point``
        empty (an (R, S) policy orders at every review); ``lead_time``, ``review_period`` in
        periods; ``target`` and the expected service levels as fractions; costs per period;
        ``first_period`` the first forecast period.

    Raises
    ------
    SupplyInputError
        If ``L + R`` exceeds a forecast's horizon.
    """
    rows = []
    h, p = settings.h, settings.shortage_cost
    for uid, fc in forecasts.items():
        lv = level_at(fc, 0, settings)
        on_hand, back = _cycle_expectations(fc, 0, lv.S, settings)
        rows.append({
            "unique_id": uid, "policy": POLICY_NAME, "order_up_to_level": lv.S,
            "safety_stock": lv.S - lv.protection.mean, "reorder_point": np.nan,
            "lead_time": settings.lead_time, "review_period": settings.review_period,
            "service_type": settings.service_type, "target": settings.service_level,
            "expected_csl": lv.expected_csl, "expected_fill_rate": lv.expected_fill_rate,
            "expected_on_hand": on_hand, "expected_backorders": back,
            "holding_cost": h * on_hand, "shortage_cost": p * back,
            "total_cost": h * on_hand + p * back, "demand_model": lv.protection.model,
            "level": (level_of or {}).get(uid, ""), "first_period": lv.protection.start,
            "protection_mean": lv.protection.mean, "protection_std": lv.protection.std,
            "review_demand_mean": lv.review_demand_mean})
    return pd.DataFrame(rows, columns=POLICY_COLUMNS)


def replenishment_plan(forecasts: Mapping[str, SeriesForecast], on_hand: pd.DataFrame,
                       settings: PolicySettings) -> pd.DataFrame:
    """Orders to place at each review over the forecast horizon (``orders.csv``).

    Per series, starting from ``on_hand`` (net inventory) and ``on_order`` (in the pipeline,
    assumed to arrive at the start of the first forecast period), the inventory is projected
    forward with the forecast mean as the expected demand: at each review ``t`` (periods
    ``0, R, 2R, …`` whose protection period ``t … t + L + R − 1`` lies inside the horizon),
    order ``max(0, S_t − inventory position)`` where ``S_t`` is the order-up-to level from
    the forecast of periods ``t … t + L + R − 1``; the order arrives ``L`` periods later.
    Order quantities depend on the inventory position only, so the arrival time assumed for
    ``on_order`` changes the projected on-hand, not the orders. The last ``L + R − 1``
    periods of the horizon get no row (their protection period runs past the forecast).
    Quantities are not rounded (round up to pack sizes as needed).

    Parameters
    ----------
    forecasts : mapping
        ``unique_id`` → :class:`SeriesForecast` (the final forecast).
    on_hand : pandas.DataFrame
        ``unique_id, on_hand, on_order`` (:func:`pharmalab.supply.inputs.read_on_hand`).
    settings : PolicySettings

    Returns
    -------
    pandas.DataFrame
        :data:`ORDER_COLUMNS`, one row per series and review: ``ds`` (the review period),
        ``order_quantity``, ``inventory_position_before`` / ``_after``,
        ``order_up_to_level``, ``expected_demand`` (forecast mean of the period),
        ``expected_on_hand`` and ``expected_backorders`` (end of the period, projected with
        the mean), ``safety_stock`` — units of the series; ``arrival_ds`` the period the
        order arrives (inside the horizon: ``t + L <= H − R``).

    Raises
    ------
    SupplyInputError
        A series of ``on_hand`` without a forecast, or ``L + R`` beyond the horizon.
    """
    L, R = settings.lead_time, settings.review_period
    parts = []
    for row in on_hand.itertuples(index=False):
        fc = forecasts.get(row.unique_id)
        if fc is None:
            raise SupplyInputError(f"on-hand series {row.unique_id!r} has no forecast")
        cycles = review_cycles(fc.horizon, L, R)
        if not cycles:
            raise SupplyInputError(
                f"lead time + review period ({L + R} periods) exceed the forecast horizon "
                f"({fc.horizon} periods) of series {row.unique_id!r}")
        levels = np.full(fc.horizon, np.nan)
        info = {}
        for k, _ in cycles:
            lv = level_at(fc, k, settings)
            levels[k] = lv.S
            info[k] = lv
        means = fc.period_means()
        sim = simulate(means, levels, lead_time=L, review_period=R,
                       initial_net_inventory=row.on_hand, pipeline=[row.on_order])
        reviews = [k for k, _ in cycles]
        dates = pd.DatetimeIndex(fc.ds)
        s = sim.loc[reviews]
        parts.append(pd.DataFrame({
            "unique_id": row.unique_id, "ds": pd.DatetimeIndex(fc.ds)[reviews],
            "order_quantity": s["order_quantity"].to_numpy(),
            "inventory_position_before": s["inventory_position_before"].to_numpy(),
            "order_up_to_level": s["order_up_to_level"].to_numpy(),
            "inventory_position_after": (s["inventory_position_before"]
                                         + s["order_quantity"]).to_numpy(),
            "arrival_ds": dates[[k + L for k in reviews]],
            "expected_demand": s["demand"].to_numpy(),
            "expected_on_hand": s["on_hand"].to_numpy(),
            "expected_backorders": s["backorders"].to_numpy(),
            "safety_stock": [info[k].S - info[k].protection.mean for k in reviews],
            "demand_model": [info[k].protection.model for k in reviews]}))
    if not parts:
        return pd.DataFrame(columns=ORDER_COLUMNS)
    return pd.concat(parts, ignore_index=True)[ORDER_COLUMNS]
