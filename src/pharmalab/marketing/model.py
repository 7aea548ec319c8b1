"""Fit a Bayesian marketing-mix model with PyMC-Marketing: :func:`fit_mmm`.

The model is PyMC-Marketing's multidimensional ``MMM`` (Jin et al. 2017; the library's
"MMM with geo hierarchy" example): geometric adstock, logistic saturation, an intercept, a
linear trend and yearly Fourier seasonality per region, the user's controls, and Normal noise
per region; target and spend scaled by their largest value per region. With several regions
the media parameters are partially pooled: per channel a mean and a spread, each region's
decay, steepness and ceiling drawn around them (:func:`_priors`). With a supply-constraint
column the likelihood is right-censored on capped rows (:mod:`.censored`).

Sampling is NUTS; nutpie (Rust, compiled with numba) when installed — it gives the same
posterior as PyMC's default sampler about 1.5–2× faster here (benchmarks/RESULTS.md,
"Marketing") — else PyMC's own. Convergence is part of the result (:class:`Convergence`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pharmalab.errors import MarketingInputError
from pharmalab.marketing.panel import MIN_PERIODS, Panel
from pharmalab.marketing.posterior import TREND, Posterior, _periods_since

__all__ = ["Convergence", "MMMFit", "MMMSettings", "fit_mmm", "POOLING", "SAMPLERS"]

SAMPLERS = ("auto", "nutpie", "pymc")
POOLING = ("partial", "shared-shape", "none")
# A reported quantity with R-hat above this, or more divergent transitions than this share of
# the draws, means the fit has not converged (Vehtari et al. 2021 recommend 1.01 for final
# results; 1.05 is the floor below which a number is never reported silently).
RHAT_LIMIT = 1.05
DIVERGENCE_LIMIT = 0.01


@dataclass(frozen=True)
class MMMSettings:
    """How to fit the MMM.

    Attributes
    ----------
    draws : int
        Posterior draws per chain (after tuning).
    tune : int or None
        Tuning steps per chain (default: ``draws``).
    chains : int
    seed : int
    sampler : {'auto', 'nutpie', 'pymc'}
        ``auto``: nutpie when installed, else PyMC's NUTS.
    target_accept : float
        NUTS target acceptance (higher: smaller steps, fewer divergences; 0.95 by default,
        as the saturation ceiling and steepness trade off).
    l_max : int or None
        Longest adstock lag in periods (default 8 weeks or 4 months).
    yearly_seasonality : int
        Fourier order of the yearly cycle (0: none).
    holdout : int
        The last periods kept out of the fit and forecast for ``fit_metrics.csv``.
    unit_value : float
        Value of one unit of the target (EUR), for ROI.
    pooling : {'partial', 'shared-shape', 'none'}
        How regions share the media parameters (:func:`_priors`): ``partial`` — each
        region's decay, steepness and ceiling partially pooled; ``shared-shape`` — one
        decay and steepness per channel for all regions and the ceiling partially pooled
        (Google Meridian's structure; about 2× faster); ``none`` — every region alone.
    censor : bool
        Use the panel's supply constraint as right-censoring (False: an ordinary MMM on the
        same rows, for comparison).
    saturation : {'logistic', 'hill'}
        The response curve: PyMC-Marketing's default logistic curve (concave), or the Hill
        curve (Meridian's; its slope lets the curve start S-shaped, as a channel that needs
        a threshold of spend before it works).
    """

    draws: int = 1000
    tune: int | None = None
    chains: int = 4
    seed: int = 0
    sampler: str = "auto"
    target_accept: float = 0.95
    l_max: int | None = None
    yearly_seasonality: int = 2
    holdout: int = 0
    unit_value: float = 1.0
    pooling: str = "partial"
    censor: bool = True
    saturation: str = "logistic"

    def __post_init__(self) -> None:
        for name in ("draws", "chains"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MarketingInputError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if self.chains < 2:
            raise MarketingInputError("chains must be ≥ 2: R-hat compares chains")
        if self.draws < 50:
            raise MarketingInputError(f"draws must be ≥ 50, got {self.draws}")
        if self.tune is not None and (not isinstance(self.tune, int) or self.tune < 0):
            raise MarketingInputError(f"tune must be a whole number ≥ 0, got {self.tune!r}")
        if self.sampler not in SAMPLERS:
            raise MarketingInputError(f"sampler must be one of {', '.join(SAMPLERS)}, got "
                                      f"{self.sampler!r}")
        if not 0.5 <= self.target_accept < 1:
            raise MarketingInputError("target_accept must be in [0.5, 1)")
        if self.l_max is not None and (not isinstance(self.l_max, int) or self.l_max < 1):
            raise MarketingInputError(f"l_max must be a whole number ≥ 1, got {self.l_max!r}")
        if not isinstance(self.yearly_seasonality, int) or self.yearly_seasonality < 0:
            raise MarketingInputError("yearly_seasonality must be a whole number ≥ 0")
        if not isinstance(self.holdout, int) or self.holdout < 0:
            raise MarketingInputError(f"holdout must be a whole number of periods ≥ 0, got "
                                      f"{self.holdout!r}")
        if self.saturation not in SATURATIONS:
            raise MarketingInputError(f"saturation must be one of {', '.join(SATURATIONS)}, "
                                      f"got {self.saturation!r}")
        if self.pooling not in POOLING:
            raise MarketingInputError(f"pooling must be one of {', '.join(POOLING)}, got "
                                      f"{self.pooling!r}")
        if not (isinstance(self.unit_value, int | float) and math.isfinite(self.unit_value)
                and self.unit_value > 0):
            raise MarketingInputError(f"unit value must be a number > 0 (EUR per unit), got "
                                      f"{self.unit_value!r}")

    def lags(self, panel: Panel) -> int:
        return self.l_max or (4 if panel.kind == "month" else 8)


@dataclass(frozen=True)
class Convergence:
    """Whether the sampler converged: R-hat and effective sample size of every reported
    quantity, and divergent transitions.

    Attributes
    ----------
    converged : bool
        ``max_rhat ≤ 1.05`` and ``divergence_rate ≤ 1%``.
    max_rhat : float
        Largest R-hat of the reported quantities (:func:`reported_draws`).
    worst : str
        The reported quantity with the largest R-hat.
    min_ess_bulk : float
        Smallest bulk ESS of the reported quantities.
    divergences : int
    divergence_rate : float
        Divergent transitions / draws (all chains).
    messages : tuple of str
        What is wrong, for people.
    notes : tuple of str
        What is worth knowing though the fit converged (slowly mixing parameters).
    """

    converged: bool
    max_rhat: float
    worst: str
    min_ess_bulk: float
    divergences: int
    divergence_rate: float
    messages: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def banner(self) -> str:
        """One line for the CLI and the report."""
        if self.converged:
            return (f"converged: max R-hat {self.max_rhat:.3f}, min bulk ESS "
                    f"{self.min_ess_bulk:.0f}, {self.divergences} divergent transitions")
        return "NOT CONVERGED — do not use these numbers: " + "; ".join(self.messages)


@dataclass
class MMMFit:
    """A fitted MMM.

    Attributes
    ----------
    panel : Panel
        All periods (training, then hold-out).
    settings : MMMSettings
    posterior : Posterior
    train_periods : int
    diagnostics : pandas.DataFrame
        ``quantity, kind, mean, sd, lo, hi, r_hat, ess_bulk, ess_tail, ok``: ``kind``
        ``reported`` for every quantity the outputs report (ROI, response at half and twice
        the spend, contributions, decay), ``parameter`` for the model's parameters; lo/hi are
        the 90% interval, ``ok`` is R-hat ≤ 1.05.
    convergence : Convergence
    sampler : str
        The sampler used (``nutpie`` or ``pymc``).
    chains : int
    seconds : dict
        ``build``, ``sample``, ``total``.
    notes : list of str
    idata : arviz.InferenceData or None
        The library's result (not kept by :func:`~pharmalab.marketing.load_fit`).
    mmm : object or None
        The PyMC-Marketing ``MMM`` (None after loading).
    """

    panel: Panel
    settings: MMMSettings
    posterior: Posterior
    train_periods: int
    diagnostics: pd.DataFrame
    convergence: Convergence
    sampler: str
    chains: int
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    idata: object | None = None
    mmm: object | None = None

    @property
    def train(self) -> Panel:
        return self.panel.head(self.train_periods)

    @property
    def unit_value(self) -> float:
        return self.settings.unit_value


def fit_mmm(panel: Panel, settings: MMMSettings | None = None, *,
            progress=None) -> MMMFit:
    """Fit the MMM to a panel with PyMC-Marketing.

    Parameters
    ----------
    panel : Panel
        From :func:`~pharmalab.marketing.read_panel` (or :func:`~pharmalab.marketing.simulate`
        through :func:`~pharmalab.marketing.check_panel`).
    settings : MMMSettings, optional
    progress : callable, optional
        Called with a short text at each stage.

    Returns
    -------
    MMMFit

    Raises
    ------
    MarketingInputError
        A hold-out that leaves fewer periods than the minimum (52 weeks, 24 months) to fit.

    References
    ----------
    Jin, Wang, Sun, Chan, Koehler (2017), Bayesian Methods for Media Mix Modeling with
    Carryover and Shape Effects. PyMC-Marketing, ``pymc_marketing.mmm.multidimensional.MMM``.
    Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021), Rank-normalization, folding, and
    localization: an improved R-hat (Bayesian Analysis).
    """
    settings = settings or MMMSettings()
    say = progress or (lambda text: None)
    n = len(panel.dates)
    train_periods = n - settings.holdout
    minimum = MIN_PERIODS[panel.kind]
    if train_periods < minimum:
        raise MarketingInputError(
            f"--holdout {settings.holdout} leaves {train_periods} {panel.kind}s to fit; the "
            f"model needs at least {minimum} (the panel has {n})")
    train = panel.head(train_periods)
    notes: list[str] = []
    unused = panel.columns.get("unused_spend") or []
    if unused:
        notes.append(f"spend column(s) {', '.join(unused)} are not among the channels and were "
                     "left out of the model (their effect sits in the baseline)")
    censored = train.censored
    use_censoring = settings.censor and bool(censored.any())
    if panel.columns.get("constraint") and not censored.any():
        notes.append(f"the constraint column {panel.columns['constraint']!r} marks no "
                     "training row as supply-constrained: an ordinary MMM was fitted")
    if panel.columns.get("constraint") and censored.any() and not settings.censor:
        notes.append(f"{int(censored.sum())} supply-constrained rows fitted as if they were "
                     "demand (censoring switched off)")

    t0 = time.perf_counter()
    say("building the model")
    with _quiet():
        mmm = _build(train, settings, censored if use_censoring else None)
    t1 = time.perf_counter()
    sampler = _sampler(settings.sampler)
    say(f"sampling ({sampler}, {settings.chains} chains × {settings.draws} draws)")
    with _quiet():
        idata = _sample(mmm.model, settings, sampler)
    t2 = time.perf_counter()
    say("diagnostics")
    posterior = _posterior(mmm, idata, train, settings)
    diagnostics, convergence = _diagnose(idata, posterior, train, settings)
    notes += list(convergence.notes)
    if use_censoring:
        notes.append(f"{int(censored.sum())} of {censored.size} training rows were "
                     "supply-constrained: their scripts enter the likelihood as a lower "
                     "bound on demand (right-censored)")
    return MMMFit(panel, settings, posterior, train_periods, diagnostics, convergence,
                  sampler, settings.chains,
                  {"build": round(t1 - t0, 3), "sample": round(t2 - t1, 3),
                   "total": round(time.perf_counter() - t0, 3)}, notes, idata, mmm)


# The posterior variables the forward pass needs (some are deterministics of non-centered
# parameters; the large per-period deterministics are never stored).
_PARAMETERS = ("adstock_alpha", "saturation_lam", "saturation_kappa", "saturation_slope",
               "saturation_beta", "intercept_contribution",
               "gamma_control", "gamma_fourier", "y_sigma")


def _sample(model, settings: MMMSettings, sampler: str):
    """NUTS on the model's free variables, then the parameters that are deterministics —
    what ``MMM.fit`` does, without computing every per-period contribution for every draw.

    Raises
    ------
    KeyboardInterrupt
        When sampling was interrupted (Ctrl-C, SIGTERM): the samplers would otherwise hand
        back the draws made so far as if they were a result.
    """
    import pymc as pm

    free = [v.name for v in model.free_RVs]
    tune = settings.tune if settings.tune is not None else settings.draws
    if sampler == "nutpie":
        idata = _sample_nutpie(model, free, settings, tune)
    else:
        with model:
            idata = pm.sample(draws=settings.draws, tune=tune, chains=settings.chains,
                              cores=min(settings.chains, _cores()),
                              target_accept=settings.target_accept,
                              random_seed=settings.seed, progressbar=False, var_names=free,
                              compute_convergence_checks=False)
    post = idata.posterior
    if (post.sizes["chain"] < settings.chains or post.sizes["draw"] < settings.draws
            or any(bool(post[name].isnull().any()) for name in free if name in post)):
        raise KeyboardInterrupt("sampling was interrupted")
    with model:
        derived = [name for name in _PARAMETERS
                   if name in model.named_vars and name not in idata.posterior]
        if derived:
            idata.posterior = pm.compute_deterministics(
                idata.posterior, var_names=derived, merge_dataset=True, progressbar=False)
    return idata


def _sample_nutpie(model, free: list[str], settings: MMMSettings, tune: int):
    """nutpie in the background, waited for in Python so that Ctrl-C and SIGTERM stop it
    (nutpie's blocking call turns an interrupt into a partial result)."""
    import nutpie

    with _interruptible() as check:
        compiled = nutpie.compile_pymc_model(model, var_names=free)
        check()
        sampler = nutpie.sample(compiled, draws=settings.draws, tune=tune,
                                chains=settings.chains, cores=min(settings.chains, _cores()),
                                seed=settings.seed, target_accept=settings.target_accept,
                                progress_bar=False, blocking=False)
        try:
            while True:
                check()
                try:
                    return sampler.wait(timeout=0.5)
                except TimeoutError:  # not finished: let Python see signals, then wait on
                    continue
        except BaseException:
            sampler.cancel()
            raise


@contextmanager
def _interruptible():
    """Ctrl-C and SIGTERM while nutpie compiles and samples, remembered and raised by the
    returned ``check()`` (called twice a second while sampling, and after compiling).

    Raising from the signal handler itself is not reliable here: numba and llvmlite run
    Python callbacks and finalizers while they compile, and an exception raised inside one
    is printed and dropped. A second signal is raised at once.
    """
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    seen: list[int] = []
    previous = {}

    def remember(signum, frame):
        seen.append(signum)
        if len(seen) > 1:
            check()
        os.write(2, b"stopping: the sampler is asked to stop (again to force)\n")

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, remember)

    def check() -> None:
        if seen:
            if signal.SIGTERM in seen:
                raise SystemExit(128 + signal.SIGTERM)
            raise KeyboardInterrupt

    try:
        yield check
    except Exception:
        check()  # an interrupt that another library turned into its own error on the way
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _cores() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _sampler(choice: str) -> str:
    if choice in ("auto", "nutpie"):
        if importlib.util.find_spec("nutpie") is not None:
            return "nutpie"
        if choice == "nutpie":
            raise MarketingInputError("sampler 'nutpie' is not installed (pip install "
                                      "nutpie); use --sampler pymc")
    return "pymc"


