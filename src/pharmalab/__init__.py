"""pharmalab — an open data-and-AI lab for pharmaceutical R&D and commercial analytics.

Packages, one job each: ``engine`` (connections), ``cdm`` (OMOP CDM load and checks),
``privacy`` (small-cell suppression), ``sales`` (drug-sales series), ``study`` (study.toml and
the runner), ``report`` (HTML report), ``cli`` (the ``pharmalab`` command).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pharmalab")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
