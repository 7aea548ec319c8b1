"""The process that runs one study for ``pharmalab serve``: ``python -m pharmalab.web.worker
STUDY OUT PROGRESS``. Progress goes to the PROGRESS file as JSON lines (one when a step starts,
one per tick); the exit code is 0 when every step succeeded, 1 when one failed, 2 for bad input.
A separate process, so that a cancel can stop it whatever it is doing (a Spark job, a sampler).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def _on_cancel(signum, frame) -> None:
    """SIGTERM (a cancel) unwinds like an error, so temporary files are removed on the way; a
    step that turns the interrupt into its own failure (DuckDB does) must not let the study
    run on, so the process ends 3 s later whatever it is doing."""
    threading.Timer(3.0, os._exit, args=(128 + signum,)).start()
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    from pharmalab.errors import PharmalabInputError
    from pharmalab.study import check, run

    signal.signal(signal.SIGTERM, _on_cancel)
    study, out, progress_path = (Path(a) for a in argv)

    def event(**fields) -> None:
        with progress_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"t": round(time.time(), 3), **fields}) + "\n")

    try:
        event(plan=[title for _, title in check(study)])

        def factory(title: str, total: int | None):
            event(step=title, total=total, done=0)
            done = 0

            def tick(label: str) -> None:
                nonlocal done
                done += 1
                event(step=title, total=total, done=done, label=label)
            return tick

        result = run(study, out, progress=factory)
    except PharmalabInputError as exc:
        event(error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    event(finished=True, ok=result.ok)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
