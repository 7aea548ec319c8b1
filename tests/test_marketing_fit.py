"""Marketing-mix fits against the simulator's known truth, through the CLI contract.

One small brand (3 regions × 104 weeks, shortages capping 10% of the region-weeks at 50–75%
of demand) is fitted twice: through ``pharmalab marketing fit`` with the censored likelihood,
and through the Python API without it. Small fits (2 chains × 300 draws); the full-size
recovery study is benchmarks/marketing.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pharmalab import marketing as mk
from pharmalab.marketing.allocate import ResponseModel, evaluate_plan
from pharmalab.marketing.simulate import BrandSpec

SPEC = BrandSpec(n_geos=3, n_periods=104, seed=1, shortage_share=0.10,
                 shortage_depth=(0.5, 0.75))
HOLDOUT = 8
CHANNELS = ["detailing", "samples", "hcp_email"]


def _cli(*args, check=True) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "pharmalab.cli", *map(str, args)],
                         capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(f"exit {run.returncode}: {run.stderr}\n{run.stdout}")
    return run


@pytest.fixture(scope="module")
def brand():
    return mk.simulate(SPEC)


@pytest.fixture(scope="module")
def cli_fit(brand, tmp_path_factory):
    """``pharmalab marketing fit`` on the brand's panel file (censored likelihood)."""
    root = tmp_path_factory.mktemp("marketing")
    brand.data.to_csv(root / "panel.csv", index=False)
    out = root / "fit"
    run = _cli("marketing", "fit", "--data", root / "panel.csv", "--date-col", "week",
               "--target-col", "scripts", "--channels", ",".join(CHANNELS), "--geo-col", "geo",
               "--controls", "competitor_on_market", "--constraint-col", "supply_constrained",
               "--unit-value", "60", "--holdout", HOLDOUT, "--draws", 300, "--chains", 2,
               "--seed", 1, "--out", out)
    return root, out, run


@pytest.fixture(scope="module")
def plain_fit(brand):
    """The same panel fitted as an ordinary MMM (the shortages ignored), in Python."""
    panel = mk.check_panel(brand.data, date_col="week", target_col="scripts",
                           channels=CHANNELS, geo_col="geo", controls=["competitor_on_market"],
                           constraint_col="supply_constrained")
    return mk.fit_mmm(panel, mk.MMMSettings(draws=300, chains=2, seed=1, unit_value=60,
                                            holdout=HOLDOUT, censor=False))


def test_cli_writes_the_contract(cli_fit):
    _, out, run = cli_fit
    assert "converged: max R-hat" in run.stdout
    roi = pd.read_csv(out / "roi.csv")
    assert list(roi.columns[:9]) == ["channel", "spend", "incremental_units",
                                     "incremental_units_lo", "incremental_units_hi", "roi",
                                     "roi_lo", "roi_hi", "mroi"]
    assert roi["channel"].tolist() == CHANNELS
    contributions = pd.read_parquet(out / "contributions.parquet")
    assert list(contributions.columns[:6]) == ["geo", "ds", "component", "mean", "lo", "hi"]
    assert set(contributions["component"]) == {"baseline", "competitor_on_market", *CHANNELS}
    assert set(contributions["geo"]) == {"geo_01", "geo_02", "geo_03", "Total"}
    curves = pd.read_parquet(out / "response_curves.parquet")
    assert list(curves.columns[:5]) == ["channel", "spend", "incremental_units", "lo", "hi"]
    adstock = pd.read_csv(out / "adstock.csv")
    assert {"channel", "decay", "decay_lo", "decay_hi"} <= set(adstock.columns)
    latent = pd.read_parquet(out / "latent_demand.parquet")
    assert list(latent.columns[:7]) == ["geo", "ds", "observed", "demand_mean", "demand_lo",
                                        "demand_hi", "lost_units"]
    diagnostics = pd.read_csv(out / "diagnostics.csv")
    assert {"quantity", "r_hat", "ess_bulk", "ess_tail"} <= set(diagnostics.columns)
    metrics = pd.read_csv(out / "fit_metrics.csv")
    assert set(metrics["sample"]) == {"in_sample", "holdout"}
    assert metrics.set_index(["sample", "level"]).loc[("holdout", "total"), "periods"] == HOLDOUT
    assert (out / "model" / "model.json").is_file() and (out / "figures.html").is_file()
    manifest = json.loads((out / "marketing_manifest.json").read_text())
    assert manifest["convergence"]["converged"] is True
    assert manifest["panel"]["constrained_rows"] == int(latent["censored"].sum())
    assert manifest["sampler"] in ("nutpie", "pymc")


