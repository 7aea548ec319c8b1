"""Protection-period demand distributions and their loss functions.

A :class:`Demand` describes the demand ``D`` over one horizon (a period, a lead time, or the
protection period ``L + R`` of a periodic-review policy), in units of product. Every
distribution offers

* ``cdf(x) = P(D <= x)``, ``sf(x) = P(D > x)`` and ``ppf(q)``: the smallest ``x`` (an integer
  for integer-valued demand, a real otherwise) with ``cdf(x) >= q``;
* ``pmf(x)`` for discrete distributions (``pdf(x)`` for the normal);
* the first-order loss function ``n(x) = E[(D - x)+]`` (expected units short when ``x`` units
  are available) and its complement ``n̄(x) = E[(x - D)+]`` (expected units left over), with
  ``n(x) - n̄(x) = E[D] - x``;
* the second-order loss function and its complement, the sum (integral) of the first-order
  loss beyond ``x``; they give the exact expected backorders of the (r, Q) policy.

Distributions: :class:`NormalDemand` (continuous), :class:`PoissonDemand` and
:class:`NegativeBinomialDemand` (integer-valued, exact sums of the probability mass function)
and :class:`EmpiricalDemand` (the empirical distribution of samples, for instance sums of
forecast sample paths over the protection period). :func:`from_moments` picks Poisson or
negative binomial for low-volume items and the normal otherwise.

Formulas follow Snyder & Shen, *Fundamentals of Supply Chain Theory* (2nd ed., Wiley 2019),
appendix on loss functions, and Zipkin, *Foundations of Inventory Management* (McGraw-Hill
2000) (the discrete second-order loss).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np
from scipy import special, stats

from pharmalab.errors import SupplyInputError
from pharmalab.supply import _checks

__all__ = [
    "Demand",
    "EmpiricalDemand",
    "NegativeBinomialDemand",
    "NormalDemand",
    "PoissonDemand",
    "from_moments",
    "normal_complementary_loss",
    "normal_loss",
    "standard_normal_loss",
    "standard_normal_second_order_loss",
]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Tail mass ignored by the exact sums of integer-valued distributions (per tail).
_TAIL = 1e-30
_MAX_TABLE = 20_000_000


def _values(name: str, x) -> tuple[np.ndarray, bool]:
    """``x`` as a float array (and whether it was a scalar); every value must be finite."""
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise SupplyInputError(f"{name} must be finite, got {x!r}")
    return arr, arr.ndim == 0


def _out(arr: np.ndarray, scalar: bool):
    return float(arr) if scalar else arr


# --------------------------------------------------------------------------- standard normal


def standard_normal_loss(z):
    """Standard normal first-order loss function ``L(z) = E[(Z - z)+]``.

    ``L(z) = φ(z) - z (1 - Φ(z))`` (Snyder & Shen, loss-function appendix). Computed through
    the scaled complementary error function for ``z >= 0`` and by ``L(z) = -z + L(-z)`` for
    ``z < 0``, so that neither tail loses precision.

    Parameters
    ----------
    z : float or array_like
        Standardized level ``(x - μ) / σ`` (dimensionless).

    Returns
    -------
    float or numpy.ndarray
        ``L(z)`` (dimensionless, in units of σ).

    Raises
    ------
    SupplyInputError
        If ``z`` is not finite.
    """
    arr, scalar = _values("z", z)
    t = np.abs(arr)
    loss_t = np.exp(-0.5 * t * t) * (_INV_SQRT_2PI - 0.5 * t * special.erfcx(t / _SQRT2))
    return _out(np.where(arr >= 0, loss_t, loss_t + t), scalar)


def standard_normal_second_order_loss(z):
    """Standard normal second-order loss ``L²(z) = ½ E[((Z - z)+)²] = ∫_z^∞ L(y) dy``.

    ``L²(z) = ½ [(z² + 1)(1 - Φ(z)) - z φ(z)]`` (Snyder & Shen, loss-function appendix); for
    ``z < 0`` by ``L²(z) = ½ (1 + z²) - L²(-z)``.

    Parameters
    ----------
    z : float or array_like
        Standardized level (dimensionless).

    Returns
    -------
    float or numpy.ndarray
        ``L²(z)`` (dimensionless, in units of σ²).

    Raises
    ------
    SupplyInputError
        If ``z`` is not finite.
    """
    arr, scalar = _values("z", z)
    t = np.abs(arr)
    tail = 0.5 * special.erfcx(t / _SQRT2)  # (1 - Φ(t)) · exp(t²/2)
    l2_t = np.exp(-0.5 * t * t) * 0.5 * ((t * t + 1.0) * tail - t * _INV_SQRT_2PI)
    return _out(np.where(arr >= 0, l2_t, 0.5 * (1.0 + t * t) - l2_t), scalar)


def normal_loss(x, mu: float, sigma: float):
    """Normal first-order loss ``n(x) = E[(D - x)+] = σ L((x - μ)/σ)`` for ``D ~ N(μ, σ²)``.

    Parameters
    ----------
    x : float or array_like
        Stock level (units).
    mu : float
        Mean demand (units).
    sigma : float
        Standard deviation of demand (units), > 0.

    Returns
    -------
    float or numpy.ndarray
        Expected shortage (units).

    Raises
    ------
    SupplyInputError
        If ``sigma <= 0`` or an argument is not finite.
    """
    mu = _checks.real("mu", mu)
    sigma = _checks.positive("sigma", sigma)
    arr, scalar = _values("x", x)
    return _out(sigma * np.asarray(standard_normal_loss((arr - mu) / sigma)), scalar)


def normal_complementary_loss(x, mu: float, sigma: float):
    """Normal complementary loss ``n̄(x) = E[(x - D)+] = σ L((μ - x)/σ) = n(x) + x - μ``.

    Parameters
    ----------
    x : float or array_like
        Stock level (units).
    mu : float
        Mean demand (units).
    sigma : float
        Standard deviation of demand (units), > 0.

    Returns
    -------
    float or numpy.ndarray
        Expected leftover stock (units).

    Raises
    ------
    SupplyInputError
        If ``sigma <= 0`` or an argument is not finite.
    """
    mu = _checks.real("mu", mu)
    sigma = _checks.positive("sigma", sigma)
    arr, scalar = _values("x", x)
    return _out(sigma * np.asarray(standard_normal_loss((mu - arr) / sigma)), scalar)


# --------------------------------------------------------------------------- base class


class Demand(ABC):
    """Demand over one horizon (units of product). See the module docstring."""

    #: True for distributions with atoms only (a pmf), False for the normal.
    discrete: ClassVar[bool] = True

    # Every subclass provides ``mean`` (expected demand, units) and ``variance`` (units²), as
    # a field or a property.
    mean: float
    variance: float

    @property
    def std(self) -> float:
        """Standard deviation of demand (units)."""
        return math.sqrt(self.variance)

    @staticmethod
    def from_moments(mean: float, variance: float, discrete_below: float = 20.0) -> Demand:
        """The usual distribution for given moments: see :func:`from_moments`."""
        return from_moments(mean, variance, discrete_below)

    @property
    def integer_valued(self) -> bool:
        """True when every possible demand is an integer (policies then return integer levels)."""
        return False

    @abstractmethod
    def cdf(self, x):
        """``P(D <= x)``."""

    def sf(self, x):
        """``P(D > x) = 1 - cdf(x)``."""
        arr, scalar = _values("x", x)
        return _out(1.0 - np.asarray(self.cdf(arr)), scalar)

    @abstractmethod
    def ppf(self, q: float) -> float:
        """Smallest ``x`` with ``cdf(x) >= q`` (an integer for integer-valued demand).

        Raises
        ------
        SupplyInputError
            If ``q`` is not strictly between 0 and 1.
        """

    def pmf(self, x):
        """``P(D = x)`` (discrete distributions only)."""
        raise SupplyInputError(f"{type(self).__name__} is continuous: it has no pmf (use pdf)")

    @abstractmethod
    def loss(self, x):
        """First-order loss ``n(x) = E[(D - x)+]`` (units)."""

    @abstractmethod
    def complementary_loss(self, x):
        """Complementary first-order loss ``n̄(x) = E[(x - D)+]`` (units)."""

    @abstractmethod
    def second_order_loss(self, x):
        """Second-order loss (units²).

        Continuous and empirical distributions: ``n²(x) = ½ E[((D - x)+)²] = ∫_x^∞ n(y) dy``.
        Integer-valued distributions (Poisson, negative binomial): Zipkin's discrete form
        ``n²(x) = ½ E[(D - x)+ (D - x - 1)+] = Σ_{y > x} n(y)`` for integer ``x``.
        """

    @abstractmethod
    def complementary_second_order_loss(self, x):
        """Complementary second-order loss (units²).

        Continuous and empirical: ``n̄²(x) = ½ E[((x - D)+)²]``; integer-valued (integer
        ``x``): ``n̄²(x) = ½ E[(x - D)+ (x + 1 - D)+] = Σ_{y <= x} n̄(y)``.
        """

    @abstractmethod
    def over(self, periods: float) -> Demand:
        """Demand summed over ``periods`` independent, identically distributed periods."""

    @abstractmethod
    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` random draws (for simulation)."""


