"""GiBleed × N as a DuckDB file: every person copied N times with offset 64-bit ids.

Copy k of a patient-level row gets ``person_id + k × 10^10`` and the same offset on every other
``*_id`` that is not a concept id (so ids exceed 32 bits from k = 1); the vocabulary and
``cdm_source`` are copied once. Built by DuckDB from GiBleed as pharmalab loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
GIBLEED = (HERE / ".." / ".." / "shared" / "data" / "omop" / "gibleed_5.3_csv.tar.xz").resolve()
OFFSET = 10_000_000_000
# Patient-level tables copied; the cohorts benchmarked read person, observation_period and
# drug_era; drug_exposure and condition_occurrence make the database realistic in size.
PATIENT_TABLES = ("person", "observation_period", "drug_exposure", "drug_era",
                  "condition_occurrence", "condition_era", "visit_occurrence", "death")


def base() -> Path:
    """GiBleed loaded by pharmalab into benchmarks/.work/gibleed.duckdb (built once)."""
    path = WORK / "gibleed.duckdb"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(HERE.parent / "src"))
        from pharmalab import cdm

        cdm.load(GIBLEED, f"duckdb://{path}")
    return path


def build(n: int) -> Path:
    """benchmarks/.work/gibleed_x{n}.duckdb (cached)."""
    target = WORK / f"gibleed_x{n}.duckdb"
    if target.exists():
        return target
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    src = base()
    con = duckdb.connect(str(tmp))
    con.execute(f"attach '{src}' as src (read_only)")
    tables = [t for (t,) in con.execute(
        "select table_name from duckdb_tables() where database_name = 'src'").fetchall()]
    for table in tables:
        described = con.execute(f"describe src.{table}").fetchall()
        if table not in PATIENT_TABLES:
            if "person_id" not in {r[0] for r in described}:
                con.execute(f"create table {table} as select * from src.{table}")
            continue
        copy_scaled(con, table, described, n)
    con.execute("checkpoint")
    con.close()
    tmp.rename(target)
    return target


def copy_scaled(con, table: str, described, n: int) -> None:
    """Create ``table`` as ``n`` copies of ``src.table``, every non-concept ``*_id`` offset
    by ``k × OFFSET`` in copy ``k`` (``described``: DuckDB's ``describe`` rows)."""
    select = ", ".join(
        f"{name} + k * {OFFSET} as {name}"
        if kind == "BIGINT" and name.endswith("_id") and not name.endswith("concept_id")
        else name
        for name, kind, *_ in described)
    con.execute(f"create table {table} as select {select} "
                f"from src.{table}, (select range as k from range({n}))")