def test_true_roi_inside_the_intervals(brand, cli_fit):
    _, out, _ = cli_fit
    truth = brand.truth.roi(periods=SPEC.n_periods - HOLDOUT).set_index("channel")
    roi = pd.read_csv(out / "roi.csv").set_index("channel")
    for channel in CHANNELS:
        assert roi.loc[channel, "roi_lo"] <= truth.loc[channel, "roi"] <= roi.loc[channel,
                                                                                  "roi_hi"]
    # the hold-out forecast with the actual spend is as good as the fit in sample
    metrics = pd.read_csv(out / "fit_metrics.csv").set_index(["sample", "level"])
    assert metrics.loc[("holdout", "total"), "mape"] < 0.05


def test_censoring_recovers_what_ignoring_shortages_loses(brand, cli_fit, plain_fit):
    _, out, _ = cli_fit
    truth = brand.truth.roi(periods=SPEC.n_periods - HOLDOUT)["roi"].to_numpy()
    censored = pd.read_csv(out / "roi.csv")["roi"].to_numpy()
    plain = mk.roi(plain_fit)["roi"].to_numpy()
    error_censored = np.median(np.abs(censored / truth - 1))
    error_plain = np.median(np.abs(plain / truth - 1))
    assert error_censored <= 0.5 * error_plain
    # the latent demand of capped rows covers the true demand at 90% in ≥ 80% of them
    latent = pd.read_parquet(out / "latent_demand.parquet")
    demand = pd.DataFrame({"geo": np.tile(brand.truth.geos, len(brand.truth.dates)),
                           "ds": np.repeat(brand.truth.dates, len(brand.truth.geos)),
                           "true": brand.truth.demand.reshape(-1)})
    capped = latent[latent["censored"] & (latent["sample"] == "train")].merge(
        demand, on=["geo", "ds"])
    covered = (capped["demand_lo"] <= capped["true"]) & (capped["true"] <= capped["demand_hi"])
    assert len(capped) >= 20 and covered.mean() >= 0.8
    assert (capped["lost_units"] > 0).all()


def test_forward_pass_equals_the_library(plain_fit):
    """Our NumPy forward pass (ROI, allocation) is PyMC-Marketing's model."""
    import pymc as pm

    fit = plain_fit
    post = pm.compute_deterministics(
        fit.idata.posterior, var_names=["channel_contribution", "control_contribution",
                                        "yearly_seasonality_contribution"],
        model=fit.mmm.model, merge_dataset=True, progressbar=False)
    scale = fit.posterior.target_scale
    lib = post["channel_contribution"].transpose("chain", "draw", "date", "geo", "channel")
    lib = lib.to_numpy().reshape((-1,) + lib.shape[2:]) * scale[None, None, :, None]
    train = fit.train
    ours = fit.posterior.media(train.spend)
    np.testing.assert_allclose(ours, lib, rtol=1e-9, atol=1e-9 * np.abs(lib).max())
    season = post["yearly_seasonality_contribution"].transpose("chain", "draw", "date", "geo")
    season = season.to_numpy().reshape((-1,) + season.shape[2:]) * scale[None, None, :]
    np.testing.assert_allclose(fit.posterior.fourier(train.dates), season, rtol=1e-9,
                               atol=1e-9 * np.abs(season).max())