def _periods(periods) -> float:
    return _checks.positive("periods", periods)


def _quantile(q) -> float:
    return _checks.probability("q", q)


# --------------------------------------------------------------------------- normal


@dataclass(frozen=True)
class NormalDemand(Demand):
    """Normally distributed demand ``N(mu, sigma²)`` (continuous).

    Parameters
    ----------
    mu : float
        Mean demand (units), > 0.
    sigma : float
        Standard deviation of demand (units), > 0.

    Raises
    ------
    SupplyInputError
        If ``mu <= 0`` or ``sigma <= 0`` or either is not finite.
    """

    mu: float
    sigma: float
    discrete: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mu", _checks.positive("mu", self.mu))
        object.__setattr__(self, "sigma", _checks.positive("sigma", self.sigma))

    @property
    def mean(self) -> float:
        return self.mu

    @property
    def variance(self) -> float:
        return self.sigma**2

    @property
    def std(self) -> float:
        return self.sigma

    def _z(self, x) -> tuple[np.ndarray, bool]:
        arr, scalar = _values("x", x)
        return (arr - self.mu) / self.sigma, scalar

    def cdf(self, x):
        z, scalar = self._z(x)
        return _out(special.ndtr(z), scalar)

    def sf(self, x):
        z, scalar = self._z(x)
        return _out(special.ndtr(-z), scalar)

    def pdf(self, x):
        """Density ``φ((x - μ)/σ) / σ`` (per unit)."""
        z, scalar = self._z(x)
        return _out(np.exp(-0.5 * z * z) * _INV_SQRT_2PI / self.sigma, scalar)

    def ppf(self, q: float) -> float:
        return self.mu + self.sigma * float(special.ndtri(_quantile(q)))

    def loss(self, x):
        z, scalar = self._z(x)
        return _out(self.sigma * np.asarray(standard_normal_loss(z)), scalar)

    def complementary_loss(self, x):
        z, scalar = self._z(x)
        return _out(self.sigma * np.asarray(standard_normal_loss(-z)), scalar)

    def second_order_loss(self, x):
        z, scalar = self._z(x)
        return _out(self.sigma**2 * np.asarray(standard_normal_second_order_loss(z)), scalar)

    def complementary_second_order_loss(self, x):
        z, scalar = self._z(x)
        return _out(self.sigma**2 * np.asarray(standard_normal_second_order_loss(-z)), scalar)

    def over(self, periods: float) -> NormalDemand:
        t = _periods(periods)
        return NormalDemand(self.mu * t, self.sigma * math.sqrt(t))

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(self.mu, self.sigma, size)


