"""The pools a hierarchy level may combine, and how a level picks one (issue 18 item 3):
worked numbers, so the rule is visible without a data set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pharmalab.errors import PharmalabInputError
from pharmalab.forecast import ForecastSettings, combine

MODELS = ["SeasonalNaive", "AutoETS", "AutoTheta", "LightGBM"]
LEVEL_OF = {"T": "Total", "a": "Leaf", "b": "Leaf"}


def _history() -> pd.DataFrame:
    """Backtest MASE of two earlier windows. Leaf means over a, b and both windows:
    SeasonalNaive 2.0, AutoETS 1.0, AutoTheta 1.2, LightGBM 1.4; Total: AutoTheta best (0.5),
    then LightGBM (0.6), AutoETS (0.9), SeasonalNaive (1.0)."""
    rows = []
    for cutoff in ("2020-01-01", "2020-04-01"):
        rows += [("a", cutoff, 2.0, 0.9, 1.1, 1.3), ("b", cutoff, 2.0, 1.1, 1.3, 1.5),
                 ("T", cutoff, 1.0, 0.9, 0.5, 0.6)]
    frame = pd.DataFrame(rows, columns=["unique_id", "cutoff", *MODELS])
    frame["cutoff"] = pd.to_datetime(frame["cutoff"])
    return frame


def test_pools_keep_the_levels_best_models():
    allowed = pd.DataFrame(True, index=pd.Index(["T", "a", "b"], name="unique_id"),
                           columns=MODELS)
    ranking = combine.level_ranking(_history(), allowed, LEVEL_OF)
    assert list(ranking["Leaf"].index) == ["AutoETS", "AutoTheta", "LightGBM", "SeasonalNaive"]
    assert ranking["Leaf"].to_numpy() == pytest.approx([1.0, 1.2, 1.4, 2.0])
    pools = combine.pools(_history(), allowed, LEVEL_OF, trim=1.3,
                          names=("all", "trimmed", "best 3", "best 2", "best"))
    kept = {name: {u: [m for m in MODELS if pool.loc[u, m]] for u in pool.index}
            for name, pool in pools.items()}
    assert kept["all"]["a"] == MODELS
    # trimmed at 1.3 × the leaf level's best (AutoETS, 1.0): AutoTheta (1.2) stays,
    # LightGBM (1.4) and SeasonalNaive (2.0) go; at the top 1.3 × 0.5 = 0.65 keeps AutoTheta
    # and LightGBM (0.6), not AutoETS (0.9).
    assert kept["trimmed"]["a"] == ["AutoETS", "AutoTheta"]
    assert kept["trimmed"]["T"] == ["AutoTheta", "LightGBM"]
    assert kept["best 3"]["b"] == ["AutoETS", "AutoTheta", "LightGBM"]
    assert kept["best 3"]["T"] == ["AutoETS", "AutoTheta", "LightGBM"]
    assert kept["best 2"]["T"] == ["AutoTheta", "LightGBM"]
    assert kept["best"]["a"] == ["AutoETS"]
    # no history, no ranking: every allowed model
    assert set(combine.pools(_history().iloc[0:0], allowed, LEVEL_OF, 1.3)) == {"all"}


def test_a_level_takes_the_pool_that_did_best_in_earlier_windows():
    cut = pd.Timestamp("2020-07-01")

    def scores(a, b, t):
        return [pd.DataFrame({"unique_id": ["a", "b", "T"], "cutoff": cut,
                              "mase": [a, b, t]})]

    ids = ["T", "a", "b"]
    # only the full median has been scored (the first reported window): the default pool
    assert combine.choose_pools({"all": scores(1, 1, 1)}, LEVEL_OF, ids).to_dict() == {
        "T": "all", "a": "all", "b": "all"}
    assert set(combine.choose_pools({"all": scores(1, 1, 1)}, LEVEL_OF, ids,
                                    default="best 3")) == {"best 3"}
    picked = combine.choose_pools(
        {"all": scores(1.0, 1.2, 0.7), "trimmed": scores(0.9, 1.2, 0.8),
         "best 3": scores(1.0, 1.0, 0.8)}, LEVEL_OF, ids)
    # Leaf means: all 1.1, trimmed 1.05, best 3 1.0; Total: all 0.7 beats both
    assert picked.to_dict() == {"T": "all", "a": "best 3", "b": "best 3"}
    # a tie goes to the first of KNOWN_POOLS
    tie = combine.choose_pools({"all": scores(1, 1, 1), "best 3": scores(1, 1, 1)},
                               LEVEL_OF, ids)
    assert set(tie) == {"all"}


def test_combining_a_pool_takes_the_median_of_its_models():
    rows = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2021-01-01", periods=2,
                                                                freq="MS"),
                         "SeasonalNaive": [40.0, 40.0], "AutoETS": [10.0, 12.0],
                         "AutoTheta": [11.0, 13.0], "LightGBM": [30.0, -5.0]})
    allowed = pd.DataFrame(True, index=pd.Index(["a"], name="unique_id"), columns=MODELS)
    best3 = allowed.copy()
    best3["SeasonalNaive"] = False
    weights = combine.weights(_history(), best3)
    combined, used = combine.combine(rows, weights, best3, MODELS)
    # median of 10, 11, 30 and of 12, 13, max(-5, 0)
    assert combined["mean"].to_numpy() == pytest.approx([11.0, 12.0])
    assert used.loc["a"].to_numpy() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    full, _ = combine.combine(rows, combine.weights(_history(), allowed), allowed, MODELS)
    assert full["mean"].to_numpy() == pytest.approx([20.5, 12.5])
    assert np.isfinite(full["mean"]).all()


@pytest.mark.parametrize("kwargs", [{"pools": ("trimmed",)}, {"pools": ("all", "best 4")},
                                    {"default_pool": "best 2"},
                                    {"pools": ("all", "best 3"), "default_pool": "trimmed"}])
def test_bad_pools_are_refused(kwargs):
    with pytest.raises(PharmalabInputError, match="pools must be some of"):
        ForecastSettings(**kwargs)
