"""Inventory-policy mathematics (``pharmalab.supply``).

Checked four ways:

* every case of ``../shared/data/cases/inventory_policies.json`` (Snyder & Shen's worked
  examples as reproduced by stockpyl's tests) to 1e-6 relative;
* published textbook numbers: Zheng & Federgruen's (1991) table of optimal (s, S) policies,
  Snyder & Shen's Examples 4.7, 4.8, 5.1 and 5.8 (digits as in stockpyl's test-suite), and
  two Chopra & Meindl examples (printed to 4 digits);
* hypothesis properties (monotonicity, fill rate vs cycle service level, Poisson → normal,
  loss-function identities);
* independent evaluations: a Markov chain for (s, S) under Poisson demand and simulations of
  the (r, Q) system.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from conftest import DATA, need
from pharmalab.errors import PharmalabInputError, SupplyInputError
from pharmalab.supply import (
    EmpiricalDemand,
    NegativeBinomialDemand,
    NormalDemand,
    PoissonDemand,
    base_stock,
    eoq,
    from_moments,
    newsvendor,
    normal_complementary_loss,
    normal_loss,
    order_up_to_level,
    r_q_policy,
    s_S_policy,
    standard_normal_loss,
    standard_normal_second_order_loss,
)

CASES = DATA / "cases" / "inventory_policies.json"
CASE_IDS = [c["id"] for c in json.loads(CASES.read_text())["cases"]] if CASES.exists() else []
REL = 1e-6

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def close(got: float, want: float, rel: float = REL) -> bool:
    return math.isclose(got, want, rel_tol=rel, abs_tol=0.0)


# --- the shared case file ------------------------------------------------------------------


def _case(case_id: str) -> dict:
    cases = json.loads(need(CASES).read_text())["cases"]
    return next(c for c in cases if c["id"] == case_id)


def test_case_file_is_read_whole():
    cases = json.loads(need(CASES).read_text())["cases"]
    assert len(cases) == len(CASE_IDS) == 7
    kinds = {c.get("policy") or c.get("function") for c in cases}
    assert kinds == {"newsvendor", "base_stock", "eoq", "standard_normal_loss", "normal_loss"}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_inventory_case(case_id):
    case = _case(case_id)
    kind = case.get("policy") or case.get("function")
    checked = 0
    if kind == "newsvendor":
        pol = newsvendor(h=case["h"], p=case["p"], mu=case["mu"], sigma=case["sigma"])
        assert close(pol.S, case["S"])
        assert close(pol.total_cost, case["expected_cost"])
        if "critical_fractile" in case:
            assert close(pol.critical_fractile, case["critical_fractile"])
            assert close(pol.cycle_service_level, case["critical_fractile"])
            checked += 1
        for at in case.get("cost_at", []):
            other = newsvendor(h=case["h"], p=case["p"], mu=case["mu"], sigma=case["sigma"],
                               S=at["S"])
            assert close(other.total_cost, at["expected_cost"])
            checked += 1
        checked += 2
    elif kind == "base_stock":
        # Snyder & Shen's base stock with lead time L: protection period L + 1 = L + R, R = 1.
        args = dict(mu=case["mu"], sigma=case["sigma"], h=case["h"], p=case["p"],
                    lead_time=case["lead_time"], review_period=1)
        pol = base_stock(**args)
        assert pol.service_type == "cost"
        assert close(pol.S, case["S"])
        assert close(pol.safety_stock, case["safety_stock"])
        assert close(pol.total_cost, case["expected_cost"])
        assert close(pol.protection_mean, case["mu"] * (case["lead_time"] + 1))
        for at in case.get("cost_at", []):
            assert close(base_stock(**args, S=at["S"]).total_cost, at["expected_cost"])
            checked += 1
        checked += 3
    elif kind == "eoq":
        res = eoq(K=case["K"], D=case["lambda"], h=case["h"])
        assert close(res.Q, case["Q"])
        assert close(res.total_cost, case["annual_cost"])
        assert close(eoq(case["K"], case["lambda"], case["h"], Q=res.Q).total_cost,
                     case["annual_cost"])
        checked += 3
    elif kind == "standard_normal_loss":
        for v in case["values"]:
            assert close(standard_normal_loss(v["z"]), v["L"])
            checked += 1
    elif kind == "normal_loss":
        for v in case["values"]:
            assert close(normal_loss(v["x"], v["mu"], v["sigma"]), v["n"])
            assert close(NormalDemand(v["mu"], v["sigma"]).loss(v["x"]), v["n"])
            checked += 1
            if "n_bar" in v:
                assert close(normal_complementary_loss(v["x"], v["mu"], v["sigma"]), v["n_bar"])
                assert close(NormalDemand(v["mu"], v["sigma"]).complementary_loss(v["x"]),
                             v["n_bar"])
                checked += 1
    else:  # pragma: no cover - a new kind of case must be mapped, never skipped
        pytest.fail(f"case {case_id}: no mapping for {kind!r}")
    assert checked > 0


# --- published textbook numbers ----------------------------------------------------------

# Zheng & Federgruen (1991), Table 1: Poisson demand, h = 1, p = 9, K = 64, L = 0.
ZF_TABLE = [
    (10, 6, 40, 35.022), (15, 10, 49, 42.698), (20, 14, 62, 49.173), (25, 19, 56, 54.262),
    (30, 23, 66, 57.819), (35, 28, 77, 61.215), (40, 33, 87, 64.512), (45, 37, 97, 67.776),
    (50, 42, 108, 70.975), (55, 47, 118, 74.149), (60, 52, 129, 77.306), (65, 56, 75, 78.518),
    (70, 62, 81, 79.037), (75, 67, 86, 79.554), (21, 15, 65, 50.406), (22, 16, 68, 51.632),
    (23, 17, 52, 52.757), (24, 18, 54, 53.518), (51, 43, 110, 71.611), (52, 44, 112, 72.246),
    (59, 51, 126, 76.679), (61, 52, 131, 77.929), (63, 54, 73, 78.287), (64, 55, 74, 78.402),
]


@pytest.mark.parametrize(("mean", "s", "S", "cost"), ZF_TABLE)
def test_zheng_federgruen_published_table(mean, s, S, cost):
    pol = s_S_policy(PoissonDemand(mean), h=1, p=9, K=64)
    assert pol.method == "zheng-federgruen" and pol.evaluation == "exact"
    assert (pol.s, pol.S) == (s, S)
    assert round(pol.total_cost, 3) == pytest.approx(cost, abs=1e-9)


def test_snyder_shen_example_4_7_s_S_poisson():
    # Poisson mean 6, h = 1, p = 4, K = 5: (s, S) = (4, 10), g = 8.0341.
    pol = s_S_policy(PoissonDemand(6), h=1, p=4, K=5)
    assert (pol.s, pol.S) == (4, 10)
    assert close(pol.total_cost, 8.034111561471642, 1e-9)
    given_pol = s_S_policy(PoissonDemand(6), h=1, p=4, K=5, s=6, S=18)
    assert given_pol.method == "given"
    assert close(given_pol.total_cost, 10.193798671644046, 1e-9)


def test_snyder_shen_example_4_8_power_approximation():
    # Normal N(50, 8²), h = 0.18, p = 0.70, K = 2.5 (Ehrhardt & Mosier's formulas as printed).
    plain = s_S_policy(mu=50, sigma=8, h=0.18, p=0.70, K=2.5, small_order_rule=False)
    assert close(plain.s, 40.19461695647407, 1e-9)
    assert close(plain.S, 74.29017010980579, 1e-9)
    # Q_p / μ = 0.68 <= 1.5: the small-order rule caps both at the newsvendor level 56.604.
    capped = s_S_policy(mu=50, sigma=8, h=0.18, p=0.70, K=2.5)
    assert close(capped.S, newsvendor(h=0.18, p=0.70, mu=50, sigma=8).S, 1e-12)
    assert capped.s == plain.s
    assert capped.total_cost < plain.total_cost


def test_snyder_shen_example_5_1_r_q_normal():
    args = dict(mu=1300, sigma=150, h=0.225, p=7.5, K=8, lead_time=1 / 12)
    assert close(r_q_policy(**args, r=126.8, Q=328.5).total_cost, 78.071162509282942, 1e-9)
    assert close(r_q_policy(**args, r=100, Q=250).total_cost, 87.346478028174985, 1e-9)
    best = r_q_policy(**args, Q="optimal")
    # Printed optimum (r, Q) = (126.8, 328.5), cost 78.07.
    assert best.r == pytest.approx(126.8, abs=0.1)
    assert best.Q == pytest.approx(328.5, abs=0.1)
    assert best.total_cost == pytest.approx(78.07, abs=0.005)
    assert best.total_cost <= r_q_policy(**args, r=126.8, Q=328.5).total_cost


def test_snyder_shen_example_5_8_r_q_poisson():
    args = dict(h=20, p=150, K=100, lead_time=2)
    best = r_q_policy(PoissonDemand(1.5), **args, Q="optimal")
    assert (best.r, best.Q) == (3, 5)
    assert close(best.total_cost, 107.92358063314975, 1e-9)
    assert close(r_q_policy(PoissonDemand(1.5), **args, r=8, Q=12).total_cost,
                 242.5281637662021, 1e-9)


def test_chopra_meindl_fill_rate_and_order_up_to_level():
    # Weekly demand N(2500, 500²), lead time 2 weeks.
    # Continuous review, Q = 10,000, safety stock 1,000: ESC = 25.13, fill rate 0.9975.
    rq = r_q_policy(mu=2500, sigma=500, lead_time=2, Q=10_000, r=5000 + 1000)
    assert 10_000 * (1 - rq.fill_rate) == pytest.approx(25.13, abs=0.005)
    assert rq.fill_rate == pytest.approx(0.9975, abs=5e-5)
    # Periodic review every 4 weeks, CSL 0.90: σ_{T+L} = 1,225, safety stock 1,570, OUL 16,570.
    rs = order_up_to_level(mu=2500, sigma=500, lead_time=2, review_period=4, service_level=0.9)
    assert rs.protection_std == pytest.approx(1225, abs=0.5)
    assert rs.safety_stock == pytest.approx(1570, abs=0.5)
    assert rs.S == pytest.approx(16_570, abs=0.5)


# --- loss functions ----------------------------------------------------------------------


@given(st.floats(-6, 6))
@FAST
def test_standard_normal_loss_closed_forms(z):
    direct = stats.norm.pdf(z) - z * stats.norm.sf(z)
    assert standard_normal_loss(z) == pytest.approx(direct, rel=1e-9, abs=1e-15)
    l2 = 0.5 * ((z * z + 1) * stats.norm.sf(z) - z * stats.norm.pdf(z))
    assert standard_normal_second_order_loss(z) == pytest.approx(l2, rel=1e-8, abs=1e-15)


def test_standard_normal_loss_far_tails():
    # L(z) ~ φ(z)/z² for large z (no cancellation to 0); L(-z) = z + L(z).
    for z in (8.0, 12.0, 20.0):
        assert standard_normal_loss(z) == pytest.approx(
            stats.norm.pdf(z) / z**2 * (1 - 3 / z**2 + 15 / z**4), rel=1e-3)
        assert standard_normal_loss(-z) == pytest.approx(z, rel=1e-15)
    assert np.allclose(standard_normal_loss(np.array([-1.4, 0.3])), [1.436668142708465,
                                                                      0.266761242117210])


def _distributions():
    return st.one_of(
        st.builds(NormalDemand, st.floats(1, 1000), st.floats(0.5, 300)),
        st.builds(PoissonDemand, st.floats(0.05, 300)),
        st.builds(lambda m, k: NegativeBinomialDemand(m, m * (1 + k)),
                  st.floats(0.1, 200), st.floats(0.01, 10)),
        st.builds(EmpiricalDemand, st.lists(st.floats(0, 500), min_size=1, max_size=40)),
    )


@given(_distributions(), st.floats(-50, 1200))
@FAST
def test_loss_identities(dist, x):
    n, nbar = dist.loss(x), dist.complementary_loss(x)
    assert n >= 0 and nbar >= 0
    assert n - nbar == pytest.approx(dist.mean - x, rel=1e-9, abs=1e-9 * (1 + abs(x)))
    if dist.integer_valued and not isinstance(dist, EmpiricalDemand):
        j = math.floor(x)
        assert dist.second_order_loss(j) - dist.second_order_loss(j + 1) == pytest.approx(
            dist.loss(j + 1), rel=1e-9, abs=1e-12)
        assert dist.complementary_second_order_loss(j + 1) - \
            dist.complementary_second_order_loss(j) == pytest.approx(
                dist.complementary_loss(j + 1), rel=1e-9, abs=1e-12)


@given(st.floats(0.05, 300), st.integers(-5, 400))
@FAST
def test_poisson_loss_exact_sums(mean, j):
    d = stats.poisson(mean)
    k = np.arange(0, int(d.ppf(1 - 1e-16)) + 60)
    pmf = d.pmf(k)
    dist = PoissonDemand(mean)
    assert dist.loss(j) == pytest.approx(np.sum(np.maximum(k - j, 0) * pmf), rel=1e-9,
                                         abs=1e-14)
    assert dist.complementary_loss(j) == pytest.approx(np.sum(np.maximum(j - k, 0) * pmf),
                                                       rel=1e-9, abs=1e-14)
    zipkin = 0.5 * np.sum(np.maximum(k - j, 0) * np.maximum(k - j - 1, 0) * pmf)
    assert dist.second_order_loss(j) == pytest.approx(zipkin, rel=1e-9, abs=1e-14)
    if j >= 0:  # Poisson closed form n(S) = (μ - S)(1 - F(S)) + μ f(S)
        assert dist.loss(j) == pytest.approx((mean - j) * d.sf(j) + mean * d.pmf(j),
                                             rel=1e-8, abs=1e-14)


@given(st.floats(1, 100), st.floats(0.5, 30), st.floats(-3, 3))
@settings(max_examples=15, deadline=None)
def test_normal_second_order_loss_is_integral_of_loss(mu, sigma, z):
    dist, x = NormalDemand(mu, sigma), mu + z * sigma
    integral = integrate.quad(dist.loss, x, mu + 40 * sigma, epsabs=1e-13, epsrel=1e-11)[0]
    assert dist.second_order_loss(x) == pytest.approx(integral, rel=1e-8)
    assert dist.complementary_second_order_loss(x) == pytest.approx(
        0.5 * ((x - mu) ** 2 + sigma**2) - dist.second_order_loss(x), rel=1e-9, abs=1e-9)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=30), st.floats(0.001, 0.999))
@FAST
def test_empirical_ppf_is_smallest_level_reaching_q(samples, q):
    dist = EmpiricalDemand(samples)
    level = dist.ppf(q)
    assert level in samples
    assert dist.cdf(level) >= q
    assert all(dist.cdf(v) < q for v in samples if v < level)
    assert dist.loss(7.5) == pytest.approx(np.mean(np.maximum(np.array(samples) - 7.5, 0)))
    assert dist.pmf(level) == pytest.approx(samples.count(level) / len(samples))


def test_from_moments_picks_the_usual_distribution():
    assert from_moments(3, 3) == PoissonDemand(3)
    assert from_moments(3, 2) == PoissonDemand(3)  # under-dispersed: Poisson, not NB
    assert from_moments(3, 12) == NegativeBinomialDemand(3, 12)
    assert from_moments(50, 100) == NormalDemand(50, 10)
    assert from_moments(50, 100, discrete_below=100) == NegativeBinomialDemand(50, 100)
    assert NormalDemand.from_moments(3, 3) == PoissonDemand(3)
    nb = from_moments(4, 10)
    assert stats.nbinom(nb.n, nb.p).mean() == pytest.approx(4)
    assert stats.nbinom(nb.n, nb.p).var() == pytest.approx(10)


# --- periodic review: monotonicity and service measures -----------------------------------

normal_demand = st.builds(lambda m, cv: NormalDemand(m, m * cv), st.floats(1, 1000),
                          st.floats(0.05, 2.0))
count_demand = st.one_of(
    st.builds(PoissonDemand, st.floats(0.05, 300)),
    st.builds(lambda m, k: NegativeBinomialDemand(m, m * (1 + k)), st.floats(0.1, 100),
              st.floats(0.01, 5)),
)


@given(st.one_of(normal_demand, count_demand), st.floats(0.01, 0.99), st.floats(0.01, 0.99),
       st.sampled_from(["csl", "fill_rate"]), st.floats(0, 12), st.integers(1, 4))
@FAST
def test_order_up_to_level_non_decreasing_in_service_level(demand, a, b, kind, lead, review):
    lo, hi = sorted((a, b))
    args = dict(service_type=kind, lead_time=lead, review_period=review)
    s_lo = order_up_to_level(demand, service_level=lo, **args).S
    s_hi = order_up_to_level(demand, service_level=hi, **args).S
    assert s_lo <= s_hi + 1e-9 * max(1.0, abs(s_hi))


@given(st.one_of(normal_demand, count_demand), st.floats(0.01, 0.99),
       st.sampled_from(["csl", "fill_rate"]), st.floats(0, 12), st.floats(0, 12),
       st.integers(1, 4))
@FAST
def test_order_up_to_level_non_decreasing_in_lead_time(demand, level, kind, a, b, review):
    # Exact condition: demand over L + R stochastically increasing in L. True for the count
    # distributions and, for the normal, for fill rate (n_t(S) increases with t) and for
    # CSL α >= 0.5 (μt + z σ√t decreases in t when z < 0 and σ|z| > 2μ√t).
    if isinstance(demand, NormalDemand) and kind == "csl":
        assume(level >= 0.5)
    lo, hi = sorted((a, b))
    args = dict(service_level=level, service_type=kind, review_period=review)
    s_lo = order_up_to_level(demand, lead_time=lo, **args).S
    s_hi = order_up_to_level(demand, lead_time=hi, **args).S
    assert s_lo <= s_hi + 1e-9 * max(1.0, abs(s_hi))


def test_normal_csl_level_can_fall_with_lead_time_below_one_half():
    # The counterexample behind the α >= 0.5 condition above.
    short = order_up_to_level(mu=1, sigma=10, service_level=0.1, lead_time=0).S
    long = order_up_to_level(mu=1, sigma=10, service_level=0.1, lead_time=1).S
    assert long < short


@given(st.one_of(normal_demand, count_demand), st.floats(0.05, 0.995), st.floats(0, 8),
       st.integers(1, 4))
@FAST
def test_fill_rate_target_is_met_by_the_smallest_level(demand, beta, lead, review):
    pol = order_up_to_level(demand, service_level=beta, service_type="fill_rate",
                            lead_time=lead, review_period=review)
    assert pol.fill_rate >= beta - 1e-9
    if isinstance(demand, NormalDemand):
        assert pol.fill_rate == pytest.approx(beta, abs=1e-9)
    else:
        below = order_up_to_level(demand, S=pol.S - 1, lead_time=lead, review_period=review)
        assert below.fill_rate < beta


@given(st.floats(1, 1000), st.floats(0.05, 2.0), st.floats(0, 8), st.integers(1, 4),
       st.floats(-3, 4))
@FAST
def test_fill_rate_exceeds_cycle_service_level_iff_mean_excess_small(mu, cv, lead, review, z):
    # With fill rate 1 - n(S)/E[D_R] and CSL F(S) at the same S (normal demand over L + R):
    #   fill_rate >= CSL  <=>  n(S) <= (1 - F(S)) E[D_R]
    #                     <=>  E[D - S | D > S] = σ (φ(z)/(1 - Φ(z)) - z) <= E[D_R],
    # the expected shortage given a stockout is at most a review period's mean demand.
    # A sufficient case: S >= μ_{L+R} and σ_{L+R} √(2/π) <= E[D_R].
    demand = NormalDemand(mu, mu * cv)
    protection = demand.over(lead + review)
    S = protection.mean + z * protection.std
    pol = order_up_to_level(demand, S=S, lead_time=lead, review_period=review)
    review_mean = mu * review
    mean_excess = protection.loss(S) / protection.sf(S)
    assume(abs(mean_excess - review_mean) > 1e-6 * review_mean)
    assert (pol.fill_rate >= pol.cycle_service_level) == (mean_excess <= review_mean)
    if z >= 0 and protection.std * math.sqrt(2 / math.pi) <= review_mean:
        assert pol.fill_rate >= pol.cycle_service_level


@given(st.floats(50, 20_000), st.floats(0.5, 0.995), st.sampled_from(["csl", "fill_rate"]))
@FAST
def test_poisson_and_normal_policies_agree_as_the_mean_grows(mean, level, kind):
    # Poisson(λ) ≈ N(λ, λ): the levels differ by integer rounding and the skewness correction
    # (≈ (z² - 1)/6 units), so by at most 3 units — relative 3/λ; costs agree to 1/√λ.
    args = dict(service_level=level, service_type=kind, h=1, p=9)
    pois = order_up_to_level(PoissonDemand(mean), **args)
    norm = order_up_to_level(mu=mean, sigma=math.sqrt(mean), **args)
    assert abs(pois.S - norm.S) <= 3
    assert abs(pois.S - norm.S) / norm.S <= 3 / mean
    assert abs(pois.total_cost - norm.total_cost) / norm.total_cost <= 1 / math.sqrt(mean)
    assert abs(pois.fill_rate - norm.fill_rate) <= 3 / math.sqrt(mean)


def test_cost_optimal_level_with_review_period_minimizes_cycle_average_cost():
    demand = NormalDemand(50, 8)
    best = base_stock(demand, h=0.18, p=0.7, lead_time=2, review_period=3)
    grid = [base_stock(demand, h=0.18, p=0.7, lead_time=2, review_period=3, S=best.S + d)
            for d in (-2.0, -0.5, 0.5, 2.0)]
    assert all(g.total_cost > best.total_cost for g in grid)
    pois = base_stock(PoissonDemand(4), h=1, p=9, lead_time=1, review_period=2)
    around = [base_stock(PoissonDemand(4), h=1, p=9, lead_time=1, review_period=2,
                         S=pois.S + d).total_cost for d in (-1, 1)]
    assert min(around) >= pois.total_cost


def _simulate_periodic(demand, lead, review, S, seed, periods=100_000):
    """Event-by-event (R, S) system: every ``review`` periods order up to S at the start of the
    period; the order is usable from the start of the period ``lead`` later; backorders."""
    rng = np.random.default_rng(seed)
    draws = rng.normal(demand.mu, demand.sigma, periods)
    position = level = S
    arriving: dict[int, float] = {}
    on_hand = backorders = short = 0.0
    for t, d in enumerate(draws):
        if t % review == 0:
            arriving[t + lead] = arriving.get(t + lead, 0.0) + S - position
            position = S
        level += arriving.pop(t, 0.0)
        short += d if level <= 0 else max(d - level, 0.0)
        level -= d
        position -= d
        on_hand += max(level, 0.0)
        backorders += max(-level, 0.0)
    return on_hand / periods, backorders / periods, 1 - short / draws.sum()


def test_periodic_review_cycle_averages_match_simulation():
    demand = NormalDemand(50, 8)
    pol = base_stock(demand, h=0.18, p=0.7, lead_time=2, review_period=3)
    on_hand, backorders, fill = _simulate_periodic(demand, 2, 3, pol.S, seed=5)
    assert on_hand == pytest.approx(pol.expected_on_hand, rel=1e-2)
    assert backorders == pytest.approx(pol.expected_backorders, rel=5e-2)
    assert fill == pytest.approx(pol.fill_rate, abs=5e-3)


def test_protection_period_samples_from_forecast_paths():
    rng = np.random.default_rng(7)
    paths = rng.gamma(4.0, 2.5, size=(2000, 3))  # 2,000 paths over L + R = 3 periods
    sums = paths.sum(axis=1)
    dist = EmpiricalDemand(sums)
    pol = order_up_to_level(protection_demand=dist, service_level=0.95, lead_time=2,
                            review_period=1, h=1, p=9)
    assert pol.S == dist.ppf(0.95) and pol.S in sums
    assert pol.cycle_service_level >= 0.95
    assert pol.total_cost == pytest.approx(dist.complementary_loss(pol.S) + 9 * dist.loss(pol.S))
    fr = order_up_to_level(protection_demand=dist, service_level=0.99,
                           service_type="fill_rate", lead_time=2, review_period=1)
    assert fr.review_demand_mean == pytest.approx(sums.mean() / 3)
    assert dist.loss(fr.S) == pytest.approx(0.01 * sums.mean() / 3, rel=1e-9)
    longer = order_up_to_level(protection_demand=dist, service_level=0.95, lead_time=1,
                               review_period=2)
    assert longer.expected_on_hand is None and longer.total_cost is None


# --- (s, S): Zheng–Federgruen against a Markov chain -------------------------------------


class _MarkovSS:
    """Long-run cost per period of (s, S) under Poisson demand from the stationary distribution
    of the inventory position after ordering (states s+1 .. S), with plain pmf sums."""

    def __init__(self, mean: float, lead: int, h: float, p: float, K: float, top: int):
        period, cover = stats.poisson(mean), stats.poisson(mean * (lead + 1))
        self.offset = 200  # levels y are stored at index y + offset
        self.d = np.arange(0, top + 2 * self.offset)
        self.pmf, self.sf = period.pmf(self.d), period.sf(self.d - 1)  # sf[j] = P(D >= j)
        k = np.arange(0, int(cover.ppf(1 - 1e-15)) + 40)
        y = np.arange(-self.offset, top + self.offset)
        kp = cover.pmf(k)
        self.on_hand = np.maximum(y[:, None] - k[None, :], 0) @ kp
        self.back = np.maximum(k[None, :] - y[:, None], 0) @ kp
        self.h, self.p, self.K = h, p, K

    def __call__(self, s: int, S: int) -> dict:
        states = np.arange(s + 1, S + 1)
        diff = states[:, None] - states[None, :]
        P = np.where(diff >= 0, self.pmf[np.maximum(diff, 0)], 0.0)
        order = self.sf[states - s]  # P(demand >= x - s): position falls to s or below
        P[:, -1] += order
        A = P.T - np.eye(states.size)
        A[-1, :] = 1.0
        b = np.zeros(states.size)
        b[-1] = 1.0
        pi = np.linalg.solve(A, b)
        on_hand = self.on_hand[states + self.offset]
        back = self.back[states + self.offset]
        return {"cost": pi @ (self.h * on_hand + self.p * back) + self.K * (pi @ order),
                "on_hand": pi @ on_hand, "back": pi @ back, "freq": pi @ order}


@given(st.floats(0.5, 5), st.sampled_from([0, 1]), st.floats(1, 15), st.floats(0.5, 30))
@settings(max_examples=10, deadline=None)
def test_s_S_poisson_exact_matches_markov_chain_brute_force(mean, lead, p, K):
    # Every (s, S) with s in [-w, top], S in (s, top + w], w twice the EOQ plus 5, where
    # top is the 0.9999 quantile of demand over L + 1 periods.
    h = 1.0
    pol = s_S_policy(PoissonDemand(mean), h=h, p=p, K=K, lead_time=lead)
    top = int(stats.poisson(mean * (lead + 1)).ppf(0.9999))
    width = 2 * math.ceil(math.sqrt(2 * K * mean / h)) + 5
    s_range = range(-width, top + 1)
    S_max = top + width
    assert pol.s in s_range and pol.S <= S_max
    chain = _MarkovSS(mean, lead, h, p, K, S_max)
    best = min(chain(s, S)["cost"] for s in s_range for S in range(s + 1, S_max + 1))
    at = chain(int(pol.s), int(pol.S))
    assert pol.total_cost == pytest.approx(best, rel=1e-9)
    assert pol.total_cost == pytest.approx(at["cost"], rel=1e-9)
    assert pol.expected_on_hand == pytest.approx(at["on_hand"], rel=1e-9, abs=1e-12)
    assert pol.expected_backorders == pytest.approx(at["back"], rel=1e-9, abs=1e-12)
    assert pol.order_frequency == pytest.approx(at["freq"], rel=1e-9)


def test_s_S_normal_lattice_evaluation_matches_simulation():
    # Power-approximation policy for N(20, 8²), L = 2; demand clipped at 0 in the simulation
    # (the lattice counts negative demand as 0 too).
    h, p, K, lead = 1.0, 9.0, 64.0, 2
    pol = s_S_policy(mu=20, sigma=8, h=h, p=p, K=K, lead_time=lead)
    assert pol.method == "power-approximation" and pol.evaluation == "lattice"
    rng = np.random.default_rng(17)
    draws = np.maximum(rng.normal(20, 8, 100_000), 0.0)
    position = level = pol.S
    pipeline = [0.0] * lead
    orders = on_hand = backorders = 0.0
    for d in draws:
        q = 0.0
        if position <= pol.s:
            q, position, orders = pol.S - position, pol.S, orders + 1
        pipeline.append(q)
        level += pipeline.pop(0)
        level -= d
        position -= d
        on_hand += max(level, 0.0)
        backorders += max(-level, 0.0)
    n = draws.size
    assert orders / n == pytest.approx(pol.order_frequency, rel=1e-2)
    assert on_hand / n == pytest.approx(pol.expected_on_hand, rel=1e-2)
    assert (K * orders + h * on_hand + p * backorders) / n == pytest.approx(pol.total_cost,
                                                                            rel=1e-2)


# --- (r, Q): simulations -------------------------------------------------------------------


def test_r_q_normal_cost_matches_monte_carlo_of_the_model():
    # The exact normal (r, Q) cost assumes IP ~ U[r, r+Q] independent of lead-time demand
    # N(λL, τ²L); IL = IP - D_L. Monte Carlo of that model, Snyder & Shen Example 5.1.
    pol = r_q_policy(mu=1300, sigma=150, h=0.225, p=7.5, K=8, lead_time=1 / 12,
                     r=126.8, Q=328.5)
    rng = np.random.default_rng(2024)
    n = 2_000_000
    il = rng.uniform(pol.r, pol.r + pol.Q, n) - rng.normal(pol.lead_time_mean,
                                                           pol.lead_time_std, n)
    on_hand, back = np.maximum(il, 0).mean(), np.maximum(-il, 0).mean()
    assert on_hand == pytest.approx(pol.expected_on_hand, rel=2e-3)
    assert back == pytest.approx(pol.expected_backorders, rel=2e-2)
    sim_cost = 8 * 1300 / pol.Q + 0.225 * on_hand + 7.5 * back
    assert sim_cost == pytest.approx(pol.total_cost, rel=2e-3)
    assert np.mean(il > 0) == pytest.approx(pol.fill_rate, abs=1e-3)


def _simulate_poisson_r_q(lam, lead, r, Q, years, seed):
    """(r, Q) under a Poisson demand process, observed on a time grid: the inventory position
    cycles r+Q, r+Q-1, …, r+1 with the demand count N(t), and IL(t) = IP(t-L) - (N(t) -
    N(t-L)). Samples of the state at fixed times average to the time averages."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / lam
    lag = round(lead / dt)
    counts = np.concatenate(([0], np.cumsum(rng.poisson(lam * dt, int(years / dt)))))
    ip = r + 1 + np.mod(Q - 1 - counts, Q)
    il = ip[:-lag] - (counts[lag:] - counts[:-lag])
    return np.maximum(il, 0).mean(), np.maximum(-il, 0).mean()


