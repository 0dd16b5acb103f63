"""The PostgreSQL test fixture: a real server, a database of this process's own."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from nativekit.testing import servers

pytestmark = pytest.mark.postgres


async def test_each_test_process_gets_an_empty_database_of_its_own(postgres_url: str) -> None:
    """The session database is a fresh one named for test runs, on a real server."""
    connection = await asyncpg.connect(postgres_url)
    try:
        name = await connection.fetchval("SELECT current_database()")
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await connection.close()
    assert name.startswith("nativekit_test_")
    assert tables == 0


@pytest.mark.slow
def test_the_embedded_server_is_started_and_removed_when_forced(tmp_path: object) -> None:
    """With NATIVEKIT_TEST_POSTGRES=embedded the wheel's server runs a command, and its data
    folder and process are gone afterwards (the path a machine with only Python takes)."""
    env = {k: v for k, v in os.environ.items() if k != servers.DATABASE_ENV}
    env["NATIVEKIT_TEST_POSTGRES"] = "embedded"
    probe = (
        "import asyncio, os, asyncpg\n"
        "async def main():\n"
        "    c = await asyncpg.connect(os.environ['NATIVEKIT_TEST_DATABASE_URL'])\n"
        "    print('VERSION', await c.fetchval('SHOW server_version'))\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
    )
    code = (
        "import sys\n"
        "from nativekit.testing import servers\n"
        "server = servers.start_postgres()\n"
        "print('URL', server.url, 'WORKDIR', server.workdir, flush=True)\n"
        "import os, subprocess\n"
        f"rc = subprocess.call([sys.executable, '-c', {probe!r}],"
        " env={**os.environ, 'NATIVEKIT_TEST_DATABASE_URL': server.url})\n"
        "server.stop()\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    url, workdir = words[words.index("URL") + 1], words[words.index("WORKDIR") + 1]
    assert ":5432/" not in url  # not the machine's server: one on a free port
    assert words[words.index("VERSION") + 1].split(".")[0].isdigit()
    assert not os.path.exists(workdir)
