"""Marketing without sampling: the media transformations against PyMC-Marketing's, the
simulator's truth against hand computation, the censored likelihood's density, the panel's
errors, and the budget optimizer against brute force on a known response."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pharmalab import marketing as mk
from pharmalab.errors import MarketingInputError
from pharmalab.marketing.allocate import ResponseModel, evaluate_plan
from pharmalab.marketing.response import geometric_adstock, hill, logistic_saturation
from pharmalab.marketing.simulate import BrandSpec, ChannelTruth

# ---------------------------------------------------------------- media transformations


def test_adstock_and_saturation_equal_pymc_marketing():
    import pytensor.xtensor as ptx
    from pymc_marketing.mmm.transformers import geometric_adstock as lib_adstock
    from pymc_marketing.mmm.transformers import logistic_saturation as lib_logistic

    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, size=40)
    xt = ptx.as_xtensor(x, dims=("date",))
    for alpha, normalize in ((0.0, True), (0.35, True), (0.8, False)):
        ours = geometric_adstock(x[:, None, None], alpha, 6, axis=-3, normalize=normalize)
        theirs = lib_adstock(xt, alpha=alpha, l_max=6, normalize=normalize, dim="date").eval()
        np.testing.assert_allclose(ours[:, 0, 0], theirs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logistic_saturation(x, 1.7), lib_logistic(xt, 1.7).eval(),
                               rtol=1e-12)


def test_adstock_weights_by_hand():
    # one unit of spend in period 0, decay 0.5, three lags: weights 1, .5, .25 over 1.75
    x = np.zeros((5, 1, 1))
    x[0] = 1.0
    out = geometric_adstock(x, 0.5, 3, axis=-3)[:, 0, 0]
    np.testing.assert_allclose(out, [1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0, 0])
    # a decay per channel broadcasts over (geo, channel)
    two = geometric_adstock(np.ones((4, 2, 2)), np.array([0.0, 0.5]), 2, axis=-3)
    np.testing.assert_allclose(two[1, :, 0], 1.0)
    np.testing.assert_allclose(two[0, :, 1], 1 / 1.5)


def test_hill_half_saturation():
    assert hill(0.0, 10.0) == 0.0
    assert hill(10.0, 10.0, 2.0) == pytest.approx(0.5)
    assert hill(30.0, 10.0, 1.0) == pytest.approx(0.75)
    assert logistic_saturation(np.log(3.0), 1.0) == pytest.approx(0.5)


# ------------------------------------------------------------------------- simulator


def test_simulator_truth_by_hand():
    # one region, one channel without carry-over: every period's extra units are
    # max_units * tanh(ln3 / 2 * spend / half), so the ROI follows by hand
    channel = ChannelTruth("detailing", spend=1_000, alpha=0.0, half_saturation=1_000,
                           max_units=50)
    brand = mk.simulate(BrandSpec(n_geos=1, n_periods=60, channels=(channel,), l_max=1,
                                  competitor_effect=0.0, unit_value=10.0, seed=3))
    spend = brand.data["detailing_spend"].to_numpy()
    units = 50 * np.tanh(np.log(3.0) / 2 * spend / 1_000)
    roi = brand.truth.roi()
    assert roi.loc[0, "incremental_units"] == pytest.approx(units.sum())
    assert roi.loc[0, "roi"] == pytest.approx(units.sum() * 10.0 / spend.sum())
    assert "geo" not in brand.data.columns
    curves = brand.truth.response_curves([0.0, 1.0])
    assert curves["incremental_units"].tolist() == pytest.approx([0.0, units.sum()])


def test_simulator_shortages_cap_demand():
    brand = mk.simulate(BrandSpec(n_geos=4, n_periods=104, shortage_share=0.08, seed=5))
    data = brand.data
    capped = data["supply_constrained"] == 1
    assert 0.07 <= capped.mean() <= 0.10
    demand = brand.truth.demand.reshape(-1)
    observed = data["scripts"].to_numpy()
    assert (observed[~capped] == demand[~capped]).all()
    ratio = observed[capped] / demand[capped]
    assert ratio.min() >= 0.49 and ratio.max() <= 0.75
    assert (data.loc[capped, "available_supply"] == data.loc[capped, "scripts"]).all()


def test_plan_uplift_of_the_truth():
    brand = mk.simulate(BrandSpec(n_geos=2, n_periods=60, seed=2))
    truth = brand.truth
    plan = np.zeros((4,) + truth.spend.shape[1:])
    assert truth.plan_units(plan) == pytest.approx(0.0)
    plan[:, :, 0] = 5_000.0
    more = truth.plan_units(plan)
    assert more > 0
    # capacity at the demand without the plan: nothing extra can be served
    model = ResponseModel.from_truth(truth, 4)
    base = model.baseline[0] + model.media(np.concatenate(
        [model.history, np.zeros((len(model.dates),) + model.history.shape[1:])]))[
        0, len(model.history):].sum(axis=-1)
    capacity = pd.DataFrame({"ds": np.repeat(model.dates, 2), "geo": np.tile(truth.geos, len(
        model.dates)), "capacity": base.reshape(-1)})
    cells = plan[0] * 4
    assert evaluate_plan(model, cells)[0] == pytest.approx(more, rel=1e-9)
    assert evaluate_plan(model, cells, capacity)[0] == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ censored likelihood


def test_censored_likelihood_is_tobit():
    """Flagged rows add log P(Y ≥ y), the others the Normal density (Tobit 1958)."""
    import pymc as pm
    import pymc.dims as pmd
    from pymc_extras.prior import Prior

    from pharmalab.marketing.censored import RightCensoredLikelihood

    y = np.array([[1.0, 2.0], [0.5, 3.0], [2.5, 1.5]])
    flags = np.array([[0, 1], [0, 0], [1, 0]])
    mu = np.array([[1.2, 1.0], [0.4, 2.0], [2.0, 2.0]])
    dates = pd.date_range("2024-01-07", periods=3, freq="W-SUN")
    # the flags' regions in another order than the model's: they are aligned by name
    frame = pd.DataFrame(flags, index=dates, columns=["a", "b"])[["b", "a"]]
    likelihood = RightCensoredLikelihood(
        Prior("Normal", sigma=0.7, dims=("date", "geo")), frame)
    with pm.Model(coords={"date": dates, "geo": ["a", "b"]}) as model:
        mean = pmd.Data("mu", mu, dims=("date", "geo"))
        likelihood.create_likelihood_variable("y", mu=mean, observed=pmd.as_xtensor(
            y, dims=("date", "geo")), xdist=True)
    logp = model.compile_logp(sum=False)({})[0]
    expected = np.where(flags == 1, stats.norm.logsf(y, mu, 0.7),
                        stats.norm.logpdf(y, mu, 0.7))
    np.testing.assert_allclose(np.asarray(logp), expected, rtol=1e-6)  # PyMC's logcdf


# --------------------------------------------------------------------------- panel


def _panel(**changes) -> pd.DataFrame:
    brand = mk.simulate(BrandSpec(n_geos=2, n_periods=60, seed=4, shortage_share=0.05))
    return brand.data.copy()


def _check(frame, **options):
    args = {"date_col": "week", "target_col": "scripts",
            "channels": ["detailing", "samples", "hcp_email"], "geo_col": "geo",
            "controls": ["competitor_on_market"], "name": "panel.csv"}
    return mk.check_panel(frame, **{**args, **options})


def test_panel_reads_a_clean_file(tmp_path):
    frame = _panel()
    frame.to_csv(tmp_path / "panel.csv", index=False)
    panel = mk.read_panel(tmp_path / "panel.csv", date_col="week", target_col="scripts",
                          channels=["detailing", "samples", "hcp_email"], geo_col="geo",
                          controls=["competitor_on_market"], constraint_col="supply_constrained")
    assert panel.freq == "W-SUN" and panel.geos == ["geo_01", "geo_02"]
    assert panel.spend.shape == (60, 2, 3)
    assert panel.censored.sum() == frame["supply_constrained"].sum()
    assert panel.constraint_kind == "flag"
    # the same shortages given as units available per row
    supply = _check(frame.drop(columns="supply_constrained"), constraint_col="available_supply")
    assert supply.constraint_kind == "supply"
    np.testing.assert_array_equal(supply.censored, panel.censored)
    frame.to_parquet(tmp_path / "panel.parquet")
    again = mk.read_panel(tmp_path / "panel.parquet", date_col="week", target_col="scripts",
                          channels=["detailing"], geo_col="geo")
    assert again.spend.shape == (60, 2, 1)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="samples_spend"),
     "panel.csv: column 'samples_spend' is missing (spend columns are <channel>_spend"),
    (lambda f: pd.concat([f, f.iloc[[3]]]),
     "panel.csv: geo 'geo_02' at 2022-01-09 appears in 2 rows; expected one row per "
     "(geo, week)"),
    (lambda f: f.drop(index=5),
     "panel.csv: geo 'geo_02' has no row for 2022-01-16 (1 of 60 periods missing); every geo "
     "needs every period"),
    (lambda f: f[f["week"] != pd.Timestamp("2022-03-06")],
     "panel.csv: gap in week: no rows for 2022-03-06; expected every week from 2022-01-02 "
     "to 2023-02-19"),
    (lambda f: f.assign(samples_spend=f["samples_spend"].where(f.index != 7, -5.0)),
     "panel.csv: samples_spend at row 8 is -5; expected spend in EUR ≥ 0"),
    (lambda f: f.assign(scripts=f["scripts"].where(f.index != 2, -1.0)),
     "panel.csv: scripts at row 3 is -1; expected scripts or units ≥ 0"),
    (lambda f: f.assign(hcp_email_spend=0.0),
     "panel.csv: channel 'hcp_email' never spends (hcp_email_spend is 0 in every row); drop "
     "it from --channels"),
    (lambda f: f[f["week"] < pd.Timestamp("2022-12-25")],
     "panel.csv: 51 weekly periods; an MMM with yearly seasonality needs at least 52 weekly "
     "periods"),
    (lambda f: f.assign(competitor_on_market=1),
     "panel.csv: column 'competitor_on_market' is constant (1 in every row)"),
    (lambda f: f.assign(samples_spend=2_000.0),
     "panel.csv: column 'samples_spend' is constant (2000 in every row)"),
    (lambda f: f.assign(scripts=f["scripts"].astype(object).where(f.index != 4, "n/a")),
     "panel.csv: scripts at row 5 is 'n/a'; expected scripts or units (a finite number)"),
    (lambda f: f.assign(week=f["week"].astype(object).where(f.index != 0, "soon")),
     "panel.csv: week at row 1 is 'soon', not a date (expected YYYY-MM-DD)"),
])
def test_panel_errors(change, message):
    with pytest.raises(MarketingInputError) as info:
        _check(change(_panel()))
    assert message in str(info.value)


def test_panel_errors_without_geo_and_monthly():
    frame = _panel()
    with pytest.raises(MarketingInputError, match=r"appears in 2 rows; expected one row per "
                       r"\(geo, week\) \(a panel with regions needs --geo-col\)"):
        _check(frame, geo_col=None)
    monthly = pd.DataFrame({
        "month": pd.date_range("2020-01-01", periods=23, freq="MS"),
        "units": np.arange(23.0) + 10, "tv_spend": np.arange(23.0) % 5 + 1})
    with pytest.raises(MarketingInputError, match="23 monthly periods; an MMM with yearly "
                       "seasonality needs at least 24 monthly periods"):
        mk.check_panel(monthly, date_col="month", target_col="units", channels=["tv"],
                       name="m.csv")
    daily = monthly.assign(month=pd.date_range("2020-01-01", periods=23, freq="D"))
    with pytest.raises(MarketingInputError, match="holds daily dates; expected weekly"):
        mk.check_panel(daily, date_col="month", target_col="units", channels=["tv"],
                       name="d.csv")
    with pytest.raises(MarketingInputError, match="supply_constrained at row 1 is -2"):
        _check(frame.assign(supply_constrained=-2), constraint_col="supply_constrained")


def test_activity_is_the_media_input_and_spend_stays_the_denominator():
    frame = _panel()
    frame["detailing_calls"] = frame["detailing_spend"] / 150.0  # 150 EUR per call
    panel = _check(frame, activity={"detailing": "detailing_calls"})
    np.testing.assert_allclose(panel.media[..., 0], panel.spend[..., 0] / 150.0)
    np.testing.assert_array_equal(panel.media[..., 1:], panel.spend[..., 1:])
    np.testing.assert_allclose(panel.cost_per_unit[:, 0], 150.0)
    np.testing.assert_allclose(panel.cost_per_unit[:, 1:], 1.0)
    from pharmalab.marketing.model import model_frame

    fed = model_frame(panel, panel.dates[0], 52.18)
    np.testing.assert_allclose(fed["detailing"], panel.frame["media:detailing"])
    with pytest.raises(MarketingInputError, match="activity given for 'tv', which is not among "
                       "the channels"):
        _check(frame, activity={"tv": "detailing_calls"})
    with pytest.raises(MarketingInputError, match="channel 'detailing' is never active "
                       r"\(detailing_calls is 0 in every row\)"):
        _check(frame.assign(detailing_calls=0.0), activity={"detailing": "detailing_calls"})


def test_read_panel_missing_file(tmp_path):
    with pytest.raises(MarketingInputError, match="does not exist"):
        mk.read_panel(tmp_path / "nope.csv", date_col="week", target_col="y",
                      channels=["tv"])


# ------------------------------------------------------------------------- allocation


def _brand_model(periods=8, **changes):
    brand = mk.simulate(BrandSpec(n_geos=3, n_periods=80, seed=9, **changes))
    return brand, ResponseModel.from_truth(brand.truth, periods)


def test_allocation_finds_the_optimum_of_a_known_response():
    """On the simulator's true curves (no uncertainty) the optimizer's split is the best of a
    fine grid over the same budget and bounds."""
    brand, model = _brand_model()
    budget = 300_000.0
    bounds = pd.DataFrame({"channel": brand.channels, "min": [0.0] * 3,
                           "max": [budget] * 3})
    result = mk.allocate_budget(None, budget, 8, bounds=bounds, model=model)
    best = max(
        (float(evaluate_plan(model, np.array([a, b, budget - a - b]) * 1.0)[0]), a, b)
        for a, b in itertools.product(np.linspace(0, budget, 61), repeat=2) if a + b <= budget)
    found = float(evaluate_plan(model, result.plan)[0])
    assert found >= best[0] - 1e-6 * abs(best[0])
    assert result.table["recommended_spend"].iloc[-1] == pytest.approx(budget)
    assert result.table["channel"].tolist() == [*brand.channels, "Total"]
    assert set(result.table.columns) >= {"channel", "current_spend", "recommended_spend",
                                         "change", "expected_incremental_units", "lo", "hi"}


def test_allocation_respects_bounds_and_defaults():
    brand, model = _brand_model()
    result = mk.allocate_budget(None, 200_000.0, 8, model=model)
    table = result.table.set_index("channel").drop("Total")
    assert (table["recommended_spend"] >= table["current_spend"] * 0.7 - 0.01).all()  # cents
    assert (table["recommended_spend"] <= table["current_spend"] * 1.3 + 0.01).all()
    assert "±30%" in result.notes[0]
    bounds = pd.DataFrame({"channel": ["detailing", "samples", "hcp_email"],
                           "min": [0.0, 150_000.0, 0.0], "max": [2e5, 160_000.0, 2e5]})
    fixed = mk.allocate_budget(None, 200_000.0, 8, bounds=bounds, model=model)
    row = fixed.table.set_index("channel").loc["samples"]
    assert 150_000 - 0.01 <= row["recommended_spend"] <= 160_000 + 0.01
    with pytest.raises(MarketingInputError, match="minimum spends add up to 150,000 EUR, more "
                       "than the budget 100,000 EUR"):
        mk.allocate_budget(None, 100_000.0, 8, bounds=bounds, model=model)
    # a channel the file leaves out keeps the default ±30% of its current share
    partial = mk.allocate_budget(None, 200_000.0, 8, bounds=bounds.iloc[[0, 2]], model=model)
    kept = partial.table.set_index("channel").loc["samples"]
    assert kept["min_spend"] == pytest.approx(0.7 * kept["current_spend"], abs=0.01)
    assert "samples not in the file: kept within ±30%" in " ".join(partial.notes)


def test_supply_aware_allocation_moves_money_to_regions_that_can_serve():
    """Capacity at the baseline in one region: promotion there earns nothing; the
    supply-aware plan moves money to the other regions and serves more than the plan that
    ignores supply."""
    brand, model = _brand_model(periods=8)
    budget = 300_000.0
    base = model.baseline[0]
    capacity = pd.DataFrame({
        "ds": np.repeat(model.dates, 3), "geo": np.tile(brand.truth.geos, len(model.dates)),
        "capacity": (base * np.array([1.0, 10.0, 10.0])).reshape(-1)})
    aware = mk.allocate_budget(None, budget, 8, capacity=capacity, model=model)
    free = mk.allocate_budget(None, budget, 8, by_geo=True, model=model)
    served_aware = float(evaluate_plan(model, aware.plan, capacity)[0])
    served_free = float(evaluate_plan(model, free.plan, capacity)[0])
    assert served_aware > served_free
    assert aware.plan[0].sum() == pytest.approx(0.0, abs=1.0)  # nothing for region 1
    assert aware.summary["supply"]["budget_moved"] > 0
    assert aware.by_geo is not None and len(aware.by_geo) == 9
    # a national capacity at the baseline: no euro can add a served unit, so none is spent
    # beyond the channels' minimum
    national = pd.DataFrame({"ds": model.dates, "geo": None, "capacity": base.sum(axis=1)})
    stop = mk.allocate_budget(None, budget, 8, capacity=national, model=model)
    minimum = stop.table.set_index("channel").drop("Total")["min_spend"].sum()
    assert stop.plan.sum() == pytest.approx(minimum, rel=1e-3)
    assert stop.summary["supply"]["budget_unspent"] == pytest.approx(budget - minimum,
                                                                     rel=1e-3)


def test_bounds_and_capacity_files(tmp_path):
    bounds = tmp_path / "bounds.csv"
    bounds.write_text("channel,min,max\ndetailing,10,5\n")
    with pytest.raises(MarketingInputError, match="channel 'detailing': min 10 is above max 5"):
        mk.read_bounds(bounds)
    bounds.write_text("channel,min\ndetailing,10\n")
    with pytest.raises(MarketingInputError, match="bounds.csv: column 'max' is missing"):
        mk.read_bounds(bounds)
    cap = tmp_path / "capacity.csv"
    cap.write_text("ds,geo,capacity\n2024-01-07,geo_09,100\n")
    with pytest.raises(MarketingInputError, match="geo 'geo_09' is not a region of the model"):
        mk.read_capacity(cap, ["geo_01"])
    cap.write_text("ds,capacity\n2024-01-07,-3\n")
    with pytest.raises(MarketingInputError, match="data row 1: capacity must be units ≥ 0, got -3"):
        mk.read_capacity(cap, ["geo_01"])
    cap.write_text("ds,capacity\n2024-01-07,30\n2024-01-14,40\n")
    national = mk.read_capacity(cap, ["geo_01"])
    assert national["geo"].isna().all() and national["capacity"].tolist() == [30.0, 40.0]
    with pytest.raises(MarketingInputError, match="has no orders.csv: run pharmalab supply "
                       "with --on-hand"):
        mk.read_capacity(tmp_path, ["geo_01"])


def test_capacity_from_a_supply_folder(tmp_path):
    """A pharmalab supply folder's orders.csv: series named as pharmalab forecast names them
    (Total/<region>), capacity = on hand + demand − backorders, never below 0."""
    orders = pd.DataFrame({
        "unique_id": ["Total", "Total/north", "Total/south"] * 2,
        "ds": ["2024-01-07"] * 3 + ["2024-01-14"] * 3,
        "expected_on_hand": [50.0, 20.0, 30.0, 0.0, 0.0, 10.0],
        "expected_demand": [100.0, 60.0, 40.0, 100.0, 60.0, 40.0],
        "expected_backorders": [0.0, 0.0, 0.0, 130.0, 90.0, 0.0]})
    orders.to_csv(tmp_path / "orders.csv", index=False)
    regional = mk.read_capacity(tmp_path, ["north", "south"])
    assert regional["geo"].tolist() == ["north", "south", "north", "south"]
    assert regional["capacity"].tolist() == [80.0, 70.0, 0.0, 50.0]
    national = mk.read_capacity(tmp_path, ["east"])  # no region matches: the Total series
    assert national["geo"].isna().all() and national["capacity"].tolist() == [150.0, 0.0]


def test_a_short_capacity_file_is_carried_over_the_plans_effect():
    brand, model = _brand_model(periods=4)
    base = model.baseline[0]
    plan_only = pd.DataFrame({"ds": model.dates[:4], "geo": None,
                              "capacity": base[:4].sum(axis=1)})
    result = mk.allocate_budget(None, 100_000.0, 4, capacity=plan_only, model=model)
    assert any("carried over the last" in note for note in result.notes)
    # at capacity = baseline demand in every period, nothing beyond the minimum is spent
    minimum = result.table.set_index("channel").drop("Total")["min_spend"].sum()
    assert result.plan.sum() == pytest.approx(minimum, rel=1e-3)
