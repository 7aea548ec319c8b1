"""Atomic writes: a crash leaves the old file or nothing; a user's folder is never removed."""

from __future__ import annotations

import errno

import pandas as pd
import pytest

from pharmalab.atomic import write_csv, write_text


def test_a_folder_where_the_file_should_go_is_kept(tmp_path):
    target = tmp_path / "incidence_summary.csv"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(IsADirectoryError) as err:
        write_csv(target, pd.DataFrame({"a": [1]}))
    assert err.value.errno == errno.EISDIR
    assert (target / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["incidence_summary.csv"]  # no temp file


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "x.txt"
    write_text(target, "old")

    class Boom:
        def to_csv(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_csv(target, Boom())
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
