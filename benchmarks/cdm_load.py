"""Benchmark: load GiBleed × N (N = 1, 10, 100) into DuckDB; time, CPU and peak memory
against the floor (plain DuckDB ``CREATE TABLE … AS SELECT * FROM read_csv/read_parquet``).

GiBleed × N replicates every patient-level row N times with offset identifiers (person and
every other ``*_id`` except concept ids, + k × 10,000,000 for copy k), so N = 100 is 269,400
persons and 6.8 M drug exposures; the vocabulary is copied once. The copies are written as a
folder of CSV files and a folder of Parquet files by DuckDB, then each is loaded by
``pharmalab.cdm.load`` in a fresh process, and by the floor in another; wall time, CPU time
(user + system, all threads) and peak resident memory of each process are read from the OS.

Usage: python benchmarks/cdm_load.py [N ...]      (run by hand; writes benchmarks/RESULTS.md)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from _results import update_section

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
GIBLEED = (HERE / ".." / ".." / "shared" / "data" / "omop" / "gibleed_5.3_csv.tar.xz").resolve()
OFFSET = 10_000_000
VOCABULARY = {"concept", "vocabulary", "domain", "concept_class", "concept_relationship",
              "relationship", "concept_synonym", "concept_ancestor", "source_to_concept_map",
              "drug_strength", "cdm_source", "metadata", "cohort_definition",
              "attribute_definition"}


# What the measurements showed; kept with the table when the benchmark is rerun.
FINDINGS = (
    'Where the time went (issue 19, item 7): the loader used to parse every CSV twice as text'
    ' (a validation pass casting every column, then the write casting it again) and to filter'
    ' empty rows on the typed values, 11–13× the floor in CPU at × 10 and × 100. Now one '
    "statement per table reads the file and writes the table: DuckDB's reader parses dates, "
    'date-times and doubles (raising on a bad value), ids are read as text and cast only when'
    ' written exactly as an integer, and the column-by-column text validation runs only when '
    'that statement fails, to name the bad value and its row. Headers are read in Python '
    '(sniffing each file through DuckDB cost about 50 ms a table) and row counts come from '
    "the write. What stays above the floor at × 100 is mostly that integer check (DuckDB's "
    "own integer parser accepts '1e3', '0x10' and '1_000' and rounds '8507.7', so ids cannot "
    'go straight to BIGINT); at × 1 it is the import of pharmalab and fixed per-table costs '
    "(about 1.5 s). Peak memory is DuckDB's own, within 10–25% of the floor's at every N: "
    'rows stream from the file into the table.')


def build(n: int, fmt: str = "csv") -> Path:
    """Write GiBleed × n as CSV (or Parquet) files into benchmarks/.work/gibleed_x{n}/
    (``gibleed_x{n}_parquet/``); cached."""
    folder = WORK / (f"gibleed_x{n}" if fmt == "csv" else f"gibleed_x{n}_{fmt}")
    options = "(header)" if fmt == "csv" else f"(format {fmt})"
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    base = WORK / "gibleed.duckdb"
    if not base.exists():
        sys.path.insert(0, str(HERE.parent / "src"))
        from pharmalab import cdm

        cdm.load(GIBLEED, f"duckdb://{base}")
    con = duckdb.connect(str(base), read_only=True)
    tables = [t for (t,) in con.execute("select table_name from information_schema.tables "
                                        "where table_schema = 'main'").fetchall()]
    con.execute(f"create temp table copies as select range as k from range({n})")
    for table in tables:
        described = con.execute(f"describe {table}").fetchall()
        columns = [r[0] for r in described]
        integer = {r[0] for r in described if r[1] == "BIGINT"}
        target = folder / f"{table}.{fmt}"
        if table in VOCABULARY or "person_id" not in columns:
            con.execute(f"copy {table} to '{target}' {options}")
            continue
        select = ", ".join(
            f"{c} + k * {OFFSET} as {c}"
            if c in integer and c.endswith("_id") and not c.endswith("concept_id") else c
            for c in columns)
        con.execute(f"copy (select {select} from {table}, copies) to '{target}' {options}")
    con.close()
    (folder / ".complete").touch()
    return folder


# The child's own peak RSS: VmHWM of its address space, which exec starts afresh. (wait4's
# ru_maxrss also counts the forked copy of this parent before exec, so a large parent would
# show through.)
_PEAK = """
import re
status = open("/proc/self/status").read()
print("peak_rss_kb", re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
"""

_FLOOR = """
import sys, duckdb
from pathlib import Path
folder, target = Path(sys.argv[1]), sys.argv[2]
con = duckdb.connect(target)
for f in sorted(folder.glob("*.csv")) + sorted(folder.glob("*.parquet")):
    reader = "read_csv" if f.suffix == ".csv" else "read_parquet"
    con.execute(f"create table {f.stem} as select * from {reader}('{f}')")
con.execute("checkpoint")
con.close()
""" + _PEAK

_OURS = """
import json, sys
sys.path.insert(0, sys.argv[3])
from pharmalab import cdm
r = cdm.load(sys.argv[1], "duckdb://" + sys.argv[2])
print(json.dumps(r.rows()))
""" + _PEAK


def _run(code: str, folder: Path) -> tuple[dict, str]:
    """Run ``code`` on ``folder`` into a new DuckDB file in a child process; its wall
    seconds, CPU seconds and peak RSS (MB), and its output."""
    target = folder.parent / f"{folder.name}.duckdb"
    target.unlink(missing_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder), str(target),
                                 str(HERE.parent / "src")], stdout=subprocess.PIPE,
                                stderr=err, text=True)
        stdout = proc.stdout.read()  # small: the row counts
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU seconds
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - started
    target.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"loading {folder} failed:\n{stderr[-3000:]}")
    peak = [line.split()[1] for line in stdout.splitlines() if line.startswith("peak_rss_kb")]
    return {"seconds": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": int(peak[-1]) / 1024}, stdout


def measure(n: int) -> dict:
    """Load GiBleed × n from CSV and from Parquet, pharmalab and the floor; best of 1."""
    out = {}
    for fmt in ("csv", "parquet"):
        folder = build(n, fmt)
        floor, _ = _run(_FLOOR, folder)
        ours, printed = _run(_OURS, folder)
        rows = json.loads(next(line for line in printed.splitlines() if line.startswith("{")))
        out[fmt] = {"ours": ours, "floor": floor, "rows": rows,
                    "mb": sum(p.stat().st_size for p in folder.glob(f"*.{fmt}")) / 1e6}
        print(f"N={n} {fmt}: ours {ours}, floor {floor}", flush=True)
    return out


def main(ns: list[int]) -> None:
    rows = [(n, measure(n)) for n in ns]
    lines = [
        "GiBleed × N as a folder of CSV (or Parquet) files → `pharmalab.cdm.load` → a new "
        "DuckDB file: every value checked against its CDM type, spec column order and types, "
        "all tables in one transaction. The *floor* is plain DuckDB on the same files in its "
        "own process: `CREATE TABLE t AS SELECT * FROM read_csv('t.csv')` (or `read_parquet`) "
        "per table, with DuckDB's own type sniffing and no checks. CPU is user + system "
        "seconds of the process (both cores); peak RSS is its own high-water mark (`VmHWM`). "
        "Machine: 2 cores, 24 GiB.",
        "",
        "| N | format | persons | all rows | size (MB) | load wall (s) | load CPU (s) "
        "| floor wall (s) | floor CPU (s) | CPU ratio | wall ratio | rows/s | peak RSS (MB) "
        "| floor peak RSS (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in rows:
        for fmt, r in m.items():
            ours, floor, total = r["ours"], r["floor"], sum(r["rows"].values())
            lines.append(
                f"| {n} | {fmt} | {r['rows']['person']:,} | {total:,} | {r['mb']:,.0f} | "
                f"{ours['seconds']:.1f} | {ours['cpu']:.1f} | {floor['seconds']:.1f} | "
                f"{floor['cpu']:.1f} | {ours['cpu'] / floor['cpu']:.2f}× | "
                f"{ours['seconds'] / floor['seconds']:.2f}× | {total / ours['seconds']:,.0f} | "
                f"{ours['peak_rss_mb']:,.0f} | {floor['peak_rss_mb']:,.0f} |")
    lines.append("")
    lines.append(f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/cdm_load.py "
                 f"{' '.join(map(str, ns))}`.")
    lines += ["", FINDINGS]
    update_section("CDM load (`benchmarks/cdm_load.py`)", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 10, 100])
