"""Atomic output: write under a temporary name in the same folder, then rename.

A crash or an error leaves either the previous complete file or nothing, never a
half-written result that looks complete (POSIX ``rename`` is atomic within a filesystem).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` on success.

    Works for files and for folders (e.g. a Parquet dataset). On any exception the
    temporary path is removed and ``target`` is left as it was.

    Raises
    ------
    IsADirectoryError
        If a folder exists at ``target`` and the body wrote a file (the folder is kept).
    Whatever the body raises, after cleaning up.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the body creates a file or a folder under this name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            if not tmp.is_dir():
                # A folder where a file should go is the user's, not an older result of ours.
                raise IsADirectoryError(errno.EISDIR, "cannot write the output file: a "
                                        "folder of that name exists", str(target))
            shutil.rmtree(target)  # an older dataset (folder) replaced by the new one
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_csv(target: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame to CSV (no index) atomically and return the path."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(target)
