"""What each page shows, read from a results folder: sections of tables and figures, built from
the files the study wrote (no computation beyond arranging them for display)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from pharmalab.privacy import suppress
from pharmalab.web import figures
from pharmalab.web.tables import Table, csv, to_table
from pharmalab.web.workspace import Entry, NotInWorkspace, Workspace, extractions


@dataclass
class Section:
    """One part of a study page (an anchor in its table of contents)."""

    key: str
    title: str
    status: str = "ok"
    note: str = ""
    facts: dict = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str, dict]] = field(default_factory=list)  # (id, caption, figure)
    links: list[tuple[str, str]] = field(default_factory=list)          # (label, url)


def _read(ws: Workspace, entry: Entry, rel: str) -> pd.DataFrame | None:
    try:
        return csv(ws.resolve(entry, rel))
    except NotInWorkspace:
        return None


def _json(ws: Workspace, entry: Entry, rel: str) -> dict | None:
    try:
        return json.loads(ws.resolve(entry, rel).read_text(encoding="utf-8"))
    except (NotInWorkspace, ValueError):
        return None


def steps(entry: Entry) -> list[dict]:
    """The manifest's steps: name, title, status, seconds, error."""
    listed = entry.manifest.get("steps")
    # A hand-edited or foreign manifest may hold anything: show what reads as steps.
    return [{k: s.get(k) for k in ("name", "title", "status", "seconds", "error")}
            for s in (listed if isinstance(listed, list) else []) if isinstance(s, dict)]


def cohort_names(ws: Workspace, entry: Entry) -> dict[int, str]:
    """Cohort names as the study's results name them (incidence and extraction outputs)."""
    names: dict[int, str] = {}
    incidence = _read(ws, entry, "characterize/incidence_summary.csv")
    if incidence is not None:
        for id_col, name_col in (("target_cohort_definition_id", "target_name"),
                                 ("outcome_cohort_definition_id", "outcome_name")):
            if {id_col, name_col} <= set(incidence.columns):
                for cid, name in zip(incidence[id_col], incidence[name_col], strict=True):
                    names.setdefault(int(cid), str(name))
    return names


def attrition(ws: Workspace, entry: Entry, min_cell_count: int) -> dict[int, pd.DataFrame]:
    """Per cohort with inclusion rules: ``stage, persons, lost`` as ATLAS's attrition view shows
    it — the qualifying persons (CohortGenerator's ``cohort_summary_stats.base_count``, best
    event per person, ``mode_id`` 1), then after each rule in sequence the persons meeting that
    rule and every earlier one (sums of ``cohort_inc_result`` over the rule masks)."""
    summary = _read(ws, entry, "cohorts/cg_cohort_summary_stats.csv")
    masks = _read(ws, entry, "cohorts/cg_cohort_inc_result.csv")
    rules = _read(ws, entry, "cohorts/cg_cohort_inclusion.csv")
    if summary is None or masks is None or rules is None:
        return {}
    out = {}
    for cohort, rows in rules.sort_values("rule_sequence").groupby("cohort_definition_id"):
        base = summary[(summary.cohort_definition_id == cohort) & (summary.mode_id == 1)]
        cohort_masks = masks[(masks.cohort_definition_id == cohort) & (masks.mode_id == 1)]
        if base.empty:
            continue
        stages = [("Qualifying persons", base.base_count.iloc[0])]
        for seq, name in zip(rows.rule_sequence, rows.name, strict=True):
            needed = (1 << (int(seq) + 1)) - 1  # rules 0..seq all met
            met = cohort_masks[(cohort_masks.inclusion_rule_mask.astype(int) & needed) == needed]
            stages.append((f"{int(seq) + 1}. {name}", met.person_count.sum()))
        frame = pd.DataFrame(stages, columns=["stage", "persons"])
        frame["lost"] = (frame.persons.shift(1) - frame.persons).astype("Int64")
        frame = suppress(frame, ["persons", "lost"], min_cell_count)
        out[int(cohort)] = frame
    return out


def study_sections(ws: Workspace, entry: Entry) -> list[Section]:
    """Every section the study's results support, in the order of the study's steps."""
    mcc = int(entry.manifest.get("min_cell_count") or 5)
    names = cohort_names(ws, entry)
    builders = [_cdm, _cohorts, _baseline, _incidence, _survival, _extraction, _journey,
                _pathways, _sales, _forecast, _supply, _marketing, _demand]
    sections = []
    for build in builders:
        section = build(ws, entry, names, mcc)
        if section is not None:
            sections.append(section)
    return sections


