"""Parse database URLs and open Ibis backends (DuckDB, Spark, BigQuery, PostgreSQL).

URLs
----
``duckdb://PATH``            an embedded DuckDB file (``duckdb:///abs/path.duckdb`` is absolute,
                             ``duckdb://rel/path.duckdb`` relative); a bare ``*.duckdb`` path too
``duckdb://``                an in-memory DuckDB database
``pyspark``                  a local Spark session (``local[2]``, bound to 127.0.0.1)
``pyspark://local[4]``       a local Spark session with another master
``spark://HOST:7077``        a Spark standalone cluster's master (also
                             ``pyspark://spark://HOST:7077`` or ``pyspark?master=spark://…``);
                             the driver is this process, the executors run on the workers
``bigquery://PROJECT/DATASET``  Google BigQuery (needs ``pharmalab[bigquery]``); with
                             ``?emulator=HOST:PORT`` a local BigQuery emulator's REST endpoint
                             (anonymous credentials, results read over REST)
``postgres://USER:PW@HOST:PORT/DB``  PostgreSQL (needs ``pharmalab[postgres]``)

Any URL takes the query parameters ``cdm_schema``, ``vocab_schema`` (defaults to the CDM
schema) and ``results_schema``, e.g. ``duckdb:///cdm.duckdb?results_schema=results``. A DuckDB
URL also takes ``memory_limit`` (DuckDB's own setting, e.g. ``?memory_limit=6GB``): DuckDB
caches up to 80% of the machine's memory by default and spills to a temporary folder beyond the
limit, so on a shared machine or a large CDM the limit keeps the process's peak memory down.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import ibis
from ibis.backends import BaseBackend

from pharmalab.errors import CdmNotFoundError, EngineURLError

_SCHEMA_PARAMS = ("cdm_schema", "vocab_schema", "results_schema")
_SCHEMES = ("duckdb", "pyspark", "spark", "bigquery", "postgres", "postgresql")


@dataclass(frozen=True)
class EngineURL:
    """A parsed database URL.

    Attributes
    ----------
    kind : {"duckdb", "pyspark", "bigquery", "postgres"}
    target : str
        DuckDB: the file path ("" for in memory); Spark: the master; BigQuery:
        ``project/dataset``; PostgreSQL: the URL without the schema parameters.
    cdm_schema, vocab_schema, results_schema : str or None
        None means the connection's current schema.
    """

    kind: str
    target: str
    cdm_schema: str | None = None
    vocab_schema: str | None = None
    results_schema: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def duckdb_path(self) -> Path | None:
        """The DuckDB file, or None for an in-memory database or another engine."""
        if self.kind != "duckdb" or self.target in ("", ":memory:"):
            return None
        return Path(self.target)

    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (safe for manifests and logs)."""
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", f"{self.kind}://{self.target}")


