"""Files and figures of characterization results, shared by the CLI and the study steps.

Every file is written atomically (temporary name, then rename). The tables written are the
suppressed ones: nothing below the minimum cell count leaves through these functions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pharmalab.atomic import write_csv, write_text
from pharmalab.characterize.incidence import IncidenceResult
from pharmalab.characterize.survival import SurvivalResult

INCIDENCE_FILE = "incidence_summary.csv"
SURVIVAL_FILE = "km_survival.csv"
SURVIVAL_SUMMARY_FILE = "survival_summary.json"
BASELINE_FILE = "baseline_characteristics.csv"
TABLE_ONE_FILE = "table_one.csv"


def write_incidence(result: IncidenceResult, folder: str | Path) -> list[Path]:
    """``incidence_summary.csv``: CohortIncidence's ``incidence_summary`` columns plus exact
    limits, small cells blanked (see :func:`incidence_rates`)."""
    return [write_csv(Path(folder) / INCIDENCE_FILE, result.summary)]


def write_survival(result: SurvivalResult, folder: str | Path) -> list[Path]:
    """``km_survival.csv`` (one row per cohort and day with an event or censoring: time in
    days, n_at_risk, n_events, n_censored suppressed, survival and 95% limits) and
    ``survival_summary.json`` (median survival per cohort in days, log-rank test)."""
    folder = Path(folder)
    summary = {
        "time_at_risk": result.tar.label,
        "min_cell_count": result.min_cell_count,
        "median_survival_days": {str(k): v for k, v in result.medians.items()},
        "log_rank": None if result.log_rank is None else {
            "chi2": result.log_rank.chi2, "df": result.log_rank.df,
            "p_value": result.log_rank.p_value},
    }
    return [write_csv(folder / SURVIVAL_FILE, result.table),
            write_text(folder / SURVIVAL_SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")]


def incidence_overview(summary: pd.DataFrame) -> pd.DataFrame:
    """The overall rows (no strata) with the columns a reader looks at first."""
    overall = summary[summary[["age_group_id", "gender_id", "start_year"]].isna().all(axis=1)]
    columns = ["target_cohort_definition_id", "target_name", "tar_id", "subgroup_name",
               "outcome_id", "outcome_name", "clean_window", "persons_at_risk", "person_years",
               "person_outcomes", "outcomes", "incidence_proportion_p100p",
               "incidence_rate_p1000py", "incidence_rate_p1000py_lower_95",
               "incidence_rate_p1000py_upper_95"]
    out = overall[columns].copy()
    for column in ["person_years", "incidence_proportion_p100p", "incidence_rate_p1000py",
                   "incidence_rate_p1000py_lower_95", "incidence_rate_p1000py_upper_95"]:
        out[column] = out[column].astype("float64").round(2)
    return out


def incidence_forest_figure(summary: pd.DataFrame) -> go.Figure:
    """Forest plot: incidence rate per 1,000 person-years with exact 95% limits, one row per
    target × window × outcome and stratum (overall first); suppressed rates are left out."""
    rows = summary.dropna(subset=["incidence_rate_p1000py"]).copy()
    rows["stratum"] = rows.apply(_stratum_label, axis=1)
    rows["label"] = (rows.target_name.where(rows.target_name != "",
                                            "cohort " + rows.target_cohort_definition_id
                                            .astype(str))
                     + " · TAR " + rows.tar_id.astype(str)
                     + " · " + rows.outcome_name.where(rows.outcome_name != "",
                                                       "outcome " + rows.outcome_id.astype(str))
                     + " · " + rows.stratum)
    rate = rows.incidence_rate_p1000py.astype("float64")
    fig = go.Figure(go.Scatter(
        x=rate, y=rows.label, mode="markers",
        marker=dict(size=8, symbol=np.where(rows.stratum == "overall", "diamond", "circle")),
        error_x=dict(type="data", symmetric=False,
                     array=rows.incidence_rate_p1000py_upper_95.astype("float64") - rate,
                     arrayminus=rate - rows.incidence_rate_p1000py_lower_95.astype("float64")),
        hovertemplate="%{y}<br>%{x:.1f} per 1,000 person-years<extra></extra>"))
    fig.update_layout(height=max(300, 24 * len(rows) + 80), margin=dict(l=10, r=10, t=10, b=40),
                      xaxis_title="incidence rate per 1,000 person-years (exact 95% CI)",
                      yaxis=dict(autorange="reversed"))
    return fig


def _stratum_label(row) -> str:
    parts = []
    if pd.notna(row.age_group_id):
        parts.append(f"age {row.age_group_name}")
    if pd.notna(row.gender_id):
        parts.append(str(row.gender_name or row.gender_id).lower())
    if pd.notna(row.start_year):
        parts.append(str(row.start_year))
    if row.subgroup_id:
        parts.insert(0, str(row.subgroup_name))
    return ", ".join(parts) or "overall"


def table_one_display(frame: pd.DataFrame) -> pd.DataFrame:
    """A Table 1 for reading: ``covariate``, ``window``, one column per cohort holding
    "count (percent)" for binary covariates or "mean (SD)" for continuous ones, and ``smd``
    rounded to 3 decimals. Suppressed cells read "—". Takes :func:`table_one` output (or
    one cohort's :func:`baseline_characteristics`)."""
    sides = ["target", "comparator"] if "target_count" in frame.columns else [""]
    out = pd.DataFrame({"covariate": frame.covariate_name, "window": frame.window.fillna("")})
    for side in sides:
        prefix = f"{side}_" if side else ""
        out[side or "value"] = [
            _cell(row[f"{prefix}count"], row[f"{prefix}proportion"], row[f"{prefix}mean"],
                  row[f"{prefix}sd"]) for _, row in frame.iterrows()]
    if "smd" in frame.columns:
        out["smd"] = frame.smd.astype("float64").round(3) + 0.0  # + 0.0: no "-0"
    return out.reset_index(drop=True)


def _cell(count, proportion, mean, sd) -> str:
    if pd.notna(mean):
        return f"{mean:,.1f} ({sd:,.1f})" if pd.notna(sd) else f"{mean:,.1f}"
    if pd.isna(count):
        return "—"
    if pd.notna(proportion):
        return f"{int(count):,} ({100 * proportion:.1f}%)"
    return f"{int(count):,}"
