"""Single-item inventory policies: pure functions from demand and costs to a policy and its
expected performance.

Conventions (all policies):

* ``h`` — holding cost per unit on hand per period (per unit time for the continuous-review
  models); ``p`` — backorder (stockout) cost per unit backordered per period (unit time);
  ``K`` — fixed cost per order. Money units are the caller's.
* Unmet demand is backordered. ``expected_on_hand`` and ``expected_backorders`` are long-run
  averages (units), at the end of a period for periodic review and time averages for
  continuous review; ``holding_cost = h · expected_on_hand``, ``shortage_cost = p ·
  expected_backorders``, ``total_cost`` adds the ordering cost ``K · order frequency`` where
  there is one. Costs are per period (per unit time).
* ``cycle_service_level`` (type 1, α) is the probability of no stockout in a replenishment
  cycle; ``fill_rate`` (type 2, β) is the expected fraction of demand met from stock.
* Integer-valued demand (Poisson, negative binomial, integer samples) gives integer levels.

Sources: Snyder & Shen, *Fundamentals of Supply Chain Theory*, 2nd ed. (Wiley 2019), chapters
3–5; Chopra & Meindl, *Supply Chain Management*, 6th ed. (Pearson 2016), chapter 12; Zipkin,
*Foundations of Inventory Management* (2000); Zheng & Federgruen, "Finding optimal (s, S)
policies is about as simple as evaluating a single policy", *Operations Research* 39(4),
654–665 (1991); Federgruen & Zheng, "An efficient algorithm for computing an optimal (r, Q)
policy in continuous review stochastic inventory systems", *Operations Research* 40(4), 808–813
(1992); Ehrhardt & Mosier, "A revision of the power approximation for computing (s, S)
policies", *Management Science* 30(5), 618–622 (1984).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from pharmalab.errors import SupplyInputError
from pharmalab.supply import _checks
from pharmalab.supply.demand import Demand, NormalDemand, PoissonDemand

__all__ = [
    "EOQResult",
    "NewsvendorPolicy",
    "OrderUpToPolicy",
    "RQPolicy",
    "SSPolicy",
    "base_stock",
    "eoq",
    "newsvendor",
    "order_up_to_level",
    "r_q_policy",
    "s_S_policy",
]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NewsvendorPolicy:
    """Single-period (newsvendor) order quantity and its expected performance.

    Attributes
    ----------
    S : float
        Stock level (order quantity with no initial stock), units.
    h, p : float
        Overage (holding) and underage (stockout) cost per unit.
    critical_fractile : float
        ``p / (p + h)``.
    demand : Demand
        The period's demand.
    cycle_service_level : float
        ``P(D <= S)``.
    fill_rate : float
        ``1 - n(S) / E[D]``.
    expected_on_hand : float
        Expected leftover ``n̄(S) = E[(S - D)+]`` (units).
    expected_backorders : float
        Expected shortage ``n(S) = E[(D - S)+]`` (units).
    expected_sales : float
        ``E[min(D, S)] = E[D] - n(S)`` (units).
    holding_cost, shortage_cost, total_cost : float
        ``h n̄(S)``, ``p n(S)`` and their sum (money per period).
    """

    S: float
    h: float
    p: float
    critical_fractile: float
    demand: Demand
    cycle_service_level: float
    fill_rate: float
    expected_on_hand: float
    expected_backorders: float
    expected_sales: float
    holding_cost: float
    shortage_cost: float
    total_cost: float


@dataclass(frozen=True)
class OrderUpToPolicy:
    """Periodic-review order-up-to (R, S) / base-stock policy and its expected performance.

    Every ``review_period`` periods, order up to ``S``; orders arrive ``lead_time`` periods
    later; the protection period is ``lead_time + review_period``.

    Attributes
    ----------
    S : float
        Order-up-to (base-stock) level, units of inventory position.
    lead_time : float
        Periods.
    review_period : int
        Periods between reviews ``R``.
    protection_demand : Demand
        Demand over ``lead_time + review_period`` periods.
    protection_mean, protection_std : float
        Its mean and standard deviation (units).
    safety_stock : float
        ``S - protection_mean`` (units).
    review_demand_mean : float
        Expected demand per review period ``E[D_R]`` (units), the fill-rate denominator.
    service_type : str
        How ``S`` was set: ``'csl'``, ``'fill_rate'``, ``'cost'`` (``h``, ``p``) or ``'given'``.
    target : float or None
        The target service level, or the critical fractile ``p/(p+h)`` for ``'cost'``.
    cycle_service_level : float
        ``P(D_{L+R} <= S)``: no stockout in a review cycle.
    fill_rate : float
        Textbook type-2 service ``1 - n_{L+R}(S) / E[D_R]`` (Chopra & Meindl ch. 12, with the
        review period as the replenishment cycle), clipped at 0. It ignores backorders carried
        into the cycle, so it slightly understates the true fill rate
        ``1 - (n_{L+R}(S) - n_L(S)) / E[D_R]`` when ``n_L(S)`` is not negligible.
    expected_on_hand, expected_backorders : float or None
        Average end-of-period on-hand stock and backorders over the review cycle (units):
        ``(1/R) Σ_{k=1..R} n̄_{L+k}(S)`` and ``(1/R) Σ n_{L+k}(S)``, exact for independent
        identically distributed period demands. None when only ``protection_demand`` was given
        and ``review_period > 1``.
    h, p : float or None
        Holding and backorder cost per unit per period.
    holding_cost, shortage_cost, total_cost : float or None
        Per period (None when the cost rate or the expectation is missing).
    """

    S: float
    lead_time: float
    review_period: int
    protection_demand: Demand
    protection_mean: float
    protection_std: float
    safety_stock: float
    review_demand_mean: float
    service_type: str
    target: float | None
    cycle_service_level: float
    fill_rate: float
    expected_on_hand: float | None
    expected_backorders: float | None
    h: float | None
    p: float | None
    holding_cost: float | None
    shortage_cost: float | None
    total_cost: float | None


@dataclass(frozen=True)
class EOQResult:
    """Economic order quantity and its annual (per unit time) costs.

    Attributes
    ----------
    Q : float
        Order quantity (units).
    K, D, h : float
        Fixed cost per order, demand per unit time, holding cost per unit per unit time.
    order_frequency : float
        Orders per unit time ``D / Q``.
    cycle_time : float
        Time between orders ``Q / D``.
    ordering_cost, holding_cost, total_cost : float
        ``K D / Q``, ``h Q / 2`` and their sum (money per unit time).
    """

    Q: float
    K: float
    D: float
    h: float
    order_frequency: float
    cycle_time: float
    ordering_cost: float
    holding_cost: float
    total_cost: float


@dataclass(frozen=True)
class RQPolicy:
    """Continuous-review (r, Q) policy and its exact expected performance.

    When the inventory position falls to ``r`` (to ``r`` or below for unit demands), order
    ``Q``; orders arrive after ``lead_time``.

    Attributes
    ----------
    r : float
        Reorder point (units of inventory position).
    Q : float
        Order quantity (units).
    lead_time : float
        Time units.
    demand_rate : float
        Mean demand per unit time ``λ``.
    lead_time_demand : Demand
        Demand over the lead time.
    lead_time_mean, lead_time_std : float
        Its mean and standard deviation (units).
    safety_stock : float
        ``r - lead_time_mean`` (units).
    service_type : str
        How ``r`` was set: ``'csl'``, ``'fill_rate'``, ``'cost'`` or ``'given'``.
    target : float or None
        Target service level (None for ``'cost'`` and ``'given'``).
    q_method : str
        How ``Q`` was set: ``'eoq'``, ``'optimal'`` or ``'given'``.
    cycle_service_level : float
        ``P(D_L <= r)``.
    fill_rate : float
        ``(n̄(r+Q) - n̄(r)) / Q = 1 - (n(r) - n(r+Q)) / Q`` (exact for the model; Snyder &
        Shen §5.2).
    expected_on_hand, expected_backorders : float
        Time averages (units).
    order_frequency : float
        Orders per unit time ``λ / Q``.
    h, p, K : float or None
        Cost rates.
    ordering_cost, holding_cost, shortage_cost, total_cost : float or None
        Per unit time.
    """

    r: float
    Q: float
    lead_time: float
    demand_rate: float
    lead_time_demand: Demand
    lead_time_mean: float
    lead_time_std: float
    safety_stock: float
    service_type: str
    target: float | None
    q_method: str
    cycle_service_level: float
    fill_rate: float
    expected_on_hand: float
    expected_backorders: float
    order_frequency: float
    h: float | None
    p: float | None
    K: float | None
    ordering_cost: float | None
    holding_cost: float | None
    shortage_cost: float | None
    total_cost: float | None


@dataclass(frozen=True)
class SSPolicy:
    """Periodic-review (s, S) policy and its expected performance.

    At each review, if the inventory position is at or below ``s``, order up to ``S``.

    Attributes
    ----------
    s, S : float
        Reorder point and order-up-to level (units of inventory position).
    lead_time : float
        Periods (integer; costs are charged on demand over ``lead_time + 1`` periods).
    method : str
        ``'zheng-federgruen'`` (exact optimum), ``'power-approximation'`` or ``'given'``.
    evaluation : str
        ``'exact'`` or ``'lattice'`` (normal demand evaluated on a fine lattice, see
        :func:`s_S_policy`).
    cycle_service_level : float
        Probability of no backorders at the end of a period.
    fill_rate : float
        Expected fraction of demand met from stock (exact for the evaluation model).
    expected_on_hand, expected_backorders : float
        Average end-of-period values (units).
    order_frequency : float
        Orders per period ``1 / M(S - s)``.
    h, p, K : float
    ordering_cost, holding_cost, shortage_cost, total_cost : float
        Per period.
    """

    s: float
    S: float
    lead_time: float
    method: str
    evaluation: str
    cycle_service_level: float
    fill_rate: float
    expected_on_hand: float
    expected_backorders: float
    order_frequency: float
    h: float
    p: float
    K: float
    ordering_cost: float
    holding_cost: float
    shortage_cost: float
    total_cost: float


# --------------------------------------------------------------------------- helpers


def _demand(demand, mu, sigma, name: str = "demand") -> Demand:
    """The demand argument, or ``NormalDemand(mu, sigma)`` built from textbook arguments."""
    if demand is not None:
        if mu is not None or sigma is not None:
            raise SupplyInputError(f"give either {name} or mu and sigma, not both")
        if not isinstance(demand, Demand):
            raise SupplyInputError(
                f"{name} must be a pharmalab.supply Demand (NormalDemand, PoissonDemand, "
                f"NegativeBinomialDemand, EmpiricalDemand), got {type(demand).__name__}"
            )
        return demand
    if mu is None or sigma is None:
        raise SupplyInputError(f"give {name} (a Demand) or both mu and sigma (normal demand)")
    return NormalDemand(mu, sigma)


def _fill_rate(shortage: float, demand: float) -> float:
    """``1 - shortage / demand`` clipped to [0, 1]; 1 when no demand and no shortage."""
    if demand <= 0:
        return 1.0 if shortage <= 0 else 0.0
    return float(min(1.0, max(0.0, 1.0 - shortage / demand)))


def _service_type(service_type: str) -> str:
    if service_type not in ("csl", "fill_rate"):
        raise SupplyInputError(
            f"service_type must be 'csl' or 'fill_rate', got {service_type!r}"
        )
    return service_type


def _level(dist: Demand, value: float) -> float:
    """A given stock level, checked to be an integer for integer-valued demand."""
    return float(_checks.integer("S", value)) if dist.integer_valued else value


def _smallest_level(f: Callable[[float], float], integer: bool, lo: float, hi: float) -> float:
    """Smallest ``x`` in ``(lo, hi]`` with ``f(x) <= 0`` for ``f`` non-increasing, ``f(lo) > 0``,
    ``f(hi) <= 0``: an integer when ``integer``, else a root found by Brent's method."""
    if integer:
        a, b = math.floor(lo), math.ceil(hi)
        while b - a > 1:
            mid = (a + b) // 2
            if f(mid) <= 0:
                b = mid
            else:
                a = mid
        return float(b)
    if f(hi) == 0:
        return float(hi)
    return float(optimize.brentq(f, lo, hi, xtol=1e-12 * max(1.0, abs(hi)), rtol=1e-15))