# --------------------------------------------------------------------------- integer-valued


@dataclass(frozen=True)
class _Table:
    """Exact sums of an integer-valued distribution on ``lo .. hi`` (tails beyond are < 1e-30).

    ``n[i] = n(lo + i) = Σ_{k >= lo+i} P(D > k)``, ``nbar[i] = Σ_{k < lo+i} P(D <= k)``,
    ``n2[i] = Σ_{k > lo+i} n(k)``, ``nbar2[i] = Σ_{k <= lo+i} n̄(k)``.
    """

    lo: int
    hi: int
    cdf: np.ndarray
    sf: np.ndarray
    n: np.ndarray
    nbar: np.ndarray
    n2: np.ndarray
    nbar2: np.ndarray


class _IntegerDemand(Demand):
    """Integer-valued demand on 0, 1, 2, … backed by a frozen scipy distribution."""

    @property
    @abstractmethod
    def _dist(self): ...

    @property
    def integer_valued(self) -> bool:
        return True

    @cached_property
    def _table(self) -> _Table:
        dist = self._dist
        # scipy's ppf/isf return nan this far out in the tails: walk from 1e-15 instead.
        step = max(1, int(self.std))
        lo = int(dist.ppf(1e-15))
        while lo > 0 and dist.cdf(lo) > _TAIL:
            lo = max(0, lo - step)
        hi = int(dist.isf(1e-15))
        while dist.sf(hi) > _TAIL and hi - lo <= _MAX_TABLE:  # stop early when hopeless
            hi += step
        if hi - lo > _MAX_TABLE:
            raise SupplyInputError(
                f"{self!r} is too dispersed for exact sums ({hi - lo} support points)"
            )
        ks = np.arange(lo, hi + 2)
        cdf = dist.cdf(ks)
        sf = dist.sf(ks)
        nbar = np.concatenate(([0.0], np.cumsum(cdf[:-1])))
        n = np.cumsum(sf[::-1])[::-1]
        n2 = np.concatenate((np.cumsum(n[::-1])[::-1][1:], [0.0]))
        nbar2 = np.cumsum(nbar)
        return _Table(lo, hi + 1, cdf, sf, n, nbar, n2, nbar2)

    def cdf(self, x):
        arr, scalar = _values("x", x)
        return _out(self._dist.cdf(np.floor(arr)), scalar)

    def sf(self, x):
        arr, scalar = _values("x", x)
        return _out(self._dist.sf(np.floor(arr)), scalar)

    def pmf(self, x):
        arr, scalar = _values("x", x)
        return _out(np.where(arr == np.floor(arr), self._dist.pmf(np.floor(arr)), 0.0), scalar)

    def ppf(self, q: float) -> float:
        q = _quantile(q)
        dist = self._dist
        k = max(0, int(dist.ppf(q)))
        while k > 0 and dist.cdf(k - 1) >= q:
            k -= 1
        while dist.cdf(k) < q:
            k += 1
        return float(k)

    def _first_order(self, arr: np.ndarray, *, complement: bool) -> np.ndarray:
        """``n`` or ``n̄`` at real ``arr``: exact at integers, linear in between."""
        t = self._table
        j = np.floor(arr)
        frac = arr - j
        idx = (j - t.lo).astype(np.int64)
        inside = (idx >= 0) & (idx < len(t.n))
        ii = np.clip(idx, 0, len(t.n) - 1)
        mu = self.mean
        if complement:
            at_j = np.where(inside, t.nbar[ii], np.where(idx < 0, 0.0, j - mu))
            slope = np.where(inside, t.cdf[ii], np.where(idx < 0, 0.0, 1.0))
            return at_j + frac * slope
        at_j = np.where(inside, t.n[ii], np.where(idx < 0, mu - j, 0.0))
        slope = np.where(inside, t.sf[ii], np.where(idx < 0, 1.0, 0.0))
        return at_j - frac * slope

    def loss(self, x):
        arr, scalar = _values("x", x)
        return _out(self._first_order(arr, complement=False), scalar)

    def complementary_loss(self, x):
        arr, scalar = _values("x", x)
        return _out(self._first_order(arr, complement=True), scalar)

    def _second_order(self, x, *, complement: bool):
        arr, scalar = _values("x", x)
        if np.any(arr != np.floor(arr)):
            raise SupplyInputError(
                f"x must be an integer for the discrete second-order loss of "
                f"{type(self).__name__}, got {x!r}"
            )
        t = self._table
        idx = (arr - t.lo).astype(np.int64)
        inside = (idx >= 0) & (idx < len(t.n))
        ii = np.clip(idx, 0, len(t.n) - 1)
        # n²(j) + n̄²(j) = ½ E[(D - j)(D - j - 1)] = ½ [(μ - j)(μ - j - 1) + σ²]
        whole = 0.5 * ((self.mean - arr) * (self.mean - arr - 1.0) + self.variance)
        if complement:
            res = np.where(inside, t.nbar2[ii], np.where(idx < 0, 0.0, whole))
        else:
            res = np.where(inside, t.n2[ii], np.where(idx < 0, whole, 0.0))
        return _out(res, scalar)

    def second_order_loss(self, x):
        return self._second_order(x, complement=False)

    def complementary_second_order_loss(self, x):
        return self._second_order(x, complement=True)


