"""How each series' base forecasts become one: the median (or inverse-MASE mean) of the
models allowed for it, a trimmed combination per hierarchy level, and a model alone where it
has clearly found the series' pattern. Every choice is made from the backtest windows before
the one being forecast (:mod:`pharmalab.forecast.pipeline` calls these per window).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pharmalab.forecast import models

#: Models whose mean MASE over a level's series in the earlier windows exceeds this multiple
#: of the level's best model's are left out of the trimmed combination (forecast pooling,
#: Kourentzes, Barrow & Petropoulos 2019). On the forecast suite (benchmarks/RESULTS.md
#: "Forecast suite") choosing per level between the full and the trimmed combination by the
#: earlier windows is no worse than the full one on any of the nine sets at 1.3 (mean ratio
#: 0.976 → 0.965); at 1.2 and 1.15 the pharmacy's weekly set loses 2%.
TRIM_RATIO = 1.3

#: A model forecasts a series alone when, over every earlier backtest window, its MASE is at
#: most this fraction of the combination's and no worse in any window: a combination
#: protects against one model gone astray, but it must not drown a model that has clearly
#: found the series' pattern (e.g. the phase of a sale every 10 days, which no model with a
#: 7-day season sees; a median of flat forecasts turns it into a daily trickle).
DOMINANCE_RATIO = 0.5


def model_mase(base_cv: pd.DataFrame, model_cols: list[str], scales: dict) -> pd.DataFrame:
    """MASE of each base model per series and backtest window.

    ``base_cv``: ``unique_id, cutoff, ds, y`` and one forecast column per model;
    ``scales``: per cutoff, the :func:`pharmalab.forecast.seasonal_scales` frame. Returns
    ``unique_id``, one float64 column per model (unitless; NaN where the series' scale is 0)
    and ``cutoff``.
    """
    parts = []
    for cutoff, rows in base_cv.groupby("cutoff"):
        err = rows[model_cols].sub(rows["y"], axis=0).abs().groupby(rows["unique_id"]).mean()
        scale = scales[cutoff]["mae_scale"].reindex(err.index)
        mase = err.div(scale.where(scale > 0), axis=0)
        parts.append(mase.assign(cutoff=cutoff).reset_index())
    return pd.concat(parts, ignore_index=True)


def allowed_models(ids, model_cols: list[str], classes: pd.DataFrame) -> pd.DataFrame:
    """Which models may forecast which series: bool frame, index ``unique_id``, one column
    per model; the intermittent-demand models only for series ``classes`` (from
    :func:`pharmalab.forecast.classify_demand`) marks intermittent or lumpy."""
    intermittent = classes["intermittent"].reindex(ids).astype("boolean").fillna(False)
    intermittent = intermittent.astype(bool)
    out = pd.DataFrame(True, index=pd.Index(ids, name="unique_id"), columns=model_cols)
    for m in models.INTERMITTENT_MODELS:
        if m in out:
            out[m] = intermittent.to_numpy()
    return out


#: The pools of models a hierarchy level may combine (:func:`pools`), in order of preference
#: on a tie: every allowed model, the trimmed pool (``trim_ratio``), the level's 3 and 2 best
#: models in the earlier windows, and its best model alone.
KNOWN_POOLS = ("all", "trimmed", "best 3", "best 2", "best")

#: The default candidates, and the pool a level combines before any window has scored them
#: (the first reported window). Measured on the forecast suite (benchmarks/RESULTS.md,
#: "Forecast suite" and "…, pools all, trimmed, best 3 (first: best 3)"): with ``best 3`` as a
#: candidate and the first window's pool, the mean MASE ratio to the best baseline goes from
#: 0.965 to 0.955 and the worst set from 1.048 to 1.006 (prison) — but PBS loses (0.939 →
#: 0.946): the 3 best leave out SeasonalNaive, the one unbiased model there (AutoTheta +5.4%,
#: LightGBM +2.0% on the bottom series), the bottom forecasts rise from +1.9% to +2.9%, and the
#: supply policy planned from them (fill rate 95%, L = 2, R = 1) holds 6% more stock for a
#: 97.7% fill rate (96.9% with the defaults). So not the default; on request with
#: ``ForecastSettings(pools=("all", "trimmed", "best 3"), default_pool="best 3")``.
DEFAULT_POOLS = ("all", "trimmed")
DEFAULT_POOL = "all"


def level_ranking(history: pd.DataFrame, allowed: pd.DataFrame, level_of: dict
                  ) -> dict[str, pd.Series]:
    """Per hierarchy level, the mean MASE of each model over the level's series in the
    earlier windows (``history``: :func:`model_mase` rows), best first; a model scored on
    fewer than 99% of the level's series-windows (it could not run on some, or is not allowed
    for them, as the intermittent-demand models for smooth series) is not ranked."""
    cols = list(allowed.columns)
    rows = history[history["unique_id"].isin(allowed.index)]
    if rows.empty:
        return {}
    ok = allowed[cols].reindex(rows["unique_id"]).to_numpy(dtype=bool)
    values = rows[cols].where(ok)
    level = rows["unique_id"].map(level_of).to_numpy()
    out = {}
    for name, part in values.groupby(level):
        means = part.mean()
        means = means[(part.notna().mean() >= 0.99) & np.isfinite(means)]
        if not means.empty:
            out[name] = means.sort_values(kind="stable")
    return out


def pools(history: pd.DataFrame, allowed: pd.DataFrame, level_of: dict,
          trim: float | None, names: tuple[str, ...] = DEFAULT_POOLS) -> dict[str, pd.DataFrame]:
    """The candidate pools of models per series (bool frames like ``allowed``), from the
    earlier windows' MASE (``history``).

    ``all`` is ``allowed``; ``trimmed`` leaves out the models whose mean MASE over the
    level's series exceeds ``trim`` × the level's best model's (forecast pooling: Kourentzes,
    Barrow & Petropoulos 2019); ``best k`` leaves out the level's ranked models after its k
    best (:func:`level_ranking`), ``best`` all but its best one. A pool only leaves ranked
    models out: a model the ranking could not score over the level (an intermittent-demand
    model, allowed for some of its series) stays for the series allowed it. A series left with
    no model keeps ``allowed``. Without history only ``all`` is returned.
    """
    ranking = level_ranking(history, allowed, level_of)
    out = {"all": allowed}
    if not ranking:
        return out
    level = allowed.index.map(level_of)
    for name in names:
        if name == "all" or (name == "trimmed" and trim is None):
            continue
        pool = allowed.copy()
        for lv, means in ranking.items():
            if name == "trimmed":
                drop = means.index[means > trim * means.iloc[0]]
            else:
                k = 1 if name == "best" else int(name.split()[1])
                drop = means.index[k:]
            pool.loc[level == lv, list(drop)] = False
        empty = ~pool.any(axis=1)
        pool.loc[empty] = allowed.loc[empty]
        out[name] = pool
    return out


def choose_pools(scores: dict[str, list[pd.DataFrame]], level_of: dict, ids,
                 default: str = DEFAULT_POOL) -> pd.Series:
    """Per series (index ``unique_id``), the pool its level combines: the one with the lowest
    mean MASE over the level's series in the windows every candidate pool was scored on
    (``scores``: per pool, :func:`mase_of` frames of earlier windows, each pool defined from
    the windows before the one it forecast); ``default`` when no window scored them all (a
    tie goes to the first in :data:`KNOWN_POOLS`)."""
    ids = pd.Index(ids)
    out = pd.Series(default, index=ids, dtype="object")
    frames = {name: pd.concat(parts) for name, parts in scores.items() if parts}
    if not frames:
        return out
    common = set.intersection(*(set(f["cutoff"].unique()) for f in frames.values()))
    if not common or len(frames) < 2:
        return out
    means = {}
    for name, frame in frames.items():
        rows = frame[frame["cutoff"].isin(common)].dropna(subset=["mase"])
        means[name] = rows["mase"].groupby(rows["unique_id"].map(level_of)).mean()
    table = pd.DataFrame(means)
    order = [n for n in KNOWN_POOLS if n in table.columns]
    best = table[order].idxmin(axis=1)
    return pd.Series(ids.map(level_of).map(best).fillna(default).to_numpy(), index=ids,
                     dtype="object")


def pick_pools(pooled: dict[str, pd.DataFrame], pick: pd.Series) -> pd.DataFrame:
    """One ``unique_id, ds, mean`` frame: each series' rows from the pool ``pick`` names
    (``pooled``: per pool, the combination of every series; ``all`` where the pick is
    missing)."""
    chosen = pooled["all"]["unique_id"].map(pick).fillna("all")
    chosen = chosen.where(chosen.isin(list(pooled)), "all").to_numpy()
    out = pooled["all"].copy()
    for name, frame in pooled.items():
        mask = chosen == name
        if name == "all" or not mask.any():
            continue
        other = frame.set_index(["unique_id", "ds"])["mean"]
        keys = pd.MultiIndex.from_frame(out.loc[mask, ["unique_id", "ds"]])
        out.loc[mask, "mean"] = other.reindex(keys).to_numpy()
    return out


def weights(history: pd.DataFrame, allowed: pd.DataFrame, top_k: int | None = None
             ) -> pd.DataFrame:
    """Combination weights ∝ 1 / mean MASE of earlier windows; equal without history.

    With ``top_k``, only the k best models of each series keep a weight.
    """
    if history.empty:
        mase = pd.DataFrame(np.nan, index=allowed.index, columns=allowed.columns)
    else:
        mase = history.groupby("unique_id")[list(allowed.columns)].mean().reindex(allowed.index)
    inverse = 1 / mase.clip(lower=1e-3)
    no_history = inverse.isna().all(axis=1)
    inverse = inverse.fillna(0)
    inverse.loc[no_history] = 1.0
    inverse = inverse.where(allowed, 0)
    if top_k is not None:
        rank = inverse.rank(axis=1, ascending=False, method="first")
        inverse = inverse.where(rank <= top_k, 0)
    total = inverse.sum(axis=1)
    # A model with no score for a series (it could not run) gets no weight; a series with no
    # usable score at all gets equal weights over the models that did run.
    return inverse.div(total.where(total > 0), axis=0).fillna(0)




def mase_of(combined: pd.DataFrame, rows: pd.DataFrame, scales: pd.DataFrame,
             cutoff) -> pd.DataFrame:
    """MASE of a window's combined forecast per series: ``unique_id, cutoff, mase``."""
    actual = rows[["unique_id", "ds", "y"]].drop_duplicates(["unique_id", "ds"])
    err = combined.merge(actual, on=["unique_id", "ds"])
    mae = (err["mean"] - err["y"]).abs().groupby(err["unique_id"]).mean()
    scale = scales["mae_scale"].reindex(mae.index)
    return pd.DataFrame({"unique_id": mae.index, "cutoff": cutoff,
                         "mase": (mae / scale.where(scale > 0)).to_numpy()})


