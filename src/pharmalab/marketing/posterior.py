"""A fitted MMM as NumPy arrays of posterior draws, and its forward pass.

PyMC-Marketing samples the model; everything we compute afterwards — contributions, ROI,
response curves, latent demand, hold-out forecasts and the budget optimizer's thousands of
what-if plans — is the same forward pass evaluated on the draws: per draw ``s``, region
``g``, period ``t`` and channel ``c`` (PyMC-Marketing's multidimensional ``MMM`` with
per-region max scaling),

``mu = σ_y,g · [intercept_g + Σ_k γ_gk z_tgk + Σ_m φ_gm f_m(t)
      + Σ_c β_gc · logistic(adstock(x_tgc / σ_x,gc; α_gc), λ_gc)]``

with ``σ_y,g`` and ``σ_x,gc`` the target's and the channels' largest value per region in the
training data, ``z`` the controls (and the linear trend, years since the first period),
``f`` the yearly Fourier terms of PyMC-Marketing's ``YearlyFourier``. The test suite checks
this pass against the library's own deterministics on a fitted model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pharmalab.marketing.response import geometric_adstock, hill, logistic_saturation

__all__ = ["DRAW_ARRAYS", "Posterior", "TREND"]

# The control column of the linear trend (years since the first training period).
TREND = "_trend"
_MODE = re.compile(r"^(sin|cos)_(\d+)$")
# The attributes holding one value per posterior draw (first axis).
DRAW_ARRAYS = ("alpha", "lam", "beta", "intercept", "gamma_control", "gamma_fourier", "sigma",
               "kappa", "slope")


@dataclass(frozen=True)
class Posterior:
    """Posterior draws of a fitted MMM and what is needed to run it forward.

    Attributes
    ----------
    channels, geos, controls : tuple of str
        ``controls`` includes :data:`TREND` last.
    fourier_modes : tuple of str
        PyMC-Marketing's mode names (``sin_1``, …, ``cos_1``, …).
    l_max : int
        Longest adstock lag (periods).
    start : pandas.Timestamp
        First training period (the trend's origin).
    periods_per_year : float
    channel_scale : numpy.ndarray
        ``(geo, channel)`` the media input's largest value (EUR, or activity units).
    target_scale : numpy.ndarray
        ``(geo,)`` units.
    alpha, lam, beta : numpy.ndarray
        ``(draw, geo, channel)``: adstock decay, logistic saturation steepness (per scaled
        media; None for a Hill curve), saturation ceiling (scaled units).
    intercept : numpy.ndarray
        ``(draw, geo)`` scaled units.
    gamma_control : numpy.ndarray
        ``(draw, geo, control)``.
    gamma_fourier : numpy.ndarray
        ``(draw, geo, mode)``.
    sigma : numpy.ndarray
        ``(draw, geo)`` noise standard deviation, scaled units.
    cost_per_unit : numpy.ndarray
        ``(geo, channel)`` EUR per unit of media input (1 where the input is spend): how a
        budget becomes activity.
    control_offset : numpy.ndarray
        ``(control,)`` the level each control's effect is measured from (its training mean
        for a continuous control, 0 for an on/off one and the trend).
    saturation : {'logistic', 'hill'}
        The curve: ``β (1 − e^{−λx}) / (1 + e^{−λx})`` or ``β x^s / (x^s + κ^s)``.
    kappa, slope : numpy.ndarray or None
        ``(draw, geo, channel)`` the Hill curve's half-saturation point (scaled media) and
        slope.
    """

    channels: tuple[str, ...]
    geos: tuple[str, ...]
    controls: tuple[str, ...]
    fourier_modes: tuple[str, ...]
    l_max: int
    start: pd.Timestamp
    periods_per_year: float
    channel_scale: np.ndarray
    target_scale: np.ndarray
    alpha: np.ndarray
    lam: np.ndarray | None
    beta: np.ndarray
    intercept: np.ndarray
    gamma_control: np.ndarray
    gamma_fourier: np.ndarray
    sigma: np.ndarray
    cost_per_unit: np.ndarray | None = None
    control_offset: np.ndarray | None = None
    saturation: str = "logistic"
    kappa: np.ndarray | None = None
    slope: np.ndarray | None = None

    @property
    def draws(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def sigma_units(self) -> np.ndarray:
        """Noise standard deviation ``(draw, geo)`` in units."""
        return self.sigma * self.target_scale[None, :]

    def subset(self, draws: np.ndarray) -> Posterior:
        """The same posterior restricted to the draws ``draws`` (indices)."""
        take = {name: getattr(self, name)[draws] for name in DRAW_ARRAYS
                if getattr(self, name) is not None}
        return Posterior(**{**self.__dict__, **take})

    def media(self, media: np.ndarray, channels: list[int] | None = None) -> np.ndarray:
        """Units from each channel ``(draw, period, geo, channel)`` for the media input
        ``(period, geo, channel)`` (spend in EUR, or the channel's activity; periods before
        the first are taken as none).

        With ``channels`` (indices), ``media``'s last axis holds those channels only and so
        does the result (a response curve needs one channel, not all)."""
        k = slice(None) if channels is None else list(channels)
        x = np.asarray(media, dtype=float) / self.channel_scale[None, :, k]
        stock = geometric_adstock(x[None], self.alpha[:, :, k], self.l_max, axis=-3)
        if self.saturation == "hill":
            curve = hill(stock, self.kappa[:, None, :, k], self.slope[:, None, :, k])
        else:
            curve = logistic_saturation(stock, self.lam[:, None, :, k])
        return curve * self.beta[:, None, :, k] * self.target_scale[None, None, :, None]

    def chunks(self, size: int = 250):
        """The posterior in consecutive pieces of ``size`` draws (to keep per-period arrays
        of thousands of draws out of memory)."""
        for start in range(0, self.draws, size):
            yield self.subset(np.arange(start, min(start + size, self.draws)))

    def media_totals(self, media: np.ndarray, channels: list[int] | None = None) -> np.ndarray:
        """:meth:`media` summed over periods and regions, ``(draw, channel)``, computed a
        chunk of draws at a time."""
        return np.concatenate([part.media(media, channels).sum(axis=(1, 2))
                               for part in self.chunks()])

    def media_from_spend(self, spend: np.ndarray) -> np.ndarray:
        """:meth:`media` for spend ``(period, geo, channel)`` in EUR: activity channels get
        the spend's activity at their historical cost per unit."""
        if self.cost_per_unit is None:
            return self.media(spend)
        return self.media(np.asarray(spend, dtype=float) / self.cost_per_unit[None])

    def shared(self, name: str) -> bool:
        """Whether a media parameter (``alpha``, ``lam``, ``beta``) is one per channel,
        shared by the regions (the pooled model's shape parameters)."""
        values = getattr(self, name)
        return bool(np.array_equal(values, np.broadcast_to(values[:, :1], values.shape)))

    def trend(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """The trend control ``(period,)``: years since :attr:`start`, counted in periods."""
        return _periods_since(self.start, dates, self.periods_per_year) / self.periods_per_year

    def fourier(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """Yearly seasonality ``(draw, period, geo)`` in units."""
        features = fourier_features(pd.DatetimeIndex(dates), self.fourier_modes)
        scaled = np.einsum("tm,sgm->stg", features, self.gamma_fourier)
        return scaled * self.target_scale[None, None, :]

    def control_effects(self, values: np.ndarray) -> np.ndarray:
        """Units from each control ``(draw, period, geo, control)`` for control values
        ``(period, geo, control)`` (the trend included, as :meth:`trend` gives it), each
        measured from its :attr:`control_offset`."""
        if self.control_offset is not None:
            values = values - self.control_offset[None, None, :]
        return (values[None] * self.gamma_control[:, None, :, :]
                * self.target_scale[None, None, :, None])

    def components(self, dates: pd.DatetimeIndex, media: np.ndarray,
                   controls: np.ndarray) -> dict[str, np.ndarray]:
        """Every additive part of expected demand, each ``(draw, period, geo)`` in units:
        ``baseline`` (intercept, trend and seasonality), one entry per user control, one per
        channel.

        Parameters
        ----------
        dates : pandas.DatetimeIndex
            The periods (``(period,)``).
        media : numpy.ndarray
            ``(period, geo, channel)`` media input (spend or activity, as fitted), starting at
            the first training period or carrying the history before ``dates`` in its first
            rows (see :meth:`media`).
        controls : numpy.ndarray
            ``(period, geo, user control)`` — without the trend, which is added here.
        """
        dates = pd.DatetimeIndex(dates)
        n = len(dates)
        trend = np.broadcast_to(self.trend(dates)[:, None, None], (n, len(self.geos), 1))
        values = np.concatenate([np.asarray(controls, dtype=float).reshape(
            n, len(self.geos), -1), trend], axis=-1)
        effects = self.control_effects(values)
        baseline = (self.intercept[:, None, :] * self.target_scale[None, None, :]
                    + self.fourier(dates) + effects[..., -1])
        parts = {"baseline": baseline}
        for k, name in enumerate(self.controls[:-1]):
            parts[name] = effects[..., k]
        units = self.media(media)[:, -n:]
        for k, name in enumerate(self.channels):
            parts[name] = units[..., k]
        return parts

    def mu(self, dates: pd.DatetimeIndex, media: np.ndarray, controls: np.ndarray) -> np.ndarray:
        """Expected demand ``(draw, period, geo)`` in units (arguments as
        :meth:`components`)."""
        return sum(self.components(dates, media, controls).values())


def fourier_features(dates: pd.DatetimeIndex, modes: tuple[str, ...]) -> np.ndarray:
    """PyMC-Marketing's yearly Fourier terms ``(period, mode)``: ``sin(2π k d / 365.25)`` and
    ``cos(…)`` with ``d`` the day of the year."""
    day = dates.dayofyear.to_numpy(dtype=float) / 365.25
    columns = []
    for mode in modes:
        match = _MODE.match(mode)
        if match is None:
            raise ValueError(f"unknown Fourier mode {mode!r} (expected sin_k or cos_k)")
        wave = np.sin if match.group(1) == "sin" else np.cos
        columns.append(wave(2 * np.pi * int(match.group(2)) * day))
    return np.stack(columns, axis=-1) if columns else np.zeros((len(dates), 0))


def _periods_since(start: pd.Timestamp, dates: pd.DatetimeIndex,
                   periods_per_year: float) -> np.ndarray:
    """Whole periods from ``start`` to each date (months counted by the calendar)."""
    dates = pd.DatetimeIndex(dates)
    if periods_per_year == 12.0:
        return ((dates.year - start.year) * 12 + dates.month - start.month).to_numpy(float)
    return ((dates - start).days.to_numpy(dtype=float) / 7.0).round()
