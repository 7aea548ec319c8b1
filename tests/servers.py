"""Throwaway database servers for the engine suites: a PostgreSQL cluster on a loopback port.

Used by the ``postgres`` fixtures in conftest.py and by the benchmarks. Nothing here is part of
pharmalab: a user points pharmalab at their own server with a ``postgres://`` URL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
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
