"""Treatment pathways with TreatmentPatterns semantics: the sequence of event cohorts (drugs,
drug classes, procedures) each person of a target cohort goes through, counted per pathway.

The steps follow the TreatmentPatterns vignette (Markus et al. 2022), in its order:

1. **Target window.** A person's first target cohort entry is the index; only event cohort
   eras that start within ``[cohort_start_date, cohort_end_date]`` of it count, and their end
   is cut at the target end (``includeTreatments = "startDate"``, ``periodPriorToIndex = 0``).
2. **Minimum era duration.** Eras shorter than ``min_era_duration`` days are dropped.
3. **Era collapse.** Eras of the same event cohort separated by at most
   ``era_collapse_size`` days are merged into one.
4. **Combination window.** Where eras of different events overlap by at least
   ``combination_window`` days, the overlap becomes a combination event ``"A+B"`` and the
   parts before and after stay single events; a shorter overlap is a *switch*: the earlier
   event ends where the later one starts. Single parts cut off by a combination that are
   shorter than ``min_post_combination_duration`` days are dropped.
5. **Filter.** ``"first"`` keeps each event's first occurrence only, ``"changes"`` drops
   consecutive repeats, ``"all"`` keeps every event.
6. **Maximum path length.** The first ``max_path_length`` events make the pathway.

Steps 1–3 run in the engine (Ibis). For steps 4–6 the engine returns one row per person
holding the list of that person's eras (a grouped ``collect`` aggregate, fetched as a pandas
frame): the combination sweep is done in Python on those lists, and only pathway counts are
returned, suppressed. Day arithmetic counts covered days: an era from day ``s`` to day ``e``
lasts ``e − s + 1`` days and two eras overlap by the number of days both cover
(TreatmentPatterns subtracts dates, which is one day less).

References
----------
Markus AF, Verhamme KMC, Kors JA, Rijnbeek PR (2022). TreatmentPatterns: an R package to
facilitate the standardized development and analysis of treatment patterns across disease
domains. Computer Methods and Programs in Biomedicine 225: 107081; the TreatmentPatterns
vignette "Computing treatment pathways".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from pharmalab.characterize.time_at_risk import merge_overlapping
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError
from pharmalab.privacy import suppress
from pharmalab.privacy.suppression import DEFAULT_MIN_CELL_COUNT

Filter = Literal["first", "changes", "all"]

_EPOCH = ibis.date(1970, 1, 1)


@dataclass(frozen=True)
class PathwaySettings:
    """Settings of a pathway analysis (TreatmentPatterns names in brackets).

    Attributes
    ----------
    era_collapse_size : int
        Days; same-event eras with gaps up to this are merged (``eraCollapseSize``, 30).
    combination_window : int
        Days of overlap that make a combination (``combinationWindow``, 30).
    min_era_duration : int
        Days; shorter eras are dropped before anything else (``minEraDuration``, 0).
    min_post_combination_duration : int
        Days; shorter single remainders of a combination are dropped
        (``minPostCombinationDuration``, 30).
    max_path_length : int
        Events kept per pathway (``maxPathLength``, 5).
    filter : {"first", "changes", "all"}
        ``filterTreatments`` ("First", "Changes", "All"); default "first".
    """

    era_collapse_size: int = 30
    combination_window: int = 30
    min_era_duration: int = 0
    min_post_combination_duration: int = 30
    max_path_length: int = 5
    filter: Filter = "first"

    def __post_init__(self):
        for name in ("era_collapse_size", "combination_window", "min_era_duration",
                     "min_post_combination_duration", "max_path_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise PharmalabInputError(
                    f"pathway settings: {name} must be a whole number of days ≥ 0, got "
                    f"{value!r}")
        if self.max_path_length < 1:
            raise PharmalabInputError("pathway settings: max_path_length must be at least 1")
        if self.filter not in ("first", "changes", "all"):
            raise PharmalabInputError(
                f"pathway settings: filter must be 'first', 'changes' or 'all', got "
                f"{self.filter!r}")


@dataclass(frozen=True)
class PathwayResult:
    """Pathway counts of one target cohort.

    Attributes
    ----------
    table : pandas.DataFrame
        ``target_cohort_id`` (int64), ``pathway`` (str, events joined by ``-``, a combination
        by ``+`` in label order, e.g. ``"A-A+B-B"``), ``n_persons`` (nullable Int64,
        suppressed by :func:`pharmalab.privacy.suppress`) and ``n_persons_suppressed``;
        most frequent first.
    n_target : int
        Persons in the target cohort.
    n_treated : int
        Persons with at least one event in the target window (the unsuppressed counts add up
        to it).
    settings : PathwaySettings
    unsuppressed_table : pandas.DataFrame
        Every count: for use inside the data holder's site only.
    """

    table: pd.DataFrame
    n_target: int
    n_treated: int
    settings: PathwaySettings
    unsuppressed_table: pd.DataFrame = field(repr=False)


def _day(column) -> ir.IntegerValue:
    return column.delta(_EPOCH, unit="day").cast("int64")


def treatment_eras(
    db: Database,
    target_cohort_id: int,
    event_cohorts: Mapping[int, str],
    settings: PathwaySettings = PathwaySettings(),
) -> ir.Table:
    """Event eras inside each person's target window after steps 1–3 (module docstring).

    Parameters
    ----------
    db
        The database with the results ``cohort`` table holding the target and event cohorts.
    target_cohort_id
        ``cohort_definition_id`` of the target cohort.
    event_cohorts
        Event cohort id → label (e.g. ``{6: "diclofenac", 7: "celecoxib"}``); labels must be
        distinct and must not contain ``-`` or ``+``.
    settings
        Pathway settings (only the era duration and collapse are used here).

    Returns
    -------
    ibis Table
        ``person_id`` (int64), ``label`` (string), ``start_day``, ``end_day`` (int64, days
        since 1970-01-01, both covered).

    Raises
    ------
    PharmalabInputError
        For ids that are not integers or bad labels.
    CdmNotFoundError
        If the results ``cohort`` table is missing.
    """
    ids = _check(target_cohort_id, event_cohorts)
    cohort = db.table("cohort", "results")
    rows = cohort.select(
        cohort_definition_id=cohort.cohort_definition_id.cast("int64"),
        person_id=cohort.subject_id.cast("int64"),
        s=_day(cohort.cohort_start_date.cast("date")),
        e=_day(cohort.cohort_end_date.cast("date")))
    target = rows.filter(rows.cohort_definition_id == int(target_cohort_id))
    # The first entry per person: an aggregate and a join (see characterize.survival).
    firsts = target.group_by(t_person_id=target.person_id).aggregate(t_s=target.s.min())
    entries = target.join(firsts, (target.person_id == firsts.t_person_id)
                          & (target.s == firsts.t_s))
    index = entries.group_by(t_person_id=entries.person_id).aggregate(
        t_s=entries.s.min(), t_e=entries.e.max())
    labels = ibis.memtable({"l_id": list(ids), "label": [event_cohorts[i] for i in ids]},
                           schema={"l_id": "int64", "label": "string"})
    events = rows.filter(rows.cohort_definition_id.isin(ids))
    events = events.join(labels, events.cohort_definition_id == labels.l_id)
    events = events.join(index, (events.person_id == index.t_person_id)
                         & (events.s >= index.t_s) & (events.s <= index.t_e))
    events = events.select("person_id", "label", start_date=events.s,
                           end_date=ibis.least(events.e, events.t_e))
    events = events.filter(events.end_date - events.start_date + 1
                           >= settings.min_era_duration)
    # Era collapse: extend each era by the allowed gap, merge overlaps, take the gap off.
    collapse = settings.era_collapse_size
    shifted = events.mutate(end_date=events.end_date + collapse + 1)
    merged = merge_overlapping(shifted, ["person_id", "label"])
    return merged.select("person_id", "label", start_day=merged.start_date,
                         end_day=merged.end_date - collapse - 1)


def _check(target_cohort_id, event_cohorts) -> list[int]:
    values = [target_cohort_id, *dict(event_cohorts)]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise PharmalabInputError(f"cohort ids must be integers, got {value!r}")
    labels = list(dict(event_cohorts).values())
    if not labels:
        raise PharmalabInputError("event_cohorts: give at least one event cohort id → label")
    for label in labels:
        if not isinstance(label, str) or not label or "-" in label or "+" in label:
            raise PharmalabInputError(
                f"event cohort label {label!r}: expected a non-empty text without '-' or '+'")
    if len(set(labels)) != len(labels):
        raise PharmalabInputError(f"event cohort labels must be distinct, got {labels}")
    return [int(i) for i in dict(event_cohorts)]


def _person_lists(eras: ir.Table) -> pd.DataFrame:
    """One row per person: ``person_id`` and ``eras``, a list of (label, start, end) dicts."""
    packed = eras.mutate(era=ibis.struct({"label": eras.label, "start": eras.start_day,
                                          "end": eras.end_day}))
    return packed.group_by("person_id").aggregate(eras=packed.era.collect()).to_pandas()


def _segments(eras: list[tuple[str, int, int]], settings: PathwaySettings) -> list[str]:
    """Step 4 on one person's eras (label, first day, last day): the event labels in order."""
    if not eras:
        return []
    # Elementary segments [b_k, b_{k+1}) between all era boundaries, with the active labels.
    bounds = sorted({s for _, s, _ in eras} | {e + 1 for _, _, e in eras})
    pieces = []  # [start, stop, frozenset(labels)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        active = frozenset(label for label, s, e in eras if s <= lo and e + 1 >= hi)
        if not active:
            continue
        if pieces and pieces[-1][1] == lo and pieces[-1][2] == active:
            pieces[-1][1] = hi
        else:
            pieces.append([lo, hi, active])
    # An overlap shorter than the window is a switch: the later-starting event takes it.
    resolved = []
    for lo, hi, active in pieces:
        if len(active) > 1 and hi - lo < settings.combination_window:
            starts = {label: max(s for lab, s, e in eras if lab == label and s <= lo <= e)
                      for label in active}
            active = frozenset([max(active, key=lambda label: (starts[label], label))])
        if resolved and resolved[-1][1] == lo and resolved[-1][2] == active:
            resolved[-1][1] = hi
        else:
            resolved.append([lo, hi, active])
    # Single parts cut off by a combination and shorter than the minimum are dropped.
    kept = []
    for position, (lo, hi, active) in enumerate(resolved):
        if len(active) == 1 and hi - lo < settings.min_post_combination_duration:
            before = resolved[position - 1] if position > 0 else None
            after = resolved[position + 1] if position + 1 < len(resolved) else None
            cut = ((before is not None and before[1] == lo and active < before[2])
                   or (after is not None and after[0] == hi and active < after[2]))
            if cut:
                continue
        kept.append("+".join(sorted(active)))
    return kept


