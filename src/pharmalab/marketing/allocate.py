"""Budget allocation over the posterior, within what supply can deliver: :func:`allocate_budget`.

The question of a brand team each quarter: for a total budget over the next ``N`` periods,
how much should each channel get? The plan spreads each channel's total evenly over the
periods and over the regions in the channel's historical regional split (Meridian's and
PyMC-Marketing's convention); its value is the expected number of units it adds — over the
plan's periods and the carry-over after them — averaged over the posterior draws, so the
uncertainty of the response curves is part of the decision.

**Supply-aware.** With a capacity (units that can be supplied per period, nationally or per
region), only demand that can be served counts: a draw's expected served units in a period
are ``E[min(D, c)] = μ − σ·L((c − μ)/σ)`` for demand ``D ~ N(μ, σ²)`` and capacity ``c``
(``L`` the standard normal loss function), and the plan's value is the served units with the
plan minus those without it. Demand the supply plan cannot serve earns nothing, so the
optimizer stops funding it: money goes to channels and regions with room, or stays unspent
(a plan is never charged for spend that adds less than 0.1% of the average return per euro).

With logistic curves (and Hill curves of slope ≤ 1) the objective is concave in the spend
(the curves and ``min(·, c)`` are concave), so SLSQP's local optimum is the global one; with
S-shaped Hill curves SLSQP starts from the current split and from an even split and keeps
the better.

References
----------
Jin et al. (2017); Google Meridian's budget optimization (fixed budget, spend bounds per
channel, historical flighting); Snyder & Shen (2019) for the normal loss function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab.errors import MarketingInputError
from pharmalab.marketing.model import MMMFit
from pharmalab.marketing.posterior import Posterior

__all__ = ["Allocation", "ResponseModel", "allocate_budget", "evaluate_plan", "read_bounds",
           "read_capacity", "DEFAULT_BOUND", "plan_spend"]

# Without a bounds file each channel may move ±30% from its current share (Meridian's
# default spend constraint): response curves are only known near the spend observed.
DEFAULT_BOUND = 0.3
MAX_DRAWS = 500  # posterior draws the optimizer averages over
_TIE = 1e-3  # a euro must return at least this share of the average return to be spent


@dataclass(frozen=True)
class ResponseModel:
    """Expected demand under a future spend plan, per draw: the fitted posterior or a
    simulator's truth behind the same interface.

    Attributes
    ----------
    dates : pandas.DatetimeIndex
        The plan's periods followed by the carry-over periods.
    periods : int
        Plan periods (the rest of ``dates`` is carry-over).
    geos, channels : tuple of str
    baseline : numpy.ndarray
        ``(draw, period, geo)`` expected demand without promotion in those periods.
    history : numpy.ndarray
        ``(lag, geo, channel)`` the last spend before the plan (its carry-over counts).
    media : callable
        ``media(spend (period, geo, channel)) -> (draw, period, geo, channel)`` units.
    sigma : numpy.ndarray
        ``(draw, geo)`` noise standard deviation of demand, units (0 for a known truth).
    geo_share : numpy.ndarray
        ``(geo, channel)`` each channel's historical split over regions.
    current : numpy.ndarray
        ``(channel,)`` the historical split over channels (shares summing to 1).
    """

    dates: pd.DatetimeIndex
    periods: int
    geos: tuple[str, ...]
    channels: tuple[str, ...]
    baseline: np.ndarray
    history: np.ndarray
    media: object
    sigma: np.ndarray
    geo_share: np.ndarray
    current: np.ndarray

    @classmethod
    def from_fit(cls, fit: MMMFit, periods: int, *, max_draws: int = MAX_DRAWS,
                 seed: int = 0) -> ResponseModel:
        """The response of a fitted model for ``periods`` periods after its data (controls
        held at their last values; the trend and seasonality carried on)."""
        post: Posterior = fit.posterior
        if post.draws > max_draws:
            keep = np.sort(np.random.default_rng(seed).choice(post.draws, max_draws,
                                                              replace=False))
            post = post.subset(keep)
        panel = fit.panel
        tail = post.l_max - 1
        dates = pd.date_range(panel.dates[-1], periods=periods + tail + 1,
                              freq=panel.freq)[1:]
        lag = post.l_max - 1
        history = panel.spend[len(panel.dates) - lag:] if lag else panel.spend[:0]
        zeros = np.zeros((len(dates),) + history.shape[1:])
        last = (panel.grid(list(panel.controls))[-1] if panel.controls
                else np.zeros((len(panel.geos), 0)))
        controls = np.broadcast_to(last, (len(dates),) + last.shape)
        # the baseline: every part but the channels (their carry-over is the objective's)
        parts = post.components(dates, zeros, controls)
        baseline = sum(v for k, v in parts.items() if k not in post.channels)
        # plans are in EUR; activity channels turn EUR into activity at their historical
        # cost per unit (history too: its carry-over is spend / cost, on average)
        return cls(dates, periods, post.geos, post.channels, baseline, history,
                   post.media_from_spend, post.sigma_units, _geo_share(panel.spend),
                   _channel_share(panel.spend))


    @classmethod
    def from_truth(cls, truth, periods: int) -> ResponseModel:
        """The true response of a simulated brand (:class:`~pharmalab.marketing.simulate.
        BrandTruth`): one "draw", no noise — for scoring a plan against the truth."""
        tail = truth.spec.l_max - 1
        dates, base = truth.future(periods + tail)
        history = truth.spend[len(truth.dates) - tail:] if tail else truth.spend[:0]
        return cls(dates, int(periods), tuple(truth.geos), tuple(truth.channels), base[None],
                   history, lambda spend: truth.media(spend)[None],
                   np.zeros((1, len(truth.geos))), _geo_share(truth.spend),
                   _channel_share(truth.spend))


def evaluate_plan(model: ResponseModel, totals, capacity: pd.DataFrame | None = None
                  ) -> np.ndarray:
    """Units a plan adds, per draw ``(draw,)``: ``totals`` is EUR over the plan per channel
    ``(channel,)`` (split over regions historically) or per region and channel ``(geo,
    channel)``; with ``capacity`` only served units count."""
    objective = _Objective(model, _capacity_grid(capacity, model)[0])
    return objective.uplift(_cells(model, totals))


def _geo_share(spend: np.ndarray) -> np.ndarray:
    totals = spend.sum(axis=0)  # (geo, channel)
    return totals / totals.sum(axis=0, keepdims=True)


def _channel_share(spend: np.ndarray) -> np.ndarray:
    totals = spend.sum(axis=(0, 1))
    return totals / totals.sum()


def plan_spend(cells: np.ndarray, periods: int) -> np.ndarray:
    """Spend ``(period, geo, channel)``: each (region, channel) total (EUR over the plan,
    ``(geo, channel)``) spread evenly over ``periods``."""
    per_period = np.asarray(cells, dtype=float) / periods
    return np.broadcast_to(per_period, (periods,) + per_period.shape).copy()


def _cells(model: ResponseModel, plan) -> np.ndarray:
    """A plan as ``(geo, channel)`` EUR: channel totals ``(channel,)`` are split over regions
    by the historical regional split."""
    plan = np.asarray(plan, dtype=float)
    return plan[None, :] * model.geo_share if plan.ndim == 1 else plan


@dataclass
class _Objective:
    """Expected (served) units of a plan, per draw, with the zero plan precomputed."""

    model: ResponseModel
    capacity: np.ndarray | None  # (period, geo) or (period, 1) for a national capacity

    def __post_init__(self) -> None:
        m = self.model
        self._lag = len(m.history)
        n = len(m.dates)
        self._carry = np.concatenate([m.history, np.zeros((n,) + m.history.shape[1:])])
        self.zero_demand = self._demand_from(self._media(self._carry))
        self.zero_served = self.served(self.zero_demand)

    def _media(self, full: np.ndarray) -> np.ndarray:
        return self.model.media(full)[:, self._lag:]  # (draw, period, geo, channel)

    def _demand_from(self, media: np.ndarray) -> np.ndarray:
        return self.model.baseline + media.sum(axis=-1)

    def spend(self, cells: np.ndarray) -> np.ndarray:
        m = self.model
        full = self._carry.copy()
        full[self._lag:self._lag + m.periods] += plan_spend(cells, m.periods)
        return full

    def channel_units(self, cells: np.ndarray) -> np.ndarray:
        """``(draw, channel)`` units each channel's plan spend adds (no capacity)."""
        with_plan = self._media(self.spend(cells)).sum(axis=(1, 2))
        without = self._media(self._carry).sum(axis=(1, 2))
        return with_plan - without

    def demand(self, cells: np.ndarray) -> np.ndarray:
        """``(draw, period, geo)`` expected demand with the plan ``(geo, channel)``."""
        return self._demand_from(self._media(self.spend(cells)))

    def served(self, demand: np.ndarray) -> np.ndarray:
        """``(draw,)`` expected units served over all periods and regions."""
        if self.capacity is None:
            return demand.sum(axis=(1, 2))
        from pharmalab.supply import standard_normal_loss

        sigma = self.model.sigma  # (draw, geo)
        if self.capacity.shape[1] == 1 and demand.shape[2] > 1:  # a national capacity
            mu = demand.sum(axis=2, keepdims=True)
            sigma = np.sqrt((sigma ** 2).sum(axis=1, keepdims=True))
        else:
            mu = demand
        cap = self.capacity[None]
        sd = np.maximum(sigma[:, None, :], 1e-9)
        limited = np.isfinite(cap)
        z = np.where(limited, (np.where(limited, cap, 0.0) - mu) / sd, 0.0)
        served = np.where(limited, mu - sd * standard_normal_loss(z), mu)
        return served.sum(axis=(1, 2))

    def uplift(self, cells: np.ndarray) -> np.ndarray:
        """``(draw,)`` units (served, with a capacity) the plan ``(geo, channel)`` adds."""
        return self.served(self.demand(cells)) - self.zero_served


