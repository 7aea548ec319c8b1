"""Drug-sales forecasting: hierarchical, probabilistic, backtested (Nixtla's statsforecast,
mlforecast and hierarchicalforecast underneath)."""

from pharmalab.forecast.demand import classify_demand
from pharmalab.forecast.hierarchy import Hierarchy, build_hierarchy
from pharmalab.forecast.metrics import seasonal_scales, summarize_metrics, window_metrics
from pharmalab.forecast.pipeline import ForecastResult, ForecastSettings, forecast

__all__ = [
    "ForecastResult", "ForecastSettings", "Hierarchy", "build_hierarchy", "classify_demand",
    "forecast", "seasonal_scales", "summarize_metrics", "window_metrics",
]
