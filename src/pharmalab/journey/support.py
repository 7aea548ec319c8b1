"""Patients who may need support: low adherence or a discontinued treatment, de-identified.

The list is for patient-support programmes run by (or for) the data holder. It holds keyed
pseudonyms, never the CDM ``person_id``: the data holder, who has the key, can re-identify
whom to contact; anyone else cannot. The pseudonym is the extraction's
(:func:`pharmalab.extract.pseudonym`: HMAC-SHA256 of ``person_id:<id>``), so the same key
links the list to a de-identified extraction.
"""

from __future__ import annotations

import pandas as pd

from pharmalab.extract import PseudonymKey, pseudonym

SUPPORT_COLUMNS = ["person_pseudonym", "reasons", "pdc", "first_episode_days", "discontinued"]


def support_list(
    pdc_patients: pd.DataFrame | None,
    first_episodes: pd.DataFrame | None,
    key: PseudonymKey,
    *,
    threshold: float = 0.8,
) -> pd.DataFrame:
    """Patients with PDC below ``threshold`` or whose first treatment episode ended.

    Parameters
    ----------
    pdc_patients
        :meth:`PdcResult.patients` (``person_id``, ``pdc``, …), or None.
    first_episodes
        One row per person: ``person_id``, ``duration_days`` (int), ``discontinued`` (bool) —
        the first episode of :func:`pharmalab.journey.persistence.treatment_episodes` — or
        None.
    key
        The pseudonym key (:func:`pharmalab.extract.read_key`).
    threshold
        PDC below this is "low adherence" (PQA's 0.8 by default).

    Returns
    -------
    pandas.DataFrame
        ``person_pseudonym`` (int64; HMAC of ``person_id``), ``reasons`` (str, e.g.
        "PDC 0.52 < 0.80; discontinued after 30 days"), ``pdc`` (float64 or missing),
        ``first_episode_days`` (Int64), ``discontinued`` (boolean); no dates and no
        ``person_id``. Sorted by pseudonym (not by anything that would order the patients).
    """
    frames = []
    if pdc_patients is not None and len(pdc_patients):
        low = pdc_patients[pdc_patients.pdc < threshold]
        frames.append(pd.DataFrame({
            "person_id": low.person_id.astype("int64"), "pdc": low.pdc.astype("float64"),
            "low_pdc": True}))
    if first_episodes is not None and len(first_episodes):
        ended = first_episodes[first_episodes.discontinued.astype(bool)]
        frames.append(pd.DataFrame({
            "person_id": ended.person_id.astype("int64"),
            "first_episode_days": ended.duration_days.astype("int64"),
            "discontinued": True}))
    if not frames:
        return pd.DataFrame({c: [] for c in SUPPORT_COLUMNS})
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on="person_id", how="outer")
    for column in ("pdc", "first_episode_days", "discontinued", "low_pdc"):
        if column not in merged:
            merged[column] = pd.NA
    reasons = []
    for row in merged.itertuples(index=False):
        parts = []
        if row.low_pdc is True and pd.notna(row.pdc):
            parts.append(f"PDC {row.pdc:.2f} < {threshold:.2f}")
        if row.discontinued is True:
            parts.append(f"discontinued after {int(row.first_episode_days)} days")
        reasons.append("; ".join(parts))
    out = pd.DataFrame({
        "person_pseudonym": [pseudonym(key, int(p)) for p in merged.person_id],
        "reasons": reasons,
        "pdc": pd.to_numeric(merged.pdc, errors="coerce").astype("float64"),
        "first_episode_days": pd.to_numeric(merged.first_episode_days,
                                            errors="coerce").astype("Int64"),
        "discontinued": merged.discontinued.astype("boolean").fillna(False),
    })
    return out.sort_values("person_pseudonym", ignore_index=True)
