"""Files and figures of adherence and persistence, shared by the CLI and the study step.

Everything written here is aggregated and suppressed, except ``support_list.csv``, which
holds keyed pseudonyms (never ``person_id``) of the patients who may need support, and
``episodes.csv`` (:func:`write_episodes`), the treatment episodes as AdhereR users get them,
by keyed pseudonym with each person's dates shifted by the extraction's keyed offset.
"""

from __future__ import annotations

import os
from pathlib import Path

from pharmalab.atomic import write_csv
from pharmalab.engine import Database
from pharmalab.extract import date_offset, pseudonym, read_key
from pharmalab.journey.adherence import pdc
from pharmalab.journey.persistence import persistence, persistence_figure, treatment_episodes
from pharmalab.journey.support import support_list

PDC_SUMMARY_FILE = "pdc_summary.csv"
PERSISTENCE_FILE = "persistence.csv"
SUPPORT_FILE = "support_list.csv"
EPISODES_FILE = "episodes.csv"
EPISODE_DATES = ("start", "end", "supply_end", "follow_up_end")


def write_episodes(db: Database, folder: str | os.PathLike, concept_ids, *,
                   permissible_gap: int = 60, follow_up: int | None = None, key=None,
                   date_shift_days: int = 180, append_gap: bool = False) -> tuple[Path, int]:
    """Write ``episodes.csv``: every treatment episode (:func:`treatment_episodes`, AdhereR
    ``compute.treatment.episodes`` semantics), de-identified.

    ``person_id`` is replaced by ``person_pseudonym`` (HMAC-SHA256 with the key, as
    :func:`pharmalab.extract.pseudonym` — the same key gives the extraction's pseudonyms) and
    every date is moved by the person's keyed offset in ±``date_shift_days`` days (as the
    extraction shifts them; durations and gaps are unchanged). Columns: ``person_pseudonym``
    (int64), ``episode_id``, ``medication`` (int64), ``start``, ``end`` (date, exclusive
    end), ``duration_days``, ``end_gap_days`` (int64, days), ``discontinued`` (bool),
    ``follow_up_end``, ``supply_end`` (date). Sorted by pseudonym and episode.

    Returns
    -------
    (Path, int)
        The file and its number of episodes.

    Raises
    ------
    PharmalabInputError, PseudonymKeyError
        As :func:`treatment_episodes` and :func:`pharmalab.extract.read_key`.
    """
    import pandas as pd

    key = read_key(key) if key is not None else read_key()
    episodes = treatment_episodes(db, concept_ids, permissible_gap=permissible_gap,
                                  follow_up=follow_up, append_gap=append_gap).to_pandas()
    offsets = {int(p): pd.Timedelta(days=date_offset(key, int(p), date_shift_days))
               for p in episodes["person_id"].unique()}
    shift = episodes["person_id"].map(offsets)
    for column in EPISODE_DATES:
        episodes[column] = (pd.to_datetime(episodes[column]) + shift).dt.date
    episodes.insert(0, "person_pseudonym",
                    [pseudonym(key, int(p)) for p in episodes["person_id"]])
    episodes = episodes.drop(columns="person_id").sort_values(
        ["person_pseudonym", "episode_id"], ignore_index=True)
    return write_csv(Path(folder) / EPISODES_FILE, episodes), len(episodes)


def run_journey(db: Database, folder: str | os.PathLike, concept_ids, period_start,
                period_end, *, min_fills: int = 2, min_days_before_end: int = 91,
                threshold: float = 0.8, permissible_gap: int = 60, support: bool = True,
                key_file=None, min_cell_count: int = 5) -> tuple[list[Path], dict]:
    """PDC (PQA) and persistence of a drug class, written to ``folder``.

    Writes ``pdc_summary.csv`` (patients, adherent, share adherent; overall, by gender and
    age group; suppressed), ``persistence.csv`` (persistence at 6 and 12 months; suppressed)
    and, when ``support``, ``support_list.csv`` (:func:`support_list`: pseudonyms and
    reasons; the key from ``key_file`` or ``PHARMALAB_PSEUDONYM_KEY[_FILE]``, else a random
    key that is not stored).

    Returns
    -------
    (list of Path, dict)
        The files written, and the blocks a report shows: ``pdc_summary``, ``persistence``
        (frames), ``persistence_figure`` (Plotly) and ``support_note`` (str).

    Raises
    ------
    PharmalabInputError
        Bad concept ids, dates or settings (from :func:`pdc` and :func:`persistence`).
    """
    folder = Path(folder)
    key = read_key(key_file=key_file) if support else None  # a bad key stops us before work
    adherence = pdc(db, concept_ids, period_start, period_end, min_fills=min_fills,
                    min_days_before_end=min_days_before_end, threshold=threshold,
                    min_cell_count=min_cell_count)
    summary = adherence.summary()
    kept = persistence(db, concept_ids, permissible_gap=permissible_gap,
                       min_cell_count=min_cell_count)
    written = [write_csv(folder / PDC_SUMMARY_FILE, summary),
               write_csv(folder / PERSISTENCE_FILE, kept.table)]
    note = "Not asked for (support_list = false)."
    if support:
        episodes = treatment_episodes(db, concept_ids, permissible_gap=permissible_gap)
        first = episodes.filter(episodes.episode_id == 1).select(
            "person_id", "duration_days", "discontinued").to_pandas()
        listed = support_list(adherence.patients(), first, key, threshold=threshold)
        written.append(write_csv(folder / SUPPORT_FILE, listed))
        n = len(listed)
        shown = f"{n:,}" if n == 0 or n >= min_cell_count else f"fewer than {min_cell_count}"
        note = (f"{shown} patients listed in {SUPPORT_FILE} (PDC below {threshold} or a "
                "discontinued first episode), by keyed pseudonym only"
                + ("; the key was random and not stored, so nobody can re-identify them: "
                   "give a key file to use the list" if not key.stored else "") + ".")
    blocks = {"pdc_summary": summary, "persistence": kept.table,
              "persistence_figure": persistence_figure(kept), "support_note": note}
    return written, blocks