@dataclass
class Allocation:
    """A recommended budget split and what it is expected to bring.

    Attributes
    ----------
    table : pandas.DataFrame
        ``allocation.csv``: ``channel, current_spend, recommended_spend, change,
        expected_incremental_units, lo, hi`` (EUR over the plan; the demand the channel's
        plan adds over the plan and its carry-over periods, units, 90% interval), then
        ``current_incremental_units, min_spend, max_spend`` and, with a capacity,
        ``unconstrained_spend`` and — on the ``Total`` row only — ``expected_served_units,
        served_lo, served_hi`` (what can be supplied); a last row ``Total`` (sums).
    summary : dict
        ``allocation_summary.json``: budget, periods, uplift of the recommended and the
        current split (units and value, with intervals), the supply-aware figures (budget
        left unspent, moved, served units of the unconstrained plan), notes.
    demand : numpy.ndarray
        ``(draw, period, geo)`` expected demand under the recommended plan (plan periods
        and carry-over).
    model : ResponseModel
    notes : list of str
    plan : numpy.ndarray
        ``(geo, channel)`` recommended EUR over the plan.
    by_geo : pandas.DataFrame or None
        ``allocation_by_geo.csv`` when regions were allocated too: ``channel, geo,
        current_spend, recommended_spend, change`` (and ``unconstrained_spend``).
    """

    table: pd.DataFrame
    summary: dict
    demand: np.ndarray
    model: ResponseModel
    notes: list[str] = field(default_factory=list)
    plan: np.ndarray | None = None
    by_geo: pd.DataFrame | None = None


