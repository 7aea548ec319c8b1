"""Files and figures of ``pharmalab marketing fit`` and ``allocate``, shared by the CLI and the
``[marketing]`` study step.

``fit`` writes (each atomically): ``roi.csv``, ``contributions.parquet``,
``response_curves.parquet``, ``adstock.csv``, ``latent_demand.parquet`` (with a constraint
column), ``diagnostics.csv``, ``fit_metrics.csv``, ``model/`` (:mod:`.store`),
``figures.html`` and ``marketing_manifest.json``.

``allocate`` writes ``allocation.csv``, ``allocation_summary.json``, ``forecast/`` (the plan's
demand as a forecast folder, :mod:`.scenario`) and ``figures.html``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab import __version__
from pharmalab.atomic import atomic_path, write_csv, write_text
from pharmalab.errors import MarketingInputError
from pharmalab.marketing import insights
from pharmalab.marketing.allocate import Allocation, allocate_budget, read_bounds, read_capacity
from pharmalab.marketing.model import MMMFit, MMMSettings, fit_mmm
from pharmalab.marketing.panel import Panel
from pharmalab.marketing.scenario import write_plan_forecast
from pharmalab.marketing.store import MODEL_DIR, load_fit, save_fit

__all__ = ["FitOutputs", "allocation_figures", "fit_figures", "run_allocate", "run_fit"]

PLAN_FORECAST_DIR = "forecast"


@dataclass
class FitOutputs:
    """A fit and the tables written from it."""

    fit: MMMFit
    roi: pd.DataFrame
    contributions: pd.DataFrame
    response_curves: pd.DataFrame
    adstock: pd.DataFrame
    fit_metrics: pd.DataFrame
    latent_demand: pd.DataFrame | None
    written: list[Path] = field(default_factory=list)


def run_fit(panel: Panel, settings: MMMSettings, out: str | os.PathLike | None, *,
            progress=None, figures: bool = True) -> FitOutputs:
    """Fit the MMM (:func:`~pharmalab.marketing.fit_mmm`) and write its files to ``out``.

    Returns
    -------
    FitOutputs
    """
    fit = fit_mmm(panel, settings, progress=progress)
    say = progress or (lambda text: None)
    say("summarizing the posterior")
    result = FitOutputs(
        fit=fit, roi=insights.roi(fit), contributions=insights.contributions(fit),
        response_curves=insights.response_curves(fit), adstock=insights.adstock(fit),
        fit_metrics=insights.fit_metrics(fit),
        latent_demand=(insights.latent_demand(fit, seed=settings.seed)
                       if panel.columns.get("constraint") else None))
    if out is not None:
        result.written = _write_fit(result, Path(out), figures)
    return result


def _parquet(path: Path, frame: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def _write_fit(result: FitOutputs, out: Path, figures: bool) -> list[Path]:
    fit = result.fit
    # the manifest is written last: until then no earlier run's manifest vouches for the files
    ours = (out / "marketing_manifest.json").is_file()
    (out / "marketing_manifest.json").unlink(missing_ok=True)
    written = [
        write_csv(out / "roi.csv", result.roi),
        _parquet(out / "contributions.parquet", result.contributions),
        _parquet(out / "response_curves.parquet", result.response_curves),
        write_csv(out / "adstock.csv", result.adstock),
        write_csv(out / "diagnostics.csv", fit.diagnostics),
        write_csv(out / "fit_metrics.csv", result.fit_metrics),
    ]
    if result.latent_demand is not None:
        written.append(_parquet(out / "latent_demand.parquet", result.latent_demand))
    elif ours and (out / "latent_demand.parquet").is_file():
        (out / "latent_demand.parquet").unlink()  # an earlier run's, not this fit's
    written.append(save_fit(fit, out / MODEL_DIR))
    if figures:
        from pharmalab.report import Section, figure, render, table, text

        blocks = [text(fit.convergence.banner(), caption="Convergence")]
        blocks.append(table(result.roi.round(4), caption="ROI per channel (roi.csv)"))
        blocks += [figure(fig, caption=caption) for caption, fig in fit_figures(result)]
        written.append(render(out / "figures.html", "Marketing mix model",
                              [Section("Marketing mix model", blocks,
                                       status="ok" if fit.convergence.converged
                                       else "failed")],
                              {"panel": fit.panel.source}))
    manifest = {
        "command": "pharmalab marketing fit",
        "pharmalab": __version__, "pymc_marketing": _version("pymc-marketing"),
        "nutpie": _version("nutpie"), "pymc": _version("pymc"),
        "settings": asdict(fit.settings),
        "panel": _panel_summary(fit),
        "likelihood": _likelihood(fit),
        "sampler": fit.sampler, "chains": fit.chains, "seconds": fit.seconds,
        "convergence": asdict(fit.convergence),
        "notes": fit.notes,
        "files": [p.name for p in written],
    }
    written.append(write_text(out / "marketing_manifest.json",
                              json.dumps(manifest, indent=1, default=str)))
    return written


def _likelihood(fit: MMMFit) -> str:
    capped = int(fit.train.censored.sum())
    if capped and fit.settings.censor:
        return f"Normal, right-censored on {capped} supply-constrained training rows"
    if capped:
        return f"Normal ({capped} supply-constrained rows fitted as demand: --no-censor)"
    return "Normal"


def _panel_summary(fit: MMMFit) -> dict:
    panel = fit.panel
    return {"file": panel.source, "rows": int(len(panel.frame)), "geos": len(panel.geos),
            "periods": len(panel.dates), "train_periods": fit.train_periods,
            "holdout_periods": len(panel.dates) - fit.train_periods, "freq": panel.freq,
            "first": panel.dates[0].strftime("%Y-%m-%d"),
            "last": panel.dates[-1].strftime("%Y-%m-%d"),
            "channels": list(panel.channels), "controls": list(panel.controls),
            "columns": panel.columns,
            "constrained_rows": int(panel.censored.sum()),
            "constraint_kind": panel.constraint_kind}


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def fit_figures(result: FitOutputs) -> list[tuple[str, object]]:
    """``(caption, Plotly figure)``: contributions over time, ROI with intervals, response
    curves, latent vs observed demand (with a constraint column)."""
    import plotly.graph_objects as go

    fit = result.fit
    figs = []
    contrib = result.contributions
    whole = insights.TOTAL if (contrib["geo"] == insights.TOTAL).any() else fit.panel.geos[0]
    part = contrib[contrib["geo"] == whole]
    fig = go.Figure()
    # controls can be negative (a competitor takes scripts): they are folded into the bottom
    # area so that the channels stack on what the brand would sell without promotion
    base = part[part["component"].isin(["baseline", *fit.panel.controls])]
    base = base.groupby("ds", as_index=False)["mean"].sum()
    label = "baseline and controls" if fit.panel.controls else "baseline"
    fig.add_trace(go.Scatter(x=base["ds"], y=base["mean"], name=label, stackgroup="one",
                             line={"width": 0}))
    for component in fit.panel.channels:
        c = part[part["component"] == component]
        fig.add_trace(go.Scatter(x=c["ds"], y=c["mean"], name=component, stackgroup="one",
                                 mode="none"))
    observed = fit.panel.frame.groupby("ds")["y"].sum()
    fig.add_trace(go.Scatter(x=observed.index, y=observed.to_numpy(), name="observed",
                             line={"color": "black", "width": 1}))
    if fit.train_periods < len(fit.panel.dates):
        fig.add_vline(x=fit.panel.dates[fit.train_periods], line_dash="dot")
    fig.update_layout(height=380, margin={"l": 40, "r": 10, "t": 10, "b": 30},
                      yaxis_title="units per period", legend={"orientation": "h"})
    figs.append(("Contributions over time (posterior means; all regions): baseline "
                 "(intercept, trend, seasonality) with the controls, then each channel; the "
                 "black line is observed (contributions.parquet has every part with its "
                 "interval)", fig))

    roi = result.roi
    fig = go.Figure(go.Bar(
        x=roi["channel"], y=roi["roi"],
        error_y={"type": "data", "symmetric": False,
                 "array": (roi["roi_hi"] - roi["roi"]).to_numpy(),
                 "arrayminus": (roi["roi"] - roi["roi_lo"]).to_numpy()},
        marker_color=["#2ca02c" if lo > 1 else "#1f77b4" for lo in roi["roi_lo"]]))
    fig.add_hline(y=1.0, line_dash="dash", annotation_text="break-even")
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 10, "b": 30},
                      yaxis_title=f"ROI (value {fit.unit_value:g} EUR per unit)")
    figs.append(("ROI per channel with 90% credible intervals (incremental units × unit "
                 "value / spend over the fitted periods)", fig))

    from plotly.subplots import make_subplots

    curves = result.response_curves
    channels = list(dict.fromkeys(curves["channel"]))
    fig = make_subplots(rows=1, cols=len(channels), subplot_titles=channels,
                        horizontal_spacing=0.06)
    for i, channel in enumerate(channels, start=1):
        c = curves[curves["channel"] == channel]
        fig.add_trace(go.Scatter(x=list(c["spend"]) + list(c["spend"][::-1]),
                                 y=list(c["hi"]) + list(c["lo"][::-1]), fill="toself",
                                 fillcolor="rgba(31,119,180,0.2)", line={"width": 0},
                                 showlegend=False, hoverinfo="skip"), row=1, col=i)
        fig.add_trace(go.Scatter(x=c["spend"], y=c["incremental_units"], mode="lines",
                                 line={"color": "rgb(31,119,180)"}, showlegend=False,
                                 name=channel), row=1, col=i)
        now = c[np.isclose(c["multiplier"], 1.0)]
        fig.add_trace(go.Scatter(x=now["spend"], y=now["incremental_units"], mode="markers",
                                 marker={"size": 9, "color": "black"}, showlegend=False,
                                 name=f"{channel} as spent"), row=1, col=i)
    fig.update_layout(height=330, margin={"l": 40, "r": 10, "t": 30, "b": 30})
    fig.update_xaxes(title_text="EUR")
    fig.update_yaxes(title_text="incremental units", row=1, col=1)
    figs.append(("Response curves: incremental units as each channel's historical spend is "
                 "scaled from 0 to 2× (dot: as spent), with 90% intervals", fig))

    if result.latent_demand is not None and result.latent_demand["censored"].any():
        latent = result.latent_demand.groupby("ds")[
            ["observed", "demand_mean", "demand_lo", "demand_hi"]].sum()
        capped = result.latent_demand.groupby("ds")["censored"].any()
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=list(latent.index) + list(latent.index[::-1]),
                                 y=list(latent["demand_hi"]) + list(latent["demand_lo"][::-1]),
                                 fill="toself", opacity=0.25, line={"width": 0},
                                 name="demand, 90% interval"))
        fig.add_trace(go.Scatter(x=latent.index, y=latent["demand_mean"], name="demand"))
        fig.add_trace(go.Scatter(x=latent.index, y=latent["observed"], name="observed scripts",
                                 line={"color": "black", "width": 1}))
        marks = latent[capped.to_numpy()]
        fig.add_trace(go.Scatter(x=marks.index, y=marks["observed"], mode="markers",
                                 name="a region was supply-constrained",
                                 marker={"color": "red", "size": 6}))
        fig.update_layout(height=340, margin={"l": 40, "r": 10, "t": 10, "b": 30},
                          yaxis_title="units per period", legend={"orientation": "h"})
        lost = float(result.latent_demand["lost_units"].sum())
        figs.append((f"Latent demand vs observed scripts (all regions): {lost:,.0f} units "
                     "lost to shortage in the constrained region-periods", fig))
    return figs


def run_allocate(model_dir: str | os.PathLike, budget: float, periods: int,
                 out: str | os.PathLike | None, *, bounds: str | os.PathLike | None = None,
                 capacity: str | os.PathLike | None = None, by_geo: bool | None = None,
                 n_paths: int = 200, figures: bool = True, fit: MMMFit | None = None
                 ) -> tuple[Allocation, MMMFit, list[Path]]:
    """Load a fitted model (unless ``fit`` is given), allocate the budget
    (:func:`~pharmalab.marketing.allocate_budget`) and write ``allocation.csv``,
    ``allocation_by_geo.csv`` (when regions are allocated too), ``allocation_summary.json``,
    ``forecast/`` and ``figures.html`` to ``out``.

    Returns
    -------
    (Allocation, MMMFit, list of pathlib.Path)
    """
    if out is not None and _is_fit_folder(Path(out)):
        raise MarketingInputError(f"--out {str(out)!r} holds a fitted model; give another "
                                  "folder for the allocation (it would overwrite the fit's "
                                  "figures)")
    fit = fit or load_fit(model_dir)
    bound_table = read_bounds(bounds) if bounds is not None else None
    cap = read_capacity(capacity, fit.posterior.geos) if capacity is not None else None
    allocation = allocate_budget(fit, budget, periods, bounds=bound_table, capacity=cap,
                                 by_geo=by_geo)
    allocation.summary["converged"] = fit.convergence.converged
    if not fit.convergence.converged:
        allocation.summary["convergence"] = fit.convergence.banner()
    written: list[Path] = []
    if out is not None:
        out = Path(out)
        written.append(write_csv(out / "allocation.csv", allocation.table))
        if allocation.by_geo is not None:
            written.append(write_csv(out / "allocation_by_geo.csv", allocation.by_geo))
        elif (out / "allocation_by_geo.csv").is_file():
            (out / "allocation_by_geo.csv").unlink()  # an earlier run's, not this plan's
        written += write_plan_forecast(allocation, fit, out / PLAN_FORECAST_DIR,
                                       n_paths=n_paths)
        if figures:
            from pharmalab.report import Section, figure, render, table

            blocks = [table(allocation.table.round(1), caption="allocation.csv")]
            blocks += [figure(fig, caption=caption)
                       for caption, fig in allocation_figures(allocation)]
            written.append(render(out / "figures.html", "Marketing budget allocation",
                                  [Section("Budget allocation", blocks)],
                                  {"model": str(model_dir)}))
        summary = {**allocation.summary, "model": str(model_dir),
                   "capacity": None if capacity is None else str(capacity),
                   "bounds_file": None if bounds is None else str(bounds),
                   "forecast_folder": PLAN_FORECAST_DIR,
                   "files": [p.name for p in written] + ["allocation_summary.json"]}
        written.append(write_text(out / "allocation_summary.json",
                                  json.dumps(summary, indent=1, default=str)))
    return allocation, fit, written


def _is_fit_folder(folder: Path) -> bool:
    return ((folder / "marketing_manifest.json").is_file()
            or (folder / MODEL_DIR / "model.json").is_file()
            or (folder / "model.json").is_file())


def allocation_figures(allocation: Allocation) -> list[tuple[str, object]]:
    """``(caption, Plotly figure)``: current vs recommended spend, and the plan's demand
    against capacity when one was given."""
    import plotly.graph_objects as go

    table = allocation.table[allocation.table["channel"] != "Total"]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=table["channel"], y=table["current_spend"], name="current split"))
    fig.add_trace(go.Bar(x=table["channel"], y=table["recommended_spend"],
                         name="recommended"))
    if "unconstrained_spend" in table:
        fig.add_trace(go.Bar(x=table["channel"], y=table["unconstrained_spend"],
                             name="ignoring supply"))
    fig.update_layout(barmode="group", height=320, yaxis_title="EUR over the plan",
                      margin={"l": 40, "r": 10, "t": 10, "b": 30})
    s = allocation.summary
    caption = (f"Budget {s['budget']:,.0f} EUR over {s['periods']} periods: expected "
               f"incremental units {s['recommended']['incremental_units']:,.0f} (90% "
               f"{s['recommended']['incremental_units_lo']:,.0f}–"
               f"{s['recommended']['incremental_units_hi']:,.0f}) against "
               f"{s['current']['incremental_units']:,.0f} for the current split")
    figs = [(caption, fig)]
    n = allocation.model.periods
    demand = allocation.demand.sum(axis=2)[:, :n]  # (draw, plan period)
    dates = allocation.model.dates[:n]
    fig = go.Figure()
    lo, hi = np.quantile(demand, [0.05, 0.95], axis=0)
    fig.add_trace(go.Scatter(x=list(dates) + list(dates[::-1]), y=list(hi) + list(lo[::-1]),
                             fill="toself", opacity=0.25, line={"width": 0},
                             name="90% interval"))
    fig.add_trace(go.Scatter(x=dates, y=demand.mean(axis=0), name="expected demand"))
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 10, "b": 30},
                      yaxis_title="units per period (all regions)")
    figs.append(("Expected demand (all regions) over the plan's periods under the "
                 "recommended split: what forecast/ hands to pharmalab supply", fig))
    return figs
