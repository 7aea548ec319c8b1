"""Drug exposures of a drug or drug class, each mapped to its ingredient, with a usable supply.

Shared by the journey analyses (adherence, persistence, pathways): one selection of
``drug_exposure`` rows so that every analysis agrees on which fills belong to a class, which
ingredient a fill is, and how many days it supplies.

Selection follows the OHDSI convention for drug groups: a concept given by the user (an
ingredient such as 1118084 celecoxib, or a class such as an ATC group) selects every
``drug_exposure`` whose ``drug_concept_id`` is that concept or one of its descendants in
``concept_ancestor`` (clinical drugs, branded drugs, packs).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import ibis
import ibis.expr.types as ir

from pharmalab.cdm.spec import OPEN_END_AFTER
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError

__all__ = ["drug_exposures"]


def drug_exposures(
    db: Database,
    concept_ids: Iterable[int],
    *,
    include_descendants: bool = True,
) -> ir.Table:
    """``drug_exposure`` rows of the given drugs or drug classes, mapped to their ingredient.

    Parameters
    ----------
    db
        The database; reads ``drug_exposure`` (role "cdm"), ``concept`` and
        ``concept_ancestor`` (role "vocab").
    concept_ids
        Drug concept ids: ingredients (e.g. 1118084 celecoxib), drug classes (e.g. an ATC
        class) or clinical/branded drugs.
    include_descendants
        True (default): select exposures whose ``drug_concept_id`` is a given concept or a
        descendant of one (``concept_ancestor``). False: only exposures recorded with
        exactly a given concept.

    Returns
    -------
    ibis Table
        One row per selected ``drug_exposure`` row (never duplicated, even when a drug
        descends from several given concepts), computed in the engine:

        - ``drug_exposure_id``, ``person_id``, ``drug_concept_id`` (int64)
        - ``ingredient_concept_id`` (int64): the ingredient the drug descends from
          (``concept`` rows with ``concept_class_id = 'Ingredient'``), chosen among the
          ingredients that are given concepts or descendants of given concepts (so a
          combination product counted in a class is mapped to the ingredient of that class;
          the smallest id when several qualify). When the vocabulary holds no such
          ingredient for a drug (an incomplete ``concept_ancestor``), the given concept the
          drug matched (the smallest, when several).
        - ``drug_exposure_start_date``, ``drug_exposure_end_date`` (date; end may be null;
          an end after 2099-12-31 — OMOP's open end 9999-12-31 — is null here)
        - ``days_supply`` (int64, as recorded, may be null)
        - ``days_supply_used`` (int64, days ≥ 1): ``days_supply`` when it is positive;
          otherwise ``drug_exposure_end_date − drug_exposure_start_date + 1`` (at least 1);
          1 when the end date is missing as well.
        - ``days_supply_imputed`` (boolean): True when ``days_supply`` was missing or ≤ 0
          and ``days_supply_used`` was derived from the dates.
        - ``quantity`` (float64, as recorded, may be null): units dispensed (tablets, mL, …).

    Raises
    ------
    PharmalabInputError
        If ``concept_ids`` is empty or holds something other than whole numbers.
    CdmNotFoundError
        If ``drug_exposure``, ``concept`` or ``concept_ancestor`` is missing.

    References
    ----------
    OHDSI CDM v5.4, ``drug_exposure.days_supply`` and ``concept_ancestor``; OHDSI
    DrugUtilisation (``days_supply`` imputation from the exposure dates).
    """
    ids = _concept_id_list(concept_ids)
    exposure = db.table("drug_exposure", "cdm")
    concept = db.table("concept", "vocab")
    ancestor = db.table("concept_ancestor", "vocab")

    # Every (drug concept, given concept) pair: the given concepts themselves, plus their
    # descendants. The identity rows are added so a vocabulary without self rows works.
    identity = ibis.memtable(
        {"drug_concept_id": ids, "given_concept_id": ids},
        schema={"drug_concept_id": "int64", "given_concept_id": "int64"},
    )
    matched = identity
    if include_descendants:
        below = ancestor.filter(ancestor.ancestor_concept_id.isin(ids)).select(
            drug_concept_id=ancestor.descendant_concept_id.cast("int64"),
            given_concept_id=ancestor.ancestor_concept_id.cast("int64"),
        )
        matched = ibis.union(identity, below, distinct=True)
    used_drugs = exposure.select(drug_concept_id=exposure.drug_concept_id.cast("int64")).distinct()
    matched = matched.join(used_drugs, "drug_concept_id").select(
        "drug_concept_id", "given_concept_id"
    )

    # Ingredients "in the class": ingredients that are given concepts or descend from one.
    ingredients = concept.filter(concept.concept_class_id == "Ingredient").select(
        ingredient_concept_id=concept.concept_id.cast("int64")
    )
    in_class = ancestor.filter(ancestor.ancestor_concept_id.isin(ids)).select(
        ingredient_concept_id=ancestor.descendant_concept_id.cast("int64")
    )
    in_class = ibis.union(
        in_class,
        ibis.memtable({"ingredient_concept_id": ids}, schema={"ingredient_concept_id": "int64"}),
        distinct=True,
    )
    class_ingredients = ingredients.join(in_class, "ingredient_concept_id").select(
        "ingredient_concept_id"
    )
    # ... and, for each used drug, those of them it descends from (or is).
    drug_ingredient = ibis.union(
        ancestor.select(
            drug_concept_id=ancestor.descendant_concept_id.cast("int64"),
            ingredient_concept_id=ancestor.ancestor_concept_id.cast("int64"),
        ),
        class_ingredients.select(
            drug_concept_id=class_ingredients.ingredient_concept_id,
            ingredient_concept_id=class_ingredients.ingredient_concept_id,
        ),
        distinct=True,
    ).join(class_ingredients, "ingredient_concept_id")
    by_ingredient = drug_ingredient.group_by("drug_concept_id").aggregate(
        _ingredient=drug_ingredient.ingredient_concept_id.min()
    )
    by_given = matched.group_by("drug_concept_id").aggregate(_given=matched.given_concept_id.min())
    drug_map = by_given.left_join(by_ingredient, "drug_concept_id").select(
        drug_concept_id=by_given.drug_concept_id,
        ingredient_concept_id=ibis.coalesce(by_ingredient._ingredient, by_given._given),
    )

    e = exposure.mutate(drug_concept_id=exposure.drug_concept_id.cast("int64"))
    e = e.join(drug_map, "drug_concept_id")
    supply = e.days_supply.cast("int64")
    start, end = e.drug_exposure_start_date.cast("date"), e.drug_exposure_end_date.cast("date")
    # An open end (9999-12-31) is no end recorded: it would be ~3 million days of supply.
    end = ibis.cases((end > OPEN_END_AFTER, ibis.null("date")), else_=end)
    span = end.delta(start, unit="day").cast("int64") + 1
    from_dates = ibis.cases((end.isnull(), 1), (span < 1, 1), else_=span)
    imputed = supply.isnull() | (supply <= 0)
    return e.select(
        drug_exposure_id=e.drug_exposure_id.cast("int64"),
        person_id=e.person_id.cast("int64"),
        drug_concept_id=e.drug_concept_id,
        ingredient_concept_id=e.ingredient_concept_id,
        drug_exposure_start_date=start,
        drug_exposure_end_date=end,
        days_supply=supply,
        days_supply_used=ibis.cases((imputed, from_dates), else_=supply).cast("int64"),
        days_supply_imputed=imputed,
        # (a minimal drug_exposure without the optional quantity column still works)
        quantity=(e.quantity.cast("float64") if "quantity" in e.columns
                  else ibis.null("float64")),
    )


def _concept_id_list(concept_ids: Iterable[int]) -> list[int]:
    """The concept ids as a sorted list of distinct ints (validated)."""
    if isinstance(concept_ids, numbers.Integral):
        concept_ids = [concept_ids]
    ids = list(concept_ids)
    if not ids:
        raise PharmalabInputError("drug concept ids: none given; expected e.g. [1118084]")
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise PharmalabInputError(
                f"drug concept ids: {value!r} is not a concept id (a whole number)"
            )
    return sorted({int(v) for v in ids})