@contextmanager
def _quiet():
    """PyMC and PyMC-Marketing talk a lot on stderr; our diagnostics say what matters."""
    names = ("pymc", "pymc_marketing", "pytensor", "nutpie")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def control_offsets(panel: Panel) -> np.ndarray:
    """What each control is measured from ``(control,)``: 0 for an on/off control (a
    competitor's entry counts from its absence), the training mean for a continuous one (a
    price index's effect is relative to its usual level, so the baseline is not inflated by
    the effect of an average price)."""
    offsets = []
    for column in panel.controls:
        values = panel.frame[column]
        binary = set(values.unique()) <= {0.0, 1.0}
        offsets.append(0.0 if binary else float(values.mean()))
    return np.asarray(offsets, dtype=float)


def model_frame(panel: Panel, start: pd.Timestamp, periods_per_year: float,
                offsets: np.ndarray | None = None) -> pd.DataFrame:
    """The frame PyMC-Marketing reads: ``ds, geo``, the channels' media input (activity or
    spend), the controls less their ``offsets`` and the trend (years since ``start``)."""
    frame = panel.frame[["ds", "geo", *panel.controls]].copy()
    if offsets is not None:
        for column, offset in zip(panel.controls, offsets, strict=True):
            frame[column] = frame[column] - offset
    # the media input: activity (calls, impressions) where given, else spend
    media = panel.media
    for k, channel in enumerate(panel.channels):
        frame[channel] = media[:, :, k].reshape(-1)
    frame = frame[["ds", "geo", *panel.channels, *panel.controls]]
    frame[TREND] = (_periods_since(start, pd.DatetimeIndex(frame["ds"]), periods_per_year)
                    / periods_per_year)
    return frame


