"""A throwaway PostgreSQL server for the tests: `initdb` + `pg_ctl` into a temporary folder, on a
free localhost port, removed afterwards. No mock: the tests talk to the real server.

The server binaries come from the distribution's `postgresql` package (`.ci/run` installs it where
`initdb` is missing); Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH. PostgreSQL
refuses to run as root, so under root the server runs as the `postgres` user (created if missing).
Where no server can be had at all, the tests that need one are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "automl"
PASSWORD = "pw-s3cret-7f3a"
"""The superuser's password: tests check that it never reaches a file or the console."""
SERVER_USER = "postgres"


def server_bin(name: str) -> str | None:
    """`initdb` / `pg_ctl` on PATH, else the newest one under /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_account() -> str | None:
    """Who runs the server: ourselves, or `postgres` when we are root (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SERVER_USER], check=True, capture_output=True)
    return SERVER_USER


@dataclass
class PgServer:
    """A running server: `url(db)` for a database on it, `create_database(name)` for a fresh one."""

    host: str
    port: int
    folder: Path

    def url(self, database: str, *, password: str | None = PASSWORD) -> str:
        auth = f"{USER}:{password}" if password is not None else USER
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL (with the password)."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _run(cmd: list[str], account: str | None) -> None:
    done = subprocess.run(cmd, user=account, capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout)[-800:]}")


def start_server() -> Iterator[PgServer]:
    """Start a server in a temporary folder; stop it and remove the folder afterwards."""
    initdb, pg_ctl = server_bin("initdb"), server_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under "
                    "/usr/lib/postgresql/*/bin: install the distribution's postgresql package "
                    "(.ci/run does)")
    try:
        account = _server_account()
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"running as root and no `{SERVER_USER}` user to run PostgreSQL as: {err}")
    folder = Path(tempfile.mkdtemp(prefix="automl-pg-"))
    data, pwfile = folder / "data", folder / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if account is not None:
        entry = pwd.getpwnam(account)
        for path in (folder, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    try:
        _run([initdb, "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
              "--no-sync", "-E", "UTF8", "--locale=C"], account)
        options = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        _run([pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w",
              "-t", "60", "start"], account)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {err}")
    try:
        yield PgServer(host="127.0.0.1", port=port, folder=folder)
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], user=account,
                       capture_output=True, check=False, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """One server for the whole test session; each test makes its own database on it."""
    yield from start_server()
