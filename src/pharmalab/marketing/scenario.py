"""A marketing plan's demand as a forecast folder, so supply can plan inventory for it.

The folder has the layout ``pharmalab forecast`` writes and ``pharmalab supply --forecast``
reads: ``forecast.parquet`` (``unique_id, ds, mean``, quantiles ``q0.025 … q0.975``,
``lo-80, hi-80, lo-95, hi-95``), ``paths.parquet`` (``unique_id, ds, path, y``: coherent
sample paths — each path is one posterior draw plus noise, and the total is the sum of the
regions), ``tags.json`` and ``summing_matrix.parquet`` (regions under ``Total``),
``history.parquet`` (the scripts observed per region) and, when the model was fitted with a
hold-out, ``backtest_forecasts.parquet`` / ``backtest_paths.parquet`` (the hold-out periods
forecast from the end of the training data with the spend that was actually made — the
policy backtest's windows).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab.atomic import atomic_path
from pharmalab.marketing.allocate import Allocation
from pharmalab.marketing.model import MMMFit

__all__ = ["QUANTILES", "write_plan_forecast"]

# The quantile levels of a pharmalab forecast folder (pharmalab.forecast writes the same).
QUANTILES = (0.025, *(round(0.05 * i, 2) for i in range(1, 20)), 0.975)
TOTAL = "Total"


def _column(q: float) -> str:
    return f"q{q:.3f}".rstrip("0") if round(q * 100) != q * 100 else f"q{q:.2f}"


def _ids(geos: tuple[str, ...]) -> list[str]:
    """Bottom series names: ``Total/<geo>`` (Nixtla's hierarchy naming), or ``Total`` alone
    for a national panel."""
    return [TOTAL] if len(geos) == 1 else [f"{TOTAL}/{g}" for g in geos]


def _predictive(mu: np.ndarray, sigma: np.ndarray, seed: int) -> np.ndarray:
    """Demand draws ``(draw, period, geo)``: expected demand plus Normal noise, ≥ 0."""
    noise = np.random.default_rng(seed).standard_normal(mu.shape)
    return np.maximum(mu + noise * sigma[:, None, :], 0.0)


def _frames(draws: np.ndarray, dates: pd.DatetimeIndex, geos: tuple[str, ...],
            n_paths: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """forecast.parquet and paths.parquet rows for demand draws ``(draw, period, geo)``."""
    ids = _ids(geos)
    series = {uid: draws[:, :, g] for g, uid in enumerate(ids)}
    if len(geos) > 1:
        series = {TOTAL: draws.sum(axis=2), **series}
    rows, paths = [], []
    for uid, values in series.items():
        frame = pd.DataFrame({"unique_id": uid, "ds": dates, "mean": values.mean(axis=0)})
        qs = np.quantile(values, QUANTILES, axis=0)
        for q, level in zip(QUANTILES, qs, strict=True):
            frame[_column(q)] = level
        for width, (lo, hi) in ((80, (0.10, 0.90)), (95, (0.025, 0.975))):
            frame[f"lo-{width}"] = frame[_column(lo)]
            frame[f"hi-{width}"] = frame[_column(hi)]
        rows.append(frame)
        take = values[:n_paths]
        paths.append(pd.DataFrame({
            "unique_id": uid, "ds": np.tile(dates, len(take)),
            "path": np.repeat(np.arange(len(take), dtype=np.int32), len(dates)),
            "y": take.reshape(-1)}))
    return pd.concat(rows, ignore_index=True), pd.concat(paths, ignore_index=True)


def write_plan_forecast(allocation: Allocation, fit: MMMFit, folder: str | Path, *,
                        n_paths: int = 200, seed: int = 0) -> list[Path]:
    """Write the recommended plan's demand (its ``periods``) as a forecast folder.

    Parameters
    ----------
    allocation : Allocation
        From :func:`~pharmalab.marketing.allocate_budget` on ``fit``.
    fit : MMMFit
    folder : path
        Created or replaced as a whole (atomically).
    n_paths : int
        Sample paths per series.
    seed : int

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    model = allocation.model
    n = model.periods
    dates = model.dates[:n]
    draws = _predictive(allocation.demand[:, :n], model.sigma, seed)
    forecast, paths = _frames(draws, dates, model.geos, n_paths)

    panel = fit.panel
    ids = _ids(model.geos)
    history = pd.DataFrame({
        "unique_id": np.tile(ids, len(panel.dates)),
        "ds": np.repeat(panel.dates, len(ids)),
        "y": panel.target.reshape(-1)})
    tags = {TOTAL: [TOTAL]} if len(model.geos) == 1 else {TOTAL: [TOTAL],
                                                          f"{TOTAL}/geo": ids}
    nodes = [TOTAL] if len(model.geos) == 1 else [TOTAL, *ids]
    summing = pd.DataFrame(
        [[uid, *[1.0 if uid in (TOTAL, b) else 0.0 for b in ids]] for uid in nodes],
        columns=["unique_id", *ids])

    files = {"forecast.parquet": forecast, "paths.parquet": paths,
             "history.parquet": history, "summing_matrix.parquet": summing}
    holdout = len(panel.dates) - fit.train_periods
    if holdout > 0:
        files.update(_holdout_backtest(fit, n_paths, seed))
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for name, frame in files.items():
            frame.to_parquet(tmp / name, index=False)
        (tmp / "tags.json").write_text(json.dumps(tags, indent=1), encoding="utf-8")
        manifest = {
            "source": "pharmalab marketing allocate",
            "scenario": "the recommended budget split's demand (expected units per period, "
                        "posterior draws plus noise); controls held at their last values",
            "periods": n, "first_period": dates[0].strftime("%Y-%m-%d"),
            "budget": allocation.summary["budget"], "n_paths": int(min(n_paths, len(draws))),
            "backtest": "hold-out periods of the fit" if holdout > 0 else None,
        }
        capped = int(panel.censored[fit.train_periods:].sum()) if holdout > 0 else 0
        if capped:
            manifest["notes"] = [f"{capped} hold-out region-periods were supply-constrained: "
                                 "their actuals (observed scripts) understate demand"]
        (tmp / "forecast_manifest.json").write_text(json.dumps(manifest, indent=1),
                                                    encoding="utf-8")
    folder = Path(folder)
    return [folder / name for name in (*files, "tags.json", "forecast_manifest.json")]


def _holdout_backtest(fit: MMMFit, n_paths: int, seed: int) -> dict[str, pd.DataFrame]:
    """The hold-out periods forecast from the end of training, with their actual spend."""
    post = fit.posterior
    if post.draws > 500:
        post = post.subset(np.linspace(0, post.draws - 1, 500).round().astype(int))
    panel = fit.panel
    controls = (panel.grid(list(panel.controls)) if panel.controls
                else np.zeros((len(panel.dates), len(panel.geos), 0)))
    mu = post.mu(panel.dates, panel.media, controls)[:, fit.train_periods:]
    draws = _predictive(mu, post.sigma_units, seed + 1)
    dates = panel.dates[fit.train_periods:]
    forecast, paths = _frames(draws, dates, post.geos, n_paths)
    cutoff = panel.dates[fit.train_periods - 1]
    actual = panel.target[fit.train_periods:]
    ids = _ids(post.geos)
    y = {uid: actual[:, g] for g, uid in enumerate(ids)}
    if len(post.geos) > 1:
        y[TOTAL] = actual.sum(axis=1)
    forecast["y"] = np.concatenate([y[uid] for uid in forecast["unique_id"].unique()])
    forecast["cutoff"] = cutoff
    paths["cutoff"] = cutoff
    return {"backtest_forecasts.parquet": forecast, "backtest_paths.parquet": paths}
