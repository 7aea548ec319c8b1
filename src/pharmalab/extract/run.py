"""``extract``: a cohort's patient-level data, de-identified, from the engine to Parquet."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pharmalab import __version__
from pharmalab.atomic import atomic_path
from pharmalab.engine import Database
from pharmalab.extract import manifest as mf
from pharmalab.extract import pseudonyms
from pharmalab.extract import write as writer
from pharmalab.extract.domains import DEFAULT_DOMAINS, DOMAINS, Window
from pharmalab.extract.errors import ExtractInputError, ExtractWarning, KAnonymityError
from pharmalab.extract.generalize import Generalization, generalize
from pharmalab.extract.kanonymity import KAnonymityReport, k_anonymity
from pharmalab.extract.keys import PseudonymKey, read_key
from pharmalab.extract.members import SUBJECT, cohort_entries, members
from pharmalab.extract.settings import AGE_TOP_CODE, ExtractSettings
from pharmalab.extract.tables import TablePlan, table_plan


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract` wrote.

    Attributes
    ----------
    out : Path
        The extraction folder.
    counts : pandas.DataFrame
        ``table`` (str), ``rows`` (int64), ``persons`` (int64, distinct pseudonyms), as
        written.
    dictionary : pandas.DataFrame
        The data dictionary (``data_dictionary.csv``).
    k_anonymity : KAnonymityReport
        The quasi-identifier classes (``k_anonymity.csv``).
    manifest : dict
        ``manifest.json``.
    """

    out: Path
    counts: pd.DataFrame
    dictionary: pd.DataFrame
    k_anonymity: KAnonymityReport
    manifest: dict

    @property
    def key_fingerprint(self) -> str | None:
        """The pseudonym key's fingerprint (None without de-identification)."""
        return self.manifest["deidentification"]["key_fingerprint"]