def parse_url(url: str) -> EngineURL:
    """Parse a database URL (see the module docstring for the forms).

    Raises
    ------
    EngineURLError
        For an empty URL, an unknown scheme, or a BigQuery URL without project and dataset.
    """
    if not url or not url.strip():
        raise EngineURLError("database URL is empty; expected e.g. duckdb:///cdm.duckdb")
    url = url.strip()
    head, sep, query = url.partition("?")
    if "://" not in head:  # (the query may hold a URL: pyspark?master=spark://host:7077)
        if head in ("pyspark", "spark"):
            url = "pyspark://" + sep + query
        elif url.endswith((".duckdb", ".ddb", ".db")):
            url = f"duckdb://{url}"
        else:
            raise EngineURLError(
                f"database URL {url!r} has no scheme; expected one of "
                "duckdb:///path.duckdb, duckdb://, pyspark, bigquery://project/dataset, "
                "postgres://user@host/db"
            )
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise EngineURLError(
            f"database URL {url!r}: unknown scheme {scheme!r}; expected one of "
            "duckdb, pyspark, bigquery, postgres"
        )
    rest, _, query = rest.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(params) - set(_SCHEMA_PARAMS) - {"master", "emulator", "memory_limit"})
    if unknown:
        raise EngineURLError(
            f"database URL {url!r}: unknown parameter {unknown[0]!r}; expected "
            + ", ".join(_SCHEMA_PARAMS)
            + ", master (Spark), emulator (BigQuery) or memory_limit (DuckDB)"
        )
    if "memory_limit" in params and (scheme != "duckdb" or not re.fullmatch(
            r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", params["memory_limit"], re.I)):
        raise EngineURLError(
            f"database URL {url!r}: memory_limit {params['memory_limit']!r} "
            + ("should be an amount such as 6GB or 512MB" if scheme == "duckdb"
               else "is a DuckDB setting"))
    if "emulator" in params and not params["emulator"]:
        # dropping it would send the work to the real BigQuery project of the same name
        raise EngineURLError(f"database URL {url!r}: emulator is empty; expected HOST:PORT")
    params = {k: v for k, v in params.items() if v}
    schemas = {k: params.get(k) for k in _SCHEMA_PARAMS}
    if scheme in ("pyspark", "spark"):
        master = rest or params.get("master") or "local[2]"
        if scheme == "spark" and not master.startswith(("local", "spark://", "yarn", "k8s://")):
            master = f"spark://{master}"  # spark://HOST:PORT is the master URL as Spark has it
        return EngineURL("pyspark", master, **schemas)
    if scheme == "bigquery":
        parts = [p for p in rest.split("/") if p]
        if len(parts) != 2:
            raise EngineURLError(
                f"database URL {url!r}: expected bigquery://PROJECT/DATASET"
            )
        schemas["cdm_schema"] = schemas["cdm_schema"] or parts[1]
        options = {"emulator": params["emulator"]} if params.get("emulator") else {}
        if options and not re.fullmatch(r"[\w.-]+:\d+", options["emulator"]):
            raise EngineURLError(
                f"database URL {url!r}: emulator {options['emulator']!r} should be HOST:PORT "
                "(the emulator's REST endpoint, e.g. 127.0.0.1:9050)")
        return EngineURL("bigquery", f"{parts[0]}/{parts[1]}", **schemas, options=options)
    if scheme in ("postgres", "postgresql"):
        if not rest:
            raise EngineURLError(f"database URL {url!r}: expected postgres://USER@HOST/DB")
        return EngineURL("postgres", rest, **schemas)
    options = {"memory_limit": params["memory_limit"]} if "memory_limit" in params else {}
    return EngineURL("duckdb", re.sub(r"^/+", "/", rest), **schemas, options=options)


def connect(url: str | EngineURL, *, create: bool = True) -> BaseBackend:
    """Open an Ibis backend for ``url``.

    Parameters
    ----------
    url
        A database URL (module docstring) or a parsed :class:`EngineURL`.
    create
        For a DuckDB file: False raises instead of creating a missing file (for read-only
        work such as checks, so a typo does not leave an empty database behind).

    Returns
    -------
    ibis.backends.BaseBackend
        DuckDB, PySpark, BigQuery or PostgreSQL backend.

    Raises
    ------
    EngineURLError
        For a bad URL, a DuckDB path whose folder does not exist (or file, with
        ``create=False``), or an engine whose optional dependency is not installed (the
        message names the extra to install).
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    if parsed.kind == "duckdb":
        path = parsed.duckdb_path
        config = dict(parsed.options)  # memory_limit
        if path is None:
            return ibis.duckdb.connect(**config)
        if not path.parent.exists():
            raise EngineURLError(
                f"DuckDB file {str(path)!r}: folder {str(path.parent)!r} does not exist"
            )
        if not create and not path.exists():
            raise EngineURLError(f"DuckDB file {str(path)!r} does not exist")
        if path.is_dir():
            raise EngineURLError(f"DuckDB file {str(path)!r} is a folder")
        try:
            return ibis.duckdb.connect(str(path), **config)
        except Exception as exc:  # not a DuckDB file, locked by another process, no access
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineURLError(
                f"DuckDB file {str(path)!r} cannot be opened: {first}") from None
    if parsed.kind == "pyspark":
        return _connect_spark(parsed.target)
    if parsed.kind == "bigquery":
        try:
            importlib.import_module("ibis.backends.bigquery")
        except ImportError as exc:
            raise EngineURLError(
                "BigQuery needs the optional dependencies: pip install 'pharmalab[bigquery]'"
            ) from exc
        project, dataset = parsed.target.split("/")
        if "emulator" in parsed.options:
            return _connect_bigquery_emulator(project, dataset, parsed.options["emulator"])
        return ibis.bigquery.connect(project_id=project, dataset_id=dataset)
    try:
        con = ibis.connect(f"postgres://{parsed.target}")
    except ImportError as exc:
        raise EngineURLError(
            "PostgreSQL needs the optional dependencies: pip install 'pharmalab[postgres]'"
        ) from exc
    from pharmalab.engine.postgres import apply_overrides

    apply_overrides()
    return con


def _connect_bigquery_emulator(project: str, dataset: str, endpoint: str) -> BaseBackend:
    """Ibis's BigQuery backend on a local emulator's REST endpoint ``HOST:PORT``.

    Anonymous credentials (an emulator checks none), in-memory tables created with DML (an
    emulator refuses load jobs; :mod:`pharmalab.engine.bigquery`), and query results read
    over REST: the
    BigQuery Storage read API (gRPC), which the client otherwise picks for results, is not
    served for query results by the emulators measured here (``bqemulator`` 1.4: "schema
    …___bqemu_anonymous does not exist"; ../shared/KNOWN.md).
    """
    import socket

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    host, port = endpoint.rsplit(":", 1)
    try:  # the client would retry a refused connection for 600 s before saying anything
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise EngineURLError(
            f"BigQuery emulator at {endpoint} is not reachable ({exc.strerror or exc}); is it "
            f"running (e.g. bqemulator start --rest-port {port})?") from None

    class RestOnlyClient(bigquery.Client):
        def _ensure_bqstorage_client(self, *args, **kwargs):  # noqa: ARG002 (the API's)
            return None  # results over REST

    anonymous = AnonymousCredentials()
    client = RestOnlyClient(project=project, credentials=anonymous,
                            client_options=ClientOptions(api_endpoint=f"http://{endpoint}"))
    con = ibis.bigquery.connect(project_id=project, dataset_id=dataset, client=client,
                                credentials=anonymous)
    con.storage_client = None  # ibis made one for the real service: never used here
    from pharmalab.engine.bigquery import apply_emulator_overrides

    apply_emulator_overrides(con)
    return con


def _connect_spark(master: str) -> BaseBackend:
    """A SparkSession on ``master`` with the settings measured to work here
    (../shared/KNOWN.md); this process is the driver.

    The warehouse (``spark-warehouse``) and the Hive metastore (``metastore_db``, embedded
    Derby: one process at a time) live in ``./.pharmalab`` of the working folder. On a
    cluster of several machines the executors write the tables' files, so the warehouse must
    be storage every worker reaches: ``PHARMALAB_SPARK_WAREHOUSE`` (a shared path or an
    ``hdfs://``, ``s3a://``, ``abfss://`` … URI) overrides it.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineURLError(
            "Spark needs the optional dependencies: pip install 'pharmalab[spark]'"
        ) from exc
    # A master on this machine (local[…] or a cluster on loopback) gets a driver on 127.0.0.1:
    # without this Spark binds to the first non-loopback interface it finds. A remote
    # cluster's executors must reach the driver, so there Spark's own choice (or the user's
    # SPARK_LOCAL_IP / spark.driver.host) stands.
    on_this_machine = master.startswith("local") or re.match(
        r"spark://(127\.0\.0\.1|localhost)(:|$)", master) is not None
    if on_this_machine:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers must be this interpreter (the venv's), not whatever python3 is on
        # PATH; a remote worker has its own (PYSPARK_PYTHON in its environment)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    home = (Path.cwd() / ".pharmalab").resolve()
    home.mkdir(parents=True, exist_ok=True)
    warehouse = os.environ.get("PHARMALAB_SPARK_WAREHOUSE") or str(home / "spark-warehouse")
    # A Hive catalog in an embedded Derby database under ./.pharmalab, so tables written by
    # one pharmalab command are there for the next (an in-memory catalog forgets them and
    # then refuses to reuse their folders).
    metastore = f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true"
    settings = {
        "spark.driver.memory": "3g",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": warehouse,
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": metastore,
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home}",
        "spark.sql.session.timeZone": "UTC",
    }
    if on_this_machine:
        settings |= {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            # a few cores: Spark's 200 shuffle partitions would be 200 tiny tasks per join
            "spark.sql.shuffle.partitions": "4",
        }
    builder = SparkSession.builder.master(master).appName("pharmalab")
    for name, value in settings.items():
        builder = builder.config(name, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    con = ibis.pyspark.connect(session)
    _register_memtables_before_cache(con)
    return con


def _register_memtables_before_cache(con: BaseBackend) -> None:
    """Ibis's Spark backend (12.0) compiles ``Table.cache()`` without first registering the
    expression's in-memory tables (``ibis.memtable``) as execution does, so a cached
    expression holding one fails with TABLE_OR_VIEW_NOT_FOUND; run the backend's own
    pre-execution hooks first."""
    create = con._create_cached_table

    def create_cached_table(name, expr):
        con._run_pre_execute_hooks(expr)
        return create(name, expr)

    con._create_cached_table = create_cached_table


@dataclass(frozen=True)
class Database:
    """An Ibis backend and the schemas that hold the CDM, the vocabulary and the results.

    Attributes
    ----------
    con : ibis.backends.BaseBackend
    url : EngineURL
    cdm_schema, vocab_schema, results_schema : str or None
        None is the backend's current schema. ``vocab_schema`` defaults to ``cdm_schema``.
    """

    con: BaseBackend
    url: EngineURL
    cdm_schema: str | None = None
    vocab_schema: str | None = None
    results_schema: str | None = None

    def schema(self, role: str) -> str | None:
        """Schema name for ``role`` in {"cdm", "vocab", "results"}."""
        if role == "vocab":
            return self.vocab_schema or self.cdm_schema
        if role == "results":
            return self.results_schema
        return self.cdm_schema

    def has_table(self, name: str, role: str = "cdm") -> bool:
        """Whether table ``name`` exists in the schema of ``role``."""
        return name in self.list_tables(role)

    def list_tables(self, role: str = "cdm") -> list[str]:
        """Table names (lower case) in the schema of ``role``; empty if the schema is absent."""
        schema = self.schema(role)
        if schema is None:
            return [n.lower() for n in self.con.list_tables()]
        if schema.lower() not in {d.lower() for d in self.con.list_databases()}:
            return []  # a schema that does not exist yet has no tables
        return [n.lower() for n in self.con.list_tables(database=schema)]

    def table(self, name: str, role: str = "cdm"):
        """The Ibis table ``name`` in the schema of ``role``.

        Raises
        ------
        CdmNotFoundError
            If the table does not exist there.
        """
        schema = self.schema(role)
        if not self.has_table(name, role):
            where = f"schema {schema!r}" if schema else "the default schema"
            raise CdmNotFoundError(
                f"table {name!r} not found in {where} of {self.url.redacted()}"
            )
        return self.con.table(name, database=schema) if schema else self.con.table(name)

    def reachable(self) -> bool:
        """Whether the engine still answers a trivial query (``SELECT 1``): False after a
        lost connection, a server restart or a Spark driver that has stopped."""
        try:
            if self.url.kind == "pyspark":
                self.con._session.sql("SELECT 1").collect()
            else:
                cursor = self.con.raw_sql("SELECT 1")
                if self.url.kind == "postgres":  # a psycopg cursor (DuckDB hands back the
                    cursor.close()                # connection itself: never close that)
        except Exception:  # any failure to answer counts as unreachable
            return False
        return True

    def ensure_schema(self, role: str) -> None:
        """Create the schema of ``role`` if it is named and missing."""
        schema = self.schema(role)
        # Not create_database(force=True): on DuckDB that is CREATE OR REPLACE SCHEMA.
        if schema and schema.lower() not in {d.lower() for d in self.con.list_databases()}:
            self.con.create_database(schema)


def database(
    url: str | EngineURL,
    *,
    cdm_schema: str | None = None,
    vocab_schema: str | None = None,
    results_schema: str | None = None,
    create: bool = True,
) -> Database:
    """Connect to ``url`` and bind the schema names (arguments override URL parameters).

    ``create=False`` refuses to create a missing DuckDB file (see :func:`connect`).

    Raises
    ------
    EngineURLError
        As :func:`connect`, or a schema name that is not a plain SQL identifier.
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    names = {"cdm_schema": cdm_schema or parsed.cdm_schema,
             "vocab_schema": vocab_schema or parsed.vocab_schema,
             "results_schema": results_schema or parsed.results_schema}
    for param, name in names.items():
        # schema names are written into SQL: letters, digits and _ only, never quoted text
        if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise EngineURLError(
                f"{param} {name!r} (URL parameter or --{param.replace('_', '-')}) is not a "
                "plain schema name: use letters, digits and _, not starting with a digit")
    return Database(
        con=connect(parsed, create=create),
        url=parsed,
        cdm_schema=cdm_schema or parsed.cdm_schema,
        vocab_schema=vocab_schema or parsed.vocab_schema,
        results_schema=results_schema or parsed.results_schema,
    )
