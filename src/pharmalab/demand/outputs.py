"""The patient-demand folder: a forecast folder in ``pharmalab forecast``'s format (so
``pharmalab supply`` and the report read it unchanged) plus the patient-flow tables.

Files besides the forecast folder's (each written atomically):

* ``starters.csv`` — ``unique_id, ds, starters, starters_suppressed``: new starters per month;
* ``persistence.csv`` — ``unique_id, k`` (months since the start), ``observed``, ``active``
  (persons, suppressed), ``on_treatment`` (share), ``units_per_patient``, ``retention``, and
  with days of supply ``mpr`` (days supplied per patient-month on treatment ÷ 30.44);
* ``flow_check.csv`` — the flow identity per month (:func:`pharmalab.demand.flow_check`) and
  ``persons`` (every person with a fill); person counts suppressed, and the month's units,
  shares and dispensing blanked with them;
* ``switches.csv`` — ``unique_id, switch_to, switch_to_name, k, persons``: starters who
  switched to another of the drugs given, by months since the start (suppressed);
* ``backtest_comparison.csv`` — patient flow vs sales series vs combination, per window;
* ``starters_forecast.parquet`` — the new-starter forecast (``unique_id, ds, mean, …``).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from pharmalab.atomic import atomic_path, write_csv, write_text
from pharmalab.demand.flow import DemandInputError, FlowSettings, patient_flow
from pharmalab.demand.forecast import (
    DemandBacktest,
    PatientDemand,
    backtest_patient_demand,
    forecast_patient_demand,
)
from pharmalab.demand.project import Scenario
from pharmalab.demand.rates import cohort_matrix, estimate_rates, flow_check
from pharmalab.engine import Database
from pharmalab.forecast import (
    ForecastResult,
    ForecastSettings,
    build_hierarchy,
    summarize_metrics,
)
from pharmalab.forecast.outputs import write_forecast
from pharmalab.privacy import suppress

COMPARISON_FILE = "backtest_comparison.csv"
#: Columns of backtest_metrics.csv and backtest_summary.csv (also when nothing is backtested).
METRIC_COLUMNS = ["unique_id", "cutoff", "mase", "rmsse", "abs_error", "abs_actual", "wape",
                  "pinball", "scaled_crps", "coverage_80", "coverage_95", "periods"]
SUMMARY_COLUMNS = ["level", "series", "windows", "mase", "mase_median", "rmsse", "wape",
                   "scaled_crps", "coverage_80", "coverage_95", "n_unscaled"]
#: Mean days in a month (365.25 / 12).
DAYS_PER_MONTH = 365.25 / 12


def write_patient_demand(made: list[tuple[PatientDemand, DemandBacktest | None]],
                         folder: str | os.PathLike, settings: ForecastSettings, *,
                         min_cell_count: int, source: dict | None = None) -> list[Path]:
    """Write the forecast folder and the patient-flow tables of one or more drugs.

    Returns the paths written. Person counts pass through :func:`pharmalab.privacy.suppress`.
    """
    folder = Path(folder)
    demands = [d for d, _ in made]
    backtests = [b for _, b in made if b is not None]
    history = pd.concat([pd.DataFrame({"unique_id": d.flow.unique_id, "ds": d.flow.months["ds"],
                                       "y": d.flow.months["dispensed"]}) for d in demands])
    hierarchy = build_hierarchy(history)
    flow_rows = [b.forecasts[b.forecasts["method"] == "patient_flow"].drop(columns="method")
                 for b in backtests]
    metrics = pd.concat([b.metrics[b.metrics["method"] == "patient_flow"] for b in backtests],
                        ignore_index=True) if backtests else pd.DataFrame(columns=[
                            *METRIC_COLUMNS, "method", "weight_patient_flow"])
    metrics = metrics.drop(columns=["method", "weight_patient_flow"]).assign(level="drug")
    level_of = {d.flow.unique_id: "drug" for d in demands}
    result = ForecastResult(
        forecast=pd.concat([d.forecast for d in demands], ignore_index=True),
        paths=pd.concat([d.paths for d in demands], ignore_index=True),
        backtest=pd.concat(flow_rows, ignore_index=True) if flow_rows else pd.DataFrame(
            columns=[*demands[0].forecast.columns, "cutoff", "y"]),
        backtest_paths=pd.concat([b.paths for b in backtests], ignore_index=True)
        if backtests else pd.DataFrame(columns=["unique_id", "ds", "path", "y", "cutoff"]),
        metrics=metrics,
        summary=summarize_metrics(metrics, level_of) if len(metrics)
        else pd.DataFrame(columns=SUMMARY_COLUMNS),
        model_choice=pd.DataFrame([_choice(d, b) for d, b in made]),
        reconciliation=pd.DataFrame(columns=["cutoff", "method", "reason"]),
        hierarchy=hierarchy,
        notes=[n for d in demands for n in d.flow.notes + d.notes])
    written = write_forecast(result, folder, settings, source=source)
    written += [
        write_csv(folder / "starters.csv", suppress(pd.concat(
            [d.flow.months[["ds", "starters"]].assign(unique_id=d.flow.unique_id)
             [["unique_id", "ds", "starters"]] for d in demands]), ["starters"],
            min_cell_count)),
        write_csv(folder / "persistence.csv", pd.concat(
            [_persistence(d, min_cell_count) for d in demands], ignore_index=True)),
        write_csv(folder / "flow_check.csv", pd.concat(
            [_check(d, min_cell_count) for d in demands], ignore_index=True)),
        _parquet(folder / "starters_forecast.parquet", pd.concat(
            [d.starters.assign(unique_id=d.flow.unique_id) for d in demands])),
    ]
    switches = pd.concat([d.flow.switches.assign(unique_id=d.flow.unique_id)
                          for d in demands], ignore_index=True)
    switches = switches.merge(pd.DataFrame({"switch_to": [d.flow.concept_id for d in demands],
                                            "switch_to_name": [d.flow.unique_id
                                                               for d in demands]}),
                              on="switch_to", how="left")
    written.append(write_csv(folder / "switches.csv", suppress(
        switches[["unique_id", "switch_to", "switch_to_name", "k", "persons"]], ["persons"],
        min_cell_count)))
    if backtests:
        comparison = pd.concat([b.metrics for b in backtests], ignore_index=True)
        written.append(write_csv(folder / COMPARISON_FILE, comparison))
    else:  # a comparison from an earlier run in this folder would not be of this forecast
        (folder / COMPARISON_FILE).unlink(missing_ok=True)
    manifest = {"kind": "pharmalab.demand", "scenario": [d.scenario.model_dump()
                                                         for d in demands][0],
                "flow_settings": {k: getattr(demands[0].flow.settings, k) for k in (
                    "washout", "permissible_gap", "measure", "indication_cohort",
                    "max_months")},
                "drugs": [{"unique_id": d.flow.unique_id, "concept_id": d.flow.concept_id,
                           "as_of": str(d.flow.as_of.date())} for d in demands],
                "combination_weight": {b.forecasts["unique_id"].iloc[0]: b.weight
                                       for b in backtests}}
    written.append(write_text(folder / "demand_manifest.json",
                              json.dumps(manifest, indent=1, default=str)))
    return written


def read_scenario(path: str | os.PathLike) -> Scenario:
    """A :class:`Scenario` from a TOML or JSON file.

    Raises
    ------
    DemandInputError
        A missing or unreadable file, or a field that is unknown or out of range (named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DemandInputError(f"scenario file {str(path)!r}: cannot read it ({exc})") from None
    data = data.get("scenario", data) if isinstance(data, dict) else data
    if isinstance(data, dict):
        data = {"name": path.stem, **data}  # a scenario is called by its file unless named
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'scenario'}: {e['msg']}"
                             for e in exc.errors())
        raise DemandInputError(f"scenario file {str(path)!r}: {problems}") from None