def periods_per_year(panel: Panel) -> float:
    return 12.0 if panel.kind == "month" else 365.25 / 7.0


# The saturation curves and the posterior names of their shape parameters.
SATURATIONS = ("logistic", "hill")
_CURVE_PARAMETERS = {"logistic": {"lam": "saturation_lam"},
                     "hill": {"kappa": "saturation_kappa", "slope": "saturation_slope"}}


def _priors(settings: MMMSettings, n_geos: int) -> dict:
    """Media priors in scaled units (media and scripts divided by their largest value per
    region).

    ``partial`` (default): each media parameter partially pooled across regions (Gelman &
    Hill 2007, ch. 12; PyMC-Marketing's multidimensional example) — per channel a mean and a
    spread on the logit (decay α) or log scale (the curve's shape, ceiling β), each region's
    value drawn around them, non-centered. Means sit where PyMC-Marketing's defaults do
    (α ≈ 0.27, logistic λ ≈ e; Hill half-saturation κ ≈ 0.5 of the largest media with
    slope ≈ 1; β ≈ 0.2 of the region's largest weekly scripts); spreads let regions differ
    by about ±50%. ``shared-shape``: Google Meridian's structure — one α and one curve shape
    per channel for all regions, β partially pooled; about 2× faster, but it covered the true
    ROI less often when regions saturate differently (benchmarks/RESULTS.md, "Marketing").
    ``none``, or one region: the same priors without pooling. NUTS runs at a target
    acceptance of 0.95 against the divergences the ceiling–shape ridge causes.
    """
    from pymc_extras.prior import Prior

    per_region = ("geo", "channel")
    log_half = float(np.log(0.5))
    if settings.saturation == "hill":
        alone = {"saturation_kappa": lambda dims: Prior("LogNormal", mu=log_half, sigma=0.7,
                                                        dims=dims),
                 "saturation_slope": lambda dims: Prior("LogNormal", mu=0.0, sigma=0.5,
                                                        dims=dims)}
        pooled_shape = {"saturation_kappa": (log_half, 0.7, 0.5),
                        "saturation_slope": (0.0, 0.5, 0.3)}
    else:
        alone = {"saturation_lam": lambda dims: Prior("Gamma", alpha=3, beta=1, dims=dims)}
        pooled_shape = {"saturation_lam": (1.0, 1.0, 0.5)}

    def pooled(mu: float, sd: float, spread: float, transform: str) -> Prior:
        # a channel's mean across regions, and each region's deviation (non-centered)
        return Prior("Normal", mu=Prior("Normal", mu=mu, sigma=sd, dims="channel"),
                     sigma=Prior("HalfNormal", sigma=spread, dims="channel"),
                     dims=per_region, centered=False, transform=transform)

    if settings.pooling == "none" or n_geos < 2:
        return {"adstock_alpha": Prior("Beta", alpha=1, beta=3, dims=per_region),
                "saturation_beta": Prior("HalfNormal", sigma=1, dims=per_region),
                **{name: make(per_region) for name, make in alone.items()}}
    if settings.pooling == "shared-shape":
        return {"adstock_alpha": Prior("Beta", alpha=1, beta=3, dims="channel"),
                "saturation_beta": pooled(-1.5, 1.5, 0.5, "exp"),
                **{name: make("channel") for name, make in alone.items()}}
    return {"adstock_alpha": pooled(-1.0, 1.0, 0.5, "sigmoid"),
            "saturation_beta": pooled(-1.5, 1.5, 0.5, "exp"),
            **{name: pooled(*args, "exp") for name, args in pooled_shape.items()}}


