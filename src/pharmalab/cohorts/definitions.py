"""Cohort sets: OHDSI Circe definitions (ATLAS JSON or circepy YAML) and their catalogue.

A cohort set is a folder with either
- a ``Cohorts.csv`` in OHDSI CohortGenerator's format: ``cohort_id``, ``cohort_name``
  (``cohortId``/``cohortName`` accepted), optional ``atlas_id`` and ``json_path``; each
  definition at ``json_path`` or ``cohorts/<cohort_id>.json`` (or ``.yaml``/``.yml``), or
- files ``<cohort_id>.json`` / ``.yaml`` / ``.yml`` (the name is the definition's title or the
  file stem).

The whole set is validated before anything runs: duplicate ids, missing files, JSON syntax,
Circe fields (circepy's pydantic model), references from criteria to concept sets, and that
circepy can build the cohort's SQL.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pharmalab.errors import CohortDefinitionError

_EXTENSIONS = (".json", ".yaml", ".yml")
# Top-level keys of a Circe cohort expression (ATLAS spelling and circepy's camelCase).
_TOP_LEVEL = {
    "ConceptSets", "PrimaryCriteria", "AdditionalCriteria", "QualifiedLimit", "ExpressionLimit",
    "InclusionRules", "EndStrategy", "CensoringCriteria", "CollapseSettings", "CensorWindow",
    "cdmVersionRange", "Title", "title", "conceptSets", "primaryCriteria", "additionalCriteria",
    "qualifiedLimit", "expressionLimit", "inclusionRules", "endStrategy", "censoringCriteria",
    "collapseSettings", "censorWindow",
}


@dataclass(frozen=True)
class CohortDefinition:
    """One cohort of a set.

    Attributes
    ----------
    cohort_id : int
        ``cohort_definition_id`` in the results tables.
    cohort_name : str
    path : pathlib.Path
        The definition file.
    text : str
        The definition as written (JSON or YAML).
    expression : circe.cohortdefinition.CohortExpression
    checksum : str
        SHA-256 of the canonical definition and the circepy version: a new circepy may emit
        different SQL, so it regenerates.
    """

    cohort_id: int
    cohort_name: str
    path: Path
    text: str
    expression: object
    checksum: str

    @property
    def inclusion_rules(self) -> list[tuple[int, str, str]]:
        """``(rule_sequence, name, description)`` of the definition's inclusion rules."""
        return [(i, r.name or "", r.description or "")
                for i, r in enumerate(self.expression.inclusion_rules or [])]

    @property
    def one_event_per_person(self) -> bool:
        """Entry events are limited to one per person (primary limit First or Last; circe
        applies First when no limit is given)."""
        criteria = self.expression.primary_criteria
        limit = criteria.primary_limit if criteria else None
        return not (limit and limit.type and str(limit.type).upper() == "ALL")

    @property
    def has_censor_window(self) -> bool:
        window = self.expression.censor_window
        return window is not None and bool(window.start_date or window.end_date)


@dataclass(frozen=True)
class CohortSet:
    """A validated cohort set: definitions in catalogue order, and where it came from."""

    folder: Path
    cohorts: tuple[CohortDefinition, ...]

    def __iter__(self):
        return iter(self.cohorts)

    def __len__(self) -> int:
        return len(self.cohorts)

    @property
    def ids(self) -> list[int]:
        return [c.cohort_id for c in self.cohorts]


