"""Coherent, non-negative forecasts: BottomUp, MinTrace and TopDown, chosen by backtest.

The methods are hierarchicalforecast's (Nixtla). Two things are ours:

* **Non-negativity** — each method's bottom-level forecasts are set to zero where negative
  and summed up the hierarchy again, so every method's output is coherent and ≥ 0 (the
  "set negatives to zero" heuristic; Kourentzes & Athanasopoulos 2021 discuss it against
  constrained MinT, which is far slower).
* **MinTrace's error covariance** comes from the rolling-origin forecast errors of earlier
  backtest windows, not from in-sample one-step residuals: on PBS, in-sample residuals made
  ``mint_shrink`` and ``ols`` explode at the bottom level (../shared/KNOWN.md).
  ``mint_shrink`` falls back to ``ols`` when the shrinkage estimate fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd

from pharmalab.forecast.hierarchy import Hierarchy
from pharmalab.forecast.models import check_names

RECONCILERS = ("BottomUp", "MinTrace_mint_shrink", "MinTrace_wls_var",
               "TopDown_forecast_proportions")
DEFAULT_RECONCILERS = ("BottomUp", "MinTrace_mint_shrink", "TopDown_forecast_proportions")


def check_reconcilers(names: Sequence[str]) -> tuple[str, ...]:
    """Validate reconciliation method names (:data:`RECONCILERS`)."""
    return check_names(names, RECONCILERS, "reconciliation method(s)")


def reconcile(base: pd.DataFrame, hierarchy: Hierarchy, methods: Sequence[str],
              errors: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Reconcile one window's base forecasts with each method that can run.

    Parameters
    ----------
    base
        Wide base forecasts: index ``unique_id`` (every node of ``hierarchy``), one column
        per ``ds``, float64.
    hierarchy
        The structure (summing matrix, tags).
    methods
        Names from :data:`RECONCILERS`. TopDown needs a strict hierarchy and MinTrace needs
        ``errors``; methods that cannot run are left out of the result.
    errors
        Earlier windows' forecast errors for MinTrace: ``unique_id``, ``ds``, ``y``, ``mean``
        (the same number of rows for every node).

    Returns
    -------
    dict
        Method name → coherent, non-negative wide frame like ``base``.
    """
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUp, MinTrace, TopDown

    nodes = hierarchy.node_ids
    base = base.reindex(nodes)
    long = (base.clip(lower=0).rename_axis(index="unique_id", columns="ds").stack()
            .rename("mean").reset_index())
    out: dict[str, pd.DataFrame] = {}
    if len(hierarchy.tags) < 2:  # flat series: nothing to reconcile, only the clip at zero
        return {"none": base.clip(lower=0)}
    for method in methods:
        if method == "TopDown_forecast_proportions" and not hierarchy.is_strict:
            continue
        if method.startswith("MinTrace") and (errors is None or errors.empty):
            continue
        reconciler = {
            "BottomUp": lambda: BottomUp(),
            "MinTrace_mint_shrink": lambda: MinTrace(method="mint_shrink"),
            "MinTrace_wls_var": lambda: MinTrace(method="wls_var"),
            "TopDown_forecast_proportions": lambda: TopDown(method="forecast_proportions"),
        }[method]()
        y_df = None if errors is None else errors[["unique_id", "ds", "y", "mean"]]
        try:
            result = _run(HierarchicalReconciliation, reconciler, long, y_df, hierarchy)
        except Exception:
            if method != "MinTrace_mint_shrink":
                continue
            try:  # shrinkage failed (e.g. a singular covariance): ols, as the issue asks
                result = _run(HierarchicalReconciliation, MinTrace(method="ols"), long, y_df,
                              hierarchy)
            except Exception:
                continue
        wide = result.pivot(index="unique_id", columns="ds", values=result.columns[-1])
        out[method] = _coherent_nonnegative(wide.reindex(nodes), hierarchy)
    return out


def _run(cls, reconciler, long: pd.DataFrame, y_df, hierarchy: Hierarchy) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = cls(reconcilers=[reconciler]).reconcile(
            Y_hat_df=long, Y_df=y_df, S_df=hierarchy.summing_matrix, tags=hierarchy.tags)
    column = [c for c in frame.columns if c.startswith("mean/")][0]
    return frame[["unique_id", "ds", column]]


def _coherent_nonnegative(wide: pd.DataFrame, hierarchy: Hierarchy) -> pd.DataFrame:
    bottom = wide.loc[hierarchy.bottom_ids].to_numpy(dtype="float64").clip(min=0)
    return pd.DataFrame(hierarchy.S() @ bottom, index=wide.index, columns=wide.columns)


def level_scores(per_series: pd.DataFrame, level_of: dict[str, str]) -> pd.Series:
    """Mean MASE per level (NaN scales left out) from ``unique_id, mase`` rows."""
    frame = per_series.assign(level=per_series["unique_id"].map(level_of))
    return frame.dropna(subset=["mase"]).groupby("level", sort=False)["mase"].mean()


def choose_reconciler(history: pd.DataFrame, level_of: dict[str, str], default: str,
                      tolerance: float = 0.02) -> tuple[str, str]:
    """Pick the method with the lowest mean MASE over earlier windows among those that do
    not make any level worse than the unreconciled forecast by more than ``tolerance``.

    Parameters
    ----------
    history
        ``unique_id``, ``cutoff``, ``method`` (``unreconciled`` and each method), ``mase``.

    Returns
    -------
    (method, reason)
        With no history, ``default``.
    """
    if history.empty:
        return default, "no earlier window: default"
    base = history[history["method"] == "unreconciled"]
    base_levels = level_scores(base, level_of)
    scores, worst = {}, {}
    for method, rows in history[history["method"] != "unreconciled"].groupby("method"):
        if rows["cutoff"].nunique() < base["cutoff"].nunique():
            continue
        levels = level_scores(rows, level_of)
        worst[method] = float((levels / base_levels).max())
        scores[method] = float(rows["mase"].mean())
    if not scores:
        return default, "no method ran on earlier windows: default"
    fine = [m for m in scores if worst[m] <= 1 + tolerance]
    if fine:
        best = min(fine, key=scores.get)
        return best, (f"lowest mean MASE ({scores[best]:.3f}) of the methods keeping every "
                      f"level within {tolerance:.0%} of unreconciled")
    best = min(worst, key=worst.get)
    return best, (f"every method worsens a level by more than {tolerance:.0%}; "
                  f"this one least ({worst[best] - 1:+.1%})")
