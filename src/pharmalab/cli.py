"""The ``pharmalab`` command: a thin Typer layer over the Python API.

Bad input ends with one line ``error: …`` on stderr and exit code 2, never a traceback;
a study with a failed step exits 1.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pharmalab import __version__
from pharmalab.errors import EngineConnectionError, PharmalabInputError

app = typer.Typer(help="pharmalab: an open data-and-AI lab for pharma R&D and commercial "
                       "analytics.", no_args_is_help=True, add_completion=False)
cdm_app = typer.Typer(help="OMOP CDM: load and check.", no_args_is_help=True)
app.add_typer(cdm_app, name="cdm")
cohorts_app = typer.Typer(help="Cohorts: OHDSI Circe cohort sets.", no_args_is_help=True)
app.add_typer(cohorts_app, name="cohorts")
journey_app = typer.Typer(help="Patient journey: adherence (PDC), persistence, pathways.",
                          no_args_is_help=True)
app.add_typer(journey_app, name="journey")
marketing_app = typer.Typer(help="Marketing: marketing-mix model (ROI, contributions, response "
                                 "curves, latent demand) and supply-aware budget allocation.",
                            no_args_is_help=True)
app.add_typer(marketing_app, name="marketing")
demand_app = typer.Typer(help="Demand from patients: a patient-flow forecast built from the "
                              "CDM.", no_args_is_help=True)
app.add_typer(demand_app, name="demand")

# Options shared by the commands that read a CDM.
CdmURL = Annotated[str, typer.Option("--cdm", help="Database URL of the CDM.")]
CdmSchema = Annotated[str | None, typer.Option("--cdm-schema")]
VocabSchema = Annotated[str | None, typer.Option("--vocab-schema")]
ResultsSchema = Annotated[str | None, typer.Option("--results-schema")]
MinCellCount = Annotated[int, typer.Option(
    min=1, help="Counts from 1 to this − 1 are suppressed (OHDSI minCellCount).")]
KeyFile = Annotated[Path | None, typer.Option(
    "--key-file", help="Pseudonym key file (else PHARMALAB_PSEUDONYM_KEY[_FILE]; else a random "
                       "key, not stored).")]

console = Console(stderr=True)
# Piped output (a log, a CI job) is not wrapped at 80 columns, so numbers stay on one line.
out_console = Console(width=None if sys.stdout.isatty() else 200)


class _Exit(Exception):
    def __init__(self, code: int):
        self.code = code


def _show_version(value: bool) -> None:
    if value:
        out_console.print(f"pharmalab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", help="Show the version and exit.", is_eager=True,
        callback=_show_version)] = False,
) -> None:
    """pharmalab: an open data-and-AI lab for pharma R&D and commercial analytics."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("pharmalab-demo"),
) -> None:
    """Run the bundled demo study: GiBleed (OMOP CDM) and Australian drug sales."""
    from pharmalab.study import demo_study_path

    _run_study(demo_study_path(), out)


@app.command("run")
def run_cmd(
    study: Annotated[Path, typer.Argument(help="The study.toml to run.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: the study's).")] = None,
) -> None:
    """Run a study: its steps in order, then OUT/manifest.json and OUT/report.html."""
    _run_study(study, out)


