"""Hierarchies of sales series: aggregation, the summing matrix and level tags.

A hierarchy is given as the bottom level's category columns, top to bottom (e.g.
``Concession, Type, ATC1, ATC2``): the series are the grand total, then every prefix of the
columns. A grouped structure is given as explicit levels (lists of columns, e.g.
``[["Concession"], ["ATC1"], ["Concession", "ATC1"]]``). Aggregation is
``hierarchicalforecast.utils.aggregate`` (Nixtla), so ``unique_id`` values read
``Total/Concessional/Co-payments`` as in Nixtla's examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pharmalab.errors import PharmalabInputError

TOTAL = "Total"


@dataclass(frozen=True)
class Hierarchy:
    """The aggregated series and their structure.

    Attributes
    ----------
    series
        ``unique_id`` (str), ``ds`` (datetime64[ns]), ``y`` (float64): every node.
    summing_matrix
        ``unique_id`` then one 0/1 column per bottom series (Nixtla's ``S_df``): row *i* says
        which bottom series add up to node *i*.
    tags
        Level name (e.g. ``Total/Concession``) → array of the ``unique_id`` in that level,
        top level first.
    """

    series: pd.DataFrame
    summing_matrix: pd.DataFrame
    tags: dict[str, np.ndarray]

    @property
    def bottom_ids(self) -> list[str]:
        return [c for c in self.summing_matrix.columns if c != "unique_id"]

    @property
    def node_ids(self) -> list[str]:
        return self.summing_matrix["unique_id"].tolist()

    @property
    def level_of(self) -> dict[str, str]:
        """``unique_id`` → level name."""
        return {uid: level for level, ids in self.tags.items() for uid in ids}

    @property
    def is_strict(self) -> bool:
        """True for a strict tree (every node has one parent): top-down methods apply."""
        levels = list(self.tags)
        if len(levels) < 2:
            return False
        return all(len(a.split("/")) + 1 == len(b.split("/")) and b.startswith(a)
                   for a, b in zip(levels, levels[1:], strict=False))

    def S(self) -> np.ndarray:  # noqa: N802 - the textbook's name
        """The summing matrix as a float array (nodes × bottom series)."""
        return self.summing_matrix.drop(columns="unique_id").to_numpy(dtype="float64")


def hierarchy_spec(columns: Sequence[str] = (), levels: Sequence[Sequence[str]] = ()
                   ) -> list[list[str]]:
    """The ``aggregate`` spec: a total, then each prefix of ``columns`` (a strict hierarchy);
    or, with ``levels``, the total, each level as given and the bottom level ``columns`` (a
    grouped structure, e.g. Concession and ATC1 crossed)."""
    if levels:
        if not columns:
            raise PharmalabInputError("grouped levels need the bottom-level columns too "
                                      "(the hierarchy columns, e.g. Concession,ATC1)")
        unknown = sorted({c for level in levels for c in level} - set(columns))
        if unknown:
            raise PharmalabInputError(
                f"grouped level column(s) {', '.join(unknown)} are not among the hierarchy "
                f"columns ({', '.join(columns)})")
        spec = [[TOTAL]] + [[TOTAL, *level] for level in levels]
        bottom = [TOTAL, *columns]
        return spec + ([bottom] if bottom not in spec else [])
    return [[TOTAL]] + [[TOTAL, *columns[: i + 1]] for i in range(len(columns))]


def build_hierarchy(frame: pd.DataFrame, columns: Sequence[str] = (),
                    levels: Sequence[Sequence[str]] = ()) -> Hierarchy:
    """Aggregate bottom-level series into every level of the hierarchy.

    Parameters
    ----------
    frame
        ``ds`` (datetime64), ``y`` (float64, ≥ 0) and the category columns named in
        ``columns`` / ``levels`` (str), one row per bottom series and period.
    columns
        Category columns top to bottom, e.g. ``["Concession", "Type", "ATC1", "ATC2"]``.
        Empty with no ``levels``: the series are forecast as they are (no hierarchy); the
        result then has one level holding every ``unique_id`` of ``frame``.
    levels
        A grouped structure: lists of columns, each an aggregation level between the total
        and the bottom level ``columns`` (e.g. ``[["Concession"], ["ATC1"]]`` with
        ``columns=["Concession", "ATC1"]``). Top-down reconciliation does not apply to it.

    Returns
    -------
    Hierarchy

    Raises
    ------
    PharmalabInputError
        A named column is missing, or holds an empty value or a ``/`` (which would make
        ``unique_id`` ambiguous).

    References
    ----------
    Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), §11.1;
    ``hierarchicalforecast.utils.aggregate``.
    """
    from hierarchicalforecast.utils import aggregate

    if not columns and not levels:
        ids = sorted(frame["unique_id"].unique())
        series = frame[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"])
        s = pd.DataFrame(np.eye(len(ids)), columns=ids).assign(unique_id=ids)
        return Hierarchy(series.reset_index(drop=True),
                         s[["unique_id", *ids]], {"Series": np.array(ids, dtype=object)})
    used = list(dict.fromkeys([*columns, *(c for level in levels for c in level)]))
    for column in used:
        if column not in frame.columns:
            raise PharmalabInputError(
                f"hierarchy column {column!r} is not in the sales data "
                f"(columns: {', '.join(map(str, frame.columns))})")
        values = frame[column].astype(str)
        bad = values.eq("") | values.str.contains("/", regex=False)
        if bad.any():
            raise PharmalabInputError(
                f"hierarchy column {column!r}: expected non-empty names without '/', found "
                f"{values[bad].iloc[0]!r}")
    data = frame[["ds", "y", *used]].copy()
    for column in used:
        data[column] = data[column].astype(str)
    data[TOTAL] = TOTAL
    series, s_df, tags = aggregate(data, hierarchy_spec(columns, levels))
    series = series.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    s_df = s_df.reset_index() if "unique_id" not in s_df.columns else s_df
    return Hierarchy(series, s_df.reset_index(drop=True), dict(tags))