@dataclass(frozen=True)
class DemandRun:
    """What :func:`run_patient_demand` made: ``written`` paths, the backtest ``comparison``
    (``method, unique_id, cutoff, mase, …``; empty without a backtest) and, per drug, the
    forecast and its backtest (``made``)."""

    written: list[Path]
    comparison: pd.DataFrame
    made: list[tuple[PatientDemand, DemandBacktest | None]]


def run_patient_demand(db: Database, out: str | os.PathLike, concept_ids: list[int], *,
                       flow_settings: FlowSettings, settings: ForecastSettings,
                       scenario: Scenario | None = None, min_cell_count: int = 5,
                       backtest: bool = True, progress=None) -> DemandRun:
    """Flow, backtest and forecast of each drug, written to ``out``.

    Raises
    ------
    DemandInputError
        As :func:`pharmalab.demand.patient_flow`, for each drug.
    """
    say = progress or (lambda stage: None)
    made = []
    for concept_id in concept_ids:
        say(f"patient flow of concept {concept_id}")
        flow = patient_flow(db, concept_id, settings=flow_settings, switch_to=concept_ids)
        scored = None
        if backtest:
            scored = backtest_patient_demand(db, concept_id, flow_settings=flow_settings,
                                             settings=settings, name=flow.unique_id,
                                             progress=say)
        say(f"forecast of {flow.unique_id}")
        demand = forecast_patient_demand(flow, settings=replace(settings, backtest_windows=1),
                                         scenario=scenario)
        made.append((demand, scored))
    source = {"concept_ids": list(concept_ids), "engine": getattr(db, "url", None)
              and db.url.kind}
    written = write_patient_demand(made, out, settings, min_cell_count=min_cell_count,
                                   source=source)
    comparison = pd.concat([b.metrics for _, b in made if b is not None], ignore_index=True) \
        if any(b is not None for _, b in made) else pd.DataFrame()
    return DemandRun(written, comparison, made)