def test_activity_input_turns_budgets_into_activity(plain_fit):
    """A channel fed as calls (150 EUR each) is the same model as fed as spend: the media
    input is 1/150 of the spend and so is its scale; a budget in EUR becomes calls at the
    historical cost per call."""
    post = plain_fit.posterior
    scale = post.channel_scale.copy()
    cost = np.ones_like(scale)
    scale[:, 0] /= 150.0
    cost[:, 0] = 150.0
    calls = type(post)(**{**post.__dict__, "channel_scale": scale, "cost_per_unit": cost})
    spend = plain_fit.train.spend
    as_calls = spend.copy()
    as_calls[..., 0] /= 150.0
    np.testing.assert_allclose(calls.media(as_calls), post.media(spend), rtol=1e-12)
    np.testing.assert_allclose(calls.media_from_spend(spend), post.media(spend), rtol=1e-12)


def test_saved_model_reloads_the_same_numbers(cli_fit):
    _, out, _ = cli_fit
    fit = mk.load_fit(out)
    assert fit.idata is None and fit.convergence.converged
    again = mk.roi(fit)
    written = pd.read_csv(out / "roi.csv")
    np.testing.assert_allclose(again["roi"], written["roi"], rtol=1e-12)


def test_convergence_is_loud_when_chains_disagree(plain_fit):
    """The same draws with one chain shifted (chains that have not mixed) fail the R-hat
    check, and the banner says not to use the numbers."""
    from pharmalab.marketing.model import _diagnose

    post = plain_fit.posterior
    half = post.draws // 2
    shifted = post.beta.copy()
    shifted[half:] *= 1.6
    moved = type(post)(**{**post.__dict__, "beta": shifted})
    table, convergence = _diagnose(plain_fit.idata, moved, plain_fit.train,
                                   plain_fit.settings)
    assert not convergence.converged
    assert convergence.banner().startswith("NOT CONVERGED — do not use these numbers: R-hat")
    assert not table.set_index("quantity").loc["roi[detailing]", "ok"]


def test_allocation_near_the_true_optimum(brand, cli_fit):
    root, out, _ = cli_fit
    truth = brand.truth
    periods, budget = 13, 400_000.0
    current = truth.spend.sum(axis=(0, 1))
    current = current / current.sum() * budget
    bounds = pd.DataFrame({"channel": CHANNELS, "min": 0.25 * current, "max": 2.5 * current})
    bounds.to_csv(root / "bounds.csv", index=False)
    _cli("marketing", "allocate", "--model", out, "--budget", budget, "--periods", periods,
         "--bounds", root / "bounds.csv", "--out", root / "allocation")
    table = pd.read_csv(root / "allocation" / "allocation.csv")
    assert list(table.columns[:7]) == ["channel", "current_spend", "recommended_spend",
                                       "change", "expected_incremental_units", "lo", "hi"]
    recommended = table.set_index("channel").loc[CHANNELS, "recommended_spend"].to_numpy()
    assert recommended.sum() == pytest.approx(budget)
    summary = json.loads((root / "allocation" / "allocation_summary.json").read_text())
    assert summary["recommended"]["incremental_units"] >= summary["current"][
        "incremental_units"]
    model = ResponseModel.from_truth(truth, periods)
    optimum = mk.allocate_budget(None, budget, periods, bounds=bounds, model=model)
    true_rec = evaluate_plan(model, recommended)[0]
    true_best = evaluate_plan(model, optimum.plan)[0]
    assert true_rec >= 0.95 * true_best