def _build(train: Panel, settings: MMMSettings, censored: np.ndarray | None):
    """The PyMC-Marketing MMM, built on the training panel."""
    from pymc_extras.prior import Prior
    from pymc_marketing.mmm import GeometricAdstock, HillSaturation, LogisticSaturation
    from pymc_marketing.mmm.multidimensional import MMM

    from pharmalab.marketing.censored import RightCensoredLikelihood

    start = train.dates[0]
    frame = model_frame(train, start, periods_per_year(train), control_offsets(train))
    likelihood = Prior("Normal", sigma=Prior("HalfNormal", sigma=1, dims="geo"),
                       dims=("date", "geo"))
    config = {
        **_priors(settings, len(train.geos)),
        "intercept": Prior("Normal", mu=0.5, sigma=0.5, dims="geo"),
        "gamma_control": Prior("Normal", mu=0, sigma=1, dims=("geo", "control")),
        "gamma_fourier": Prior("Laplace", mu=0, b=0.5, dims=("geo", "fourier_mode")),
        "likelihood": (likelihood if censored is None else RightCensoredLikelihood(
            likelihood, pd.DataFrame(censored.astype(np.int8), index=train.dates,
                                     columns=list(train.geos)))),
    }
    mmm = MMM(
        date_column="ds", target_column="y", channel_columns=list(train.channels),
        control_columns=[*train.controls, TREND], dims=("geo",),
        # per-region scales: regions of any size share the pooled priors
        scaling={"channel": {"method": "max", "dims": ()},
                 "target": {"method": "max", "dims": ()}},
        adstock=GeometricAdstock(l_max=settings.lags(train)),
        saturation=(HillSaturation() if settings.saturation == "hill"
                    else LogisticSaturation()),
        yearly_seasonality=settings.yearly_seasonality or None,
        model_config=config,
    )
    mmm.build_model(frame, train.frame["y"].rename("y"))
    return mmm