def test_r_q_costs_match_simulated_poisson_demand_process():
    # High volume (λL = 400, so lead-time demand is close to N(400, 20²)): the exact Poisson
    # cost and the normal cost with τ = √λ both match the simulated system.
    lam, lead, h, p, K = 2000.0, 0.2, 1.0, 20.0, 20.0
    normal = r_q_policy(mu=lam, sigma=math.sqrt(lam), lead_time=lead, h=h, p=p, K=K,
                        Q="optimal")
    r, Q = round(normal.r), round(normal.Q)
    pois = r_q_policy(PoissonDemand(lam), lead_time=lead, h=h, p=p, K=K, r=r, Q=Q)
    at = r_q_policy(mu=lam, sigma=math.sqrt(lam), lead_time=lead, h=h, p=p, K=K, r=r, Q=Q)
    on_hand, back = _simulate_poisson_r_q(lam, lead, r, Q, years=1000, seed=11)
    sim_cost = K * lam / Q + h * on_hand + p * back
    assert sim_cost == pytest.approx(pois.total_cost, rel=3e-3)
    assert sim_cost == pytest.approx(at.total_cost, rel=1e-2)
    assert on_hand == pytest.approx(pois.expected_on_hand, rel=5e-3)
    assert back == pytest.approx(pois.expected_backorders, rel=0.15)