def demand_summary(run: DemandRun, min_cell_count: int) -> pd.DataFrame:
    """Per drug: new starters in the history (suppressed below ``min_cell_count``), the last 12
    months' dispensing and the forecast total over the horizon with its 80% interval (from
    the summed paths)."""
    rows = []
    for made, _ in run.made:
        totals = made.paths.groupby("path")["y"].sum()
        months = made.flow.months
        rows.append({"unique_id": made.flow.unique_id,
                     "new starters (history)": int(months["starters"].sum()),
                     "dispensed, last 12 months": float(months["dispensed"].tail(12).sum()),
                     "forecast total": round(float(totals.mean()), 1),
                     "80% interval": f"{totals.quantile(0.1):,.0f} – "
                                     f"{totals.quantile(0.9):,.0f}"})
    shown = suppress(pd.DataFrame(rows), ["new starters (history)"], min_cell_count)
    return shown.drop(columns="new starters (history)_suppressed")


def yearly_flow(demand: PatientDemand, min_cell_count: int) -> pd.DataFrame:
    """The flow identity per year (for reading and figures): ``unique_id, year, starters,
    active_months`` (person-months on treatment), ``units``, ``units_flow``; person counts
    suppressed, and the year's units blanked with them."""
    check = flow_check(demand.flow)
    year = check.groupby(check["ds"].dt.year).agg(
        starters=("starters", "sum"), active_months=("active", "sum"), units=("units", "sum"),
        units_flow=("units_flow", "sum")).rename_axis("year").reset_index()
    year.insert(0, "unique_id", demand.flow.unique_id)
    shown = suppress(year, ["starters", "active_months"], min_cell_count)
    hidden = shown["active_months_suppressed"]
    for column in ("units", "units_flow"):
        shown[column] = shown[column].mask(hidden)
    return shown


def _parquet(target: Path, frame: pd.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return target


def _choice(demand: PatientDemand, backtest: DemandBacktest | None) -> dict:
    row = {"unique_id": demand.flow.unique_id, "level": "drug",
           "combination": "patient flow: new starters × share on treatment × units per "
                          "patient-month, plus the other patients' dispensing",
           "best_model": "patient_flow"}
    if backtest is not None:
        for _, r in backtest.summary.iterrows():
            row[f"mase_{r['method']}"] = r["mase"]
        best = backtest.summary.sort_values("mase")["method"].iloc[0]
        row["best_model"] = best
        row["combination_weight_patient_flow"] = backtest.weight
    return row


def _persistence(demand: PatientDemand, min_cell_count: int) -> pd.DataFrame:
    matrix = cohort_matrix(demand.flow)
    rates = estimate_rates(matrix)
    table = pd.DataFrame({"unique_id": demand.flow.unique_id,
                          "k": range(matrix.observed.shape[1]),
                          "observed": matrix.observed.sum(axis=0).astype("int64"),
                          "active": matrix.active.sum(axis=0).astype("int64"),
                          "on_treatment": rates.on_treatment[0],
                          "units_per_patient": rates.units[0],
                          "retention": rates.retention[0]})
    if demand.flow.settings.measure == "days_supply":
        # days supplied per patient-month on treatment ÷ days in a mean month: the MPR of the
        # months on treatment (Sikka et al. 2005; not capped, so early refills show)
        table["mpr"] = table["units_per_patient"] / DAYS_PER_MONTH
    table = table[table["observed"] > 0]
    # units per patient are carried from elsewhere where no one is on treatment: not shown
    for column in ("units_per_patient", "mpr"):
        if column in table:
            table[column] = table[column].mask(table["active"] == 0)
    shown = suppress(table, ["observed", "active"], min_cell_count)
    hidden = shown["observed_suppressed"] | shown["active_suppressed"]
    for column in ("on_treatment", "units_per_patient", "mpr"):
        if column not in shown:
            continue
        shown[column] = shown[column].mask(hidden)
    return shown


def _check(demand: PatientDemand, min_cell_count: int) -> pd.DataFrame:
    check = flow_check(demand.flow)
    check.insert(0, "unique_id", demand.flow.unique_id)
    check["persons"] = demand.flow.months["persons"].to_numpy()
    shown = suppress(check, ["starters", "active", "persons"], min_cell_count)
    # Anything from which a blanked count could be rebuilt goes with it: the starters' units
    # and shares (units ÷ share = dispensed), and the month's dispensing of fewer persons
    # than the minimum (one fill of one day each is a head count).
    hidden = shown["starters_suppressed"] | shown["active_suppressed"]
    for column in ("units", "units_flow", "active_flow", "gap_units", "gap_units_pct",
                   "starters_share"):
        shown[column] = shown[column].mask(hidden)
    shown["dispensed"] = shown["dispensed"].mask(shown["persons_suppressed"] | hidden)
    return shown


__all__ = ["COMPARISON_FILE", "DemandRun", "demand_summary", "read_scenario",
           "run_patient_demand",
           "write_patient_demand", "yearly_flow"]