@dataclass(frozen=True)
class PoissonDemand(_IntegerDemand):
    """Poisson demand with the given mean (integer-valued; variance = mean).

    Parameters
    ----------
    mean : float
        Mean demand (units), > 0.

    Raises
    ------
    SupplyInputError
        If ``mean <= 0`` or is not finite.
    """

    mean: float  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _checks.positive("mean", self.mean))

    @property
    def variance(self) -> float:
        return self.mean

    @cached_property
    def _dist(self):
        return stats.poisson(self.mean)

    def over(self, periods: float) -> PoissonDemand:
        return PoissonDemand(self.mean * _periods(periods))

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(self.mean, size).astype(float)


@dataclass(frozen=True)
class NegativeBinomialDemand(_IntegerDemand):
    """Negative binomial demand fitted to a mean and a variance (over-dispersed counts).

    scipy's ``nbinom(n, p)`` with ``p = mean / variance`` and ``n = mean² / (variance - mean)``;
    a sum of ``t`` independent periods is negative binomial with mean and variance times ``t``.

    Parameters
    ----------
    mean : float
        Mean demand (units), > 0.
    variance : float
        Variance of demand (units²), > ``mean`` (use :class:`PoissonDemand` when equal).

    Raises
    ------
    SupplyInputError
        If ``mean <= 0`` or ``variance <= mean``.
    """

    mean: float  # type: ignore[assignment]
    variance: float  # type: ignore[assignment]

    def __post_init__(self) -> None:
        mean = _checks.positive("mean", self.mean)
        variance = _checks.positive("variance", self.variance)
        if variance <= mean:
            raise SupplyInputError(
                f"variance must be > mean for a negative binomial, got mean={mean!r}, "
                f"variance={variance!r} (use PoissonDemand when variance <= mean)"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "variance", variance)

    @property
    def n(self) -> float:
        """scipy's ``n`` (number of successes, real)."""
        return self.mean**2 / (self.variance - self.mean)

    @property
    def p(self) -> float:
        """scipy's ``p`` (success probability)."""
        return self.mean / self.variance

    @cached_property
    def _dist(self):
        return stats.nbinom(self.n, self.p)

    def over(self, periods: float) -> NegativeBinomialDemand:
        t = _periods(periods)
        return NegativeBinomialDemand(self.mean * t, self.variance * t)

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.negative_binomial(self.n, self.p, size).astype(float)


