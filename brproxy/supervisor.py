"""`brproxy up`: start every part of the stack as its own process and keep them running.

Each service is a separate OS process whose command line names it (`python -m authz`,
`python -m translator`, `envoy -c …/envoy.json`, `postgres -D …`), so `ps` and process
managers show which is which. The supervisor

- starts Postgres (embedded unless an external database is configured) and applies the
  schema migrations, then the services, then Envoy, and prints one line with the URL once
  `GET /health` through Envoy answers 200;
- restarts a child that dies, with exponential backoff, logging which one and why, and
  stops the whole stack, naming the child, if it keeps dying;
- on SIGINT/SIGTERM stops the children in order (Envoy first so no new requests arrive,
  Postgres last so usage still in flight is written) and leaves none behind. Children also
  get a parent-death signal, so even a SIGKILLed supervisor leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import signal
import socket
import ssl
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from brproxy.child_process import die_with_parent
from brproxy.embedded_postgres import EmbeddedPostgres
from brproxy.process_limits import raise_open_file_limit
from core.internal_auth import generate_token, token_problem
from core.migrate import apply_migrations
from core.settings import Settings, database_url_from_env, socket_dir_problem

__all__ = ["Child", "StackOptions", "Supervisor", "public_port_problem", "run"]

log = logging.getLogger("brproxy")

RESTART_LIMIT = 5
"""A child that dies this many times within RESTART_WINDOW_S stops the stack."""
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 15.0

# Credentials the simulator accepts; real AWS credentials are never sent to it.
SIMULATOR_ACCESS_KEY = "BRPROXYSIMULATOR"
SIMULATOR_SECRET_KEY = "brproxy-simulator-secret"  # noqa: S105 - a fixed local test credential


def public_port_problem(host: str, port: int) -> str | None:
    """Why Envoy cannot listen on (host, port), or None.

    A trial bind, with SO_REUSEADDR as Envoy's own listener has it: connections of a
    previous run still in TIME_WAIT do not count, a socket listening there (any program, or
    another `brproxy up`: its Envoy does not share ports) does.
    """
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        return f"cannot listen on {host}: {error}"
    with socket.socket(family, kind, protocol) as trial:
        trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            trial.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another `brproxy up`, or another "
                    "program); stop it or choose another --port"
                )
            return f"cannot listen on port {port} on {host}: {error.strerror}"
    return None


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range.

    A child keeps its port for life, also across restarts. A port from the ephemeral range
    could meanwhile become the source port of some outgoing connection, and the restarted
    child could not bind it again; ports below that range are only ever taken on purpose.
    """
    floor = min(_ephemeral_floor(), 65536)
    low = 10000 if floor > 12000 else 1024
    for _ in range(200):
        candidate = secrets.randbelow(max(1, floor - low)) + low
        with socket.socket() as s:
            try:
                s.bind((host, candidate))
            except OSError:
                continue
            return candidate
    with socket.socket() as s:  # a crowded machine: any free port will do
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class StackOptions:
    """What `brproxy up` was asked for on its command line."""

    data_dir: Path
    host: str
    port: int
    tls_cert: Path | None
    tls_key: Path | None
    plain_http: bool
    bedrock_simulator: bool
    workers: int
    simulator_latency_ms: int = 0
    simulator_tokens_per_second: float = 0.0


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    stop_signal: int = signal.SIGTERM
    preexec: Callable[[], None] | None = None
    process: asyncio.subprocess.Process | None = None
    deaths: list[float] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None


class StackFailed(Exception):
    """The stack cannot run (a child keeps dying, or start-up failed)."""


