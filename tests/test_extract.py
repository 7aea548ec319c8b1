"""Patient-level extraction: GiBleed's celecoxib cohort (CohortGenerator cohort 1) to Parquet,
de-identified, checked against hand-written SQL on the source and Python's ``hmac``."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
import warnings
from pathlib import Path

import ibis
import pandas as pd
import pytest

from conftest import ENGINE_TYPES
from pharmalab.extract import (
    ENV_KEY,
    ENV_KEY_FILE,
    ExtractInputError,
    ExtractWarning,
    KAnonymityError,
    PseudonymKeyError,
    date_offset,
    extract,
    pseudonym,
    read_key,
)

KEY = b"pharmalab test key 0123456789abcdef"
OTHER_KEY = b"another pharmalab test key 98765432"
WINDOW = (-365, 365)
# CDM table → the date that places its rows in the window
EVENT_DATES = {
    "condition_occurrence": "condition_start_date",
    "drug_exposure": "drug_exposure_start_date",
    "measurement": "measurement_date",
    "procedure_occurrence": "procedure_date",
    "observation": "observation_date",
    "visit_occurrence": "visit_start_date",
    "death": "death_date",
}
# GiBleed repeats some row ids (drug_exposure 63,323 distinct ids in 67,707 rows, even within
# one person); id, person, concept and date identify a row.
ROW_IDS = {
    "condition_occurrence": "condition_occurrence_id",
    "drug_exposure": "drug_exposure_id",
    "measurement": "measurement_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "observation": "observation_id",
    "visit_occurrence": "visit_occurrence_id",
}
TABLES = ["person", *EVENT_DATES]


def sql(db, query: str) -> pd.DataFrame:
    """Hand-written SQL on the source DuckDB database."""
    return db.con.con.execute(query).df()


def read(out: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(out / table)


def quiet_extract(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtractWarning)
        return extract(*args, **kwargs)


@pytest.fixture(scope="module")
def celecoxib(gibleed_cohorts, tmp_path_factory):
    """Cohort 1 extracted with KEY (GiBleed's cohort 1 has k = 1, so allow_small_k)."""
    out = tmp_path_factory.mktemp("extract") / "celecoxib"
    result = quiet_extract(gibleed_cohorts, 1, out, window=WINDOW, key=KEY, allow_small_k=True)
    return result


@pytest.fixture(scope="module")
def engineered(gibleed_cohorts):
    """Hand-made cohorts in the results schema ``extract_test`` of the GiBleed copy.

    11: 30 women of race 8527 indexed at age 62, and one man of race 8515 at 62 (a unique
        quasi-identifier class); 12: 20 women of race 8527 indexed at age 95 (top-coded);
    13: 12 members of cohort 1 with a second entry 200 days after their first.
    """
    db = dataclasses.replace(gibleed_cohorts, results_schema="extract_test")
    con = gibleed_cohorts.con.con
    con.execute("create schema if not exists extract_test")
    con.execute("create or replace table extract_test.cohort (cohort_definition_id bigint, "
                "subject_id bigint, cohort_start_date date, cohort_end_date date)")
    at_age = "make_date(year_of_birth + {age}, 6, 1)"
    con.execute(f"""
        insert into extract_test.cohort
        select 11, person_id, {at_age.format(age=62)}, {at_age.format(age=62)} + 30 from (
            select * from person
            where gender_concept_id = 8532 and race_concept_id = 8527
              and ethnicity_concept_id = 0 order by person_id limit 30)
        union all
        select 11, person_id, {at_age.format(age=62)}, {at_age.format(age=62)} + 30 from (
            select * from person
            where gender_concept_id = 8507 and race_concept_id = 8515
              and ethnicity_concept_id = 0 order by person_id limit 1)
        union all
        select 12, person_id, {at_age.format(age=95)}, {at_age.format(age=95)} from (
            select * from person
            where gender_concept_id = 8532 and race_concept_id = 8527
              and ethnicity_concept_id = 0 order by person_id desc limit 20)
        union all
        select 13, subject_id, start, start + 10 from (
            (select subject_id, cohort_start_date as start from results.cohort
             where cohort_definition_id = 1 order by subject_id limit 12)
            union all
            (select subject_id, cohort_start_date + 200 from results.cohort
             where cohort_definition_id = 1 order by subject_id limit 12))
    """)
    return db


def source_counts(db, schema: str, cohort_id: int, window=WINDOW) -> dict[str, tuple[int, int]]:
    """(rows, persons) per table by hand-written SQL: members' events in each entry's window."""
    counts = {"person": tuple(sql(db, f"""
        select count(*), count(distinct c.subject_id) from {schema}.cohort c
        join person p on p.person_id = c.subject_id
        where c.cohort_definition_id = {cohort_id}""").iloc[0])}
    for table, date in EVENT_DATES.items():
        counts[table] = tuple(sql(db, f"""
            select count(*), count(distinct e.person_id) from {schema}.cohort c
            join {table} e on e.person_id = c.subject_id
            where c.cohort_definition_id = {cohort_id}
              and e.{date} between c.cohort_start_date + ({window[0]})
                               and c.cohort_start_date + ({window[1]})""").iloc[0])
    return {k: (int(a), int(b)) for k, (a, b) in counts.items()}


def test_row_counts_equal_hand_written_sql(celecoxib, gibleed_cohorts):
    expected = source_counts(gibleed_cohorts, "results", 1)
    got = {r.table: (r.rows, r.persons) for r in celecoxib.counts.itertuples()}
    assert got == expected
    assert expected["person"] == (1800, 1800)
    assert expected["condition_occurrence"][0] > 4000  # a real amount of data
    for table in TABLES:  # the files hold what the manifest says
        frame = read(celecoxib.out, table)
        assert len(frame) == expected[table][0], table
        assert celecoxib.manifest["tables"][table]["rows"] == expected[table][0]
        assert (frame["entry_number"] == 1).all()


def test_no_source_identifier_survives(celecoxib, gibleed_cohorts):
    db = gibleed_cohorts
    con = db.con.con
    for table in TABLES:
        out = read(celecoxib.out, table)
        ids = [c for c in out.columns if c.endswith("_id") and not c.endswith("_concept_id")]
        assert "person_id" in ids
        for column in ids:
            values = set(out[column].dropna().astype("int64"))
            source = set(sql(db, f"select distinct {column} from {table}")[column].dropna())
            # OMOP's 0 ("none", e.g. visit_detail_id) stays 0: it identifies nobody
            assert (values or out.empty) and not (values & source) - {0}, (table, column)
            if column == "visit_detail_id":  # GiBleed has only 0 there
                assert values <= {0}
        key = ROW_IDS.get(table, "person_id")
        files = str(celecoxib.out / table / "*.parquet")
        joined = con.execute(f"select count(*) from read_parquet('{files}') o "
                             f"join {table} s on s.{key} = o.{key}").fetchone()[0]
        assert joined == 0, table
        for dropped in ("provider_id", "care_site_id", "location_id"):
            assert dropped not in out.columns


def test_pseudonyms_equal_python_hmac(celecoxib, gibleed_cohorts):
    # the documented truncation: the digest's first 8 bytes, big-endian, top bit cleared
    digest = hmac.new(KEY, b"person_id:42", hashlib.sha256).digest()
    assert pseudonym(KEY, 42) == int.from_bytes(digest[:8], "big") & (2**63 - 1)
    # id spaces are separated: the same number in another id column has another pseudonym
    assert pseudonym(KEY, 42, "drug_exposure_id") != pseudonym(KEY, 42)
    assert pseudonym(KEY, 42, "preceding_visit_occurrence_id") == pseudonym(
        KEY, 42, "visit_occurrence_id")
    members = sql(gibleed_cohorts,
                  "select subject_id from results.cohort where cohort_definition_id = 1")
    person = read(celecoxib.out, "person")
    assert set(person.person_id) == {pseudonym(KEY, i) for i in members.subject_id}
    for table, column in ROW_IDS.items():
        out = read(celecoxib.out, table)
        source = sql(gibleed_cohorts, f"select {column}, person_id from {table}")
        back = {pseudonym(KEY, i, column): i for i in source[column]}
        assert out[column].map(back).notna().all(), table  # every pseudonym is a source id's
        rows = {(pseudonym(KEY, i, column), pseudonym(KEY, p))
                for i, p in zip(source[column], source.person_id, strict=True)}
        # ... of a row of the same person
        assert set(zip(out[column], out.person_id, strict=True)) <= rows, table
    # an empty link stays empty: NULL visit ids are not hashed
    condition = read(celecoxib.out, "condition_occurrence")
    nulls = sql(gibleed_cohorts, """
        select count(*) n from results.cohort c join condition_occurrence e
          on e.person_id = c.subject_id
        where c.cohort_definition_id = 1 and e.visit_occurrence_id is null
          and e.condition_start_date between c.cohort_start_date - 365
                                         and c.cohort_start_date + 365""").n[0]
    assert condition.visit_occurrence_id.isna().sum() == nulls > 0


def test_dates_shift_by_one_keyed_offset_per_person(celecoxib, gibleed_cohorts):
    db = gibleed_cohorts
    cohort = sql(db, "select subject_id, cohort_start_date from results.cohort "
                     "where cohort_definition_id = 1")
    offsets = {pseudonym(KEY, i): date_offset(KEY, i, 180) for i in cohort.subject_id}
    assert all(1 <= abs(d) <= 180 for d in offsets.values())
    assert len(set(offsets.values())) > 300  # spread over ±180 days
    person = read(celecoxib.out, "person")
    index = dict(zip(cohort.subject_id.map(lambda i: pseudonym(KEY, i)),
                     pd.to_datetime(cohort.cohort_start_date), strict=True))
    moved = pd.to_datetime(person.cohort_start_date) - person.person_id.map(index)
    assert (moved.dt.days == person.person_id.map(offsets)).all()
    checked = 0
    for table, column in ROW_IDS.items():
        out = read(celecoxib.out, table)
        date = EVENT_DATES[table]
        source = sql(db, f"""select e.*, e.{date} - c.cohort_start_date as days_from_index
            from {table} e join results.cohort c on c.subject_id = e.person_id
            where c.cohort_definition_id = 1""")
        source["person_id"] = source.person_id.map(lambda i: pseudonym(KEY, i))
        back = {pseudonym(KEY, i, column): i for i in source[column]}
        concept = table.split("_")[0] + "_concept_id"
        merged = out.assign(_id=out[column].map(back)).merge(
            source, left_on=["_id", "person_id", concept, "days_from_index"],
            right_on=[column, "person_id", concept, "days_from_index"], suffixes=("", "_src"))
        # every output row is one source row: same id, person, concept and days from index
        assert len(merged) == len(out) > 0, table
        shift = merged.person_id.map(offsets)
        dates = [c for c in out.columns if c.endswith(("_date", "_datetime"))]
        assert dates, table
        for c in dates:
            have = merged[c].notna()
            delta = pd.to_datetime(merged[c][have]) - pd.to_datetime(merged[c + "_src"][have])
            assert (delta == pd.to_timedelta(shift[have], unit="D")).all(), (table, c)
            checked += int(have.sum())
        assert merged.days_from_index.between(*WINDOW).all()
    assert checked > 20_000
    # an interval between two events of one person, to the day
    drug = read(celecoxib.out, "drug_exposure")
    span = drug.groupby("person_id").drug_exposure_start_date.agg(
        lambda d: (pd.to_datetime(d).max() - pd.to_datetime(d).min()).days)
    source_span = sql(db, """
        select c.subject_id, max(e.drug_exposure_start_date) - min(e.drug_exposure_start_date) s
        from results.cohort c join drug_exposure e on e.person_id = c.subject_id
        where c.cohort_definition_id = 1 and e.drug_exposure_start_date
              between c.cohort_start_date - 365 and c.cohort_start_date + 365
        group by 1""")
    expected = dict(zip(source_span.subject_id.map(lambda i: pseudonym(KEY, i)),
                        source_span.s, strict=True))
    assert span.to_dict() == expected


def test_same_key_links_other_key_does_not(celecoxib, gibleed_cohorts, tmp_path):
    again = quiet_extract(gibleed_cohorts, 1, tmp_path / "again", key=KEY, allow_small_k=True,
                          domains="person,drug")
    other = quiet_extract(gibleed_cohorts, 1, tmp_path / "other", key=OTHER_KEY,
                          allow_small_k=True, domains="person,drug")
    assert again.key_fingerprint == celecoxib.key_fingerprint != other.key_fingerprint
    for table, key in (("person", ["person_id"]), ("drug_exposure", ["drug_exposure_id"])):
        first = read(celecoxib.out, table).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(read(again.out, table).sort_values(key)
                                      .reset_index(drop=True), first)
        third = read(other.out, table)
        for column in ("person_id", *key):
            assert not set(third[column]) & set(first[column]), (table, column)
    shifted = read(other.out, "person").cohort_start_date
    assert set(shifted) != set(read(celecoxib.out, "person").cohort_start_date)


def test_ages_are_top_coded_and_source_text_is_gone(celecoxib, engineered, gibleed_cohorts,
                                                    tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    old = quiet_extract(engineered, 12, tmp_path / "old", key=KEY, domains="person")
    person = read(old.out, "person")
    ages = sql(gibleed_cohorts, """select year(cohort_start_date) - year_of_birth age
        from extract_test.cohort c join person p on p.person_id = c.subject_id
        where cohort_definition_id = 12""").age
    assert (ages == 95).all() and len(person) == 20
    assert (person.age_at_index == 90).all() and (person.age_group == "90+").all()
    assert old.k_anonymity.k == 20
    young = read(celecoxib.out, "person")
    assert young.age_at_index.max() <= 90 and young.age_at_index.min() >= 0
    assert (young.age_group == young.age_at_index.map(lambda a: f"{a // 5 * 5}-{a // 5 * 5 + 4}")
            ).all()
    strings = set()
    for table in TABLES:
        out = read(celecoxib.out, table)
        assert not [c for c in out.columns if c.endswith("_source_value")], table
        for gone in ("year_of_birth", "month_of_birth", "day_of_birth", "birth_datetime",
                     "measurement_time", "sig", "lot_number", "stop_reason", "value_as_string"):
            assert gone not in out.columns, (table, gone)
        schema = pq.read_schema(next((celecoxib.out / table).glob("*.parquet")))
        text = [f.name for f in schema if pa.types.is_string(f.type)]
        assert set(text) <= {c for c in out.columns if c.endswith("_concept_name")} | {
            "age_group", "zip3"}, table
        for c in text:
            strings |= set(out[c].dropna())
    for table, column in (("person", "person_source_value"),
                          ("visit_occurrence", "visit_source_value"),
                          ("condition_occurrence", "condition_source_value"),
                          ("drug_exposure", "drug_source_value"),
                          ("measurement", "measurement_time")):
        values = set(sql(gibleed_cohorts, f"select distinct {column} from {table}")[column])
        assert values and not values & strings, column


def test_a_unique_quasi_identifier_class_is_refused_with_the_class_named(
        engineered, gibleed_cohorts, tmp_path):
    out = tmp_path / "unique"
    with pytest.raises(KAnonymityError) as err:
        extract(engineered, 11, out, key=KEY)
    text = str(err.value)
    assert "age_group=60-64, gender_concept_id=8507 (MALE), race_concept_id=8515" in text
    assert ": 1 person" in text and "k_min = 5" in text
    assert err.value.report.k == 1 and len(err.value.report.small_classes) == 1
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.warns(ExtractWarning, match="allow_small_k"):
        written = extract(engineered, 11, out, key=KEY, allow_small_k=True)
    kanon = written.manifest["k_anonymity"]
    assert kanon["allow_small_k"] and kanon["written_under_k_min"]
    assert (kanon["k"], kanon["classes"], kanon["classes_under_k_min"]) == (1, 2, 1)
    assert kanon["quasi_identifiers"] == ["age_group", "gender_concept_id", "race_concept_id",
                                          "ethnicity_concept_id"]
    assert json.loads((out / "manifest.json").read_text())["k_anonymity"] == kanon
    classes = pd.read_csv(out / "k_anonymity.csv")
    assert classes.persons.tolist() == [1, 30]
    # GiBleed's celecoxib cohort itself has a class of one (45–49, male, race and
    # ethnicity unknown), so it is refused by default too
    with pytest.raises(KAnonymityError, match="k = 1"):
        extract(gibleed_cohorts, 1, tmp_path / "celecoxib", key=KEY)
    # the key table and the cached members are gone from the engine, refused or not
    left = sql(gibleed_cohorts, "select table_name from duckdb_tables() "
                                "where table_name like '%keys%' or table_name like '%cache%'")
    assert left.empty


def test_an_entry_gets_its_own_window(engineered, tmp_path):
    result = quiet_extract(engineered, 13, tmp_path / "twice", key=KEY, allow_small_k=True)
    got = {r.table: (r.rows, r.persons) for r in result.counts.itertuples()}
    assert got == source_counts(engineered, "extract_test", 13)
    person = read(result.out, "person")
    assert len(person) == 24 and person.person_id.nunique() == 12
    assert sorted(person.entry_number.value_counts().items()) == [(1, 12), (2, 12)]
    by_entry = person.set_index(["person_id", "entry_number"]).cohort_start_date
    gap = (pd.to_datetime(by_entry.xs(2, level=1)) - pd.to_datetime(by_entry.xs(1, level=1)))
    assert (gap.dt.days == 200).all()
    drug = read(result.out, "drug_exposure")
    assert set(drug.entry_number) == {1, 2}
    both = drug.groupby("drug_exposure_id").entry_number.nunique()
    assert (both == 2).any()  # an exposure within both windows is written for each entry
    twice = drug[drug.drug_exposure_id.isin(both[both == 2].index)]
    days = twice.pivot(index="drug_exposure_id", columns="entry_number",
                       values="days_from_index")
    assert (days[1] - days[2] == 200).all()


def test_relative_dates_keep_only_days_from_index(celecoxib, gibleed_cohorts, tmp_path):
    result = quiet_extract(gibleed_cohorts, 1, tmp_path / "relative", key=KEY,
                           relative_dates=True, allow_small_k=True,
                           domains=["person", "drug_exposure"])
    assert list(result.counts.table) == ["person", "drug_exposure"]
    for table in ("person", "drug_exposure"):
        out = read(result.out, table)
        assert not [c for c in out.columns if c.endswith(("_date", "_datetime"))], table
    drug = read(result.out, "drug_exposure").sort_values("drug_exposure_id")
    shifted = read(celecoxib.out, "drug_exposure").sort_values("drug_exposure_id")
    assert drug.days_from_index.tolist() == shifted.days_from_index.tolist()
    duration = (pd.to_datetime(shifted.drug_exposure_end_date)
                - pd.to_datetime(shifted.drug_exposure_start_date)).dt.days
    assert ((drug.drug_exposure_end_days_from_index - drug.days_from_index).tolist()
            == duration.tolist())
    assert "cohort_end_days_from_index" in read(result.out, "person").columns
    assert result.manifest["deidentification"]["relative_dates"] is True


def test_rare_concepts_become_their_nearest_held_ancestor(celecoxib, gibleed_cohorts,
                                                          tmp_path):
    result = quiet_extract(gibleed_cohorts, 1, tmp_path / "general", key=KEY,
                           allow_small_k=True, generalize_concepts=True,
                           domains="condition,drug,measurement,procedure")
    done = result.manifest["deidentification"]["concept_generalization"]
    assert done["enabled"] is True
    pairs = set(sql(gibleed_cohorts, "select ancestor_concept_id a, descendant_concept_id d "
                                     "from concept_ancestor where min_levels_of_separation > 0"
                    ).itertuples(index=False, name=None))
    changed_somewhere = 0
    for table, column in (("condition_occurrence", "condition_concept_id"),
                          ("drug_exposure", "drug_concept_id"),
                          ("measurement", "measurement_concept_id"),
                          ("procedure_occurrence", "procedure_concept_id")):
        before, after = read(celecoxib.out, table), read(result.out, table)
        assert len(after) == len(before)
        held = before.groupby(column).person_id.nunique()
        rare = set(held[held < 5].index)
        stats = done["tables"][table]
        assert stats["rare_concepts"] == len(rare)
        assert stats["rows_changed"] == before[column].isin(rare).sum()
        assert stats["to_ancestor"] + stats["to_other"] == len(rare)
        # no rare concept is left; every concept is held by 5 persons, or is "other"
        now = after.groupby(column).person_id.nunique()
        assert not rare & set(now.index), table
        assert ((now >= 5) | (now.index == 0)).all(), table
        # a new concept is an ancestor of a rare one
        for new in set(now.index) - set(held.index) - {0}:
            assert any((new, r) in pairs for r in rare), (table, new)
        # common concepts keep their rows
        common = held[held >= 5].index
        assert (after[column].value_counts().reindex(common) >=
                before[column].value_counts().reindex(common)).all(), table
        # the source concept, which would name the rare concept, is emptied
        source = column.replace("_concept_id", "_source_concept_id")
        assert (after[source].isna().sum()
                == before[source].isna().sum() + stats["rows_changed"]), table
        other = after[after[column] == 0]
        assert (other[column.replace("_id", "_name")] == "Other (held by fewer than 5 "
                                                         "persons)").all()
        changed_somewhere += stats["rows_changed"]
    assert changed_somewhere > 100 and done["tables"]["drug_exposure"]["to_ancestor"] > 0
    dictionary = result.dictionary.set_index(["table", "column"])
    assert "nearest ancestor" in dictionary.loc[("drug_exposure", "drug_concept_id"),
                                                "transformation"]


def test_identifiable_extraction_must_be_explicit_and_is_recorded(gibleed_cohorts, tmp_path):
    with pytest.warns(ExtractWarning, match="identifiable"):
        result = extract(gibleed_cohorts, 1, tmp_path / "raw", deidentify=False,
                         domains="person,visit")
    person = read(result.out, "person")
    members = sql(gibleed_cohorts,
                  "select subject_id from results.cohort where cohort_definition_id = 1")
    assert set(person.person_id) == set(members.subject_id)
    assert {"year_of_birth", "person_source_value", "location_id"} <= set(person.columns)
    deid = result.manifest["deidentification"]
    assert deid["deidentified"] is False and deid["key_fingerprint"] is None
    assert any("identifiable" in w for w in result.manifest["warnings"])
    assert result.manifest["k_anonymity"]["enforced"] is False


def test_an_interrupted_extraction_leaves_nothing_that_looks_complete(
        gibleed_cohorts, tmp_path, monkeypatch):
    from pharmalab.extract import write

    real = write.write_table
    calls = []

    def failing(db, expr, folder):
        calls.append(folder.name)
        if len(calls) == 3:
            raise RuntimeError("disk full (injected)")
        real(db, expr, folder)

    monkeypatch.setattr(write, "write_table", failing)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="injected"):
        quiet_extract(gibleed_cohorts, 1, out, key=KEY, allow_small_k=True)
    assert calls == ["person", "condition_occurrence", "drug_exposure"]
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # over an earlier extraction: that one is left whole
    monkeypatch.setattr(write, "write_table", real)
    quiet_extract(gibleed_cohorts, 1, out, key=KEY, allow_small_k=True, domains="person")
    before = (out / "manifest.json").read_text()
    calls.clear()
    monkeypatch.setattr(write, "write_table", failing)
    with pytest.raises(RuntimeError, match="injected"):
        quiet_extract(gibleed_cohorts, 1, out, key=KEY, allow_small_k=True)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_data_dictionary_and_manifest_describe_the_files(celecoxib, gibleed_cohorts):
    import pyarrow.parquet as pq

    out = celecoxib.out
    dictionary = pd.read_csv(out / "data_dictionary.csv")
    assert list(dictionary.columns) == ["table", "column", "type", "description",
                                        "source_cdm_column", "transformation"]
    for table in TABLES:
        schema = pq.read_schema(next((out / table).glob("*.parquet")))
        rows = dictionary[dictionary.table == table]
        assert rows.column.tolist() == schema.names, table
        assert rows.type.tolist() == [str(f.type) for f in schema], table
    row = dictionary.set_index(["table", "column"]).loc[("drug_exposure", "drug_concept_name")]
    assert row.source_cdm_column == "concept.concept_name of drug_exposure.drug_concept_id"
    row = dictionary.set_index(["table", "column"]).loc[("condition_occurrence",
                                                         "condition_start_date")]
    assert "shifted" in row.transformation and row.description.startswith("Use this date")
    manifest = json.loads((out / "manifest.json").read_text())
    checksum = sql(gibleed_cohorts, "select checksum from results.cohort_generation "
                                    "where cohort_id = 1").checksum[0]
    assert manifest["cohort"]["checksum"] == checksum
    assert manifest["cohort"]["cohort_name"] == "celecoxib"
    assert manifest["cdm"]["cdm_version"] == "v5.3.1"
    assert manifest["window"]["start_day"] == -365 and manifest["window"]["end_day"] == 365
    assert manifest["domains"] == ["person", "condition", "drug", "measurement", "procedure",
                                   "observation", "visit", "death"]
    deid = manifest["deidentification"]
    assert deid["key_fingerprint"] == read_key(KEY).fingerprint
    assert deid["key_source"] == "argument" and deid["date_shift_days"] == 180
    assert "measurement_time" in deid["dropped_columns"]["measurement"]
    assert manifest["pharmalab_version"] and manifest["created"]
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert KEY not in everything and KEY.hex().encode() not in everything


def test_key_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    random_key = read_key()
    assert random_key.source == "random" and not random_key.stored
    assert len(random_key.secret) == 32 and read_key().secret != random_key.secret
    monkeypatch.setenv(ENV_KEY, KEY.decode())
    assert read_key().secret == KEY and read_key().source == f"env:{ENV_KEY}"
    path = tmp_path / "key"
    path.write_bytes(OTHER_KEY + b"\n")
    assert read_key(key_file=path).secret == OTHER_KEY  # a file wins over the environment
    monkeypatch.delenv(ENV_KEY)
    monkeypatch.setenv(ENV_KEY_FILE, str(path))
    assert read_key().secret == OTHER_KEY
    assert KEY.hex() not in repr(read_key(KEY)) and "secret" not in repr(read_key(KEY))
    assert read_key(KEY).fingerprint == read_key(KEY.decode()).fingerprint
    assert read_key(KEY).fingerprint != read_key(OTHER_KEY).fingerprint
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        read_key(b"short")
    with pytest.raises(PseudonymKeyError, match="cannot be read"):
        read_key(key_file=tmp_path / "absent")
    with pytest.raises(PseudonymKeyError, match="not both"):
        read_key(KEY, key_file=path)


def test_bad_inputs_are_named(gibleed_cohorts, tmp_path):
    with pytest.raises(ExtractInputError, match="unknown extraction domain 'drugs'"):
        extract(gibleed_cohorts, 1, tmp_path / "x", domains="person,drugs", key=KEY)
    with pytest.raises(ExtractInputError, match="window 'a:b'"):
        extract(gibleed_cohorts, 1, tmp_path / "x", window="a:b", key=KEY)
    with pytest.raises(ExtractInputError, match="start 30 is after its end -30"):
        extract(gibleed_cohorts, 1, tmp_path / "x", window="30:-30", key=KEY)
    with pytest.raises(ExtractInputError, match="cohort 999 has no entries"):
        extract(gibleed_cohorts, 999, tmp_path / "x", key=KEY)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExtractInputError, match="not empty and holds no earlier extraction"):
        extract(gibleed_cohorts, 1, tmp_path / "mine", key=KEY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def _many_ids() -> list[int]:
    rng = random.Random(7)
    return sorted({*range(-1000, 1001), *(10**10 * k + 3 for k in range(1, 400)),
                   2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63),
                   *(rng.randrange(-(2**63), 2**63) for _ in range(20_000))})


