"""Files and figures of a supply run, shared by the CLI and the study step.

Files (each written atomically into the output folder):

* ``policy.csv`` — the (R, S) policy per series for the first review after the data
  (:data:`pharmalab.supply.plan.POLICY_COLUMNS`);
* ``orders.csv`` — the replenishment plan from an on-hand file (only when one is given;
  :data:`pharmalab.supply.plan.ORDER_COLUMNS`);
* ``backtest.csv`` — both policies per series and backtest window
  (:data:`pharmalab.supply.backtest.BACKTEST_COLUMNS`);
* ``backtest_summary.csv`` — per hierarchy level and over all series;
* ``backtest_inventory.parquet`` — the simulated inventory period by period;
* ``figures.html`` — achieved vs target service per level, and the inventory of chosen series
  (one self-contained page, Plotly embedded once);
* ``supply_manifest.json`` — settings, forecast folder, notes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from pharmalab.atomic import atomic_path, write_csv, write_text
from pharmalab.errors import SupplyInputError
from pharmalab.supply.backtest import (
    BACKTEST_COLUMNS,
    BacktestResult,
    backtest_policies,
    summarize_backtest,
)
from pharmalab.supply.figures import (
    inventory_trajectory,
    service_level_chart,
    trajectory_series,
)
from pharmalab.supply.inputs import BACKTEST as BACKTEST_FILE
from pharmalab.supply.inputs import read_forecast_folder, read_on_hand, series_history
from pharmalab.supply.plan import policy_table, replenishment_plan
from pharmalab.supply.settings import PolicySettings

__all__ = ["SupplyResult", "run_supply", "supply_figures", "write_supply"]


@dataclass
class SupplyResult:
    """Everything a supply run produced.

    Attributes
    ----------
    settings : PolicySettings
    policy : pandas.DataFrame
        ``policy.csv``.
    orders : pandas.DataFrame or None
        ``orders.csv`` (None without an on-hand file).
    backtest : BacktestResult
    series : list of str
        Series planned.
    trajectory_series : list of str
        Series whose inventory is drawn.
    notes : list of str
    """

    settings: PolicySettings
    policy: pd.DataFrame
    orders: pd.DataFrame | None
    backtest: BacktestResult
    series: list[str]
    trajectory_series: list[str]
    notes: list[str] = field(default_factory=list)


def supply_figures(result: SupplyResult) -> list[tuple[str, object]]:
    """``(caption, Plotly figure)`` pairs: service per level, then each chosen series."""
    s = result.settings
    kind = "fill rate" if s.service_type == "fill_rate" else "cycle service level"
    if result.backtest.table.empty:
        return []
    figs = [(f"Achieved {kind} (pooled over series and backtest windows) against the "
             f"{s.service_level:.0%} target, per hierarchy level: forecast-driven vs naive "
             f"(R, S) policy, L = {s.lead_time}, R = {s.review_period} periods",
             service_level_chart(result.backtest.summary))]
    inventory = result.backtest.inventory
    drawn = set(inventory["unique_id"]) if len(inventory) else set()
    for uid in [u for u in result.trajectory_series if u in drawn]:
        figs.append((f"{uid}: net inventory at the end of each period (below 0: "
                     "backorders) and order-up-to levels in the last backtest window; the "
                     "shaded periods are counted",
                     inventory_trajectory(inventory, uid)))
    return figs


def run_supply(forecast_folder: str | os.PathLike, out: str | os.PathLike | None,
               settings: PolicySettings, *, on_hand: str | os.PathLike | None = None,
               sales: pd.DataFrame | None = None, series: list[str] | None = None,
               figures: bool = True) -> tuple[SupplyResult, list[Path]]:
    """Policies, replenishment plan and policy backtest from a forecast folder.

    Parameters
    ----------
    forecast_folder : path
        Written by ``pharmalab forecast`` or the ``[forecast]`` study step (or a scenario in
        that format, e.g. ``pharmalab marketing allocate``'s ``forecast/``; without
        ``backtest_forecasts.parquet`` the policies are planned and not backtested).
    out : path or None
        Output folder (created if needed); None writes nothing.
    settings : PolicySettings
    on_hand : path, optional
        On-hand CSV (``unique_id, on_hand[, on_order]``,
        :func:`pharmalab.supply.inputs.read_on_hand`): also write ``orders.csv``.
    sales : pandas.DataFrame, optional
        ``unique_id, ds, y`` of the bottom series the forecast was made from (the naive
        policy's past demand); default the forecast folder's ``history.parquet`` (written by
        ``pharmalab forecast``); with neither the naive policy is not backtested.
    series : list of str, optional
        Series whose inventory to draw (default: the three with the most demand).
    figures : bool, default True
        Write ``figures.html`` (a study report embeds the figures instead).

    Returns
    -------
    (SupplyResult, list of pathlib.Path)
        The result and the files written.

    Raises
    ------
    SupplyInputError
        Bad forecast folder, on-hand file, sales history or series; ``L + R`` beyond the
        forecast horizon.
    """
    folder = read_forecast_folder(forecast_folder, series_level=settings.series_level)
    horizon = int(folder.forecast.groupby("unique_id").size().min())
    if settings.protection_periods > horizon:
        raise SupplyInputError(
            f"lead time + review period ({settings.protection_periods} periods) exceed the "
            f"forecast horizon ({horizon} periods) of {str(folder.path)!r}")
    stock = None if on_hand is None else read_on_hand(on_hand, folder.series)
    if series:
        unknown = [s for s in series if s not in folder.series]
        if unknown:
            raise SupplyInputError(f"series {unknown[0]!r} to draw is not among the planned "
                                   f"series (e.g. {folder.series[0]!r})")
    if sales is None and (folder.path / "history.parquet").is_file():
        # pharmalab forecast writes the bottom series' data beside the forecast
        sales = pd.read_parquet(folder.path / "history.parquet")
    history = None if sales is None else series_history(sales, folder)
    level_of = folder.level_of
    forecasts = folder.forecasts()
    policy = policy_table(forecasts, settings, level_of)
    orders = (None if stock is None
              else replenishment_plan(forecasts, stock, settings))
    if folder.backtest is None:
        # a scenario folder (e.g. pharmalab marketing allocate without a hold-out) has
        # policies to plan but no past windows to test them on
        empty = pd.DataFrame(columns=BACKTEST_COLUMNS)
        backtest = BacktestResult(empty, summarize_backtest(empty), pd.DataFrame(), [
            f"the forecast folder has no {BACKTEST_FILE}: the policies were not backtested"])
    else:
        backtest = backtest_policies(folder.backtest_forecasts(), folder.actuals(), settings,
                                     history, level_of, folder.tags)
    notes = list(backtest.notes)
    if folder.paths is not None and folder.backtest_paths is None:
        notes.append("the policies use the forecast's sample paths but the folder has no "
                     "backtest_paths.parquet: the backtest's policies come from quantiles "
                     "with independent periods, so backtest and policy.csv differ in method")
    if stock is not None and len(stock) < len(folder.series):
        notes.append(f"orders.csv plans the {len(stock)} series of the on-hand file "
                     f"(of {len(folder.series)}).")
    result = SupplyResult(settings, policy, orders, backtest, folder.series,
                          list(series) if series else trajectory_series(backtest.table),
                          notes)
    written: list[Path] = []
    if out is not None:
        written = write_supply(result, Path(out), folder.path, figures=figures)
    return result, written


def write_supply(result: SupplyResult, out: Path, forecast_folder: Path,
                 figures: bool = True) -> list[Path]:
    """Write the files of ``result`` into ``out`` (``figures.html`` only with ``figures``);
    returns the paths written."""
    from pharmalab.report import Section, figure, render, table

    written = [write_csv(out / "policy.csv", result.policy)]
    if result.orders is not None:
        written.append(write_csv(out / "orders.csv", result.orders))
    elif (out / "orders.csv").is_file() and (out / "supply_manifest.json").is_file():
        # an earlier run's plan would sit beside this run's policies, looking current
        (out / "orders.csv").unlink()
    bt = result.backtest
    written.append(write_csv(out / "backtest.csv", bt.table))
    written.append(write_csv(out / "backtest_summary.csv", bt.summary))
    with atomic_path(out / "backtest_inventory.parquet") as tmp:
        bt.inventory.to_parquet(tmp, index=False)
    written.append(out / "backtest_inventory.parquet")
    if figures:
        blocks = [table(bt.summary.round(4), caption="Policy backtest per level")]
        blocks += [figure(fig, caption=caption) for caption, fig in supply_figures(result)]
        written.append(render(out / "figures.html", "Supply: policy backtest",
                              [Section("Supply policies", blocks)],
                              {"forecast folder": str(forecast_folder)}))
    manifest = {"settings": asdict(result.settings), "forecast_folder": str(forecast_folder),
                "series": len(result.series), "notes": result.notes,
                "files": [p.name for p in written]}
    written.append(write_text(out / "supply_manifest.json",
                              json.dumps(manifest, indent=1, default=str)))
    return written