def _draws(posterior, name: str, dims: tuple[str, ...]) -> np.ndarray:
    """A variable of the posterior dataset as ``(chain × draw, *dims)``; a variable shared
    across a dimension it lacks (e.g. one decay per channel for every region) is repeated
    along it."""
    var = posterior[name]
    missing = [d for d in dims if d not in var.dims]
    if missing:
        var = var.expand_dims({d: posterior.sizes[d] for d in missing})
    values = var.transpose("chain", "draw", *dims).to_numpy()
    return values.reshape((-1,) + values.shape[2:])


def _posterior(mmm, idata, train: Panel, settings: MMMSettings) -> Posterior:
    scales = mmm.get_scales_as_xarray()
    channel_scale = scales["channel_scale"].transpose("geo", "channel").sel(
        geo=list(train.geos), channel=list(train.channels)).to_numpy()
    target_scale = scales["target_scale"].sel(geo=list(train.geos)).to_numpy()
    post = idata.posterior.sel(geo=list(train.geos))
    controls = (*train.controls, TREND)
    if settings.yearly_seasonality:
        modes = tuple(str(m) for m in post["fourier_mode"].to_numpy())
        gamma_fourier = _draws(post, "gamma_fourier", ("geo", "fourier_mode"))
    else:
        modes = ()
        gamma_fourier = np.zeros((post.sizes["chain"] * post.sizes["draw"],
                                  len(train.geos), 0))
    gamma_control = _draws(post.sel(control=list(controls)), "gamma_control",
                           ("geo", "control"))
    media = ("geo", "channel")
    return Posterior(
        channels=train.channels, geos=tuple(train.geos), controls=controls,
        fourier_modes=modes, l_max=settings.lags(train), start=train.dates[0],
        periods_per_year=periods_per_year(train),
        channel_scale=channel_scale, target_scale=target_scale,
        cost_per_unit=train.cost_per_unit,
        control_offset=np.append(control_offsets(train), 0.0),  # the trend from its origin
        alpha=_draws(post, "adstock_alpha", media),
        beta=_draws(post, "saturation_beta", media),
        saturation=settings.saturation,
        **{attribute: _draws(post, name, media)
           for attribute, name in _CURVE_PARAMETERS[settings.saturation].items()},
        **({"lam": None} if settings.saturation == "hill" else {}),
        intercept=_draws(post, "intercept_contribution", ("geo",)),
        gamma_control=gamma_control, gamma_fourier=gamma_fourier,
        sigma=_draws(post, "y_sigma", ("geo",)),
    )


