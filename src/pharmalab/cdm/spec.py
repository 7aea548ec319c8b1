"""The OMOP CDM v5.3 and v5.4 specification: tables, columns, types, keys.

Built from the official OHDSI CommonDataModel field- and table-level specifications
(Apache-2.0) by ``tools/build_cdm_spec.py``; shipped in ``pharmalab/cdm/spec/``.
Types are mapped ``integer → BIGINT``, ``float → DOUBLE``, ``date → DATE``,
``datetime → TIMESTAMP``, ``varchar(n) → VARCHAR``.
"""

from __future__ import annotations

import csv
import datetime as _dt
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from pharmalab.errors import CdmInputError

CDM_VERSIONS = ("5.3", "5.4")

# OMOP's standard Gender, Race (OMB categories) and Ethnicity concepts, with their vocabulary
# names: what person.*_concept_id hold. Named here so that a CDM shipped without these rows
# in ``concept`` (Eunomia's GiBleed) still shows "race = White", not an id.
STANDARD_DEMOGRAPHIC_CONCEPTS = {
    0: "No matching concept",
    8507: "MALE", 8532: "FEMALE", 8551: "UNKNOWN", 8521: "OTHER", 8570: "AMBIGUOUS",
    8515: "Asian", 8516: "Black or African American", 8527: "White",
    8557: "Native Hawaiian or Other Pacific Islander", 8657: "American Indian or Alaska Native",
    38003563: "Hispanic or Latino", 38003564: "Not Hispanic or Latino",
}

# Dates after this day are conventions, not events: OMOP's open end 9999-12-31 (an observation
# period or exposure still running), far-future placeholders. Analyses treat them as "no end
# recorded"; the extraction never shifts them.
OPEN_END_AFTER = _dt.date(2099, 12, 31)

# Tables of the results schema that Eunomia archives carry next to the CDM (CDM 5.3 DDL puts
# them in the results schema); a loader recognises and skips them rather than failing.
RESULTS_TABLES = ("cohort", "cohort_attribute")


@dataclass(frozen=True)
class Column:
    """One CDM column: name, type (DuckDB/Ibis SQL name), required, primary key, FK."""

    table: str
    name: str
    position: int
    datatype: str
    required: bool
    primary_key: bool
    fk_table: str
    fk_column: str
    description: str


@dataclass(frozen=True)
class Table:
    """One CDM table: name, schema role (``cdm`` or ``vocab``), required, columns in order."""

    name: str
    role: str
    required: bool
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def primary_key(self) -> Column | None:
        keys = [c for c in self.columns if c.primary_key]
        return keys[0] if len(keys) == 1 else None

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True)
class CdmSpec:
    """The specification of one CDM version: ``tables`` maps table name → :class:`Table`."""

    version: str
    tables: dict[str, Table]

    def table(self, name: str) -> Table:
        """The table ``name`` (lower case).

        Raises
        ------
        CdmInputError
            If the name is not a table of this CDM version.
        """
        try:
            return self.tables[name.lower()]
        except KeyError:
            raise CdmInputError(
                f"unknown table {name!r}: not a table of OMOP CDM v{self.version}"
            ) from None


def normalize_version(version: str | None) -> str:
    """'v5.3.1', '5.3', 'CDM v5.4.0' → '5.3' / '5.4'.

    Raises
    ------
    CdmInputError
        For a version other than 5.3 or 5.4.
    """
    text = str(version or "").strip().lower().removeprefix("cdm").strip().removeprefix("v")
    for known in CDM_VERSIONS:
        if text == known or text.startswith(known + "."):
            return known
    raise CdmInputError(
        f"unsupported CDM version {version!r}; expected one of {', '.join(CDM_VERSIONS)}"
    )


@cache
def cdm_spec(version: str = "5.4") -> CdmSpec:
    """The packaged specification of CDM ``version`` ('5.3' or '5.4').

    Raises
    ------
    CdmInputError
        For an unsupported version.
    """
    version = normalize_version(version)
    folder = files("pharmalab.cdm") / "spec"
    with (folder / f"fields_v{version}.csv").open(encoding="utf-8") as fh:
        fields = list(csv.DictReader(fh))
    with (folder / f"tables_v{version}.csv").open(encoding="utf-8") as fh:
        table_rows = list(csv.DictReader(fh))
    columns: dict[str, list[Column]] = {}
    for f in fields:
        columns.setdefault(f["table"], []).append(
            Column(
                table=f["table"],
                # the OHDSI DDL quotes a reserved word in the name itself ("offset")
                name=f["column"].strip('"'),
                position=int(f["position"]),
                datatype=f["datatype"],
                required=f["required"] == "True",
                primary_key=f["primary_key"] == "True",
                fk_table=f["fk_table"],
                fk_column=f["fk_column"],
                description=f["description"],
            )
        )
    tables = {
        t["table"]: Table(
            name=t["table"],
            # cohort_definition is a "results" table in the v5.4 spec; it loads with the CDM.
            role="vocab" if t["schema"] == "vocab" else "cdm",
            required=t["required"] == "True",
            description=t["description"],
            columns=tuple(columns.get(t["table"], ())),
        )
        for t in table_rows
    }
    return CdmSpec(version=version, tables=tables)