def read_cohort_set(folder: str | Path) -> CohortSet:
    """Read and validate a cohort set (see the module docstring for the layouts).

    Returns
    -------
    CohortSet

    Raises
    ------
    CohortDefinitionError
        Naming the file (and row or field): missing folder or file, a ``Cohorts.csv``
        without ``cohort_id``/``cohort_name``, a non-integer or duplicate id, invalid JSON or
        YAML, an unknown top-level key, a criterion whose ``CodesetId`` names no concept set,
        a definition without primary criteria, or one circepy cannot build SQL for.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CohortDefinitionError(f"cohort set folder {str(folder)!r} does not exist")
    catalogue = folder / "Cohorts.csv"
    entries = _read_catalogue(catalogue) if catalogue.exists() else _scan_folder(folder)
    if not entries:
        raise CohortDefinitionError(
            f"cohort set {str(folder)!r} holds no Cohorts.csv and no <cohort_id>.json file")
    cohorts = [read_definition(path, cohort_id, name) for cohort_id, name, path in entries]
    return CohortSet(folder=folder, cohorts=tuple(cohorts))


def read_definition(path: Path, cohort_id: int, cohort_name: str | None = None
                    ) -> CohortDefinition:
    """Read one Circe definition file (JSON or YAML) and validate it.

    Raises
    ------
    CohortDefinitionError
        As :func:`read_cohort_set`, for this file.
    """
    if path.is_dir():
        raise CohortDefinitionError(f"cohort {cohort_id}: definition {str(path)!r} is a folder")
    if not path.is_file():
        raise CohortDefinitionError(f"cohort {cohort_id}: definition file {str(path)!r} "
                                    "does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CohortDefinitionError(f"{path}: not a UTF-8 text file (expected Circe JSON "
                                    "or YAML)") from None
    if path.suffix.lower() == ".json":
        data = _load_json(path, text)
    else:
        data = _load_yaml(path, text)
    expression = _validate(path, data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    _check_nothing_dropped(path, data, (expression.model_dump(by_alias=True, exclude_none=True),
                                        expression.model_dump(by_alias=False, exclude_none=True)))
    _check_references(path, expression)
    _check_builds(path, cohort_id, expression)
    name = cohort_name or expression.title or path.stem
    checksum = hashlib.sha256(
        f"{canonical}\ncircepy {version('ohdsi-circepy')}".encode()).hexdigest()
    return CohortDefinition(cohort_id, name, path, text, expression, checksum)


def _read_catalogue(catalogue: Path) -> list[tuple[int, str, Path]]:
    try:
        with catalogue.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except UnicodeDecodeError:
        raise CohortDefinitionError(f"{catalogue}: not a UTF-8 text file") from None
    if not rows:
        raise CohortDefinitionError(f"{catalogue}: no cohorts listed (expected a header "
                                    "cohort_id,cohort_name and one row per cohort)")
    id_col = "cohortId" if "cohortId" in columns and "cohort_id" not in columns else "cohort_id"
    name_col = ("cohortName" if "cohortName" in columns and "cohort_name" not in columns
                else "cohort_name")
    for needed in (id_col, name_col):
        if needed not in columns:
            raise CohortDefinitionError(
                f"{catalogue}: column {needed!r} is missing (CohortGenerator format: "
                "cohort_id, cohort_name[, atlas_id, json_path])")
    entries, seen = [], {}
    for line, row in enumerate(rows, start=2):
        if None in row:
            raise CohortDefinitionError(f"{catalogue}, line {line}: more values than columns "
                                        f"({', '.join(reader.fieldnames)})")
        cohort_id = _cohort_id(row[id_col], f"{catalogue}, line {line}")
        if cohort_id in seen:
            raise CohortDefinitionError(
                f"{catalogue}, line {line}: duplicate cohort_id {cohort_id} "
                f"(first at line {seen[cohort_id]})")
        seen[cohort_id] = line
        path = _definition_path(catalogue.parent, cohort_id, (row.get("json_path") or "").strip())
        entries.append((cohort_id, (row[name_col] or "").strip() or None, path))
    return entries


def _definition_path(folder: Path, cohort_id: int, json_path: str) -> Path:
    if json_path:
        return folder / json_path
    for ext in _EXTENSIONS:
        for candidate in (folder / "cohorts" / f"{cohort_id}{ext}", folder / f"{cohort_id}{ext}"):
            if candidate.exists():
                return candidate
    return folder / "cohorts" / f"{cohort_id}.json"


def _scan_folder(folder: Path) -> list[tuple[int, str | None, Path]]:
    entries, seen = [], {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in _EXTENSIONS or path.name.startswith("."):
            continue
        cohort_id = _cohort_id(path.stem, str(path))
        if cohort_id in seen:
            raise CohortDefinitionError(
                f"duplicate cohort_id {cohort_id}: {seen[cohort_id].name} and {path.name}")
        seen[cohort_id] = path
        entries.append((cohort_id, None, path))
    return sorted(entries, key=lambda e: e[0])


def _cohort_id(value: str, where: str) -> int:
    try:
        cohort_id = int(str(value).strip())
    except ValueError:
        raise CohortDefinitionError(f"{where}: cohort_id {value!r} is not an integer") from None
    if not 0 <= cohort_id < 2**63:
        raise CohortDefinitionError(
            f"{where}: cohort_id {cohort_id} is out of range (0 to 2^63 - 1, a BIGINT)")
    return cohort_id


def _load_json(path: Path, text: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CohortDefinitionError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    return data


def _load_yaml(path: Path, text: str) -> dict:
    """YAML with snake_case keys (circepy's YAML format) → Circe JSON keys.

    circepy 0.3's own YAML reader silently drops fields (``codeset_id``,
    ``primary_criteria_limit``, ``end_strategy``), so its cohorts would be wrong; the keys are
    translated here instead, to the spelling of ATLAS's JSON, and validated as JSON is.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CohortDefinitionError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CohortDefinitionError(f"{path}: expected a Circe cohort expression (a mapping)")
    return _circe_keys(data, "pascal")