def _engine_hmac(db, key: bytes, ids: list[int]) -> pd.DataFrame:
    from pharmalab.extract import pseudonyms
    from pharmalab.extract.keys import PseudonymKey

    kind = db.url.kind
    table = ibis.memtable({"id": ids}, schema={"id": "int64"})
    with pseudonyms.key_table(db, PseudonymKey(key, "test")) as keys:
        rel = table.cross_join(keys)
        digest = pseudonyms.hmac_hex(kind, rel, rel.id)
        rel = rel.select("id", digest=digest)
        expr = rel.select("id", "digest",
                          pseudonym=pseudonyms.digest_pseudonym(kind, rel.digest),
                          offset=pseudonyms.digest_offset(kind, rel.digest, 180))
        return db.con.to_pyarrow(expr).to_pandas()


def _assert_python_hmac(frame: pd.DataFrame, key: bytes) -> None:
    expected = [hmac.new(key, f"person_id:{i}".encode(), hashlib.sha256).hexdigest()
                for i in frame.id]
    assert frame.digest.tolist() == expected
    assert frame.pseudonym.tolist() == [pseudonym(key, i) for i in frame.id]
    assert frame.offset.tolist() == [date_offset(key, i, 180) for i in frame.id]


@pytest.mark.parametrize("key", [KEY, bytes(range(256))[:40], b"k" * 100],
                         ids=["text", "binary", "longer-than-a-block"])
