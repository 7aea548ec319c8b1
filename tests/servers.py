"""Throwaway servers for the engine suites: a PostgreSQL cluster, a Spark standalone
cluster and a BigQuery emulator, each on loopback ports.

Used by the ``postgres`` and ``spark`` fixtures in conftest.py and by the benchmarks. Nothing
here is part of pharmalab: a user points pharmalab at their own server with a
``postgres://`` or ``spark://`` URL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """The server's programs are not installed here (tests skip on it)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path:
    """The folder of PostgreSQL's server programs (``initdb``, ``pg_ctl``).

    Debian's ``postgresql`` package puts them in /usr/lib/postgresql/<version>/bin, not on PATH.

    Raises
    ------
    ServerUnavailable
        When neither PATH nor /usr/lib/postgresql has ``initdb``.
    """
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not versions:
        raise ServerUnavailable(
            "PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
    return Path(versions[-1]).parent


@dataclass
class PostgresCluster:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only.

    Trust authentication for the superuser ``pharmalab`` (loopback only, deleted on stop);
    fsync and synchronous commit off — a throwaway cluster for tests, never for data.
    PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user
    that Debian's package creates.
    """

    folder: Path
    port: int
    bindir: Path
    run_as: list[str]

    @classmethod
    def start(cls) -> PostgresCluster:
        bindir = postgres_bindir()
        # not under pytest's tmp folders: those are mode 700, which the postgres user cannot enter
        folder = Path(tempfile.mkdtemp(prefix="pharmalab-pg-"))
        run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable("running as root and there is no postgres user") from None
            os.chown(folder, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        cluster = cls(folder=folder, port=_free_port(), bindir=bindir, run_as=run_as)
        cluster._run("initdb", "-D", str(cluster.data), "-U", "pharmalab", "-A", "trust",
                     "-E", "UTF8", "--no-locale", "--no-sync")
        options = " ".join([
            f"-p {cluster.port}", f"-k {folder}", "-c listen_addresses=127.0.0.1",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
            "-c shared_buffers=256MB", "-c work_mem=64MB", "-c max_connections=40",
        ])
        cluster._run("pg_ctl", "-D", str(cluster.data), "-o", options,
                     "-l", str(folder / "server.log"), "-w", "-t", "60", "start")
        return cluster

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres", **params: str) -> str:
        """``postgres://pharmalab@127.0.0.1:PORT/DATABASE`` with optional query parameters."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgres://pharmalab@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else "")

    def stop(self) -> None:
        """Stop the server at once and delete its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again (drops every connection, as a lost server would)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "restart")

    def _run(self, program: str, *args: str) -> None:
        command = [*self.run_as, str(self.bindir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr}\n{tail}")


@dataclass
class SparkStandalone:
    """A Spark standalone cluster on 127.0.0.1: one master and ``workers`` workers.

    Started with ``spark-class`` from the pyspark package (its pip distribution ships
    ``bin/spark-class`` but not ``sbin/start-master.sh``/``start-worker.sh``); each worker
    offers one core and 2 GB, so a 2-core machine runs two executors of one core. The driver
    is the test process; executors read the same local files (one machine), which a real
    cluster gets from shared storage instead.
    """

    folder: Path
    port: int
    processes: list[subprocess.Popen]

    @classmethod
    def start(cls, workers: int = 2, timeout: float = 120.0) -> SparkStandalone:
        try:
            import pyspark
        except ImportError:
            raise ServerUnavailable("pyspark is not installed (pharmalab[spark])") from None
        if shutil.which("java") is None:
            raise ServerUnavailable("no Java runtime: Spark needs Java 17")
        home = Path(pyspark.__file__).parent
        folder = Path(tempfile.mkdtemp(prefix="pharmalab-spark-"))
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_LOG_DIR": str(folder), "SPARK_NO_DAEMONIZE": "1"}
        cluster = cls(folder=folder, port=_free_port(), processes=[])
        master = f"spark://127.0.0.1:{cluster.port}"
        commands = [["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(cluster.port), "--webui-port", str(_free_port())]]
        for i in range(workers):
            work = folder / f"worker{i}"
            work.mkdir()
            commands.append(["org.apache.spark.deploy.worker.Worker", master,
                             "--host", "127.0.0.1", "--cores", "1", "--memory", "2g",
                             "--webui-port", str(_free_port()), "--work-dir", str(work)])
        try:
            for i, command in enumerate(commands):
                log = open(folder / f"process{i}.log", "w")  # noqa: SIM115 (kept by Popen)
                cluster.processes.append(subprocess.Popen(
                    [str(home / "bin" / "spark-class"), *command], stdout=log,
                    stderr=subprocess.STDOUT, env=env, cwd=folder))
                if i == 0:
                    cluster._wait_for(lambda: _listening(cluster.port), timeout, "the master")
            cluster._wait_for(lambda: cluster._registered() >= workers, timeout,
                              f"{workers} workers to register")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def master(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def url(self, **params: str) -> str:
        """``pyspark://spark://127.0.0.1:PORT`` with optional query parameters."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"pyspark://{self.master}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        """Stop the workers, then the master, and delete the folder."""
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _registered(self) -> int:
        log = self.folder / "process0.log"
        return log.read_text().count("Registering worker") if log.exists() else 0

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a Spark process ended while waiting for {what}:\n"
                                   + self._logs())
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {timeout:.0f} s for {what}:\n" + self._logs())
            time.sleep(0.5)

    def _logs(self) -> str:
        return "\n".join(p.read_text()[-1500:] for p in sorted(self.folder.glob("*.log")))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# BigQuery's column types for the seed files' JSON (the REST API's legacy names)
