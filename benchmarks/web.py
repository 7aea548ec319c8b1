"""Benchmark: server time of ``pharmalab serve`` pages (target: under 300 ms each).

1. The demo study's page (every section: CDM checks, cohorts with attrition funnels, Table 1 of
   479 covariates, incidence, Kaplan–Meier, extraction counts, journey, pathways, forecast,
   supply, marketing), from the demo's results folder (``--demo DIR``, else
   ``pharmalab demo`` is run once into ``$PHARMALAB_CACHE/bench/web_demo``).
2. The forecast explorer on the full PBS hierarchy (403 series, 200 sample paths each,
   ``paths.parquet`` of 967,200 rows): one series page per request, series drawn at random.
   The folder is ``pharmalab forecast`` on ``../shared/data/sales/pbs.csv`` (Scripts,
   Concession / Type / ATC1 / ATC2, horizon 12, 3 windows; SeasonalNaive and AutoETS, since
   only the files' size matters here), made once into ``$PHARMALAB_CACHE/bench/web_pbs`` or
   given with ``--forecast DIR``.

Server time is the app's own ``Server-Timing`` header (from the request reaching the app to
the response headers, i.e. everything but the network); wall time is the client's. Runs on the
server in this process (uvicorn on a loopback port), after one warm-up request per page.

Usage: python benchmarks/web.py [--demo DIR] [--forecast DIR] [--requests 30]
(writes the "Browser workspace" section of benchmarks/RESULTS.md)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _results import update_section  # noqa: E402

PBS = HERE.parent.parent / "shared" / "data" / "sales" / "pbs.csv"
CACHE = Path(os.environ.get("PHARMALAB_CACHE", Path.home() / ".cache" / "pharmalab")) / "bench"


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pharmalab.cli", *args], check=True)


def demo_folder(given: str | None) -> Path:
    if given:
        return Path(given)
    out = CACHE / "web_demo"
    if not (out / "manifest.json").is_file():
        _cli("demo", "--out", str(out))
    return out


def pbs_folder(given: str | None) -> Path:
    if given:
        return Path(given)
    out = CACHE / "web_pbs"
    if not (out / "forecast_manifest.json").is_file():
        _cli("forecast", "--sales", str(PBS), "--time-col", "Month", "--value-col", "Scripts",
             "--hierarchy", "Concession,Type,ATC1,ATC2", "--models", "SeasonalNaive,AutoETS",
             "--horizon", "12", "--backtest-windows", "3", "--out", str(out))
    return out


def _serve(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _time(url: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
        timing = response.headers["server-timing"]
    wall = (time.perf_counter() - t0) * 1000
    return float(timing.split("dur=")[1]), wall, len(body)


def _measure(urls: list[str]) -> dict:
    _time(urls[0])  # warm-up
    server, wall, size = zip(*(_time(u) for u in urls), strict=True)
    return {"median": statistics.median(server), "p95": sorted(server)[int(0.95 * len(server))
                                                                    - (len(server) < 20)],
            "max": max(server), "wall_median": statistics.median(wall),
            "kb": statistics.median(size) / 1024, "n": len(urls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo")
    parser.add_argument("--forecast")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    import pandas as pd

    from pharmalab.web import create_app

    demo, pbs = demo_folder(args.demo), pbs_folder(args.forecast)
    series = pd.read_parquet(pbs / "forecast.parquet", columns=["unique_id"]).unique_id.unique()
    paths = pd.read_parquet(pbs / "paths.parquet", columns=["path"])
    with tempfile.TemporaryDirectory() as workspace:
        server, base = _serve(create_app(workspace, [demo, pbs]))
        rng = random.Random(0)
        n = args.requests
        # the server reads and indexes the newest forecast folders in the background as it
        # starts; a user opening the PBS explorer a few seconds later:
        time.sleep(5)
        first = _time(f"{base}/forecast?id=2&series=Total")
        rows = {
            "study list (`/`)": _measure([f"{base}/"] * n),
            "demo study page (`/study`)": _measure([f"{base}/study?id=1"] * n),
            "demo forecast explorer, H02 with its supply policy": _measure(
                [f"{base}/forecast?id=1&series=H02"] * n),
            f"PBS explorer, one of {len(series)} series (random)": _measure([
                f"{base}/forecast?" + urllib.parse.urlencode(
                    {"id": "2", "series": rng.choice(list(series))}) for _ in range(n)]),
            "download `table_one.csv`": _measure(
                [f"{base}/download?id=1&file=characterize/table_one.csv"] * n),
        }
        server.should_exit = True
    lines = [f"Run on {dt.date.today()} with `python benchmarks/web.py`; "
             f"{os.cpu_count()} cores, Python {platform.python_version()}. Server time = the "
             "app's `Server-Timing` (request in → response headers out); wall = the client's "
             f"(loopback). {n} requests per row after one warm-up. PBS folder: "
             f"{len(series)} series, {len(paths):,} sample-path rows. The server reads each "
             "forecast "
             "folder's Parquet files once and indexes their series' rows (in the background "
             "when it starts; about 1.5 s for this PBS folder), then a request takes only its "
             f"rows: the first PBS series opened 5 s after the start took {first[0]:.0f} ms.",
             "",
             "| page | server ms, median | p95 | max | wall ms, median | page KiB | target |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        ok = "PASS" if r["p95"] < 300 else "FAIL"
        lines.append(f"| {name} | {r['median']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | "
                     f"{r['wall_median']:.1f} | {r['kb']:.0f} | {ok} (< 300 ms) |")
    body = "\n".join(lines)
    print(body)
    update_section("Browser workspace (`benchmarks/web.py`)", body)


if __name__ == "__main__":
    main()
