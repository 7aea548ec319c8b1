"""Rare concepts generalized: a concept held by fewer than k persons becomes an ancestor.

For each event table's domain concept (``condition_concept_id``, ``drug_concept_id``, …) of an
extraction, in the engine:

1. a concept held by fewer than ``k`` distinct persons of the table's rows is *rare*;
2. a rare concept is replaced by its nearest ancestor (``concept_ancestor``, smallest
   ``min_levels_of_separation`` ≥ 1; ties: more persons, then the smaller id) that at least
   ``k`` persons would hold — those holding the ancestor itself or any rare descendant of it;
3. after the replacement, a target still held by fewer than ``k`` persons (rare concepts that
   went to different ancestors) and a rare concept without such an ancestor become
   ``0`` named ``"Other (held by fewer than k persons)"``;
4. on a replaced row the source concept (``*_source_concept_id`` and its name), which would
   name the rare concept again, is emptied.

Only the mapping (one row per rare concept) comes back to Python; it goes into the table's
query as a small in-memory table. The ``other`` group itself may hold fewer than k persons;
its size is in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from pharmalab.engine import Database
from pharmalab.extract.columns import concept_name_column
from pharmalab.extract.tables import TablePlan

DOMAIN_CONCEPTS = {
    "condition_occurrence": "condition_concept_id",
    "drug_exposure": "drug_concept_id",
    "measurement": "measurement_concept_id",
    "procedure_occurrence": "procedure_concept_id",
    "observation": "observation_concept_id",
    "visit_occurrence": "visit_concept_id",
    "death": "cause_concept_id",
}
OTHER_CONCEPT_ID = 0


@dataclass(frozen=True)
class Generalization:
    """What :func:`generalize` did to one table.

    Attributes
    ----------
    table, column : str
    rare_concepts : int
        Concepts held by fewer than k persons.
    to_ancestor, to_other : int
        Of those, how many became an ancestor, and how many ``0`` ("other").
    rows_changed : int
    other_persons : int
        Persons holding ``0`` after the change (may be below k).
    """

    table: str
    column: str
    rare_concepts: int
    to_ancestor: int
    to_other: int
    rows_changed: int
    other_persons: int


def generalize(db: Database, plan: TablePlan, k: int) -> tuple[TablePlan, Generalization | None]:
    """The plan with its domain concept generalized (module docstring); None if the table
    has no domain concept column.

    Raises
    ------
    CdmNotFoundError
        If the vocabulary has no ``concept`` table.
    """
    table = plan.domain.table
    column = DOMAIN_CONCEPTS.get(table)
    expr = plan.expr
    if column is None or column not in expr.columns:
        return plan, None
    rows = expr.select("person_id", _c=expr[column])
    held = rows.group_by("_c").aggregate(persons=rows.person_id.nunique())
    rare = held.filter((held.persons < k) & held._c.notnull()).select(_rare="_c")
    if db.has_table("concept_ancestor", "vocab"):
        choice = _nearest_ancestors(db.table("concept_ancestor", "vocab"), rows, rare, k)
        mapping = rare.left_join(choice, rare._rare == choice._from).select(
            "_rare", _to=choice._to).to_pandas()
    else:
        mapping = rare.to_pandas().assign(_to=pd.NA)
    if mapping.empty:
        return plan, Generalization(table, column, 0, 0, 0, 0, 0)
    mapping["_to"] = mapping["_to"].astype("Int64").fillna(OTHER_CONCEPT_ID)

    # 3: a target that does not reach k persons after the replacement becomes "other"
    first = ibis.memtable(pa.table({
        "_from": pa.array(mapping["_rare"].astype("int64"), pa.int64()),
        "_to": pa.array(mapping["_to"].astype("int64"), pa.int64())}))
    moved = rows.left_join(first, rows._c == first._from).select(
        "person_id", _c=ibis.coalesce(first._to, rows._c))
    after = moved.group_by("_c").aggregate(persons=moved.person_id.nunique()).to_pandas()
    small = set(after.loc[after.persons < k, "_c"].dropna().astype("int64"))
    mapping.loc[mapping["_to"].isin(small), "_to"] = OTHER_CONCEPT_ID

    names = _names(db, set(mapping["_to"]) - {OTHER_CONCEPT_ID})
    other = f"Other (held by fewer than {k} persons)"
    mapping["_name"] = [other if t == OTHER_CONCEPT_ID else names.get(int(t))
                        for t in mapping["_to"]]
    # From Arrow, not pandas: Ibis hands Spark a pandas frame, and a pandas "string" column
    # carries pd.NA, which Spark's pickler writes as the text
    # "net.razorvine.pickle.objects.ClassDictConstructor@…".
    final = ibis.memtable(pa.table({
        "_g_from": pa.array(mapping["_rare"].astype("int64"), pa.int64()),
        "_g_to": pa.array(mapping["_to"].astype("int64"), pa.int64()),
        "_g_name": pa.array(mapping["_name"].tolist(), pa.string())}))
    new_plan = _apply(plan, column, final, k)
    old, new = plan.expr, new_plan.expr
    changed = old.join(final, old[column] == final._g_from).count().execute()
    other = new.filter(new[column] == OTHER_CONCEPT_ID).person_id.nunique()
    to_other = int((mapping["_to"] == OTHER_CONCEPT_ID).sum())
    return new_plan, Generalization(table, column, len(mapping), len(mapping) - to_other,
                                    to_other, int(changed),
                                    int(other.execute() or 0))


def _nearest_ancestors(ancestor: ir.Table, rows: ir.Table, rare: ir.Table, k: int) -> ir.Table:
    """(``_from`` rare concept, ``_to`` its nearest ancestor that k persons would hold)."""
    up = ancestor.filter(ancestor.min_levels_of_separation >= 1).select(
        _d=ancestor.descendant_concept_id.cast("int64"),
        _a=ancestor.ancestor_concept_id.cast("int64"),
        _level=ancestor.min_levels_of_separation.cast("int64"))
    rare_rows = rows.join(rare, rows._c == rare._rare).select("person_id", "_c")
    via_rare = rare_rows.join(up, rare_rows._c == up._d).select("person_id", _anc=up._a)
    own = rows.select("person_id", _anc=rows._c)
    pool = via_rare.union(own)
    support = pool.group_by("_anc").aggregate(persons=pool.person_id.nunique())
    support = support.filter(support.persons >= k)
    links = rare.join(up, rare._rare == up._d).select(_from="_rare", _to=up._a,
                                                      _level=up._level)
    ranked = links.join(support, links._to == support._anc).select(
        "_from", "_to", "_level", "persons")
    order = ibis.row_number().over(group_by=ranked._from,
                                   order_by=[ranked._level, ranked.persons.desc(), ranked._to])
    return ranked.mutate(_rank=order).filter(lambda t: t._rank == 0).select("_from", "_to")


def _names(db: Database, ids: set) -> dict[int, str]:
    if not ids:
        return {}
    concept = db.table("concept", "vocab")
    found = concept.filter(concept.concept_id.isin([int(i) for i in ids])).select(
        "concept_id", "concept_name").to_pandas()
    return dict(zip(found.concept_id.astype("int64"), found.concept_name, strict=True))


def _apply(plan: TablePlan, column: str, mapping: ir.Table, k: int) -> TablePlan:
    expr = plan.expr
    joined = expr.left_join(mapping, expr[column] == mapping._g_from)
    changed = joined._g_to.notnull()
    name = concept_name_column(column)
    source = column.removesuffix("_concept_id") + "_source_concept_id"
    values = {}
    for c in expr.columns:
        value = joined[c]
        if c == column:
            value = ibis.coalesce(joined._g_to, value)
        elif c == name:
            value = ibis.ifelse(changed, joined._g_name, value)
        elif c in (source, concept_name_column(source)):
            value = ibis.ifelse(changed, ibis.null(value.type()), value)
        values[c] = value
    text = (f"concepts held by fewer than {k} persons replaced by their nearest ancestor held "
            f"by at least {k} (concept_ancestor), else 0 'other'")
    columns = tuple(
        replace(c, transformation="; ".join(filter(None, [c.transformation, text])))
        if c.name in (column, name) else
        replace(c, transformation="; ".join(filter(None, [
            c.transformation, f"empty where {column} was generalized"])))
        if c.name in (source, concept_name_column(source)) else c
        for c in plan.columns)
    return replace(plan, expr=joined.select(**values), columns=columns)