def allocate_budget(fit: MMMFit | None, budget: float, periods: int, *,
                    bounds: pd.DataFrame | None = None,
                    capacity: pd.DataFrame | None = None,
                    by_geo: bool | None = None,
                    model: ResponseModel | None = None,
                    unit_value: float | None = None) -> Allocation:
    """Split ``budget`` over the channels (and regions) to maximize expected incremental
    units over the next ``periods`` periods, within per-channel bounds and (optionally)
    supply capacity.

    Parameters
    ----------
    fit : MMMFit or None
        The fitted model (None when ``model`` is given).
    budget : float
        Total spend over the plan, EUR (> 0).
    periods : int
        Plan length in periods of the panel (≥ 1).
    bounds : pandas.DataFrame, optional
        ``channel, min, max`` (EUR over the plan; :func:`read_bounds`). Default: each
        channel within ±30% of its historical share of the budget.
    capacity : pandas.DataFrame, optional
        ``ds, geo, capacity`` (units per period; ``geo`` ``None`` for a national capacity;
        :func:`read_capacity`).
    by_geo : bool, optional
        Also choose each channel's split over regions (each region-channel between 0 and
        twice its historical share of the channel's maximum). Default: when the capacity is
        given per region.
    model : ResponseModel, optional
        Evaluate another response (e.g. a simulator's truth) instead of ``fit``'s.
    unit_value : float, optional
        EUR per unit (default: the fit's).

    Returns
    -------
    Allocation

    Raises
    ------
    MarketingInputError
        A budget ≤ 0, periods < 1, bounds that cannot hold the budget.
    """
    if not np.isfinite(budget) or budget <= 0:
        raise MarketingInputError(f"--budget must be a positive amount in EUR, got {budget!r}")
    if int(periods) != periods or periods < 1:
        raise MarketingInputError(f"--periods must be a whole number ≥ 1, got {periods!r}")
    model = model or ResponseModel.from_fit(fit, int(periods))
    value = unit_value if unit_value is not None else (fit.unit_value if fit else 1.0)
    channels = list(model.channels)
    current = _cells(model, model.current * budget)
    lo, hi, bound_note = _bounds(bounds, channels, current.sum(axis=0), budget)
    cap, cap_note = _capacity_grid(capacity, model)
    if by_geo is None:
        by_geo = cap is not None and cap.shape[1] > 1
    by_geo = bool(by_geo) and len(model.geos) > 1
    notes = [n for n in (bound_note, cap_note, _scale_note(model, budget)) if n]

    free = _Objective(model, None)
    free_plan = _optimize(free, budget, lo, hi, spend_all=True, by_geo=by_geo)
    if cap is None:
        plan, objective = free_plan, free
    else:
        objective = _Objective(model, cap)
        plan = _optimize(objective, budget, lo, hi, spend_all=False, by_geo=by_geo,
                         start=free_plan)

    rec, cur, unc = plan.sum(axis=0), current.sum(axis=0), free_plan.sum(axis=0)
    # per channel and in total: the demand the plan adds; with a capacity the Total row also
    # gives the units that can be served (not attributable to one channel)
    units_rec = objective.channel_units(plan)
    units_cur = objective.channel_units(current)
    rows = []
    for k, channel in enumerate(channels):
        mean, q_lo, q_hi = _summ(units_rec[:, k])
        row = {"channel": channel, "current_spend": cur[k], "recommended_spend": rec[k],
               "change": rec[k] - cur[k], "expected_incremental_units": mean, "lo": q_lo,
               "hi": q_hi, "current_incremental_units": float(units_cur[:, k].mean()),
               "min_spend": lo[k], "max_spend": hi[k]}
        if cap is not None:
            row.update({"unconstrained_spend": unc[k], "expected_served_units": np.nan,
                        "served_lo": np.nan, "served_hi": np.nan})
        rows.append(row)
    up_rec = objective.uplift(plan)
    up_cur = objective.uplift(current)
    mean, q_lo, q_hi = _summ(units_rec.sum(axis=1))
    total = {"channel": "Total", "current_spend": cur.sum(), "recommended_spend": rec.sum(),
             "change": rec.sum() - cur.sum(), "expected_incremental_units": mean, "lo": q_lo,
             "hi": q_hi, "current_incremental_units": float(units_cur.sum(axis=1).mean()),
             "min_spend": float(lo.sum()), "max_spend": float(hi.sum())}
    if cap is not None:
        s_mean, s_lo, s_hi = _summ(up_rec)
        total.update({"unconstrained_spend": unc.sum(), "expected_served_units": s_mean,
                      "served_lo": s_lo, "served_hi": s_hi})
    table = _tidy(pd.DataFrame(rows + [total]))
    by_region = None
    if by_geo:
        g, c = np.meshgrid(range(len(model.geos)), range(len(channels)), indexing="ij")
        by_region = pd.DataFrame({
            "channel": [channels[k] for k in c.ravel()],
            "geo": [model.geos[i] for i in g.ravel()],
            "current_spend": current.ravel(), "recommended_spend": plan.ravel(),
            "change": (plan - current).ravel()})
        if cap is not None:
            by_region["unconstrained_spend"] = free_plan.ravel()
        by_region = _tidy(by_region.sort_values(["channel", "geo"]).reset_index(drop=True))

    summary = {
        "budget": float(budget), "periods": int(model.periods),
        "first_period": model.dates[0].strftime("%Y-%m-%d"),
        "last_period": model.dates[model.periods - 1].strftime("%Y-%m-%d"),
        "carryover_periods": len(model.dates) - model.periods,
        "unit_value": float(value),
        "recommended": _uplift_summary(up_rec, value, rec.sum()),
        "current": _uplift_summary(up_cur, value, cur.sum()),
        "supply_aware": cap is not None,
        "by_geo": by_geo,
        "optimizer_draws": int(model.baseline.shape[0]),
        "bounds": "file" if bounds is not None else f"±{DEFAULT_BOUND:.0%} of current",
    }
    if cap is not None:
        up_free = objective.uplift(free_plan)
        unspent = round(max(float(budget - plan.sum()), 0.0), 2)
        # money taken from some channels/regions and given to others, beyond what was cut
        moved = round(max(float(np.abs(plan - free_plan).sum() - unspent) / 2, 0.0), 2)
        summary["supply"] = {
            "unconstrained_plan": _uplift_summary(up_free, value, free_plan.sum()),
            "unconstrained_plan_demand_units": float(free.uplift(free_plan).mean()),
            "budget_unspent": unspent,
            "budget_moved": moved,
            "capacity_periods": int(np.isfinite(cap).any(axis=1).sum()),
        }
        notes.append(
            f"supply-aware: {unspent:,.0f} EUR of the budget left unspent and {moved:,.0f} "
            f"EUR moved{' between channels and regions' if by_geo else ' between channels'} "
            "compared with the plan that ignores capacity; expected served uplift "
            f"{up_rec.mean():,.0f} units against {up_free.mean():,.0f} for that plan")
    summary["notes"] = notes
    return Allocation(table, summary, objective.demand(plan), model, notes, plan, by_region)