def _pathway(labels: list[str], settings: PathwaySettings) -> str:
    """Steps 5–6: filter and truncate, joined by ``-``."""
    if settings.filter == "first":
        seen, out = set(), []
        for label in labels:
            if label not in seen:
                seen.add(label)
                out.append(label)
        labels = out
    elif settings.filter == "changes":
        labels = [label for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label]
    return "-".join(labels[: settings.max_path_length])


def treatment_pathways(
    db: Database,
    target_cohort_id: int,
    event_cohorts: Mapping[int, str],
    settings: PathwaySettings = PathwaySettings(),
    *,
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> PathwayResult:
    """Count persons per treatment pathway in a target cohort (TreatmentPatterns semantics).

    Parameters
    ----------
    db, target_cohort_id, event_cohorts, settings
        As :func:`treatment_eras`.
    min_cell_count
        Counts from 1 to ``min_cell_count − 1`` are blanked (OHDSI ``minCellCount``).

    Returns
    -------
    PathwayResult
        Persons without any event in the target window have no pathway and are not counted
        in the table (``n_target − n_treated`` of them). The per-person era lists leave the
        engine as one grouped row per person (see the module docstring); nothing per person
        is kept in the result.

    Raises
    ------
    PharmalabInputError
        As :func:`treatment_eras`.

    References
    ----------
    Markus AF et al. (2022), Comput Methods Programs Biomed 225: 107081; TreatmentPatterns.
    """
    eras = treatment_eras(db, target_cohort_id, event_cohorts, settings)
    cohort = db.table("cohort", "results")
    target = cohort.filter(cohort.cohort_definition_id == int(target_cohort_id))
    n_target = int(target.subject_id.nunique().to_pandas())
    people = _person_lists(eras)
    paths = []
    for person_eras in people.eras:
        items = [(era["label"], int(era["start"]), int(era["end"])) for era in person_eras]
        path = _pathway(_segments(sorted(items, key=lambda x: (x[1], x[2], x[0])), settings),
                        settings)
        if path:
            paths.append(path)
    counts = pd.Series(paths, dtype="string").value_counts()
    raw = pd.DataFrame({
        "target_cohort_id": pd.Series([int(target_cohort_id)] * len(counts), dtype="int64"),
        "pathway": counts.index.astype(str),
        "n_persons": counts.to_numpy().astype("int64"),
    }).sort_values(["n_persons", "pathway"], ascending=[False, True], ignore_index=True)
    return PathwayResult(
        table=suppress(raw, ["n_persons"], min_cell_count),
        n_target=n_target,
        n_treated=len(paths),
        settings=settings,
        unsuppressed_table=raw,
    )


def sunburst_figure(result: PathwayResult, title: str | None = None):
    """A Plotly sunburst of the (suppressed) pathway counts: the inner ring is the first event.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Sunburst`` trace; node ids are pathway prefixes (``"A"``, ``"A-A+B"``), each
        valued by the persons whose pathway ends there (``branchvalues="remainder"``).
        Suppressed pathways are left out.
    """
    import plotly.graph_objects as go

    shown = result.table.dropna(subset=["n_persons"])
    values: dict[str, int] = {}
    for pathway, n in zip(shown.pathway, shown.n_persons, strict=True):
        steps = pathway.split("-")
        for depth in range(1, len(steps) + 1):
            values.setdefault("-".join(steps[:depth]), 0)
        values[pathway] += int(n)
    ids = list(values)
    figure = go.Figure(go.Sunburst(
        ids=ids, labels=[i.split("-")[-1] for i in ids],
        parents=["-".join(i.split("-")[:-1]) for i in ids],
        values=[values[i] for i in ids], branchvalues="remainder"))
    figure.update_layout(title=title or f"Treatment pathways, target cohort "
                         f"{int(shown.target_cohort_id.iloc[0]) if len(shown) else ''}",
                         template="plotly_white")
    return figure


def sankey_figure(result: PathwayResult, title: str | None = None):
    """A Plotly Sankey diagram of the (suppressed) pathways: one column of nodes per step.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Sankey`` trace; node ``"k. label"`` is the event at step ``k``; a link from
        step ``k`` to ``k + 1`` carries the persons whose pathway has those two events there.
        Suppressed pathways are left out.
    """
    import plotly.graph_objects as go

    shown = result.table.dropna(subset=["n_persons"])
    nodes: dict[str, int] = {}
    links: dict[tuple[int, int], int] = {}
    for pathway, n in zip(shown.pathway, shown.n_persons, strict=True):
        steps = [f"{k + 1}. {label}" for k, label in enumerate(pathway.split("-"))]
        for name in steps:
            nodes.setdefault(name, len(nodes))
        for a, b in zip(steps, steps[1:], strict=False):
            links[(nodes[a], nodes[b])] = links.get((nodes[a], nodes[b]), 0) + int(n)
    figure = go.Figure(go.Sankey(
        node={"label": list(nodes)},
        link={"source": [a for a, _ in links], "target": [b for _, b in links],
              "value": list(links.values())}))
    figure.update_layout(title=title or "Treatment pathways", template="plotly_white")
    return figure