def dominant_models(history: pd.DataFrame, combination: pd.DataFrame | None,
                     allowed: pd.DataFrame) -> pd.Series:
    """Per series, the model that beats the combination by :data:`DOMINANCE_RATIO` in the
    earlier windows (index ``unique_id``; empty string: none).

    ``history`` holds each model's MASE per (``unique_id``, ``cutoff``), ``combination`` the
    combination's; both from windows before the one being forecast only.
    """
    none = pd.Series("", index=allowed.index, dtype="object")
    if combination is None or history.empty or combination.empty:
        return none
    cols = list(allowed.columns)
    combo = combination.set_index(["unique_id", "cutoff"])["mase"]
    per_window = history.set_index(["unique_id", "cutoff"])[cols]
    per_window = per_window.reindex(combo.index)
    mean_model = per_window.groupby(level="unique_id").mean().reindex(allowed.index)
    mean_model = mean_model.where(allowed)
    mean_combo = combo.groupby(level="unique_id").mean().reindex(allowed.index)
    best = mean_model.fillna(np.inf).idxmin(axis=1)
    out = none.copy()
    for uid in allowed.index:
        model = best[uid]
        if not np.isfinite(mean_model.loc[uid, model]) or not mean_combo[uid] > 0:
            continue
        windows = per_window.loc[uid]
        own = windows[model].to_numpy()
        theirs = combo.loc[uid].reindex(windows.index).to_numpy()
        if (np.isfinite(own).all() and (own <= theirs).all()
                and mean_model.loc[uid, model] <= DOMINANCE_RATIO * mean_combo[uid]):
            out[uid] = model
    return out


