"""Temp tables that several cohorts of a set build identically are built once (DuckDB).

Cohorts of a set often share their first steps: a base cohort and its restrictions have the
same concept sets and entry events; a censored variant has the same included events and ends;
two cohorts may share an inclusion rule. circe writes each cohort's script on its own, so the
same temp table is built again for every cohort.

Each temp table a script builds gets a *lineage key*: a hash of the statement that builds it,
with every temp table it reads replaced by that table's own key. Two statements with the same
key read the same CDM tables (unchanged while a set runs) through the same steps, so they give
the same rows. :func:`lineage` computes the keys of one script; :class:`Reuse` keeps a copy of
a table whose key a later cohort of the set needs, and hands it out instead of running the
statement again. A statement that names a table changing while the set runs (the caller's
``volatile`` pattern: for circe's SQL, the staging tables through which it reads and writes
results) is never keyed.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_CTAS = re.compile(r"\s*create\s+temp(?:orary)?\s+table\s+(\w+)\s+as\b", re.I)
_CREATE = re.compile(r"\s*create\s+temp(?:orary)?\s+table\s+(\w+)", re.I)
_WRITE = re.compile(r"\s*(?:insert\s+into|delete\s+from|update)\s+(\w+)(?=[\s(]|$)", re.I)
_UNKEYED = itertools.count()
_DROP = re.compile(r"\s*drop\s+table\s+(?:if\s+exists\s+)?(\w+)\s*;?\s*$", re.I)


@dataclass(frozen=True)
class Step:
    """One statement; ``key`` is set when it builds a temp table another cohort may reuse."""

    statement: str
    table: str | None = None
    key: str | None = None


_KEYED, _UNSTABLE = "k", "unkeyed-"


def _hash(*parts: str) -> str:
    return _KEYED + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def lineage(statements: Sequence[str], *, volatile: str) -> list[Step]:
    """Lineage keys of the temp tables one cohort's statements build.

    Parameters
    ----------
    statements
        One cohort's statements, in order (temp tables are unqualified names).
    volatile
        A regular expression matching the names of tables that change while a set runs (the
        results and staging tables); what a statement naming one builds is never keyed.

    Returns
    -------
    list[Step]
        One per statement; ``key`` is set on ``CREATE TEMP TABLE … AS`` statements whose
        output depends only on the CDM and on keyed temp tables.
    """
    temps = {m.group(1).lower() for s in statements if (m := _CREATE.match(s))}
    if not temps:
        return [Step(s) for s in statements]
    names = re.compile(r"\b(" + "|".join(map(re.escape, sorted(temps))) + r")\b", re.I)
    versions: dict[str, str] = {}
    steps = []
    for statement in statements:
        created = _CREATE.match(statement)
        target = created.group(1).lower() if created else None
        read = {n.lower() for n in names.findall(statement)} - {target}
        stable = (not re.search(volatile, statement, re.I)
                  and all(versions.get(name, _UNSTABLE).startswith(_KEYED) for name in read))
        canonical = names.sub(lambda m: versions.get(m.group(1).lower(), m.group(1).lower()),
                              statement)
        # what an unkeyable statement builds must match nothing else
        unique = f"{_UNSTABLE}{next(_UNKEYED)}"
        if (match := _CTAS.match(statement)) is not None:
            table = match.group(1).lower()
            key = _hash("ctas", canonical) if stable else None
            versions[table] = key or unique
            steps.append(Step(statement, table, key))
            continue
        if (match := _CREATE.match(statement)) is not None:
            versions[match.group(1).lower()] = _hash("create", canonical)
        elif (match := _DROP.match(statement)) is not None:
            versions.pop(match.group(1).lower(), None)
        elif (match := _WRITE.match(statement)) is not None and match.group(1).lower() in temps:
            table = match.group(1).lower()
            versions[table] = (_hash("write", versions.get(table, ""), canonical)
                               if stable else unique)
        steps.append(Step(statement))
    return steps


@dataclass
class Reuse:
    """Copies of temp tables that later cohorts of the set build identically.

    Parameters
    ----------
    run
        Executes one SQL statement (the database connection's).
    wanted
        How many cohorts still to run build each key; a key built with count > 0 left is
        copied to a table of its own, kept until no cohort still to run builds it (or
        :meth:`close`).
    """

    run: Callable[[str], object]
    wanted: dict[str, int] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    reused: int = 0

    @classmethod
    def for_scripts(cls, run: Callable[[str], object],
                    scripts: Sequence[Sequence[Step]]) -> Reuse:
        wanted: dict[str, int] = {}
        for steps in scripts:
            for key in {s.key for s in steps if s.key}:
                wanted[key] = wanted.get(key, 0) + 1
        return cls(run, wanted)

    def execute(self, steps: Sequence[Step]) -> None:
        """Run one cohort's steps, reusing kept tables and keeping those needed later."""
        for key in {s.key for s in steps if s.key}:
            self.wanted[key] -= 1
        for step in steps:
            if step.key and step.key in self.kept:
                self.run(f"CREATE TEMP TABLE {step.table} AS SELECT * FROM "
                         f"{self.kept[step.key]}")
                self.reused += 1
                continue
            self.run(step.statement)
            if step.key and self.wanted.get(step.key, 0) > 0:
                copy = f"_plr_{step.key[1:17]}"
                self.run(f"CREATE TEMP TABLE {copy} AS SELECT * FROM {step.table}")
                self.kept[step.key] = copy
        for key in [k for k in self.kept if self.wanted.get(k, 0) <= 0]:
            self._drop(self.kept.pop(key))  # no cohort still to run builds it

    def close(self) -> None:
        """Drop every kept table (errors ignored: this runs after failures too)."""
        for copy in self.kept.values():
            self._drop(copy)
        self.kept.clear()

    def _drop(self, copy: str) -> None:
        try:
            self.run(f"DROP TABLE IF EXISTS {copy}")
        except Exception:  # noqa: BLE001 - cleanup must not hide the original error
            pass