def _cdm(ws, entry, names, mcc):
    summary = _json(ws, entry, "cdm/cdm_summary.json")
    check = _read(ws, entry, "cdm/cdm_check.csv")
    if summary is None and check is None:
        return None
    s = Section("cdm", "CDM and its checks", facts={k: v for k, v in (summary or {}).items()
                                                     if not isinstance(v, (list, dict))})
    if check is not None:
        s.tables.append(to_table(check, "CDM checks", file="cdm/cdm_check.csv",
                                 filterable=True))
    tables = _read(ws, entry, "cdm/cdm_tables.csv")
    if tables is not None:
        s.tables.append(to_table(tables, "Rows per table", file="cdm/cdm_tables.csv"))
    return s


def _cohorts(ws, entry, names, mcc):
    counts = _read(ws, entry, "cohorts/cg_cohort_count.csv")
    if counts is None:
        return None
    counts.insert(2, "cohort_name", [names.get(int(c), "") for c in counts.cohort_id])
    s = Section("cohorts", "Cohorts", note="CohortGenerator's counts; the attrition of each "
                "cohort with inclusion rules is the funnel of its rules in sequence.")
    s.tables.append(to_table(counts, "Cohort counts", file="cohorts/cg_cohort_count.csv"))
    for cohort, frame in attrition(ws, entry, mcc).items():
        label = names.get(cohort, f"cohort {cohort}")
        shown = frame.dropna(subset=["persons"])
        s.figures.append((f"attrition-{cohort}", f"Attrition of cohort {cohort} ({label})",
                          figures.funnel(shown, f"Attrition, cohort {cohort}")))
        s.tables.append(to_table(frame, f"Attrition, cohort {cohort} ({label})",
                                 file="cohorts/cg_cohort_inc_stats.csv"))
    return s


def _baseline(ws, entry, names, mcc):
    one = _read(ws, entry, "characterize/table_one.csv")
    file = "characterize/table_one.csv"
    if one is None:
        one = _read(ws, entry, "characterize/baseline_characteristics.csv")
        file = "characterize/baseline_characteristics.csv"
    if one is None:
        return None
    s = Section("baseline", "Baseline characteristics (Table 1)", note=(
        "FeatureExtraction-style covariates at the index date; counts under the minimum cell "
        "count show as —. Click a column to sort, type to filter by covariate."))
    keep = [c for c in ("covariate_name", "analysis_name", "window", "target_count",
                        "target_count_suppressed", "target_proportion", "target_mean",
                        "comparator_count", "comparator_count_suppressed",
                        "comparator_proportion", "comparator_mean", "smd", "smd_note",
                        "cohort_definition_id", "count", "count_suppressed", "proportion",
                        "mean", "sd", "n") if c in one.columns]
    s.tables.append(to_table(one[keep], "Table 1", file=file, filterable=True))
    return s


def _incidence(ws, entry, names, mcc):
    summary = _read(ws, entry, "characterize/incidence_summary.csv")
    if summary is None:
        return None
    s = Section("incidence", "Incidence rates", note="OHDSI CohortIncidence semantics; rates "
                "per 1,000 person-years with exact Poisson 95% limits.")
    strata = [c for c in ("age_group_name", "gender_name", "start_year") if c in summary]
    overall = summary
    for c in strata:
        overall = overall[overall[c].isna()]
    rate, lo, hi = ("incidence_rate_p1000py", "incidence_rate_p1000py_lower_95",
                    "incidence_rate_p1000py_upper_95")
    if {rate, lo, hi} <= set(summary.columns) and not overall.empty:
        shown = overall.assign(label=[f"{t} → {o}" for t, o in
                                      zip(overall.target_name, overall.outcome_name,
                                          strict=True)],
                               tar=[f"TAR {t}" for t in overall.tar_id])
        s.figures.append(("incidence-overall", "Incidence rate, all persons (exact Poisson "
                          "95% limits)", figures.bars(shown, "label", rate,
                                                      "Incidence per 1,000 person-years",
                                                      error=(lo, hi), colour="tar")))
    for c in strata:
        # one stratum at a time: the rows where only this stratum column is set
        by = summary[summary[c].notna()]
        for other in strata:
            if other != c:
                by = by[by[other].isna()]
        if not by.empty and rate in by:
            shown = by.assign(label=by[c].astype(str),
                              who=[f"{t}, TAR {k}" for t, k in
                                   zip(by.target_name, by.tar_id, strict=True)])
            name = c.replace("_name", "").replace("_", " ")
            s.figures.append((f"incidence-{c}", f"Incidence per 1,000 person-years by {name}",
                              figures.bars(shown, "label", rate, f"Incidence by {name}",
                                           colour="who")))
    keep = [c for c in ("target_cohort_definition_id", "target_name", "outcome_name", "tar_id",
                        "tar_start_with", "tar_start_offset", "tar_end_with", "tar_end_offset",
                        "clean_window", "age_group_name", "gender_name", "start_year",
                        "persons_at_risk", "persons_at_risk_suppressed", "person_years",
                        "person_outcomes", "person_outcomes_suppressed", "outcomes",
                        "outcomes_suppressed", "incidence_proportion_p100p", rate, lo, hi)
            if c in summary.columns]
    s.tables.append(to_table(summary[keep], "Incidence by stratum",
                             note="incidence_summary.csv has every CohortIncidence column.",
                             file="characterize/incidence_summary.csv", filterable=True))
    return s


