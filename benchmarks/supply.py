"""Benchmark: inventory policies and the policy backtest for every PBS bottom series.

The forecast folder is the default pipeline's on ``../shared/data/sales/pbs.csv`` (``Scripts``,
hierarchy Concession / Type / ATC1 / ATC2, horizon 12, 3 backtest windows, 200 paths), made
once with :func:`pharmalab.forecast.outputs.run_forecast` and reused from
``$PHARMALAB_CACHE/bench/supply_pbs_forecast`` (default ``~/.cache/pharmalab``), or given with
``--forecast DIR``.

Each supply run is one child process (``pharmalab.supply.run_supply``: read the folder,
policies for the final forecast, the backtest of the forecast-driven and the naive (R, S)
policy on the 3 windows, all files and figures written), timed from inside and measured by
its peak RSS (``VmHWM``, including the Python and pandas start). Runs, all L = 2 months,
R = 1 month, target 95%:

1. fill rate, sample paths (the contract case: 336 bottom series);
2. fill rate, quantiles only (the same folder without ``paths.parquet`` /
   ``backtest_paths.parquet``: independent periods);
3. cycle service level, sample paths;
4. fill rate, sample paths, every level of the hierarchy (403 series; per-level table).

Usage: python benchmarks/supply.py [--forecast DIR]   (writes the "Supply" section of
benchmarks/RESULTS.md)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _results import update_section  # noqa: E402

PBS = HERE.parent.parent / "shared" / "data" / "sales" / "pbs.csv"
HIERARCHY = ["Concession", "Type", "ATC1", "ATC2"]
CACHE = Path(os.environ.get("PHARMALAB_CACHE", Path.home() / ".cache" / "pharmalab"))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, SRC)

def peak_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss can carry the parent's peak
    # over fork + exec on Linux.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

start = time.perf_counter()
from pharmalab.forecast.outputs import load_sales
from pharmalab.supply import PolicySettings, run_supply
data = load_sales(PBS, time_col="Month", value_col="Scripts", hierarchy=HIERARCHY)
loaded = time.perf_counter()
settings = PolicySettings(lead_time=2, review_period=1, service_level=0.95,
                          service_type=SERVICE_TYPE, series_level=LEVEL)
result, written = run_supply(FOLDER, OUT, settings, sales=data.frame)
done = time.perf_counter()
summary = result.backtest.summary
print(json.dumps({
    "seconds_sales": loaded - start, "seconds_supply": done - loaded,
    "series": len(result.series), "windows": int(result.backtest.table["cutoff"].nunique()),
    "models": result.policy["demand_model"].value_counts().to_dict(),
    "summary": json.loads(summary.to_json(orient="records")),
    "peak_rss_mb": peak_mb()}))
"""

RUNS = [  # (label, service type, series level, paths)
    ("fill rate, paths, bottom", "fill_rate", "bottom", True),
    ("fill rate, quantiles (independent periods), bottom", "fill_rate", "bottom", False),
    ("cycle service level, paths, bottom", "csl", "bottom", True),
    ("fill rate, paths, all levels", "fill_rate", "all", True),
]


def forecast_folder(folder: Path) -> float | None:
    """Make the PBS forecast folder unless it exists; seconds taken (None when reused)."""
    if (folder / "forecast.parquet").is_file():
        return None
    from pharmalab.forecast import ForecastSettings
    from pharmalab.forecast.outputs import load_sales, run_forecast

    t = time.perf_counter()
    data = load_sales(PBS, time_col="Month", value_col="Scripts", hierarchy=HIERARCHY)
    run_forecast(data, folder, ForecastSettings(horizon=12))
    return time.perf_counter() - t


def without_paths(folder: Path) -> Path:
    """The same forecast folder without its sample paths (symbolic links to the rest)."""
    target = folder.parent / (folder.name + "_no_paths")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for path in folder.iterdir():
        if path.name not in ("paths.parquet", "backtest_paths.parquet"):
            (target / path.name).symlink_to(path)
    return target