def _level_for_loss(dist: Demand, target: float) -> float:
    """Smallest ``S`` with ``n(S) <= target`` (``target > 0``); ``n(S) >= E[D] - S`` bounds it."""
    lo = dist.mean - target - 1.0
    step = max(1.0, dist.std)
    hi = max(lo + step, dist.mean)
    while dist.loss(hi) > target:
        hi += step
        step *= 2.0
    return _smallest_level(lambda x: dist.loss(x) - target, dist.integer_valued, lo, hi)


# --------------------------------------------------------------------------- newsvendor


def newsvendor(
    demand: Demand | None = None,
    *,
    h: float,
    p: float,
    mu: float | None = None,
    sigma: float | None = None,
    S: float | None = None,
) -> NewsvendorPolicy:
    """Newsvendor: the stock level minimizing expected overage plus underage cost.

    ``S* = F⁻¹(p / (p + h))`` (the critical fractile; Snyder & Shen §4.3), the
    smallest level with ``F(S) >= p/(p+h)`` for discrete demand. Expected cost
    ``g(S) = h E[(S - D)+] + p E[(D - S)+] = h n̄(S) + p n(S)``; for normal demand at the
    optimum ``g(S*) = (h + p) σ φ(z_α)``.

    Parameters
    ----------
    demand : Demand, optional
        Demand in the period. Alternatively give ``mu`` and ``sigma`` (normal demand).
    h : float
        Overage cost per unit left over (> 0).
    p : float
        Underage cost per unit short (> 0).
    mu, sigma : float, optional
        Mean and standard deviation of normal demand (units).
    S : float, optional
        Evaluate this stock level instead of the optimal one (an integer for integer-valued
        demand).

    Returns
    -------
    NewsvendorPolicy

    Raises
    ------
    SupplyInputError
        If ``h`` or ``p`` is not > 0, the demand is missing or given twice, ``sigma <= 0``, or
        ``S`` is not an integer for integer-valued demand.
    """
    dist = _demand(demand, mu, sigma)
    h = _checks.positive("h", h)
    p = _checks.positive("p", p)
    alpha = p / (p + h)
    level = dist.ppf(alpha) if S is None else _level(dist, _checks.real("S", S))
    short = float(dist.loss(level))
    left = float(dist.complementary_loss(level))
    return NewsvendorPolicy(
        S=level,
        h=h,
        p=p,
        critical_fractile=alpha,
        demand=dist,
        cycle_service_level=float(dist.cdf(level)),
        fill_rate=_fill_rate(short, dist.mean),
        expected_on_hand=left,
        expected_backorders=short,
        expected_sales=dist.mean - short,
        holding_cost=h * left,
        shortage_cost=p * short,
        total_cost=h * left + p * short,
    )