def test_duckdb_hmac_equals_python_on_many_ids(key):
    ids = _many_ids()
    from pharmalab.engine import database

    frame = _engine_hmac(database("duckdb://"), key, ids)
    assert len(frame) == len(ids) > 20_000
    _assert_python_hmac(frame, key)
    assert frame.pseudonym.min() >= 0


def _same_tables(one: Path, two: Path, tables) -> None:
    for table in tables:
        first, second = read(one, table), read(two, table)
        assert list(first.columns) == list(second.columns), table
        key = ["person_id", "entry_number", *([ROW_IDS[table]] if table in ROW_IDS else []),
               *(["days_from_index"] if table in EVENT_DATES else [])]
        first, second = (f.sort_values(key).reset_index(drop=True) for f in (first, second))
        for c in first.columns:  # Spark writes timestamps in UTC, DuckDB without a zone
            if str(first[c].dtype).startswith("datetime64"):
                first[c] = first[c].dt.tz_localize(None).astype("datetime64[us]")
                second[c] = second[c].dt.tz_localize(None).astype("datetime64[us]")
        pd.testing.assert_frame_equal(first, second, check_dtype=False, obj=table)


def test_every_engine_extracts_what_duckdb_extracts(other_engine, gibleed_cohorts, celecoxib,
                                                   tmp_path):
    db = other_engine.db
    frame = _engine_hmac(db, KEY, _many_ids())
    _assert_python_hmac(frame, KEY)
    result = quiet_extract(db, 1, tmp_path / "engine", key=KEY, allow_small_k=True)
    pd.testing.assert_frame_equal(result.counts, celecoxib.counts)
    assert result.key_fingerprint == celecoxib.key_fingerprint
    assert result.k_anonymity.classes.equals(celecoxib.k_anonymity.classes)
    # the same columns and Arrow types, once each engine's own types are mapped onto DuckDB's
    # (Spark's and BigQuery's timestamps are instants in UTC; BigQuery's one integer is INT64)
    engine_types = ENGINE_TYPES.get(other_engine.name, lambda frame, name: frame)
    pd.testing.assert_frame_equal(
        *(engine_types(r.dictionary, "data_dictionary.csv") for r in (result, celecoxib)))
    _same_tables(result.out, celecoxib.out, TABLES)
    # rare concepts generalized on the engine as on DuckDB
    runs = [quiet_extract(db, 1, tmp_path / name, key=KEY, allow_small_k=True,
                          generalize_concepts=True, domains="drug,measurement")
            for db, name in ((db, "engine_general"), (gibleed_cohorts, "duck_general"))]
    generalized = [r.manifest["deidentification"]["concept_generalization"] for r in runs]
    assert generalized[0] == generalized[1]
    assert generalized[0]["tables"]["drug_exposure"]["rows_changed"] > 0
    _same_tables(runs[0].out, runs[1].out, ["drug_exposure", "measurement"])