@app.command("serve")
def serve_cmd(
    results: Annotated[list[Path] | None, typer.Option(
        "--results", help="A results folder to list besides the workspace (repeatable).")] = None,
    workspace: Annotated[Path, typer.Option(
        help="The workspace: results folders under it are listed; studies started in the "
             "browser are written to WORKSPACE/runs.")] = Path("."),
    host: Annotated[str, typer.Option(
        help="Bind address. Anything but loopback requires PHARMALAB_WEB_TOKEN.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8787,
) -> None:
    """Serve the browser workspace: studies, cohorts, forecasts, plans; run studies."""
    from pharmalab.web import serve

    def announce(url: str) -> None:
        console.print(f"pharmalab serve: {url} (workspace {workspace.resolve()}; Ctrl-C to stop)",
                      markup=False, highlight=False)

    serve(workspace, results or [], host=host, port=port, on_start=announce)


def _run_study(study_path: Path, out: Path | None) -> None:
    from pharmalab.study import run

    with _progress() as progress:
        def factory(title: str, total: int | None):
            task = progress.add_task(title, total=total)

            def tick(label: str) -> None:
                progress.update(task, advance=1, description=f"{title}: {label}")
            return tick
        result = run(study_path, out, progress=factory)
    table = Table(title=f"Study results in {result.out}")
    for column in ("step", "status", "seconds", "error"):
        table.add_column(column)
    for s in result.steps:
        colour = {"ok": "green", "failed": "red"}.get(s.status, "yellow")
        table.add_row(s.title, f"[{colour}]{s.status}[/]", f"{s.seconds:.1f}", s.error or "")
    out_console.print(table)
    out_console.print(f"report: {result.report}\nmanifest: {result.manifest}\n"
                      f"browse: pharmalab serve --results {result.out}")
    if not result.ok:
        raise _Exit(1)


@contextmanager
def _progress():
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False,
                        # bars are for people at a terminal, not for logs
                        disable=not console.is_terminal)
    with progress:
        yield progress


@cdm_app.command("load")
def cdm_load(
    source: Annotated[str, typer.Argument(
        help="Eunomia-style archive (.zip, .tar.xz), folder of CSV/Parquet, or eunomia:GiBleed.")],
    cdm: Annotated[str, typer.Option("--cdm", help="Database URL, e.g. duckdb:///cdm.duckdb.")],
    cdm_version: Annotated[str | None, typer.Option(
        "--cdm-version", help="5.3 or 5.4 (default: from cdm_source).")] = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
) -> None:
    """Load an OMOP CDM into a database, typed by the CDM specification."""
    from dataclasses import replace

    from pharmalab import cdm as cdm_pkg
    from pharmalab.engine import parse_url

    url = parse_url(cdm)
    url = replace(url, cdm_schema=cdm_schema or url.cdm_schema,
                  vocab_schema=vocab_schema or url.vocab_schema)
    with _progress() as progress:
        task = progress.add_task("loading", total=None)
        result = cdm_pkg.load(source, url, cdm_version=cdm_version,
                              progress=lambda name: progress.update(
                                  task, advance=1, description=f"loading {name}"))
    table = Table(title=f"OMOP CDM v{result.cdm_version} loaded in {result.seconds:.1f} s")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for t in result.tables:
        table.add_row(t.table, f"{t.rows:,}")
    out_console.print(table)
    if url.kind == "duckdb" and url.duckdb_path is None:
        console.print("note: duckdb:// is an in-memory database: nothing is kept after this "
                      "command (give a file, e.g. duckdb://cdm.duckdb)", soft_wrap=True)
    for name, why in result.skipped:
        console.print(f"note: {name}: {why}", soft_wrap=True)
    for warning in result.warnings:
        console.print(f"warning: {warning}", soft_wrap=True)


@cdm_app.command("check")
def cdm_check(
    cdm: Annotated[str, typer.Option("--cdm", help="Database URL, e.g. duckdb:///cdm.duckdb.")],
    out: Annotated[Path, typer.Option(help="Folder for cdm_check.csv.")] = Path("."),
    cdm_version: Annotated[str | None, typer.Option("--cdm-version")] = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Check a CDM against the specification; write cdm_check.csv, cdm_tables.csv and
    cdm_summary.json (as the study's cdm step) and print a summary."""
    import json

    from pharmalab import cdm as cdm_pkg
    from pharmalab.atomic import write_csv, write_text
    from pharmalab.engine import database

    db = database(cdm, cdm_schema=cdm_schema, vocab_schema=vocab_schema, create=False)
    result = cdm_pkg.check(db, cdm_version=cdm_version, min_cell_count=min_cell_count)
    path = write_csv(out / "cdm_check.csv", result.findings)
    written = [path, write_csv(out / "cdm_tables.csv", result.tables),
               write_text(out / "cdm_summary.json",
                          json.dumps(result.summary, indent=2, default=str) + "\n")]

    summary = Table(title="CDM summary", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("")
    for key, value in result.summary.items():
        summary.add_row(key, _fmt(value))
    out_console.print(summary)
    findings = Table(title="CDM checks")
    for column in ("severity", "check", "table", "column", "rows_affected", "detail"):
        findings.add_column(column, justify="right" if column == "rows_affected" else "left")
    for row in result.findings.itertuples(index=False):
        colour = {"error": "red", "warning": "yellow"}.get(row.severity, "cyan")
        findings.add_row(f"[{colour}]{row.severity}[/]", row.check, row.table, row.column,
                         _fmt(row.rows_affected), row.detail)
    out_console.print(findings)
    out_console.print("written: " + ", ".join(str(p) for p in written))


@cdm_app.command("eras")
def cdm_eras(
    cdm: Annotated[str, typer.Option("--cdm", help="Database URL, e.g. duckdb:///cdm.duckdb.")],
    table: Annotated[list[str] | None, typer.Option(
        "--table", help="drug_era or condition_era (repeatable; default both).")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Rebuild tables that exist (default: keep them).")] = False,
    persistence_window: Annotated[int, typer.Option(
        "--persistence-window", min=0, max=3650,
        help="Days of gap allowed inside one era (OHDSI: 30).")] = 30,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
) -> None:
    """Build drug_era and condition_era in the engine from drug_exposure and
    condition_occurrence, with OHDSI's era logic (30-day persistence window, ingredients
    through concept_ancestor)."""
    from pharmalab.cdm import eras
    from pharmalab.engine import database

    db = database(cdm, cdm_schema=cdm_schema, vocab_schema=vocab_schema, create=False)
    with _progress() as progress:
        progress.add_task("deriving eras", total=None)
        done = eras.build_eras(db, tuple(table or eras.ERA_TABLES), replace=replace,
                               persistence_days=persistence_window)
    for build in done:
        if build.action == "kept":
            out_console.print(f"{build.table}: exists ({build.rows:,} rows), kept; --replace "
                              "rebuilds it", markup=False)
        else:
            out_console.print(f"{build.table}: {build.action}, {build.rows:,} rows",
                              markup=False)


@cohorts_app.command("generate")
def cohorts_generate(
    cdm: CdmURL,
    cohorts: Annotated[Path, typer.Option(
        "--cohorts", help="Cohort set: folder with Cohorts.csv or <cohort_id>.json files.")],
    out: Annotated[Path, typer.Option(help="Folder for the cg_*.csv results.")] = Path("."),
    force: Annotated[bool, typer.Option(
        "--force", help="Regenerate cohorts whose definition is unchanged.")] = False,
    stats: Annotated[bool, typer.Option(
        "--stats/--no-stats",
        help="Inclusion-rule and censoring statistics (CohortGenerator's generateStats); "
             "--no-stats leaves the cohorts' statistics tables empty.")] = True,
    negative_controls: Annotated[Path | None, typer.Option(
        "--negative-controls", help="CSV of negative-control outcome concepts.")] = None,
    results_schema: ResultsSchema = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    database_id: Annotated[str | None, typer.Option(
        "--database-id", help="database_id of the exports (default: cdm_source).")] = None,
    min_cell_count: MinCellCount = 5,
    eras_within_observation: Annotated[bool, typer.Option(
        "--eras-within-observation-period",
        help="Collapse cohort eras within observation periods only, each era cut at the end "
             "of the period it starts in (circe-be#229); default: Circe's collapse.")] = False,
) -> None:
    """Generate a cohort set into the results schema; export CohortGenerator's cg_*.csv."""
    from pharmalab import cohorts as cohorts_pkg
    from pharmalab.engine import database

    if out.exists() and not out.is_dir():
        raise PharmalabInputError(f"--out {str(out)!r} is a file; expected a folder for the "
                                  "cg_*.csv results")
    cohort_set = cohorts_pkg.read_cohort_set(cohorts)
    controls = (cohorts_pkg.read_negative_controls(negative_controls)
                if negative_controls else None)
    if controls is not None:
        cohorts_pkg.check_ids_apart(controls, cohort_set.ids)
    db = database(cdm, cdm_schema=cdm_schema, vocab_schema=vocab_schema,
                  results_schema=results_schema, create=False)
    with _progress() as progress:
        task = progress.add_task("cohorts", total=len(cohort_set))
        result = cohorts_pkg.generate_cohorts(
            db, cohort_set, force=force, stats=stats,
            eras_within_observation=eras_within_observation,
            progress=lambda d, status: progress.update(
                task, advance=1,
                description=f"cohort {d.cohort_id} {escape(d.cohort_name)}: {status}"))
    nc_ids = []
    if controls is not None:
        nc = cohorts_pkg.generate_negative_control_cohorts(db, controls)
        nc_ids = [int(i) for i in nc["cohort_id"]]
    cohorts_pkg.export_cohort_statistics(db, out, cohort_set.ids, negative_control_ids=nc_ids,
                                         database_id=database_id,
                                         min_cell_count=min_cell_count)
    runs = {r.cohort_id: r for r in result.runs}
    table = Table(title="Cohorts")
    for column in ("cohort_id", "cohort_name", "status", "entries", "subjects", "seconds"):
        table.add_column(column, justify="right" if column in (
            "cohort_id", "entries", "subjects", "seconds") else "left")
    for row in result.counts.itertuples(index=False):
        run = runs[row.cohort_id]
        colour = {"COMPLETE": "green", "FAILED": "red"}.get(run.status, "yellow")
        # a failed cohort keeps its previous rows (if any): the counts shown are those
        status = "FAILED (previous rows kept)" if run.status == "FAILED" else run.status
        table.add_row(str(row.cohort_id), escape(row.cohort_name), f"[{colour}]{status}[/]",
                      f"{row.cohort_entries:,}", f"{row.cohort_subjects:,}",
                      f"{run.seconds:.1f}")
    out_console.print(table)
    if controls is not None:
        out_console.print(f"negative-control outcome cohorts: {len(nc_ids)}")
    out_console.print(f"written: {out}/cg_cohort_count.csv and the other cg_*.csv")
    for run in result.failed:
        console.print(f"failed: cohort {run.cohort_id} ({run.cohort_name}): {run.error}",
                      markup=False, highlight=False, soft_wrap=True)
    if result.failed:
        raise _Exit(1)


@cohorts_app.command("counts")
def cohorts_counts(
    cdm: CdmURL,
    results_schema: ResultsSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Entries and subjects of every cohort in the results schema's cohort table."""
    from pharmalab import cohorts as cohorts_pkg
    from pharmalab.engine import database
    from pharmalab.privacy import suppress

    db = database(cdm, results_schema=results_schema, create=False)
    counts = suppress(cohorts_pkg.cohort_counts(db), ["cohort_entries", "cohort_subjects"],
                      min_cell_count)
    table = Table(title="cohort_count")
    for column in ("cohort_id", "cohort_entries", "cohort_subjects"):
        table.add_column(column, justify="right")
    for row in counts.itertuples(index=False):
        table.add_row(str(row.cohort_id), _fmt(row.cohort_entries), _fmt(row.cohort_subjects))
    out_console.print(table)


@app.command()
def extract(
    cdm: CdmURL,
    cohort_id: Annotated[int, typer.Option("--cohort-id", help="Cohort to extract.")],
    out: Annotated[Path, typer.Option(help="Extraction folder (written atomically).")],
    window: Annotated[str, typer.Option(
        "--window", help="Days around each entry's index date, START:END (inclusive); "
                         "an empty side is unbounded.")] = "-365:365",
    domains: Annotated[str, typer.Option(
        "--domains", help="Comma-separated: person,condition,drug,measurement,procedure,"
                          "observation,visit,death.")] =
        "person,condition,drug,measurement,procedure,observation,visit,death",
    no_deidentify: Annotated[bool, typer.Option(
        "--no-deidentify", help="Write identifiable data (recorded in the manifest, with a "
                                "warning).")] = False,
    key_file: KeyFile = None,
    date_shift_days: Annotated[int, typer.Option(
        "--date-shift-days", min=0, max=3650,
        help="Per-person date shift of up to ± this many days (0: no shift).")] = 180,
    relative_dates: Annotated[bool, typer.Option(
        "--relative-dates", help="Drop dates; keep days_from_index only.")] = False,
    k_min: Annotated[int, typer.Option(
        "--k-min", min=1, help="Smallest quasi-identifier class allowed (persons).")] = 5,
    allow_small_k: Annotated[bool, typer.Option(
        "--allow-small-k", help="Write even with classes under --k-min (recorded).")] = False,
    age_band_years: Annotated[int, typer.Option(
        "--age-band-years", min=1, max=100,
        help="Width of the age bands of age_group and of the k-anonymity classes.")] = 5,
    generalize_concepts: Annotated[bool, typer.Option(
        "--generalize-concepts", help="Replace concepts held by fewer than --k-min persons "
                                      "by their nearest ancestor held by enough, or 'other'.")
    ] = False,
    results_schema: ResultsSchema = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
) -> None:
    """Patient-level data of a cohort's members in a window around each index date, one
    Parquet dataset per CDM table, de-identified by default, with data_dictionary.csv,
    k_anonymity.csv and manifest.json."""
    import warnings

    from pharmalab import extract as extract_pkg

    _cohort_ids("--cohort-id", cohort_id)
    db = _char_db(cdm, cdm_schema, vocab_schema, results_schema)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", extract_pkg.ExtractWarning)
        result = extract_pkg.extract(
            db, cohort_id, out, window=window, domains=domains, deidentify=not no_deidentify,
            key_file=key_file, date_shift_days=date_shift_days, relative_dates=relative_dates,
            k_min=k_min, allow_small_k=allow_small_k, age_band_years=age_band_years,
            generalize_concepts=generalize_concepts)
    for warning in caught:
        console.print(f"warning: {warning.message}", markup=False, highlight=False)
    table = Table(title=f"Extraction of cohort {cohort_id}")
    for column in ("table", "rows", "persons"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for row in result.counts.itertuples(index=False):
        table.add_row(row.table, f"{row.rows:,}", f"{row.persons:,}")
    out_console.print(table)
    report = result.k_anonymity
    out_console.print(f"k-anonymity: smallest class {report.k} persons "
                      f"(k_min {k_min}); key fingerprint {result.key_fingerprint or '—'}")
    out_console.print(f"written: {result.out}")


@app.command("forecast")
def forecast_cmd(
    sales: Annotated[Path, typer.Option("--sales", help="Sales CSV (long, e.g. PBS; or wide: "
                                        "one column per series).")],
    time_col: Annotated[str, typer.Option("--time-col", help="Period column, e.g. Month.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    value_col: Annotated[str | None, typer.Option(
        "--value-col", help="Value column of a long file, e.g. Scripts or Cost. Omit for a "
                            "wide file.")] = None,
    hierarchy: Annotated[str | None, typer.Option(
        "--hierarchy", help="Category columns top to bottom, comma-separated, e.g. "
                            "Concession,Type,ATC1,ATC2.")] = None,
    grouped_levels: Annotated[str | None, typer.Option(
        "--grouped-levels", help="A grouped structure instead of a tree: aggregation levels "
                                 "separated by ';', each a comma-separated column list, e.g. "
                                 "'Concession;ATC1' with --hierarchy Concession,ATC1.")] = None,
    series_cols: Annotated[str | None, typer.Option(
        "--series-cols", help="Wide file: the series columns (default: every other "
                              "column).")] = None,
    horizon: Annotated[int, typer.Option("--horizon", min=1, max=10_000,
                                         help="Periods ahead.")] = 12,
    backtest_windows: Annotated[int, typer.Option("--backtest-windows", min=1, max=100)] = 3,
    step: Annotated[int | None, typer.Option(
        "--step", min=1, help="Periods between backtest origins (default: the horizon).")] = None,
    models: Annotated[str | None, typer.Option(
        "--models", help="Comma-separated base models (default: SeasonalNaive, AutoETS, "
                         "AutoTheta, CrostonSBA, ADIDA, TSB, LightGBM; plus AutoARIMA for "
                         "≤ 10 series).")] = None,
    reconcilers: Annotated[str | None, typer.Option(
        "--reconcilers", help="Comma-separated reconciliation methods to choose from by "
                              "backtest: BottomUp, MinTrace_mint_shrink, MinTrace_wls_var, "
                              "TopDown_forecast_proportions (default: BottomUp, "
                              "MinTrace_mint_shrink, TopDown_forecast_proportions).")] = None,
    n_paths: Annotated[int, typer.Option("--n-paths", min=0, max=10_000)] = 200,
    fill_missing: Annotated[bool, typer.Option(
        "--fill-missing", help="Fill missing periods inside a series with 0 (else an "
                               "error).")] = False,
    data_end: Annotated[str | None, typer.Option(
        "--data-end", help="Wide file: the last day the data cover (YYYY-MM-DD); a last "
                           "period ending after it is partial and dropped.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Backtest and forecast sales: forecast.parquet, paths.parquet, backtest_metrics.csv,
    model_choice.csv (and backtest_summary.csv, reconciliation.csv, the hierarchy)."""
    from pharmalab.forecast import ForecastSettings
    from pharmalab.forecast.outputs import load_sales, run_forecast

    if out.exists() and not out.is_dir():
        raise PharmalabInputError(f"--out {str(out)!r} is a file; expected a folder for the "
                                  "forecast files")

    data = load_sales(sales, time_col=time_col, value_col=value_col,
                      series_cols=_names(series_cols), hierarchy=_names(hierarchy),
                      fill_missing=fill_missing, data_end=data_end)
    settings = ForecastSettings(
        horizon=horizon, backtest_windows=backtest_windows, step=step,
        models=tuple(_names(models)) if models else None, n_paths=n_paths, seed=seed,
        **({"reconcilers": tuple(_names(reconcilers))} if reconcilers else {}))
    levels = ([_names(level) for level in grouped_levels.split(";")] if grouped_levels
              else ())
    with _progress() as progress:
        task = progress.add_task("forecast", total=None)
        result, written = run_forecast(
            data, out, settings, grouped_levels=levels,
            progress=lambda stage: progress.update(task, description=stage))
    for note in result.notes:
        out_console.print(f"note: {note}")
    _print_frame(result.summary, "Backtest accuracy (rolling origin; MASE, RMSSE, WAPE, "
                                 "scaled CRPS, interval coverage)")
    out_console.print("written: " + ", ".join(str(p) for p in written))


@app.command("supply")
def supply_cmd(
    forecast: Annotated[Path, typer.Option(
        "--forecast", help="Forecast folder (pharmalab forecast --out DIR).")],
    lead_time: Annotated[int, typer.Option(
        "--lead-time", help="Lead time L in periods of the series (≥ 0).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    review_period: Annotated[int, typer.Option(
        "--review-period", help="Review period R in periods (≥ 1).")] = 1,
    service_level: Annotated[float, typer.Option(
        "--service-level", help="Target, strictly between 0 and 1.")] = 0.95,
    service_type: Annotated[str, typer.Option(
        "--service-type", help="csl (cycle service level) or fill_rate.")] = "csl",
    on_hand: Annotated[Path | None, typer.Option(
        "--on-hand", help="CSV unique_id, on_hand[, on_order]: also write orders.csv.")
    ] = None,
    h: Annotated[float, typer.Option(
        "--h", help="Holding cost per unit per period.")] = 1.0,
    p: Annotated[float | None, typer.Option(
        "--p", help="Backorder cost per unit per period (default h·α/(1−α)).")] = None,
    series_level: Annotated[str, typer.Option(
        "--series-level", help="bottom (the hierarchy's bottom series) or all.")] = "bottom",
    naive_window: Annotated[int, typer.Option(
        "--naive-window", help="Periods of past demand behind the naive policy.")] = 12,
    discrete_below: Annotated[float, typer.Option(
        "--discrete-below", help="Protection-period mean below which demand is Poisson or "
                                 "negative binomial.")] = 20.0,
    series: Annotated[str | None, typer.Option(
        "--series", help="Series to draw, comma-separated (default: the 3 with the most "
                         "demand).")] = None,
    sales: Annotated[Path | None, typer.Option(
        "--sales", help="The sales file the forecast was made from (the naive policy's past "
                        "demand; default: the forecast folder's history.parquet); read with "
                        "the options below, as pharmalab forecast does.")
    ] = None,
    time_col: Annotated[str | None, typer.Option("--time-col")] = None,
    value_col: Annotated[str | None, typer.Option("--value-col")] = None,
    hierarchy: Annotated[str | None, typer.Option("--hierarchy")] = None,
    series_cols: Annotated[str | None, typer.Option("--series-cols")] = None,
    fill_missing: Annotated[bool, typer.Option("--fill-missing")] = False,
    data_end: Annotated[str | None, typer.Option("--data-end")] = None,
) -> None:
    """Inventory policies from a forecast: policy.csv, orders.csv (with --on-hand),
    backtest.csv (forecast-driven vs naive policy on the backtest windows), figures.html."""
    from pharmalab.supply import PolicySettings, run_supply

    if out.exists() and not out.is_dir():
        raise PharmalabInputError(f"--out {str(out)!r} is a file; expected a folder for the "
                                  "supply files")
    settings = PolicySettings(
        lead_time=lead_time, review_period=review_period, service_level=service_level,
        service_type=service_type, h=h, p=p, discrete_below=discrete_below,
        naive_window=naive_window, series_level=series_level)
    history = None
    if sales is not None:
        if not time_col:
            raise PharmalabInputError("--sales needs --time-col (and the other options the "
                                      "forecast was made with)")
        from pharmalab.forecast.outputs import load_sales

        history = load_sales(sales, time_col=time_col, value_col=value_col,
                             series_cols=_names(series_cols), hierarchy=_names(hierarchy),
                             fill_missing=fill_missing, data_end=data_end).frame
    with _progress() as progress:
        progress.add_task("supply", total=None)
        result, written = run_supply(forecast, out, settings, on_hand=on_hand, sales=history,
                                     series=_names(series))
    for note in result.notes:
        out_console.print(f"note: {note}")
    summary = result.backtest.summary
    shown = [c for c in ("level", "series", "windows", "target", "forecast_fill_rate_pooled",
                         "forecast_csl_pooled", "forecast_avg_on_hand",
                         "naive_fill_rate_pooled", "naive_csl_pooled", "naive_avg_on_hand",
                         "stock_ratio") if c in summary.columns]
    _print_frame(summary[shown], "Policy backtest: achieved service and average stock, "
                                 "forecast-driven vs naive (R, S) policy")
    out_console.print("written: " + ", ".join(str(p) for p in written))


@marketing_app.command("fit")
def marketing_fit(
    data: Annotated[Path, typer.Option(
        "--data", help="Panel CSV or Parquet: one row per (geo, period).")],
    date_col: Annotated[str, typer.Option("--date-col", help="Period column (weekly or "
                                                             "monthly), e.g. week.")],
    target_col: Annotated[str, typer.Option("--target-col", help="Scripts or units, e.g. "
                                                                 "scripts.")],
    channels: Annotated[str, typer.Option(
        "--channels", help="Comma-separated channels; each has a spend column "
                           "<channel><spend-suffix> in EUR.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    spend_suffix: Annotated[str, typer.Option("--spend-suffix")] = "_spend",
    geo_col: Annotated[str | None, typer.Option(
        "--geo-col", help="Region column (regions are partially pooled).")] = None,
    controls: Annotated[str | None, typer.Option(
        "--controls", help="Comma-separated control columns, e.g. "
                           "competitor_on_market.")] = None,
    constraint_col: Annotated[str | None, typer.Option(
        "--constraint-col", help="Supply constraint: 0/1 flag, or units available per row; "
                                 "capped rows are right-censored.")] = None,
    activity: Annotated[str | None, typer.Option(
        "--activity", help="Media input other than spend, channel=column comma-separated, "
                           "e.g. detailing=detailing_calls,digital=impressions (ROI stays "
                           "per EUR).")] = None,
    unit_value: Annotated[float, typer.Option(
        "--unit-value", help="EUR per unit of the target, for ROI (default 1: ROI in units "
                             "per EUR).")] = 1.0,
    holdout: Annotated[int, typer.Option(
        "--holdout", min=0, help="Last periods kept out of the fit (fit_metrics.csv).")] = 0,
    draws: Annotated[int, typer.Option("--draws", min=50, max=100_000,
                                       help="Posterior draws per chain.")] = 1000,
    chains: Annotated[int, typer.Option("--chains", min=2, max=64)] = 4,
    tune: Annotated[int | None, typer.Option(
        "--tune", min=0, max=100_000, help="Tuning steps per chain (default: --draws).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    sampler: Annotated[str, typer.Option(
        "--sampler", help="auto (nutpie when installed), nutpie or pymc.")] = "auto",
    target_accept: Annotated[float, typer.Option("--target-accept", min=0.5, max=0.999)] = 0.95,
    l_max: Annotated[int | None, typer.Option(
        "--l-max", min=1, max=104, help="Longest adstock lag in periods (default 8 weeks or "
                                        "4 months).")] = None,
    yearly_seasonality: Annotated[int, typer.Option(
        "--yearly-seasonality", min=0, max=10, help="Fourier order of the yearly cycle.")
    ] = 2,
    pooling: Annotated[str, typer.Option(
        "--pooling", help="partial (each region's curve pooled towards the channel's), "
                          "shared-shape (one decay and saturation per channel, Meridian's; "
                          "faster) or none.")] = "partial",
    censor: Annotated[bool, typer.Option(
        "--censor/--no-censor", help="Treat supply-constrained rows as right-censored.")
    ] = True,
    saturation: Annotated[str, typer.Option(
        "--saturation", help="Response curve: logistic (PyMC-Marketing's default, concave) "
                             "or hill (Meridian's; can start S-shaped).")] = "logistic",
) -> None:
    """Fit a Bayesian marketing-mix model (PyMC-Marketing): roi.csv, contributions.parquet,
    response_curves.parquet, adstock.csv, latent_demand.parquet, diagnostics.csv,
    fit_metrics.csv, model/ and figures.html. Exits 1 if the sampler did not converge."""
    from pharmalab.marketing import MMMSettings, read_panel
    from pharmalab.marketing.outputs import run_fit

    _writable_folder(out, "the marketing files")
    panel = read_panel(data, date_col=date_col, target_col=target_col,
                       channels=_strict_names(channels, "--channels"),
                       spend_suffix=spend_suffix, geo_col=geo_col,
                       controls=_names(controls), constraint_col=constraint_col,
                       activity=_pairs(activity, "--activity"))
    settings = MMMSettings(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                           target_accept=target_accept, l_max=l_max,
                           yearly_seasonality=yearly_seasonality, holdout=holdout,
                           unit_value=unit_value, pooling=pooling, censor=censor,
                           saturation=saturation)
    with _progress() as progress:
        task = progress.add_task("marketing fit", total=None)
        result = run_fit(panel, settings, out,
                         progress=lambda stage: progress.update(task, description=stage))
    fit = result.fit
    for note in fit.notes:
        out_console.print(f"note: {note}", markup=False, highlight=False)
    _print_frame(result.roi[["channel", "spend", "incremental_units", "roi", "roi_lo",
                             "roi_hi", "mroi"]],
                 f"ROI per channel (value {unit_value:g} EUR per unit; 90% intervals)")
    _print_frame(result.fit_metrics, "Fit accuracy of the posterior mean (MAPE, WAPE)")
    out_console.print("written: " + ", ".join(str(p) for p in result.written))
    if fit.convergence.converged:
        out_console.print(fit.convergence.banner(), style="green", markup=False, soft_wrap=True)
    else:
        console.print(fit.convergence.banner(), style="bold red", markup=False, soft_wrap=True)
        raise _Exit(1)


@marketing_app.command("allocate")
def marketing_allocate(
    model: Annotated[Path, typer.Option(
        "--model", help="A fit's output folder (pharmalab marketing fit --out DIR).")],
    budget: Annotated[float, typer.Option("--budget", help="Total spend over the plan, "
                                                           "EUR.")],
    periods: Annotated[int, typer.Option("--periods", min=1, max=520,
                                         help="Plan length in periods of the panel.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    bounds: Annotated[Path | None, typer.Option(
        "--bounds", help="CSV channel,min,max (EUR over the plan); default ±30% of the "
                         "current split.")] = None,
    supply_capacity: Annotated[Path | None, typer.Option(
        "--supply-capacity", help="CSV ds[,geo],capacity (units per period), or a pharmalab "
                                  "supply output folder with orders.csv.")] = None,
    by_geo: Annotated[bool | None, typer.Option(
        "--by-geo/--by-channel", help="Also choose each channel's split over regions "
                                      "(default: when the capacity is given per region).")
    ] = None,
    n_paths: Annotated[int, typer.Option("--n-paths", min=1, max=10_000,
                                         help="Sample paths per series in forecast/.")] = 200,
) -> None:
    """Split a budget over the channels for the most expected incremental units (within
    supply capacity when given): allocation.csv, allocation_summary.json and forecast/ (the
    plan's demand, for pharmalab supply --forecast)."""
    from pharmalab.marketing.outputs import run_allocate

    _writable_folder(out, "the allocation files")
    with _progress() as progress:
        progress.add_task("marketing allocate", total=None)
        allocation, fit, written = run_allocate(model, budget, periods, out, bounds=bounds,
                                                capacity=supply_capacity, by_geo=by_geo,
                                                n_paths=n_paths)
    for note in allocation.notes:
        out_console.print(f"note: {note}", markup=False, highlight=False)
    _print_frame(allocation.table[["channel", "current_spend", "recommended_spend", "change",
                                   "expected_incremental_units", "lo", "hi"]],
                 f"Budget allocation over {periods} periods (expected incremental units, 90% "
                 "interval)")
    out_console.print("written: " + ", ".join(str(p) for p in written))
    if not fit.convergence.converged:
        console.print("the model did not converge: " + fit.convergence.banner(),
                      style="bold red", markup=False, soft_wrap=True)
        raise _Exit(1)


def _writable_folder(out: Path, what: str) -> None:
    """``--out`` is a folder that can be created, checked before minutes of work."""
    if out.exists() and not out.is_dir():
        raise PharmalabInputError(f"--out {str(out)!r} is a file; expected a folder for "
                                  f"{what}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PharmalabInputError(f"--out {str(out)!r}: cannot create the folder "
                                  f"({exc.strerror or exc})") from None


def _strict_names(text: str, option: str) -> list[str]:
    """Comma-separated names where an empty one is a typo, not something to skip."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise PharmalabInputError(f"{option}: empty name in {text!r}; expected names "
                                  "separated by single commas")
    return names


def _pairs(text: str | None, option: str) -> dict[str, str] | None:
    """``a=x,b=y`` → ``{"a": "x", "b": "y"}``."""
    if text is None:
        return None
    pairs = {}
    for item in _names(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise PharmalabInputError(f"{option}: expected channel=column pairs separated by "
                                      f"commas, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PharmalabInputError(f"expected comma-separated names, got {text!r}")
    return names


@demand_app.command("patients")
def demand_patients(
    cdm: CdmURL,
    concept_id: Annotated[list[int], typer.Option(
        "--concept-id", help="Drug concept (repeatable: one series each; descendants "
                             "included).")],
    out: Annotated[Path, typer.Option(help="Output folder (a forecast folder).")],
    indication_cohort: Annotated[int | None, typer.Option(
        "--indication-cohort", help="cohort_definition_id the starters must have entered "
                                    "on or before their first fill.")] = None,
    washout: Annotated[int, typer.Option(
        min=0, help="Days of observation without the drug before a first fill.")] = 365,
    permissible_gap: Annotated[int, typer.Option(
        "--permissible-gap", min=0, help="Days that keep a treatment episode going.")] = 60,
    measure: Annotated[str, typer.Option(
        help="Unit of demand: days_supply, exposures (fills) or quantity.")] = "days_supply",
    horizon: Annotated[int, typer.Option(min=1, max=120, help="Months ahead.")] = 12,
    backtest_windows: Annotated[int, typer.Option(
        "--backtest-windows", min=0, max=24,
        help="Rolling-origin windows: patient flow vs the sales-series forecast.")] = 3,
    scenario: Annotated[Path | None, typer.Option(
        help="Scenario levers (TOML or JSON): starter_growth, competitor_launch/_share, "
             "discontinuation_reduction/support_from, dose_factor/dose_from.")] = None,
    paths: Annotated[int, typer.Option(
        "--paths", min=50, max=2000, help="Sample paths per drug.")] = 200,
    models: Annotated[str | None, typer.Option(
        "--models", help="Comma-separated models for the starters, the other patients and "
                         "the sales series (default: SeasonalNaive, AutoETS, AutoTheta; any "
                         "of pharmalab forecast's).")] = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    results_schema: ResultsSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Patient-flow demand forecast: new starters × share on treatment × units per
    patient-month, backtested against the CDM's dispensing beside the sales-series forecast;
    writes a forecast folder (forecast.parquet, paths.parquet, backtest_metrics.csv, …) that
    `pharmalab supply` reads, plus starters.csv, persistence.csv, flow_check.csv and
    backtest_comparison.csv."""
    from pharmalab.demand import FlowSettings
    from pharmalab.demand.forecast import DEFAULT_MODELS
    from pharmalab.demand.outputs import demand_summary, read_scenario, run_patient_demand
    from pharmalab.forecast import ForecastSettings

    _cohort_ids("--concept-id", *concept_id)
    if out.exists() and not out.is_dir():
        raise PharmalabInputError(f"--out {str(out)!r} is a file; expected a folder")
    levers = read_scenario(scenario) if scenario is not None else None
    flow_settings = FlowSettings(washout=washout, permissible_gap=permissible_gap,
                                 measure=measure, indication_cohort=indication_cohort)
    settings = ForecastSettings(horizon=horizon, backtest_windows=max(backtest_windows, 1),
                                models=tuple(_names(models)) if models else DEFAULT_MODELS,
                                n_paths=paths)
    db = _char_db(cdm, cdm_schema, vocab_schema, results_schema)
    with console.status("patient flow") as status:
        run = run_patient_demand(
            db, out, concept_id, flow_settings=flow_settings,
            settings=settings, scenario=levers,
            min_cell_count=min_cell_count, progress=status.update,
            backtest=bool(backtest_windows))
    if len(run.comparison):
        _print_frame(run.comparison.groupby(["unique_id", "method"], sort=False)[
            ["mase", "scaled_crps", "coverage_80", "coverage_95"]].mean().round(3)
            .reset_index(),
            "Backtest: patient flow vs sales series vs combination (mean over windows; the "
            "scenario changes only the forecast)")
    _print_frame(demand_summary(run, min_cell_count), f"Demand forecast, next {horizon} months "
                                      f"({measure}; scenario: {levers.name if levers else 'base'})")
    for made, _ in run.made:
        for note in made.notes:
            out_console.print(f"note: {note}", markup=False, highlight=False)
    out_console.print(f"written: {len(run.written)} files in {out} (forecast.parquet, "
                      "flow_check.csv, backtest_comparison.csv, …)")


@journey_app.command("pdc")
def journey_pdc(
    cdm: CdmURL,
    concept_id: Annotated[list[int], typer.Option(
        "--concept-id", help="Drug concept of the class (repeatable; descendants included).")],
    period_start: Annotated[str, typer.Option("--period-start", help="YYYY-MM-DD.")],
    period_end: Annotated[str, typer.Option("--period-end", help="YYYY-MM-DD.")],
    min_fills: Annotated[int, typer.Option("--min-fills", min=1, max=100_000)] = 2,
    min_days_before_end: Annotated[int, typer.Option(
        "--min-days-before-end", min=0, max=1_000_000)] = 91,
    threshold: Annotated[float, typer.Option("--threshold", min=0, max=1)] = 0.8,
    permissible_gap: Annotated[int, typer.Option(
        "--permissible-gap", min=0, help="Days (persistence episodes).")] = 60,
    support_list: Annotated[bool, typer.Option(
        "--support-list/--no-support-list",
        help="Write support_list.csv (keyed pseudonyms of patients with low PDC or a "
             "discontinued episode).")] = True,
    key_file: KeyFile = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("."),
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """PQA Proportion of Days Covered, MPR and persistence of a drug class: pdc_summary.csv,
    persistence.csv and support_list.csv (pseudonyms only)."""
    from pharmalab.journey.outputs import run_journey

    _cohort_ids("--concept-id", *concept_id)
    db = _char_db(cdm, cdm_schema, vocab_schema, None)
    written, blocks = run_journey(
        db, out, concept_id, period_start, period_end, min_fills=min_fills,
        min_days_before_end=min_days_before_end, threshold=threshold,
        permissible_gap=permissible_gap, support=support_list, key_file=key_file,
        min_cell_count=min_cell_count)
    _print_frame(blocks["pdc_summary"], "PDC (PQA)")
    _print_frame(blocks["persistence"], "Persistence of the first episode")
    out_console.print(blocks["support_note"])
    out_console.print("written: " + ", ".join(str(p) for p in written))


@journey_app.command("persistence")
def journey_persistence(
    cdm: CdmURL,
    concept_id: Annotated[list[int], typer.Option(
        "--concept-id", help="Drug concept of the class (repeatable; descendants included).")],
    permissible_gap: Annotated[int, typer.Option(
        "--permissible-gap", min=0, help="Largest gap in days that keeps an episode.")] = 60,
    follow_up: Annotated[int | None, typer.Option(
        "--follow-up", min=1, help="Days of follow-up from the first fill (default: to "
                                   "observation end).")] = None,
    append_gap: Annotated[bool, typer.Option(
        "--append-gap", help="Add the permissible gap to the end of a discontinued episode "
                             "(AdhereR's maximum.permissible.gap.append.to.episode).")] = False,
    episodes: Annotated[bool, typer.Option(
        "--episodes/--no-episodes",
        help="Write episodes.csv: every treatment episode as AdhereR gives them, by keyed "
             "pseudonym, dates shifted per person.")] = True,
    key_file: KeyFile = None,
    date_shift_days: Annotated[int, typer.Option(
        "--date-shift-days", min=0, max=3650,
        help="episodes.csv: each person's dates move by a keyed offset within ± this.")] = 180,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("."),
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Persistence of the first treatment episode (AdhereR episodes) at 6 and 12 months and
    the Kaplan–Meier of time to discontinuation: persistence.csv, persistence_km.csv and
    episodes.csv (every episode, pseudonymized)."""
    from pharmalab import journey
    from pharmalab.atomic import write_csv
    from pharmalab.extract import read_key
    from pharmalab.journey.outputs import write_episodes

    key = read_key(key_file=key_file) if episodes else None  # a bad key stops us first
    db = _char_db(cdm, cdm_schema, vocab_schema, None)
    result = journey.persistence(db, concept_id, permissible_gap=permissible_gap,
                                 follow_up=follow_up, append_gap=append_gap,
                                 min_cell_count=min_cell_count)
    written = [write_csv(out / "persistence.csv", result.table),
               write_csv(out / "persistence_km.csv", result.km)]
    if episodes:
        path, n = write_episodes(db, out, concept_id, permissible_gap=permissible_gap,
                                 follow_up=follow_up, key=key,
                                 date_shift_days=date_shift_days, append_gap=append_gap)
        written.append(path)
        if not key.stored:
            console.print(f"note: {n:,} episodes by pseudonym; the key was random and not "
                          "stored, so nobody can link them back (give --key-file to link them)",
                          markup=False)
    _print_frame(result.table, "Persistence of the first episode")
    median = "not reached" if result.median_days is None else f"{result.median_days:g} days"
    out_console.print(f"median time to discontinuation: {median}")
    out_console.print("written: " + ", ".join(str(p) for p in written))


@journey_app.command("pathways")
def journey_pathways(
    cdm: CdmURL,
    target_id: Annotated[int, typer.Option("--target-id", help="Target cohort id.")],
    event_id: Annotated[list[int], typer.Option(
        "--event-id", help="Event cohort id (repeatable); labelled by its cohort name.")],
    era_collapse_size: Annotated[int, typer.Option("--era-collapse-size", min=0)] = 30,
    combination_window: Annotated[int, typer.Option("--combination-window", min=0)] = 30,
    min_era_duration: Annotated[int, typer.Option("--min-era-duration", min=0)] = 0,
    max_path_length: Annotated[int, typer.Option("--max-path-length", min=1)] = 5,
    filter_: Annotated[str, typer.Option(
        "--filter", help="first, changes or all (TreatmentPatterns filterTreatments).")
    ] = "first",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("."),
    results_schema: ResultsSchema = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Treatment pathways (TreatmentPatterns semantics) of a target cohort: pathways.csv."""
    from pharmalab import journey
    from pharmalab.atomic import write_csv

    _cohort_ids("--target-id/--event-id", target_id, *event_id)
    db = _char_db(cdm, cdm_schema, vocab_schema, results_schema)
    from pharmalab.study.steps import _require_cohorts

    _require_cohorts(db, [target_id, *event_id])
    names = _cohort_names(db)
    settings = journey.PathwaySettings(
        era_collapse_size=era_collapse_size, combination_window=combination_window,
        min_era_duration=min_era_duration, max_path_length=max_path_length, filter=filter_)
    result = journey.treatment_pathways(
        db, target_id, {e: names.get(e, f"cohort {e}") for e in event_id}, settings,
        min_cell_count=min_cell_count)
    path = write_csv(out / "pathways.csv", result.table)
    _print_frame(result.table, f"Pathways of cohort {target_id}")
    out_console.print(f"written: {path}")


def _cohort_ids(option: str, *ids) -> None:
    for value in ids:
        if value is not None and not 0 <= value < 2**63:
            raise PharmalabInputError(f"{option}: id {value} is outside 0 … 2^63 − 1")


def _cohort_names(db) -> dict[int, str]:
    """Cohort names recorded by ``pharmalab cohorts generate`` (``cohort_generation``)."""
    if not db.has_table("cohort_generation", "results"):
        return {}
    names = db.table("cohort_generation", "results").select("cohort_id", "cohort_name")
    return {int(r.cohort_id): str(r.cohort_name)
            for r in names.to_pandas().itertuples() if r.cohort_name}


def _char_db(cdm: str, cdm_schema, vocab_schema, results_schema):
    from pharmalab.engine import database

    return database(cdm, cdm_schema=cdm_schema, vocab_schema=vocab_schema,
                    results_schema=results_schema, create=False)


@app.command()
def characterize(
    cdm: CdmURL,
    target_id: Annotated[int, typer.Option("--target-id", help="Target cohort id.")],
    comparator_id: Annotated[int | None, typer.Option(
        "--comparator-id", help="Comparator cohort id: adds table_one.csv with SMDs.")] = None,
    condition_table: Annotated[str, typer.Option(
        "--condition-table", help="condition_era or condition_occurrence.")] = "condition_era",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("."),
    results_schema: ResultsSchema = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Baseline characteristics (FeatureExtraction-style) of a cohort; Table 1 with SMDs
    against a comparator. Writes baseline_characteristics.csv [and table_one.csv]."""
    from pharmalab import characterize as char
    from pharmalab.atomic import write_csv
    from pharmalab.characterize import outputs

    _cohort_ids("--target-id/--comparator-id", target_id, comparator_id)
    if comparator_id == target_id:
        raise PharmalabInputError("--comparator-id is the same cohort as --target-id")
    db = _char_db(cdm, cdm_schema, vocab_schema, results_schema)
    ids = [target_id] + ([comparator_id] if comparator_id is not None else [])
    baseline = char.baseline_characteristics(db, ids, condition_table=condition_table,
                                             min_cell_count=min_cell_count)
    written = [write_csv(out / outputs.BASELINE_FILE, baseline)]
    shown = char.table_one_summary(baseline)
    if comparator_id is not None:
        one = char.table_one(db, target_id, comparator_id, condition_table=condition_table,
                             min_cell_count=min_cell_count)
        written.append(write_csv(out / outputs.TABLE_ONE_FILE, one))
        shown = char.table_one_summary(one)
    elif (out / outputs.TABLE_ONE_FILE).is_file():
        (out / outputs.TABLE_ONE_FILE).unlink()  # an older comparison is not this run's
    _print_frame(shown, "Table 1" if comparator_id is not None else "Baseline characteristics")
    out_console.print("written: " + ", ".join(str(p) for p in written))


@app.command()
def incidence(
    cdm: CdmURL,
    design: Annotated[Path | None, typer.Option(
        "--design", help="A CohortIncidence design (JSON); replaces the options below.")] = None,
    target_id: Annotated[list[int] | None, typer.Option(
        "--target-id", help="Target cohort id (repeatable).")] = None,
    outcome_id: Annotated[list[int] | None, typer.Option(
        "--outcome-id", help="Outcome cohort id (repeatable).")] = None,
    tar: Annotated[list[str] | None, typer.Option(
        "--tar", help="Time at risk START:END (repeatable); default start+0:end+0, "
                      "i.e. cohort start to cohort end.")] = None,
    clean_window: Annotated[int, typer.Option(
        "--clean-window", min=0, max=1_000_000,
        help="Days after an outcome not at risk.")] = 0,
    min_days_at_risk: Annotated[int, typer.Option(
        "--min-days-at-risk", min=1, max=1_000_000,
        help="Drop at-risk periods shorter than this many days (CohortMethod's "
             "minDaysAtRisk; default 1 as CohortIncidence).")] = 1,
    by_age: Annotated[bool, typer.Option("--by-age", help="Strata by age group.")] = False,
    by_gender: Annotated[bool, typer.Option("--by-gender", help="Strata by gender.")] = False,
    by_year: Annotated[bool, typer.Option("--by-year", help="Strata by start year.")] = False,
    age_breaks: Annotated[str | None, typer.Option(
        "--age-breaks", help="Age group breaks, e.g. 18,35,65.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("."),
    results_schema: ResultsSchema = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Incidence proportions and rates with OHDSI CohortIncidence semantics; writes
    incidence_summary.csv."""
    from pharmalab import characterize as char
    from pharmalab.characterize import outputs

    db = _char_db(cdm, cdm_schema, vocab_schema, results_schema)
    if design is not None:
        if (target_id or outcome_id or tar or clean_window or by_age or by_gender or by_year
                or age_breaks):
            raise PharmalabInputError(
                "--design holds the targets, outcomes, windows and strata: give either "
                "--design or --target-id/--outcome-id/--tar/--clean-window/--by-*/--age-breaks")
        the_design = char.read_design(design)
    else:
        if not target_id or not outcome_id:
            raise PharmalabInputError("give --design, or --target-id and --outcome-id")
        _cohort_ids("--target-id/--outcome-id", *target_id, *outcome_id)
        tars = [char.TimeAtRisk.parse(t, id=i) for i, t in enumerate(tar or ["start+0:end+0"],
                                                                      start=1)]
        strata = char.Strata(by_age=by_age, by_gender=by_gender, by_year=by_year,
                             **({"age_breaks": _int_list(age_breaks, "--age-breaks")}
                                if age_breaks else {}))
        the_design = char.simple_design(target_id, outcome_id, tars, clean_window=clean_window,
                                        strata=strata, names=_cohort_names(db))
    if min_days_at_risk != 1:
        the_design = dataclasses.replace(the_design, min_days_at_risk=min_days_at_risk)
    result = char.incidence_rates(db, the_design, min_cell_count=min_cell_count)
    written = outputs.write_incidence(result, out)
    _print_frame(outputs.incidence_overview(result.summary), "Incidence (all persons)")
    if result.empty_cohorts:
        console.print(f"warning: cohorts {result.empty_cohorts} of the design have no rows "
                      "(not generated?): they count as empty")
    out_console.print("written: " + ", ".join(str(p) for p in written))


@app.command()
def survival(
    cdm: CdmURL,
    target_id: Annotated[int, typer.Option("--target-id", help="Target cohort id.")],
    outcome_id: Annotated[int, typer.Option("--outcome-id", help="Outcome cohort id.")],
    comparator_id: Annotated[int | None, typer.Option(
        "--comparator-id", help="Second cohort: curves side by side and a log-rank test.")
    ] = None,
    tar: Annotated[str, typer.Option(
        "--tar", help="Time at risk START:END, e.g. start+0:end+0.")] = "start+0:end+0",
    min_days_at_risk: Annotated[int, typer.Option(
        "--min-days-at-risk", min=1, max=1_000_000,
        help="Leave out entries whose window is shorter than this many days "
             "(CohortMethod's minDaysAtRisk).")] = 1,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("."),
    results_schema: ResultsSchema = None,
    cdm_schema: CdmSchema = None,
    vocab_schema: VocabSchema = None,
    min_cell_count: MinCellCount = 5,
) -> None:
    """Kaplan–Meier from cohort entry to the first outcome (censored at the end of the time
    at risk or death); log-rank test for two cohorts. Writes km_survival.csv and
    survival_summary.json."""
    from pharmalab import characterize as char
    from pharmalab.characterize import outputs

    window = char.TimeAtRisk.parse(tar)
    _cohort_ids("--target-id/--comparator-id/--outcome-id", target_id, comparator_id, outcome_id)
    if comparator_id == target_id:
        raise PharmalabInputError("--comparator-id is the same cohort as --target-id")
    ids = [target_id] + ([comparator_id] if comparator_id is not None else [])
    db = _char_db(cdm, cdm_schema, vocab_schema, results_schema)
    result = char.survival(db, ids, outcome_id, window, min_days_at_risk=min_days_at_risk,
                           min_cell_count=min_cell_count)
    written = outputs.write_survival(result, out)
    if int(result.unsuppressed_table.n_events.sum()) == 0:
        console.print(f"warning: no outcome (cohort {outcome_id}) in the time at risk of any "
                      "entry; is the outcome cohort generated?")
    for cohort_id, median in result.medians.items():
        out_console.print(f"cohort {cohort_id}: median days to outcome "
                          f"{'not reached' if median is None else median}")
    if result.log_rank is not None:
        out_console.print(f"log-rank chi² = {result.log_rank.chi2:.3f} (1 df), "
                          f"p = {result.log_rank.p_value:.3g}")
    out_console.print("written: " + ", ".join(str(p) for p in written))


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise PharmalabInputError(f"{option}: expected whole numbers separated by commas, "
                                  f"got {text!r}") from None


def _print_frame(frame, title: str, max_rows: int = 40) -> None:
    import pandas as pd

    frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_suppressed")])
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.head(max_rows).itertuples(index=False):
        table.add_row(*(str(v) if column.endswith("_id") and not pd.isna(v) else
                        _fmt(round(v, 3) if isinstance(v, float) else v)
                        for column, v in zip(frame.columns, row, strict=True)))
    out_console.print(table)
    if len(frame) > max_rows:
        out_console.print(f"… {len(frame) - max_rows} more rows in the file")


def _fmt(value) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if hasattr(value, "__int__") and not isinstance(value, (str, float, bool)):
        return f"{int(value):,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "—"
    return str(value)


def main() -> None:
    """Entry point of the ``pharmalab`` script."""
    # SIGTERM unwinds like an error, so temporary files and folders are removed on the way.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # Typer's standalone mode reports usage errors itself (usage line, exit 2); what reaches
    # here is pharmalab's own errors and the system's.
    try:
        app()
    except PharmalabInputError as exc:
        _error(str(exc))
    except EngineConnectionError as exc:  # not the input's fault: exit 1, as a failed run
        _error(str(exc), code=1)
    except _Exit as exc:
        sys.exit(exc.code)
    except KeyboardInterrupt:
        _interrupted()
    except RuntimeError as exc:  # DuckDB reports Ctrl-C during a query as this
        if "interrupted" in str(exc).lower():
            _interrupted()
        raise
    except OSError as exc:  # a folder that cannot be written, a file that cannot be read
        where = f" {exc.filename!r}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")


def _interrupted() -> None:
    console.print("interrupted (files are written whole or not at all)", markup=False,
                  highlight=False)
    sys.exit(130)


def _error(message: str, code: int = 2) -> None:
    lines = message.strip().splitlines() or ["unknown error"]
    console.print(f"error: {' '.join(line.strip() for line in lines)}", markup=False,
                  highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