# --------------------------------------------------------------------------- base stock / (R, S)


def base_stock(
    demand: Demand | None = None,
    *,
    h: float | None = None,
    p: float | None = None,
    service_level: float | None = None,
    service_type: str = "csl",
    lead_time: float = 0,
    review_period: int = 1,
    mu: float | None = None,
    sigma: float | None = None,
    protection_demand: Demand | None = None,
    review_demand_mean: float | None = None,
    S: float | None = None,
) -> OrderUpToPolicy:
    """Periodic-review base-stock / order-up-to (R, S) level and its expected performance.

    The protection period is ``L + R`` (``lead_time + review_period``); for ``R = 1`` this is
    Snyder & Shen's base-stock model with lead time, whose costs fall on demand over ``L + 1``
    periods (§4.3.5). ``S`` is set, in this order of precedence, by

    * ``S`` — evaluated as given;
    * ``service_level`` with ``service_type='csl'`` (type 1): ``S = F⁻¹_{L+R}(α)``, the smallest
      level with ``P(D_{L+R} <= S) >= α`` (Chopra & Meindl ch. 12);
    * ``service_level`` with ``service_type='fill_rate'`` (type 2): the smallest ``S`` with
      ``n_{L+R}(S) <= (1 - β) E[D_R]`` (Chopra & Meindl ch. 12, with the review period as
      the replenishment cycle): the standard normal loss for normal demand
      (``σ L((S - μ)/σ) = (1 - β) E[D_R]``), exact sums for discrete demand;
    * ``h`` and ``p`` (cost-optimal): ``S* = F⁻¹_{L+1}(p / (p + h))`` for ``R = 1`` (Snyder &
      Shen §4.3.5/§4.4); for ``R > 1`` the ``S`` where the average over the cycle of
      ``F_{L+k}(S)``, ``k = 1..R``, reaches ``p / (p + h)`` (it minimizes the cycle-average
      cost ``(1/R) Σ_k [h n̄_{L+k}(S) + p n_{L+k}(S)]``).

    Parameters
    ----------
    demand : Demand, optional
        Demand per period, independent and identically distributed across periods (use
        ``mu``/``sigma`` for normal demand, or ``protection_demand``).
    h : float, optional
        Holding cost per unit on hand per period (> 0).
    p : float, optional
        Backorder cost per unit backordered per period (> 0).
    service_level : float, optional
        Target cycle service level α or fill rate β, strictly between 0 and 1.
    service_type : {'csl', 'fill_rate'}, default 'csl'
        Which service measure ``service_level`` is.
    lead_time : float, default 0
        Replenishment lead time ``L`` (periods, >= 0).
    review_period : int, default 1
        Review period ``R`` (periods, a positive integer).
    mu, sigma : float, optional
        Mean and standard deviation of normal demand per period (units).
    protection_demand : Demand, optional
        Demand over the whole protection period ``L + R`` instead of per-period demand, e.g.
        :class:`EmpiricalDemand` of summed forecast sample paths. Then
        ``E[D_R] = protection_demand.mean · R / (L + R)`` unless ``review_demand_mean`` is
        given, and on-hand/backorder expectations are only available for ``R = 1``.
    review_demand_mean : float, optional
        Expected demand per review period ``E[D_R]`` (units, > 0), overriding the default.
    S : float, optional
        Order-up-to level to evaluate.

    Returns
    -------
    OrderUpToPolicy

    Raises
    ------
    SupplyInputError
        If ``lead_time < 0``, ``review_period`` is not a positive integer, ``service_level`` is
        not strictly between 0 and 1, ``service_type`` is unknown, a cost is not > 0, the
        demand is missing or given twice, nothing sets ``S``, or a cost-optimal level with
        ``review_period > 1`` is asked from ``protection_demand`` alone.
    """
    L = _checks.nonnegative("lead_time", lead_time)
    R = _checks.positive_int("review_period", review_period)
    h = _checks.optional(_checks.positive, "h", h)
    p = _checks.optional(_checks.positive, "p", p)
    service_type = _service_type(service_type)
    if protection_demand is not None:
        if demand is not None or mu is not None or sigma is not None:
            raise SupplyInputError(
                "give either protection_demand or the per-period demand (demand, or mu and "
                "sigma), not both"
            )
        if not isinstance(protection_demand, Demand):
            raise SupplyInputError(
                "protection_demand must be a pharmalab.supply Demand, got "
                f"{type(protection_demand).__name__}"
            )
        per_period = None
        protection = protection_demand
        default_review_mean = protection.mean * R / (L + R)
    else:
        per_period = _demand(demand, mu, sigma)
        protection = per_period.over(L + R)
        default_review_mean = per_period.mean * R
    review_mean = (
        default_review_mean
        if review_demand_mean is None
        else _checks.positive("review_demand_mean", review_demand_mean)
    )
    cycle = None if per_period is None else [per_period.over(L + k) for k in range(1, R + 1)]

    target: float | None
    if S is not None:
        level, kind, target = _level(protection, _checks.real("S", S)), "given", None
    elif service_level is not None:
        target = _checks.probability("service_level", service_level)
        kind = service_type
        if kind == "csl":
            level = protection.ppf(target)
        else:
            level = _level_for_loss(protection, (1.0 - target) * review_mean)
    elif h is not None and p is not None:
        kind, target = "cost", p / (p + h)
        if R == 1:
            level = protection.ppf(target)
        elif cycle is None:
            raise SupplyInputError(
                "a cost-optimal S with review_period > 1 needs the per-period demand (demand, "
                "or mu and sigma), not protection_demand"
            )
        else:
            level = _cycle_fractile(cycle, target)
    else:
        raise SupplyInputError(
            "give service_level (with service_type), or both h and p (cost-optimal S), or S"
        )

    if cycle is not None:
        on_hand = float(np.mean([d.complementary_loss(level) for d in cycle]))
        backorders = float(np.mean([d.loss(level) for d in cycle]))
    elif R == 1:
        on_hand = float(protection.complementary_loss(level))
        backorders = float(protection.loss(level))
    else:
        on_hand = backorders = None
    holding = None if h is None or on_hand is None else h * on_hand
    shortage = None if p is None or backorders is None else p * backorders
    total = None if holding is None or shortage is None else holding + shortage
    return OrderUpToPolicy(
        S=level,
        lead_time=L,
        review_period=R,
        protection_demand=protection,
        protection_mean=protection.mean,
        protection_std=protection.std,
        safety_stock=level - protection.mean,
        review_demand_mean=review_mean,
        service_type=kind,
        target=target,
        cycle_service_level=float(protection.cdf(level)),
        fill_rate=_fill_rate(float(protection.loss(level)), review_mean),
        expected_on_hand=on_hand,
        expected_backorders=backorders,
        h=h,
        p=p,
        holding_cost=holding,
        shortage_cost=shortage,
        total_cost=total,
    )


