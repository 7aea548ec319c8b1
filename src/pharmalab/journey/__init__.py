"""Patient journeys on drugs: adherence (PQA PDC, MPR), persistence and treatment pathways,
computed set-based in the engine; and the de-identified list of patients who may need support.
"""

from pharmalab.journey.adherence import PdcResult, mpr, pdc
from pharmalab.journey.drugs import drug_exposures
from pharmalab.journey.pathways import (
    PathwayResult,
    PathwaySettings,
    sankey_figure,
    sunburst_figure,
    treatment_pathways,
)
from pharmalab.journey.persistence import (
    PersistenceResult,
    persistence,
    persistence_figure,
    treatment_episodes,
)
from pharmalab.journey.support import support_list

__all__ = ["PathwayResult", "PathwaySettings", "PdcResult", "PersistenceResult",
           "drug_exposures", "mpr", "pdc", "persistence", "persistence_figure", "sankey_figure",
           "sunburst_figure", "support_list", "treatment_episodes", "treatment_pathways"]
