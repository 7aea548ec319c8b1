"""One exception hierarchy for pharmalab.

Every error caused by the user's input (a file, a table, a URL, a study.toml) is a
``PharmalabInputError``: the CLI prints its message as one line ``error: …`` and exits 2,
with no traceback. Messages name the file, table, row or column and what was expected.
"""


class PharmalabError(Exception):
    """Base class of every error pharmalab raises on purpose."""


class PharmalabInputError(PharmalabError):
    """Bad input: the message names the input and what was expected (CLI exit code 2)."""


class EngineURLError(PharmalabInputError):
    """A database URL pharmalab cannot use (unknown scheme, missing project, …)."""


class CdmInputError(PharmalabInputError):
    """A CDM source that cannot be loaded: missing or truncated archive, unknown table,
    missing required column, a value that does not have the column's CDM type."""


class CdmNotFoundError(PharmalabInputError):
    """A CDM table or schema that the operation needs is not in the database."""


class StudyConfigError(PharmalabInputError):
    """An invalid study.toml: unknown key, wrong type, missing file."""


class SalesInputError(PharmalabInputError):
    """A sales file or dataset that cannot be read as series (unique_id, ds, y)."""


class EngineConnectionError(PharmalabError):
    """The connection to a server engine (PostgreSQL, Spark, BigQuery) was lost during work:
    the message names the engine, what was being written, and what was kept."""


class StepFailedError(PharmalabError):
    """One or more steps of a study failed; the manifest holds each step's error."""


class CohortDefinitionError(PharmalabInputError):
    """A cohort set or definition that cannot be used: missing file, duplicate id, invalid
    Circe JSON or YAML (the message names the file and the field)."""


class SupplyInputError(PharmalabInputError):
    """Invalid inventory-policy input: a negative lead time, a service level outside (0, 1),
    a non-positive cost or standard deviation, an unsupported demand distribution (the message
    names the argument and what was expected)."""


class MarketingInputError(PharmalabInputError):
    """A marketing panel, model folder, bounds or capacity file that cannot be used: the
    message names the file, column, row or channel and what was expected."""