# --------------------------------------------------------------------------- empirical


@dataclass(frozen=True, eq=False)
class EmpiricalDemand(Demand):
    """The empirical distribution of demand samples (each sample has mass ``1/len(samples)``).

    Typical use: ``samples`` are sums of forecast sample paths over the protection period
    (lead time + review period). Loss functions are exact averages over the samples. The
    second-order losses use the continuous form ``½ E[((D - x)+)²]``.

    Parameters
    ----------
    samples : array_like
        One or more finite, non-negative demands (units). Clip negative forecast paths at 0
        before summing.

    Raises
    ------
    SupplyInputError
        If ``samples`` is empty, not one-dimensional, or holds a negative or non-finite value.
    """

    samples: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        try:
            arr = np.array(self.samples, dtype=float)
        except (TypeError, ValueError) as exc:
            raise SupplyInputError(f"samples must be numbers, got {self.samples!r}") from exc
        if arr.ndim != 1 or arr.size == 0:
            raise SupplyInputError(
                f"samples must be a non-empty one-dimensional sequence, got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise SupplyInputError("samples must all be finite")
        if np.any(arr < 0):
            raise SupplyInputError(
                f"samples must be >= 0 (demand), got minimum {arr.min()!r}; "
                "clip negative forecast paths at 0 before summing"
            )
        arr.sort()
        arr.setflags(write=False)
        object.__setattr__(self, "samples", arr)

    def __repr__(self) -> str:
        a = self.samples
        return f"EmpiricalDemand(n={a.size}, mean={a.mean():.6g}, min={a[0]:.6g}, max={a[-1]:.6g})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EmpiricalDemand):
            return NotImplemented
        return np.array_equal(self.samples, other.samples)

    def __hash__(self) -> int:
        return hash(self.samples.tobytes())

    @cached_property
    def _prefix(self) -> np.ndarray:
        return np.concatenate(([0.0], np.cumsum(self.samples)))

    @property
    def mean(self) -> float:
        return float(self.samples.mean())

    @property
    def variance(self) -> float:
        return float(self.samples.var())

    @property
    def integer_valued(self) -> bool:
        return bool(np.all(self.samples == np.floor(self.samples)))

    def cdf(self, x):
        arr, scalar = _values("x", x)
        return _out(np.searchsorted(self.samples, arr, side="right") / self.samples.size, scalar)

    def pmf(self, x):
        arr, scalar = _values("x", x)
        a = self.samples
        count = np.searchsorted(a, arr, side="right") - np.searchsorted(a, arr, side="left")
        return _out(count / a.size, scalar)

    def ppf(self, q: float) -> float:
        q = _quantile(q)
        size = self.samples.size
        levels = np.arange(1, size + 1) / size
        return float(self.samples[min(int(np.searchsorted(levels, q, side="left")), size - 1)])

    def loss(self, x):
        arr, scalar = _values("x", x)
        a, size = self.samples, self.samples.size
        k = np.searchsorted(a, arr, side="right")
        above = self._prefix[-1] - self._prefix[k]
        return _out(np.maximum(above - arr * (size - k), 0.0) / size, scalar)

    def complementary_loss(self, x):
        arr, scalar = _values("x", x)
        k = np.searchsorted(self.samples, arr, side="right")
        return _out(np.maximum(arr * k - self._prefix[k], 0.0) / self.samples.size, scalar)

    def second_order_loss(self, x):
        arr, scalar = _values("x", x)
        flat = arr.reshape(-1)
        res = np.array([0.5 * np.mean(np.maximum(self.samples - v, 0.0) ** 2) for v in flat])
        return _out(res.reshape(arr.shape), scalar)

    def complementary_second_order_loss(self, x):
        arr, scalar = _values("x", x)
        flat = arr.reshape(-1)
        res = np.array([0.5 * np.mean(np.maximum(v - self.samples, 0.0) ** 2) for v in flat])
        return _out(res.reshape(arr.shape), scalar)

    def over(self, periods: float) -> EmpiricalDemand:
        t = _periods(periods)
        if t != 1.0:
            raise SupplyInputError(
                f"EmpiricalDemand cannot be rescaled to {t!r} periods: pass samples of the "
                "demand over the whole protection period (e.g. sums of forecast sample paths "
                "over lead time + review period) as protection_demand, or use lead_time=0 and "
                "review_period=1"
            )
        return self

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.samples, size=size, replace=True)


