"""The errors of an extraction: all are :class:`pharmalab.errors.PharmalabInputError`s, so the
CLI prints their one-line message and exits 2."""

from __future__ import annotations

from pharmalab.errors import PharmalabInputError


class ExtractInputError(PharmalabInputError):
    """Bad extraction settings or inputs: an unknown domain, a malformed window, an empty
    cohort, an output folder that is not an extraction."""


class PseudonymKeyError(ExtractInputError):
    """A pseudonym key that cannot be used: missing or unreadable key file, key too short."""


class KAnonymityError(ExtractInputError):
    """The cohort's quasi-identifier classes are smaller than ``k_min``; nothing was written.

    Attributes
    ----------
    report : pharmalab.extract.KAnonymityReport
        The classes (the failing ones are ``report.small_classes``).
    """

    def __init__(self, message: str, report) -> None:
        super().__init__(message)
        self.report = report


class ExtractWarning(UserWarning):
    """An extraction that ran with weakened protection (identifiable data, classes under
    ``k_min``, a key that was not stored); also recorded in the manifest's ``warnings``."""
