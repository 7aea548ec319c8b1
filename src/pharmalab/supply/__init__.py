"""Inventory-policy mathematics for supply decisions (pure functions).

Demand over a horizon is a :class:`Demand` (:mod:`pharmalab.supply.demand`): normal, Poisson,
negative binomial or empirical (e.g. sums of forecast sample paths over the protection period).
Policies (:mod:`pharmalab.supply.policies`) return frozen dataclasses with the policy's
parameters and its expected performance: :func:`newsvendor`, :func:`base_stock` /
:func:`order_up_to_level` (periodic review, cycle service level, fill rate or cost),
:func:`eoq`, :func:`r_q_policy` (continuous review) and :func:`s_S_policy` (periodic review
with a fixed order cost).
"""

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

__all__ = [
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