# --------------------------------------------------------------------------- choice by moments


def from_moments(mean: float, variance: float, discrete_below: float = 20.0) -> Demand:
    """The usual distribution for given demand moments.

    Low-volume items (``mean < discrete_below``) get an integer-valued distribution:
    :class:`NegativeBinomialDemand` when over-dispersed (``variance > mean``), else
    :class:`PoissonDemand` (the negative binomial cannot be under-dispersed). Higher volumes get
    :class:`NormalDemand`.

    Parameters
    ----------
    mean : float
        Mean demand over the horizon (units), > 0.
    variance : float
        Variance of demand over the horizon (units²), >= 0 (> 0 when the normal is chosen).
    discrete_below : float, default 20
        Mean below which a count distribution is used (units), >= 0.

    Returns
    -------
    Demand

    Raises
    ------
    SupplyInputError
        If ``mean <= 0``, ``variance < 0``, ``discrete_below < 0``, or the normal is chosen with
        ``variance == 0``.
    """
    mean = _checks.positive("mean", mean)
    variance = _checks.nonnegative("variance", variance)
    discrete_below = _checks.nonnegative("discrete_below", discrete_below)
    if mean < discrete_below:
        if variance > mean * (1.0 + 1e-9):
            return NegativeBinomialDemand(mean, variance)
        return PoissonDemand(mean)
    if variance == 0:
        raise SupplyInputError(
            f"variance must be > 0 for normal demand (mean {mean!r} >= discrete_below "
            f"{discrete_below!r}), got 0"
        )
    return NormalDemand(mean, math.sqrt(variance))
