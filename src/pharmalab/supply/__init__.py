"""Inventory-policy mathematics for supply decisions (pure functions).

Demand over a horizon is a :class:`Demand` (:mod:`pharmalab.supply.demand`): normal, Poisson,
negative binomial or empirical (e.g. sums of forecast sample paths over the protection period).
Policies (:mod:`pharmalab.supply.policies`) return frozen dataclasses with the policy's
parameters and its expected performance: :func:`newsvendor`, :func:`base_stock` /
:func:`order_up_to_level` (periodic review, cycle service level, fill rate or cost),
:func:`eoq`, :func:`r_q_policy` (continuous review) and :func:`s_S_policy` (periodic review
with a fixed order cost).

From a forecast folder (``pharmalab forecast``): :func:`protection_demand` per series
(:mod:`~pharmalab.supply.leadtime`: summed sample paths, or quantiles with independent
periods; discrete for low volumes), :func:`policy_table` and :func:`replenishment_plan`
(:mod:`~pharmalab.supply.plan`), the period-by-period :func:`simulate`
(:mod:`~pharmalab.supply.simulate`), the policy backtest against the naive policy
(:func:`backtest_policies`, :func:`naive_order_up_to_level`) and :func:`run_supply`, which
writes ``policy.csv``, ``orders.csv``, ``backtest.csv`` and the figures
(:mod:`~pharmalab.supply.outputs`). Settings are a :class:`PolicySettings`.
"""

from pharmalab.supply.backtest import BacktestResult, backtest_policies, summarize_backtest
from pharmalab.supply.demand import (
    Demand,
    EmpiricalDemand,
    NegativeBinomialDemand,
    NormalDemand,
    PoissonDemand,
    from_moments,
    normal_complementary_loss,
    normal_loss,
    standard_normal_loss,
    standard_normal_second_order_loss,
)
from pharmalab.supply.inputs import (
    ForecastFolder,
    read_forecast_folder,
    read_on_hand,
    series_history,
)
from pharmalab.supply.leadtime import (
    ProtectionDemand,
    SeriesForecast,
    protection_demand,
    series_forecasts,
)
from pharmalab.supply.naive import NaivePolicy, naive_order_up_to_level
from pharmalab.supply.outputs import SupplyResult, run_supply
from pharmalab.supply.plan import level_at, policy_table, replenishment_plan
from pharmalab.supply.policies import (
    EOQResult,
    NewsvendorPolicy,
    OrderUpToPolicy,
    RQPolicy,
    SSPolicy,
    base_stock,
    eoq,
    newsvendor,
    order_up_to_level,
    r_q_policy,
    s_S_policy,
)
from pharmalab.supply.settings import PolicySettings
from pharmalab.supply.simulate import Achieved, achieved, review_cycles, simulate

__all__ = [
    "Achieved",
    "BacktestResult",
    "ForecastFolder",
    "NaivePolicy",
    "PolicySettings",
    "ProtectionDemand",
    "SeriesForecast",
    "SupplyResult",
    "achieved",
    "backtest_policies",
    "level_at",
    "naive_order_up_to_level",
    "policy_table",
    "protection_demand",
    "read_forecast_folder",
    "read_on_hand",
    "replenishment_plan",
    "review_cycles",
    "run_supply",
    "series_forecasts",
    "series_history",
    "simulate",
    "summarize_backtest",
    "Demand",
    "EOQResult",
    "EmpiricalDemand",
    "NegativeBinomialDemand",
    "NewsvendorPolicy",
    "NormalDemand",
    "OrderUpToPolicy",
    "PoissonDemand",
    "RQPolicy",
    "SSPolicy",
    "base_stock",
    "eoq",
    "from_moments",
    "newsvendor",
    "normal_complementary_loss",
    "normal_loss",
    "order_up_to_level",
    "r_q_policy",
    "s_S_policy",
    "standard_normal_loss",
    "standard_normal_second_order_loss",
]