def _cycle_fractile(cycle: list[Demand], alpha: float) -> float:
    """Smallest ``S`` with ``(1/R) Σ_k F_{L+k}(S) >= alpha``."""
    levels = [d.ppf(alpha) for d in cycle]
    lo, hi = min(levels), max(levels)
    if lo == hi:
        return lo

    def excess(x: float) -> float:
        return alpha - float(np.mean([d.cdf(x) for d in cycle]))

    return _smallest_level(excess, cycle[0].integer_valued, lo - 1.0, hi)


def order_up_to_level(
    demand: Demand | None = None,
    *,
    service_level: float | None = None,
    service_type: str = "csl",
    lead_time: float = 0,
    review_period: int = 1,
    mu: float | None = None,
    sigma: float | None = None,
    protection_demand: Demand | None = None,
    review_demand_mean: float | None = None,
    h: float | None = None,
    p: float | None = None,
    S: float | None = None,
) -> OrderUpToPolicy:
    """Order-up-to level of a periodic-review (R, S) policy: :func:`base_stock` under its
    (R, S) name, with the same arguments, rules and result (see there). Typically called with
    ``service_level`` and ``service_type``; ``h`` and ``p`` then only price the result.

    Parameters
    ----------
    demand : Demand, optional
        Demand per period (i.i.d. across periods); or ``mu`` and ``sigma``; or
        ``protection_demand``.
    service_level : float, optional
        Target cycle service level α (``'csl'``) or fill rate β (``'fill_rate'``), strictly
        between 0 and 1.
    service_type : {'csl', 'fill_rate'}, default 'csl'
    lead_time : float, default 0
        Periods, >= 0.
    review_period : int, default 1
        Periods, a positive integer.
    mu, sigma : float, optional
        Normal demand per period (units).
    protection_demand : Demand, optional
        Demand over ``lead_time + review_period`` periods (e.g. summed forecast paths).
    review_demand_mean : float, optional
        ``E[D_R]``, units per review period (> 0).
    h, p : float, optional
        Holding and backorder cost per unit per period (> 0).
    S : float, optional
        Level to evaluate.

    Returns
    -------
    OrderUpToPolicy

    Raises
    ------
    SupplyInputError
        As :func:`base_stock`.
    """
    return base_stock(
        demand,
        h=h,
        p=p,
        service_level=service_level,
        service_type=service_type,
        lead_time=lead_time,
        review_period=review_period,
        mu=mu,
        sigma=sigma,
        protection_demand=protection_demand,
        review_demand_mean=review_demand_mean,
        S=S,
    )


