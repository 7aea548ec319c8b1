"""The workspace: the results folders ``pharmalab serve`` lists, and the one safe way to open a
file inside them.

A *study* is a folder with a ``manifest.json`` written by :func:`pharmalab.study.run` (keys
``study`` and ``steps``); a *forecast* is a folder with a ``forecast_manifest.json`` written by
``pharmalab forecast`` that is not part of a study. Every file the server reads goes through
:func:`Workspace.resolve`, which refuses absolute paths, ``..``, and symlinks that lead out of
the workspace's roots.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pharmalab.errors import PharmalabInputError

#: How deep below a root to look for results folders (root/a/b/c/manifest.json).
MAX_DEPTH = 4
#: Folders never searched: our own virtual environments and version control.
_SKIP_DIRS = {".venv", ".git", "__pycache__", "node_modules", ".pytest_cache"}
#: Files written by pharmalab that hold patient-level rows (or a database of them): listed with
#: their counts, never served. Nothing in an extraction folder (a folder with a
#: ``data_dictionary.csv``) is served: its tables are patient-level, and its manifest and
#: k-anonymity table hold unsuppressed counts (a class of one person is what k-anonymity
#: reports); the study page shows the manifest's counts after the small-cell rule.
PATIENT_LEVEL_FILES = {"support_list.csv", "episodes.csv"}
PATIENT_LEVEL_SUFFIXES = {".duckdb", ".db", ".sqlite", ".wal"}
#: What may be downloaded at all: tables and manifests.
SERVED_SUFFIXES = {".csv", ".json", ".parquet"}


class NotInWorkspace(PharmalabInputError):
    """A path that is not a file inside the workspace (answered with 404, saying nothing more)."""


@dataclass(frozen=True)
class Entry:
    """One results folder: ``id`` is its path relative to its root, prefixed by the root's index
    (``0/pharmalab-demo``), used in URLs; ``kind`` is 'study' or 'forecast'."""

    id: str
    kind: str
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        if self.kind == "study":
            return str(self.manifest.get("study") or self.path.name)
        return self.path.name

    @property
    def status(self) -> str:
        if self.kind == "forecast":
            return "ok"
        return str(self.manifest.get("status", "unknown"))

    @property
    def when(self) -> str:
        return str(self.manifest.get("finished") or self.manifest.get("started") or "")


class Workspace:
    """The folders the server may read: ``roots[0]`` is the workspace (runs started from the
    browser are written under ``roots[0]/runs``); further roots are ``--results`` folders.

    Raises
    ------
    PharmalabInputError
        If a root does not exist or is not a folder.
    """

    def __init__(self, workspace: str | os.PathLike, results: list[str | os.PathLike] = ()):
        roots = [Path(workspace)] + [Path(r) for r in results]
        for root in roots:
            if not root.is_dir():
                raise PharmalabInputError(f"workspace folder {str(root)!r} does not exist or is "
                                          "not a folder")
        self.roots = [r.resolve() for r in roots]

    @property
    def home(self) -> Path:
        return self.roots[0]

    # -- listing ---------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Every study and stand-alone forecast folder under the roots, newest first."""
        found: dict[Path, Entry] = {}
        for index, root in enumerate(self.roots):
            for folder, kind, manifest in _scan(root):
                if folder in found:
                    continue
                rel = folder.relative_to(root).as_posix()
                found[folder] = Entry(f"{index}/{rel}" if rel != "." else f"{index}",
                                      kind, folder, manifest)
        studies = [e for e in found.values() if e.kind == "study"]
        inside_study = {s.path for s in studies}
        forecasts = [e for e in found.values() if e.kind == "forecast"
                     and not any(p in inside_study for p in e.path.parents)]
        return sorted(studies + forecasts, key=lambda e: e.when, reverse=True)

    def entry(self, entry_id: str) -> Entry:
        """The entry with this id.

        Raises
        ------
        NotInWorkspace
            If no results folder has that id.
        """
        folder = self._folder(entry_id)
        manifest = _read_json(folder / "manifest.json")
        if _is_study(manifest):
            return Entry(entry_id, "study", folder, manifest)
        manifest = _read_json(folder / "forecast_manifest.json")
        if manifest is not None:
            return Entry(entry_id, "forecast", folder, manifest)
        raise NotInWorkspace(entry_id)

    # -- the one way to open a file ---------------------------------------------------------
    def resolve(self, entry: Entry, relative: str, *, patient_level_ok: bool = False) -> Path:
        """The file ``relative`` inside ``entry``'s folder, after every check.

        Raises
        ------
        NotInWorkspace
            For an absolute path, a ``..`` part, a path whose real location (symlinks
            followed) is outside the entry's folder, a file that does not exist, a file of a
            kind that is not served, or a patient-level file (unless ``patient_level_ok``:
            only for reading counts from manifests).
        """
        if not relative or "\x00" in relative or "\\" in relative:
            raise NotInWorkspace(relative)
        rel = PurePosixPath(relative)
        if rel.is_absolute() or any(part in ("..", "") for part in rel.parts):
            raise NotInWorkspace(relative)
        path = (entry.path / rel).resolve()
        base = entry.path.resolve()
        if base not in path.parents or not path.is_file():
            raise NotInWorkspace(relative)
        if not patient_level_ok and (path.suffix not in SERVED_SUFFIXES
                                     or is_patient_level(path, base)):
            raise NotInWorkspace(relative)
        return path

    def _folder(self, entry_id: str) -> Path:
        head, _, rest = entry_id.partition("/")
        if not head.isdigit() or int(head) >= len(self.roots):
            raise NotInWorkspace(entry_id)
        root = self.roots[int(head)]
        if not rest:
            return root
        rel = PurePosixPath(rest)
        if rel.is_absolute() or any(part in ("..", "", ".") for part in rel.parts):
            raise NotInWorkspace(entry_id)
        folder = (root / rel).resolve()
        if root not in folder.parents or not folder.is_dir():
            raise NotInWorkspace(entry_id)
        return folder


