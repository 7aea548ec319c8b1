"""Simulated brands with known truth: regions × periods of scripts driven by promotion.

A brand is a baseline (a level per region, a linear trend, yearly seasonality, a competitor's
entry) plus one contribution per channel: spend carried over by geometric adstock and bent
by a saturation curve (logistic, PyMC-Marketing's, or Hill, Meridian's), plus noise; an
optional supply shortage caps some region-periods below demand. Because every piece is known,
the true ROI, contributions, response curves and the true uplift of any future spend plan
can be computed — the parameter-recovery protocol of the field (PyMC Labs'
``mmm-param-recovery``; Jin et al. 2017, Google).

Units: spend in EUR per region-period, demand in units (scripts) per region-period; a
region's size scales its baseline, its spend and its response alike, so that every region has
the same ROI at the same relative spend.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from pharmalab.errors import PharmalabInputError
from pharmalab.marketing.response import geometric_adstock, hill, logistic_saturation

__all__ = ["BrandSpec", "BrandTruth", "ChannelTruth", "SimulatedBrand", "simulate",
           "random_brand", "DEFAULT_CHANNELS", "PHARMA_CHANNELS"]

_LN3 = float(np.log(3.0))


@dataclass(frozen=True)
class ChannelTruth:
    """One promotion channel of a simulated brand.

    Attributes
    ----------
    name : str
        Channel name; its spend column is ``<name>_spend``.
    spend : float
        Mean spend per period of a region of size 1 (EUR).
    alpha : float
        Geometric adstock decay per period, in [0, 1).
    half_saturation : float
        Adstocked spend per period (EUR, region of size 1) at which the channel gives half its
        maximum effect.
    max_units : float
        Units per period of a region of size 1 at full saturation.
    slope : float
        Hill slope (Hill curves only).
    flighting : float
        Share of periods with no spend at all (campaign bursts), in [0, 1).
    """

    name: str
    spend: float = 10_000.0
    alpha: float = 0.4
    half_saturation: float = 10_000.0
    max_units: float = 100.0
    slope: float = 1.0
    flighting: float = 0.0


DEFAULT_CHANNELS = (
    ChannelTruth("detailing", spend=12_000, alpha=0.5, half_saturation=14_000, max_units=900),
    ChannelTruth("samples", spend=4_000, alpha=0.2, half_saturation=3_000, max_units=280),
    ChannelTruth("hcp_email", spend=1_500, alpha=0.3, half_saturation=2_500, max_units=240,
                 flighting=0.3),
)


# Pharma promotion channels and typical weekly spend per region of size 1 (EUR).
PHARMA_CHANNELS = (("detailing", 12_000), ("samples", 4_000), ("speaker_programs", 3_000),
                   ("hcp_email", 1_500), ("digital", 5_000), ("congresses", 2_500))


def random_brand(seed: int, *, n_channels: int = 5, **changes) -> BrandSpec:
    """A brand with randomly drawn channel settings (decay 0.1–0.7, half saturation 0.6–1.6×
    the mean spend, true ROI 0.6–4 at a unit value of 60 EUR, some channels flighted), for
    parameter-recovery studies; ``changes`` override :class:`BrandSpec` fields."""
    rng = np.random.default_rng(10_000 + seed)
    if not 1 <= n_channels <= len(PHARMA_CHANNELS):
        raise PharmalabInputError(f"n_channels must be 1–{len(PHARMA_CHANNELS)}")
    unit_value = float(changes.get("unit_value", 60.0))
    channels = []
    for name, spend in PHARMA_CHANNELS[:n_channels]:
        alpha = float(rng.uniform(0.1, 0.7))
        half = float(spend * rng.uniform(0.6, 1.6))
        target_roi = float(rng.uniform(0.6, 4.0))
        # units at the mean spend ≈ max_units · curve(mean); solve for the ROI wanted
        curve = float(logistic_saturation(spend, _LN3 / half))
        max_units = target_roi * spend / unit_value / curve
        flighting = float(rng.choice([0.0, 0.0, 0.25]))
        channels.append(ChannelTruth(name, spend=spend, alpha=alpha, half_saturation=half,
                                     max_units=max_units, flighting=flighting))
    base = {"channels": tuple(channels), "seed": seed, "baseline": 2_000.0 * n_channels / 3}
    return BrandSpec(**{**base, **changes})


@dataclass(frozen=True)
class BrandSpec:
    """How to simulate a brand (every amount is for a region of size 1).

    Attributes
    ----------
    n_geos : int
        Regions (``geo_01`` …); 1 gives a national brand (no geo column).
    n_periods : int
        Periods of history.
    freq : str
        ``'W-SUN'`` (weeks ending Sunday) or ``'MS'`` (months).
    start : str
        First period (ISO date on the ``freq`` grid).
    channels : tuple of ChannelTruth
    saturation : {'logistic', 'hill'}
    l_max : int
        Longest adstock lag (periods).
    baseline : float
        Units per period without promotion, at the start.
    trend : float
        Baseline growth per year, as a share of the starting baseline.
    seasonality : float
        Amplitude of the yearly cycle, as a share of the baseline.
    competitor_effect : float
        Change of the baseline (share) once a competitor is on the market; regions see the
        entry at different periods in the second half of the history (0: no competitor).
    noise : float
        Standard deviation of demand around its mean, as a share of the baseline.
    size_spread : float
        Log-normal spread of region sizes.
    spend_noise : float
        Log-normal spread of a region's period spend around the national plan.
    shortage_share : float
        Share of region-periods whose scripts are capped by supply (0: none).
    shortage_depth : (float, float)
        A capped region-period shows this share of its demand, uniform in the range.
    unit_value : float
        Value of one unit (EUR), for ROI.
    seed : int
    """

    n_geos: int = 10
    n_periods: int = 156
    freq: str = "W-SUN"
    start: str = "2022-01-02"
    channels: tuple[ChannelTruth, ...] = DEFAULT_CHANNELS
    saturation: str = "logistic"
    l_max: int = 8
    baseline: float = 2_000.0
    trend: float = 0.05
    seasonality: float = 0.10
    competitor_effect: float = -0.08
    noise: float = 0.04
    size_spread: float = 0.5
    spend_noise: float = 0.35
    shortage_share: float = 0.0
    shortage_depth: tuple[float, float] = (0.5, 0.75)
    unit_value: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.saturation not in ("logistic", "hill"):
            raise PharmalabInputError(
                f"saturation must be 'logistic' or 'hill', got {self.saturation!r}")
        if self.n_geos < 1 or self.n_periods < 2 or self.l_max < 1:
            raise PharmalabInputError("n_geos ≥ 1, n_periods ≥ 2 and l_max ≥ 1 are required")
        if not self.channels:
            raise PharmalabInputError("a brand needs at least one channel")
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise PharmalabInputError(f"channel names must be unique, got {names}")
        for c in self.channels:
            if not 0 <= c.alpha < 1 or not 0 <= c.flighting < 1:
                raise PharmalabInputError(
                    f"channel {c.name!r}: alpha and flighting must be in [0, 1)")
            if c.spend <= 0 or c.half_saturation <= 0 or c.max_units < 0 or c.slope <= 0:
                raise PharmalabInputError(
                    f"channel {c.name!r}: spend, half_saturation and slope must be > 0 and "
                    "max_units ≥ 0")
        if not 0 <= self.shortage_share < 1:
            raise PharmalabInputError("shortage_share must be in [0, 1)")
        lo, hi = self.shortage_depth
        if not 0 < lo <= hi <= 1:
            raise PharmalabInputError("shortage_depth must be (lo, hi) with 0 < lo ≤ hi ≤ 1")

    @property
    def periods_per_year(self) -> float:
        return 12.0 if self.freq.startswith("M") else 365.25 / 7.0


@dataclass(frozen=True)
class BrandTruth:
    """The true model behind a simulated brand (arrays ``(period, geo[, channel])``).

    Attributes
    ----------
    spec : BrandSpec
    geos : list of str
    dates : pandas.DatetimeIndex
        The history's periods.
    sizes : numpy.ndarray
        Region sizes ``(geo,)``.
    spend : numpy.ndarray
        Spend ``(period, geo, channel)``, EUR.
    baseline : numpy.ndarray
        Expected units without promotion and without the competitor ``(period, geo)``.
    competitor : numpy.ndarray
        0/1 competitor on the market ``(period, geo)``.
    demand : numpy.ndarray
        Demand including noise ``(period, geo)``, units (what would have been seen without a
        shortage).
    """

    spec: BrandSpec
    geos: list[str]
    dates: pd.DatetimeIndex
    sizes: np.ndarray
    spend: np.ndarray
    baseline: np.ndarray
    competitor: np.ndarray
    demand: np.ndarray

    @property
    def channels(self) -> list[str]:
        return [c.name for c in self.spec.channels]

    def media(self, spend: np.ndarray) -> np.ndarray:
        """Expected units from promotion ``(period, geo, channel)`` for a spend array of the
        same shape (periods before the first are taken as no spend)."""
        s = self.spec
        size = self.sizes[None, :, None]
        alpha = np.array([c.alpha for c in s.channels])
        half = np.array([c.half_saturation for c in s.channels])
        top = np.array([c.max_units for c in s.channels])
        # a region of size k spends k times as much for k times the response
        x = geometric_adstock(spend / size, alpha, s.l_max, axis=-3)
        if s.saturation == "logistic":
            curve = logistic_saturation(x, _LN3 / half)
        else:
            curve = hill(x, half, np.array([c.slope for c in s.channels]))
        return curve * top * size

    def expected(self, spend: np.ndarray | None = None) -> np.ndarray:
        """Expected demand ``(period, geo)`` of the history under ``spend`` (default: the
        actual spend)."""
        spend = self.spend if spend is None else spend
        return (self.baseline * (1 + self.spec.competitor_effect * self.competitor)
                + self.media(spend).sum(axis=-1))

    def roi(self, periods: int | None = None) -> pd.DataFrame:
        """True ROI per channel over the history (or its first ``periods`` periods, e.g. a
        model's training window).

        Returns
        -------
        pandas.DataFrame
            ``channel`` (str), ``spend`` (EUR), ``incremental_units`` (units the channel's
            spend added within those periods), ``roi`` (incremental units × unit value /
            spend).
        """
        n = len(self.dates) if periods is None else int(periods)
        spend_in = self.spend[:n]
        media = self.media(spend_in)
        spend = spend_in.sum(axis=(0, 1))
        units = media.sum(axis=(0, 1))
        return pd.DataFrame({"channel": self.channels, "spend": spend,
                             "incremental_units": units,
                             "roi": units * self.spec.unit_value / spend})

    def contributions(self) -> pd.DataFrame:
        """True expected contributions: ``geo, ds, component, value`` (units per period);
        components ``baseline``, each channel, ``competitor_on_market``."""
        media = self.media(self.spend)
        parts = {"baseline": self.baseline,
                 "competitor_on_market": self.baseline * self.spec.competitor_effect
                 * self.competitor}
        for k, name in enumerate(self.channels):
            parts[name] = media[..., k]
        frames = []
        for component, values in parts.items():
            frames.append(pd.DataFrame({
                "geo": np.tile(self.geos, len(self.dates)),
                "ds": np.repeat(self.dates, len(self.geos)),
                "component": component, "value": values.reshape(-1)}))
        return pd.concat(frames, ignore_index=True)

    def response_curves(self, multipliers=None) -> pd.DataFrame:
        """True response curves: each channel's spend scaled by ``multipliers`` over the
        whole history (the others unchanged).

        Returns
        -------
        pandas.DataFrame
            ``channel, multiplier, spend`` (EUR, total), ``incremental_units`` (total).
        """
        multipliers = np.linspace(0, 2, 21) if multipliers is None else multipliers
        rows = []
        for k, name in enumerate(self.channels):
            for m in multipliers:
                spend = self.spend.copy()
                spend[..., k] *= m
                units = self.media(spend)[..., k].sum()
                rows.append((name, float(m), float(spend[..., k].sum()), float(units)))
        return pd.DataFrame(rows, columns=["channel", "multiplier", "spend",
                                           "incremental_units"])

    def future(self, periods: int) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """The next ``periods`` periods after the history and their expected baseline
        ``(period, geo)`` (trend, season and the competitor as at the end)."""
        s = self.spec
        dates = pd.date_range(self.dates[-1], periods=periods + 1, freq=s.freq)[1:]
        t = np.arange(len(self.dates), len(self.dates) + periods)
        base = _baseline(s, dates, t, self.sizes)
        competitor = np.broadcast_to(self.competitor[-1], base.shape)
        return dates, base * (1 + s.competitor_effect * competitor)

    def plan_units(self, plan: np.ndarray, capacity: np.ndarray | None = None,
                   tail: int | None = None) -> float:
        """True expected units a future spend plan adds: ``plan`` is ``(period, geo,
        channel)`` for the periods after the history; the carry-over of the history's spend
        and the plan's own tail (``l_max − 1`` periods unless ``tail``) are counted.

        With ``capacity`` ``(period + tail, geo)`` (units; NaN or inf = no limit), only
        units that can be served count: ``Σ min(demand, capacity) − Σ min(demand without
        the plan, capacity)`` on expected demand.
        """
        tail = self.spec.l_max - 1 if tail is None else tail
        n = plan.shape[0] + tail
        _, base = self.future(n)
        hist = len(self.dates)
        full = np.concatenate([self.spend, plan, np.zeros((tail,) + plan.shape[1:])])
        zero = np.concatenate([self.spend, np.zeros((n,) + plan.shape[1:])])
        with_plan = base + self.media(full)[hist:].sum(axis=-1)
        without = base + self.media(zero)[hist:].sum(axis=-1)
        if capacity is None:
            return float((with_plan - without).sum())
        cap = np.where(np.isfinite(capacity), capacity, np.inf)
        return float((np.minimum(with_plan, cap) - np.minimum(without, cap)).sum())


@dataclass(frozen=True)
class SimulatedBrand:
    """A simulated brand: the panel a user would have, and the truth behind it.

    Attributes
    ----------
    data : pandas.DataFrame
        One row per (geo, period): ``geo`` (str, absent for one region), ``week`` or
        ``month`` (datetime64), ``scripts`` (float64 units, whole numbers), ``<channel>_spend``
        (EUR), ``competitor_on_market`` (0/1) and, with a shortage, ``supply_constrained``
        (0/1) and ``available_supply`` (units).
    truth : BrandTruth
    date_col, target_col : str
    channels : list of str
    constraint_col : str or None
    """

    data: pd.DataFrame
    truth: BrandTruth
    date_col: str
    target_col: str = "scripts"
    channels: list[str] = field(default_factory=list)
    constraint_col: str | None = None


def simulate(spec: BrandSpec | None = None, **changes) -> SimulatedBrand:
    """Simulate a brand (:class:`BrandSpec`, with any field overridden by ``changes``).

    Returns
    -------
    SimulatedBrand
        The panel and the truth (true ROI, contributions, response curves, plan uplift).

    Raises
    ------
    PharmalabInputError
        An invalid spec (see :class:`BrandSpec`).
    """
    s = replace(spec or BrandSpec(), **changes) if changes or spec is None else spec
    rng = np.random.default_rng(s.seed)
    dates = pd.date_range(s.start, periods=s.n_periods, freq=s.freq)
    if len(dates) and dates[0] != pd.Timestamp(s.start):
        raise PharmalabInputError(f"start {s.start} is not on the {s.freq} grid")
    geos = [f"geo_{g + 1:02d}" for g in range(s.n_geos)]
    sizes = np.exp(rng.normal(0, s.size_spread, s.n_geos)) if s.n_geos > 1 else np.ones(1)
    t = np.arange(s.n_periods)
    baseline = _baseline(s, dates, t, sizes)

    competitor = np.zeros((s.n_periods, s.n_geos))
    if s.competitor_effect:
        entry = rng.integers(s.n_periods // 2, s.n_periods - s.n_periods // 8, s.n_geos)
        competitor = (t[:, None] >= entry[None, :]).astype(float)

    spend = np.stack([_spend(c, s, sizes, rng) for c in s.channels], axis=-1)
    truth = BrandTruth(s, geos, dates, sizes, spend, baseline, competitor,
                       np.zeros_like(baseline))
    expected = truth.expected()
    demand = np.maximum(expected + rng.normal(0, s.noise, expected.shape) * baseline, 0.0)
    demand = np.round(demand)
    truth = replace(truth, demand=demand)

    observed = demand.copy()
    constrained = np.zeros(demand.shape, dtype=bool)
    if s.shortage_share > 0:
        constrained = _shortages(s, rng)
        depth = rng.uniform(*s.shortage_depth, size=demand.shape)
        observed = np.where(constrained, np.floor(demand * depth), demand)

    date_col = "month" if s.freq.startswith("M") else "week"
    data = pd.DataFrame({"geo": np.tile(geos, s.n_periods),
                         date_col: np.repeat(dates, s.n_geos),
                         "scripts": observed.reshape(-1)})
    for k, c in enumerate(s.channels):
        data[f"{c.name}_spend"] = np.round(spend[..., k].reshape(-1), 2)
    if s.competitor_effect:
        data["competitor_on_market"] = competitor.reshape(-1).astype(int)
    constraint_col = None
    if s.shortage_share > 0:
        constraint_col = "supply_constrained"
        data["supply_constrained"] = constrained.reshape(-1).astype(int)
        data["available_supply"] = np.where(constrained, observed, np.nan).reshape(-1)
    if s.n_geos == 1:
        data = data.drop(columns="geo")
    # the spend written is the spend simulated (rounded to cents)
    truth = replace(truth, spend=np.stack(
        [data[f"{c.name}_spend"].to_numpy().reshape(s.n_periods, s.n_geos)
         for c in s.channels], axis=-1))
    return SimulatedBrand(data, truth, date_col, "scripts", [c.name for c in s.channels],
                          constraint_col)


def _baseline(s: BrandSpec, dates: pd.DatetimeIndex, t: np.ndarray,
              sizes: np.ndarray) -> np.ndarray:
    years = t / s.periods_per_year
    season = 1 + s.seasonality * np.sin(2 * np.pi * (dates.dayofyear.to_numpy() / 365.25)
                                        + 0.8)
    level = s.baseline * (1 + s.trend * years) * season
    return level[:, None] * sizes[None, :]


def _spend(c: ChannelTruth, s: BrandSpec, sizes: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Spend ``(period, geo)``: a national plan (a slow random walk, bursts when flighted)
    times each region's size and its own noise."""
    n = s.n_periods
    walk = np.zeros(n)
    for i in range(1, n):
        walk[i] = 0.85 * walk[i - 1] + rng.normal(0, 0.25)
    plan = np.exp(walk)
    if c.flighting > 0:
        on = np.ones(n, dtype=bool)
        i = 0
        while i < n:  # off-blocks of 2–6 periods until the share is reached
            if rng.random() < c.flighting / 3:
                length = int(rng.integers(2, 7))
                on[i:i + length] = False
                i += length
            i += 1
        plan = plan * on
    plan = plan / plan[plan > 0].mean()
    intensity = np.exp(rng.normal(0, 0.2, len(sizes)))  # regions that push harder
    noise = np.exp(rng.normal(0, s.spend_noise, (n, len(sizes))))
    return c.spend * plan[:, None] * sizes[None, :] * intensity[None, :] * noise


def _shortages(s: BrandSpec, rng: np.random.Generator) -> np.ndarray:
    """Shortage episodes of 2–4 periods per region until ``shortage_share`` of the cells."""
    n, g = s.n_periods, s.n_geos
    flags = np.zeros((n, g), dtype=bool)
    target = int(round(s.shortage_share * n * g))
    while flags.sum() < target:
        geo = int(rng.integers(g))
        start = int(rng.integers(s.l_max, n))
        flags[start:start + int(rng.integers(2, 5)), geo] = True
    return flags