# --------------------------------------------------------------------------- EOQ


def eoq(K: float, D: float, h: float, Q: float | None = None) -> EOQResult:
    """Economic order quantity ``Q* = √(2 K D / h)`` and its cost ``√(2 K D h)``.

    Snyder & Shen ch. 3 (eq. 3.4); Chopra & Meindl ch. 11. Cost per unit time
    ``K D / Q + h Q / 2``.

    Parameters
    ----------
    K : float
        Fixed cost per order (> 0).
    D : float
        Demand per unit time (units, > 0), the textbooks' λ.
    h : float
        Holding cost per unit per unit time (> 0).
    Q : float, optional
        Evaluate this order quantity (units, > 0) instead of ``Q*``.

    Returns
    -------
    EOQResult

    Raises
    ------
    SupplyInputError
        If ``K``, ``D``, ``h`` or ``Q`` is not > 0.
    """
    K = _checks.positive("K", K)
    D = _checks.positive("D", D)
    h = _checks.positive("h", h)
    q = math.sqrt(2.0 * K * D / h) if Q is None else _checks.positive("Q", Q)
    ordering, holding = K * D / q, h * q / 2.0
    total = math.sqrt(2.0 * K * D * h) if Q is None else ordering + holding
    return EOQResult(
        Q=q,
        K=K,
        D=D,
        h=h,
        order_frequency=D / q,
        cycle_time=q / D,
        ordering_cost=ordering,
        holding_cost=holding,
        total_cost=total,
    )


# --------------------------------------------------------------------------- (r, Q)


def _newsvendor_cost(dist: Demand, h: float, p: float):
    """``g(y) = h n̄(y) + p n(y)`` for the demand ``dist`` (vectorized)."""

    def g(y):
        return h * np.asarray(dist.complementary_loss(y)) + p * np.asarray(dist.loss(y))

    return g


def _rq_backorders(lt: Demand, r: float, Q: float) -> float:
    """Exact time-average backorders ``(n²(r) - n²(r + Q)) / Q``."""
    return float(lt.second_order_loss(r) - lt.second_order_loss(r + Q)) / Q


def _rq_fill_rate(lt: Demand, r: float, Q: float) -> float:
    return float(lt.complementary_loss(r + Q) - lt.complementary_loss(r)) / Q


def _rq_cost(lt: Demand, lam: float, r: float, Q: float, h: float, p: float, K: float) -> float:
    back = _rq_backorders(lt, r, Q)
    half = (Q + 1.0) / 2.0 if lt.integer_valued else Q / 2.0
    return K * lam / Q + h * (r + half - lt.mean + back) + p * back


def _rq_optimal_r(lt: Demand, Q: float, h: float, p: float) -> float:
    """Reorder point minimizing the (r, Q) cost for fixed ``Q``: ``g(r) = g(r + Q)`` (Snyder &
    Shen eq. 5.9) for normal demand; for Poisson the window ``r+1..r+Q`` with the least sum of
    ``g``."""
    g = _newsvendor_cost(lt, h, p)
    top = lt.ppf(p / (p + h))  # minimizer of g
    if not lt.integer_valued:
        return float(optimize.brentq(lambda r: float(g(r + Q) - g(r)), top - Q, top, xtol=1e-10))
    ys = np.arange(top - Q, top + Q + 1)  # r + 1 ranges over top - Q .. top + 1
    sums = np.convolve(g(ys), np.ones(int(Q)), mode="valid")  # Σ g(y), y = r+1..r+Q
    return float(ys[0] - 1 + int(np.argmin(sums)))


def _rq_poisson_optimal(lt: Demand, lam: float, h: float, p: float, K: float):
    """Federgruen & Zheng (1992): grow the window ``r+1..r+Q`` around the minimizer of ``g`` by
    the cheaper end until the average cost ``(Kλ + Σ g) / Q`` stops falling."""
    g = _newsvendor_cost(lt, h, p)
    top = lt.ppf(p / (p + h))
    r, Q = top - 1.0, 1
    total = float(g(top))
    cost = (K * lam + total) / Q
    while True:
        below, above = float(g(r)), float(g(r + Q + 1))
        add = min(below, above)
        new_cost = (K * lam + total + add) / (Q + 1)
        if new_cost > cost:
            return r, float(Q)
        if below < above:
            r -= 1.0
        total += add
        Q += 1
        cost = new_cost


def _rq_normal_optimal(lt: Demand, lam: float, h: float, p: float, K: float):
    """Joint minimum of the exact normal (r, Q) cost: ``r(Q)`` from ``g(r) = g(r+Q)`` and a
    bounded Brent search over ``Q`` (the cost is jointly convex; Zipkin 2000)."""
    q_b = math.sqrt(2.0 * K * lam * (h + p) / (h * p))  # EOQ with planned backorders

    def cost(q: float) -> float:
        return _rq_cost(lt, lam, _rq_optimal_r(lt, q, h, p), q, h, p, K)

    lo, hi = q_b / 20.0, 20.0 * q_b + 20.0 * lt.std
    res = optimize.minimize_scalar(cost, bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-9 * q_b})
    q = float(res.x)
    return _rq_optimal_r(lt, q, h, p), q


