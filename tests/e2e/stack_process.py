"""Running `brproxy up --bedrock-simulator` as a real process tree, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from local_ports import free_port

BOOTSTRAP_KEY = "bootstrap-admin-key-for-tests-0123456789"

STARTED: list[Stack] = []
"""Every stack started in this test session, in order: a failing test's report shows the
output of those it used (see conftest.py), which is where a 4xx/5xx answer is explained."""


@dataclass
class Stack:
    """A running `brproxy up` and what tests need to reach it."""

    process: subprocess.Popen[str]
    base_url: str
    cert: Path | None
    database_url: str
    data_dir: Path
    output: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0

    @property
    def verify(self) -> ssl.SSLContext | bool:
        if self.cert is None:
            return True
        context = ssl.create_default_context(cafile=str(self.cert))
        return context

    def client(self, key: str | None = None, headers: dict[str, str] | None = None) -> httpx.Client:
        all_headers = dict(headers or {})
        if key:
            all_headers["authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.base_url, verify=self.verify, headers=all_headers, timeout=30)

    def admin(self, method: str, path: str, key: str = BOOTSTRAP_KEY, **kwargs: Any) -> httpx.Response:
        with self.client(key) as client:
            return client.request(method, path, **kwargs)

    def create_key(
        self,
        name: str,
        *,
        role: str = "user",
        month_quota: Any = 0,
        balance: Any = 0,
        admin_key: str = BOOTSTRAP_KEY,
    ) -> dict[str, Any]:
        response = self.admin(
            "POST", "/admin/api-key/apply", admin_key,
            json={"name": name, "role": role, "month_quota": month_quota, "balance": balance},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def _url(self) -> str:
        if self.database_url:
            return self.database_url
        # The embedded Postgres: its port is on its command line, its password in the data dir.
        postmaster = self.processes(str(self.data_dir / "pgdata"))[0]
        arguments = postmaster.cmdline()
        port = arguments[arguments.index("-p") + 1]
        password = (self.data_dir / "pg-password").read_text().strip()
        return f"postgresql://brproxy:{password}@127.0.0.1:{port}/brproxy"

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(self._url())
            try:
                return list(await connection.fetch(query, *args))
            finally:
                await connection.close()

        return asyncio.run(run())

    def wait_for(self, query: str, *args: Any, timeout: float = 10.0) -> list[asyncpg.Record]:
        """Poll until `query` returns rows (usage is recorded asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sql(query, *args)
            if rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def processes(self, part: str) -> list[psutil.Process]:
        """Live processes of the stack whose command line contains `part`."""
        found = []
        for process in self.descendants():
            try:
                if part in " ".join(process.cmdline()):
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return found

    def command_lines(self) -> list[str]:
        return [" ".join(p.cmdline()) for p in self.processes("")]

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


def start_stack(
    data_dir: Path,
    database_url: str | None,
    *extra_args: str,
    env: dict[str, str | None] | None = None,
    timeout: float = 120.0,
    simulator: bool = True,
) -> Stack:
    """Run `brproxy up --bedrock-simulator` (or, with simulator=False, against the Bedrock its
    `env` names) and wait for its ready line."""
    port = free_port()
    child_env = dict(os.environ)
    for name in list(child_env):
        if name.startswith(("BRPROXY_", "PGSQL_")) or name in ("DATABASE_URL",):
            del child_env[name]
    child_env["ADMIN_API_KEY"] = BOOTSTRAP_KEY
    if database_url:
        child_env["DATABASE_URL"] = database_url
    for name, value in (env or {}).items():  # None: not inherited from this environment
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "brproxy", "up", *(["--bedrock-simulator"] if simulator else []),
         "--port", str(port), "--data-dir", str(data_dir), *extra_args],
        env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    cert: Path | None = None
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
            raise AssertionError("brproxy up did not become ready:\n" + "".join(output[-80:]))
        if line.startswith("TLS certificate: "):
            cert = Path(line.split(": ", 1)[1].strip())
            break
        if line.startswith("BRProxy is ready at ") and "--plain-http" in extra_args:
            break
    scheme = "http" if "--plain-http" in extra_args else "https"
    stack = Stack(process, f"{scheme}://127.0.0.1:{port}", cert, database_url or "", data_dir, output)
    stack.startup_seconds = time.monotonic() - started
    STARTED.append(stack)
    return stack


def stop_stack(stack: Stack, sig: int = signal.SIGINT) -> list[psutil.Process]:
    """Stop like Ctrl-C; returns the processes still alive afterwards (should be none)."""
    tree = stack.descendants()
    stack.process.send_signal(sig)
    try:
        stack.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        raise
    finally:
        if stack.process.stdout is not None:
            stack.process.stdout.close()
    deadline = time.monotonic() + 5
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return alive