def roi_draws(posterior: Posterior, train: Panel, unit_value: float) -> np.ndarray:
    """ROI per draw and channel ``(draw, channel)`` over the training periods: incremental
    units × unit value / spend."""
    units = posterior.media_totals(train.media)
    return units * unit_value / train.spend.sum(axis=(0, 1))[None, :]


def reported_draws(posterior: Posterior, train: Panel, unit_value: float
                   ) -> dict[str, np.ndarray]:
    """Every quantity the outputs report, per draw ``(draw,)``: ROI and the response at
    half and twice the spend per channel (roi.csv, response_curves.parquet), each channel's
    and each control's total contribution and the baseline's (contributions.parquet), the
    decay per channel and region (adstock.csv)."""
    media = train.media
    controls = (train.grid(list(train.controls)) if train.controls
                else np.zeros(media.shape[:2] + (0,)))
    totals: dict[str, list[np.ndarray]] = {}
    for part in posterior.chunks():
        for name, draws in part.components(train.dates, media, controls).items():
            totals.setdefault(name, []).append(draws.sum(axis=(1, 2)))
    out: dict[str, np.ndarray] = {}
    roi = roi_draws(posterior, train, unit_value)
    for k, channel in enumerate(train.channels):
        out[f"roi[{channel}]"] = roi[:, k]
        for m in (0.5, 2.0):
            units = posterior.media_totals(media[..., [k]] * m, channels=[k])
            out[f"response[{channel}, {m:g}x spend]"] = units[:, 0]
    for name, pieces in totals.items():
        out[f"contribution[{name}]"] = np.concatenate(pieces)
    per_region = len(train.geos) > 1 and not posterior.shared("alpha")
    for k, channel in enumerate(train.channels):
        out[f"decay[{channel}]"] = posterior.alpha[:, :, k].mean(axis=1)
        if per_region:
            for g, geo in enumerate(train.geos):
                out[f"decay[{geo}, {channel}]"] = posterior.alpha[:, g, k]
    return out