def r_q_policy(
    demand: Demand | None = None,
    *,
    lead_time: float,
    h: float | None = None,
    K: float | None = None,
    p: float | None = None,
    mu: float | None = None,
    sigma: float | None = None,
    Q: float | str | None = None,
    r: float | None = None,
    service_level: float | None = None,
    service_type: str = "csl",
) -> RQPolicy:
    """Continuous-review (r, Q) policy with exact expected cost for normal or Poisson demand.

    Order quantity: ``Q`` as given; ``Q=None`` — the EOQ ``√(2 K λ / h)`` (Snyder & Shen §5.2,
    the EOQ+SS approach; rounded to the cheaper neighbouring integer >= 1 for Poisson);
    ``Q='optimal'`` — jointly optimal ``(r, Q)`` given ``K`` and ``p`` (normal: exact cost
    minimized numerically; Poisson: Federgruen & Zheng 1992).

    Reorder point: ``r`` as given; else ``service_level`` — ``'csl'``: ``r = F⁻¹_L(α)``;
    ``'fill_rate'``: the smallest ``r`` with exact fill rate ``1 - (n(r) - n(r+Q))/Q >= β``;
    else cost-optimal for the given ``Q`` with ``p`` (``g(r) = g(r+Q)``, Snyder & Shen eq. 5.9).

    Expected performance is exact for the model (inventory position uniform on ``[r, r+Q]``,
    or on ``{r+1, …, r+Q}`` for Poisson unit demands; Snyder & Shen §5.2, eq. 5.7 and 5.48;
    Zipkin 2000): ``B(r,Q) = (n²(r) - n²(r+Q)) / Q``, ``I = r + Q/2 - λL + B`` (``(Q+1)/2``
    for Poisson) and ``g(r, Q) = (K λ + ∫_r^{r+Q} g(y) dy) / Q = Kλ/Q + h I + p B``, with ``n²``
    the second-order loss of lead-time demand (Zipkin's discrete form for Poisson).

    Parameters
    ----------
    demand : NormalDemand or PoissonDemand, optional
        Demand per unit time (rate λ = ``demand.mean``). Or ``mu`` and ``sigma``: normal
        demand per unit time.
    lead_time : float
        Lead time ``L`` (time units, > 0).
    h : float, optional
        Holding cost per unit per unit time (> 0); needed for ``Q=None``, ``Q='optimal'``, a
        cost-optimal ``r`` and the costs.
    K : float, optional
        Fixed cost per order (> 0); needed for ``Q=None`` and ``Q='optimal'``.
    p : float, optional
        Backorder cost per unit per unit time (> 0); needed for a cost-optimal ``r``.
    mu, sigma : float, optional
        Mean and standard deviation of normal demand per unit time (units).
    Q : float or 'optimal', optional
        Order quantity (units, > 0; an integer for Poisson).
    r : float, optional
        Reorder point to evaluate (an integer for Poisson).
    service_level : float, optional
        Target α or β, strictly between 0 and 1.
    service_type : {'csl', 'fill_rate'}, default 'csl'

    Returns
    -------
    RQPolicy

    Raises
    ------
    SupplyInputError
        If ``lead_time <= 0``, a cost is not > 0, ``service_level`` is not strictly between 0
        and 1, the demand is not normal or Poisson, ``Q`` or ``r`` is not an integer for
        Poisson, both ``r`` and ``service_level`` are given, or what ``Q`` or ``r`` needs is
        missing.
    """
    rate = _demand(demand, mu, sigma)
    if not isinstance(rate, NormalDemand | PoissonDemand):
        raise SupplyInputError(
            f"demand must be NormalDemand or PoissonDemand for r_q_policy, got "
            f"{type(rate).__name__}"
        )
    h = _checks.optional(_checks.positive, "h", h)
    L = _checks.positive("lead_time", lead_time)
    K = _checks.optional(_checks.positive, "K", K)
    p = _checks.optional(_checks.positive, "p", p)
    service_type = _service_type(service_type)
    if r is not None and service_level is not None:
        raise SupplyInputError("give either r or service_level, not both")
    lam = rate.mean
    lt = rate.over(L)
    discrete = lt.integer_valued

    r_given = None if r is None else (
        float(_checks.integer("r", r)) if discrete else _checks.real("r", r)
    )
    if isinstance(Q, str):
        if Q != "optimal":
            raise SupplyInputError(f"Q must be a number, None (EOQ) or 'optimal', got {Q!r}")
        if K is None or p is None or h is None:
            raise SupplyInputError("Q='optimal' needs h, K and p")
        if r is not None or service_level is not None:
            raise SupplyInputError("Q='optimal' sets r too: do not give r or service_level")
        if discrete:
            r_opt, q = _rq_poisson_optimal(lt, lam, h, p, K)
        else:
            r_opt, q = _rq_normal_optimal(lt, lam, h, p, K)
        q_method = "optimal"
    elif Q is None:
        if K is None or h is None:
            raise SupplyInputError("K and h are needed for the EOQ order quantity (or give Q)")
        q = eoq(K, lam, h).Q
        if discrete:
            cands = [c for c in (math.floor(q), math.ceil(q)) if c >= 1] or [1]
            q = float(min(cands, key=lambda c: K * lam / c + h * c / 2.0))
        q_method = "eoq"
    else:
        q = _checks.positive("Q", Q)
        if discrete:
            q = float(_checks.positive_int("Q", q))
        q_method = "given"

    target: float | None = None
    if q_method == "optimal":
        level, kind = r_opt, "cost"
    elif r_given is not None:
        level, kind = r_given, "given"
    elif service_level is not None:
        target = _checks.probability("service_level", service_level)
        kind = service_type
        if kind == "csl":
            level = lt.ppf(target)
        else:
            lo = lt.ppf(1e-9) - q - 1.0 if not discrete else -q - 1.0
            hi = lt.ppf(1 - 1e-12) + 1.0
            while _rq_fill_rate(lt, hi, q) < target:
                hi += lt.std + q
            level = _smallest_level(
                lambda x: target - _rq_fill_rate(lt, x, q), discrete, lo, hi
            )
    elif p is not None and h is not None:
        level, kind = _rq_optimal_r(lt, q, h, p), "cost"
    else:
        raise SupplyInputError("give r, service_level, or h and p (cost-optimal reorder point)")

    back = _rq_backorders(lt, level, q)
    on_hand = level + ((q + 1.0) / 2.0 if discrete else q / 2.0) - lt.mean + back
    ordering = None if K is None else K * lam / q
    holding = None if h is None else h * on_hand
    shortage = None if p is None else p * back
    total = (
        None if ordering is None or holding is None or shortage is None
        else ordering + holding + shortage
    )
    return RQPolicy(
        r=level,
        Q=q,
        lead_time=L,
        demand_rate=lam,
        lead_time_demand=lt,
        lead_time_mean=lt.mean,
        lead_time_std=lt.std,
        safety_stock=level - lt.mean,
        service_type=kind,
        target=target,
        q_method=q_method,
        cycle_service_level=float(lt.cdf(level)),
        fill_rate=_rq_fill_rate(lt, level, q),
        expected_on_hand=on_hand,
        expected_backorders=back,
        order_frequency=lam / q,
        h=h,
        p=p,
        K=K,
        ordering_cost=ordering,
        holding_cost=holding,
        shortage_cost=shortage,
        total_cost=total,
    )


