"""Inputs of a supply run: a forecast folder (``pharmalab forecast --out DIR``), an on-hand
file and the sales history behind the naive policy. Each reader checks what it reads and
names the file, column and series in its errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab.errors import SupplyInputError
from pharmalab.supply.leadtime import SeriesForecast, quantile_columns, series_forecasts

__all__ = ["ForecastFolder", "read_forecast_folder", "read_on_hand", "series_history"]

FORECAST = "forecast.parquet"
PATHS = "paths.parquet"
BACKTEST = "backtest_forecasts.parquet"
BACKTEST_PATHS = "backtest_paths.parquet"
TAGS = "tags.json"
SUMMING = "summing_matrix.parquet"
# The top node of a forecast hierarchy (pharmalab.forecast.hierarchy.TOTAL; not imported, so
# that reading a forecast folder does not load the forecasting libraries).
TOTAL = "Total"


@dataclass(frozen=True)
class ForecastFolder:
    """The parts of a forecast folder a supply run uses, restricted to the chosen series.

    Attributes
    ----------
    path : pathlib.Path
    forecast : pandas.DataFrame
        ``forecast.parquet``: ``unique_id, ds, mean, q…, lo-…, hi-…`` (units of the series).
    paths : pandas.DataFrame or None
        ``paths.parquet``: ``unique_id, ds, path, y`` (None when absent or empty).
    backtest : pandas.DataFrame or None
        ``backtest_forecasts.parquet``: as ``forecast`` plus ``cutoff`` and ``y`` (actual).
    backtest_paths : pandas.DataFrame or None
        ``backtest_paths.parquet``: ``unique_id, ds, path, y, cutoff``.
    tags : dict
        Level name → ``unique_id`` list, top level first (``tags.json``; one level
        ``"Series"`` holding every series when the file is absent).
    summing_matrix : pandas.DataFrame or None
        ``unique_id`` then one 0/1 column per bottom series.
    series : list of str
        The series chosen (bottom level, or all).
    """

    path: Path
    forecast: pd.DataFrame
    paths: pd.DataFrame | None
    backtest: pd.DataFrame | None
    backtest_paths: pd.DataFrame | None
    tags: dict[str, list[str]]
    summing_matrix: pd.DataFrame | None
    series: list[str] = field(default_factory=list)

    @property
    def level_of(self) -> dict[str, str]:
        """``unique_id`` → hierarchy level name."""
        return {uid: level for level, ids in self.tags.items() for uid in ids}

    @property
    def count_series(self) -> set[str] | None:
        """The series whose actual demand in the backtest windows is all whole numbers
        (scripts, packs: low volumes may be Poisson or negative binomial); None (every
        series) without backtest actuals."""
        if self.backtest is None:
            return None
        y = self.backtest["y"].to_numpy(dtype=float)
        whole = pd.Series(np.isfinite(y) & (y == np.round(y)), index=self.backtest.index)
        ok = whole.groupby(self.backtest["unique_id"]).all()
        return set(ok.index[ok.to_numpy()])

    def forecasts(self) -> dict[str, SeriesForecast]:
        """The final forecast per series (from the end of the data)."""
        return series_forecasts(self.forecast, self.paths, name=str(self.path / FORECAST),
                                counts=self.count_series)

    def backtest_forecasts(self) -> dict[tuple, SeriesForecast]:
        """The forecast of each backtest window, keyed by ``(unique_id, cutoff)``.

        Raises
        ------
        SupplyInputError
            If the folder has no ``backtest_forecasts.parquet``.
        """
        if self.backtest is None:
            raise SupplyInputError(f"forecast folder {str(self.path)!r}: {BACKTEST} is "
                                   "missing; the policy backtest needs it")
        return series_forecasts(self.backtest.drop(columns="y"), self.backtest_paths,
                                by="cutoff", name=str(self.path / BACKTEST),
                                counts=self.count_series)

    def actuals(self) -> pd.DataFrame:
        """``unique_id, cutoff, ds, y``: the demand that followed each backtest origin."""
        if self.backtest is None:
            raise SupplyInputError(f"forecast folder {str(self.path)!r}: {BACKTEST} is "
                                   "missing; the policy backtest needs it")
        return self.backtest[["unique_id", "cutoff", "ds", "y"]]


def _read(path: Path, ids: list[str] | None, categorical: bool = False) -> pd.DataFrame:
    """A Parquet file, restricted to the series ``ids``; ``categorical`` keeps string
    columns as categories (millions of path rows would otherwise be as many str objects)."""
    import pyarrow.parquet as pq

    filters = None if ids is None else [("unique_id", "in", ids)]
    try:
        table = pq.read_table(path, filters=filters,
                              read_dictionary=["unique_id"] if categorical else None)
    except (OSError, ValueError) as exc:
        raise SupplyInputError(f"{path}: cannot be read as Parquet ({exc})") from None
    frame = table.to_pandas(strings_to_categorical=categorical)
    if "unique_id" in frame.columns and not categorical:
        frame["unique_id"] = frame["unique_id"].astype(str)
    return frame


def read_forecast_folder(folder: str | Path, *, series_level: str = "bottom",
                         backtest_paths: bool = True) -> ForecastFolder:
    """Read a forecast folder written by ``pharmalab forecast`` (or the ``[forecast]`` step).

    Parameters
    ----------
    folder : str or pathlib.Path
        Holds ``forecast.parquet`` and, when present, ``paths.parquet``,
        ``backtest_forecasts.parquet``, ``backtest_paths.parquet``, ``tags.json``,
        ``summing_matrix.parquet``.
    series_level : {'bottom', 'all'}, default 'bottom'
        Keep the bottom level of ``tags.json`` (its last level) or every series.
    backtest_paths : bool, default True
        Also read ``backtest_paths.parquet`` (for the policy backtest).

    Returns
    -------
    ForecastFolder

    Raises
    ------
    SupplyInputError
        The folder or ``forecast.parquet`` is missing, a file cannot be read, a required
        column is missing, or the forecast has neither quantile columns nor sample paths.
    """
    folder = Path(folder)
    if folder.is_file():
        raise SupplyInputError(f"forecast folder {str(folder)!r} is a file; expected the "
                               "folder written by pharmalab forecast --out FOLDER")
    if not folder.is_dir():
        raise SupplyInputError(f"forecast folder {str(folder)!r} does not exist (run "
                               "pharmalab forecast --out FOLDER first)")
    if not (folder / FORECAST).is_file():
        raise SupplyInputError(f"forecast folder {str(folder)!r}: {FORECAST} is missing (run "
                               "pharmalab forecast --out FOLDER first)")
    tags = _tags(folder)
    ids = None
    if series_level == "bottom" and tags:
        ids = list(tags.values())[-1]
    forecast = _read(folder / FORECAST, ids)
    for column in ("unique_id", "ds", "mean"):
        if column not in forecast.columns:
            raise SupplyInputError(f"{folder / FORECAST}: column {column!r} is missing "
                                   "(expected unique_id, ds, mean, q0.05 … q0.95)")
    paths = _optional(folder / PATHS, ids, categorical=True)
    if not quantile_columns(forecast.columns) and paths is None:
        raise SupplyInputError(
            f"forecast folder {str(folder)!r}: {FORECAST} has no quantile columns (q0.05 … "
            f"q0.95, lo-80/hi-80) and {PATHS} is missing or empty; a policy needs the "
            "forecast's distribution, not only its mean")
    series = sorted(forecast["unique_id"].unique())
    if not tags:
        tags = {"Series": series}
    bt = _optional(folder / BACKTEST, ids)
    if bt is not None:
        for column in ("cutoff", "y"):
            if column not in bt.columns:
                raise SupplyInputError(f"{folder / BACKTEST}: column {column!r} is missing")
    bt_paths = (_optional(folder / BACKTEST_PATHS, ids, categorical=True) if backtest_paths
                else None)
    summing = _optional(folder / SUMMING, None)
    return ForecastFolder(folder, forecast, paths, bt, bt_paths, tags, summing, series)


def _optional(path: Path, ids, categorical: bool = False) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    if pq.ParquetFile(path).metadata.num_rows == 0:  # e.g. no backtest (a new launch)
        return None
    frame = _read(path, ids, categorical)
    return frame if len(frame) else None


def _tags(folder: Path) -> dict[str, list[str]]:
    path = folder / TAGS
    if not path.is_file():
        return {}
    try:
        tags = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SupplyInputError(f"{path}: not a JSON object of level → series ({exc})") from None
    if not isinstance(tags, dict) or not all(isinstance(v, list) for v in tags.values()):
        raise SupplyInputError(f"{path}: expected a JSON object of level → list of series")
    return {str(k): [str(x) for x in v] for k, v in tags.items()}


def read_on_hand(path: str | Path, known: list[str]) -> pd.DataFrame:
    """Read the stock on hand and on order per series.

    The file is a CSV with one row per series: ``unique_id`` (as in the forecast),
    ``on_hand`` (units on hand now, before the first forecast period; a negative value is a
    backorder) and optionally ``on_order`` (units ordered and not yet received, ≥ 0;
    default 0; they count in the inventory position and are assumed to arrive at the start
    of the first forecast period). Other columns are ignored.

    Parameters
    ----------
    path : str or pathlib.Path
    known : list of str
        The series that can be planned.

    Returns
    -------
    pandas.DataFrame
        ``unique_id`` (str), ``on_hand``, ``on_order`` (float64, units).

    Raises
    ------
    SupplyInputError
        A missing file or column, a missing or non-numeric value, a negative ``on_order``, a
        series given twice, or a series that is not in the forecast (the message names the
        file and the series).
    """
    path = Path(path)
    if path.is_dir():
        raise SupplyInputError(f"on-hand file {str(path)!r} is a folder; expected a CSV "
                               "file (unique_id, on_hand[, on_order])")
    if not path.is_file():
        raise SupplyInputError(f"on-hand file {str(path)!r} does not exist")
    try:
        frame = pd.read_csv(path, dtype={"unique_id": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SupplyInputError(f"{path.name}: cannot be read as CSV ({exc})") from None
    for column in ("unique_id", "on_hand"):
        if column not in frame.columns:
            raise SupplyInputError(f"{path.name}: column {column!r} is missing (expected "
                                   "unique_id, on_hand and optionally on_order)")
    if frame.empty:
        raise SupplyInputError(f"{path.name}: has a header but no rows (one row per series: "
                               "unique_id, on_hand[, on_order])")
    if "on_order" not in frame.columns:
        frame["on_order"] = 0.0
    frame = frame[["unique_id", "on_hand", "on_order"]].copy()
    if frame["unique_id"].isna().any():
        row = int(frame.index[frame["unique_id"].isna()][0]) + 2
        raise SupplyInputError(f"{path.name}: row {row}: unique_id is empty")
    for column in ("on_hand", "on_order"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0))
        if bad.any():
            row = int(frame.index[bad][0]) + 2
            value = frame.loc[bad, column].iloc[0]
            shown = "an empty cell" if pd.isna(value) else repr(str(value))
            raise SupplyInputError(f"{path.name}: row {row}: {column} must be a finite number, "
                                   f"got {shown}")
        frame[column] = values.astype(float)
    if (frame["on_order"] < 0).any():
        row = int(frame.index[frame["on_order"] < 0][0]) + 2
        raise SupplyInputError(f"{path.name}: row {row}: on_order must be >= 0")
    dup = frame["unique_id"].duplicated()
    if dup.any():
        raise SupplyInputError(f"{path.name}: series {frame['unique_id'][dup].iloc[0]!r} "
                               "appears more than once")
    unknown = sorted(set(frame["unique_id"]) - set(known))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise SupplyInputError(
            f"{path.name}: unknown series {shown}{more}: not among the forecast's "
            f"{len(known)} planned series (e.g. {known[0]!r}; --series-level all plans every "
            "level)" if known else f"{path.name}: unknown series {shown}{more}")
    return frame.reset_index(drop=True)


def series_history(sales: pd.DataFrame, folder: ForecastFolder) -> pd.DataFrame:
    """Past demand of every chosen series, from the bottom-level sales the forecast used.

    Parameters
    ----------
    sales : pandas.DataFrame
        ``unique_id, ds, y`` of the bottom series (units), e.g.
        ``pharmalab.forecast.outputs.load_sales(...).frame``; a ``unique_id`` matches the
        forecast's bottom series as it is or prefixed by ``Total/`` (the hierarchy's
        naming).
    folder : ForecastFolder

    Returns
    -------
    pandas.DataFrame
        Wide: index ``ds`` (sorted), one column per chosen series (aggregated series are sums
        of their bottom series by ``summing_matrix.parquet``); missing periods are NaN.

    Raises
    ------
    SupplyInputError
        A missing column, or sales series that do not match the forecast's bottom series.
    """
    for column in ("unique_id", "ds", "y"):
        if column not in sales.columns:
            raise SupplyInputError(f"sales history: column {column!r} is missing")
    wide = sales.pivot_table(index="ds", columns="unique_id", values="y", aggfunc="sum")
    wide.columns = wide.columns.astype(str)
    wide = wide.sort_index()
    if folder.summing_matrix is not None:
        smat = folder.summing_matrix.set_index("unique_id")
        smat.index = smat.index.astype(str)
        bottom = [str(c) for c in smat.columns]
        # Hierarchical forecasts name bottom series "Total/<the sales unique_id>".
        known = set(bottom)
        wide = wide.rename(columns={c: f"{TOTAL}/{c}" for c in wide.columns
                                    if c not in known and f"{TOTAL}/{c}" in known})
        missing = [b for b in bottom if b not in wide.columns]
        if missing:
            raise SupplyInputError(
                f"sales history: series {missing[0]!r} of the forecast's summing matrix is not "
                f"in the sales data ({len(missing)} of {len(bottom)} missing); give the sales "
                "file the forecast was made from")
        chosen = [s for s in folder.series if s in smat.index]
        values = wide[bottom].to_numpy(dtype=float)
        weights = smat.loc[chosen, bottom].to_numpy(dtype=float)
        # NaN (a period missing in one bottom series) stays NaN in its aggregates.
        return pd.DataFrame(_nan_matmul(values, weights), index=wide.index, columns=chosen)
    missing = [s for s in folder.series if s not in wide.columns]
    if missing:
        raise SupplyInputError(
            f"sales history: series {missing[0]!r} of the forecast is not in the sales data "
            f"({len(missing)} of {len(folder.series)} missing); give the sales file the "
            "forecast was made from")
    return wide[folder.series]


def _nan_matmul(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``values @ weights.T`` where a NaN (a period missing in a bottom series) makes its
    aggregates NaN."""
    filled = np.nan_to_num(values)
    out = filled @ weights.T
    touched = np.isnan(values).astype(float) @ weights.T
    out[touched > 0] = np.nan
    return out