def _tidy(table: pd.DataFrame) -> pd.DataFrame:
    """EUR to the cent and units to a tenth, without ``-0`` or ``1e-11`` left by the
    optimizer's arithmetic."""
    out = table.copy()
    for column in out.columns:
        if column.endswith("_spend") or column == "change":
            out[column] = out[column].astype(float).round(2) + 0.0
        elif out[column].dtype.kind == "f":
            out[column] = out[column].round(1) + 0.0
    return out


def _scale_note(model: ResponseModel, budget: float) -> str | None:
    """A budget far from the spend the curves were learnt on is extrapolation."""
    history = model.history
    if not len(history):
        return None
    per_period = budget / model.periods
    usual = float(history.sum(axis=(1, 2)).mean())
    if usual <= 0:
        return None
    ratio = per_period / usual
    if 0.5 <= ratio <= 2.0:
        return None
    return (f"the budget is {ratio:.2g}× the recent spend per period ({usual:,.0f} EUR): the "
            "response curves are extrapolated far from the spend they were fitted on")


def _summ(draws: np.ndarray) -> tuple[float, float, float]:
    lo, hi = np.quantile(draws, [0.05, 0.95])
    return float(draws.mean()), float(lo), float(hi)


def _uplift_summary(draws: np.ndarray, value: float, spend: float) -> dict:
    mean, lo, hi = _summ(draws)
    return {"spend": float(spend), "incremental_units": mean, "incremental_units_lo": lo,
            "incremental_units_hi": hi, "incremental_value": mean * value,
            "roi": mean * value / spend if spend > 0 else None}


