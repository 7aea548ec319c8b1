"""Save a fitted MMM to a folder and load it back (``OUT/model/``, what ``pharmalab marketing
allocate --model`` reads).

The folder holds the posterior draws the forward pass needs (``posterior.npz``), the panel
the model was fitted on (``panel.parquet``), the diagnostics (``diagnostics.parquet``) and
``model.json`` (settings, scales' owners, convergence, versions). It is written under a
temporary name and renamed, so a crash never leaves half a model. Loading needs NumPy and
pandas only: allocation does not rebuild or recompile the PyMC model.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab import __version__
from pharmalab.atomic import atomic_path
from pharmalab.errors import MarketingInputError
from pharmalab.marketing.model import Convergence, MMMFit, MMMSettings
from pharmalab.marketing.panel import Panel
from pharmalab.marketing.posterior import Posterior

__all__ = ["load_fit", "save_fit", "MODEL_DIR"]

MODEL_DIR = "model"
FORMAT = 1
_ARRAYS = ("alpha", "lam", "beta", "intercept", "gamma_control", "gamma_fourier", "sigma",
           "channel_scale", "target_scale", "cost_per_unit", "control_offset", "kappa",
           "slope")
# what each saturation curve needs besides the common arrays
_CURVE = {"logistic": ("lam",), "hill": ("kappa", "slope")}


def save_fit(fit: MMMFit, folder: str | Path) -> Path:
    """Write ``fit`` to ``folder`` (replacing an earlier model there); returns the folder."""
    folder = Path(folder)
    post = fit.posterior
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        np.savez_compressed(tmp / "posterior.npz",
                            **{name: getattr(post, name) for name in _ARRAYS
                               if getattr(post, name) is not None})
        fit.panel.frame.to_parquet(tmp / "panel.parquet", index=False)
        fit.diagnostics.to_parquet(tmp / "diagnostics.parquet", index=False)
        meta = {
            "format": FORMAT,
            "pharmalab": __version__,
            "pymc_marketing": _version("pymc-marketing"),
            "settings": asdict(fit.settings),
            "train_periods": fit.train_periods,
            "sampler": fit.sampler,
            "chains": fit.chains,
            "seconds": fit.seconds,
            "notes": fit.notes,
            "convergence": asdict(fit.convergence),
            "panel": {"channels": list(fit.panel.channels),
                      "controls": list(fit.panel.controls), "freq": fit.panel.freq,
                      "source": fit.panel.source, "columns": fit.panel.columns,
                      "constraint_kind": fit.panel.constraint_kind},
            "posterior": {"channels": list(post.channels), "geos": list(post.geos),
                          "controls": list(post.controls),
                          "fourier_modes": list(post.fourier_modes), "l_max": post.l_max,
                          "start": post.start.isoformat(),
                          "periods_per_year": post.periods_per_year,
                          "saturation": post.saturation},
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=1, default=str),
                                        encoding="utf-8")
    return folder


def load_fit(folder: str | Path) -> MMMFit:
    """Load a model written by :func:`save_fit` (``folder`` may be the fit's output folder
    or its ``model/`` subfolder).

    Returns
    -------
    MMMFit
        Without ``idata`` and ``mmm`` (the PyMC objects are not kept).

    Raises
    ------
    MarketingInputError
        The folder, or a file in it, is missing or unreadable, or was written by an
        incompatible version.
    """
    folder = Path(folder)
    if (folder / MODEL_DIR / "model.json").is_file():
        folder = folder / MODEL_DIR
    if not folder.is_dir():
        raise MarketingInputError(f"model folder {str(folder)!r} does not exist (run pharmalab "
                                  "marketing fit --out DIR first and give --model DIR)")
    if not (folder / "model.json").is_file():
        raise MarketingInputError(f"model folder {str(folder)!r} has no model.json; expected "
                                  "the folder written by pharmalab marketing fit --out DIR")
    try:
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        arrays = np.load(folder / "posterior.npz")
        frame = pd.read_parquet(folder / "panel.parquet")
        diagnostics = pd.read_parquet(folder / "diagnostics.parquet")
    except (OSError, ValueError, KeyError) as exc:
        raise MarketingInputError(f"model folder {str(folder)!r} cannot be read ({exc}); "
                                  "refit with pharmalab marketing fit") from None
    if meta.get("format") != FORMAT:
        raise MarketingInputError(f"model folder {str(folder)!r} has format "
                                  f"{meta.get('format')!r}, this pharmalab reads {FORMAT}; "
                                  "refit with pharmalab marketing fit")
    p = meta["posterior"]
    curve = p.get("saturation", "logistic")
    needed = [n for n in _ARRAYS if n not in ("lam", "kappa", "slope")] + list(
        _CURVE.get(curve, ()))
    missing = [name for name in needed if name not in arrays.files]
    if missing or curve not in _CURVE:
        raise MarketingInputError(f"model folder {str(folder)!r}: posterior.npz lacks "
                                  f"{(missing or [curve])[0]!r}; refit with pharmalab "
                                  "marketing fit")
    posterior = Posterior(
        channels=tuple(p["channels"]), geos=tuple(p["geos"]), controls=tuple(p["controls"]),
        fourier_modes=tuple(p["fourier_modes"]), l_max=int(p["l_max"]),
        start=pd.Timestamp(p["start"]), periods_per_year=float(p["periods_per_year"]),
        saturation=curve,
        **{name: (arrays[name] if name in arrays.files else None) for name in _ARRAYS})
    info = meta["panel"]
    panel = Panel(frame, tuple(info["channels"]), tuple(info["controls"]), info["freq"],
                  info["source"], info["columns"], info.get("constraint_kind"))
    settings = MMMSettings(**meta["settings"])
    c = meta["convergence"]
    convergence = Convergence(**{**c, "messages": tuple(c["messages"]),
                                 "notes": tuple(c.get("notes", ()))})
    return MMMFit(panel, settings, posterior, int(meta["train_periods"]), diagnostics,
                  convergence, meta["sampler"], int(meta["chains"]), meta.get("seconds", {}),
                  list(meta.get("notes", [])))


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None
