"""Exact-likelihood ARIMA on top of statsforecast 2.1.x, plus bias-adjusted back-transforms.

The upstream bug (statsforecast 2.1.1, ``statsforecast/arima.py``)
------------------------------------------------------------------
``arima(method="ML" | "CSS-ML")`` maximizes the exact Gaussian likelihood with
``scipy.optimize.minimize(armafn, ..., method="BFGS")``. ``armafn`` is not a function of its
parameters: it mutates the state-space dict ``mod`` it is given.

* ``upARIMA(mod, phi, theta)`` writes into ``mod`` in place and resets only ``mod["a"]`` and
  the top-left ``r x r`` ARMA block of ``mod["Pn"]``.
* The compiled ``arima_like`` (the Kalman filter) overwrites ``a``, ``P`` and ``Pn`` in
  place with the filter's final state. For a differenced model (``d + D > 0``) the diffuse block
  of ``Pn`` (``kappa = 1e6`` on the diagonal of the differencing states, set by ``make_arima``)
  is therefore never restored. After the first call it holds the final filtered covariance.

Only the **first** evaluation of the objective (at the starting values) is the true likelihood.
Every later one, including each finite-difference gradient probe, is a different and much worse
function: the differencing states get a tight prior around 0. BFGS's first step then looks like
an ascent (for h02, gradient entries of about 5e7 that are all equal), the line search fails, and
``minimize`` returns ``status=2`` ("precision loss") with ``nit=0`` and the starting point.

* ``method="CSS-ML"`` returns the CSS estimates unchanged. The ``loglik``/``aic`` reported for
  them are correct, because they come from that first, fresh evaluation. On fpp3 §9.9 (h02,
  ARIMA(3,0,1)(0,1,2)[12] on logs, trained to 2006-06): loglik 233.297 instead of 234.596, and
  test RMSE 0.0635 instead of fable's 0.0621.
* ``method="ML"`` starts at zeros and returns all-zero coefficients (loglik 147.46).
* ``AutoARIMA`` compares candidates by the AICc of these CSS estimates.
* Models without differencing (``d = D = 0``) are not affected: there, ``upARIMA`` resets all
  of ``Pn``.

No argument fixes it. ``optim_control={"maxiter": ...}``, ``tol``, ``transform_pars=False`` and
``kappa`` change nothing. ``optim_method`` other than BFGS crashes on ``res.hess_inv``.
``statsforecast.models.ARIMA``/``AutoARIMA`` do not forward those arguments at all. Upstream
discussed this in Nixtla/statsforecast PR #1206 and changed ``upARIMA`` to copy ``Pn`` in
PR #1212 ("Removes input mutation in the upARIMA function"). The pinned 2.1.1 has neither change.

The fix here (smallest first)
-----------------------------
* :func:`stateless_likelihood`: a context manager. While it is active,
  ``statsforecast.arima.arima_like`` is wrapped so that the ML objective (the only caller with
  ``use_resid=False``) works on copies of ``a``/``P``/``Pn``. That makes the library's own BFGS
  maximize the library's own exact likelihood. The final ``arimaSS`` call, which must update the
  state that forecasting uses, is untouched. The wrapper nests and is thread-safe. It covers
  ``distribution="normal"`` only, because the other likelihoods call ``arima_like`` with
  ``use_resid=True``.
* :func:`refit_arima`: takes an already fitted statsforecast model dict. It re-maximizes the
  exact likelihood (a stateless copy of ``armafn`` built from the library's ``make_arima`` and
  ``arima_like``) with Nelder-Mead, starting from the model's coefficients. The coefficients go
  back into a full model dict through the library's own fixed-parameter path (as ``arima2``
  does), so ``forecast_arima`` and its prediction intervals work unchanged. The returned
  log-likelihood is never below the true log-likelihood of the input coefficients.
* :class:`ARIMARefit` and :class:`AutoARIMARefit`: drop-in subclasses of
  ``statsforecast.models.ARIMA``/``AutoARIMA`` for ``StatsForecast(models=[...])``, including
  ``cross_validation`` and ``level=[80, 95]``. ``fit``/``forecast`` run under
  :func:`stateless_likelihood`, so AutoARIMA's order search is fixed as well. With
  ``polish=True``, or with ``"auto"`` when the reported likelihood is inconsistent,
  :func:`refit_arima` then runs on the chosen model.

Bias adjustment
---------------
:func:`bias_adjusted_mean` and :func:`sigma_from_interval` give the mean of a back-transformed
forecast. Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), §5.6 (bias
adjustments) and §13.3: for log forecasts, ``E[y] ≈ exp(mu) * (1 + sigma_h**2 / 2)``, where
``sigma_h**2`` is the h-step forecast variance on the log scale. fable's ``mean()`` of a
log-transformed forecast uses this formula.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import statsforecast.arima as _sfa
from scipy.optimize import minimize
from scipy.signal import convolve
from scipy.stats import norm
from statsforecast.models import ARIMA, AutoARIMA

__all__ = [
    "ARIMARefit",
    "AutoARIMARefit",
    "arima_loglik",
    "bias_adjusted_mean",
    "refit_arima",
    "sigma_from_interval",
    "stateless_likelihood",
]

# --------------------------------------------------------------------------------------------
# 1. The root-cause fix: make the library's ML objective stateless.
# --------------------------------------------------------------------------------------------

_LIB_ARIMA_LIKE = _sfa.arima_like
_patch_lock = threading.RLock()
_patch_depth = 0
_patch_saved: Any = None


#: Gradient tolerance of the library's BFGS while it fits candidate models (see
#: :func:`_search_minimize`). On fpp3's h02 (180 and 204 months) 5e-4 chooses the same orders,
#: with AICc equal to 3 decimals, as the library's 1e-8, with a quarter of the likelihood
#: evaluations; 1e-3 already chooses another order when the data differ by 2e-16 (the
#: stepwise search is path-dependent), 1e-2 on the same data.
SEARCH_GTOL = 5e-4

_LIB_MINIMIZE = _sfa.minimize


def _search_minimize(fun, x0, args=(), method=None, tol=None, options=None, **kwargs):
    # statsforecast passes ``tol=1e-8``, R's optim *relative function* tolerance, to scipy's
    # BFGS, where it becomes a tolerance on the gradient's norm. With finite-difference
    # gradients that is unreachable: every candidate runs until its line search fails
    # (status 2, the "possible convergence problem" warnings) and the order search of one
    # 200-month series costs ~24,000 likelihood evaluations (10 s). A gradient tolerance that
    # ranks candidates by AICc as well does the same search in a quarter of the time; the
    # chosen model is then polished to full precision (:class:`AutoARIMARefit`).
    if method == "BFGS":
        options = {**(options or {}), "gtol": SEARCH_GTOL}
        tol = None
    return _LIB_MINIMIZE(fun, x0, args=args, method=method, tol=tol, options=options,
                         **kwargs)


def _stateless_arima_like(y, phi, theta, delta, a, P, Pn, up, use_resid):
    # armafn (the normal-likelihood objective) is the only caller with use_resid=False; give it
    # copies so that one evaluation cannot change the next. arimaSS (use_resid=True) must keep
    # updating the model's state in place, because forecast_arima reads it.
    if not use_resid:
        a, P, Pn = a.copy(), P.copy(), Pn.copy()
    return _LIB_ARIMA_LIKE(y, phi, theta, delta, a, P, Pn, up, use_resid)


@contextmanager
def stateless_likelihood(search: bool = False) -> Iterator[None]:
    """Within the block, statsforecast's ARIMA ML/CSS-ML optimizer sees a stateless objective.

    It patches the module attribute ``statsforecast.arima.arima_like``, which the nested
    ``armafn`` looks up at call time. The patch nests (reference-counted) and is thread-safe.
    Code running in other threads at the same time also sees the corrected objective, which is
    harmless. The patch is a no-op for likelihoods that were already stateless.

    With ``search=True`` the library's BFGS also stops at a gradient norm of
    :data:`SEARCH_GTOL` instead of never (:func:`_search_minimize`): for an order search whose
    chosen model is polished afterwards. (The outermost block decides.)
    """
    global _patch_depth, _patch_saved
    with _patch_lock:
        if _patch_depth == 0:
            _patch_saved = (_sfa.arima_like, _sfa.minimize)
            _sfa.arima_like = _stateless_arima_like
            if search:
                _sfa.minimize = _search_minimize
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                _sfa.arima_like, _sfa.minimize = _patch_saved
                _patch_saved = None


# --------------------------------------------------------------------------------------------
# 2. The library's exact likelihood as a pure function, and a refit from a fitted model dict.
# --------------------------------------------------------------------------------------------


def _delta(arma: tuple[int, ...]) -> np.ndarray:
    """Differencing polynomial as statsforecast builds it (``arima``: ``Delta``)."""
    _, _, _, _, period, d, seas_d = arma
    poly = np.array([1.0])
    for _ in range(d):
        poly = convolve(poly, np.array([1.0, -1.0]))
    for _ in range(seas_d):
        poly = convolve(poly, np.r_[1.0, np.zeros(period - 1), -1.0])
    return -poly[1:]


def _design(model: dict) -> np.ndarray | None:
    """Regression columns in coefficient order: intercept, then ``model['xreg']`` (drift, ex_)."""
    cols = []
    if "intercept" in model["coef"]:
        cols.append(np.ones((len(model["x"]), 1)))
    if model.get("xreg") is not None:
        cols.append(np.asarray(model["xreg"], dtype=np.float64))
    return np.concatenate(cols, axis=1) if cols else None


def _roots_outside(poly_coefs_from_lag1: np.ndarray, sign: float) -> bool:
    """True if 1 + sign*(c1 z + c2 z^2 + ...) has all roots strictly outside the unit circle."""
    c = np.trim_zeros(np.asarray(poly_coefs_from_lag1, dtype=np.float64), "b")
    if c.size == 0:
        return True
    roots = np.polynomial.polynomial.polyroots(np.r_[1.0, sign * c])
    return bool(np.all(np.abs(roots) > 1.0 + 1e-8))


class _ExactNegLogLik:
    """``-loglik`` of a statsforecast model dict as a function of its free coefficients.

    It is the library's ``armafn`` (normal distribution) without the shared state: a fresh
    ``make_arima`` per call, the same Kalman filter (``arima_like``), the same ``kappa``
    diffuse prior and the same ``n_used`` scaling. The result equals ``-model["loglik"]``
    exactly (up to rounding) when that number came from a fresh evaluation.
    """

    def __init__(self, model: dict, kappa: float = 1e6):
        self.arma = tuple(int(v) for v in model["arma"])
        self.arma_i32 = np.asarray(self.arma, dtype=np.int32)
        self.narma = sum(self.arma[:4])
        self.x = np.asarray(model["x"], dtype=np.float64)
        self.X = _design(model)
        self.coef = np.array(list(model["coef"].values()), dtype=np.float64)
        self.mask = np.asarray(model["mask"], dtype=bool)
        if self.X is not None and self.X.shape[1] != len(self.coef) - self.narma:
            raise ValueError("regression columns do not match the model's coefficients")
        self.delta = _delta(self.arma)
        self.kappa = kappa
        n_delta = len(self.delta)
        self.n_used = int((~np.isnan(self.x)).sum() - n_delta)

    def full(self, free: np.ndarray) -> np.ndarray:
        par = self.coef.copy()
        par[self.mask] = free
        return par

    def __call__(self, free: np.ndarray, penalize: bool = True) -> float:
        par = self.full(np.asarray(free, dtype=np.float64))
        phi, theta = _sfa.arima_transpar(par, self.arma_i32, False)
        if penalize and not (_roots_outside(phi, -1.0) and _roots_outside(theta, 1.0)):
            return 1e10  # non-stationary AR or non-invertible MA: outside the library's space
        mod = _sfa.make_arima(phi, theta, self.delta, self.kappa)
        x = self.x if self.X is None else self.x - self.X @ par[self.narma :]
        ssq, sumlog, nu = _sfa._arima.arima_like(
            x,
            phi,
            theta,
            self.delta,
            mod["a"],
            mod["P"].ravel(),
            mod["Pn"].ravel(),
            0,
            False,
            np.empty(0),
        )
        if nu == 0 or not np.isfinite(ssq) or ssq <= 0:
            return 1e10
        obj = 0.5 * (math.log(ssq / nu) + sumlog / nu)
        n = self.n_used
        return 0.5 * (2 * n * obj + n + n * math.log(2 * math.pi))


def arima_loglik(model: dict, coef: dict | np.ndarray | None = None) -> float:
    """Exact Gaussian log-likelihood (statsforecast's definition) of ``model``'s coefficients.

    ``coef`` optionally replaces the model's coefficients (a dict by name or a full array).
    The value does not depend on anything evaluated before, unlike the library's optimizer
    objective, so use it to check a reported ``model["loglik"]``.
    """
    f = _ExactNegLogLik(model)
    if coef is None:
        par = f.coef
    elif isinstance(coef, dict):
        par = np.array([coef[k] for k in model["coef"]], dtype=np.float64)
    else:
        par = np.asarray(coef, dtype=np.float64)
    f.coef = par
    return -f(par[f.mask], penalize=False)


def _numeric_cov(f: _ExactNegLogLik, free: np.ndarray) -> np.ndarray | None:
    """Inverse of a central-difference Hessian of -loglik (the library's ``var_coef``)."""
    k = free.size
    h = 1e-4 * np.maximum(np.abs(free), 0.1)
    H = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei = np.zeros(k)
            ej = np.zeros(k)
            ei[i] = h[i]
            ej[j] = h[j]
            v = (f(free + ei + ej) - f(free + ei - ej) - f(free - ei + ej) + f(free - ei - ej)) / (
                4 * h[i] * h[j]
            )
            H[i, j] = H[j, i] = v
    if not np.all(np.isfinite(H)) or np.abs(H).max() > 1e9:
        return None
    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None
    return cov if np.all(np.diag(cov) > 0) else None


def refit_arima(model: dict, *, maxiter: int | None = None, restarts: int = 2) -> dict:
    """Re-maximize the exact likelihood of a fitted statsforecast ARIMA model dict.

    ``model`` is what ``statsforecast.arima.Arima``/``auto_arima_f`` return, or
    ``ARIMA().fit(y).model_``. The series and regressors come from ``model["x"]`` and
    ``model["xreg"]``. Only the free coefficients (``model["mask"]``) move; fixed ones stay.

    The likelihood is the library's own (see :class:`_ExactNegLogLik`). It is maximized with
    Nelder-Mead (``restarts`` rounds, each from the previous optimum) inside the
    stationary/invertible region. The result is accepted only if it improves on the input's
    true likelihood. The coefficients are then put back through ``statsforecast.arima.arima``
    with ``fixed=`` (the path the library uses to apply a model to new data), so the returned
    dict has a consistent Kalman state, residuals, ``sigma2``, ``loglik``, ``aic``/``aicc``/
    ``bic`` and ``var_coef``. Pass it to ``forecast_arima`` as usual.
    """
    if model.get("distribution", "normal") != "normal":
        raise NotImplementedError("refit_arima supports distribution='normal' only")
    f = _ExactNegLogLik(model)
    start = f.coef[f.mask]
    best_x = start
    best_f = f(start, penalize=False)
    if start.size:
        cand = start
        for _ in range(max(restarts, 1)):
            res = minimize(
                f,
                cand,
                method="Nelder-Mead",
                options={
                    "maxiter": maxiter or 400 * start.size,
                    "xatol": 1e-7,
                    "fatol": 1e-10,
                    "adaptive": start.size > 4,
                },
            )
            cand = res.x
            if np.isfinite(res.fun) and res.fun < best_f - 1e-10:
                best_x, best_f = res.x, float(res.fun)
            else:
                break
    par = f.full(best_x)
    return _rebuild(model, f, par, best_x)


def _rebuild(model: dict, f: _ExactNegLogLik, par: np.ndarray, free: np.ndarray) -> dict:
    p, q, sp, sq, period, d, sd = f.arma
    names = list(model["coef"])
    xreg = model.get("xreg")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = _sfa.arima(
            np.asarray(model["x"], dtype=np.float64),
            order=(p, d, q),
            seasonal={"order": (sp, sd, sq), "period": period},
            xreg=None if xreg is None else np.asarray(xreg, dtype=np.float64),
            include_mean="intercept" in model["coef"],
            method="ML",
            fixed=par.copy(),
        )
    out = dict(model)
    out["coef"] = dict(zip(names, par.tolist(), strict=True))
    out["model"] = fit["model"]
    out["residuals"] = fit["residuals"]
    out["loglik"] = float(fit["loglik"])
    out["nobs"] = fit["nobs"]
    out["code"] = 0
    out["n_cond"] = 0
    # Information criteria and sigma2 exactly as statsforecast.arima.Arima computes them.
    npar = int(np.sum(f.mask)) + 1
    resid = np.asarray(fit["residuals"], dtype=np.float64)
    idx = np.where(~np.isnan(resid))[0]
    n = int(np.sum(~np.isnan(resid[idx.min() : idx.max() + 1])))
    nstar = n - d - sd * period
    aic = -2.0 * out["loglik"] + 2 * npar
    out["aic"] = aic
    out["aicc"] = aic + 2 * npar * (nstar / (nstar - npar - 1) - 1)
    out["bic"] = aic + npar * (math.log(nstar) - 2)
    out["sigma2"] = float(np.nansum(resid**2) / (nstar - npar + 1))
    if model.get("ic") is not None:
        for key in ("aicc", "aic", "bic"):
            if model.get(key) is not None and np.isclose(model["ic"], model[key]):
                out["ic"] = out[key]
                break
    if free.size:
        cov = _numeric_cov(f, free)
        if cov is not None:
            out["var_coef"] = cov
    return out


# --------------------------------------------------------------------------------------------
# 3. statsforecast-compatible models.
# --------------------------------------------------------------------------------------------


class _RefitMixin:
    polish: bool | str

    def _check_distribution(self) -> None:
        if getattr(self, "distribution", "normal") != "normal":
            raise NotImplementedError(f"{type(self).__name__} supports distribution='normal' only")

    def _needs_polish(self) -> bool:
        if self.polish == "auto":
            # The patched BFGS converges; what can still go wrong upstream is a reported loglik
            # that is not the likelihood of the returned coefficients (e.g. after maInvert the
            # library re-runs a *CSS* optimization). Polish only then.
            reported = float(self.model_["loglik"])  # type: ignore[attr-defined]
            true = arima_loglik(self.model_)  # type: ignore[attr-defined]
            return not np.isfinite(reported) or abs(reported - true) > 1e-6 * max(1.0, abs(true))
        return bool(self.polish)

    #: An order search fits its candidates to :data:`SEARCH_GTOL` (the chosen model's
    #: log-likelihood then lies within 1e-3 of a full-precision refit on h02).
    _search = False

    def fit(self, y: np.ndarray, X: np.ndarray | None = None):
        self._check_distribution()
        with stateless_likelihood(search=self._search):
            super().fit(y, X)  # type: ignore[misc]
        if self._needs_polish():
            self.model_ = refit_arima(self.model_)
        return self

    def forecast(
        self,
        y: np.ndarray,
        h: int,
        X: np.ndarray | None = None,
        X_future: np.ndarray | None = None,
        level: list[int] | None = None,
        fitted: bool = False,
    ):
        fitted_model = self.new().fit(y, X)  # type: ignore[attr-defined]
        res = fitted_model.predict(h=h, X=X_future, level=level)
        if fitted:
            res.update(fitted_model.predict_in_sample(level=level))
        return res


class ARIMARefit(_RefitMixin, ARIMA):
    """``statsforecast.models.ARIMA`` whose ML/CSS-ML fit maximizes the exact likelihood.

    It takes the same arguments as ``ARIMA``, plus ``polish``, which controls whether
    :func:`refit_arima` runs after the library's (now working) BFGS: ``True`` always,
    ``False`` never, ``"auto"`` (the default) only when the reported log-likelihood is not the
    likelihood of the returned coefficients. See the module docstring for the
    upstream bug. Only ``distribution="normal"`` is supported.
    """

    def __init__(self, *args, polish: bool | str = "auto", alias: str = "ARIMARefit", **kwargs):
        super().__init__(*args, alias=alias, **kwargs)
        self.polish = polish


class AutoARIMARefit(_RefitMixin, AutoARIMA):
    """``statsforecast.models.AutoARIMA`` whose order search and final fit use exact ML.

    Every candidate is fitted under :func:`stateless_likelihood`, so the AICc comparison uses
    maximized likelihoods rather than likelihoods at CSS estimates. ``polish`` has the same
    meaning as in :class:`ARIMARefit` and applies to the chosen model.
    """

    _search = True

    def __init__(self, *args, polish: bool | str = "auto", alias: str = "AutoARIMARefit", **kwargs):
        super().__init__(*args, alias=alias, **kwargs)
        self.polish = polish


# --------------------------------------------------------------------------------------------
# 4. Back-transform with bias adjustment (fpp3 §5.6, §13.3).
# --------------------------------------------------------------------------------------------


def sigma_from_interval(lo, hi, level: float) -> np.ndarray:
    """h-step forecast standard deviation implied by a symmetric normal interval.

    ``sigma_h = (hi - lo) / (2 * z)`` with ``z = Phi^{-1}(0.5 + level/200)``. Use the interval on
    the transformed (e.g. log) scale, where the forecast distribution is normal.
    """
    z = norm.ppf(0.5 + float(level) / 200.0)
    return (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)) / (2.0 * z)


def bias_adjusted_mean(mu, sigma, lmbda: float = 0.0) -> np.ndarray:
    """Mean on the original scale of a normal forecast ``N(mu, sigma**2)`` on the Box-Cox scale.

    fpp3 §5.6 ("Bias adjustments"):

    * ``lmbda == 0`` (log): ``exp(mu) * (1 + sigma**2 / 2)``
    * otherwise, with ``b = lmbda*mu + 1``:
      ``b**(1/lmbda) * (1 + sigma**2 * (1 - lmbda) / (2 * b**2))``

    Without the adjustment, the back-transformed point forecast is the median (``exp(mu)``).
    """
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    if lmbda == 0:
        return np.exp(mu) * (1.0 + s2 / 2.0)
    base = lmbda * mu + 1.0
    return np.power(base, 1.0 / lmbda) * (1.0 + s2 * (1.0 - lmbda) / (2.0 * base**2))