class Supervisor:
    def __init__(self, options: StackOptions, out: IO[str] = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.children: list[Child] = []
        self.stopping = False
        self.failure: str | None = None
        self._stop = asyncio.Event()
        self._lock_file: IO[str] | None = None
        self._internal_token: str | None = None

    # --- environment ---------------------------------------------------------------------

    def _service_env(self, database_url: str) -> dict[str, str]:
        o = self.options
        env = dict(os.environ)
        settings = {
            "BRPROXY_DATA_DIR": str(o.data_dir),
            "BRPROXY_HOST": o.host,
            "BRPROXY_PORT": str(o.port),
            "BRPROXY_PLAIN_HTTP": "1" if o.plain_http else "0",
            "BRPROXY_DATABASE_URL": database_url,
            "BRPROXY_WORKERS": str(o.workers),
            "BRPROXY_BEDROCK_SIMULATOR": "1" if o.bedrock_simulator else "0",
        }
        # The services listen on Unix sockets only the stack's user can reach (core/unix_sockets.py),
        # never on loopback ports, which any local user could connect to or take over while
        # one restarts. The simulator stands in for AWS, outside that boundary: it keeps a port.
        settings["BRPROXY_SOCKET_DIR"] = str(self._socket_dir())
        settings["BRPROXY_SIMULATOR_PORT"] = os.environ.get("BRPROXY_SIMULATOR_PORT") or str(free_port())
        if self._internal_token is not None:  # in the environment only: never on a command line
            settings["BRPROXY_INTERNAL_TOKEN"] = self._internal_token
        if o.tls_cert is not None:
            settings["BRPROXY_TLS_CERT"] = str(o.tls_cert)
        if o.tls_key is not None:
            settings["BRPROXY_TLS_KEY"] = str(o.tls_key)
        env.update(settings)
        env.pop("DATABASE_URL", None)  # BRPROXY_DATABASE_URL is the one every child reads
        return env

    @staticmethod
    def _check_socket_dir(path: Path) -> None:
        problem = socket_dir_problem(path)
        if problem is not None:
            raise StackFailed(
                f"the data dir's path is too long for the services' Unix sockets ({path}: {problem}); "
                "use a shorter --data-dir"
            )

    def _socket_dir(self) -> Path:
        """`<data dir>/run`, where the services' sockets are: this user's alone (0700)."""
        path = self.options.data_dir.absolute() / "run"
        self._check_socket_dir(path)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise StackFailed(f"{path} must be a directory of this user's (remove it and start again)")
        if stat.S_IMODE(info.st_mode) != 0o700:
            path.chmod(0o700)
        return path

    def _translator_env(self, env: dict[str, str]) -> dict[str, str]:
        if not self.options.bedrock_simulator:
            return env
        translator = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        translator.update(
            {
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f"http://127.0.0.1:{env['BRPROXY_SIMULATOR_PORT']}",
                "AWS_ACCESS_KEY_ID": SIMULATOR_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SIMULATOR_SECRET_KEY,
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        # The simulator is on loopback: a proxy from the user's environment (HTTPS_PROXY) is
        # for the real Bedrock, never for it.
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1"]))
        translator["NO_PROXY"] = translator["no_proxy"] = no_proxy
        return translator

    # --- child processes -----------------------------------------------------------------

    async def _spawn(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent(
                signal.SIGINT if child.stop_signal == signal.SIGINT else signal.SIGTERM, then=child.preexec
            ),
        )
        child.pump = asyncio.create_task(self._pump(child, child.process))

    async def _pump(self, child: Child, process: asyncio.subprocess.Process) -> None:
        """Copy a child's output to ours, each line prefixed with the child's name."""
        assert process.stdout is not None
        prefix = f"[{child.name}] ".encode()
        while line := await process.stdout.readline():
            sys.stderr.buffer.write(prefix + line)
            sys.stderr.buffer.flush()

    async def start_child(self, child: Child) -> Child:
        self.children.append(child)
        await self._spawn(child)
        child.watcher = asyncio.create_task(self._watch(child), name=f"watch-{child.name}")
        return child

    async def _watch(self, child: Child) -> None:
        while True:
            process = child.process
            assert process is not None
            code = await process.wait()
            if child.pump is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(child.pump, 1)
            if self.stopping:
                return
            now = time.monotonic()
            child.deaths = [t for t in child.deaths if now - t < RESTART_WINDOW_S] + [now]
            why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            if len(child.deaths) >= RESTART_LIMIT:
                self.failure = (
                    f"{child.name} keeps dying ({len(child.deaths)} times in {RESTART_WINDOW_S:.0f}s, "
                    f"last: {why}); stopping BRProxy"
                )
                log.error(self.failure)
                self._stop.set()
                return
            delay = min(0.5 * 2 ** (len(child.deaths) - 1), 10.0)
            log.warning("%s %s; restarting it in %.1fs", child.name, why, delay)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            await self._spawn(child)

    async def _stop_child(self, child: Child) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            # The whole process group: uvicorn workers and postgres backends included.
            os.killpg(process.pid, child.stop_signal)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("%s did not stop within %.0fs; killing it", child.name, STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers left in its group

    async def stop_all(self) -> None:
        self.stopping = True
        # Reverse start order: Envoy, then translator (ships its usage to the meter), then
        # the meter, the rest, and the database last.
        for child in reversed(self.children):
            await self._stop_child(child)

    # --- start-up ------------------------------------------------------------------------

    def _check_public_port(self) -> None:
        """Refuse a public address Envoy could not listen on, above all one already in use.

        Envoy itself would only log the failure and exit (and be restarted); worse, another
        stack answering on that port would pass `_wait_healthy` for this one.
        """
        host, port = self.options.host, self.options.port
        problem = public_port_problem(host, port)
        if problem is not None:
            raise StackFailed(problem)

    def _lock_data_dir(self) -> None:
        data_dir = self.options.data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Other local users may at most pass through it (the embedded Postgres, run as its own
        # user when we are root, must reach pgdata): never list it, never read or write in it.
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        if mode & 0o066:
            data_dir.chmod(mode & ~0o066)
        fd = os.open(data_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        self._lock_file = os.fdopen(fd, "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackFailed(f"another `brproxy up` is using {self.options.data_dir}") from None

    async def _start_database(self) -> str:
        external = database_url_from_env()
        if external:
            log.info("using the external Postgres from DATABASE_URL/PGSQL_*")
            return external
        pg = EmbeddedPostgres(self.options.data_dir, free_port())
        if pg.ensure_initialised():
            log.info("created the embedded Postgres in %s", pg.pgdata)
        pg.log_file.parent.mkdir(parents=True, exist_ok=True)
        child = await self.start_child(
            Child(
                "postgres",
                pg.command(),
                pg.environment(dict(os.environ)),
                stop_signal=signal.SIGINT,
                preexec=pg.preexec(),
            )
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                await asyncio.to_thread(pg.wait_ready, 2.0)
                break
            except TimeoutError:
                if time.monotonic() > deadline or self.failure:
                    raise StackFailed(self.failure or "the embedded Postgres did not start") from None
        assert child.process is not None
        await pg.ensure_database()
        return pg.url()

    async def _migrate(self, database_url: str) -> None:
        for attempt in range(30):
            try:
                applied = await apply_migrations(database_url)
                if applied:
                    log.info("applied migrations: %s", ", ".join(applied))
                return
            except (OSError, ConnectionError) as error:
                if attempt == 29:
                    raise StackFailed(f"cannot reach the database: {error}") from None
                await asyncio.sleep(1)

    async def _prepare_edge(self, env: dict[str, str]) -> dict[str, object]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "prepare", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        if process.returncode != 0:
            raise StackFailed(f"could not generate the Envoy configuration: {err.decode()[-2000:]}")
        summary: dict[str, object] = orjson.loads(out)
        return summary

    def _announce_simulator(self) -> None:
        line = "!" * 78
        self.out.write(
            f"{line}\n"
            "!!  BEDROCK SIMULATOR MODE: requests are answered by a local Bedrock stand-in.\n"
            "!!  No AWS call is made; answers are synthetic. Do not use this for real work.\n"
            f"{line}\n"
        )
        self.out.flush()

    async def _wait_healthy(self, settings: Settings, cert: str | None, timeout: float = 90.0) -> None:
        url = f"{'http' if settings.plain_http else 'https'}://127.0.0.1:{settings.port}/health"
        context = None
        if not settings.plain_http:
            context = ssl.create_default_context(cafile=cert) if cert else ssl.create_default_context()
            context.check_hostname = False
            if not cert:
                context.verify_mode = ssl.CERT_NONE

        # Never through a proxy from the environment (HTTPS_PROXY is for Bedrock, not loopback).
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

        def probe() -> int:
            try:
                with opener.open(url, timeout=2) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return error.code
            except (OSError, ssl.SSLError):
                return 0

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.failure:
                raise StackFailed(self.failure)
            if await asyncio.to_thread(probe) == 200:
                return
            await asyncio.sleep(0.1)
        raise StackFailed(f"BRProxy did not become healthy within {timeout:.0f}s ({url})")

    def _ensure_admin_key(self) -> None:
        """Without ADMIN_API_KEY, use (or create) a random one kept in the data dir (0600)."""
        if os.environ.get("ADMIN_API_KEY") or os.environ.get("BRPROXY_ADMIN_API_KEY"):
            return
        path = self.options.data_dir / "admin-api-key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
            self.out.write(f"Created a bootstrap admin key (ADMIN_API_KEY was not set); it is in {path}\n")
        os.environ["ADMIN_API_KEY"] = path.read_text().strip()

    def _ensure_internal_token(self) -> None:
        """Without BRPROXY_INTERNAL_TOKEN, use (or create) a random one kept in the data dir (0600).

        Envoy adds it to everything it sends the services, which refuse any request without
        it (core/internal_auth.py): other local users can reach their ports, not this file.
        """
        given = os.environ.get("BRPROXY_INTERNAL_TOKEN")
        if given:  # already checked with the rest of the configuration
            self._internal_token = given
            return
        path = self.options.data_dir / "internal-token"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(generate_token())
        token = path.read_text().strip()
        problem = token_problem(token)
        if problem is not None:
            raise StackFailed(f"{path}: the internal token {problem} (delete the file for a new one)")
        self._internal_token = token

    async def start(self) -> Settings:
        started = time.monotonic()
        self._check_public_port()  # before anything is created or started
        self._check_socket_dir(self.options.data_dir.absolute() / "run")
        self._lock_data_dir()
        before, after = raise_open_file_limit()  # every service started below inherits it
        if after != before:
            log.info("open-file limit raised from %d to %d", before, after)
        self._ensure_admin_key()
        self._ensure_internal_token()
        if self.options.bedrock_simulator:
            self._announce_simulator()
        database_url = await self._start_database()
        await self._migrate(database_url)
        env = self._service_env(database_url)
        settings = Settings(**_settings_from_env(env))
        python = sys.executable
        if self.options.bedrock_simulator:
            sim_env = dict(env)
            sim_env.update(
                {
                    "BRPROXY_SIM_ACCESS_KEY_ID": SIMULATOR_ACCESS_KEY,
                    "BRPROXY_SIM_SECRET_ACCESS_KEY": SIMULATOR_SECRET_KEY,
                    "BRPROXY_SIM_LATENCY_MS": str(self.options.simulator_latency_ms),
                    "BRPROXY_SIM_TOKENS_PER_SECOND": str(self.options.simulator_tokens_per_second),
                }
            )
            await self.start_child(
                Child(
                    "bedrock-simulator",
                    [
                        python,
                        "-m",
                        "bedrock_simulator",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        env["BRPROXY_SIMULATOR_PORT"],
                    ],
                    sim_env,
                )
            )
        await self.start_child(Child("meter", [python, "-m", "meter"], env))
        await self.start_child(Child("authz", [python, "-m", "authz"], env))
        await self.start_child(Child("admin-api", [python, "-m", "admin_api"], env))
        await self.start_child(Child("translator", [python, "-m", "translator"], self._translator_env(env)))
        self._check_public_port()  # again: the services took seconds to start
        summary = await self._prepare_edge(env)
        if summary.get("tls_cert_notice"):  # the generated certificate was replaced
            self.out.write(f"{summary['tls_cert_notice']}\n")
        elif summary.get("tls_cert_created"):
            self.out.write(f"Generated a self-signed TLS certificate: {summary['tls_cert']}\n")
        envoy = [
            str(summary["envoy"]), "-c", str(summary["config"]), "--log-level", "warning",
            "--disable-hot-restart", "--base-id", str(os.getpid() % 60000),
        ]  # fmt: skip
        await self.start_child(Child("envoy", envoy, env))
        tls_cert = summary.get("tls_cert")
        await self._wait_healthy(settings, str(tls_cert) if tls_cert else None)
        elapsed = time.monotonic() - started
        self.out.write(f"BRProxy is ready at {settings.public_url} (started in {elapsed:.1f}s)\n")
        if tls_cert:
            self.out.write(f"TLS certificate: {tls_cert}\n")
        self.out.flush()
        return settings

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            start = asyncio.create_task(self.start())
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
            if start in done:
                start.result()  # raises StackFailed
                await self._stop.wait()
            else:
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, StackFailed):
                    await start
        except StackFailed as error:
            self.failure = self.failure or str(error)
        finally:
            await self.stop_all()
        if self.failure:
            self.out.write(f"BRProxy stopped: {self.failure}\n")
            self.out.flush()
            return 1
        self.out.write("BRProxy stopped.\n")
        self.out.flush()
        return 0


def _settings_from_env(env: dict[str, str]) -> dict[str, Any]:
    """The subset of Settings the supervisor itself needs, read from the children's env."""
    return {
        "data_dir": Path(env["BRPROXY_DATA_DIR"]),
        "host": env["BRPROXY_HOST"],
        "port": int(env["BRPROXY_PORT"]),
        "plain_http": env["BRPROXY_PLAIN_HTTP"] == "1",
    }


def run(options: StackOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s brproxy %(levelname)s: %(message)s")
    return asyncio.run(Supervisor(options).run())