@given(st.floats(100, 5000), st.floats(0.05, 1.0), st.floats(0.5, 0.999))
@FAST
def test_r_q_service_targets(lam, lead, target):
    normal = r_q_policy(mu=lam, sigma=0.3 * lam, lead_time=lead, Q=lam / 4,
                        service_level=target, service_type="fill_rate")
    assert normal.fill_rate == pytest.approx(target, abs=1e-8)
    csl = r_q_policy(mu=lam, sigma=0.3 * lam, lead_time=lead, Q=lam / 4, service_level=target)
    assert csl.cycle_service_level == pytest.approx(target, abs=1e-12)
    pois = r_q_policy(PoissonDemand(lam / 50), lead_time=lead, Q=3, service_level=target,
                      service_type="fill_rate")
    assert pois.fill_rate >= target
    lower = r_q_policy(PoissonDemand(lam / 50), lead_time=lead, Q=3, r=pois.r - 1)
    assert lower.fill_rate < target


def test_r_q_eoq_and_cost_optimal_reorder_point():
    pol = r_q_policy(mu=1300, sigma=150, h=0.225, p=7.5, K=8, lead_time=1 / 12)
    assert pol.q_method == "eoq" and close(pol.Q, 304.0467800264368)
    assert pol.service_type == "cost"
    g = NormalDemand(1300 / 12, 150 / math.sqrt(12))
    cost = lambda y: 0.225 * g.complementary_loss(y) + 7.5 * g.loss(y)  # noqa: E731
    assert cost(pol.r) == pytest.approx(cost(pol.r + pol.Q), rel=1e-9)
    for dr in (-1.0, 1.0):
        other = r_q_policy(mu=1300, sigma=150, h=0.225, p=7.5, K=8, lead_time=1 / 12,
                           r=pol.r + dr)
        assert other.total_cost > pol.total_cost
    pois = r_q_policy(PoissonDemand(20), h=2, p=30, K=50, lead_time=0.5)
    assert pois.Q == round(math.sqrt(2 * 50 * 20 / 2))
    for dr in (-1, 1):
        other = r_q_policy(PoissonDemand(20), h=2, p=30, K=50, lead_time=0.5, r=pois.r + dr)
        assert other.total_cost >= pois.total_cost


