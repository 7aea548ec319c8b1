"""Export cohort results as CSV in OHDSI CohortGenerator's results data model (``cg_*.csv``).

File names and columns are those of CohortGenerator's results model (``cg_cohort_count``,
``cg_cohort_inclusion``, ``cg_cohort_inc_result``, ``cg_cohort_inc_stats``,
``cg_cohort_summary_stats``, ``cg_cohort_censor_stats``, ``cg_cohort_generation``,
``cg_cohort_count_neg_ctrl``), so OHDSI result viewers and ResultModelManager read them.
Person and record counts pass through :func:`pharmalab.privacy.suppress` (the columns the
model marks ``min_cell_count``), each followed by its ``<column>_suppressed`` flag.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pharmalab.atomic import write_csv
from pharmalab.engine import Database
from pharmalab.privacy import DEFAULT_MIN_CELL_COUNT, suppress

# results table → (file, columns in the model's order, columns subject to min_cell_count)
_EXPORTS = {
    "cohort_count": ("cg_cohort_count.csv",
                     ["database_id", "cohort_id", "cohort_entries", "cohort_subjects"],
                     ["cohort_entries", "cohort_subjects"]),
    "cohort_inclusion": ("cg_cohort_inclusion.csv",
                         ["cohort_definition_id", "rule_sequence", "name", "description"], []),
    "cohort_inc_result": ("cg_cohort_inc_result.csv",
                          ["database_id", "cohort_definition_id", "inclusion_rule_mask",
                           "person_count", "mode_id"], ["person_count"]),
    "cohort_inc_stats": ("cg_cohort_inc_stats.csv",
                         ["database_id", "cohort_definition_id", "rule_sequence", "person_count",
                          "gain_count", "person_total", "mode_id"],
                         # gain_count is a person count too: suppressed as well
                         ["person_count", "gain_count", "person_total"]),
    "cohort_summary_stats": ("cg_cohort_summary_stats.csv",
                             ["database_id", "cohort_definition_id", "base_count",
                              "final_count", "mode_id"], ["base_count", "final_count"]),
    "cohort_censor_stats": ("cg_cohort_censor_stats.csv",
                            ["database_id", "cohort_definition_id", "lost_count"],
                            ["lost_count"]),
    "cohort_generation": ("cg_cohort_generation.csv",
                          ["cohort_id", "cohort_name", "generation_status", "start_time",
                           "end_time", "database_id", "checksum", "error"], []),
}


def database_id(db: Database) -> str:
    """The data source's short name: ``cdm_source.cdm_source_abbreviation``, else 'cdm'."""
    if db.has_table("cdm_source"):
        src = db.table("cdm_source")
        if "cdm_source_abbreviation" in src.columns:
            value = src.cdm_source_abbreviation.max().execute()
            if value:
                return str(value)
    return "cdm"


def export_cohort_statistics(
    db: Database,
    out: str | Path,
    cohort_ids: list[int],
    *,
    negative_control_ids: list[int] = (),
    database_id: str | None = None,
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> list[Path]:
    """Write the ``cg_*.csv`` files of ``cohort_ids`` (and negative controls) into ``out``.

    Parameters
    ----------
    db
        Where the results tables are (:func:`generate_cohorts` wrote them).
    out
        Output folder (created; files written atomically).
    cohort_ids
        Circe cohorts to export.
    negative_control_ids
        Negative-control outcome cohorts: their counts go to ``cg_cohort_count_neg_ctrl.csv``.
    database_id
        Value of the ``database_id`` column; default :func:`database_id`.
    min_cell_count
        Small-cell threshold (OHDSI ``minCellCount``).

    Returns
    -------
    list[pathlib.Path]
        The files written.
    """
    out = Path(out)
    db_id = database_id or globals()["database_id"](db)
    written = []
    for table, (name, columns, counts) in _EXPORTS.items():
        key = "cohort_id" if table in ("cohort_count", "cohort_generation") else \
            "cohort_definition_id"
        frame = _rows(db, table, key, cohort_ids)
        written.append(_write(out / name, frame, columns, counts, db_id, min_cell_count, key))
    if negative_control_ids:
        frame = _rows(db, "cohort_count", "cohort_id", list(negative_control_ids))
        written.append(_write(out / "cg_cohort_count_neg_ctrl.csv", frame,
                              ["cohort_id", "cohort_entries", "cohort_subjects", "database_id"],
                              ["cohort_entries", "cohort_subjects"], db_id, min_cell_count,
                              "cohort_id"))
    return written


def _rows(db: Database, table: str, key: str, ids: list[int]) -> pd.DataFrame:
    t = db.table(table, "results")
    return t.filter(t[key].isin([int(i) for i in ids])).execute()


def _write(path: Path, frame: pd.DataFrame, columns, counts, db_id, min_cell_count, key):
    frame = frame.copy()
    frame["database_id"] = db_id
    sort = [c for c in (key, "mode_id", "rule_sequence", "inclusion_rule_mask") if c in frame]
    frame = frame.sort_values(sort, ignore_index=True)[columns]
    for column in ("start_time", "end_time"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if counts:
        frame = suppress(frame, counts, min_cell_count)
    return write_csv(path, frame)
