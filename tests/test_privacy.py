import pandas as pd
import pytest

from pharmalab.errors import PharmalabInputError
from pharmalab.privacy import suppress


def test_small_counts_become_missing_with_a_flag():
    frame = pd.DataFrame({"stratum": list("abcdef"), "persons": [0, 1, 4, 5, 120, None]})
    out = suppress(frame, ["persons"], min_cell_count=5)
    assert out["persons"].tolist()[:1] == [0]
    assert out["persons"].isna().tolist() == [False, True, True, False, False, True]
    assert out["persons"].iloc[3] == 5 and out["persons"].iloc[4] == 120
    assert out["persons_suppressed"].tolist() == [False, True, True, False, False, False]
    assert list(out.columns) == ["stratum", "persons", "persons_suppressed"]
    # the input is not modified
    assert frame["persons"].iloc[1] == 1


def test_min_cell_count_one_shows_everything():
    out = suppress(pd.DataFrame({"n": [1, 2]}), ["n"], min_cell_count=1)
    assert out["n"].tolist() == [1, 2]
    assert not out["n_suppressed"].any()


def test_missing_column_and_bad_threshold_are_clear_errors():
    with pytest.raises(PharmalabInputError, match="count column 'persons' is not in the table"):
        suppress(pd.DataFrame({"n": [1]}), ["persons"])
    with pytest.raises(PharmalabInputError, match="at least 1"):
        suppress(pd.DataFrame({"n": [1]}), ["n"], min_cell_count=0)