def _survival(ws, entry, names, mcc):
    km = _read(ws, entry, "characterize/km_survival.csv")
    if km is None:
        return None
    summary = _json(ws, entry, "characterize/survival_summary.json") or {}
    facts = {"time at risk": summary.get("time_at_risk", "")}
    for cohort, median in (summary.get("median_survival_days") or {}).items():
        facts[f"median days, {names.get(int(cohort), cohort)}"] = (
            "not reached" if median is None else median)
    log_rank = summary.get("log_rank") or {}
    if log_rank:
        facts["log-rank chi²"] = round(log_rank.get("chi2", float("nan")), 3)
        facts["log-rank p"] = f"{log_rank.get('p_value', float('nan')):.3g}"
    s = Section("survival", "Survival (Kaplan–Meier)", facts=facts)
    s.figures.append(("km", "Kaplan–Meier with 95% limits",
                      figures.kaplan_meier(km, names)))
    at_risk = []
    for cohort, rows in km.groupby("cohort_definition_id", sort=False):
        row = {"cohort": names.get(int(cohort), f"cohort {cohort}")}
        for day in (0, 90, 180, 270, 365):
            # persons at risk at `day`: exit time ≥ day (the next row's n_at_risk, as R's
            # summary.survfit gives it), else those left after the last row's exits
            later = rows[rows.time >= day]
            if not later.empty:
                row[f"day {day}"] = later.n_at_risk.iloc[0]
            else:
                last = rows.iloc[-1]
                row[f"day {day}"] = (last.n_at_risk - _zero(last.n_events)
                                     - _zero(last.n_censored))
        at_risk.append(row)
    frame = pd.DataFrame(at_risk)
    frame = suppress(frame, [c for c in frame.columns if c.startswith("day")], mcc)
    s.tables.append(to_table(frame, "Numbers at risk", file="characterize/km_survival.csv"))
    return s


def _zero(value) -> float:
    return 0 if pd.isna(value) else value


def _extraction(ws, entry, names, mcc):
    found = extractions(entry)
    if not found:
        return None
    s = Section("extraction", "Patient-level extractions", note=(
        "Listed with their counts only: patient-level rows are never served by this server."))
    for item in found:
        manifest = item["manifest"]
        tables = manifest.get("tables") or {}
        frame = pd.DataFrame([{"table": t, "rows": v.get("rows"), "persons": v.get("persons")}
                              for t, v in tables.items()])
        if frame.empty:
            continue
        frame = suppress(frame, ["rows", "persons"], mcc)
        cohort = manifest.get("cohort") or {}
        window = manifest.get("window") or {}
        deid = manifest.get("deidentification") or {}
        s.facts.update({
            f"{item['folder']}: cohort": f"{cohort.get('cohort_id')} "
                                         f"({cohort.get('cohort_name', '')})",
            f"{item['folder']}: window (days from index)": f"{window.get('start_day')} to "
                                                           f"{window.get('end_day')}",
            f"{item['folder']}: de-identified": (
                f"yes (keyed pseudonyms, date shift ±{deid.get('date_shift_days')} days)"
                if deid.get("deidentified") else "NO: identifiable rows"),
            f"{item['folder']}: written": manifest.get("finished", "")})
        s.tables.append(to_table(frame, f"{item['folder']}: rows and persons per table "
                                        "(small counts suppressed)"))
    return s


