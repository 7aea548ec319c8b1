"""Build pharmalab's packaged OMOP CDM specification from the official OHDSI CSVs.

The official field- and table-level specifications (OHDSI CommonDataModel, Apache-2.0) are
long CSVs with free-text guidance. pharmalab needs, at run time and on a fresh machine, only
the machine-readable part: table, column, order, type, required, primary and foreign keys,
and a one-line description for data dictionaries. This script keeps exactly that.

Usage: python tools/build_cdm_spec.py ../shared/data/omop/cdm_spec src/pharmalab/cdm/spec
"""

import sys
from pathlib import Path

import pandas as pd


def _type(cdm_datatype: str) -> str:
    t = cdm_datatype.strip().lower()
    if t == "integer":
        return "BIGINT"
    if t == "float":
        return "DOUBLE"
    if t == "date":
        return "DATE"
    if t == "datetime":
        return "TIMESTAMP"
    if t.startswith("varchar"):
        return "VARCHAR"
    raise ValueError(f"unknown cdmDatatype {cdm_datatype!r}")


def main(src: Path, dst: Path) -> None:
    for version in ("5.3", "5.4"):
        fields = pd.read_csv(src / f"OMOP_CDMv{version}_Field_Level.csv", dtype=str,
                             keep_default_na=False)
        tables = pd.read_csv(src / f"OMOP_CDMv{version}_Table_Level.csv", dtype=str,
                             keep_default_na=False)
        out = pd.DataFrame({
            "table": fields["cdmTableName"].str.strip().str.lower(),
            "column": fields["cdmFieldName"].str.strip().str.lower(),
            "datatype": fields["cdmDatatype"].map(_type),
            "cdm_datatype": fields["cdmDatatype"].str.strip(),
            "required": fields["isRequired"].str.strip().eq("Yes"),
            "primary_key": fields["isPrimaryKey"].str.strip().eq("Yes"),
            "fk_table": fields["fkTableName"].str.strip().str.lower().replace("na", ""),
            "fk_column": fields["fkFieldName"].str.strip().str.lower().replace("na", ""),
            "description": fields["userGuidance"].str.replace(r"\s+", " ", regex=True)
            .str.strip().replace("NA", ""),
        })
        out.insert(2, "position", out.groupby("table").cumcount() + 1)
        out.to_csv(dst / f"fields_v{version}.csv", index=False)
        tab = pd.DataFrame({
            "table": tables["cdmTableName"].str.strip().str.lower(),
            "schema": tables["schema"].str.strip().str.lower(),
            "required": tables["isRequired"].str.strip().eq("Yes"),
            "description": tables["tableDescription"].str.replace(r"\s+", " ", regex=True)
            .str.strip(),
        })
        tab.to_csv(dst / f"tables_v{version}.csv", index=False)
        print(version, len(tab), "tables", len(out), "fields")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