def is_patient_level(path: Path, base: Path) -> bool:
    """True for a file that holds patient-level rows (or a database of them), or may: a file in
    an extraction folder (one with a ``data_dictionary.csv``, or a ``manifest.json`` of kind
    ``pharmalab.extract``), in an ``extract`` folder of a study, or in a temporary (dot) folder
    — an extraction being written has neither its dictionary nor its manifest yet."""
    if path.name in PATIENT_LEVEL_FILES or path.suffix in PATIENT_LEVEL_SUFFIXES:
        return True
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        return True
    if any(part.startswith(".") for part in parts) or "extract" in parts[:-1]:
        return True
    parent = path.parent
    while True:  # path is inside base, so this ends at base
        if (parent / "data_dictionary.csv").is_file() or _is_extraction(parent):
            return True
        if parent == base or parent == parent.parent:
            return False
        parent = parent.parent


def _is_extraction(folder: Path) -> bool:
    manifest = _read_json(folder / "manifest.json")
    return bool(manifest) and manifest.get("kind") == "pharmalab.extract"


def extractions(entry: Entry) -> list[dict]:
    """The patient-level extractions in a study, from their manifests: folder, cohort, persons
    and rows per table — never the rows themselves."""
    out = []
    for dictionary in sorted(entry.path.glob("**/data_dictionary.csv")):
        manifest = _read_json(dictionary.parent / "manifest.json") or {}
        out.append({"folder": dictionary.parent.relative_to(entry.path).as_posix(),
                    "manifest": manifest})
    return out


def _scan(root: Path, depth: int = 0):
    manifest = _read_json(root / "manifest.json")
    if _is_study(manifest):
        yield root, "study", manifest
    else:
        forecast = _read_json(root / "forecast_manifest.json")
        if forecast is not None:
            yield root, "forecast", forecast
    if depth >= MAX_DEPTH:
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for child in children:
        if child.name in _SKIP_DIRS or child.name.startswith("."):
            continue
        yield from _scan(child, depth + 1)


def _is_study(manifest: dict | None) -> bool:
    return isinstance(manifest, dict) and "study" in manifest and "status" in manifest


def _read_json(path: Path) -> dict | None:
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