def alone(combined: pd.DataFrame, rows: pd.DataFrame, dominant: pd.Series) -> pd.DataFrame:
    """``combined`` with each series that has a dominant model forecast by that model."""
    picked = dominant.reindex(combined["unique_id"]).fillna("").to_numpy()
    if not (picked != "").any():
        return combined
    out = combined.copy()
    values = rows.set_index(["unique_id", "ds"])
    for model in set(picked) - {""}:
        mask = picked == model
        keys = pd.MultiIndex.from_frame(out.loc[mask, ["unique_id", "ds"]])
        alone = values[model].reindex(keys).to_numpy(dtype="float64")
        out.loc[mask, "mean"] = np.where(np.isnan(alone), out.loc[mask, "mean"],
                                         np.maximum(alone, 0))
    return out


def used_alone(used: pd.DataFrame, dominant: pd.Series) -> pd.DataFrame:
    """Effective weights with a dominant model's series weighted 1 on that model."""
    out = used.copy()
    for uid, model in dominant.items():
        if model and uid in out.index and model in out.columns:
            out.loc[uid] = 0.0
            out.loc[uid, model] = 1.0
    return out


def combine(rows: pd.DataFrame, weights: pd.DataFrame, allowed: pd.DataFrame,
             model_cols: list[str], how: str = "median") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Combine each row's base forecasts (each clipped at 0: demand is never negative).

    ``how="median"``: the median of the models with a weight; ``"inverse_mase"``: their
    weighted mean. A model missing for a series (it could not run there) is left out and the
    weights renormalized; a series whose weighted models are all missing (e.g. scored only by
    the naive fallback in the backtest) gets equal weights over its *allowed* models that ran.

    Returns
    -------
    (combined, used)
        ``unique_id, ds, mean`` rows, and the effective weights per series (index
        ``unique_id``, one column per model, rows sum to 1; for the median, 1/k on each of the
        k models whose median is taken).
    """
    values = np.maximum(rows.reindex(columns=model_cols).to_numpy(dtype="float64"), 0)
    present = pd.DataFrame(~np.isnan(values), columns=model_cols).groupby(
        rows["unique_id"].to_numpy()).all()
    ok = allowed.reindex(present.index).fillna(False).astype(bool) & present
    w = weights.reindex(present.index).fillna(0).where(ok, 0)
    total = w.sum(axis=1)
    equal = ok.astype("float64").div(ok.sum(axis=1).where(ok.sum(axis=1) > 0), axis=0)
    w = w.div(total.where(total > 0), axis=0)
    w.loc[total <= 0] = equal.loc[total <= 0]
    w = w.fillna(0)
    if how == "median":
        used = (w > 0).astype("float64")
        used = used.div(used.sum(axis=1).where(used.sum(axis=1) > 0), axis=0).fillna(0)
    else:
        used = w
    per_row = used.reindex(rows["unique_id"]).to_numpy()
    if how == "median":
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row with no model: below
            mean = np.nanmedian(np.where(per_row > 0, values, np.nan), axis=1)
    else:
        weighted = np.where(per_row > 0, values, np.nan) * per_row
        mean = np.where(np.isnan(weighted).all(axis=1), np.nan, np.nansum(weighted, axis=1))
    # A row no model forecast is never a forecast of 0: the short-history fallback stands in,
    # and if it did not run either that is a defect to see, not a number to trust.
    missing = np.isnan(mean)
    if missing.any() and models.FALLBACK in model_cols:
        mean[missing] = values[missing, model_cols.index(models.FALLBACK)]
        missing = np.isnan(mean)
    if missing.any():
        uid = rows["unique_id"].to_numpy()[np.flatnonzero(missing)[0]]
        raise RuntimeError(f"series {uid!r}: no model produced a forecast for "
                           f"{int(missing.sum())} period(s); please report this")
    combined = pd.DataFrame({"unique_id": rows["unique_id"].to_numpy(),
                             "ds": rows["ds"].to_numpy(), "mean": mean})
    return combined, used