def _diagnose(idata, posterior: Posterior, train: Panel,
              settings: MMMSettings) -> tuple[pd.DataFrame, Convergence]:
    """R-hat (rank-normalized, split; Vehtari et al. 2021) and bulk/tail ESS of every
    reported quantity and every model parameter; convergence is judged on the reported
    quantities and on divergent transitions, the parameters' figures are shown beside."""
    import arviz as az

    chains = idata.posterior.sizes["chain"]
    rows = []

    def add(kind: str, quantity: str, draws: np.ndarray) -> None:
        by_chain = draws.reshape(chains, -1)
        q05, q95 = np.quantile(draws, [0.05, 0.95])
        rows.append({"quantity": quantity, "kind": kind, "mean": float(draws.mean()),
                     "sd": float(draws.std(ddof=1)), "lo": float(q05), "hi": float(q95),
                     "r_hat": float(az.rhat(by_chain)),
                     "ess_bulk": float(az.ess(by_chain, method="bulk")),
                     "ess_tail": float(az.ess(by_chain, method="tail"))})

    for quantity, draws in reported_draws(posterior, train, settings.unit_value).items():
        add("reported", quantity, draws)
    arrays = {"adstock_alpha": "alpha", "saturation_beta": "beta",
              **{name: attribute for attribute, name in
                 _CURVE_PARAMETERS[posterior.saturation].items()}}
    for name, attribute in arrays.items():
        values = getattr(posterior, attribute)
        if posterior.shared(attribute):  # one per channel, whatever the region
            for k, channel in enumerate(train.channels):
                add("parameter", f"{name}[{channel}]", values[:, 0, k])
            continue
        for g, geo in enumerate(train.geos):
            for k, channel in enumerate(train.channels):
                add("parameter", f"{name}[{geo}, {channel}]", values[:, g, k])
    for g, geo in enumerate(train.geos):
        add("parameter", f"intercept[{geo}]", posterior.intercept[:, g])
        add("parameter", f"sigma[{geo}]", posterior.sigma[:, g])
        for k, control in enumerate(posterior.controls):
            add("parameter", f"gamma_control[{geo}, {control}]",
                posterior.gamma_control[:, g, k])
        for k, mode in enumerate(posterior.fourier_modes):
            add("parameter", f"gamma_fourier[{geo}, {mode}]", posterior.gamma_fourier[:, g, k])
    table = pd.DataFrame(rows)
    table["ok"] = table["r_hat"] <= RHAT_LIMIT

    diverging = int(idata.sample_stats["diverging"].sum()) if "diverging" in \
        idata.sample_stats else 0
    total = posterior.draws
    rate = diverging / total if total else 0.0
    reported = table[table["kind"] == "reported"]
    ranked = reported["r_hat"].fillna(np.inf)  # R-hat is NaN when a chain is constant
    worst = reported.loc[ranked.idxmax()]
    messages = []
    if not worst["r_hat"] <= RHAT_LIMIT:
        bad = int((~reported["ok"]).sum())
        messages.append(f"R-hat {worst['r_hat']:.3f} on {worst['quantity']} "
                        f"({bad} reported quantities above {RHAT_LIMIT})")
    if rate > DIVERGENCE_LIMIT:
        messages.append(f"{diverging} divergent transitions ({rate:.1%} of {total} draws, "
                        f"limit {DIVERGENCE_LIMIT:.0%})")
    if messages:
        messages.append("run more --draws and --chains, or raise --target-accept")
    parameters = table[table["kind"] == "parameter"]
    slow = parameters[~parameters["ok"]]
    notes = ()
    if len(slow) and not messages:
        top = slow.loc[slow["r_hat"].fillna(np.inf).idxmax()]
        notes = (f"{len(slow)} model parameters mix slowly (R-hat up to {top['r_hat']:.3f} on "
                 f"{top['quantity']}: the saturation ceiling and steepness trade off); every "
                 "reported quantity converged",)
    convergence = Convergence(
        converged=not messages, max_rhat=float(worst["r_hat"]), worst=str(worst["quantity"]),
        min_ess_bulk=float(reported["ess_bulk"].min()), divergences=diverging,
        divergence_rate=rate, messages=tuple(messages), notes=notes)
    return table, convergence