_BQ_TYPES = {"int64": "INTEGER", "float64": "FLOAT", "string": "STRING", "date": "DATE",
             "timestamp": "TIMESTAMP", "boolean": "BOOLEAN"}


@dataclass
class BigQueryEmulator:
    """``bqemulator`` (PyPI; BigQuery's REST and gRPC APIs over DuckDB) on 127.0.0.1.

    It runs from its own virtual environment (it pins DuckDB 1.5.5 and an older sqlglot than
    pharmalab's): ``make .venv-bqemulator`` builds it, ``PHARMALAB_BQEMULATOR`` may name
    another ``bqemulator`` program. Load jobs are refused by the emulator, so tables come in
    through its own seed format (``bqemulator seed``: per table a Parquet file and the
    table's JSON resource), written here from a DuckDB database.
    """

    folder: Path
    port: int
    process: subprocess.Popen | None = None

    @staticmethod
    def program() -> Path:
        path = Path(os.environ.get("PHARMALAB_BQEMULATOR",
                                   Path(__file__).parents[1] / ".venv-bqemulator" / "bin"
                                   / "bqemulator"))
        if not path.exists():
            raise ServerUnavailable(f"no BigQuery emulator at {path} (make .venv-bqemulator)")
        return path

    @classmethod
    def seeded(cls, project: str, datasets: dict[str, list[tuple[str, object]]],
               timeout: float = 60.0) -> BigQueryEmulator:
        """Start an emulator whose ``project`` holds ``datasets``: {dataset: [(table name,
        Ibis table), …]}, each table's rows written to the seed files by its own backend."""
        program = cls.program()
        folder = Path(tempfile.mkdtemp(prefix="pharmalab-bqemulator-"))
        seed = folder / "seed"
        for dataset, tables in datasets.items():
            base = seed / "projects" / project / "datasets" / dataset
            (base / "tables").mkdir(parents=True)
            _write_json(base / "dataset.json", {"dataset_id": dataset, "project_id": project,
                                                "location": "US", "labels": {},
                                                "access_entries": [], **_stamp()})
            for name, table in tables:
                table.to_parquet(base / "tables" / f"{name}.parquet")
                fields = [{"name": c, "type": _BQ_TYPES[str(t).rstrip("!").split("(")[0]],
                           "mode": "NULLABLE", "fields": []}
                          for c, t in table.schema().items()]
                _write_json(base / "tables" / f"{name}.json", {
                    "project_id": project, "dataset_id": dataset, "table_id": name,
                    "table_type": "TABLE", "labels": {}, "schema": {"fields": fields},
                    "num_bytes": 0, "num_rows": 0, "use_legacy_sql": False, **_stamp()})
        _write_json(seed / "manifest.json", {"manifestVersion": 1, "tool": "bqemulator-export"})
        data = folder / "data"
        data.mkdir()
        done = subprocess.run([str(program), "seed", "--data-dir", str(data),
                               "--input-dir", str(seed)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"bqemulator seed failed: {done.stdout}\n{done.stderr}")
        emulator = cls(folder=folder, port=_free_port())
        log = open(folder / "emulator.log", "w")  # noqa: SIM115 (kept by Popen)
        emulator.process = subprocess.Popen(
            [str(program), "start", "--persistent", "--data-dir", str(data),
             "--rest-host", "127.0.0.1", "--rest-port", str(emulator.port),
             "--grpc-port", str(_free_port()), "--project", project,
             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not _listening(emulator.port):
            if emulator.process.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "emulator.log").read_text()[-2000:]
                emulator.stop()
                raise RuntimeError(f"the BigQuery emulator did not start:\n{tail}")
            time.sleep(0.3)
        return emulator

    def url(self, project: str, dataset: str, **params: str) -> str:
        """``bigquery://PROJECT/DATASET?emulator=127.0.0.1:PORT`` with more parameters."""
        query = "&".join(f"{k}={v}" for k, v in {"emulator": f"127.0.0.1:{self.port}",
                                                  **params}.items())
        return f"bigquery://{project}/{dataset}?{query}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _stamp() -> dict:
    """The times and etag every resource of the seed format carries."""
    from datetime import datetime

    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"creation_time": now, "last_modified_time": now, "etag": '"pharmalab"'}


def _write_json(path: Path, value) -> None:
    import json

    path.write_text(json.dumps(value, indent=1))
