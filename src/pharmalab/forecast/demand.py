"""Demand classes of Syntetos, Boylan & Croston (2005): smooth, erratic, intermittent, lumpy."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Syntetos–Boylan–Croston cut-offs: average demand interval and squared coefficient of
#: variation of the non-zero demand sizes.
ADI_CUTOFF = 1.32
CV2_CUTOFF = 0.49


def classify_demand(series: pd.DataFrame) -> pd.DataFrame:
    """Classify each series by its average demand interval (ADI) and CV² of non-zero sizes.

    Parameters
    ----------
    series
        ``unique_id``, ``ds``, ``y`` (float64 ≥ 0), one row per period.

    Returns
    -------
    pandas.DataFrame
        One row per ``unique_id``: ``adi`` (periods per non-zero demand, float64; inf when
        there is none), ``cv2`` (float64; NaN with fewer than two non-zero demands),
        ``demand_class`` (str: ``smooth``, ``erratic``, ``intermittent``, ``lumpy``, or
        ``zero`` for a series without demand) and ``intermittent`` (bool: the classes
        *intermittent* and *lumpy*, i.e. ADI ≥ 1.32, which get intermittent-demand models;
        *erratic* series — ADI < 1.32, CV² ≥ 0.49 — have demand every period, and trending or
        seasonal sales such as PBS's are often erratic by this measure, so they keep the
        smooth-demand models).

    References
    ----------
    Syntetos, Boylan & Croston (2005), *On the categorization of demand patterns*, JORS 56;
    the cut-offs as in Nixtla's intermittent-demand guide.
    """
    def one(y: pd.Series) -> pd.Series:
        values = y.to_numpy(dtype="float64")
        nonzero = values[values > 0]
        adi = len(values) / len(nonzero) if len(nonzero) else np.inf
        cv2 = (nonzero.std() / nonzero.mean()) ** 2 if len(nonzero) > 1 else np.nan
        return pd.Series({"adi": adi, "cv2": cv2})

    out = series.groupby("unique_id", sort=True)["y"].apply(one).unstack().reset_index()
    high_adi = out["adi"] >= ADI_CUTOFF
    high_cv2 = out["cv2"].fillna(0) >= CV2_CUTOFF
    out["demand_class"] = np.select(
        [np.isinf(out["adi"]), high_adi & high_cv2, high_adi, high_cv2],
        ["zero", "lumpy", "intermittent", "erratic"], default="smooth")
    out["intermittent"] = high_adi & ~np.isinf(out["adi"])
    return out[["unique_id", "adi", "cv2", "demand_class", "intermittent"]]