def _bounds(bounds: pd.DataFrame | None, channels: list[str], current: np.ndarray,
            budget: float) -> tuple[np.ndarray, np.ndarray, str | None]:
    if bounds is None:
        lo, hi = current * (1 - DEFAULT_BOUND), current * (1 + DEFAULT_BOUND)
        note = (f"no bounds file: each channel kept within ±{DEFAULT_BOUND:.0%} of its "
                "historical share of the budget (response curves are known near the spend "
                "observed); give --bounds to widen")
    else:
        table = bounds.set_index("channel")
        source = bounds.attrs.get("source", "bounds")
        unknown = sorted(set(table.index) - set(channels))
        if unknown:
            raise MarketingInputError(f"{source}: channel {unknown[0]!r} is not in the model "
                                      f"(channels: {', '.join(channels)})")
        default_lo, default_hi = current * (1 - DEFAULT_BOUND), current * (1 + DEFAULT_BOUND)
        lo = np.array([float(table["min"].get(c, default_lo[k]))
                       for k, c in enumerate(channels)])
        hi = np.array([float(table["max"].get(c, default_hi[k]))
                       for k, c in enumerate(channels)])
        note = None
        missing = [c for c in channels if c not in table.index]
        if missing:
            note = (f"{source}: {', '.join(missing)} not in the file: kept within "
                    f"±{DEFAULT_BOUND:.0%} of the current split")
    hi = np.minimum(hi, budget)
    if lo.sum() > budget + 1e-6:
        raise MarketingInputError(f"the channels' minimum spends add up to {lo.sum():,.0f} "
                                  f"EUR, more than the budget {budget:,.0f} EUR")
    if hi.sum() < budget - 1e-6:
        raise MarketingInputError(f"the channels' maximum spends add up to {hi.sum():,.0f} "
                                  f"EUR, less than the budget {budget:,.0f} EUR")
    return lo, hi, note