def test_marketing_plan_feeds_supply(brand, cli_fit):
    """marketing fit → allocate with a regional capacity → pharmalab supply on the plan."""
    root, out, _ = cli_fit
    truth = brand.truth
    periods = 13
    model = ResponseModel.from_truth(truth, periods)
    base = model.baseline[0][:periods]
    tight = base * np.array([1.02, 3.0, 3.0])  # region 1 can serve little more than its base
    capacity = pd.DataFrame({"ds": np.repeat(model.dates[:periods], 3),
                             "geo": np.tile(truth.geos, periods),
                             "capacity": np.round(tight.reshape(-1))})
    capacity.to_csv(root / "capacity.csv", index=False)
    plan = root / "plan"
    run = _cli("marketing", "allocate", "--model", out, "--budget", 400_000, "--periods",
               periods, "--supply-capacity", root / "capacity.csv", "--out", plan)
    assert "supply-aware:" in run.stdout
    by_geo = pd.read_csv(plan / "allocation_by_geo.csv")
    region_one = by_geo[by_geo["geo"] == "geo_01"]
    assert region_one["recommended_spend"].sum() < region_one["unconstrained_spend"].sum()
    # scored on the true curves, the supply-aware plan serves more than the one that
    # ignores supply
    aware = by_geo.pivot(index="geo", columns="channel", values="recommended_spend")
    free = by_geo.pivot(index="geo", columns="channel", values="unconstrained_spend")
    cells = {name: frame.loc[truth.geos, CHANNELS].to_numpy() for name, frame in
             (("aware", aware), ("free", free))}
    cap = mk.read_capacity(root / "capacity.csv", truth.geos)
    assert evaluate_plan(model, cells["aware"], cap)[0] > evaluate_plan(
        model, cells["free"], cap)[0]
    # the plan's demand is a forecast folder pharmalab supply plans from
    forecast = pd.read_parquet(plan / "forecast" / "forecast.parquet")
    assert set(forecast["unique_id"]) == {"Total", "Total/geo_01", "Total/geo_02",
                                          "Total/geo_03"}
    assert forecast.groupby("unique_id").size().eq(periods).all()
    assert {"q0.025", "q0.05", "q0.50", "q0.95", "q0.975", "lo-80", "hi-95"} <= set(
        forecast.columns)
    paths = pd.read_parquet(plan / "forecast" / "paths.parquet")
    wide = paths.pivot_table(index=["path", "ds"], columns="unique_id", values="y")
    np.testing.assert_allclose(wide["Total"], wide.drop(columns="Total").sum(axis=1))
    _cli("supply", "--forecast", plan / "forecast", "--lead-time", 2, "--out", root / "supply")
    policy = pd.read_csv(root / "supply" / "policy.csv")
    assert sorted(policy["unique_id"]) == ["Total/geo_01", "Total/geo_02", "Total/geo_03"]
    backtest = pd.read_csv(root / "supply" / "backtest.csv")
    assert len(backtest) == 3  # the fit's hold-out is the backtest window


def test_allocate_refuses_to_write_over_the_fit_and_flags_an_unconverged_model(cli_fit,
                                                                               tmp_path):
    import shutil

    root, out, _ = cli_fit
    run = _cli("marketing", "allocate", "--model", out, "--budget", 100_000, "--periods", 4,
               "--out", out, check=False)
    assert run.returncode == 2
    assert "holds a fitted model; give another folder" in run.stderr
    # the same model marked as not converged: the allocation is written, and said loudly
    model = tmp_path / "model"
    shutil.copytree(out / "model", model)
    meta = json.loads((model / "model.json").read_text())
    meta["convergence"].update(converged=False, messages=["R-hat 1.2 on roi[samples]"])
    (model / "model.json").write_text(json.dumps(meta))
    run = _cli("marketing", "allocate", "--model", model, "--budget", 100_000, "--periods", 4,
               "--out", tmp_path / "plan", check=False)
    assert run.returncode == 1
    assert "NOT CONVERGED" in run.stderr and run.stderr.count("NOT CONVERGED") == 1
    summary = json.loads((tmp_path / "plan" / "allocation_summary.json").read_text())
    assert summary["converged"] is False


def test_cli_input_errors_are_one_line(cli_fit, tmp_path):
    root, _, _ = cli_fit
    base = ["marketing", "fit", "--data", root / "panel.csv", "--date-col", "week",
            "--target-col", "scripts", "--geo-col", "geo"]
    run = _cli(*base, "--channels", "detailing,,samples", "--out", tmp_path / "x", check=False)
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: --channels: empty name in 'detailing,,samples'; "
                                  "expected names separated by single commas")
    (tmp_path / "file").write_text("x")
    run = _cli(*base, "--channels", "detailing", "--out", tmp_path / "file" / "sub",
               check=False)
    assert run.returncode == 2 and "cannot create the folder" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
