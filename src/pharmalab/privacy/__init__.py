"""The one small-cell suppression rule that every aggregate leaving the engine passes through."""

from pharmalab.privacy.suppression import DEFAULT_MIN_CELL_COUNT, suppress

__all__ = ["DEFAULT_MIN_CELL_COUNT", "suppress"]