def _optimize(objective: _Objective, budget: float, lo: np.ndarray, hi: np.ndarray, *,
              spend_all: bool, by_geo: bool, start: np.ndarray | None = None) -> np.ndarray:
    """SLSQP on shares of the budget; returns the plan ``(geo, channel)`` in EUR.

    Channel level: one share per channel, split over regions historically. ``by_geo``: one
    share per region-channel, each channel's sum within its bounds. ``spend_all`` makes the
    budget an equality (otherwise at most the budget, spend that returns too little is cut).
    """
    from scipy.optimize import minimize

    share = objective.model.geo_share  # (geo, channel)
    n_geo, n_ch = share.shape
    lo_s, hi_s = lo / budget, hi / budget
    if by_geo:
        def cells(x):
            return x.reshape(n_geo, n_ch) * budget
        cell_hi = np.minimum(2 * share * hi_s[None, :], hi_s[None, :]).ravel()
        box = list(zip(np.zeros(n_geo * n_ch), cell_hi, strict=True))
        rules = [{"type": "ineq", "fun": lambda x: x.reshape(n_geo, n_ch).sum(axis=0) - lo_s},
                 {"type": "ineq", "fun": lambda x: hi_s - x.reshape(n_geo, n_ch).sum(axis=0)}]
        base = (start / budget if start is not None
                else share * _feasible(objective.model.current, lo_s, hi_s)[None, :])
        starts = [np.clip(base.ravel(), 0, cell_hi)]
    else:
        def cells(x):
            return np.clip(x, lo_s, hi_s)[None, :] * share * budget
        box = list(zip(lo_s, hi_s, strict=True))
        rules = []
        first = (objective.model.current if start is None
                 else start.sum(axis=0) / budget)
        starts = [_feasible(first, lo_s, hi_s),
                  _feasible(np.full(n_ch, 1.0 / n_ch), lo_s, hi_s)]
    scale = max(float(objective.uplift(cells(starts[0])).mean()), 1.0)
    # spending the whole budget returns about `scale`: a share of it must return more than
    # _TIE of that average to be spent when spending all is not required
    penalty = 0.0 if spend_all else _TIE

    def loss(x: np.ndarray) -> float:
        return -float(objective.uplift(cells(x)).mean()) / scale + penalty * x.sum()

    rules.append({"type": "eq", "fun": lambda x: x.sum() - 1.0} if spend_all
                 else {"type": "ineq", "fun": lambda x: 1.0 - x.sum()})
    best, best_loss = None, np.inf
    for x0 in starts:
        result = minimize(loss, x0, method="SLSQP", bounds=box, constraints=rules,
                          options={"maxiter": 300, "ftol": 1e-10, "eps": 1e-6})
        x = np.clip(result.x, [b[0] for b in box], [b[1] for b in box])
        if not by_geo and spend_all:
            x = _feasible(x, lo_s, hi_s)
        value = loss(x)
        if value < best_loss:
            best, best_loss = x, value
    return cells(best)