def extract(
    db: Database,
    cohort_id: int,
    out: str | os.PathLike,
    *,
    window: Window | str | tuple[int | None, int | None] = (-365, 365),
    domains: str | Iterable[str] = DEFAULT_DOMAINS,
    deidentify: bool = True,
    key: bytes | str | PseudonymKey | None = None,
    key_file: str | os.PathLike | None = None,
    date_shift_days: int = 180,
    relative_dates: bool = False,
    k_min: int = 5,
    allow_small_k: bool = False,
    age_band_years: int = 5,
    generalize_concepts: bool = False,
) -> ExtractResult:
    """Extract the patient-level data of cohort ``cohort_id`` into ``out``, de-identified.

    For every member (a ``subject_id`` of the results ``cohort`` table) and each of their
    entries, the events whose date falls in ``window`` days around the entry's index date
    (``cohort_start_date``) are written, one Parquet dataset (a folder) per CDM table; all
    work runs in the engine and rows stream to the files.

    Parameters
    ----------
    db
        The CDM (``person``, the domains' tables, ``location`` if present, ``cdm_source``),
        the vocabulary (``concept``) and the results (``cohort``, ``cohort_generation``).
    cohort_id
        A ``cohort_definition_id`` of the results ``cohort`` table.
    out
        The extraction folder. Written atomically: a hidden temporary folder beside it is
        renamed to ``out`` when everything is written, so a failure leaves no ``out`` that
        looks complete. An earlier extraction there is replaced; any other non-empty folder
        is refused.
    window
        Days from the index date, both inclusive: ``(-365, 365)``, ``"-365:365"``, or a
        :class:`Window`; None (or an empty side in text) is unbounded.
    domains
        Some of ``person, condition, drug, measurement, procedure, observation, visit,
        death`` (CDM table names are accepted too).
    deidentify
        True (default): pseudonyms, date shift, generalization, k-anonymity check. False
        writes identifiable data: it must be explicit and is recorded in the manifest, with
        an :class:`ExtractWarning`.
    key, key_file
        The pseudonym key (:func:`read_key`: the argument, the file, then
        ``PHARMALAB_PSEUDONYM_KEY`` / ``PHARMALAB_PSEUDONYM_KEY_FILE``); without one a
        random key is used for this extraction and not stored. The same key gives the same
        pseudonyms in every extraction (linkage); another key, unrelated ones.
    date_shift_days
        N: every date and datetime of a person moves by the same keyed offset in
        [−N, −1] ∪ [1, N] days, so all intervals within a person are kept exactly. 0 keeps
        dates.
    relative_dates
        Drop dates and datetimes: the event date becomes ``days_from_index`` only and other
        dates ``<name>_days_from_index``.
    k_min
        Smallest quasi-identifier class allowed (persons).
    allow_small_k
        Write even when a class is smaller than ``k_min`` (recorded in the manifest).
    age_band_years
        Width of the age bands of ``age_group`` and the k-anonymity classes.
    generalize_concepts
        With de-identification: in each event table, a domain concept (``drug_concept_id``
        …) held by fewer than ``k_min`` persons becomes its nearest ancestor held by at
        least ``k_min`` (``concept_ancestor``), else 0 "other"; the row's source concept is
        emptied (:mod:`pharmalab.extract.generalize`).

    Returns
    -------
    ExtractResult

    Writes
    ------
    ``out/<table>/*.parquet``
        Per domain's table (``person``, ``condition_occurrence``, ``drug_exposure``,
        ``measurement``, ``procedure_occurrence``, ``observation``, ``visit_occurrence``,
        ``death``): ``person_id`` (int64 pseudonym), ``entry_number`` (int32: 1 = the
        person's earliest entry), ``days_from_index`` (int64 days; event tables), then the
        CDM columns kept (:mod:`pharmalab.extract.columns`), each ``*_concept_id`` followed
        by ``*_concept_name`` (str). ``person`` has one row per entry with
        ``cohort_start_date`` / ``cohort_end_date`` (shifted; or
        ``cohort_end_days_from_index``), ``age_at_index`` (int64 years, top-coded at 90),
        ``age_group`` (str, ``"90+"``) and ``zip3`` (str) when the CDM has ``location``.
    ``out/data_dictionary.csv``
        table, column, type, description, source_cdm_column, transformation.
    ``out/k_anonymity.csv``
        The quasi-identifier classes and their sizes (persons).
    ``out/manifest.json``
        Cohort (id, name, definition checksum), CDM source and version, window, domains,
        rows and persons per table, de-identification settings, key fingerprint (never the
        key), k-anonymity summary, warnings, pharmalab version, time.

    Raises
    ------
    ExtractInputError
        Bad settings, a cohort without entries, an engine without in-engine HMAC
        (de-identification runs on DuckDB, Spark, PostgreSQL and BigQuery), or an ``out``
        that is a non-empty folder other than an earlier extraction.
    PseudonymKeyError
        An unreadable key file or a key shorter than 16 bytes.
    KAnonymityError
        A quasi-identifier class below ``k_min`` without ``allow_small_k`` (the message
        names the classes); nothing is written.
    CdmNotFoundError
        A table that is needed is missing (``cohort``, ``concept``, a domain's table).

    References
    ----------
    H. Krawczyk, M. Bellare, R. Canetti, "HMAC: Keyed-Hashing for Message Authentication",
    RFC 2104, 1997 (pseudonyms). L. Sweeney, "k-anonymity: a model for protecting privacy",
    2002 (the report). HIPAA Privacy Rule, 45 CFR 164.514(b)(2) Safe Harbor (ages over 89
    as 90+; dates, ZIP codes beyond 3 digits, identifiers and free text removed).
    """
    settings = ExtractSettings(
        window=Window.parse(window), domains=domains, deidentify=deidentify,
        date_shift_days=date_shift_days, relative_dates=relative_dates, k_min=k_min,
        allow_small_k=allow_small_k, age_band_years=age_band_years,
        generalize_concepts=generalize_concepts)
    out = Path(out)
    _check_out(out)
    kind = db.url.kind
    notes: list[str] = []
    pkey = None
    if settings.deidentify:
        pseudonyms.check_engine(kind)
        pkey = read_key(key, key_file)
        if not pkey.stored:
            notes.append("no pseudonym key was given (PHARMALAB_PSEUDONYM_KEY or a key "
                         "file): a random key was used and not stored, so these pseudonyms "
                         "link to no other extraction")
        if settings.date_shift_days == 0 and not settings.relative_dates:
            notes.append("date_shift_days=0: the extraction holds the real dates")
    else:
        notes.append("deidentify=False: the extraction holds identifiable data (real ids, "
                     "dates, birth dates, source values and free text)")

    entries = cohort_entries(db, cohort_id)
    size = entries.aggregate(entries=entries.count(),
                             persons=entries[SUBJECT].nunique()).to_pandas().iloc[0]
    if int(size["entries"]) == 0:
        raise ExtractInputError(
            f"cohort {cohort_id} has no entries in the results table 'cohort' of "
            f"{db.url.redacted()}: generate it first")
    started = _dt.datetime.now(_dt.UTC)
    cdm = mf.cdm_info(db)
    version = mf.spec_version(cdm["cdm_version"])
    concept = db.table("concept", "vocab")
    with contextlib.ExitStack() as stack:
        keys = stack.enter_context(pseudonyms.key_table(db, pkey)) if pkey else None
        # one HMAC per person, kept in the engine for every table's query
        member = members(entries, settings, kind=kind, keys=keys).cache()
        stack.callback(member.release)

        def plan(name: str) -> TablePlan:
            return table_plan(db, DOMAINS[name], member, settings, keys=keys,
                              concept=concept, cdm_version=version)

        plans = [plan(name) for name in settings.domains]
        person = plans[0] if settings.domains[0] == "person" else plan("person")
        report = k_anonymity(person.expr, settings.k_min)
        _enforce_k(report, settings, cohort_id, notes)
        generalized = []
        if settings.deidentify and settings.generalize_concepts:
            for i, p in enumerate(plans):
                plans[i], done = generalize(db, p, settings.k_min)
                if done is not None:
                    generalized.append(done)
        for note in notes:
            warnings.warn(note, ExtractWarning, stacklevel=2)
        with atomic_path(out) as tmp:
            tmp.mkdir()
            counts, dictionary, files = _write_tables(db, plans, tmp)
            report.classes.to_csv(tmp / "k_anonymity.csv", index=False)
            manifest = _manifest(cohort_id, db, cdm, settings, pkey, plans, counts, files,
                                 report, generalized, size, notes, started)
            (tmp / "manifest.json").write_text(
                json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return ExtractResult(out, counts, dictionary, report, manifest)


def _enforce_k(report: KAnonymityReport, settings: ExtractSettings, cohort_id,
               notes: list[str]) -> None:
    """Refuse classes under k_min (de-identified only), or note that they were allowed."""
    if not settings.deidentify or report.passed:
        return
    text = (f"cohort {cohort_id}: {len(report.small_classes)} quasi-identifier class(es) have "
            f"fewer than k_min = {settings.k_min} persons (k = {report.k}): "
            f"{report.describe()}")
    if not settings.allow_small_k:
        raise KAnonymityError(
            f"{text}. Nothing was written; coarsen the cohort or the age bands "
            "(--age-band-years), or allow small classes (--allow-small-k; allow_small_k = true "
            "in study.toml) to write it anyway, recorded in the manifest", report)
    notes.append(f"allow_small_k: written although {text}")


def _write_tables(db: Database, plans: list[TablePlan], folder: Path):
    """Every table into ``folder``, then the data dictionary; (counts, dictionary, files)."""
    counts, types, files = [], {}, {}
    for p in plans:
        target = folder / p.domain.table
        writer.write_table(db, p.expr, target)
        counts.append((p.domain.table, *writer.table_counts(target)))
        types[p.domain.table] = writer.arrow_types(target)
        files[p.domain.table] = [f.name for f in writer.parquet_files(target)]
    dictionary = mf.dictionary(plans, types)
    dictionary.to_csv(folder / "data_dictionary.csv", index=False)
    return pd.DataFrame(counts, columns=["table", "rows", "persons"]), dictionary, files


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExtractInputError(f"extraction folder {str(out)!r} is a file")
    if out.is_dir() and any(out.iterdir()) and not mf.is_extraction(out):
        raise ExtractInputError(
            f"extraction folder {str(out)!r} is not empty and holds no earlier extraction "
            "(manifest.json); choose a new or empty folder")


def _manifest(cohort_id, db: Database, cdm: dict, settings: ExtractSettings,
              pkey: PseudonymKey | None, plans: list[TablePlan], counts: pd.DataFrame,
              files: dict[str, list[str]], report: KAnonymityReport,
              generalized: list[Generalization], size, notes: list[str], started) -> dict:
    cohort = mf.cohort_info(db, cohort_id)
    cohort.update(entries=int(size["entries"]), persons=int(size["persons"]))
    deid = settings.deidentify
    return {
        "kind": mf.MANIFEST_KIND,
        "pharmalab_version": __version__,
        "created": started.isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cohort": cohort,
        "cdm": cdm,
        "window": {"start_day": settings.window.start_day, "end_day": settings.window.end_day,
                   "anchor": "cohort_start_date", "inclusive": True},
        "domains": list(settings.domains),
        "tables": {row.table: {"rows": int(row.rows), "persons": int(row.persons),
                               "files": files[row.table]}
                   for row in counts.itertuples()},
        "deidentification": {
            "deidentified": deid,
            "pseudonym_method": ("HMAC-SHA256 (RFC 2104) of the decimal id; first 8 bytes "
                                 "big-endian with the top bit cleared (BIGINT)") if deid else None,
            "key_source": None if pkey is None else pkey.source.split(":")[0],
            "key_stored": None if pkey is None else pkey.stored,
            "key_fingerprint": None if pkey is None else pkey.fingerprint,
            "date_shift_days": settings.date_shift_days if deid else 0,
            "unshifted_after": settings.unshifted_after.isoformat() if deid else None,
            "unshifted_note": (f"dates after {settings.unshifted_after.isoformat()} (such as "
                               "OMOP's open end 9999-12-31) are written as they are, not "
                               "shifted; as days from the index they are blank")
            if deid else None,
            "date_offset_method": ("HMAC digest bytes 8–11 mod 2N → [−N, −1] ∪ [1, N] days, "
                                   "one offset per person") if deid else None,
            "relative_dates": settings.relative_dates,
            "age_top_code": AGE_TOP_CODE if deid else None,
            "age_band_years": settings.age_band_years,
            "dropped_columns": {p.domain.table: p.dropped for p in plans if p.dropped},
            "concept_generalization": {
                "enabled": deid and settings.generalize_concepts,
                "tables": {g.table: {k: v for k, v in dataclasses.asdict(g).items()
                                     if k != "table"} for g in generalized},
            },
        },
        "k_anonymity": {
            "k_min": settings.k_min,
            "k": report.k,
            "quasi_identifiers": list(report.quasi_identifiers),
            "classes": len(report.classes),
            "classes_under_k_min": len(report.small_classes),
            "enforced": deid,
            "allow_small_k": settings.allow_small_k,
            "written_under_k_min": deid and not report.passed,
        },
        "warnings": notes,
    }