# --------------------------------------------------------------------------- (s, S)


class _Renewal:
    """Renewal masses of cumulative period demand on a lattice: ``m(j)`` is the expected number
    of periods in which the cumulative demand since the last order equals ``j`` (Zheng &
    Federgruen 1991; Snyder & Shen eq. 4.71–4.75): ``m(0) = 1/(1 - f(0))``,
    ``m(j) = m(0) Σ_{l=1..j} f(l) m(j-l)``.
    """

    def __init__(self, pmf: np.ndarray) -> None:
        if pmf[0] >= 1.0:
            raise SupplyInputError("demand per period is zero with probability 1")
        self.pmf = pmf
        self.m = np.array([1.0 / (1.0 - pmf[0])])

    def masses(self, count: int) -> np.ndarray:
        m = self.m
        if count > m.size:
            f = np.zeros(count)
            k = min(count, self.pmf.size)
            f[:k] = self.pmf[:k]
            new = np.empty(count)
            new[: m.size] = m
            for j in range(m.size, count):
                new[j] = new[0] * np.dot(f[1 : j + 1], new[j - 1 :: -1])
            self.m = m = new
        return m[:count]


def _integer_pmf(dist: Demand) -> np.ndarray:
    top = int(dist.ppf(1.0 - 1e-15)) + 2
    return np.asarray(dist.pmf(np.arange(top + 1, dtype=float)), dtype=float)


def _ss_evaluate(renewal: _Renewal, levels: np.ndarray, per: Demand, lead_time: float,
                 h: float, p: float, K: float) -> dict:
    """Performance of an (s, S) policy whose inventory position after ordering takes the
    values ``levels[j] = S - j·δ`` with weights ``m(j) / M``."""
    m = renewal.masses(levels.size)
    big_m = float(m.sum())
    weights = m / big_m
    cover = per.over(lead_time + 1.0)
    back = float(weights @ np.asarray(cover.loss(levels)))
    on_hand = float(weights @ np.asarray(cover.complementary_loss(levels)))
    if lead_time > 0:
        carried = float(weights @ np.asarray(per.over(lead_time).loss(levels)))
    else:
        carried = float(weights @ np.maximum(-levels, 0.0))
    freq = 1.0 / big_m
    return {
        "cycle_service_level": float(weights @ np.asarray(cover.cdf(levels))),
        "fill_rate": _fill_rate(back - carried, per.mean),
        "expected_on_hand": on_hand,
        "expected_backorders": back,
        "order_frequency": freq,
        "ordering_cost": K * freq,
        "holding_cost": h * on_hand,
        "shortage_cost": p * back,
        "total_cost": K * freq + h * on_hand + p * back,
    }


def _zheng_federgruen(per: Demand, lead_time: float, h: float, p: float, K: float):
    """Zheng & Federgruen (1991) algorithm: optimal integer (s, S) and its cost
    ``c(s, S) = (K + Σ_{j=0}^{S-s-1} m(j) G(S - j)) / M(S - s)``."""
    cover = per.over(lead_time + 1.0)
    g = _newsvendor_cost(cover, h, p)
    renewal = _Renewal(_integer_pmf(per))

    def G(y: float) -> float:
        return float(g(y))

    def c(s: float, S: float) -> float:
        d = int(S - s)
        m = renewal.masses(d)
        return (K + float(m @ g(S - np.arange(d, dtype=float)))) / float(m.sum())

    y_star = cover.ppf(p / (p + h))
    s = y_star - 1.0
    S0 = y_star
    while c(s, S0) > G(s):
        s -= 1.0
    c0 = c(s, S0)
    S = S0 + 1.0
    while G(S) <= c0:
        if c(s, S) < c0:
            S0 = S
            while c(s, S0) <= G(s + 1.0):
                s += 1.0
            c0 = c(s, S0)
        S += 1.0
    return s, S0, renewal


def _power_approximation(per: Demand, lead_time: float, h: float, p: float, K: float,
                         small_order_rule: bool) -> tuple[float, float]:
    """Ehrhardt & Mosier (1984) revised power approximation (Snyder & Shen eq. 4.77–4.80)."""
    mu = per.mean
    cover = per.over(lead_time + 1.0)
    mu_l, sigma_l = cover.mean, cover.std
    q_p = 1.30 * mu**0.494 * (K / h) ** 0.506 * (1.0 + sigma_l**2 / mu**2) ** 0.116
    z = math.sqrt(q_p * h / (sigma_l * p))
    s_p = 0.973 * mu_l + sigma_l * (0.183 / z + 1.063 - 2.192 * z)
    if small_order_rule and q_p / mu <= 1.5:
        s0 = cover.ppf(p / (p + h))
        return min(s_p, s0), min(s_p + q_p, s0)
    return s_p, s_p + q_p


