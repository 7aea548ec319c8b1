"""A right-censored likelihood for PyMC-Marketing: scripts capped by supply are a lower
bound on demand.

When supply runs short, the scripts a region records are what could be dispensed, not what
was asked for. Fitting them as if they were demand pulls the baseline and the media effects
down (the weeks with the most promotion are often the weeks that ran out). The standard
answer of survival analysis and of demand estimation under stock-outs (Tobit, 1958; the
"latent demand" likelihood requested in pymc-marketing#1644) is to let a capped row add
``log P(demand ≥ observed)`` to the likelihood instead of the density at the observed value.

PyMC-Marketing's ``MMM`` builds its likelihood through ``model_config["likelihood"]
.create_likelihood_variable(name, mu, observed, xdist=True)``; :class:`RightCensoredLikelihood`
is such an object. Its upper bound is the observed (scaled) value on capped rows and +∞
elsewhere, built inside the model from a 0/1 data variable, so the library's own target
scaling applies to the bound as it does to the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CENSOR_DATA", "RightCensoredLikelihood"]

# Name of the 0/1 data variable (date, *dims) in the PyMC model.
CENSOR_DATA = "supply_censored"


class RightCensoredLikelihood:
    """A ``pymc_extras.prior.Prior`` likelihood, right-censored on flagged rows.

    Parameters
    ----------
    distribution : pymc_extras.prior.Prior
        The uncensored likelihood, e.g. ``Prior("Normal", sigma=Prior("HalfNormal",
        sigma=2, dims="geo"), dims=("date", "geo"))``; it must be centered and take ``mu``.
    flags : pandas.DataFrame
        Index: dates, columns: regions; 1 where the observation is capped. It is aligned to
        the model's own ``date`` and ``geo`` coordinates when the model is built (the library
        orders regions its own way).
    """

    def __init__(self, distribution, flags: pd.DataFrame) -> None:
        if not distribution.centered or distribution.transform is not None:
            raise ValueError("the censored likelihood needs a centered, untransformed Prior")
        if tuple(distribution.dims) != ("date", "geo"):
            raise ValueError("the censored likelihood expects dims ('date', 'geo')")
        self.distribution = distribution
        self.flags = flags.astype(np.int8)

    @property
    def dims(self) -> tuple[str, ...]:
        return self.distribution.dims

    def create_likelihood_variable(self, name: str, mu: Any, observed: Any,
                                   xdist: bool = False):
        """The observed variable ``name``: ``distribution(mu)`` censored above at the observed
        value where flagged (what ``MMM.build_model`` calls)."""
        import pymc.dims as pmd
        from pymc_extras.prior import _remove_random_variable

        if not xdist:
            raise ValueError("RightCensoredLikelihood serves PyMC-Marketing's multidimensional "
                             "MMM (xdist=True)")
        import pymc as pm

        dist = self.distribution.deepcopy()
        dist.parameters["mu"] = mu
        coords = pm.modelcontext(None).coords
        aligned = self.flags.copy()
        aligned.index = pd.DatetimeIndex(aligned.index)
        aligned = aligned.reindex(index=pd.DatetimeIndex(list(coords["date"])),
                                  columns=[str(g) for g in coords["geo"]])
        if aligned.isna().any().any():
            raise ValueError("the censoring flags do not cover the model's dates and regions")
        flags = pmd.Data(CENSOR_DATA, aligned.to_numpy(dtype=np.int8), dims=self.dims)
        upper = pmd.math.where(flags > 0, observed, np.inf)
        # Build the distribution only for its graph (its parameters, e.g. y_sigma, stay in
        # the model), then censor it — what pymc_extras.prior.Censored does.
        variable = dist.create_variable(name, xdist=True)
        _remove_random_variable(var=variable)
        return pmd.Censored(name, variable, lower=None, upper=upper, dims=self.dims,
                            observed=observed)

    def to_dict(self) -> dict:
        """A JSON description (PyMC-Marketing stores its model config in the fit's attrs)."""
        return {"class": "RightCensoredLikelihood", "data": {
            "dist": self.distribution.to_dict(),
            "censored_rows": int(self.flags.to_numpy().sum())}}

    def deepcopy(self) -> RightCensoredLikelihood:
        return RightCensoredLikelihood(self.distribution.deepcopy(), self.flags.copy())
