"""Marketing: which promotion drives prescriptions, and where the next euro should go —
within what supply can deliver.

A Bayesian marketing-mix model (PyMC-Marketing underneath) on a panel of scripts and spend
per region and period:

- :func:`read_panel` / :func:`check_panel` → :class:`Panel` (one-line errors for bad input);
- :func:`fit_mmm` (:class:`MMMSettings`) → :class:`MMMFit`: geometric adstock, logistic
  saturation, trend, yearly seasonality, controls, regions partially pooled, and a
  right-censored likelihood for supply-constrained rows; convergence reported
  (:class:`Convergence`);
- :func:`contributions`, :func:`roi`, :func:`response_curves`, :func:`adstock`,
  :func:`latent_demand`, :func:`fit_metrics`: what the fit says, with 90% intervals;
- :func:`allocate_budget`: the budget split that maximizes expected incremental units over
  the posterior, within bounds and within supply capacity; :func:`write_plan_forecast` hands
  the plan's demand to ``pharmalab supply`` as a forecast folder;
- :func:`simulate` (:class:`BrandSpec`, :class:`ChannelTruth`): brands with known truth for
  tests, benchmarks and the demo;
- :func:`save_fit` / :func:`load_fit`: the ``model/`` folder.

The CLI and the study step use :func:`~pharmalab.marketing.outputs.run_fit` and
:func:`~pharmalab.marketing.outputs.run_allocate`.
"""

from pharmalab.marketing.allocate import (
    Allocation,
    ResponseModel,
    allocate_budget,
    evaluate_plan,
    read_bounds,
    read_capacity,
)
from pharmalab.marketing.insights import (
    adstock,
    contributions,
    fit_metrics,
    latent_demand,
    response_curves,
    roi,
)
from pharmalab.marketing.model import Convergence, MMMFit, MMMSettings, fit_mmm
from pharmalab.marketing.panel import Panel, check_panel, read_panel
from pharmalab.marketing.scenario import write_plan_forecast
from pharmalab.marketing.simulate import BrandSpec, ChannelTruth, SimulatedBrand, simulate
from pharmalab.marketing.store import load_fit, save_fit

__all__ = [
    "Allocation", "BrandSpec", "ChannelTruth", "Convergence", "MMMFit", "MMMSettings", "Panel",
    "ResponseModel", "SimulatedBrand", "adstock", "allocate_budget", "check_panel",
    "contributions", "evaluate_plan", "fit_metrics", "fit_mmm", "latent_demand", "load_fit",
    "read_bounds", "read_capacity", "read_panel", "response_curves", "roi", "save_fit",
    "simulate", "write_plan_forecast",
]