def _pascal(key: str) -> str:
    if key == "cdm_version_range":
        return "cdmVersionRange"
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def _camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _circe_keys(node, context: str):
    """Rename keys the way Circe's JSON spells them in each part of an expression."""
    if isinstance(node, list):
        return [_circe_keys(item, context) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if context == "concept":  # CONCEPT_ID, CONCEPT_NAME, …
            out[key.upper()] = value
            continue
        if context == "concept_set":  # id, name, expression
            out[key] = _circe_keys(value, "concept_set_expression" if key == "expression"
                                   else "plain")
            continue
        if context in ("concept_set_expression", "concept_set_item"):  # items, isExcluded, …
            name = _camel(key)
            child = {"items": "concept_set_item", "concept": "concept"}.get(name, "plain")
            out[name] = _circe_keys(value, child)
            continue
        if context == "inclusion_rule":  # name, description, expression
            out[key] = _circe_keys(value, "pascal")
            continue
        name = _pascal(key) if context == "pascal" else key
        child = {"ConceptSets": "concept_set", "InclusionRules": "inclusion_rule"}.get(
            name, context)
        out[name] = _circe_keys(value, child)
    return out


def _validate(path: Path, data: dict):
    from circe.cohortdefinition import CohortExpression
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise CohortDefinitionError(f"{path}: expected a Circe cohort expression (a JSON "
                                    f"object), found {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise CohortDefinitionError(
            f"{path}: unknown field {unknown[0]!r} (a Circe cohort expression has "
            "ConceptSets, PrimaryCriteria, AdditionalCriteria, QualifiedLimit, "
            "ExpressionLimit, InclusionRules, EndStrategy, CensoringCriteria, "
            "CollapseSettings, CensorWindow)")
    cleaned = dict(data)
    if isinstance(cleaned.get("cdmVersionRange"), str):
        cleaned.pop("cdmVersionRange")  # as circepy's cohort_expression_from_json does
    if cleaned.get("CensorWindow") == {} or cleaned.get("censorWindow") == {}:
        cleaned.pop("CensorWindow", None)
        cleaned.pop("censorWindow", None)
    try:
        return CohortExpression.model_validate(cleaned)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise CohortDefinitionError(f"{path}: field {field!r}: {err['msg']}") from None


def _norm(key: str) -> str:
    return str(key).replace("_", "").lower()


def _check_nothing_dropped(path: Path, given, parsed: tuple, where: str = "") -> None:
    """Every field written must survive circepy's parsing: circepy ignores fields it does not
    know (a typo such as ``CodesetID`` would silently widen the cohort).

    ``parsed`` is the parsed expression dumped twice, by alias and by field name: a field
    written as either (in any case: ATLAS writes 'name', circepy 'Name') is kept.
    """
    by_alias, by_name = parsed
    if isinstance(given, dict) and isinstance(by_alias, dict):
        if "CONCEPT_ID" in given:
            return  # a concept: ATLAS's details (names, captions) are for display only
        known = {}
        for (alias, value), (name, named) in zip(by_alias.items(), by_name.items(),
                                                 strict=False):
            known[_norm(alias)] = known[_norm(name)] = (value, named)
        for key, value in given.items():
            here = f"{where}.{key}" if where else str(key)
            if _norm(key) not in known:
                # (0 == False in Python: test emptiness by identity and type, not with `in`)
                empty = value is None or value is False or (
                    isinstance(value, (dict, list, str)) and len(value) == 0)
                if empty or (not where and key in ("cdmVersionRange", "Title", "title")):
                    continue
                raise CohortDefinitionError(f"{path}: field {here!r} is not a Circe field "
                                            "here (circepy would ignore it)")
            _check_nothing_dropped(path, value, known[_norm(key)], here)
    elif isinstance(given, list) and isinstance(by_alias, list):
        for i, (g, a, n) in enumerate(zip(given, by_alias, by_name, strict=False)):
            _check_nothing_dropped(path, g, (a, n), f"{where}.{i}")


def _check_references(path: Path, expression) -> None:
    """Every ``CodesetId`` must name a concept set of the definition (Circe joins on it)."""
    if expression.primary_criteria is None or not expression.primary_criteria.criteria_list:
        raise CohortDefinitionError(f"{path}: field 'PrimaryCriteria.CriteriaList' is missing "
                                    "or empty (a cohort needs an entry event)")
    ids = set()
    for concept_set in expression.concept_sets or []:
        if not isinstance(concept_set.id, int):
            raise CohortDefinitionError(f"{path}: field 'ConceptSets.id' must be an integer, "
                                        f"found {concept_set.id!r}")
        ids.add(concept_set.id)
    for where, codeset in _codeset_ids(expression.model_dump(), ""):
        if codeset is None:
            continue
        if not isinstance(codeset, int) or codeset not in ids:
            raise CohortDefinitionError(
                f"{path}: field {where!r} = {codeset!r} names no concept set "
                f"(ConceptSets ids: {sorted(ids)})")


def _codeset_ids(node, where: str):
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else key
            if key == "CodesetId":
                yield here, value
            else:
                yield from _codeset_ids(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _codeset_ids(value, f"{where}.{i}")


def _check_builds(path: Path, cohort_id: int, expression) -> None:
    from circe.api import build_cohort_query
    from circe.cohortdefinition import BuildExpressionQueryOptions

    options = BuildExpressionQueryOptions()
    options.cohort_id = cohort_id
    options.generate_stats = True
    try:
        build_cohort_query(expression, options)
    except Exception as exc:
        raise CohortDefinitionError(
            f"{path}: circepy cannot build the cohort's SQL: {type(exc).__name__}: {exc}"
        ) from None