def s_S_policy(
    demand: Demand | None = None,
    *,
    h: float,
    p: float,
    K: float,
    lead_time: int = 0,
    mu: float | None = None,
    sigma: float | None = None,
    s: float | None = None,
    S: float | None = None,
    method: str = "auto",
    small_order_rule: bool = True,
    lattice_points_per_sigma: int = 25,
) -> SSPolicy:
    """Periodic-review (s, S) policy with a fixed order cost.

    Backorders; costs ``G(y) = h n̄_{L+1}(y) + p n_{L+1}(y)`` charged on demand over
    ``L + 1`` periods at inventory position ``y`` after ordering, plus ``K`` per order.

    * ``method='exact'`` (default for integer-valued demand: Poisson, negative binomial, integer
      samples): the optimal policy by Zheng & Federgruen (1991) (Snyder & Shen,
      Algorithm 4.2), with exact cost ``c(s, S) = (K + Σ_{j<S-s} m(j) G(S-j)) / M(S-s)``
      (Snyder & Shen eq. 4.71–4.75).
    * ``method='power'`` (default for normal demand): the revised power approximation of
      Ehrhardt & Mosier (1984), Snyder & Shen eq. 4.77–4.80:
      ``Q_p = 1.30 μ^0.494 (K/h)^0.506 (1 + σ²_{L+1}/μ²)^0.116``,
      ``z = √(Q_p h / (σ_{L+1} p))``,
      ``s = 0.973 μ_{L+1} + σ_{L+1} (0.183/z + 1.063 − 2.192 z)``, ``S = s + Q_p``; with
      ``small_order_rule`` (Ehrhardt 1979), when ``Q_p / μ <= 1.5`` both are capped at the
      newsvendor level ``S0 = F⁻¹_{L+1}(p/(p+h))`` (``s = S = S0`` is then possible: order up
      to ``S0`` in every period with demand, a base-stock policy). For integer-valued demand
      ``s`` and ``S`` are rounded.

    Performance uses the stationary inventory position ``P(IP = S - j) = m(j) / M(S - s)``;
    exact for integer-valued demand. For normal demand it is computed on a lattice of step
    ``δ ≈ σ / lattice_points_per_sigma`` (period demand rounded to the lattice, negative
    demand counted as 0; the loss functions themselves are exact; at most 4,000 points
    between ``s`` and ``S``), which carries an error of order δ (within 0.5% of simulated
    costs in our checks).

    Parameters
    ----------
    demand : Demand, optional
        Demand per period (independent, identically distributed). Or ``mu`` and ``sigma``.
    h : float
        Holding cost per unit per period (> 0).
    p : float
        Backorder cost per unit per period (> 0).
    K : float
        Fixed cost per order (> 0).
    lead_time : int, default 0
        Lead time ``L`` (periods, a non-negative integer).
    mu, sigma : float, optional
        Mean and standard deviation of normal demand per period (units).
    s, S : float, optional
        Evaluate this policy instead (both; ``S > s``; integers for integer-valued demand).
    method : {'auto', 'exact', 'power'}, default 'auto'
    small_order_rule : bool, default True
        Apply the ``Q_p / μ <= 1.5`` cap of the power approximation. ``False`` reproduces the
        plain formulas printed by Snyder & Shen.
    lattice_points_per_sigma : int, default 25
        Lattice resolution for evaluating normal demand.

    Returns
    -------
    SSPolicy

    Raises
    ------
    SupplyInputError
        If ``h``, ``p`` or ``K`` is not > 0, ``lead_time`` is not a non-negative integer, the
        method is unknown or ``'exact'`` with non-integer demand, only one of ``s``/``S`` is
        given, ``S < s`` (``S <= s`` for integer-valued demand), or the demand is missing or
        given twice.
    """
    per = _demand(demand, mu, sigma)
    h = _checks.positive("h", h)
    p = _checks.positive("p", p)
    K = _checks.positive("K", K)
    L = _checks.nonnegative("lead_time", lead_time)
    if L != int(L):
        raise SupplyInputError(f"lead_time must be a non-negative integer, got {lead_time!r}")
    points = _checks.positive_int("lattice_points_per_sigma", lattice_points_per_sigma)
    if method not in ("auto", "exact", "power"):
        raise SupplyInputError(f"method must be 'auto', 'exact' or 'power', got {method!r}")
    integer = per.integer_valued
    if method == "exact" and not integer:
        raise SupplyInputError(
            f"method='exact' needs integer-valued demand (Poisson, negative binomial, integer "
            f"samples), got {type(per).__name__}; use method='power'"
        )
    if (s is None) != (S is None):
        raise SupplyInputError("give both s and S to evaluate a policy, or neither")

    renewal = None
    if s is not None:
        lo, hi = _checks.real("s", s), _checks.real("S", S)
        if integer:
            lo, hi = float(_checks.integer("s", lo)), float(_checks.integer("S", hi))
        if hi < lo or (integer and hi == lo):
            raise SupplyInputError(
                f"S must be > s (>= s for normal demand), got s={s!r}, S={S!r}"
            )
        label = "given"
    elif method == "power" or (method == "auto" and not integer):
        lo, hi = _power_approximation(per, L, h, p, K, small_order_rule)
        if integer:
            lo = float(round(lo))
            hi = max(lo + 1.0, float(round(hi)))
        label = "power-approximation"
    else:
        lo, hi, renewal = _zheng_federgruen(per, L, h, p, K)
        label = "zheng-federgruen"

    if integer:
        renewal = renewal or _Renewal(_integer_pmf(per))
        levels = hi - np.arange(int(hi - lo), dtype=float)
        evaluation = "exact"
    else:
        # At most 4,000 lattice points between s and S (the renewal masses cost O(count²)).
        # s = S (the power approximation's cap can give it) orders every period with demand.
        count = min(4000, max(1, math.ceil((hi - lo) * points / per.std)))
        step = (hi - lo) / count if hi > lo else per.std / points
        top = math.ceil((per.mean + 12.0 * per.std) / step) + 1
        edges = (np.arange(top + 1) + 0.5) * step
        cdf = np.asarray(per.cdf(edges))
        renewal = _Renewal(np.diff(np.concatenate(([0.0], cdf))))
        levels = hi - step * np.arange(count)
        evaluation = "lattice"
    perf = _ss_evaluate(renewal, levels, per, L, h, p, K)
    return SSPolicy(s=lo, S=hi, lead_time=L, method=label, evaluation=evaluation,
                    h=h, p=p, K=K, **perf)