def _journey(ws, entry, names, mcc):
    pdc = _read(ws, entry, "journey/pdc_summary.csv")
    persistence = _read(ws, entry, "journey/persistence.csv")
    if pdc is None and persistence is None:
        return None
    s = Section("journey", "Adherence and persistence", note=(
        "PQA PDC and persistence of the first treatment episode. The support list holds "
        "patient pseudonyms and is not served here."))
    if pdc is not None:
        s.tables.append(to_table(pdc, "PDC by stratum", file="journey/pdc_summary.csv",
                                 filterable=True))
        shown = pdc.dropna(subset=["mean_pdc"])
        s.figures.append(("pdc", "Mean PDC by stratum", figures.bars(
            shown.assign(label=shown.stratum + ": " + shown.stratum_value.astype(str)),
            "label", "mean_pdc", "Mean PDC")))
    try:
        support = ws.resolve(entry, "journey/support_list.csv", patient_level_ok=True)
        with support.open(encoding="utf-8") as fh:
            n = sum(1 for _ in fh) - 1
        listed = suppress(pd.DataFrame({"patients": [max(n, 0)]}), ["patients"], mcc)
        shown = listed.patients.iloc[0]
        s.facts["support list (journey/support_list.csv, not served)"] = (
            "—" if pd.isna(shown) else f"{int(shown):,} patients")
    except NotInWorkspace:
        pass
    if persistence is not None:
        s.tables.append(to_table(persistence, "Persistence of the first episode",
                                 file="journey/persistence.csv"))
    km = _read(ws, entry, "journey/persistence_km.csv")
    if km is not None and "survival" in km:
        s.figures.append(("persistence-km", "Time to discontinuation",
                          figures.lines(km, "time" if "time" in km else km.columns[0],
                                        ["survival"], "Persistence", step=True)))
    return s


def _pathways(ws, entry, names, mcc):
    pathways = _read(ws, entry, "journey/pathways.csv")
    if pathways is None:
        return None
    s = Section("pathways", "Treatment pathways")
    s.figures.append(("sunburst", "Pathways (inner ring: first event)",
                      figures.sunburst(pathways, "Treatment pathways")))
    s.tables.append(to_table(pathways, "Pathways", file="journey/pathways.csv",
                             filterable=True))
    return s


def _sales(ws, entry, names, mcc):
    summary = _read(ws, entry, "sales/series_summary.csv")
    if summary is None:
        return None
    s = Section("sales", "Drug sales", note="The series the forecast starts from "
                "(sales/series.csv has every period).")
    s.tables.append(to_table(summary, "Series", file="sales/series_summary.csv",
                             filterable=True))
    return s


def _forecast(ws, entry, names, mcc):
    summary = _read(ws, entry, "forecast/backtest_summary.csv")
    if summary is None:
        return None
    s = Section("forecast", "Forecast", links=[
        ("Open the forecast explorer", f"/forecast?id={entry.id}&folder=forecast")])
    s.tables.append(to_table(summary, "Backtest accuracy by level",
                             file="forecast/backtest_summary.csv"))
    return s


def _supply(ws, entry, names, mcc):
    policy = _read(ws, entry, "supply/policy.csv")
    if policy is None:
        return None
    s = Section("supply", "Supply: inventory policies", links=[
        ("Policies per series in the explorer", f"/forecast?id={entry.id}&folder=forecast")])
    s.tables.append(to_table(policy, "Policies", file="supply/policy.csv", filterable=True))
    backtest = _read(ws, entry, "supply/backtest_summary.csv")
    if backtest is not None:
        s.tables.append(to_table(backtest, "Policy backtest",
                                 file="supply/backtest_summary.csv"))
    return s


def _marketing(ws, entry, names, mcc):
    roi = _read(ws, entry, "marketing/roi.csv")
    if roi is None:
        return None
    s = Section("marketing", "Marketing: ROI and budget allocation")
    s.figures.append(("roi", "ROI by channel (94% intervals)",
                      figures.bars(roi, "channel", "roi", "ROI", error=("roi_lo", "roi_hi"))))
    s.tables.append(to_table(roi, "ROI", file="marketing/roi.csv"))
    truth = _read(ws, entry, "marketing/truth_roi.csv")
    if truth is not None:
        s.tables.append(to_table(truth, "True ROI of the simulation",
                                 file="marketing/truth_roi.csv"))
    allocation = _read(ws, entry, "marketing/allocation/allocation.csv")
    if allocation is not None:
        s.figures.append(("allocation", "Current and recommended spend", figures.bars(
            allocation.melt(id_vars="channel", value_vars=["current_spend",
                                                           "recommended_spend"]),
            "channel", "value", "Budget split", colour="variable")))
        s.tables.append(to_table(allocation, "Budget allocation",
                                 file="marketing/allocation/allocation.csv"))
    return s


