"""Media response in NumPy: geometric adstock and saturation curves.

These are the transformations of PyMC-Marketing's ``GeometricAdstock`` (normalized weights
``α^l / Σ α^l``, ``l < l_max``) and ``LogisticSaturation`` (``β (1 − e^{−λx}) / (1 + e^{−λx})``)
and of the Hill curve (``x^s / (x^s + K^s)``, Meridian's and Jin et al.'s), evaluated on
arrays of posterior draws at once. The fitted model samples them in PyTensor; the budget
optimizer and the simulator need them thousands of times per second, so they are written
here once, vectorized, and tested equal to the library's on the same inputs.

Shapes follow one convention: the time axis is the one named ``axis`` (default ``-3`` in
``(…, period, geo, channel)`` arrays), parameters broadcast against the remaining axes.

References
----------
Jin, Wang, Sun, Chan, Koehler (2017), *Bayesian Methods for Media Mix Modeling with Carryover
and Shape Effects*, Google.
"""

from __future__ import annotations

import numpy as np

__all__ = ["geometric_adstock", "hill", "logistic_saturation"]


def geometric_adstock(x: np.ndarray, alpha: np.ndarray | float, l_max: int, *,
                      axis: int = -3, normalize: bool = True) -> np.ndarray:
    """Geometric carry-over: ``a_t = Σ_{l<l_max} w_l x_{t−l}``, ``w_l = α^l`` (divided by
    ``Σ w_l`` when ``normalize``).

    Parameters
    ----------
    x : numpy.ndarray
        Spend (or any media input) with time along ``axis``; periods before the first are
        taken as 0 (prepend the history to carry it over).
    alpha : float or numpy.ndarray
        Decay per period in [0, 1), broadcasting against ``x`` with the time axis removed.
    l_max : int
        Longest lag, in periods (≥ 1).
    axis : int, default -3
        The time axis of ``x``.
    normalize : bool, default True
        Weights summing to 1 (PyMC-Marketing's default): the result stays in spend units.

    Returns
    -------
    numpy.ndarray
        The adstocked input, shaped as ``np.broadcast(x, alpha)`` with time along ``axis``.
    """
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    # alpha broadcasts against x without its time axis, the order x has after moveaxis
    alpha = np.asarray(alpha, dtype=float)[..., None]
    weights = alpha ** np.arange(l_max, dtype=float)  # (..., l_max)
    if normalize:
        weights = weights / weights.sum(axis=-1, keepdims=True)
    n = x.shape[-1]
    shape = np.broadcast_shapes(x.shape[:-1], weights.shape[:-1]) + (n,)
    out = np.zeros(shape)
    for lag in range(min(l_max, n)):
        out[..., lag:] += weights[..., lag:lag + 1] * x[..., :n - lag]
    return np.moveaxis(out, -1, axis)


def logistic_saturation(x: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
    """PyMC-Marketing's logistic saturation ``(1 − e^{−λx}) / (1 + e^{−λx})`` (in [0, 1) for
    ``x ≥ 0``; half its maximum at ``x = ln 3 / λ``)."""
    z = np.exp(-np.asarray(lam, dtype=float) * np.asarray(x, dtype=float))
    return (1.0 - z) / (1.0 + z)


def hill(x: np.ndarray, half: np.ndarray | float, slope: np.ndarray | float = 1.0) -> np.ndarray:
    """Hill curve ``x^s / (x^s + K^s)``: 0 at no spend, ½ at ``x = K`` (``half``), → 1."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    half = np.asarray(half, dtype=float)
    slope = np.asarray(slope, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(x > 0, (x / half) ** slope, 0.0)
    return ratio / (1.0 + ratio)
