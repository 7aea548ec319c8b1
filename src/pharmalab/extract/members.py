"""The cohort's entries and, per person, the pseudonym and the date offset (in the engine).

Every table of an extraction joins to :func:`members` on the person id. A person with several
entries in the cohort has one member row per entry, numbered by ``cohort_start_date``
(``entry_number`` 1, 2, …), so their events are extracted once per entry window.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from pharmalab.engine import Database
from pharmalab.extract import pseudonyms
from pharmalab.extract.settings import ExtractSettings

# Column names of the member relation (prefixed so that they never meet a CDM column).
SUBJECT, ENTRY, INDEX, END = "_m_subject_id", "_m_entry", "_m_index", "_m_end"
PERSON, OFFSET = "_m_person", "_m_offset"


def cohort_entries(db: Database, cohort_id: int) -> ir.Table:
    """The entries of cohort ``cohort_id`` in the results ``cohort`` table.

    Returns
    -------
    ibis.Table
        ``_m_subject_id`` (int64, the person id), ``_m_entry`` (int32, 1 = earliest entry),
        ``_m_index`` (date, ``cohort_start_date``), ``_m_end`` (date, ``cohort_end_date``).

    Raises
    ------
    CdmNotFoundError
        If the results schema has no ``cohort`` table.
    """
    cohort = db.table("cohort", "results")
    rows = cohort.filter(cohort.cohort_definition_id == int(cohort_id))
    number = ibis.row_number().over(group_by=rows.subject_id,
                                    order_by=[rows.cohort_start_date, rows.cohort_end_date])
    return rows.select(**{
        SUBJECT: rows.subject_id.cast("int64"),
        # int32: Spark's row_number is an INT and Ibis, believing it int64, drops a cast
        # to int64; a cast to int32 is kept on both engines.
        ENTRY: (number + 1).cast("int32"),
        INDEX: rows.cohort_start_date.cast("date"),
        END: rows.cohort_end_date.cast("date"),
    })


def members(entries: ir.Table, settings: ExtractSettings, *, kind: str,
            keys: ir.Table | None) -> ir.Table:
    """The entries with each person's pseudonym and date offset.

    Parameters
    ----------
    entries
        :func:`cohort_entries`.
    settings
        Without de-identification the "pseudonym" is the person id and the offset 0.
    kind
        The engine (``db.url.kind``).
    keys
        The padded keys (:func:`pharmalab.extract.pseudonyms.key_table`; None without
        de-identification).

    Returns
    -------
    ibis.Table
        The entry columns plus ``_m_person`` (int64: HMAC pseudonym or the id) and
        ``_m_offset`` (int64 days). One HMAC per person, not per entry.
    """
    if not settings.deidentify:
        return entries.mutate(**{PERSON: entries[SUBJECT],
                                 OFFSET: ibis.literal(0, type="int64")})
    persons = entries.select(SUBJECT).distinct().cross_join(keys)
    digest = persons.select(SUBJECT, _m_digest=pseudonyms.hmac_hex(kind, persons,
                                                                   persons[SUBJECT]))
    keyed = digest.select(
        SUBJECT,
        **{PERSON: pseudonyms.digest_pseudonym(kind, digest._m_digest),
           OFFSET: pseudonyms.digest_offset(kind, digest._m_digest,
                                            settings.date_shift_days)})
    return entries.join(keyed, SUBJECT)
