"""What an extraction records about itself: the data dictionary and ``manifest.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pharmalab.cdm.spec import normalize_version
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError

MANIFEST_KIND = "pharmalab.extract"
DICTIONARY_COLUMNS = ["table", "column", "type", "description", "source_cdm_column",
                      "transformation"]


def cohort_info(db: Database, cohort_id: int) -> dict:
    """The cohort's name and definition checksum from the latest complete generation in the
    results ``cohort_generation`` table (None when the table or the row is absent)."""
    info = {"cohort_id": int(cohort_id), "cohort_name": None, "checksum": None,
            "generated": None}
    if not db.has_table("cohort_generation", "results"):
        return info
    gen = db.table("cohort_generation", "results")
    rows = (gen.filter((gen.cohort_id == int(cohort_id))
                       & (gen.generation_status == "COMPLETE"))
            .order_by(gen.end_time.desc()).limit(1).to_pandas())
    if len(rows):
        row = rows.iloc[0]
        info.update(cohort_name=row["cohort_name"], checksum=row["checksum"],
                    generated=None if pd.isna(row["end_time"]) else str(row["end_time"]))
    return info


def cdm_info(db: Database) -> dict:
    """Where the data came from: the redacted URL, schemas, and the ``cdm_source`` row."""
    info = {"url": db.url.redacted(), "engine": db.url.kind, "cdm_schema": db.schema("cdm"),
            "vocab_schema": db.schema("vocab"), "results_schema": db.schema("results"),
            "cdm_source_name": None, "cdm_version": None, "vocabulary_version": None,
            "source_release_date": None}
    if db.has_table("cdm_source"):
        rows = db.table("cdm_source").limit(1).to_pandas()
        if len(rows):
            row = rows.iloc[0]
            for name in ("cdm_source_name", "cdm_version", "vocabulary_version",
                         "source_release_date"):
                if name in row and not pd.isna(row[name]):
                    info[name] = str(row[name])
    return info


def spec_version(cdm_version: str | None) -> str:
    """The specification (5.3 or 5.4) to describe columns with; 5.4 when unknown."""
    try:
        return normalize_version(cdm_version)
    except PharmalabInputError:
        return "5.4"


def dictionary(plans, types: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The data dictionary: one row per column of every written table.

    Returns
    -------
    pandas.DataFrame
        ``table``, ``column``, ``type`` (Arrow type as written: ``int64``, ``date32[day]``,
        ``string`` …), ``description`` (the CDM specification's, or ours for added
        columns), ``source_cdm_column`` (``table.column``), ``transformation``.
    """
    rows = [(plan.domain.table, c.name, types[plan.domain.table].get(c.name, ""),
             c.description, c.source, c.transformation)
            for plan in plans for c in plan.columns]
    return pd.DataFrame(rows, columns=DICTIONARY_COLUMNS)


def is_extraction(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier extraction (its ``manifest.json`` says so)."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == MANIFEST_KIND