def _feasible(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Shares within bounds summing to 1 (the closest by repeated rescaling)."""
    x = np.clip(np.asarray(x, dtype=float), lo, hi)
    for _ in range(100):
        gap = 1.0 - x.sum()
        if abs(gap) < 1e-12:
            break
        room = (hi - x) if gap > 0 else (x - lo)
        if room.sum() <= 0:
            break
        x = np.clip(x + gap * room / room.sum(), lo, hi)
    return x


def _capacity_grid(capacity: pd.DataFrame | None, model: ResponseModel
                   ) -> tuple[np.ndarray | None, str | None]:
    """``(period, geo)`` capacity (inf where none), or ``(period, 1)`` for a national one,
    over the plan and its carry-over periods; and a note when the capacity was carried on.

    A region's capacity continues at its last value after the file's last date (the plan's
    effect lasts beyond its periods, and so does the supply constraint); periods between
    rows that have none are unconstrained.
    """
    if capacity is None or capacity.empty:
        return None, None
    national = capacity["geo"].isna().all()
    width = 1 if national else len(model.geos)
    grid = np.full((len(model.dates), width), np.inf)
    where = {d: i for i, d in enumerate(model.dates)}
    for row in capacity.itertuples(index=False):
        i = where.get(pd.Timestamp(row.ds))
        if i is None:
            continue
        g = 0 if national else model.geos.index(row.geo)
        grid[i, g] = float(row.capacity)
    if not np.isfinite(grid).any():
        first = pd.Timestamp(capacity["ds"].min())
        raise MarketingInputError(
            f"capacity: no row falls in the plan's periods {model.dates[0]:%Y-%m-%d} … "
            f"{model.dates[model.periods - 1]:%Y-%m-%d} or the {len(model.dates) - model.periods}"
            f" carry-over periods after them (the file starts {first:%Y-%m-%d})")
    carried = 0
    for g in range(width):
        given = np.flatnonzero(np.isfinite(grid[:, g]))
        if len(given) and given[-1] < len(grid) - 1:
            carried = max(carried, len(grid) - 1 - given[-1])
            grid[given[-1] + 1:, g] = grid[given[-1], g]
    note = None
    if carried:
        note = (f"capacity: the file ends before the plan's effect does; its last value per "
                f"{'period' if national else 'region'} was carried over the last {carried} "
                "period(s) (plan periods and carry-over)")
    return grid, note


def read_bounds(path: str | Path) -> pd.DataFrame:
    """Read per-channel spend bounds: a CSV ``channel, min, max`` (EUR over the plan).

    Raises
    ------
    MarketingInputError
        Missing file or column, a channel given twice, a bound that is not a number ≥ 0,
        ``min > max``.
    """
    path = Path(path)
    frame = _read_csv(path, "bounds file", ("channel", "min", "max"))
    if frame["channel"].duplicated().any():
        raise MarketingInputError(f"{path.name}: channel "
                                  f"{frame['channel'][frame['channel'].duplicated()].iloc[0]!r}"
                                  " appears twice")
    for column in ("min", "max"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            found = frame[column].iloc[row]
            raise MarketingInputError(
                f"{path.name}: data row {row + 1}: {column} must be a number ≥ 0 (EUR), got "
                f"{'an empty cell' if pd.isna(found) else _shown(found)}")
        frame[column] = values.astype(float)
    wrong = frame["min"] > frame["max"]
    if wrong.any():
        row = frame[wrong].iloc[0]
        raise MarketingInputError(f"{path.name}: channel {row['channel']!r}: min "
                                  f"{row['min']:,.0f} is above max {row['max']:,.0f}")
    frame["channel"] = frame["channel"].astype(str)
    out = frame[["channel", "min", "max"]].copy()
    out.attrs["source"] = path.name
    return out


def read_capacity(path: str | Path, geos: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Read supply capacity: a CSV ``ds[, geo], capacity`` (units per period), or a
    ``pharmalab supply`` output folder with ``orders.csv``.

    From a supply folder the capacity of a period is what its replenishment plan makes
    available for that period's demand: expected on hand at the end of the period plus the
    period's expected demand minus the backorders it leaves (``orders.csv``; series named as
    the regions, or ``Total`` for a national capacity).

    Returns
    -------
    pandas.DataFrame
        ``ds`` (datetime64), ``geo`` (str, or None for national), ``capacity`` (float, units).

    Raises
    ------
    MarketingInputError
        Missing file or column, a date that cannot be read, a negative or non-numeric
        capacity, an unknown region, a (ds, geo) given twice, a supply folder without
        ``orders.csv``.
    """
    path = Path(path)
    if path.is_dir():
        orders = path / "orders.csv"
        if not orders.is_file():
            raise MarketingInputError(
                f"supply folder {str(path)!r} has no orders.csv: run pharmalab supply with "
                "--on-hand to get a replenishment plan, or give a capacity CSV (ds[, geo], "
                "capacity)")
        plan = _read_csv(orders, "orders file", ("unique_id", "ds", "expected_on_hand",
                                                 "expected_demand", "expected_backorders"))
        # backorders carried in from earlier periods are served first: a period cannot
        # offer less than nothing to new demand
        available = (plan["expected_on_hand"] + plan["expected_demand"]
                     - plan["expected_backorders"]).clip(lower=0.0)
        # series as pharmalab forecast names them: "Total/<region>" below "Total"
        ids = plan["unique_id"].astype(str).str.replace(r"^Total/", "", regex=True)
        frame = pd.DataFrame({"ds": plan["ds"], "geo": ids, "capacity": available})
        regional = frame[frame["geo"].isin(geos)]
        if len(regional) and not (len(geos) == 1 and "Total" in set(ids)):
            frame = regional
        elif "Total" in set(ids):
            frame = frame[frame["geo"] == "Total"].assign(geo=None)
        else:
            raise MarketingInputError(
                f"{orders}: no series matches the model's regions ({', '.join(geos)}) or "
                f"'Total' (series: {', '.join(sorted(set(ids))[:5])})")
        name = orders.name
    else:
        frame = _read_csv(path, "capacity file", ("ds", "capacity"))
        if "geo" not in frame:
            frame["geo"] = None
        name = path.name
    frame = frame.copy()
    frame["ds"] = pd.to_datetime(frame["ds"], errors="coerce")
    if frame["ds"].isna().any():
        row = int(np.flatnonzero(frame["ds"].isna().to_numpy())[0])
        raise MarketingInputError(f"{name}: data row {row + 1}: ds is not a date (YYYY-MM-DD)")
    values = pd.to_numeric(frame["capacity"], errors="coerce")
    bad = values.isna() | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MarketingInputError(f"{name}: data row {row + 1}: capacity must be units ≥ 0, "
                                  f"got {_shown(frame['capacity'].iloc[row])}")
    frame["capacity"] = values.astype(float)
    if frame["geo"].notna().any():
        frame["geo"] = frame["geo"].astype(str)
        unknown = sorted(set(frame["geo"]) - set(geos))
        if unknown:
            raise MarketingInputError(f"{name}: geo {unknown[0]!r} is not a region of the "
                                      f"model ({', '.join(geos)})")
    if frame.duplicated(["ds", "geo"]).any():
        first = frame[frame.duplicated(["ds", "geo"])].iloc[0]
        raise MarketingInputError(f"{name}: {first['ds']:%Y-%m-%d}"
                                  f"{'' if first['geo'] is None else ' ' + repr(first['geo'])}"
                                  " appears twice")
    return frame[["ds", "geo", "capacity"]].reset_index(drop=True)


def _shown(value) -> str:
    """A cell for a message, as plain Python (``-5``, not ``np.int64(-5)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _read_csv(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if path.is_dir():
        raise MarketingInputError(f"{what} {str(path)!r} is a folder; expected a CSV file")
    if not path.is_file():
        raise MarketingInputError(f"{what} {str(path)!r} does not exist")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise MarketingInputError(f"{path.name}: cannot be read as CSV ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MarketingInputError(f"{path.name}: column {missing[0]!r} is missing (expected "
                                  f"{', '.join(columns)})")
    if frame.empty:
        raise MarketingInputError(f"{path.name}: has a header but no rows")
    return frame
