"""Small-cell suppression.

The rule is OHDSI's ``minCellCount`` (CohortDiagnostics, Characterization, CohortIncidence
export): a count of at least 1 and below ``min_cell_count`` is not shown. Zero is shown (it
identifies nobody) and so is any count ≥ ``min_cell_count``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pharmalab.errors import PharmalabInputError

DEFAULT_MIN_CELL_COUNT = 5


def suppress(
    frame: pd.DataFrame,
    count_columns: Sequence[str],
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> pd.DataFrame:
    """Blank out small counts: 1 ≤ count < ``min_cell_count`` becomes missing.

    Parameters
    ----------
    frame
        Any aggregate table (one row per stratum, covariate, check, …).
    count_columns
        Columns holding counts of persons, records or events (integers ≥ 0).
    min_cell_count
        Smallest count that may be shown (OHDSI ``minCellCount``; default 5). ``1`` turns
        suppression off (every count ≥ 1 is shown).

    Returns
    -------
    pandas.DataFrame
        A copy of ``frame``: each count column becomes pandas nullable ``Int64`` with the
        suppressed cells missing (``<NA>``), and a boolean column ``<column>_suppressed`` is
        added after it, True where the cell was blanked. Derived columns (proportions, rates)
        are the caller's to blank, using those flags.

    Raises
    ------
    PharmalabInputError
        If a count column is missing, or ``min_cell_count`` is below 1.
    """
    if min_cell_count < 1:
        raise PharmalabInputError(f"min_cell_count must be at least 1, got {min_cell_count}")
    out = frame.copy()
    for column in count_columns:
        if column not in out.columns:
            raise PharmalabInputError(
                f"suppress: count column {column!r} is not in the table "
                f"(columns: {', '.join(map(str, out.columns))})"
            )
        counts = pd.to_numeric(out[column]).astype("Int64")
        small = (counts >= 1) & (counts < min_cell_count)
        small = small.fillna(False).astype(bool)
        out[column] = counts.mask(small)
        flag = f"{column}_suppressed"
        position = out.columns.get_loc(column) + 1
        if flag in out.columns:
            out[flag] = out[flag].fillna(False).astype(bool) | small
        else:
            out.insert(position, flag, small)
    return out