def test_ambiguous_or_empty_key_settings_are_refused():
    from pharmalab.extract import ENV_KEY, ENV_KEY_FILE

    with pytest.raises(PseudonymKeyError, match="both"):
        read_key(environ={ENV_KEY: "k" * 32, ENV_KEY_FILE: "/some/file"})
    with pytest.raises(PseudonymKeyError, match="set but empty"):
        read_key(environ={ENV_KEY: ""})


def test_open_end_sentinels_are_not_shifted_and_read_back(gibleed_cohorts, tmp_path):
    """Issue 15 item 4: a drug exposure ending 9999-12-31 (OMOP's open end) was shifted to
    year 10000 and the Parquet could not be read back."""
    import shutil as sh

    from pharmalab.engine import database

    path = tmp_path / "cdm.duckdb"
    gibleed_cohorts.con.raw_sql("CHECKPOINT")
    sh.copy(gibleed_cohorts.url.duckdb_path, path)
    db = database(f"duckdb://{path}?results_schema=results", create=False)
    first = int(db.con.con.execute(
        "select min(subject_id) from results.cohort where cohort_definition_id = 1").fetchone()[0])
    db.con.raw_sql(f"""update drug_exposure set drug_exposure_end_date = DATE '9999-12-31'
                       where person_id = {first}""")
    n_open = int(db.con.con.execute(
        f"select count(*) from drug_exposure where person_id = {first}").fetchone()[0])
    result = quiet_extract(db, 1, tmp_path / "x", window=WINDOW, key=KEY, allow_small_k=True,
                           domains=["person", "drug_exposure"])
    drug = pd.read_parquet(result.out / "drug_exposure")  # pyarrow reads it back
    ends = pd.Series(drug["drug_exposure_end_date"].astype(str))
    sentinel = ends == "9999-12-31"
    assert 0 < sentinel.sum() <= n_open
    assert not ends.str.startswith("10000").any()
    # every other date is shifted as before: one keyed offset per person
    starts = pd.to_datetime(drug.loc[~sentinel, "drug_exposure_start_date"])
    assert starts.notna().all()
    deid = result.manifest["deidentification"]
    assert deid["unshifted_after"] == "2099-12-31" and "9999-12-31" in deid["unshifted_note"]
    relative = quiet_extract(db, 1, tmp_path / "r", window=WINDOW, key=KEY, allow_small_k=True,
                             domains=["person", "drug_exposure"], relative_dates=True)
    rel = pd.read_parquet(relative.out / "drug_exposure")
    assert rel["drug_exposure_end_days_from_index"].isna().sum() == sentinel.sum()
    db.con.disconnect()
