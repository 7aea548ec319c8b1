"""The support list: who is listed, why, and that only keyed pseudonyms leave."""

from __future__ import annotations

import pandas as pd

from pharmalab.extract import pseudonym, read_key
from pharmalab.journey import support_list

KEY = read_key(b"a support-list key of enough bytes")


def test_low_pdc_or_discontinued_patients_are_listed_by_pseudonym():
    pdc = pd.DataFrame({"person_id": [1, 2, 3], "pdc": [0.5, 0.9, 0.79]})
    episodes = pd.DataFrame({"person_id": [2, 3, 4], "duration_days": [40, 100, 365],
                             "discontinued": [True, False, False]})
    listed = support_list(pdc, episodes, KEY).set_index("person_pseudonym")
    assert set(listed.index) == {pseudonym(KEY, 1), pseudonym(KEY, 2), pseudonym(KEY, 3)}
    assert listed.loc[pseudonym(KEY, 1), "reasons"] == "PDC 0.50 < 0.80"
    assert listed.loc[pseudonym(KEY, 2), "reasons"] == "discontinued after 40 days"
    assert listed.loc[pseudonym(KEY, 3), "reasons"] == "PDC 0.79 < 0.80"
    assert "person_id" not in listed.reset_index().columns
    assert not set(listed.index) & {1, 2, 3, 4}


def test_nothing_to_list():
    assert support_list(None, None, KEY).empty
