"""The k-anonymity report of an extraction (Sweeney 2002), computed in the engine.

An equivalence class is a combination of quasi-identifiers — age group at index, gender,
race, ethnicity and, where ``location`` has one, the 3-digit ZIP code — and its size is the
number of distinct persons of the cohort in it. The extraction is k-anonymous for
k = the smallest class. Only the class table (a grouped aggregate) leaves the engine.

A person with several cohort entries is counted in the class of each entry (ages differ).

References
----------
L. Sweeney, "k-anonymity: a model for protecting privacy", International Journal of
Uncertainty, Fuzziness and Knowledge-Based Systems 10(5), 557–570, 2002.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis.expr.types as ir
import pandas as pd

from pharmalab.extract.columns import concept_name_column

QUASI_IDENTIFIERS = ("age_group", "gender_concept_id", "race_concept_id",
                     "ethnicity_concept_id", "zip3")


@dataclass(frozen=True)
class KAnonymityReport:
    """Quasi-identifier classes of a cohort and the smallest allowed size.

    Attributes
    ----------
    classes : pandas.DataFrame
        One row per class, smallest first: the quasi-identifier columns (``age_group``
        str; ``gender_concept_id``, ``race_concept_id``, ``ethnicity_concept_id`` int64 with
        their ``*_concept_name`` str; ``zip3`` str when known) and ``persons`` (int64).
    quasi_identifiers : tuple of str
        The quasi-identifier columns used (``zip3`` only when some member has one).
    k_min : int
    """

    classes: pd.DataFrame
    quasi_identifiers: tuple[str, ...]
    k_min: int

    @property
    def k(self) -> int:
        """The size of the smallest class (persons); 0 for an empty cohort."""
        return int(self.classes["persons"].min()) if len(self.classes) else 0

    @property
    def small_classes(self) -> pd.DataFrame:
        """The classes with fewer than ``k_min`` persons."""
        return self.classes[self.classes["persons"] < self.k_min]

    @property
    def passed(self) -> bool:
        """Whether every class has at least ``k_min`` persons."""
        return self.small_classes.empty

    def describe(self, limit: int = 5) -> str:
        """The small classes as text, e.g. ``age_group=45-49, gender_concept_id=8507
        (MALE), …: 1 person``; at most ``limit`` of them."""
        lines = []
        for row in self.small_classes.head(limit).itertuples(index=False):
            values = row._asdict()
            parts = []
            for qi in self.quasi_identifiers:
                text = f"{qi}={_plain(values[qi])}"
                name = values.get(concept_name_column(qi)) if qi.endswith("_concept_id") \
                    else None
                if name is not None and not pd.isna(name):
                    text += f" ({name})"
                parts.append(text)
            persons = int(values["persons"])
            lines.append(f"{', '.join(parts)}: {persons} person{'s' * (persons != 1)}")
        more = len(self.small_classes) - limit
        if more > 0:
            lines.append(f"and {more} more")
        return "; ".join(lines)


def k_anonymity(person: ir.Table, k_min: int) -> KAnonymityReport:
    """The classes of the extracted ``person`` table (see the module docstring).

    Parameters
    ----------
    person
        The person table's expression (:func:`pharmalab.extract.tables.table_plan`):
        ``person_id`` and the quasi-identifier columns it has.
    k_min
        Smallest class size allowed.

    Returns
    -------
    KAnonymityReport
    """
    present = [c for c in QUASI_IDENTIFIERS if c in person.columns]
    names = [concept_name_column(c) for c in present
             if c.endswith("_concept_id") and concept_name_column(c) in person.columns]
    classes = (person.group_by(present + names)
               .aggregate(persons=person.person_id.nunique())
               .to_pandas())
    used = tuple(c for c in present if classes[c].notna().any() or c != "zip3")
    classes = classes[[*used, *[n for n in names if n.removesuffix("_name") + "_id" in used],
                       "persons"]]
    classes["persons"] = classes["persons"].astype("int64")
    classes = classes.sort_values(["persons", *used], na_position="last",
                                  kind="stable").reset_index(drop=True)
    return KAnonymityReport(classes, used, k_min)


def _plain(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "unknown"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
