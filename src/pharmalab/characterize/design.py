"""Incidence designs in OHDSI CohortIncidence's JSON format, read into frozen dataclasses.

A design names target cohorts, outcome cohorts with clean windows, time-at-risk windows,
which combinations to analyse, optional cohort subgroups, strata (age, gender, start year)
and a study window — the format of CohortIncidence's ``IncidenceDesign`` (R) and its Java
conformance tests (``*Test.json``). Everything is validated here, once, with errors that name
the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pharmalab.characterize.time_at_risk import TimeAtRisk
from pharmalab.errors import PharmalabInputError

# CohortIncidence's default age breaks are the user's to give; these are the usual
# epidemiological bands used when strata by age are asked for without breaks.
DEFAULT_AGE_BREAKS = (18, 35, 45, 55, 65, 75, 85)


@dataclass(frozen=True)
class TargetDef:
    """A target cohort (``targetDefs``): ``id`` is its ``cohort_definition_id``."""

    id: int
    name: str = ""


@dataclass(frozen=True)
class OutcomeDef:
    """An outcome (``outcomeDefs``).

    Attributes
    ----------
    id : int
        ``outcome_id`` in outputs (not a cohort id).
    cohort_id : int
        ``cohort_definition_id`` of the outcome cohort.
    clean_window : int
        Days after each outcome during which the person is not at risk and further outcomes
        are not counted (0: a new outcome may count the next day).
    exclude_cohort_id : int or None
        A cohort whose periods are also removed from time at risk.
    """

    id: int
    cohort_id: int
    clean_window: int = 0
    exclude_cohort_id: int | None = None
    name: str = ""


@dataclass(frozen=True)
class SubgroupDef:
    """A cohort subgroup (``subgroups[].CohortSubgroup``): at-risk periods that start inside
    a period of cohort ``cohort_id``."""

    id: int
    cohort_id: int
    name: str = ""


@dataclass(frozen=True)
class AgeGroup:
    """An age band: ``min_age ≤ age < max_age`` (None: unbounded), age in whole years."""

    id: int
    name: str
    min_age: int | None
    max_age: int | None


@dataclass(frozen=True)
class Strata:
    """``strataSettings``: which strata to report besides the overall row."""

    by_age: bool = False
    by_gender: bool = False
    by_year: bool = False
    age_breaks: tuple[int, ...] = DEFAULT_AGE_BREAKS
    age_break_list: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self):
        for breaks in (self.age_breaks, *self.age_break_list):
            if (not breaks or any(isinstance(b, bool) or not isinstance(b, int) for b in breaks)
                    or list(breaks) != sorted(set(breaks))):
                raise PharmalabInputError(
                    f"age breaks must be increasing whole ages, got {list(breaks)}")

    def age_groups(self) -> list[AgeGroup]:
        """Age bands numbered as CohortIncidence numbers them: ``age_breaks`` first
        (``<b0``, ``b0 - b1−1``, …, ``>=bn``), then each list of ``age_break_list`` in turn.
        Bands of different lists overlap: a person is counted in one band of each list."""
        groups: list[AgeGroup] = []
        for breaks in (self.age_breaks, *self.age_break_list):
            next_id = len(groups) + 1
            groups.append(AgeGroup(next_id, f"<{breaks[0]}", None, breaks[0]))
            for i, (low, high) in enumerate(zip(breaks, breaks[1:], strict=False)):
                groups.append(AgeGroup(next_id + 1 + i, f"{low} - {high - 1}", low, high))
            groups.append(AgeGroup(next_id + len(breaks), f">={breaks[-1]}", breaks[-1], None))
        return groups

    def break_sets(self) -> list[list[AgeGroup]]:
        """The age bands grouped by the break list that made them."""
        groups, sets, at = self.age_groups(), [], 0
        for breaks in (self.age_breaks, *self.age_break_list):
            sets.append(groups[at:at + len(breaks) + 1])
            at += len(breaks) + 1
        return sets


@dataclass(frozen=True)
class Analysis:
    """One entry of ``analysisList``: every target × outcome × time at risk."""

    targets: tuple[int, ...]
    outcomes: tuple[int, ...]
    tars: tuple[int, ...]


@dataclass(frozen=True)
class IncidenceDesign:
    """A whole CohortIncidence design."""

    targets: tuple[TargetDef, ...]
    outcomes: tuple[OutcomeDef, ...]
    tars: tuple[TimeAtRisk, ...]
    analyses: tuple[Analysis, ...]
    subgroups: tuple[SubgroupDef, ...] = ()
    strata: Strata = field(default_factory=Strata)
    study_start: date | None = None
    study_end: date | None = None
    # CohortMethod's minDaysAtRisk: at-risk periods shorter than this (days, both ends
    # included) are dropped before merging. 1 is CohortIncidence's behaviour.
    min_days_at_risk: int = 1

    def target(self, cohort_id: int) -> TargetDef:
        return next(t for t in self.targets if t.id == cohort_id)

    def outcome(self, outcome_id: int) -> OutcomeDef:
        return next(o for o in self.outcomes if o.id == outcome_id)

    def tar(self, tar_id: int) -> TimeAtRisk:
        return next(t for t in self.tars if t.id == tar_id)

    def cohort_ids(self) -> set[int]:
        """Every cohort the design reads (targets, outcomes, exclusions, subgroups)."""
        ids = {t.id for t in self.targets} | {o.cohort_id for o in self.outcomes}
        ids |= {o.exclude_cohort_id for o in self.outcomes if o.exclude_cohort_id}
        return ids | {s.cohort_id for s in self.subgroups}


def simple_design(
    target_ids: Sequence[int],
    outcome_cohort_ids: Sequence[int],
    tars: Sequence[TimeAtRisk],
    *,
    clean_window: int = 0,
    strata: Strata | None = None,
    names: Mapping[int, str] | None = None,
) -> IncidenceDesign:
    """A design of every target × outcome × window, outcome ids numbered 1, 2, … in order.

    Parameters
    ----------
    target_ids, outcome_cohort_ids
        ``cohort_definition_id`` values of the target and outcome cohorts.
    tars
        Time-at-risk windows (distinct ids).
    clean_window
        Days after each outcome not at risk, for every outcome (CohortIncidence
        ``cleanWindow``).
    strata
        Age / gender / start-year strata (default: overall only).
    names
        Cohort names by id, used as ``target_name`` and ``outcome_name``.

    Returns
    -------
    IncidenceDesign
        One analysis (CohortIncidence ``analysisList`` entry).

    Raises
    ------
    PharmalabInputError
        Ids given twice, or outside 0 … 2^63 − 1.
    """
    names = dict(names or {})
    for kind, ids in (("target", target_ids), ("outcome", outcome_cohort_ids),
                      ("time-at-risk", [t.id for t in tars])):
        repeated = sorted({i for i in ids if list(ids).count(i) > 1})
        if repeated:
            raise PharmalabInputError(f"{kind} ids given more than once: {repeated}")
    targets = tuple(TargetDef(int(t), names.get(int(t), "")) for t in target_ids)
    outcomes = tuple(OutcomeDef(i + 1, int(c), clean_window, None, names.get(int(c), ""))
                     for i, c in enumerate(outcome_cohort_ids))
    design = IncidenceDesign(
        targets=targets, outcomes=outcomes, tars=tuple(tars),
        analyses=(Analysis(tuple(t.id for t in targets), tuple(o.id for o in outcomes),
                           tuple(t.id for t in tars)),),
        strata=strata or Strata())
    _check_references(design, "design")
    return design


# The fields of CohortIncidence's design JSON (IncidenceDesign and its parts). Anything else
# is a typo that would silently change the numbers (``cleanwindow`` → no clean window).
_KEYS = {
    "design": {"cohortDefs", "conceptSets", "targetDefs", "outcomeDefs", "timeAtRiskDefs",
               "analysisList", "subgroups", "strataSettings", "studyWindow"},
    "targetDefs": {"id", "name", "description"},
    "outcomeDefs": {"id", "name", "cohortId", "cleanWindow", "excludeCohortId"},
    "timeAtRiskDefs": {"id", "start", "end"},
    "timeAtRiskDefs.start": {"dateField", "offset"},
    "analysisList": {"targets", "outcomes", "tars"},
    "subgroups": {"CohortSubgroup"},
    "CohortSubgroup": {"id", "name", "description", "cohort"},
    "CohortSubgroup.cohort": {"id", "name", "description"},
    "strataSettings": {"byAge", "byGender", "byYear", "ageBreaks", "ageBreakList"},
    "studyWindow": {"startDate", "endDate"},
}

# |offsets| and clean windows beyond this many days (about 2,700 years) are mistakes, and
# overflow the engines' 32-bit day intervals.
MAX_DAYS = 1_000_000


def _check_keys(obj, kind: str, where: str) -> None:
    if not isinstance(obj, Mapping):
        raise PharmalabInputError(f"{where}: expected an object, got {obj!r}")
    unknown = sorted(set(obj) - _KEYS[kind])
    if unknown:
        raise PharmalabInputError(
            f"{where}: unknown field {unknown[0]!r} (expected one of "
            f"{', '.join(sorted(_KEYS[kind]))})")


def read_design(source: str | Path | Mapping) -> IncidenceDesign:
    """Read a CohortIncidence design (JSON file path, JSON text or parsed mapping).

    Recognised fields: ``targetDefs`` (id, name), ``outcomeDefs`` (id, cohortId, cleanWindow,
    excludeCohortId, name), ``timeAtRiskDefs`` (id, start/end: dateField, offset),
    ``analysisList`` (targets, outcomes, tars), ``subgroups`` (CohortSubgroup: id, name,
    cohort.id), ``strataSettings`` (byAge, byGender, byYear, ageBreaks, ageBreakList),
    ``studyWindow`` (startDate, endDate as YYYY-MM-DD or YYYYMMDD). ``cohortDefs`` and other
    fields that do not change the numbers are ignored.

    Raises
    ------
    PharmalabInputError
        Naming the file and field: unreadable JSON, missing or mistyped fields, duplicate
        ids, or an analysis that names an undefined target, outcome or window.
    """
    where, spec = _load(source)
    if not isinstance(spec, Mapping):
        raise PharmalabInputError(f"{where}: a design is a JSON object")
    _check_keys(spec, "design", where)
    for kind in ("targetDefs", "outcomeDefs", "timeAtRiskDefs", "analysisList"):
        for entry in _list(spec, kind, where):
            _check_keys(entry, kind, f"{where}: {kind}")
            if kind == "timeAtRiskDefs":
                for part in ("start", "end"):
                    _check_keys(entry.get(part, {}), "timeAtRiskDefs.start",
                                f"{where}: timeAtRiskDefs id {entry.get('id')} {part}")
    for entry in _optional_list(spec, "subgroups", where):
        _check_keys(entry, "subgroups", f"{where}: subgroups")
        body = entry.get("CohortSubgroup")
        if isinstance(body, Mapping):
            _check_keys(body, "CohortSubgroup", f"{where}: subgroups")
            _check_keys(body.get("cohort", {}), "CohortSubgroup.cohort",
                        f"{where}: subgroups cohort")
    for kind in ("strataSettings", "studyWindow"):
        if spec.get(kind) is not None:
            _check_keys(spec[kind], kind, f"{where}: {kind}")
    for tar in spec["timeAtRiskDefs"]:
        for part in ("start", "end"):
            offset = tar.get(part, {}).get("offset", 0)
            if isinstance(offset, bool) or not isinstance(offset, int):
                raise PharmalabInputError(
                    f"{where}: timeAtRiskDefs id {tar.get('id')} {part}.offset must be a whole "
                    f"number of days, got {offset!r}")
    targets = tuple(TargetDef(_int(t, "id", f"{where}: targetDefs"), str(t.get("name") or ""))
                    for t in _list(spec, "targetDefs", where))
    outcomes = tuple(_outcome(o, where) for o in _list(spec, "outcomeDefs", where))
    tars = tuple(TimeAtRisk.from_design(t, f"{where}: timeAtRiskDefs")
                 for t in _list(spec, "timeAtRiskDefs", where))
    analyses = tuple(_analysis(a, where) for a in _list(spec, "analysisList", where))
    subgroups = tuple(_subgroup(s, where) for s in _optional_list(spec, "subgroups", where))
    design = IncidenceDesign(
        targets=targets, outcomes=outcomes, tars=tars, analyses=analyses,
        subgroups=subgroups, strata=_strata(spec.get("strataSettings"), where),
        study_start=_date((spec.get("studyWindow") or {}).get("startDate"), where),
        study_end=_date((spec.get("studyWindow") or {}).get("endDate"), where))
    if design.study_start and design.study_end and design.study_start > design.study_end:
        raise PharmalabInputError(
            f"{where}: studyWindow starts ({design.study_start}) after it ends "
            f"({design.study_end})")
    _check_references(design, where)
    return design


def _load(source) -> tuple[str, object]:
    if isinstance(source, Mapping):
        return "design", source
    text, where = str(source), "design"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PharmalabInputError(f"{where}: cannot read the design ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise PharmalabInputError(f"{where}: not a UTF-8 JSON file") from None
    try:
        return where, json.loads(text)
    except json.JSONDecodeError as exc:
        raise PharmalabInputError(
            f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _list(spec: Mapping, key: str, where: str) -> list:
    value = spec.get(key)
    if not isinstance(value, list) or not value:
        raise PharmalabInputError(f"{where}: {key} must be a non-empty list")
    return value


def _optional_list(spec: Mapping, key: str, where: str) -> list:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PharmalabInputError(f"{where}: {key} must be a list")
    return value


def _int(obj, key: str, where: str, default=None) -> int:
    if not isinstance(obj, Mapping):
        raise PharmalabInputError(f"{where}: entry {obj!r} is not an object")
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PharmalabInputError(f"{where}: {key} must be a whole number, got {value!r}")
    return value


def _outcome(o, where: str) -> OutcomeDef:
    here = f"{where}: outcomeDefs"
    exclude = o.get("excludeCohortId") if isinstance(o, Mapping) else None
    if exclude is not None and (isinstance(exclude, bool) or not isinstance(exclude, int)):
        raise PharmalabInputError(f"{here}: excludeCohortId must be a cohort id, got {exclude!r}")
    clean = _int(o, "cleanWindow", here, 0)
    if not 0 <= clean <= MAX_DAYS:
        raise PharmalabInputError(
            f"{here}: cleanWindow must be between 0 and {MAX_DAYS:,} days, got {clean}")
    return OutcomeDef(_int(o, "id", here), _int(o, "cohortId", here), clean,
                      exclude or None, str(o.get("name") or ""))


def _analysis(a, where: str) -> Analysis:
    here = f"{where}: analysisList"
    if not isinstance(a, Mapping):
        raise PharmalabInputError(f"{here}: entry {a!r} is not an object")
    parts = {}
    for key in ("targets", "outcomes", "tars"):
        ids = a.get(key)
        if (not isinstance(ids, list) or not ids
                or any(isinstance(i, bool) or not isinstance(i, int) for i in ids)):
            raise PharmalabInputError(f"{here}: {key} must be a non-empty list of ids")
        parts[key] = tuple(ids)
    return Analysis(**parts)


def _subgroup(s, where: str) -> SubgroupDef:
    here = f"{where}: subgroups"
    body = s.get("CohortSubgroup") if isinstance(s, Mapping) else None
    if not isinstance(body, Mapping):
        raise PharmalabInputError(f"{here}: only CohortSubgroup entries are supported, got {s!r}")
    return SubgroupDef(_int(body, "id", here), _int(body.get("cohort"), "id", f"{here}: cohort"),
                       str(body.get("name") or ""))


def _strata(spec, where: str) -> Strata:
    if spec is None:
        return Strata()
    here = f"{where}: strataSettings"
    if not isinstance(spec, Mapping):
        raise PharmalabInputError(f"{here} must be an object")
    flags = {}
    for key, name in (("byAge", "by_age"), ("byGender", "by_gender"), ("byYear", "by_year")):
        value = spec.get(key, False)
        if not isinstance(value, bool):
            raise PharmalabInputError(f"{here}: {key} must be true or false, got {value!r}")
        flags[name] = value
    breaks = _breaks(spec.get("ageBreaks"), f"{here}: ageBreaks") or DEFAULT_AGE_BREAKS
    lists = tuple(_breaks(b, f"{here}: ageBreakList")
                  for b in _optional_list(spec, "ageBreakList", here))
    if flags["by_age"] and spec.get("ageBreaks") == []:
        raise PharmalabInputError(f"{here}: ageBreaks can not be empty when byAge is true")
    return Strata(age_breaks=breaks, age_break_list=tuple(b for b in lists if b), **flags)


def _breaks(value, where: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if (not isinstance(value, list)
            or any(isinstance(b, bool) or not isinstance(b, int) for b in value)
            or list(value) != sorted(set(value))):
        raise PharmalabInputError(f"{where}: expected increasing whole ages, got {value!r}")
    return tuple(value)


def _date(value, where: str) -> date | None:
    if value in (None, ""):
        return None
    text = str(value).replace("-", "")
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise PharmalabInputError(
            f"{where}: studyWindow date {value!r} is not YYYY-MM-DD or YYYYMMDD") from None


def _check_references(design: IncidenceDesign, where: str) -> None:
    for cohort_id in sorted(design.cohort_ids()):
        if not 0 <= cohort_id < 2**63:
            raise PharmalabInputError(
                f"{where}: cohort id {cohort_id} is outside 0 … 2^63 − 1 (cohort_definition_id "
                "is a 64-bit integer)")
    for kind, items in (("targetDefs", design.targets), ("outcomeDefs", design.outcomes),
                        ("timeAtRiskDefs", design.tars), ("subgroups", design.subgroups)):
        ids = [item.id for item in items]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise PharmalabInputError(f"{where}: {kind} ids {duplicated} appear more than once")
    if any(s.id == 0 for s in design.subgroups):
        raise PharmalabInputError(f"{where}: subgroup id 0 is reserved for 'All'")
    known = {"targets": {t.id for t in design.targets},
             "outcomes": {o.id for o in design.outcomes},
             "tars": {t.id for t in design.tars}}
    for n, analysis in enumerate(design.analyses, start=1):
        for key, ids in known.items():
            missing = sorted(set(getattr(analysis, key)) - ids)
            if missing:
                raise PharmalabInputError(
                    f"{where}: analysisList entry {n} names {key} {missing}, which are not "
                    "defined")