def run_child(folder: Path, out: Path, service_type: str, level: str) -> dict:
    code = (f"SRC = {str(HERE.parent / 'src')!r}\nPBS = {str(PBS)!r}\n"
            f"HIERARCHY = {HIERARCHY!r}\nFOLDER = {str(folder)!r}\nOUT = {str(out)!r}\n"
            f"SERVICE_TYPE = {service_type!r}\nLEVEL = {level!r}\n" + CHILD)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=HERE.parent).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes" if git("status", "--porcelain") else "")


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def main(folder: Path) -> None:
    made = forecast_folder(folder)
    out_root = folder.parent / "supply_bench_out"
    results = []
    for label, service_type, level, paths in RUNS:
        source = folder if paths else without_paths(folder)
        result = run_child(source, out_root / label.replace(" ", "_").replace(",", ""),
                           service_type, level)
        results.append((label, service_type, result))
        print(label, json.dumps(result)[:400], flush=True)
    import pandas as pd

    lines = [
        f"Run on {dt.date.today()} with `python benchmarks/supply.py`; {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}), pandas {pd.__version__}; "
        f"code: {_commit()}. "
        f"Forecast folder: the default pipeline on PBS `Scripts` (403 series, 336 at the "
        f"bottom; horizon 12, backtest origins 2005-06, 2006-06, 2007-06; 200 paths), "
        + ("reused." if made is None else f"made in {made:.0f} s (not counted below)."),
        "",
        "Policies: periodic review order-up-to (R, S), lead time L = 2 months, review every "
        "month (R = 1), target 95%. Each backtest window: 10 counted months (3–12) per series; "
        "the naive policy is S = 3 μ̂ + z σ̂ √3 from the 12 months before the origin. "
        "Fill rate pooled = Σ filled / Σ demand over series and windows; mean = mean over "
        "series of their own rate. Average on-hand: the sum over series of their mean "
        "end-of-month stock (scripts). Seconds: the supply run only (read the folder, "
        "policies, backtest of both policies, every file and figure written), in a child "
        "process whose peak RSS is shown; reading the sales file for the naive policy took "
        f"{results[0][2]['seconds_sales']:.1f} s more.",
        "",
        "| run | series | seconds | peak RSS MB | forecast: fill rate pooled / mean | "
        "forecast CSL | naive: fill rate pooled / mean | naive CSL | avg on-hand forecast / "
        "naive | stock ratio |",
        "|---|---:|---:|---:|---|---:|---|---:|---|---:|",
    ]
    for label, _, r in results:
        a = next(row for row in r["summary"] if row["level"] == "all")
        lines.append(
            f"| {label} | {r['series']} | {r['seconds_supply']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {_pct(a['forecast_fill_rate_pooled'])} / {_pct(a['forecast_fill_rate_mean'])} "
            f"| {_pct(a['forecast_csl_pooled'])} "
            f"| {_pct(a['naive_fill_rate_pooled'])} / {_pct(a['naive_fill_rate_mean'])} "
            f"| {_pct(a['naive_csl_pooled'])} "
            f"| {a['forecast_avg_on_hand'] / 1e6:.2f} M / {a['naive_avg_on_hand'] / 1e6:.2f} M "
            f"| {a['stock_ratio']:.2f} |")
    main_run = results[0][2]
    a = next(row for row in main_run["summary"] if row["level"] == "all")
    ok_target = abs(a["forecast_fill_rate_pooled"] - 0.95) <= 0.02
    ok_stock = (a["forecast_avg_on_hand"] < a["naive_avg_on_hand"]
                and a["forecast_fill_rate_pooled"] >= a["naive_fill_rate_pooled"])
    lines += [
        "",
        f"- {'PASS' if ok_target else 'FAIL'} — achieved fill rate (pooled) within ±2 points "
        f"of 95%: {_pct(a['forecast_fill_rate_pooled'])} (mean of per-series rates "
        f"{_pct(a['forecast_fill_rate_mean'])}).",
        f"- {'PASS' if ok_stock else 'FAIL'} — less stock than the naive policy at an equal or "
        f"better fill rate: {a['stock_ratio']:.2f} × its average on-hand, "
        f"{_pct(a['forecast_fill_rate_pooled'])} vs {_pct(a['naive_fill_rate_pooled'])}.",
        "- Demand models (run 1, policy.csv): "
        + ", ".join(f"{k} {v}" for k, v in main_run["models"].items()) + ".",
        "",
        "Per level (run 4, fill rate target 95%):",
        "",
        "| level | series | forecast fill rate pooled / mean | forecast CSL | naive fill rate "
        "pooled / mean | naive CSL | stock ratio |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for row in results[3][2]["summary"]:
        lines.append(
            f"| {row['level']} | {row['series']} "
            f"| {_pct(row['forecast_fill_rate_pooled'])} / {_pct(row['forecast_fill_rate_mean'])} "
            f"| {_pct(row['forecast_csl_pooled'])} "
            f"| {_pct(row['naive_fill_rate_pooled'])} / {_pct(row['naive_fill_rate_mean'])} "
            f"| {_pct(row['naive_csl_pooled'])} | {row['stock_ratio']:.2f} |")
    update_section("Supply (`benchmarks/supply.py`)", "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forecast", type=Path,
                        default=CACHE / "bench" / "supply_pbs_forecast",
                        help="PBS forecast folder to reuse or create")
    main(parser.parse_args().forecast)
