"""Connections to the engines pharmalab runs on, as Ibis backends.

``connect(url)`` gives an Ibis backend; ``database(url)`` gives a :class:`Database`, the
backend plus the schema names of the CDM, the vocabulary and the results.
"""

from pharmalab.engine.connect import Database, EngineURL, connect, database, parse_url

__all__ = ["Database", "EngineURL", "connect", "database", "parse_url"]