# --- input errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: order_up_to_level(mu=10, sigma=2, service_level=0.9, lead_time=-1),
         "lead_time must be >= 0"),
        (lambda: order_up_to_level(mu=10, sigma=2, service_level=1.0), "service_level"),
        (lambda: order_up_to_level(mu=10, sigma=2, service_level=0.0), "between 0 and 1"),
        (lambda: order_up_to_level(mu=10, sigma=2, service_level=0.9, service_type="type3"),
         "service_type"),
        (lambda: order_up_to_level(mu=10, sigma=2, service_level=0.9, review_period=1.5),
         "review_period must be a positive integer"),
        (lambda: NormalDemand(10, 0), "sigma must be > 0"),
        (lambda: NormalDemand(10, -1), "sigma"),
        (lambda: NormalDemand(float("nan"), 1), "mu must be a finite number"),
        (lambda: PoissonDemand(0), "mean must be > 0"),
        (lambda: NegativeBinomialDemand(5, 5), "variance must be > mean"),
        (lambda: EmpiricalDemand([]), "samples must be a non-empty"),
        (lambda: EmpiricalDemand([1, -2]), "samples must be >= 0"),
        (lambda: newsvendor(h=0, p=1, mu=10, sigma=2), "h must be > 0"),
        (lambda: newsvendor(NormalDemand(10, 2), h=1, p=1, mu=10, sigma=2), "not both"),
        (lambda: newsvendor(h=1, p=1), "mu and sigma"),
        (lambda: newsvendor(PoissonDemand(3), h=1, p=1, S=2.5), "S must be an integer"),
        (lambda: base_stock(mu=10, sigma=2), "give service_level"),
        (lambda: eoq(8, -1, 0.2), "D must be > 0"),
        (lambda: r_q_policy(mu=10, sigma=2, lead_time=0, Q=5, r=3), "lead_time must be > 0"),
        (lambda: r_q_policy(NegativeBinomialDemand(2, 5), lead_time=1, Q=5, r=3),
         "NormalDemand or PoissonDemand"),
        (lambda: r_q_policy(PoissonDemand(2), lead_time=1, Q=2.5, r=3),
         "Q must be a positive integer"),
        (lambda: r_q_policy(mu=10, sigma=2, lead_time=1, Q=5), "give r, service_level"),
        (lambda: r_q_policy(mu=10, sigma=2, lead_time=1, h=1, p=2), "K and h are needed"),
        (lambda: s_S_policy(mu=10, sigma=2, h=1, p=9, K=-5), "K must be > 0"),
        (lambda: s_S_policy(mu=10, sigma=2, h=1, p=9, K=5, method="exact"), "integer-valued"),
        (lambda: s_S_policy(PoissonDemand(3), h=1, p=9, K=5, s=4, S=4), "S must be > s"),
        (lambda: s_S_policy(PoissonDemand(3), h=1, p=9, K=5, lead_time=1.5), "lead_time"),
        (lambda: PoissonDemand(3).ppf(1.2), "q must be strictly between 0 and 1"),
        (lambda: EmpiricalDemand([1, 2]).over(2), "protection_demand"),
        (lambda: PoissonDemand(3).second_order_loss(2.5), "x must be an integer"),
        (lambda: from_moments(50, 0), "variance must be > 0"),
    ],
)
def test_input_errors_name_the_argument(call, words):
    with pytest.raises(SupplyInputError, match=None) as info:
        call()
    assert isinstance(info.value, PharmalabInputError)
    assert words in str(info.value)