def _demand(ws, entry, names, mcc):
    comparison = _read(ws, entry, "demand/backtest_comparison.csv")
    persistence = _read(ws, entry, "demand/persistence.csv")
    if comparison is None and persistence is None:
        return None
    s = Section("demand", "Demand from patients", note=(
        "New starters × share still on treatment × units per patient-month, counted in the "
        "CDM; the forecast folder opens in the explorer like any forecast."), links=[
        ("Open the patient-flow forecast in the explorer",
         f"/forecast?id={entry.id}&folder=demand")])
    if comparison is not None:
        means = comparison.groupby(["unique_id", "method"], sort=False)[
            ["mase", "scaled_crps", "coverage_80", "coverage_95"]].mean().reset_index()
        s.figures.append(("demand-mase", "Backtest MASE: patient flow, sales series, "
                          "combination", figures.bars(means, "unique_id", "mase", "MASE",
                                                      colour="method")))
        s.tables.append(to_table(comparison, "Backtest per window",
                                 file="demand/backtest_comparison.csv", filterable=True))
    if persistence is not None:
        shown = persistence[persistence["k"] <= 24]
        s.figures.append(("demand-persistence", "Share on treatment by months since the start",
                          figures.bars(shown, "k", "on_treatment", "Still on treatment",
                                       colour="unique_id")))
        s.tables.append(to_table(persistence[persistence["k"] <= 60],
                                 "Rates by months since the start (to 60; the file has all)",
                                 file="demand/persistence.csv", filterable=True))
    check = _read(ws, entry, "demand/flow_check.csv")
    if check is not None:
        s.tables.append(to_table(check.groupby("unique_id", sort=False).tail(60),
                                 "Flow identity, the last 60 months (the file has all)",
                                 file="demand/flow_check.csv", filterable=True))
    return s


def compare(ws: Workspace, a: Entry, b: Entry) -> list[Table]:
    """Two runs side by side: cohort counts and overall incidence rates, with the change.

    Rows are matched on the cohort ids and, for incidence, on the whole time-at-risk window
    (anchors, offsets, clean window, subgroup) as CohortIncidence keys its results; a value
    suppressed by the small-cell rule in either run shows as '—', and so does its change.
    """
    out = []
    pairs = (("cohorts/cg_cohort_count.csv", ["cohort_id"],
              ["cohort_entries", "cohort_subjects"], "Cohort counts"),
             ("characterize/incidence_summary.csv",
              ["target_cohort_definition_id", "outcome_cohort_definition_id", "tar_id",
               "tar_start_with", "tar_start_offset", "tar_end_with", "tar_end_offset",
               "clean_window", "subgroup_id"],
              ["persons_at_risk", "person_outcomes", "incidence_rate_p1000py"],
              "Incidence, all persons"))
    for rel, keys, values, title in pairs:
        left, right = _read(ws, a, rel), _read(ws, b, rel)
        if left is None or right is None:
            continue
        if "age_group_name" in left:
            strata = [c for c in ("age_group_name", "gender_name", "start_year") if c in left]
            left = left[left[strata].isna().all(axis=1)]
            right = right[right[strata].isna().all(axis=1)]
        keys = [k for k in keys if k in left and k in right]
        values = [v for v in values if v in left and v in right]
        left, right = _flagged(left, keys, values), _flagged(right, keys, values)
        merged = left.merge(right, on=keys, how="outer", suffixes=(" (A)", " (B)"))
        merged = merged.rename(columns={f"{v}_suppressed{s}": f"{v}{s}_suppressed"
                                        for v in values for s in (" (A)", " (B)")})
        for v in values:
            merged[f"{v} change"] = merged[f"{v} (B)"] - merged[f"{v} (A)"]
            merged[f"{v} change_suppressed"] = (merged[f"{v} (A)_suppressed"].eq(True)
                                                | merged[f"{v} (B)_suppressed"].eq(True))
        out.append(to_table(merged, title))
    return out


def _flagged(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """The key and value columns, with one ``{value}_suppressed`` flag per value (False where
    the file has none) and the suppressed values blanked, so no change is computed from them."""
    out = frame[keys + values].copy()
    for v in values:
        flag = frame.get(f"{v}_suppressed")
        out[f"{v}_suppressed"] = (flag.fillna(False).astype(bool) if flag is not None
                                  else False)
        out[v] = out[v].where(~out[f"{v}_suppressed"])
    return out
